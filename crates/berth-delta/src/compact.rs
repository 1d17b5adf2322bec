//! Compaction: many small data files of a table rewritten into few of about the target size, as
//! one commit (Delta's `OPTIMIZE`, run by delta-rs), on request only (`berth compact`).
//!
//! Every job of every package adds at least one data file, so a table fed by many small packages
//! collects many small files, which readers open one by one. Compacting changes no row: the commit
//! removes the small files and adds the merged ones with `dataChange = false`, so readers of the
//! table's changes skip it, and the application transactions berth's journal reads stay in the
//! log. It takes the table's lock, as a merge does: a load that replaces or merges the table waits
//! for it, and appends that commit meanwhile are reconciled by Delta's conflict checker.

use std::num::NonZeroU64;

use berth_destination::{Error, Result};
use deltalake_core::kernel::transaction::CommitProperties;
use serde::Serialize;

use crate::executor::{DeltaExecutor, Held};
use crate::lake::delta_error;

/// What [`DeltaExecutor::compact`] compacts.
#[derive(Debug, Clone)]
pub struct CompactOptions {
    /// The dataset (the folder under the lake's root).
    pub dataset: String,
    /// Its tables to compact; empty: every Delta table of the dataset.
    pub tables: Vec<String>,
    /// Files are merged into files of about this many bytes; files at least this large are left
    /// as they are.
    pub target_file_size: u64,
}

/// What compacting one table did.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct TableCompaction {
    /// The table.
    pub table: String,
    /// Small files merged and removed.
    pub files_removed: u64,
    /// Their bytes.
    pub bytes_removed: u64,
    /// Files written in their place.
    pub files_added: u64,
    /// Their bytes.
    pub bytes_added: u64,
    /// Data files of the table after compacting.
    pub files_after: u64,
    /// The table's version after compacting (unchanged when there was nothing to merge).
    pub version: u64,
}

impl DeltaExecutor {
    /// Compacts the tables `options` names (one commit each; a table with nothing to merge is
    /// left alone). A table that is not in the lake is [`Error::Config`], naming it.
    pub async fn compact(&self, options: &CompactOptions) -> Result<Vec<TableCompaction>> {
        let target = NonZeroU64::new(options.target_file_size.max(1 << 20)).unwrap_or(NonZeroU64::MIN);
        let tables = if options.tables.is_empty() {
            self.lake().tables(&options.dataset).await?
        } else {
            options.tables.clone()
        };
        let mut done = Vec::with_capacity(tables.len());
        for table in tables {
            done.push(self.compact_table(&options.dataset, &table, target).await?);
        }
        Ok(done)
    }

    async fn compact_table(&self, dataset: &str, table: &str, target: NonZeroU64) -> Result<TableCompaction> {
        let what = format!("{dataset}.{table}");
        let lock_name = format!("{table}.json");
        let holder = format!("compacting {}/{dataset}/{table}", self.lake().display());
        let lock = self.lock(dataset, &["tables", &lock_name], holder).await?;
        let result = self.optimize(dataset, table, &what, target).await;
        Held::release_all(lock.into_iter().collect()).await;
        result
    }

    async fn optimize(&self, dataset: &str, table: &str, what: &str, target: NonZeroU64) -> Result<TableCompaction> {
        let lake = self.lake().display().to_string();
        let delta = self.lake().table(dataset, table).await?.ok_or_else(|| Error::Config {
            destination: format!("delta:{lake}"),
            reason: format!("there is no Delta table {what} to compact"),
        })?;
        let properties = CommitProperties::default().with_metadata([(
            "engineInfo".to_string(),
            serde_json::json!(format!("berth {}", env!("CARGO_PKG_VERSION"))),
        )]);
        let (delta, metrics) = delta
            .optimize()
            .with_target_size(target)
            .with_commit_properties(properties)
            .await
            .map_err(|e| delta_error(&lake, what, e))?;
        let snapshot = delta.snapshot().map_err(|e| delta_error(&lake, what, e))?;
        Ok(TableCompaction {
            table: table.to_string(),
            files_removed: metrics.num_files_removed,
            bytes_removed: u64::try_from(metrics.files_removed.total_size).unwrap_or_default(),
            files_added: metrics.num_files_added,
            bytes_added: u64::try_from(metrics.files_added.total_size).unwrap_or_default(),
            files_after: snapshot.log_data().iter().count() as u64,
            version: snapshot.version(),
        })
    }
}
