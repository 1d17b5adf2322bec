//! Job files as streams of Arrow [`RecordBatch`]es, with bounded memory.
//!
//! Parquet in a local package is decoded on a blocking thread that reads each page from the file as
//! the decoder reaches it, so memory is a page per column and a batch, however large the row groups.
//! Parquet on an object store is read with the async reader (range reads, one row group at a time:
//! the row group's column chunks are in memory while it is decoded). The other formats are decoded on a blocking thread that pulls the file's bytes from
//! the store through a small bounded channel, and hands batches over another one: at most a few
//! chunks and batches are in memory, whatever the file size.

mod csv_format;
mod insert_values;
mod json_direct;
mod json_rows;
mod jsonl;
mod object_reader;
pub mod range;
mod types;

use std::io::{BufRead, BufReader, Read};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use arrow::array::RecordBatch;
use arrow::datatypes::{Schema as ArrowSchema, SchemaRef};
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{Stream, StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::arrow::ParquetRecordBatchStreamBuilder;
use parquet::arrow::arrow_reader::{ArrowReaderBuilder, ParquetRecordBatchReaderBuilder, RowSelection, RowSelector};
use tokio::sync::mpsc;

pub use csv_format::{CsvFormat, TextEncoding};
pub use insert_values::{expand_exponent, parse_insert_values};
pub use types::{
    arrow_schema, arrow_type, check_file_schema, is_nested, nested_to_json, text_arrow_schema, text_arrow_type,
};

use crate::error::{Error, Result};
use crate::job::FileFormat;
use crate::package::{JobFile, LoadPackage};
use crate::schema::{DataType, Table};
use jsonl::decode_jsonl;

/// Default rows per record batch.
pub const DEFAULT_BATCH_SIZE: usize = 65_536;
/// Byte chunks buffered between the store and a blocking decoder.
const BYTE_CHUNKS_IN_FLIGHT: usize = 4;
/// Record batches buffered between a decoder and its consumer (one more is being decoded and one
/// being sent: enough to keep both sides busy).
const BATCHES_IN_FLIGHT: usize = 1;

/// A decoded Parquet batch is kept to about this many bytes: wide rows get fewer rows per batch
/// than [`ReadOptions::batch_size`], so memory stays bounded by row width too. Measured on the
/// 50-column bench shape (PostgreSQL, 2 parts): 2 MiB batches load as fast as 8 MiB ones and peak
/// about 50 MiB lower.
pub const TARGET_BATCH_BYTES: u64 = 2 << 20;
/// Fewest rows per batch, however wide the rows.
const MIN_BATCH_ROWS: usize = 1024;

/// Rows per batch for a Parquet file whose rows take about `row_bytes` decoded: `batch_size`,
/// or fewer when that would exceed [`TARGET_BATCH_BYTES`].
pub fn batch_rows_for(batch_size: usize, row_bytes: u64) -> usize {
    let fitting = usize::try_from(TARGET_BATCH_BYTES / row_bytes.max(1)).unwrap_or(usize::MAX);
    batch_size.min(fitting.max(MIN_BATCH_ROWS)).max(1)
}

/// Default size of the chunks data is sent to a destination in, where it is sent in chunks.
pub const DEFAULT_CHUNK_BYTES: usize = 1 << 20;

/// How job files are read, and how much of them is held at once.
#[derive(Debug, Clone)]
pub struct ReadOptions {
    /// Rows per record batch.
    pub batch_size: usize,
    /// Bytes a destination buffers before it sends them on (PostgreSQL's COPY chunks).
    pub chunk_bytes: usize,
    /// Told of every batch decoded (progress within a job).
    pub on_batch: Option<BatchObserver>,
    /// How dlt's CSV writer was configured (its `[normalize.data_writer]` options).
    pub csv: CsvFormat,
}

impl Default for ReadOptions {
    fn default() -> Self {
        Self {
            batch_size: DEFAULT_BATCH_SIZE,
            chunk_bytes: DEFAULT_CHUNK_BYTES,
            on_batch: None,
            csv: CsvFormat::default(),
        }
    }
}

/// A callback told of each decoded batch: the job (`<table>.<file_id>.<format>`), its rows and
/// its bytes in memory.
#[derive(Clone)]
pub struct BatchObserver(std::sync::Arc<ObserveBatch>);

/// What a [`BatchObserver`] calls: job, rows, bytes.
type ObserveBatch = dyn Fn(&str, u64, u64) + Send + Sync;

impl BatchObserver {
    /// Calls `f` for every batch.
    pub fn new(f: impl Fn(&str, u64, u64) + Send + Sync + 'static) -> Self {
        Self(std::sync::Arc::new(f))
    }
}

impl std::fmt::Debug for BatchObserver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BatchObserver")
    }
}

/// An open job file: the Arrow schema of its batches and the batches.
pub struct JobReader {
    /// Schema of every batch (the file's own for Parquet and Arrow, the table's otherwise).
    pub schema: SchemaRef,
    /// The batches, in file order.
    pub stream: BoxStream<'static, Result<RecordBatch>>,
}

impl std::fmt::Debug for JobReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobReader")
            .field("schema", &self.schema)
            .finish_non_exhaustive()
    }
}

/// What the footer of a Parquet job file says.
#[derive(Debug, Clone)]
pub struct ParquetInfo {
    /// Arrow schema of the file.
    pub schema: SchemaRef,
    /// Rows in the file.
    pub num_rows: u64,
    /// Row groups in the file.
    pub row_groups: usize,
    /// Rows of each row group.
    pub row_group_rows: Vec<u64>,
    /// Compressed bytes of each row group: what reading it costs in I/O and memory.
    pub row_group_bytes: Vec<u64>,
    /// Decoded (uncompressed) bytes of each row group: what an engine holds to decode it whole.
    pub row_group_decoded_bytes: Vec<u64>,
    /// Do the row-group statistics prove every date and timestamp within [`range`]? (`true`
    /// without such columns.)
    pub temporal_in_range: bool,
}

impl ParquetInfo {
    /// The row groups that hold some of `rows`.
    pub fn row_groups_holding(&self, rows: &std::ops::Range<u64>) -> std::ops::Range<usize> {
        row_groups_holding(&self.row_group_rows, rows)
    }

    /// Decoded bytes of the file's widest row group (0 for a file without rows).
    pub fn widest_decoded_row_group(&self) -> u64 {
        self.row_group_decoded_bytes.iter().copied().max().unwrap_or_default()
    }
}

/// Where each row group of a file whose row groups hold `row_group_rows` rows each begins, counted
/// in rows from the file's first, and where the file ends (one more entry than row groups).
pub fn row_group_offsets(row_group_rows: &[u64]) -> Vec<u64> {
    std::iter::once(0)
        .chain(row_group_rows.iter().scan(0u64, |end, rows| {
            *end += rows;
            Some(*end)
        }))
        .collect()
}

/// The row groups (of `row_group_rows` rows each) that hold some of `rows`; empty when none does.
pub fn row_groups_holding(row_group_rows: &[u64], rows: &std::ops::Range<u64>) -> std::ops::Range<usize> {
    let offsets = row_group_offsets(row_group_rows);
    let holds = |g: &usize| offsets[g + 1] > rows.start && offsets[*g] < rows.end && row_group_rows[*g] > 0;
    let groups = 0..row_group_rows.len();
    match (groups.clone().find(holds), groups.rev().find(holds)) {
        (Some(first), Some(last)) => first..last + 1,
        _ => 0..0,
    }
}

fn table_for<'a>(package: &'a LoadPackage, job: &JobFile) -> Result<&'a Table> {
    package
        .schema
        .table(&job.name.table)
        .ok_or_else(|| Error::TableNotInSchema {
            job: package.job_display(job),
            table: job.name.table.clone(),
        })
}

/// Reads the footer of a Parquet job and checks its columns against the table.
pub async fn inspect_parquet(package: &LoadPackage, job: &JobFile) -> Result<ParquetInfo> {
    let table = table_for(package, job)?;
    let display = package.job_display(job);
    let builder = parquet_builder(package, job, &display).await?;
    check_file_schema(builder.schema(), table, &display)?;
    let meta = builder.metadata();
    Ok(ParquetInfo {
        schema: Arc::clone(builder.schema()),
        num_rows: u64::try_from(meta.file_metadata().num_rows()).unwrap_or_default(),
        row_groups: meta.num_row_groups(),
        row_group_rows: meta
            .row_groups()
            .iter()
            .map(|rg| u64::try_from(rg.num_rows()).unwrap_or_default())
            .collect(),
        row_group_bytes: meta
            .row_groups()
            .iter()
            .map(|rg| u64::try_from(rg.compressed_size()).unwrap_or_default())
            .collect(),
        row_group_decoded_bytes: meta
            .row_groups()
            .iter()
            .map(|rg| u64::try_from(rg.total_byte_size()).unwrap_or_default())
            .collect(),
        temporal_in_range: range::parquet_statistics_in_range(meta, builder.schema()),
    })
}

async fn parquet_builder(
    package: &LoadPackage,
    job: &JobFile,
    display: &str,
) -> Result<ParquetRecordBatchStreamBuilder<object_reader::ObjectReader>> {
    let path = package.location.child(&job.relative_path());
    let reader = object_reader::ObjectReader::new(Arc::clone(package.location.store()), path, job.size);
    ParquetRecordBatchStreamBuilder::new(reader)
        .await
        .map_err(|e| decode_error(display, format!("not a readable Parquet file: {e}")))
}

fn decode_error(job: &str, message: impl Into<String>) -> Error {
    Error::Decode {
        job: job.to_string(),
        message: message.into(),
    }
}

/// Opens a data job file as a stream of record batches, checking its columns against the table.
pub async fn open_job(package: &LoadPackage, job: &JobFile, options: &ReadOptions) -> Result<JobReader> {
    open_job_part(package, job, options, None).await
}

/// Which rows of a Parquet file a reader reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParquetSlice {
    /// Row groups `start..end`.
    RowGroups(std::ops::Range<usize>),
    /// Rows `start..end`, counted from the file's first row; they may begin and end inside a
    /// row group (the reader decodes from the start of the first row group it touches).
    Rows(std::ops::Range<u64>),
}

/// [`open_job`] for a slice of a Parquet file only (`None`: the whole file). Every batch's dates
/// and timestamps are checked against [`range`].
pub async fn open_job_part(
    package: &LoadPackage,
    job: &JobFile,
    options: &ReadOptions,
    slice: Option<ParquetSlice>,
) -> Result<JobReader> {
    let JobReader { schema, stream } = open_unchecked(package, job, options, slice).await?;
    let stream = match &options.on_batch {
        Some(observer) => {
            let (observer, id) = (observer.clone(), job.name.job_id());
            stream
                .inspect(move |item| {
                    if let Ok(batch) = item {
                        (observer.0)(&id, batch.num_rows() as u64, batch.get_array_memory_size() as u64);
                    }
                })
                .boxed()
        }
        None => stream,
    };
    if !schema.fields().iter().any(|f| range::is_checked(f.data_type())) {
        return Ok(JobReader { schema, stream });
    }
    let (display, table) = (package.job_display(job), job.name.table.clone());
    let stream = stream.map(move |item| {
        item.and_then(|batch| {
            range::check_batch(&batch, &display, &table)?;
            Ok(batch)
        })
    });
    Ok(JobReader {
        schema,
        stream: stream.boxed(),
    })
}

async fn open_unchecked(
    package: &LoadPackage,
    job: &JobFile,
    options: &ReadOptions,
    row_groups: Option<ParquetSlice>,
) -> Result<JobReader> {
    let table = table_for(package, job)?.clone();
    let display = package.job_display(job);
    let batch_size = options.batch_size.max(1);
    if row_groups.is_some() && job.name.format != FileFormat::Parquet {
        return Err(decode_error(&display, "only Parquet files can be read by row group"));
    }
    match job.name.format {
        FileFormat::Parquet => {
            if let Some(dir) = package.location.local_dir() {
                let path = dir.join(job.relative_path());
                return open_local_parquet(&path, &table, display, batch_size, row_groups);
            }
            let builder = parquet_builder(package, job, &display).await?;
            check_file_schema(builder.schema(), &table, &display)?;
            let schema = Arc::clone(builder.schema());
            let stream = configure_parquet(builder, &display, batch_size, row_groups)?
                .build()
                .map_err(|e| decode_error(&display, e.to_string()))?
                .map_err(move |e| decode_error(&display, e.to_string()));
            Ok(JobReader {
                schema,
                stream: stream.boxed(),
            })
        }
        FileFormat::Jsonl | FileFormat::TypedJsonl => {
            let schema = text_arrow_schema(&table);
            let typed = job.name.format == FileFormat::TypedJsonl;
            let decoder_schema = Arc::clone(&schema);
            let stream = spawn_decoder(package, job, display, move |input, emit, job| {
                decode_jsonl(input, &table, decoder_schema, typed, batch_size, emit, job)
            });
            Ok(JobReader { schema, stream })
        }
        FileFormat::Csv => {
            let schema = text_arrow_schema(&table);
            let target = Arc::clone(&schema);
            let format = options.csv;
            let stream = spawn_decoder(package, job, display, move |input, emit, job| {
                decode_csv(
                    format.encoding.reader(input),
                    &table,
                    &target,
                    batch_size,
                    format,
                    emit,
                    job,
                )
            });
            Ok(JobReader { schema, stream })
        }
        FileFormat::InsertValues => {
            let schema = text_arrow_schema(&table);
            let stream = spawn_decoder(package, job, display, move |mut input, emit, job| {
                let mut text = String::new();
                input
                    .read_to_string(&mut text)
                    .map_err(|e| decode_error(job, format!("not UTF-8 text: {e}")))?;
                parse_insert_values(&text, &table, batch_size, job, emit)
            });
            Ok(JobReader { schema, stream })
        }
        FileFormat::Arrow => {
            let reader = open_ipc(package, job, &display).await?;
            check_file_schema(&reader.schema, &table, &display)?;
            Ok(reader)
        }
        other => Err(Error::UnknownFormat {
            job: display,
            format: other.to_string(),
        }),
    }
}

/// Selects `slice` (the whole file for `None`) and sets the batch size from the footer's row width.
fn configure_parquet<T>(
    mut builder: ArrowReaderBuilder<T>,
    display: &str,
    batch_size: usize,
    slice: Option<ParquetSlice>,
) -> Result<ArrowReaderBuilder<T>> {
    match slice {
        None => {}
        Some(ParquetSlice::RowGroups(range)) => {
            let available = builder.metadata().num_row_groups();
            if range.end > available || range.start > range.end {
                return Err(decode_error(
                    display,
                    format!(
                        "row groups {}..{} asked for, the file has {available}",
                        range.start, range.end
                    ),
                ));
            }
            builder = builder.with_row_groups(range.collect());
        }
        Some(ParquetSlice::Rows(range)) => {
            let rows: Vec<u64> = builder
                .metadata()
                .row_groups()
                .iter()
                .map(|g| u64::try_from(g.num_rows()).unwrap_or_default())
                .collect();
            let (groups, selection) = select_rows(&rows, &range).ok_or_else(|| {
                let total: u64 = rows.iter().sum();
                decode_error(
                    display,
                    format!("rows {}..{} asked for, the file has {total}", range.start, range.end),
                )
            })?;
            builder = builder.with_row_groups(groups).with_row_selection(selection);
        }
    }
    // Decoded bytes per row, from the footer's uncompressed row group sizes.
    let (bytes, rows) = builder
        .metadata()
        .row_groups()
        .iter()
        .fold((0i64, 0i64), |(b, r), g| (b + g.total_byte_size(), r + g.num_rows()));
    let row_bytes = u64::try_from(bytes / rows.max(1)).unwrap_or(0);
    Ok(builder.with_batch_size(batch_rows_for(batch_size, row_bytes)))
}

/// The row groups that hold rows `range` of a file whose row groups hold `rows` rows each, and
/// the selection of `range` within them; `None` when the file has not that many rows.
fn select_rows(rows: &[u64], range: &std::ops::Range<u64>) -> Option<(Vec<usize>, RowSelection)> {
    let offsets = row_group_offsets(rows);
    if range.start >= range.end || range.end > offsets[rows.len()] {
        return None;
    }
    let groups = row_groups_holding(rows, range);
    let (first, end) = (offsets[groups.start], offsets[groups.end]);
    let as_count = |n: u64| usize::try_from(n).ok();
    let selectors = [
        RowSelector::skip(as_count(range.start - first)?),
        RowSelector::select(as_count(range.end - range.start)?),
        RowSelector::skip(as_count(end - range.end)?),
    ];
    let selectors: Vec<RowSelector> = selectors.into_iter().filter(|s| s.row_count > 0).collect();
    Some((groups.collect(), selectors.into()))
}

/// A local Parquet file, decoded on a blocking thread that reads pages from the file as it needs
/// them (the async reader would hold a whole row group's column chunks in memory).
fn open_local_parquet(
    path: &std::path::Path,
    table: &Table,
    display: String,
    batch_size: usize,
    row_groups: Option<ParquetSlice>,
) -> Result<JobReader> {
    let file = std::fs::File::open(path).map_err(|e| decode_error(&display, format!("cannot open the file: {e}")))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| decode_error(&display, format!("not a readable Parquet file: {e}")))?;
    check_file_schema(builder.schema(), table, &display)?;
    let schema = Arc::clone(builder.schema());
    let reader = configure_parquet(builder, &display, batch_size, row_groups)?
        .build()
        .map_err(|e| decode_error(&display, e.to_string()))?;
    let stream = spawn_blocking_decoder(display, None, move |emit, display| {
        for batch in reader {
            let batch = batch.map_err(|e| decode_error(display, e.to_string()))?;
            if !emit(batch) {
                break;
            }
        }
        Ok(())
    });
    Ok(JobReader { schema, stream })
}

/// The Arrow schema of an IPC file is only known once its first message is read.
async fn open_ipc(package: &LoadPackage, job: &JobFile, display: &str) -> Result<JobReader> {
    let (schema_tx, schema_rx) = tokio::sync::oneshot::channel();
    let stream = spawn_decoder(package, job, display.to_string(), move |input, emit, job| {
        decode_ipc(input, schema_tx, emit, job)
    });
    match schema_rx.await {
        Ok(schema) => Ok(JobReader { schema, stream }),
        // The decoder failed before it saw a schema: its error is the first item of the stream.
        Err(_) => {
            let mut stream = stream;
            match stream.next().await {
                Some(Err(e)) => Err(e),
                _ => Err(decode_error(display, "the Arrow IPC stream has no schema")),
            }
        }
    }
}

type Emit<'a> = &'a mut dyn FnMut(RecordBatch) -> bool;

/// Runs `decode` on a blocking thread over the job file's bytes; its batches become the stream.
fn spawn_decoder<F>(
    package: &LoadPackage,
    job: &JobFile,
    display: String,
    decode: F,
) -> BoxStream<'static, Result<RecordBatch>>
where
    F: FnOnce(Box<dyn BufRead + Send>, Emit<'_>, &str) -> Result<()> + Send + 'static,
{
    let store = Arc::clone(package.location.store());
    let path = package.location.child(&job.relative_path());
    let compressed = job.name.compressed;
    let (bytes_tx, bytes_rx) = mpsc::channel::<std::io::Result<Bytes>>(BYTE_CHUNKS_IN_FLIGHT);
    let fetch = crate::task::spawn_owned(fetch_bytes(store, path, bytes_tx));
    spawn_blocking_decoder(display, Some(fetch), move |emit, display| {
        let raw = ChannelReader {
            rx: bytes_rx,
            current: Bytes::new(),
        };
        let input: Box<dyn BufRead + Send> = if compressed {
            Box::new(BufReader::new(flate2::read::MultiGzDecoder::new(raw)))
        } else {
            Box::new(BufReader::with_capacity(1 << 16, raw))
        };
        decode(input, emit, display)
    })
}

/// Runs `decode` on a blocking thread; the batches it emits become the stream (at most
/// [`BATCHES_IN_FLIGHT`] waiting), its error or panic the stream's last item. `emit` returns
/// false once the stream was dropped: the decoder should stop then.
fn spawn_blocking_decoder<F>(
    display: String,
    fetch: Option<crate::task::OwnedTask<()>>,
    decode: F,
) -> BoxStream<'static, Result<RecordBatch>>
where
    F: FnOnce(Emit<'_>, &str) -> Result<()> + Send + 'static,
{
    let (batch_tx, batch_rx) = mpsc::channel::<Result<RecordBatch>>(BATCHES_IN_FLIGHT);
    let error_tx = batch_tx.clone();
    let decoder = tokio::task::spawn_blocking(move || {
        let mut emit = |batch: RecordBatch| batch_tx.blocking_send(Ok(batch)).is_ok();
        // A panic must not look like the end of the file: report it as an error of this job.
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| decode(&mut emit, &display)));
        let error = match outcome {
            Ok(Ok(())) => return,
            Ok(Err(e)) => e,
            Err(_) => decode_error(&display, "the decoder panicked (a bug in berth)"),
        };
        let _ = error_tx.blocking_send(Err(error));
    });
    DecodeStream {
        rx: batch_rx,
        _fetch: fetch,
        _decoder: decoder,
    }
    .boxed()
}

async fn fetch_bytes(store: Arc<dyn ObjectStore>, path: Path, tx: mpsc::Sender<std::io::Result<Bytes>>) {
    let mut stream = match store.get(&path).await {
        Ok(result) => result.into_stream(),
        Err(e) => {
            let _ = tx.send(Err(std::io::Error::other(e))).await;
            return;
        }
    };
    while let Some(chunk) = stream.next().await {
        let failed = chunk.is_err();
        if tx.send(chunk.map_err(std::io::Error::other)).await.is_err() || failed {
            return;
        }
    }
}

/// A blocking `Read` over byte chunks arriving on a channel.
struct ChannelReader {
    rx: mpsc::Receiver<std::io::Result<Bytes>>,
    current: Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(chunk) => self.current = chunk?,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}

/// The batches of a blocking decoder. Dropping it stops the fetch; the decoder then stops at its
/// next send. Decoder panics surface as the channel closing early, which `poll_next` reports.
struct DecodeStream {
    rx: mpsc::Receiver<Result<RecordBatch>>,
    _fetch: Option<crate::task::OwnedTask<()>>,
    _decoder: tokio::task::JoinHandle<()>,
}

impl Stream for DecodeStream {
    type Item = Result<RecordBatch>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx)
    }
}

/// The rows of a JSONL line as values readied for Arrow's decoder (see [`jsonl_value`]).
fn careful_rows(
    line: &str,
    table: &Table,
    json_columns: &std::collections::HashSet<&str>,
    typed: bool,
    line_no: usize,
    job: &str,
) -> Result<Vec<serde_json::Value>> {
    use serde_json::Value;
    let value: Value =
        serde_json::from_str(line).map_err(|e| decode_error(job, format!("line {line_no} is not JSON: {e}")))?;
    let items = match value {
        Value::Array(items) if typed => items,
        other => vec![other],
    };
    let mut rows = Vec::with_capacity(items.len());
    for item in items {
        let Value::Object(mut row) = item else {
            return Err(decode_error(job, format!("line {line_no} is not a JSON object")));
        };
        for (key, value) in row.iter_mut() {
            jsonl_value(table, json_columns, typed, key, value, line_no, job)?;
        }
        rows.push(Value::Object(row));
    }
    Ok(rows)
}

/// Readies one JSONL value for Arrow's decoder: `json` columns become their JSON text, integers
/// that a bigint column cannot hold are refused, and typed JSONL's string markers go.
fn jsonl_value(
    table: &Table,
    json_columns: &std::collections::HashSet<&str>,
    typed: bool,
    key: &str,
    value: &mut serde_json::Value,
    line_no: usize,
    job: &str,
) -> Result<()> {
    use serde_json::Value;
    let Some(column) = table.columns.get(key) else {
        return Err(Error::ColumnNotInSchema {
            job: job.to_string(),
            table: table.name.clone(),
            column: key.to_string(),
        });
    };
    if json_columns.contains(column.name.as_str()) {
        if !value.is_null() {
            *value = Value::String(value.to_string());
        }
    } else if column.data_type == Some(DataType::Bigint)
        && let Value::Number(n) = value
        && n.as_i64().is_none()
        && n.as_u64().is_none()
        && !n
            .as_f64()
            .is_some_and(|f| f.fract() == 0.0 && f.abs() <= 9_007_199_254_740_992.0)
    {
        // A fraction (or an integer beyond 64 bits) in an integer column would be
        // cut silently by the decoder: refuse it, as Parquet refuses the mismatch.
        return Err(Error::ColumnType {
            job: job.to_string(),
            table: table.name.clone(),
            column: key.to_string(),
            expected: DataType::Bigint.as_str(),
            found: format!("the number {n} on line {line_no}"),
        });
    } else if typed
        && column.data_type != Some(DataType::Binary)
        && let Value::String(s) = value
    {
        // Only typed JSONL marks its strings; in plain JSONL a leading marker
        // character is data (dlt's variant column of an empty binary holds one).
        let plain = crate::typed_json::strip_marker(s);
        if plain.len() != s.len() {
            *s = plain.to_string();
        }
    }
    Ok(())
}

/// The longest line a JSONL job may hold (one row): a longer one is refused as bad data, so a
/// small compressed file cannot make berth hold gigabytes.
pub const MAX_LINE_BYTES: usize = 64 << 20;

/// `batch` with its `binary_columns` (JSON strings, decoded as text) as `schema`'s binary types.
///
/// Typed JSONL (`"\u{F02B}<base64>"`) carries the bytes themselves: they are decoded. Plain JSONL
/// holds the base64 text dlt's normalizer wrote, and dlt 1.31 loads it into DuckDB as it is (the
/// bytes of that text, through `read_json`): berth loads the same bytes, so a dataset holds the
/// same values whichever of the two loaded it.
fn binary_columns_from_text(
    batch: RecordBatch,
    schema: &SchemaRef,
    binary_columns: &[usize],
    typed: bool,
    job: &str,
) -> Result<RecordBatch> {
    use crate::typed_json::Marker;
    use arrow::array::{Array, AsArray, BinaryBuilder};
    use base64::Engine as _;
    if binary_columns.is_empty() {
        return Ok(batch);
    }
    let mut columns = batch.columns().to_vec();
    for &i in binary_columns {
        let text = columns[i].as_string::<i32>();
        let mut bytes = BinaryBuilder::with_capacity(text.len(), text.value_data().len());
        for row in 0..text.len() {
            if text.is_null(row) {
                bytes.append_null();
                continue;
            }
            let value = text.value(row);
            let bad = |what: &str| decode_error(job, format!("column `{}`: not {what}", schema.field(i).name()));
            match crate::typed_json::split_marker(value) {
                (Some(Marker::Base64Bytes), encoded) if typed => bytes.append_value(
                    base64::engine::general_purpose::STANDARD
                        .decode(encoded)
                        .map_err(|_| bad("base64"))?,
                ),
                (Some(Marker::HexBytes), hex) if typed => {
                    bytes.append_value(crate::read::insert_values::decode_hex(hex).ok_or_else(|| bad("hex"))?)
                }
                _ => bytes.append_value(value.as_bytes()),
            }
        }
        let binary: arrow::array::ArrayRef = Arc::new(bytes.finish());
        columns[i] = arrow::compute::cast(&binary, schema.field(i).data_type())
            .map_err(|e| decode_error(job, format!("column `{}`: {e}", schema.field(i).name())))?;
    }
    RecordBatch::try_new(Arc::clone(schema), columns).map_err(|e| decode_error(job, e.to_string()))
}

fn decode_csv(
    mut input: Box<dyn BufRead + Send>,
    table: &Table,
    target: &SchemaRef,
    batch_size: usize,
    format: CsvFormat,
    emit: Emit<'_>,
    job: &str,
) -> Result<()> {
    // A UTF-8 byte-order mark (Python's `utf-8-sig`) goes before the header or the first row.
    let head = input.fill_buf().map_err(|e| decode_error(job, e.to_string()))?;
    if head.starts_with("\u{feff}".as_bytes()) {
        input.consume(3);
    }
    let (names, delimiter) = if format.include_header {
        let mut header = String::new();
        input
            .read_line(&mut header)
            .map_err(|e| decode_error(job, format!("header: {e}")))?;
        if header.trim().is_empty() {
            return Ok(());
        }
        // The header decides the column order of this file.
        csv_header(header.trim_end_matches(['\r', '\n']), format.delimiter, table, job)?
    } else {
        // No header: the table's columns in schema order, as dlt's own load takes them; a file
        // written before later columns appeared has fewer fields, and those columns are NULL.
        let names = table
            .columns
            .values()
            .filter(|c| c.is_complete())
            .map(|c| c.name.clone())
            .collect();
        (names, format.delimiter)
    };
    let mut fields = Vec::with_capacity(names.len());
    for name in &names {
        let column = &table.columns[name.as_str()];
        if column.data_type == Some(DataType::Binary) {
            // dlt's CSV writer has no encoding for bytes, and its own COPY refuses what it writes.
            return Err(decode_error(
                job,
                format!(
                    "column `{name}` of table `{}` is binary, which a CSV job cannot carry: \
                     write this table as Parquet or insert_values (`loader_file_format`)",
                    table.name
                ),
            ));
        }
        fields.push(types::text_arrow_field(column));
    }
    let schema = Arc::new(ArrowSchema::new(fields));
    check_file_schema(&schema, table, job)?;
    let reader = arrow::csv::ReaderBuilder::new(schema)
        .with_header(false)
        .with_delimiter(delimiter)
        .with_truncated_rows(!format.include_header)
        .with_batch_size(batch_size)
        .build_buffered(input)
        .map_err(|e| decode_error(job, e.to_string()))?;
    for batch in reader {
        let batch = batch.map_err(|e| decode_error(job, e.to_string()))?;
        if !emit(in_table_order(&batch, target).map_err(|e| decode_error(job, e.to_string()))?) {
            break;
        }
    }
    Ok(())
}

/// The column names of a CSV header line and the delimiter that splits it: `configured` when
/// every name it gives is one of the table's columns, else the first of the usual delimiters
/// that splits the line into two or more such names (a package written with another delimiter
/// than the one configured here). Otherwise the first name that is not a column is the error.
fn csv_header(line: &str, configured: u8, table: &Table, job: &str) -> Result<(Vec<String>, u8)> {
    let names_with = |delimiter: u8| -> Vec<String> {
        csv_header_names(line, delimiter as char)
            .into_iter()
            .map(|n| n.trim().to_string())
            .collect()
    };
    let is_column = |name: &String| table.columns.get(name.as_str()).is_some_and(|c| c.is_complete());
    let names = names_with(configured);
    if names.iter().all(is_column) {
        return Ok((names, configured));
    }
    for delimiter in csv_format::USUAL_DELIMITERS.into_iter().filter(|d| *d != configured) {
        let other = names_with(delimiter);
        if other.len() > 1 && other.iter().all(is_column) {
            return Ok((other, delimiter));
        }
    }
    let unknown = names.into_iter().find(|n| !is_column(n)).unwrap_or_default();
    Err(Error::ColumnNotInSchema {
        job: job.to_string(),
        table: table.name.clone(),
        column: unknown,
    })
}

/// The names of a CSV header line: separated by `delimiter`, each optionally in double quotes
/// with `""` for a quote inside (RFC 4180), so a quoted name may hold the delimiter.
fn csv_header_names(line: &str, delimiter: char) -> Vec<String> {
    let mut names = Vec::new();
    let mut name = String::new();
    let mut chars = line.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                chars.next();
                name.push('"');
            }
            '"' => quoted = !quoted,
            c if c == delimiter && !quoted => names.push(std::mem::take(&mut name)),
            other => name.push(other),
        }
    }
    names.push(name);
    names
}

/// Reorders a batch's columns by name into `target`'s order, NULL for columns the file lacks.
fn in_table_order(batch: &RecordBatch, target: &SchemaRef) -> Result<RecordBatch, arrow::error::ArrowError> {
    let columns = target
        .fields()
        .iter()
        .map(|field| match batch.schema().index_of(field.name()) {
            Ok(i) => Arc::clone(batch.column(i)),
            Err(_) => arrow::array::new_null_array(field.data_type(), batch.num_rows()),
        })
        .collect();
    RecordBatch::try_new(Arc::clone(target), columns)
}

fn decode_ipc(
    mut input: Box<dyn BufRead + Send>,
    schema_tx: tokio::sync::oneshot::Sender<SchemaRef>,
    emit: Emit<'_>,
    job: &str,
) -> Result<()> {
    // The IPC file format is the stream format behind a 6-byte magic padded with zeros to the
    // writer's alignment (8 or 64), followed by a footer the stream reader never reaches: both read
    // as a stream. Stream messages start with the 0xFFFFFFFF continuation marker, never a zero.
    let head = input.fill_buf().map_err(|e| decode_error(job, e.to_string()))?;
    if head.starts_with(b"ARROW1") {
        input.consume(6);
        for _ in 6..64 {
            let next = input.fill_buf().map_err(|e| decode_error(job, e.to_string()))?;
            match next.first() {
                Some(0) => input.consume(1),
                _ => break,
            }
        }
    }
    let reader = arrow::ipc::reader::StreamReader::try_new(input, None)
        .map_err(|e| decode_error(job, format!("not an Arrow IPC file or stream: {e}")))?;
    let _ = schema_tx.send(reader.schema());
    for batch in reader {
        let batch = batch.map_err(|e| decode_error(job, e.to_string()))?;
        if !emit(batch) {
            break;
        }
    }
    Ok(())
}

/// Collects a whole job (tests and small files only: memory grows with the file).
pub async fn read_job_to_end(package: &LoadPackage, job: &JobFile) -> Result<Vec<RecordBatch>> {
    open_job(package, job, &ReadOptions::default())
        .await?
        .stream
        .try_collect()
        .await
}

#[cfg(test)]
mod batch_tests {
    use super::*;

    #[test]
    fn a_slice_of_rows_selects_the_row_groups_it_touches() {
        let rows = [100, 100, 50];
        let (groups, selection) = select_rows(&rows, &(150..220)).expect("in the file");
        assert_eq!(groups, [1, 2]);
        let selectors: Vec<RowSelector> = selection.into();
        assert_eq!(
            selectors,
            [RowSelector::skip(50), RowSelector::select(70), RowSelector::skip(30)]
        );
        let (groups, selection) = select_rows(&rows, &(0..100)).expect("in the file");
        assert_eq!(groups, [0]);
        assert_eq!(Vec::<RowSelector>::from(selection), [RowSelector::select(100)]);
        assert!(select_rows(&rows, &(200..251)).is_none());
        assert!(select_rows(&rows, &(10..10)).is_none());
    }

    /// A binary column in a CSV job is refused, naming the column and table, before any row.
    #[test]
    fn csv_jobs_with_binary_columns_are_refused_by_name() {
        let columns = r#""id":{"name":"id","data_type":"bigint"},"b":{"name":"b","data_type":"binary"}"#;
        let err = read_csv(columns, b"id,b\n1,abc\n", CsvFormat::default()).unwrap_err();
        assert!(
            matches!(err, Error::Decode { ref job, .. } if job == "t.x.0.csv"),
            "{err}"
        );
    }

    #[test]
    fn csv_headers_keep_quoted_commas_and_drop_quotes() {
        assert_eq!(
            csv_header_names("id,\"a,b\",\"say \"\"hi\"\"\",c", ','),
            ["id", "a,b", "say \"hi\"", "c"]
        );
        assert_eq!(csv_header_names("one", ','), ["one"]);
    }

    /// The batches of CSV job `t.x.0.csv` of a table `t` of `columns` (schema.json's), read
    /// with `format`.
    fn read_csv(columns: &str, bytes: &[u8], format: CsvFormat) -> Result<Vec<RecordBatch>> {
        let text =
            format!(r#"{{"name":"s","engine_version":11,"tables":{{"t":{{"name":"t","columns":{{{columns}}}}}}}}}"#);
        let schema = crate::Schema::from_json(&text, "schema.json").unwrap();
        let table = schema.table("t").unwrap();
        let input = format.encoding.reader(Box::new(std::io::Cursor::new(bytes.to_vec())));
        let mut batches = Vec::new();
        let mut emit = |b: RecordBatch| {
            batches.push(b);
            true
        };
        decode_csv(
            input,
            table,
            &text_arrow_schema(table),
            100,
            format,
            &mut emit,
            "t.x.0.csv",
        )?;
        Ok(batches)
    }

    /// The rows of a CSV job of table `t` (id bigint, name text, v double) read with `format`,
    /// as `id|name|v` lines.
    fn csv_rows(bytes: &[u8], format: CsvFormat) -> Result<Vec<String>> {
        let columns = r#""id":{"name":"id","data_type":"bigint"},"name":{"name":"name","data_type":"text"},
            "v":{"name":"v","data_type":"double"}"#;
        let show = |b: &RecordBatch, c: usize, r: usize| match b.column(c).is_null(r) {
            true => "NULL".to_string(),
            false => arrow::util::display::array_value_to_string(b.column(c), r).unwrap(),
        };
        Ok(read_csv(columns, bytes, format)?
            .iter()
            .flat_map(|b| {
                (0..b.num_rows()).map(move |r| format!("{}|{}|{}", show(b, 0, r), show(b, 1, r), show(b, 2, r)))
            })
            .collect())
    }

    #[test]
    fn csv_jobs_are_read_with_dlt_s_writer_options() {
        let want = ["1|café, \"x\"|1.5", "2|NULL|NULL"];
        let semicolons = CsvFormat {
            delimiter: b';',
            ..CsvFormat::default()
        };
        let file = "\"id\";\"name\";\"v\"\n1;\"café, \"\"x\"\"\";1.5\n2;\"\";\"\"\n";
        assert_eq!(csv_rows(file.as_bytes(), semicolons).unwrap(), want);
        // Written with `;` where `,` is configured: the header tells.
        assert_eq!(csv_rows(file.as_bytes(), CsvFormat::default()).unwrap(), want);
        // No header: the table's columns in order; a file of fewer fields leaves the rest NULL.
        let headless = CsvFormat {
            include_header: false,
            delimiter: b'|',
            ..CsvFormat::default()
        };
        assert_eq!(
            csv_rows(b"1|\"caf\xc3\xa9, \"\"x\"\"\"|1.5\n2||\n", headless).unwrap(),
            want
        );
        assert_eq!(csv_rows(b"7|a\n", headless).unwrap(), ["7|a|NULL"]);
        assert_eq!(csv_rows(b"\xef\xbb\xbf7|a\n", headless).unwrap(), ["7|a|NULL"]);
        // Python's latin-1.
        let latin1 = CsvFormat {
            encoding: TextEncoding::Latin1,
            ..CsvFormat::default()
        };
        assert_eq!(
            csv_rows(b"id,name,v\n1,\"caf\xe9, \"\"x\"\"\",1.5\n2,,\n", latin1).unwrap(),
            want
        );
    }

    #[test]
    fn a_csv_header_of_other_names_is_refused_naming_the_first() {
        let err = csv_rows(b"id|nom|v\n1|a|2\n", CsvFormat::default()).unwrap_err();
        assert!(
            matches!(err, Error::ColumnNotInSchema { ref column, .. } if column == "id|nom|v"),
            "{err}"
        );
        let pipes = CsvFormat {
            delimiter: b'|',
            ..CsvFormat::default()
        };
        let err = csv_rows(b"id|nom|v\n1|a|2\n", pipes).unwrap_err();
        assert!(
            matches!(err, Error::ColumnNotInSchema { ref column, .. } if column == "nom"),
            "{err}"
        );
        // Not UTF-8 where UTF-8 is configured: an error, never a guess.
        let err = csv_rows(b"id,name,v\n1,caf\xe9,2\n", CsvFormat::default()).unwrap_err();
        assert!(matches!(err, Error::Decode { .. }), "{err}");
    }

    fn jsonl(text: &str, typed: bool) -> Result<Vec<RecordBatch>> {
        let schema = crate::Schema::from_json(
            r#"{"name":"s","engine_version":11,"tables":{"t":{"name":"t","columns":{
                "id":{"name":"id","data_type":"bigint"},"b":{"name":"b","data_type":"binary"}}}}}"#,
            "schema.json",
        )
        .unwrap();
        jsonl_of(schema.table("t").unwrap(), text, typed)
    }

    /// The batches (of 100 rows) `text` decodes to as a JSONL job of `table`.
    fn jsonl_of(table: &Table, text: &str, typed: bool) -> Result<Vec<RecordBatch>> {
        let mut out = Vec::new();
        let input: Box<dyn BufRead + Send> = Box::new(std::io::Cursor::new(text.as_bytes().to_vec()));
        let mut emit = |b| {
            out.push(b);
            true
        };
        decode_jsonl(
            input,
            table,
            text_arrow_schema(table),
            typed,
            100,
            &mut emit,
            "t.x.0.jsonl",
        )?;
        Ok(out)
    }

    /// A schema whose table `t` has `id` bigint, `name` text, `ts` timestamp, `amount` double,
    /// `flag` bool, and the `more` columns (JSON members).
    fn table_t(more: &str) -> crate::Schema {
        let more = if more.is_empty() {
            String::new()
        } else {
            format!(",{more}")
        };
        let json = format!(
            r#"{{"name":"s","engine_version":11,"tables":{{"t":{{"name":"t","columns":{{
                "id":{{"name":"id","data_type":"bigint"}},"name":{{"name":"name","data_type":"text"}},
                "ts":{{"name":"ts","data_type":"timestamp"}},"amount":{{"name":"amount","data_type":"double"}},
                "flag":{{"name":"flag","data_type":"bool"}}{more}}}}}}}}}"#
        );
        crate::Schema::from_json(&json, "schema.json").unwrap()
    }

    /// `text` decoded as a JSONL job of `table`, in one batch.
    fn one_batch(table: &Table, text: &str, typed: bool) -> RecordBatch {
        let out = jsonl_of(table, text, typed).unwrap();
        arrow::compute::concat_batches(&text_arrow_schema(table), &out).unwrap()
    }

    /// The rows Arrow's decoder takes as bytes decode to exactly what the careful path makes of
    /// them (forced here by a first row with `0.0` in a bigint column).
    #[test]
    fn jsonl_rows_decode_alike_as_bytes_and_as_values() {
        let schema = table_t(
            r#""d":{"name":"d","data_type":"date"},
                "price":{"name":"price","data_type":"decimal","precision":10,"scale":2}"#,
        );
        let table = schema.table("t").unwrap();
        let decode = |text: &str, typed: bool| one_batch(table, text, typed);
        let rows = [
            r#"{"id":-9223372036854775808,"name":"a \"quoted\" {x}","ts":"2024-01-01T00:00:00+00:00","amount":1.5e3,"flag":true,"d":"2024-02-29","price":"12.34"}"#,
            r#"{"name":"caf\u00e9 \n","ts":"2024-01-01T10:00:00.123456+02:00","amount":-0.0,"flag":false,"id":9223372036854775807}"#,
            r#"{"id":null,"name":null,"ts":null,"amount":null,"flag":null,"d":null,"price":12}"#,
            // Doubles the careful path once read one unit in the last place off (serde_json
            // without `float_roundtrip`), found by the random histories against dlt.
            r#"{"amount":-2.25e-300}"#,
            r#"{"amount":7.689539722041643e164}"#,
            r#"{"amount":2.2250738585072014e-308}"#,
            r#"{}"#,
        ];
        for typed in [false, true] {
            let fast = decode(&format!("{}\n", rows.join("\n")), typed);
            let careful = decode(&format!("{{\"id\":0.0}}\n{}\n", rows.join("\n")), typed);
            assert_eq!(fast, careful.slice(1, rows.len()), "typed: {typed}");
            let array = decode(&format!("[{}]\n", rows.join(",")), true);
            assert_eq!(fast, array);
            let careful_array = decode(&format!("[{{\"id\":0.0}},{}]\n", rows.join(",")), true);
            assert_eq!(fast, careful_array.slice(1, rows.len()));
        }
        // Typed JSONL's markers (date-time, decimal, date) are cut out on the fast path too.
        let marked =
            "{\"ts\":\"\u{F027}2024-01-01T00:00:00+00:00\",\"price\":\"\u{F026}1.25\",\"d\":\"\u{F028}2024-01-02\"}";
        let fast = decode(&format!("[{marked},{marked}]\n"), true);
        let careful = decode(&format!("[{{\"id\":0.0}},{marked},{marked}]\n"), true);
        assert_eq!(fast, careful.slice(1, 2));
        assert_eq!(fast.column(2).null_count(), 0);
    }

    /// A table the direct decoder takes decodes to the same rows directly as through Arrow's
    /// decoder (forced by a first row of `0.0` in the bigint column, which only the careful path
    /// takes).
    #[test]
    fn jsonl_rows_decode_alike_directly_and_through_arrow() {
        let schema = table_t("");
        let table = schema.table("t").unwrap();
        let decode = |text: &str, typed: bool| one_batch(table, text, typed);
        let rows = [
            r#"{"id":-9223372036854775808,"name":"a \"quoted\" {x} \/ \\ \b\f\r\t","ts":"2024-01-01T00:00:00+00:00","amount":1.5e3,"flag":true}"#,
            r#"{ "name" : "caf\u00e9 \n \ud83d\ude00 ü" , "ts":"2024-01-01T10:00:00.123456+02:00","amount":-0.0,"flag":false,"id":9223372036854775807 }"#,
            r#"{"id":null,"name":null,"ts":null,"amount":null,"flag":null}"#,
            r#"{"amount":12,"ts":"2024-02-29 12:00:00","name":""}"#,
            r#"{}"#,
        ];
        for typed in [false, true] {
            let direct = decode(&format!("{}\n", rows.join("\n")), typed);
            let general = decode(&format!("{{\"id\":0.0}}\n{}\n", rows.join("\n")), typed);
            assert_eq!(direct, general.slice(1, rows.len()), "typed: {typed}");
            let lines = rows.iter().map(|r| r.as_bytes());
            let columns = json_direct::DirectColumns::new(table, &text_arrow_schema(table), typed).unwrap();
            assert_eq!(
                columns.decode(lines),
                Some(direct.clone()),
                "the direct decoder took every row"
            );
            if typed {
                assert_eq!(direct, decode(&format!("[{}]\n", rows.join(",")), true));
            }
        }
        // Typed JSONL's markers are cut out directly too; in plain JSONL they are text.
        let marked = "{\"ts\":\"\u{F027}2024-01-01T00:00:00+00:00\",\"name\":\"\u{F029}x\"}";
        let direct = decode(&format!("[{marked},{marked}]\n"), true);
        let general = decode(&format!("[{{\"id\":0.0}},{marked},{marked}]\n"), true);
        assert_eq!(direct, general.slice(1, 2));
        assert_eq!(arrow::array::AsArray::as_string::<i32>(direct.column(1)).value(0), "x");
        assert_eq!(direct.column(2).null_count(), 0);
        // What the direct decoder does not take is the general path's to read or refuse.
        let columns = json_direct::DirectColumns::new(table, &text_arrow_schema(table), false).unwrap();
        for (line, rows) in [
            (r#"{"flag":"yes"}"#, None),
            (r#"{"amount":NaN}"#, None),
            (r#"{"other":1}"#, None),
            (r#"{"name":5}"#, None),
            (r#"{"id":1,"id":2}"#, Some(1)),
            (r#"{"id":1.0}"#, Some(1)),
        ] {
            assert_eq!(columns.decode([line.as_bytes()].into_iter()), None, "{line}");
            let decoded = jsonl_of(table, &format!("{line}\n"), false);
            assert_eq!(
                decoded.ok().map(|b| b.iter().map(|b| b.num_rows()).sum::<usize>()),
                rows,
                "{line}"
            );
        }
    }

    /// Files of many chunks keep their rows in order, leave in whole batches, and report a bad line
    /// by its number in the file.
    #[test]
    fn jsonl_chunks_keep_order_batches_and_line_numbers() {
        use arrow::array::AsArray;
        use arrow::datatypes::Int64Type;
        let rows = 40_000;
        let mut text: String = (0..rows).map(|i| format!("{{\"id\":{i},\"b\":null}}\n")).collect();
        let batches = jsonl(&text, false).unwrap();
        assert!(batches[..batches.len() - 1].iter().all(|b| b.num_rows() == 100));
        let ids: Vec<i64> = batches
            .iter()
            .flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec())
            .collect();
        assert_eq!(ids, (0..rows as i64).collect::<Vec<_>>());
        text.push_str("{\"id\":\"x\"\n");
        let err = jsonl(&text, false).unwrap_err();
        assert!(
            matches!(&err, Error::Decode { message, .. } if message.starts_with(&format!("line {}", rows + 1))),
            "{err}"
        );
    }

    #[test]
    fn jsonl_binaries_load_as_dlt_loads_them_and_fractions_are_no_integers() {
        use arrow::array::{Array, AsArray};
        // Plain JSONL: the base64 text's bytes, as dlt's DuckDB loader stores them.
        let batches = jsonl(
            "{\"id\":1,\"b\":\"AAH/\"}\n{\"id\":2.0,\"b\":\"\"}\n{\"id\":3}\n",
            false,
        )
        .unwrap();
        let b = batches[0].column(1).as_binary::<i32>();
        assert_eq!(b.value(0), b"AAH/");
        assert_eq!(b.value(1), [0u8; 0]);
        assert!(b.is_null(2));
        // Typed JSONL: the bytes the marker carries.
        let batches = jsonl("{\"id\":1,\"b\":\"\u{F02B}AAH/\"}\n", true).unwrap();
        assert_eq!(batches[0].column(1).as_binary::<i32>().value(0), [0u8, 1, 255]);
        assert!(matches!(
            jsonl("{\"b\":\"\u{F02B}**\"}\n", true),
            Err(Error::Decode { .. })
        ));
        let lossy = jsonl("{\"id\":2.7}\n", false).unwrap_err();
        assert!(
            matches!(&lossy, Error::ColumnType { column, .. } if column == "id"),
            "{lossy}"
        );
    }

    #[test]
    fn wide_rows_get_smaller_batches() {
        // Narrow rows (30 bytes): the configured size.
        assert_eq!(batch_rows_for(65_536, 30), 65_536);
        // 500-byte rows: about 2 MiB per batch.
        assert_eq!(batch_rows_for(65_536, 500), 4194);
        // Huge rows: never fewer than 1,024 rows; unknown widths keep the configured size.
        assert_eq!(batch_rows_for(65_536, 1 << 20), 1024);
        assert_eq!(batch_rows_for(65_536, 0), 65_536);
        assert_eq!(batch_rows_for(100, 1 << 20), 100);
    }
}
