//! The Databricks SQL Statement Execution API 2.0: `POST /api/2.0/sql/statements` on a SQL
//! warehouse with a bearer token (a personal access token or an OAuth token), waiting up to 50 s
//! inline, then polling `GET /api/2.0/sql/statements/{id}`; results inline as JSON arrays, further
//! chunks through their links. One statement per request: Delta tables have no multi-statement
//! transactions, so statements run in order and a failure stops the rest.

use berth_destination::{Error, ErrorKind, Result};
use serde_json::{Value, json};

use super::{Rows, Secret, http_client, json_text, network_error, poll_delay, status_kind};

/// How requests authenticate.
#[derive(Debug, Clone)]
pub enum DatabricksAuth {
    /// A personal access token (or any bearer token made elsewhere).
    Token(Secret),
    /// OAuth machine-to-machine: a service principal's client id and secret, exchanged at the
    /// workspace's `/oidc/v1/token` for tokens (kept until a minute before they expire).
    ClientCredentials {
        /// The service principal's application id.
        client_id: String,
        /// Its OAuth secret.
        client_secret: Secret,
    },
}

/// Where statements run.
#[derive(Debug, Clone)]
pub struct DatabricksConfig {
    /// `https://<workspace host>` (or a test server).
    pub base_url: String,
    /// Credentials.
    pub auth: DatabricksAuth,
    /// SQL warehouse id.
    pub warehouse_id: String,
    /// Unity Catalog catalog the datasets (schemas) are in.
    pub catalog: String,
}

/// The client.
#[derive(Debug, Clone)]
pub struct DatabricksClient {
    http: reqwest::Client,
    config: DatabricksConfig,
    display: String,
    /// An OAuth token and when to stop using it.
    oauth: std::sync::Arc<tokio::sync::Mutex<Option<(Secret, std::time::Instant)>>>,
}

impl DatabricksClient {
    /// A client for `config`.
    pub fn new(config: DatabricksConfig) -> Result<Self> {
        let display = format!("databricks {} warehouse {}", config.base_url, config.warehouse_id);
        Ok(Self {
            http: http_client()?,
            config,
            display,
            oauth: std::sync::Arc::default(),
        })
    }

    /// The bearer token for the next request.
    async fn bearer(&self) -> Result<String> {
        let (client_id, client_secret) = match &self.config.auth {
            DatabricksAuth::Token(token) => return Ok(token.expose().to_string()),
            DatabricksAuth::ClientCredentials {
                client_id,
                client_secret,
            } => (client_id, client_secret),
        };
        let mut cached = self.oauth.lock().await;
        if let Some((token, until)) = cached.as_ref()
            && std::time::Instant::now() < *until
        {
            return Ok(token.expose().to_string());
        }
        let url = format!("{}/oidc/v1/token", self.config.base_url.trim_end_matches('/'));
        let response = self
            .http
            .post(url)
            .basic_auth(client_id, Some(client_secret.expose()))
            .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body("grant_type=client_credentials&scope=all-apis")
            .send()
            .await
            .map_err(|e| network_error(&self.display, "OAuth token request", &e))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|e| network_error(&self.display, "OAuth token request", &e))?;
        let answer: Value = serde_json::from_str(&text).unwrap_or_default();
        let token = answer["access_token"].as_str().filter(|_| status.is_success());
        let Some(token) = token else {
            return Err(Error::Database {
                kind: status_kind(status),
                destination: self.display.clone(),
                context: format!("OAuth token for client {client_id} (HTTP {status})"),
                message: answer["error_description"]
                    .as_str()
                    .or_else(|| answer["error"].as_str())
                    .unwrap_or("no token in the answer")
                    .to_string(),
            });
        };
        let lifetime = answer["expires_in"].as_u64().unwrap_or(3600).saturating_sub(60);
        let until = std::time::Instant::now() + std::time::Duration::from_secs(lifetime);
        *cached = Some((Secret::new(token), until));
        Ok(token.to_string())
    }

    /// The body of a statement request.
    pub fn statement_body(&self, statement: &str) -> Value {
        json!({
            "statement": statement,
            "warehouse_id": self.config.warehouse_id,
            "catalog": self.config.catalog,
            "wait_timeout": "50s",
            "on_wait_timeout": "CONTINUE",
            "disposition": "INLINE",
            "format": "JSON_ARRAY",
        })
    }

    fn url(&self, path: &str) -> String {
        format!(
            "{}/api/2.0/sql/statements{path}",
            self.config.base_url.trim_end_matches('/')
        )
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Result<(u16, Value)> {
        let response = request
            .bearer_auth(self.bearer().await?)
            .send()
            .await
            .map_err(|e| network_error(&self.display, "statement request", &e))?;
        let status = response.status().as_u16();
        let text = response
            .text()
            .await
            .map_err(|e| network_error(&self.display, "statement request", &e))?;
        let value = serde_json::from_str(&text).unwrap_or_else(|_| json!({ "message": text }));
        Ok((status, value))
    }

    /// Runs statements one by one; returns the last one's rows.
    pub async fn run(&self, statements: &[String]) -> Result<Rows> {
        let mut rows = Rows::default();
        for statement in statements {
            rows = self.run_one(statement).await?;
        }
        Ok(rows)
    }

    async fn run_one(&self, statement: &str) -> Result<Rows> {
        let body = self.statement_body(statement);
        let mut attempt = 0;
        let (status, mut answer) = loop {
            let (status, answer) = self.send(super::with_json(self.http.post(self.url("")), &body)).await?;
            // 429: refused before running, safe to send again. Anything else may have run.
            if status == 429 && attempt < 3 {
                attempt += 1;
                tokio::time::sleep(poll_delay(attempt + 4)).await;
                continue;
            }
            break (status, answer);
        };
        if status != 200 {
            return Err(self.failure(status, &answer));
        }
        let id = answer["statement_id"].as_str().unwrap_or_default().to_string();
        let mut polls = 0;
        while matches!(answer["status"]["state"].as_str(), Some("PENDING" | "RUNNING")) {
            tokio::time::sleep(poll_delay(polls)).await;
            polls += 1;
            let (status, next) = self.send(self.http.get(self.url(&format!("/{id}")))).await?;
            if status != 200 {
                return Err(self.failure(status, &next));
            }
            answer = next;
        }
        if answer["status"]["state"].as_str() != Some("SUCCEEDED") {
            return Err(self.failure(200, &answer));
        }
        let columns = answer["manifest"]["schema"]["columns"]
            .as_array()
            .map(|cols| {
                cols.iter()
                    .map(|c| c["name"].as_str().unwrap_or_default().to_string())
                    .collect()
            })
            .unwrap_or_default();
        let mut rows = Rows {
            columns,
            rows: Vec::new(),
        };
        let mut chunk = answer["result"].clone();
        loop {
            rows.rows
                .extend(chunk["data_array"].as_array().into_iter().flatten().map(|row| {
                    row.as_array()
                        .map(|v| v.iter().map(json_text).collect())
                        .unwrap_or_default()
                }));
            let Some(link) = chunk["next_chunk_internal_link"].as_str() else {
                break;
            };
            let url = format!("{}{link}", self.config.base_url.trim_end_matches('/'));
            let (status, next) = self.send(self.http.get(url)).await?;
            if status != 200 {
                return Err(self.failure(status, &next));
            }
            chunk = next;
        }
        Ok(rows)
    }

    fn failure(&self, status: u16, answer: &Value) -> Error {
        let error = &answer["status"]["error"];
        let message = error["message"]
            .as_str()
            .or_else(|| answer["message"].as_str())
            .unwrap_or("no message")
            .to_string();
        let code = error["error_code"]
            .as_str()
            .or_else(|| answer["error_code"].as_str())
            .unwrap_or_default();
        let kind = if message.contains("TABLE_OR_VIEW_NOT_FOUND") || message.contains("SCHEMA_NOT_FOUND") {
            ErrorKind::UndefinedRelation
        } else if matches!(
            code,
            "TEMPORARILY_UNAVAILABLE" | "RESOURCE_EXHAUSTED" | "DEADLINE_EXCEEDED"
        ) || message.contains("DELTA_CONCURRENT")
        {
            ErrorKind::Transient
        } else if status == 200 {
            ErrorKind::Terminal
        } else {
            status_kind(reqwest::StatusCode::from_u16(status).unwrap_or_default())
        };
        Error::Database {
            kind,
            destination: self.display.clone(),
            context: format!("statement ({code})"),
            message,
        }
    }
}
