//! Python sink functions: a [`Sink`] that hands each batch to Python as a `pyarrow.RecordBatch`
//! through the Arrow C Data Interface (PyCapsules, no copy, no encoding), holding the GIL only
//! while the function runs.
//!
//! The Python side (`berth._sink._deliver`) wraps the capsules, the table and the batch's
//! identity into what the user's function takes; its exceptions come back here:
//! `berth.TransientError` is retried with backoff (its `retry_after` honoured), anything else is
//! terminal for the job.

use std::ffi::CStr;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{Array, StructArray};
use async_trait::async_trait;
use berth::model::Table;
use berth::sink::{Sink, SinkBatch, SinkError, SinkTable};
use pyo3::prelude::*;
use pyo3::types::PyCapsule;
use serde_json::{Map, Value, json};

/// A sink whose batches go to a Python callable `deliver(schema, array, table_name, table_json,
/// info)`.
pub(crate) struct PySink {
    name: String,
    deliver: Py<PyAny>,
    /// Each table's dlt dict as JSON, made once per job's table rather than per batch.
    tables: std::sync::Mutex<TableJson>,
}

/// By table name: the job's table last seen and its dlt dict as JSON.
type TableJson = std::collections::HashMap<String, (Arc<SinkTable>, Arc<str>)>;

impl std::fmt::Debug for PySink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PySink")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl PySink {
    pub(crate) fn new(name: String, deliver: Py<PyAny>) -> Self {
        Self {
            name,
            deliver,
            tables: Default::default(),
        }
    }

    /// `table`'s dlt dict as JSON (see [`table_json`]), cached while the job's table is the same.
    fn table_json(&self, table: &Arc<SinkTable>) -> Arc<str> {
        let mut tables = self.tables.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match tables.get(&table.name) {
            Some((known, json)) if Arc::ptr_eq(known, table) => Arc::clone(json),
            _ => {
                let json: Arc<str> = table_json(&table.dlt).to_string().into();
                tables.insert(table.name.clone(), (Arc::clone(table), Arc::clone(&json)));
                json
            }
        }
    }
}

#[async_trait]
impl Sink for PySink {
    async fn send(&self, batch: SinkBatch) -> Result<(), SinkError> {
        let deliver = Python::attach(|py| self.deliver.clone_ref(py));
        let table = self.table_json(&batch.table);
        let sent = tokio::task::spawn_blocking(move || Python::attach(|py| call(py, &deliver, &batch, &table))).await;
        sent.unwrap_or_else(|e| Err(SinkError::terminal(format!("the sink function's thread failed: {e}"))))
    }

    fn describe(&self) -> String {
        format!("python sink {}", self.name)
    }
}

/// One call of the Python side with one batch.
fn call(py: Python<'_>, deliver: &Py<PyAny>, batch: &SinkBatch, table: &str) -> Result<(), SinkError> {
    let data = StructArray::from(batch.rows.clone()).into_data();
    let (array, schema) =
        arrow::ffi::to_ffi(&data).map_err(|e| SinkError::terminal(format!("cannot hand the batch to Python: {e}")))?;
    let capsules = capsule(py, array, c"arrow_array").and_then(|a| Ok((capsule(py, schema, c"arrow_schema")?, a)));
    let (schema, array) = capsules.map_err(|e| SinkError::terminal(e.to_string()))?;
    let info = (
        batch.idempotency_key(),
        batch.load_id.to_string(),
        batch.job.clone(),
        batch.index,
        batch.first_row,
    );
    match deliver.call1(py, (schema, array, batch.table.name.as_str(), table, info)) {
        Ok(_) => Ok(()),
        Err(error) => Err(sink_error(py, &error)),
    }
}

/// `value` in a capsule named `name`, as the Arrow PyCapsule interface names them; dropping the
/// capsule drops the value, whose `release` is null once pyarrow took it over.
fn capsule<'py, T: Send + 'static>(py: Python<'py>, value: T, name: &'static CStr) -> PyResult<Bound<'py, PyCapsule>> {
    PyCapsule::new_with_value(py, value, name)
}

/// `berth.TransientError` → transient (with its `retry_after`); anything else → terminal.
fn sink_error(py: Python<'_>, error: &PyErr) -> SinkError {
    let value = error.value(py);
    let message = value
        .str()
        .map(|s| s.to_string())
        .unwrap_or_else(|_| "the sink function failed".into());
    let kind = value.get_type().name().map(|n| n.to_string()).unwrap_or_default();
    let transient = py
        .import("berth._errors")
        .and_then(|m| m.getattr("TransientError"))
        .is_ok_and(|class| error.is_instance(py, &class));
    if !transient {
        return SinkError::terminal(format!("{kind}: {message}"));
    }
    let wait = value
        .getattr("retry_after")
        .ok()
        .and_then(|w| w.extract::<Option<f64>>().ok().flatten())
        .and_then(|s| Duration::try_from_secs_f64(s).ok());
    let error = SinkError::transient(message);
    match wait {
        Some(wait) => error.with_retry_after(wait),
        None => error,
    }
}

/// A table as dlt's table dict: name, hints and columns (with their hints), as a sink function
/// decorated with `@dlt.destination` reads it.
fn table_json(table: &Table) -> Value {
    let mut columns = Map::new();
    for column in table.columns.values() {
        let mut c = Map::new();
        c.insert("name".into(), json!(column.name));
        if let Some(data_type) = column.data_type {
            c.insert("data_type".into(), json!(data_type.as_str()));
        }
        c.insert("nullable".into(), json!(column.nullable));
        for (hint, set) in [
            ("primary_key", column.primary_key),
            ("merge_key", column.merge_key),
            ("unique", column.unique),
            ("row_key", column.row_key),
            ("parent_key", column.parent_key),
            ("root_key", column.root_key),
            ("hard_delete", column.hard_delete),
            ("partition", column.partition),
            ("cluster", column.cluster),
            ("sort", column.sort),
        ] {
            if set {
                c.insert(hint.into(), json!(true));
            }
        }
        if let Some(p) = column.precision {
            c.insert("precision".into(), json!(p));
        }
        if let Some(s) = column.scale {
            c.insert("scale".into(), json!(s));
        }
        columns.insert(column.name.clone(), Value::Object(c));
    }
    let mut out = table.extra.clone();
    out.insert("name".into(), json!(table.name));
    out.insert("columns".into(), Value::Object(columns));
    for (key, value) in [
        (
            "write_disposition",
            table.write_disposition.map(|w| w.as_str().to_string()),
        ),
        ("parent", table.parent.clone()),
        ("resource", table.resource.clone()),
        ("file_format", table.file_format.clone()),
        ("description", table.description.clone()),
    ] {
        if let Some(value) = value {
            out.insert(key.into(), json!(value));
        }
    }
    Value::Object(out)
}

/// The sink's loader for `options`, reporting to `progress` and stopping at `cancel`.
pub(crate) fn loader(
    sink: PySink,
    options: berth::sink::SinkOptions,
    progress: Arc<dyn berth::loader::Progress>,
    cancel: berth::loader::CancellationToken,
) -> berth::loader::Loader {
    berth::sink::SinkLoader::new(Arc::new(sink))
        .with_options(options)
        .with_progress(progress)
        .with_cancel(cancel)
        .loader()
}
