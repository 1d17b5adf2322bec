//! Finding packages: a package folder or bucket prefix, or a folder of packages under it (such
//! as a dlt pipeline's `load/normalized/`), in load-id order.

use std::fmt;
use std::path::Path as FsPath;
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use url::Url;

use crate::error::{Error, Result};
use crate::package::{PackageLocation, discover_local_packages, layout, load_id_from_folder};
use crate::store::{StorageConfig, display_url, open_store, redact_location};

/// How many `schema.json` probes run at once when listing a prefix.
const PROBES_AT_ONCE: usize = 16;

/// The packages at `location` (a local path or a URL), in load-id order: the location itself when
/// it holds a `schema.json`, else the folders directly under it that do (such as a dlt pipeline's
/// `load/normalized/`, on disk or copied to a bucket). Stores are opened once per argument.
pub async fn discover_packages(location: &str, config: &StorageConfig) -> Result<Vec<PackageLocation>> {
    if !location.contains("://") {
        let path = FsPath::new(location);
        let found = discover_local_packages(path).map_err(|e| Error::Location {
            location: location.to_string(),
            reason: e.to_string(),
        })?;
        // An empty folder is nothing to do (a pipeline's `load/normalized/` once every package
        // is loaded); a folder holding anything else but no package is a mistake worth naming.
        let is_empty_dir = std::fs::read_dir(path).is_ok_and(|mut entries| entries.next().is_none());
        if found.is_empty() && !is_empty_dir {
            return Err(Error::MissingSchema {
                package: location.to_string(),
            });
        }
        if found.is_empty() {
            tracing::warn!("{location} holds no packages: nothing to load");
        }
        return found
            .iter()
            .map(|dir| PackageLocation::local(dir).map_err(|e| bad_location(&dir.display().to_string(), &e)))
            .collect();
    }
    let url = Url::parse(location).map_err(|e| bad_location(location, &e))?;
    if url.scheme() == "file" {
        let dir = url
            .to_file_path()
            .map_err(|()| bad_location(location, &"not a local file URL"))?;
        return Box::pin(discover_packages(&dir.to_string_lossy(), config)).await;
    }
    let (store, root) = open_store(location, config)?;
    let shown = display_url(&url);
    let shown = shown.trim_end_matches('/').to_string();
    let list_error = |e: object_store::Error| Error::store("list", shown.clone(), e);
    let here = PackageLocation::from_store(Arc::clone(&store), root.clone(), shown.clone());
    if exists(&store, &here.child(layout::SCHEMA), &shown).await? {
        return Ok(vec![here]);
    }
    let listing = store.list_with_delimiter(Some(&root)).await.map_err(list_error)?;
    let candidates: Vec<Path> = listing.common_prefixes;
    let probes = futures::stream::iter(candidates.into_iter().map(|folder| {
        let store = Arc::clone(&store);
        let name = folder.filename().unwrap_or_default().to_string();
        let child = PackageLocation::from_store(Arc::clone(&store), folder, format!("{shown}/{name}"));
        async move {
            let schema = child.child(layout::SCHEMA);
            let found = exists(&store, &schema, &child.to_string()).await?;
            Ok::<_, Error>(found.then_some(child))
        }
    }))
    .buffer_unordered(PROBES_AT_ONCE)
    .try_collect::<Vec<_>>()
    .await?;
    let mut found: Vec<PackageLocation> = probes.into_iter().flatten().collect();
    if found.is_empty() {
        return Err(Error::MissingSchema { package: shown });
    }
    found.sort_by_key(|l| load_id_from_folder(&l.folder_name()));
    Ok(found)
}

async fn exists(store: &Arc<dyn ObjectStore>, path: &Path, shown: &str) -> Result<bool> {
    match store.head(path).await {
        Ok(_) => Ok(true),
        Err(object_store::Error::NotFound { .. }) => Ok(false),
        Err(e) => Err(Error::store("read", format!("{shown}/{}", layout::SCHEMA), e)),
    }
}

fn bad_location(location: &str, e: &dyn fmt::Display) -> Error {
    Error::Location {
        location: redact_location(location),
        reason: e.to_string(),
    }
}
