//! Where a job's file is when the warehouse reads it, and how the warehouse gets in.
//!
//! A package already in a bucket the warehouse reads is used in place (packages in buckets are
//! never modified). Any other package's Parquet files are uploaded as they are, multipart, to the
//! staging bucket under `<staging>/<dataset>/<table>/<load id>.<job file>`: unique per load, so two
//! loads never overwrite each other's files, and stable across a resumed load, so a file uploaded
//! before a crash is not uploaded again (same name, same size).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use berth_destination::{Error, Result};
use berth_model::store::{StorageConfig, StoreKind, display_url, open_store};
use berth_model::{FileFormat, JobFile, LoadPackage};
use futures::StreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, WriteMultipart};
use url::Url;

use crate::Warehouse;

/// Multipart upload part size: large enough for few requests, small enough to keep memory flat
/// (object_store keeps at most a few parts in flight).
const PART_SIZE: usize = 16 * 1024 * 1024;

/// How the warehouse is allowed to read the staged files.
#[derive(Clone, PartialEq, Eq)]
pub enum StageAccess {
    /// A Snowflake storage integration (`STORAGE_INTEGRATION = <name>`): no secrets in SQL.
    StorageIntegration(String),
    /// A Snowflake named stage whose URL is the staging bucket prefix (`FROM @<name> FILES = (…)`).
    NamedStage(String),
    /// A Redshift IAM role (`IAM_ROLE '<arn>'`).
    IamRole(String),
    /// The bucket's own keys, forwarded in each statement (`CREDENTIALS = (…)`). They are sent to
    /// the warehouse, never printed.
    ForwardCredentials,
    /// The warehouse's own identity reads the bucket: BigQuery's service account, a Databricks
    /// Unity Catalog external location.
    Implicit,
}

impl fmt::Debug for StageAccess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::StorageIntegration(name) => write!(f, "StorageIntegration({name})"),
            Self::NamedStage(name) => write!(f, "NamedStage({name})"),
            Self::IamRole(arn) => write!(f, "IamRole({arn})"),
            Self::ForwardCredentials => f.write_str("ForwardCredentials"),
            Self::Implicit => f.write_str("Implicit"),
        }
    }
}

impl StageAccess {
    /// The access a destination URL's query asks for (`storage_integration=`, `stage=`,
    /// `iam_role=`, `forward_credentials=true`; none: [`Self::Implicit`], checked against the
    /// warehouse when a file is staged), taking those keys out of `query`.
    pub fn from_query(query: &mut BTreeMap<String, String>) -> std::result::Result<Self, String> {
        let mut take = |key: &str| query.remove(key);
        Ok(
            match (
                take("storage_integration"),
                take("stage"),
                take("iam_role"),
                take("forward_credentials").is_some_and(|v| v == "true" || v == "1"),
            ) {
                (Some(name), None, None, false) => Self::StorageIntegration(name),
                (None, Some(name), None, false) => Self::NamedStage(name.trim_start_matches('@').to_string()),
                (None, None, Some(arn), false) => Self::IamRole(arn),
                (None, None, None, true) => Self::ForwardCredentials,
                (None, None, None, false) => Self::Implicit,
                _ => return Err("give one of storage_integration, stage, iam_role or forward_credentials".into()),
            },
        )
    }

    /// Checks that `warehouse` can use this access to files in a `kind` bucket.
    pub fn check(&self, warehouse: Warehouse, kind: StoreKind) -> std::result::Result<(), String> {
        let ok = match (warehouse, self) {
            (Warehouse::Snowflake, Self::StorageIntegration(_) | Self::NamedStage(_)) => true,
            // Snowflake takes keys for S3 and SAS tokens for Azure; GCS needs an integration.
            (Warehouse::Snowflake, Self::ForwardCredentials) => kind != StoreKind::Gcs,
            (Warehouse::Redshift, Self::IamRole(_) | Self::ForwardCredentials) => true,
            (Warehouse::Databricks, Self::Implicit) => true,
            (Warehouse::Databricks, Self::ForwardCredentials) => kind != StoreKind::Gcs,
            (Warehouse::BigQuery, Self::Implicit) => true,
            _ => false,
        };
        if ok {
            return Ok(());
        }
        Err(match warehouse {
            Warehouse::Snowflake if kind == StoreKind::Gcs => {
                "Snowflake reads gs:// buckets through a storage integration or a named stage; add \
                 ?storage_integration=<name> or ?stage=<name> to the destination URL"
                    .into()
            }
            Warehouse::Snowflake => "Snowflake needs one of ?storage_integration=<name>, ?stage=<name> or \
                                     ?forward_credentials=true in the destination URL"
                .into(),
            Warehouse::Redshift => {
                "Redshift needs ?iam_role=<arn> or ?forward_credentials=true in the destination URL".into()
            }
            Warehouse::Databricks => "Databricks reads the bucket through a Unity Catalog external location \
                                      (the default) or forwarded keys (?forward_credentials=true, S3 and Azure)"
                .into(),
            Warehouse::BigQuery => "BigQuery reads gs:// buckets with its own service account; it takes no other \
                                    access settings"
                .into(),
        })
    }
}

/// Keys of a bucket, for [`StageAccess::ForwardCredentials`]. `Debug` shows which are set, never
/// their values.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    /// AWS access key id.
    pub aws_key_id: Option<String>,
    /// AWS secret access key.
    pub aws_secret_key: Option<String>,
    /// AWS session token (temporary credentials).
    pub aws_token: Option<String>,
    /// Azure SAS token.
    pub azure_sas_token: Option<String>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("aws_key_id", &self.aws_key_id.is_some())
            .field("aws_secret_key", &self.aws_secret_key.is_some())
            .field("aws_token", &self.aws_token.is_some())
            .field("azure_sas_token", &self.azure_sas_token.is_some())
            .finish()
    }
}

impl Credentials {
    /// The keys for `url` from `config` (object_store option names) and the environment
    /// (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AZURE_STORAGE_SAS_KEY`).
    pub fn for_url(url: &str, config: &StorageConfig) -> Self {
        let options = config.options_for(url);
        Self::from_options(&options, |name| std::env::var(name).ok())
    }

    /// From object_store options, then `env` for what they lack.
    pub fn from_options(options: &BTreeMap<String, String>, env: impl Fn(&str) -> Option<String>) -> Self {
        let pick = |keys: &[&str], vars: &[&str]| {
            keys.iter()
                .find_map(|k| options.get(*k).cloned())
                .or_else(|| vars.iter().find_map(|v| env(v)))
                .filter(|v| !v.is_empty())
        };
        Self {
            aws_key_id: pick(&["aws_access_key_id", "access_key_id"], &["AWS_ACCESS_KEY_ID"]),
            aws_secret_key: pick(
                &["aws_secret_access_key", "secret_access_key"],
                &["AWS_SECRET_ACCESS_KEY"],
            ),
            aws_token: pick(
                &["aws_session_token", "aws_token", "session_token", "token"],
                &["AWS_SESSION_TOKEN", "AWS_TOKEN"],
            ),
            azure_sas_token: pick(
                &[
                    "azure_storage_sas_key",
                    "azure_storage_sas_token",
                    "sas_key",
                    "sas_token",
                ],
                &["AZURE_STORAGE_SAS_KEY", "AZURE_STORAGE_SAS_TOKEN"],
            ),
        }
    }

    /// The same keys with every value replaced by `***`: what `berth plan` prints.
    pub fn redacted(&self) -> Self {
        let hide = |v: &Option<String>| v.as_ref().map(|_| "***".to_string());
        Self {
            aws_key_id: hide(&self.aws_key_id),
            aws_secret_key: hide(&self.aws_secret_key),
            aws_token: hide(&self.aws_token),
            azure_sas_token: hide(&self.azure_sas_token),
        }
    }

    /// The secret values, for scrubbing messages.
    pub fn secrets(&self) -> Vec<String> {
        [
            &self.aws_key_id,
            &self.aws_secret_key,
            &self.aws_token,
            &self.azure_sas_token,
        ]
        .into_iter()
        .flatten()
        .filter(|v| v.len() >= 4)
        .cloned()
        .collect()
    }
}

/// Where a bucket object is, in the forms warehouses name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketObject {
    /// The kind of bucket.
    pub kind: StoreKind,
    /// Bucket (S3, GCS) or container (Azure).
    pub bucket: String,
    /// Azure storage account.
    pub account: Option<String>,
    /// The object's key.
    pub key: String,
}

impl BucketObject {
    /// Parses `s3://bucket/key`, `gs://bucket/key`, `az://container/key` (account from
    /// `account`), `abfss://container@account.dfs.core.windows.net/key`.
    pub fn parse(url: &str, account: Option<&str>) -> std::result::Result<Self, String> {
        let parsed = Url::parse(url).map_err(|e| format!("`{url}` is not a URL: {e}"))?;
        let kind = StoreKind::of(&parsed).ok_or_else(|| format!("`{url}` is not a bucket URL"))?;
        let host = parsed.host_str().unwrap_or_default().to_string();
        let key = parsed.path().trim_start_matches('/').to_string();
        let (bucket, account) = match (kind, parsed.scheme()) {
            (StoreKind::Azure, "abfs" | "abfss") => {
                let account = host.split('.').next().unwrap_or_default().to_string();
                (parsed.username().to_string(), Some(account))
            }
            (StoreKind::Azure, _) => (host, account.map(str::to_string)),
            (StoreKind::S3 | StoreKind::Gcs, _) => (host, None),
            _ => {
                return Err(format!(
                    "`{url}` is not in a bucket a warehouse can read (s3://, gs://, az://)"
                ));
            }
        };
        if bucket.is_empty() {
            return Err(format!("`{url}` names no bucket"));
        }
        Ok(Self {
            kind,
            bucket,
            account,
            key,
        })
    }

    /// The URL as `warehouse` writes it in its load command.
    pub fn url_for(&self, warehouse: Warehouse) -> std::result::Result<String, String> {
        let (bucket, key) = (&self.bucket, &self.key);
        Ok(match self.kind {
            StoreKind::S3 => format!("s3://{bucket}/{key}"),
            StoreKind::Gcs if warehouse == Warehouse::Snowflake => format!("gcs://{bucket}/{key}"),
            StoreKind::Gcs => format!("gs://{bucket}/{key}"),
            StoreKind::Azure => {
                let account = self.account.as_deref().ok_or_else(|| {
                    format!(
                        "the Azure storage account of az://{bucket}/{key} is unknown; set AZURE_STORAGE_ACCOUNT_NAME \
                         or azure_storage_account_name in berth.toml"
                    )
                })?;
                if warehouse == Warehouse::Snowflake {
                    format!("azure://{account}.blob.core.windows.net/{bucket}/{key}")
                } else {
                    format!("abfss://{bucket}@{account}.dfs.core.windows.net/{key}")
                }
            }
            StoreKind::Local | StoreKind::Memory => return Err("not a bucket".into()),
        })
    }
}

/// A job file where the warehouse reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StagedFile {
    /// The object.
    pub object: BucketObject,
    /// Bytes.
    pub size: u64,
    /// Uploaded by this call (`false`: already in place).
    pub uploaded: bool,
    /// Read where the package is, in its own bucket (not in the staging bucket): its keys are
    /// the ones to forward.
    pub in_package: bool,
    /// Rows, when berth wrote the file (a job converted to Parquet).
    pub rows: Option<u64>,
}

/// The staged object name of a job: `<load id>.<job file>` for Parquet, and for other formats,
/// which berth converts, `<load id>.<table>.<file id>.<retry>.parquet`.
pub fn staged_name(load_id: &str, job: &JobFile) -> String {
    if job.name.format == FileFormat::Parquet {
        format!("{load_id}.{}", job.name)
    } else {
        let n = &job.name;
        format!("{load_id}.{}.{}.{}.parquet", n.table, n.file_id, n.retry_count)
    }
}

/// The staging bucket: where packages that are not in a bucket go first.
#[derive(Clone)]
pub struct Staging {
    url: String,
    kind: StoreKind,
    store: Arc<dyn ObjectStore>,
    root: Path,
    account: Option<String>,
    credentials: Credentials,
}

impl fmt::Debug for Staging {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Staging")
            .field("url", &self.url)
            .field("credentials", &self.credentials)
            .finish_non_exhaustive()
    }
}

impl Staging {
    /// The staging bucket at `url` (`s3://bucket/prefix`, `gs://…`, `az://…`, `abfss://…`), with
    /// `config`'s options and the environment's for it.
    pub fn open(url: &str, config: &StorageConfig) -> Result<Self> {
        let (parsed, kind) = staging_url(url)?;
        let (store, root) = open_store(url, config).map_err(|e| Error::Config {
            destination: format!("staging {url}"),
            reason: e.to_string(),
        })?;
        Ok(Self {
            url: display_url(&parsed).trim_end_matches('/').to_string(),
            kind,
            store,
            root,
            account: azure_account(url, config),
            credentials: Credentials::for_url(url, config),
        })
    }

    /// A staging location that only names objects (for `berth plan`): no store is opened, no
    /// credentials are read, nothing is read or written.
    pub fn named(url: &str) -> Result<Self> {
        let (parsed, kind) = staging_url(url)?;
        let account = azure_account(url, &StorageConfig::default());
        let prefix = BucketObject::parse(url, Some(account.as_deref().unwrap_or("account")))
            .map(|o| o.key)
            .unwrap_or_default();
        Ok(Self {
            url: display_url(&parsed).trim_end_matches('/').to_string(),
            kind,
            store: Arc::new(object_store::memory::InMemory::new()),
            root: Path::from(prefix.as_str()),
            account,
            credentials: Credentials::default(),
        })
    }

    /// The staging URL (no credentials).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The kind of bucket.
    pub fn kind(&self) -> StoreKind {
        self.kind
    }

    /// The keys configured for the staging bucket.
    pub fn credentials(&self) -> &Credentials {
        &self.credentials
    }

    /// Uses `credentials` instead of the configured ones (for `berth plan`: redacted values).
    pub fn with_credentials(mut self, credentials: Credentials) -> Self {
        self.credentials = credentials;
        self
    }

    /// The object a job is staged as: `<staging>/<dataset>/<table>/<staged name>` (see
    /// [`staged_name`]).
    pub fn object_path(&self, dataset: &str, table: &str, staged_name: &str) -> Path {
        let mut path = self.root.clone();
        for part in [dataset, table, staged_name] {
            path = path.clone().join(part);
        }
        path
    }

    /// The lease that keeps two berth processes from loading `load_id` into `dataset` at once
    /// (see [`berth_model::lease`]): `<staging>/<dataset>/_berth_locks/<load id>.json`, with the
    /// store it lives in and its name for messages.
    pub fn lock_object(&self, dataset: &str, load_id: &str) -> (Arc<dyn ObjectStore>, Path, String) {
        let path = self.object_path(dataset, "_berth_locks", &format!("{load_id}.json"));
        let display = format!("{}/{dataset}/_berth_locks/{load_id}.json", self.url);
        (Arc::clone(&self.store), path, display)
    }

    /// The lease that keeps two berth processes from emptying, replacing or merging
    /// `dataset.table` at once: `<staging>/<dataset>/_berth_locks/tables/<table>.json`.
    pub fn table_lock_object(&self, dataset: &str, table: &str) -> (Arc<dyn ObjectStore>, Path, String) {
        let mut path = self.object_path(dataset, "_berth_locks", "tables");
        path = path.clone().join(format!("{table}.json"));
        let display = format!("{}/{dataset}/_berth_locks/tables/{table}.json", self.url);
        (Arc::clone(&self.store), path, display)
    }

    /// The bucket object at `path`.
    pub fn object(&self, path: &Path) -> BucketObject {
        let prefix = BucketObject::parse(&self.url, self.account.as_deref()).ok();
        let (bucket, account) = prefix.map_or_else(|| (String::new(), None), |p| (p.bucket, p.account));
        BucketObject {
            kind: self.kind,
            bucket,
            account,
            key: path.to_string(),
        }
    }

    /// The key prefix of the staging location inside its bucket (what a Snowflake named stage's
    /// URL points at).
    pub fn prefix(&self) -> String {
        self.root.to_string()
    }

    /// Uploads `job` of `package` (unless an object of the same size is there already); a job in
    /// another format than Parquet is read by berth (with `read`) and written as Parquet.
    pub async fn upload(
        &self,
        package: &LoadPackage,
        job: &JobFile,
        dataset: &str,
        read: &berth_model::read::ReadOptions,
    ) -> Result<StagedFile> {
        let path = self.object_path(dataset, &job.name.table, &staged_name(&package.load_id, job));
        if job.name.format != FileFormat::Parquet {
            return self.convert(package, job, path, read).await;
        }
        let object = self.object(&path);
        let shown = format!(
            "{}/{}",
            self.url,
            path.as_ref()
                .trim_start_matches(self.root.as_ref())
                .trim_start_matches('/')
        );
        let store_error = |action: &str, e: object_store::Error| Error::Database {
            kind: if matches!(
                e,
                object_store::Error::NotFound { .. }
                    | object_store::Error::PermissionDenied { .. }
                    | object_store::Error::Unauthenticated { .. }
            ) {
                berth_destination::ErrorKind::Terminal
            } else {
                berth_destination::ErrorKind::Transient
            },
            destination: self.url.clone(),
            context: format!("{action} `{}` as {shown}", package.job_display(job)),
            message: scrub(&e.to_string(), &self.credentials.secrets()),
        };
        match self.store.head(&path).await {
            Ok(meta) if meta.size == job.size => {
                return Ok(StagedFile {
                    object,
                    size: job.size,
                    uploaded: false,
                    in_package: false,
                    rows: None,
                });
            }
            Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(store_error("checking", e)),
        }
        let source = package.location.child(&job.relative_path());
        let mut reader = package
            .location
            .store()
            .get(&source)
            .await
            .map_err(|e| Error::Package(berth_model::Error::store("read", package.job_display(job), e)))?
            .into_stream();
        let upload = self
            .store
            .put_multipart(&path)
            .await
            .map_err(|e| store_error("uploading", e))?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
        let mut size = 0u64;
        while let Some(chunk) = reader.next().await {
            let chunk = match chunk {
                Ok(chunk) => chunk,
                Err(e) => {
                    let _ = writer.abort().await;
                    return Err(Error::Package(berth_model::Error::store(
                        "read",
                        package.job_display(job),
                        e,
                    )));
                }
            };
            size += chunk.len() as u64;
            writer
                .wait_for_capacity(2)
                .await
                .map_err(|e| store_error("uploading", e))?;
            writer.write(&chunk);
        }
        writer.finish().await.map_err(|e| store_error("uploading", e))?;
        tracing::debug!(job = %package.job_display(job), to = %shown, bytes = size, "staged");
        Ok(StagedFile {
            object,
            size,
            uploaded: true,
            in_package: false,
            rows: None,
        })
    }

    /// Reads a non-Parquet job (checked against its table as for any load) and writes it to
    /// `path` as Parquet, batch by batch.
    async fn convert(
        &self,
        package: &LoadPackage,
        job: &JobFile,
        path: Path,
        read: &berth_model::read::ReadOptions,
    ) -> Result<StagedFile> {
        use parquet::arrow::async_writer::AsyncArrowWriter;
        let display = package.job_display(job);
        let write_error = |e: parquet::errors::ParquetError| Error::Database {
            kind: berth_destination::ErrorKind::Transient,
            destination: self.url.clone(),
            context: format!("writing `{display}` as Parquet to the staging bucket"),
            message: scrub(&e.to_string(), &self.credentials.secrets()),
        };
        let mut reader = berth_model::read::open_job(package, job, read).await?;
        let sink = object_store::buffered::BufWriter::new(Arc::clone(&self.store), path.clone());
        let mut writer = AsyncArrowWriter::try_new(sink, Arc::clone(&reader.schema), None).map_err(write_error)?;
        let mut rows = 0u64;
        while let Some(batch) = reader.stream.next().await {
            let batch = batch?;
            rows += batch.num_rows() as u64;
            writer.write(&batch).await.map_err(write_error)?;
        }
        let size = writer.bytes_written() as u64;
        writer.close().await.map_err(write_error)?;
        Ok(StagedFile {
            object: self.object(&path),
            size,
            uploaded: true,
            in_package: false,
            rows: Some(rows),
        })
    }
}

/// A staging URL and its bucket kind (S3, GCS or Azure; anything else is refused).
fn staging_url(url: &str) -> Result<(Url, StoreKind)> {
    let bad = |reason: String| Error::Config {
        destination: format!("staging {url}"),
        reason,
    };
    let parsed = Url::parse(url).map_err(|e| bad(e.to_string()))?;
    let kind = StoreKind::of(&parsed)
        .filter(|k| matches!(k, StoreKind::S3 | StoreKind::Gcs | StoreKind::Azure))
        .ok_or_else(|| bad("the staging location must be a bucket URL: s3://, gs://, az:// or abfss://".into()))?;
    Ok((parsed, kind))
}

/// The Azure storage account for `url`: from `abfss://container@account…`, `config`, or
/// `AZURE_STORAGE_ACCOUNT_NAME`.
pub fn azure_account(url: &str, config: &StorageConfig) -> Option<String> {
    if let Ok(parsed) = Url::parse(url)
        && matches!(parsed.scheme(), "abfs" | "abfss")
    {
        return parsed.host_str().and_then(|h| h.split('.').next()).map(str::to_string);
    }
    let options = config.options_for(url);
    ["azure_storage_account_name", "account_name"]
        .iter()
        .find_map(|k| options.get(*k).cloned())
        .or_else(|| std::env::var("AZURE_STORAGE_ACCOUNT_NAME").ok())
}

/// Where `job` of `package` is for `warehouse`: in place when the package is in a bucket the
/// warehouse reads (and, with a named stage, under the stage's prefix), else uploaded to
/// `staging` (other formats than Parquet read with `read` and converted).
#[expect(clippy::too_many_arguments, reason = "a job, where it goes, and how it is read")]
pub async fn stage_job(
    warehouse: Warehouse,
    package: &LoadPackage,
    job: &JobFile,
    dataset: &str,
    staging: Option<&Staging>,
    access: &StageAccess,
    config: &StorageConfig,
    read: &berth_model::read::ReadOptions,
) -> Result<StagedFile> {
    if let Some(object) = in_place(warehouse, package, job, staging, access, config) {
        return Ok(StagedFile {
            object,
            size: job.size,
            uploaded: false,
            in_package: true,
            rows: None,
        });
    }
    let Some(staging) = staging else {
        return Err(Error::Config {
            destination: warehouse.name().into(),
            reason: format!(
                "`{}` is not in a bucket {warehouse} reads; give a staging bucket to upload it to (--staging \
                 s3://bucket/prefix, or BERTH_STAGING)",
                package.job_display(job)
            ),
        });
    };
    staging.upload(package, job, dataset, read).await
}

/// The object of `job` when the warehouse can read it where it is.
pub fn in_place(
    warehouse: Warehouse,
    package: &LoadPackage,
    job: &JobFile,
    staging: Option<&Staging>,
    access: &StageAccess,
    config: &StorageConfig,
) -> Option<BucketObject> {
    if package.location.local_dir().is_some() || job.name.format != FileFormat::Parquet {
        return None;
    }
    let url = package.location.display_child(&job.relative_path());
    let root = package.location.to_string();
    let object = BucketObject::parse(&url, azure_account(&root, config).as_deref()).ok()?;
    if !warehouse.reads(object.kind) {
        return None;
    }
    if let StageAccess::NamedStage(_) = access {
        // A named stage reads only under its own URL.
        let staging = staging?;
        if !url.starts_with(&format!("{}/", staging.url())) {
            return None;
        }
    }
    Some(object)
}

/// `message` with every secret replaced by `***`.
pub fn scrub(message: &str, secrets: &[String]) -> String {
    secrets
        .iter()
        .filter(|s| s.len() >= 4)
        .fold(message.to_string(), |m, s| m.replace(s.as_str(), "***"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_urls_per_warehouse() {
        let s3 = BucketObject::parse("s3://b/p/x.parquet", None).unwrap();
        assert_eq!(s3.url_for(Warehouse::Redshift).unwrap(), "s3://b/p/x.parquet");
        let gs = BucketObject::parse("gs://b/p/x.parquet", None).unwrap();
        assert_eq!(gs.url_for(Warehouse::Snowflake).unwrap(), "gcs://b/p/x.parquet");
        assert_eq!(gs.url_for(Warehouse::BigQuery).unwrap(), "gs://b/p/x.parquet");
        let az = BucketObject::parse("az://c/p/x.parquet", Some("acct")).unwrap();
        assert_eq!(
            az.url_for(Warehouse::Snowflake).unwrap(),
            "azure://acct.blob.core.windows.net/c/p/x.parquet"
        );
        assert_eq!(
            az.url_for(Warehouse::Databricks).unwrap(),
            "abfss://c@acct.dfs.core.windows.net/p/x.parquet"
        );
        let abfss = BucketObject::parse("abfss://c@acct.dfs.core.windows.net/p/x.parquet", None).unwrap();
        assert_eq!(abfss, az);
        let unknown = BucketObject::parse("az://c/x", None).unwrap();
        assert!(
            unknown
                .url_for(Warehouse::Snowflake)
                .unwrap_err()
                .contains("AZURE_STORAGE_ACCOUNT_NAME")
        );
    }

    #[test]
    fn credentials_never_show_in_debug() {
        let options = BTreeMap::from([
            ("aws_access_key_id".to_string(), "AKIAEXAMPLE".to_string()),
            ("aws_secret_access_key".to_string(), "very-secret-value".to_string()),
        ]);
        let credentials = Credentials::from_options(&options, |_| None);
        let shown = format!("{credentials:?}");
        assert!(
            !shown.contains("very-secret-value") && !shown.contains("AKIAEXAMPLE"),
            "{shown}"
        );
        assert_eq!(credentials.redacted().aws_secret_key.as_deref(), Some("***"));
        assert_eq!(
            scrub("bad key very-secret-value", &credentials.secrets()),
            "bad key ***"
        );
        let from_env = Credentials::from_options(&BTreeMap::new(), |v| {
            (v == "AWS_SESSION_TOKEN").then(|| "tok-123".into())
        });
        assert_eq!(from_env.aws_token.as_deref(), Some("tok-123"));
    }

    #[test]
    fn access_rules() {
        assert!(StageAccess::Implicit.check(Warehouse::BigQuery, StoreKind::Gcs).is_ok());
        assert!(
            StageAccess::ForwardCredentials
                .check(Warehouse::Snowflake, StoreKind::Gcs)
                .is_err()
        );
        assert!(
            StageAccess::IamRole("arn".into())
                .check(Warehouse::Redshift, StoreKind::S3)
                .is_ok()
        );
        assert!(
            StageAccess::Implicit
                .check(Warehouse::Snowflake, StoreKind::S3)
                .is_err()
        );
    }
}
