//! dlt's configuration sections of the warehouses, and of the `filesystem` destination that
//! names their staging bucket:
//!
//! - `[destination.snowflake.credentials]`: `host` (the account), `database`, `username`,
//!   `warehouse`, `role`, and key-pair (`private_key`, `private_key_path`) or a `token` (with
//!   `authenticator = "oauth"`, or `"programmatic_access_token"`); also as a connection string
//!   `snowflake://user@account/database?warehouse=…&role=…`. berth talks to Snowflake's SQL
//!   API, which takes no passwords: a password alone is a clear error.
//! - `[destination.bigquery]` `location` (dlt's default `US`) and `credentials`: `project_id`,
//!   `private_key`, `client_email` (a service account), or none for application default
//!   credentials.
//! - `[destination.databricks.credentials]`: `server_hostname`, `http_path`
//!   (`/sql/1.0/warehouses/<id>`), `catalog`, and `access_token` or `client_id` + `client_secret`.
//! - `[destination.redshift.credentials]` as PostgreSQL's (port 5439), and
//!   `[destination.redshift] staging_iam_role`.
//! - `[destination.filesystem] bucket_url` is the staging bucket, with
//!   `[destination.filesystem.credentials]` (`aws_access_key_id`, `aws_secret_access_key`,
//!   `aws_session_token`, `region_name`, `endpoint_url`; `azure_storage_account_name`,
//!   `azure_storage_account_key`, `azure_storage_sas_token`; a GCS service account's
//!   `project_id`, `private_key`, `client_email`).
//!
//! Tokens and keys become the variables the warehouse clients read (`SNOWFLAKE_TOKEN`,
//! `DATABRICKS_TOKEN`, `GOOGLE_SERVICE_ACCOUNT_KEY`, …) in [`ResolvedDestination::env`], never
//! part of the URL.

use super::{ConfigSources, Origin, ResolvedDestination, Result, Setting, config_error};
use berth_model::Secret;

/// Settings collected for one destination.
struct Collect<'a> {
    sources: &'a ConfigSources,
    pipeline: Option<&'a str>,
    section: &'static str,
    settings: Vec<Setting>,
}

impl<'a> Collect<'a> {
    fn new(sources: &'a ConfigSources, pipeline: Option<&'a str>, section: &'static str) -> Self {
        Self {
            sources,
            pipeline,
            section,
            settings: Vec::new(),
        }
    }

    /// `[destination.<section>.credentials] <field>`, else `fallback` (a connection string's).
    fn credential(&mut self, field: &'static str, secret: bool, fallback: Option<(String, Origin)>) -> Option<String> {
        let found = self
            .sources
            .first(self.pipeline, &["destination", self.section, "credentials", field])
            .or(fallback);
        self.keep(field, secret, found)
    }

    /// `[destination.<section>] <field>`.
    fn option(&mut self, field: &'static str) -> Option<String> {
        let found = self.sources.first(self.pipeline, &["destination", self.section, field]);
        self.keep(field, false, found)
    }

    fn keep(&mut self, field: &'static str, secret: bool, found: Option<(String, Origin)>) -> Option<String> {
        let (value, origin) = found.filter(|(v, _)| !v.is_empty())?;
        self.settings.push(Setting {
            field,
            value: Secret::new(value.clone()),
            secret,
            origin,
        });
        Some(value)
    }

    fn default(&mut self, field: &'static str, value: &str, why: &'static str) -> String {
        self.settings.push(Setting {
            field,
            value: Secret::new(value.to_string()),
            secret: false,
            origin: Origin::Default(why),
        });
        value.to_string()
    }

    fn missing(&self, what: &str) -> super::Error {
        let section = self.section.to_ascii_uppercase();
        config_error(
            self.section,
            format!(
                "no {what} for {}: searched the environment (DESTINATION__{section}__CREDENTIALS__…), then {} — set \
                 it there (dlt's [destination.{}.credentials]), or give a URL",
                self.section,
                self.sources.searched_files(),
                self.section
            ),
        )
    }
}

/// The parts of a `snowflake://user:password@account/database?warehouse=…&role=…` string.
fn snowflake_string(text: &str, origin: &Origin) -> Vec<(&'static str, (String, Origin))> {
    let Ok(url) = url::Url::parse(text) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut push = |field: &'static str, value: String| {
        if !value.is_empty() {
            out.push((field, (super::percent_decode(&value), origin.clone())));
        }
    };
    push("host", url.host_str().unwrap_or_default().to_string());
    push("username", url.username().to_string());
    push("password", url.password().unwrap_or_default().to_string());
    push("database", url.path().trim_start_matches('/').to_string());
    for (key, value) in url.query_pairs() {
        match key.as_ref() {
            "warehouse" => push("warehouse", value.into_owned()),
            "role" => push("role", value.into_owned()),
            _ => {}
        }
    }
    out
}

pub(super) fn snowflake(pipeline: Option<&str>, sources: &ConfigSources) -> Result<ResolvedDestination> {
    let mut c = Collect::new(sources, pipeline, "snowflake");
    let whole = sources.first(pipeline, &["destination", "snowflake", "credentials"]);
    let parts = whole
        .as_ref()
        .map(|(text, origin)| snowflake_string(text, origin))
        .unwrap_or_default();
    let from_string = |field: &str| parts.iter().find(|(f, _)| *f == field).map(|(_, v)| v.clone());
    let account = c.credential("host", false, from_string("host"));
    let database = c.credential("database", false, from_string("database"));
    let user = c.credential("username", false, from_string("username"));
    let warehouse = c.credential("warehouse", false, from_string("warehouse"));
    let role = c.credential("role", false, from_string("role"));
    let password = c.credential("password", true, from_string("password"));
    let token = c.credential("token", true, None);
    let authenticator = c.credential("authenticator", false, None);
    let key = c.credential("private_key", true, None);
    let key_path = c.credential("private_key_path", false, None);
    let passphrase = c.credential("private_key_passphrase", true, None);
    let stage = c.option("stage_name");
    let (Some(account), Some(database)) = (account, database) else {
        return Err(c.missing("account (host) and database"));
    };
    let mut env = std::collections::BTreeMap::new();
    if passphrase.is_some() {
        return Err(config_error(
            "snowflake",
            "an encrypted private key (private_key_passphrase) is not supported yet: give the key unencrypted \
             (openssl pkcs8 -topk8 -nocrypt), or a token"
                .into(),
        ));
    }
    match (key, key_path, token) {
        (Some(pem), _, _) => {
            env.insert("SNOWFLAKE_PRIVATE_KEY".to_string(), Secret::new(pem));
        }
        (None, Some(path), _) => {
            env.insert("SNOWFLAKE_PRIVATE_KEY_PATH".to_string(), Secret::new(path));
        }
        (None, None, Some(token)) => {
            let kind = match authenticator.as_deref() {
                Some("programmatic_access_token" | "pat") => "pat",
                _ => "oauth",
            };
            env.insert("SNOWFLAKE_TOKEN".to_string(), Secret::new(token));
            env.insert("SNOWFLAKE_TOKEN_TYPE".to_string(), Secret::new(kind.to_string()));
        }
        (None, None, None) => {
            let why = if password.is_some() {
                "berth talks to Snowflake's SQL API, which takes key-pair authentication or a token, not a password"
            } else {
                "no key or token"
            };
            return Err(config_error(
                "snowflake",
                format!(
                    "{why}: set private_key or private_key_path (key pair), or token with authenticator = \"oauth\" \
                     or \"programmatic_access_token\", in [destination.snowflake.credentials]"
                ),
            ));
        }
    }
    let mut url = url::Url::parse(&format!("snowflake://{account}/"))
        .map_err(|_| config_error("snowflake", "the account (host) is not valid in a URL".into()))?;
    if let Some(user) = &user {
        url.set_username(user)
            .map_err(|()| config_error("snowflake", "the username is not valid in a URL".into()))?;
    }
    url.set_path(&format!("/{database}"));
    for (key, value) in [("warehouse", warehouse), ("role", role), ("stage", stage)] {
        if let Some(value) = value {
            url.query_pairs_mut().append_pair(key, &value);
        }
    }
    let mut resolved = ResolvedDestination::new("snowflake", url.to_string(), c.settings);
    resolved.env = env;
    Ok(resolved)
}

pub(super) fn bigquery(pipeline: Option<&str>, sources: &ConfigSources) -> Result<ResolvedDestination> {
    let mut c = Collect::new(sources, pipeline, "bigquery");
    let project = c
        .credential("project_id", false, None)
        .or_else(|| c.option("project_id"));
    let location = match c.option("location") {
        Some(location) => location,
        None => c.default("location", "US", "dlt's BigQuery location"),
    };
    let key = c.credential("private_key", true, None);
    let email = c.credential("client_email", false, None);
    let token_uri = c.credential("token_uri", false, None);
    let Some(project) = project else {
        return Err(c.missing("project_id"));
    };
    let mut resolved = ResolvedDestination::new("bigquery", format!("bigquery://{project}/{location}"), c.settings);
    if let (Some(key), Some(email)) = (key, email) {
        resolved.env.insert(
            "GOOGLE_SERVICE_ACCOUNT_KEY".into(),
            Secret::new(service_account(&project, &key, &email, token_uri)),
        );
    }
    Ok(resolved)
}

/// A service account key file's JSON from dlt's fields.
fn service_account(project: &str, key: &str, email: &str, token_uri: Option<String>) -> String {
    serde_json::json!({
        "type": "service_account",
        "project_id": project,
        "private_key": key,
        "client_email": email,
        "token_uri": token_uri.unwrap_or_else(|| "https://oauth2.googleapis.com/token".into()),
    })
    .to_string()
}

pub(super) fn databricks(pipeline: Option<&str>, sources: &ConfigSources) -> Result<ResolvedDestination> {
    let mut c = Collect::new(sources, pipeline, "databricks");
    let host = c.credential("server_hostname", false, None);
    let http_path = c.credential("http_path", false, None);
    let catalog = c.credential("catalog", false, None);
    let token = c.credential("access_token", true, None);
    let client_id = c.credential("client_id", false, None);
    let client_secret = c.credential("client_secret", true, None);
    let (Some(host), Some(http_path)) = (host, http_path) else {
        return Err(c.missing("server_hostname and http_path"));
    };
    let warehouse = http_path
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_string();
    let mut env = std::collections::BTreeMap::new();
    match (token, client_id, client_secret) {
        (_, Some(id), Some(secret)) => {
            env.insert("DATABRICKS_CLIENT_ID".to_string(), Secret::new(id));
            env.insert("DATABRICKS_CLIENT_SECRET".to_string(), Secret::new(secret));
        }
        (Some(token), _, _) => {
            env.insert("DATABRICKS_TOKEN".to_string(), Secret::new(token));
        }
        _ => return Err(c.missing("access_token (or client_id and client_secret)")),
    }
    let mut url = format!("databricks://{}/{warehouse}", host.trim_start_matches("https://"));
    if let Some(catalog) = catalog {
        url.push_str(&format!(
            "?catalog={}",
            url::form_urlencoded::byte_serialize(catalog.as_bytes()).collect::<String>()
        ));
    }
    let mut resolved = ResolvedDestination::new("databricks", url, c.settings);
    resolved.env = env;
    Ok(resolved)
}

/// dlt's `[destination.filesystem]` staging bucket and its credentials (as object_store
/// options), and Redshift's `staging_iam_role`.
pub(super) fn with_staging(
    mut resolved: ResolvedDestination,
    pipeline: Option<&str>,
    sources: &ConfigSources,
) -> Result<ResolvedDestination> {
    let mut c = Collect::new(sources, pipeline, "filesystem");
    if resolved.name == "redshift" {
        let mut redshift = Collect::new(sources, pipeline, "redshift");
        if let Some(role) = redshift.option("staging_iam_role") {
            let mut url = url::Url::parse(resolved.url())
                .map_err(|_| config_error("redshift", "the resolved URL is not valid".into()))?;
            url.query_pairs_mut().append_pair("iam_role", &role);
            resolved.url = Secret::new(url.to_string());
            resolved.settings.append(&mut redshift.settings);
        }
    }
    let Some(bucket) = c.option("bucket_url") else {
        return Ok(resolved);
    };
    for (dlt_name, option, secret) in [
        ("aws_access_key_id", "aws_access_key_id", false),
        ("aws_secret_access_key", "aws_secret_access_key", true),
        ("aws_session_token", "aws_session_token", true),
        ("region_name", "aws_region", false),
        ("endpoint_url", "aws_endpoint", false),
        ("azure_storage_account_name", "azure_storage_account_name", false),
        ("azure_storage_account_key", "azure_storage_account_key", true),
        ("azure_storage_sas_token", "azure_storage_sas_key", true),
    ] {
        if let Some(value) = c.credential(dlt_name, secret, None) {
            resolved.staging_options.insert(option.to_string(), Secret::new(value));
        }
    }
    let gcs = (
        c.credential("project_id", false, None),
        c.credential("private_key", true, None),
        c.credential("client_email", false, None),
    );
    if let (Some(project), Some(key), Some(email)) = gcs {
        resolved.staging_options.insert(
            "google_service_account_key".into(),
            Secret::new(service_account(&project, &key, &email, None)),
        );
    }
    resolved.staging = Some(bucket);
    resolved.settings.append(&mut c.settings);
    Ok(resolved)
}

#[cfg(test)]
mod tests {
    use super::super::resolve;
    use super::*;

    fn sources(files: &[(&str, &str)]) -> (tempfile::TempDir, ConfigSources) {
        let dir = tempfile::tempdir().expect("tempdir");
        let project = dir.path().join(".dlt");
        std::fs::create_dir_all(&project).expect("mkdir");
        for (name, text) in files {
            std::fs::write(project.join(name), text).expect("write");
        }
        let sources = ConfigSources::from_parts(Default::default(), &[project], None).expect("sources");
        (dir, sources)
    }

    #[test]
    fn snowflake_takes_a_connection_string_and_a_token_which_stays_out_of_the_url() {
        let (_dir, sources) = sources(&[
            (
                "secrets.toml",
                "[destination.snowflake]\ncredentials = \"snowflake://loader@acme-xy/ANALYTICS?warehouse=WH&role=LOADER\"\n",
            ),
            (
                "config.toml",
                "[destination.snowflake.credentials]\ntoken = \"tok-123\"\nauthenticator = \"oauth\"\n",
            ),
        ]);
        let resolved = resolve("snowflake", None, &sources).expect("resolved");
        assert_eq!(
            resolved.url(),
            "snowflake://loader@acme-xy/ANALYTICS?warehouse=WH&role=LOADER"
        );
        assert_eq!(resolved.env()["SNOWFLAKE_TOKEN"], "tok-123");
        assert!(!resolved.describe().contains("tok-123"));
    }

    #[test]
    fn a_snowflake_password_alone_is_refused_with_what_to_set() {
        let (_dir, sources) = sources(&[(
            "secrets.toml",
            "[destination.snowflake.credentials]\nhost = \"acme\"\ndatabase = \"db\"\nusername = \"u\"\npassword = \"pw\"\n",
        )]);
        let error = resolve("snowflake", None, &sources).expect_err("no password auth");
        assert!(matches!(error, super::super::Error::Config { .. }));
        assert!(!error.to_string().contains("pw\""), "{error}");
    }

    #[test]
    fn databricks_bigquery_redshift_and_the_staging_bucket_come_from_their_sections() {
        let (_dir, sources) = sources(&[(
            "secrets.toml",
            "[destination.databricks.credentials]\nserver_hostname = \"dbc-1.cloud.databricks.com\"\n\
             http_path = \"/sql/1.0/warehouses/abc123\"\ncatalog = \"main\"\naccess_token = \"dapi-1\"\n\
             [destination.bigquery]\nlocation = \"EU\"\n[destination.bigquery.credentials]\nproject_id = \"proj\"\n\
             private_key = \"-----BEGIN PRIVATE KEY-----\"\nclient_email = \"sa@proj.iam.gserviceaccount.com\"\n\
             [destination.redshift]\nstaging_iam_role = \"arn:aws:iam::1:role/r\"\n\
             [destination.redshift.credentials]\nhost = \"rs\"\ndatabase = \"dw\"\nusername = \"u\"\npassword = \"p\"\n\
             [destination.filesystem]\nbucket_url = \"s3://stage/berth\"\n\
             [destination.filesystem.credentials]\naws_access_key_id = \"AKIA\"\naws_secret_access_key = \"sk\"\n",
        )]);
        let databricks = resolve("databricks", None, &sources).expect("databricks");
        assert_eq!(
            databricks.url(),
            "databricks://dbc-1.cloud.databricks.com/abc123?catalog=main"
        );
        assert_eq!(databricks.env()["DATABRICKS_TOKEN"], "dapi-1");
        assert_eq!(databricks.staging(), Some("s3://stage/berth"));
        let storage = databricks.storage(&berth_model::StorageConfig::new());
        assert_eq!(storage.options_for("s3://stage/berth/x")["aws_secret_access_key"], "sk");
        let bigquery = resolve("bigquery", None, &sources).expect("bigquery");
        assert_eq!(bigquery.url(), "bigquery://proj/EU");
        assert!(bigquery.env()["GOOGLE_SERVICE_ACCOUNT_KEY"].contains("sa@proj.iam.gserviceaccount.com"));
        let redshift = resolve("redshift", None, &sources).expect("redshift");
        assert_eq!(
            redshift.url(),
            "redshift://u:p@rs:5439/dw?iam_role=arn%3Aaws%3Aiam%3A%3A1%3Arole%2Fr"
        );
        for resolved in [&databricks, &bigquery, &redshift] {
            let shown = resolved.describe();
            assert!(
                !shown.contains("dapi-1") && !shown.contains("\"sk\"") && !shown.contains("PRIVATE KEY"),
                "{shown}"
            );
        }
    }
}
