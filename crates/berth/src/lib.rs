//! # berth
//!
//! A loading engine for data pipelines: it takes dlt's normalized load packages and loads them
//! into a destination with each destination's native bulk path, writing the bookkeeping
//! (`_dlt_loads`, `_dlt_version`, `_dlt_pipeline_state`) that lets dlt keep working on the same
//! dataset.
//!
//! ```text
//!   load package (local disk / object store)
//!   schema.json + new_jobs/*.parquet|jsonl|csv|arrow|insert_values
//!            │
//!            ▼
//!   berth-model ── Schema, LoadPackage, job readers → Arrow RecordBatch streams
//!            │
//!            ▼
//!   berth-plan ─── PackagePlan: chains → final or staging dataset, truncations,
//!            │     follow-up statements (DataFusion plans → SQL via the unparser)
//!            ▼
//!   berth-destination ── Destination trait, Capabilities, migrate, _dlt_* bookkeeping, journal
//!            │
//!            ├── berth-duckdb (embedded default: read_parquet / Arrow C stream)
//!            ├── berth-postgres (binary COPY encoded from Arrow by target column type)
//!            │     └── berth-warehouse (Snowflake, BigQuery, Redshift, Databricks: COPY from buckets)
//!            ▼
//!   berth-loader ── locks, bounded parallel jobs, one retry policy, follow-ups, commit, dlt folders
//!            │
//!            ├── berth-sink (reverse ETL: batches to an API, progress in the package state)
//!            ▼
//!   berth (this facade: every crate, `open_destination`) ← berth-bench ← berth-cli
//!                                                         (`berth load`, `plan`, `bench`, `package show`)
//! ```
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let destination = berth::open_destination("duckdb:berth.duckdb")?;
//! let loader = berth::loader::Loader::new(destination);
//! let storage = berth::model::StorageConfig::load()?;
//! let packages = berth::loader::resolve_locations(&["pipeline/load/normalized".to_string()], &storage).await?;
//! let summary = loader.load_all(packages).await?;
//! assert!(summary.all_loaded());
//! # Ok(())
//! # }
//! ```

use std::sync::Arc;

pub mod dlt_config;

#[cfg(feature = "delta")]
pub use berth_delta as delta;
pub use berth_destination as destination;
#[cfg(feature = "duckdb")]
pub use berth_duckdb as duckdb;
pub use berth_loader as loader;
pub use berth_model as model;
pub use berth_plan as plan;
#[cfg(feature = "postgres")]
pub use berth_postgres as postgres;
#[cfg(feature = "sink")]
pub use berth_sink as sink;
#[cfg(feature = "warehouse")]
pub use berth_warehouse as warehouse;

use berth_destination::{Destination, Error, Result};

/// The destination used when none is given: an embedded DuckDB file in the current directory.
pub const DEFAULT_DESTINATION: &str = "duckdb:berth.duckdb";

/// What opening a destination may need besides its URL.
#[derive(Debug, Clone, Default)]
pub struct OpenOptions {
    /// The staging bucket warehouses load from (`s3://bucket/prefix`, …).
    pub staging: Option<String>,
    /// Options for buckets (berth.toml).
    pub storage: berth_model::StorageConfig,
    /// Variables a warehouse reads (`SNOWFLAKE_TOKEN`, …) set for this destination only, over the
    /// process environment (from dlt's configuration, see [`dlt_config`]).
    pub env: std::collections::BTreeMap<String, String>,
}

/// Opens a destination from its URL: `duckdb:<path>`, `duckdb:///<absolute path>`,
/// `duckdb::memory:`, `postgres://user:password@host:port/database`.
pub fn open_destination(url: &str) -> Result<Arc<dyn Destination>> {
    open_destination_with(url, &OpenOptions::default())
}

/// Opens a destination from its URL with `options`; besides [`open_destination`]'s URLs, the
/// warehouses (feature `warehouse`): `snowflake://…`, `bigquery://…`, `redshift://…`,
/// `databricks://…` (see [`berth_warehouse::WarehouseDestination::from_url`]).
pub fn open_destination_with(url: &str, options: &OpenOptions) -> Result<Arc<dyn Destination>> {
    let scheme = url.split(':').next().unwrap_or_default();
    #[cfg(feature = "warehouse")]
    if berth_warehouse::Warehouse::from_name(scheme).is_some() {
        let env = (!options.env.is_empty()).then(|| {
            let mut env: std::collections::BTreeMap<String, String> = std::env::vars().collect();
            env.extend(options.env.clone());
            env
        });
        let options = berth_warehouse::WarehouseOptions {
            staging: options.staging.clone(),
            storage: options.storage.clone(),
            env,
        };
        return Ok(berth_warehouse::open(url, options)?);
    }
    let _ = options;
    match scheme {
        #[cfg(feature = "duckdb")]
        "duckdb" => Ok(Arc::new(berth_duckdb::DuckDbDestination::from_url(url)?)),
        #[cfg(feature = "postgres")]
        "postgres" | "postgresql" => Ok(Arc::new(berth_postgres::PostgresDestination::from_url(url)?)),
        _ => Err(Error::Config {
            destination: redact(url),
            reason: "unknown destination; use duckdb:<file> (e.g. duckdb:berth.duckdb), postgres://user:password@host:port/database, a warehouse: snowflake://<account>/<database>, bigquery://<project>, redshift://user:password@host:5439/database, databricks://<host>/<warehouse id>, or a Delta lake: delta:<folder> or delta:s3://bucket/prefix".into(),
        }),
    }
}

/// The loader for a destination URL: every URL [`open_destination_with`] opens, and with feature
/// `delta` a lake, `delta:<folder>` or `delta:s3://bucket/prefix` (see [`berth_delta`]).
pub fn open_loader(url: &str, options: &OpenOptions) -> Result<berth_loader::Loader> {
    #[cfg(feature = "delta")]
    if berth_delta::is_delta_url(url) {
        let lake = berth_delta::DeltaExecutor::from_url(url, &options.storage)?;
        return Ok(berth_loader::Loader::with_executor(Arc::new(lake)));
    }
    Ok(berth_loader::Loader::new(open_destination_with(url, options)?))
}

/// The dialect and planning capabilities of a destination, from its URL or a dialect name
/// (`postgres`, `duckdb`, or one of [`berth_plan::dialects::NAMES`]), without connecting: what
/// `berth plan` prints SQL for.
pub fn planning_dialect(destination: &str) -> Result<(berth_plan::SqlDialect, berth_plan::PlanCapabilities)> {
    let scheme = destination.split(':').next().unwrap_or_default().to_ascii_lowercase();
    match scheme.as_str() {
        #[cfg(feature = "duckdb")]
        "duckdb" => {
            let caps = berth_duckdb::capabilities();
            return Ok((caps.dialect.clone(), caps.plan_capabilities()));
        }
        #[cfg(feature = "postgres")]
        "postgres" | "postgresql" => {
            let caps = berth_postgres::capabilities();
            return Ok((caps.dialect.clone(), caps.plan_capabilities()));
        }
        #[cfg(feature = "delta")]
        berth_delta::SCHEME => return Ok((berth_delta::delta_dialect(), berth_delta::delta_capabilities())),
        _ => {}
    }
    #[cfg(feature = "warehouse")]
    if let Some(warehouse) = berth_warehouse::Warehouse::from_name(&scheme) {
        let caps = warehouse.capabilities();
        return Ok((caps.dialect.clone(), caps.plan_capabilities()));
    }
    let dialect = berth_plan::dialects::by_name(&scheme).ok_or_else(|| Error::Config {
        destination: redact(destination),
        reason: format!(
            "unknown destination or dialect; use a destination URL (duckdb:<file>, postgres://…) or one of \
             postgres, duckdb, {}",
            berth_plan::dialects::NAMES.join(", ")
        ),
    })?;
    let caps = berth_plan::PlanCapabilities {
        replace_strategies: berth_plan::ALL_REPLACE_STRATEGIES.to_vec(),
        merge_strategies: berth_plan::PLANNED_MERGE_STRATEGIES.to_vec(),
    };
    Ok((dialect, caps))
}

/// How `berth plan` shows a warehouse's jobs (upload to `staging`, then the warehouse's own
/// bulk command), or `None` for destinations whose jobs stream through berth.
#[cfg(feature = "warehouse")]
pub fn job_steps(destination: &str, staging: Option<&str>) -> Result<Option<Arc<dyn berth_loader::explain::JobSteps>>> {
    let scheme = destination.split(':').next().unwrap_or_default();
    if berth_warehouse::Warehouse::from_name(scheme).is_none() {
        return Ok(None);
    }
    let planner = berth_warehouse::JobPlanner::new(destination, staging)?;
    Ok(Some(Arc::new(WarehouseSteps(planner))))
}

#[cfg(feature = "warehouse")]
#[derive(Debug)]
struct WarehouseSteps(berth_warehouse::JobPlanner);

#[cfg(feature = "warehouse")]
impl berth_loader::explain::JobSteps for WarehouseSteps {
    fn steps(&self, unit: &berth_loader::Unit<'_>) -> berth_loader::Result<Vec<berth_loader::explain::Step>> {
        use berth_loader::explain::Step;
        let (package, job, final_dataset) = (unit.package, &unit.job.job, unit.journal_dataset);
        let planned = self.0.plan_job(
            package,
            job,
            unit.table,
            &unit.job.dataset,
            final_dataset,
            unit.job.emptied,
        )?;
        let mut steps = Vec::new();
        steps.extend(planned.upload.map(Step::Note));
        match planned.command {
            Some(berth_warehouse::copy::LoadCommand::Sql(statement)) => steps.push(Step::Sql(statement)),
            Some(berth_warehouse::copy::LoadCommand::BigQueryJob(body)) => steps.push(Step::Note(format!(
                "BigQuery load job (POST /bigquery/v2/projects/{}/jobs): {body}",
                self.0.project
            ))),
            None => return Ok(steps),
        }
        let entry = berth_destination::JournalEntry {
            key: berth_destination::JournalKey::job(job),
            part: berth_destination::JobPart::Whole,
            rows: 0,
        };
        let dialect = self.0.warehouse.dialect();
        steps.push(Step::Sql(
            berth_destination::journal_insert(&dialect, final_dataset, &package.load_id, &entry).into(),
        ));
        Ok(steps)
    }
}

/// A URL (or libpq key/value string) with its password and secret parameters replaced by
/// `***`, for messages: [`berth_model::redact::redact_url`].
pub fn redact(url: &str) -> String {
    berth_model::redact::redact_url(url)
}

#[cfg(test)]
mod tests {
    #[test]
    fn redacts_passwords() {
        assert_eq!(
            super::redact("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(super::redact("duckdb:x.duckdb"), "duckdb:x.duckdb");
        assert!(!super::redact("postgres://u:se cret@h/db").contains("se cret"));
    }
}
