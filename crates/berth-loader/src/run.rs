//! The one loop that runs a package's [`LoadProgram`] through an [`Executor`]: lock, reconcile
//! the folders, plan, read the journal, refresh, migrate (with retries), prepare, load the job
//! units in parallel (with retries), settle each job in dlt's folders, run the follow-ups,
//! commit and clean up, timing each phase into the summary.
//!
//! Every executor — SQL destinations, sinks, `berth plan` and the in-memory DataFusion executor —
//! goes through this loop; none of them has a copy of the package's life.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use berth_destination::{DiscardJob, ErrorKind, JobMetrics, JobPart, TableLock};
use berth_model::{FailureKind, JobFailure, JobFile, LoadPackage};
use berth_plan::keys::KeyRun;
use berth_plan::{ChainAction, PackagePlan, PlanOptions};
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use crate::executor::{ChainCall, Executor, Unit, UnitEnd};
use crate::folders::Folders;
use crate::program::{JobStep, LoadProgram, ProgramJob};
use crate::retry::{RetryPolicy, Verdict};
use crate::summary::{JobSummary, PackageStatus, PackageSummary};
use crate::{LoaderOptions, Progress, Result};

/// With a memory budget: each unit's estimate in KiB, and the jobs' share they reserve it from.
type Budget = Option<(Vec<u32>, std::sync::Arc<tokio::sync::Semaphore>)>;

/// One run of the loop over one package.
pub(crate) struct Run<'a> {
    pub(crate) executor: &'a dyn Executor,
    pub(crate) options: &'a LoaderOptions,
    pub(crate) progress: &'a dyn Progress,
    pub(crate) cancel: &'a CancellationToken,
}

/// A job while its parts load.
struct JobOutcome {
    job: ProgramJob,
    remaining: usize,
    rows: u64,
    timings: berth_destination::JobTimings,
    attempts: u32,
    started: Instant,
    error: Option<berth_destination::Error>,
    /// A part was not started, or stopped, because the load was cancelled.
    cancelled: bool,
    /// The key runs its loaded parts reported.
    keys: Vec<KeyRun>,
}

impl JobOutcome {
    fn new(job: ProgramJob, parts: usize) -> Self {
        Self {
            job,
            remaining: parts,
            rows: 0,
            timings: berth_destination::JobTimings::default(),
            attempts: 0,
            started: Instant::now(),
            error: None,
            cancelled: false,
            keys: Vec::new(),
        }
    }

    /// Folds in how one of its units ended.
    fn fold(&mut self, unit: UnitOutcome, summary: &mut PackageSummary) {
        self.remaining -= 1;
        self.attempts = self.attempts.max(unit.attempts);
        match unit.result {
            Ok(UnitEnd::Loaded(metrics)) => {
                self.rows += metrics.rows;
                self.timings += metrics.timings;
                self.keys.extend(metrics.keys);
                summary.phases.decode += metrics.timings.decode;
                summary.phases.encode += metrics.timings.encode;
                summary.phases.transfer += metrics.timings.transfer;
            }
            Ok(UnitEnd::Cancelled { rows }) => {
                self.rows += rows;
                self.cancelled = true;
            }
            Err(e) => {
                if self.error.is_none() {
                    self.error = Some(e);
                }
            }
        }
    }
}

/// How one unit ended, after its retries.
struct UnitOutcome {
    result: std::result::Result<UnitEnd, berth_destination::Error>,
    attempts: u32,
}

/// What the jobs phase leaves for the rest of the load.
#[derive(Default)]
struct JobsPhase {
    /// Tables with a job that failed and keeps the package pending.
    failed_tables: BTreeSet<String>,
    /// Per table, the key runs of the jobs that loaded in this run: only jobs that settled
    /// loaded, so every row they counted is staged (see [`berth_plan::keys`]).
    observed_keys: BTreeMap<String, Vec<KeyRun>>,
}

/// How a job's failure is handled.
fn failure_of(error: &berth_destination::Error) -> JobFailure {
    JobFailure {
        kind: error.kind().into(),
        message: error.to_string(),
    }
}

/// A step's retry verdict: transient errors are retried.
fn transient(error: &berth_destination::Error) -> Verdict {
    if error.kind() == ErrorKind::Transient {
        Verdict::Retry(None)
    } else {
        Verdict::GiveUp
    }
}

/// The tables `plan` writes in its final dataset, exclusive unless only appended to (see
/// [`berth_destination::Destination::lock_tables`]); the tables dlt's `refresh` drops or empties
/// are exclusive too.
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

impl Run<'_> {
    /// Loads one opened package.
    pub(crate) async fn package(&self, package: LoadPackage, started: Instant) -> Result<PackageSummary> {
        let dataset = package.dataset_name(self.options.dataset.as_deref());
        // One berth at a time per package and dataset: a second process waits here, then finds
        // the package loaded.
        let lock = self.executor.lock_load(&package, &dataset).await?;
        let loaded = self.locked(package, dataset, started).await;
        if let Some(lock) = lock {
            lock.release().await;
        }
        loaded
    }

    fn folders<'p>(&self, package: &'p LoadPackage) -> Folders<'p> {
        Folders::new(
            package,
            self.options.allow_failed_jobs,
            self.executor.writes() && !self.options.caller_owns_folders,
        )
    }

    fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy::new(self.options.max_attempts, self.options.retry_backoff)
    }

    /// Loads one package under its load lock.
    async fn locked(&self, package: LoadPackage, dataset: String, started: Instant) -> Result<PackageSummary> {
        let mut summary = PackageSummary::new(&package, &dataset, &self.executor.describe());
        // Whether the package is loaded is the target's to say: a `package_completed.json` marker
        // only means it was loaded somewhere (another destination or dataset, or one since reset).
        if self.executor.is_loaded(&package, &dataset).await? {
            // Committed before: at most the staging dataset and the folder moves of a run that
            // stopped after the commit remain.
            self.clean_up(&dataset, &package.load_id).await;
            self.folders(&package).finish().await?;
            summary.status = PackageStatus::AlreadyLoaded;
            return Ok(self.finished(summary, started));
        }
        let package = if self.folders(&package).reconcile().await? {
            LoadPackage::open(package.location.clone()).await?
        } else {
            package
        };
        for job in &package.jobs {
            if job.name.format.is_data() && !self.executor.accepts(job.name.format) {
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
                .unwrap_or_else(|| self.executor.default_replace_strategy()),
            widen_types: self.options.widen_types,
        };
        let plan = self.executor.plan(&package, &options)?;
        // Loads of other packages into the same tables wait here (or this one does) unless
        // all of them only append, so concurrent loads give the result of some serial order.
        let tables = self
            .executor
            .lock_tables(&dataset, &table_locks(&package, &plan))
            .await?;
        let loaded = self.planned(&package, plan, summary, started).await;
        if let Some(tables) = tables {
            tables.release().await;
        }
        loaded
    }

    /// Loads a planned package under its table locks: the program's phases in order.
    async fn planned(
        &self,
        package: &LoadPackage,
        plan: PackagePlan,
        mut summary: PackageSummary,
        started: Instant,
    ) -> Result<PackageSummary> {
        let phase = Instant::now();
        // What earlier runs committed: the journal is the truth, the job folders may lag behind it.
        let journal = self.executor.journal(package, &plan).await?;
        let mut program = LoadProgram::new(package, plan, &journal);
        if program.refresh {
            self.executor.refresh(package, &program).await?;
        }
        tracing::info!(load_id = %package.load_id, phase = "migrate", "migrating {}", program.dataset());
        summary.migration = self.migrate(package, &program.plan).await?;
        self.folders(package).schema_updates_applied().await?;
        program.migrated(self.executor.dialect(), &summary.migration);
        self.executor.prepare(package, &program).await?;
        summary.phases.migrate = phase.elapsed();

        let phase = Instant::now();
        let jobs = self.jobs(package, &program, &mut summary).await?;
        summary.phases.jobs = phase.elapsed();
        if self.cancel.is_cancelled() {
            return Ok(self.interrupted(summary, started));
        }

        let phase = Instant::now();
        if !self.followups(package, &program, &jobs, &mut summary).await? {
            return Ok(self.interrupted(summary, started));
        }
        summary.phases.followup = phase.elapsed();

        let phase = Instant::now();
        if jobs.failed_tables.is_empty() {
            tracing::info!(load_id = %package.load_id, phase = "commit", "writing the load marker");
            self.executor.commit(package, &program).await?;
            tracing::info!(load_id = %package.load_id, phase = "finish", "committed; cleaning up");
            // Also when this run's plan stages nothing: an earlier run of the package (with
            // other options) may have left its staging dataset pending.
            self.clean_up(program.dataset(), &package.load_id).await;
            self.folders(package).finish().await?;
            summary.status = if summary.failed_jobs().next().is_some() {
                PackageStatus::LoadedWithFailedJobs
            } else {
                PackageStatus::Loaded
            };
        } else {
            summary.status = PackageStatus::Pending;
        }
        summary.phases.commit = phase.elapsed();
        Ok(self.finished(summary, started))
    }

    /// Migrates, retrying transient failures (a concurrent load creating the same dataset or
    /// table; a dropped connection): the migration is idempotent and all-or-nothing where DDL is
    /// transactional.
    async fn migrate(
        &self,
        package: &LoadPackage,
        plan: &PackagePlan,
    ) -> std::result::Result<berth_destination::MigrationReport, berth_destination::Error> {
        let retried = self
            .retry_policy()
            .run(
                self.cancel,
                || self.executor.migrate(package, plan),
                transient,
                |attempt, e, wait| {
                    tracing::warn!(load_id = %package.load_id, attempt, "migration failed transiently, retrying in {wait:?}: {e}");
                },
            )
            .await;
        retried.result
    }

    /// The jobs phase: starts every pending job, splits it into units, loads them with bounded
    /// parallelism and settles each job once all its units ended.
    async fn jobs(
        &self,
        package: &LoadPackage,
        program: &LoadProgram,
        summary: &mut PackageSummary,
    ) -> Result<JobsPhase> {
        let mut phase = JobsPhase::default();
        let completed_here = program.jobs.iter().filter(|j| j.step == JobStep::Done);
        summary.record_completed(completed_here.map(|j| &j.job));
        // Jobs in `failed_jobs/` failed in an earlier run that allowed failed jobs.
        for job in program.jobs.iter().filter(|j| j.step == JobStep::FailedEarlier) {
            let failure = package.job_failure(&job.job).await?;
            summary.push_job(JobSummary::previously_failed(package, &job.job, failure));
        }
        self.progress.package_started(package, program.pending().count());
        let parallel = self
            .executor
            .max_parallel_units()
            .map_or(self.options.parallel_jobs, |m| m.min(self.options.parallel_jobs))
            .max(1);
        let mut jobs = Vec::new();
        let mut units = Vec::new();
        for pending in program.pending() {
            let job = ProgramJob {
                job: self.folders(package).start(&pending.job).await?,
                ..pending.clone()
            };
            match self.executor.parts(package, &job, parallel).await {
                Ok(parts) => {
                    units.extend(parts.iter().map(|part| (jobs.len(), part.clone())));
                    jobs.push(JobOutcome::new(job, parts.len()));
                }
                Err(error) => {
                    // The file cannot even be inspected: the job fails, the others go on.
                    let outcome = JobOutcome::new(job, 0);
                    self.settle(package, program, summary, &mut phase, &outcome, Err(error))
                        .await?;
                }
            }
        }
        // Jobs whose every part committed in an earlier run only need their folder move.
        for outcome in jobs.iter().filter(|o| o.remaining == 0) {
            self.settle(package, program, summary, &mut phase, outcome, Ok(()))
                .await?;
        }
        tracing::info!(load_id = %package.load_id, phase = "jobs", "loading {} part(s)", units.len());
        let budget = self.fit_budget(package, &jobs, &units).await?;
        self.units(package, program, summary, &mut phase, jobs, units, parallel, budget)
            .await?;
        Ok(phase)
    }

    /// With a memory budget: each unit's estimate (KiB), and the semaphore of the jobs' share (in
    /// KiB) they reserve it from. A unit that cannot fit fails the load before any unit starts.
    async fn fit_budget(
        &self,
        package: &LoadPackage,
        jobs: &[JobOutcome],
        units: &[(usize, JobPart)],
    ) -> Result<Budget> {
        let Some(budget) = self.options.memory_budget else {
            return Ok(None);
        };
        let base = crate::budget::resident_now();
        let engine_reads = self.executor.engine_reads_parquet();
        let mut infos = std::collections::HashMap::new();
        let mut estimates = Vec::with_capacity(units.len());
        for (index, part) in units {
            if !infos.contains_key(index) && !engine_reads {
                let info = crate::budget::parquet_info(package, &jobs[*index].job.job).await;
                infos.insert(*index, info);
            }
            let info = infos.get(index).and_then(Option::as_ref);
            let parquet = jobs[*index].job.job.name.format == berth_model::FileFormat::Parquet;
            estimates.push(crate::budget::unit_estimate(part, info, engine_reads && parquet));
        }
        let largest = estimates.iter().copied().max().unwrap_or(0);
        let engine = self
            .executor
            .cap_engine_memory(crate::budget::engine_share(budget, base, largest))?;
        let share = budget
            .saturating_sub(base)
            .saturating_sub(engine.saturating_add(if engine > 0 { crate::budget::ENGINE_OVERHEAD } else { 0 }));
        if let Some(at) = estimates.iter().position(|e| *e > share) {
            let (index, part) = &units[at];
            let needs = format!(
                "job {} ({part}) needs about {} MiB to load",
                package.job_display(&jobs[*index].job.job),
                crate::budget::mib(estimates[at])
            );
            return Err(crate::budget::too_small(&self.executor.describe(), budget, base, engine, &needs).into());
        }
        let estimates = estimates
            .iter()
            .map(|e| u32::try_from(e.div_ceil(1024)).unwrap_or(u32::MAX))
            .collect();
        let permits = usize::try_from(share / 1024)
            .unwrap_or(usize::MAX)
            .min(tokio::sync::Semaphore::MAX_PERMITS);
        tracing::info!(
            "memory budget {} MiB: {} MiB for the jobs' parts, {} MiB base, {} MiB embedded database",
            crate::budget::mib(budget),
            crate::budget::mib(share),
            crate::budget::mib(base),
            crate::budget::mib(engine)
        );
        Ok(Some((
            estimates,
            std::sync::Arc::new(tokio::sync::Semaphore::new(permits)),
        )))
    }

    /// Loads `units` (job index, part) with `parallel` at once, settling each job as its last
    /// unit ends.
    #[expect(clippy::too_many_arguments, reason = "the phase's state, passed down once")]
    async fn units(
        &self,
        package: &LoadPackage,
        program: &LoadProgram,
        summary: &mut PackageSummary,
        phase: &mut JobsPhase,
        mut jobs: Vec<JobOutcome>,
        units: Vec<(usize, JobPart)>,
        parallel: usize,
        budget: Budget,
    ) -> Result<()> {
        let job_steps: Vec<ProgramJob> = jobs.iter().map(|o| o.job.clone()).collect();
        let steps = &job_steps;
        let budget = &budget;
        let mut results = futures::stream::iter(units.into_iter().enumerate())
            .map(|(position, (index, part))| async move {
                // Within a memory budget, a part starts once its estimate fits what is free.
                let _reserved = match budget {
                    Some((estimates, semaphore)) => std::sync::Arc::clone(semaphore)
                        .acquire_many_owned(estimates[position])
                        .await
                        .ok(),
                    None => None,
                };
                // Checked as each part is about to start: a cancelled load starts nothing new.
                if self.cancel.is_cancelled() {
                    let cancelled = UnitOutcome {
                        result: Ok(UnitEnd::Cancelled { rows: 0 }),
                        attempts: 0,
                    };
                    return (index, cancelled);
                }
                (index, self.unit(package, program, &steps[index], part).await)
            })
            .buffer_unordered(parallel);
        while let Some((index, unit)) = results.next().await {
            // Every part ends by handing its freed heap back: without it each worker thread's malloc
            // arena keeps the high-water mark of the parts it ran, and memory grows with the number
            // of parts (ten 5M-row packages peaked at 130–161 MiB, one at 103 MiB).
            crate::budget::return_freed_memory();
            let outcome = &mut jobs[index];
            outcome.fold(unit, summary);
            if outcome.remaining > 0 {
                continue;
            }
            if outcome.cancelled && outcome.error.is_none() {
                // Not all of it ran: it stays in `started_jobs/`; what it committed is recorded
                // and the next run loads the rest.
                summary.interrupted_jobs += 1;
                continue;
            }
            let result = outcome.error.take().map_or(Ok(()), Err);
            self.settle(package, program, summary, phase, outcome, result).await?;
        }
        Ok(())
    }

    /// Loads one unit, retrying transient errors.
    async fn unit(&self, package: &LoadPackage, program: &LoadProgram, job: &ProgramJob, part: JobPart) -> UnitOutcome {
        let Some(table) = package.schema.table(&job.job.name.table) else {
            let error = berth_model::Error::TableNotInSchema {
                job: package.job_display(&job.job),
                table: job.job.name.table.clone(),
            };
            return UnitOutcome {
                result: Err(error.into()),
                attempts: 0,
            };
        };
        let retried = self
            .retry_policy()
            .run(
                self.cancel,
                || {
                    self.executor.load_unit(Unit {
                        package,
                        job,
                        table,
                        part: part.clone(),
                        journal_dataset: program.dataset(),
                        read_options: &self.options.read_options,
                        cancel: self.cancel,
                    })
                },
                transient,
                |attempt, e, wait| {
                    tracing::warn!(job = %job.job.name, %part, attempt, "transient error, retrying in {wait:?}: {e}");
                },
            )
            .await;
        if retried.cancelled {
            return UnitOutcome {
                result: Ok(UnitEnd::Cancelled { rows: 0 }),
                attempts: retried.attempts,
            };
        }
        UnitOutcome {
            result: retried.result,
            attempts: retried.attempts,
        }
    }

    /// Settles a finished job: folder move (or requeue when it failed), the rows of a terminally
    /// failed job's committed parts removed, summary, progress.
    async fn settle(
        &self,
        package: &LoadPackage,
        program: &LoadProgram,
        summary: &mut PackageSummary,
        phase: &mut JobsPhase,
        outcome: &JobOutcome,
        result: std::result::Result<(), berth_destination::Error>,
    ) -> Result<()> {
        let job = &outcome.job.job;
        let result = result.map(|()| JobMetrics {
            keys: None,
            rows: outcome.rows,
            bytes: job.size,
            timings: outcome.timings,
        });
        let job_summary = JobSummary::from_outcome(package, job, &result, outcome.attempts, outcome.started.elapsed());
        let folders = self.folders(package);
        match &result {
            Ok(_) => {
                let runs = phase.observed_keys.entry(job.name.table.clone()).or_default();
                runs.extend(outcome.keys.iter().copied());
                folders.complete(job).await?;
            }
            Err(e) => {
                let failure = failure_of(e);
                if failure.kind == FailureKind::Terminal {
                    self.discard(package, program, job).await?;
                }
                if !folders.accepts(&failure) {
                    phase.failed_tables.insert(job.name.table.clone());
                }
                folders.fail(job, &failure).await?;
            }
        }
        self.progress.job_finished(&job_summary);
        summary.push_job(job_summary);
        Ok(())
    }

    /// Parts that committed before the job failed leave with their journal rows: a failed job
    /// keeps none of its rows, and a rerun loads all of it again.
    async fn discard(&self, package: &LoadPackage, program: &LoadProgram, job: &JobFile) -> Result<()> {
        let shown = package.job_display(job);
        let discard = DiscardJob {
            dataset: program.plan.job_dataset(&job.name.table),
            table: &job.name.table,
            journal_dataset: program.dataset(),
            load_id: &package.load_id,
            job_id: &job.name.job_id(),
            display: &shown,
        };
        let removed = self.executor.discard_job(discard).await?;
        if removed > 0 {
            tracing::info!(job = %shown, "removed the {removed} rows of the failed job's committed parts");
        }
        Ok(())
    }

    /// The follow-ups: a chain's runs once all its jobs loaded, exactly once (its journal record
    /// commits with it). Returns `false` when cancelled before all ran.
    async fn followups(
        &self,
        package: &LoadPackage,
        program: &LoadProgram,
        jobs: &JobsPhase,
        summary: &mut PackageSummary,
    ) -> Result<bool> {
        for chain in &program.chains {
            if chain
                .plan
                .tables_with_jobs
                .iter()
                .any(|t| jobs.failed_tables.contains(t))
            {
                continue;
            }
            if self.cancel.is_cancelled() {
                return Ok(false);
            }
            if chain.followup_done {
                continue;
            }
            if chain.plan.action.loads_to_staging() {
                tracing::info!(load_id = %package.load_id, phase = "followup", "follow-up of {}", chain.plan.root);
            }
            let at = ChainCall {
                package,
                program,
                chain,
            };
            let state = if chain.merges() {
                let mut state = chain.initial_state();
                if let Some(runs) = jobs.observed_keys.get(&chain.plan.root) {
                    state.observed_keys.insert(chain.plan.root.clone(), runs.clone());
                }
                self.executor.measure(at, state).await?
            } else {
                chain.initial_state()
            };
            summary.followup_statements += self.executor.followup(at, &state).await?;
        }
        Ok(true)
    }

    /// Drops the load's staging dataset unless it is kept.
    async fn clean_up(&self, dataset: &str, load_id: &str) {
        if !self.options.keep_staging {
            self.executor.clean_up(dataset, load_id).await;
        }
    }

    /// Ends a load that was cancelled before its commit: nothing more runs, the package stays
    /// resumable.
    fn interrupted(&self, mut summary: PackageSummary, started: Instant) -> PackageSummary {
        tracing::warn!(load_id = %summary.load_id, "interrupted before the commit; the package resumes on the next run");
        summary.status = PackageStatus::Interrupted;
        self.finished(summary, started)
    }

    /// Stamps the elapsed time and reports the package's end.
    fn finished(&self, mut summary: PackageSummary, started: Instant) -> PackageSummary {
        summary.elapsed = started.elapsed();
        self.progress.package_finished(&summary);
        summary
    }
}
