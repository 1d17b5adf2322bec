//! # berth-loader
//!
//! The load step. Each package's load is a typed [`LoadProgram`] — its phases (refresh, migrate,
//! prepare, job units, measure, follow-ups each under a typed journal key, commit, clean-up) and
//! the decisions they carry — that one loop runs through an [`Executor`]: every SQL destination
//! ([`SqlExecutor`]), the sinks (berth-sink), `berth plan` ([`explain`]) and DataFusion on
//! in-memory tables ([`memory`]). The loop owns the order of the phases, retries
//! ([`RetryPolicy`]), cancellation, dlt's folder protocol, progress and the summary.
//!
//! ```no_run
//! use std::sync::Arc;
//! use berth_loader::Loader;
//! use berth_model::PackageLocation;
//!
//! # async fn example(destination: Arc<dyn berth_destination::Destination>) -> berth_loader::Result<()> {
//! let loader = Loader::new(destination);
//! let summary = loader.load(PackageLocation::parse("load/normalized/1795379913.1787062")?).await?;
//! println!("{}: {:?}, {} rows", summary.load_id, summary.status, summary.rows());
//! # Ok(())
//! # }
//! ```
//!
//! Job states follow dlt's protocol on packages whose folder can be renamed atomically (local
//! disk): `new_jobs → started_jobs → completed_jobs`, with a `.pending_transitions/` marker
//! between the destination's commit and the folder move. A job that failed goes back to
//! `new_jobs` with its retry count raised and a `.exceptions/` file whose first line is
//! `retry: terminal` (or `transient`), leaving the package pending, as dlt 1.31 does; with
//! [`LoaderOptions::allow_failed_jobs`] a terminally failed job goes to `failed_jobs/` next to a
//! `.exception` file and the package is committed without it (dlt's `raise_on_failed_jobs=false`).
//! Packages on object stores are never modified.
//!
//! Cancelling the loader's [`CancellationToken`] (the CLI does on Ctrl-C) stops it starting new
//! jobs; jobs already loading finish or roll back, and the package stays resumable.

pub mod budget;
pub mod executor;
pub mod explain;
mod folders;
pub mod memory;
pub mod program;
mod progress;
pub mod retry;
mod run;
mod sql;
mod summary;

use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_destination::{Destination, ErrorKind};
use berth_model::read::ReadOptions;
use berth_model::{LoadPackage, PackageLocation, ReplaceStrategy, StorageConfig};

pub use executor::{Executor, StepResult, Unit, UnitEnd};
pub use folders::finish_package_folders;
pub use program::{ChainStep, JobStep, LoadProgram, ProgramJob};
pub use progress::{NoProgress, Progress};
pub use retry::{RetryPolicy, Verdict};
pub use sql::SqlExecutor;
pub use summary::{
    JobStatus, JobSummary, LoadSummary, PackageStatus, PackageSummary, PhaseTimes, TableSummary, process_peak_rss,
};
pub use tokio_util::sync::CancellationToken;

pub use berth_destination::default_parallel_jobs;
/// Default attempts at a job that fails with a transient error.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;
/// Default wait before the first retry; doubled for each further one.
pub const DEFAULT_RETRY_BACKOFF: Duration = Duration::from_millis(500);
/// Parquet files from this size up load in parts of equal rows over several connections, where the
/// destination can.
pub const DEFAULT_SPLIT_MIN_BYTES: u64 = 16 << 20;

/// A `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a package could not be loaded at all (failed jobs are reported in the summary instead).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The package cannot be read.
    #[error(transparent)]
    Package(#[from] berth_model::Error),
    /// The package cannot be planned for the destination.
    #[error(transparent)]
    Plan(#[from] berth_plan::Error),
    /// The destination failed outside a job (migration, follow-up, completion).
    #[error(transparent)]
    Destination(#[from] berth_destination::Error),
}

impl Error {
    /// What to do about it.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Destination(e) => e.kind(),
            Self::Package(e) if e.is_transient() => ErrorKind::Transient,
            _ => ErrorKind::Terminal,
        }
    }
}

/// How the loader runs.
#[derive(Debug, Clone)]
pub struct LoaderOptions {
    /// Dataset to load into; default: the one recorded in the package, else the schema name.
    pub dataset: Option<String>,
    /// Replace strategy; default: the destination's first, its atomic one where it has one
    /// (dlt's default is `truncate-and-insert`).
    pub replace_strategy: Option<ReplaceStrategy>,
    /// Jobs loading at once.
    pub parallel_jobs: usize,
    /// Attempts per job when errors are transient.
    pub max_attempts: u32,
    /// Wait before the first retry (doubled each time, with jitter).
    pub retry_backoff: Duration,
    /// How job files are read.
    pub read_options: ReadOptions,
    /// Parquet files from this size up are split into parts of rows that load in parallel (on
    /// destinations with [`berth_destination::Capabilities::row_group_parts`]).
    pub split_min_bytes: u64,
    /// Keep each load's staging dataset after the commit (for inspecting what a merge saw);
    /// by default it is dropped.
    pub keep_staging: bool,
    /// Commit a package whose jobs failed terminally without those jobs (they go to
    /// `failed_jobs/`); by default the package stays pending until every job loads.
    pub allow_failed_jobs: bool,
    /// Widen existing columns whose package type is wider (a longer `varchar`, more integer
    /// bits, a decimal of more digits, more fractional second digits) with `ALTER`, along the
    /// destination's lattice ([`berth_plan::widen`]); by default, as dlt, a column keeps its type.
    pub widen_types: bool,
    /// The caller owns the package's folders (dlt's own load step, when berth is a dlt
    /// destination): jobs are read where they are and never moved, and the package gets no
    /// completion marker and stays in `load/normalized/`. The journal in the destination still
    /// decides what is loaded, so a rerun after a crash resumes exactly as without it.
    pub caller_owns_folders: bool,
    /// Cap the process's peak memory at about this many bytes ([`budget`]): parts load as many at
    /// once as fit, an embedded engine is capped to its share, and a load that cannot fit fails
    /// up front naming the job. `None`: the defaults' own bound.
    pub memory_budget: Option<u64>,
}

impl Default for LoaderOptions {
    fn default() -> Self {
        Self {
            dataset: None,
            replace_strategy: None,
            parallel_jobs: default_parallel_jobs(),
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            retry_backoff: DEFAULT_RETRY_BACKOFF,
            read_options: ReadOptions::default(),
            split_min_bytes: DEFAULT_SPLIT_MIN_BYTES,
            keep_staging: false,
            allow_failed_jobs: false,
            widen_types: false,
            caller_owns_folders: false,
            memory_budget: None,
        }
    }
}

/// Loads packages into one destination: runs each package's [`LoadProgram`] through the
/// destination's [`Executor`] (a [`SqlExecutor`] for a SQL [`Destination`]).
#[derive(Debug, Clone)]
pub struct Loader {
    target: Target,
    options: LoaderOptions,
    progress: Arc<dyn Progress>,
    cancel: CancellationToken,
}

/// What a [`Loader`] loads into.
#[derive(Debug, Clone)]
enum Target {
    /// A SQL destination, run by a [`SqlExecutor`] made with the loader's options.
    Sql(Arc<dyn Destination>),
    /// Any other executor.
    Executor(Arc<dyn Executor>),
}

impl Loader {
    /// A loader with default options.
    pub fn new(destination: Arc<dyn Destination>) -> Self {
        Self::with_target(Target::Sql(destination))
    }

    /// A loader running programs through `executor` (a sink, the in-memory executor, ...).
    pub fn with_executor(executor: Arc<dyn Executor>) -> Self {
        Self::with_target(Target::Executor(executor))
    }

    fn with_target(target: Target) -> Self {
        Self {
            target,
            options: LoaderOptions::default(),
            progress: Arc::new(NoProgress),
            cancel: CancellationToken::new(),
        }
    }

    /// Stops starting jobs once `cancel` is cancelled; see the crate docs.
    pub fn with_cancel(mut self, cancel: CancellationToken) -> Self {
        self.cancel = cancel;
        self
    }

    /// Sets the options.
    pub fn with_options(mut self, options: LoaderOptions) -> Self {
        self.options = options;
        self
    }

    /// Reports progress to `progress`.
    pub fn with_progress(mut self, progress: Arc<dyn Progress>) -> Self {
        self.progress = progress;
        self
    }

    /// The executor packages run through.
    pub fn executor(&self) -> Arc<dyn Executor> {
        match &self.target {
            Target::Sql(destination) => {
                Arc::new(SqlExecutor::new(Arc::clone(destination), self.options.split_min_bytes))
            }
            Target::Executor(executor) => Arc::clone(executor),
        }
    }

    /// Loads packages in the order given; stops at the first that does not load completely (later
    /// packages may depend on it, as dlt's do).
    pub async fn load_all(&self, locations: Vec<PackageLocation>) -> Result<LoadSummary> {
        load_in_order(self.executor().describe(), &self.cancel, locations, |l| self.load(l)).await
    }

    /// Loads one package.
    pub async fn load(&self, location: PackageLocation) -> Result<PackageSummary> {
        let started = Instant::now();
        let package = LoadPackage::open(location).await?;
        let mut executor = self.executor();
        if package.schema.naming().is_case_sensitive()
            && let Some(adjusted) = executor.for_case_sensitive_names()
        {
            // Names as the package has them: the same load on the adjusted destination.
            executor = adjusted;
        }
        let mut options = self.options.clone();
        if options.read_options.on_batch.is_none() {
            let progress = Arc::clone(&self.progress);
            options.read_options.on_batch = Some(berth_model::read::BatchObserver::new(move |job, rows, bytes| {
                progress.batch_read(job, rows, bytes)
            }));
        }
        let run = run::Run {
            executor: executor.as_ref(),
            options: &options,
            progress: self.progress.as_ref(),
            cancel: &self.cancel,
        };
        run.package(package, started).await
    }
}

/// Loads `locations` one after the other with `load`, stopping at the first package that stays
/// pending or was interrupted (later packages must not overtake it), or once `cancel` fires.
pub async fn load_in_order<F, Fut>(
    destination: String,
    cancel: &CancellationToken,
    locations: Vec<PackageLocation>,
    mut load: F,
) -> Result<LoadSummary>
where
    F: FnMut(PackageLocation) -> Fut,
    Fut: std::future::Future<Output = Result<PackageSummary>>,
{
    let started = Instant::now();
    let mut packages = Vec::new();
    for location in locations {
        if cancel.is_cancelled() {
            break;
        }
        let summary = load(location).await?;
        let stop = matches!(summary.status, PackageStatus::Pending | PackageStatus::Interrupted);
        packages.push(summary);
        if stop {
            break;
        }
    }
    Ok(LoadSummary {
        destination,
        packages,
        elapsed: started.elapsed(),
        peak_rss_bytes: None,
    })
}

/// Opens packages from CLI-style arguments, in the order given: a package folder or URL, or a
/// folder or bucket prefix of packages (such as a dlt pipeline's `load/normalized/`, expanded in
/// load-id order). URLs get `storage`'s options (see [`berth_model::store`]).
pub async fn resolve_locations(arguments: &[String], storage: &StorageConfig) -> Result<Vec<PackageLocation>> {
    let mut out = Vec::new();
    for argument in arguments {
        out.extend(berth_model::discover_packages(argument, storage).await?);
    }
    Ok(out)
}
