//! A throwaway PostgreSQL cluster for tests: `initdb` in a temporary folder, a free port on
//! loopback, fsync and synchronous commit off (see [`PgCluster::configure`]), stopped and deleted on drop. Needs the server binaries (Debian's
//! `postgresql` package; `scripts/test` installs it when missing).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A running cluster.
#[derive(Debug)]
pub struct PgCluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    /// Port on 127.0.0.1.
    pub port: u16,
    as_postgres: bool,
}

fn find_bin() -> Option<PathBuf> {
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output()
        && out.status.success()
    {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if dir.join("initdb").exists() {
            return Some(dir);
        }
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("initdb").exists())
        .collect();
    found.sort();
    found.pop()
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

impl PgCluster {
    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        }
    }

    /// Starts a new cluster; panics with what to install when the binaries are missing.
    pub fn start() -> PgCluster {
        let bin =
            find_bin().expect("PostgreSQL server binaries not found: apt-get install postgresql (scripts/test does)");
        let dir = tempfile::Builder::new().prefix("berth-pg-").tempdir().expect("tempdir");
        let as_postgres = is_root();
        if as_postgres {
            // initdb refuses to run as root: the cluster belongs to the postgres user.
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status();
            assert!(
                status.is_ok_and(|s| s.success()),
                "chown the cluster folder to postgres"
            );
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let mut cluster = PgCluster {
            dir,
            bin,
            port,
            as_postgres,
        };
        let data = cluster.data_dir();
        let out = cluster
            .command("initdb")
            .args(["-A", "trust", "-U", "berth", "-E", "UTF8", "--no-sync", "-D"])
            .arg(&data)
            .stdout(Stdio::null())
            .output()
            .expect("run initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // Fast and not durable (a test cluster), in postgresql.conf so that `configure` can
        // change it.
        let conf = data.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf).expect("postgresql.conf");
        text.push_str("\nfsync = off\nsynchronous_commit = off\nfull_page_writes = off\n");
        std::fs::write(&conf, text).expect("write postgresql.conf");
        cluster.start_server();
        cluster.port = port;
        cluster
    }

    /// Sets a server parameter (`name = value` in postgresql.conf) and reloads the server.
    /// `configure("synchronous_commit = on")` makes commits survive [`PgCluster::restart`].
    pub fn configure(&self, setting: &str) {
        let conf = self.data_dir().join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf).expect("postgresql.conf");
        text.push_str(setting);
        text.push('\n');
        std::fs::write(&conf, text).expect("write postgresql.conf");
        let status = self
            .command("pg_ctl")
            .args(["-D"])
            .arg(self.data_dir())
            .arg("reload")
            .stdout(Stdio::null())
            .status();
        assert!(status.is_ok_and(|s| s.success()), "pg_ctl reload");
    }

    /// Creates a login role `user` that must authenticate with `password` (SCRAM) and owns a
    /// fresh database `database`; returns its URL, password included.
    pub fn password_user_url(&self, user: &str, password: &str, database: &str) -> String {
        self.psql("postgres", &format!("CREATE ROLE {user} LOGIN PASSWORD '{password}'"));
        self.psql("postgres", &format!("CREATE DATABASE {database} OWNER {user}"));
        let hba = self.data_dir().join("pg_hba.conf");
        let text = std::fs::read_to_string(&hba).expect("pg_hba.conf");
        std::fs::write(&hba, format!("host all {user} all scram-sha-256\n{text}")).expect("write pg_hba.conf");
        // Reloads the server, which rereads pg_hba.conf.
        self.configure("password_encryption = 'scram-sha-256'");
        format!("postgres://{user}:{password}@127.0.0.1:{}/{database}", self.port)
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn start_server(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1",
            self.port,
            self.dir.path().display()
        );
        let out = self
            .command("pg_ctl")
            .args(["-w", "-t", "60", "-D"])
            .arg(self.data_dir())
            .args(["-l"])
            .arg(self.dir.path().join("server.log"))
            .args(["-o", &options, "start"])
            .output()
            .expect("run pg_ctl");
        assert!(
            out.status.success(),
            "pg_ctl start failed: {}{}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
        );
    }

    /// Stops the server immediately (like a crash) and starts it again.
    pub fn restart(&self) {
        self.stop("immediate");
        self.start_server();
    }

    fn stop(&self, mode: &str) {
        let _ = self
            .command("pg_ctl")
            .args(["-w", "-D"])
            .arg(self.data_dir())
            .args(["-m", mode, "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }

    /// Runs `sql` with psql in `database` as the superuser; panics with psql's error when it fails.
    pub fn psql(&self, database: &str, sql: &str) -> String {
        let out = self
            .command("psql")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "berth",
                "-d",
                database,
            ])
            .args(["-v", "ON_ERROR_STOP=1", "-At", "-c", sql])
            .output()
            .expect("run psql");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A URL for a fresh database named `name` (created on first use).
    pub fn database_url(&self, name: &str) -> String {
        let out = self
            .command("createdb")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", "berth", name])
            .output()
            .expect("run createdb");
        assert!(
            out.status.success(),
            "createdb {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        format!("postgres://berth:unused-password@127.0.0.1:{}/{name}", self.port)
    }

    /// The URL of the database `name` (made by [`PgCluster::database_url`]) through the server's
    /// Unix-domain socket, whose folder is the cluster's.
    pub fn socket_url(&self, name: &str) -> String {
        let folder = self.dir.path().display().to_string().replace('/', "%2F");
        format!("postgres://berth@{folder}:{}/{name}", self.port)
    }

    /// Turns TLS on with the given server certificate and key (PEM) and refuses every connection
    /// that is not encrypted, then restarts the server.
    pub fn enable_tls(&self, cert_pem: &str, key_pem: &str) {
        let data = self.data_dir();
        std::fs::write(data.join("server.crt"), cert_pem).expect("write server.crt");
        std::fs::write(data.join("server.key"), key_pem).expect("write server.key");
        let mut conf = std::fs::read_to_string(data.join("postgresql.conf")).expect("postgresql.conf");
        conf.push_str("\nssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n");
        std::fs::write(data.join("postgresql.conf"), conf).expect("write postgresql.conf");
        let hba = std::fs::read_to_string(data.join("pg_hba.conf")).expect("pg_hba.conf");
        std::fs::write(data.join("pg_hba.conf"), format!("hostnossl all all all reject\n{hba}")).expect("write pg_hba");
        if self.as_postgres {
            let _ = Command::new("chown")
                .args(["postgres:postgres"])
                .arg(data.join("server.crt"))
                .arg(data.join("server.key"))
                .status();
        }
        let _ = Command::new("chmod").arg("600").arg(data.join("server.key")).status();
        self.stop("fast");
        self.start_server();
    }

    /// The cluster's folder.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        self.stop("immediate");
    }
}
