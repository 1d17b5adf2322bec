//! # berth-loader
//!
//! The load step: for each package, plan, migrate the destination, run the jobs with bounded
//! concurrency and retries, run the follow-up statements of each table chain, write the commit
//! marker (`_dlt_loads`), and move the package through dlt's folders so dlt sees it as loaded.
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

pub mod explain;
mod progress;
pub mod retry;
mod summary;

use std::sync::Arc;
use std::time::{Duration, Instant};

use std::collections::{BTreeSet, HashSet};

use berth_destination::{
    Destination, DiscardJob, ErrorKind, JobMetrics, JobPart, JournalEntry, JournalKey, LoadJob, TableLock,
    committed_parts, complete_load, drop_refreshed_tables, is_empty_table, is_loaded, journal_insert, migrate,
    truncate_refreshed_tables, uncovered,
};
use berth_model::package::layout;
use berth_model::read::{self, ReadOptions};
use berth_model::{
    FailureKind, FileFormat, JobFailure, JobFile, JobState, LoadPackage, PackageLocation, PendingTransition,
    ReplaceStrategy, StorageConfig, TransitionState,
};
use berth_plan::followup::{StagedFacts, TableRef, staged_facts_plan};
use berth_plan::sqlparser::ast::Statement;
use berth_plan::{ChainAction, ChainPlan, FinalState, PackagePlan, PlanOptions, staging_dataset_name};
use futures::StreamExt;

pub use progress::{NoProgress, Progress};
pub use retry::{RetryPolicy, Verdict};
pub use summary::{
    JobStatus, JobSummary, LoadSummary, PackageStatus, PackageSummary, PhaseTimes, TableSummary, process_peak_rss,
};
pub use tokio_util::sync::CancellationToken;

pub use berth_destination::default_parallel_jobs;
/// Default attempts at a job that fails with a transient error.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;
/// Default wait before the first retry; doubled for each further one.
pub const DEFAULT_RETRY_BACKOFF: Duration = Duration::from_millis(500);
/// Parquet files from this size up load in row-group parts over several connections, where the
/// destination can.
pub const DEFAULT_SPLIT_MIN_BYTES: u64 = 16 << 20;
/// Largest part a file is split into.
const MAX_PART_BYTES: u64 = 256 << 20;

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
    /// Replace strategy; default: the destination's first (dlt: `truncate-and-insert`).
    pub replace_strategy: Option<ReplaceStrategy>,
    /// Jobs loading at once.
    pub parallel_jobs: usize,
    /// Attempts per job when errors are transient.
    pub max_attempts: u32,
    /// Wait before the first retry (doubled each time, with jitter).
    pub retry_backoff: Duration,
    /// How job files are read.
    pub read_options: ReadOptions,
    /// Parquet files from this size up are split into row-group parts that load in parallel (on
    /// destinations with [`berth_destination::Capabilities::row_group_parts`]).
    pub split_min_bytes: u64,
    /// Keep each load's staging dataset after the commit (for inspecting what a merge saw);
    /// by default it is dropped.
    pub keep_staging: bool,
    /// Commit a package whose jobs failed terminally without those jobs (they go to
    /// `failed_jobs/`); by default the package stays pending until every job loads.
    pub allow_failed_jobs: bool,
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
        }
    }
}

/// Loads packages into one destination.
#[derive(Debug, Clone)]
pub struct Loader {
    destination: Arc<dyn Destination>,
    options: LoaderOptions,
    progress: Arc<dyn Progress>,
    cancel: CancellationToken,
}

/// A job while its parts load.
struct JobOutcome {
    job: JobFile,
    remaining: usize,
    rows: u64,
    timings: berth_destination::JobTimings,
    attempts: u32,
    started: Instant,
    error: Option<berth_destination::Error>,
    /// A part was not started because the load was cancelled.
    cancelled: bool,
}

impl JobOutcome {
    fn new(job: JobFile, parts: usize) -> Self {
        Self {
            job,
            remaining: parts,
            rows: 0,
            timings: berth_destination::JobTimings::default(),
            attempts: 0,
            started: Instant::now(),
            error: None,
            cancelled: false,
        }
    }
}

struct UnitOutcome {
    result: std::result::Result<JobMetrics, berth_destination::Error>,
    attempts: u32,
    cancelled: bool,
}

impl UnitOutcome {
    fn cancelled(attempts: u32) -> Self {
        Self {
            result: Ok(JobMetrics::default()),
            attempts,
            cancelled: true,
        }
    }
}

/// How a job's failure is handled.
fn failure_of(error: &berth_destination::Error) -> JobFailure {
    JobFailure {
        kind: match error.kind() {
            ErrorKind::Transient => FailureKind::Transient,
            _ => FailureKind::Terminal,
        },
        message: error.to_string(),
    }
}

/// The tables `plan` writes in its final dataset, exclusive unless only appended to (see
/// [`Destination::lock_tables`]); the tables dlt's `refresh` drops or empties are exclusive too.
fn table_locks(package: &LoadPackage, plan: &PackagePlan) -> Vec<TableLock> {
    let chains = plan.chains.iter().flat_map(|chain| {
        let exclusive = chain.action != ChainAction::Append;
        chain.tables.iter().map(move |table| TableLock {
            table: table.clone(),
            exclusive,
        })
    });
    let state = &package.state;
    let refreshed = state
        .dropped_tables
        .iter()
        .chain(&state.truncated_tables)
        .map(|table| TableLock {
            table: table.clone(),
            exclusive: true,
        });
    TableLock::merged(chains.chain(refreshed))
}

impl Loader {
    /// A loader with default options.
    pub fn new(destination: Arc<dyn Destination>) -> Self {
        Self {
            destination,
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

    /// The destination.
    pub fn destination(&self) -> &Arc<dyn Destination> {
        &self.destination
    }

    /// Loads packages in the order given; stops at the first that does not load completely (later
    /// packages may depend on it, as dlt's do).
    pub async fn load_all(&self, locations: Vec<PackageLocation>) -> Result<LoadSummary> {
        load_in_order(self.destination.describe(), &self.cancel, locations, |l| self.load(l)).await
    }

    /// Loads one package.
    pub async fn load(&self, location: PackageLocation) -> Result<PackageSummary> {
        let started = Instant::now();
        let package = LoadPackage::open(location).await?;
        if package.schema.naming().is_case_sensitive()
            && let Some(adjusted) = self.destination.for_case_sensitive_names()
        {
            // Names as the package has them: the same load on the adjusted destination.
            let loader = Self {
                destination: adjusted,
                ..self.clone()
            };
            return Box::pin(loader.load_opened(package, started)).await;
        }
        self.load_opened(package, started).await
    }

    /// [`Loader::load`] of an opened package.
    async fn load_opened(&self, package: LoadPackage, started: Instant) -> Result<PackageSummary> {
        let dataset = package.dataset_name(self.options.dataset.as_deref());
        // One berth at a time per package and dataset: a second process waits here, then finds
        // the package loaded.
        let lock = self.destination.lock_load(&package, &dataset).await?;
        let loaded = self.load_locked(package, dataset, started).await;
        if let Some(lock) = lock {
            lock.release().await;
        }
        loaded
    }

    /// Loads one package under its load lock.
    async fn load_locked(&self, package: LoadPackage, dataset: String, started: Instant) -> Result<PackageSummary> {
        let caps = self.destination.capabilities();
        let mut summary = PackageSummary::new(&package, &dataset, &self.destination.describe());
        // Whether the package is loaded is the target's to say: a `package_completed.json` marker
        // only means it was loaded somewhere (another destination or dataset, or one since reset).
        if is_loaded(self.destination.as_ref(), &dataset, &package.load_id).await? {
            // Committed before: at most the staging dataset and the folder moves of a run that
            // stopped after the commit remain.
            self.drop_staging(&dataset, &package.load_id).await;
            self.finish_folders(&package).await?;
            summary.status = PackageStatus::AlreadyLoaded;
            summary.elapsed = started.elapsed();
            self.progress.package_finished(&summary);
            return Ok(summary);
        }

        let package = self.reconcile_folders(package).await?;
        for job in &package.jobs {
            if job.name.format.is_data() && !caps.loader_formats.contains(&job.name.format) {
                return Err(berth_model::Error::UnknownFormat {
                    job: package.job_display(job),
                    format: job.name.format.to_string(),
                }
                .into());
            }
        }
        let options = PlanOptions {
            dataset: dataset.clone(),
            replace_strategy: self
                .options
                .replace_strategy
                .or_else(|| caps.replace_strategies.first().copied())
                .unwrap_or_default(),
        };
        let plan = PackagePlan::new(&package, &options, &caps.plan_capabilities())?;
        plan.check_names(&package, &caps.dialect)?;

        // Loads of other packages into the same tables wait here (or this one does) unless
        // all of them only append, so concurrent loads give the result of some serial order.
        let tables = self
            .destination
            .lock_tables(&dataset, &table_locks(&package, &plan))
            .await?;
        let loaded = self.load_planned(package, plan, summary, started).await;
        if let Some(tables) = tables {
            tables.release().await;
        }
        loaded
    }

    /// Loads a planned package under its table locks.
    async fn load_planned(
        &self,
        package: LoadPackage,
        plan: PackagePlan,
        mut summary: PackageSummary,
        started: Instant,
    ) -> Result<PackageSummary> {
        let caps = self.destination.capabilities();
        let dataset = plan.dataset.clone();
        let phase = Instant::now();
        // What earlier runs committed: the journal is the truth, the job folders may lag behind it.
        let journal = committed_parts(self.destination.as_ref(), &dataset, &package.load_id).await?;
        // dlt's `refresh` acts once, before anything of the package is loaded.
        let untouched = journal.is_empty()
            && (package.completed.is_some() || package.jobs_in(JobState::Completed).next().is_none());
        if untouched {
            let dropped = drop_refreshed_tables(self.destination.as_ref(), &package, &dataset).await?;
            if !dropped.is_empty() {
                tracing::info!(load_id = %package.load_id, "refresh: dropped {}", dropped.join(", "));
            }
        }
        tracing::info!(load_id = %package.load_id, phase = "migrate", "migrating {dataset}");
        summary.migration = self.migrate_with_retries(&package, &plan).await?;
        if package.tracks_job_folders() && package.schema_update_pending {
            package
                .location
                .rename(layout::SCHEMA_UPDATES, layout::APPLIED_SCHEMA_UPDATES)
                .await?;
        }
        let journaled: HashSet<&JournalKey> = journal.iter().map(|e| &e.key).collect();
        // A package completed elsewhere loads every job again; otherwise a job in
        // `completed_jobs/` is done (a dlt run that stopped midway moved it there).
        let loaded_elsewhere = package.completed.is_some();
        let done = |j: &JobFile| {
            journaled.contains(&JournalKey::job(j)) || (j.state == JobState::Completed && !loaded_elsewhere)
        };
        let has_progress = |table: &String| package.jobs.iter().any(|j| &j.name.table == table && done(j));
        // Empty only chains none of whose jobs committed yet: a resumed package keeps its rows.
        let fresh: Vec<&ChainPlan> = plan
            .chains
            .iter()
            .filter(|c| !c.tables_with_jobs.iter().any(has_progress))
            .collect();
        let new_tables = new_tables(&plan, &summary.migration);
        let emptied: HashSet<&str> = fresh
            .iter()
            .copied()
            .filter(|c| c.action.empties_job_tables())
            .flat_map(|c| c.tables.iter().map(String::as_str))
            .collect();
        let mut init = plan.init_statements_for(&caps.dialect, fresh, &new_tables);
        if untouched {
            let truncated = truncate_refreshed_tables(self.destination.as_ref(), &package, &dataset).await?;
            init.extend(truncated.into_iter().map(Into::into));
        }
        if !init.is_empty() {
            tracing::info!(load_id = %package.load_id, phase = "prepare", "emptying the tables jobs load into");
            let emptied: Vec<String> = emptied.iter().map(|t| (*t).to_string()).collect();
            let mut fenced = self.destination.load_fence(&dataset, &package.load_id, &emptied);
            fenced.extend(init);
            self.destination.execute(fenced, caps.supports_transactions).await?;
        }

        let pending: Vec<JobFile> = package
            .jobs
            .iter()
            .filter(|j| {
                let redo = j.state == JobState::Completed && !done(j);
                (matches!(j.state, JobState::New | JobState::Started) || redo) && j.name.format.is_data()
            })
            .cloned()
            .collect();
        summary.record_completed(package.jobs_in(JobState::Completed).filter(|j| done(j)));
        // Jobs in `failed_jobs/` now failed in an earlier run that allowed failed jobs.
        for job in package.jobs_in(JobState::Failed) {
            let failure = package.job_failure(job).await?;
            summary.push_job(JobSummary::previously_failed(&package, job, failure));
        }
        self.progress.package_started(&package, pending.len());

        let parallel = caps
            .max_parallel_jobs
            .map_or(self.options.parallel_jobs, |m| m.min(self.options.parallel_jobs))
            .max(1);
        // Tables with a job that failed and keeps the package pending.
        let mut failed_tables = std::collections::BTreeSet::new();
        let mut jobs = Vec::new();
        let mut units = Vec::new();
        for job in pending {
            let job = if package.tracks_job_folders() {
                package.move_job(&job, JobState::Started).await?
            } else {
                job
            };
            let key = JournalKey::job(&job);
            let done: Vec<&JournalEntry> = journal.iter().filter(|e| e.key == key).collect();
            let parts = match self.plan_parts(&package, &job, &done, parallel).await {
                Ok(parts) => parts,
                Err(e) => {
                    // The file cannot even be inspected: the job fails, the others go on.
                    let outcome = JobOutcome::new(job, 0);
                    let error = berth_destination::Error::from(e);
                    self.finish_job(&package, &plan, &mut summary, &mut failed_tables, &outcome, Err(error))
                        .await?;
                    continue;
                }
            };
            let index = jobs.len();
            for part in &parts {
                units.push((index, part.clone()));
            }
            jobs.push(JobOutcome::new(job, parts.len()));
        }
        // Jobs whose every part committed in an earlier run only need their folder move.
        for outcome in jobs.iter().filter(|o| o.remaining == 0) {
            self.finish_job(&package, &plan, &mut summary, &mut failed_tables, outcome, Ok(()))
                .await?;
        }

        summary.phases.migrate = phase.elapsed();
        let phase = Instant::now();
        tracing::info!(load_id = %package.load_id, phase = "jobs", "loading {} part(s)", units.len());
        let job_files: Vec<JobFile> = jobs.iter().map(|o| o.job.clone()).collect();
        let (package_ref, plan_ref, files, emptied) = (&package, &plan, &job_files, &emptied);
        let mut results = futures::stream::iter(units)
            .map(|(index, part)| async move {
                // Checked as each part is about to start: a cancelled load starts nothing new.
                if self.cancel.is_cancelled() {
                    return (index, UnitOutcome::cancelled(0));
                }
                let emptied = emptied.contains(files[index].name.table.as_str());
                (
                    index,
                    self.run_unit(package_ref, plan_ref, &files[index], part, emptied).await,
                )
            })
            .buffer_unordered(parallel);
        while let Some((index, unit)) = results.next().await {
            let outcome = &mut jobs[index];
            outcome.remaining -= 1;
            outcome.attempts = outcome.attempts.max(unit.attempts);
            outcome.cancelled |= unit.cancelled;
            match unit.result {
                Ok(metrics) => {
                    outcome.rows += metrics.rows;
                    outcome.timings += metrics.timings;
                    summary.phases.decode += metrics.timings.decode;
                    summary.phases.encode += metrics.timings.encode;
                    summary.phases.transfer += metrics.timings.transfer;
                }
                Err(e) => {
                    if outcome.error.is_none() {
                        outcome.error = Some(e);
                    }
                }
            }
            if outcome.remaining == 0 {
                if outcome.cancelled && outcome.error.is_none() {
                    // Not all of it ran: it stays in `started_jobs/`; its committed parts are in
                    // the journal and the next run loads the rest.
                    summary.interrupted_jobs += 1;
                    continue;
                }
                let result = outcome.error.take().map_or(Ok(()), Err);
                self.finish_job(&package, &plan, &mut summary, &mut failed_tables, outcome, result)
                    .await?;
            }
        }
        drop(results);
        summary.phases.jobs = phase.elapsed();
        let phase = Instant::now();
        if self.cancel.is_cancelled() {
            return Ok(self.interrupted(summary, started));
        }

        // A chain's follow-up runs once all its jobs loaded, exactly once: its journal row commits
        // with it.
        for chain in &plan.chains {
            if chain.tables_with_jobs.iter().any(|t| failed_tables.contains(t)) {
                continue;
            }
            if self.cancel.is_cancelled() {
                return Ok(self.interrupted(summary, started));
            }
            let key = JournalKey::Followup(chain.root.clone());
            if journal.iter().any(|e| e.key == key) {
                continue;
            }
            if chain.action.loads_to_staging() {
                tracing::info!(load_id = %package.load_id, phase = "followup", "follow-up of {}", chain.root);
            }
            let state = self.final_state(&package, &plan, chain, &new_tables).await?;
            let mut statements = plan.followup_statements(chain, &package, &caps.dialect, &state)?;
            if !statements.is_empty() {
                summary.followup_statements += statements.len();
                let entry = JournalEntry {
                    key,
                    part: JobPart::Whole,
                    rows: 0,
                };
                statements.push(journal_insert(&caps.dialect, &dataset, &package.load_id, &entry).into());
                let mut fenced = self.destination.load_fence(&dataset, &package.load_id, &chain.tables);
                fenced.extend(statements);
                self.destination.execute(fenced, caps.supports_transactions).await?;
            }
        }

        summary.phases.followup = phase.elapsed();
        let phase = Instant::now();
        if failed_tables.is_empty() {
            tracing::info!(load_id = %package.load_id, phase = "commit", "writing the load marker");
            complete_load(self.destination.as_ref(), &package, &dataset).await?;
            tracing::info!(load_id = %package.load_id, phase = "finish", "committed; cleaning up");
            // Also when this run's plan stages nothing: an earlier run of the package (with
            // other options) may have left its staging dataset pending.
            self.drop_staging(&dataset, &package.load_id).await;
            self.finish_folders(&package).await?;
            summary.status = if summary.failed_jobs().next().is_some() {
                PackageStatus::LoadedWithFailedJobs
            } else {
                PackageStatus::Loaded
            };
        } else {
            summary.status = PackageStatus::Pending;
        }
        summary.phases.commit = phase.elapsed();
        summary.elapsed = started.elapsed();
        self.progress.package_finished(&summary);
        Ok(summary)
    }

    /// Ends a load that was cancelled before its commit: nothing more runs, the package stays
    /// resumable.
    fn interrupted(&self, mut summary: PackageSummary, started: Instant) -> PackageSummary {
        tracing::warn!(load_id = %summary.load_id, "interrupted before the commit; the package resumes on the next run");
        summary.status = PackageStatus::Interrupted;
        summary.elapsed = started.elapsed();
        self.progress.package_finished(&summary);
        summary
    }

    /// Brings the job folders of a resumed package in line with what happened: replays the
    /// `.pending_transitions/` markers of a run that stopped between a commit and a folder move,
    /// and, unless failed jobs are allowed, queues jobs in `failed_jobs/` again (they failed in a
    /// run that allowed failed jobs but stopped before its commit). Reopens the package when
    /// anything moved.
    async fn reconcile_folders(&self, package: LoadPackage) -> Result<LoadPackage> {
        if !package.tracks_job_folders() {
            return Ok(package);
        }
        let mut moved = false;
        for (file, transition) in &package.pending_transitions {
            let started = package
                .jobs
                .iter()
                .find(|j| j.state == JobState::Started && j.name.to_string() == *file);
            if let Some(job) = started {
                if transition.state == TransitionState::Completed {
                    package.move_job(job, JobState::Completed).await?;
                } else {
                    let failure = JobFailure {
                        kind: FailureKind::Terminal,
                        message: transition.failed_message.clone().unwrap_or_default(),
                    };
                    self.settle_failed(&package, job, &failure).await?;
                }
            }
            package.clear_pending_transition(file).await?;
            moved = true;
        }
        if !self.options.allow_failed_jobs {
            for job in package.jobs_in(JobState::Failed) {
                let failure = package.job_failure(job).await?.unwrap_or(JobFailure {
                    kind: FailureKind::Terminal,
                    message: String::new(),
                });
                package.requeue_job(job, &failure).await?;
                moved = true;
            }
        }
        if moved {
            return Ok(LoadPackage::open(package.location.clone()).await?);
        }
        Ok(package)
    }

    /// Moves a failed job where dlt's protocol puts it: `failed_jobs/` when failed jobs are
    /// allowed and the failure is terminal, else back to `new_jobs/` for the next run.
    async fn settle_failed(&self, package: &LoadPackage, job: &JobFile, failure: &JobFailure) -> Result<()> {
        if self.accepts(failure) {
            package.fail_job(job, &failure.message).await?;
        } else {
            package.requeue_job(job, failure).await?;
        }
        Ok(())
    }

    /// Is a job that failed this way left out of the package rather than keeping it pending?
    fn accepts(&self, failure: &JobFailure) -> bool {
        self.options.allow_failed_jobs && failure.kind == FailureKind::Terminal
    }

    /// What the follow-up of `chain` may assume: which final tables are empty (and which of
    /// those this package's migration created), and for merges that can use them, facts about
    /// the staged root rows (duplicate keys, deleted rows, key range).
    async fn final_state(
        &self,
        package: &LoadPackage,
        plan: &PackagePlan,
        chain: &ChainPlan,
        new_tables: &BTreeSet<String>,
    ) -> Result<FinalState> {
        let mut state = FinalState::default();
        if !matches!(chain.action, ChainAction::Merge(_)) {
            return Ok(state);
        }
        for table in &chain.tables {
            // Checked even when created: a concurrent load may have filled it since.
            if is_empty_table(self.destination.as_ref(), &plan.dataset, table).await? {
                state.empty_tables.insert(table.clone());
            }
        }
        if plan.may_move_staging(chain, &self.destination.capabilities().dialect, new_tables) {
            state.movable.insert(chain.root.clone());
        }
        let root = package.schema.table(&chain.root);
        if let Some(root) = root.filter(|_| chain.action.measures_staged_rows()) {
            let dialect = &self.destination.capabilities().dialect;
            let staging = TableRef::new(&plan.staging_dataset, &root.name);
            if let Some(query) = staged_facts_plan(dialect, root, &staging)? {
                let query = berth_plan::sql::to_query(dialect, query.into())?;
                let batches = self.destination.query(Statement::Query(Box::new(query))).await?;
                let facts = StagedFacts::from_batches(root, &batches)?;
                tracing::debug!(table = %root.name, ?facts, "staged rows measured");
                state.staged.insert(root.name.clone(), facts);
            }
        }
        Ok(state)
    }

    /// Drops the load's staging dataset after the commit. Failing to is only worth a warning:
    /// the rows are committed, and a later run of the same package drops it again.
    async fn drop_staging(&self, dataset: &str, load_id: &str) {
        if self.options.keep_staging {
            return;
        }
        let dialect = &self.destination.capabilities().dialect;
        let staging = staging_dataset_name(dataset, load_id);
        let statement = berth_plan::sql::drop_schema_cascade(dialect, &staging);
        if let Err(e) = self.destination.execute(vec![statement.into()], false).await {
            tracing::warn!(dataset = %staging, error = %e, "could not drop the staging dataset");
        }
    }

    /// The parts of `job` still to load: row-group ranges of a large Parquet file where the
    /// destination loads those on their own, else the whole file; nothing when `done` covers it.
    async fn plan_parts(
        &self,
        package: &LoadPackage,
        job: &JobFile,
        done: &[&JournalEntry],
        parallel: usize,
    ) -> berth_model::Result<Vec<JobPart>> {
        if done.iter().any(|e| e.part == JobPart::Whole) {
            return Ok(Vec::new());
        }
        let splittable = self.destination.capabilities().row_group_parts
            && job.name.format == FileFormat::Parquet
            && (job.size >= self.options.split_min_bytes || !done.is_empty());
        if !splittable {
            return Ok(vec![JobPart::Whole]);
        }
        let info = read::inspect_parquet(package, job).await?;
        let committed: Vec<std::ops::Range<usize>> = done.iter().filter_map(|e| e.part.row_groups()).collect();
        let target = (job.size / parallel as u64).clamp(self.options.split_min_bytes / 2, MAX_PART_BYTES);
        let mut parts = Vec::new();
        for gap in uncovered(info.row_groups, &committed) {
            let mut start = gap.start;
            let mut bytes = 0;
            for index in gap.clone() {
                bytes += info.row_group_bytes[index];
                if bytes >= target || index + 1 == gap.end {
                    parts.push(JobPart::RowGroups(start..index + 1));
                    start = index + 1;
                    bytes = 0;
                }
            }
        }
        if done.is_empty() && parts.len() <= 1 {
            return Ok(vec![JobPart::Whole]);
        }
        Ok(parts)
    }

    /// Loads one part of a job, retrying transient errors.
    /// Migrates, retrying transient failures (a concurrent load creating the same dataset or
    /// table; a dropped connection): the migration is idempotent and all-or-nothing where DDL is
    /// transactional.
    async fn migrate_with_retries(
        &self,
        package: &LoadPackage,
        plan: &PackagePlan,
    ) -> std::result::Result<berth_destination::MigrationReport, berth_destination::Error> {
        let retried = self
            .retry_policy()
            .run(
                &self.cancel,
                || migrate(self.destination.as_ref(), package, plan),
                transient,
                |attempt, e, wait| {
                    tracing::warn!(load_id = %package.load_id, attempt, "migration failed transiently, retrying in {wait:?}: {e}");
                },
            )
            .await;
        retried.result
    }

    /// The retry policy of this loader's options.
    fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy::new(self.options.max_attempts, self.options.retry_backoff)
    }

    async fn run_unit(
        &self,
        package: &LoadPackage,
        plan: &PackagePlan,
        job: &JobFile,
        part: JobPart,
        emptied: bool,
    ) -> UnitOutcome {
        let Some(table) = package.schema.table(&job.name.table) else {
            let error = berth_model::Error::TableNotInSchema {
                job: package.job_display(job),
                table: job.name.table.clone(),
            };
            return UnitOutcome {
                result: Err(error.into()),
                attempts: 0,
                cancelled: false,
            };
        };
        let dataset = plan.job_dataset(&table.name);
        let retried = self
            .retry_policy()
            .run(
                &self.cancel,
                || {
                    self.destination.load_job(LoadJob {
                        package,
                        job,
                        table,
                        dataset,
                        part: part.clone(),
                        journal_dataset: &plan.dataset,
                        read_options: self.options.read_options.clone(),
                        emptied,
                    })
                },
                transient,
                |attempt, e, wait| {
                    tracing::warn!(job = %job.name, %part, attempt, "transient error, retrying in {wait:?}: {e}");
                },
            )
            .await;
        if retried.cancelled {
            return UnitOutcome::cancelled(retried.attempts);
        }
        UnitOutcome {
            result: retried.result,
            attempts: retried.attempts,
            cancelled: false,
        }
    }

    /// Records a finished job: folder move (or requeue when it failed), summary, progress.
    async fn finish_job(
        &self,
        package: &LoadPackage,
        plan: &PackagePlan,
        summary: &mut PackageSummary,
        failed_tables: &mut std::collections::BTreeSet<String>,
        outcome: &JobOutcome,
        result: std::result::Result<(), berth_destination::Error>,
    ) -> Result<()> {
        let result = result.map(|()| JobMetrics {
            rows: outcome.rows,
            bytes: outcome.job.size,
            timings: outcome.timings,
        });
        let job_summary = JobSummary::from_outcome(
            package,
            &outcome.job,
            &result,
            outcome.attempts,
            outcome.started.elapsed(),
        );
        match &result {
            Ok(_) => {
                if package.tracks_job_folders() {
                    // dlt's protocol: the marker says "committed" until the file has moved.
                    let transition = PendingTransition {
                        state: TransitionState::Completed,
                        failed_message: None,
                    };
                    package.write_pending_transition(&outcome.job, &transition).await?;
                    package.move_job(&outcome.job, JobState::Completed).await?;
                    package.clear_pending_transition(&outcome.job.name.to_string()).await?;
                }
            }
            Err(e) => {
                let failure = failure_of(e);
                if failure.kind == FailureKind::Terminal {
                    // Parts that committed before the job failed leave with their journal rows:
                    // a failed job keeps none of its rows, and a rerun loads all of it again.
                    let job = &outcome.job;
                    let shown = package.job_display(job);
                    let discard = DiscardJob {
                        dataset: plan.job_dataset(&job.name.table),
                        table: &job.name.table,
                        journal_dataset: &plan.dataset,
                        load_id: &package.load_id,
                        job_id: &job.name.job_id(),
                        display: &shown,
                    };
                    let removed = self.destination.discard_job(discard).await?;
                    if removed > 0 {
                        tracing::info!(job = %shown, "removed the {removed} rows of the failed job's committed parts");
                    }
                }
                if !self.accepts(&failure) {
                    failed_tables.insert(outcome.job.name.table.clone());
                }
                if package.tracks_job_folders() {
                    let terminal = failure.kind == FailureKind::Terminal;
                    if terminal {
                        let transition = PendingTransition {
                            state: TransitionState::Failed,
                            failed_message: Some(failure.message.clone()),
                        };
                        package.write_pending_transition(&outcome.job, &transition).await?;
                    }
                    self.settle_failed(package, &outcome.job, &failure).await?;
                    if terminal {
                        package.clear_pending_transition(&outcome.job.name.to_string()).await?;
                    }
                }
            }
        }
        self.progress.job_finished(&job_summary);
        summary.push_job(job_summary);
        Ok(())
    }

    /// Completion marker, then the move to `load/loaded/` when the package sits in a dlt pipeline.
    async fn finish_folders(&self, package: &LoadPackage) -> Result<()> {
        finish_package_folders(package).await
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

/// After a package's commit: writes `package_completed.json` and, for a package in a dlt pipeline
/// folder (`load/normalized/<load id>`), moves it to `load/loaded/`. Packages elsewhere, and
/// packages in buckets, stay put.
pub async fn finish_package_folders(package: &LoadPackage) -> Result<()> {
    let Some(dir) = package.location.local_dir() else {
        // A package in a bucket stays as it is but for this marker, so that later runs (and dlt)
        // see it loaded without asking the destination. The destination's `_dlt_loads` row is the
        // record: a marker that cannot be written (read-only credentials) is only a warning.
        if package.completed.is_none()
            && let Err(e) = package.location.write(layout::COMPLETED, "loaded").await
        {
            tracing::warn!(
                "{} is loaded, but its {} marker could not be written: {e}",
                package.location,
                layout::COMPLETED
            );
        }
        return Ok(());
    };
    if !dir.is_dir() {
        // Another process finished it and moved it to `load/loaded/` while this one waited.
        return Ok(());
    }
    if package.completed.is_none() {
        package.location.write(layout::COMPLETED, "loaded").await?;
    }
    let parent = dir.parent();
    if let Some(load_dir) = parent
        .filter(|p| p.file_name().is_some_and(|n| n == "normalized"))
        .and_then(|p| p.parent())
    {
        let loaded = load_dir.join("loaded");
        let target = loaded.join(dir.file_name().unwrap_or_default());
        let moved = std::fs::create_dir_all(&loaded).and_then(|()| std::fs::rename(dir, &target));
        if let Err(e) = moved {
            return Err(berth_model::Error::store(
                "move package to",
                target.display().to_string(),
                object_store::Error::Generic {
                    store: "LocalFileSystem",
                    source: Box::new(e),
                },
            )
            .into());
        }
    }
    Ok(())
}

/// Final tables of `plan` that its migration created.
fn new_tables(plan: &PackagePlan, migration: &berth_destination::MigrationReport) -> BTreeSet<String> {
    let prefix = format!("{}.", plan.dataset);
    migration
        .created_tables
        .iter()
        .filter_map(|t| t.strip_prefix(&prefix))
        .map(str::to_string)
        .collect()
}

/// Exponential backoff with up to 25% jitter.
/// A destination error's retry verdict: transient errors are retried.
fn transient(error: &berth_destination::Error) -> Verdict {
    if error.kind() == ErrorKind::Transient {
        Verdict::Retry(None)
    } else {
        Verdict::GiveUp
    }
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
