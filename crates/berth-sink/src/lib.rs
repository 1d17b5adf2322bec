//! # berth-sink
//!
//! Sink destinations for reverse ETL: a package's rows go to any API as Arrow
//! [`RecordBatch`]es of a configured size, and a run that failed or was killed resumes at the first
//! batch the sink has not acknowledged. This is dlt's `@dlt.destination` in Rust:
//!
//! - a [`Sink`] receives [`SinkBatch`]es (a table's rows, its schema, a stable idempotency key), or
//!   the job file's path when [`SinkOptions::batch_size`] is 0;
//! - [`sink_fn`] turns an async closure into a sink;
//! - [`SinkLoader`] runs packages through a sink: progress is recorded after **every**
//!   acknowledged batch in the package state (`destination_state["<table>.<file_id>"]` = rows sent,
//!   as dlt records it), so delivery is exactly once per batch, and at least once for the batch in
//!   flight when the process dies (its [`SinkBatch::idempotency_key`] lets the receiver drop it);
//! - the sink decides which errors are transient ([`SinkError::transient`], retried with backoff,
//!   honouring a `Retry-After`) and which are terminal;
//! - built in: [`WebhookSink`] (HTTP POST of JSON or NDJSON, headers, rate limit, retries on 429,
//!   5xx and dropped connections) and [`NdjsonSink`] (a file or stdout, for piping).
//!
//! ```no_run
//! use berth_sink::{SinkError, SinkLoader, SinkOptions, sink_fn};
//!
//! # async fn example() -> anyhow::Result<()> {
//! let sink = sink_fn("print rows", |batch| async move {
//!     println!("{}: {} rows", batch.table.name, batch.rows.num_rows());
//!     Ok::<(), SinkError>(())
//! });
//! let loader = SinkLoader::new(std::sync::Arc::new(sink)).with_options(SinkOptions::default().with_batch_size(100));
//! let location = berth_model::PackageLocation::parse("load/normalized/1795377186.1335025")?;
//! let summary = loader.load(location).await?;
//! println!("{} rows sent", summary.rows());
//! # Ok(())
//! # }
//! ```

mod flatten;
mod ndjson;
mod rebatch;
mod runner;
mod webhook;

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use async_trait::async_trait;

pub use ndjson::NdjsonSink;
pub use runner::{SinkExecutor, SinkLoader, SinkOptions, open_sink};
pub use webhook::{WebhookBody, WebhookConfig, WebhookSink};

/// A table as a sink sees it.
#[derive(Debug, Clone)]
pub struct SinkTable {
    /// The table's name (as in the package: dlt normalized it).
    pub name: String,
    /// The columns the batches have, after `_dlt_*` columns were dropped (when asked) and struct
    /// columns flattened (to [`SinkOptions::max_nesting`]).
    pub schema: SchemaRef,
    /// The table's dlt schema (write disposition, keys, hints), `_dlt_*` columns dropped when asked.
    pub dlt: berth_model::Table,
}

/// What one call of a sink gets.
#[derive(Debug, Clone)]
pub struct SinkBatch {
    /// The table.
    pub table: Arc<SinkTable>,
    /// The package's load id.
    pub load_id: berth_model::LoadId,
    /// The job (`<table>.<file_id>`).
    pub job: String,
    /// Position of this batch in the job: 0, 1, 2, …
    pub index: u64,
    /// Rows of the job before this batch.
    pub first_row: u64,
    /// The rows (empty when the sink asked for files, see [`SinkBatch::file`]).
    pub rows: RecordBatch,
    /// With [`SinkOptions::batch_size`] 0: the job file, whole (a local path or an object-store
    /// path), instead of rows.
    pub file: Option<String>,
}

impl SinkBatch {
    /// `<load id>.<table>.<file id>.<index>`: the same for every attempt and every run that sends
    /// this batch (as long as the batch size stays), so a receiver can drop repeats.
    pub fn idempotency_key(&self) -> String {
        format!("{}.{}.{}", self.load_id, self.job, self.index)
    }
}

/// Whether an error may pass if the same batch is sent again: berth's one
/// [`FailureKind`](berth_model::FailureKind)
/// (transient: timeouts, dropped connections, 429 and 5xx; terminal: bad data, bad credentials,
/// other 4xx).
pub use berth_model::FailureKind as SinkErrorKind;

/// Why a sink did not take a batch.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct SinkError {
    /// Retry or not.
    pub kind: SinkErrorKind,
    /// What happened (no credentials).
    pub message: String,
    /// The receiver asked to wait this long before the next attempt (`Retry-After`).
    pub retry_after: Option<Duration>,
}

impl SinkError {
    /// An error worth retrying.
    pub fn transient(message: impl Into<String>) -> Self {
        Self {
            kind: SinkErrorKind::Transient,
            message: message.into(),
            retry_after: None,
        }
    }

    /// An error that will not pass by retrying.
    pub fn terminal(message: impl Into<String>) -> Self {
        Self {
            kind: SinkErrorKind::Terminal,
            message: message.into(),
            retry_after: None,
        }
    }

    /// Waits at least `wait` before the next attempt.
    pub fn with_retry_after(mut self, wait: Duration) -> Self {
        self.retry_after = Some(wait);
        self
    }
}

/// Where rows go. Implementations are shared across jobs running in parallel.
#[async_trait]
pub trait Sink: Send + Sync + fmt::Debug {
    /// Takes one batch. `Ok` means acknowledged: the batch is recorded as sent and never sent
    /// again. An error's [`SinkErrorKind`] decides whether the batch is retried.
    async fn send(&self, batch: SinkBatch) -> Result<(), SinkError>;

    /// Where the rows go, for summaries: no credentials.
    fn describe(&self) -> String;

    /// Called once every job of a package was sent (e.g. to flush a file).
    async fn flush(&self) -> Result<(), SinkError> {
        Ok(())
    }
}

/// A sink made of an async closure (see [`sink_fn`]).
pub struct FnSink<F> {
    name: String,
    send: F,
}

impl<F> fmt::Debug for FnSink<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FnSink")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// A sink from an async closure: `name` is what summaries show.
pub fn sink_fn<F, Fut>(name: impl Into<String>, send: F) -> FnSink<F>
where
    F: Fn(SinkBatch) -> Fut + Send + Sync,
    Fut: Future<Output = Result<(), SinkError>> + Send,
{
    FnSink {
        name: name.into(),
        send,
    }
}

#[async_trait]
impl<F, Fut> Sink for FnSink<F>
where
    F: Fn(SinkBatch) -> Fut + Send + Sync,
    Fut: Future<Output = Result<(), SinkError>> + Send,
{
    async fn send(&self, batch: SinkBatch) -> Result<(), SinkError> {
        (self.send)(batch).await
    }

    fn describe(&self) -> String {
        format!("sink {}", self.name)
    }
}

/// Is `url` a sink destination (`webhook+http://`, `webhook+https://`, `ndjson:`)?
pub fn is_sink_url(url: &str) -> bool {
    url.starts_with("webhook+http://") || url.starts_with("webhook+https://") || url.starts_with("ndjson:")
}
