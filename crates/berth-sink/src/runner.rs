//! Runs packages through a sink, recording each acknowledged batch in the package state.

use std::sync::Arc;
use std::time::Duration;

use arrow::array::RecordBatch;
use async_trait::async_trait;
use berth_destination::{JobMetrics, JobTimings};
use berth_loader::{
    CancellationToken, Executor, LoadProgram, LoadSummary, Loader, LoaderOptions, NoProgress, PackageSummary, Progress,
    Result, RetryPolicy, StepResult, Unit, UnitEnd, Verdict,
};
use berth_model::package::layout;
use berth_model::read::{self, ReadOptions};
use berth_model::{JobFile, LoadId, LoadPackage, PackageLocation};
use berth_plan::{PackagePlan, PlanOptions};
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
    /// The caller owns the package's folders (dlt's load step, when berth runs a dlt
    /// destination): see [`LoaderOptions::caller_owns_folders`].
    pub caller_owns_folders: bool,
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
            caller_owns_folders: false,
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

/// Loads packages into a [`Sink`]: the loader's own program and loop (`berth_loader::run`)
/// through a [`SinkExecutor`], so a sink keeps dlt's folder protocol like every destination.
#[derive(Debug, Clone)]
pub struct SinkLoader {
    sink: Arc<dyn Sink>,
    options: SinkOptions,
    progress: Arc<dyn Progress>,
    cancel: CancellationToken,
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

    /// The loader that runs packages through this sink (its [`SinkExecutor`] in the loader's
    /// loop, with these options, progress and cancellation).
    pub fn loader(&self) -> Loader {
        let executor = SinkExecutor {
            sink: Arc::clone(&self.sink),
            options: self.options.clone(),
            state: tokio::sync::Mutex::new(None),
        };
        let options = LoaderOptions {
            parallel_jobs: self.options.parallel_jobs.max(1),
            // Batches retry inside a job (honouring `Retry-After`), from the recorded progress.
            max_attempts: 1,
            retry_backoff: self.options.retry_backoff,
            read_options: self.options.read_options.clone(),
            allow_failed_jobs: self.options.allow_failed_jobs,
            caller_owns_folders: self.options.caller_owns_folders,
            ..LoaderOptions::default()
        };
        Loader::with_executor(Arc::new(executor))
            .with_options(options)
            .with_progress(Arc::clone(&self.progress))
            .with_cancel(self.cancel.clone())
    }

    /// Loads packages in order; stops at the first that does not complete.
    pub async fn load_all(&self, locations: Vec<PackageLocation>) -> Result<LoadSummary> {
        self.loader().load_all(locations).await
    }

    /// Sends one package.
    pub async fn load(&self, location: PackageLocation) -> Result<PackageSummary> {
        self.loader().load(location).await
    }
}

/// Runs load programs into a [`Sink`]: every chain is appended (dispositions are the receiver's
/// to interpret, as in dlt's sink destination); a job's unit sends its rows batch by batch from
/// the progress the package state records, and the commit flushes the sink. The package marker
/// (`package_completed.json`) says whether a package was sent.
#[derive(Debug)]
pub struct SinkExecutor {
    sink: Arc<dyn Sink>,
    options: SinkOptions,
    /// The progress record of the package being sent, by load id.
    state: tokio::sync::Mutex<Option<(LoadId, StateFile)>>,
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

/// How a job's batches ended.
enum JobEnd {
    Sent,
    Failed(SinkError),
    Cancelled,
}

#[async_trait]
impl Executor for SinkExecutor {
    fn describe(&self) -> String {
        self.sink.describe()
    }

    fn plan(&self, package: &LoadPackage, options: &PlanOptions) -> Result<PackagePlan> {
        Ok(PackagePlan::appending(package, &options.dataset))
    }

    async fn is_loaded(&self, package: &LoadPackage, _: &str) -> StepResult<bool> {
        Ok(package.completed.is_some())
    }

    async fn load_unit(&self, unit: Unit<'_>) -> StepResult<UnitEnd> {
        let (end, rows) = match self.send_job(unit.package, &unit.job.job, unit.cancel).await {
            Ok(done) => done,
            Err(e) => (JobEnd::Failed(reading_failed(&e)), 0),
        };
        match end {
            JobEnd::Sent => Ok(UnitEnd::Loaded(JobMetrics {
                keys: None,
                rows,
                bytes: unit.job.job.size,
                timings: JobTimings::default(),
            })),
            JobEnd::Cancelled => Ok(UnitEnd::Cancelled { rows }),
            JobEnd::Failed(error) => Err(berth_destination::Error::Database {
                kind: error.kind.into(),
                destination: self.sink.describe(),
                context: unit.package.job_display(&unit.job.job),
                message: error.message,
            }),
        }
    }

    async fn commit(&self, package: &LoadPackage, _: &LoadProgram) -> StepResult<()> {
        self.sink.flush().await.map_err(|e| berth_destination::Error::Database {
            kind: e.kind.into(),
            destination: self.sink.describe(),
            context: format!("flushing after {}", package.location),
            message: e.message,
        })
    }
}

impl SinkExecutor {
    /// Rows of `key` the package state records as sent.
    async fn sent(&self, package: &LoadPackage, key: &str) -> u64 {
        let mut state = self.state.lock().await;
        match &*state {
            Some((load_id, file)) if *load_id == package.load_id => file.sent(key),
            _ => {
                let file = StateFile {
                    raw: package.state.raw.clone(),
                };
                let sent = file.sent(key);
                *state = Some((package.load_id.clone(), file));
                sent
            }
        }
    }

    /// Records `rows` of `key` sent.
    async fn record(&self, package: &LoadPackage, key: &str, rows: u64) -> Result<()> {
        let mut state = self.state.lock().await;
        let fresh = || StateFile {
            raw: package.state.raw.clone(),
        };
        match &mut *state {
            Some((load_id, file)) if *load_id == package.load_id => file.record(package, key, rows).await,
            other => {
                let mut file = fresh();
                file.record(package, key, rows).await?;
                *other = Some((package.load_id.clone(), file));
                Ok(())
            }
        }
    }

    /// Sends one job from its recorded progress on. Returns how it ended and the rows sent now.
    async fn send_job(
        &self,
        package: &LoadPackage,
        job: &JobFile,
        cancel: &CancellationToken,
    ) -> Result<(JobEnd, u64)> {
        // dlt's own tables are no-op jobs for a sink that skips them.
        if self.options.skip_dlt && berth_model::schema::is_dlt_name(&job.name.table) {
            return Ok((JobEnd::Sent, 0));
        }
        if cancel.is_cancelled() {
            return Ok((JobEnd::Cancelled, 0));
        }
        let key = format!("{}.{}", job.name.table, job.name.file_id);
        let sent = self.sent(package, &key).await;
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
        let reader = read::open_job(package, job, &self.options.read_options).await?;
        let schema = shaping.schema(&reader.schema);
        let table = Arc::new(SinkTable {
            name: job.name.table.clone(),
            schema: Arc::clone(&schema),
            dlt,
        });
        let batches = JobBatches {
            package,
            job,
            key,
            table,
            cancel,
        };
        if self.options.batch_size == 0 {
            return self.send_file(&batches, sent).await;
        }
        self.send_rows(&batches, reader, shaping, sent).await
    }

    /// The whole file, once: progress 1 means sent.
    async fn send_file(&self, job: &JobBatches<'_>, sent: u64) -> Result<(JobEnd, u64)> {
        if sent > 0 {
            return Ok((JobEnd::Sent, 0));
        }
        let package = job.package;
        let file = match package.location.local_dir() {
            Some(dir) => dir.join(job.job.relative_path()).display().to_string(),
            None => package.location.display_child(&job.job.relative_path()),
        };
        let empty = RecordBatch::new_empty(Arc::clone(&job.table.schema));
        if let Err(e) = self
            .send_with_retries(job.batch(0, 0, empty, Some(file)), job.cancel)
            .await
        {
            return Ok((JobEnd::Failed(e), 0));
        }
        self.record(package, &job.key, 1).await?;
        Ok((JobEnd::Sent, 0))
    }

    /// The rows in batches of the configured size, from row `sent` on.
    async fn send_rows(
        &self,
        job: &JobBatches<'_>,
        mut reader: read::JobReader,
        shaping: Shaping,
        mut sent: u64,
    ) -> Result<(JobEnd, u64)> {
        let schema = Arc::clone(&job.table.schema);
        let size = self.options.batch_size as u64;
        let mut rebatcher = Rebatcher::new(Arc::clone(&schema), self.options.batch_size, sent);
        let decode = |e: arrow::error::ArrowError| decode_error(job.package, job.job, e);
        let mut now_sent = 0;
        let mut finished = false;
        while !finished {
            let full = match reader.stream.next().await {
                Some(batch) => rebatcher
                    .push(shaping.apply(&batch?, &schema).map_err(decode)?)
                    .map_err(decode)?,
                None => {
                    finished = true;
                    rebatcher.finish().map_err(decode)?.into_iter().collect()
                }
            };
            for rows in full {
                if job.cancel.is_cancelled() {
                    return Ok((JobEnd::Cancelled, now_sent));
                }
                let count = rows.num_rows() as u64;
                let result = self
                    .send_with_retries(job.batch(sent / size, sent, rows, None), job.cancel)
                    .await;
                if let Err(e) = result {
                    // Cut short by Ctrl-C while waiting to retry: the package stays resumable.
                    let end = if job.cancel.is_cancelled() {
                        JobEnd::Cancelled
                    } else {
                        JobEnd::Failed(e)
                    };
                    return Ok((end, now_sent));
                }
                sent += count;
                now_sent += count;
                self.record(job.package, &job.key, sent).await?;
            }
        }
        Ok((JobEnd::Sent, now_sent))
    }

    /// Sends `batch` until the sink takes it, refuses it terminally or the attempts run out.
    async fn send_with_retries(
        &self,
        batch: SinkBatch,
        cancel: &CancellationToken,
    ) -> std::result::Result<(), SinkError> {
        let policy = RetryPolicy::new(self.options.max_attempts, self.options.retry_backoff);
        let retried = policy
            .run(
                cancel,
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
        match retried.result {
            Err(e) if !retried.cancelled => {
                let message = format!("{} batch {}: {}", batch.job, batch.index, e.message);
                Err(SinkError { message, ..e })
            }
            other => other,
        }
    }
}

/// One job's batches: what every batch of it carries.
struct JobBatches<'a> {
    package: &'a LoadPackage,
    job: &'a JobFile,
    /// `<table>.<file_id>`: the progress key and [`SinkBatch::job`].
    key: String,
    table: Arc<SinkTable>,
    cancel: &'a CancellationToken,
}

impl JobBatches<'_> {
    fn batch(&self, index: u64, first_row: u64, rows: RecordBatch, file: Option<String>) -> SinkBatch {
        SinkBatch {
            table: Arc::clone(&self.table),
            load_id: self.package.load_id.clone(),
            job: self.key.clone(),
            index,
            first_row,
            rows,
            file,
        }
    }
}

fn decode_error(package: &LoadPackage, job: &JobFile, e: arrow::error::ArrowError) -> berth_loader::Error {
    berth_model::Error::Decode {
        job: package.job_display(job),
        message: e.to_string(),
    }
    .into()
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
