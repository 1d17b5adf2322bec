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
//!   berth-destination ── Destination trait, Capabilities, migrate, _dlt_* bookkeeping
//!            │
//!            ├── berth-duckdb (embedded default: read_parquet / Arrow C stream)
//!            ├── berth-postgres (binary COPY encoded from Arrow by target column type)
//!            ▼
//!   berth-loader ── bounded parallel jobs, retries, follow-ups, commit, dlt folders
//!            │
//!            ▼
//!   berth-cli ──── `berth load`, `berth package show`
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

use berth_destination::{Destination, Error, Result};

/// The destination used when none is given: an embedded DuckDB file in the current directory.
pub const DEFAULT_DESTINATION: &str = "duckdb:berth.duckdb";

/// Opens a destination from its URL: `duckdb:<path>`, `duckdb:///<absolute path>`,
/// `duckdb::memory:`, `postgres://user:password@host:port/database`.
pub fn open_destination(url: &str) -> Result<Arc<dyn Destination>> {
    let scheme = url.split(':').next().unwrap_or_default();
    match scheme {
        #[cfg(feature = "duckdb")]
        "duckdb" => Ok(Arc::new(berth_duckdb::DuckDbDestination::from_url(url)?)),
        #[cfg(feature = "postgres")]
        "postgres" | "postgresql" => Ok(Arc::new(berth_postgres::PostgresDestination::from_url(url)?)),
        _ => Err(Error::Config {
            destination: redact(url),
            reason: "unknown destination; use duckdb:<file> (e.g. duckdb:berth.duckdb) or postgres://user:password@host:port/database".into(),
        }),
    }
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
        _ => {}
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

/// A URL with any password replaced by `***`, for messages.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        Ok(_) => url.to_string(),
        // Unparseable: keep only the scheme so nothing secret leaks.
        Err(_) => url
            .split_once("://")
            .map_or_else(|| url.to_string(), |(s, _)| format!("{s}://…")),
    }
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
