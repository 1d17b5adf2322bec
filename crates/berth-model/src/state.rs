//! `load_package_state.json` and `.restore/state.json`.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::typed_json;

/// The package state dlt writes next to the jobs (typed JSON).
#[derive(Debug, Clone, PartialEq)]
pub struct PackageState {
    /// Package creation time: the default scd2 validity boundary.
    pub created_at: Option<DateTime<Utc>>,
    /// `_state_version`.
    pub state_version: u64,
    /// `dropped_tables`: tables a `refresh="drop_resources"` (or `drop_sources`) extract asks the
    /// loader to drop before the migration, by name.
    pub dropped_tables: Vec<String>,
    /// `truncated_tables`: tables a `refresh="drop_data"` extract asks the loader to empty.
    pub truncated_tables: Vec<String>,
    /// `pipeline_state._dlt_load_id`: the load id dlt gave the package.
    pub load_id: Option<String>,
    /// The whole document as read, markers kept, so it round-trips.
    pub raw: Map<String, Value>,
}

impl PackageState {
    /// Parses `load_package_state.json`; `origin` names the file in errors.
    pub fn from_json(text: &str, origin: &str) -> Result<Self> {
        let bad = |message: String| Error::PackageState {
            path: origin.to_string(),
            message,
        };
        let value: Value = serde_json::from_str(text).map_err(|e| bad(format!("not valid JSON: {e}")))?;
        let Value::Object(raw) = value else {
            return Err(bad("must be a JSON object".into()));
        };
        let created_at = match raw.get("created_at") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(typed_json::parse_datetime(s).ok_or_else(|| {
                bad(format!(
                    "`created_at` is not a timestamp: `{}`",
                    typed_json::strip_marker(s)
                ))
            })?),
            Some(other) => return Err(bad(format!("`created_at` must be a string, found {other}"))),
        };
        let state_version = match raw.get("_state_version") {
            None | Some(Value::Null) => 0,
            Some(v) => v
                .as_u64()
                .ok_or_else(|| bad(format!("`_state_version` must be a non-negative integer, found {v}")))?,
        };
        let table_names = |key: &str| -> Result<Vec<String>> {
            match raw.get(key) {
                None | Some(Value::Null) => Ok(Vec::new()),
                Some(Value::Array(tables)) => tables
                    .iter()
                    .map(|t| {
                        t.get("name")
                            .and_then(Value::as_str)
                            .map(|n| typed_json::strip_marker(n).to_string())
                            .ok_or_else(|| bad(format!("`{key}` holds a table without a `name`: {t}")))
                    })
                    .collect(),
                Some(other) => Err(bad(format!("`{key}` must be a list of tables, found {other}"))),
            }
        };
        let dropped_tables = table_names("dropped_tables")?;
        let truncated_tables = table_names("truncated_tables")?;
        let load_id = match raw.get("pipeline_state").and_then(|p| p.get("_dlt_load_id")) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(typed_json::strip_marker(s).to_string()),
            Some(other) => {
                return Err(bad(format!(
                    "`pipeline_state._dlt_load_id` must be a string, found {other}"
                )));
            }
        };
        Ok(Self {
            created_at,
            state_version,
            dropped_tables,
            truncated_tables,
            load_id,
            raw,
        })
    }

    /// An empty state (a package without `load_package_state.json`).
    pub fn empty() -> Self {
        Self {
            created_at: None,
            state_version: 0,
            dropped_tables: Vec::new(),
            truncated_tables: Vec::new(),
            load_id: None,
            raw: Map::new(),
        }
    }
}

/// What berth reads from `.restore/state.json`: the local pipeline state at package creation.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RestoreState {
    /// The dataset the pipeline loads into.
    pub dataset_name: Option<String>,
    /// The pipeline's name.
    pub pipeline_name: Option<String>,
    /// The pipeline's default schema: a package of another schema loads into
    /// `<dataset_name>_<schema name>` (dlt's `_make_dataset_name`).
    pub default_schema_name: Option<String>,
    /// The destination the pipeline loads into, as dlt names its type
    /// (`dlt.destinations.postgres`).
    pub destination_type: Option<String>,
}

impl RestoreState {
    /// Parses `.restore/state.json`; `origin` names the file in errors.
    pub fn from_json(text: &str, origin: &str) -> Result<Self> {
        let value: Value = serde_json::from_str(text).map_err(|e| Error::PackageState {
            path: origin.to_string(),
            message: format!("not valid JSON: {e}"),
        })?;
        let get = |key: &str| value.get(key).and_then(Value::as_str).map(str::to_string);
        Ok(Self {
            dataset_name: get("dataset_name"),
            pipeline_name: get("pipeline_name"),
            default_schema_name: get("default_schema_name"),
            destination_type: get("destination_type"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_typed_created_at() {
        let text = "{\"_state_version\":1,\"created_at\":\"\u{F027}2026-11-22T20:38:33.178706+00:00\"}";
        let s = PackageState::from_json(text, "s.json").unwrap();
        assert_eq!(s.state_version, 1);
        assert_eq!(s.created_at.unwrap().timestamp(), 1_795_379_913);
        assert!(PackageState::from_json("[]", "s.json").is_err());
        let err = PackageState::from_json("{\"created_at\": \"soon\"}", "pkg/s.json").unwrap_err();
        assert!(err.to_string().contains("pkg/s.json"), "{err}");
    }
}
