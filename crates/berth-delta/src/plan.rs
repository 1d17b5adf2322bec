//! What a load into a lake would do, for `berth plan --destination delta:…`: the same load
//! program the [`DeltaExecutor`](crate::DeltaExecutor) runs, recorded instead of run — tables
//! created or evolved, each commit with its application transaction, the follow-up's steps (as
//! SQL: the DataFusion plans the lake executes) grouped into the commits they land in, and dlt's
//! bookkeeping files. Nothing is read or written.

use std::sync::{Mutex, PoisonError};

use async_trait::async_trait;
use berth_destination::{JobMetrics, MigrationReport};
use berth_loader::executor::{ChainCall, Executor, StepResult, Unit, UnitEnd};
use berth_loader::explain::{ExplainOptions, Phase, Phases, Step};
use berth_loader::program::LoadProgram;
use berth_model::{LoadPackage, ReplaceStrategy, Table};
use berth_plan::followup::{FollowupOp, TableRef, staged_facts_plan};
use berth_plan::{ChainAction, FinalState, PackagePlan, PlanOptions, SqlDialect};

use crate::followup::{Event, schedule};
use crate::write::app_id;
use crate::{delta_capabilities, delta_dialect, types};

/// The phases of loading `package` into a lake (see the module docs).
pub async fn explain(package: &LoadPackage, options: &ExplainOptions) -> berth_loader::Result<Vec<Phase>> {
    let recorder = Recorder {
        dialect: delta_dialect(),
        assume_empty: options.assume_empty,
        phases: Phases::default(),
        staging: Mutex::new(None),
    };
    berth_loader::explain::explain_with(package, &recorder, &options.plan).await?;
    Ok(recorder.phases.into_inner())
}

/// Records the lake's steps instead of running them.
#[derive(Debug)]
struct Recorder {
    dialect: SqlDialect,
    assume_empty: bool,
    phases: Phases,
    /// The staging dataset, when the plan loads into one.
    staging: Mutex<Option<String>>,
}

fn note(text: impl Into<String>) -> Step {
    Step::Note(text.into())
}

fn is_dlt_table(name: &str) -> bool {
    name.starts_with("_dlt_")
}

/// A table's columns as the lake types them, with its partition columns.
fn table_shape(table: &Table) -> String {
    let schema = types::delta_schema(table);
    let columns: Vec<String> = schema
        .fields()
        .iter()
        .map(|f| format!("{} {}", f.name(), f.data_type()))
        .collect();
    let partitions: Vec<&str> = table
        .complete_columns()
        .filter(|c| c.partition)
        .map(|c| c.name.as_str())
        .collect();
    let mut shape = format!("({})", columns.join(", "));
    if !partitions.is_empty() {
        shape.push_str(&format!(" partitioned by ({})", partitions.join(", ")));
    }
    shape
}

impl Recorder {
    fn push(&self, title: impl Into<String>, steps: Vec<Step>) {
        self.phases.push(title, steps);
    }

    fn extend_last(&self, steps: Vec<Step>) {
        self.phases.extend_last(steps);
    }

    fn truncation(load_id: &str, dataset: &str, table: &str) -> Step {
        note(format!(
            "{dataset}.{table}: a commit removing every data file (txn {})",
            app_id(load_id, &format!("truncate:{table}"))
        ))
    }

    /// The steps of a follow-up: its schedule, each step with the SQL of its plan.
    fn followup_steps(&self, ops: &[FollowupOp], prefix: &str) -> StepResult<Vec<Step>> {
        let mut steps = Vec::new();
        let sql = |op: &FollowupOp| -> StepResult<Vec<Step>> {
            let lowered = berth_plan::lower::lower(&self.dialect, std::slice::from_ref(op))?;
            Ok(lowered.into_iter().map(Step::Sql).collect())
        };
        for event in schedule(ops)? {
            match event {
                Event::Begin { target, ordinal } => steps.push(note(format!(
                    "commit {ordinal} to {target} (txn {prefix}:{ordinal}; skipped on a rerun where it landed) \
                     takes:"
                ))),
                Event::Work(i) => {
                    steps.push(note("  a work table, in memory:"));
                    steps.extend(sql(&ops[i])?);
                }
                Event::Change(i) => {
                    steps.push(note(format!("  {}:", change_kind(&ops[i]))));
                    steps.extend(sql(&ops[i])?);
                }
                Event::Drop(i) => {
                    if let FollowupOp::DropTable { target } = &ops[i] {
                        let work = ops
                            .iter()
                            .any(|op| matches!(op, FollowupOp::CreateTableAs { target: t, .. } if t == target));
                        steps.push(note(if work {
                            format!("the work table {target} is dropped (if any)")
                        } else {
                            format!("the folder of {target} is deleted")
                        }));
                    }
                }
                Event::Commit { target, ordinal } => {
                    steps.push(note(format!("commit {ordinal} to {target} lands")));
                }
            }
        }
        Ok(steps)
    }
}

/// How a change reaches the table's files.
fn change_kind(op: &FollowupOp) -> &'static str {
    match op {
        FollowupOp::Insert { .. } => "new data files with the rows of",
        FollowupOp::Overwrite { .. } => "every data file removed, and new files with the rows of",
        FollowupOp::Truncate { .. } => "every data file removed",
        FollowupOp::Delete { .. } => {
            "the data files holding matching rows (pruned by file statistics and partitions) rewritten without them"
        }
        FollowupOp::Update { .. } => "the data files holding matching rows rewritten with the new values",
        FollowupOp::Merge(_) => {
            "the data files holding matching rows rewritten by the merge, and new files with its new rows"
        }
        _ => "a step",
    }
}

#[async_trait]
impl Executor for Recorder {
    fn describe(&self) -> String {
        "plan (delta)".into()
    }

    fn writes(&self) -> bool {
        false
    }

    fn dialect(&self) -> Option<&SqlDialect> {
        Some(&self.dialect)
    }

    fn plan(&self, package: &LoadPackage, options: &PlanOptions) -> berth_loader::Result<PackagePlan> {
        let plan = PackagePlan::new(package, options, &delta_capabilities())?;
        *self.staging.lock().unwrap_or_else(PoisonError::into_inner) =
            plan.uses_staging().then(|| plan.staging_dataset.clone());
        Ok(plan)
    }

    fn default_replace_strategy(&self) -> ReplaceStrategy {
        ReplaceStrategy::StagingOptimized
    }

    async fn is_loaded(&self, _: &LoadPackage, _: &str) -> StepResult<bool> {
        Ok(false)
    }

    async fn refresh(&self, package: &LoadPackage, program: &LoadProgram) -> StepResult<()> {
        let dropped = &package.state.dropped_tables;
        if dropped.is_empty() || self.assume_empty {
            return Ok(());
        }
        let dataset = program.dataset();
        let mut steps: Vec<Step> = dropped
            .iter()
            .map(|t| note(format!("delete the folder {dataset}/{t}")))
            .collect();
        steps.push(note(format!(
            "delete {dataset}/_dlt_version/{}__*.jsonl (the schema's stored versions)",
            package.schema.name
        )));
        self.push("refresh: drop the tables the package drops", steps);
        Ok(())
    }

    async fn migrate(&self, package: &LoadPackage, plan: &PackagePlan) -> StepResult<MigrationReport> {
        let mut steps = vec![note(format!("{}/init (dlt's marker of a dataset)", plan.dataset))];
        for chain in &plan.chains {
            for name in chain.tables.iter().filter(|t| !is_dlt_table(t)) {
                let Some(table) = package.schema.table(name) else {
                    continue;
                };
                let shape = table_shape(table);
                steps.push(note(format!(
                    "{}.{name}: create the Delta table {shape}, or add the columns it lacks",
                    plan.dataset
                )));
                if chain.action.loads_to_staging() {
                    steps.push(note(format!(
                        "{}.{name}: a staging table {shape}",
                        plan.staging_dataset
                    )));
                }
            }
        }
        steps.push(note(format!(
            "{}/_dlt_version/{}__<time>__<hash>.jsonl: the schema, unless stored",
            plan.dataset, package.schema.name
        )));
        self.push("migrate: datasets, tables, schema version", steps);
        let mut report = MigrationReport::default();
        if self.assume_empty {
            let tables = plan.chains.iter().flat_map(|c| c.tables.iter());
            report.created_tables = tables.map(|t| format!("{}.{t}", plan.dataset)).collect();
        }
        Ok(report)
    }

    async fn prepare(&self, package: &LoadPackage, program: &LoadProgram) -> StepResult<()> {
        let load_id = package.load_id.to_string();
        let mut steps = Vec::new();
        for chain in program.chains.iter().filter(|c| c.empties()) {
            let dataset = match chain.plan.action {
                ChainAction::TruncateAndInsert => &program.plan.dataset,
                _ => &program.plan.staging_dataset,
            };
            for name in chain.plan.tables.iter().filter(|t| !is_dlt_table(t)) {
                steps.push(Self::truncation(&load_id, dataset, name));
            }
        }
        if program.refresh && !self.assume_empty {
            for name in package.state.truncated_tables.iter().filter(|t| !is_dlt_table(t)) {
                steps.push(Self::truncation(&load_id, program.dataset(), name));
            }
        }
        if !steps.is_empty() {
            self.push("prepare: empty the tables the jobs load into", steps);
        }
        self.push("load jobs (in parallel, a commit each)", Vec::new());
        Ok(())
    }

    async fn load_unit(&self, unit: Unit<'_>) -> StepResult<UnitEnd> {
        let job = &unit.job.job;
        let step = if is_dlt_table(&job.name.table) {
            note(format!(
                "job {} ({} bytes): dlt's table, written as dlt's files when the load commits",
                job.name, job.size
            ))
        } else {
            let txn = app_id(unit.package.load_id.as_ref(), &format!("job:{}", unit.job.key.stored()));
            note(format!(
                "job {} ({} bytes): its rows as new data files of {}.{}, one commit (txn {txn}, version: the rows)",
                job.name, job.size, unit.job.dataset, job.name.table
            ))
        };
        self.extend_last(vec![step]);
        Ok(UnitEnd::Loaded(JobMetrics::default()))
    }

    async fn measure(&self, at: ChainCall<'_>, mut state: FinalState) -> StepResult<FinalState> {
        let (package, program, chain) = (at.package, at.program, at.chain);
        if self.assume_empty {
            state.empty_tables.extend(chain.plan.tables.iter().cloned());
        }
        let root = package.schema.table(&chain.plan.root);
        if let Some(root) = root.filter(|_| chain.plan.action.measures_staged_rows()) {
            let staging = TableRef::new(&program.plan.staging_dataset, &root.name);
            if let Some(query) = staged_facts_plan(&self.dialect, root, &staging)? {
                let query = berth_plan::sql::to_query(&self.dialect, query.into())?;
                self.push(
                    format!(
                        "measure the staged rows of `{}` (never the final tables, so the follow-up is the same on \
                         every run)",
                        chain.plan.root
                    ),
                    vec![Step::Sql(
                        berth_plan::sqlparser::ast::Statement::Query(Box::new(query)).into(),
                    )],
                );
            }
        }
        Ok(state)
    }

    async fn followup(&self, at: ChainCall<'_>, state: &FinalState) -> StepResult<usize> {
        let (package, program, chain) = (at.package, at.program, at.chain);
        // What the staged rows are like is known when loading; without it, the general case.
        let ops = program.plan.followup_ops(&chain.plan, package, &self.dialect, state)?;
        if ops.is_empty() {
            return Ok(0);
        }
        let prefix = app_id(package.load_id.as_ref(), &format!("followup:{}", chain.plan.root));
        let steps = self.followup_steps(&ops, &prefix)?;
        self.push(
            format!(
                "follow-up of `{}` ({:?}): DataFusion over Delta scans, a commit per table",
                chain.plan.root, chain.plan.action
            ),
            steps,
        );
        Ok(ops.len())
    }

    async fn commit(&self, package: &LoadPackage, program: &LoadProgram) -> StepResult<()> {
        let dataset = program.dataset();
        let schema = &package.schema.name;
        self.push(
            "commit: dlt's bookkeeping files",
            vec![
                note(format!(
                    "{dataset}/_dlt_pipeline_state/<pipeline>__{}__<hash>.jsonl, when the package carries state",
                    package.load_id
                )),
                note(format!(
                    "{dataset}/_dlt_loads/{schema}__{}.jsonl, last: the package is loaded",
                    package.load_id
                )),
            ],
        );
        Ok(())
    }

    async fn clean_up(&self, _dataset: &str, _load_id: &str) {
        let staging = self.staging.lock().unwrap_or_else(PoisonError::into_inner).clone();
        if let Some(staging) = staging {
            self.push(
                "clean up: this load's staging tables",
                vec![note(format!("delete the folder {staging}"))],
            );
        }
    }
}
