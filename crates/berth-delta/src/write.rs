//! Writing rows into a Delta table and committing them: data files first (invisible until
//! committed), then one commit that carries the files' `add` and `remove` actions together with
//! the application transaction (`txn`) that journals what it was. A commit either lands whole or
//! not at all; a crash before it leaves only unreferenced files (removed by `VACUUM`).

use std::num::NonZeroU64;
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use berth_destination::Result;
use deltalake_core::DeltaTable;
use deltalake_core::kernel::transaction::{CommitBuilder, CommitProperties, TableReference};
use deltalake_core::kernel::{Action, Add, Remove, Transaction};
use deltalake_core::operations::write::writer::{DeltaWriter, WriterConfig};
use deltalake_core::protocol::{DeltaOperation, SaveMode};
use deltalake_core::table::config::TablePropertiesExt as _;
use futures::{Stream, StreamExt};

use crate::lake::delta_error;

/// How a table is written.
#[derive(Debug, Clone, Copy)]
pub struct WriteSettings {
    /// Data files are cut at about this size (Parquet bytes).
    pub target_file_size: u64,
}

impl Default for WriteSettings {
    fn default() -> Self {
        Self {
            target_file_size: 128 << 20,
        }
    }
}

/// What a commit of berth's is, in the table's history.
#[derive(Debug, Clone)]
pub struct Commit {
    /// The application transaction it journals: `berth:<load id>:<what>`.
    pub app_id: String,
    /// Its version (the rows a job loaded; 0 for a follow-up step).
    pub version: i64,
    /// The operation Delta's history shows.
    pub operation: DeltaOperation,
}

/// The app id berth's commits for `load_id` carry, for `what` (`job:<job id>`, `followup:…`).
pub fn app_id(load_id: &str, what: &str) -> String {
    format!("berth:{load_id}:{what}")
}

/// An append, as Delta's history names it.
pub fn append_operation(table: &DeltaTable) -> DeltaOperation {
    DeltaOperation::Write {
        mode: SaveMode::Append,
        partition_by: partition_columns(table),
        predicate: None,
    }
}

/// The table's partition columns, if any.
pub fn partition_columns(table: &DeltaTable) -> Option<Vec<String>> {
    let columns = table.snapshot().ok()?.metadata().partition_columns();
    (!columns.is_empty()).then(|| columns.to_vec())
}

/// The table's columns as Arrow sees them (partition columns included).
pub fn arrow_schema(table: &DeltaTable, what: &str) -> Result<SchemaRef> {
    let state = state(table, what)?;
    Ok(state.snapshot().arrow_schema())
}

/// New data files of a table, not committed yet.
#[derive(Debug)]
pub struct Written {
    /// Their `add` actions.
    pub adds: Vec<Add>,
    /// Rows written.
    pub rows: u64,
    /// Time spent waiting for batches (reading and decoding the source).
    pub decode: std::time::Duration,
    /// Time spent in the Parquet writer (encoding, and uploads it waits for).
    pub encode: std::time::Duration,
    /// `stop` said to stop: the files were abandoned (uploads aborted), `adds` is empty.
    pub stopped: bool,
}

/// Writes `batches` as new data files of `table` (matched to its columns by name), cut at the
/// target size and by partition. Nothing is visible until the actions are committed. `stop` is
/// asked between batches: when it says so, the files are abandoned.
pub async fn write_files<S>(
    table: &DeltaTable,
    what: &str,
    settings: WriteSettings,
    mut batches: S,
    stop: &(dyn Fn() -> bool + Send + Sync),
) -> Result<Written>
where
    S: Stream<Item = Result<RecordBatch>> + Unpin,
{
    let state = state(table, what)?;
    let schema = state.snapshot().arrow_schema();
    let config = WriterConfig::new(
        std::sync::Arc::clone(&schema),
        state.metadata().partition_columns().to_vec(),
        None,
        NonZeroU64::new(settings.target_file_size),
        None,
        state.table_config().num_indexed_cols(),
        state
            .table_config()
            .data_skipping_stats_columns
            .as_ref()
            .map(|columns| columns.iter().map(ToString::to_string).collect()),
    );
    let mut writer = DeltaWriter::new(table.object_store(), config);
    let (mut rows, mut decode, mut encode) = (0u64, Duration::ZERO, Duration::ZERO);
    loop {
        if stop() {
            let _ = writer.abort().await;
            return Ok(Written {
                adds: Vec::new(),
                rows,
                decode,
                encode,
                stopped: true,
            });
        }
        let waiting = Instant::now();
        let Some(batch) = batches.next().await else {
            decode += waiting.elapsed();
            break;
        };
        let batch = crate::types::to_delta(&batch?, &schema)?;
        let writing = Instant::now();
        decode += writing - waiting;
        rows += batch.num_rows() as u64;
        if let Err(e) = writer.write(&batch).await {
            let _ = writer.abort().await;
            return Err(delta_error(table.table_url().as_str(), what, e));
        }
        encode += writing.elapsed();
    }
    let closing = Instant::now();
    let adds = writer
        .close()
        .await
        .map_err(|e| delta_error(table.table_url().as_str(), what, e))?;
    encode += closing.elapsed();
    Ok(Written {
        adds,
        rows,
        decode,
        encode,
        stopped: false,
    })
}

/// Commits `actions` to `table` with `commit`'s application transaction; another writer's
/// commit in between is reconciled by delta-rs's conflict checker (appends commute; a conflict
/// is a transient error, and the caller computes its step again).
pub async fn commit(table: &mut DeltaTable, what: &str, actions: Vec<Action>, commit: Commit) -> Result<()> {
    let lake = table.table_url().to_string();
    let properties = CommitProperties::default()
        .with_application_transaction(Transaction::new(commit.app_id, commit.version))
        .with_metadata([(
            "engineInfo".to_string(),
            serde_json::json!(format!("berth {}", env!("CARGO_PKG_VERSION"))),
        )]);
    let snapshot = table.snapshot().map_err(|e| delta_error(&lake, what, e))?;
    let reference: &dyn TableReference = snapshot;
    CommitBuilder::from(properties)
        .with_actions(actions)
        .build(Some(reference), table.log_store(), commit.operation)
        .await
        .map_err(|e| delta_error(&lake, what, e))?;
    table.update_state().await.map_err(|e| delta_error(&lake, what, e))
}

/// The table's snapshot, its error naming `what`.
fn state<'t>(table: &'t DeltaTable, what: &str) -> Result<&'t deltalake_core::table::state::DeltaTableState> {
    table
        .snapshot()
        .map_err(|e| delta_error(table.table_url().as_str(), what, e))
}

/// The `remove` actions of every file of the table (an overwrite or a truncation).
pub fn remove_all(table: &DeltaTable, what: &str) -> Result<Vec<Action>> {
    let state = state(table, what)?;
    Ok(state
        .log_data()
        .iter()
        .map(|file| Action::Remove(file.remove_action(true)))
        .collect())
}

/// The `remove` actions of the files at `paths` (as the table's log names them).
pub fn remove_files(table: &DeltaTable, what: &str, paths: &std::collections::HashSet<String>) -> Result<Vec<Remove>> {
    let state = state(table, what)?;
    Ok(state
        .log_data()
        .iter()
        .filter(|file| paths.contains(file.path().as_ref()))
        .map(|file| file.remove_action(true))
        .collect())
}

/// Has `table` a commit with application transaction `app_id`? (Its version, if so.)
pub async fn committed(table: &DeltaTable, what: &str, app_id: &str) -> Result<Option<i64>> {
    let state = state(table, what)?;
    state
        .transaction_version(table.log_store().as_ref(), app_id)
        .await
        .map_err(|e| delta_error(table.table_url().as_str(), what, e))
}
