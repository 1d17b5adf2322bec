//! The plan of one package: which table chains load where (final or staging dataset), what is
//! emptied before the jobs run, and the statements that run after a chain's jobs finished.

use std::collections::BTreeSet;

use berth_model::schema::{DLT_ID, JOURNAL_TABLE, LOADS_TABLE, PIPELINE_STATE_TABLE, VERSION_TABLE};
use berth_model::{LoadPackage, MergeStrategy, ReplaceStrategy, Table, WriteDisposition};

use crate::dialect::SqlDialect;
use crate::error::{Error, Result};
use crate::followup::{self, ChainInput, FinalState, FollowupOp, TableRef};
use crate::statement::SqlStatement;
use crate::{lower, sql};
use datafusion::sql::sqlparser::ast::Ident;

/// Suffix of the staging dataset's name, as dlt's `staging_dataset_name_layout`.
pub const STAGING_SUFFIX: &str = "_staging";

/// The staging dataset of one load: `<dataset>_staging_<load id>`.
///
/// dlt shares one `<dataset>_staging` between every load, so two loads into the same dataset at
/// once copy or delete each other's staged rows (dlt #4297). berth stages each load in its own
/// dataset, named from the load id so a resumed load finds its staged rows again, and drops it
/// once the load is committed.
pub fn staging_dataset_name(dataset: &str, load_id: &str) -> String {
    let id: String = load_id
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    format!("{dataset}{STAGING_SUFFIX}_{id}")
}

/// The merge strategies berth plans: all of dlt 1.31's.
pub const PLANNED_MERGE_STRATEGIES: [MergeStrategy; 5] = [
    MergeStrategy::DeleteInsert,
    MergeStrategy::Upsert,
    MergeStrategy::InsertOnly,
    MergeStrategy::Scd2,
    MergeStrategy::Cdc,
];

/// Every replace strategy.
pub const ALL_REPLACE_STRATEGIES: [ReplaceStrategy; 3] = [
    ReplaceStrategy::TruncateAndInsert,
    ReplaceStrategy::InsertFromStaging,
    ReplaceStrategy::StagingOptimized,
];

/// What a destination can do, as far as planning is concerned.
#[derive(Debug, Clone)]
pub struct PlanCapabilities {
    /// Replace strategies the destination supports.
    pub replace_strategies: Vec<ReplaceStrategy>,
    /// Merge strategies the destination supports.
    pub merge_strategies: Vec<MergeStrategy>,
}

/// How a package is to be planned.
#[derive(Debug, Clone)]
pub struct PlanOptions {
    /// The dataset (schema) the package loads into.
    pub dataset: String,
    /// Replace strategy for `replace` tables.
    pub replace_strategy: ReplaceStrategy,
    /// Let the migration widen existing columns whose package type is wider, along the
    /// destination's [`crate::widen::Lattice`] (dlt never alters a column: off by default).
    pub widen_types: bool,
}

impl PlanOptions {
    /// Options for `dataset` with dlt's default replace strategy, no widening.
    pub fn new(dataset: impl Into<String>) -> Self {
        Self {
            dataset: dataset.into(),
            replace_strategy: ReplaceStrategy::default(),
            widen_types: false,
        }
    }
}

/// How a table chain is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChainAction {
    /// Jobs load straight into the final tables.
    Append,
    /// Final tables are emptied first, then jobs load into them.
    TruncateAndInsert,
    /// Jobs load into staging; then each final table is emptied and filled from staging.
    InsertFromStaging,
    /// Jobs load into staging; then staging tables are swapped in.
    StagingOptimized,
    /// Jobs load into staging; then merged (delete-insert, upsert, ...).
    Merge(MergeStrategy),
}

impl ChainAction {
    /// Is this a merge whose staged root rows the loader measures before the follow-up (see
    /// [`crate::followup::staged_facts_plan`])? The strategies that insert every staged row into
    /// an empty table: delete-insert, upsert and insert-only.
    pub fn measures_staged_rows(self) -> bool {
        matches!(
            self,
            Self::Merge(MergeStrategy::DeleteInsert | MergeStrategy::Upsert | MergeStrategy::InsertOnly)
        )
    }

    /// Does the loader empty the tables this chain's jobs load into before they run (the final
    /// tables of truncate-and-insert, the staging tables)? See [`PackagePlan::init_statements_for`].
    pub fn empties_job_tables(self) -> bool {
        self == Self::TruncateAndInsert || self.loads_to_staging()
    }

    /// Do this chain's jobs load into the staging dataset?
    pub fn loads_to_staging(self) -> bool {
        matches!(self, Self::InsertFromStaging | Self::StagingOptimized | Self::Merge(_))
    }
}

/// A root table and its nested tables, with how they are written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainPlan {
    /// The root table.
    pub root: String,
    /// How it is written.
    pub action: ChainAction,
    /// Tables of the chain that exist in the destination after migration, in schema order: tables
    /// with jobs, and (for replace and merge) nested tables that saw data in earlier packages.
    pub tables: Vec<String>,
    /// Tables of the chain that have jobs in this package.
    pub tables_with_jobs: BTreeSet<String>,
    /// Columns of the root's primary key.
    pub primary_key_columns: usize,
}

/// How a chain's staging tables are kept, decided once per load by [`PackagePlan::staging`]
/// (the prepare phase creates them accordingly and the follow-up relies on it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Staging {
    /// The merge may end by moving the staging table into the final dataset (see
    /// [`FinalState::movable`]).
    pub movable: bool,
    /// The staging tables are logged (where the dialect has unlogged staging tables): they may
    /// become final tables. Always true when `movable` is.
    pub logged: bool,
}

/// The plan of one package.
#[derive(Debug, Clone)]
pub struct PackagePlan {
    /// Final dataset.
    pub dataset: String,
    /// This load's staging dataset (see [`staging_dataset_name`]).
    pub staging_dataset: String,
    /// scd2 validity boundary: the package's `created_at`.
    pub boundary: Option<String>,
    /// Table chains with jobs, in schema order of their roots.
    pub chains: Vec<ChainPlan>,
    /// The migration widens columns ([`PlanOptions::widen_types`]).
    pub widen_types: bool,
}

impl PackagePlan {
    /// Plans `package`. Fails before anything is touched when the package asks for a strategy the
    /// destination does not support.
    pub fn new(package: &LoadPackage, options: &PlanOptions, caps: &PlanCapabilities) -> Result<Self> {
        let plan = Self::with_actions(package, &options.dataset, |root, _| {
            chain_action(package, root, options, caps)
        })?;
        Ok(Self {
            widen_types: options.widen_types,
            ..plan
        })
    }

    /// Every chain appended, whatever its write disposition: for a destination that receives
    /// rows and decides itself what they mean (a sink; dlt's sink destination does the same).
    pub fn appending(package: &LoadPackage, dataset: &str) -> Self {
        let appended = Self::with_actions(package, dataset, |_, _| {
            Ok::<_, std::convert::Infallible>(ChainAction::Append)
        });
        match appended {
            Ok(plan) => plan,
            Err(never) => match never {},
        }
    }

    /// The chains of `package` that have jobs, each written as `action` says.
    fn with_actions<E>(
        package: &LoadPackage,
        dataset: &str,
        mut action: impl FnMut(&Table, &[&Table]) -> std::result::Result<ChainAction, E>,
    ) -> std::result::Result<Self, E> {
        let schema = &package.schema;
        let with_jobs: BTreeSet<&str> = package
            .jobs
            .iter()
            .filter(|j| j.name.format.is_data())
            .map(|j| j.name.table.as_str())
            .collect();
        let mut chains = Vec::new();
        for root in schema.tables.values().filter(|t| !t.is_nested()) {
            let chain_tables = schema.table_chain(root);
            if !chain_tables.iter().any(|t| with_jobs.contains(t.name.as_str())) {
                continue;
            }
            let action = action(root, &chain_tables)?;
            // Replace and merge also touch nested tables without jobs: their old rows must go.
            let include =
                |t: &&Table| with_jobs.contains(t.name.as_str()) || (action != ChainAction::Append && t.seen_data);
            chains.push(ChainPlan {
                primary_key_columns: root.primary_key().len(),
                root: root.name.clone(),
                action,
                tables: chain_tables
                    .iter()
                    .filter(|t| include(t))
                    .map(|t| t.name.clone())
                    .collect(),
                tables_with_jobs: chain_tables
                    .iter()
                    .filter(|t| with_jobs.contains(t.name.as_str()))
                    .map(|t| t.name.clone())
                    .collect(),
            });
        }
        Ok(Self {
            widen_types: false,
            staging_dataset: staging_dataset_name(dataset, &package.load_id),
            dataset: dataset.to_string(),
            boundary: package.state.created_at.map(|t| t.to_rfc3339()),
            chains,
        })
    }

    /// Refuses names the destination would cut, before anything is created: the dataset's, this
    /// load's staging dataset's when the load uses one, and those of every table it loads and
    /// their columns.
    pub fn check_names(&self, package: &LoadPackage, dialect: &SqlDialect) -> Result<()> {
        for table in self.final_tables().iter().filter_map(|t| package.schema.table(t)) {
            crate::sql::check_length(dialect, &table.name, || format!("table name `{}`", table.name))?;
            for column in table.complete_columns() {
                crate::sql::check_length(dialect, &column.name, || {
                    format!("column name `{}` of table `{}`", column.name, table.name)
                })?;
            }
        }
        crate::sql::check_length(dialect, &self.dataset, || format!("dataset name `{}`", self.dataset))?;
        if self.uses_staging() {
            crate::sql::check_length(dialect, &self.staging_dataset, || {
                format!(
                    "the staging dataset name `{}` (of dataset `{}`; choose a shorter dataset)",
                    self.staging_dataset, self.dataset
                )
            })?;
        }
        Ok(())
    }

    /// Tables to create or extend in the final dataset: every chain table plus dlt's own and
    /// berth's journal.
    pub fn final_tables(&self) -> Vec<String> {
        let mut tables: Vec<String> = [VERSION_TABLE, LOADS_TABLE, PIPELINE_STATE_TABLE, JOURNAL_TABLE]
            .into_iter()
            .map(str::to_string)
            .collect();
        for chain in &self.chains {
            for t in &chain.tables {
                if !tables.contains(t) {
                    tables.push(t.clone());
                }
            }
        }
        tables
    }

    /// Tables to create or extend in the staging dataset.
    pub fn staging_tables(&self) -> Vec<String> {
        self.chains
            .iter()
            .filter(|c| c.action.loads_to_staging())
            .flat_map(|c| c.tables.iter().cloned())
            .collect()
    }

    /// The chain a table belongs to.
    pub fn chain_of(&self, table: &str) -> Option<&ChainPlan> {
        self.chains.iter().find(|c| c.tables.iter().any(|t| t == table))
    }

    /// The dataset a job of `table` loads into.
    pub fn job_dataset(&self, table: &str) -> &str {
        match self.chain_of(table) {
            Some(chain) if chain.action.loads_to_staging() => &self.staging_dataset,
            _ => &self.dataset,
        }
    }

    /// Statements that run once the tables exist and before any job, on a first load of the
    /// package into a dataset the migration just created: see [`PackagePlan::init_statements_for`].
    pub fn init_statements(&self, dialect: &SqlDialect) -> Vec<SqlStatement> {
        let none = BTreeSet::new();
        self.init_statements_for(
            dialect,
            self.chains.iter().map(|c| (c, self.staging(c, dialect, &none))),
        )
    }

    /// Empties the final tables of truncate-and-insert chains and the staging tables of staging
    /// chains (all of a chain's staging tables, so rows of an earlier package can never be copied
    /// again), for the `chains` given with their [`Staging`] decision (a resumed package must not
    /// empty a chain some of whose jobs already committed).
    pub fn init_statements_for<'a>(
        &'a self,
        dialect: &SqlDialect,
        chains: impl IntoIterator<Item = (&'a ChainPlan, Staging)>,
    ) -> Vec<SqlStatement> {
        let mut statements = Vec::new();
        for (chain, staging) in chains {
            let dataset = match chain.action {
                ChainAction::TruncateAndInsert => &self.dataset,
                a if a.loads_to_staging() => &self.staging_dataset,
                _ => continue,
            };
            for table in &chain.tables {
                statements.push(sql::delete_all(dialect, dataset, table).into());
                if dialect.unlogged_staging && chain.action.loads_to_staging() {
                    // Emptied just now, so switching is cheap.
                    statements.push(SqlStatement::SetLogged {
                        table: dialect.table_name(dataset, table),
                        logged: staging.logged,
                    });
                }
            }
        }
        statements
    }

    /// Does `chain` finish by moving its staging tables into the dataset?
    fn swaps_staging(&self, chain: &ChainPlan, dialect: &SqlDialect) -> bool {
        chain.action == ChainAction::StagingOptimized && dialect.supports_set_schema
    }

    /// The one decision about `chain`'s staging tables: whether its merge may end by moving the
    /// staging table into the dataset, and so whether they are logged. `new_tables` are the final
    /// tables this package's migration created.
    ///
    /// A merge may move its staging tables when every table of the chain is one the migration
    /// created and this package has jobs for, the root has a one-column primary key (whose
    /// staged values are checked for duplicates), the strategy inserts every staged row into
    /// empty tables (insert-only: of a root alone), and the destination can move tables. A
    /// table that is moved or swapped into the dataset must be logged, or it would lose its rows
    /// in a crash: `movable` implies `logged` by construction.
    pub fn staging(&self, chain: &ChainPlan, dialect: &SqlDialect, new_tables: &BTreeSet<String>) -> Staging {
        let movable = chain.action.measures_staged_rows()
            && chain
                .tables
                .iter()
                .all(|t| new_tables.contains(t) && chain.tables_with_jobs.contains(t))
            && chain.primary_key_columns == 1
            && dialect.supports_set_schema
            // Insert-only takes a nested row staged twice once: only its root moves.
            && (chain.tables.len() == 1 || chain.action != ChainAction::Merge(MergeStrategy::InsertOnly));
        Staging {
            movable,
            logged: movable || self.swaps_staging(chain, dialect),
        }
    }

    /// The staging dataset, when some chain loads into it.
    pub fn uses_staging(&self) -> bool {
        self.chains.iter().any(|c| c.action.loads_to_staging())
    }

    /// `DROP SCHEMA … CASCADE` of this load's staging dataset, run once the load is committed.
    pub fn drop_staging(&self, dialect: &SqlDialect) -> Option<SqlStatement> {
        self.uses_staging()
            .then(|| sql::drop_schema_cascade(dialect, &self.staging_dataset).into())
    }

    /// The operations that run after all jobs of `chain` loaded, as DataFusion plans over the
    /// staging and final tables.
    pub fn followup_ops(
        &self,
        chain: &ChainPlan,
        package: &LoadPackage,
        dialect: &SqlDialect,
        state: &FinalState,
    ) -> Result<Vec<FollowupOp>> {
        let mut ops = Vec::new();
        match chain.action {
            ChainAction::Append | ChainAction::TruncateAndInsert => {}
            ChainAction::StagingOptimized if self.swaps_staging(chain, dialect) => {
                // Readers see the old rows until the commit, then the new ones: never an empty
                // table (dlt #2428).
                for name in &chain.tables {
                    ops.push(FollowupOp::MoveTable {
                        source: TableRef::new(&self.staging_dataset, name),
                        dataset: self.dataset.clone(),
                        unique_columns: package
                            .schema
                            .table(name)
                            .map(followup::unique_columns)
                            .unwrap_or_default(),
                    });
                }
            }
            // Without a way to move tables, staging-optimized overwrites each table in one step
            // readers see whole ([`FollowupOp::Overwrite`]); insert-from-staging copies like dlt.
            ChainAction::InsertFromStaging | ChainAction::StagingOptimized => {
                let builder = followup::PlanBuilder::new(dialect);
                for name in &chain.tables {
                    let table = package.schema.table(name).ok_or_else(|| Error::Unsupported {
                        message: format!("table `{name}` is not in the package schema"),
                    })?;
                    let columns: Vec<String> = table.complete_columns().map(|c| c.name.clone()).collect();
                    let staging = TableRef::new(&self.staging_dataset, name);
                    let query = builder
                        .scan(&staging, table, None)?
                        .project(columns.iter().map(|c| builder.bare(c)).collect::<Vec<_>>())?
                        .build()?;
                    let target = TableRef::new(&self.dataset, name);
                    if chain.action == ChainAction::StagingOptimized {
                        ops.push(FollowupOp::Overwrite {
                            target,
                            source: staging,
                            columns,
                            query,
                        });
                    } else {
                        ops.push(FollowupOp::Truncate { target: target.clone() });
                        ops.push(FollowupOp::Insert { target, columns, query });
                    }
                }
            }
            ChainAction::Merge(strategy) => {
                let root = package.schema.table(&chain.root).ok_or_else(|| Error::Unsupported {
                    message: format!("table `{}` is not in the package schema", chain.root),
                })?;
                let input = ChainInput {
                    schema: &package.schema,
                    tables: &chain.tables,
                    dataset: &self.dataset,
                    staging_dataset: &self.staging_dataset,
                    boundary: self.boundary.clone(),
                    state,
                    options: crate::conditions::MergeOptions::of(root, strategy)?,
                };
                ops = followup::merge_ops(dialect, &input, strategy)?;
            }
        }
        Ok(ops)
    }

    /// [`PackagePlan::followup_ops`] lowered to `dialect`'s statements; they run in one
    /// transaction where the destination has them.
    pub fn followup_statements(
        &self,
        chain: &ChainPlan,
        package: &LoadPackage,
        dialect: &SqlDialect,
        state: &FinalState,
    ) -> Result<Vec<SqlStatement>> {
        let lowered = lower::lower(dialect, &self.followup_ops(chain, package, dialect, state)?)?;
        // Into an empty table a merge is a plain insert: nothing to join, nothing to analyze.
        let joins = matches!(chain.action, ChainAction::Merge(_)) && !state.is_empty(&chain.root);
        let Some(work_mem) = dialect.followup_work_mem.filter(|_| joins && !lowered.is_empty()) else {
            return Ok(lowered);
        };
        let mut statements = vec![SqlStatement::SetLocal {
            name: Ident::new("work_mem"),
            value: work_mem.to_string(),
        }];
        for table in &chain.tables_with_jobs {
            let columns = match package.schema.table(table) {
                Some(table) => planner_columns(table).map(|c| dialect.ident(c)).collect(),
                None => Vec::new(),
            };
            statements.push(SqlStatement::Analyze {
                table: dialect.table_name(&self.staging_dataset, table),
                columns,
            });
        }
        statements.extend(lowered);
        Ok(statements)
    }
}

/// The columns of a staging table a merge's follow-up matches, links or filters on: keys,
/// `_dlt_id`, dlt's row links and the columns of the strategy's hints. `ANALYZE` samples only
/// these (sampling every column of a 500k-row narrow table took 160 ms, its key 66 ms), and all
/// of them (none listed) when the table has a source filter, whose SQL may name any column.
fn planner_columns(table: &Table) -> impl Iterator<Item = &str> {
    let filtered = table.extra.contains_key(crate::conditions::SOURCE_FILTER);
    let columns: Vec<&str> = table
        .complete_columns()
        .filter(|c| {
            c.primary_key
                || c.merge_key
                || c.unique
                || c.row_key
                || c.parent_key
                || c.root_key
                || c.hard_delete
                || c.valid_from
                || c.valid_to
                || c.row_version
                || c.dedup_sort.is_some()
                || c.name == DLT_ID
        })
        .map(|c| c.name.as_str())
        .collect();
    let all = filtered || columns.is_empty();
    columns.into_iter().filter(move |_| !all)
}

/// How the chain rooted at `root` is written: its write disposition and strategy, refused when
/// the destination does not support it.
fn chain_action(
    package: &LoadPackage,
    root: &Table,
    options: &PlanOptions,
    caps: &PlanCapabilities,
) -> Result<ChainAction> {
    let schema = &package.schema;
    Ok(match schema.write_disposition(root) {
        WriteDisposition::Append => ChainAction::Append,
        WriteDisposition::Skip => {
            return Err(Error::Unsupported {
                message: format!(
                    "table `{}` has write disposition `skip` but jobs in the package",
                    root.name
                ),
            });
        }
        WriteDisposition::Replace => {
            let strategy = options.replace_strategy;
            if !caps.replace_strategies.contains(&strategy) {
                return Err(Error::Unsupported {
                    message: format!(
                        "table `{}`: replace strategy `{strategy}` is not available on this destination \
                         (it supports {})",
                        root.name,
                        list(&caps.replace_strategies)
                    ),
                });
            }
            match strategy {
                ReplaceStrategy::TruncateAndInsert => ChainAction::TruncateAndInsert,
                ReplaceStrategy::InsertFromStaging => ChainAction::InsertFromStaging,
                ReplaceStrategy::StagingOptimized => ChainAction::StagingOptimized,
            }
        }
        WriteDisposition::Merge => {
            let strategy = schema.merge_strategy(root);
            if !caps.merge_strategies.contains(&strategy) {
                return Err(Error::Unsupported {
                    message: format!(
                        "table `{}`: merge strategy `{strategy}` is not supported by this destination{}",
                        root.name,
                        if caps.merge_strategies.is_empty() {
                            " (berth does not load merge tables yet)".to_string()
                        } else {
                            format!(" (it supports {})", list(&caps.merge_strategies))
                        }
                    ),
                });
            }
            // dlt 1.31's merge options, parsed and checked now: a bad condition stops the
            // package before anything of it is touched.
            crate::conditions::MergeOptions::of(root, strategy)?;
            ChainAction::Merge(strategy)
        }
    })
}

fn list<T: std::fmt::Display>(items: &[T]) -> String {
    if items.is_empty() {
        return "none".into();
    }
    items.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
}
