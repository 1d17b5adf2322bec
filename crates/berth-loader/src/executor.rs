//! The executor interface: what the run loop ([`crate::run`]) asks of whatever carries a
//! [`LoadProgram`] out.
//!
//! | executor | where | what its phases do |
//! |---|---|---|
//! | [`crate::SqlExecutor`] | every [`Destination`] | statements and bulk loads |
//! | `berth_sink::SinkExecutor` | webhooks, NDJSON, closures | batches to a sink, progress in the package state |
//! | [`crate::explain::ExplainExecutor`] | `berth plan` | records the statements instead of running them |
//! | [`crate::memory::MemoryExecutor`] | tests, the reference result | DataFusion on in-memory Arrow tables |
//! | `berth_delta::DeltaExecutor` | Delta lakes (`delta:`) | DataFusion over Delta scans, commits journaled by application transactions |
//!
//! The loop owns the order of the phases, retries, cancellation, the job folders, progress and
//! the summary; an executor only carries out one step at a time.

use async_trait::async_trait;
use berth_destination::{DiscardJob, JobMetrics, JobPart, JournalEntry, LoadLock, MigrationReport, TableLock};
use berth_model::read::ReadOptions;
use berth_model::{FileFormat, LoadPackage, Table};
use berth_plan::{FinalState, PackagePlan, PlanOptions, SqlDialect};

use crate::program::{ChainStep, LoadProgram, ProgramJob};

/// The result of an executor's step; errors say through their kind whether a retry may help.
pub type StepResult<T> = std::result::Result<T, berth_destination::Error>;

/// One part of a job to load.
#[derive(Debug, Clone)]
pub struct Unit<'a> {
    /// The package.
    pub package: &'a LoadPackage,
    /// The job, as the program has it.
    pub job: &'a ProgramJob,
    /// The job's table in the package schema.
    pub table: &'a Table,
    /// The part.
    pub part: JobPart,
    /// The final dataset (whose journal records the part).
    pub journal_dataset: &'a str,
    /// How to read the job file.
    pub read_options: &'a ReadOptions,
    /// Stops sending: a unit that notices returns [`UnitEnd::Cancelled`].
    pub cancel: &'a tokio_util::sync::CancellationToken,
}

/// A step of one table chain: the package, its program and the chain.
#[derive(Debug, Clone, Copy)]
pub struct ChainCall<'a> {
    /// The package.
    pub package: &'a LoadPackage,
    /// Its program.
    pub program: &'a LoadProgram,
    /// The chain.
    pub chain: &'a ChainStep,
}

/// How a unit ended without error.
#[derive(Debug, Clone, Copy)]
pub enum UnitEnd {
    /// All of it loaded, atomically with its journal record.
    Loaded(JobMetrics),
    /// Cut short by cancellation after `rows` rows; what it recorded resumes on the next run.
    Cancelled {
        /// Rows it sent before it stopped.
        rows: u64,
    },
}

/// What carries a load program out (see the module docs). Every step is atomic where the
/// executor can make it so, and says through its error's kind whether it is worth retrying.
#[async_trait]
pub trait Executor: Send + Sync + std::fmt::Debug {
    /// Where the rows go, for summaries and messages: never credentials.
    fn describe(&self) -> String;

    /// Can jobs of this format be loaded? (Default: every data format.)
    fn accepts(&self, format: FileFormat) -> bool {
        format.is_data()
    }

    /// Does running a step change the destination? A dry run (`berth plan`) or an executor whose
    /// result lives elsewhere leaves the package's folders as they are.
    fn writes(&self) -> bool {
        true
    }

    /// The dialect the executor's statements are in, where it has one: the program's staging
    /// decisions depend on what it can do.
    fn dialect(&self) -> Option<&SqlDialect> {
        None
    }

    /// This executor as dlt adjusts it for a package whose naming convention keeps case (see
    /// [`berth_destination::Destination::for_case_sensitive_names`]); `None`: nothing changes.
    fn for_case_sensitive_names(&self) -> Option<std::sync::Arc<dyn Executor>> {
        None
    }

    /// At most this many units at once, whatever the options say.
    fn max_parallel_units(&self) -> Option<usize> {
        None
    }

    /// Caps an embedded engine's memory (see
    /// [`berth_destination::Destination::cap_engine_memory`]).
    fn cap_engine_memory(&self, bytes: u64) -> StepResult<u64> {
        let _ = bytes;
        Ok(0)
    }

    /// Does the embedded engine read Parquet jobs itself (see
    /// [`berth_destination::Destination::engine_reads_parquet`])?
    fn engine_reads_parquet(&self) -> bool {
        false
    }

    /// Plans `package`; refuses what this executor cannot load.
    fn plan(&self, package: &LoadPackage, options: &PlanOptions) -> crate::Result<PackagePlan>;

    /// The replace strategy when the options name none.
    fn default_replace_strategy(&self) -> berth_model::ReplaceStrategy {
        berth_model::ReplaceStrategy::default()
    }

    /// Keeps other processes from loading `package` into `dataset` meanwhile (see
    /// [`berth_destination::Destination::lock_load`]).
    async fn lock_load(&self, package: &LoadPackage, dataset: &str) -> StepResult<Option<LoadLock>> {
        let _ = (package, dataset);
        Ok(None)
    }

    /// Keeps other loads off `tables` (see [`berth_destination::Destination::lock_tables`]).
    async fn lock_tables(&self, dataset: &str, tables: &[TableLock]) -> StepResult<Option<LoadLock>> {
        let _ = (dataset, tables);
        Ok(None)
    }

    /// Has `package` been committed into `dataset` here?
    async fn is_loaded(&self, package: &LoadPackage, dataset: &str) -> StepResult<bool>;

    /// What earlier runs of `package`'s load (planned as `plan`) committed.
    async fn journal(&self, package: &LoadPackage, plan: &PackagePlan) -> StepResult<Vec<JournalEntry>> {
        let _ = (package, plan);
        Ok(Vec::new())
    }

    /// dlt's `refresh`: drops the tables the package state drops (run when
    /// [`LoadProgram::refresh`] says it applies, before the migration).
    async fn refresh(&self, package: &LoadPackage, program: &LoadProgram) -> StepResult<()> {
        let _ = (package, program);
        Ok(())
    }

    /// Creates or extends the datasets and tables of `plan`, and records the schema version.
    async fn migrate(&self, package: &LoadPackage, plan: &PackagePlan) -> StepResult<MigrationReport> {
        let _ = (package, plan);
        Ok(MigrationReport::default())
    }

    /// Empties the job tables of the program's fresh chains (and, when the refresh applies, the
    /// tables dlt's `refresh` empties), keeping staging tables as decided.
    async fn prepare(&self, package: &LoadPackage, program: &LoadProgram) -> StepResult<()> {
        let _ = (package, program);
        Ok(())
    }

    /// The parts of `job` still to load (default: the whole file).
    async fn parts(&self, package: &LoadPackage, job: &ProgramJob, parallel: usize) -> StepResult<Vec<JobPart>> {
        let _ = (package, job, parallel);
        Ok(vec![JobPart::Whole])
    }

    /// Loads one unit (the loop retries transient errors).
    async fn load_unit(&self, unit: Unit<'_>) -> StepResult<UnitEnd>;

    /// Removes what the committed parts of a job that failed terminally left behind (see
    /// [`berth_destination::Destination::discard_job`]).
    async fn discard_job(&self, job: DiscardJob<'_>) -> StepResult<u64> {
        let _ = job;
        Ok(0)
    }

    /// Measures what a merge follow-up may assume about its final and staged tables, starting
    /// from `state` (what the program decided).
    async fn measure(&self, at: ChainCall<'_>, state: FinalState) -> StepResult<FinalState> {
        let _ = at;
        Ok(state)
    }

    /// Runs the follow-up of `chain` together with its journal record; returns the statements
    /// it ran.
    async fn followup(&self, at: ChainCall<'_>, state: &FinalState) -> StepResult<usize> {
        let _ = (at, state);
        Ok(0)
    }

    /// Commits the load: its `_dlt_loads` row, or what stands for it.
    async fn commit(&self, package: &LoadPackage, program: &LoadProgram) -> StepResult<()>;

    /// Cleans up after the commit (the load's staging dataset); failing to is only a warning.
    async fn clean_up(&self, dataset: &str, load_id: &str) {
        let _ = (dataset, load_id);
    }
}
