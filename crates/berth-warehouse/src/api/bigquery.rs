//! BigQuery's REST API v2: statements through `jobs.query` (several as one script, in `BEGIN
//! TRANSACTION … COMMIT TRANSACTION` when they must commit together; `getQueryResults` while the
//! job runs and for further pages), and load jobs through `jobs.insert` with a job id derived from
//! the load and file: when the job exists already (a resumed load, or an answer that was lost),
//! BigQuery answers 409 and berth follows that job instead of loading the file again.
//!
//! Tokens come from object_store's Google credential chain (service account key in
//! `GOOGLE_SERVICE_ACCOUNT` / `GOOGLE_APPLICATION_CREDENTIALS`, application default credentials,
//! the metadata server), scoped `cloud-platform`, or a fixed token.

use std::sync::Arc;

use berth_destination::{Error, ErrorKind, Result};
use object_store::CredentialProvider;
use object_store::gcp::GcpCredential;
use serde_json::{Value, json};

use super::{Rows, Secret, http_client, json_text, network_error, poll_delay, status_kind, uuid4};

/// Where tokens come from. `Debug` names the kind only (a provider may hold a private key).
#[derive(Clone)]
pub enum TokenSource {
    /// A fixed OAuth access token.
    Fixed(Secret),
    /// object_store's Google credential provider.
    Provider(Arc<dyn CredentialProvider<Credential = GcpCredential>>),
}

impl std::fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Fixed(_) => f.write_str("TokenSource::Fixed(***)"),
            Self::Provider(_) => f.write_str("TokenSource::Provider(Google credential chain)"),
        }
    }
}

impl TokenSource {
    async fn token(&self, display: &str) -> Result<String> {
        match self {
            Self::Fixed(token) => Ok(token.expose().to_string()),
            Self::Provider(provider) => {
                provider
                    .get_credential()
                    .await
                    .map(|c| c.bearer.clone())
                    .map_err(|e| Error::Database {
                        kind: ErrorKind::Terminal,
                        destination: display.into(),
                        context: "getting a Google access token".into(),
                        message: e.to_string(),
                    })
            }
        }
    }

    /// The credential chain of object_store's Google Cloud Storage client, from the environment,
    /// or the service account `key` (a key file's JSON) when given.
    pub fn from_env(key: Option<String>) -> Result<Self> {
        let mut builder = object_store::gcp::GoogleCloudStorageBuilder::from_env();
        if let Some(key) = key {
            builder = builder.with_service_account_key(key);
        }
        let storage = builder
            // A bucket name is required by the builder; only its credentials are used.
            .with_bucket_name("berth-credentials-only")
            .build()
            .map_err(|e| Error::Config {
                destination: "bigquery".into(),
                reason: format!(
                    "no Google credentials: set GOOGLE_SERVICE_ACCOUNT (a key file), use application default \
                     credentials, or BIGQUERY_ACCESS_TOKEN ({e})"
                ),
            })?;
        Ok(Self::Provider(Arc::clone(storage.credentials())))
    }
}

/// Where statements run.
#[derive(Debug, Clone)]
pub struct BigQueryConfig {
    /// `https://bigquery.googleapis.com` (or a test server).
    pub base_url: String,
    /// Project that runs the jobs and holds the datasets.
    pub project: String,
    /// Location (`US`, `EU`, a region), empty for the default.
    pub location: String,
    /// Tokens.
    pub tokens: TokenSource,
}

/// The client.
#[derive(Debug, Clone)]
pub struct BigQueryClient {
    http: reqwest::Client,
    config: BigQueryConfig,
    display: String,
}

impl BigQueryClient {
    /// A client for `config`.
    pub fn new(config: BigQueryConfig) -> Result<Self> {
        let display = format!("bigquery project {}", config.project);
        Ok(Self {
            http: http_client()?,
            config,
            display,
        })
    }

    fn api(&self, path: &str) -> String {
        format!(
            "{}/bigquery/v2/projects/{}{path}",
            self.config.base_url.trim_end_matches('/'),
            self.config.project
        )
    }

    /// The body of a `jobs.query` request.
    pub fn query_body(&self, statements: &[String], transactional: bool) -> Value {
        let text = if transactional && statements.len() > 1 {
            format!("BEGIN TRANSACTION;\n{};\nCOMMIT TRANSACTION", statements.join(";\n"))
        } else {
            statements.join(";\n")
        };
        let mut body = json!({
            "query": text,
            "useLegacySql": false,
            "requestId": uuid4(),
            "timeoutMs": 10000,
            "formatOptions": { "useInt64Timestamp": false },
            "labels": { "loader": "berth" },
        });
        if !self.config.location.is_empty() {
            body["location"] = json!(self.config.location);
        }
        body
    }

    async fn send(&self, request: reqwest::RequestBuilder, context: &str) -> Result<(u16, Value)> {
        let token = self.config.tokens.token(&self.display).await?;
        let response = request
            .bearer_auth(token)
            .send()
            .await
            .map_err(|e| network_error(&self.display, context, &e))?;
        let status = response.status().as_u16();
        let text = response
            .text()
            .await
            .map_err(|e| network_error(&self.display, context, &e))?;
        let value = serde_json::from_str(&text).unwrap_or_else(|_| json!({ "error": { "message": text } }));
        Ok((status, value))
    }

    /// Runs statements as one query job and returns its rows.
    pub async fn run(&self, statements: &[String], transactional: bool) -> Result<Rows> {
        if statements.is_empty() {
            return Ok(Rows::default());
        }
        let body = self.query_body(statements, transactional);
        let (status, mut answer) = self
            .send(super::with_json(self.http.post(self.api("/queries")), &body), "query")
            .await?;
        if status != 200 {
            return Err(self.failure(status, &answer, "query"));
        }
        let job_id = answer["jobReference"]["jobId"].as_str().unwrap_or_default().to_string();
        let mut polls = 0;
        let mut rows = Rows::default();
        loop {
            if answer["jobComplete"].as_bool() == Some(false) {
                tokio::time::sleep(poll_delay(polls)).await;
                polls += 1;
            } else {
                if let Some(error) = answer["errors"]
                    .as_array()
                    .and_then(|e| e.first())
                    .filter(|_| answer["rows"].is_null())
                {
                    return Err(self.failure(400, &json!({ "error": error }), "query"));
                }
                let page = rows_of(&answer);
                if rows.columns.is_empty() {
                    rows.columns = page.columns;
                }
                rows.rows.extend(page.rows);
                if answer["pageToken"].as_str().is_none() {
                    return Ok(rows);
                }
            }
            let mut url = format!("{}?timeoutMs=10000", self.api(&format!("/queries/{job_id}")));
            if !self.config.location.is_empty() {
                url.push_str(&format!("&location={}", self.config.location));
            }
            if let Some(token) = answer["pageToken"].as_str() {
                url.push_str(&format!("&pageToken={token}"));
            }
            let (status, next) = self.send(self.http.get(url), "query results").await?;
            if status != 200 {
                return Err(self.failure(status, &next, "query results"));
            }
            answer = next;
        }
    }

    /// Runs a load job (the body of `jobs.insert`) to its end; returns the rows it loaded.
    pub async fn load(&self, job: &Value) -> Result<u64> {
        let job_id = job["jobReference"]["jobId"].as_str().unwrap_or_default().to_string();
        let context = format!("load job {job_id}");
        let (status, mut answer) = self
            .send(super::with_json(self.http.post(self.api("/jobs")), job), &context)
            .await?;
        match status {
            200 => {}
            // The job exists: a resumed load, or an answer that was lost. Follow it.
            409 => answer = json!({ "status": { "state": "RUNNING" } }),
            _ => return Err(self.failure(status, &answer, &context)),
        }
        let mut polls = 0;
        while answer["status"]["state"].as_str() != Some("DONE") {
            tokio::time::sleep(poll_delay(polls)).await;
            polls += 1;
            let mut url = self.api(&format!("/jobs/{job_id}"));
            if !self.config.location.is_empty() {
                url.push_str(&format!("?location={}", self.config.location));
            }
            let (status, next) = self.send(self.http.get(url), &context).await?;
            if status != 200 {
                return Err(self.failure(status, &next, &context));
            }
            answer = next;
        }
        if let Some(error) = answer["status"].get("errorResult") {
            return Err(self.failure(400, &json!({ "error": error }), &context));
        }
        Ok(answer["statistics"]["load"]["outputRows"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or_default())
    }

    fn failure(&self, status: u16, answer: &Value, context: &str) -> Error {
        let error = &answer["error"];
        let message = error["message"].as_str().unwrap_or("no message").to_string();
        let reason = error["reason"]
            .as_str()
            .or_else(|| error["errors"][0]["reason"].as_str())
            .unwrap_or_default();
        let kind = match (status, reason) {
            (_, "notFound") | (404, _) => ErrorKind::UndefinedRelation,
            (
                _,
                "backendError" | "rateLimitExceeded" | "internalError" | "jobBackendError" | "jobRateLimitExceeded",
            ) => ErrorKind::Transient,
            (status, _) => status_kind(reqwest::StatusCode::from_u16(status).unwrap_or_default()),
        };
        Error::Database {
            kind,
            destination: self.display.clone(),
            context: if reason.is_empty() {
                context.to_string()
            } else {
                format!("{context} ({reason})")
            },
            message,
        }
    }
}

/// The rows of a query answer: `schema.fields` names, `rows[].f[].v` values.
fn rows_of(answer: &Value) -> Rows {
    let columns = answer["schema"]["fields"]
        .as_array()
        .map(|fields| {
            fields
                .iter()
                .map(|f| f["name"].as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default();
    let rows = answer["rows"]
        .as_array()
        .map(|rows| {
            rows.iter()
                .map(|row| {
                    row["f"]
                        .as_array()
                        .map(|cells| cells.iter().map(|c| json_text(&c["v"])).collect())
                        .unwrap_or_default()
                })
                .collect()
        })
        .unwrap_or_default();
    Rows { columns, rows }
}
