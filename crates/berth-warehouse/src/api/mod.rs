//! The clients that send statements to each warehouse: real HTTP APIs (Snowflake SQL API v2,
//! BigQuery REST v2, Databricks SQL Statement Execution 2.0) on reqwest with rustls. Redshift
//! speaks PostgreSQL's protocol and goes through `berth-postgres`.
//!
//! Every client answers with [`Rows`] (all values as text, which the catalog and bookkeeping
//! readers cast), classifies failures into transient / terminal / undefined relation, and never
//! puts a token in a message or `Debug` output.

pub mod bigquery;
pub mod databricks;
pub mod jwt;
pub mod snowflake;

use std::sync::Arc;
use std::time::Duration;

use arrow::array::{ArrayRef, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use berth_destination::{Error, ErrorKind, Result};

/// A query's result: column names and text values.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rows {
    /// Column names.
    pub columns: Vec<String>,
    /// Rows of values (`None` for NULL).
    pub rows: Vec<Vec<Option<String>>>,
}

impl Rows {
    /// One Arrow batch of `Utf8` columns.
    pub fn to_batch(&self) -> Result<RecordBatch> {
        let fields: Vec<Field> = self
            .columns
            .iter()
            .map(|c| Field::new(c, DataType::Utf8, true))
            .collect();
        let arrays: Vec<ArrayRef> = (0..self.columns.len())
            .map(|i| {
                Arc::new(
                    self.rows
                        .iter()
                        .map(|row| row.get(i).cloned().flatten())
                        .collect::<StringArray>(),
                ) as ArrayRef
            })
            .collect();
        RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)
            .map_err(|e| Error::Internal(format!("result rows do not form a batch: {e}")))
    }
}

pub use berth_model::Secret;

/// The HTTP client every API uses: rustls, timeouts, berth's user agent.
pub fn http_client() -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .user_agent(concat!("berth/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(30))
        .timeout(Duration::from_secs(600))
        .build()
        .map_err(|e| Error::Internal(format!("cannot build an HTTP client: {e}")))
}

/// `request` with `body` as its JSON body.
pub fn with_json(request: reqwest::RequestBuilder, body: &serde_json::Value) -> reqwest::RequestBuilder {
    request
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body.to_string())
}

/// What to do about an HTTP status that is not success, before looking at the body.
pub fn status_kind(status: reqwest::StatusCode) -> ErrorKind {
    match status.as_u16() {
        408 | 429 | 500 | 502 | 503 | 504 => ErrorKind::Transient,
        _ => ErrorKind::Terminal,
    }
}

/// A request that did not get an answer (connection refused or reset, timeout): worth retrying.
pub fn network_error(destination: &str, context: &str, error: &reqwest::Error) -> Error {
    // reqwest's message includes the URL, which holds no secrets here (tokens go in headers).
    Error::Database {
        kind: ErrorKind::Transient,
        destination: destination.into(),
        context: context.into(),
        message: error.to_string(),
    }
}

/// How long to wait before poll `attempt` (0-based) of a running statement: 50 ms doubling to 2 s.
pub fn poll_delay(attempt: u32) -> Duration {
    Duration::from_millis(50u64.saturating_mul(1 << attempt.min(6)).min(2000))
}

/// A random UUID v4 (Snowflake's `requestId`, BigQuery's `requestId`).
pub fn uuid4() -> String {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 16];
    // The system RNG does not fail on Linux; fall back to the clock if it ever does.
    if ring::rand::SystemRandom::new().fill(&mut bytes).is_err() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        bytes = nanos.to_le_bytes();
    }
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// A JSON value as text the way the catalog readers want it (strings unquoted, numbers as
/// printed, NULL as `None`).
pub fn json_text(value: &serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::Null => None,
        serde_json::Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_become_text_batches() {
        let rows = Rows {
            columns: vec!["a".into(), "b".into()],
            rows: vec![vec![Some("1".into()), None], vec![Some("2".into()), Some("x".into())]],
        };
        let batch = rows.to_batch().unwrap();
        assert_eq!(batch.num_rows(), 2);
        let ints = arrow::compute::cast(batch.column(0), &DataType::Int64).unwrap();
        assert_eq!(ints.len(), 2);
        assert_eq!(format!("{:?}", Secret::new("token-value")), "***");
        let id = uuid4();
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
    }
}
