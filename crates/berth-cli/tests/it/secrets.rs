//! Credentials never appear in berth's output: not in errors, logs (at `trace`), `--help`, load
//! summaries (text and JSON), `berth bench` and `berth plan` reports, the files berth writes into
//! packages, nor in `Debug` of the library's types. The PostgreSQL role really authenticates with
//! its password (SCRAM), so the password travels where a leak could pick it up.

use std::path::Path;
use std::process::Output;
use std::sync::Arc;

use berth_tests::pg::PgCluster;

use super::{QUICKSTART, quickstart_copy, text};

const PASSWORD: &str = "Pa55-w0rd-never-shown";
const WRONG: &str = "Wr0ng-pa55-never-shown";

fn berth(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    super::berth_command(dir, args)
        .env("BERTH_LOG", "trace")
        .envs(env.iter().copied())
        .output()
        .expect("run berth")
}

/// Fails when the password (or the wrong one tried) is anywhere in `output`.
fn assert_clean(what: &str, output: &str) {
    for secret in [PASSWORD, WRONG] {
        assert!(!output.contains(secret), "{what} shows a password:\n{output}");
    }
}

fn assert_output_clean(what: &str, out: &Output) {
    assert_clean(&format!("{what} (stdout)"), &text(&out.stdout));
    assert_clean(&format!("{what} (stderr)"), &text(&out.stderr));
}

/// Every file under `dir`, as text.
fn files_text(dir: &Path) -> String {
    let mut out = String::new();
    for entry in std::fs::read_dir(dir).expect("read dir").flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.push_str(&files_text(&path));
        } else if let Ok(bytes) = std::fs::read(&path) {
            out.push_str(&String::from_utf8_lossy(&bytes));
        }
    }
    out
}

#[test]
fn passwords_appear_in_no_output() {
    let cluster = PgCluster::start();
    let url = cluster.password_user_url("secretive", PASSWORD, "secrets");
    let wrong_url = url.replace(PASSWORD, WRONG);
    let dir = tempfile::tempdir().expect("tempdir");
    let packages = quickstart_copy(dir.path());

    // A load that works, logging everything berth and its libraries log.
    let out = berth(dir.path(), &["load", "packages", "--destination", &url], &[]);
    assert!(out.status.success(), "{}{}", text(&out.stdout), text(&out.stderr));
    assert!(
        text(&out.stderr).contains("TRACE") || text(&out.stderr).contains("DEBUG"),
        "logs at trace"
    );
    assert!(text(&out.stdout).contains("secretive:***@"), "{}", text(&out.stdout));
    assert_output_clean("load", &out);
    let again = berth(
        dir.path(),
        &["load", "packages", "--json"],
        &[("BERTH_DESTINATION", &url)],
    );
    assert!(again.status.success(), "{}", text(&again.stderr));
    assert_output_clean("load --json", &again);

    // The password as a URL parameter works and is hidden as well.
    let in_query = url.replacen(&format!(":{PASSWORD}@"), "@", 1) + &format!("?password={PASSWORD}");
    let query_dir = dir.path().join("query");
    quickstart_copy(&query_dir);
    let out = berth(
        &query_dir,
        &["load", "packages", "--destination", &in_query, "--json"],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_output_clean("load with ?password=", &out);
    // A libpq key/value string is no URL berth takes: the error does not echo its password.
    let key_value = format!("host=127.0.0.1 user=secretive password={PASSWORD} dbname=secrets");
    let out = berth(&query_dir, &["load", "packages", "--destination", &key_value], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert_output_clean("a key/value destination", &out);

    // The wrong password, a malformed URL, an unreachable server: errors without secrets.
    let fresh = dir.path().join("fresh");
    quickstart_copy(&fresh);
    let out = berth(&fresh, &["load", "packages", "--destination", &wrong_url], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("password authentication failed"),
        "{}",
        text(&out.stderr)
    );
    assert_output_clean("wrong password", &out);
    for bad in [
        format!("postgres://secretive:{PASSWORD}@127.0.0.1:notaport/secrets"),
        format!("postgres://secretive:{PASSWORD}@127.0.0.1:1/secrets?connect_timeout=2"),
        format!("postgres://secretive:{PASSWORD}@127.0.0.1/secrets?sslmode=bogus"),
    ] {
        let out = berth(&fresh, &["load", "packages", "--destination", &bad], &[]);
        assert_eq!(out.status.code(), Some(1), "{bad}: {}", text(&out.stderr));
        assert_output_clean(&format!("load --destination <{}>", bad.replace(PASSWORD, "…")), &out);
    }

    // A job that fails: its error, kept in the package's .exceptions/, names the destination.
    let package = fresh.join("packages").join(QUICKSTART);
    std::fs::write(package.join("new_jobs/rides.9da9325730.0.parquet"), b"broken").expect("break");
    let out = berth(
        &fresh,
        &[
            "load",
            "packages",
            "--destination",
            &url,
            "--dataset",
            "failing",
            "--json",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert_output_clean("failed job", &out);
    assert_clean("files written into the package", &files_text(&package));
    let out = berth(&fresh, &["package", "show", &package.to_string_lossy()], &[]);
    assert_output_clean("package show", &out);

    // --help shows where the destination comes from, never the value in the environment.
    for command in ["load", "bench", "plan"] {
        let out = berth(dir.path(), &[command, "--help"], &[("BERTH_DESTINATION", &url)]);
        assert!(out.status.success());
        assert!(text(&out.stdout).contains("BERTH_DESTINATION"), "{}", text(&out.stdout));
        assert_output_clean(&format!("{command} --help"), &out);
    }

    // Reports of the other commands.
    for json in [None, Some("--json")] {
        let mut args = vec!["bench", "--destination", &url, "--rows", "2000", "--runs", "1"];
        args.extend(["--no-ceiling", "--work-dir", "bench"]);
        args.extend(json);
        let out = berth(dir.path(), &args, &[]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert_output_clean(&format!("bench {}", json.unwrap_or_default()), &out);
    }
    let out = berth(
        dir.path(),
        &["plan", &packages.to_string_lossy(), "--destination", &url],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_output_clean("plan", &out);

    // Debug of the library's types.
    let destination = berth::postgres::PostgresDestination::from_url(&url).expect("url");
    assert_clean("PostgresDestination Debug", &format!("{destination:?}"));
    let loader = berth::loader::Loader::new(Arc::new(destination));
    assert_clean("Loader Debug", &format!("{loader:?}"));
    assert_clean(
        "open_destination Debug",
        &format!("{:?}", berth::open_destination(&url).expect("open")),
    );
    let error = berth::postgres::PostgresDestination::from_url(&format!("{url}?sslmode=bogus")).expect_err("bad mode");
    assert_clean("config error Debug", &format!("{error:?}"));
    assert_clean("config error Display", &error.to_string());
}

/// `--destination postgres` takes its credentials from dlt's configuration — here the project's
/// `.dlt/secrets.toml`, with the database from the environment over it — so the password is on
/// no command line, and `berth config show` says where each value came from with the password
/// masked.
#[test]
fn dlt_configuration_gives_the_credentials_and_the_password_stays_hidden() {
    let cluster = PgCluster::start();
    let url = cluster.password_user_url("configured", PASSWORD, "from_config");
    let rest = url.strip_prefix("postgres://configured:").expect("url shape");
    let port = rest
        .rsplit_once(':')
        .and_then(|(_, p)| p.split('/').next())
        .expect("port");
    let dir = tempfile::tempdir().expect("tempdir");
    quickstart_copy(dir.path());
    std::fs::create_dir_all(dir.path().join(".dlt")).expect("mkdir");
    std::fs::write(
        dir.path().join(".dlt/secrets.toml"),
        format!(
            "[destination.postgres.credentials]\nhost = \"127.0.0.1\"\nport = {port}\ndatabase = \"wrong_db\"\n\
             username = \"configured\"\npassword = \"{PASSWORD}\"\n"
        ),
    )
    .expect("secrets.toml");
    let home = dir.path().join("home");
    let env = [
        ("HOME", home.to_str().expect("utf-8")),
        ("DESTINATION__POSTGRES__CREDENTIALS__DATABASE", "from_config"),
    ];
    let out = berth(dir.path(), &["load", "packages", "--destination", "postgres"], &env);
    assert!(out.status.success(), "{}\n{}", text(&out.stdout), text(&out.stderr));
    assert_output_clean("load with dlt's configuration", &out);

    let out = berth(dir.path(), &["config", "show", "--destination", "postgres"], &env);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let shown = text(&out.stdout);
    assert_clean("config show", &shown);
    for expected in [
        "***",
        "secrets.toml",
        "DESTINATION__POSTGRES__CREDENTIALS__DATABASE",
        "from_config",
    ] {
        assert!(shown.contains(expected), "{expected} in:\n{shown}");
    }
    let rides = cluster.psql("from_config", "SELECT count(*) FROM rides_data.rides");
    assert_ne!(rides.trim(), "0", "rides loaded");
}
