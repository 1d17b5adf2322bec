//! A real S3 server on loopback: s3s-fs serving a folder over the S3 protocol (SigV4
//! authentication, range reads, multipart uploads; object bodies read in 1 MiB chunks, see
//! `Objects`), on its own thread and runtime so that it
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

    let fs = Objects {
        inner: s3s_fs::FileSystem::new(&root).expect("s3s-fs root"),
        root,
        conditional: tokio::sync::Mutex::new(()),
    };
    let mut builder = S3ServiceBuilder::new(fs);
    builder.set_auth(SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
    let service = builder.build();
    let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
    let http = ConnBuilder::new(TokioExecutor::new());
    let mut stopped = std::pin::pin!(stopped);
    let mut connections = tokio::task::JoinSet::new();
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
        // Owned by the set: the connections end with the server.
        connections.spawn(async move {
            let _ = connection.await;
        });
    }
}

/// s3s-fs, with two changes:
///
/// - object bodies are read from disk in 1 MiB chunks. s3s-fs streams them in 4 KiB reads, each
///   a round trip through tokio's blocking pool: serving the 147 MiB bench package took 1.5 s of
///   CPU, on the two cores berth and PostgreSQL share with the server, which measured the test
///   server more than berth;
/// - conditional writes (`If-None-Match: *`, `If-Match`) run one at a time, so that check and
///   write are atomic as on S3 (s3s-fs checks, then writes: two racing creates could both win).
///
/// Everything else (SigV4, metadata, ETags, ranges, errors) is s3s-fs's own.
struct Objects {
    inner: s3s_fs::FileSystem,
    root: std::path::PathBuf,
    conditional: tokio::sync::Mutex<()>,
}

impl Objects {
    async fn serve_object(
        &self,
        req: s3s::S3Request<s3s::dto::GetObjectInput>,
    ) -> s3s::S3Result<s3s::S3Response<s3s::dto::GetObjectOutput>> {
        use tokio::io::{AsyncReadExt, AsyncSeekExt};

        let path = self.root.join(&req.input.bucket).join(&req.input.key);
        let mut response = s3s::S3::get_object(&self.inner, req).await?;
        let output = &mut response.output;
        // s3s-fs has checked the range and the key; serve the same bytes it would have.
        let start = output
            .content_range
            .as_deref()
            .and_then(|range| range.strip_prefix("bytes "))
            .and_then(|range| range.split('-').next())
            .map_or(Ok(0), str::parse::<u64>)
            .map_err(|e| s3s::s3_error!(e, InternalError))?;
        let length = output.content_length.and_then(|l| u64::try_from(l).ok()).unwrap_or(0);
        let mut file = tokio::fs::File::open(&path)
            .await
            .map_err(|e| s3s::s3_error!(e, NoSuchKey))?;
        file.seek(std::io::SeekFrom::Start(start))
            .await
            .map_err(|e| s3s::s3_error!(e, InternalError))?;
        let body = tokio_util::io::ReaderStream::with_capacity(file.take(length), 1 << 20);
        output.body = Some(s3s::dto::StreamingBlob::wrap(body));
        Ok(response)
    }
}

/// The S3 operations s3s-fs implements, passed through (get_object and put_object aside).
macro_rules! pass_through {
    ($($method:ident: $input:ident => $output:ident),* $(,)?) => {
        #[async_trait::async_trait]
        impl s3s::S3 for Objects {
            async fn get_object(
                &self,
                req: s3s::S3Request<s3s::dto::GetObjectInput>,
            ) -> s3s::S3Result<s3s::S3Response<s3s::dto::GetObjectOutput>> {
                self.serve_object(req).await
            }
            async fn put_object(
                &self,
                req: s3s::S3Request<s3s::dto::PutObjectInput>,
            ) -> s3s::S3Result<s3s::S3Response<s3s::dto::PutObjectOutput>> {
                if req.input.if_match.is_some() || req.input.if_none_match.is_some() {
                    let _one_at_a_time = self.conditional.lock().await;
                    return s3s::S3::put_object(&self.inner, req).await;
                }
                s3s::S3::put_object(&self.inner, req).await
            }
            $(
                async fn $method(
                    &self,
                    req: s3s::S3Request<s3s::dto::$input>,
                ) -> s3s::S3Result<s3s::S3Response<s3s::dto::$output>> {
                    s3s::S3::$method(&self.inner, req).await
                }
            )*
        }
    };
}

pass_through! {
    create_bucket: CreateBucketInput => CreateBucketOutput,
    copy_object: CopyObjectInput => CopyObjectOutput,
    delete_bucket: DeleteBucketInput => DeleteBucketOutput,
    delete_object: DeleteObjectInput => DeleteObjectOutput,
    delete_objects: DeleteObjectsInput => DeleteObjectsOutput,
    get_bucket_location: GetBucketLocationInput => GetBucketLocationOutput,
    head_bucket: HeadBucketInput => HeadBucketOutput,
    head_object: HeadObjectInput => HeadObjectOutput,
    list_buckets: ListBucketsInput => ListBucketsOutput,
    list_objects: ListObjectsInput => ListObjectsOutput,
    list_objects_v2: ListObjectsV2Input => ListObjectsV2Output,
    create_multipart_upload: CreateMultipartUploadInput => CreateMultipartUploadOutput,
    upload_part: UploadPartInput => UploadPartOutput,
    upload_part_copy: UploadPartCopyInput => UploadPartCopyOutput,
    list_parts: ListPartsInput => ListPartsOutput,
    complete_multipart_upload: CompleteMultipartUploadInput => CompleteMultipartUploadOutput,
    abort_multipart_upload: AbortMultipartUploadInput => AbortMultipartUploadOutput,
}
