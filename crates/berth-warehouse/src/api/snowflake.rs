//! Snowflake's SQL API v2: `POST /api/v2/statements` with a bearer token (OAuth, a programmatic
//! access token, or a key-pair JWT made by the caller), polling `GET /api/v2/statements/{handle}`
//! while a statement runs (HTTP 202), fetching further result partitions. Several statements go
//! in one request (`MULTI_STATEMENT_COUNT`), wrapped in `BEGIN … COMMIT` when they must commit
//! together. Every request carries a `requestId`; a resubmission after a lost answer sets
//! `retry=true`, so Snowflake runs the statement once.

use std::time::Duration;

use berth_destination::{Error, ErrorKind, Result};
use serde_json::{Value, json};

use super::{Rows, Secret, http_client, json_text, network_error, poll_delay, status_kind, uuid4};

/// How the token authenticates (`X-Snowflake-Authorization-Token-Type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenType {
    /// An OAuth access token.
    OAuth,
    /// A programmatic access token.
    ProgrammaticAccessToken,
    /// A key-pair JWT.
    KeyPairJwt,
}

impl TokenType {
    /// The header value.
    pub fn header(self) -> &'static str {
        match self {
            Self::OAuth => "OAUTH",
            Self::ProgrammaticAccessToken => "PROGRAMMATIC_ACCESS_TOKEN",
            Self::KeyPairJwt => "KEYPAIR_JWT",
        }
    }

    /// From `oauth`, `pat` / `programmatic_access_token`, `jwt` / `keypair_jwt`.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s.to_ascii_lowercase().as_str() {
            "oauth" => Self::OAuth,
            "pat" | "programmatic_access_token" => Self::ProgrammaticAccessToken,
            "jwt" | "keypair_jwt" => Self::KeyPairJwt,
            _ => return None,
        })
    }
}

/// How requests authenticate.
#[derive(Debug, Clone)]
pub enum SnowflakeAuth {
    /// A token made elsewhere, and its kind.
    Token(Secret, TokenType),
    /// A key pair: berth signs a fresh JWT for each request.
    KeyPair(std::sync::Arc<super::jwt::KeyPair>),
}

/// Where and as whom statements run.
#[derive(Debug, Clone)]
pub struct SnowflakeConfig {
    /// `https://<account>.snowflakecomputing.com` (or a test server).
    pub base_url: String,
    /// Credentials.
    pub auth: SnowflakeAuth,
    /// Database (the datasets are its schemas).
    pub database: String,
    /// Virtual warehouse, if not the user's default.
    pub warehouse: Option<String>,
    /// Role, if not the user's default.
    pub role: Option<String>,
    /// Seconds a statement may run.
    pub timeout_secs: u64,
}

/// The client.
#[derive(Debug, Clone)]
pub struct SnowflakeClient {
    http: reqwest::Client,
    config: SnowflakeConfig,
    display: String,
}

/// Attempts of one request whose answer was lost (same `requestId`, `retry=true`).
const ATTEMPTS: u32 = 3;

impl SnowflakeClient {
    /// A client for `config`.
    pub fn new(config: SnowflakeConfig) -> Result<Self> {
        let display = format!("snowflake {}/{}", config.base_url, config.database);
        Ok(Self {
            http: http_client()?,
            config,
            display,
        })
    }

    /// The body of a statements request: `statements` joined, counted for Snowflake, in a
    /// transaction when `transactional`.
    pub fn request_body(&self, statements: &[String], transactional: bool) -> Value {
        let mut all: Vec<&str> = Vec::new();
        if transactional && statements.len() > 1 {
            all.push("BEGIN TRANSACTION");
        }
        all.extend(statements.iter().map(String::as_str));
        if transactional && statements.len() > 1 {
            all.push("COMMIT");
        }
        let mut body = json!({
            "statement": all.join(";\n"),
            "timeout": self.config.timeout_secs,
            "database": self.config.database,
            "parameters": {
                "MULTI_STATEMENT_COUNT": all.len().to_string(),
                "QUERY_TAG": "berth",
                // Timestamps come back as text in UTC, as dlt writes them.
                "TIMEZONE": "UTC",
            },
        });
        if let Some(warehouse) = &self.config.warehouse {
            body["warehouse"] = json!(warehouse);
        }
        if let Some(role) = &self.config.role {
            body["role"] = json!(role);
        }
        body
    }

    fn request(&self, method: reqwest::Method, url: &str) -> Result<reqwest::RequestBuilder> {
        let (token, kind) = match &self.config.auth {
            SnowflakeAuth::Token(token, kind) => (token.expose().to_string(), *kind),
            SnowflakeAuth::KeyPair(pair) => {
                let now = chrono::Utc::now().timestamp();
                let token = pair.token(now).map_err(|reason| Error::Config {
                    destination: self.display.clone(),
                    reason,
                })?;
                (token, TokenType::KeyPairJwt)
            }
        };
        Ok(self
            .http
            .request(method, url)
            .bearer_auth(token)
            .header("X-Snowflake-Authorization-Token-Type", kind.header())
            .header(reqwest::header::ACCEPT, "application/json"))
    }

    /// Runs `statements` (one request) and returns the rows of a single statement's result.
    pub async fn run(&self, statements: &[String], transactional: bool) -> Result<Rows> {
        if statements.is_empty() {
            return Ok(Rows::default());
        }
        let body = self.request_body(statements, transactional);
        let request_id = uuid4();
        let base = self.config.base_url.trim_end_matches('/');
        let mut attempt = 0;
        let (status, answer) = loop {
            let mut url = format!("{base}/api/v2/statements?requestId={request_id}");
            if attempt > 0 {
                url.push_str("&retry=true");
            }
            let sent = super::with_json(self.request(reqwest::Method::POST, &url)?, &body)
                .send()
                .await;
            match sent {
                Ok(response) if status_kind(response.status()) == ErrorKind::Transient && attempt + 1 < ATTEMPTS => {}
                Ok(response) => break read(response).await.map_err(|e| self.network(&e))?,
                Err(e) if attempt + 1 >= ATTEMPTS => return Err(self.network(&e)),
                Err(_) => {}
            }
            attempt += 1;
            tokio::time::sleep(poll_delay(attempt + 3)).await;
        };
        let mut result = self.settle(status, answer).await?;
        let mut rows = rows_of(&result);
        // Further partitions of a large result.
        let partitions = result["resultSetMetaData"]["partitionInfo"]
            .as_array()
            .map_or(0, Vec::len);
        let handle = result["statementHandle"].as_str().unwrap_or_default().to_string();
        for partition in 1..partitions {
            let url = format!("{base}/api/v2/statements/{handle}?partition={partition}");
            let response = self
                .request(reqwest::Method::GET, &url)?
                .send()
                .await
                .map_err(|e| self.network(&e))?;
            let (status, answer) = read(response).await.map_err(|e| self.network(&e))?;
            result = self.settle(status, answer).await?;
            rows.rows.extend(rows_of(&result).rows);
        }
        Ok(rows)
    }

    /// Follows a running statement (202) to its end.
    async fn settle(&self, mut status: u16, mut answer: Value) -> Result<Value> {
        let base = self.config.base_url.trim_end_matches('/');
        let mut polls = 0;
        while status == 202 {
            let handle = answer["statementHandle"].as_str().unwrap_or_default();
            tokio::time::sleep(poll_delay(polls)).await;
            polls += 1;
            let url = format!("{base}/api/v2/statements/{handle}");
            let response = self
                .request(reqwest::Method::GET, &url)?
                .send()
                .await
                .map_err(|e| self.network(&e))?;
            (status, answer) = read(response).await.map_err(|e| self.network(&e))?;
        }
        if status == 200 {
            return Ok(answer);
        }
        Err(self.failure(status, &answer))
    }

    fn network(&self, error: &reqwest::Error) -> Error {
        network_error(&self.display, "Snowflake SQL API request", error)
    }

    /// The error of a failed statement (422) or request.
    fn failure(&self, status: u16, answer: &Value) -> Error {
        let code = answer["code"].as_str().unwrap_or_default();
        let sql_state = answer["sqlState"].as_str().unwrap_or_default();
        let message = answer["message"].as_str().unwrap_or("no message").to_string();
        let kind = match (status, code, sql_state) {
            // Object does not exist or not authorized; schema does not exist.
            (_, "002003" | "002043", _) | (_, _, "42S02") => ErrorKind::UndefinedRelation,
            (401 | 403, _, _) => ErrorKind::Terminal,
            // Statement aborted because of a lock wait / a warehouse that was resized.
            (_, "000625" | "000630" | "390114", _) | (_, _, "40001") => ErrorKind::Transient,
            (status, _, _) => status_kind(reqwest::StatusCode::from_u16(status).unwrap_or_default()),
        };
        let message = match status {
            401 => format!("authentication failed (HTTP 401): {message}"),
            403 => format!("not allowed (HTTP 403): {message}"),
            _ => message,
        };
        Error::Database {
            kind,
            destination: self.display.clone(),
            context: format!("statement (code {code}, SQLSTATE {sql_state})"),
            message,
        }
    }
}

async fn read(response: reqwest::Response) -> std::result::Result<(u16, Value), reqwest::Error> {
    let status = response.status().as_u16();
    let text = response.text().await?;
    let value = serde_json::from_str(&text).unwrap_or_else(|_| json!({ "message": truncate(&text) }));
    Ok((status, value))
}

fn truncate(text: &str) -> String {
    text.chars().take(500).collect()
}

/// The rows of a 200 answer: `resultSetMetaData.rowType` names, `data` values (text).
fn rows_of(answer: &Value) -> Rows {
    let columns = answer["resultSetMetaData"]["rowType"]
        .as_array()
        .map(|types| {
            types
                .iter()
                .map(|t| t["name"].as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default();
    let rows = answer["data"]
        .as_array()
        .map(|rows| {
            rows.iter()
                .map(|row| {
                    row.as_array()
                        .map(|v| v.iter().map(json_text).collect())
                        .unwrap_or_default()
                })
                .collect()
        })
        .unwrap_or_default();
    Rows { columns, rows }
}

/// Seconds a statement may run by default (Snowflake's maximum is 604800).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3600);
