//! # berth-postgres
//!
//! PostgreSQL as a destination. Jobs stream into the server with binary `COPY … FROM STDIN`,
//! encoded from Arrow by berth: each column is written in the binary format of its **target**
//! column type as read from the catalog (so integers can never land as garbage in numeric columns),
//! one transaction per job. Nothing is buffered beyond a batch and the COPY chunk.
//!
//! ```no_run
//! use berth_destination::Destination;
//! use berth_postgres::PostgresDestination;
//!
//! # fn example() -> berth_destination::Result<()> {
//! let destination = PostgresDestination::from_url("postgres://loader:secret@localhost:5432/warehouse")?;
//! assert!(!destination.describe().contains("secret"));
//! # Ok(())
//! # }
//! ```

pub mod copy;
pub mod tls;
mod types;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use arrow::array::{
    ArrayRef, BinaryBuilder, BooleanBuilder, Date32Builder, Float32Builder, Float64Builder, Int16Builder, Int32Builder,
    Int64Builder, RecordBatch, StringBuilder, Time64MicrosecondBuilder, TimestampMicrosecondBuilder,
};
use arrow::datatypes::{Field, Schema};
use async_trait::async_trait;
use berth_destination::{
    Capabilities, Destination, DiscardJob, Error, ErrorKind, JobMetrics, JobPart, JobTimings, LoadJob, LoadLock,
    Result, TableLock, journal_insert_for,
};
use berth_model::read;
use berth_model::schema::JOURNAL_TABLE;
use berth_model::{FileFormat, LoadPackage};
use berth_plan::keys::{KeyRun, observed_key_column};
use berth_plan::sqlparser::ast::{ObjectName, Statement};
use berth_plan::{SqlDialect, SqlStatement, sql};
use bytes::BytesMut;
use datafusion::logical_expr::lit;
use datafusion::sql::unparser::dialect::PostgreSqlDialect;
use futures::{SinkExt, StreamExt};
use tokio_postgres::types::{FromSql, Kind, Type};
use tokio_postgres::{Client, NoTls};

pub use copy::PgType;
pub use types::PostgresTypeMapper;

/// How long a connection attempt may take before it fails as transient (a `connect_timeout`
/// parameter in the URL, in seconds as libpq has it, overrides it).
pub const DEFAULT_CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Warns when a password would go to a host off this machine over a connection that is not
/// encrypted and verified (libpq's `prefer` falls back to plain text, `require` checks no
/// certificate): a man in the middle would receive it. `channel_binding=require` (SCRAM bound to
/// the TLS session) or `sslmode=verify-full` protect it.
fn warn_if_password_unprotected(config: &tokio_postgres::Config, mode: tls::SslMode, shown: &str) {
    use tokio_postgres::config::{ChannelBinding, Host};
    if config.get_password().is_none()
        || matches!(mode, tls::SslMode::VerifyCa | tls::SslMode::VerifyFull)
        || config.get_channel_binding() == ChannelBinding::Require
    {
        return;
    }
    let remote = config.get_hosts().iter().any(|host| match host {
        Host::Tcp(name) => {
            let loopback = name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
            !(loopback || name.eq_ignore_ascii_case("localhost"))
        }
        #[cfg(unix)]
        Host::Unix(_) => false,
    });
    if remote {
        tracing::warn!(
            "{shown}: the password may reach the server unprotected (sslmode is not verify-ca/verify-full and \
             channel_binding is not require); add ?sslmode=verify-full or ?channel_binding=require"
        );
    }
}

/// The URL as tokio-postgres reads it, with libpq's precedence of a `host` query parameter over
/// the host before the path (`postgresql://user@localhost/db?host=/var/run/postgresql`, as dlt
/// writes a socket's credentials, connects through the socket only; tokio-postgres would try
/// both, TCP first). The host before the path is left out, its port kept as a parameter.
fn query_host_first(url: &url::Url, query: &[(String, String)]) -> String {
    if !query.iter().any(|(key, _)| key == "host") {
        return url.as_str().to_string();
    }
    let mut out = format!("{}://", url.scheme());
    if !url.username().is_empty() || url.password().is_some() {
        out.push_str(url.username());
        if let Some(password) = url.password() {
            out.push(':');
            out.push_str(password);
        }
        out.push('@');
    }
    out.push_str(url.path());
    let mut params = url::form_urlencoded::Serializer::new(String::new());
    params.extend_pairs(query);
    if let Some(port) = url.port().filter(|_| !query.iter().any(|(key, _)| key == "port")) {
        params.append_pair("port", &port.to_string());
    }
    out.push('?');
    out.push_str(&params.finish());
    out
}

/// PostgreSQL's names of UTF-8 as a client encoding (`UTF8`, `utf-8`, `Unicode`).
fn is_utf8_name(name: &str) -> bool {
    let folded: String = name.chars().filter(|c| *c != '-' && *c != '_').collect();
    folded.eq_ignore_ascii_case("utf8") || folded.eq_ignore_ascii_case("unicode")
}

/// A host that is a Unix-domain socket's folder (`postgresql://user@%2Fvar%2Frun%2Fpostgresql/db`
/// or `?host=/var/run/postgresql`).
fn is_unix_socket(host: &tokio_postgres::config::Host) -> bool {
    match host {
        tokio_postgres::config::Host::Tcp(_) => false,
        #[cfg(unix)]
        tokio_postgres::config::Host::Unix(_) => true,
    }
}

/// PostgreSQL's capabilities, as dlt declares them (reference §5).
pub fn capabilities() -> Capabilities {
    Capabilities {
        dialect: SqlDialect {
            // dlt folds PostgreSQL names to lower case only under case-insensitive naming
            // conventions, whose names are lower case already; under case-sensitive ones
            // (`sql_cs_v1`, `duck_case`, `direct`) it keeps them (`adjust_capabilities`). Either
            // way the quoted name is the name as the package has it: no folding (the default).
            // PostgreSQL's 63 are bytes of UTF-8.
            identifier_length_in_bytes: true,
            create_unique_constraints: true,
            unlogged_staging: true,
            supports_set_schema: true,
            case_sensitive_identifiers: true,
            followup_work_mem: Some("64MB"),
            row_locator: Some("ctid"),
            // Every edge, in the migration's transaction; timestamps keep at most 6 digits.
            widening: berth_plan::widen::Lattice {
                max_second_digits: 6,
                ..berth_plan::widen::Lattice::ALL
            },
            ..SqlDialect::new(
                "postgres",
                Arc::new(PostgresTypeMapper),
                Arc::new(berth_plan::NoQualify(PostgreSqlDialect {})),
                Arc::new(berth_plan::sqlparser::dialect::PostgreSqlDialect {}),
            )
            .with_max_identifier_length(63)
        },
        loader_formats: FileFormat::READABLE.to_vec(),
        replace_strategies: berth_plan::ALL_REPLACE_STRATEGIES.to_vec(),
        merge_strategies: berth_plan::PLANNED_MERGE_STRATEGIES.to_vec(),
        supports_ddl_transactions: true,
        supports_transactions: true,
        max_parallel_jobs: None,
        row_group_parts: true,
    }
}

/// Idle connections kept for reuse.
const MAX_IDLE_SESSIONS: usize = 16;

/// A PostgreSQL database as a destination.
pub struct PostgresDestination {
    config: tokio_postgres::Config,
    /// rustls configuration, `None` for `sslmode=disable`.
    tls: Option<tokio_postgres_rustls::MakeRustlsConnect>,
    display: String,
    caps: Capabilities,
    /// Connections that finished their work cleanly, for the next job.
    idle: std::sync::Mutex<Vec<Session>>,
}

impl std::fmt::Debug for PostgresDestination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // tokio_postgres::Config's Debug redacts the password too, but show only what we chose.
        f.debug_struct("PostgresDestination")
            .field("location", &self.display)
            .finish_non_exhaustive()
    }
}

/// `url` with the password and secret parameters replaced by `***`.
pub fn redact_url(url: &str) -> String {
    berth_model::redact::redact_url(url)
}

/// A connection and the task driving it; dropping it closes both.
struct Session {
    client: Client,
    driver: berth_model::task::OwnedTask<()>,
}

/// The advisory lock key of loading `load_id` into `dataset`: FNV-1a over both, so every berth
/// version and process agrees on it.
fn load_lock_key(dataset: &str, load_id: &str) -> i64 {
    lock_key(b"berth-load\0", dataset, load_id)
}

/// The advisory lock key of writing `dataset.table` (see [`Destination::lock_tables`]).
fn table_lock_key(dataset: &str, table: &str) -> i64 {
    lock_key(b"berth-table\0", dataset, table)
}

/// The advisory lock keys every transaction writing for the load of `load_id` into `dataset`
/// holds shared until it ends: the package's fence and the fence of each final table it writes.
/// A later load takes a fence exclusively (and lets go at once) to wait for the transactions of
/// a killed run that the server is still finishing (see [`Destination::load_fence`]).
fn fence_keys(dataset: &str, load_id: &str, tables: &[String]) -> Vec<i64> {
    let mut keys: Vec<i64> = std::iter::once(package_fence_key(dataset, load_id))
        .chain(tables.iter().map(|t| table_fence_key(dataset, t)))
        .collect();
    keys.sort_unstable();
    keys.dedup();
    keys
}

fn package_fence_key(dataset: &str, load_id: &str) -> i64 {
    lock_key(b"berth-fence\0", dataset, load_id)
}

fn table_fence_key(dataset: &str, table: &str) -> i64 {
    lock_key(b"berth-table-fence\0", dataset, table)
}

/// `SELECT pg_advisory_xact_lock_shared(k1), …` for `keys`, in their order.
fn fence_statement(keys: &[i64]) -> Statement {
    let calls: Vec<String> = keys
        .iter()
        .map(|k| format!("pg_advisory_xact_lock_shared({k})"))
        .collect();
    parse_skeleton(&format!("SELECT {}", calls.join(", ")))
}

/// One statement berth wrote itself (a skeleton, or calls on integers), parsed as PostgreSQL.
fn parse_skeleton(sql: &str) -> Statement {
    berth_plan::sqlparser::parser::Parser::parse_sql(&berth_plan::sqlparser::dialect::PostgreSqlDialect {}, sql)
        .ok()
        .and_then(|mut s| s.pop())
        .unwrap_or_else(|| unreachable!("berth's own statement `{sql}` parses"))
}

/// The fence a transaction writing `table` of `dataset` for the load of `load_id` opens with:
/// the package's, and the table's when it is a final table (`dataset` is the final one).
fn job_fence(final_dataset: &str, load_id: &str, dataset: &str, table: &str) -> String {
    let final_tables = if dataset == final_dataset {
        vec![table.to_string()]
    } else {
        Vec::new()
    };
    fence_statement(&fence_keys(final_dataset, load_id, &final_tables)).to_string()
}

fn lock_key(kind: &[u8], dataset: &str, name: &str) -> i64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in kind
        .iter()
        .chain(dataset.as_bytes())
        .chain(b"\0")
        .chain(name.as_bytes())
    {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    i64::from_ne_bytes(hash.to_ne_bytes())
}

/// What the loader does about a PostgreSQL error, from its SQLSTATE.
pub fn classify(error: &tokio_postgres::Error) -> ErrorKind {
    let Some(code) = error.code() else {
        // No SQLSTATE: the connection broke or could not be made.
        return ErrorKind::Transient;
    };
    let code = code.code();
    // Two sessions creating the same schema or table at once (`CREATE … IF NOT EXISTS` is not
    // atomic in PostgreSQL) collide on a catalog index; the loser's retry finds it created.
    let catalog_race = code == "23505"
        && error
            .as_db_error()
            .and_then(tokio_postgres::error::DbError::constraint)
            .is_some_and(|c| c.starts_with("pg_"));
    // Another session created the schema or table between berth's catalog read and its CREATE
    // (42P06, 42P07), or won the race for the table's row type in `pg_type` (42710, "type …
    // already exists"): a retry reads the catalog again and finds it.
    if catalog_race || matches!(code, "42P06" | "42P07" | "42710") {
        return ErrorKind::Transient;
    }
    match code {
        "42P01" | "3F000" => ErrorKind::UndefinedRelation,
        "40001" | "40P01" | "57P01" | "57P02" | "57P03" => ErrorKind::Transient,
        c if c.starts_with("08") || c.starts_with("53") => ErrorKind::Transient,
        c if c.starts_with("22") || c.starts_with("23") || c.starts_with("42") => ErrorKind::Terminal,
        c if c.starts_with("XX") => ErrorKind::Bug,
        _ => ErrorKind::Terminal,
    }
}

fn message(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => {
            let mut text = format!("{} (SQLSTATE {})", db.message(), db.code().code());
            if let Some(detail) = db.detail() {
                text.push_str(&format!("; {detail}"));
            }
            if let Some(column) = db.column() {
                text.push_str(&format!("; column `{column}`"));
            } else if let Some(place) = db.where_() {
                // COPY's errors name the column here: "COPY t, line 2, column amount".
                text.push_str(&format!("; {place}"));
            }
            text
        }
        None => {
            // The driver's own text hides the cause ("error performing TLS handshake"): add it.
            let mut text = error.to_string();
            let mut source = std::error::Error::source(error);
            while let Some(cause) = source {
                let cause_text = cause.to_string();
                if !text.contains(&cause_text) {
                    text.push_str(&format!(": {cause_text}"));
                }
                source = cause.source();
            }
            text
        }
    }
}

impl PostgresDestination {
    /// From `postgres://user:password@host:port/database[?sslmode=…&sslrootcert=…]`: libpq's
    /// URL form and `sslmode` semantics (see [`tls`]; the default is `prefer`).
    pub fn from_url(url: &str) -> Result<Self> {
        let display = redact_url(url);
        let bad = |reason: String| Error::Config {
            destination: display.clone(),
            reason,
        };
        let mut parsed = url::Url::parse(url).map_err(|e| bad(e.to_string()))?;
        // The TLS parameters are berth's to interpret; tokio-postgres knows only some of them.
        let mut options = tls::TlsOptions::default();
        let mut kept = Vec::new();
        for (key, value) in parsed.query_pairs() {
            match key.as_ref() {
                "sslmode" => options.mode = value.parse().map_err(bad)?,
                "sslrootcert" => options.root_cert = Some(value.into_owned()),
                "sslcert" => options.client_cert = Some(value.into_owned().into()),
                "sslkey" => options.client_key = Some(value.into_owned().into()),
                // libpq's, and dlt's credentials carry it: berth's text is UTF-8 (Arrow's is).
                "client_encoding" if is_utf8_name(&value) => {}
                "client_encoding" => {
                    return Err(bad(format!(
                        "client_encoding={value}: berth talks to PostgreSQL in UTF-8, the only encoding \
                         its text has; leave the parameter out or set it to UTF8"
                    )));
                }
                _ => kept.push((key.into_owned(), value.into_owned())),
            }
        }
        if kept.is_empty() {
            parsed.set_query(None);
        } else {
            parsed.query_pairs_mut().clear().extend_pairs(&kept);
        }
        let mut config: tokio_postgres::Config = query_host_first(&parsed, &kept)
            .parse()
            .map_err(|e: tokio_postgres::Error| bad(format!("not a valid PostgreSQL URL: {e}")))?;
        // libpq never negotiates TLS over a Unix-domain socket, whatever `sslmode` says (the
        // server refuses it there); a TLS connector would fail for want of a host name.
        let unix_only = !config.get_hosts().is_empty() && config.get_hosts().iter().all(is_unix_socket);
        if unix_only {
            options.mode = tls::SslMode::Disable;
        }
        config.ssl_mode(options.mode.driver_mode());
        // A server that accepts the connection and never answers must not hold a load forever.
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(DEFAULT_CONNECT_TIMEOUT);
        }
        warn_if_password_unprotected(&config, options.mode, &display);
        // A peer that vanished (network cut, server host gone) is noticed by TCP keepalives.
        config.keepalives(true);
        config.keepalives_idle(std::time::Duration::from_secs(60));
        let tls = options
            .client_config()
            .map_err(bad)?
            .map(tokio_postgres_rustls::MakeRustlsConnect::new);
        Ok(Self {
            config,
            tls,
            display,
            caps: capabilities(),
            idle: std::sync::Mutex::default(),
        })
    }

    /// The same connection settings with other capabilities: a server that speaks PostgreSQL's
    /// protocol with another dialect (Redshift) reuses the sessions, `execute` and `query`.
    pub fn with_capabilities(mut self, caps: Capabilities) -> Self {
        self.caps = caps;
        self
    }

    /// Takes the session-level advisory lock `key` (shared or exclusive) on `session`, waiting,
    /// after saying so with `waiting`, while another session holds it.
    async fn advisory_lock(
        &self,
        session: &Session,
        key: i64,
        exclusive: bool,
        waiting: impl FnOnce() -> String,
    ) -> Result<()> {
        let (try_lock, wait) = if exclusive {
            ("SELECT pg_try_advisory_lock($1)", "SELECT pg_advisory_lock($1)")
        } else {
            (
                "SELECT pg_try_advisory_lock_shared($1)",
                "SELECT pg_advisory_lock_shared($1)",
            )
        };
        let taken: bool = session
            .client
            .query_one(try_lock, &[&key])
            .await
            .map_err(|e| self.error("taking an advisory lock", &e))?
            .get(0);
        if !taken {
            tracing::info!("{}", waiting());
            session
                .client
                .execute(wait, &[&key])
                .await
                .map_err(|e| self.error("waiting for an advisory lock", &e))?;
        }
        Ok(())
    }

    /// Waits until no transaction holds the fence `key` (see [`fence_keys`]): takes it
    /// exclusively on `session` and lets go at once.
    async fn pass_fence(&self, session: &Session, key: i64, what: &str) -> Result<()> {
        self.advisory_lock(session, key, true, || {
            format!("waiting for the transactions of an earlier run of {what} to end on the server")
        })
        .await?;
        session
            .client
            .execute("SELECT pg_advisory_unlock($1)", &[&key])
            .await
            .map_err(|e| self.error("checking for transactions of a stopped run", &e))?;
        Ok(())
    }

    fn error(&self, context: impl Into<String>, error: &tokio_postgres::Error) -> Error {
        Error::Database {
            kind: classify(error),
            destination: self.display.clone(),
            context: context.into(),
            message: message(error),
        }
    }

    /// An idle connection, or a new one.
    async fn connect(&self) -> Result<Session> {
        loop {
            let reused = self
                .idle
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .pop();
            match reused {
                // Closed when the server went away or the runtime that drove it ended.
                Some(session) if session.client.is_closed() || session.driver.is_finished() => continue,
                Some(session) => return Ok(session),
                None => break,
            }
        }
        self.open_session().await
    }

    /// Returns a connection whose work ended cleanly (committed or rolled back) for reuse.
    fn release(&self, session: Session) {
        let mut idle = self.idle.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if idle.len() < MAX_IDLE_SESSIONS && !session.client.is_closed() {
            idle.push(session);
        }
    }

    async fn open_session(&self) -> Result<Session> {
        fn drive<F>(connection: F) -> berth_model::task::OwnedTask<()>
        where
            F: std::future::Future<Output = std::result::Result<(), tokio_postgres::Error>> + Send + 'static,
        {
            berth_model::task::spawn_owned(async move {
                if let Err(e) = connection.await {
                    tracing::debug!("postgres connection ended: {e}");
                }
            })
        }
        let fail = |e: tokio_postgres::Error| self.error("connect", &e);
        let connecting = async {
            Ok::<_, Error>(match &self.tls {
                Some(tls) => {
                    let (client, connection) = self.config.connect(tls.clone()).await.map_err(fail)?;
                    (client, drive(connection))
                }
                None => {
                    let (client, connection) = self.config.connect(NoTls).await.map_err(fail)?;
                    (client, drive(connection))
                }
            })
        };
        // tokio-postgres times the TCP connect only; a server that accepts and then never
        // answers the startup would hold the load forever, so the whole handshake is timed.
        let limit = self
            .config
            .get_connect_timeout()
            .copied()
            .unwrap_or(DEFAULT_CONNECT_TIMEOUT);
        let (client, driver) = tokio::time::timeout(limit, connecting)
            .await
            .map_err(|_| Error::Database {
                kind: ErrorKind::Transient,
                destination: self.display.clone(),
                context: "connect".into(),
                message: format!(
                    "no answer from the server within {} s (connect_timeout)",
                    limit.as_secs()
                ),
            })??;
        Ok(Session { client, driver })
    }

    /// Target column types of `dataset.table`, by stored column name.
    async fn column_types(&self, session: &Session, dataset: &str, table: &str) -> Result<HashMap<String, PgType>> {
        let dialect = &self.caps.dialect;
        let builder =
            sql::information_schema_scan(dialect, &["column_name", "udt_name", "table_schema", "table_name"])?
                .filter(
                    sql::column(dialect, "table_schema")
                        .eq(lit(dialect.stored_name(dataset)))
                        .and(sql::column(dialect, "table_name").eq(lit(dialect.stored_name(table)))),
                )
                .and_then(|b| {
                    b.project(vec![
                        sql::column(dialect, "column_name"),
                        sql::column(dialect, "udt_name"),
                    ])
                })
                .map_err(berth_plan::Error::from)?;
        let query = sql::to_query(dialect, builder)?.to_string();
        let rows = session
            .client
            .query(&query, &[])
            .await
            .map_err(|e| self.error(format!("reading the columns of {dataset}.{table}"), &e))?;
        rows.iter()
            .map(|row| {
                let name: String = row.get(0);
                let udt: String = row.get(1);
                let pg = PgType::from_udt_name(&udt).ok_or_else(|| Error::Database {
                    kind: ErrorKind::Terminal,
                    destination: self.display.clone(),
                    context: format!("loading into {dataset}.{table}"),
                    message: format!("column `{name}` has type `{udt}`, which berth cannot write"),
                })?;
                Ok((name, pg))
            })
            .collect()
    }
}

fn copy_statement(dialect: &SqlDialect, dataset: &str, table: &str, columns: &[String]) -> Statement {
    let mut statement = parse_skeleton("COPY t (c) FROM STDIN WITH (FORMAT binary)");
    if let Statement::Copy {
        source:
            berth_plan::sqlparser::ast::CopySource::Table {
                table_name,
                columns: cols,
            },
        ..
    } = &mut statement
    {
        *table_name = dialect.table_name(dataset, table);
        *cols = columns.iter().map(|c| dialect.ident(c)).collect();
    }
    statement
}

/// A statement parsed from a constant `sql` whose one table (in FROM) becomes `table`.
fn on_table(sql: &str, table: ObjectName) -> Statement {
    use berth_plan::sqlparser::ast::{FromTable, SetExpr, TableFactor, TableWithJoins};
    let mut statement = parse_skeleton(sql);
    let relations: Vec<&mut TableWithJoins> = match &mut statement {
        Statement::Delete(delete) => {
            let (FromTable::WithFromKeyword(tables) | FromTable::WithoutKeyword(tables)) = &mut delete.from;
            tables.iter_mut().collect()
        }
        Statement::Query(query) => match query.body.as_mut() {
            SetExpr::Select(select) => select.from.iter_mut().collect(),
            _ => Vec::new(),
        },
        _ => Vec::new(),
    };
    for relation in relations {
        if let TableFactor::Table { name, .. } = &mut relation.relation {
            *name = table.clone();
        }
    }
    statement
}

/// Any value as its raw binary form, to decode by type.
struct Raw<'a>(&'a [u8]);

impl<'a> FromSql<'a> for Raw<'a> {
    fn from_sql(_: &Type, raw: &'a [u8]) -> std::result::Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Raw(raw))
    }
    fn accepts(_: &Type) -> bool {
        true
    }
}

fn base_type(ty: &Type) -> &Type {
    match ty.kind() {
        Kind::Domain(base) => base_type(base),
        _ => ty,
    }
}

fn be<const N: usize>(raw: &[u8]) -> std::result::Result<[u8; N], String> {
    raw.try_into()
        .map_err(|_| format!("expected {N} bytes, got {}", raw.len()))
}

/// Constrained numerics (`numeric(p, s)` with p ≤ 38) as `Decimal128`; others (wider, unconstrained,
/// NaN or infinite values) stay decimal text.
fn numeric_array(text: ArrayRef, type_modifier: i32) -> ArrayRef {
    if type_modifier < 4 {
        return text;
    }
    let precision = ((type_modifier - 4) >> 16) & 0xFFFF;
    let scale = (type_modifier - 4) & 0xFFFF;
    let (Ok(p), Ok(s)) = (u8::try_from(precision), i8::try_from(scale)) else {
        return text;
    };
    if p == 0 || p > 38 {
        return text;
    }
    let options = arrow::compute::CastOptions {
        safe: false,
        ..Default::default()
    };
    arrow::compute::cast_with_options(&text, &arrow::datatypes::DataType::Decimal128(p, s), &options).unwrap_or(text)
}

/// Decodes a query result into one record batch, typed by the result's column types.
fn rows_to_batch(
    rows: &[tokio_postgres::Row],
    columns: &[tokio_postgres::Column],
) -> std::result::Result<RecordBatch, String> {
    let mut fields = Vec::with_capacity(columns.len());
    let mut arrays: Vec<ArrayRef> = Vec::with_capacity(columns.len());
    for (index, column) in columns.iter().enumerate() {
        let ty = base_type(column.type_());
        let values = rows
            .iter()
            .map(|r| r.try_get::<_, Option<Raw<'_>>>(index).map(|v| v.map(|r| r.0)))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())?;
        macro_rules! build {
            ($builder:expr, $convert:expr) => {{
                let mut builder = $builder;
                for value in &values {
                    match value {
                        Some(raw) => builder.append_value($convert(raw)?),
                        None => builder.append_null(),
                    }
                }
                Arc::new(builder.finish()) as ArrayRef
            }};
        }
        let utc = || Some(Arc::<str>::from("UTC"));
        let array = match *ty {
            Type::BOOL => build!(BooleanBuilder::new(), |r: &[u8]| Ok::<_, String>(r.first() == Some(&1))),
            Type::INT2 => build!(Int16Builder::new(), |r: &[u8]| be::<2>(r).map(i16::from_be_bytes)),
            Type::INT4 => build!(Int32Builder::new(), |r: &[u8]| be::<4>(r).map(i32::from_be_bytes)),
            Type::INT8 | Type::OID => build!(Int64Builder::new(), |r: &[u8]| be::<8>(r).map(i64::from_be_bytes)),
            Type::FLOAT4 => build!(Float32Builder::new(), |r: &[u8]| be::<4>(r).map(f32::from_be_bytes)),
            Type::FLOAT8 => build!(Float64Builder::new(), |r: &[u8]| be::<8>(r).map(f64::from_be_bytes)),
            Type::BYTEA => build!(BinaryBuilder::new(), |r: &[u8]| Ok::<_, String>(r.to_vec())),
            Type::TIMESTAMPTZ => build!(
                TimestampMicrosecondBuilder::new().with_timezone_opt(utc()),
                |r: &[u8]| be::<8>(r).map(|b| i64::from_be_bytes(b) + 946_684_800_000_000)
            ),
            Type::TIMESTAMP => build!(TimestampMicrosecondBuilder::new(), |r: &[u8]| be::<8>(r)
                .map(|b| i64::from_be_bytes(b) + 946_684_800_000_000)),
            Type::DATE => build!(Date32Builder::new(), |r: &[u8]| be::<4>(r)
                .map(|b| i32::from_be_bytes(b) + 10_957)),
            Type::TIME => build!(Time64MicrosecondBuilder::new(), |r: &[u8]| be::<8>(r)
                .map(i64::from_be_bytes)),
            Type::NUMERIC => numeric_array(
                build!(StringBuilder::new(), copy::decode_numeric),
                column.type_modifier(),
            ),
            Type::JSONB => build!(StringBuilder::new(), |r: &[u8]| String::from_utf8(
                r.get(1..).unwrap_or_default().to_vec()
            )
            .map_err(|e| e.to_string())),
            Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::JSON | Type::CHAR => {
                build!(StringBuilder::new(), |r: &[u8]| String::from_utf8(r.to_vec())
                    .map_err(|e| e.to_string()))
            }
            ref other => {
                return Err(format!(
                    "column `{}` has type {other}, which berth cannot read",
                    column.name()
                ));
            }
        };
        fields.push(Field::new(column.name(), array.data_type().clone(), true));
        arrays.push(array);
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays).map_err(|e| e.to_string())
}

#[async_trait]
impl Destination for PostgresDestination {
    fn capabilities(&self) -> &Capabilities {
        &self.caps
    }

    /// A session-level advisory lock on its own connection: released when the lock is dropped
    /// (the connection closes), or when the process dies (the server closes it).
    async fn lock_load(&self, package: &LoadPackage, dataset: &str) -> Result<Option<LoadLock>> {
        let load_id = &package.load_id;
        let session = self.open_session().await?;
        let key = load_lock_key(dataset, load_id);
        self.advisory_lock(&session, key, true, || {
            format!("another berth process is loading package {load_id} into {dataset}; waiting for it to finish")
        })
        .await?;
        // A killed run's last transaction may still be running (even committing) on the server.
        let what = format!("package {load_id} into {dataset}");
        self.pass_fence(&session, package_fence_key(dataset, load_id), &what)
            .await?;
        Ok(Some(LoadLock::new(session)))
    }

    /// Session-level advisory locks (shared or exclusive) on one connection of their own, one per
    /// table, taken in key order; released when the connection closes.
    async fn lock_tables(&self, dataset: &str, tables: &[TableLock]) -> Result<Option<LoadLock>> {
        if tables.is_empty() {
            return Ok(None);
        }
        let merged = TableLock::merged(tables.iter().cloned());
        let mut keyed: Vec<(i64, &TableLock)> = merged.iter().map(|t| (table_lock_key(dataset, &t.table), t)).collect();
        keyed.sort_by_key(|(key, _)| *key);
        let session = self.open_session().await?;
        for (key, lock) in keyed {
            self.advisory_lock(&session, key, lock.exclusive, || {
                format!(
                    "another berth process is writing {dataset}.{}; waiting for its load to finish",
                    lock.table
                )
            })
            .await?;
        }
        for lock in &merged {
            let what = format!("a load into {dataset}.{}", lock.table);
            self.pass_fence(&session, table_fence_key(dataset, &lock.table), &what)
                .await?;
        }
        Ok(Some(LoadLock::new(session)))
    }

    /// The parts' rows are told apart by their transaction: every part commits its rows and its
    /// journal row in one transaction, so the rows whose `xmin` is a journal row's `xmin` are
    /// exactly that part's (nothing else updates rows of a table while a load holds it). The
    /// count must match the journal's, or nothing is removed.
    async fn discard_job(&self, job: DiscardJob<'_>) -> Result<u64> {
        let dialect = &self.caps.dialect;
        let journal = dialect.table_name(job.journal_dataset, JOURNAL_TABLE);
        let parts = on_table(
            "SELECT xmin::text, rows FROM t WHERE load_id = $1 AND job_id = $2 FOR UPDATE",
            journal.clone(),
        )
        .to_string();
        let forget = on_table("DELETE FROM t WHERE load_id = $1 AND job_id = $2", journal).to_string();
        let remove = on_table(
            "DELETE FROM t WHERE xmin::text = ANY($1)",
            dialect.table_name(job.dataset, job.table),
        )
        .to_string();
        let context = format!(
            "removing the committed parts of failed job `{}` from `{}.{}`",
            job.display, job.dataset, job.table
        );
        let mut session = self.connect().await?;
        let tx = session
            .client
            .transaction()
            .await
            .map_err(|e| self.error("begin", &e))?;
        let fence = job_fence(job.journal_dataset, job.load_id, job.dataset, job.table);
        tx.batch_execute(&fence)
            .await
            .map_err(|e| self.error(context.clone(), &e))?;
        let committed = match tx.query(&parts, &[&job.load_id, &job.job_id]).await {
            Ok(rows) => rows,
            Err(e) if classify(&e) == ErrorKind::UndefinedRelation => Vec::new(),
            Err(e) => return Err(self.error(context, &e)),
        };
        if committed.is_empty() {
            drop(tx);
            self.release(session);
            return Ok(0);
        }
        let xids: Vec<String> = committed.iter().map(|row| row.get(0)).collect();
        let journaled: i64 = committed.iter().map(|row| row.get::<_, i64>(1)).sum();
        let removed = tx
            .execute(&remove, &[&xids])
            .await
            .map_err(|e| self.error(context.clone(), &e))?;
        if i64::try_from(removed).ok() != Some(journaled) {
            drop(tx);
            return Err(Error::Database {
                kind: ErrorKind::Terminal,
                destination: self.display.clone(),
                context,
                message: format!(
                    "{removed} rows carry the transaction ids of the job's {} committed part(s), whose journal records {journaled}; nothing was removed",
                    xids.len()
                ),
            });
        }
        tx.execute(&forget, &[&job.load_id, &job.job_id])
            .await
            .map_err(|e| self.error(context.clone(), &e))?;
        tx.commit().await.map_err(|e| self.error(context, &e))?;
        self.release(session);
        Ok(removed)
    }

    fn load_fence(&self, dataset: &str, load_id: &str, tables: &[String]) -> Vec<SqlStatement> {
        vec![fence_statement(&fence_keys(dataset, load_id, tables)).into()]
    }

    fn describe(&self) -> String {
        self.display.clone()
    }

    async fn execute(&self, statements: Vec<SqlStatement>, transactional: bool) -> Result<()> {
        let mut session = self.connect().await?;
        if transactional {
            let tx = session
                .client
                .transaction()
                .await
                .map_err(|e| self.error("begin", &e))?;
            for statement in &statements {
                // Sent with its secrets; named in errors as printed (secrets as `***`).
                tx.batch_execute(&statement.text_to_send())
                    .await
                    .map_err(|e| self.error(statement.to_string(), &e))?;
            }
            tx.commit().await.map_err(|e| self.error("commit", &e))?;
        } else {
            for statement in &statements {
                session
                    .client
                    .batch_execute(&statement.text_to_send())
                    .await
                    .map_err(|e| self.error(statement.to_string(), &e))?;
            }
        }
        self.release(session);
        Ok(())
    }

    async fn query(&self, statement: Statement) -> Result<Vec<RecordBatch>> {
        let session = self.connect().await?;
        let text = statement.to_string();
        let prepared = session
            .client
            .prepare(&text)
            .await
            .map_err(|e| self.error(text.clone(), &e))?;
        let rows = session
            .client
            .query(&prepared, &[])
            .await
            .map_err(|e| self.error(text.clone(), &e))?;
        self.release(session);
        let batch = rows_to_batch(&rows, prepared.columns()).map_err(|e| Error::Database {
            kind: ErrorKind::Terminal,
            destination: self.display.clone(),
            context: text,
            message: e,
        })?;
        Ok(vec![batch])
    }

    async fn load_job(&self, job: LoadJob<'_>) -> Result<JobMetrics> {
        let mut display = job.package.job_display(job.job);
        if job.part != JobPart::Whole {
            display = format!("{display} ({})", job.part);
        }
        let context = format!("loading `{display}` into `{}.{}`", job.dataset, job.table.name);
        let mut session = self.connect().await?;
        let types = self.column_types(&session, job.dataset, &job.table.name).await?;
        let mut reader = read::open_job_part(job.package, job.job, &job.read_options, job.part.slice()).await?;
        let dialect = &self.caps.dialect;
        let (keep, targets) = self.copy_targets(&reader.schema, &job, &types, &context)?;
        let columns: Vec<String> = targets.iter().map(|(n, _)| n.clone()).collect();
        let statement = copy_statement(dialect, job.dataset, &job.table.name, &columns).to_string();

        let tx = session
            .client
            .transaction()
            .await
            .map_err(|e| self.error("begin", &e))?;
        let fence = job_fence(job.journal_dataset, &job.package.load_id, job.dataset, &job.table.name);
        tx.batch_execute(&fence)
            .await
            .map_err(|e| self.error(context.clone(), &e))?;
        let sink = tx
            .copy_in::<_, bytes::Bytes>(&statement)
            .await
            .map_err(|e| self.error(context.clone(), &e))?;
        futures::pin_mut!(sink);
        let chunk_bytes = job.read_options.chunk_bytes.max(1 << 12);
        let mut buffer = BytesMut::new();
        buffer.extend_from_slice(copy::HEADER);
        let mut timings = JobTimings::default();
        // The primary keys as they are sent, for a merge to know them unique without a query.
        let key_index = observed_key_column(job.table).and_then(|key| reader.schema.index_of(key).ok());
        let mut keys = key_index.map(|_| KeyRun::default());
        let started = Instant::now();
        loop {
            let decoding = Instant::now();
            let Some(batch) = reader.stream.next().await else { break };
            timings.decode += decoding.elapsed();
            let batch = batch?;
            if let (Some(run), Some(index)) = (keys.as_mut(), key_index) {
                run.observe(batch.column(index).as_ref());
            }
            let batch = batch
                .project(&keep)
                .map_err(|e| Error::Internal(format!("projecting a batch of {display}: {e}")))?;
            // Values the target column cannot take: the job fails terminally, naming them.
            let bad_data = |message| Error::Database {
                kind: ErrorKind::Terminal,
                destination: self.display.clone(),
                context: context.clone(),
                message,
            };
            let encoding = Instant::now();
            let prepared = copy::prepare_batch(&batch, &targets).map_err(bad_data)?;
            let encoder = copy::Encoder::new(&prepared, batch.num_rows()).map_err(bad_data)?;
            timings.encode += encoding.elapsed();
            // Encode in slices of about a chunk: the buffer never holds a whole batch.
            let step = encoder.rows_for(chunk_bytes);
            let mut start = 0;
            while start < encoder.rows() {
                let end = (start + step).min(encoder.rows());
                let encoding = Instant::now();
                encoder.encode(start..end, &mut buffer).map_err(bad_data)?;
                timings.encode += encoding.elapsed();
                start = end;
                if buffer.len() >= chunk_bytes {
                    sink.send(buffer.split().freeze())
                        .await
                        .map_err(|e| self.error(context.clone(), &e))?;
                }
            }
        }
        buffer.extend_from_slice(&copy::TRAILER);
        sink.send(buffer.split().freeze())
            .await
            .map_err(|e| self.error(context.clone(), &e))?;
        let rows = sink.finish().await.map_err(|e| self.error(context.clone(), &e))?;
        // The journal row commits with the rows: after a crash the part is either both or neither.
        let journal = journal_insert_for(dialect, &job, rows).to_string();
        tx.batch_execute(&journal)
            .await
            .map_err(|e| self.error(format!("journaling {display}"), &e))?;
        tx.commit()
            .await
            .map_err(|e| self.error(format!("committing {display}"), &e))?;
        self.release(session);
        timings.transfer = started.elapsed().saturating_sub(timings.decode + timings.encode);
        Ok(JobMetrics {
            rows,
            bytes: job.job.size,
            timings,
            // Only a run that counted every row COPY took says anything about them.
            keys: keys.filter(|run| run.rows == rows),
        })
    }
}

impl PostgresDestination {
    /// The file's columns that the table has (their indexes in `schema`), each with its catalog
    /// type: what a job's COPY sends.
    #[expect(clippy::type_complexity, reason = "indexes and their targets, used together once")]
    fn copy_targets(
        &self,
        schema: &arrow::datatypes::Schema,
        job: &LoadJob<'_>,
        types: &HashMap<String, PgType>,
        context: &str,
    ) -> Result<(Vec<usize>, Vec<(String, PgType)>)> {
        let mut keep = Vec::new();
        let mut targets = Vec::new();
        for (index, field) in schema.fields().iter().enumerate() {
            if !job.table.columns.get(field.name()).is_some_and(|c| c.is_complete()) {
                continue;
            }
            let stored = self.caps.dialect.stored_name(field.name());
            let pg = types.get(&stored).copied().ok_or_else(|| Error::Database {
                kind: ErrorKind::Terminal,
                destination: self.display.clone(),
                context: context.to_string(),
                message: format!("column `{}` is missing from the table", field.name()),
            })?;
            keep.push(index);
            targets.push((field.name().clone(), pg));
        }
        Ok((keep, targets))
    }
}

/// The file, in the server's data directory, that [`PostgresDestination::server_copy_ceiling`]
/// writes and reads.
const CEILING_FILE: &str = "berth_ceiling.copy";

impl PostgresDestination {
    /// Asks the server to write all dirty buffers now (`CHECKPOINT`), so that a timed load that
    /// follows does not pay for an earlier one. Needs superuser or `pg_checkpoint`; without it this
    /// does nothing.
    pub async fn checkpoint(&self) -> Result<()> {
        let session = self.connect().await?;
        if let Err(e) = session.client.batch_execute("CHECKPOINT").await {
            tracing::debug!("CHECKPOINT refused: {}", message(&e));
        }
        self.release(session);
        Ok(())
    }

    /// PostgreSQL's own ingest limit for the rows of `dataset.table`: the server writes them to
    /// `streams` binary COPY files in its data directory (equal ranges of the table's pages), then
    /// reads those files into an empty copy of the table (`COPY … FROM '<file>' (FORMAT binary)`),
    /// one session per file, all at once, no client involved. Returns how long the reads took.
    /// One stream is the classic single-stream limit; as many streams as berth's connections show
    /// what the server itself can take in parallel on the same cores. Needs superuser or
    /// `pg_read_server_files` + `pg_write_server_files`.
    pub async fn server_copy_ceiling(&self, dataset: &str, table: &str, streams: usize) -> Result<std::time::Duration> {
        let dialect = &self.caps.dialect;
        let source = dialect.table_name(dataset, table);
        let target = dialect.table_name(dataset, &format!("{table}__berth_ceiling"));
        let streams = streams.max(1);
        let mut sessions = Vec::with_capacity(streams);
        for _ in 0..streams {
            sessions.push(self.connect().await?);
        }
        let client = &sessions[0].client;
        let run = |client, sql| self.ceiling_step(client, sql);
        let row = client
            .query_one(
                "SELECT current_setting('data_directory'), pg_relation_size($1::text::regclass) / current_setting('block_size')::bigint",
                &[&source.to_string()],
            )
            .await
            .map_err(|e| self.error("reading the server's data directory", &e))?;
        let (directory, pages): (String, i64) = (row.get(0), row.get(1));
        // A literal, quoted by sqlparser's printer.
        let file =
            |i: usize| berth_plan::sqlparser::ast::Value::SingleQuotedString(format!("{directory}/{CEILING_FILE}.{i}"));
        let share = (pages / streams as i64) + 1;
        let mut written = 0;
        for i in 0..streams {
            // A TID range scan per share of the pages; the last share takes what is left.
            let from = share * i as i64;
            let to = if i + 1 == streams {
                String::new()
            } else {
                format!(" AND ctid < '({},0)'", from + share)
            };
            let part = format!("SELECT * FROM {source} WHERE ctid >= '({from},0)'{to}");
            written += run(client, format!("COPY ({part}) TO {} WITH (FORMAT binary)", file(i))).await?;
        }
        run(client, format!("DROP TABLE IF EXISTS {target}")).await?;
        run(client, format!("CREATE TABLE {target} (LIKE {source})")).await?;
        if let Err(e) = client.batch_execute("CHECKPOINT").await {
            tracing::debug!("CHECKPOINT refused: {}", message(&e));
        }
        let started = std::time::Instant::now();
        let reads = sessions.iter().enumerate().map(|(i, s)| {
            run(
                &s.client,
                format!("COPY {target} FROM {} WITH (FORMAT binary)", file(i)),
            )
        });
        let read: u64 = futures::future::try_join_all(reads).await?.into_iter().sum();
        let elapsed = started.elapsed();
        run(client, format!("DROP TABLE {target}")).await?;
        for i in 0..streams {
            // Leave empty files rather than a copy of the data.
            run(client, format!("COPY (SELECT 1 WHERE false) TO {}", file(i))).await?;
        }
        for session in sessions {
            self.release(session);
        }
        if read != written {
            return Err(Error::Database {
                kind: ErrorKind::Bug,
                destination: self.display.clone(),
                context: format!("measuring the server's COPY speed of {source} in {streams} streams"),
                message: format!("the streams read {read} rows of the {written} written"),
            });
        }
        Ok(elapsed)
    }

    /// Runs one statement of [`Self::server_copy_ceiling`]; the rows it wrote or read.
    async fn ceiling_step(&self, client: &Client, sql: String) -> Result<u64> {
        client
            .execute(&sql, &[])
            .await
            .map_err(|e| self.error(format!("measuring the server's COPY speed: {sql}"), &e))
    }
}

/// The table name as an AST, for callers building their own statements.
pub fn table_name(dataset: &str, table: &str) -> ObjectName {
    capabilities().dialect.table_name(dataset, table)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_redacted_and_tls_modes_checked() {
        let d = PostgresDestination::from_url("postgres://u:s3cret@localhost:5432/db").unwrap();
        assert!(!d.describe().contains("s3cret") && !format!("{d:?}").contains("s3cret"));
        let err = PostgresDestination::from_url("postgres://u:s3cret@localhost/db?sslmode=verify").unwrap_err();
        assert!(
            !err.to_string().contains("s3cret") && err.to_string().contains("verify-full"),
            "{err}"
        );
        let err =
            PostgresDestination::from_url("postgres://u:s3cret@localhost/db?sslmode=require&sslrootcert=/no/ca.pem")
                .unwrap_err();
        assert!(
            !err.to_string().contains("s3cret") && err.to_string().contains("/no/ca.pem"),
            "{err}"
        );
        let ok = PostgresDestination::from_url("postgres://u:s3cret@localhost/db?sslmode=require&application_name=x");
        assert!(ok.is_ok());
        // dlt's credentials may carry libpq's client_encoding: UTF-8 is what berth speaks.
        assert!(PostgresDestination::from_url("postgres://u@localhost/db?client_encoding=utf-8").is_ok());
        let err = PostgresDestination::from_url("postgres://u:s3cret@localhost/db?client_encoding=LATIN1").unwrap_err();
        assert!(
            matches!(err, Error::Config { .. }) && !err.to_string().contains("s3cret"),
            "{err}"
        );
    }

    #[test]
    fn copy_statement_quotes_and_keeps_case() {
        // Names come normalized by the package's naming convention: a case-sensitive one
        // (`sql_cs_v1`) keeps `My_Table`, and so does PostgreSQL, as with dlt.
        let d = &capabilities().dialect;
        let s = copy_statement(d, "DS", "My\"Table", &["a".into(), "B".into()]).to_string();
        assert_eq!(s, r#"COPY "DS"."My""Table" ("a", "B") FROM STDIN (FORMAT binary)"#);
    }
}
