//! `berth load s3://…` as users run it, against a real S3 server on loopback: credentials from the
//! environment or from berth.toml (never printed), and two `berth` processes racing for the same
//! bucket package loading it once.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use berth::destination::Destination;
use berth_tests::pg::PgCluster;
use berth_tests::s3::{ACCESS_KEY, S3Server, SECRET_KEY};
use berth_tests::{table_rows, testdata};

use super::{QUICKSTART, text};

const BUCKET: &str = "lake";

fn berth_command(dir: &Path, args: &[&str], env: &[(String, String)]) -> Command {
    let mut command = super::berth_command(dir, args);
    command.env("BERTH_LOG", "trace").envs(env.iter().map(|(k, v)| (k, v)));
    command
}

fn berth(dir: &Path, args: &[&str], env: &[(String, String)]) -> Output {
    berth_command(dir, args, env).output().expect("run berth")
}

fn assert_no_secret(what: &str, out: &Output) {
    for stream in [&out.stdout, &out.stderr] {
        assert!(
            !text(stream).contains(SECRET_KEY),
            "{what} shows the secret key:\n{}",
            text(stream)
        );
    }
}

fn statuses(out: &Output) -> Vec<String> {
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json summary");
    summary["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .map(|p| p["status"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_reads_packages_from_s3_with_credentials_from_the_environment_or_berth_toml() {
    let server = S3Server::start(&[BUCKET]);
    server
        .upload_dir(&testdata().join("quickstart/packages"), BUCKET, "pipe/load/normalized")
        .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let prefix = format!("s3://{BUCKET}/pipe/load/normalized");

    // Credentials from the AWS_* variables, logging at trace.
    let out = berth(
        dir.path(),
        &["load", &prefix, "--destination", "duckdb:env.duckdb", "--json"],
        &server.env(),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(statuses(&out), ["loaded"]);
    assert_no_secret("load with AWS_* credentials", &out);
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(
        summary["packages"][0]["package"],
        format!("{prefix}/{QUICKSTART}"),
        "the summary names the package by its URL"
    );

    // The same from berth.toml in the current directory; the package is marked loaded now.
    std::fs::write(
        dir.path().join("berth.toml"),
        server.config_toml(&format!("s3://{BUCKET}")),
    )
    .expect("config");
    let out = berth(
        dir.path(),
        &["load", &prefix, "--destination", "duckdb:env.duckdb", "--json"],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(statuses(&out), ["already_loaded"]);
    assert_no_secret("load with berth.toml", &out);
    let out = berth(dir.path(), &["package", "show", &format!("{prefix}/{QUICKSTART}")], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("rides"), "{}", text(&out.stdout));

    // Without credentials: a clear error naming the location, exit 1.
    std::fs::remove_file(dir.path().join("berth.toml")).expect("rm");
    let out = berth(
        dir.path(),
        &["load", &prefix, "--destination", "duckdb:none.duckdb"],
        &[
            ("AWS_ENDPOINT".into(), server.endpoint().into()),
            ("AWS_ALLOW_HTTP".into(), "true".into()),
            ("AWS_ACCESS_KEY_ID".into(), ACCESS_KEY.into()),
            ("AWS_SECRET_ACCESS_KEY".into(), "not-the-secret".into()),
            ("AWS_REGION".into(), "us-east-1".into()),
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains(&prefix), "{}", text(&out.stderr));
    assert!(!text(&out.stderr).contains("not-the-secret"), "{}", text(&out.stderr));

    // A config file named by --config must exist.
    let out = berth(dir.path(), &["load", &prefix, "--config", "missing.toml"], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("missing.toml"), "{}", text(&out.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_berth_processes_loading_the_same_bucket_package_load_it_once() {
    let server = S3Server::start(&[BUCKET]);
    server
        .upload_dir(&testdata().join("quickstart/packages"), BUCKET, "race")
        .await;
    let cluster = PgCluster::start();
    let url = cluster.database_url("race");
    let dir = tempfile::tempdir().expect("tempdir");
    let package = format!("s3://{BUCKET}/race/{QUICKSTART}");
    // Each process's output is read on its own thread: a pipe left full would stall the process
    // writing to it, lock and all.
    let run = || {
        berth_command(
            dir.path(),
            &["load", &package, "--destination", &url, "--json"],
            &server.env(),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .expect("run berth")
    };
    let (a, b) = std::thread::scope(|scope| {
        let a = scope.spawn(run);
        let b = scope.spawn(run);
        (a.join().expect("a"), b.join().expect("b"))
    });
    assert!(
        a.status.success() && b.status.success(),
        "{}\n{}",
        text(&a.stderr),
        text(&b.stderr)
    );
    let mut seen = [statuses(&a), statuses(&b)].concat();
    seen.sort();
    assert_eq!(seen, ["already_loaded", "loaded"]);

    let pg = berth::postgres::PostgresDestination::from_url(&url).expect("url");
    let expected = std::fs::read_to_string(testdata().join("quickstart/expected/rides.jsonl"))
        .map(|t| t.lines().count())
        .unwrap_or(0);
    let dataset = serde_json::from_slice::<serde_json::Value>(&a.stdout).expect("json")["packages"][0]["dataset"]
        .as_str()
        .expect("dataset")
        .to_string();
    let (rows, _) = table_rows(&pg as &dyn Destination, &dataset, "rides", &["_dlt_id"])
        .await
        .expect("rows");
    let distinct: std::collections::BTreeSet<&String> = rows.iter().collect();
    assert_eq!(distinct.len(), rows.len(), "no row twice");
    if expected > 0 {
        assert_eq!(rows.len(), expected);
    }
    let (loads, _) = table_rows(&pg as &dyn Destination, &dataset, "_dlt_loads", &["load_id"])
        .await
        .expect("loads");
    assert_eq!(loads.len(), 1, "{loads:?}");
}
