//! A real S3 server on loopback for the bucket tests: s3s-fs serving a temporary folder over the
//! S3 protocol (SigV4 authentication, range reads, multipart uploads), on its own thread and
//! runtime so that it outlives any one test's runtime and serves `berth` subprocesses too.

use std::path::Path;
use std::sync::Arc;

use berth::model::StorageConfig;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, WriteMultipart};

/// The server's access key.
pub const ACCESS_KEY: &str = "berth-test-access";
/// The server's secret key (checked by SigV4 on every request).
pub const SECRET_KEY: &str = "berth-test-secret-do-not-print";
/// The region clients sign for.
pub const REGION: &str = "us-east-1";

/// A running S3 server; stopped (and its folder removed) on drop.
#[derive(Debug)]
pub struct S3Server {
    endpoint: String,
    root: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl S3Server {
    /// Starts a server on a free loopback port with `buckets` created.
    pub fn start(buckets: &[&str]) -> Self {
        let root = tempfile::tempdir().expect("temp dir");
        Self::serve(root, buckets)
    }

    /// Starts a server on `root` (kept: the caller owns the folder's life through the TempDir).
    pub fn serve(root: tempfile::TempDir, buckets: &[&str]) -> Self {
        for bucket in buckets {
            std::fs::create_dir_all(root.path().join(bucket)).expect("bucket folder");
        }
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let endpoint = format!("http://{}", listener.local_addr().expect("addr"));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let dir = root.path().to_path_buf();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(serve(listener, dir, stopped));
        });
        Self {
            endpoint,
            root,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The folder the server stores buckets in (`<root>/<bucket>/<key>`).
    pub fn root(&self) -> &Path {
        self.root.path()
    }

    /// The object_store options that reach this server.
    pub fn options(&self) -> Vec<(String, String)> {
        vec![
            ("aws_endpoint".into(), self.endpoint.clone()),
            ("aws_allow_http".into(), "true".into()),
            ("aws_access_key_id".into(), ACCESS_KEY.into()),
            ("aws_secret_access_key".into(), SECRET_KEY.into()),
            ("aws_region".into(), REGION.into()),
        ]
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

    /// The same as environment variables (`AWS_ENDPOINT`, ...), for a `berth` subprocess.
    pub fn env(&self) -> Vec<(String, String)> {
        self.options()
            .into_iter()
            .map(|(k, v)| (k.to_ascii_uppercase(), v))
            .collect()
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

impl Drop for S3Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
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

async fn serve(listener: std::net::TcpListener, root: std::path::PathBuf, stopped: tokio::sync::oneshot::Receiver<()>) {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use hyper_util::server::conn::auto::Builder as ConnBuilder;
    use s3s::auth::SimpleAuth;
    use s3s::service::S3ServiceBuilder;

    let fs = s3s_fs::FileSystem::new(root).expect("s3s-fs root");
    let mut builder = S3ServiceBuilder::new(fs);
    builder.set_auth(SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
    let service = builder.build();
    let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
    let http = ConnBuilder::new(TokioExecutor::new());
    let mut stopped = std::pin::pin!(stopped);
    loop {
        let socket = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((socket, _)) => socket,
                Err(_) => continue,
            },
            _ = stopped.as_mut() => break,
        };
        let connection = http
            .serve_connection(TokioIo::new(socket), service.clone())
            .into_owned();
        tokio::spawn(async move {
            let _ = connection.await;
        });
    }
}
