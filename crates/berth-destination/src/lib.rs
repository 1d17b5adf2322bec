//! # berth-destination
//!
//! The [`Destination`] trait every destination implements, its [`Capabilities`], the [`Error`]
//! type that tells transient from terminal failures, and the SQL every SQL destination shares:
//! migration against the live database ([`migrate`]), dlt's bookkeeping tables (`_dlt_version`,
//! `_dlt_loads`) and the commit marker ([`complete_load`]).
//!
//! A destination is a module: implement [`Destination`] (a handful of async methods) and return
//! a [`Capabilities`] value; the loader needs nothing else.
//!
//! ```no_run
//! use std::sync::Arc;
//! use berth_destination::{Destination, migrate};
//! use berth_model::{LoadPackage, PackageLocation};
//! use berth_plan::{PackagePlan, PlanOptions};
//!
//! # async fn example(destination: Arc<dyn Destination>) -> Result<(), Box<dyn std::error::Error>> {
//! let package = LoadPackage::open(PackageLocation::parse("1795379913.1787062")?).await?;
//! let caps = destination.capabilities().plan_capabilities();
//! let plan = PackagePlan::new(&package, &PlanOptions::new("my_dataset"), &caps)?;
//! let report = migrate(destination.as_ref(), &package, &plan).await?;
//! println!("created {:?}", report.created_tables);
//! # Ok(())
//! # }
//! ```

mod capabilities;
mod error;
mod journal;
mod migrate;
mod values;

use std::fmt::Debug;

use arrow::array::RecordBatch;
use async_trait::async_trait;
use berth_model::read::ReadOptions;
use berth_model::{JobFile, LoadPackage, Table};
use berth_plan::SqlStatement;
use berth_plan::sqlparser::ast::Statement;

pub use capabilities::{Capabilities, default_parallel_jobs};
pub use error::{Error, ErrorKind, Result, WideningRefused};
pub use journal::{
    JournalEntry, JournalKey, committed_parts, journal_insert, journal_insert_for, journal_table, uncovered,
};
pub use migrate::{
    MigrationReport, StorageColumn, complete_load, drop_refreshed_tables, is_empty_table, is_loaded, load_marker,
    migrate, migration_for_empty_destination, refresh_drop_statements, storage_columns, system_table,
    truncate_refreshed_tables,
};

/// One job to load: a job file of a package into `dataset.table`.
#[derive(Debug, Clone)]
pub struct LoadJob<'a> {
    /// The package the job belongs to.
    pub package: &'a LoadPackage,
    /// The job file.
    pub job: &'a JobFile,
    /// The table in the package schema.
    pub table: &'a Table,
    /// The dataset to load into (final or staging).
    pub dataset: &'a str,
    /// The part of the file to load.
    pub part: JobPart,
    /// The dataset whose journal records the part (the final dataset).
    pub journal_dataset: &'a str,
    /// How to read the file where berth reads it.
    pub read_options: ReadOptions,
    /// The loader emptied the table earlier in this run (truncate-and-insert, or a staging
    /// table), so whatever an earlier run loaded from this file is gone: a warehouse that skips
    /// files it remembers loading (Databricks' `COPY INTO`, BigQuery's job ids) must load it again.
    pub emptied: bool,
}

/// The part of a job file one load unit covers.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum JobPart {
    /// The whole file.
    Whole,
    /// Row groups `start..end` of a Parquet file, as earlier versions split files (still read
    /// from journals they wrote).
    RowGroups(std::ops::Range<usize>),
    /// Rows `start..end` of a Parquet file, counted from its first row: a part may begin and end
    /// inside a row group (for destinations with [`Capabilities::row_group_parts`]).
    Rows(std::ops::Range<u64>),
}

impl JobPart {
    /// What a reader of the file reads, `None` for the whole file.
    pub fn slice(&self) -> Option<berth_model::read::ParquetSlice> {
        use berth_model::read::ParquetSlice;
        match self {
            Self::Whole => None,
            Self::RowGroups(groups) => Some(ParquetSlice::RowGroups(groups.clone())),
            Self::Rows(rows) => Some(ParquetSlice::Rows(rows.clone())),
        }
    }

    /// The rows of a Parquet file whose row groups hold `row_group_rows` rows each, `None` for
    /// the whole file.
    pub fn rows(&self, row_group_rows: &[u64]) -> Option<std::ops::Range<u64>> {
        match self {
            Self::Whole => None,
            Self::RowGroups(groups) => {
                let offsets = berth_model::read::row_group_offsets(row_group_rows);
                let at = |group: usize| offsets[group.min(row_group_rows.len())];
                Some(at(groups.start)..at(groups.end))
            }
            Self::Rows(rows) => Some(rows.clone()),
        }
    }
}

impl std::fmt::Display for JobPart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Whole => f.write_str("whole file"),
            Self::RowGroups(r) => write!(f, "row groups {}..{}", r.start, r.end),
            Self::Rows(r) => write!(f, "rows {}..{}", r.start, r.end),
        }
    }
}

/// What loading a job did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JobMetrics {
    /// Rows inserted.
    pub rows: u64,
    /// Bytes of the job file.
    pub bytes: u64,
    /// Where the time went.
    pub timings: JobTimings,
    /// The primary keys it staged, where the destination observed them as it sent the rows
    /// (see [`berth_plan::keys`]).
    pub keys: Option<berth_plan::keys::KeyRun>,
}

/// Where a job's time went, as far as the destination can tell (zero where it cannot). The three
/// overlap where reading runs ahead of sending.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JobTimings {
    /// Reading and decoding the job file into Arrow batches.
    pub decode: std::time::Duration,
    /// Turning batches into what the destination takes (PostgreSQL's binary COPY rows).
    pub encode: std::time::Duration,
    /// The destination taking the data and committing it (for DuckDB reading Parquet itself,
    /// its decoding too).
    pub transfer: std::time::Duration,
}

impl std::ops::AddAssign for JobTimings {
    fn add_assign(&mut self, other: Self) {
        self.decode += other.decode;
        self.encode += other.encode;
        self.transfer += other.transfer;
    }
}

/// A place berth loads into.
///
/// Contract:
/// - [`Destination::load_job`] is atomic: after it returns `Ok` every row of the job part is in
///   the table **and** its journal row ([`journal_insert_for`]) is in `_berth_journal`, committed
///   together; after it returns `Err` neither is. Columns are matched by name and values are cast
///   to the table's column types; the table already has every column of the file (the loader
///   migrates first). A destination without transactions must make the journal row the last
///   thing it writes.
/// - [`Destination::execute`] with `transactional = true` runs all statements or none, where
///   [`Capabilities::supports_transactions`] says it can.
/// - Errors say what to do about them through [`Error::kind`]; an implementation decides the kind
///   where it first sees the driver's error.
/// - Nothing an implementation prints, logs or returns contains credentials, including `Debug`.
/// - Implementations are shared across tasks (`Arc<dyn Destination>`) and must allow concurrent
///   calls, each on its own connection or session where the database needs one.
#[async_trait]
pub trait Destination: Send + Sync + Debug {
    /// What this destination can do.
    fn capabilities(&self) -> &Capabilities;

    /// Where the data goes, for messages and summaries: no credentials.
    fn describe(&self) -> String;

    /// Caps an embedded engine's memory at `bytes` (a load's memory budget's share for it);
    /// returns what it may take now (0: nothing embedded, or the user's own limit).
    fn cap_engine_memory(&self, bytes: u64) -> Result<u64> {
        let _ = bytes;
        Ok(0)
    }

    /// Does the embedded engine read Parquet job files itself (DuckDB's `read_parquet`), inside
    /// its own memory rather than berth's?
    fn engine_reads_parquet(&self) -> bool {
        false
    }

    /// Runs statements in order; in one transaction when `transactional` and supported.
    async fn execute(&self, statements: Vec<SqlStatement>, transactional: bool) -> Result<()>;

    /// Runs a query and returns all its rows. For small results (catalog lookups, bookkeeping).
    async fn query(&self, statement: Statement) -> Result<Vec<RecordBatch>>;

    /// Loads one job part into `job.dataset`.`job.table` and journals it, atomically (see the
    /// trait docs).
    async fn load_job(&self, job: LoadJob<'_>) -> Result<JobMetrics>;

    /// Keeps other berth processes from loading `package` into `dataset` until the returned
    /// lock is released, waiting while another one holds it (the loader then finds the package
    /// loaded). `None` where the destination needs no lock: one writer at a time anyway (DuckDB's
    /// file lock), or none to be had.
    async fn lock_load(&self, package: &LoadPackage, dataset: &str) -> Result<Option<LoadLock>> {
        let _ = (package, dataset);
        Ok(None)
    }

    /// This destination as dlt adjusts it for a package whose naming convention keeps case
    /// (`sql_cs_v1`, `duck_case`, `direct`; dlt's `adjust_capabilities`): where identifiers are
    /// case-sensitive but folded by default (Snowflake's upper case), a copy that keeps names as
    /// the package has them. `None` (the default): nothing changes.
    fn for_case_sensitive_names(&self) -> Option<std::sync::Arc<dyn Destination>> {
        None
    }

    /// Removes the rows of every committed part of a job that failed terminally from the table
    /// they went into, together with the parts' journal rows, in one transaction, so the job
    /// leaves none of its rows (its parts commit one by one, see
    /// [`Capabilities::row_group_parts`]). Returns the rows removed; fails, removing nothing,
    /// when the parts' rows cannot be told apart exactly. Destinations that load a job in one
    /// transaction have nothing to remove (the default).
    async fn discard_job(&self, job: DiscardJob<'_>) -> Result<u64> {
        let _ = job;
        Ok(0)
    }

    /// Statements that open every transaction writing for the load of `load_id` into `dataset`
    /// (and into its final `tables`), before anything else in it. Where a transaction can
    /// outlive its client — PostgreSQL runs a killed client's last statement to its end, COMMIT
    /// included — they let the next load of the package ([`Destination::lock_load`]) or of the
    /// tables ([`Destination::lock_tables`]) wait for such a transaction before it reads what is
    /// committed. Default: none.
    fn load_fence(&self, dataset: &str, load_id: &str, tables: &[String]) -> Vec<SqlStatement> {
        let _ = (dataset, load_id, tables);
        Vec::new()
    }

    /// Keeps other berth processes from writing `tables` of `dataset` in a way that could
    /// interleave with this load, until the returned lock is released: a [`TableLock`] that is
    /// `exclusive` waits for and excludes every other load of that table, a shared one only the
    /// exclusive ones. The loader takes them for a whole package (after planning, before
    /// anything is written) so concurrent loads give the result of some serial order. Taken in a
    /// fixed order, all at once, so two loads never wait for each other. `None` where the
    /// destination has one writer at a time anyway (DuckDB's file lock).
    async fn lock_tables(&self, dataset: &str, tables: &[TableLock]) -> Result<Option<LoadLock>> {
        let _ = (dataset, tables);
        Ok(None)
    }
}

/// The committed parts of a failed job to remove (see [`Destination::discard_job`]).
#[derive(Debug, Clone, Copy)]
pub struct DiscardJob<'a> {
    /// The dataset the job loaded into (final or staging).
    pub dataset: &'a str,
    /// The table the job loaded into.
    pub table: &'a str,
    /// The final dataset, whose journal records the parts.
    pub journal_dataset: &'a str,
    /// The package's load id.
    pub load_id: &'a str,
    /// The job's id (its file name without the retry count).
    pub job_id: &'a str,
    /// The job as shown in messages.
    pub display: &'a str,
}

/// A table a load writes (see [`Destination::lock_tables`]).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct TableLock {
    /// The table, in the final dataset.
    pub table: String,
    /// Whether the load's result depends on no other load writing the table meanwhile (it is
    /// emptied, replaced or merged); appends commute with each other and share the table.
    pub exclusive: bool,
}

impl TableLock {
    /// One lock per table, exclusive where any request for it is, sorted by table name.
    pub fn merged(requests: impl IntoIterator<Item = TableLock>) -> Vec<TableLock> {
        let mut merged = std::collections::BTreeMap::<String, bool>::new();
        for request in requests {
            *merged.entry(request.table).or_default() |= request.exclusive;
        }
        merged
            .into_iter()
            .map(|(table, exclusive)| TableLock { table, exclusive })
            .collect()
    }
}

/// A destination's lock on one load (see [`Destination::lock_load`]). [`LoadLock::release`] it
/// when done; dropping it releases what a drop can (a session lock with its connection), and a
/// lease in a bucket then expires by itself.
pub struct LoadLock {
    held: Box<dyn Unlock>,
}

#[async_trait]
trait Unlock: Send + Sync {
    async fn unlock(self: Box<Self>);
}

struct Guard<T>(T);

#[async_trait]
impl<T: Send + Sync> Unlock for Guard<T> {
    async fn unlock(self: Box<Self>) {}
}

#[async_trait]
impl Unlock for Vec<berth_model::lease::Lease> {
    async fn unlock(self: Box<Self>) {
        for lease in *self {
            lease.release().await;
        }
    }
}

#[async_trait]
impl Unlock for berth_model::lease::Lease {
    async fn unlock(self: Box<Self>) {
        self.release().await;
    }
}

impl LoadLock {
    /// A lock held for as long as `guard` lives (a connection holding a session lock, ...).
    pub fn new(guard: impl Send + Sync + 'static) -> Self {
        Self {
            held: Box::new(Guard(guard)),
        }
    }

    /// A lease on an object in a bucket (see [`berth_model::lease`]), deleted on release.
    pub fn lease(lease: berth_model::lease::Lease) -> Self {
        Self { held: Box::new(lease) }
    }

    /// Leases on objects in a bucket, deleted on release.
    pub fn leases(leases: Vec<berth_model::lease::Lease>) -> Self {
        Self { held: Box::new(leases) }
    }

    /// Lets the next process in.
    pub async fn release(self) {
        self.held.unlock().await;
    }
}

impl Debug for LoadLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LoadLock")
    }
}
