//! A real S3 server on loopback: s3s-fs serving a folder over the S3 protocol (SigV4
//! authentication, range reads, multipart uploads), on its own thread and runtime so that it
//! outlives any one test's runtime and serves `berth` subprocesses too.
//!
//! Its own crate so that it builds in release without the rest of berth (for `berth bench
//! --from-bucket`: `cargo run --release -p berth-s3-server`); the tests use it through
//! `berth_tests::s3`.

use std::path::Path;

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

    /// The same as environment variables (`AWS_ENDPOINT`, ...), for a `berth` subprocess.
    pub fn env(&self) -> Vec<(String, String)> {
        self.options()
            .into_iter()
            .map(|(k, v)| (k.to_ascii_uppercase(), v))
            .collect()
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

/// Serves S3 on `listener` from `root` until `stopped`.
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
