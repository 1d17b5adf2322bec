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
        Ok(Self {
            created_at,
            state_version,
            raw,
        })
    }

    /// An empty state (a package without `load_package_state.json`).
    pub fn empty() -> Self {
        Self {
            created_at: None,
            state_version: 0,
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
