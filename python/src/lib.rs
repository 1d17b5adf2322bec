//! # berth's Python extension, `berth._berth`
//!
//! The Rust half of the `berth` Python package (`python/berth/` is the other): `load`, `plan`,
//! `package` and the command line, each the same code the `berth` binary runs
//! ([`berth_cli::LoadRequest`], [`berth_cli::plan_text`], [`berth_cli::package_document`],
//! [`berth_cli::run_cli`]). Results cross as JSON documents (summaries, never rows), which the
//! Python side turns into typed objects; errors become the exception classes of
//! `berth._errors`, chosen by what failed.
//!
//! The GIL is released while berth works. A load runs on its own runtime; the calling thread
//! wakes every 100 ms to let Python run its signal handlers, so Ctrl-C (`KeyboardInterrupt`)
//! stops the load as it stops the command line: no new jobs, running ones finish or roll back,
//! the package resumes on the next load; a second Ctrl-C stops at once (as safe as a crash).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use pyo3::prelude::*;
use pyo3::types::PyDict;

mod logging;
mod sink;

/// The exception `error` is, as an instance of its `berth._errors` class.
fn to_py_err(py: Python<'_>, error: &anyhow::Error) -> PyErr {
    let message = format!("{error:#}");
    let (class, transient) = classify(error);
    let raised = py
        .import("berth._errors")
        .and_then(|module| module.getattr(class))
        .and_then(|class| {
            let kwargs = PyDict::new(py);
            kwargs.set_item("transient", transient)?;
            class.call((message.clone(),), Some(&kwargs))
        });
    match raised {
        Ok(instance) => PyErr::from_value(instance),
        Err(e) => e,
    }
}

/// The `berth._errors` class for `error`, and whether trying again may help.
fn classify(error: &anyhow::Error) -> (&'static str, bool) {
    use berth::destination::{Error as DestinationError, ErrorKind};
    for cause in error.chain() {
        if let Some(e) = cause.downcast_ref::<berth::loader::Error>() {
            let transient = e.kind() == ErrorKind::Transient;
            return match e {
                berth::loader::Error::Package(_) | berth::loader::Error::Plan(_) => ("PackageError", transient),
                berth::loader::Error::Destination(d) => destination_class(d, transient),
                _ => ("BerthError", transient),
            };
        }
        if let Some(e) = cause.downcast_ref::<DestinationError>() {
            return destination_class(e, e.kind() == ErrorKind::Transient);
        }
        if cause.downcast_ref::<berth::model::Error>().is_some() {
            return ("PackageError", false);
        }
    }
    ("BerthError", false)
}

fn destination_class(error: &berth::destination::Error, transient: bool) -> (&'static str, bool) {
    use berth::destination::Error;
    match error {
        Error::Config { .. } | Error::DltSetting { .. } => ("ConfigError", false),
        Error::SchemaMismatch { .. } | Error::CannotWiden(_) => ("SchemaError", false),
        Error::Package(_) | Error::Plan(_) => ("PackageError", false),
        _ => ("DestinationError", transient),
    }
}

/// Storage options and `[load]` defaults: `config` if given, else `./berth.toml` when present.
fn storage(config: Option<PathBuf>) -> anyhow::Result<berth::model::StorageConfig> {
    Ok(match config {
        Some(path) => berth::model::StorageConfig::load_file(&path, true)?,
        None => berth::model::StorageConfig::load()?,
    })
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().enable_all().build()?)
}

/// Runs `future` on `runtime` with the GIL released, waking every 100 ms for Python's signal
/// handlers. The first `KeyboardInterrupt` (or other exception from a handler) calls `stop` and
/// keeps waiting for the future to wind down, then is raised; a second one abandons it at once.
/// The runtime is shut down with the GIL released too: its threads may be waiting for the GIL (a
/// log line on its way to Python's `logging`) and shutting down waits for them.
fn run_interruptible<T: Send + 'static>(
    py: Python<'_>,
    runtime: tokio::runtime::Runtime,
    future: impl Future<Output = T> + Send + 'static,
    stop: impl Fn(),
) -> PyResult<T> {
    let mut handle = runtime.spawn(future);
    let mut interrupted: Option<PyErr> = None;
    let outcome = loop {
        let waited = py
            .detach(|| runtime.block_on(async { tokio::time::timeout(Duration::from_millis(100), &mut handle).await }));
        match waited {
            Ok(Ok(value)) => {
                break match interrupted {
                    Some(e) => Err(e),
                    None => Ok(value),
                };
            }
            Ok(Err(join)) => {
                break Err(pyo3::exceptions::PyRuntimeError::new_err(format!(
                    "berth stopped unexpectedly (a bug in berth, please report it): {join}"
                )));
            }
            Err(_) => {
                if let Err(signal) = py.check_signals() {
                    if interrupted.is_some() {
                        runtime.shutdown_background();
                        return Err(signal);
                    }
                    stop();
                    interrupted = Some(signal);
                }
            }
        }
    };
    py.detach(move || drop(runtime));
    outcome
}

fn parse_replace_strategy(value: Option<&str>) -> PyResult<Option<berth::model::ReplaceStrategy>> {
    value
        .map(|v| {
            v.parse()
                .map_err(|e: String| pyo3::exceptions::PyValueError::new_err(format!("replace_strategy: {e}")))
        })
        .transpose()
}

/// Loads `packages` (see `berth.load`); returns the load summary as JSON.
#[pyfunction]
#[pyo3(signature = (packages, destination=None, *, dataset=None, replace_strategy=None, parallel=None,
    max_attempts=None, allow_failed_jobs=false, widen_types=None, staging=None, pipeline_name=None,
    config=None, batch_size=None, progress=None, caller_owns_folders=false, memory_budget=None, dlt_settings=None))]
#[expect(clippy::too_many_arguments, reason = "the keyword arguments of berth.load")]
fn load(
    py: Python<'_>,
    packages: Vec<String>,
    destination: Option<String>,
    dataset: Option<String>,
    replace_strategy: Option<String>,
    parallel: Option<usize>,
    max_attempts: Option<u32>,
    allow_failed_jobs: bool,
    widen_types: Option<bool>,
    staging: Option<String>,
    pipeline_name: Option<String>,
    config: Option<PathBuf>,
    batch_size: Option<usize>,
    progress: Option<bool>,
    caller_owns_folders: bool,
    memory_budget: Option<String>,
    dlt_settings: Option<std::collections::BTreeMap<String, String>>,
) -> PyResult<String> {
    logging::install();
    let memory_budget = memory_budget
        .map(|text| berth::model::size::parse_size(&text))
        .transpose()
        .map_err(pyo3::exceptions::PyValueError::new_err)?;
    let storage = storage(config).map_err(|e| to_py_err(py, &e))?;
    let mut request = berth_cli::LoadRequest::new(packages, storage);
    request.destination = destination;
    request.pipeline_name = pipeline_name;
    request.staging = staging;
    request.dlt_settings = berth::dlt_config::DltSettings(dlt_settings.unwrap_or_default());
    let options = &mut request.options;
    options.dataset = dataset;
    options.replace_strategy = parse_replace_strategy(replace_strategy.as_deref())?;
    options.parallel_jobs = parallel.unwrap_or(options.parallel_jobs).max(1);
    options.max_attempts = max_attempts.unwrap_or(options.max_attempts).max(1);
    options.allow_failed_jobs = allow_failed_jobs;
    options.widen_types = widen_types.unwrap_or(options.widen_types);
    options.caller_owns_folders = caller_owns_folders;
    if memory_budget.is_some() {
        options.memory_budget = memory_budget;
    }
    if let Some(rows) = batch_size {
        options.read_options.batch_size = rows.max(1);
    }
    run_load(py, progress, |reporter, cancel| async move {
        request.run(reporter, cancel).await.map(|(summary, _found)| summary)
    })
}

/// Runs the load `start` makes from the progress reporter and the cancellation token (progress
/// bars when `progress`, default: on a terminal; Ctrl-C as in [`run_interruptible`]); returns
/// its summary as JSON.
fn run_load<F>(
    py: Python<'_>,
    progress: Option<bool>,
    start: impl FnOnce(Arc<dyn berth::loader::Progress>, berth::loader::CancellationToken) -> F,
) -> PyResult<String>
where
    F: Future<Output = anyhow::Result<berth::loader::LoadSummary>> + Send + 'static,
{
    let show = progress.unwrap_or_else(|| std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let bars = Arc::new(berth_cli::ProgressBars::new(show));
    let cancel = berth::loader::CancellationToken::new();
    let runtime = runtime().map_err(|e| to_py_err(py, &e))?;
    let stopper = cancel.clone();
    let load = start(Arc::clone(&bars) as Arc<dyn berth::loader::Progress>, cancel);
    let loaded = run_interruptible(py, runtime, load, move || {
        tracing::warn!(
            "interrupted: finishing the jobs that are loading and starting no new ones; the package resumes on the next load"
        );
        stopper.cancel();
    });
    bars.finish();
    let summary = loaded?.map_err(|e| to_py_err(py, &e))?;
    serde_json::to_string(&summary).map_err(|e| pyo3::exceptions::PyRuntimeError::new_err(e.to_string()))
}

/// Sends `packages` through a Python sink function (see `berth.sink`): `deliver` is the Python
/// side's callable per batch. Returns the load summary as JSON.
#[pyfunction]
#[pyo3(signature = (packages, deliver, name, *, batch_size=100, max_nesting=0, skip_dlt=true, parallel=1,
    max_attempts=5, allow_failed_jobs=false, caller_owns_folders=false, progress=None, config=None))]
#[expect(clippy::too_many_arguments, reason = "the options of berth.sink")]
fn sink_load(
    py: Python<'_>,
    packages: Vec<String>,
    deliver: Py<PyAny>,
    name: String,
    batch_size: usize,
    max_nesting: usize,
    skip_dlt: bool,
    parallel: usize,
    max_attempts: u32,
    allow_failed_jobs: bool,
    caller_owns_folders: bool,
    progress: Option<bool>,
    config: Option<PathBuf>,
) -> PyResult<String> {
    logging::install();
    let storage = storage(config).map_err(|e| to_py_err(py, &e))?;
    let mut options = berth::sink::SinkOptions {
        batch_size,
        skip_dlt,
        max_nesting,
        parallel_jobs: parallel.max(1),
        max_attempts: max_attempts.max(1),
        allow_failed_jobs,
        caller_owns_folders,
        ..berth::sink::SinkOptions::default()
    };
    run_load(py, progress, |reporter, cancel| async move {
        let locations = berth::loader::resolve_locations(&packages, &storage).await?;
        let settings = berth::dlt_config::DltSettings::default();
        options.read_options.csv = berth_cli::csv_format_for(None, locations.first(), &settings).await?;
        let loader = sink::loader(sink::PySink::new(name, deliver), options, reporter, cancel);
        berth_cli::load_measured(loader, locations).await
    })
}

/// The statements a load would run (see `berth.plan`).
#[pyfunction]
#[pyo3(signature = (packages, destination="duckdb".to_string(), *, dataset=None, replace_strategy=None,
    assume_empty=false, staging=None, config=None))]
#[expect(clippy::too_many_arguments, reason = "the keyword arguments of berth.plan")]
fn plan(
    py: Python<'_>,
    packages: Vec<String>,
    destination: String,
    dataset: Option<String>,
    replace_strategy: Option<String>,
    assume_empty: bool,
    staging: Option<String>,
    config: Option<PathBuf>,
) -> PyResult<String> {
    let request = berth_cli::PlanRequest {
        packages,
        destination,
        dataset,
        replace_strategy: parse_replace_strategy(replace_strategy.as_deref())?,
        assume_empty,
        staging,
    };
    let storage = storage(config).map_err(|e| to_py_err(py, &e))?;
    let runtime = runtime().map_err(|e| to_py_err(py, &e))?;
    let planned = run_interruptible(
        py,
        runtime,
        async move { berth_cli::plan_text(&request, &storage).await },
        || {},
    )?;
    planned.map_err(|e| to_py_err(py, &e))
}

/// What compacting a lake's tables did, as `berth compact --json` prints it (see `berth.compact`).
#[pyfunction]
#[pyo3(signature = (destination, dataset, *, tables=Vec::new(), target_file_mib=128, config=None))]
fn compact(
    py: Python<'_>,
    destination: String,
    dataset: String,
    tables: Vec<String>,
    target_file_mib: u64,
    config: Option<PathBuf>,
) -> PyResult<String> {
    let options = berth::delta::CompactOptions {
        dataset,
        tables,
        target_file_size: target_file_mib.max(1) << 20,
    };
    let storage = storage(config).map_err(|e| to_py_err(py, &e))?;
    let runtime = runtime().map_err(|e| to_py_err(py, &e))?;
    let compacted = run_interruptible(
        py,
        runtime,
        async move { berth_cli::compact_lake(&destination, &options, &storage).await },
        || {},
    )?;
    let compacted = compacted.map_err(|e| to_py_err(py, &e))?;
    serde_json::to_string(&compacted).map_err(|e| pyo3::exceptions::PyRuntimeError::new_err(e.to_string()))
}

/// A package's document, as `berth package show --json` prints it (see `berth.package`).
#[pyfunction]
#[pyo3(signature = (location, *, config=None))]
fn package(py: Python<'_>, location: String, config: Option<PathBuf>) -> PyResult<String> {
    let storage = storage(config).map_err(|e| to_py_err(py, &e))?;
    let runtime = runtime().map_err(|e| to_py_err(py, &e))?;
    let document = run_interruptible(
        py,
        runtime,
        async move { berth_cli::package_document(&location, &storage).await },
        || {},
    )?;
    let document = document.map_err(|e| to_py_err(py, &e))?;
    serde_json::to_string(&document).map_err(|e| pyo3::exceptions::PyRuntimeError::new_err(e.to_string()))
}

/// What dlt's configuration resolves the destination `name` to, secrets masked, each value with
/// where it came from (as `berth config show`), searched from the current directory.
#[pyfunction]
#[pyo3(signature = (name, *, pipeline_name=None, dlt_settings=None))]
fn describe_destination(
    py: Python<'_>,
    name: String,
    pipeline_name: Option<String>,
    dlt_settings: Option<std::collections::BTreeMap<String, String>>,
) -> PyResult<String> {
    let settings = berth::dlt_config::DltSettings(dlt_settings.unwrap_or_default());
    let resolved = std::env::current_dir()
        .map_err(anyhow::Error::from)
        .and_then(|dir| Ok(berth::dlt_config::ConfigSources::discover(&dir)?.with_settings(&settings)))
        .and_then(|sources| Ok(berth::dlt_config::resolve(&name, pipeline_name.as_deref(), &sources)?));
    resolved.map(|r| r.describe()).map_err(|e| to_py_err(py, &e))
}

/// The `berth` command line with `argv` (program name first); returns its exit status.
#[pyfunction]
fn cli_main(py: Python<'_>, argv: Vec<String>) -> u8 {
    py.detach(|| berth_cli::run_cli(argv))
}

/// The version of the extension (the berth workspace's).
#[pyfunction]
fn version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

/// berth's native half; use the `berth` package, which wraps it.
#[pymodule]
fn _berth(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_function(wrap_pyfunction!(load, module)?)?;
    module.add_function(wrap_pyfunction!(plan, module)?)?;
    module.add_function(wrap_pyfunction!(sink_load, module)?)?;
    module.add_function(wrap_pyfunction!(package, module)?)?;
    module.add_function(wrap_pyfunction!(compact, module)?)?;
    module.add_function(wrap_pyfunction!(describe_destination, module)?)?;
    module.add_function(wrap_pyfunction!(cli_main, module)?)?;
    module.add_function(wrap_pyfunction!(version, module)?)?;
    Ok(())
}
