//! Rows as newline-delimited JSON into a file or standard output, for piping (`ndjson:-`,
//! `ndjson:<file>`). Each line is one row, with the table's name under `_table` first.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use arrow::array::{ArrayRef, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use async_trait::async_trait;

use crate::{Sink, SinkBatch, SinkError};

/// Where lines go.
enum Output {
    Stdout,
    File { path: PathBuf, file: std::fs::File },
}

/// Writes rows as NDJSON. A batch counts as acknowledged once its lines are written and (for a
/// file) synced to disk; a rerun after a crash appends from the first unacknowledged batch.
pub struct NdjsonSink {
    output: Mutex<Output>,
}

impl std::fmt::Debug for NdjsonSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NdjsonSink").field("to", &self.describe()).finish()
    }
}

impl NdjsonSink {
    /// Standard output.
    pub fn stdout() -> Self {
        Self {
            output: Mutex::new(Output::Stdout),
        }
    }

    /// Appends to `path` (created if missing).
    pub fn file(path: impl AsRef<Path>) -> std::io::Result<Self> {
        let path = path.as_ref().to_path_buf();
        let file = std::fs::OpenOptions::new().create(true).append(true).open(&path)?;
        Ok(Self {
            output: Mutex::new(Output::File { path, file }),
        })
    }
}

/// `batch`'s rows as NDJSON lines, `_table` first.
pub(crate) fn lines(table: &str, rows: &RecordBatch) -> Result<Vec<u8>, SinkError> {
    let mut fields = vec![Arc::new(Field::new("_table", DataType::Utf8, false))];
    fields.extend(rows.schema().fields().iter().cloned());
    let mut columns: Vec<ArrayRef> = vec![Arc::new(StringArray::from(vec![table; rows.num_rows()]))];
    columns.extend(rows.columns().iter().cloned());
    let labelled = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
        .map_err(|e| SinkError::terminal(format!("table {table}: {e}")))?;
    json_lines(&labelled).map_err(|e| SinkError::terminal(format!("table {table}: {e}")))
}

/// Rows as NDJSON lines (NULLs kept as `null`).
pub(crate) fn json_lines(rows: &RecordBatch) -> Result<Vec<u8>, arrow::error::ArrowError> {
    let mut writer = arrow::json::WriterBuilder::new()
        .with_explicit_nulls(true)
        .build::<_, arrow::json::writer::LineDelimited>(Vec::new());
    writer.write(rows)?;
    writer.finish()?;
    Ok(writer.into_inner())
}

#[async_trait]
impl Sink for NdjsonSink {
    async fn send(&self, batch: SinkBatch) -> Result<(), SinkError> {
        let bytes = lines(&batch.table.name, &batch.rows)?;
        let mut output = self
            .output
            .lock()
            .map_err(|_| SinkError::terminal("the output was poisoned by a panic"))?;
        match &mut *output {
            Output::Stdout => {
                let mut stdout = std::io::stdout().lock();
                stdout
                    .write_all(&bytes)
                    .and_then(|()| stdout.flush())
                    .map_err(|e| SinkError::terminal(format!("standard output: {e}")))
            }
            Output::File { path, file } => file
                .write_all(&bytes)
                .and_then(|()| file.sync_data())
                .map_err(|e| SinkError::transient(format!("{}: {e}", path.display()))),
        }
    }

    fn describe(&self) -> String {
        match self.output.lock().as_deref() {
            Ok(Output::File { path, .. }) => format!("ndjson:{}", path.display()),
            _ => "ndjson:-".into(),
        }
    }
}
