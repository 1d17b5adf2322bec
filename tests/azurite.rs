//! Azurite, Microsoft's Azure Blob Storage emulator, on a free loopback port for the bucket tests.
//! `scripts/setup-test-servers.sh` installs it (npm) into a per-user cache; the helper runs that
//! script itself, so `cargo test` alone works too. Containers are created with a SharedKey-signed
//! REST call, as the Azure SDKs do (object_store has no container API).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use berth::model::StorageConfig;

/// Azurite's well-known development account.
pub const ACCOUNT: &str = "devstoreaccount1";
/// Its well-known key (public, the same in every Azurite).
pub const ACCOUNT_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// A running Azurite blob service; killed on drop.
#[derive(Debug)]
pub struct Azurite {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

/// The `azurite-blob` executable, installed by `scripts/setup-test-servers.sh` when missing.
fn azurite_blob() -> String {
    if let Ok(path) = std::env::var("BERTH_AZURITE_BLOB") {
        return path;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/setup-test-servers.sh");
    let out = Command::new("bash")
        .arg(&script)
        .stderr(Stdio::inherit())
        .output()
        .expect("run scripts/setup-test-servers.sh");
    assert!(out.status.success(), "scripts/setup-test-servers.sh failed");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .expect("azurite path")
        .trim()
        .to_string()
}

impl Azurite {
    /// Starts the blob service with `containers` created.
    pub fn start(containers: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let child = Command::new(azurite_blob())
            .args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string()])
            .args(["--skipApiVersionCheck", "--loose", "--silent", "--location"])
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start azurite");
        let server = Self { child, port, _dir: dir };
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "azurite did not start on port {port}");
            std::thread::sleep(Duration::from_millis(100));
        }
        for container in containers {
            server.create_container(container);
        }
        server
    }

    /// `http://127.0.0.1:<port>/devstoreaccount1`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}/{ACCOUNT}", self.port)
    }

    /// The object_store options that reach this server.
    pub fn options(&self) -> Vec<(String, String)> {
        vec![
            ("azure_storage_account_name".into(), ACCOUNT.into()),
            ("azure_storage_account_key".into(), ACCOUNT_KEY.into()),
            ("azure_storage_endpoint".into(), self.endpoint()),
            ("azure_allow_http".into(), "true".into()),
        ]
    }

    /// berth's storage options for every `az://` URL, pointing at this server.
    pub fn storage_config(&self) -> StorageConfig {
        StorageConfig::new().with_options("az://", self.options())
    }

    /// Create Container (`PUT /<account>/<container>?restype=container`), SharedKey-signed.
    fn create_container(&self, container: &str) {
        let date = chrono::Utc::now().format("%a, %d %b %Y %H:%M:%S GMT").to_string();
        let version = "2021-08-06";
        let string_to_sign = format!(
            "PUT\n\n\n\n\n\n\n\n\n\n\n\nx-ms-date:{date}\nx-ms-version:{version}\n/{ACCOUNT}/{ACCOUNT}/{container}\nrestype:container"
        );
        let key = base64::engine::general_purpose::STANDARD
            .decode(ACCOUNT_KEY)
            .expect("key");
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key);
        let signature =
            base64::engine::general_purpose::STANDARD.encode(ring::hmac::sign(&key, string_to_sign.as_bytes()));
        let request = format!(
            "PUT /{ACCOUNT}/{container}?restype=container HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nx-ms-date: {date}\r\n\
             x-ms-version: {version}\r\nAuthorization: SharedKey {ACCOUNT}:{signature}\r\nContent-Length: 0\r\n\
             Connection: close\r\n\r\n",
            self.port
        );
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).expect("connect");
        stream.write_all(request.as_bytes()).expect("send");
        let mut response = String::new();
        stream.read_to_string(&mut response).expect("read");
        let status = response.split_whitespace().nth(1).unwrap_or_default();
        assert!(
            status == "201" || status == "409",
            "creating container {container}: {}",
            response.lines().next().unwrap_or_default()
        );
    }
}

impl Drop for Azurite {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
