//! A real S3 server on loopback for the bucket tests (the `berth-s3-server` crate: s3s-fs over a
//! temporary folder, SigV4), with the helpers the tests use: berth's storage options for it,
//! object_store clients, uploads and listings.

use std::path::Path;
use std::sync::Arc;

use berth::model::StorageConfig;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, WriteMultipart};

pub use berth_s3_server::{ACCESS_KEY, REGION, SECRET_KEY};

/// A running S3 server (see [`berth_s3_server::S3Server`], whose methods it has too), with the
/// helpers the tests use; stopped (and its folder removed) on drop.
#[derive(Debug)]
pub struct S3Server(berth_s3_server::S3Server);

impl std::ops::Deref for S3Server {
    type Target = berth_s3_server::S3Server;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl S3Server {
    /// Starts a server on a free loopback port with `buckets` created.
    pub fn start(buckets: &[&str]) -> Self {
        Self(berth_s3_server::S3Server::start(buckets))
    }

    /// Starts a server on `root` (kept: the caller owns the folder's life through the TempDir).
    pub fn serve(root: tempfile::TempDir, buckets: &[&str]) -> Self {
        Self(berth_s3_server::S3Server::serve(root, buckets))
    }

    /// berth's storage options for every `s3://` URL, pointing at this server.
    pub fn storage_config(&self) -> StorageConfig {
        StorageConfig::new().with_options("s3://", self.options())
    }

    /// The same as a berth.toml file's text.
    pub fn config_toml(&self, prefix: &str) -> String {
        let mut out = format!("[storage.\"{prefix}\"]\n");
        for (key, value) in self.options() {
            out.push_str(&format!("{key} = \"{value}\"\n"));
        }
        out
    }

    /// An object_store client of `bucket` on this server.
    pub fn client(&self, bucket: &str) -> Arc<AmazonS3> {
        let mut builder = AmazonS3Builder::new().with_bucket_name(bucket);
        for (key, value) in self.options() {
            builder = builder.with_config(key.parse().expect("option"), value);
        }
        Arc::new(builder.build().expect("s3 client"))
    }

    /// Uploads a local folder tree to `bucket/prefix` through the S3 protocol (multipart for
    /// files from 8 MiB up).
    pub async fn upload_dir(&self, dir: &Path, bucket: &str, prefix: &str) {
        upload_dir(self.client(bucket).as_ref(), dir, prefix).await;
    }

    /// Every key in `bucket`, sorted.
    pub async fn keys(&self, bucket: &str) -> Vec<String> {
        use futures::TryStreamExt;
        let mut keys: Vec<String> = self
            .client(bucket)
            .list(None)
            .map_ok(|m| m.location.to_string())
            .try_collect()
            .await
            .expect("list");
        keys.sort();
        keys
    }
}

/// Uploads a local folder tree under `prefix` of any store (multipart for files from 8 MiB up).
pub async fn upload_dir(store: &dyn ObjectStore, dir: &Path, prefix: &str) {
    for file in walk(dir) {
        let relative = file
            .strip_prefix(dir)
            .expect("inside")
            .to_string_lossy()
            .replace('\\', "/");
        let key = ObjectPath::from(format!("{}/{relative}", prefix.trim_matches('/')));
        upload_file(store, &file, &key).await;
    }
}

/// Puts one local file, multipart from 8 MiB up.
pub async fn upload_file(store: &dyn ObjectStore, file: &Path, key: &ObjectPath) {
    const PART: usize = 8 << 20;
    let bytes = std::fs::read(file).expect("read file");
    if bytes.len() < PART {
        store.put(key, bytes.into()).await.expect("put");
        return;
    }
    let upload = store.put_multipart(key).await.expect("multipart");
    let mut writer = WriteMultipart::new_with_chunk_size(upload, PART);
    for chunk in bytes.chunks(PART) {
        writer.write(chunk);
    }
    writer.finish().await.expect("complete multipart");
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read_dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out.sort();
    out
}
