//! An HTTP sink: each batch is one POST (`webhook+https://host/path` → `https://host/path`).
//!
//! The body is JSON, `{"table": …, "load_id": …, "batch": n, "rows": [{…}, …]}`, or NDJSON (one row
//! per line, the table in the `X-Berth-Table` header). Every request carries an `Idempotency-Key`
//! that stays the same across retries and reruns. 2xx acknowledges the batch; 408, 429 and 5xx,
//! timeouts and dropped connections are retried (honouring `Retry-After` in seconds); other
//! statuses fail the job. Credentials (user info in the URL, header values, the query string)
//! appear in no error, log or `Debug` output.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

use crate::ndjson::json_lines;
use crate::{Sink, SinkBatch, SinkError};

/// The request body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WebhookBody {
    /// `{"table": …, "load_id": …, "batch": n, "rows": [ … ]}` (`application/json`).
    #[default]
    Json,
    /// One row per line (`application/x-ndjson`).
    Ndjson,
}

impl std::str::FromStr for WebhookBody {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "json" => Ok(Self::Json),
            "ndjson" => Ok(Self::Ndjson),
            other => Err(format!("unknown body format `{other}`: json or ndjson")),
        }
    }
}

/// How the webhook is called.
#[derive(Clone)]
pub struct WebhookConfig {
    /// Extra headers (`Authorization`, API keys, …).
    pub headers: Vec<(String, String)>,
    /// Body format.
    pub body: WebhookBody,
    /// At most this many requests per second (all jobs together); `None`: no limit.
    pub requests_per_second: Option<f64>,
    /// Per request.
    pub timeout: Duration,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            headers: Vec::new(),
            body: WebhookBody::Json,
            requests_per_second: None,
            timeout: Duration::from_secs(30),
        }
    }
}

impl std::fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.headers.iter().map(|(name, _)| name.as_str()).collect();
        f.debug_struct("WebhookConfig")
            .field("headers", &names)
            .field("body", &self.body)
            .field("requests_per_second", &self.requests_per_second)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// POSTs batches to a URL.
pub struct WebhookSink {
    client: reqwest::Client,
    url: reqwest::Url,
    basic_auth: Option<(String, Option<String>)>,
    headers: HeaderMap,
    body: WebhookBody,
    interval: Option<Duration>,
    next_slot: tokio::sync::Mutex<Instant>,
    display: String,
}

impl std::fmt::Debug for WebhookSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookSink")
            .field("url", &self.display)
            .field(
                "headers",
                &self.headers.keys().map(HeaderName::as_str).collect::<Vec<_>>(),
            )
            .field("body", &self.body)
            .field("interval", &self.interval)
            .finish_non_exhaustive()
    }
}

/// `url` without user info and query: what messages may show.
fn redacted(url: &reqwest::Url) -> String {
    let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
    format!(
        "webhook+{}://{}{port}{}",
        url.scheme(),
        url.host_str().unwrap_or_default(),
        url.path()
    )
}

impl WebhookSink {
    /// A sink posting to `url` (`webhook+http://…`, `webhook+https://…`, or a plain `http(s)://`).
    pub fn new(url: &str, config: WebhookConfig) -> Result<Self, SinkError> {
        let plain = url.strip_prefix("webhook+").unwrap_or(url);
        let mut url = reqwest::Url::parse(plain).map_err(|e| {
            SinkError::terminal(format!(
                "the webhook URL is not a valid URL ({e}); expected webhook+https://host/path"
            ))
        })?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(SinkError::terminal(
                "the webhook URL must be webhook+http://host/… or webhook+https://host/…",
            ));
        }
        let basic_auth = (!url.username().is_empty()).then(|| {
            let decode = |s: &str| Some(percent_encoding::percent_decode_str(s).decode_utf8_lossy().to_string());
            (
                decode(url.username()).unwrap_or_default(),
                url.password().and_then(decode),
            )
        });
        let _ = url.set_username("");
        let _ = url.set_password(None);
        let display = redacted(&url);
        let mut headers = HeaderMap::new();
        for (name, value) in &config.headers {
            let header = HeaderName::from_bytes(name.trim().as_bytes())
                .map_err(|_| SinkError::terminal(format!("`{name}` is not a valid header name")))?;
            let mut value = HeaderValue::from_str(value.trim())
                .map_err(|_| SinkError::terminal(format!("the value of header `{name}` is not valid")))?;
            value.set_sensitive(true);
            headers.append(header, value);
        }
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            .build()
            .map_err(|e| SinkError::terminal(format!("cannot build the HTTP client: {}", e.without_url())))?;
        let interval = config
            .requests_per_second
            .filter(|r| *r > 0.0)
            .map(|r| Duration::from_secs_f64(1.0 / r));
        Ok(Self {
            client,
            url,
            basic_auth,
            headers,
            body: config.body,
            interval,
            next_slot: tokio::sync::Mutex::new(Instant::now()),
            display,
        })
    }

    /// Waits for this request's slot under the rate limit.
    async fn pace(&self) {
        let Some(interval) = self.interval else { return };
        let wait = {
            let mut next = self.next_slot.lock().await;
            let now = Instant::now();
            let slot = (*next).max(now);
            *next = slot + interval;
            slot - now
        };
        tokio::time::sleep(wait).await;
    }

    fn body(&self, batch: &SinkBatch) -> Result<(Vec<u8>, &'static str), SinkError> {
        let bad = |e: arrow::error::ArrowError| SinkError::terminal(format!("table {}: {e}", batch.table.name));
        match self.body {
            WebhookBody::Ndjson => Ok((json_lines(&batch.rows).map_err(bad)?, "application/x-ndjson")),
            WebhookBody::Json => {
                let mut writer = arrow::json::WriterBuilder::new()
                    .with_explicit_nulls(true)
                    .build::<_, arrow::json::writer::JsonArray>(Vec::new());
                writer.write(&batch.rows).map_err(bad)?;
                writer.finish().map_err(bad)?;
                let mut rows = writer.into_inner();
                if rows.is_empty() {
                    rows = b"[]".to_vec();
                }
                let head =
                    serde_json::json!({"table": batch.table.name, "load_id": batch.load_id, "batch": batch.index});
                let mut body = head.to_string().into_bytes();
                body.pop(); // the closing brace
                body.extend_from_slice(b",\"rows\":");
                body.extend_from_slice(&rows);
                body.push(b'}');
                Ok((body, "application/json"))
            }
        }
    }
}

/// `Retry-After` in seconds (HTTP dates are not honoured: the backoff applies).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

#[async_trait]
impl Sink for WebhookSink {
    async fn send(&self, batch: SinkBatch) -> Result<(), SinkError> {
        let (body, content_type) = self.body(&batch)?;
        self.pace().await;
        let mut request = self
            .client
            .post(self.url.clone())
            .headers(self.headers.clone())
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .header("Idempotency-Key", batch.idempotency_key())
            .header("X-Berth-Table", batch.table.name.as_str())
            .header("X-Berth-Load-Id", batch.load_id.as_str())
            .body(body);
        if let Some((user, password)) = &self.basic_auth {
            request = request.basic_auth(user, password.as_ref());
        }
        let response = request.send().await.map_err(|e| {
            // Timeouts, refused and dropped connections: the batch may go through next time.
            SinkError::transient(format!("{}: {}", self.display, e.without_url()))
        })?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let wait = retry_after(response.headers());
        let text = response.text().await.unwrap_or_default();
        let text: String = text.chars().take(200).collect();
        let message = format!("{} answered {status}: {}", self.display, text.trim());
        let transient = status == StatusCode::TOO_MANY_REQUESTS
            || status == StatusCode::REQUEST_TIMEOUT
            || status.is_server_error();
        let error = if transient {
            SinkError::transient(message)
        } else {
            SinkError::terminal(message)
        };
        Err(match wait {
            Some(wait) => error.with_retry_after(wait),
            None => error,
        })
    }

    fn describe(&self) -> String {
        self.display.clone()
    }
}
