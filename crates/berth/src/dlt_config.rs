//! dlt's configuration: a destination named by its bare name (`postgres`, `duckdb`) gets its
//! credentials where dlt would look for them, with dlt's precedence, so a dlt user's existing
//! setup works unchanged and a password never needs to be on a command line:
//!
//! 1. the environment: `<PIPELINE_NAME>__DESTINATION__POSTGRES__CREDENTIALS…` (when the pipeline
//!    is known), then `DESTINATION__POSTGRES__CREDENTIALS` — a connection string, or its fields
//!    `…__CREDENTIALS__HOST`, `__PORT`, `__DATABASE`, `__USERNAME`, `__PASSWORD`,
//!    `__CONNECT_TIMEOUT`; a connection string's other parameters (`sslmode`, `sslrootcert`, a
//!    socket's `host`, …) go to the connection as they are, and a host that is a folder is a
//!    Unix-domain socket's (as libpq's `PGHOST=/var/run/postgresql`);
//! 2. the project's `.dlt/secrets.toml`, then `.dlt/config.toml` (`[destination.postgres.credentials]`
//!    or `destination.postgres.credentials = "postgresql://…"`, also under `[<pipeline_name>.…]`);
//! 3. the same files in the global dlt directory (`DLT_DATA_DIR`, else `~/.dlt/`);
//! 4. for PostgreSQL, what libpq users expect for fields still missing: `PGHOST`, `PGPORT`,
//!    `PGDATABASE`, `PGUSER`, `PGPASSWORD`, then the password file (`PGPASSFILE`, else
//!    `~/.pgpass`).
//!
//! A field set by an earlier provider wins over a later one, field by field, as in dlt. DuckDB's
//! `credentials` is the database file (default `<pipeline_name>.duckdb`, as dlt's).
//! [`ResolvedDestination::describe`] says what was resolved and where each value came from, with
//! secrets masked; the connection string it opens is never printed.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use berth_destination::{Error, Result};
use berth_model::Secret;

/// Destinations [`resolve`] knows by bare name.
pub const CONFIGURABLE: &[&str] = &["postgres", "duckdb", "redshift", "snowflake", "bigquery", "databricks"];

mod warehouses;

/// Where a resolved value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// An environment variable.
    Env(String),
    /// A key of a TOML file.
    File {
        /// The file.
        path: PathBuf,
        /// The dotted key.
        key: String,
    },
    /// berth's default (dlt's).
    Default(&'static str),
    /// Resolved by dlt in the caller's process (a `berth.dlt` destination), under this name.
    Dlt(String),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Env(name) => write!(f, "environment {name}"),
            Self::File { path, key } => write!(f, "{} [{key}]", path.display()),
            Self::Default(why) => write!(f, "default ({why})"),
            Self::Dlt(name) => write!(f, "resolved by dlt ({name})"),
        }
    }
}

/// One resolved setting.
#[derive(Debug, Clone)]
pub struct Setting {
    /// The field (`host`, `password`, `path`).
    pub field: &'static str,
    /// Its value; secrets are masked in [`fmt::Debug`] and [`ResolvedDestination::describe`].
    pub value: Secret,
    /// A secret (the password): shown as `***`.
    pub secret: bool,
    /// Where it came from.
    pub origin: Origin,
}

/// A destination resolved from dlt's configuration.
#[derive(Debug)]
pub struct ResolvedDestination {
    /// One of [`CONFIGURABLE`].
    pub name: &'static str,
    /// Every setting that went into it.
    pub settings: Vec<Setting>,
    url: Secret,
    /// Variables the destination reads besides its URL (a warehouse's token), by name.
    env: BTreeMap<String, Secret>,
    /// The staging bucket (dlt's `[destination.filesystem] bucket_url`), for warehouses.
    staging: Option<String>,
    /// object_store options of the staging bucket, from dlt's filesystem credentials.
    staging_options: BTreeMap<String, Secret>,
}

impl ResolvedDestination {
    fn new(name: &'static str, url: String, settings: Vec<Setting>) -> Self {
        Self {
            name,
            settings,
            url: Secret::new(url),
            env: BTreeMap::new(),
            staging: None,
            staging_options: BTreeMap::new(),
        }
    }

    /// The destination URL to open (holds the password: never print it).
    pub fn url(&self) -> &str {
        self.url.expose()
    }

    /// Variables to set for the destination (`SNOWFLAKE_TOKEN`, `DATABRICKS_TOKEN`, …): secrets,
    /// never print them.
    pub fn env(&self) -> BTreeMap<String, String> {
        self.env
            .iter()
            .map(|(k, v)| (k.clone(), v.expose().to_string()))
            .collect()
    }

    /// The staging bucket dlt's `filesystem` section names, if any.
    pub fn staging(&self) -> Option<&str> {
        self.staging.as_deref()
    }

    /// berth's storage options with the staging bucket's credentials added (object_store option
    /// names under the bucket's URL).
    pub fn storage(&self, base: &berth_model::StorageConfig) -> berth_model::StorageConfig {
        match (&self.staging, self.staging_options.is_empty()) {
            (Some(bucket), false) => base.clone().with_options(
                bucket.clone(),
                self.staging_options
                    .iter()
                    .map(|(k, v)| (k.clone(), v.expose().to_string())),
            ),
            _ => base.clone(),
        }
    }

    /// What was resolved and from where, one line per setting, secrets masked.
    pub fn describe(&self) -> String {
        let mut out = format!("destination {}:\n", self.name);
        for s in &self.settings {
            let shown = if s.secret { "***" } else { s.value.expose() };
            out.push_str(&format!("  {:<16} {:<32} from {}\n", s.field, shown, s.origin));
        }
        out
    }
}

/// dlt settings a caller already resolved, named as dlt's environment variables
/// (`DESTINATION__SNOWFLAKE__CREDENTIALS__HOST`…). Their values are credentials as often as not:
/// `Debug` shows the names only.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct DltSettings(pub BTreeMap<String, String>);

impl fmt::Debug for DltSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

/// The places dlt's configuration is read from: the environment and the TOML files, in
/// precedence order.
#[derive(Clone, Default)]
pub struct ConfigSources {
    settings: DltSettings,
    env: BTreeMap<String, String>,
    files: Vec<(PathBuf, toml::Table)>,
    searched: Vec<PathBuf>,
    pgpass: Option<PathBuf>,
}

impl fmt::Debug for ConfigSources {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Values are credentials as often as not: only where they come from.
        f.debug_struct("ConfigSources")
            .field("dlt_settings", &self.settings)
            .field("env_vars", &self.env.len())
            .field("files", &self.files.iter().map(|(p, _)| p).collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

fn config_error(destination: &str, reason: String) -> Error {
    Error::Config {
        destination: destination.to_string(),
        reason,
    }
}

impl ConfigSources {
    /// This process's environment and the dlt project in `project_dir` (its `.dlt/` folder),
    /// then the global dlt directory.
    pub fn discover(project_dir: &Path) -> Result<Self> {
        let env: BTreeMap<String, String> = std::env::vars().collect();
        let home = env.get("HOME").map(PathBuf::from);
        let global = env
            .get("DLT_DATA_DIR")
            .map(PathBuf::from)
            .or_else(|| home.as_ref().map(|h| h.join(".dlt")));
        let mut dirs = vec![project_dir.join(".dlt")];
        dirs.extend(global);
        let pgpass = env
            .get("PGPASSFILE")
            .map(PathBuf::from)
            .or_else(|| home.map(|h| h.join(".pgpass")));
        Self::from_parts(env, &dirs, pgpass)
    }

    /// `env`, the `secrets.toml` and `config.toml` of each of `dlt_dirs` (most important first),
    /// and a libpq password file.
    pub fn from_parts(env: BTreeMap<String, String>, dlt_dirs: &[PathBuf], pgpass: Option<PathBuf>) -> Result<Self> {
        let mut sources = Self {
            env,
            pgpass,
            ..Self::default()
        };
        for dir in dlt_dirs {
            for name in ["secrets.toml", "config.toml"] {
                let path = dir.join(name);
                sources.searched.push(path.clone());
                let text = match std::fs::read_to_string(&path) {
                    Ok(text) => text,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => {
                        return Err(config_error(
                            &path.display().to_string(),
                            format!("cannot read it: {e}"),
                        ));
                    }
                };
                // toml's messages quote the offending line, which may hold a secret.
                let table: toml::Table = toml::from_str(&text).map_err(|e| {
                    config_error(&path.display().to_string(), format!("not valid TOML: {}", e.message()))
                })?;
                sources.files.push((path, table));
            }
        }
        Ok(sources)
    }

    /// These sources with `settings` (named as dlt's environment variables, e.g.
    /// `DESTINATION__SNOWFLAKE__CREDENTIALS__HOST`) before every other one: what a caller that
    /// already resolved dlt's configuration (berth's dlt destinations) hands over, in memory.
    pub fn with_settings(mut self, settings: &DltSettings) -> Self {
        self.settings = settings.clone();
        self
    }

    /// The files searched, for messages.
    fn searched_files(&self) -> String {
        let files: Vec<String> = self.searched.iter().map(|p| p.display().to_string()).collect();
        files.join(", ")
    }

    /// The first value at `path` with its origin (see [`ConfigSources::providers`]).
    fn first(&self, pipeline: Option<&str>, path: &[&str]) -> Option<(String, Origin)> {
        self.providers(pipeline, path).into_iter().next()
    }

    /// The value at `path` (lower-case sections) from the environment, then each file; with a
    /// pipeline name, its section first in each.
    fn providers<'a>(&'a self, pipeline: Option<&'a str>, path: &'a [&'a str]) -> Vec<(String, Origin)> {
        let mut found = Vec::new();
        // dlt resolved its pipeline's sections already.
        let resolved = path
            .iter()
            .map(|p| p.to_ascii_uppercase())
            .collect::<Vec<_>>()
            .join("__");
        if let Some(value) = self.settings.0.get(&resolved) {
            found.push((value.clone(), Origin::Dlt(resolved)));
        }
        let prefixes: Vec<Option<&str>> = pipeline.map(Some).into_iter().chain([None]).collect();
        for prefix in &prefixes {
            let name = prefix
                .iter()
                .copied()
                .chain(path.iter().copied())
                .map(str::to_ascii_uppercase)
                .collect::<Vec<_>>()
                .join("__");
            if let Some(value) = self.env.get(&name) {
                found.push((value.clone(), Origin::Env(name)));
                break;
            }
        }
        for (file, table) in &self.files {
            for prefix in &prefixes {
                let keys: Vec<&str> = prefix.iter().copied().chain(path.iter().copied()).collect();
                if let Some(value) = lookup(table, &keys) {
                    found.push((
                        value,
                        Origin::File {
                            path: file.clone(),
                            key: keys.join("."),
                        },
                    ));
                    break;
                }
            }
        }
        found
    }
}

fn lookup(table: &toml::Table, keys: &[&str]) -> Option<String> {
    let (last, sections) = keys.split_last()?;
    let mut current = table;
    for key in sections {
        current = current.get(*key)?.as_table()?;
    }
    match current.get(*last)? {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

/// The fields of dlt's PostgreSQL credentials berth resolves. `query` holds a connection
/// string's other parameters (`sslmode`, `sslrootcert`, `host` of a socket, …), form-encoded.
const PG_FIELDS: [&str; 7] = [
    "host",
    "port",
    "database",
    "username",
    "password",
    "connect_timeout",
    "query",
];

/// The fields of a PostgreSQL connection string (`postgresql://user:pw@host:port/db?…`).
fn url_fields(text: &str) -> Option<BTreeMap<&'static str, String>> {
    let url = url::Url::parse(text).ok()?;
    if !matches!(
        url.scheme(),
        "postgres" | "postgresql" | "redshift" | "redshift+psycopg2"
    ) {
        return None;
    }
    let decode = |s: &str| percent_decode(s);
    let mut fields = BTreeMap::new();
    if let Some(host) = url.host_str().filter(|h| !h.is_empty()) {
        fields.insert("host", host.to_string());
    }
    if let Some(port) = url.port() {
        fields.insert("port", port.to_string());
    }
    if !url.username().is_empty() {
        fields.insert("username", decode(url.username()));
    }
    if let Some(password) = url.password() {
        fields.insert("password", decode(password));
    }
    let database = url.path().trim_start_matches('/');
    if !database.is_empty() {
        fields.insert("database", decode(database));
    }
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    let mut others = false;
    for (key, value) in url.query_pairs() {
        if key == "connect_timeout" {
            fields.insert("connect_timeout", value.into_owned());
        } else {
            query.append_pair(&key, &value);
            others = true;
        }
    }
    if others {
        fields.insert("query", query.finish());
    }
    Some(fields)
}

fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// The password of the first line of a libpq password file that matches (`*` matches anything;
/// `\:` and `\\` are escaped).
fn pgpass_password(path: &Path, host: &str, port: &str, database: &str, user: &str) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    for line in text.lines().filter(|l| !l.trim_start().starts_with('#')) {
        let mut fields = Vec::new();
        let mut current = String::new();
        let mut chars = line.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => current.extend(chars.next()),
                ':' if fields.len() < 4 => fields.push(std::mem::take(&mut current)),
                c => current.push(c),
            }
        }
        fields.push(current);
        if let [h, p, d, u, password] = fields.as_slice() {
            let matches = |pattern: &str, value: &str| pattern == "*" || pattern == value;
            if matches(h, host) && matches(p, port) && matches(d, database) && matches(u, user) {
                return Some(password.clone());
            }
        }
    }
    None
}

/// Resolves destination `name` (one of [`CONFIGURABLE`]) for `pipeline` from `sources`.
pub fn resolve(name: &str, pipeline: Option<&str>, sources: &ConfigSources) -> Result<ResolvedDestination> {
    match name {
        "postgres" | "postgresql" => resolve_postgres(PgKind::POSTGRES, pipeline, sources),
        "redshift" => warehouses::with_staging(
            resolve_postgres(PgKind::REDSHIFT, pipeline, sources)?,
            pipeline,
            sources,
        ),
        "snowflake" => warehouses::with_staging(warehouses::snowflake(pipeline, sources)?, pipeline, sources),
        "bigquery" => warehouses::with_staging(warehouses::bigquery(pipeline, sources)?, pipeline, sources),
        "databricks" => warehouses::with_staging(warehouses::databricks(pipeline, sources)?, pipeline, sources),
        "duckdb" => Ok(resolve_duckdb(pipeline, sources)),
        other => Err(config_error(
            other,
            format!(
                "berth reads dlt's configuration for {} (a URL works for every destination)",
                CONFIGURABLE.join(" and ")
            ),
        )),
    }
}

/// How dlt's CSV writer writes the pipeline's packages, from the same sources and with dlt's
/// precedence: `[normalize.data_writer]` (`NORMALIZE__DATA_WRITER__DELIMITER`…), then
/// `[data_writer]`, each under the pipeline's section first: `delimiter`, `include_header` and
/// `encoding` (a Python codec name). What is not set is dlt's default. A value berth cannot take
/// is an error naming where it came from.
pub fn csv_format(pipeline: Option<&str>, sources: &ConfigSources) -> Result<berth_model::read::CsvFormat> {
    use berth_model::read::{CsvFormat, TextEncoding};
    let setting = |field: &str| {
        sources
            .first(pipeline, &["normalize", "data_writer", field])
            .or_else(|| sources.first(pipeline, &["data_writer", field]))
    };
    let refuse = |origin: Origin, reason: String| Error::DltSetting {
        origin: origin.to_string(),
        reason,
    };
    let mut format = CsvFormat::default();
    if let Some((value, origin)) = setting("delimiter") {
        format.delimiter =
            CsvFormat::parse_delimiter(&value).map_err(|why| refuse(origin, format!("delimiter {why}")))?;
    }
    if let Some((value, origin)) = setting("include_header") {
        format.include_header = match value.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" => true,
            "false" | "0" | "no" => false,
            _ => return Err(refuse(origin, format!("include_header {value:?} is not true or false"))),
        };
    }
    if let Some((value, origin)) = setting("encoding") {
        format.encoding = TextEncoding::from_python_name(&value).ok_or_else(|| {
            refuse(
                origin,
                format!("encoding {value:?} is not one berth can decode (Python codec names of the WHATWG encodings: utf-8, latin-1, cp1252, utf-16, shift_jis, …)"),
            )
        })?;
    }
    Ok(format)
}

/// The resolved PostgreSQL fields with their origins.
type PgFields = BTreeMap<&'static str, (String, Origin)>;

/// A destination that speaks PostgreSQL's connection strings.
#[derive(Debug, Clone, Copy)]
struct PgKind {
    /// dlt's section name (`destination.<name>.credentials`).
    name: &'static str,
    /// berth's URL scheme.
    scheme: &'static str,
    /// The port when none is configured.
    port: &'static str,
    /// libpq's `PG*` variables and password file apply.
    libpq: bool,
}

impl PgKind {
    const POSTGRES: Self = Self {
        name: "postgres",
        scheme: "postgres",
        port: "5432",
        libpq: true,
    };
    const REDSHIFT: Self = Self {
        name: "redshift",
        scheme: "redshift",
        port: "5439",
        libpq: false,
    };
}

fn resolve_postgres(kind: PgKind, pipeline: Option<&str>, sources: &ConfigSources) -> Result<ResolvedDestination> {
    let mut fields = dlt_fields(kind.name, pipeline, sources);
    let libpq: &[(&str, &str)] = if kind.libpq {
        &[
            ("host", "PGHOST"),
            ("port", "PGPORT"),
            ("database", "PGDATABASE"),
            ("username", "PGUSER"),
            ("password", "PGPASSWORD"),
        ]
    } else {
        &[]
    };
    for &(field, variable) in libpq {
        if !fields.contains_key(field)
            && let Some(value) = sources.env.get(variable)
        {
            fields.insert(field, (value.clone(), Origin::Env(variable.to_string())));
        }
    }
    fields
        .entry("port")
        .or_insert_with(|| (kind.port.into(), Origin::Default("the destination's port")));
    let missing: Vec<&str> = ["host", "database", "username"]
        .into_iter()
        .filter(|f| !fields.contains_key(f))
        .collect();
    if !missing.is_empty() {
        return Err(missing_credentials(kind, &missing, pipeline, sources));
    }
    if kind.libpq
        && !fields.contains_key("password")
        && let Some(file) = &sources.pgpass
    {
        let value = |f: &str| fields.get(f).map(|(v, _)| v.clone()).unwrap_or_default();
        // libpq matches a socket connection's lines by `localhost`.
        let host = Some(value("host")).filter(|h| !h.starts_with('/'));
        if let Some(password) = pgpass_password(
            file,
            host.as_deref().unwrap_or("localhost"),
            &value("port"),
            &value("database"),
            &value("username"),
        ) {
            let origin = Origin::File {
                path: file.clone(),
                key: "password file".into(),
            };
            fields.insert("password", (password, origin));
        }
    }
    let url = postgres_url(kind, &fields)?;
    let settings = fields
        .into_iter()
        .map(|(field, (value, origin))| Setting {
            field,
            // libpq takes a password among the parameters too.
            secret: field == "password"
                || (field == "query"
                    && url::form_urlencoded::parse(value.as_bytes()).any(|(key, _)| key == "password")),
            value: Secret::new(value),
            origin,
        })
        .collect();
    Ok(ResolvedDestination::new(kind.name, url, settings))
}

/// The fields dlt's providers give, field by field: each provider's connection string, then its
/// own fields over it; the first provider to set a field wins.
fn dlt_fields(section: &str, pipeline: Option<&str>, sources: &ConfigSources) -> PgFields {
    let whole = sources.providers(pipeline, &["destination", section, "credentials"]);
    let mut per_field: Vec<Vec<(String, Origin)>> = PG_FIELDS
        .iter()
        .map(|f| sources.providers(pipeline, &["destination", section, "credentials", f]))
        .collect();
    let rank = |origin: &Origin| match origin {
        Origin::Dlt(_) => 0,
        Origin::Env(_) => 1,
        Origin::File { path, .. } => 2 + sources.files.iter().position(|(p, _)| p == path).unwrap_or(0),
        Origin::Default(_) => usize::MAX,
    };
    for (text, origin) in &whole {
        for (field, value) in url_fields(text).unwrap_or_default() {
            if let Some(i) = PG_FIELDS.iter().position(|f| *f == field) {
                per_field[i].push((value, origin.clone()));
            }
        }
    }
    let mut fields = PgFields::new();
    for (i, field) in PG_FIELDS.iter().enumerate() {
        // Stable: a field given on its own beats the connection string of the same provider.
        per_field[i].sort_by_key(|(_, origin)| rank(origin));
        if let Some(first) = per_field[i].first() {
            fields.insert(field, first.clone());
        }
    }
    fields
}

fn missing_credentials(kind: PgKind, missing: &[&str], pipeline: Option<&str>, sources: &ConfigSources) -> Error {
    let section = kind.name.to_ascii_uppercase();
    config_error(
        kind.name,
        format!(
            "no {} for {}: searched the environment (DESTINATION__{section}__CREDENTIALS or its fields, {}{}), \
             then {} — set them there, or give a URL ({}://user@host/database)",
            missing.join(", "),
            kind.name,
            pipeline
                .map(|p| format!("{}__DESTINATION__{section}__CREDENTIALS, ", p.to_ascii_uppercase()))
                .unwrap_or_default(),
            if kind.libpq { "PGHOST/PGDATABASE/PGUSER" } else { "" },
            sources.searched_files(),
            kind.scheme,
        ),
    )
}

/// The connection URL of `fields` (percent-encoded by `url`).
fn postgres_url(kind: PgKind, fields: &PgFields) -> Result<String> {
    let get = |f: &str| fields.get(f).map(|(v, _)| v.as_str()).unwrap_or_default();
    let mut url =
        url::Url::parse(&format!("{}://localhost/", kind.scheme)).map_err(|e| Error::Internal(e.to_string()))?;
    let bad = |what: &str| {
        config_error(
            kind.name,
            format!("the resolved {what} is not valid in a connection URL"),
        )
    };
    // A host that is a folder is a Unix-domain socket's (`PGHOST=/var/run/postgresql`): it goes
    // in the `host` parameter, which wins over the URL's host as in libpq.
    let socket = get("host").starts_with('/');
    if !socket {
        url.set_host(Some(get("host"))).map_err(|_| bad("host"))?;
    }
    url.set_port(Some(get("port").parse().map_err(|_| bad("port"))?))
        .map_err(|()| bad("port"))?;
    url.set_username(get("username")).map_err(|()| bad("username"))?;
    if fields.contains_key("password") {
        url.set_password(Some(get("password"))).map_err(|()| bad("password"))?;
    }
    url.set_path(&format!("/{}", get("database")));
    if fields.contains_key("connect_timeout") {
        url.query_pairs_mut()
            .append_pair("connect_timeout", get("connect_timeout"));
    }
    if fields.contains_key("query") {
        let pairs: Vec<(String, String)> = url::form_urlencoded::parse(get("query").as_bytes())
            .into_owned()
            .filter(|(key, _)| !(socket && key == "host"))
            .collect();
        url.query_pairs_mut().extend_pairs(pairs);
    }
    if socket {
        url.query_pairs_mut().append_pair("host", get("host"));
    }
    Ok(url.to_string())
}

fn resolve_duckdb(pipeline: Option<&str>, sources: &ConfigSources) -> ResolvedDestination {
    let found = sources.providers(pipeline, &["destination", "duckdb", "credentials"]);
    let (path, origin) = match found.into_iter().next() {
        Some((value, origin)) => {
            let path = value
                .strip_prefix("duckdb:///")
                .map(|p| format!("/{p}"))
                .or_else(|| value.strip_prefix("duckdb:").map(str::to_string))
                .unwrap_or(value);
            (path, origin)
        }
        None => match pipeline {
            Some(p) => (format!("{p}.duckdb"), Origin::Default("dlt's <pipeline_name>.duckdb")),
            None => ("berth.duckdb".into(), Origin::Default("no pipeline name")),
        },
    };
    let settings = vec![Setting {
        field: "path",
        value: Secret::new(path.clone()),
        secret: false,
        origin,
    }];
    ResolvedDestination::new("duckdb", format!("duckdb:{path}"), settings)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn make(env: &[(&str, &str)], files: &[(&str, &str)]) -> (tempfile::TempDir, ConfigSources) {
        let dir = tempfile::tempdir().expect("tempdir");
        let project = dir.path().join("project/.dlt");
        let global = dir.path().join("home/.dlt");
        std::fs::create_dir_all(&project).expect("mkdir");
        std::fs::create_dir_all(&global).expect("mkdir");
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).expect("write");
        }
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let pgpass = dir.path().join("pgpass");
        let sources = ConfigSources::from_parts(env, &[project, global], Some(pgpass)).expect("sources");
        (dir, sources)
    }

    fn field<'a>(resolved: &'a ResolvedDestination, name: &str) -> (&'a str, &'a Origin) {
        let s = resolved.settings.iter().find(|s| s.field == name).expect("field");
        (s.value.expose(), &s.origin)
    }

    #[test]
    fn the_environment_beats_the_project_which_beats_the_global_files() {
        let (_dir, sources) = make(
            &[("DESTINATION__POSTGRES__CREDENTIALS__HOST", "envhost")],
            &[
                (
                    "project/.dlt/secrets.toml",
                    "[destination.postgres.credentials]\nhost = \"projhost\"\ndatabase = \"shop\"\npassword = \"s3cret\"\n",
                ),
                (
                    "home/.dlt/secrets.toml",
                    "[destination.postgres]\ncredentials = \"postgresql://globaluser:g@globalhost:6543/other\"\n",
                ),
            ],
        );
        let resolved = resolve("postgres", None, &sources).expect("resolved");
        assert_eq!(field(&resolved, "host").0, "envhost");
        assert!(matches!(field(&resolved, "host").1, Origin::Env(_)));
        assert_eq!(field(&resolved, "database").0, "shop");
        assert_eq!(field(&resolved, "username").0, "globaluser");
        assert_eq!(field(&resolved, "port").0, "6543");
        assert_eq!(resolved.url(), "postgres://globaluser:s3cret@envhost:6543/shop");
        let shown = resolved.describe();
        assert!(!shown.contains("s3cret") && shown.contains("***"), "{shown}");
        assert!(!format!("{resolved:?}").contains("s3cret"));
    }

    /// What dlt resolved (a `berth.dlt` destination's settings) comes before every other source,
    /// and is never shown.
    #[test]
    fn settings_dlt_resolved_come_first() {
        let (_dir, sources) = make(
            &[
                ("DESTINATION__POSTGRES__CREDENTIALS__HOST", "envhost"),
                ("SHOP__DESTINATION__POSTGRES__CREDENTIALS__HOST", "pipelinehost"),
            ],
            &[(
                "project/.dlt/secrets.toml",
                "[destination.postgres.credentials]\ndatabase = \"shop\"\nusername = \"u\"\n",
            )],
        );
        let settings = DltSettings(
            [
                ("DESTINATION__POSTGRES__CREDENTIALS__HOST", "dlthost"),
                ("DESTINATION__POSTGRES__CREDENTIALS__PASSWORD", "from-dlt"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        );
        let sources = sources.with_settings(&settings);
        let resolved = resolve("postgres", Some("shop"), &sources).expect("resolved");
        assert_eq!(resolved.url(), "postgres://u:from-dlt@dlthost:5432/shop");
        assert!(matches!(field(&resolved, "host").1, Origin::Dlt(_)));
        assert!(matches!(field(&resolved, "database").1, Origin::File { .. }));
        assert!(!format!("{sources:?}{settings:?}").contains("from-dlt"));
        assert!(!resolved.describe().contains("from-dlt"));
    }

    /// A connection string's other parameters reach the connection (TLS settings must never be
    /// dropped), and a socket's folder, given as the host or as libpq's `PGHOST`, is a host
    /// parameter.
    #[test]
    fn connection_parameters_and_socket_folders_reach_the_url() {
        let (_dir, sources) = make(
            &[(
                "DESTINATION__POSTGRES__CREDENTIALS",
                "postgresql://loader:pw@db:5433/analytics?sslmode=verify-full&sslrootcert=%2Fca.pem&connect_timeout=5",
            )],
            &[],
        );
        let resolved = resolve("postgres", None, &sources).expect("resolved");
        assert_eq!(
            resolved.url(),
            "postgres://loader:pw@db:5433/analytics?connect_timeout=5&sslmode=verify-full&sslrootcert=%2Fca.pem"
        );
        let (_dir, sources) = make(
            &[
                ("PGHOST", "/var/run/postgresql"),
                ("PGDATABASE", "shop"),
                ("PGUSER", "u"),
            ],
            &[],
        );
        let resolved = resolve("postgres", None, &sources).expect("resolved");
        assert_eq!(
            resolved.url(),
            "postgres://u@localhost:5432/shop?host=%2Fvar%2Frun%2Fpostgresql"
        );
        let (_dir, sources) = make(
            &[(
                "DESTINATION__POSTGRES__CREDENTIALS",
                "postgresql://u@localhost/shop?host=%2Ftmp&password=hidden",
            )],
            &[],
        );
        let resolved = resolve("postgres", None, &sources).expect("resolved");
        assert!(resolved.url().contains("host=%2Ftmp"), "{}", resolved.url());
        assert!(!resolved.describe().contains("hidden"), "{}", resolved.describe());
    }

    #[test]
    fn a_connection_string_in_the_environment_and_the_pipeline_section_first() {
        let (_dir, sources) = make(
            &[
                (
                    "DESTINATION__POSTGRES__CREDENTIALS",
                    "postgresql://loader:pw@db:5433/analytics",
                ),
                ("SHOP__DESTINATION__POSTGRES__CREDENTIALS__DATABASE", "shop_db"),
            ],
            &[],
        );
        let resolved = resolve("postgres", Some("shop"), &sources).expect("resolved");
        assert_eq!(resolved.url(), "postgres://loader:pw@db:5433/shop_db");
    }

    #[test]
    fn libpq_variables_and_the_password_file_fill_what_dlt_leaves_open() {
        let (dir, sources) = make(
            &[("PGHOST", "pghost"), ("PGUSER", "me"), ("PGDATABASE", "warehouse")],
            &[],
        );
        std::fs::write(
            dir.path().join("pgpass"),
            "# comment\nother:*:*:*:no\npghost:5432:*:me:pa\\:ss\n",
        )
        .expect("pgpass");
        let resolved = resolve("postgres", None, &sources).expect("resolved");
        assert_eq!(resolved.url(), "postgres://me:pa%3Ass@pghost:5432/warehouse");
        assert!(matches!(field(&resolved, "password").1, Origin::File { .. }));
    }

    #[test]
    fn missing_credentials_say_where_berth_looked() {
        let (_dir, sources) = make(&[], &[]);
        let error = resolve("postgres", None, &sources).expect_err("nothing configured");
        let Error::Config { reason, .. } = &error else {
            panic!("{error}");
        };
        assert!(
            reason.contains("DESTINATION__POSTGRES__CREDENTIALS") && reason.contains("secrets.toml"),
            "{reason}"
        );
    }

    #[test]
    fn duckdb_defaults_to_the_pipeline_file_as_dlt() {
        let (_dir, sources) = make(&[], &[]);
        assert_eq!(
            resolve("duckdb", Some("shop"), &sources).expect("duckdb").url(),
            "duckdb:shop.duckdb"
        );
        let (_dir, sources) = make(&[("DESTINATION__DUCKDB__CREDENTIALS", "/data/lake.duckdb")], &[]);
        assert_eq!(
            resolve("duckdb", Some("shop"), &sources).expect("duckdb").url(),
            "duckdb:/data/lake.duckdb"
        );
    }

    #[test]
    fn csv_writer_options_are_read_as_dlt_s_normalize_reads_them() {
        use berth_model::read::{CsvFormat, TextEncoding};
        let (_dir, sources) = make(&[], &[]);
        assert_eq!(csv_format(None, &sources).expect("defaults"), CsvFormat::default());
        let (_dir, sources) = make(
            &[
                ("SHOP__NORMALIZE__DATA_WRITER__DELIMITER", "|"),
                ("DATA_WRITER__ENCODING", "latin-1"),
            ],
            &[(
                "project/.dlt/config.toml",
                "[normalize.data_writer]\ndelimiter = \";\"\ninclude_header = false\n",
            )],
        );
        let want = |delimiter| CsvFormat {
            delimiter,
            include_header: false,
            encoding: TextEncoding::Latin1,
        };
        // The pipeline's section of the environment comes first, then the project's file.
        assert_eq!(csv_format(Some("shop"), &sources).expect("shop"), want(b'|'));
        assert_eq!(csv_format(Some("other"), &sources).expect("other"), want(b';'));
        // What a berth.dlt destination hands over comes before everything.
        let settings = DltSettings(BTreeMap::from([(
            "NORMALIZE__DATA_WRITER__DELIMITER".to_string(),
            "\t".to_string(),
        )]));
        let handed = sources.clone().with_settings(&settings);
        assert_eq!(csv_format(Some("shop"), &handed).expect("handed"), want(b'\t'));
    }

    #[test]
    fn csv_writer_options_berth_cannot_take_are_refused_naming_their_source() {
        for (name, value) in [
            ("NORMALIZE__DATA_WRITER__DELIMITER", "||"),
            ("NORMALIZE__DATA_WRITER__INCLUDE_HEADER", "maybe"),
            ("NORMALIZE__DATA_WRITER__ENCODING", "klingon"),
        ] {
            let (_dir, sources) = make(&[(name, value)], &[]);
            let err = csv_format(None, &sources).expect_err(name);
            assert!(
                matches!(err, Error::DltSetting { ref origin, .. } if origin.contains(name)),
                "{err}"
            );
        }
    }
}
