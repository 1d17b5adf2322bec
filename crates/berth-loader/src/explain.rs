//! What a load would run, without running it (`berth plan`): the package's [`LoadProgram`] run
//! by the loader's own loop through [`ExplainExecutor`], which records the statements of every
//! phase in a dialect instead of sending them, against a destination assumed to have none of the
//! package's datasets yet (or, for the follow-ups, final tables that already hold rows).

use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use async_trait::async_trait;
use berth_destination::{MigrationReport, load_marker, migration_for_empty_destination, refresh_drop_statements};
use berth_model::LoadPackage;
use berth_plan::followup::{StagedFacts, TableRef, staged_facts_plan};
use berth_plan::{FinalState, PackagePlan, PlanCapabilities, PlanOptions, SqlDialect, SqlStatement};
use tokio_util::sync::CancellationToken;

use crate::executor::{ChainCall, Executor, StepResult, Unit, UnitEnd};
use crate::program::{ChainStep, JobStep, LoadProgram};
use crate::{LoaderOptions, NoProgress, Result};

/// One phase of a load and its statements.
#[derive(Debug, Clone)]
pub struct Phase {
    /// What the phase does.
    pub title: String,
    /// Its statements and notes, in order.
    pub steps: Vec<Step>,
}

/// A statement, or a note about work that is not a statement.
#[derive(Debug, Clone)]
pub enum Step {
    /// A statement berth sends.
    Sql(SqlStatement),
    /// Work done another way (a job's rows through the destination's bulk path).
    Note(String),
}

/// The steps of one job for destinations whose jobs are more than rows through a bulk path (a
/// warehouse: upload to the staging bucket, then its COPY command).
pub trait JobSteps: Send + Sync + std::fmt::Debug {
    /// The steps loading `unit`: its job's rows into the job's dataset (`unit.job.emptied`: the
    /// load empties the table first, see `LoadJob::emptied`), journaled in
    /// `unit.journal_dataset`.
    fn steps(&self, unit: &Unit<'_>) -> Result<Vec<Step>>;
}

/// How to explain.
#[derive(Debug, Clone)]
pub struct ExplainOptions {
    /// Planning options (dataset, replace strategy).
    pub plan: PlanOptions,
    /// Assume the final tables are empty, as on a first load: the follow-ups leave out the work
    /// that cannot matter then.
    pub assume_empty: bool,
    /// How jobs load, where the destination says more than "through the bulk path".
    pub jobs: Option<std::sync::Arc<dyn JobSteps>>,
}

/// The phases of loading `package` with `dialect` and `caps`: the program the loader would
/// run, recorded.
pub async fn explain(
    package: &LoadPackage,
    dialect: &SqlDialect,
    caps: &PlanCapabilities,
    options: &ExplainOptions,
) -> Result<Vec<Phase>> {
    let adjusted = dialect.for_naming(package.schema.naming().is_case_sensitive());
    let executor = ExplainExecutor {
        dialect: adjusted.unwrap_or_else(|| dialect.clone()),
        caps: caps.clone(),
        options: options.clone(),
        phases: Phases::default(),
        uses_staging: Mutex::new(false),
    };
    explain_with(package, &executor, &options.plan).await?;
    Ok(executor.phases.into_inner())
}

/// Runs the program loading `package` with `executor`, a recorder that changes nothing
/// ([`Executor::writes`] is false): how an executor with steps of its own (a Delta lake) shows
/// what a load would do, with the same program the load runs.
pub async fn explain_with(package: &LoadPackage, executor: &dyn Executor, plan: &PlanOptions) -> Result<()> {
    let loader_options = LoaderOptions {
        dataset: Some(plan.dataset.clone()),
        replace_strategy: Some(plan.replace_strategy),
        ..LoaderOptions::default()
    };
    let run = crate::run::Run {
        executor,
        options: &loader_options,
        progress: &NoProgress,
        cancel: &CancellationToken::new(),
    };
    run.package(package.clone(), Instant::now()).await?;
    Ok(())
}

/// Records the program's statements instead of running them (see [`explain`]).
#[derive(Debug)]
pub struct ExplainExecutor {
    dialect: SqlDialect,
    caps: PlanCapabilities,
    options: ExplainOptions,
    phases: Phases,
    /// The plan loads into a staging dataset, which the clean-up drops.
    uses_staging: Mutex<bool>,
}

/// The phases a recording executor collects (shared by every executor that explains a load).
#[derive(Debug, Default)]
pub struct Phases(Mutex<Vec<Phase>>);

impl Phases {
    /// Adds a phase.
    pub fn push(&self, title: impl Into<String>, steps: Vec<Step>) {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).push(Phase {
            title: title.into(),
            steps,
        });
    }

    /// Adds steps to the last phase (the jobs').
    pub fn extend_last(&self, steps: Vec<Step>) {
        let mut phases = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(last) = phases.last_mut() {
            last.steps.extend(steps);
        }
    }

    /// The phases, in order.
    pub fn into_inner(self) -> Vec<Phase> {
        self.0.into_inner().unwrap_or_else(PoisonError::into_inner)
    }
}

impl ExplainExecutor {
    fn push(&self, title: impl Into<String>, steps: Vec<Step>) {
        self.phases.push(title, steps);
    }

    fn extend_last(&self, steps: Vec<Step>) {
        self.phases.extend_last(steps);
    }

    /// The steps of loading `unit`.
    fn job_steps(&self, unit: &Unit<'_>) -> Result<Vec<Step>> {
        if let Some(hook) = &self.options.jobs {
            return hook.steps(unit);
        }
        let job = &unit.job.job;
        let target = self.dialect.table_name(&unit.job.dataset, &job.name.table);
        Ok(vec![Step::Note(format!(
            "job {} ({} bytes): rows into {target} through the bulk path, with its journal row in the same \
             transaction",
            job.name, job.size
        ))])
    }
}

fn sql(statements: Vec<SqlStatement>) -> Vec<Step> {
    statements.into_iter().map(Step::Sql).collect()
}

/// What `berth plan` could not explain, as a step error.
fn internal(error: crate::Error) -> berth_destination::Error {
    match error {
        crate::Error::Destination(e) => e,
        crate::Error::Package(e) => e.into(),
        crate::Error::Plan(e) => e.into(),
    }
}

#[async_trait]
impl Executor for ExplainExecutor {
    fn describe(&self) -> String {
        format!("plan ({})", self.dialect.name)
    }

    fn writes(&self) -> bool {
        false
    }

    fn dialect(&self) -> Option<&SqlDialect> {
        Some(&self.dialect)
    }

    fn plan(&self, package: &LoadPackage, options: &PlanOptions) -> Result<PackagePlan> {
        let plan = PackagePlan::new(package, options, &self.caps)?;
        plan.check_names(package, &self.dialect)?;
        *self.uses_staging.lock().unwrap_or_else(PoisonError::into_inner) = plan.uses_staging();
        Ok(plan)
    }

    async fn is_loaded(&self, _: &LoadPackage, _: &str) -> StepResult<bool> {
        Ok(false)
    }

    /// dlt's refresh acts on a dataset that has the tables; with `assume_empty` there is none.
    async fn refresh(&self, package: &LoadPackage, program: &LoadProgram) -> StepResult<()> {
        let dropped = &package.state.dropped_tables;
        if !dropped.is_empty() && !self.options.assume_empty {
            let statements = refresh_drop_statements(&self.dialect, package, program.dataset(), dropped);
            self.push(
                "refresh: drop the tables the package drops, and the schema's stored versions (one transaction)",
                sql(berth_plan::statements(statements)),
            );
        }
        Ok(())
    }

    /// With `assume_empty`, the migration creates every table of the plan.
    async fn migrate(&self, package: &LoadPackage, plan: &PackagePlan) -> StepResult<MigrationReport> {
        let migration = migration_for_empty_destination(&self.dialect, package, plan)?;
        self.push(
            "migrate: datasets, tables, schema version (one transaction)",
            sql(berth_plan::statements(migration)),
        );
        let mut report = MigrationReport::default();
        if self.options.assume_empty {
            let tables = plan.chains.iter().flat_map(|c| c.tables.iter());
            report.created_tables = tables.map(|t| format!("{}.{t}", plan.dataset)).collect();
        }
        Ok(report)
    }

    async fn prepare(&self, package: &LoadPackage, program: &LoadProgram) -> StepResult<()> {
        let mut init = program.prepare_statements(&self.dialect);
        if program.refresh && !self.options.assume_empty {
            let truncated = package.state.truncated_tables.iter();
            init.extend(truncated.map(|t| berth_plan::sql::delete_all(&self.dialect, program.dataset(), t).into()));
        }
        if !init.is_empty() {
            self.push("prepare: empty the tables the jobs load into", sql(init));
        }
        let done = program.jobs.iter().filter(|j| j.step == JobStep::Done);
        let notes = done.map(|j| Step::Note(format!("job {} (completed earlier)", j.job.name)));
        self.push(
            "load jobs (in parallel, each part in its own transaction)",
            notes.collect(),
        );
        Ok(())
    }

    async fn load_unit(&self, unit: Unit<'_>) -> StepResult<UnitEnd> {
        let steps = self.job_steps(&unit).map_err(internal)?;
        self.extend_last(steps);
        Ok(UnitEnd::Loaded(berth_destination::JobMetrics::default()))
    }

    /// With `assume_empty`, the final tables are empty; where the loader measures the staged
    /// rows, the query is shown.
    async fn measure(&self, at: ChainCall<'_>, mut state: FinalState) -> StepResult<FinalState> {
        let (package, program, chain) = (at.package, at.program, at.chain);
        if self.options.assume_empty {
            state.empty_tables.extend(chain.plan.tables.iter().cloned());
        }
        if let Some(check) = staged_check(package, program, chain, &self.dialect)? {
            self.push(
                format!(
                    "measure the staged rows of `{}`: with unique keys the follow-up leaves deduplication out, and \
                     key matches look only at final rows inside the staged key range",
                    chain.plan.root
                ),
                vec![Step::Sql(check)],
            );
        }
        let mut assumed = FinalState::default();
        assumed.empty_tables.extend(chain.plan.tables.iter().cloned());
        assumed.staged.insert(chain.plan.root.clone(), result_facts());
        if chain.checks_orphans(&assumed) {
            let checks = chain.orphan_queries(package, &program.plan.staging_dataset, &self.dialect)?;
            self.push(
                format!(
                    "where the staged rows of `{}` are the result, check that every staged nested row has its root \
                     row: then the staging tables take the final tables' place",
                    chain.plan.root
                ),
                checks.into_iter().map(|(_, query)| Step::Sql(query.into())).collect(),
            );
        }
        Ok(state)
    }

    async fn followup(&self, at: ChainCall<'_>, state: &FinalState) -> StepResult<usize> {
        let (package, program, chain) = (at.package, at.program, at.chain);
        let plan = &program.plan;
        let mut steps = Vec::new();
        let mut otherwise = state.clone();
        if chain.staging.movable {
            let mut moved = state.clone();
            moved.staged.insert(chain.plan.root.clone(), result_facts());
            moved.rooted.extend(chain.plan.tables.iter().cloned());
            steps.push(Step::Note(
                "if the staged keys are unique and no row is marked deleted (and, for a delete-insert, every staged \
                 nested row has its root row), the staging tables take the final tables' place instead of being \
                 copied:"
                    .into(),
            ));
            steps.extend(sql(plan.followup_statements(
                &chain.plan,
                package,
                &self.dialect,
                &moved,
            )?));
            steps.push(Step::Note("otherwise:".into()));
            otherwise.movable.clear();
        }
        let mut statements = plan.followup_statements(&chain.plan, package, &self.dialect, &otherwise)?;
        if statements.is_empty() {
            return Ok(0);
        }
        let count = statements.len();
        statements.push(program.followup_record(&self.dialect, chain));
        steps.extend(sql(statements));
        self.push(
            format!(
                "follow-up of `{}` ({:?}, one transaction)",
                chain.plan.root, chain.plan.action
            ),
            steps,
        );
        Ok(count)
    }

    async fn commit(&self, package: &LoadPackage, program: &LoadProgram) -> StepResult<()> {
        self.push(
            "commit: the load's `_dlt_loads` row",
            sql(vec![load_marker(&self.dialect, package, program.dataset()).into()]),
        );
        Ok(())
    }

    async fn clean_up(&self, dataset: &str, load_id: &str) {
        if *self.uses_staging.lock().unwrap_or_else(PoisonError::into_inner) {
            let staging = berth_plan::staging_dataset_name(dataset, load_id);
            self.push(
                "clean up: this load's staging dataset",
                vec![Step::Sql(
                    berth_plan::sql::drop_schema_cascade(&self.dialect, &staging).into(),
                )],
            );
        }
    }
}

/// The query that measures a merge root's staged rows before its follow-up, where the loader runs
/// one.
fn staged_check(
    package: &LoadPackage,
    program: &LoadProgram,
    chain: &ChainStep,
    dialect: &SqlDialect,
) -> StepResult<Option<SqlStatement>> {
    let Some(root) = package
        .schema
        .table(&chain.plan.root)
        .filter(|_| chain.plan.action.measures_staged_rows())
    else {
        return Ok(None);
    };
    let staging = TableRef::new(&program.plan.staging_dataset, &root.name);
    let Some(query) = staged_facts_plan(dialect, root, &staging)? else {
        return Ok(None);
    };
    let query = berth_plan::sql::to_query(dialect, query.into())?;
    Ok(Some(
        berth_plan::sqlparser::ast::Statement::Query(Box::new(query)).into(),
    ))
}

/// Staged facts that make the staged root rows the result of a merge into an empty table.
fn result_facts() -> StagedFacts {
    StagedFacts {
        rows: 1,
        distinct_keys: 1,
        deleted_rows: 0,
        key_range: None,
    }
}
