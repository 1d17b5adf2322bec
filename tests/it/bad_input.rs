//! Bad input gets a clear error naming the package, job, table and column, and the destination
//! keeps nothing of the failing job. Other formats than Parquet load the same way.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use berth::destination::Destination;
use berth::duckdb::DuckDbDestination;
use berth::loader::{Loader, LoaderOptions, PackageStatus};
use berth::model::PackageLocation;
use berth_tests::{copy_tree, scenario_dir, table_rows};

const PACKAGE: &str = "0_1795379913.1787062";

struct Fixture {
    _dir: tempfile::TempDir,
    package: PathBuf,
    destination: Arc<dyn Destination>,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let package = dir.path().join(PACKAGE);
    copy_tree(
        &scenario_dir("duckdb", "append_types").join("packages").join(PACKAGE),
        &package,
    )
    .expect("copy");
    let destination = Arc::new(DuckDbDestination::open(dir.path().join("db.duckdb")).expect("duckdb"));
    Fixture {
        _dir: dir,
        package,
        destination,
    }
}

fn job(package: &Path, prefix: &str) -> PathBuf {
    std::fs::read_dir(package.join("new_jobs"))
        .expect("new_jobs")
        .map(|e| e.expect("entry").path())
        .find(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(prefix)))
        .unwrap_or_else(|| panic!("no job {prefix}"))
}

fn edit_schema(package: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let path = package.join("schema.json");
    let mut schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("json");
    edit(&mut schema);
    std::fs::write(&path, serde_json::to_string(&schema).expect("json")).expect("write");
}

async fn load(f: &Fixture) -> Result<berth::loader::PackageSummary, berth::loader::Error> {
    let location = PackageLocation::parse(&f.package.to_string_lossy()).expect("location");
    Loader::new(Arc::clone(&f.destination)).load(location).await
}

async fn count(f: &Fixture, table: &str, column: &str) -> Result<usize, String> {
    table_rows(f.destination.as_ref(), "fx", table, &[column])
        .await
        .map(|(rows, _)| rows.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_and_corrupt_schema_are_named_and_touch_nothing() {
    let f = fixture();
    std::fs::write(f.package.join("schema.json"), "{\"name\": ").expect("write");
    let err = load(&f).await.expect_err("corrupt schema").to_string();
    assert!(err.contains("schema.json") && err.contains(PACKAGE), "{err}");
    std::fs::remove_file(f.package.join("schema.json")).expect("rm");
    let err = load(&f).await.expect_err("missing schema").to_string();
    assert!(err.contains("no schema.json") && err.contains(PACKAGE), "{err}");
    assert!(
        count(&f, "_dlt_loads", "load_id").await.is_err(),
        "nothing may be created"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_parquet_fails_only_its_job_and_leaves_no_rows() {
    let f = fixture();
    let users = job(&f.package, "users.");
    let bytes = std::fs::read(&users).expect("read");
    std::fs::write(&users, &bytes[..bytes.len() / 2]).expect("truncate");

    let summary = load(&f).await.expect("the package itself opens");
    assert_eq!(summary.status, PackageStatus::Pending);
    let failed: Vec<_> = summary.failed_jobs().collect();
    assert_eq!(failed.len(), 1);
    let error = failed[0].error.clone().unwrap_or_default();
    assert!(
        error.contains("users.") && error.contains("parquet") && error.contains(PACKAGE),
        "{error}"
    );
    assert_eq!(
        count(&f, "users", "id").await.expect("users exists"),
        0,
        "no partial data"
    );
    assert_eq!(
        count(&f, "users__tags", "value").await.expect("tags"),
        12,
        "other jobs load"
    );
    assert_eq!(
        count(&f, "_dlt_loads", "load_id").await.expect("loads"),
        0,
        "not committed"
    );
    // dlt's protocol: back to new_jobs with the retry count raised, and the reason on record.
    let requeued = job(&f.package, "users.");
    assert!(
        requeued.to_string_lossy().ends_with(".1.parquet"),
        "{}",
        requeued.display()
    );
    let exceptions: Vec<_> = std::fs::read_dir(f.package.join(".exceptions"))
        .expect("exceptions")
        .collect();
    let text = std::fs::read_to_string(exceptions[0].as_ref().expect("entry").path()).expect("read");
    assert!(text.starts_with("retry: terminal\n"), "{text}");

    // Fixed file, run again: the package completes and nothing is loaded twice.
    std::fs::write(&requeued, &bytes).expect("restore");
    let summary = load(&f).await.expect("second run");
    assert_eq!(summary.status, PackageStatus::Loaded, "{summary:?}");
    assert_eq!(count(&f, "users", "id").await.expect("users"), 12);
    assert_eq!(count(&f, "users__tags", "value").await.expect("tags"), 12);
    assert!(f.package.join("package_completed.json").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parquet_columns_that_disagree_with_the_schema_are_named() {
    let f = fixture();
    edit_schema(&f.package, |s| {
        s["tables"]["users"]["columns"]
            .as_object_mut()
            .expect("columns")
            .shift_remove("email");
    });
    let summary = load(&f).await.expect("opens");
    let error = first_error(&summary);
    assert!(
        error.contains("`email`") && error.contains("`users`") && error.contains("users."),
        "{error}"
    );

    let f = fixture();
    edit_schema(&f.package, |s| {
        s["tables"]["users"]["columns"]["id"]["data_type"] = "bool".into()
    });
    let summary = load(&f).await.expect("opens");
    let error = first_error(&summary);
    assert!(
        error.contains("`id`") && error.contains("bool") && error.contains("Int64"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_formats_and_bad_job_names_are_refused_before_loading() {
    let f = fixture();
    std::fs::write(f.package.join("new_jobs/users.0123456789.0.xlsx"), "x").expect("write");
    let err = load(&f).await.expect_err("unknown format").to_string();
    assert!(err.contains("users.0123456789.0.xlsx") && err.contains("xlsx"), "{err}");
    std::fs::remove_file(f.package.join("new_jobs/users.0123456789.0.xlsx")).expect("rm");
    std::fs::write(f.package.join("new_jobs/users;drop.parquet"), "x").expect("write");
    let err = load(&f).await.expect_err("bad name").to_string();
    assert!(err.contains("users;drop.parquet"), "{err}");
    assert!(
        count(&f, "_dlt_loads", "load_id").await.is_err(),
        "nothing may be created"
    );
}

fn tag_rows(first: usize, n: usize) -> Vec<serde_json::Value> {
    (first..first + n)
        .map(|i| serde_json::json!({"value": format!("extra_{i}"), "_dlt_parent_id": "p", "_dlt_list_idx": i, "_dlt_id": format!("x{i}")}))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jsonl_gzipped_jsonl_and_csv_jobs_load_like_parquet() {
    let f = fixture();
    let jsonl: String = tag_rows(0, 3).iter().map(|r| format!("{r}\n")).collect();
    std::fs::write(f.package.join("new_jobs/users__tags.aaaaaaaaaa.0.jsonl"), jsonl).expect("jsonl");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    for r in tag_rows(3, 4) {
        writeln!(gz, "{r}").expect("gz");
    }
    std::fs::write(
        f.package.join("new_jobs/users__tags.bbbbbbbbbb.0.jsonl.gz"),
        gz.finish().expect("gz"),
    )
    .expect("write");
    std::fs::write(
        f.package.join("new_jobs/users__tags.cccccccccc.0.csv"),
        "_dlt_id,value,_dlt_parent_id,_dlt_list_idx\ny1,\"with, comma\",p,0\ny2,plain,p,1\n",
    )
    .expect("csv");
    let summary = load(&f).await.expect("load");
    assert_eq!(summary.status, PackageStatus::Loaded, "{:?}", summary.jobs);
    assert_eq!(count(&f, "users__tags", "value").await.expect("tags"), 12 + 3 + 4 + 2);
    let (rows, _) = table_rows(f.destination.as_ref(), "fx", "users__tags", &["_dlt_id", "value"])
        .await
        .expect("rows");
    assert!(rows.iter().any(|r| r.contains("with, comma")), "{rows:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_jsonl_line_is_named_and_nothing_of_the_job_stays() {
    let f = fixture();
    let mut lines: String = tag_rows(0, 2).iter().map(|r| format!("{r}\n")).collect();
    lines.push_str("{not json\n");
    std::fs::write(f.package.join("new_jobs/users__tags.dddddddddd.0.jsonl"), lines).expect("jsonl");
    std::fs::write(
        f.package.join("new_jobs/users__tags.eeeeeeeeee.0.jsonl"),
        "{\"value\": \"v\", \"_dlt_parent_id\": \"p\", \"_dlt_list_idx\": 0, \"_dlt_id\": \"z\", \"sneaky\": 1}\n",
    )
    .expect("jsonl");
    let summary = load(&f).await.expect("load");
    assert_eq!(summary.status, PackageStatus::Pending);
    let errors: Vec<String> = summary.failed_jobs().filter_map(|j| j.error.clone()).collect();
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(
        errors.iter().any(|e| e.contains("line 3") && e.contains("dddddddddd")),
        "{errors:?}"
    );
    assert!(
        errors
            .iter()
            .any(|e| e.contains("`sneaky`") && e.contains("eeeeeeeeee")),
        "{errors:?}"
    );
    assert_eq!(
        count(&f, "users__tags", "value").await.expect("tags"),
        12,
        "only the good parquet job"
    );
}

fn tags_batch(first: usize, n: usize) -> arrow::array::RecordBatch {
    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    let schema = Arc::new(Schema::new(vec![
        Field::new("_dlt_id", DataType::Utf8, false),
        Field::new("value", DataType::Utf8, true),
        Field::new("_dlt_parent_id", DataType::Utf8, false),
        Field::new("_dlt_list_idx", DataType::Int64, false),
    ]));
    let range = first..first + n;
    arrow::array::RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from_iter_values(range.clone().map(|i| format!("ipc{i}")))),
            Arc::new(StringArray::from_iter_values(
                range.clone().map(|i| format!("ipc_value_{i}")),
            )),
            Arc::new(StringArray::from_iter_values(range.clone().map(|_| "p"))),
            Arc::new(Int64Array::from_iter_values(range.map(|i| i as i64))),
        ],
    )
    .expect("batch")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arrow_ipc_files_and_streams_and_typed_jsonl_load() {
    let f = fixture();
    let batch = tags_batch(0, 5);
    let mut file = Vec::new();
    {
        let mut writer = arrow::ipc::writer::FileWriter::try_new(&mut file, &batch.schema()).expect("ipc file");
        writer.write(&batch).expect("write");
        writer.write(&tags_batch(5, 3)).expect("write");
        writer.finish().expect("finish");
    }
    std::fs::write(f.package.join("new_jobs/users__tags.ffffffffff.0.arrow"), file).expect("write");
    let mut stream = Vec::new();
    {
        let mut writer = arrow::ipc::writer::StreamWriter::try_new(&mut stream, &batch.schema()).expect("ipc stream");
        writer.write(&tags_batch(8, 2)).expect("write");
        writer.finish().expect("finish");
    }
    std::fs::write(f.package.join("new_jobs/users__tags.gggggggggg.0.arrow"), stream).expect("write");
    // typed-jsonl: each line an array of rows, dlt's typed markers stripped.
    let typed = format!("{}\n", serde_json::Value::Array(tag_rows(100, 2)));
    std::fs::write(f.package.join("new_jobs/users__tags.hhhhhhhhhh.0.typed-jsonl"), typed).expect("write");

    let summary = load(&f).await.expect("load");
    assert_eq!(summary.status, PackageStatus::Loaded, "{:?}", summary.jobs);
    assert_eq!(count(&f, "users__tags", "value").await.expect("tags"), 12 + 8 + 2 + 2);

    // An IPC file with a column the table does not have is refused, naming it.
    let f = fixture();
    let mut bad = Vec::new();
    {
        use arrow::datatypes::{DataType, Field, Schema};
        let schema = Arc::new(Schema::new(vec![Field::new("surprise", DataType::Utf8, true)]));
        let batch = arrow::array::RecordBatch::try_new(
            Arc::clone(&schema),
            vec![Arc::new(arrow::array::StringArray::from(vec!["x"]))],
        )
        .expect("batch");
        let mut writer = arrow::ipc::writer::StreamWriter::try_new(&mut bad, &schema).expect("ipc");
        writer.write(&batch).expect("write");
        writer.finish().expect("finish");
    }
    std::fs::write(f.package.join("new_jobs/users__tags.iiiiiiiiii.0.arrow"), bad).expect("write");
    let summary = load(&f).await.expect("load");
    let error = summary
        .failed_jobs()
        .next()
        .and_then(|j| j.error.clone())
        .expect("fails");
    assert!(error.contains("`surprise`") && error.contains("iiiiiiiiii"), "{error}");
}

async fn load_with(f: &Fixture, options: LoaderOptions) -> berth::loader::PackageSummary {
    let location = PackageLocation::parse(&f.package.to_string_lossy()).expect("location");
    Loader::new(Arc::clone(&f.destination))
        .with_options(options)
        .load(location)
        .await
        .expect("the package opens")
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_failed_jobs_go_to_failed_jobs_and_the_package_commits_without_them() {
    let f = fixture();
    let users = job(&f.package, "users.");
    std::fs::write(&users, b"PAR1 truncated").expect("break");
    let options = LoaderOptions {
        allow_failed_jobs: true,
        ..LoaderOptions::default()
    };
    let summary = load_with(&f, options).await;
    assert_eq!(summary.status, PackageStatus::LoadedWithFailedJobs, "{summary:?}");
    let name = users.file_name().expect("name").to_string_lossy().into_owned();
    assert_eq!(
        files_in(&f.package.join("failed_jobs")),
        vec![name.clone(), format!("{name}.exception")]
    );
    let exception =
        std::fs::read_to_string(f.package.join("failed_jobs").join(format!("{name}.exception"))).expect("read");
    assert!(exception.contains(&name) && exception.contains(PACKAGE), "{exception}");
    assert_eq!(count(&f, "users", "id").await.expect("users"), 0);
    assert_eq!(count(&f, "users__tags", "value").await.expect("tags"), 12);
    assert_eq!(count(&f, "_dlt_loads", "load_id").await.expect("loads"), 1);
    assert!(files_in(&f.package.join(".pending_transitions")).is_empty());
    assert_eq!(
        std::fs::read_to_string(f.package.join("package_completed.json")).expect("marker"),
        "loaded"
    );
}

/// A run with --allow-failed-jobs failed `users` and stopped before its commit.
fn failed_before_the_commit() -> (Fixture, String) {
    let f = fixture();
    let users = job(&f.package, "users.");
    let name = users.file_name().expect("name").to_string_lossy().into_owned();
    std::fs::create_dir_all(f.package.join("failed_jobs")).expect("mkdir");
    std::fs::rename(&users, f.package.join("failed_jobs").join(&name)).expect("fail it");
    std::fs::write(
        f.package.join("failed_jobs").join(format!("{name}.exception")),
        "the destination refused it",
    )
    .expect("exception");
    (f, name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_jobs_of_an_uncommitted_package_are_retried_unless_failures_are_allowed() {
    // Allowed again: the job stays failed, with its error in the summary.
    let (f, name) = failed_before_the_commit();
    let options = LoaderOptions {
        allow_failed_jobs: true,
        ..LoaderOptions::default()
    };
    let summary = load_with(&f, options).await;
    assert_eq!(summary.status, PackageStatus::LoadedWithFailedJobs, "{summary:?}");
    let failed: Vec<_> = summary.failed_jobs().collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].error.as_deref(), Some("the destination refused it"));
    assert_eq!(count(&f, "users", "id").await.expect("users"), 0);
    assert_eq!(
        files_in(&f.package.join("failed_jobs")),
        vec![name.clone(), format!("{name}.exception")]
    );

    // Not allowed: the job is queued again and, the file being fine, loads.
    let (f, _) = failed_before_the_commit();
    let summary = load_with(&f, LoaderOptions::default()).await;
    assert_eq!(summary.status, PackageStatus::Loaded, "{summary:?}");
    assert_eq!(count(&f, "users", "id").await.expect("users"), 12);
    assert!(files_in(&f.package.join("failed_jobs")).is_empty());
    let exceptions = files_in(&f.package.join(".exceptions"));
    assert_eq!(exceptions.len(), 1, "{exceptions:?}");
    let text = std::fs::read_to_string(f.package.join(".exceptions").join(&exceptions[0])).expect("read");
    assert_eq!(text, "retry: terminal\nthe destination refused it\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_transitions_are_replayed_and_cleared() {
    // dlt's crash-safety markers: a job in started_jobs/ whose marker says `completed` was
    // committed by the run that wrote it (dlt or berth) and is not loaded again; one whose marker
    // says `failed` is queued again with its error.
    let f = fixture();
    let users = job(&f.package, "users.");
    let tags = job(&f.package, "users__tags.");
    std::fs::create_dir_all(f.package.join("started_jobs")).expect("mkdir");
    std::fs::create_dir_all(f.package.join(".pending_transitions")).expect("mkdir");
    for (file, marker) in [
        (&users, r#"{"state": "completed", "failed_message": null}"#),
        (&tags, r#"{"state": "failed", "failed_message": "boom"}"#),
    ] {
        let name = file.file_name().expect("name");
        std::fs::rename(file, f.package.join("started_jobs").join(name)).expect("start");
        std::fs::write(f.package.join(".pending_transitions").join(name), marker).expect("marker");
    }
    let summary = load_with(&f, LoaderOptions::default()).await;
    assert_eq!(summary.status, PackageStatus::Loaded, "{summary:?}");
    assert_eq!(
        count(&f, "users", "id").await.expect("users"),
        0,
        "committed before: not loaded twice"
    );
    assert_eq!(count(&f, "users__tags", "value").await.expect("tags"), 12, "retried");
    assert!(files_in(&f.package.join(".pending_transitions")).is_empty());
    let completed = files_in(&f.package.join("completed_jobs"));
    let users_name = users.file_name().expect("name").to_string_lossy().into_owned();
    assert!(completed.contains(&users_name), "{completed:?}");
    assert!(
        completed
            .iter()
            .any(|n| n.starts_with("users__tags.") && n.contains(".1.")),
        "retried with its retry count raised: {completed:?}"
    );
    let exceptions = files_in(&f.package.join(".exceptions"));
    let text = std::fs::read_to_string(f.package.join(".exceptions").join(&exceptions[0])).expect("read");
    assert_eq!(text, "retry: terminal\nboom\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_package_state_files_are_named_and_touch_nothing() {
    for (file, body) in [
        ("load_package_state.json", "{\"created_at\": "),
        ("load_package_state.json", "[1, 2]"),
        (".restore/state.json", "{\"dataset_name\": 7"),
        (".pending_transitions/users.x.0.parquet", "{\"state\": 1}"),
    ] {
        let f = fixture();
        let path = f.package.join(file);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(&path, body).expect("write");
        let err = load(&f).await.expect_err("corrupt state").to_string();
        assert!(err.contains(file) && err.contains(PACKAGE), "{file}: {err}");
        assert!(
            count(&f, "_dlt_loads", "load_id").await.is_err(),
            "{file}: nothing may be created"
        );
    }
}

/// The error of the package's first failed job.
fn first_error(summary: &berth::loader::PackageSummary) -> String {
    summary
        .failed_jobs()
        .next()
        .and_then(|j| j.error.clone())
        .expect("a job fails")
}

/// A dlt merge condition that names a column the table lacks, or does not parse, stops the
/// package before anything is created: the error names the table and the option.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_merge_condition_is_refused_before_anything_runs() {
    for (hint, condition) in [
        ("x-merge-source-filter", "country = 'eu'"),
        ("x-merge-source-filter", "region = "),
        ("x-merge-destination-scope", "{table}.nope > 1"),
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        let scenario = scenario_dir("duckdb", "merge_source_filter");
        let first = std::fs::read_dir(scenario.join("packages"))
            .expect("packages")
            .map(|e| e.expect("entry").path())
            .min()
            .expect("a package");
        let package = dir.path().join(first.file_name().expect("name"));
        copy_tree(&first, &package).expect("copy");
        edit_schema(&package, |schema| {
            let tables = schema["tables"].as_object_mut().expect("tables");
            let root = tables
                .values_mut()
                .find(|t| t["write_disposition"] == "merge" && t.get("parent").is_none())
                .expect("a merge root");
            root["x-merge-strategy"] = "delete-insert".into();
            root["x-merge-destination-scope"] = serde_json::Value::Null;
            root[hint] = condition.into();
        });
        let destination: Arc<dyn Destination> =
            Arc::new(DuckDbDestination::open(dir.path().join("db.duckdb")).expect("duckdb"));
        let location = PackageLocation::parse(&package.to_string_lossy()).expect("location");
        let error = Loader::new(Arc::clone(&destination))
            .load(location)
            .await
            .expect_err("refused");
        assert!(
            matches!(error, berth::loader::Error::Plan(_)),
            "{hint} = {condition}: {error}"
        );
        let text = error.to_string();
        assert!(text.contains(hint), "{text}");
        let schemas = berth_tests::query_text(
            destination.as_ref(),
            "SELECT schema_name FROM information_schema.schemata WHERE schema_name NOT IN ('main', 'information_schema', 'pg_catalog')",
        )
        .await
        .expect("schemas");
        assert!(schemas.is_empty(), "{hint} = {condition}: created {schemas:?}");
    }
}
