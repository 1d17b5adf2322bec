//! Where a lake lives: its root (a local folder or a bucket prefix), the object store under it, and
//! the Delta tables at `<root>/<dataset>/<table>/`, laid out as dlt's filesystem destination with
//! `table_format="delta"` lays them out.

use std::sync::{Arc, Once};

use berth_destination::{Error, ErrorKind};
use berth_model::StorageConfig;
use deltalake_core::DeltaTable;
use deltalake_core::errors::DeltaTableError;
use deltalake_core::table::builder::DeltaTableBuilder;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use url::Url;

/// A lake: Delta tables and dlt's bookkeeping files under one root.
#[derive(Clone)]
pub struct Lake {
    /// The root as a URL, without a trailing slash (`file:///data/lake`, `s3://bucket/lake`).
    root: Url,
    /// The store the root is in, `/` at its root (the bucket, or the local file system).
    store: Arc<dyn ObjectStore>,
    /// The root inside `store`.
    root_path: Path,
    /// The root for messages: no credentials.
    display: String,
}

impl std::fmt::Debug for Lake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lake")
            .field("root", &self.display)
            .finish_non_exhaustive()
    }
}

/// delta-rs opens tables in buckets through a log store registered per URL scheme; berth hands it
/// stores it built itself (with berth.toml's options), whose conditional puts make commits atomic.
fn register_log_stores() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let factories = deltalake_core::logstore::logstore_factories();
        for scheme in ["s3://", "s3a://", "gs://", "az://", "abfs://", "abfss://", "azure://"] {
            let Ok(url) = Url::parse(scheme) else { continue };
            if factories.get(&url).is_none() {
                factories.insert(url, Arc::new(DefaultLogStores));
            }
        }
    });
}

/// delta-rs's default log store (commits by conditional put) for stores berth opened.
#[derive(Debug)]
struct DefaultLogStores;

impl deltalake_core::logstore::LogStoreFactory for DefaultLogStores {
    fn with_options(
        &self,
        prefixed_store: deltalake_core::logstore::ObjectStoreRef,
        root_store: deltalake_core::logstore::ObjectStoreRef,
        location: &Url,
        options: &deltalake_core::logstore::StorageConfig,
    ) -> deltalake_core::DeltaResult<deltalake_core::logstore::LogStoreRef> {
        Ok(deltalake_core::logstore::default_logstore(
            prefixed_store,
            root_store,
            location,
            options,
        ))
    }
}

impl Lake {
    /// The lake at `location`: a path (created when missing) or a bucket URL (`s3://`, `gs://`,
    /// `az://`, `abfss://`), with the environment's and `storage`'s options for it.
    pub fn open(location: &str, storage: &StorageConfig) -> berth_destination::Result<Self> {
        register_log_stores();
        let bad = |reason: String| Error::Config {
            destination: format!("delta:{}", berth_model::redact::redact_url(location)),
            reason,
        };
        if location.is_empty() {
            return Err(bad(
                "name the lake's root: delta:<folder> or delta:s3://bucket/prefix".into()
            ));
        }
        let is_url = location.contains("://");
        let url = if is_url {
            Url::parse(location.trim_end_matches('/')).map_err(|e| bad(e.to_string()))?
        } else {
            let dir = std::path::Path::new(location);
            std::fs::create_dir_all(dir).map_err(|e| bad(format!("cannot create the folder: {e}")))?;
            let dir = std::fs::canonicalize(dir).map_err(|e| bad(e.to_string()))?;
            Url::from_directory_path(&dir).map_err(|()| bad("not a usable folder".into()))?
        };
        let (store, root_path) =
            berth_model::store::open_store(url.as_str(), storage).map_err(|e| bad(e.to_string()))?;
        let mut root = url;
        let trimmed = root.path().trim_end_matches('/').to_string();
        root.set_path(&trimmed);
        let display = berth_model::store::display_url(&root);
        Ok(Self {
            root,
            store,
            root_path,
            display,
        })
    }

    /// The root for messages (no credentials).
    pub fn display(&self) -> &str {
        &self.display
    }

    /// The store the lake is in (`/` at its root).
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// The object path of `parts` under the root.
    pub fn path(&self, parts: &[&str]) -> Path {
        parts.iter().fold(self.root_path.clone(), |path, part| path.join(*part))
    }

    /// The URL of the Delta table `table` of `dataset`.
    pub fn table_url(&self, dataset: &str, table: &str) -> Url {
        let mut url = self.root.clone();
        if let Ok(mut segments) = url.path_segments_mut() {
            segments.pop_if_empty().push(dataset).push(table);
        }
        url
    }

    /// The table handle, its log not read yet.
    pub fn handle(&self, dataset: &str, table: &str) -> berth_destination::Result<DeltaTable> {
        let url = self.table_url(dataset, table);
        DeltaTableBuilder::from_url(url.clone())
            .and_then(|b| b.with_storage_backend(Arc::clone(&self.store), url).build())
            .map_err(|e| delta_error(&self.display, &format!("{dataset}.{table}"), e))
    }

    /// The table as its newest commit has it; `None` when there is no Delta table there.
    pub async fn table(&self, dataset: &str, table: &str) -> berth_destination::Result<Option<DeltaTable>> {
        if !self.has_log(dataset, table).await? {
            return Ok(None);
        }
        let mut handle = self.handle(dataset, table)?;
        match handle.load().await {
            Ok(()) => Ok(Some(handle)),
            Err(DeltaTableError::NotATable(_)) => Ok(None),
            Err(e) => Err(delta_error(&self.display, &format!("{dataset}.{table}"), e)),
        }
    }

    /// Is there a Delta log at `dataset.table`? (One listed object is enough.)
    async fn has_log(&self, dataset: &str, table: &str) -> berth_destination::Result<bool> {
        use futures::StreamExt;
        let log = self.path(&[dataset, table, "_delta_log"]);
        let mut listed = self.store.list(Some(&log));
        while let Some(object) = listed.next().await {
            match object {
                // Local listings of a missing folder may yield what is beside it.
                Ok(object) if object.location.prefix_matches(&log) => return Ok(true),
                Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(self.store_error(&log, &e)),
            }
        }
        Ok(false)
    }

    /// A handle for a table about to be created (its local folder made first).
    pub fn new_table(&self, dataset: &str, table: &str) -> berth_destination::Result<DeltaTable> {
        if self.root.scheme() == "file" {
            let dir = std::path::PathBuf::from(format!("/{}", self.path(&[dataset, table])));
            std::fs::create_dir_all(&dir).map_err(|e| Error::Database {
                kind: ErrorKind::Terminal,
                destination: self.display.clone(),
                context: format!("creating {dataset}.{table}"),
                message: e.to_string(),
            })?;
        }
        self.handle(dataset, table)
    }

    /// In a local lake, removes the half-written files a killed process left in the folder
    /// `parts` (the local store writes `<name>#<n>` and renames it; object stores put whole
    /// objects). Other readers of the folder (dlt) would take them for rows.
    pub fn remove_partial_files(&self, parts: &[&str]) {
        if !self.is_local() {
            return;
        }
        let dir = std::path::PathBuf::from(format!("/{}", self.path(parts)));
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let partial = name
                .rsplit_once('#')
                .is_some_and(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
            if partial {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }

    /// Is the lake a local folder?
    pub fn is_local(&self) -> bool {
        self.root.scheme() == "file"
    }

    /// For a local lake, an exclusive lock on the file `parts` under the root, held until the
    /// file is dropped and released by the system when the process dies (a bucket's lock is a
    /// lease object instead); waits while another process holds it.
    pub async fn lock_file(&self, parts: &[&str], what: &str) -> berth_destination::Result<std::fs::File> {
        let path = std::path::PathBuf::from(format!("/{}", self.path(parts)));
        let failed = |e: std::io::Error| Error::Database {
            kind: ErrorKind::Terminal,
            destination: self.display.clone(),
            context: format!("locking {}", path.display()),
            message: e.to_string(),
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(failed)?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(failed)?;
        let mut announced = false;
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(file),
                Err(std::fs::TryLockError::WouldBlock) => {
                    if !announced {
                        tracing::info!("another process is loading {what}; waiting for it to finish");
                        announced = true;
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
                Err(std::fs::TryLockError::Error(e)) => return Err(failed(e)),
            }
        }
    }

    /// Writes `bytes` at `path` (whole, or not at all).
    pub async fn put(&self, path: &Path, bytes: Vec<u8>) -> berth_destination::Result<()> {
        self.store
            .put(path, PutPayload::from(bytes))
            .await
            .map(|_| ())
            .map_err(|e| self.store_error(path, &e))
    }

    /// Does an object exist at `path`?
    pub async fn exists(&self, path: &Path) -> berth_destination::Result<bool> {
        match self.store.head(path).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(self.store_error(path, &e)),
        }
    }

    /// The objects under `prefix`.
    pub async fn list(&self, prefix: &Path) -> berth_destination::Result<Vec<object_store::ObjectMeta>> {
        use futures::TryStreamExt;
        self.store
            .list(Some(prefix))
            .try_collect()
            .await
            .map_err(|e| self.store_error(prefix, &e))
    }

    /// The Delta tables of `dataset` (folders with a `_delta_log`), in name order.
    pub async fn tables(&self, dataset: &str) -> berth_destination::Result<Vec<String>> {
        let prefix = self.path(&[dataset]);
        let listed = self
            .store
            .list_with_delimiter(Some(&prefix))
            .await
            .map_err(|e| self.store_error(&prefix, &e))?;
        let mut tables = Vec::new();
        for folder in listed.common_prefixes {
            let Some(name) = folder.filename().map(str::to_string) else {
                continue;
            };
            if !name.starts_with("_dlt_") && self.has_log(dataset, &name).await? {
                tables.push(name);
            }
        }
        tables.sort();
        Ok(tables)
    }

    /// Deletes the object at `path` (gone already is fine).
    pub async fn delete(&self, path: &Path) -> berth_destination::Result<()> {
        match self.store.delete(path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.store_error(path, &e)),
        }
    }

    /// Deletes every object under `prefix` (a dropped table or staging dataset).
    pub async fn delete_prefix(&self, prefix: &Path) -> berth_destination::Result<()> {
        for object in self.list(prefix).await? {
            self.delete(&object.location).await?;
        }
        if self.root.scheme() == "file" {
            // Local folders stay behind empty; a table folder without a log is no table, but
            // listing it would still show it.
            let dir = std::path::PathBuf::from(format!("/{prefix}"));
            let _ = std::fs::remove_dir_all(dir);
        }
        Ok(())
    }

    fn store_error(&self, path: &Path, e: &object_store::Error) -> Error {
        let kind = match e {
            object_store::Error::Generic { .. } => ErrorKind::Transient,
            _ => ErrorKind::Terminal,
        };
        Error::Database {
            kind,
            destination: self.display.clone(),
            context: path.to_string(),
            message: scrub(&e.to_string()),
        }
    }
}

/// Messages of object stores may quote signed URLs: keep only their path.
fn scrub(message: &str) -> String {
    message
        .split_whitespace()
        .map(
            |word| match Url::parse(word.trim_matches(|c| c == '"' || c == '\'' || c == ',')) {
                Ok(url) if url.query().is_some() || url.password().is_some() => berth_model::store::display_url(&url),
                _ => word.to_string(),
            },
        )
        .collect::<Vec<_>>()
        .join(" ")
}

/// A delta-rs error about `what` in the lake `lake` as berth's: conflicts with another writer and
/// I/O are worth a retry, everything else is terminal.
pub fn delta_error(lake: &str, what: &str, e: DeltaTableError) -> Error {
    let kind = match &e {
        DeltaTableError::Transaction { .. }
        | DeltaTableError::VersionAlreadyExists(_)
        | DeltaTableError::ObjectStore { .. } => ErrorKind::Transient,
        _ => ErrorKind::Terminal,
    };
    Error::Database {
        kind,
        destination: lake.to_string(),
        context: format!("Delta table {what}"),
        message: scrub(&e.to_string()),
    }
}
