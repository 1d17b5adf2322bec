//! The `berth` command as users run it: real packages, real files, exit codes and output.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use berth_tests::{copy_tree, scenario_dir, testdata};

mod buckets;
mod crash;
mod secrets;

const QUICKSTART: &str = "1795381980.7559764";

/// `berth <args>` in `dir`, with none of berth's own settings inherited from the environment.
fn berth_command(dir: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_berth"));
    command.args(args).current_dir(dir);
    for var in ["BERTH_DESTINATION", "BERTH_DATASET", "BERTH_CONFIG", "BERTH_STAGING"] {
        command.env_remove(var);
    }
    command
}

fn berth(dir: &Path, args: &[&str]) -> Output {
    berth_command(dir, args).output().expect("run berth")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn quickstart_copy(dir: &Path) -> PathBuf {
    let packages = dir.join("packages");
    copy_tree(&testdata().join("quickstart/packages"), &packages).expect("copy");
    packages
}

#[test]
fn load_prints_a_summary_and_a_second_load_is_a_no_op() {
    let dir = tempfile::tempdir().expect("tempdir");
    quickstart_copy(dir.path());
    let out = berth(dir.path(), &["load", "packages"]);
    assert!(out.status.success(), "{}{}", text(&out.stdout), text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("LOADED") && stdout.contains("rides__stops") && stdout.contains("127 rows"),
        "{stdout}"
    );
    assert!(
        dir.path().join("berth.duckdb").exists(),
        "the default destination is berth.duckdb here"
    );
    let package = dir.path().join("packages").join(QUICKSTART);
    assert!(package.join("package_completed.json").exists());
    assert_eq!(
        std::fs::read_dir(package.join("completed_jobs"))
            .expect("completed")
            .count(),
        4
    );

    let again = berth(dir.path(), &["load", "packages", "--json"]);
    assert!(again.status.success());
    let summary: serde_json::Value = serde_json::from_slice(&again.stdout).expect("--json prints JSON");
    assert_eq!(summary["packages"][0]["status"], "already_loaded");
}

/// Inside a dlt project (a `.dlt/` folder), `berth load` without `--destination` loads where
/// the package's pipeline loads (here DuckDB, recorded in `.restore/state.json`), into the file
/// dlt's configuration names; elsewhere into `berth.duckdb`.
#[test]
fn inside_a_dlt_project_the_pipeline_destination_comes_from_dlt_config() {
    let dir = tempfile::tempdir().expect("tempdir");
    quickstart_copy(dir.path());
    std::fs::create_dir_all(dir.path().join(".dlt")).expect("mkdir");
    std::fs::write(
        dir.path().join(".dlt/config.toml"),
        "[destination.duckdb]\ncredentials = \"project.duckdb\"\n",
    )
    .expect("config.toml");
    let home = dir.path().join("home");
    let out = berth_command(dir.path(), &["load", "packages"])
        .env("HOME", &home)
        .output()
        .expect("run berth");
    assert!(out.status.success(), "{}{}", text(&out.stdout), text(&out.stderr));
    assert!(dir.path().join("project.duckdb").exists(), "dlt's configured file");
    assert!(!dir.path().join("berth.duckdb").exists(), "not berth's default");
}

#[test]
fn json_summary_names_tables_rows_and_the_destination() {
    let dir = tempfile::tempdir().expect("tempdir");
    quickstart_copy(dir.path());
    let out = berth(
        dir.path(),
        &["load", "packages", "--destination", "duckdb:out/x.duckdb", "--json"],
    );
    // The parent folder of the database file does not exist: a clear error, exit 1.
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("out/x.duckdb"), "{}", text(&out.stderr));

    let out = berth(
        dir.path(),
        &[
            "load",
            "packages",
            "--destination",
            "duckdb:x.duckdb",
            "--dataset",
            "rides",
            "--json",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let package = &summary["packages"][0];
    assert_eq!(package["status"], "loaded");
    assert_eq!(package["dataset"], "rides");
    assert_eq!(package["load_id"], QUICKSTART);
    assert_eq!(package["tables"]["rides"]["rows"], 40);
    assert_eq!(package["tables"]["rides__stops"]["rows"], 80);
    assert_eq!(summary["destination"], "duckdb:x.duckdb");
    let phases = &package["phases"];
    assert!(phases["jobs"].as_f64().is_some_and(|s| s > 0.0), "{phases}");
    assert!(phases["transfer"].as_f64().is_some_and(|s| s > 0.0), "{phases}");
}

#[test]
fn failed_jobs_exit_3_and_a_fixed_package_loads_on_the_next_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let package = quickstart_copy(dir.path()).join(QUICKSTART);
    let job = package.join("new_jobs/rides.9da9325730.0.parquet");
    let bytes = std::fs::read(&job).expect("read");
    std::fs::write(&job, b"not parquet at all").expect("break");
    let out = berth(dir.path(), &["load", "packages"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stdout));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("PENDING") && stdout.contains("FAILED") && stdout.contains("rides.9da9325730"),
        "{stdout}"
    );

    std::fs::write(package.join("new_jobs/rides.9da9325730.1.parquet"), bytes).expect("fix");
    let out = berth(dir.path(), &["load", "packages"]);
    assert!(out.status.success(), "{}{}", text(&out.stdout), text(&out.stderr));
    assert!(
        text(&out.stdout).contains("had been loaded by an earlier run"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn allow_failed_jobs_commits_without_the_job_exits_4_and_package_show_lists_the_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let package = quickstart_copy(dir.path()).join(QUICKSTART);
    std::fs::write(
        package.join("new_jobs/rides.9da9325730.0.parquet"),
        b"not parquet at all",
    )
    .expect("break");
    let show = |dir: &Path| {
        let out = berth(dir, &["package", "show", &package.to_string_lossy()]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let json = berth(dir, &["package", "show", &package.to_string_lossy(), "--json"]);
        let doc: serde_json::Value = serde_json::from_slice(&json.stdout).expect("json");
        (text(&out.stdout), doc)
    };

    // Default: the package stays pending; `package show` says which job failed and why.
    let out = berth(dir.path(), &["load", "packages"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stdout));
    let (stdout, doc) = show(dir.path());
    assert!(
        stdout.contains("FAILED (queued again) new_jobs/rides.9da9325730.1.parquet")
            && stdout.contains("UNREADABLE")
            && stdout.contains("Parquet"),
        "{stdout}"
    );
    let rides = doc["jobs"]
        .as_array()
        .expect("jobs")
        .iter()
        .find(|j| j["table"] == "rides")
        .expect("rides")
        .clone();
    assert_eq!(
        (rides["state"].as_str(), rides["error_kind"].as_str()),
        (Some("new"), Some("terminal"))
    );
    assert!(
        rides["error"].as_str().is_some_and(|e| e.contains("rides.9da9325730")),
        "{rides}"
    );

    // --allow-failed-jobs: committed without it, exit 4, the job in failed_jobs/ with its error.
    let out = berth(dir.path(), &["load", "packages", "--allow-failed-jobs"]);
    assert_eq!(out.status.code(), Some(4), "{}{}", text(&out.stdout), text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("LOADED WITH FAILED JOBS") && stdout.contains("FAILED"),
        "{stdout}"
    );
    let failed = package.join("failed_jobs/rides.9da9325730.1.parquet");
    assert!(failed.exists());
    let exception = std::fs::read_to_string(package.join("failed_jobs/rides.9da9325730.1.parquet.exception"))
        .expect("the error is kept next to the job, as dlt does");
    assert!(exception.contains("rides.9da9325730"), "{exception}");
    assert!(package.join("package_completed.json").exists());
    let (stdout, doc) = show(dir.path());
    assert!(
        stdout.contains("FAILED failed_jobs/rides.9da9325730.1.parquet"),
        "{stdout}"
    );
    assert_eq!(doc["state"], "loaded");
    assert_eq!(doc["pending_transitions"], 0);

    // It is committed: loading again does nothing.
    let out = berth(dir.path(), &["load", "packages", "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(summary["packages"][0]["status"], "already_loaded");
}

#[test]
fn a_dlt_pipeline_folder_moves_from_normalized_to_loaded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let normalized = dir.path().join("pipe/load/normalized");
    let scenario = scenario_dir("duckdb", "schema_evolution").join("packages");
    // dlt names package folders by load id alone.
    for (folder, load_id) in [
        ("0_1795379919.0540857", "1795379919.0540857"),
        ("1_1795379919.4339192", "1795379919.4339192"),
    ] {
        copy_tree(&scenario.join(folder), &normalized.join(load_id)).expect("copy");
    }
    let out = berth(dir.path(), &["load", "pipe/load/normalized", "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let ids: Vec<_> = summary["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .map(|p| p["load_id"].clone())
        .collect();
    assert_eq!(ids, ["1795379919.0540857", "1795379919.4339192"], "load-id order");
    // The process's own peak memory, read after DuckDB closed: at least the library loaded.
    if cfg!(target_os = "linux") {
        let peak = summary["peak_rss_bytes"].as_u64().expect("peak_rss_bytes on Linux");
        assert!((20 << 20..2 << 30).contains(&peak), "{summary}");
    }
    assert_eq!(std::fs::read_dir(&normalized).expect("normalized").count(), 0);
    let loaded = dir.path().join("pipe/load/loaded/1795379919.4339192");
    assert_eq!(
        std::fs::read_to_string(loaded.join("package_completed.json")).expect("marker"),
        "loaded"
    );
    assert!(loaded.join("applied_schema_updates.json").exists());
    assert!(!loaded.join("schema_updates.json").exists());
    // The pipeline's emptied `load/normalized` is nothing to do, not an error.
    let again = berth(dir.path(), &["load", "pipe/load/normalized", "--json"]);
    assert_eq!(again.status.code(), Some(0), "{}", text(&again.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&again.stdout).expect("json");
    assert_eq!(summary["packages"].as_array().map(Vec::len), Some(0), "{summary}");
    // A folder that holds something, but no package, is still a mistake.
    std::fs::write(dir.path().join("pipe/load/normalized/notes.txt"), "x").expect("write");
    let wrong = berth(dir.path(), &["load", "pipe/load/normalized"]);
    assert_eq!(wrong.status.code(), Some(1), "{}", text(&wrong.stderr));
}

/// Every package path in `--help` examples exists, so a new user can run them as printed.
#[test]
fn help_examples_name_packages_that_exist() {
    let repo = testdata().join("..");
    for command in [
        &["--help"][..],
        &["load", "--help"],
        &["plan", "--help"],
        &["package", "show", "--help"],
    ] {
        let out = berth(&repo, command);
        assert!(out.status.success(), "{command:?}: {}", text(&out.stderr));
        let help = text(&out.stdout);
        for path in help.split_whitespace().filter(|w| w.starts_with("testdata/")) {
            assert!(
                repo.join(path).is_dir(),
                "`berth {}` names {path}, which does not exist",
                command.join(" ")
            );
        }
    }
}

/// Output piped into a reader that stops early ends berth quietly, never with a panic.
#[test]
fn a_closed_output_pipe_is_no_panic() {
    use std::io::Read as _;
    let repo = testdata().join("..");
    let mut child = berth_command(
        &repo,
        &["package", "show", "testdata/quickstart/packages/1795381980.7559764"],
    )
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped())
    .spawn()
    .expect("spawn berth");
    // Close the pipe at once: berth's first write finds no reader.
    drop(child.stdout.take());
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr)
        .expect("read stderr");
    let status = child.wait().expect("wait");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_ne!(status.code(), Some(101), "{stderr}");
}

#[test]
fn package_show_lists_jobs_with_states_rows_and_bytes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let package = quickstart_copy(dir.path()).join(QUICKSTART);
    let out = berth(dir.path(), &["package", "show", &package.to_string_lossy(), "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(doc["load_id"], QUICKSTART);
    assert_eq!(doc["dataset"], "rides_data");
    assert_eq!(doc["state"], "pending");
    let jobs = doc["jobs"].as_array().expect("jobs");
    let rides = jobs.iter().find(|j| j["table"] == "rides").expect("rides job");
    assert_eq!(
        (
            rides["rows"].as_u64(),
            rides["state"].as_str(),
            rides["format"].as_str()
        ),
        (Some(40), Some("new"), Some("parquet"))
    );
    let state = jobs
        .iter()
        .find(|j| j["table"] == "_dlt_pipeline_state")
        .expect("state job");
    assert_eq!(state["rows"], 1, "insert_values jobs are counted too");

    let out = berth(dir.path(), &["package", "show", &package.to_string_lossy()]);
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("rides__stops") && stdout.contains("append") && stdout.contains("replace"),
        "{stdout}"
    );
}

#[test]
fn bad_arguments_get_clear_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = berth(dir.path(), &["load", "nowhere"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("nowhere"), "{}", text(&out.stderr));
    // With --json, standard output is a JSON document on failure too.
    let out = berth(dir.path(), &["load", "nowhere", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("a JSON error on stdout");
    assert!(
        doc["error"]["message"].as_str().is_some_and(|m| m.contains("nowhere")),
        "{doc}"
    );
    quickstart_copy(dir.path());
    let out = berth(
        dir.path(),
        &[
            "load",
            "packages",
            "--destination",
            "postgres://me:hunter2@localhost/db",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("postgres://me:***@localhost/db") && !stderr.contains("hunter2"),
        "{stderr}"
    );
    let out = berth(dir.path(), &["load", "packages", "--replace-strategy", "swap"]);
    assert_eq!(out.status.code(), Some(2), "clap's usage error");
    assert!(
        text(&out.stderr).contains("truncate-and-insert"),
        "{}",
        text(&out.stderr)
    );
    let out = berth(dir.path(), &["--help"]);
    assert!(out.status.success() && text(&out.stdout).contains("berth load"));
}

/// The phases a bench case reports, in order.
const PHASES: [&str; 7] = ["migrate", "jobs", "decode", "encode", "transfer", "followup", "commit"];

fn phase_names(case: &serde_json::Value) -> Vec<&str> {
    case["phases"]
        .as_array()
        .expect("phases")
        .iter()
        .filter_map(|p| p["phase"].as_str())
        .collect()
}

#[test]
fn bench_measures_berth_and_the_destination_ceiling() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = berth(
        dir.path(),
        &[
            "bench",
            "--destination",
            "duckdb:bench.duckdb",
            "--rows",
            "3000",
            "--row-group-rows",
            "1000",
            "--runs",
            "2",
            "--work-dir",
            "work",
            "--json",
            "--report",
            "report.html",
        ],
    );
    assert!(out.status.success(), "{}{}", text(&out.stdout), text(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json report");
    assert_eq!(report["rows"], 3000);
    // The HTML report: the cases in a table, and both charts as inline SVG.
    let html = std::fs::read_to_string(dir.path().join("report.html")).expect("--report writes the page");
    assert!(
        html.contains("<td>berth append</td>") && html.contains("DuckDB CREATE TABLE AS read_parquet"),
        "{html}"
    );
    assert_eq!(html.matches("<svg").count(), 2, "{html}");
    assert!(
        html.contains("<title>transfer: ") && html.contains("berth append: job parts"),
        "{html}"
    );
    let cases = report["cases"].as_array().expect("cases");
    assert_eq!(cases.len(), 2, "{report}");
    assert_eq!(cases[0]["seconds"]["runs"].as_array().map(Vec::len), Some(2));
    assert!(cases[0]["peak_rss_bytes"].as_u64().is_some_and(|b| b > 0), "{report}");
    assert!(cases[1]["berth_ratio"].as_f64().is_some_and(|r| r > 0.0), "{report}");
    // Where the time went, per phase; DuckDB reads the Parquet itself: it is all transfer.
    assert_eq!(phase_names(&cases[0]), PHASES);
    let transfer = &cases[0]["phases"][4]["seconds"];
    assert!(transfer.as_f64().is_some_and(|s| s > 0.0), "{report}");
    // The generated package is reused by the next run with the same settings.
    assert!(dir.path().join("work/narrow-3000-rg1000-seed0").exists());
}

/// `berth bench` against a Delta lake: appends and a merge, with berth's rows every run, the
/// phases reported (decode and the Parquet encode apart), no ceiling, and the scratch datasets
/// gone after.
#[test]
fn bench_runs_against_a_delta_lake() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = format!("delta:{}", dir.path().join("lake").display());
    let bench = |extra: &[&str]| {
        let mut args = vec![
            "bench",
            "--destination",
            &lake,
            "--rows",
            "3000",
            "--runs",
            "1",
            "--work-dir",
            "work",
            "--json",
        ];
        args.extend_from_slice(extra);
        let out = berth(dir.path(), &args);
        assert!(out.status.success(), "{}{}", text(&out.stdout), text(&out.stderr));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).expect("json report")
    };
    let report = bench(&[]);
    let cases = report["cases"].as_array().expect("cases");
    assert_eq!(cases.len(), 1, "berth only: a lake has no ceiling: {report}");
    assert_eq!(phase_names(&cases[0]), PHASES, "{report}");
    assert_eq!(cases[0]["rows_loaded"], serde_json::json!([3000]), "{report}");

    let report = bench(&["--disposition", "merge:upsert", "--delta-rows", "500"]);
    let cases = report["cases"].as_array().expect("cases");
    assert_eq!(cases.len(), 4, "{report}");
    assert!(
        cases[2]["name"].as_str().is_some_and(|n| n.contains("delta 500")),
        "{report}"
    );
    let left: Vec<_> = std::fs::read_dir(dir.path().join("lake"))
        .map(|entries| entries.filter_map(Result::ok).map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "scratch datasets dropped: {left:?}");
}

#[test]
fn bench_generates_wide_and_nested_shapes_for_postgres_and_duckdb() {
    let cluster = berth_tests::pg::PgCluster::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let postgres = cluster.database_url("shapes");
    // A real dlt schema: a merge root with four nested tables, binary, decimal, date and more.
    let schema = scenario_dir("postgres", "merge_upsert").join("packages/0_1795379925.146528/schema.json");
    let schema = schema.to_string_lossy().to_string();
    for destination in [postgres.as_str(), "duckdb:shapes.duckdb"] {
        for (shape, disposition, cases) in [
            ("wide", "append", 2),
            ("nested", "append", 1),
            ("nested", "merge:delete-insert", 4),
            ("narrow", "replace:insert-from-staging", 4),
            (schema.as_str(), "merge:upsert", 4),
            (schema.as_str(), "replace", 4),
        ] {
            let out = berth(
                dir.path(),
                &[
                    "bench",
                    "--destination",
                    destination,
                    "--shape",
                    shape,
                    "--disposition",
                    disposition,
                    "--rows",
                    "3000",
                    "--delta-rows",
                    "1000",
                    "--row-group-rows",
                    "1000",
                    "--runs",
                    "1",
                    "--work-dir",
                    "work",
                    "--json",
                ],
            );
            let what = format!("{destination} {shape} {disposition}");
            assert!(
                out.status.success(),
                "{what}: {}{}",
                text(&out.stdout),
                text(&out.stderr)
            );
            let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json report");
            let name = shape.rsplit('/').next().unwrap_or(shape);
            assert_eq!(report["shape"], name, "{what}");
            // A bare `replace` is dlt's default strategy.
            let expected = if disposition == "replace" {
                "replace:truncate-and-insert"
            } else {
                disposition
            };
            assert_eq!(report["disposition"], expected, "{what}");
            let all = report["cases"].as_array().expect("cases");
            // PostgreSQL's append runs next to the server's COPY in one stream and in as many
            // as berth's connections (at least two by default).
            let server_streams = destination == postgres && disposition == "append" && cases > 1;
            assert_eq!(all.len(), cases + usize::from(server_streams), "{what}: {report}");
            if server_streams {
                let last = all.last().and_then(|c| c["name"].as_str()).unwrap_or_default();
                assert!(last.ends_with("streams)"), "{what}: {report}");
            }
            assert!(
                all[0]["rows_per_second"].as_f64().is_some_and(|r| r > 0.0),
                "{what}: {report}"
            );
        }
    }
}

#[test]
fn plan_prints_the_sql_of_a_merge_without_touching_a_destination() {
    let dir = tempfile::tempdir().expect("tempdir");
    let package = scenario_dir("postgres", "merge_upsert").join("packages/1_1795379925.8411157");
    let package = package.to_string_lossy().to_string();
    let out = berth(dir.path(), &["plan", &package, "--destination", "snowflake"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains(r#"MERGE INTO "FX_MERGE_UPSERT_0"."USERS" AS "D""#) && stdout.contains("-- job users."),
        "{stdout}"
    );
    // Nothing was created where it ran.
    assert_eq!(std::fs::read_dir(dir.path()).expect("dir").count(), 0);

    let out = berth(dir.path(), &["plan", &package, "--destination", "oracle"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("snowflake, bigquery"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn a_webhook_load_killed_half_way_resumes_without_resending_acknowledged_batches() {
    use berth_tests::http::{Reply, TestServer};
    // Three batches are acknowledged, the fourth request never gets an answer: the process is
    // killed while it waits. After the restart everything is acknowledged.
    let server = TestServer::start(|n| {
        if n == 3 {
            Reply::Hang
        } else {
            Reply::Status(200, vec![])
        }
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let package = berth_bench::synth::SyntheticPackage::new(berth_bench::synth::Shape::Narrow, 1000)
        .write(dir.path())
        .expect("package");
    let package = package.to_string_lossy().to_string();
    let destination = format!("webhook+{}/hook", server.url);
    let args = [
        "load",
        package.as_str(),
        "--destination",
        destination.as_str(),
        "--sink-batch-size",
        "100",
    ];
    let mut child = Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(args)
        .current_dir(dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start berth");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while server.received().len() < 4 {
        assert!(std::time::Instant::now() < deadline, "the fourth request never came");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().expect("kill");
    child.wait().expect("wait");

    let out = berth(dir.path(), &args);
    assert!(out.status.success(), "{}{}", text(&out.stdout), text(&out.stderr));
    assert!(text(&out.stdout).contains("LOADED"), "{}", text(&out.stdout));
    let received = server.received();
    let key = |i: usize| received[i].header("idempotency-key").expect("key").to_string();
    // The batch in flight when the process died is sent again under the same key; the three
    // acknowledged before are not sent again.
    assert_eq!(key(3), key(4));
    let first_three: Vec<String> = (0..3).map(key).collect();
    assert!((4..received.len()).all(|i| !first_three.contains(&key(i))));
    let mut ids = Vec::new();
    let mut acknowledged = std::collections::BTreeSet::new();
    for request in received.iter().filter(|r| r.acknowledged()) {
        assert!(acknowledged.insert(request.header("idempotency-key").expect("key").to_string()));
        let body: serde_json::Value = serde_json::from_slice(&request.body).expect("json");
        ids.extend(
            body["rows"]
                .as_array()
                .expect("rows")
                .iter()
                .map(|r| r["id"].as_i64().expect("id")),
        );
    }
    ids.sort_unstable();
    assert_eq!(ids, (1..=1000).collect::<Vec<_>>());
    assert_eq!(received.len(), 11);
}

#[test]
fn ndjson_sink_pipes_rows_to_standard_output_with_the_summary_on_standard_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let package = berth_bench::synth::SyntheticPackage::new(berth_bench::synth::Shape::Nested, 50)
        .write(dir.path())
        .expect("package");
    let out = berth(
        dir.path(),
        &[
            "load",
            &package.to_string_lossy(),
            "--destination",
            "ndjson:-",
            "--sink-batch-size",
            "7",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let lines: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(lines.iter().filter(|l| l["_table"] == "nested").count(), 50);
    assert!(lines.iter().any(|l| l["_table"] == "nested__items"));
    assert!(lines.iter().all(|l| l.get("_dlt_id").is_none()));
    assert!(text(&out.stderr).contains("LOADED"), "{}", text(&out.stderr));
}

/// DuckDB admits one process per database file: a second `berth load` into a file another
/// process holds waits for it, then loads.
#[test]
fn a_second_process_waits_for_the_duckdb_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    quickstart_copy(dir.path());
    let file = dir.path().join("shared.duckdb");
    let holder = berth::duckdb::DuckDbDestination::open(&file).expect("hold the file");
    let mut child = berth_command(
        dir.path(),
        &["load", "packages", "--destination", "duckdb:shared.duckdb"],
    )
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped())
    .spawn()
    .expect("spawn berth");
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert!(
        child.try_wait().expect("poll").is_none(),
        "berth must wait while another process holds the file"
    );
    drop(holder);
    let out = child.wait_with_output().expect("wait");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("LOADED"), "{}", text(&out.stdout));
}

/// `berth compact` on a lake the quickstart packages loaded: a table per row of `--json`, every
/// row still there; on anything but a lake, exit 1 with the reason.
#[test]
fn compact_merges_a_lake_s_files_and_refuses_other_destinations() {
    let dir = tempfile::tempdir().expect("tempdir");
    quickstart_copy(dir.path());
    let lake = format!("delta:{}", dir.path().join("lake").display());
    let out = berth(dir.path(), &["load", "packages", "--destination", &lake, "--json"]);
    assert!(out.status.success(), "{}{}", text(&out.stdout), text(&out.stderr));
    let loaded: serde_json::Value = serde_json::from_slice(&out.stdout).expect("--json prints JSON");
    let dataset = loaded["packages"][0]["dataset"].as_str().expect("dataset").to_string();

    let out = berth(
        dir.path(),
        &["compact", "--destination", &lake, "--dataset", &dataset, "--json"],
    );
    assert!(out.status.success(), "{}{}", text(&out.stdout), text(&out.stderr));
    let compacted: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).expect("--json prints JSON");
    let tables: Vec<&str> = compacted.iter().filter_map(|t| t["table"].as_str()).collect();
    assert!(
        tables.contains(&"rides") && tables.contains(&"rides__stops"),
        "{tables:?}"
    );
    assert!(
        compacted.iter().all(|t| t["files_after"].as_u64() <= Some(1)),
        "{compacted:?}"
    );

    let again = berth(dir.path(), &["load", "packages", "--destination", &lake, "--json"]);
    let summary: serde_json::Value = serde_json::from_slice(&again.stdout).expect("--json prints JSON");
    assert_eq!(summary["packages"][0]["status"], "already_loaded");

    let out = berth(
        dir.path(),
        &["compact", "--destination", "duckdb:x.duckdb", "--dataset", &dataset],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(!dir.path().join("x.duckdb").exists(), "nothing opened");
}

/// `--memory-budget` and `[load] memory_budget`: a budget too small refuses the load before any
/// package is loaded (exit 1, the package still to load), a size berth cannot read is a usage
/// error, and a budget that fits loads.
#[test]
fn a_memory_budget_from_the_flag_or_berth_toml_is_kept_or_refused_up_front() {
    let dir = tempfile::tempdir().expect("tempdir");
    quickstart_copy(dir.path());
    let package = dir.path().join("packages").join(QUICKSTART);
    let out = berth(dir.path(), &["load", "packages", "--memory-budget", "1MiB", "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(!package.join("package_completed.json").exists(), "nothing loaded");
    let out = berth(dir.path(), &["load", "packages", "--memory-budget", "lots"]);
    assert_eq!(out.status.code(), Some(2), "clap's usage error");

    std::fs::write(dir.path().join("berth.toml"), "[load]\nmemory_budget = \"1MiB\"\n").expect("berth.toml");
    let out = berth(dir.path(), &["load", "packages"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("memory budget"), "{}", text(&out.stderr));

    // The flag wins over the file.
    let out = berth(dir.path(), &["load", "packages", "--memory-budget", "2GiB", "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(package.join("package_completed.json").exists());
}
