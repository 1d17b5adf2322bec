//! Object stores from URLs, and the packages found under them.
//!
//! | URL | store |
//! |---|---|
//! | `s3://bucket/prefix` (`s3a://`) | Amazon S3 or any S3-compatible server |
//! | `gs://bucket/prefix` | Google Cloud Storage |
//! | `az://container/prefix`, `azure://…`, `abfs[s]://container@account.dfs.core.windows.net/prefix` | Azure Blob Storage / ADLS Gen2 |
//! | `memory:///prefix` | an empty in-process store (tests) |
//! | `file:///dir`, a path | the local filesystem |
//!
//! Credentials and settings come, lowest precedence first, from the environment variables each
//! cloud's own tools read (`AWS_*`, `GOOGLE_*`, `AZURE_*`) and from the `[storage."<url prefix>"]`
//! tables of berth's config file ([`StorageConfig`]), whose keys are object_store's option names
//! (`aws_endpoint`, `aws_region`, `aws_allow_http`, `google_service_account`,
//! `azure_storage_account_name`, …). Their values never appear in messages or `Debug` output.
//!
//! Reads stream: Parquet through range requests (object_store coalesces nearby ranges and runs at
//! most ten at once per file), other formats as one streamed GET.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path as FsPath;
use std::sync::Arc;

use object_store::aws::AmazonS3Builder;
use object_store::azure::MicrosoftAzureBuilder;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreScheme};
use url::Url;

use crate::error::{Error, Result};

/// Environment variable naming berth's config file (default: `berth.toml` in the current
/// directory, when it exists).
pub const CONFIG_ENV: &str = "BERTH_CONFIG";
/// The config file looked for in the current directory.
pub const DEFAULT_CONFIG_FILE: &str = "berth.toml";

/// Storage options per URL prefix, from berth's config file:
///
/// ```toml
/// [storage."s3://analytics-packages"]
/// aws_region = "eu-central-1"
/// aws_access_key_id = "AKIA…"
/// aws_secret_access_key = "…"
///
/// [storage."s3://minio-bucket"]
/// aws_endpoint = "http://localhost:9000"
/// aws_allow_http = true
/// ```
///
/// Every table whose prefix the URL starts with applies (at a `/` boundary), the longest prefix
/// last, over the environment's settings.
///
/// The same file holds defaults for `berth load` under `[load]`:
///
/// ```toml
/// [load]
/// widen_types = true   # as --widen-types
/// memory_budget = "512MiB"   # as --memory-budget
/// ```
#[derive(Clone, Default)]
pub struct StorageConfig {
    entries: Vec<(String, BTreeMap<String, String>)>,
    load: LoadSettings,
}

/// The `[load]` table of berth's config file: defaults for `berth load` that its flags turn on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadSettings {
    /// Widen existing columns to the package's wider types (`--widen-types`).
    #[serde(default)]
    pub widen_types: bool,
    /// Cap the load process's peak memory (`--memory-budget`): `"512MiB"`, `"2GiB"`, or bytes.
    #[serde(default, deserialize_with = "crate::size::deserialize_size")]
    pub memory_budget: Option<u64>,
}

impl fmt::Debug for StorageConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Keys only: the values are credentials as often as not.
        let mut map = f.debug_map();
        for (prefix, options) in &self.entries {
            map.entry(prefix, &options.keys().collect::<Vec<_>>());
        }
        map.finish()
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    #[serde(default)]
    storage: BTreeMap<String, BTreeMap<String, toml::Value>>,
    #[serde(default)]
    load: LoadSettings,
}

impl StorageConfig {
    /// No options: the environment only.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds options for URLs under `prefix` (e.g. `s3://bucket`).
    pub fn with_options<K: Into<String>, V: Into<String>>(
        mut self,
        prefix: impl Into<String>,
        options: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        let options = options.into_iter().map(|(k, v)| (k.into(), v.into())).collect();
        self.entries.push((prefix.into(), options));
        self
    }

    /// Parses a config file's text; `path` names it in errors.
    pub fn from_toml(text: &str, path: &str) -> Result<Self> {
        let bad = |reason: String| Error::Config {
            path: path.to_string(),
            reason,
        };
        // toml's messages quote the offending line, which may hold a secret: keep only the span.
        let file: ConfigFile = toml::from_str(text).map_err(|e| {
            let at = e
                .span()
                .map(|s| format!(" at line {}", text[..s.start.min(text.len())].lines().count().max(1)))
                .unwrap_or_default();
            bad(format!("not a valid berth config{at}: {}", e.message()))
        })?;
        let mut config = Self {
            load: file.load,
            ..Self::new()
        };
        for (prefix, table) in file.storage {
            if !prefix.contains("://") {
                return Err(bad(format!(
                    "[storage.\"{prefix}\"]: the key is a URL prefix such as \"s3://bucket\""
                )));
            }
            let mut options = BTreeMap::new();
            for (key, value) in table {
                let value = match value {
                    toml::Value::String(s) => s,
                    toml::Value::Boolean(b) => b.to_string(),
                    toml::Value::Integer(i) => i.to_string(),
                    toml::Value::Float(f) => f.to_string(),
                    _ => {
                        return Err(bad(format!(
                            "[storage.\"{prefix}\"] {key}: a value is a string, number or boolean"
                        )));
                    }
                };
                options.insert(key.to_ascii_lowercase(), value);
            }
            config.entries.push((prefix, options));
        }
        Ok(config)
    }

    /// The `[load]` settings.
    pub fn load_settings(&self) -> LoadSettings {
        self.load
    }

    /// Reads the config file named by `BERTH_CONFIG` (which must exist), else `berth.toml` in
    /// the current directory when there is one, else no options.
    pub fn load() -> Result<Self> {
        let (path, required) = match std::env::var_os(CONFIG_ENV) {
            Some(p) if !p.is_empty() => (std::path::PathBuf::from(p), true),
            _ => (std::path::PathBuf::from(DEFAULT_CONFIG_FILE), false),
        };
        Self::load_file(&path, required)
    }

    /// Reads `path`; a missing file is an error only when `required`.
    pub fn load_file(path: &FsPath, required: bool) -> Result<Self> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::from_toml(&text, &path.display().to_string()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => Ok(Self::new()),
            Err(e) => Err(Error::Config {
                path: path.display().to_string(),
                reason: format!("cannot read it: {e}"),
            }),
        }
    }

    /// The options for `url`: every matching prefix, shortest first, later ones winning.
    pub fn options_for(&self, url: &str) -> BTreeMap<String, String> {
        let mut matching: Vec<&(String, BTreeMap<String, String>)> = self
            .entries
            .iter()
            .filter(|(prefix, _)| {
                let prefix = prefix.trim_end_matches('/');
                url.strip_prefix(prefix)
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
            })
            .collect();
        matching.sort_by_key(|(prefix, _)| prefix.trim_end_matches('/').len());
        let mut out = BTreeMap::new();
        for (_, options) in matching {
            out.extend(options.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        out
    }
}

/// Which kind of store a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    /// The local filesystem.
    Local,
    /// In-process memory.
    Memory,
    /// Amazon S3 or an S3-compatible server.
    S3,
    /// Google Cloud Storage.
    Gcs,
    /// Azure Blob Storage / ADLS Gen2.
    Azure,
}

impl StoreKind {
    /// The kind of a URL, by scheme (and host for `https://` URLs of the clouds).
    pub fn of(url: &Url) -> Option<Self> {
        match ObjectStoreScheme::parse(url).ok()?.0 {
            ObjectStoreScheme::Local => Some(Self::Local),
            ObjectStoreScheme::Memory => Some(Self::Memory),
            ObjectStoreScheme::AmazonS3 => Some(Self::S3),
            ObjectStoreScheme::GoogleCloudStorage => Some(Self::Gcs),
            ObjectStoreScheme::MicrosoftAzure => Some(Self::Azure),
            _ => None,
        }
    }
}

/// A URL for messages: without user info, query or fragment.
pub fn display_url(url: &Url) -> String {
    let mut shown = url.clone();
    // abfss://container@account…: the user part is the container, no secret.
    if shown.password().is_some() {
        let _ = shown.set_password(None);
        let _ = shown.set_username("");
    }
    shown.set_query(None);
    shown.set_fragment(None);
    shown.to_string()
}

/// Opens the store a URL names and the path inside it, with the environment's settings and
/// `config`'s options for the URL.
pub fn open_store(location: &str, config: &StorageConfig) -> Result<(Arc<dyn ObjectStore>, Path)> {
    let bad = |reason: String| Error::Location {
        location: redact_location(location),
        reason,
    };
    let url = Url::parse(location).map_err(|e| bad(e.to_string()))?;
    if url.password().is_some() || url.query().is_some() {
        return Err(bad(
            "credentials and options do not go into package URLs; set them in the environment (AWS_*, GOOGLE_*, \
             AZURE_*) or in berth.toml under [storage.\"<url prefix>\"]"
                .into(),
        ));
    }
    let (scheme, path) = ObjectStoreScheme::parse(&url).map_err(|e| bad(e.to_string()))?;
    let path = Path::from_url_path(path).map_err(|e| bad(e.to_string()))?;
    let options = config.options_for(location);
    // Builder messages may quote an option's value: never show one.
    let scrub = |message: String| {
        options
            .values()
            .filter(|v| v.len() >= 4)
            .fold(message, |m, v| m.replace(v.as_str(), "***"))
    };
    let unknown = |key: &str, kind: &str| bad(format!("`{key}` is not an option of {kind} storage (from berth.toml)"));
    let store: Arc<dyn ObjectStore> = match scheme {
        ObjectStoreScheme::Local => {
            let dir = url.to_file_path().map_err(|()| bad("not a local file URL".into()))?;
            let dir = std::fs::canonicalize(&dir).map_err(|e| bad(e.to_string()))?;
            let root = Path::from_filesystem_path(&dir).map_err(|e| bad(e.to_string()))?;
            return Ok((Arc::new(object_store::local::LocalFileSystem::new()), root));
        }
        ObjectStoreScheme::Memory => Arc::new(object_store::memory::InMemory::new()),
        ObjectStoreScheme::AmazonS3 => {
            let mut builder = AmazonS3Builder::from_env().with_url(location);
            for (key, value) in &options {
                builder = builder.with_config(key.parse().map_err(|_| unknown(key, "S3"))?, value);
            }
            Arc::new(builder.build().map_err(|e| bad(scrub(e.to_string())))?)
        }
        ObjectStoreScheme::GoogleCloudStorage => {
            let mut builder = GoogleCloudStorageBuilder::from_env().with_url(location);
            for (key, value) in &options {
                builder = builder.with_config(key.parse().map_err(|_| unknown(key, "Google Cloud"))?, value);
            }
            Arc::new(builder.build().map_err(|e| bad(scrub(e.to_string())))?)
        }
        ObjectStoreScheme::MicrosoftAzure => {
            let mut builder = MicrosoftAzureBuilder::from_env().with_url(location);
            for (key, value) in &options {
                builder = builder.with_config(key.parse().map_err(|_| unknown(key, "Azure"))?, value);
            }
            Arc::new(builder.build().map_err(|e| bad(scrub(e.to_string())))?)
        }
        other => {
            return Err(bad(format!(
                "{other:?} stores are not supported; use s3://, gs://, az:// or a path"
            )));
        }
    };
    Ok((store, path))
}

/// A location as given, for messages: URLs lose any user info and query.
pub(crate) fn redact_location(location: &str) -> String {
    Url::parse(location).map_or_else(|_| location.to_string(), |u| display_url(&u))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_options_apply_by_prefix_longest_last() {
        let config = StorageConfig::from_toml(
            r#"
            [storage."s3://bucket"]
            aws_region = "eu-central-1"
            aws_allow_http = true
            [storage."s3://bucket/special"]
            aws_region = "us-east-1"
            [storage."s3://bucket2"]
            aws_region = "ap-south-1"
            "#,
            "berth.toml",
        )
        .unwrap();
        let options = config.options_for("s3://bucket/special/1.2");
        assert_eq!(options["aws_region"], "us-east-1");
        assert_eq!(options["aws_allow_http"], "true");
        assert_eq!(config.options_for("s3://bucket/x")["aws_region"], "eu-central-1");
        // A prefix matches at a path boundary only.
        assert!(config.options_for("s3://bucket-other/x").is_empty());
        assert_eq!(config.options_for("s3://bucket2")["aws_region"], "ap-south-1");
    }

    #[test]
    fn config_errors_never_show_values() {
        let err = StorageConfig::from_toml(
            "[storage.\"s3://b\"]\naws_secret_access_key = \"topsecret\" oops\n",
            "berth.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("berth.toml") && err.contains("line 2"), "{err}");
        assert!(!err.contains("topsecret"), "{err}");
        let err = StorageConfig::from_toml("[storage.bucket]\nx = 1\n", "berth.toml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("URL prefix"), "{err}");
        let config = StorageConfig::new().with_options("s3://b", [("aws_secret_access_key", "topsecret")]);
        assert!(!format!("{config:?}").contains("topsecret"));
    }

    #[test]
    fn opens_each_cloud_from_its_url_without_leaking_options() {
        let config = StorageConfig::new()
            .with_options(
                "s3://bucket",
                [
                    ("aws_region", "eu-central-1"),
                    ("aws_access_key_id", "AKIDEXAMPLE"),
                    ("aws_secret_access_key", "wJalrXUtnFEMI"),
                ],
            )
            .with_options(
                "az://container",
                [
                    ("azure_storage_account_name", "acct"),
                    ("azure_storage_account_key", "a2V5"),
                ],
            )
            .with_options("gs://bucket", [("google_skip_signature", "true")]);
        let (store, path) = open_store("s3://bucket/pipelines/load/normalized", &config).unwrap();
        assert_eq!(path.as_ref(), "pipelines/load/normalized");
        assert!(!format!("{store:?} {store}").contains("wJalrXUtnFEMI"));
        let (_, path) = open_store("az://container/a/b", &config).unwrap();
        assert_eq!(path.as_ref(), "a/b");
        let (_, path) = open_store("gs://bucket/p", &config).unwrap();
        assert_eq!(path.as_ref(), "p");

        let err = open_store("s3://user:pw@bucket/p?x=1", &config)
            .unwrap_err()
            .to_string();
        assert!(!err.contains("pw"), "{err}");
        let bad = StorageConfig::new().with_options("s3://bucket", [("aws_no_such_option", "v")]);
        let err = open_store("s3://bucket/p", &bad).unwrap_err().to_string();
        assert!(err.contains("aws_no_such_option"), "{err}");
        let bad = StorageConfig::new().with_options("s3://bucket", [("aws_allow_http", "maybe-secret")]);
        let err = open_store("s3://bucket/p", &bad).map(|_| ()).unwrap_err().to_string();
        assert!(!err.contains("maybe-secret"), "{err}");
    }

    #[tokio::test]
    async fn lists_the_packages_under_a_prefix_in_load_id_order() {
        let err = crate::discover_packages("memory:///nothing/here", &StorageConfig::new())
            .await
            .unwrap_err();
        assert!(matches!(err, Error::MissingSchema { .. }), "{err}");
        assert!(StoreKind::of(&Url::parse("abfss://c@acct.dfs.core.windows.net/p").unwrap()) == Some(StoreKind::Azure));
        assert!(StoreKind::of(&Url::parse("gs://b/p").unwrap()) == Some(StoreKind::Gcs));
    }
}
