//! # berth-duckdb
//!
//! DuckDB, berth's embedded default destination. Two load paths, both inside one transaction per
//! job:
//!
//! - **Parquet on the local disk**: DuckDB reads the file itself
//!   (`INSERT INTO t (cols) SELECT cols FROM read_parquet('…')`), after berth checked the file's
//!   columns against the package schema from its footer. Not where its row groups are too wide
//!   for DuckDB's scan within the memory bound (dlt writes 1,048,576-row groups), or where its
//!   statistics do not rule out dates beyond DuckDB's range: those take the stream below.
//! - **Everything else** (JSONL, CSV, Arrow IPC, `insert_values`, Parquet in an object store):
//!   berth decodes the file into Arrow record batches and hands DuckDB an Arrow C stream
//!   (`duckdb_arrow_scan`); DuckDB pulls the batches as it inserts. Memory stays bounded by the
//!   channel between decoder and DuckDB.
//!
//! The `duckdb` crate links its own arrow version; data crosses between the two only through the
//! Arrow C Data Interface, never row by row. berth links the prebuilt `libduckdb.so` fetched by
//! `scripts/setup-duckdb.sh`.
//!
//! ```no_run
//! use berth_destination::Destination;
//! use berth_duckdb::DuckDbDestination;
//!
//! # fn example() -> berth_destination::Result<()> {
//! let destination = DuckDbDestination::from_url("duckdb:berth.duckdb")?;
//! println!("loading into {}", destination.describe());
//! # Ok(())
//! # }
//! ```

mod allocator;
pub mod memory;
mod raw;
mod types;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow::array::{ArrayRef, RecordBatch, RecordBatchReader, StructArray};
use arrow::compute::{CastOptions, cast_with_options};
use arrow::datatypes::{DataType as ArrowType, Field, Schema, SchemaRef};
use arrow::error::ArrowError;
use arrow::ffi_stream::FFI_ArrowArrayStream;
use async_trait::async_trait;
use berth_destination::{
    Capabilities, Destination, Error, ErrorKind, JobMetrics, JobPart, JobTimings, JournalEntry, LoadJob, Result,
    journal_insert,
};
use berth_model::read::{self, JobReader};
use berth_model::{FileFormat, ReplaceStrategy};
use berth_plan::sql;
use berth_plan::sqlparser::ast::{
    Expr, FunctionArg, FunctionArgExpr, Query, SelectItem, SetExpr, Statement, TableFactor,
};
use berth_plan::{SqlDialect, SqlStatement};
use datafusion::sql::unparser::dialect::DuckDBDialect;
use futures::StreamExt;
use tokio::sync::mpsc;

pub use types::DuckDbTypeMapper;

/// Hands the memory DuckDB freed back to the system now (berth does so by itself when DuckDB's
/// work ends and, while it works, whenever the process holds much); false when the linked DuckDB
/// has no jemalloc to ask. For measurements that start from what is live.
pub fn release_freed_memory() -> bool {
    allocator::purge()
}

use memory::MemoryBudget;
use raw::{Database, DuckError};

/// The journal row of a job, given the rows it inserted (written in the job's transaction).
type JournalStatement = Box<dyn Fn(u64) -> String + Send>;

/// Record batches buffered between the decoder and DuckDB.
const BATCHES_IN_FLIGHT: usize = 2;

/// DuckDB's capabilities, as dlt declares them (reference §5).
pub fn capabilities() -> Capabilities {
    Capabilities {
        dialect: SqlDialect {
            supports_truncate: false,
            alter_add_multi_column: false,
            // Upsert runs as a keyed delete and an insert, in one transaction: DuckDB's MERGE took
            // 0.63 s to upsert a 500k-row delta into 5M rows, the delete and insert 0.3 s.
            supports_merge: false,
            // DuckDB's VARCHAR has no length, so text never needs widening.
            alter_type_syntax: berth_plan::widen::AlterTypeSyntax::SetDataType,
            ..SqlDialect::new(
                "duckdb",
                Arc::new(DuckDbTypeMapper),
                Arc::new(berth_plan::NoQualify(DuckDBDialect::new())),
                Arc::new(berth_plan::sqlparser::dialect::DuckDbDialect {}),
            )
            .with_max_identifier_length(65_536)
        },
        loader_formats: FileFormat::READABLE.to_vec(),
        // The first is the default: insert-from-staging replaces in the follow-up's transaction,
        // so a replaced table is never seen empty or half-loaded, even after a crash.
        replace_strategies: vec![ReplaceStrategy::InsertFromStaging, ReplaceStrategy::TruncateAndInsert],
        merge_strategies: berth_plan::PLANNED_MERGE_STRATEGIES.to_vec(),
        supports_ddl_transactions: true,
        supports_transactions: true,
        max_parallel_jobs: None,
        row_group_parts: false,
    }
}

/// A DuckDB database file (or an in-memory database) as a destination.
#[derive(Debug)]
pub struct DuckDbDestination {
    db: Arc<Database>,
    location: String,
    caps: Capabilities,
    views: AtomicU64,
    memory: Arc<MemoryBudget>,
}

/// Opens a database file; while another process holds its lock (DuckDB admits one writing
/// process per file), waits for it, saying so every minute, as a second `berth load` into the
/// same file should.
fn open_waiting_for_lock(path: &Path) -> std::result::Result<Database, DuckError> {
    let started = Instant::now();
    let mut said = None::<Instant>;
    loop {
        match Database::open(&path.to_string_lossy()) {
            Err(e) if e.kind == ErrorKind::Transient && e.message.contains("Could not set lock on file") => {
                if said.is_none_or(|at| at.elapsed() >= Duration::from_secs(60)) {
                    tracing::warn!(
                        "waiting for `{}`: another process holds its lock ({} s so far)",
                        path.display(),
                        started.elapsed().as_secs()
                    );
                    said = Some(Instant::now());
                }
                std::thread::sleep(Duration::from_millis(250));
            }
            other => return other,
        }
    }
}

/// The storage version in a DuckDB file's header (`DUCK` at byte 8, the version after it), if
/// `path` is a DuckDB file.
fn file_storage_version(path: &Path) -> Option<u64> {
    use std::io::Read as _;
    let mut header = [0u8; 20];
    std::fs::File::open(path).ok()?.read_exact(&mut header).ok()?;
    (&header[8..12] == b"DUCK").then(|| u64::from_le_bytes(header[12..20].try_into().unwrap_or_default()))
}

/// Why a DuckDB file that does not open was written by another DuckDB than berth's, and what
/// to do: `None` when its storage version is the one berth's DuckDB writes (another cause).
fn storage_version_mismatch(path: &Path) -> Option<String> {
    let theirs = file_storage_version(path)?;
    // The version berth's library writes, from a scratch file of its own.
    let scratch = std::env::temp_dir().join(format!("berth-storage-probe-{}.duckdb", std::process::id()));
    let ours = Database::open(&scratch.to_string_lossy()).ok().and_then(|db| {
        drop(db);
        file_storage_version(&scratch)
    });
    let _ = std::fs::remove_file(&scratch);
    let _ = std::fs::remove_file(scratch.with_extension("duckdb.wal"));
    let ours = ours?;
    if theirs == ours {
        return None;
    }
    let library = raw::library_version();
    Some(if theirs > ours {
        format!(
            "`{}` was written by a newer DuckDB (storage version {theirs}); berth links DuckDB {library}, which reads \
             and writes storage version {ours} and older. Load into a new file, or copy this one into a file \
             DuckDB {library} reads, with the DuckDB that wrote it: ATTACH 'old.duckdb' AS src; ATTACH 'new.duckdb' \
             AS dst (STORAGE_VERSION 'v1.5.0'); COPY FROM DATABASE src TO dst;",
            path.display()
        )
    } else {
        format!(
            "`{}` has DuckDB storage version {theirs}, which DuckDB {library} (berth's) cannot open (it writes \
             version {ours})",
            path.display()
        )
    })
}

impl DuckDbDestination {
    /// Opens (creating if needed) the database file at `path`, with berth's defaults (see
    /// [`Self::from_url`]).
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::open_with(path.as_ref(), "", &[])
    }

    fn open_with(path: &Path, url: &str, settings: &[(String, String)]) -> Result<Self> {
        let location = format!("duckdb:{}", path.display());
        let db = open_waiting_for_lock(path).map_err(|e| Error::Config {
            destination: location.clone(),
            reason: match storage_version_mismatch(path) {
                Some(explained) => explained,
                None => format!("cannot open the database file: {}", e.message),
            },
        })?;
        Self::with_database(db, location).configure(url, settings, true)
    }

    /// A fresh in-memory database.
    pub fn in_memory() -> Result<Self> {
        Self::in_memory_with("", &[])
    }

    fn in_memory_with(url: &str, settings: &[(String, String)]) -> Result<Self> {
        let db = Database::open(":memory:").map_err(|e| Error::Config {
            destination: "duckdb::memory:".into(),
            reason: e.message,
        })?;
        Self::with_database(db, "duckdb::memory:".into()).configure(url, settings, false)
    }

    fn with_database(db: Database, location: String) -> Self {
        Self {
            db: Arc::new(db),
            location,
            caps: capabilities(),
            views: AtomicU64::new(0),
            memory: Arc::new(MemoryBudget::fixed()),
        }
    }

    /// Opens `duckdb:///abs/path.duckdb`, `duckdb:relative/path.duckdb` or `duckdb::memory:`,
    /// optionally with DuckDB settings as query parameters: `?memory_limit=256MB&threads=2`
    /// (also `temp_directory`, `max_temp_directory_size`, `preserve_insertion_order`).
    ///
    /// berth's defaults where the URL is silent: `preserve_insertion_order=false` (a table has no
    /// row order; keeping one makes DuckDB rewrite a parallel bulk insert at its next checkpoint,
    /// which for 5M rows costs 1.7 s and 440 MiB), and for a database file a `memory_limit` that
    /// starts at 64 MiB and grows with the widest row group loaded (see [`memory`]).
    pub fn from_url(url: &str) -> Result<Self> {
        let (base, query) = url.split_once('?').unwrap_or((url, ""));
        let settings = parse_settings(url, query)?;
        match parse_url(base)? {
            DuckDbPath::Memory => Self::in_memory_with(url, &settings),
            DuckDbPath::File(path) => Self::open_with(&path, url, &settings),
        }
    }

    /// Applies the URL's settings and berth's defaults for the rest, for the whole database.
    fn configure(mut self, url: &str, settings: &[(String, String)], file: bool) -> Result<Self> {
        let url = if url.is_empty() {
            self.location.clone()
        } else {
            url.to_string()
        };
        let config = |reason: String| Error::Config {
            destination: url.clone(),
            reason,
        };
        let conn = self.db.connect().map_err(|e| config(e.message))?;
        let given = |key: &str| settings.iter().any(|(k, _)| k == key);
        let defaults =
            (!given("preserve_insertion_order")).then(|| ("preserve_insertion_order".to_string(), "false".to_string()));
        for (key, value) in settings.iter().chain(defaults.as_ref()) {
            conn.execute(&format!("SET {key} = '{value}'"))
                .map_err(|e| config(format!("setting {key}: {}", e.message)))?;
        }
        if file && !given("memory_limit") {
            let budget = MemoryBudget::automatic(&self.db, !given("threads"))
                .map_err(|e| config(format!("setting memory_limit: {}", e.message)))?;
            self.memory = Arc::new(budget);
        }
        // Names carry the database (as dlt's do): `bomb.t` in `bomb.duckdb` would be ambiguous.
        let database: String = self
            .db
            .crate_connection()
            .map_err(|e| config(e.message))?
            .query_row("SELECT current_database()", [], |row| row.get(0))
            .map_err(|e| config(format!("reading the database name: {e}")))?;
        self.caps.dialect.database = Some(database);
        Ok(self)
    }

    /// Runs one INSERT in its own transaction on a fresh connection, first registering `stream`
    /// as view when given (the stream lives until the transaction ended). With no stream, an
    /// out-of-memory failure under berth's own limit raises the limit and runs the INSERT again;
    /// a stream cannot be read twice, so there the error goes back to the loader, which retries
    /// the job (transient) under the raised limit. `row_group_bytes`: what each of DuckDB's threads
    /// holds of the job's row groups (the widest decoded row group of the Parquet file DuckDB
    /// reads; for a stream, one of DuckDB's row groups of its rows, or 0), which DuckDB's threads
    /// and limit are fitted to first.
    async fn insert_in_transaction(
        &self,
        insert: String,
        context: String,
        stream: Option<(String, FFI_ArrowArrayStream)>,
        row_group_bytes: u64,
        journal: JournalStatement,
    ) -> Result<u64> {
        let location = self.location.clone();
        let memory = Arc::clone(&self.memory);
        let drop_view = stream
            .as_ref()
            .map(|(view, _)| format!("DROP VIEW {}", self.caps.dialect.ident(view)))
            .unwrap_or_default();
        self.blocking(move |db| {
            let mut stream = stream;
            let rerunnable = stream.is_none();
            let run = |stream: &mut Option<(String, FFI_ArrowArrayStream)>| -> std::result::Result<u64, DuckError> {
                let conn = db.connect()?;
                conn.execute("BEGIN TRANSACTION")?;
                let inserted = match stream.as_mut() {
                    // The scan is a view in the user's catalog: it goes in the same transaction,
                    // so nothing of it is left behind (its stream dies with this call).
                    Some((view, ffi)) => conn.register_arrow_stream(view, ffi).and_then(|()| {
                        let rows = conn.execute(&insert)?;
                        conn.execute(&drop_view)?;
                        Ok(rows)
                    }),
                    None => conn.execute(&insert),
                };
                match inserted.and_then(|rows| conn.execute(&journal(rows)).map(|_| rows)) {
                    Ok(rows) => {
                        conn.execute("COMMIT")?;
                        Ok(rows)
                    }
                    Err(e) => {
                        let _ = conn.execute("ROLLBACK");
                        Err(e)
                    }
                }
            };
            let outcome = memory.fit_row_groups(db, row_group_bytes).and_then(|fitted| {
                let outcome = memory.retry_on_oom(db, rerunnable, || context.clone(), || run(&mut stream));
                drop(fitted);
                outcome
            });
            drop(stream);
            outcome.map_err(|e| Error::Database {
                kind: e.kind,
                destination: location,
                context,
                message: e.message,
            })
        })
        .await
    }

    async fn blocking<T: Send + 'static>(&self, f: impl FnOnce(&Database) -> Result<T> + Send + 'static) -> Result<T> {
        let db = Arc::clone(&self.db);
        tokio::task::spawn_blocking(move || {
            let _busy = allocator::Busy::start();
            f(&db)
        })
        .await
        .map_err(|e| Error::Internal(format!("a DuckDB task failed: {e}")))?
    }
}

/// Where a DuckDB URL points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DuckDbPath {
    /// An in-memory database.
    Memory,
    /// A database file.
    File(PathBuf),
}

/// DuckDB settings a destination URL may carry.
const URL_SETTINGS: [&str; 5] = [
    "memory_limit",
    "threads",
    "temp_directory",
    "max_temp_directory_size",
    "preserve_insertion_order",
];

/// The `key=value` settings of a DuckDB URL's query, checked against [`URL_SETTINGS`].
fn parse_settings(url: &str, query: &str) -> Result<Vec<(String, String)>> {
    let bad = |reason: String| Error::Config {
        destination: url.to_string(),
        reason,
    };
    let mut settings = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair
            .split_once('=')
            .ok_or_else(|| bad(format!("`{pair}` is not key=value")))?;
        if !URL_SETTINGS.contains(&key) {
            return Err(bad(format!(
                "unknown DuckDB setting `{key}`; berth takes {}",
                URL_SETTINGS.join(", ")
            )));
        }
        let plain = |c: char| c.is_ascii_alphanumeric() || "._-/ ".contains(c);
        if value.is_empty() || !value.chars().all(plain) {
            return Err(bad(format!("`{key}` has a value berth does not pass on: `{value}`")));
        }
        settings.push((key.to_string(), value.to_string()));
    }
    Ok(settings)
}

/// Parses a DuckDB destination URL.
pub fn parse_url(url: &str) -> Result<DuckDbPath> {
    let bad = |reason: &str| Error::Config {
        destination: url.to_string(),
        reason: reason.to_string(),
    };
    let rest = url
        .strip_prefix("duckdb:")
        .ok_or_else(|| bad("a DuckDB destination starts with `duckdb:`"))?;
    if rest == ":memory:" {
        return Ok(DuckDbPath::Memory);
    }
    let path = if let Some(abs) = rest.strip_prefix("//") {
        if !abs.starts_with('/') {
            return Err(bad(
                "use duckdb:///absolute/path.duckdb (three slashes) or duckdb:relative/path.duckdb",
            ));
        }
        abs
    } else {
        rest
    };
    if path.is_empty() {
        return Err(bad("no database file given (e.g. duckdb:berth.duckdb)"));
    }
    Ok(DuckDbPath::File(PathBuf::from(path)))
}

/// `SELECT cols FROM read_parquet('<path>')`.
impl DuckDbDestination {
    /// DuckDB's own ingest limit for a Parquet file: `CREATE TABLE … AS SELECT * FROM
    /// read_parquet('<file>')` into a scratch table of `dataset`, timed, then dropped.
    pub async fn read_parquet_ceiling(&self, dataset: &str, file: &std::path::Path) -> Result<std::time::Duration> {
        let dialect = self.caps.dialect.clone();
        let target = dialect.table_name(dataset, "berth_ceiling");
        let mut query = select_from_parquet(&dialect, &file.to_string_lossy(), &[]);
        if let SetExpr::Select(select) = query.body.as_mut() {
            select.projection = vec![SelectItem::Wildcard(Default::default())];
        }
        let create = format!("CREATE OR REPLACE TABLE {target} AS {query}");
        let drop = format!("DROP TABLE IF EXISTS {target}");
        let location = self.location.clone();
        let memory = Arc::clone(&self.memory);
        self.blocking(move |db| {
            let context = "measuring DuckDB's read_parquet speed";
            let fail = |e: DuckError| Error::Database {
                kind: e.kind,
                destination: location.clone(),
                context: context.into(),
                message: e.message,
            };
            let conn = db.connect().map_err(fail)?;
            // Under the same memory limit as berth's loads, grown the same way.
            let elapsed = memory
                .retry_on_oom(
                    db,
                    true,
                    || context.to_string(),
                    || {
                        let started = std::time::Instant::now();
                        conn.execute(&create).map(|_| started.elapsed())
                    },
                )
                .map_err(fail)?;
            conn.execute(&drop).map_err(fail)?;
            Ok(elapsed)
        })
        .await
    }
}

fn select_from_parquet(dialect: &SqlDialect, path: &str, columns: &[String]) -> Query {
    let statement = berth_plan::sqlparser::parser::Parser::parse_sql(
        &berth_plan::sqlparser::dialect::DuckDbDialect {},
        "SELECT c FROM read_parquet('x')",
    )
    .ok()
    .and_then(|mut s| s.pop());
    let Some(Statement::Query(mut query)) = statement else {
        unreachable!("constant skeleton parses as a query")
    };
    if let SetExpr::Select(select) = query.body.as_mut() {
        select.projection = columns
            .iter()
            .map(|c| SelectItem::UnnamedExpr(Expr::Identifier(dialect.ident(c))))
            .collect();
        if let Some(TableFactor::Table { args: Some(args), .. }) = select.from.first_mut().map(|t| &mut t.relation) {
            args.args = vec![FunctionArg::Unnamed(FunctionArgExpr::Expr(sql::lit_str(path)))];
        }
    }
    *query
}

/// Casts columns DuckDB's Arrow scan cannot take (256-bit decimals) to ones it can.
fn duckdb_compatible(schema: &SchemaRef) -> SchemaRef {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| match f.data_type() {
            ArrowType::Decimal256(p, s) => f
                .as_ref()
                .clone()
                .with_data_type(ArrowType::Decimal128((*p).min(38), *s)),
            _ => f.as_ref().clone(),
        })
        .collect();
    Arc::new(Schema::new(fields))
}

fn conform(batch: RecordBatch, schema: &SchemaRef) -> std::result::Result<RecordBatch, ArrowError> {
    if batch.schema().fields() == schema.fields() {
        return Ok(batch);
    }
    let options = CastOptions {
        safe: false,
        ..Default::default()
    };
    let columns = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(c, f)| {
            cast_with_options(c, f.data_type(), &options)
                .map_err(|e| ArrowError::CastError(format!("column `{}`: {e}", f.name())))
        })
        .collect::<std::result::Result<Vec<ArrayRef>, _>>()?;
    RecordBatch::try_new(Arc::clone(schema), columns)
}

/// Batches arriving on a channel, as the `RecordBatchReader` behind an Arrow C stream.
struct ChannelBatchReader {
    schema: SchemaRef,
    rx: mpsc::Receiver<std::result::Result<RecordBatch, ArrowError>>,
}

impl Iterator for ChannelBatchReader {
    type Item = std::result::Result<RecordBatch, ArrowError>;
    fn next(&mut self) -> Option<Self::Item> {
        // Called on DuckDB's threads, never on an async one.
        self.rx.blocking_recv()
    }
}

impl RecordBatchReader for ChannelBatchReader {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }
}

// The transmutes below move C Data Interface structs between the `duckdb` crate's arrow and
// berth's: checked at compile time to have one size and one alignment (a transmute checks only
// the size), so an upgrade of either arrow that changed them fails the build, not a load.
const _: () = {
    use std::mem::{align_of, size_of};
    type TheirArray = duckdb::arrow::ffi::FFI_ArrowArray;
    type TheirSchema = duckdb::arrow::ffi::FFI_ArrowSchema;
    assert!(size_of::<TheirArray>() == size_of::<arrow::ffi::FFI_ArrowArray>());
    assert!(align_of::<TheirArray>() == align_of::<arrow::ffi::FFI_ArrowArray>());
    assert!(size_of::<TheirSchema>() == size_of::<arrow::ffi::FFI_ArrowSchema>());
    assert!(align_of::<TheirSchema>() == align_of::<arrow::ffi::FFI_ArrowSchema>());
};

/// Converts a batch of the `duckdb` crate's arrow to berth's arrow through the C Data Interface.
fn from_duckdb_arrow(batch: duckdb::arrow::record_batch::RecordBatch) -> std::result::Result<RecordBatch, ArrowError> {
    use duckdb::arrow::array::Array as _;
    let data = duckdb::arrow::array::StructArray::from(batch).into_data();
    let (array, schema) = duckdb::arrow::ffi::to_ffi(&data).map_err(|e| ArrowError::CDataInterface(e.to_string()))?;
    // SAFETY: both arrow versions define these as the C Data Interface's repr(C) structs, so the
    // values are the same bytes; ownership (the release callbacks) moves with them.
    let (array, schema): (arrow::ffi::FFI_ArrowArray, arrow::ffi::FFI_ArrowSchema) = unsafe {
        (
            std::mem::transmute::<duckdb::arrow::ffi::FFI_ArrowArray, arrow::ffi::FFI_ArrowArray>(array),
            std::mem::transmute::<duckdb::arrow::ffi::FFI_ArrowSchema, arrow::ffi::FFI_ArrowSchema>(schema),
        )
    };
    // SAFETY: the structs were just exported by a conforming producer.
    let data = unsafe { arrow::ffi::from_ffi(array, &schema) }?;
    Ok(RecordBatch::from(StructArray::from(data)))
}

#[async_trait]
impl Destination for DuckDbDestination {
    fn capabilities(&self) -> &Capabilities {
        &self.caps
    }

    fn describe(&self) -> String {
        self.location.clone()
    }

    /// Caps berth's automatic `memory_limit` at `bytes` (never below 64 MiB, what DuckDB needs
    /// to load at all: a smaller share is an error). A `memory_limit` in the URL, or an in-memory
    /// database, stays the user's: 0.
    fn cap_engine_memory(&self, bytes: u64) -> Result<u64> {
        if bytes < memory::BASE_LIMIT && self.memory.ceiling() > 0 {
            return Err(Error::Config {
                destination: self.location.clone(),
                reason: format!(
                    "the memory budget leaves DuckDB {} MiB, and it needs at least {} MiB: raise --memory-budget",
                    bytes >> 20,
                    memory::BASE_LIMIT >> 20
                ),
            });
        }
        let capped = self.memory.cap(&self.db, bytes).map_err(|e| Error::Config {
            destination: self.location.clone(),
            reason: format!("setting memory_limit: {}", e.message),
        })?;
        Ok(capped)
    }

    fn engine_reads_parquet(&self) -> bool {
        true
    }

    async fn execute(&self, statements: Vec<SqlStatement>, transactional: bool) -> Result<()> {
        let location = self.location.clone();
        let memory = Arc::clone(&self.memory);
        let sql: Vec<String> = statements.iter().map(SqlStatement::text_to_send).collect();
        // Errors name a statement as printed (secrets as `***`).
        let shown: Vec<String> = statements.iter().map(ToString::to_string).collect();
        self.blocking(move |db| {
            let error = |context: &str, e: DuckError| Error::Database {
                kind: e.kind,
                destination: location.clone(),
                context: context.to_string(),
                message: e.message,
            };
            let conn = db.connect().map_err(|e| error("connect", e))?;
            // After an out-of-memory failure under berth's own limit, the limit grows and the
            // work runs again: the whole transaction, or (autocommit) the failed statement.
            let mut next = 0;
            let failed = std::cell::Cell::new(None);
            let failing = || failed.get().map_or("begin", |index: usize| shown[index].as_str());
            memory
                .retry_on_oom(
                    db,
                    true,
                    || failing().to_string(),
                    || {
                        failed.set(None);
                        if transactional {
                            conn.execute("BEGIN TRANSACTION")?;
                        }
                        for (index, statement) in sql.iter().enumerate().skip(next) {
                            if let Err(e) = conn.execute(statement) {
                                if transactional {
                                    let _ = conn.execute("ROLLBACK");
                                }
                                failed.set(Some(index));
                                next = if transactional { 0 } else { index };
                                return Err(e);
                            }
                        }
                        Ok(())
                    },
                )
                .map_err(|e| error(failing(), e))?;
            if transactional {
                conn.execute("COMMIT").map_err(|e| error("commit", e))?;
            }
            Ok(())
        })
        .await
    }

    async fn query(&self, statement: Statement) -> Result<Vec<RecordBatch>> {
        let location = self.location.clone();
        let sql = statement.to_string();
        self.blocking(move |db| {
            let fail = |e: String, kind: ErrorKind| Error::Database {
                kind,
                destination: location.clone(),
                context: sql.clone(),
                message: e,
            };
            let conn = db.crate_connection().map_err(|e| fail(e.message, e.kind))?;
            let mut prepared = conn.prepare(&sql).map_err(|e| {
                let message = e.to_string();
                let kind = if message.contains("Catalog Error") {
                    ErrorKind::UndefinedRelation
                } else {
                    ErrorKind::Terminal
                };
                fail(message, kind)
            })?;
            let batches = prepared
                .query_arrow([])
                .map_err(|e| fail(e.to_string(), ErrorKind::Terminal))?
                .map(from_duckdb_arrow)
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|e| Error::Internal(format!("reading DuckDB's Arrow result: {e}")))?;
            Ok(batches)
        })
        .await
    }

    async fn load_job(&self, job: LoadJob<'_>) -> Result<JobMetrics> {
        let display = job.package.job_display(job.job);
        if job.part != JobPart::Whole {
            return Err(Error::Internal(format!(
                "{display}: DuckDB loads whole files, not {}",
                job.part
            )));
        }
        let journal = {
            let dialect = self.caps.dialect.clone();
            let (dataset, load_id) = (job.journal_dataset.to_string(), job.package.load_id.clone());
            let entry = JournalEntry::for_job(&job, 0);
            Box::new(move |rows| {
                journal_insert(&dialect, &dataset, &load_id, &JournalEntry { rows, ..entry.clone() }).to_string()
            })
        };
        if let (FileFormat::Parquet, Some(dir)) = (job.job.name.format, job.package.location.local_dir()) {
            let info = read::inspect_parquet(job.package, job.job).await?;
            // DuckDB would turn dates and timestamps beyond its range into infinity: a file whose
            // statistics do not rule that out is read (and checked) by berth instead. So is a
            // file whose row groups are too wide for all of DuckDB's threads to scan within the
            // memory bound: berth decodes it on one core while DuckDB inserts on the others.
            if info.temporal_in_range && self.memory.scans_row_groups(info.widest_decoded_row_group()) {
                let path = dir.join(job.job.relative_path());
                return self.load_local_parquet(&job, &path, &info, journal).await;
            }
            return self.load_stream(&job, journal, insert_row_group_bytes(&info)).await;
        }
        self.load_stream(&job, journal, 0).await
    }
}

impl DuckDbDestination {
    /// A local Parquet file, read by DuckDB's own `read_parquet`.
    async fn load_local_parquet(
        &self,
        job: &LoadJob<'_>,
        path: &std::path::Path,
        info: &read::ParquetInfo,
        journal: JournalStatement,
    ) -> Result<JobMetrics> {
        let dialect = &self.caps.dialect;
        let columns: Vec<String> = info
            .schema
            .fields()
            .iter()
            .filter(|f| job.table.columns.get(f.name()).is_some_and(|c| c.is_complete()))
            .map(|f| f.name().clone())
            .collect();
        let column_refs: Vec<&str> = columns.iter().map(String::as_str).collect();
        let query = select_from_parquet(dialect, &path.to_string_lossy(), &columns);
        let insert = sql::insert_select(dialect, job.dataset, &job.table.name, &column_refs, query).to_string();
        let display = job.package.job_display(job.job);
        let context = format!("loading `{display}` into `{}.{}`", job.dataset, job.table.name);
        let widest = info.widest_decoded_row_group();
        let started = Instant::now();
        let rows = self
            .insert_in_transaction(insert, context, None, widest, journal)
            .await?;
        let timings = JobTimings {
            transfer: started.elapsed(),
            ..JobTimings::default()
        };
        Ok(JobMetrics {
            keys: None,
            rows,
            bytes: job.job.size,
            timings,
        })
    }

    /// Any job file, decoded by berth and streamed to DuckDB through the C Data Interface.
    /// `row_group_bytes`: what one of DuckDB's row groups of these rows takes decoded, when known
    /// (Parquet), which DuckDB's threads and memory limit are fitted to; 0 otherwise.
    async fn load_stream(
        &self,
        job: &LoadJob<'_>,
        journal: JournalStatement,
        row_group_bytes: u64,
    ) -> Result<JobMetrics> {
        let dialect = &self.caps.dialect;
        let display = job.package.job_display(job.job);
        let mut options = job.read_options.clone();
        if row_group_bytes > 0 {
            // DuckDB's scan takes a batch a vector at a time and holds it whole until then: wider
            // batches only hold more (dlt's 1M-row groups of 50 columns: 207 → 197 MiB, as fast).
            options.batch_size = options.batch_size.min(DUCKDB_VECTOR_ROWS);
        }
        let JobReader { schema, stream } = read::open_job(job.package, job.job, &options).await?;
        let keep: Vec<usize> = schema
            .fields()
            .iter()
            .enumerate()
            .filter(|(_, f)| job.table.columns.get(f.name()).is_some_and(|c| c.is_complete()))
            .map(|(i, _)| i)
            .collect();
        let projected = Arc::new(schema.project(&keep).map_err(|e| Error::Internal(e.to_string()))?);
        let target_schema = duckdb_compatible(&projected);
        let columns: Vec<String> = target_schema.fields().iter().map(|f| f.name().clone()).collect();
        let view = format!("berth_job_{}", self.views.fetch_add(1, Ordering::Relaxed));
        let column_refs: Vec<&str> = columns.iter().map(String::as_str).collect();
        let query = sql::select_columns_from(
            dialect,
            datafusion::common::TableReference::bare(view.clone()),
            &column_refs,
        )?;
        let insert = sql::insert_select(dialect, job.dataset, &job.table.name, &column_refs, query).to_string();
        let pump = Pump::start(stream, keep, Arc::clone(&target_schema), display.clone());
        let context = format!("loading `{display}` into `{}.{}`", job.dataset, job.table.name);
        let started = Instant::now();
        let result = self
            .insert_in_transaction(
                insert,
                context,
                Some((view, FFI_ArrowArrayStream::new(Box::new(pump.reader)))),
                row_group_bytes,
                journal,
            )
            .await;
        pump.task.abort();
        // The decoder's own error (naming the file, line and column) wins over DuckDB's report of
        // a failed stream.
        let read_error = pump
            .error
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        match (result, read_error) {
            (Ok(rows), _) => {
                let decode = Duration::from_nanos(pump.decode_nanos.load(Ordering::Relaxed));
                let timings = JobTimings {
                    decode,
                    transfer: started.elapsed().saturating_sub(decode),
                    ..JobTimings::default()
                };
                Ok(JobMetrics {
                    keys: None,
                    rows,
                    bytes: job.job.size,
                    timings,
                })
            }
            (Err(_), Some(read)) => Err(read.into()),
            (Err(e), None) => Err(e),
        }
    }
}

/// Rows in one of the row groups DuckDB's tables are stored in: each thread of an INSERT fills one.
const DUCKDB_ROW_GROUP_ROWS: u64 = 122_880;

/// Rows in one of DuckDB's vectors (`STANDARD_VECTOR_SIZE`), the unit its Arrow scan reads in.
const DUCKDB_VECTOR_ROWS: usize = 2048;

/// What DuckDB's threads are fitted to for a stream of a Parquet file's rows: one of DuckDB's row
/// groups of these rows, at the file's widest bytes per row
/// ([`memory::MemoryBudget::fit_row_groups`] counts two per thread, the table's row group and what
/// the thread holds besides). Rows as wide as 50 mixed columns get one thread: dlt's 1M-row groups
/// of them (`berth bench --shape wide --row-group-rows 1048576`) loaded in 2.6 s at 218 MiB on
/// two threads, and in 4.0–4.2 s at 198–207 MiB on one, against DuckDB's own `CREATE TABLE AS`
/// of the file (a fresh process, default settings) in 4.0 s at 650 MiB: the 200 MiB bound holds
/// only on one.
fn insert_row_group_bytes(info: &read::ParquetInfo) -> u64 {
    info.row_group_decoded_bytes
        .iter()
        .zip(&info.row_group_rows)
        .filter(|(_, rows)| **rows > 0)
        .map(|(bytes, rows)| bytes.saturating_mul(DUCKDB_ROW_GROUP_ROWS) / rows)
        .max()
        .unwrap_or_default()
}

/// Decodes a job on a task of its own while DuckDB reads its batches from [`Pump::reader`].
struct Pump {
    reader: ChannelBatchReader,
    /// Owned: aborted once DuckDB is done with the stream.
    task: berth_model::task::OwnedTask<()>,
    /// The decoder's error, when it failed.
    error: Arc<Mutex<Option<berth_model::Error>>>,
    /// Time spent decoding.
    decode_nanos: Arc<AtomicU64>,
}

impl Pump {
    fn start(
        mut stream: futures::stream::BoxStream<'static, berth_model::Result<RecordBatch>>,
        keep: Vec<usize>,
        schema: SchemaRef,
        job: String,
    ) -> Self {
        let error: Arc<Mutex<Option<berth_model::Error>>> = Arc::default();
        let (tx, rx) = mpsc::channel(BATCHES_IN_FLIGHT);
        let decode_nanos = Arc::new(AtomicU64::new(0));
        let (pump_error, pump_nanos, pump_schema) =
            (Arc::clone(&error), Arc::clone(&decode_nanos), Arc::clone(&schema));
        let task = berth_model::task::spawn_owned(async move {
            loop {
                let decoding = Instant::now();
                let Some(item) = stream.next().await else { break };
                let nanos = u64::try_from(decoding.elapsed().as_nanos()).unwrap_or(u64::MAX);
                pump_nanos.fetch_add(nanos, Ordering::Relaxed);
                let converted = item.and_then(|batch| {
                    batch
                        .project(&keep)
                        .and_then(|b| conform(b, &pump_schema))
                        .map_err(|e| berth_model::Error::Decode {
                            job: job.clone(),
                            message: e.to_string(),
                        })
                });
                let item = converted.map_err(|e| {
                    let message = e.to_string();
                    *pump_error.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(e);
                    ArrowError::ExternalError(message.into())
                });
                let failed = item.is_err();
                if tx.send(item).await.is_err() || failed {
                    break;
                }
            }
        });
        Self {
            reader: ChannelBatchReader { schema, rx },
            task,
            error,
            decode_nanos,
        }
    }
}

#[cfg(test)]
mod url_tests {
    use super::*;

    #[test]
    fn settings_ride_on_the_url_and_unknown_ones_are_refused() {
        assert!(DuckDbDestination::from_url("duckdb::memory:?memory_limit=100MB&threads=1").is_ok());
        let unknown = DuckDbDestination::from_url("duckdb::memory:?access_mode=READ_ONLY").unwrap_err();
        assert!(
            unknown.to_string().contains("unknown DuckDB setting `access_mode`"),
            "{unknown}"
        );
        let quoted = DuckDbDestination::from_url("duckdb::memory:?memory_limit=1GB';DROP").unwrap_err();
        assert!(quoted.to_string().contains("does not pass on"), "{quoted}");
        let wrong = DuckDbDestination::from_url("duckdb::memory:?memory_limit=lots").unwrap_err();
        assert!(wrong.to_string().contains("setting memory_limit"), "{wrong}");
    }
}

#[cfg(test)]
mod storage_version_tests {
    use super::*;

    #[test]
    fn a_file_of_a_newer_duckdb_is_named_with_its_storage_version() {
        let dir = std::env::temp_dir().join(format!("berth-storage-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // A file header as DuckDB 2.x writes it: checksum, `DUCK`, storage version 69.
        let newer = dir.join("newer.duckdb");
        let mut header = vec![0u8; 8];
        header.extend_from_slice(b"DUCK");
        header.extend_from_slice(&69u64.to_le_bytes());
        header.resize(3 * 4096, 0);
        std::fs::write(&newer, header).unwrap();
        let err = DuckDbDestination::open(&newer).unwrap_err();
        let Error::Config { reason, .. } = &err else {
            panic!("expected a configuration error, got {err:?}")
        };
        assert!(
            reason.contains("storage version 69") && reason.contains("STORAGE_VERSION"),
            "{reason}"
        );
        // A file berth's DuckDB wrote opens.
        let own = dir.join("own.duckdb");
        drop(DuckDbDestination::open(&own).unwrap());
        assert!(file_storage_version(&own).is_some());
        assert!(storage_version_mismatch(&own).is_none());
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[cfg(test)]
mod memory_tests {
    use super::*;

    fn setting(destination: &DuckDbDestination, name: &str) -> String {
        destination
            .db
            .crate_connection()
            .expect("connect")
            .query_row(&format!("SELECT current_setting('{name}')::VARCHAR"), [], |r| r.get(0))
            .expect("setting")
    }

    fn statement(sql: &str) -> SqlStatement {
        let mut parsed =
            berth_plan::sqlparser::parser::Parser::parse_sql(&berth_plan::sqlparser::dialect::DuckDbDialect {}, sql)
                .expect("parse");
        SqlStatement::Ast(Box::new(parsed.remove(0)))
    }

    /// A list of 6M integers in one value: DuckDB cannot spill it, so it needs about 256 MiB.
    const NEEDS_256_MIB: &str = "CREATE TABLE big AS SELECT list(range) AS l FROM range(6000000)";

    #[tokio::test]
    async fn berths_default_limit_grows_until_the_work_fits() {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("duckdb:{}", dir.path().join("grow.duckdb").display());
        let destination = DuckDbDestination::from_url(&url).expect("open");
        assert_eq!(destination.memory.current(), memory::BASE_LIMIT);
        assert_eq!(setting(&destination, "memory_limit"), "64.0 MiB");
        assert_eq!(setting(&destination, "preserve_insertion_order"), "false");

        for transactional in [true, false] {
            destination
                .execute(
                    vec![statement("DROP TABLE IF EXISTS big"), statement(NEEDS_256_MIB)],
                    transactional,
                )
                .await
                .expect("the limit grows instead of failing");
        }
        assert_eq!(destination.memory.current(), 4 * memory::BASE_LIMIT);
        let rows = destination
            .query(match statement("SELECT len(l) AS n FROM big") {
                SqlStatement::Ast(s) => *s,
                _ => unreachable!(),
            })
            .await
            .expect("query");
        assert_eq!(rows[0].num_rows(), 1);
    }

    #[tokio::test]
    async fn a_limit_from_the_url_is_the_users_and_stays() {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!(
            "duckdb:{}?memory_limit=64MB&preserve_insertion_order=true",
            dir.path().join("fixed.duckdb").display()
        );
        let destination = DuckDbDestination::from_url(&url).expect("open");
        assert_eq!(setting(&destination, "preserve_insertion_order"), "true");
        let error = destination
            .execute(vec![statement(NEEDS_256_MIB)], true)
            .await
            .expect_err("64MB is not enough");
        assert!(error.to_string().contains("Out of Memory"), "{error}");
        assert_eq!(destination.memory.current(), 0);
        assert!(
            setting(&destination, "memory_limit").starts_with("61."),
            "64MB = 61.0 MiB"
        );

        // An in-memory database holds its data in memory: berth sets no limit there.
        let in_memory = DuckDbDestination::in_memory().expect("open");
        assert_eq!(in_memory.memory.current(), 0);
        assert_eq!(setting(&in_memory, "preserve_insertion_order"), "false");
    }
}
