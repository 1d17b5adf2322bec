//! A dlt normalized load package: a folder of job files plus `schema.json`, on local disk or any
//! object store.
//!
//! ```text
//! <load_id>/
//!   schema.json  load_package_state.json  schema_updates.json  .restore/state.json
//!   new_jobs/ started_jobs/ completed_jobs/ failed_jobs/ .exceptions/ .pending_transitions/
//! ```
//!
//! Empty folders may be missing (git and object stores keep none). Jobs move between the folders
//! by rename, as dlt does; that happens only where a rename is atomic (the local filesystem).

use std::fmt;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::local::LocalFileSystem;
#[cfg(test)]
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use crate::LoadId;
use crate::error::{Error, Result};
use crate::job::JobFileName;
use crate::schema::Schema;
use crate::state::{PackageState, RestoreState};

/// File names and folders of dlt's package layout.
pub mod layout {
    /// Full stored schema.
    pub const SCHEMA: &str = "schema.json";
    /// Typed-JSON package state.
    pub const STATE: &str = "load_package_state.json";
    /// Present while the schema migration has not run.
    pub const SCHEMA_UPDATES: &str = "schema_updates.json";
    /// Written once the migration ran.
    pub const APPLIED_SCHEMA_UPDATES: &str = "applied_schema_updates.json";
    /// Completion marker: `loaded` or `aborted`.
    pub const COMPLETED: &str = "package_completed.json";
    /// Local pipeline state when the package was made.
    pub const RESTORE_STATE: &str = ".restore/state.json";
    /// One file per failed attempt.
    pub const EXCEPTIONS: &str = ".exceptions";
    /// Crash-safety markers written after the destination committed.
    pub const PENDING_TRANSITIONS: &str = ".pending_transitions";
}

/// Where a job file is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum JobState {
    /// Waiting (`new_jobs/`).
    New,
    /// Being loaded, or interrupted (`started_jobs/`).
    Started,
    /// Loaded (`completed_jobs/`).
    Completed,
    /// Failed terminally (`failed_jobs/`).
    Failed,
}

impl JobState {
    /// All states, in folder order.
    pub const ALL: [JobState; 4] = [Self::New, Self::Started, Self::Completed, Self::Failed];

    /// The folder holding jobs in this state.
    pub fn folder(self) -> &'static str {
        match self {
            Self::New => "new_jobs",
            Self::Started => "started_jobs",
            Self::Completed => "completed_jobs",
            Self::Failed => "failed_jobs",
        }
    }
}

/// Whether a failed attempt may succeed when tried again (dlt's `retry: transient|terminal`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// A later attempt may succeed (connection lost, server restarting, ...).
    Transient,
    /// The job itself is wrong (bad data, a type the table cannot take, ...).
    Terminal,
}

impl FailureKind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Transient => "transient",
            Self::Terminal => "terminal",
        }
    }
}

/// Why a job last failed, as recorded in the package: `failed_jobs/<job>.exception` for a failed
/// job, `.exceptions/<table>.<file_id>.<retry>.exception` for a job queued again after a failure.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct JobFailure {
    /// Transient or terminal.
    pub kind: FailureKind,
    /// The error message.
    pub message: String,
}

/// The state a `.pending_transitions/` marker records (dlt's `TLoadJobState` values it writes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TransitionState {
    /// The job's rows committed.
    Completed,
    /// The job failed for good.
    Failed,
    /// The job is to be retried.
    Retry,
    /// A state this berth does not know: the job is treated as failed.
    #[serde(other)]
    Unknown,
}

/// A crash-safety marker of dlt's protocol (`.pending_transitions/<job file>`): the destination
/// committed the job's outcome, the job file has not moved yet.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PendingTransition {
    /// The state the destination committed.
    pub state: TransitionState,
    /// Why it failed.
    pub failed_message: Option<String>,
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::New => "new",
            Self::Started => "started",
            Self::Completed => "completed",
            Self::Failed => "failed",
        })
    }
}

/// Where a package lives: an object store and the package folder inside it.
#[derive(Clone)]
pub struct PackageLocation {
    store: Arc<dyn ObjectStore>,
    root: Path,
    display: String,
    local_dir: Option<PathBuf>,
}

impl fmt::Debug for PackageLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The store's Debug may hold credentials: show only the location.
        f.debug_struct("PackageLocation")
            .field("location", &self.display)
            .finish()
    }
}

impl fmt::Display for PackageLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.display)
    }
}

impl PackageLocation {
    /// Parses a local path or a URL (`file://`, `s3://`, `gs://`, `az://`, `abfss://`, `memory://`),
    /// with settings from the environment only; see [`PackageLocation::parse_with`].
    pub fn parse(location: &str) -> Result<Self> {
        Self::parse_with(location, &crate::store::StorageConfig::new())
    }

    /// Parses a local path or a URL, with the storage options of `config` for the URL (see
    /// [`crate::store`]). `memory://` is an empty in-process store.
    pub fn parse_with(location: &str, config: &crate::store::StorageConfig) -> Result<Self> {
        if location.contains("://") {
            let url = url::Url::parse(location).map_err(|e| Error::Location {
                location: location.to_string(),
                reason: e.to_string(),
            })?;
            let (store, root) = crate::store::open_store(location, config)?;
            if url.scheme() == "file" {
                return Self::local(&url.to_file_path().unwrap_or_default()).map_err(|e| Error::Location {
                    location: location.to_string(),
                    reason: e.to_string(),
                });
            }
            let shown = crate::store::display_url(&url);
            return Ok(Self::from_store(store, root, shown.trim_end_matches('/')));
        }
        Self::local(FsPath::new(location)).map_err(|e| Error::Location {
            location: location.to_string(),
            reason: e.to_string(),
        })
    }

    /// A package folder on the local filesystem.
    pub fn local(dir: &FsPath) -> std::io::Result<Self> {
        let dir = std::fs::canonicalize(dir)?;
        if !dir.is_dir() {
            return Err(std::io::Error::other("not a directory"));
        }
        let root = Path::from_filesystem_path(&dir).map_err(std::io::Error::other)?;
        Ok(Self {
            store: Arc::new(LocalFileSystem::new()),
            root,
            display: dir.display().to_string(),
            local_dir: Some(dir),
        })
    }

    /// A package folder `root` inside any object store; `display` is what messages show.
    pub fn from_store(store: Arc<dyn ObjectStore>, root: impl Into<Path>, display: impl Into<String>) -> Self {
        Self {
            store,
            root: root.into(),
            display: display.into(),
            local_dir: None,
        }
    }

    /// The object store.
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// The package folder inside the store.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The folder on disk when the package is local.
    pub fn local_dir(&self) -> Option<&FsPath> {
        self.local_dir.as_deref()
    }

    /// The last path segment: dlt names package folders by load id.
    pub fn folder_name(&self) -> String {
        self.root.filename().unwrap_or_default().to_string()
    }

    /// Path of a file inside the package.
    pub fn child(&self, relative: &str) -> Path {
        // `Path::parse` keeps the name as listings return it (unicode as is); `join` would
        // percent-encode non-ASCII characters, which a local store then looks for literally.
        let joined = format!("{}/{}", self.root.as_ref(), relative.trim_matches('/'));
        Path::parse(&joined).unwrap_or_else(|_| {
            relative
                .split('/')
                .filter(|s| !s.is_empty())
                .fold(self.root.clone(), |p, part| p.join(part))
        })
    }

    /// Display form of a file inside the package, for messages.
    pub fn display_child(&self, relative: &str) -> String {
        format!("{}/{relative}", self.display.trim_end_matches('/'))
    }

    /// Reads a whole (small) file; `Ok(None)` when it does not exist.
    pub async fn read_optional(&self, relative: &str) -> Result<Option<Bytes>> {
        match self.store.get(&self.child(relative)).await {
            Ok(r) => r
                .bytes()
                .await
                .map(Some)
                .map_err(|e| Error::store("read", self.display_child(relative), e)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(Error::store("read", self.display_child(relative), e)),
        }
    }

    /// Writes a whole (small) file.
    pub async fn write(&self, relative: &str, data: impl Into<PutPayload>) -> Result<()> {
        self.store
            .put(&self.child(relative), data.into())
            .await
            .map(|_| ())
            .map_err(|e| Error::store("write", self.display_child(relative), e))
    }

    /// Renames a file inside the package (atomic on the local filesystem).
    pub async fn rename(&self, from: &str, to: &str) -> Result<()> {
        self.store
            .rename(&self.child(from), &self.child(to))
            .await
            .map_err(|e| Error::store("rename", self.display_child(from), e))
    }
}

/// Lists the packages under `dir`, sorted by load id: `dir` itself when it is a package, else its
/// sub-folders that hold a `schema.json` (e.g. a dlt pipeline's `load/normalized/`).
pub fn discover_local_packages(dir: &FsPath) -> std::io::Result<Vec<PathBuf>> {
    if dir.join(layout::SCHEMA).is_file() {
        return Ok(vec![dir.to_path_buf()]);
    }
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.join(layout::SCHEMA).is_file() {
            found.push(path);
        }
    }
    found.sort_by_key(|p| load_id_from_folder(&p.file_name().unwrap_or_default().to_string_lossy()));
    Ok(found)
}

/// Is `s` shaped like a dlt load id (`<seconds>.<fraction>`, or plain digits)?
pub fn is_load_id(s: &str) -> bool {
    let mut parts = s.splitn(2, '.');
    let whole = parts.next().unwrap_or_default();
    let frac = parts.next().unwrap_or("0");
    !whole.is_empty() && whole.bytes().all(|b| b.is_ascii_digit()) && frac.bytes().all(|b| b.is_ascii_digit())
}

/// The load id of a package folder: the folder name, or the load id after its last `_` when a tool
/// prefixed the folder with an ordering number (`0_1795379913.1787062`).
pub fn load_id_from_folder(folder: &str) -> String {
    if is_load_id(folder) {
        return folder.to_string();
    }
    match folder.rsplit_once('_') {
        Some((_, tail)) if is_load_id(tail) => tail.to_string(),
        _ => folder.to_string(),
    }
}

/// The load id of a package in folder `folder` with package state `state`: the package's own
/// (`pipeline_state._dlt_load_id`) where it records one, else the folder's. A folder is named by
/// its load id, optionally after an ordering prefix (`0_1795379913.1787062`); any other name is
/// refused, since the load id is what `_dlt_loads`, the journal and the staging dataset are keyed by.
pub fn package_load_id(folder: &str, state: &PackageState, package: &str) -> Result<LoadId> {
    let from_folder = load_id_from_folder(folder);
    match state.load_id.as_deref().map(|id| (id, LoadId::parse(id))) {
        // Load ids name staging datasets with their dot made `_`: only dlt's shape keeps that
        // one-to-one.
        Some((id, None)) => Err(Error::LoadId {
            package: package.to_string(),
            message: format!(
                "the package's state says its load id is `{id}`, which is not a dlt load id (`<seconds>.<fraction>`)"
            ),
        }),
        Some((id, Some(parsed))) if id == from_folder => Ok(parsed),
        Some((id, Some(_))) => Err(Error::LoadId {
            package: package.to_string(),
            message: format!(
                "the folder is named `{folder}` but the package's state says its load id is `{id}`: \
                 rename the folder to `{id}` (dlt names package folders by their load id)"
            ),
        }),
        None => LoadId::parse(&from_folder).ok_or_else(|| Error::LoadId {
            package: package.to_string(),
            message: format!(
                "`{folder}` is not a load id (`<seconds>.<fraction>`, as dlt names package folders) and the \
                 package state records none: rename the folder to the package's load id"
            ),
        }),
    }
}

/// Refuses a local package in which anything berth reads or writes is a symbolic link: the
/// package's own files, its job and bookkeeping folders, and every entry in those folders. A link
/// would make berth load a file from outside the package, or move and write files outside it.
/// The package folder itself may be a link (the user named it).
pub fn confine(dir: &FsPath) -> Result<()> {
    let is_link = |path: &FsPath| std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
    let refuse = |path: &FsPath| Error::Symlink {
        path: path.display().to_string(),
    };
    let files = [
        layout::SCHEMA,
        layout::STATE,
        layout::SCHEMA_UPDATES,
        layout::APPLIED_SCHEMA_UPDATES,
        layout::COMPLETED,
        ".restore",
        layout::RESTORE_STATE,
    ];
    for file in files {
        if is_link(&dir.join(file)) {
            return Err(refuse(&dir.join(file)));
        }
    }
    let folders = JobState::ALL
        .iter()
        .map(|s| s.folder())
        .chain([layout::EXCEPTIONS, layout::PENDING_TRANSITIONS]);
    for folder in folders {
        let path = dir.join(folder);
        if is_link(&path) {
            return Err(refuse(&path));
        }
        let Ok(entries) = std::fs::read_dir(&path) else {
            continue;
        };
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_symlink()) {
                return Err(refuse(&entry.path()));
            }
        }
    }
    Ok(())
}

/// One job file of a package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobFile {
    /// The parsed name.
    pub name: JobFileName,
    /// The folder it is in.
    pub state: JobState,
    /// Size in bytes.
    pub size: u64,
}

impl JobFile {
    /// Path relative to the package folder.
    pub fn relative_path(&self) -> String {
        format!("{}/{}", self.state.folder(), self.name)
    }
}

/// An opened package: its schema, state and jobs.
#[derive(Debug, Clone)]
pub struct LoadPackage {
    /// Where it lives.
    pub location: PackageLocation,
    /// The load id (see [`package_load_id`]).
    pub load_id: LoadId,
    /// `schema.json`.
    pub schema: Arc<Schema>,
    /// `load_package_state.json` (empty when absent).
    pub state: PackageState,
    /// `.restore/state.json`, when present.
    pub restore: Option<RestoreState>,
    /// `schema_updates.json` exists: the migration has not run yet.
    pub schema_update_pending: bool,
    /// Body of `package_completed.json` (`loaded` / `aborted`), when present.
    pub completed: Option<String>,
    /// All jobs, sorted by table then name.
    pub jobs: Vec<JobFile>,
    /// `.pending_transitions/`: each marker under its job's file name, sorted by name.
    pub pending_transitions: Vec<(JobFileName, PendingTransition)>,
}

impl LoadPackage {
    /// Opens and validates a package: schema, state, every job file name and table. A local
    /// package must hold no symbolic link where berth reads or writes ([`confine`]).
    pub async fn open(location: PackageLocation) -> Result<Self> {
        if let Some(dir) = location.local_dir() {
            confine(dir)?;
        }
        let schema_path = location.display_child(layout::SCHEMA);
        let schema_bytes = location
            .read_optional(layout::SCHEMA)
            .await?
            .ok_or_else(|| Error::MissingSchema {
                package: location.to_string(),
            })?;
        let schema_text = std::str::from_utf8(&schema_bytes).map_err(|e| Error::InvalidSchema {
            path: schema_path.clone(),
            message: format!("not UTF-8: {e}"),
        })?;
        let schema = Schema::from_json(schema_text, &schema_path)?;

        let state = match location.read_optional(layout::STATE).await? {
            Some(bytes) => {
                PackageState::from_json(&String::from_utf8_lossy(&bytes), &location.display_child(layout::STATE))?
            }
            None => PackageState::empty(),
        };
        let restore = match location.read_optional(layout::RESTORE_STATE).await? {
            Some(bytes) => Some(RestoreState::from_json(
                &String::from_utf8_lossy(&bytes),
                &location.display_child(layout::RESTORE_STATE),
            )?),
            None => None,
        };
        let schema_update_pending = location.read_optional(layout::SCHEMA_UPDATES).await?.is_some();
        let completed = location
            .read_optional(layout::COMPLETED)
            .await?
            .map(|b| String::from_utf8_lossy(&b).trim().to_string());

        let mut jobs = Vec::new();
        for state in JobState::ALL {
            let folder = location.child(state.folder());
            let mut listing = location.store().list(Some(&folder));
            while let Some(meta) = listing
                .try_next()
                .await
                .map_err(|e| Error::store("list", location.display_child(state.folder()), e))?
            {
                // Object stores list recursively: keep direct children only.
                let Some(parts) = meta.location.prefix_match(&folder) else {
                    continue;
                };
                let parts: Vec<_> = parts.collect();
                let [file] = parts.as_slice() else { continue };
                let file = file.as_ref();
                if state == JobState::Failed && file.ends_with(".exception") {
                    continue;
                }
                let name = JobFileName::parse(file)?;
                if schema.table(&name.table).is_none() {
                    return Err(Error::TableNotInSchema {
                        job: location.display_child(&format!("{}/{file}", state.folder())),
                        table: name.table,
                    });
                }
                jobs.push(JobFile {
                    name,
                    state,
                    size: meta.size,
                });
            }
        }
        jobs.sort_by(|a, b| (&a.name.table, a.name.to_string()).cmp(&(&b.name.table, b.name.to_string())));
        let pending_transitions = read_pending_transitions(&location).await?;

        let load_id = package_load_id(&location.folder_name(), &state, &location.to_string())?;
        Ok(Self {
            load_id,
            location,
            schema: Arc::new(schema),
            state,
            restore,
            schema_update_pending,
            completed,
            jobs,
            pending_transitions,
        })
    }

    /// The dataset recorded in the package (`.restore/state.json`), else the schema name, as dlt
    /// names it: see [`Self::dataset_name`].
    pub fn default_dataset(&self) -> String {
        self.dataset_name(None)
    }

    /// The dataset this package loads into, resolved as dlt's `normalize_dataset_name` does:
    /// `configured` (else the pipeline's dataset from `.restore/state.json`, else the schema
    /// name), suffixed with `_<schema name>` when the package's schema is not the pipeline's
    /// default schema, then normalized by the schema's naming convention (`ShopData` is
    /// `shop_data` under `snake_case`, and stays `ShopData` under `sql_cs_v1`).
    pub fn dataset_name(&self, configured: Option<&str>) -> String {
        let restore = self.restore.as_ref();
        let mut name = configured
            .map(str::to_string)
            .or_else(|| restore.and_then(|r| r.dataset_name.clone()))
            .unwrap_or_else(|| self.schema.name.clone());
        if let Some(default_schema) = restore.and_then(|r| r.default_schema_name.as_deref())
            && default_schema != self.schema.name
        {
            name = format!("{name}_{}", self.schema.name);
        }
        self.schema.naming().normalize_table_identifier(&name).unwrap_or(name)
    }

    /// Jobs in a state.
    pub fn jobs_in(&self, state: JobState) -> impl Iterator<Item = &JobFile> {
        self.jobs.iter().filter(move |j| j.state == state)
    }

    /// Display path of a job file, for messages.
    pub fn job_display(&self, job: &JobFile) -> String {
        self.location.display_child(&job.relative_path())
    }

    /// Can jobs move between folders here (a rename is atomic only on the local filesystem)?
    pub fn tracks_job_folders(&self) -> bool {
        self.location.local_dir().is_some()
    }

    /// Moves a job to another folder (dlt's protocol). Returns the moved job.
    pub async fn move_job(&self, job: &JobFile, to: JobState) -> Result<JobFile> {
        self.move_job_as(job, to, job.name.clone()).await
    }

    /// Moves a job to another folder under another name (a raised retry count).
    async fn move_job_as(&self, job: &JobFile, to: JobState, name: JobFileName) -> Result<JobFile> {
        let moved = JobFile {
            state: to,
            name,
            ..job.clone()
        };
        if job.relative_path() != moved.relative_path() {
            if let Some(dir) = self.location.local_dir() {
                std::fs::create_dir_all(dir.join(to.folder())).map_err(|e| {
                    Error::store(
                        "create folder",
                        self.job_display(&moved),
                        object_store::Error::Generic {
                            store: "LocalFileSystem",
                            source: Box::new(e),
                        },
                    )
                })?;
            }
            self.location
                .rename(&job.relative_path(), &moved.relative_path())
                .await?;
        }
        Ok(moved)
    }
}

impl LoadPackage {
    /// Why `job` last failed: the `.exception` file next to a job in `failed_jobs/`, or for a job
    /// queued again after failing (retry count above 0) its last `.exceptions/` file. `None` for
    /// jobs that never failed or whose record is gone.
    pub async fn job_failure(&self, job: &JobFile) -> Result<Option<JobFailure>> {
        if job.state == JobState::Failed {
            let path = format!("{}.exception", job.relative_path());
            return Ok(self.location.read_optional(&path).await?.map(|bytes| JobFailure {
                kind: FailureKind::Terminal,
                message: String::from_utf8_lossy(&bytes).trim_end().to_string(),
            }));
        }
        let Some(previous) = job.name.retry_count.checked_sub(1) else {
            return Ok(None);
        };
        let path = format!(
            "{}/{}",
            layout::EXCEPTIONS,
            job.name.with_retry(previous).exception_file_name()
        );
        let Some(bytes) = self.location.read_optional(&path).await? else {
            return Ok(None);
        };
        let text = String::from_utf8_lossy(&bytes);
        let (first, rest) = text.split_once('\n').unwrap_or((&text, ""));
        let (kind, message) = match first.trim() {
            "retry: terminal" => (FailureKind::Terminal, rest),
            "retry: transient" => (FailureKind::Transient, rest),
            // No header: dlt treats the job as retryable.
            _ => (FailureKind::Transient, &*text),
        };
        Ok(Some(JobFailure {
            kind,
            message: message.trim_end().to_string(),
        }))
    }

    /// dlt's terminal failure with `raise_on_failed_jobs=false`: the message goes to
    /// `failed_jobs/<job file>.exception`, the job to `failed_jobs/`.
    pub async fn fail_job(&self, job: &JobFile, message: &str) -> Result<JobFile> {
        let exception = format!("{}/{}.exception", JobState::Failed.folder(), job.name);
        self.location.write(&exception, message.to_string()).await?;
        self.move_job(job, JobState::Failed).await
    }

    /// dlt's retry: records the failure in `.exceptions/` (first line `retry: transient` or
    /// `retry: terminal`) and moves the job back to `new_jobs/` with its retry count raised.
    pub async fn requeue_job(&self, job: &JobFile, failure: &JobFailure) -> Result<JobFile> {
        let exception = format!("{}/{}", layout::EXCEPTIONS, job.name.exception_file_name());
        self.location
            .write(
                &exception,
                format!("retry: {}\n{}\n", failure.kind.as_str(), failure.message),
            )
            .await?;
        // A crafted name may already hold the largest count: it stays there rather than wrap.
        let requeued = self
            .move_job_as(
                job,
                JobState::New,
                job.name.with_retry(job.name.retry_count.saturating_add(1)),
            )
            .await?;
        if job.state == JobState::Failed {
            // Its message now lives in `.exceptions/`.
            let sibling = self.location.child(&format!("{}.exception", job.relative_path()));
            match self.location.store().delete(&sibling).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(Error::store("delete", sibling.to_string(), e)),
            }
        }
        Ok(requeued)
    }

    /// Writes the `.pending_transitions/` marker of `job`: the destination committed its outcome.
    pub async fn write_pending_transition(&self, job: &JobFile, transition: &PendingTransition) -> Result<()> {
        let path = format!("{}/{}", layout::PENDING_TRANSITIONS, job.name);
        let body = serde_json::to_string(transition).unwrap_or_default();
        self.location.write(&path, body).await
    }

    /// Removes the `.pending_transitions/` marker named `file` (a job file name), if any.
    pub async fn clear_pending_transition(&self, job: &JobFileName) -> Result<()> {
        let path = format!("{}/{job}", layout::PENDING_TRANSITIONS);
        match self.location.store().delete(&self.location.child(&path)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(Error::store("delete", self.location.display_child(&path), e)),
        }
    }
}

/// Reads every marker in `.pending_transitions/`.
async fn read_pending_transitions(location: &PackageLocation) -> Result<Vec<(JobFileName, PendingTransition)>> {
    let folder = location.child(layout::PENDING_TRANSITIONS);
    let mut names = Vec::new();
    let mut listing = location.store().list(Some(&folder));
    while let Some(meta) = listing
        .try_next()
        .await
        .map_err(|e| Error::store("list", location.display_child(layout::PENDING_TRANSITIONS), e))?
    {
        if let Some(parts) = meta.location.prefix_match(&folder) {
            let parts: Vec<_> = parts.collect();
            if let [file] = parts.as_slice() {
                names.push(file.as_ref().to_string());
            }
        }
    }
    names.sort();
    let mut out = Vec::new();
    for name in names {
        let path = format!("{}/{name}", layout::PENDING_TRANSITIONS);
        let Some(bytes) = location.read_optional(&path).await? else {
            continue;
        };
        let transition = serde_json::from_slice(&bytes).map_err(|e| Error::PackageState {
            path: location.display_child(&path),
            message: e.to_string(),
        })?;
        // dlt names a marker by its job file; anything else there is not a marker.
        let Ok(job) = JobFileName::parse(&name) else {
            tracing::warn!("{}: not a job's marker, left alone", location.display_child(&path));
            continue;
        };
        out.push((job, transition));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_ids_from_folder_names() {
        assert_eq!(load_id_from_folder("1795379913.1787062"), "1795379913.1787062");
        assert_eq!(load_id_from_folder("0_1795379913.1787062"), "1795379913.1787062");
        assert_eq!(load_id_from_folder("my_package"), "my_package");
        assert!(is_load_id("1795379913"));
        assert!(!is_load_id(".5"));
    }

    #[cfg(unix)]
    #[test]
    fn links_out_of_a_package_are_refused() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), "root:x:0:0").unwrap();
        for link in ["new_jobs/t.abc.0.jsonl", "completed_jobs", ".exceptions", "schema.json"] {
            let dir = tempfile::tempdir().unwrap();
            std::fs::create_dir_all(dir.path().join("new_jobs")).unwrap();
            let target = if link.contains('.') && !link.starts_with('.') {
                outside.path().join("secret")
            } else {
                outside.path().to_path_buf()
            };
            std::os::unix::fs::symlink(&target, dir.path().join(link)).unwrap();
            let err = confine(dir.path()).unwrap_err();
            assert!(
                matches!(&err, Error::Symlink { path } if path.ends_with(link)),
                "{link}: {err}"
            );
            assert!(!err.to_string().contains("root:x"), "no file content in errors");
        }
    }

    #[test]
    fn the_load_id_is_the_packages_own() {
        let state = |id: Option<&str>| PackageState {
            load_id: id.map(str::to_string),
            ..PackageState::empty()
        };
        let id = "1796407750.566676";
        assert_eq!(package_load_id(id, &state(None), "p").unwrap(), id);
        assert_eq!(package_load_id(&format!("1_{id}"), &state(Some(id)), "p").unwrap(), id);
        assert_eq!(package_load_id(id, &state(Some(id)), "p").unwrap(), id);
        // A folder that is not named by its load id is refused, with or without a state.
        for (folder, s) in [
            ("pkgA", state(Some(id))),
            ("pkgA", state(None)),
            ("1.5", state(Some(id))),
            ("1800000020-5", state(None)),
            ("1800000020-5", state(Some("1800000020-5"))),
        ] {
            let err = package_load_id(folder, &s, "p").unwrap_err();
            assert!(matches!(err, Error::LoadId { .. }), "{folder}: {err}");
        }
    }

    #[tokio::test]
    async fn the_dataset_is_named_as_dlt_names_it() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let schema = |naming: &str| {
            format!(
                r#"{{"name":"shop","engine_version":11,"version":1,"version_hash":"h",
                "normalizers":{{"names":"{naming}"}},"tables":{{}}}}"#
            )
        };
        let restore = |default_schema: &str| {
            format!(r#"{{"dataset_name":"ShopData","pipeline_name":"p","default_schema_name":{default_schema}}}"#)
        };
        let open = |naming: &'static str, default_schema: &'static str| {
            let store = Arc::clone(&store);
            async move {
                store
                    .put(&Path::from("p/1.5/schema.json"), schema(naming).into())
                    .await
                    .unwrap();
                store
                    .put(&Path::from("p/1.5/.restore/state.json"), restore(default_schema).into())
                    .await
                    .unwrap();
                LoadPackage::open(PackageLocation::from_store(
                    Arc::clone(&store),
                    "p/1.5",
                    "memory:///p/1.5",
                ))
                .await
                .unwrap()
            }
        };
        let package = open("snake_case", "null").await;
        assert_eq!(package.default_dataset(), "shop_data");
        assert_eq!(package.dataset_name(Some("My Data")), "my_data");
        assert_eq!(open("snake_case", "\"shop\"").await.default_dataset(), "shop_data");
        assert_eq!(
            open("snake_case", "\"other\"").await.default_dataset(),
            "shop_data_shop"
        );
        assert_eq!(open("sql_cs_v1", "null").await.default_dataset(), "ShopData");
    }

    #[tokio::test]
    async fn opens_a_package_in_memory_and_rejects_bad_job_names() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let schema = r#"{"name":"s","engine_version":11,"version":1,"version_hash":"h",
            "tables":{"t":{"name":"t","columns":{"a":{"name":"a","data_type":"bigint"}}}}}"#;
        store
            .put(&Path::from("pk/1.5/schema.json"), schema.into())
            .await
            .unwrap();
        store
            .put(&Path::from("pk/1.5/new_jobs/t.abc.0.parquet"), "x".into())
            .await
            .unwrap();
        let loc = PackageLocation::from_store(Arc::clone(&store), "pk/1.5", "memory:///pk/1.5");
        let pkg = LoadPackage::open(loc.clone()).await.unwrap();
        assert_eq!(pkg.load_id, "1.5");
        assert_eq!(pkg.jobs.len(), 1);
        assert_eq!(pkg.default_dataset(), "s");
        assert!(!pkg.tracks_job_folders());

        store
            .put(&Path::from("pk/1.5/new_jobs/nope.abc.0.parquet"), "x".into())
            .await
            .unwrap();
        let err = LoadPackage::open(loc.clone()).await.unwrap_err();
        assert!(matches!(err, Error::TableNotInSchema { .. }), "{err}");
        store
            .delete(&Path::from("pk/1.5/new_jobs/nope.abc.0.parquet"))
            .await
            .unwrap();
        store
            .put(&Path::from("pk/1.5/new_jobs/t.abc.zero.parquet"), "x".into())
            .await
            .unwrap();
        let err = LoadPackage::open(loc).await.unwrap_err();
        assert!(err.to_string().contains("t.abc.zero.parquet"), "{err}");

        let empty = PackageLocation::from_store(store, "nothing", "memory:///nothing");
        assert!(matches!(
            LoadPackage::open(empty).await,
            Err(Error::MissingSchema { .. })
        ));
    }
}
