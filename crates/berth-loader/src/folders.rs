//! dlt's folder protocol, written once for every executor: `new_jobs → started_jobs →
//! completed_jobs`, a `.pending_transitions/` marker between the commit of a job and its folder
//! move, failed jobs back to `new_jobs/` with a `.exceptions/` file (or to `failed_jobs/` when
//! failed jobs are allowed), and the package's `package_completed.json` and its move to
//! `load/loaded/` after the commit.
//!
//! Only packages whose folders can be renamed atomically (local disk) are moved; packages in
//! buckets are never modified but for their completion marker.

use berth_model::package::layout;
use berth_model::{FailureKind, JobFailure, JobFile, JobState, LoadPackage, PendingTransition, TransitionState};

use crate::Result;

/// The folder protocol for one package.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Folders<'a> {
    package: &'a LoadPackage,
    /// Terminal failures go to `failed_jobs/` (dlt's `raise_on_failed_jobs=false`).
    allow_failed_jobs: bool,
    /// The executor changes the destination (it is not a dry run): the package records it.
    writes: bool,
    /// Job folders move (local packages, loaded for real).
    moves: bool,
}

impl<'a> Folders<'a> {
    /// The protocol for `package`; `writes`: the executor changes the destination (not a dry
    /// run, which leaves the package as it is).
    pub(crate) fn new(package: &'a LoadPackage, allow_failed_jobs: bool, writes: bool) -> Self {
        Self {
            package,
            allow_failed_jobs,
            writes,
            moves: writes && package.tracks_job_folders(),
        }
    }

    /// The migration applied the package's `schema_updates.json`: dlt renames it.
    pub(crate) async fn schema_updates_applied(&self) -> Result<()> {
        if self.moves && self.package.schema_update_pending {
            self.package
                .location
                .rename(layout::SCHEMA_UPDATES, layout::APPLIED_SCHEMA_UPDATES)
                .await?;
        }
        Ok(())
    }

    /// Is a job that failed this way left out of the package rather than keeping it pending?
    pub(crate) fn accepts(&self, failure: &JobFailure) -> bool {
        self.allow_failed_jobs && failure.kind == FailureKind::Terminal
    }

    /// Brings the job folders of a resumed package in line with what happened: replays the
    /// `.pending_transitions/` markers of a run that stopped between a commit and a folder move,
    /// and, unless failed jobs are allowed, queues jobs in `failed_jobs/` again (they failed in a
    /// run that allowed failed jobs but stopped before its commit). Returns whether anything
    /// moved (the package must then be opened again).
    pub(crate) async fn reconcile(&self) -> Result<bool> {
        if !self.moves {
            return Ok(false);
        }
        let package = self.package;
        let mut moved = false;
        for (file, transition) in &package.pending_transitions {
            let started = package
                .jobs
                .iter()
                .find(|j| j.state == JobState::Started && j.name == *file);
            if let Some(job) = started {
                if transition.state == TransitionState::Completed {
                    package.move_job(job, JobState::Completed).await?;
                } else {
                    let failure = JobFailure {
                        kind: FailureKind::Terminal,
                        message: transition.failed_message.clone().unwrap_or_default(),
                    };
                    self.settle_failed(job, &failure).await?;
                }
            }
            package.clear_pending_transition(file).await?;
            moved = true;
        }
        if !self.allow_failed_jobs {
            for job in package.jobs_in(JobState::Failed) {
                let failure = package.job_failure(job).await?.unwrap_or(JobFailure {
                    kind: FailureKind::Terminal,
                    message: String::new(),
                });
                package.requeue_job(job, &failure).await?;
                moved = true;
            }
        }
        Ok(moved)
    }

    /// Moves a job about to load to `started_jobs/`; returns it as it is now.
    pub(crate) async fn start(&self, job: &JobFile) -> Result<JobFile> {
        if !self.moves || job.state == JobState::Started {
            return Ok(job.clone());
        }
        Ok(self.package.move_job(job, JobState::Started).await?)
    }

    /// A job committed: the marker says "committed" until the file has moved.
    pub(crate) async fn complete(&self, job: &JobFile) -> Result<()> {
        if !self.moves {
            return Ok(());
        }
        let transition = PendingTransition {
            state: TransitionState::Completed,
            failed_message: None,
        };
        self.package.write_pending_transition(job, &transition).await?;
        self.package.move_job(job, JobState::Completed).await?;
        self.package.clear_pending_transition(&job.name).await?;
        Ok(())
    }

    /// A job failed: terminal failures are marked before the move, so a crash between the two
    /// still settles the job on the next run.
    pub(crate) async fn fail(&self, job: &JobFile, failure: &JobFailure) -> Result<()> {
        if !self.moves {
            return Ok(());
        }
        let terminal = failure.kind == FailureKind::Terminal;
        if terminal {
            let transition = PendingTransition {
                state: TransitionState::Failed,
                failed_message: Some(failure.message.clone()),
            };
            self.package.write_pending_transition(job, &transition).await?;
        }
        self.settle_failed(job, failure).await?;
        if terminal {
            self.package.clear_pending_transition(&job.name).await?;
        }
        Ok(())
    }

    /// Moves a failed job where dlt's protocol puts it: `failed_jobs/` when failed jobs are
    /// allowed and the failure is terminal, else back to `new_jobs/` for the next run.
    async fn settle_failed(&self, job: &JobFile, failure: &JobFailure) -> Result<()> {
        if self.accepts(failure) {
            self.package.fail_job(job, &failure.message).await?;
        } else {
            self.package.requeue_job(job, failure).await?;
        }
        Ok(())
    }

    /// After the commit: `package_completed.json`, and the move to `load/loaded/` (see
    /// [`finish_package_folders`]).
    pub(crate) async fn finish(&self) -> Result<()> {
        if !self.writes {
            // A dry run leaves the package as it is.
            return Ok(());
        }
        finish_package_folders(self.package).await
    }
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
