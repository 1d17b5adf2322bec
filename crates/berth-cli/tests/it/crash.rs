//! Exactly-once under crashes: `berth load` is killed with SIGKILL at seeded moments in every
//! phase (migration, preparing, mid-COPY, between jobs, merge SQL, the commit, the clean-up), run
//! again until it finishes, and the destination must then hold exactly the rows of an
//! uninterrupted load of the same packages: nothing twice, nothing missing.
//!
//! Two packages load in a row: a merge table (delete-insert with duplicate keys in the package and
//! a nested table) whose second package updates rows of the first, and an append table whose
//! files load in row-group parts over two connections.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{ArrayRef, Int64Builder, StringBuilder};
use berth::destination::Destination;
use berth::postgres::PostgresDestination;
use berth_tests::pg::PgCluster;
use berth_tests::{copy_tree, table_rows};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::json;

/// Kills at least this many runs across phases, per destination: 20, or `BERTH_CRASH_KILLS`
/// for a long run (`BERTH_CRASH_KILLS=400 cargo test --workspace --test it -- killed_loads`).
fn min_kills() -> usize {
    std::env::var("BERTH_CRASH_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20)
}

const TABLES: [(&str, &[&str]); 3] = [
    ("users", &["id", "name", "seq", "_dlt_load_id", "_dlt_id"]),
    (
        "users__tags",
        &["value", "_dlt_root_id", "_dlt_parent_id", "_dlt_list_idx", "_dlt_id"],
    ),
    ("events", &["id", "payload", "_dlt_load_id", "_dlt_id"]),
];

fn schema() -> serde_json::Value {
    let text = |name: &str, extra: serde_json::Value| {
        let mut c = json!({"name": name, "data_type": "text", "nullable": false});
        c.as_object_mut()
            .expect("object")
            .extend(extra.as_object().cloned().unwrap_or_default());
        c
    };
    json!({
        "name": "crash", "version": 1, "version_hash": "crash-1", "engine_version": 11,
        "tables": {
            "users": {
                "name": "users", "write_disposition": "merge", "x-merge-strategy": "delete-insert",
                "resource": "users", "x-normalizer": {"seen-data": true},
                "columns": {
                    "id": {"name": "id", "data_type": "bigint", "nullable": false, "primary_key": true},
                    "name": {"name": "name", "data_type": "text", "nullable": true},
                    "seq": {"name": "seq", "data_type": "bigint", "nullable": true, "dedup_sort": "desc"},
                    "_dlt_load_id": text("_dlt_load_id", json!({})),
                    "_dlt_id": text("_dlt_id", json!({"unique": true, "row_key": true})),
                }
            },
            "users__tags": {
                "name": "users__tags", "parent": "users", "x-normalizer": {"seen-data": true},
                "columns": {
                    "value": {"name": "value", "data_type": "text", "nullable": true},
                    "_dlt_root_id": text("_dlt_root_id", json!({"root_key": true})),
                    "_dlt_parent_id": text("_dlt_parent_id", json!({"parent_key": true})),
                    "_dlt_list_idx": {"name": "_dlt_list_idx", "data_type": "bigint", "nullable": false},
                    "_dlt_id": text("_dlt_id", json!({"unique": true, "row_key": true})),
                }
            },
            "events": {
                "name": "events", "write_disposition": "append", "resource": "events",
                "x-normalizer": {"seen-data": true},
                "columns": {
                    "id": {"name": "id", "data_type": "bigint", "nullable": false},
                    "payload": {"name": "payload", "data_type": "text", "nullable": true},
                    "_dlt_load_id": text("_dlt_load_id", json!({})),
                    "_dlt_id": text("_dlt_id", json!({"unique": true, "row_key": true})),
                }
            }
        }
    })
}

fn write_parquet(path: &Path, columns: Vec<(&str, ArrayRef)>, row_group_rows: usize) {
    std::fs::write(path, berth_tests::parquet_bytes(columns, row_group_rows)).expect("write parquet");
}

fn strings(values: impl IntoIterator<Item = String>) -> ArrayRef {
    let mut b = StringBuilder::new();
    for v in values {
        b.append_value(v);
    }
    Arc::new(b.finish())
}

fn ints(values: impl IntoIterator<Item = Option<i64>>) -> ArrayRef {
    let mut b = Int64Builder::new();
    for v in values {
        b.append_option(v);
    }
    Arc::new(b.finish())
}

/// Package `index` (0 or 1) in `dir`; the second updates half of the first's users.
fn write_package(dir: &Path, index: i64, rng: &mut ChaCha8Rng) {
    let load_id = format!("1795500000.{}", index + 1);
    let package = dir.join(&load_id);
    let jobs = package.join("new_jobs");
    std::fs::create_dir_all(&jobs).expect("mkdir");
    std::fs::write(package.join("schema.json"), schema().to_string()).expect("schema");
    let state = json!({"_state_version": 1, "_state_engine_version": 1,
        "created_at": format!("2026-11-23T10:00:0{index}.000000+00:00")});
    std::fs::write(package.join("load_package_state.json"), state.to_string()).expect("state");

    // Users: 12,000 keys from index * 6,000 on, 2,000 of them staged twice.
    let first = index * 6_000;
    let mut ids: Vec<i64> = (first..first + 12_000).collect();
    for _ in 0..2_000 {
        ids.push(rng.random_range(first..first + 12_000));
    }
    let n = ids.len();
    let dlt_ids: Vec<String> = (0..n).map(|r| format!("u{index}-{r}")).collect();
    write_parquet(
        &jobs.join(format!("users.{:010x}.0.parquet", 10 + index)),
        vec![
            ("id", ints(ids.iter().map(|i| Some(*i)))),
            (
                "name",
                strings((0..n).map(|_| format!("n{}", rng.random_range(0..1000)))),
            ),
            ("seq", ints((0..n).map(|_| Some(rng.random_range(0..50))))),
            ("_dlt_load_id", strings((0..n).map(|_| load_id.clone()))),
            ("_dlt_id", strings(dlt_ids.clone())),
        ],
        4_000,
    );
    let (mut value, mut root, mut idx, mut tag_id) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (r, parent) in dlt_ids.iter().enumerate() {
        for k in 0..(r % 3) as i64 {
            value.push(format!("t{}", rng.random_range(0..20)));
            root.push(parent.clone());
            idx.push(Some(k));
            tag_id.push(format!("t{index}-{r}-{k}"));
        }
    }
    write_parquet(
        &jobs.join(format!("users__tags.{:010x}.0.parquet", 20 + index)),
        vec![
            ("value", strings(value)),
            ("_dlt_root_id", strings(root.clone())),
            ("_dlt_parent_id", strings(root)),
            ("_dlt_list_idx", ints(idx)),
            ("_dlt_id", strings(tag_id)),
        ],
        4_000,
    );
    // Events: three files of 40,000 rows in row groups of 5,000.
    for file in 0..3i64 {
        let base = index * 1_000_000 + file * 100_000;
        write_parquet(
            &jobs.join(format!("events.{:010x}.0.parquet", 30 + index * 3 + file)),
            vec![
                ("id", ints((0..40_000).map(|r| Some(base + r)))),
                (
                    "payload",
                    strings((0..40_000).map(|r| format!("payload {r} {}", rng.random_range(0..1_000_000)))),
                ),
                ("_dlt_load_id", strings((0..40_000).map(|_| load_id.clone()))),
                ("_dlt_id", strings((0..40_000).map(|r| format!("e{base}-{r}")))),
            ],
            5_000,
        );
    }
}

fn packages(dir: &Path) -> PathBuf {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let out = dir.join("packages");
    for index in 0..2 {
        write_package(&out, index, &mut rng);
    }
    out
}

fn load_command(packages: &Path, destination: &str, dataset: &str, log: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_berth"));
    command
        .args(["load", &packages.to_string_lossy(), "--destination", destination])
        .args(["--dataset", dataset, "--parallel", "2", "--split-mib", "0", "--json"])
        .env("BERTH_LOG", "berth_loader=info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).expect("log file"));
    command
}

/// The phases the loader logs, in order (see `berth_loader`'s `phase` events).
const PHASES: [&str; 6] = ["migrate", "prepare", "jobs", "followup", "commit", "finish"];

fn phases_seen(log: &Path) -> Vec<String> {
    let mut text = String::new();
    if let Ok(mut f) = std::fs::File::open(log) {
        let _ = f.read_to_string(&mut text);
    }
    text.lines()
        .filter_map(|l| l.split("phase=\"").nth(1))
        .filter_map(|rest| rest.split('"').next())
        .map(str::to_string)
        .collect()
}

async fn rows_of(destination: &dyn Destination, dataset: &str) -> BTreeMap<&'static str, Vec<String>> {
    let mut out = BTreeMap::new();
    for (table, columns) in TABLES {
        let (rows, _) = table_rows(destination, dataset, table, columns)
            .await
            .unwrap_or_else(|e| panic!("{dataset}.{table}: {e}"));
        out.insert(table, rows);
    }
    let (loads, _) = table_rows(destination, dataset, "_dlt_loads", &["load_id", "status"])
        .await
        .unwrap_or_else(|e| panic!("{dataset}._dlt_loads: {e}"));
    out.insert("_dlt_loads", loads);
    out
}

/// How a round's rows are read back.
enum Readback {
    /// Through the destination's SQL.
    Sql(Box<dyn Fn() -> Arc<dyn Destination>>),
    /// A lake's Delta tables and bookkeeping files, by the tests' own log reader.
    Lake(PathBuf),
}

impl Readback {
    async fn rows(&self, dataset: &str) -> BTreeMap<&'static str, Vec<String>> {
        match self {
            Self::Sql(open) => rows_of(open().as_ref(), dataset).await,
            Self::Lake(root) => lake_rows(root, dataset),
        }
    }
}

/// [`rows_of`] for a lake: every table as the Delta log says, `_dlt_loads` from its files.
fn lake_rows(root: &Path, dataset: &str) -> BTreeMap<&'static str, Vec<String>> {
    use arrow::datatypes::{DataType, Field, Schema};
    let mut out = BTreeMap::new();
    for (table, columns) in TABLES {
        let fields: Vec<Field> = columns
            .iter()
            .map(|c| {
                let integer = matches!(*c, "id" | "seq" | "_dlt_list_idx");
                Field::new(*c, if integer { DataType::Int64 } else { DataType::Utf8 }, true)
            })
            .collect();
        let columns: Vec<String> = columns.iter().map(|c| (*c).to_string()).collect();
        let rows = berth_tests::delta::table_rows(
            &root.join(dataset).join(table),
            &Arc::new(Schema::new(fields)),
            &columns,
        )
        .unwrap_or_else(|e| panic!("{dataset}.{table}: {e}"));
        out.insert(table, rows);
    }
    let mut loads: Vec<String> = std::fs::read_dir(root.join(dataset).join("_dlt_loads"))
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().ends_with(".jsonl"))
        .map(|e| {
            let row: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(e.path()).expect("_dlt_loads file")).expect("json");
            json!({"load_id": row["load_id"], "status": row["status"]}).to_string()
        })
        .collect();
    loads.sort();
    out.insert("_dlt_loads", loads);
    out
}

/// Kills `berth load` at seeded moments until at least [`min_kills`] runs died, each round on a
/// fresh dataset and package copy, and checks every round against an uninterrupted load.
/// `quick`: the destination's phases take milliseconds (a local lake), so kills land closer to
/// where a phase begins and more rounds are allowed to land them.
async fn kill_and_resume(url: &str, readback: Readback, seed: u64, quick: bool) {
    let dir = tempfile::tempdir().expect("tempdir");
    let pristine = packages(dir.path());

    let reference_copy = dir.path().join("reference");
    copy_tree(&pristine, &reference_copy).expect("copy");
    let log = dir.path().join("reference.log");
    let started = Instant::now();
    let status = load_command(&reference_copy, url, "reference", &log)
        .status()
        .expect("run berth");
    let full = started.elapsed();
    assert!(
        status.success(),
        "uninterrupted load: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let expected = readback.rows("reference").await;
    assert_eq!(expected["_dlt_loads"].len(), 2);
    assert!(expected["events"].len() == 240_000 && expected["users"].len() == 18_000);

    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut kills: BTreeMap<String, usize> = BTreeMap::new();
    let mut total = 0;
    let mut round = 0;
    let min_kills = min_kills();
    while total < min_kills {
        assert!(
            round < if quick { 3 * min_kills } else { min_kills },
            "only {total} kills landed in {round} rounds: {kills:?}"
        );
        let copy = dir.path().join(format!("round-{round}"));
        copy_tree(&pristine, &copy).expect("copy");
        let dataset = format!("crash_{round}");
        for attempt in 0..8 {
            // Kill at a random moment after the aimed phase began.
            // Aim at each phase in turn, so every one of them gets its kills; each round starts at
            // the next phase, so one the load passes too fast to hit (a lake's `prepare`) cannot
            // end every round before its first kill (it once left 13 kills in 60 rounds).
            let target = PHASES[(round + attempt) % PHASES.len()];
            let occurrence = rng.random_range(0..2usize);
            let extra = if quick || target == "migrate" {
                // Migrating an embedded database, and every phase of a local lake, takes
                // milliseconds: a later kill lands in the next phase (a DuckDB run once had none
                // in `migrate`, a lake run none in `jobs`).
                Duration::from_millis(rng.random_range(0..3))
            } else if target == "jobs" {
                full.mul_f64(rng.random_range(0.0..0.5))
            } else {
                Duration::from_millis(rng.random_range(0..40))
            };
            let log = dir.path().join(format!("round-{round}-{attempt}.log"));
            let mut child = load_command(&copy, url, &dataset, &log).spawn().expect("spawn berth");
            let deadline = Instant::now() + full * 3 + Duration::from_secs(10);
            let mut aimed = None;
            let exited = loop {
                if let Some(status) = child.try_wait().expect("wait") {
                    break Some(status);
                }
                let seen = phases_seen(&log);
                if aimed.is_none() && seen.iter().filter(|p| *p == target).count() > occurrence {
                    aimed = Some(Instant::now() + extra);
                }
                if aimed.is_some_and(|at| Instant::now() >= at) || Instant::now() >= deadline {
                    break None;
                }
                std::thread::sleep(Duration::from_millis(1));
            };
            match exited {
                Some(status) => {
                    // It finished before the aimed moment: this round is done.
                    assert!(
                        status.success(),
                        "round {round}: {}",
                        std::fs::read_to_string(&log).unwrap_or_default()
                    );
                    break;
                }
                None => {
                    child.kill().expect("SIGKILL");
                    let _ = child.wait();
                    let phase = phases_seen(&log).last().cloned().unwrap_or_else(|| "startup".into());
                    *kills.entry(phase).or_default() += 1;
                    total += 1;
                }
            }
        }
        // Then it runs to the end.
        let log = dir.path().join(format!("round-{round}-final.log"));
        let status = load_command(&copy, url, &dataset, &log).status().expect("run berth");
        assert!(
            status.success(),
            "round {round} after kills: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        let actual = readback.rows(&dataset).await;
        for (table, rows) in &expected {
            let got = &actual[table];
            if let Err(diff) = berth_tests::diff_rows(table, got, rows) {
                panic!("round {round} ({kills:?}): {dataset}.{table} differs from an uninterrupted load\n{diff}");
            }
        }
        round += 1;
    }
    eprintln!("{url}: {total} kills by phase: {kills:?}");
    for phase in ["migrate", "jobs", "followup"] {
        assert!(kills.contains_key(phase), "no kill landed in `{phase}`: {kills:?}");
    }
    assert!(
        kills.contains_key("commit") || kills.contains_key("finish"),
        "no kill landed at the commit: {kills:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_loads_resume_with_every_row_exactly_once_in_postgres() {
    let cluster = PgCluster::start();
    let url = cluster.database_url("crash");
    let open_url = url.clone();
    let open = move || -> Arc<dyn Destination> {
        Arc::new(berth::postgres::PostgresDestination::from_url(&open_url).expect("postgres"))
    };
    kill_and_resume(&url, Readback::Sql(Box::new(open)), 1, false).await;
}

/// The server finishes a COMMIT it received even when the client died meanwhile, so a killed
/// run's last transaction can land after the next run started. The next run must wait for it
/// instead of reading the journal before it lands and applying the package again (dlt's merge
/// follow-up twice: every updated key doubled). A deferred trigger makes the follow-up's COMMIT
/// take seconds; the run is killed inside it and the next one starts at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_the_server_finishes_after_the_kill_is_not_applied_twice() {
    let cluster = PgCluster::start();
    let url = cluster.database_url("orphan");
    let open = || PostgresDestination::from_url(&url).expect("postgres");
    let dir = tempfile::tempdir().expect("tempdir");
    let pristine = packages(dir.path());
    let reference = dir.path().join("reference");
    copy_tree(&pristine, &reference).expect("copy");
    let load = |packages: &Path, dataset: &str, log: &str| {
        let log = dir.path().join(log);
        let status = load_command(packages, &url, dataset, &log).status().expect("run berth");
        assert!(
            status.success(),
            "{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    };
    load(&reference, "reference", "reference.log");
    let expected = rows_of(&open(), "reference").await;

    // The first package loads as usual; the second one's follow-up commits slowly.
    let copy = dir.path().join("copy");
    copy_tree(&pristine, &copy).expect("copy");
    load(&copy.join("1795500000.1"), "fenced", "first.log");
    cluster.psql(
        "orphan",
        "CREATE FUNCTION fenced.slow_commit() RETURNS trigger LANGUAGE plpgsql AS \
         $$ BEGIN PERFORM pg_sleep(4); RETURN NULL; END $$; \
         CREATE CONSTRAINT TRIGGER slow_followup AFTER INSERT ON fenced._berth_journal \
         DEFERRABLE INITIALLY DEFERRED FOR EACH ROW WHEN (NEW.job_id LIKE 'followup:%') \
         EXECUTE FUNCTION fenced.slow_commit()",
    );
    let log = dir.path().join("killed.log");
    let mut child = load_command(&copy, &url, "fenced", &log).spawn().expect("spawn berth");
    let deadline = Instant::now() + Duration::from_secs(120);
    while !phases_seen(&log).iter().any(|p| p == "followup") {
        assert!(
            child.try_wait().expect("wait").is_none(),
            "the run ended before its follow-up"
        );
        assert!(Instant::now() < deadline, "no follow-up");
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(1_500));
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    let sleeping = cluster.psql(
        "orphan",
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'PgSleep'",
    );
    assert_eq!(
        sleeping.trim(),
        "1",
        "the killed run's COMMIT is still running on the server"
    );

    load(&copy, "fenced", "after.log");
    let actual = rows_of(&open(), "fenced").await;
    for (table, rows) in &expected {
        if let Err(diff) = berth_tests::diff_rows(table, &actual[table], rows) {
            panic!("fenced.{table} differs from an uninterrupted load\n{diff}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_loads_resume_with_every_row_exactly_once_in_duckdb() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("crash.duckdb");
    let url = format!("duckdb:{}", file.display());
    let open =
        move || -> Arc<dyn Destination> { Arc::new(berth::duckdb::DuckDbDestination::open(&file).expect("duckdb")) };
    kill_and_resume(&url, Readback::Sql(Box::new(open)), 2, false).await;
}

/// The same on a Delta lake: every commit carries its application transaction, so a rerun skips
/// what committed (jobs, each follow-up commit) and the `_dlt_loads` file comes last.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_loads_resume_with_every_row_exactly_once_in_a_delta_lake() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("lake");
    let url = format!("delta:{}", root.display());
    kill_and_resume(&url, Readback::Lake(root), 3, true).await;
}

/// Ctrl-C (SIGINT) while jobs load: berth starts no new jobs, lets the running ones finish or roll
/// back, exits 130 saying so, and the next run resumes to exactly the rows of an uninterrupted
/// load. Each round interrupts at a different moment of the jobs phase.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_stops_starting_jobs_and_the_load_resumes_exactly() {
    let cluster = PgCluster::start();
    let url = cluster.database_url("interrupt");
    let open = || -> Arc<dyn Destination> {
        Arc::new(berth::postgres::PostgresDestination::from_url(&url).expect("postgres"))
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let pristine = packages(dir.path());
    let reference = dir.path().join("reference");
    copy_tree(&pristine, &reference).expect("copy");
    let log = dir.path().join("reference.log");
    assert!(
        load_command(&reference, &url, "reference", &log)
            .status()
            .expect("run")
            .success()
    );
    let expected = rows_of(open().as_ref(), "reference").await;

    let mut interrupted_packages = 0;
    for (round, delay_ms) in [0u64, 150, 400].into_iter().enumerate() {
        let copy = dir.path().join(format!("round-{round}"));
        copy_tree(&pristine, &copy).expect("copy");
        let dataset = format!("interrupt_{round}");
        let log = dir.path().join(format!("round-{round}.log"));
        let out = dir.path().join(format!("round-{round}.json"));
        let mut command = load_command(&copy, &url, &dataset, &log);
        command.stdout(std::fs::File::create(&out).expect("out"));
        let mut child = command.spawn().expect("spawn berth");
        let deadline = Instant::now() + Duration::from_secs(60);
        while !phases_seen(&log).iter().any(|p| p == "jobs") {
            let exited = child.try_wait().expect("wait").is_some();
            assert!(
                !exited && Instant::now() < deadline,
                "no jobs phase: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(Duration::from_millis(delay_ms));
        let pid = i32::try_from(child.id()).expect("pid");
        // SAFETY: sends a signal to our own child process; no memory is touched.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
        let status = child.wait().expect("wait");
        let stderr = std::fs::read_to_string(&log).unwrap_or_default();
        assert_eq!(status.code(), Some(130), "round {round}: {stderr}");
        assert!(
            stderr.contains("interrupted: finishing the jobs that are loading"),
            "{stderr}"
        );
        let summary: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&out).expect("summary")).expect("json summary");
        let statuses: Vec<&str> = summary["packages"]
            .as_array()
            .expect("packages")
            .iter()
            .filter_map(|p| p["status"].as_str())
            .collect();
        let unstarted: u64 = summary["packages"]
            .as_array()
            .expect("packages")
            .iter()
            .filter_map(|p| p["interrupted_jobs"].as_u64())
            .sum();
        eprintln!("round {round}: {statuses:?}, {unstarted} job(s) left unfinished");
        interrupted_packages += statuses.iter().filter(|s| **s == "interrupted").count();
        assert!(
            statuses.len() < 2 || statuses.contains(&"interrupted"),
            "round {round}: the second package must not run to the end after Ctrl-C: {statuses:?}"
        );
        // Nothing of the interrupted package is committed yet unless it finished before the signal.
        let resumed = dir.path().join(format!("round-{round}-resume.log"));
        let status = load_command(&copy, &url, &dataset, &resumed)
            .status()
            .expect("run berth");
        assert!(
            status.success(),
            "resume: {}",
            std::fs::read_to_string(&resumed).unwrap_or_default()
        );
        let actual = rows_of(open().as_ref(), &dataset).await;
        for (table, rows) in &expected {
            if let Err(diff) = berth_tests::diff_rows(table, &actual[table], rows) {
                panic!("round {round}: {dataset}.{table} differs from an uninterrupted load\n{diff}");
            }
        }
    }
    assert!(interrupted_packages > 0, "no round stopped a package half way");
}
