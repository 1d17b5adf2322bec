//! # berth-warehouse
//!
//! Warehouses whose load jobs never move bytes through berth: Snowflake, BigQuery, Redshift and
//! Databricks read each staged Parquet file from the bucket themselves. A job is
//!
//! 1. **staged**: a package already in a bucket the warehouse reads is used where it is; any
//!    other package is uploaded first (multipart, the Parquet file as is) to the staging bucket,
//!    under a name unique to the load: `<staging>/<dataset>/<table>/<load id>.<job file>`
//!    ([`stage`]);
//! 2. **checked**: its Parquet footer is read against the table (a clear error names the file and
//!    column before the warehouse is asked anything);
//! 3. **loaded** by the warehouse's own bulk command ([`copy`]): Snowflake `COPY INTO … FROM
//!    's3://…'` (storage integration, named stage or forwarded keys), Redshift `COPY … PARQUET`
//!    (IAM role or keys), Databricks `COPY INTO` (the catalog's external location or temporary
//!    credentials), a BigQuery load job from `gs://`. Its journal row commits with it where the
//!    warehouse has transactions (Snowflake, Redshift); Databricks' `COPY INTO` and BigQuery's
//!    load job (whose job id is derived from the load and file) are idempotent by themselves, and
//!    their journal row is written right after.
//!
//! Merge, replace, migration and bookkeeping are the planning crate's statements printed in the
//! warehouse's dialect ([`berth_plan::dialects`]), sent by the warehouse's client ([`api`]): the
//! Snowflake SQL API, BigQuery's REST API, the Databricks SQL Statement Execution API, and
//! PostgreSQL's wire protocol for Redshift.
//!
//! None of these has been run against a live warehouse from berth's CI (nothing there can reach
//! one); the statement sequences are pinned by snapshot tests and parsed back by sqlparser, and
//! the clients are tested against scripted servers that check every request.

pub mod api;
pub mod copy;
mod destination;
pub mod stage;

use std::sync::Arc;

use berth_destination::Capabilities;
use berth_model::store::StoreKind;
use berth_model::{FileFormat, MergeStrategy, ReplaceStrategy};
use berth_plan::SqlDialect;

pub use destination::{JobPlanner, PlannedJob, WarehouseDestination, WarehouseOptions};
pub use stage::{StageAccess, Staging};

/// The warehouses of this crate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Warehouse {
    /// Snowflake (SQL API v2).
    Snowflake,
    /// Google BigQuery (REST API v2).
    BigQuery,
    /// Amazon Redshift (PostgreSQL wire protocol).
    Redshift,
    /// Databricks SQL warehouses (SQL Statement Execution API 2.0), Delta tables.
    Databricks,
}

impl Warehouse {
    /// All of them.
    pub const ALL: [Self; 4] = [Self::Snowflake, Self::BigQuery, Self::Redshift, Self::Databricks];

    /// The warehouse of a destination URL scheme or dialect name.
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name.to_ascii_lowercase().as_str() {
            "snowflake" => Self::Snowflake,
            "bigquery" => Self::BigQuery,
            "redshift" => Self::Redshift,
            "databricks" => Self::Databricks,
            _ => return None,
        })
    }

    /// Its name (and URL scheme).
    pub fn name(self) -> &'static str {
        match self {
            Self::Snowflake => "snowflake",
            Self::BigQuery => "bigquery",
            Self::Redshift => "redshift",
            Self::Databricks => "databricks",
        }
    }

    /// Its SQL dialect.
    pub fn dialect(self) -> SqlDialect {
        match self {
            Self::Snowflake => berth_plan::dialects::snowflake(),
            Self::BigQuery => berth_plan::dialects::bigquery(),
            Self::Redshift => berth_plan::dialects::redshift(),
            Self::Databricks => berth_plan::dialects::databricks(),
        }
    }

    /// The bucket kinds it can read staged files from.
    pub fn reads(self, kind: StoreKind) -> bool {
        match self {
            Self::Snowflake | Self::Databricks => matches!(kind, StoreKind::S3 | StoreKind::Gcs | StoreKind::Azure),
            Self::BigQuery => kind == StoreKind::Gcs,
            Self::Redshift => kind == StoreKind::S3,
        }
    }

    /// The Parquet file size the warehouse loads best (dlt's `recommended_file_size`, reference
    /// §5, and each vendor's guidance), for normalizers and `berth plan`'s notes.
    pub fn recommended_file_size(self) -> u64 {
        const MIB: u64 = 1024 * 1024;
        match self {
            // dlt's recommended_file_size for BigQuery: 1 GiB.
            Self::BigQuery => 1024 * MIB,
            // Snowflake: 100-250 MB compressed per file; Redshift: 1 MB-1 GB, ideally 1-125 MB
            // with as many files as slices; Databricks: around 128 MB-1 GB.
            Self::Snowflake => 250 * MIB,
            Self::Redshift => 125 * MIB,
            Self::Databricks => 512 * MIB,
        }
    }

    /// What it can do, as dlt declares it (reference §5): Parquet files are staged as they are,
    /// other formats berth converts to Parquet first; no row-group parts (the warehouse reads
    /// whole files); dlt's merge and replace strategies.
    pub fn capabilities(self) -> Capabilities {
        use MergeStrategy as M;
        use ReplaceStrategy as R;
        // The first strategy is the default: atomic replace wherever the warehouse allows it, so
        // readers never see an empty or half-loaded table. Snowflake clones the staging table
        // into place (CREATE OR REPLACE … CLONE … COPY GRANTS), Databricks INSERT OVERWRITEs,
        // BigQuery and Redshift empty and insert in the follow-up's transaction.
        let atomic_swap = vec![R::StagingOptimized, R::InsertFromStaging, R::TruncateAndInsert];
        let atomic_copy = vec![R::InsertFromStaging, R::StagingOptimized, R::TruncateAndInsert];
        let (replace_strategies, merge_strategies, ddl_tx, tx) = match self {
            Self::Snowflake => (
                atomic_swap.clone(),
                vec![M::DeleteInsert, M::Upsert, M::Scd2, M::InsertOnly, M::Cdc],
                true,
                true,
            ),
            Self::BigQuery => (
                atomic_copy,
                vec![M::DeleteInsert, M::Upsert, M::Scd2, M::InsertOnly, M::Cdc],
                false,
                true,
            ),
            // dlt offers delete-insert and scd2 only; berth lowers upsert and insert-only to a
            // keyed DELETE and an INSERT in one transaction (Redshift has no MERGE berth uses).
            Self::Redshift => (
                vec![R::InsertFromStaging, R::TruncateAndInsert],
                vec![M::DeleteInsert, M::Upsert, M::Scd2, M::InsertOnly, M::Cdc],
                true,
                true,
            ),
            // Delta tables: no multi-statement transactions.
            Self::Databricks => (
                atomic_swap,
                vec![M::DeleteInsert, M::Upsert, M::Scd2, M::InsertOnly, M::Cdc],
                false,
                false,
            ),
        };
        Capabilities {
            dialect: self.dialect(),
            loader_formats: FileFormat::READABLE.to_vec(),
            replace_strategies,
            merge_strategies,
            supports_ddl_transactions: ddl_tx,
            supports_transactions: tx,
            max_parallel_jobs: None,
            row_group_parts: false,
        }
    }
}

impl std::fmt::Display for Warehouse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Opens a warehouse destination from its URL (see [`WarehouseDestination::from_url`]).
pub fn open(url: &str, options: WarehouseOptions) -> berth_destination::Result<Arc<WarehouseDestination>> {
    Ok(Arc::new(WarehouseDestination::from_url(url, options)?))
}
