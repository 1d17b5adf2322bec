//! [`WarehouseDestination`]: the [`Destination`] of the four warehouses.

use std::sync::Arc;
use std::time::Instant;

use arrow::array::RecordBatch;
use async_trait::async_trait;
use berth_destination::{
    Capabilities, Destination, Error, JobMetrics, JobTimings, LoadJob, LoadLock, Result, TableLock, journal_insert_for,
};
use berth_model::lease::{Lease, LeaseOptions};
use berth_model::store::StorageConfig;
use berth_model::{JobFile, LoadPackage, Table};
use berth_plan::SqlStatement;
use berth_plan::sqlparser::ast::Statement;
use berth_postgres::PostgresDestination;
use url::Url;

use crate::Warehouse;
use crate::api::bigquery::{BigQueryClient, BigQueryConfig, TokenSource};
use crate::api::databricks::{DatabricksAuth, DatabricksClient, DatabricksConfig};
use crate::api::snowflake::{DEFAULT_TIMEOUT, SnowflakeAuth, SnowflakeClient, SnowflakeConfig, TokenType};
use crate::api::{Rows, Secret};
use crate::copy::{CopySpec, LoadCommand, load_command};
use crate::stage::{BucketObject, Credentials, StageAccess, Staging, scrub, stage_job};

/// What a warehouse destination needs besides its URL.
#[derive(Debug, Clone, Default)]
pub struct WarehouseOptions {
    /// The staging bucket (`s3://bucket/prefix`, …) packages not in a bucket are uploaded to.
    pub staging: Option<String>,
    /// Options for buckets (berth.toml `[storage."<prefix>"]`).
    pub storage: StorageConfig,
    /// Environment lookups (tokens); `None`: the process environment.
    pub env: Option<std::collections::BTreeMap<String, String>>,
}

impl WarehouseOptions {
    fn var(&self, name: &str) -> Option<String> {
        match &self.env {
            Some(env) => env.get(name).cloned(),
            None => std::env::var(name).ok(),
        }
        .filter(|v| !v.is_empty())
    }
}

#[derive(Debug)]
enum Client {
    Snowflake(SnowflakeClient),
    BigQuery(BigQueryClient),
    Databricks(DatabricksClient),
    Redshift(Box<PostgresDestination>),
}

/// Snowflake, BigQuery, Redshift or Databricks as a destination.
#[derive(Debug, Clone)]
pub struct WarehouseDestination {
    warehouse: Warehouse,
    caps: Capabilities,
    client: Arc<Client>,
    staging: Option<Staging>,
    access: StageAccess,
    storage: StorageConfig,
    display: String,
    project: String,
    location: String,
    /// Unique to this process: BigQuery job ids of files loaded again after the loader emptied
    /// their table (see [`LoadJob::emptied`]).
    run: String,
}

fn bad(url: &str, reason: impl Into<String>) -> Error {
    Error::Config {
        destination: berth_postgres::redact_url(url),
        reason: reason.into(),
    }
}

impl WarehouseDestination {
    /// Opens a warehouse from its URL:
    ///
    /// - `snowflake://[<user>@]<account>/<database>?warehouse=…&role=…` with `SNOWFLAKE_TOKEN`
    ///   (and `SNOWFLAKE_TOKEN_TYPE`: `oauth`, the default, `pat`, or `jwt`), or key-pair
    ///   authentication with `SNOWFLAKE_PRIVATE_KEY_PATH` (or the PEM in `SNOWFLAKE_PRIVATE_KEY`;
    ///   the user in the URL);
    /// - `bigquery://<project>[/<location>]` with Google credentials from the environment (or
    ///   `BIGQUERY_ACCESS_TOKEN`);
    /// - `redshift://user:password@host:5439/database[?sslmode=…]`;
    /// - `databricks://<workspace host>/<warehouse id>?catalog=…` with `DATABRICKS_TOKEN`, or a
    ///   service principal's `DATABRICKS_CLIENT_ID` and `DATABRICKS_CLIENT_SECRET` (OAuth M2M).
    ///
    /// Bucket access: `storage_integration=<name>` or `stage=<name>` (Snowflake), `iam_role=<arn>`
    /// (Redshift), `forward_credentials=true` (Snowflake, Redshift, Databricks: the keys of the
    /// bucket a file is read from, the staging bucket or the package's own, go into its COPY). `base_url=` points the HTTP APIs elsewhere (a proxy, a
    /// private link, a test server). Tokens never go into URLs.
    pub fn from_url(url: &str, options: WarehouseOptions) -> Result<Self> {
        let parsed = Url::parse(url).map_err(|e| bad(url, e.to_string()))?;
        let warehouse = Warehouse::from_name(parsed.scheme()).ok_or_else(|| {
            bad(
                url,
                "not a warehouse URL (snowflake://, bigquery://, redshift://, databricks://)",
            )
        })?;
        let mut parts = UrlParts::new(url, parsed, &options);
        let access = StageAccess::from_query(&mut parts.query).map_err(|reason| bad(url, reason))?;
        if warehouse != Warehouse::Redshift && parts.parsed.password().is_some() {
            return Err(bad(
                url,
                "tokens do not go into URLs; set SNOWFLAKE_TOKEN, DATABRICKS_TOKEN or Google credentials in the \
                 environment",
            ));
        }
        let mut project = String::new();
        let mut location = String::new();
        let (client, display) = match warehouse {
            Warehouse::Snowflake => parts.snowflake()?,
            Warehouse::BigQuery => {
                project = parts.host.clone();
                location = parts.path.first().cloned().unwrap_or_default();
                parts.bigquery(&project, &location)?
            }
            Warehouse::Databricks => parts.databricks()?,
            Warehouse::Redshift => parts.redshift(warehouse)?,
        };
        if let Some(key) = parts.query.keys().next() {
            return Err(bad(url, format!("`{key}` is not an option of {warehouse} URLs")));
        }
        let staging = options
            .staging
            .as_deref()
            .map(|s| Staging::open(s, &options.storage))
            .transpose()?;
        if let Some(staging) = &staging {
            access
                .check(warehouse, staging.kind())
                .map_err(|reason| bad(url, reason))?;
        }
        Ok(Self {
            warehouse,
            caps: warehouse.capabilities(),
            client: Arc::new(client),
            staging,
            access,
            storage: options.storage,
            display,
            project,
            location,
            run: format!(
                "r{:x}",
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis())
            ),
        })
    }

    /// The warehouse.
    pub fn warehouse(&self) -> Warehouse {
        self.warehouse
    }

    fn secrets(&self) -> Vec<String> {
        self.staging
            .as_ref()
            .map(|s| s.credentials().secrets())
            .unwrap_or_default()
    }

    /// Runs statement texts through the client.
    async fn run(&self, statements: &[String], transactional: bool) -> Result<Rows> {
        let result = match self.client.as_ref() {
            Client::Snowflake(c) => c.run(statements, transactional).await,
            Client::BigQuery(c) => c.run(statements, transactional).await,
            Client::Databricks(c) => c.run(statements).await,
            Client::Redshift(_) => Err(Error::Internal("Redshift statements go through its session".into())),
        };
        result.map_err(|e| scrub_error(e, &self.secrets()))
    }
}

/// `error` with its context and message rewritten (other errors as they are).
fn rewrite(error: Error, context: impl FnOnce(String) -> String, message: impl FnOnce(String) -> String) -> Error {
    match error {
        Error::Database {
            kind,
            destination,
            context: was,
            message: said,
        } => Error::Database {
            kind,
            destination,
            context: context(was),
            message: message(said),
        },
        other => other,
    }
}

/// `error` with `secrets` replaced by `***` in its text.
fn scrub_error(error: Error, secrets: &[String]) -> Error {
    rewrite(error, |c| scrub(&c, secrets), |m| scrub(&m, secrets))
}

#[async_trait]
impl Destination for WarehouseDestination {
    fn capabilities(&self) -> &Capabilities {
        &self.caps
    }

    /// The warehouses have no lock of their own: a lease (see [`berth_model::lease`]) in the
    /// staging bucket, or, without one, next to the package in its bucket
    /// (`<package>/_berth_locks/<dataset>.json`). A local package with no staging bucket cannot
    /// load into a warehouse at all, so it takes none.
    /// Snowflake folds names to upper case unless the package's naming convention keeps case
    /// (dlt's `adjust_capabilities`: its identifiers are case-sensitive); then names are kept
    /// ([`berth_plan::SqlDialect::for_naming`]).
    fn for_case_sensitive_names(&self) -> Option<Arc<dyn Destination>> {
        let dialect = self.caps.dialect.for_naming(true)?;
        let mut kept = self.clone();
        kept.caps.dialect = dialect;
        Some(Arc::new(kept))
    }

    async fn lock_load(&self, package: &LoadPackage, dataset: &str) -> Result<Option<LoadLock>> {
        let location = &package.location;
        let (store, path, display) = match &self.staging {
            Some(staging) => staging.lock_object(dataset, &package.load_id),
            None if location.local_dir().is_none() => {
                let relative = format!("_berth_locks/{dataset}.json");
                (
                    std::sync::Arc::clone(location.store()),
                    location.child(&relative),
                    location.display_child(&relative),
                )
            }
            None => return Ok(None),
        };
        let what = format!("package {} into {}.{dataset}", package.load_id, self.display);
        let lease = Lease::acquire(store, path, &display, &what, LeaseOptions::default())
            .await
            .map_err(Error::from)?;
        Ok(lease.map(LoadLock::lease))
    }

    /// Leases in the staging bucket (`<staging>/<dataset>/_berth_locks/tables/<table>.json`) on
    /// the tables the load empties, replaces or merges, taken in name order. A lease has no
    /// shared mode: appends take none (they commute with each other) and so are not kept from
    /// interleaving with a replace of the same table. Without a staging bucket, none.
    async fn lock_tables(&self, dataset: &str, tables: &[TableLock]) -> Result<Option<LoadLock>> {
        let Some(staging) = &self.staging else {
            return Ok(None);
        };
        let mut leases = Vec::new();
        for lock in TableLock::merged(tables.iter().cloned())
            .into_iter()
            .filter(|t| t.exclusive)
        {
            let (store, path, display) = staging.table_lock_object(dataset, &lock.table);
            let what = format!("{}.{dataset}.{}", self.display, lock.table);
            match Lease::acquire(store, path, &display, &what, LeaseOptions::default()).await {
                Ok(Some(lease)) => leases.push(lease),
                Ok(None) => {}
                Err(e) => {
                    for lease in leases {
                        lease.release().await;
                    }
                    return Err(Error::from(e));
                }
            }
        }
        Ok((!leases.is_empty()).then(|| LoadLock::leases(leases)))
    }

    fn describe(&self) -> String {
        self.display.clone()
    }

    async fn execute(&self, statements: Vec<SqlStatement>, transactional: bool) -> Result<()> {
        if let Client::Redshift(pg) = self.client.as_ref() {
            return pg
                .execute(statements, transactional)
                .await
                .map_err(|e| scrub_error(e, &self.secrets()));
        }
        let texts: Vec<String> = statements.iter().map(SqlStatement::text_to_send).collect();
        self.run(&texts, transactional && self.caps.supports_transactions)
            .await
            .map(drop)
    }

    async fn query(&self, statement: Statement) -> Result<Vec<RecordBatch>> {
        if let Client::Redshift(pg) = self.client.as_ref() {
            return pg.query(statement).await;
        }
        let rows = self.run(&[statement.to_string()], false).await?;
        Ok(vec![rows.to_batch()?])
    }

    async fn load_job(&self, job: LoadJob<'_>) -> Result<JobMetrics> {
        let started = Instant::now();
        // A Parquet file must match the table before the warehouse is asked anything (other
        // formats are checked as berth converts them).
        let parquet_rows = if job.job.name.format == berth_model::FileFormat::Parquet {
            Some(berth_model::read::inspect_parquet(job.package, job.job).await?.num_rows)
        } else {
            None
        };
        let staged = stage_job(
            self.warehouse,
            job.package,
            job.job,
            job.journal_dataset,
            self.staging.as_ref(),
            &self.access,
            &self.storage,
            &job.read_options,
        )
        .await?;
        let uploaded = started.elapsed();
        let num_rows = staged.rows.or(parquet_rows).unwrap_or_default();
        // The keys to forward are those of the bucket the file is in.
        let credentials = match &self.staging {
            Some(staging) if !staged.in_package => staging.credentials().clone(),
            _ => Credentials::for_url(&job.package.location.to_string(), &self.storage),
        };
        let command = self.command(&job, &staged.object, &credentials)?;
        let journal: SqlStatement = journal_insert_for(&self.caps.dialect, &job, num_rows).into();
        let display = job.package.job_display(job.job);
        let secrets = [self.secrets(), credentials.secrets()].concat();
        let context = |e: Error| {
            rewrite(
                scrub_error(e, &secrets),
                |c| format!("loading `{display}` into `{}.{}`: {c}", job.dataset, job.table.name),
                |m| m,
            )
        };
        let rows = match (self.client.as_ref(), command) {
            (Client::Redshift(pg), LoadCommand::Sql(copy)) => {
                // The COPY text may hold forwarded keys: never let it into the message.
                pg.execute(vec![copy, journal], true)
                    .await
                    .map_err(|e| rewrite(e, |_| "COPY from the staged file".into(), |m| m))
                    .map_err(context)?;
                num_rows
            }
            (Client::Snowflake(_), LoadCommand::Sql(copy)) => {
                self.run(&[copy.text_to_send(), journal.to_string()], true)
                    .await
                    .map_err(context)?;
                num_rows
            }
            (Client::Databricks(_), LoadCommand::Sql(copy)) => {
                // COPY INTO skips a file the table loaded already: a crash before the journal
                // row leaves nothing to load twice.
                self.run(&[copy.text_to_send()], false).await.map_err(context)?;
                self.run(&[journal.to_string()], false).await.map_err(context)?;
                num_rows
            }
            (Client::BigQuery(client), LoadCommand::BigQueryJob(body)) => {
                let loaded = client.load(&body).await.map_err(context)?;
                self.run(&[journal.to_string()], false).await.map_err(context)?;
                if loaded != 0 && loaded != num_rows {
                    tracing::warn!(job = %job.package.job_display(job.job), loaded, expected = num_rows, "BigQuery loaded a different row count");
                }
                num_rows
            }
            (_, command) => {
                return Err(Error::Internal(format!(
                    "{} cannot run {}",
                    self.warehouse,
                    match command {
                        LoadCommand::Sql(_) => "a statement load",
                        LoadCommand::BigQueryJob(_) => "a BigQuery load job",
                    }
                )));
            }
        };
        Ok(JobMetrics {
            keys: None,
            rows,
            bytes: job.job.size,
            timings: JobTimings {
                decode: std::time::Duration::ZERO,
                encode: uploaded,
                transfer: started.elapsed().saturating_sub(uploaded),
            },
        })
    }
}

impl WarehouseDestination {
    fn command(
        &self,
        job: &LoadJob<'_>,
        object: &BucketObject,
        credentials: &crate::stage::Credentials,
    ) -> Result<LoadCommand> {
        let stage_prefix = self.staging.as_ref().map(Staging::prefix).unwrap_or_default();
        let job_name = job.job.name.to_string();
        load_command(&CopySpec {
            warehouse: self.warehouse,
            dialect: &self.caps.dialect,
            dataset: job.dataset,
            table: job.table,
            file: object,
            access: &self.access,
            credentials,
            stage_prefix: &stage_prefix,
            project: &self.project,
            location: &self.location,
            load_id: &job.package.load_id,
            job_name: &job_name,
            emptied: job.emptied.then_some(self.run.as_str()),
        })
    }
}

/// What `berth plan` shows for one job of a warehouse load: where the file is staged and the
/// command that loads it (credentials redacted).
#[derive(Debug, Clone)]
pub struct PlannedJob {
    /// Upload note, when the file is uploaded first.
    pub upload: Option<String>,
    /// The load command (`None` without a staging bucket to name the file in).
    pub command: Option<LoadCommand>,
}

/// How `berth plan` stages and loads jobs for a warehouse, without connecting.
#[derive(Debug, Clone)]
pub struct JobPlanner {
    /// The warehouse.
    pub warehouse: Warehouse,
    /// Bucket access.
    pub access: StageAccess,
    /// The staging location (names only; credentials redacted).
    pub staging: Option<Staging>,
    /// BigQuery project.
    pub project: String,
    /// BigQuery location.
    pub location: String,
}

impl JobPlanner {
    /// From a warehouse URL or bare name and a staging URL, reading no credentials (forwarded
    /// keys print as `***`).
    pub fn new(destination: &str, staging: Option<&str>) -> Result<Self> {
        let (scheme, rest) = destination.split_once("://").unwrap_or((destination, ""));
        let warehouse = Warehouse::from_name(scheme).ok_or_else(|| bad(destination, "not a warehouse"))?;
        let parsed = Url::parse(&format!("{scheme}://{}", if rest.is_empty() { "x" } else { rest })).ok();
        let mut query: std::collections::BTreeMap<String, String> = parsed
            .as_ref()
            .map(|u| u.query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect())
            .unwrap_or_default();
        let access = StageAccess::from_query(&mut query).map_err(|reason| bad(destination, reason))?;
        let staging = staging
            .map(|url| {
                let named = Staging::named(url)?;
                let hidden = || Some("***".to_string());
                let keys = if named.kind() == berth_model::store::StoreKind::Azure {
                    crate::stage::Credentials {
                        azure_sas_token: hidden(),
                        ..Default::default()
                    }
                } else {
                    crate::stage::Credentials {
                        aws_key_id: hidden(),
                        aws_secret_key: hidden(),
                        ..Default::default()
                    }
                };
                Ok::<_, Error>(named.with_credentials(keys))
            })
            .transpose()?;
        let (project, location) = match (&parsed, warehouse) {
            (Some(u), Warehouse::BigQuery) if !rest.is_empty() => (
                u.host_str().unwrap_or_default().to_string(),
                u.path_segments()
                    .and_then(|mut s| s.next().map(str::to_string))
                    .unwrap_or_default(),
            ),
            _ => ("<project>".to_string(), String::new()),
        };
        Ok(Self {
            warehouse,
            access,
            staging,
            project,
            location,
        })
    }

    /// The staging and load command of `job` loading into `dataset` (`journal_dataset`: the
    /// final dataset, whose name the staged object carries; `emptied`: the load empties the table
    /// first, see [`LoadJob::emptied`]).
    pub fn plan_job(
        &self,
        package: &LoadPackage,
        job: &JobFile,
        table: &Table,
        dataset: &str,
        journal_dataset: &str,
        emptied: bool,
    ) -> Result<PlannedJob> {
        let storage = StorageConfig::default();
        let (object, upload) = match crate::stage::in_place(
            self.warehouse,
            package,
            job,
            self.staging.as_ref(),
            &self.access,
            &storage,
        ) {
            Some(object) => (object, None),
            None => {
                let Some(staging) = self.staging.as_ref() else {
                    return Ok(PlannedJob {
                        upload: Some(format!(
                            "job {} ({} bytes): uploaded to the staging bucket, then loaded by {}'s own COPY \
                             (give --staging s3://bucket/prefix to see both)",
                            job.name, job.size, self.warehouse
                        )),
                        command: None,
                    });
                };
                let path = staging.object_path(
                    journal_dataset,
                    &job.name.table,
                    &crate::stage::staged_name(&package.load_id, job),
                );
                let object = staging.object(&path);
                let shown = object.url_for(self.warehouse).unwrap_or_else(|_| path.to_string());
                let how = if job.name.format == berth_model::FileFormat::Parquet {
                    format!("upload {} ({} bytes, multipart)", job.name, job.size)
                } else {
                    format!("convert {} to Parquet (berth reads it) and upload it", job.name)
                };
                (object, Some(format!("{how} to {shown}")))
            }
        };
        let dialect = self.warehouse.dialect();
        let dialect = dialect
            .for_naming(package.schema.naming().is_case_sensitive())
            .unwrap_or(dialect);
        let credentials = self
            .staging
            .as_ref()
            .map(|s| s.credentials().clone())
            .unwrap_or_default();
        let stage_prefix = self.staging.as_ref().map(Staging::prefix).unwrap_or_default();
        let job_name = job.name.to_string();
        let command = load_command(&CopySpec {
            warehouse: self.warehouse,
            dialect: &dialect,
            dataset,
            table,
            file: &object,
            access: &self.access,
            credentials: &credentials,
            stage_prefix: &stage_prefix,
            project: &self.project,
            location: &self.location,
            load_id: &package.load_id,
            job_name: &job_name,
            emptied: emptied.then_some("<run>"),
        })?;
        Ok(PlannedJob {
            upload,
            command: Some(command),
        })
    }
}

/// A warehouse URL taken apart while its client is built: options are taken out of `query` as
/// they are used, and what remains is refused.
struct UrlParts<'a> {
    url: &'a str,
    parsed: Url,
    host: String,
    path: Vec<String>,
    query: std::collections::BTreeMap<String, String>,
    options: &'a WarehouseOptions,
}

impl<'a> UrlParts<'a> {
    fn new(url: &'a str, parsed: Url, options: &'a WarehouseOptions) -> Self {
        let query = parsed
            .query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let path = parsed
            .path_segments()
            .map(|s| s.filter(|p| !p.is_empty()).map(str::to_string).collect())
            .unwrap_or_default();
        Self {
            url,
            host: parsed.host_str().unwrap_or_default().to_string(),
            parsed,
            path,
            query,
            options,
        }
    }

    fn take(&mut self, key: &str) -> Option<String> {
        self.query.remove(key)
    }

    /// `base_url=` (a proxy, a private link, a test server), else `default`.
    fn base_url(&mut self, default: impl FnOnce() -> String) -> String {
        self.take("base_url").unwrap_or_else(default)
    }

    fn bad(&self, reason: impl Into<String>) -> Error {
        bad(self.url, reason)
    }

    /// The first path segment, or an error saying what it names.
    fn first_path(&self, missing: &str) -> Result<String> {
        self.path.first().cloned().ok_or_else(|| self.bad(missing))
    }

    fn snowflake(&mut self) -> Result<(Client, String)> {
        let database = self.first_path("name the database: snowflake://<account>/<database>")?;
        let auth = self.snowflake_auth()?;
        let host = self.host.clone();
        let config = SnowflakeConfig {
            base_url: self.base_url(|| format!("https://{host}.snowflakecomputing.com")),
            auth,
            database: database.clone(),
            warehouse: self.take("warehouse"),
            role: self.take("role"),
            timeout_secs: DEFAULT_TIMEOUT.as_secs(),
        };
        Ok((
            Client::Snowflake(SnowflakeClient::new(config)?),
            format!("snowflake://{host}/{database}"),
        ))
    }

    /// Key-pair authentication when a private key is configured, else a token.
    fn snowflake_auth(&self) -> Result<SnowflakeAuth> {
        let options = self.options;
        let key = match (
            options.var("SNOWFLAKE_PRIVATE_KEY"),
            options.var("SNOWFLAKE_PRIVATE_KEY_PATH"),
        ) {
            (Some(pem), _) => Some(pem),
            (None, Some(path)) => Some(
                std::fs::read_to_string(&path)
                    .map_err(|e| self.bad(format!("cannot read SNOWFLAKE_PRIVATE_KEY_PATH {path}: {e}")))?,
            ),
            (None, None) => None,
        };
        if let Some(pem) = key {
            let user = self.parsed.username();
            if user.is_empty() {
                return Err(self.bad("key-pair authentication needs the user: snowflake://<user>@<account>/<database>"));
            }
            let pair = crate::api::jwt::KeyPair::from_pem(&pem, &self.host, user).map_err(|r| self.bad(r))?;
            return Ok(SnowflakeAuth::KeyPair(std::sync::Arc::new(pair)));
        }
        let token_type = match options.var("SNOWFLAKE_TOKEN_TYPE") {
            Some(t) => {
                TokenType::parse(&t).ok_or_else(|| self.bad("SNOWFLAKE_TOKEN_TYPE is one of oauth, pat, jwt"))?
            }
            None => TokenType::OAuth,
        };
        let token = options.var("SNOWFLAKE_TOKEN").map(Secret::new).ok_or_else(|| {
            self.bad(
                "set SNOWFLAKE_TOKEN (an OAuth or programmatic access token) or SNOWFLAKE_PRIVATE_KEY_PATH \
                 (key-pair authentication)",
            )
        })?;
        Ok(SnowflakeAuth::Token(token, token_type))
    }

    fn bigquery(&mut self, project: &str, location: &str) -> Result<(Client, String)> {
        let tokens = match self.options.var("BIGQUERY_ACCESS_TOKEN") {
            Some(token) => TokenSource::Fixed(Secret::new(token)),
            None => TokenSource::from_env(self.options.var("GOOGLE_SERVICE_ACCOUNT_KEY"))?,
        };
        let config = BigQueryConfig {
            base_url: self.base_url(|| "https://bigquery.googleapis.com".into()),
            project: project.to_string(),
            location: location.to_string(),
            tokens,
        };
        Ok((
            Client::BigQuery(BigQueryClient::new(config)?),
            format!("bigquery://{project}/{location}"),
        ))
    }

    fn databricks(&mut self) -> Result<(Client, String)> {
        let warehouse_id = self.first_path("name the SQL warehouse: databricks://<workspace host>/<warehouse id>")?;
        let options = self.options;
        let auth = match (
            options.var("DATABRICKS_CLIENT_ID"),
            options.var("DATABRICKS_CLIENT_SECRET"),
        ) {
            (Some(client_id), Some(secret)) => DatabricksAuth::ClientCredentials {
                client_id,
                client_secret: Secret::new(secret),
            },
            _ => DatabricksAuth::Token(options.var("DATABRICKS_TOKEN").map(Secret::new).ok_or_else(|| {
                self.bad(
                    "set DATABRICKS_TOKEN (a personal access token) or DATABRICKS_CLIENT_ID and \
                     DATABRICKS_CLIENT_SECRET (a service principal, OAuth machine-to-machine)",
                )
            })?),
        };
        let host = self.host.clone();
        let config = DatabricksConfig {
            base_url: self.base_url(|| format!("https://{host}")),
            auth,
            warehouse_id: warehouse_id.clone(),
            catalog: self.take("catalog").unwrap_or_else(|| "main".into()),
        };
        Ok((
            Client::Databricks(DatabricksClient::new(config)?),
            format!("databricks://{host}/{warehouse_id}"),
        ))
    }

    /// Redshift speaks PostgreSQL's protocol: the URL's remaining options are the connection's.
    fn redshift(&mut self, warehouse: Warehouse) -> Result<(Client, String)> {
        // `base_url=` is for the HTTP APIs: not a connection option.
        self.take("base_url");
        let mut pg_url = self.parsed.clone();
        pg_url.set_query(None);
        let kept: Vec<(String, String)> = std::mem::take(&mut self.query).into_iter().collect();
        let mut text = pg_url.to_string().replacen("redshift://", "postgres://", 1);
        if !kept.is_empty() {
            let pairs: Vec<String> = kept.iter().map(|(k, v)| format!("{k}={v}")).collect();
            text = format!("{text}?{}", pairs.join("&"));
        }
        let pg = PostgresDestination::from_url(&text)?.with_capabilities(warehouse.capabilities());
        Ok((Client::Redshift(Box::new(pg)), berth_postgres::redact_url(self.url)))
    }
}
