//! dlt's bookkeeping in a lake, as dlt's filesystem destination writes it (dlt 1.31,
//! `dlt/destinations/impl/filesystem/filesystem.py`): one JSON-lines file per row, so that dlt
//! reads a berth-written lake (`pipeline.dataset()`, state sync, its next load) as its own.
//!
//! ```text
//! <root>/<dataset>/init                                                   {"initial_version": 2, "current_version": 2}
//! <root>/<dataset>/_dlt_version/<schema>__<time>__<hash as hex>.jsonl     the stored schema
//! <root>/<dataset>/_dlt_pipeline_state/<pipeline>__<load id>__<hash as hex>.jsonl
//! <root>/<dataset>/_dlt_loads/<schema>__<load id>.jsonl                   the commit marker, written last
//! ```

use base64::Engine as _;
use berth_destination::Result;
use berth_model::LoadPackage;
use serde_json::{Value, json};

use crate::lake::Lake;

/// dlt's separator of the parts of a bookkeeping file name.
const SEPARATOR: &str = "__";
const LOADS: &str = "_dlt_loads";
const VERSIONS: &str = "_dlt_version";
const STATES: &str = "_dlt_pipeline_state";

/// dlt's `_to_path_safe_string`: a base64 version hash as hex.
fn path_safe(hash: &str) -> String {
    match base64::engine::general_purpose::STANDARD.decode(hash) {
        Ok(bytes) => bytes.iter().map(|b| format!("{b:02x}")).collect(),
        Err(_) => hash.chars().filter(char::is_ascii_alphanumeric).collect(),
    }
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, false)
}

fn line(value: &Value) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_default()
}

/// The `_dlt_loads` file of `package` in `dataset`: its existence means the package is loaded.
pub fn load_marker(lake: &Lake, package: &LoadPackage, dataset: &str) -> object_store::path::Path {
    let name = format!("{}{SEPARATOR}{}.jsonl", package.schema.name, package.load_id);
    lake.path(&[dataset, LOADS, &name])
}

/// Has `package` been committed into `dataset`?
pub async fn is_loaded(lake: &Lake, package: &LoadPackage, dataset: &str) -> Result<bool> {
    lake.exists(&load_marker(lake, package, dataset)).await
}

/// The dataset's `init` file (dlt's storage version), written once; half-written bookkeeping
/// files of a killed run are removed.
pub async fn initialize(lake: &Lake, dataset: &str) -> Result<()> {
    for folder in [LOADS, VERSIONS, STATES] {
        lake.remove_partial_files(&[dataset, folder]);
    }
    let init = lake.path(&[dataset, "init"]);
    if !lake.exists(&init).await? {
        lake.put(&init, line(&json!({"initial_version": 2, "current_version": 2})))
            .await?;
    }
    Ok(())
}

/// Writes the package's schema into `_dlt_version` unless a file for its hash is there; says
/// whether it wrote one.
pub async fn store_schema(lake: &Lake, package: &LoadPackage, dataset: &str) -> Result<bool> {
    let schema = &package.schema;
    let hash = path_safe(&schema.version_hash);
    let stored = lake.list(&lake.path(&[dataset, VERSIONS])).await?;
    let suffix = format!("{SEPARATOR}{hash}.jsonl");
    if stored.iter().any(|o| o.location.as_ref().ends_with(&suffix)) {
        return Ok(false);
    }
    let precise_time = chrono::Utc::now().timestamp_micros() as f64 / 1e6;
    let name = format!("{}{SEPARATOR}{precise_time}{suffix}", schema.name);
    let row = json!({
        "version_hash": schema.version_hash,
        "schema_name": schema.name,
        "version": schema.version,
        "engine_version": schema.engine_version,
        "inserted_at": now(),
        "schema": schema.json,
    });
    lake.put(&lake.path(&[dataset, VERSIONS, &name]), line(&row)).await?;
    Ok(true)
}

/// Removes every stored version of the package's schema (dlt's `refresh="drop_*"`: the next
/// migration stores the package's again).
pub async fn drop_schema_versions(lake: &Lake, package: &LoadPackage, dataset: &str) -> Result<()> {
    let prefix = format!("{}{SEPARATOR}", package.schema.name);
    for object in lake.list(&lake.path(&[dataset, VERSIONS])).await? {
        if object.location.filename().is_some_and(|f| f.starts_with(&prefix)) {
            lake.delete(&object.location).await?;
        }
    }
    Ok(())
}

/// Commits the load: the pipeline's state as the package carries it (when it does), then the
/// `_dlt_loads` row, the marker dlt and berth read as "loaded".
pub async fn complete_load(lake: &Lake, package: &LoadPackage, dataset: &str) -> Result<()> {
    if let Some(state) = pipeline_state(package) {
        let pipeline = state.get("pipeline_name").and_then(Value::as_str).unwrap_or_default();
        let name = format!(
            "{pipeline}{SEPARATOR}{}{SEPARATOR}{}.jsonl",
            package.load_id,
            path_safe(&package.schema.version_hash)
        );
        lake.put(&lake.path(&[dataset, STATES, &name]), line(&state)).await?;
    }
    let row = json!({
        "load_id": package.load_id.to_string(),
        "schema_name": package.schema.name,
        "status": 0,
        "inserted_at": now(),
        "schema_version_hash": package.schema.version_hash,
    });
    lake.put(&load_marker(lake, package, dataset), line(&row)).await
}

/// The pipeline state document of the package (`load_package_state.json`'s `pipeline_state`), its
/// typed-JSON markers removed as dlt's plain JSON writer leaves them.
fn pipeline_state(package: &LoadPackage) -> Option<Value> {
    let mut state = package
        .state
        .raw
        .get("pipeline_state")
        .filter(|s| s.is_object())?
        .clone();
    berth_model::typed_json::untype(&mut state);
    Some(state)
}
