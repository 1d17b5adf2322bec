//! Runs packages through a sink, recording each acknowledged batch in the package state.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use berth_loader::{
    CancellationToken, JobStatus, JobSummary, LoadSummary, NoProgress, PackageStatus, PackageSummary, Progress, Result,
    RetryPolicy, Verdict,
};
use berth_model::package::layout;
use berth_model::read::{self, ReadOptions};
use berth_model::{FailureKind, JobFailure, JobFile, JobState, LoadPackage, PackageLocation};
use futures::StreamExt;
use serde_json::{Map, Value};

use crate::flatten::Shaping;
use crate::rebatch::Rebatcher;
use crate::{NdjsonSink, Sink, SinkBatch, SinkError, SinkErrorKind, SinkTable, WebhookConfig, WebhookSink};

/// The package-state key dlt's sink destination records progress under.
const DESTINATION_STATE: &str = "destination_state";

/// How a [`SinkLoader`] sends.
#[derive(Debug, Clone)]
pub struct SinkOptions {
    /// Rows per batch the sink gets (dlt's `batch_size`); 0: one call per job file with its path.
    pub batch_size: usize,
    /// Leave out dlt's own tables and `_dlt_*` columns (dlt's `skip_dlt_columns_and_tables`).
    pub skip_dlt: bool,
    /// Struct levels flattened into `parent__child` columns (dlt's `max_table_nesting` for the
    /// values a sink gets); 0 keeps nested values as they are in the job file.
    pub max_nesting: usize,
    /// Jobs sending at once (each sends its batches in order).
    pub parallel_jobs: usize,
    /// Attempts per batch while the sink reports transient errors.
    pub max_attempts: u32,
    /// Wait before the first retry, doubled for each further one (a `Retry-After` wins when
    /// longer).
    pub retry_backoff: Duration,
    /// How job files are read.
    pub read_options: ReadOptions,
    /// A job the sink refuses terminally goes to `failed_jobs/` and the package completes without
    /// it (dlt's `raise_on_failed_jobs=false`); otherwise it is queued again and the package stays
    /// pending.
    pub allow_failed_jobs: bool,
}

impl Default for SinkOptions {
    fn default() -> Self {
        Self {
            batch_size: 100,
            skip_dlt: true,
            max_nesting: 0,
            parallel_jobs: 1,
            max_attempts: 5,
            retry_backoff: Duration::from_millis(500),
            read_options: ReadOptions::default(),
            allow_failed_jobs: false,
        }
    }
}

impl SinkOptions {
    /// Rows per batch (0: file paths).
    pub fn with_batch_size(mut self, rows: usize) -> Self {
        self.batch_size = rows;
        self
    }
}

/// A sink for a destination URL: `webhook+http(s)://…` (configured by `webhook`) or
/// `ndjson:<file>` / `ndjson:-` (standard output).
pub fn open_sink(url: &str, webhook: WebhookConfig) -> std::result::Result<Arc<dyn Sink>, SinkError> {
    if let Some(path) = url.strip_prefix("ndjson:") {
        return Ok(match path {
            "" | "-" => Arc::new(NdjsonSink::stdout()),
            path => {
                Arc::new(NdjsonSink::file(path).map_err(|e| SinkError::terminal(format!("cannot open {path}: {e}")))?)
            }
        });
    }
    if url.starts_with("webhook+") {
        return Ok(Arc::new(WebhookSink::new(url, webhook)?));
    }
    Err(SinkError::terminal(
        "a sink destination is webhook+http://…, webhook+https://… or ndjson:<file> (ndjson:- for standard output)",
    ))
}

/// Loads packages into a [`Sink`].
#[derive(Debug, Clone)]
pub struct SinkLoader {
    sink: Arc<dyn Sink>,
    options: SinkOptions,
    progress: Arc<dyn Progress>,
    cancel: CancellationToken,
}

/// The package state's progress record, written after every acknowledged batch.
#[derive(Debug)]
struct StateFile {
    raw: Map<String, Value>,
}

impl StateFile {
    fn sent(&self, key: &str) -> u64 {
        self.raw
            .get(DESTINATION_STATE)
            .and_then(|s| s.get(key))
            .and_then(Value::as_u64)
            .unwrap_or(0)
    }

    /// Records `rows` sent for `key` and writes the state (object stores replace it whole; the
    /// local store writes a temporary file and renames it).
    async fn record(&mut self, package: &LoadPackage, key: &str, rows: u64) -> Result<()> {
        let destination = self
            .raw
            .entry(DESTINATION_STATE)
            .or_insert_with(|| Value::Object(Map::new()));
        if !destination.is_object() {
            *destination = Value::Object(Map::new());
        }
        if let Some(map) = destination.as_object_mut() {
            map.insert(key.to_string(), rows.into());
        }
        let version = self.raw.get("_state_version").and_then(Value::as_u64).unwrap_or(0) + 1;
        self.raw.insert("_state_version".into(), version.into());
        let text = serde_json::to_vec(&self.raw).unwrap_or_default();
        package.location.write(layout::STATE, text).await?;
        Ok(())
    }
}

/// How a job ended.
enum JobEnd {
    Sent,
    Failed(SinkError),
    Cancelled,
}

impl SinkLoader {
    /// Loads into `sink` with default options.
    pub fn new(sink: Arc<dyn Sink>) -> Self {
        Self {
            sink,
            options: SinkOptions::default(),
            progress: Arc::new(NoProgress),
            cancel: CancellationToken::new(),
        }
    }

    /// Sets the options.
    pub fn with_options(mut self, options: SinkOptions) -> Self {
        self.options = options;
        self
    }

    /// Reports progress to `progress`.
    pub fn with_progress(mut self, progress: Arc<dyn Progress>) -> Self {
        self.progress = progress;
        self
    }

    /// Stops sending when `cancel` is cancelled: the batch in flight finishes, the package stays
    /// resumable.
    pub fn with_cancel(mut self, cancel: CancellationToken) -> Self {
        self.cancel = cancel;
        self
    }

    /// Loads packages in order; stops at the first that does not complete.
    pub async fn load_all(&self, locations: Vec<PackageLocation>) -> Result<LoadSummary> {
        berth_loader::load_in_order(self.sink.describe(), &self.cancel, locations, |l| self.load(l)).await
    }

    /// Sends one package.
    pub async fn load(&self, location: PackageLocation) -> Result<PackageSummary> {
        let started = Instant::now();
        let package = LoadPackage::open(location).await?;
        let mut summary = PackageSummary::new(&package, &package.default_dataset(), &self.sink.describe());
        if package.completed.is_some() {
            berth_loader::finish_package_folders(&package).await?;
            summary.status = PackageStatus::AlreadyLoaded;
            summary.elapsed = started.elapsed();
            self.progress.package_finished(&summary);
            return Ok(summary);
        }
        summary.record_completed(package.jobs_in(JobState::Completed));
        // Jobs queued again, started by a run that stopped, or failed in a run that did not allow
        // failures are all sent (from their recorded progress on).
        let pending: Vec<JobFile> = package
            .jobs
            .iter()
            .filter(|j| j.name.format.is_data())
            .filter(|j| match j.state {
                JobState::New | JobState::Started => true,
                JobState::Failed => !self.options.allow_failed_jobs,
                _ => false,
            })
            .cloned()
            .collect();
        self.progress.package_started(&package, pending.len());
        let mut started_jobs = Vec::with_capacity(pending.len());
        for job in pending {
            started_jobs.push(if package.tracks_job_folders() && job.state != JobState::Started {
                package.move_job(&job, JobState::Started).await?
            } else {
                job
            });
        }
        let state = tokio::sync::Mutex::new(StateFile {
            raw: package.state.raw.clone(),
        });
        let phase = Instant::now();
        let (package_ref, state_ref) = (&package, &state);
        let mut results = futures::stream::iter(started_jobs)
            .map(|job| async move {
                let job_started = Instant::now();
                let (end, rows, attempts) = self.run_job(package_ref, state_ref, &job).await;
                (job, end, rows, attempts, job_started.elapsed())
            })
            .buffer_unordered(self.options.parallel_jobs.max(1));
        let mut pending_failures = 0;
        let mut cancelled = 0;
        while let Some((job, end, rows, attempts, elapsed)) = results.next().await {
            let error = match &end {
                JobEnd::Sent => {
                    if package.tracks_job_folders() {
                        package.move_job(&job, JobState::Completed).await?;
                    }
                    None
                }
                JobEnd::Cancelled => {
                    cancelled += 1;
                    continue;
                }
                JobEnd::Failed(error) => {
                    let failure = JobFailure {
                        kind: match error.kind {
                            SinkErrorKind::Transient => FailureKind::Transient,
                            SinkErrorKind::Terminal => FailureKind::Terminal,
                        },
                        message: error.message.clone(),
                    };
                    let allowed = self.options.allow_failed_jobs && error.kind == SinkErrorKind::Terminal;
                    if package.tracks_job_folders() {
                        if allowed {
                            package.fail_job(&job, &failure.message).await?;
                        } else {
                            package.requeue_job(&job, &failure).await?;
                        }
                    }
                    if !allowed {
                        pending_failures += 1;
                    }
                    Some(error.message.clone())
                }
            };
            let job_summary = JobSummary {
                job_id: job.name.job_id(),
                table: job.name.table.clone(),
                file: package.job_display(&job),
                state: if error.is_some() {
                    JobStatus::Failed
                } else {
                    JobStatus::Completed
                },
                rows,
                bytes: job.size,
                attempts,
                seconds: elapsed,
                error,
            };
            self.progress.job_finished(&job_summary);
            summary.push_job(job_summary);
        }
        drop(results);
        summary.phases.jobs = phase.elapsed();
        summary.interrupted_jobs = cancelled;
        summary.status = if cancelled > 0 {
            PackageStatus::Interrupted
        } else if pending_failures > 0 {
            PackageStatus::Pending
        } else {
            if let Err(e) = self.sink.flush().await {
                return Err(berth_loader::Error::from(berth_model::Error::Decode {
                    job: package.location.to_string(),
                    message: format!("the sink could not flush: {e}"),
                }));
            }
            let commit = Instant::now();
            berth_loader::finish_package_folders(&package).await?;
            summary.phases.commit = commit.elapsed();
            if summary.failed_jobs().next().is_some() {
                PackageStatus::LoadedWithFailedJobs
            } else {
                PackageStatus::Loaded
            }
        };
        summary.elapsed = started.elapsed();
        self.progress.package_finished(&summary);
        Ok(summary)
    }

    /// Sends one job from its recorded progress on. Returns how it ended, the rows sent now and
    /// the most attempts a batch took.
    async fn run_job(
        &self,
        package: &LoadPackage,
        state: &tokio::sync::Mutex<StateFile>,
        job: &JobFile,
    ) -> (JobEnd, u64, u32) {
        match self.send_job(package, state, job).await {
            Ok(done) => done,
            Err(e) => (JobEnd::Failed(reading_failed(&e)), 0, 1),
        }
    }

    async fn send_job(
        &self,
        package: &LoadPackage,
        state: &tokio::sync::Mutex<StateFile>,
        job: &JobFile,
    ) -> Result<(JobEnd, u64, u32)> {
        // dlt's own tables are no-op jobs for a sink that skips them.
        if self.options.skip_dlt && berth_model::schema::is_dlt_name(&job.name.table) {
            return Ok((JobEnd::Sent, 0, 0));
        }
        if self.cancel.is_cancelled() {
            return Ok((JobEnd::Cancelled, 0, 0));
        }
        let key = format!("{}.{}", job.name.table, job.name.file_id);
        let mut sent = state.lock().await.sent(&key);
        let shaping = Shaping {
            skip_dlt: self.options.skip_dlt,
            max_nesting: self.options.max_nesting,
        };
        let mut dlt = package
            .schema
            .table(&job.name.table)
            .cloned()
            .unwrap_or_else(|| berth_model::Table::new(job.name.table.clone(), Vec::new()));
        if self.options.skip_dlt {
            dlt.columns.retain(|name, _| !berth_model::schema::is_dlt_name(name));
        }
        let mut reader = read::open_job(package, job, &self.options.read_options).await?;
        let schema = shaping.schema(&reader.schema);
        let table = Arc::new(SinkTable {
            name: job.name.table.clone(),
            schema: Arc::clone(&schema),
            dlt,
        });
        let make = |index: u64, first_row: u64, rows: RecordBatch, file: Option<String>| SinkBatch {
            table: Arc::clone(&table),
            load_id: package.load_id.clone(),
            job: key.clone(),
            index,
            first_row,
            rows,
            file,
        };
        let mut attempts_max = 0;
        if self.options.batch_size == 0 {
            // The whole file, once: progress 1 means sent.
            if sent > 0 {
                return Ok((JobEnd::Sent, 0, 0));
            }
            let file = match package.location.local_dir() {
                Some(dir) => dir.join(job.relative_path()).display().to_string(),
                None => package.location.display_child(&job.relative_path()),
            };
            let batch = make(0, 0, RecordBatch::new_empty(Arc::clone(&schema)), Some(file));
            let (result, attempts) = self.send_with_retries(batch).await;
            if let Err(e) = result {
                return Ok((JobEnd::Failed(e), 0, attempts));
            }
            state.lock().await.record(package, &key, 1).await?;
            return Ok((JobEnd::Sent, 0, attempts));
        }
        let size = self.options.batch_size as u64;
        let mut rebatcher = Rebatcher::new(Arc::clone(&schema), self.options.batch_size, sent);
        let mut now_sent = 0;
        let mut finished = false;
        while !finished {
            let full = match reader.stream.next().await {
                Some(batch) => {
                    let batch = shaping
                        .apply(&batch?, &schema)
                        .map_err(|e| self.decode_error(package, job, e))?;
                    rebatcher.push(batch).map_err(|e| self.decode_error(package, job, e))?
                }
                None => {
                    finished = true;
                    rebatcher
                        .finish()
                        .map_err(|e| self.decode_error(package, job, e))?
                        .into_iter()
                        .collect()
                }
            };
            for rows in full {
                if self.cancel.is_cancelled() {
                    return Ok((JobEnd::Cancelled, now_sent, attempts_max));
                }
                let count = rows.num_rows() as u64;
                let (result, attempts) = self.send_with_retries(make(sent / size, sent, rows, None)).await;
                attempts_max = attempts_max.max(attempts);
                if let Err(e) = result {
                    // Cut short by Ctrl-C while waiting to retry: the package stays resumable.
                    let end = if self.cancel.is_cancelled() {
                        JobEnd::Cancelled
                    } else {
                        JobEnd::Failed(e)
                    };
                    return Ok((end, now_sent, attempts_max));
                }
                sent += count;
                now_sent += count;
                state.lock().await.record(package, &key, sent).await?;
            }
        }
        Ok((JobEnd::Sent, now_sent, attempts_max))
    }

    fn decode_error(&self, package: &LoadPackage, job: &JobFile, e: arrow::error::ArrowError) -> berth_loader::Error {
        berth_model::Error::Decode {
            job: package.job_display(job),
            message: e.to_string(),
        }
        .into()
    }

    /// Sends `batch` until the sink takes it, refuses it terminally or the attempts run out.
    async fn send_with_retries(&self, batch: SinkBatch) -> (std::result::Result<(), SinkError>, u32) {
        let policy = RetryPolicy::new(self.options.max_attempts, self.options.retry_backoff);
        let retried = policy
            .run(
                &self.cancel,
                || self.sink.send(batch.clone()),
                |e: &SinkError| match e.kind {
                    SinkErrorKind::Transient => Verdict::Retry(e.retry_after),
                    SinkErrorKind::Terminal => Verdict::GiveUp,
                },
                |attempt, e, wait| {
                    tracing::warn!(
                        "{} batch {} (attempt {attempt}): {}; retrying in {:.1} s",
                        batch.job,
                        batch.index,
                        e.message,
                        wait.as_secs_f64()
                    );
                },
            )
            .await;
        let result = match retried.result {
            Err(e) if !retried.cancelled => {
                let message = format!("{} batch {}: {}", batch.job, batch.index, e.message);
                Err(SinkError { message, ..e })
            }
            other => other,
        };
        (result, retried.attempts)
    }
}

/// A job that could not be read or recorded fails as what the error is: a store hiccup (a
/// transient S3 failure) keeps the package pending for the next run, bad data is terminal.
fn reading_failed(error: &berth_loader::Error) -> SinkError {
    match error.kind() {
        berth_destination::ErrorKind::Transient => SinkError::transient(error.to_string()),
        _ => SinkError::terminal(error.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_that_cannot_be_read_fails_as_what_the_error_is() {
        let hiccup = berth_model::Error::store(
            "reading",
            "s3://lake/pkg/new_jobs/t.1.0.parquet",
            object_store::Error::Generic {
                store: "S3",
                source: "connection reset by peer".into(),
            },
        );
        assert_eq!(reading_failed(&hiccup.into()).kind, SinkErrorKind::Transient);
        let bad = berth_model::Error::Decode {
            job: "t.1.0.parquet".into(),
            message: "not a readable Parquet file".into(),
        };
        assert_eq!(reading_failed(&bad.into()).kind, SinkErrorKind::Terminal);
    }
}
