//! A chain's follow-up — the same [`FollowupOp`]s the SQL destinations lower to statements —
//! executed by DataFusion over Delta scans, as Delta commits.
//!
//! Delta has no multi-table transactions, so a follow-up commits **per table**: consecutive
//! steps on one table whose queries do not read that table (a delete and the insert after it, a
//! truncation and the insert after it) are computed against the same snapshot and committed
//! together, so readers see a table either before or after them, never in between (a replace is
//! one overwrite commit). A step that reads a table with uncommitted steps commits those first,
//! and commits happen in the order of their first step.
//!
//! **Exactly once.** The `k`-th commit of the follow-up to a table carries the application
//! transaction `berth:<load id>:followup:<root>:<k>`. The steps are the same on every run of a
//! package (the executor never lets what it measured of the final tables change them), so a
//! rerun after a crash skips the commits that landed and computes the others from the same
//! inputs.
//!
//! **Copy on write.** A delete, update or merge finds the data files holding matching rows (a
//! scan with the file column, pruned by Delta's file statistics and partitions), rewrites those
//! files without (or with changed) rows, and commits their `remove`s with the new files' `add`s.
//! Work tables (row ids a delete-insert collects) live in memory for the follow-up's length.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{Schema as ArrowSchema, SchemaRef};
use berth_destination::{Error, Result};
use berth_plan::SqlDialect;
use berth_plan::exec::MergeParts;
use berth_plan::followup::{FollowupOp, MergeInto, PlanBuilder, TARGET_ALIAS, TableRef};
use datafusion::common::ScalarValue;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::datasource::{MemTable, ViewTable, provider_as_source};
use datafusion::execution::SendableRecordBatchStream;
use datafusion::logical_expr::builder::LogicalTableSource;
use datafusion::logical_expr::{Expr, LogicalPlan, LogicalPlanBuilder, TableScanBuilder, TableSource, cast, lit};
use datafusion::prelude::SessionContext;
use deltalake_core::DeltaTable;
use deltalake_core::kernel::{Action, Add};
use deltalake_core::protocol::{DeltaOperation, SaveMode};
use futures::{StreamExt, TryStreamExt};

use crate::lake::{Lake, delta_error};
use crate::write::{self, Commit, WriteSettings};

/// The column a target scan carries each row's data file in.
const FILE_COLUMN: &str = "__berth_file";

/// What the follow-up of one chain needs.
pub struct FollowupRun<'a> {
    lake: &'a Lake,
    dialect: &'a SqlDialect,
    settings: WriteSettings,
    /// `berth:<load id>:followup:<root>`: the app id prefix of the commits.
    app_prefix: String,
    ctx: SessionContext,
    /// Work tables, in memory.
    work: HashMap<TableRef, (SchemaRef, Vec<RecordBatch>)>,
    /// Commits being prepared, in the order of their first step.
    open: Vec<Group>,
    /// Commits made.
    pub commits: usize,
    /// Commits an earlier run made (skipped).
    pub skipped: usize,
}

impl std::fmt::Debug for FollowupRun<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FollowupRun")
            .field("app_prefix", &self.app_prefix)
            .field("open", &self.open)
            .field("commits", &self.commits)
            .finish_non_exhaustive()
    }
}

/// One commit being prepared: its table's snapshot, the steps' actions so far.
struct Group {
    target: TableRef,
    table: Option<DeltaTable>,
    app_id: String,
    actions: Vec<Action>,
    /// An earlier run committed it: its steps are not run again.
    skipped: bool,
    /// It removes files (rewrites, overwrites): it read the whole table.
    rewrites: bool,
    overwrites: bool,
}

impl std::fmt::Debug for Group {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Group")
            .field("target", &self.target)
            .field("app_id", &self.app_id)
            .field("actions", &self.actions.len())
            .field("skipped", &self.skipped)
            .finish_non_exhaustive()
    }
}

/// What a step does, for grouping.
enum Step<'o> {
    /// Writes a work table (in memory).
    Work,
    /// Adds rows to a Delta table without reading it.
    Adds { target: &'o TableRef },
    /// Reads and changes a Delta table (delete, update, merge, truncate): a commit of its own
    /// (later adds may join it).
    Rewrite { target: &'o TableRef },
    /// Drops a table.
    Drop { target: &'o TableRef },
}

impl<'a> FollowupRun<'a> {
    /// The follow-up of the chain rooted at `root` of load `load_id`.
    pub fn new(lake: &'a Lake, dialect: &'a SqlDialect, settings: WriteSettings, load_id: &str, root: &str) -> Self {
        Self {
            lake,
            dialect,
            settings,
            app_prefix: write::app_id(load_id, &format!("followup:{root}")),
            ctx: SessionContext::new(),
            work: HashMap::new(),
            open: Vec::new(),
            commits: 0,
            skipped: 0,
        }
    }

    /// Runs `ops` in order and commits what they changed, as [`schedule`] orders it.
    pub async fn run(&mut self, ops: &[FollowupOp]) -> Result<()> {
        for event in schedule(ops)? {
            match event {
                Event::Begin { target, ordinal } => self.begin(&target, ordinal).await?,
                Event::Commit { target, .. } => {
                    if self.open.first().map(|g| &g.target) != Some(&target) {
                        return Err(Error::Internal(format!(
                            "the Delta follow-up's next commit is not the one to {target}"
                        )));
                    }
                    self.commit_first().await?;
                }
                Event::Work(i) => self.run_work(&ops[i]).await?,
                Event::Change(i) => self.run_delta(&ops[i]).await?,
                Event::Drop(i) => {
                    if let FollowupOp::DropTable { target } = &ops[i]
                        && self.work.remove(target).is_none()
                    {
                        self.lake
                            .delete_prefix(&self.lake.path(&[&target.dataset, &target.table]))
                            .await?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Opens the next commit to `target`, skipped when an earlier run made it.
    async fn begin(&mut self, target: &TableRef, ordinal: usize) -> Result<()> {
        let app_id = format!("{}:{ordinal}", self.app_prefix);
        let table = self.lake.table(&target.dataset, &target.table).await?;
        let skipped = match &table {
            Some(t) => write::committed(t, &target.to_string(), &app_id).await?.is_some(),
            None => false,
        };
        if skipped {
            self.skipped += 1;
        }
        self.open.push(Group {
            target: target.clone(),
            table,
            app_id,
            actions: Vec::new(),
            skipped,
            rewrites: false,
            overwrites: false,
        });
        Ok(())
    }

    async fn commit_first(&mut self) -> Result<()> {
        if self.open.is_empty() {
            return Ok(());
        }
        let group = self.open.remove(0);
        if group.skipped || group.actions.is_empty() {
            return Ok(());
        }
        let Some(mut table) = group.table else {
            return Err(missing(&group.target));
        };
        let operation = if group.rewrites {
            DeltaOperation::Merge {
                predicate: None,
                merge_predicate: Some(format!("berth follow-up {}", group.app_id)),
                matched_predicates: Vec::new(),
                not_matched_predicates: Vec::new(),
                not_matched_by_source_predicates: Vec::new(),
            }
        } else {
            DeltaOperation::Write {
                mode: if group.overwrites {
                    SaveMode::Overwrite
                } else {
                    SaveMode::Append
                },
                partition_by: write::partition_columns(&table),
                predicate: None,
            }
        };
        let commit = Commit {
            app_id: group.app_id,
            version: 0,
            operation,
        };
        write::commit(&mut table, &group.target.to_string(), group.actions, commit).await?;
        self.commits += 1;
        Ok(())
    }

    /// The open commit to `target` (the step's).
    fn group(&mut self, target: &TableRef) -> Result<&mut Group> {
        self.open
            .iter_mut()
            .rev()
            .find(|g| &g.target == target)
            .ok_or_else(|| Error::Internal(format!("a Delta follow-up step on {target} ran outside a commit")))
    }

    /// A work-table step: the rows in memory.
    async fn run_work(&mut self, op: &FollowupOp) -> Result<()> {
        match op {
            FollowupOp::CreateTableAs { target, query } => {
                let batches = self.collect(query.clone()).await?;
                let schema = Arc::new(query.schema().as_arrow().clone());
                self.work.insert(target.clone(), (schema, batches));
            }
            FollowupOp::Insert { target, columns, query } => {
                let batches = self.collect(query.clone()).await?;
                let (schema, rows) = self.work.get_mut(target).ok_or_else(|| missing(target))?;
                for batch in batches {
                    let renamed = rename(&batch, columns)?;
                    rows.push(berth_plan::exec::conform(&renamed, schema)?);
                }
            }
            other => return Err(unsupported(other)),
        }
        Ok(())
    }

    /// A step on a Delta table: its actions join the open commit.
    async fn run_delta(&mut self, op: &FollowupOp) -> Result<()> {
        let target = match op {
            FollowupOp::Merge(merge) => &merge.target,
            FollowupOp::Insert { target, .. }
            | FollowupOp::Overwrite { target, .. }
            | FollowupOp::Truncate { target }
            | FollowupOp::Delete { target, .. }
            | FollowupOp::Update { target, .. } => target,
            other => return Err(unsupported(other)),
        };
        if self.group(target)?.skipped {
            return Ok(());
        }
        match op {
            FollowupOp::Insert { target, columns, query } => {
                let adds = self.write_query(target, query.clone(), Some(columns)).await?;
                self.group(target)?.actions.extend(adds.into_iter().map(Action::Add));
            }
            FollowupOp::Overwrite {
                target, columns, query, ..
            } => self.overwrite(target, columns, query.clone()).await?,
            FollowupOp::Truncate { target } => {
                let removes = self.remove_all(target)?;
                let group = self.group(target)?;
                group.actions.extend(removes);
                group.overwrites = true;
            }
            FollowupOp::Delete { target, predicate } => {
                self.delete_matching(target, predicate.clone()).await?;
            }
            FollowupOp::Update {
                target,
                assignments,
                predicate,
            } => self.update(target, assignments, predicate.clone()).await?,
            FollowupOp::Merge(merge) => self.merge(merge).await?,
            other => return Err(unsupported(other)),
        }
        Ok(())
    }

    async fn overwrite(&mut self, target: &TableRef, columns: &Vec<String>, query: LogicalPlan) -> Result<()> {
        let removes = self.remove_all(target)?;
        let adds = self.write_query(target, query, Some(columns)).await?;
        let group = self.group(target)?;
        group.actions.extend(removes);
        group.actions.extend(adds.into_iter().map(Action::Add));
        group.overwrites = true;
        Ok(())
    }

    fn base(&self, target: &TableRef) -> Result<&DeltaTable> {
        self.open
            .iter()
            .rev()
            .find(|g| &g.target == target)
            .and_then(|g| g.table.as_ref())
            .ok_or_else(|| missing(target))
    }

    fn remove_all(&self, target: &TableRef) -> Result<Vec<Action>> {
        write::remove_all(self.base(target)?, &target.to_string())
    }

    /// Writes the rows of `query` (renamed to `columns`) as new files of `target`.
    async fn write_query(
        &self,
        target: &TableRef,
        query: LogicalPlan,
        columns: Option<&Vec<String>>,
    ) -> Result<Vec<Add>> {
        let stream = self.stream(query).await?;
        let columns = columns.cloned();
        let batches = stream.map(move |batch| -> Result<RecordBatch> {
            let batch = batch?;
            Ok(match &columns {
                Some(columns) => rename(&batch, columns)?,
                None => batch,
            })
        });
        let table = self.base(target)?;
        let adds = write::write_files(table, &target.to_string(), self.settings, Box::pin(batches), &|| false)
            .await?
            .adds;
        Ok(adds)
    }

    /// The target scanned as a DML statement sees it (aliased), with its file column, over
    /// `files` only when given.
    async fn target_scan(&self, target: &TableRef, files: Option<&HashSet<String>>) -> Result<LogicalPlanBuilder> {
        let table = self.base(target)?;
        let schema = write::arrow_schema(table, &target.to_string())?;
        let source = self.delta_source(table, &schema, true, files).await?;
        let b = PlanBuilder::new(self.dialect);
        Ok(LogicalPlanBuilder::scan(b.reference(target), source, None)?.alias(b.target_qualifier(target))?)
    }

    /// The data files (as the log names them) holding rows of `target` for which `predicate` holds.
    async fn matching_files(&self, target: &TableRef, predicate: Expr) -> Result<HashSet<String>> {
        let b = PlanBuilder::new(self.dialect);
        let qualifier = b.target_qualifier(target);
        let plan = self
            .target_scan(target, None)
            .await?
            .filter(predicate)?
            .project(vec![Expr::Column(datafusion::common::Column::new(
                Some(qualifier),
                FILE_COLUMN,
            ))])?
            .distinct()?
            .build()?;
        let mut found = HashSet::new();
        for batch in self.collect(plan).await? {
            let column = arrow::compute::cast(batch.column(0), &arrow::datatypes::DataType::Utf8)?;
            let column = column.as_string::<i32>();
            found.extend(
                (0..column.len())
                    .filter(|i| column.is_valid(*i))
                    .map(|i| column.value(i).to_string()),
            );
        }
        let table = self.base(target)?;
        let state = table
            .snapshot()
            .map_err(|e| delta_error(self.lake.display(), &target.to_string(), e))?;
        // The scan names files by URL; the log by path relative to the table.
        Ok(state
            .log_data()
            .iter()
            .map(|f| f.path().to_string())
            .filter(|path| {
                found
                    .iter()
                    .any(|url| url == path || url.ends_with(&format!("/{path}")))
            })
            .collect())
    }

    /// Rewrites the files of `target` holding rows for which `predicate` holds, without them.
    async fn delete_matching(&mut self, target: &TableRef, predicate: Expr) -> Result<()> {
        let files = self.matching_files(target, predicate.clone()).await?;
        if files.is_empty() {
            return Ok(());
        }
        let kept = self
            .target_scan(target, Some(&files))
            .await?
            .filter(predicate.is_not_true())?;
        let adds = self
            .write_query(target, self.without_file_column(kept, target)?, None)
            .await?;
        self.replace_files(target, &files, adds)
    }

    async fn update(&mut self, target: &TableRef, assignments: &[(String, Expr)], predicate: Expr) -> Result<()> {
        let files = self.matching_files(target, predicate.clone()).await?;
        if files.is_empty() {
            return Ok(());
        }
        let b = PlanBuilder::new(self.dialect);
        let qualifier = b.target_qualifier(target);
        let schema = write::arrow_schema(self.base(target)?, &target.to_string())?;
        let projection = berth_plan::exec::update_projection(&b, &qualifier, &schema, assignments);
        let updated = self
            .target_scan(target, Some(&files))
            .await?
            .filter(predicate.clone())?
            .project(projection)?
            .build()?;
        let kept = self
            .target_scan(target, Some(&files))
            .await?
            .filter(predicate.is_not_true())?;
        let mut adds = self.write_query(target, updated, None).await?;
        adds.extend(
            self.write_query(target, self.without_file_column(kept, target)?, None)
                .await?,
        );
        self.replace_files(target, &files, adds)
    }

    /// `MERGE` whose matched rows are replaced by their source row (or deleted), as the memory
    /// catalog runs it ([`MergeParts`]): the files holding replaced rows are rewritten without
    /// them, the source rows to keep come in, all computed against the table as it was.
    async fn merge(&mut self, merge: &MergeInto) -> Result<()> {
        let b = PlanBuilder::new(self.dialect);
        let table = self.base(&merge.target)?;
        let schema = write::arrow_schema(table, &merge.target.to_string())?;
        let source = self.delta_source(table, &schema, false, None).await?;
        let target_scan =
            LogicalPlanBuilder::scan(b.reference(&merge.target), source, None)?.alias(b.relation(TARGET_ALIAS))?;
        let parts = MergeParts::new(merge, &b, target_scan)?;
        let mut adds = Vec::new();
        for rows in parts.inserts {
            adds.extend(
                self.write_query(&merge.target, rows, Some(&merge.insert_columns))
                    .await?,
            );
        }
        let files = self.matching_files(&merge.target, parts.replaced.clone()).await?;
        if !files.is_empty() {
            let kept = self
                .target_scan(&merge.target, Some(&files))
                .await?
                .filter(parts.replaced.is_not_true())?;
            adds.extend(
                self.write_query(&merge.target, self.without_file_column(kept, &merge.target)?, None)
                    .await?,
            );
        }
        self.replace_files(&merge.target, &files, adds)
    }

    /// The rows of a target scan with the table's columns only.
    fn without_file_column(&self, rows: LogicalPlanBuilder, target: &TableRef) -> Result<LogicalPlan> {
        let schema = write::arrow_schema(self.base(target)?, &target.to_string())?;
        let b = PlanBuilder::new(self.dialect);
        let qualifier = b.target_qualifier(target);
        Ok(rows
            .project(
                schema
                    .fields()
                    .iter()
                    .map(|f| b.col(&qualifier, f.name()).alias(f.name()))
                    .collect::<Vec<_>>(),
            )?
            .build()?)
    }

    fn replace_files(&mut self, target: &TableRef, files: &HashSet<String>, adds: Vec<Add>) -> Result<()> {
        let removes = write::remove_files(self.base(target)?, &target.to_string(), files)?;
        let group = self.group(target)?;
        group.rewrites |= !removes.is_empty();
        group.actions.extend(removes.into_iter().map(Action::Remove));
        group.actions.extend(adds.into_iter().map(Action::Add));
        Ok(())
    }

    /// A Delta table as a DataFusion source with `schema`'s columns (by name, cast; missing ones
    /// NULL), plus the file column when asked, over `files` only when given.
    async fn delta_source(
        &self,
        table: &DeltaTable,
        schema: &SchemaRef,
        file_column: bool,
        files: Option<&HashSet<String>>,
    ) -> Result<Arc<dyn TableSource>> {
        let what = table.table_url().to_string();
        table
            .update_datafusion_session(&self.ctx.state())
            .map_err(|e| delta_error(self.lake.display(), &what, e))?;
        let mut builder = table.table_provider();
        if file_column {
            builder = builder.with_file_column(FILE_COLUMN);
        }
        if let Some(files) = files {
            builder = builder.with_file_paths(files.iter().cloned());
        }
        let provider = builder.await?;
        let scan = LogicalPlanBuilder::scan("delta", provider_as_source(provider), None)?;
        let provided = Arc::clone(scan.schema());
        let mut projection: Vec<Expr> = schema
            .fields()
            .iter()
            .map(|f| match provided.qualified_field_with_unqualified_name(f.name()) {
                Ok((qualifier, field)) => {
                    let column = Expr::Column(datafusion::common::Column::new(qualifier.cloned(), field.name()));
                    if field.data_type() == f.data_type() {
                        column.alias(f.name())
                    } else {
                        cast(column, f.data_type().clone()).alias(f.name())
                    }
                }
                Err(_) => {
                    let null = ScalarValue::try_from(f.data_type()).unwrap_or(ScalarValue::Null);
                    lit(null).alias(f.name())
                }
            })
            .collect();
        if file_column {
            projection.push(Expr::Column(datafusion::common::Column::new_unqualified(FILE_COLUMN)));
        }
        let plan = scan.project(projection)?.build()?;
        Ok(provider_as_source(Arc::new(ViewTable::new(plan, None))))
    }

    /// Points every placeholder scan of `plan` (and of its subqueries) at the table's committed
    /// state, or the work table in memory.
    async fn resolve(&self, plan: LogicalPlan) -> Result<LogicalPlan> {
        let mut sources: HashMap<(TableRef, Vec<String>), Arc<dyn TableSource>> = HashMap::new();
        let mut wanted = Vec::new();
        plan.apply_with_subqueries(|node| {
            if let LogicalPlan::TableScan(scan) = node
                && scan.source.downcast_ref::<LogicalTableSource>().is_some()
            {
                wanted.push((table_ref(&scan.table_name), scan.source.schema()));
            }
            Ok(TreeNodeRecursion::Continue)
        })?;
        for (at, schema) in wanted {
            let key = (at.clone(), field_names(&schema));
            if sources.contains_key(&key) {
                continue;
            }
            let source = self.source_for(&at, &schema).await?;
            sources.insert(key, source);
        }
        let resolved = plan.transform_up_with_subqueries(|node| {
            let LogicalPlan::TableScan(scan) = &node else {
                return Ok(Transformed::no(node));
            };
            if scan.source.downcast_ref::<LogicalTableSource>().is_none() {
                return Ok(Transformed::no(node));
            }
            let key = (table_ref(&scan.table_name), field_names(&scan.source.schema()));
            let Some(source) = sources.get(&key) else {
                return Ok(Transformed::no(node));
            };
            let scan = TableScanBuilder::new(scan.table_name.clone(), Arc::clone(source))
                .with_projection(scan.projection.clone())
                .with_filters(scan.filters.clone())
                .with_fetch(scan.fetch)
                .build()?;
            Ok(Transformed::yes(LogicalPlan::TableScan(scan)))
        })?;
        Ok(resolved.data)
    }

    async fn source_for(&self, at: &TableRef, schema: &SchemaRef) -> Result<Arc<dyn TableSource>> {
        if let Some((_, batches)) = self.work.get(at) {
            let rows = batches
                .iter()
                .map(|b| berth_plan::exec::conform(b, schema))
                .collect::<berth_plan::Result<Vec<_>>>()?;
            let table = MemTable::try_new(Arc::clone(schema), vec![rows])?;
            return Ok(provider_as_source(Arc::new(table)));
        }
        match self.lake.table(&at.dataset, &at.table).await? {
            Some(table) => self.delta_source(&table, schema, false, None).await,
            None => Ok(provider_as_source(Arc::new(MemTable::try_new(
                Arc::clone(schema),
                vec![vec![]],
            )?))),
        }
    }

    async fn stream(&self, plan: LogicalPlan) -> Result<SendableRecordBatchStream> {
        let plan = self.resolve(plan).await?;
        let frame = self.ctx.execute_logical_plan(plan).await?;
        Ok(frame.execute_stream().await?)
    }

    async fn collect(&self, plan: LogicalPlan) -> Result<Vec<RecordBatch>> {
        let stream = self.stream(plan).await?;
        Ok(stream.try_collect().await.map_err(berth_plan::Error::from)?)
    }

    /// Runs a query over the lake (for measuring staged rows).
    pub async fn query(&self, plan: LogicalPlan) -> Result<Vec<RecordBatch>> {
        self.collect(plan).await
    }
}

fn table_ref(name: &datafusion::common::TableReference) -> TableRef {
    TableRef::new(name.schema().unwrap_or_default(), name.table())
}

fn field_names(schema: &ArrowSchema) -> Vec<String> {
    schema.fields().iter().map(|f| f.name().clone()).collect()
}

/// The tables a step's plans and predicates scan.
/// One thing a follow-up does, in the order it does them: what [`FollowupRun::run`] executes and
/// `berth plan` prints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The `ordinal`-th commit to `target` opens (application transaction
    /// `berth:<load id>:followup:<root>:<ordinal>`; skipped when an earlier run committed it).
    Begin {
        /// The Delta table.
        target: TableRef,
        /// Its commits' ordinal within the follow-up.
        ordinal: usize,
    },
    /// Step `i` fills a work table (in memory).
    Work(usize),
    /// Step `i` changes the table of the open commit (new files, or files rewritten or removed).
    Change(usize),
    /// Step `i` drops a table (a work table, or a Delta table's folder).
    Drop(usize),
    /// The `ordinal`-th commit to `target` lands.
    Commit {
        /// The Delta table.
        target: TableRef,
        /// Its ordinal.
        ordinal: usize,
    },
}

/// The order of a follow-up's steps and commits: consecutive steps on one table that do not
/// read it share a commit; a step that reads a table with an open commit lands that commit (and
/// those opened before it) first; commits land in the order they opened.
pub fn schedule(ops: &[FollowupOp]) -> Result<Vec<Event>> {
    let work_tables: HashSet<&TableRef> = ops
        .iter()
        .filter_map(|op| match op {
            FollowupOp::CreateTableAs { target, .. } => Some(target),
            _ => None,
        })
        .collect();
    let mut events = Vec::new();
    let mut open: Vec<(TableRef, usize)> = Vec::new();
    let mut begun: HashMap<TableRef, usize> = HashMap::new();
    let commit_through = |table: &TableRef, open: &mut Vec<(TableRef, usize)>, events: &mut Vec<Event>| {
        if let Some(last) = open.iter().position(|(t, _)| t == table) {
            for (target, ordinal) in open.drain(..=last) {
                events.push(Event::Commit { target, ordinal });
            }
        }
    };
    let mut begin = |target: &TableRef, open: &mut Vec<(TableRef, usize)>, events: &mut Vec<Event>| {
        let next = begun.entry(target.clone()).or_default();
        let ordinal = *next;
        *next += 1;
        open.push((target.clone(), ordinal));
        events.push(Event::Begin {
            target: target.clone(),
            ordinal,
        });
    };
    for (i, op) in ops.iter().enumerate() {
        let step = classify(op, &work_tables)?;
        // What this step reads must be committed first (its own target aside, for adds).
        for read in &reads_of(op) {
            if !matches!(step, Step::Adds { target } if target == read) {
                commit_through(read, &mut open, &mut events);
            }
        }
        match step {
            Step::Work => events.push(Event::Work(i)),
            Step::Drop { target } => {
                if !work_tables.contains(target) {
                    commit_through(target, &mut open, &mut events);
                }
                events.push(Event::Drop(i));
            }
            Step::Adds { target } => {
                if !open.iter().any(|(t, _)| t == target) {
                    begin(target, &mut open, &mut events);
                }
                events.push(Event::Change(i));
            }
            Step::Rewrite { target } => {
                commit_through(target, &mut open, &mut events);
                begin(target, &mut open, &mut events);
                events.push(Event::Change(i));
            }
        }
    }
    events.extend(
        open.into_iter()
            .map(|(target, ordinal)| Event::Commit { target, ordinal }),
    );
    Ok(events)
}

fn reads_of(op: &FollowupOp) -> HashSet<TableRef> {
    let mut found = HashSet::new();
    let mut plan_reads = |plan: &LogicalPlan| {
        let _ = plan.apply_with_subqueries(|node| {
            if let LogicalPlan::TableScan(scan) = node {
                found.insert(table_ref(&scan.table_name));
            }
            Ok(TreeNodeRecursion::Continue)
        });
    };
    let mut exprs: Vec<&Expr> = Vec::new();
    match op {
        FollowupOp::CreateTableAs { query, .. }
        | FollowupOp::Insert { query, .. }
        | FollowupOp::Overwrite { query, .. } => {
            plan_reads(query);
        }
        FollowupOp::Delete { predicate, .. } => exprs.push(predicate),
        FollowupOp::Update {
            predicate, assignments, ..
        } => {
            exprs.push(predicate);
            exprs.extend(assignments.iter().map(|(_, e)| e));
        }
        FollowupOp::Merge(merge) => {
            plan_reads(&merge.source);
            exprs.extend(merge.delete_when.iter());
            exprs.extend(merge.insert_when.iter());
        }
        FollowupOp::DeleteLocated { .. }
        | FollowupOp::Truncate { .. }
        | FollowupOp::DropTable { .. }
        | FollowupOp::MoveTable { .. } => {}
    }
    for expr in exprs {
        let _ = expr.apply(|e| {
            match e {
                Expr::Exists(x) => plan_reads(&x.subquery.subquery),
                Expr::InSubquery(x) => plan_reads(&x.subquery.subquery),
                Expr::ScalarSubquery(x) => plan_reads(&x.subquery),
                _ => {}
            }
            Ok(TreeNodeRecursion::Continue)
        });
    }
    match op {
        FollowupOp::DeleteLocated { target, rows } => {
            found.insert(target.clone());
            found.insert(rows.clone());
        }
        FollowupOp::Delete { target, .. } | FollowupOp::Update { target, .. } | FollowupOp::Truncate { target } => {
            found.insert(target.clone());
        }
        FollowupOp::Merge(merge) => {
            found.insert(merge.target.clone());
        }
        _ => {}
    }
    found
}

fn classify<'o>(op: &'o FollowupOp, work: &HashSet<&TableRef>) -> Result<Step<'o>> {
    Ok(match op {
        FollowupOp::CreateTableAs { .. } => Step::Work,
        FollowupOp::Insert { target, .. } if work.contains(target) => Step::Work,
        FollowupOp::Insert { target, .. } => Step::Adds { target },
        FollowupOp::Overwrite { target, .. } | FollowupOp::Truncate { target } => Step::Rewrite { target },
        FollowupOp::Delete { target, .. } | FollowupOp::Update { target, .. } => Step::Rewrite { target },
        FollowupOp::Merge(merge) => Step::Rewrite { target: &merge.target },
        FollowupOp::DropTable { target } => Step::Drop { target },
        // Delta tables have no row locators: their dialect never plans a delete by one.
        FollowupOp::MoveTable { .. } | FollowupOp::DeleteLocated { .. } => return Err(unsupported(op)),
    })
}

fn rename(batch: &RecordBatch, columns: &[String]) -> berth_plan::Result<RecordBatch> {
    berth_plan::exec::rename(batch, columns)
}

fn missing(at: &TableRef) -> Error {
    Error::Internal(format!("the Delta table {at} a follow-up step needs does not exist"))
}

fn unsupported(op: &FollowupOp) -> Error {
    Error::Internal(format!("the Delta executor cannot run this follow-up step: {op:?}"))
}
