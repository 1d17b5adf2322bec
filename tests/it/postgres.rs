//! PostgreSQL passes the same conformance suite as DuckDB, on a throwaway cluster per test.

use std::collections::BTreeSet;
use std::sync::Arc;

use async_trait::async_trait;
use berth::destination::{Capabilities, Destination, ErrorKind, JobMetrics, JobPart, LoadJob};
use berth::loader::{Loader, LoaderOptions, PackageStatus, PackageSummary};
use berth::model::{MergeStrategy, PackageLocation, ReplaceStrategy};
use berth::plan::SqlStatement;
use berth::plan::sqlparser::ast::Statement;
use berth::postgres::PostgresDestination;
use berth_bench::synth::{Disposition, Shape, SyntheticPackage};
use berth_tests::pg::PgCluster;
use berth_tests::{check_scenario, query_text, scenario_dir, table_rows};

fn destination(cluster: &PgCluster, database: &str) -> Arc<dyn Destination> {
    Arc::new(PostgresDestination::from_url(&cluster.database_url(database)).expect("postgres url"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_insert_from_staging_keeps_unlogged_staging_tables() {
    let cluster = PgCluster::start();
    let options = LoaderOptions {
        replace_strategy: Some(ReplaceStrategy::InsertFromStaging),
        keep_staging: true,
        ..LoaderOptions::default()
    };
    let dest = destination(&cluster, "conformance_staging");
    if let Err(e) = check_scenario(Arc::clone(&dest), &scenario_dir("postgres", "replace"), options).await {
        panic!("postgres/replace insert-from-staging: {e}");
    }
    // Staging rows are rebuilt from the package after a crash: no need to WAL-log them.
    let persistence = table_persistence(dest.as_ref()).await;
    let staging: Vec<_> = persistence.iter().filter(|(s, _, _)| s.contains("_staging_")).collect();
    assert!(
        !staging.is_empty() && staging.iter().all(|(_, _, p)| p == "u"),
        "{persistence:?}"
    );
}

/// (schema, table, relpersistence) of every user table.
async fn table_persistence(destination: &dyn Destination) -> Vec<(String, String, String)> {
    let rows = query_text(
        destination,
        "SELECT n.nspname, c.relname, c.relpersistence::text FROM pg_class c \
         JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
         AND n.nspname NOT LIKE 'pg_toast%'",
    )
    .await
    .expect("pg_class");
    rows.into_iter()
        .map(|r| {
            let [schema, table, persistence] = <[Option<String>; 3]>::try_from(r).expect("three columns");
            (
                schema.unwrap_or_default(),
                table.unwrap_or_default(),
                persistence.unwrap_or_default(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staging_optimized_swaps_logged_tables_into_the_dataset() {
    let cluster = PgCluster::start();
    let options = LoaderOptions {
        replace_strategy: Some(ReplaceStrategy::StagingOptimized),
        ..LoaderOptions::default()
    };
    let dest = destination(&cluster, "staging_optimized");
    if let Err(e) = check_scenario(Arc::clone(&dest), &scenario_dir("postgres", "replace"), options).await {
        panic!("postgres/replace staging-optimized: {e}");
    }
    // The swapped-in tables must survive a crash: they were made logged before the load.
    let persistence = table_persistence(dest.as_ref()).await;
    let finals: Vec<_> = persistence
        .iter()
        .filter(|(s, _, _)| !s.ends_with("_staging"))
        .collect();
    assert!(
        !finals.is_empty() && finals.iter().all(|(_, _, p)| p == "p"),
        "{persistence:?}"
    );
    // Staging tables have no UNIQUE constraints; the swapped-in tables get theirs back: every
    // final table with a `_dlt_id` (unique in dlt's schemas) has a UNIQUE constraint on it.
    let pairs = |sql: &'static str| {
        let dest = Arc::clone(&dest);
        async move {
            let rows = query_text(dest.as_ref(), sql).await.expect("catalog");
            rows.into_iter().collect::<BTreeSet<_>>()
        }
    };
    let with_id = pairs(
        "SELECT table_schema::text, table_name::text FROM information_schema.columns \
         WHERE column_name = '_dlt_id' AND table_schema NOT LIKE '%staging%' AND table_name NOT LIKE '_dlt_%'",
    )
    .await;
    let unique = pairs(
        "SELECT tc.table_schema::text, tc.table_name::text FROM information_schema.table_constraints tc \
         JOIN information_schema.constraint_column_usage cu ON cu.constraint_name = tc.constraint_name \
         AND cu.table_schema = tc.table_schema \
         WHERE tc.constraint_type = 'UNIQUE' AND cu.column_name = '_dlt_id'",
    )
    .await;
    assert!(!with_id.is_empty());
    let missing: Vec<_> = with_id.difference(&unique).collect();
    assert!(missing.is_empty(), "no UNIQUE (_dlt_id) on {missing:?}");
}

/// Delegates to PostgreSQL but fails, as a connection would (transient), every part that covers
/// row `fail_at` (a whole file covers every row but `u64::MAX`), or every part of the job file
/// `fail_file`; records each part's [`LoadJob::emptied`].
#[derive(Debug)]
struct FailingPart {
    inner: Arc<dyn Destination>,
    fail_at: u64,
    fail_file: Option<String>,
    emptied: std::sync::Mutex<Vec<bool>>,
}

impl FailingPart {
    fn new(inner: &Arc<dyn Destination>, fail_at: u64) -> Arc<Self> {
        Arc::new(Self {
            inner: Arc::clone(inner),
            fail_at,
            fail_file: None,
            emptied: std::sync::Mutex::new(Vec::new()),
        })
    }

    /// Fails every part of the job file whose id is `file_id`, and nothing else.
    fn for_file(inner: &Arc<dyn Destination>, file_id: &str) -> Arc<Self> {
        Arc::new(Self {
            inner: Arc::clone(inner),
            fail_at: u64::MAX,
            fail_file: Some(file_id.to_string()),
            emptied: std::sync::Mutex::new(Vec::new()),
        })
    }

    fn emptied(&self) -> Vec<bool> {
        self.emptied.lock().expect("lock").clone()
    }
}

#[async_trait]
impl Destination for FailingPart {
    fn capabilities(&self) -> &Capabilities {
        self.inner.capabilities()
    }
    fn describe(&self) -> String {
        self.inner.describe()
    }
    async fn execute(&self, statements: Vec<SqlStatement>, transactional: bool) -> berth::destination::Result<()> {
        self.inner.execute(statements, transactional).await
    }
    async fn query(&self, statement: Statement) -> berth::destination::Result<Vec<arrow::array::RecordBatch>> {
        self.inner.query(statement).await
    }
    async fn load_job(&self, job: LoadJob<'_>) -> berth::destination::Result<JobMetrics> {
        self.emptied.lock().expect("lock").push(job.emptied);
        let covers = match (&self.fail_file, &job.part) {
            (Some(file), _) => job.job.name.file_id == *file,
            (None, JobPart::Rows(range)) => range.contains(&self.fail_at),
            (None, JobPart::Whole) => self.fail_at != u64::MAX,
            (None, JobPart::RowGroups(_)) => false,
        };
        if covers {
            return Err(berth::destination::Error::Database {
                kind: ErrorKind::Transient,
                destination: self.describe(),
                context: format!("{}", job.part),
                message: "injected failure".into(),
            });
        }
        self.inner.load_job(job).await
    }
}

/// A 20,000-row narrow package in row groups of 1,000, so that it loads in parts.
fn parts_package(dir: &std::path::Path, seed: u64, disposition: Disposition) -> std::path::PathBuf {
    SyntheticPackage::new(Shape::Narrow, 20_000)
        .with_row_group_rows(1_000)
        .with_seed(seed)
        .with_disposition(disposition)
        .write(dir)
        .expect("package")
}

/// Every Parquet file loads in parts, three at once, each tried once.
fn parts_options() -> LoaderOptions {
    LoaderOptions {
        split_min_bytes: 1,
        parallel_jobs: 3,
        max_attempts: 1,
        ..LoaderOptions::default()
    }
}

/// Loads the package at `path` into `destination` with [`parts_options`].
async fn load_in_parts(destination: Arc<dyn Destination>, path: &std::path::Path) -> PackageSummary {
    let location = PackageLocation::parse(&path.to_string_lossy()).expect("location");
    Loader::new(destination)
        .with_options(parts_options())
        .load(location)
        .await
        .expect("load")
}

/// `bench.narrow` holds each of the package's 20,000 rows once.
async fn assert_every_row_once(pg: &dyn Destination) {
    assert_ids_once(pg, 20_000, "every row exactly once").await;
}

/// `bench.narrow` holds `rows` rows, each with an `id` of its own.
async fn assert_ids_once(pg: &dyn Destination, rows: usize, what: &str) {
    let (ids, _) = table_rows(pg, "bench", "narrow", &["id"]).await.expect("rows");
    let distinct: BTreeSet<&String> = ids.iter().collect();
    assert_eq!((ids.len(), distinct.len()), (rows, rows), "{what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_files_load_in_parts_of_rows_exactly_once_across_a_failure() {
    let cluster = PgCluster::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let package = parts_package(dir.path(), 11, Disposition::Append);
    let pg = destination(&cluster, "parts");
    let failing: Arc<dyn Destination> = FailingPart::new(&pg, 9_500);

    // One part fails for good in this run: the other parts commit, the package stays pending
    // and resumes.
    let first = load_in_parts(failing, &package).await;
    assert_eq!(first.status, PackageStatus::Pending);
    let (ids, _) = table_rows(pg.as_ref(), "bench", "narrow", &["id"]).await.expect("rows");
    assert!(
        !ids.is_empty() && ids.len() < 20_000,
        "{} rows after the failure",
        ids.len()
    );
    let (parts, _) = table_rows(pg.as_ref(), "bench", "_berth_journal", &["first_row", "end_row"])
        .await
        .expect("journal");
    assert!(parts.len() >= 2, "committed parts are journaled: {parts:?}");

    // The rerun loads only what is missing.
    let second = load_in_parts(Arc::clone(&pg), &package).await;
    assert_eq!(second.status, PackageStatus::Loaded, "{:?}", second.jobs);
    assert_every_row_once(pg.as_ref()).await;
}

/// A merge knows its staged keys unique from the parts that loaded them only when those parts
/// saw every staged row. Here an earlier run staged a file and failed on a copy of it; the
/// rerun loads only the copy, whose parts alone hold each key once, but the staging table
/// holds every key twice: the keys are still deduplicated. A delta loaded next in sorted parts
/// (keys known unique from its parts, and their range) replaces the rows whose keys it shares.
/// `berth bench`'s server ceiling splits the table over its streams and reads every row back,
/// leaving the loaded table as it was and nothing of its own behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_copy_ceiling_reads_every_row_in_each_stream_count() {
    let cluster = PgCluster::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let package = parts_package(dir.path(), 5, Disposition::Append);
    let server = Arc::new(PostgresDestination::from_url(&cluster.database_url("ceiling")).expect("postgres url"));
    let pg: Arc<dyn Destination> = Arc::<PostgresDestination>::clone(&server);
    load_in_parts(Arc::clone(&pg), &package).await;
    for streams in [1, 2, 3] {
        let took = server.server_copy_ceiling("bench", "narrow", streams).await;
        assert!(took.is_ok(), "{streams} streams: {took:?}");
    }
    assert_every_row_once(pg.as_ref()).await;
    let leftovers = query_count(
        pg.as_ref(),
        "SELECT 1 FROM pg_tables WHERE schemaname = 'bench' AND tablename LIKE '%berth_ceiling%'",
    )
    .await;
    assert_eq!(leftovers, 0, "the ceiling's table is dropped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merge_keys_seen_in_one_run_do_not_hide_keys_an_earlier_run_staged() {
    let cluster = PgCluster::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let merge = Disposition::Merge(MergeStrategy::DeleteInsert);
    let package = SyntheticPackage::new(Shape::Narrow, 2_000)
        .with_row_group_rows(500)
        .with_seed(17)
        .with_disposition(merge)
        .write(dir.path())
        .expect("package");
    let jobs = package.join("new_jobs");
    let file = std::fs::read_dir(&jobs)
        .expect("jobs")
        .map(|e| e.expect("entry").path())
        .find(|p| p.extension().is_some_and(|e| e == "parquet"))
        .expect("a Parquet job");
    std::fs::copy(&file, jobs.join("narrow.again.0.parquet")).expect("copy");
    let pg = destination(&cluster, "seen");

    let first = load_in_parts(FailingPart::for_file(&pg, "again"), &package).await;
    assert_eq!(first.status, PackageStatus::Pending);
    let second = load_in_parts(Arc::clone(&pg), &package).await;
    assert_eq!(second.status, PackageStatus::Loaded, "{:?}", second.jobs);
    assert_ids_once(pg.as_ref(), 2_000, "each staged key once").await;

    let delta = SyntheticPackage::new(Shape::Narrow, 1_000)
        .with_row_group_rows(250)
        .with_seed(18)
        .with_first_id(1_501)
        .with_load_id("1800000001.000001")
        .with_disposition(merge)
        .write(dir.path())
        .expect("delta");
    let third = load_in_parts(Arc::clone(&pg), &delta).await;
    assert_eq!(third.status, PackageStatus::Loaded, "{:?}", third.jobs);
    // 2,000 + 1,000 rows, 500 keys shared: each shared key kept once (the delta's row).
    assert_ids_once(pg.as_ref(), 2_500, "the delta's keys replaced, once each").await;
}

/// A package that an earlier berth began (its journal records parts by row group, in a journal
/// table without the row columns) resumes: the rows of those row groups are not loaded again, the
/// journal gains its row columns, and the rest loads in parts of rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_journal_of_row_group_parts_resumes_exactly_once() {
    let cluster = PgCluster::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let package = parts_package(dir.path(), 13, Disposition::Append);
    let location = || PackageLocation::parse(&package.to_string_lossy()).expect("location");
    let options = parts_options();
    let pg = destination(&cluster, "legacy");
    // A first run that commits nothing creates the tables and the journal.
    let failing: Arc<dyn Destination> = FailingPart::new(&pg, 0);
    let options_failing_all = LoaderOptions {
        parallel_jobs: 1,
        split_min_bytes: u64::MAX,
        ..options.clone()
    };
    let first = Loader::new(failing)
        .with_options(options_failing_all)
        .load(location())
        .await
        .expect("load");
    assert_eq!(first.status, PackageStatus::Pending);
    // What an earlier berth committed: row groups 3..8 (rows 3,000..8,000), journaled as such.
    let opened = berth::model::LoadPackage::open(location()).await.expect("package");
    let job = opened.jobs.iter().find(|j| j.name.table == "narrow").expect("job");
    let table = opened.schema.table("narrow").expect("table");
    let metrics = pg
        .load_job(LoadJob {
            package: &opened,
            job,
            table,
            dataset: "bench",
            part: JobPart::RowGroups(3..8),
            journal_dataset: "bench",
            read_options: Default::default(),
            emptied: false,
        })
        .await
        .expect("row groups 3..8");
    assert_eq!(metrics.rows, 5_000);
    // The journal as earlier versions made it.
    cluster.psql(
        "legacy",
        "ALTER TABLE bench._berth_journal DROP COLUMN first_row, DROP COLUMN end_row",
    );

    let second = Loader::new(Arc::clone(&pg))
        .with_options(options)
        .load(location())
        .await
        .expect("load");
    assert_eq!(second.status, PackageStatus::Loaded, "{:?}", second.jobs);
    assert_every_row_once(pg.as_ref()).await;
    let (parts, _) = table_rows(pg.as_ref(), "bench", "_berth_journal", &["first_row", "end_row"])
        .await
        .expect("journal");
    assert!(parts.len() >= 3, "the rest loaded in parts of rows: {parts:?}");
}

/// A truncate-and-insert table is emptied once, before its first part commits: the parts of that
/// run know it (`LoadJob::emptied`, which tells a warehouse to load a file it may remember
/// loading), and a rerun that finds committed parts neither empties it again nor says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_table_is_emptied_once_and_its_jobs_know_it() {
    let cluster = PgCluster::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let package = parts_package(dir.path(), 12, Disposition::Replace(ReplaceStrategy::TruncateAndInsert));
    let location = || PackageLocation::parse(&package.to_string_lossy()).expect("location");
    let options = LoaderOptions {
        replace_strategy: Some(ReplaceStrategy::TruncateAndInsert),
        ..parts_options()
    };
    let pg = destination(&cluster, "emptied");
    let failing = FailingPart::new(&pg, 9_500);
    let first = Loader::new(Arc::clone(&failing) as Arc<dyn Destination>)
        .with_options(options.clone())
        .load(location())
        .await
        .expect("load");
    assert_eq!(first.status, PackageStatus::Pending);
    let seen = failing.emptied();
    assert!(!seen.is_empty() && seen.iter().all(|e| *e), "first run: {seen:?}");

    let recording = FailingPart::new(&pg, u64::MAX);
    let second = Loader::new(Arc::clone(&recording) as Arc<dyn Destination>)
        .with_options(options)
        .load(location())
        .await
        .expect("load");
    assert_eq!(second.status, PackageStatus::Loaded, "{:?}", second.jobs);
    let seen = recording.emptied();
    assert!(!seen.is_empty() && seen.iter().all(|e| !*e), "rerun: {seen:?}");
    assert_every_row_once(pg.as_ref()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duckdb_normalized_packages_load_into_postgres_too() {
    // insert_values escaping and types differ per destination; berth parses them into Arrow.
    let cluster = PgCluster::start();
    let dest = destination(&cluster, "cross");
    if let Err(e) = check_scenario(dest, &scenario_dir("duckdb", "append_types"), LoaderOptions::default()).await {
        panic!("duckdb packages into postgres: {e}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_type_round_trips_with_edge_values() {
    let cluster = PgCluster::start();
    if let Err(e) = berth_tests::check_type_round_trip(destination(&cluster, "types")).await {
        panic!("postgres: {e}");
    }
}

/// A CA, and a server certificate it signed for `localhost` only.
fn certificates() -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "berth test CA");
    let ca_key = KeyPair::generate().expect("ca key");
    let ca_cert = ca.self_signed(&ca_key).expect("ca cert");
    let server_key = KeyPair::generate().expect("server key");
    let server_cert = CertificateParams::new(vec!["localhost".to_string()])
        .expect("server params")
        .signed_by(&server_key, &ca_cert, &ca_key)
        .expect("server cert");
    (ca_cert.pem(), server_cert.pem(), server_key.serialize_pem())
}

async fn connects(url: &str) -> Result<(), String> {
    let destination = PostgresDestination::from_url(url).map_err(|e| e.to_string())?;
    let rows = query_text(
        &destination,
        "SELECT ssl::text FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
    )
    .await?;
    if rows.first().and_then(|r| r.first()).cloned().flatten().as_deref() == Some("true") {
        Ok(())
    } else {
        Err("connected without TLS".into())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_modes_follow_libpq() {
    let cluster = PgCluster::start();
    let plain = cluster.database_url("tls");
    let (ca, cert, key) = certificates();
    let (other_ca, _, _) = certificates();
    cluster.enable_tls(&cert, &key);
    let dir = tempfile::tempdir().expect("tempdir");
    let (ca_file, other_file) = (dir.path().join("ca.pem"), dir.path().join("other.pem"));
    std::fs::write(&ca_file, ca).expect("write");
    std::fs::write(&other_file, other_ca).expect("write");
    let by_name = plain.replace("127.0.0.1", "localhost");
    let with = |url: &str, params: &str| format!("{url}?{params}");

    // verify-full: the chain and the host name check out, and a package loads over TLS.
    let full = with(
        &by_name,
        &format!("sslmode=verify-full&sslrootcert={}", ca_file.display()),
    );
    connects(&full).await.expect("verify-full");
    let dest: Arc<dyn Destination> = Arc::new(PostgresDestination::from_url(&full).expect("url"));
    if let Err(e) = check_scenario(
        dest,
        &scenario_dir("postgres", "append_types"),
        LoaderOptions::default(),
    )
    .await
    {
        panic!("loading over TLS: {e}");
    }
    // verify-full against another CA, or by an address the certificate does not name: refused.
    for url in [
        with(
            &by_name,
            &format!("sslmode=verify-full&sslrootcert={}", other_file.display()),
        ),
        with(
            &plain,
            &format!("sslmode=verify-full&sslrootcert={}", ca_file.display()),
        ),
    ] {
        let err = connects(&url).await.expect_err("must not verify");
        assert!(err.contains("certificate") && !err.contains("unused-password"), "{err}");
    }
    // verify-ca checks the chain but not the name; require encrypts without checking.
    connects(&with(
        &plain,
        &format!("sslmode=verify-ca&sslrootcert={}", ca_file.display()),
    ))
    .await
    .expect("verify-ca by address");
    connects(&with(&plain, "sslmode=require")).await.expect("require");
    connects(&plain)
        .await
        .expect("prefer (the default) encrypts when the server can");
    // The server refuses unencrypted connections: disable gets a clear refusal.
    let err = connects(&with(&plain, "sslmode=disable")).await.expect_err("no TLS");
    assert!(err.contains("pg_hba.conf") && !err.contains("unused-password"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loads_through_a_unix_socket_without_tls_in_every_sslmode() {
    let cluster = PgCluster::start();
    cluster.database_url("local");
    let socket = cluster.socket_url("local");
    // libpq's rule: no TLS over a Unix-domain socket, whatever sslmode asks for.
    for mode in ["prefer", "require", "verify-full"] {
        let url = format!("{socket}?sslmode={mode}");
        let dest: Arc<dyn Destination> = Arc::new(PostgresDestination::from_url(&url).expect("url"));
        let rows = query_text(
            dest.as_ref(),
            "SELECT ssl::text FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
        )
        .await
        .unwrap_or_else(|e| panic!("sslmode={mode} through the socket: {e}"));
        assert_eq!(rows, vec![vec![Some("false".to_string())]], "sslmode={mode}");
    }
    // libpq's precedence, in the form dlt writes a socket's credentials: the `host` parameter
    // wins over the host before the path, where the server listens too.
    let folder = cluster.path().display().to_string().replace('/', "%2F");
    let dlt_form = format!("postgresql://berth@127.0.0.1:{}/local?host={folder}", cluster.port);
    let dest = PostgresDestination::from_url(&dlt_form).expect("url");
    let rows = query_text(&dest, "SELECT (inet_server_addr() IS NULL)::text")
        .await
        .unwrap_or_else(|e| panic!("the host parameter: {e}"));
    assert_eq!(rows, vec![vec![Some("true".to_string())]], "through the socket");
    let dest: Arc<dyn Destination> = Arc::new(PostgresDestination::from_url(&socket).expect("url"));
    if let Err(e) = check_scenario(
        dest,
        &scenario_dir("postgres", "append_types"),
        LoaderOptions::default(),
    )
    .await
    {
        panic!("loading through the socket: {e}");
    }
}

/// Runs `sql` on `destination` and returns how many rows it gave.
async fn query_count(destination: &dyn Destination, sql: &str) -> usize {
    query_text(destination, sql).await.map_or(0, |rows| rows.len())
}

const ACTIVE_COPY: &str = "SELECT pid FROM pg_stat_activity WHERE state = 'active' AND query LIKE 'COPY %'";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminated_backends_and_a_server_restart_mid_copy_are_retried_to_exact_rows() {
    let cluster = Arc::new(PgCluster::start());
    let dir = tempfile::tempdir().expect("tempdir");
    let rows = 300_000;
    let package = SyntheticPackage::new(Shape::Narrow, rows)
        .with_row_group_rows(10_000)
        .with_seed(3)
        .write(dir.path())
        .expect("package");
    // A pristine copy for the second load (loading moves the job files).
    let fresh = dir.path().join("again").join(package.file_name().expect("name"));
    berth_tests::copy_tree(&package, &fresh).expect("copy");
    let options = LoaderOptions {
        split_min_bytes: 1,
        parallel_jobs: 2,
        max_attempts: 12,
        retry_backoff: std::time::Duration::from_millis(100),
        ..LoaderOptions::default()
    };
    let url = cluster.database_url("faults");
    let pg: Arc<dyn Destination> = Arc::new(PostgresDestination::from_url(&url).expect("postgres"));
    let check = |dataset: &'static str| {
        let pg = Arc::clone(&pg);
        async move {
            let (ids, _) = table_rows(pg.as_ref(), dataset, "narrow", &["id"]).await.expect("rows");
            let distinct: BTreeSet<&String> = ids.iter().collect();
            assert_eq!(
                (ids.len(), distinct.len()),
                (rows as usize, rows as usize),
                "{dataset}: every row exactly once"
            );
        }
    };

    // 1. Backends terminated mid-COPY (SQLSTATE 57P01): the parts retry on new connections.
    let killer: Arc<dyn Destination> = Arc::new(PostgresDestination::from_url(&url).expect("postgres"));
    let kills = berth::model::task::spawn_owned(async move {
        let mut terminated = 0;
        let started = std::time::Instant::now();
        while terminated < 3 && started.elapsed() < std::time::Duration::from_secs(60) {
            if query_count(killer.as_ref(), ACTIVE_COPY).await > 0 {
                terminated += query_count(
                    killer.as_ref(),
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                     WHERE state = 'active' AND query LIKE 'COPY %'",
                )
                .await;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        terminated
    });
    let location = || PackageLocation::parse(&package.to_string_lossy()).expect("location");
    let summary = Loader::new(Arc::clone(&pg))
        .with_options(LoaderOptions {
            dataset: Some("terminated".into()),
            ..options.clone()
        })
        .load(location())
        .await
        .expect("load survives terminated backends");
    let terminated = kills.await.expect("killer");
    assert!(terminated >= 1, "no COPY was caught to terminate");
    assert_eq!(summary.status, PackageStatus::Loaded, "{:?}", summary.jobs);
    assert!(summary.jobs.iter().any(|j| j.attempts > 1), "a part must have retried");
    check("terminated").await;

    // 2. The server stops dead (`pg_ctl -m immediate`) and starts again mid-COPY. Committed
    // work must survive that, as on any production server: commits are made durable first.
    cluster.configure("synchronous_commit = on");
    let watcher: Arc<dyn Destination> = Arc::new(PostgresDestination::from_url(&url).expect("postgres"));
    let restarter = {
        let cluster = Arc::clone(&cluster);
        berth::model::task::spawn_owned(async move {
            let started = std::time::Instant::now();
            while started.elapsed() < std::time::Duration::from_secs(60) {
                if query_count(watcher.as_ref(), ACTIVE_COPY).await > 0 {
                    tokio::task::spawn_blocking(move || cluster.restart())
                        .await
                        .expect("restart");
                    return true;
                }
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            false
        })
    };
    let summary = Loader::new(Arc::clone(&pg))
        .with_options(LoaderOptions {
            dataset: Some("restarted".into()),
            ..options
        })
        .load(PackageLocation::parse(&fresh.to_string_lossy()).expect("location"))
        .await
        .expect("load survives a server restart");
    assert!(
        restarter.await.expect("restarter"),
        "the server was never restarted mid-COPY"
    );
    assert_eq!(summary.status, PackageStatus::Loaded, "{:?}", summary.jobs);
    assert!(summary.jobs.iter().any(|j| j.attempts > 1), "a part must have retried");
    // The COPY path times each of its steps.
    let phases = summary.phases;
    assert!(
        [phases.decode, phases.encode, phases.transfer, phases.jobs]
            .iter()
            .all(|d| !d.is_zero()),
        "{phases:?}"
    );
    check("restarted").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn different_packages_loading_into_a_new_dataset_at_once_all_load() {
    // `CREATE SCHEMA/TABLE IF NOT EXISTS` in two sessions at once can collide on PostgreSQL's
    // catalog (unique violation on pg_namespace / pg_type); the migration retries it.
    let cluster = PgCluster::start();
    let work = tempfile::tempdir().expect("tempdir");
    let url = cluster.database_url("raced");
    let mut loads = Vec::new();
    for i in 0..6u64 {
        let dir = SyntheticPackage::new(Shape::Nested, 500)
            .with_load_id(format!("1800000000.00000{i}"))
            .with_seed(i)
            .write(work.path())
            .expect("package");
        let destination: Arc<dyn Destination> = Arc::new(PostgresDestination::from_url(&url).expect("url"));
        let loader = Loader::new(destination).with_options(LoaderOptions {
            dataset: Some("raced".into()),
            retry_backoff: std::time::Duration::from_millis(20),
            ..LoaderOptions::default()
        });
        let location = PackageLocation::local(&dir).expect("location");
        loads.push(berth::model::task::spawn_owned(async move {
            loader.load_all(vec![location]).await
        }));
    }
    for load in loads {
        let summary = load.await.expect("task").unwrap_or_else(|e| panic!("load: {e}"));
        assert!(summary.all_loaded(), "{summary:?}");
    }
    let pg = PostgresDestination::from_url(&url).expect("url");
    assert_eq!(query_count(&pg, "SELECT load_id FROM raced._dlt_loads").await, 6);
}

/// A server that accepts the connection and never answers the startup fails the connection as
/// transient after `connect_timeout`, instead of holding the load forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_never_answers_times_out() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("address").port();
    // Accepts and holds connections, answering nothing; ends with the test process.
    std::thread::spawn(move || {
        let held: Vec<_> = listener.incoming().take(8).collect();
        std::thread::sleep(std::time::Duration::from_secs(60));
        drop(held);
    });
    let url = format!("postgres://berth:pw@127.0.0.1:{port}/db?connect_timeout=1&sslmode=disable");
    let destination = PostgresDestination::from_url(&url).expect("url");
    let select = berth::plan::sqlparser::parser::Parser::parse_sql(
        &berth::plan::sqlparser::dialect::PostgreSqlDialect {},
        "SELECT 1",
    )
    .expect("parse")
    .remove(0);
    let outcome = tokio::time::timeout(std::time::Duration::from_secs(30), destination.query(select))
        .await
        .expect("the connection attempt ends by itself");
    let err = outcome.expect_err("nothing answers");
    assert_eq!(err.kind(), ErrorKind::Transient, "{err}");
}

/// A first delete-insert of a root table with nested tables into new tables moves the staging
/// tables into the dataset, unless a staged nested row has no staged root row: delete-insert
/// leaves such a row out (as dlt's merge does), so the rows are copied without it instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_delete_insert_moves_nested_staging_tables_but_never_keeps_a_row_without_root() {
    let cluster = PgCluster::start();
    let dest = destination(&cluster, "moves");
    let dir = tempfile::tempdir().expect("tempdir");
    let source = berth_tests::scenario_packages("postgres", "merge_delete_insert").remove(0);
    let lost = "lost_nested_row";
    let mut tags = Vec::new();
    for orphan in [false, true] {
        let package = dir
            .path()
            .join(format!("orphan_{orphan}"))
            .join(source.file_name().expect("name"));
        berth_tests::copy_tree(&source, &package).expect("copy");
        if orphan {
            let row = serde_json::json!({
                "value": "lost", "_dlt_root_id": "no_such_root", "_dlt_parent_id": "no_such_root",
                "_dlt_list_idx": 0, "_dlt_id": lost,
            });
            std::fs::write(
                package.join("new_jobs/users__tags.0a0a0a0a0a.0.jsonl"),
                format!("{row}\n"),
            )
            .expect("job");
        }
        let dataset = format!("first_merge_{orphan}");
        let loader = Loader::new(Arc::clone(&dest)).with_options(LoaderOptions {
            dataset: Some(dataset.clone()),
            keep_staging: true,
            ..LoaderOptions::default()
        });
        let summary = loader
            .load(PackageLocation::local(&package).expect("path"))
            .await
            .expect("load");
        assert_eq!(summary.status, PackageStatus::Loaded, "{summary:?}");
        let ids = query_text(dest.as_ref(), &format!("SELECT _dlt_id FROM {dataset}.users__tags"))
            .await
            .expect("rows");
        tags.push(ids.len());
        assert!(
            !ids.contains(&vec![Some(lost.to_string())]),
            "the row without a root was kept"
        );
        // Moved tables left the staging dataset; copied ones are still there (kept).
        let staged = query_text(
            dest.as_ref(),
            &format!(
                "SELECT table_name::text FROM information_schema.tables \
                 WHERE table_schema LIKE '{dataset}_staging_%' AND table_name = 'users__tags'"
            ),
        )
        .await
        .expect("catalog");
        assert_eq!(staged.is_empty(), !orphan, "users__tags moved: {}", staged.is_empty());
        let unique = query_text(
            dest.as_ref(),
            &format!(
                "SELECT constraint_name::text FROM information_schema.table_constraints \
                 WHERE table_schema = '{dataset}' AND table_name = 'users__tags' AND constraint_type = 'UNIQUE'"
            ),
        )
        .await
        .expect("constraints");
        assert_eq!(unique.len(), 1, "UNIQUE (_dlt_id) on users__tags");
    }
    assert_eq!(tags[0], tags[1], "the same rows either way");
    assert!(tags[0] > 0);
    let persistence = table_persistence(dest.as_ref()).await;
    let finals: Vec<_> = persistence
        .iter()
        .filter(|(s, _, _)| !s.contains("_staging_"))
        .collect();
    assert!(finals.iter().all(|(_, _, p)| p == "p"), "{persistence:?}");
}
