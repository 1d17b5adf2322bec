//! Hostile data and names, on PostgreSQL and DuckDB: NULL into NOT NULL, numeric overflow, NUL
//! bytes, invalid UTF-8, empty packages, and table and column names with quotes, semicolons,
//! unicode and too many characters. Each is either loaded exactly (names escaped, never injected)
//! or refused with an error that names the job file, table and column, leaving nothing of the
//! failing job in the destination.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{ArrayRef, Decimal128Array, Int64Array, StringArray};
use berth::destination::Destination;
use berth::loader::{Loader, LoaderOptions, PackageStatus, PackageSummary};
use berth::model::PackageLocation;
use berth_tests::pg::PgCluster;
use berth_tests::{query_text, table_rows};
use serde_json::{Value, json};

pub(crate) const LOAD_ID: &str = "1795400000.0000001";

/// A package `LOAD_ID` in `dir` with `tables` (dlt schema JSON) and `jobs` (file name, bytes).
pub(crate) fn package(dir: &Path, tables: Value, jobs: &[(String, Vec<u8>)]) -> PathBuf {
    let root = dir.join(LOAD_ID);
    std::fs::create_dir_all(root.join("new_jobs")).expect("mkdir");
    let schema = json!({
        "name": "hostile", "version": 1, "version_hash": "hostile-1", "engine_version": 11,
        "tables": tables,
    });
    std::fs::write(root.join("schema.json"), schema.to_string()).expect("schema");
    for (name, bytes) in jobs {
        std::fs::write(root.join("new_jobs").join(name), bytes).expect("job");
    }
    root
}

pub(crate) fn column(name: &str, data_type: &str, nullable: bool) -> Value {
    json!({"name": name, "data_type": data_type, "nullable": nullable})
}

pub(crate) fn table(name: &str, columns: &[Value]) -> Value {
    let columns: serde_json::Map<String, Value> = columns
        .iter()
        .map(|c| (c["name"].as_str().expect("name").to_string(), c.clone()))
        .collect();
    json!({"name": name, "write_disposition": "append", "resource": name, "columns": columns})
}

pub(crate) fn parquet(columns: Vec<(&str, ArrayRef)>) -> Vec<u8> {
    berth_tests::parquet_bytes(columns, 1 << 20)
}

pub(crate) struct Destinations {
    _cluster: PgCluster,
    _dir: tempfile::TempDir,
    pub(crate) both: Vec<(&'static str, Arc<dyn Destination>)>,
}

pub(crate) fn destinations(name: &str) -> Destinations {
    let cluster = PgCluster::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let postgres: Arc<dyn Destination> =
        Arc::new(berth::postgres::PostgresDestination::from_url(&cluster.database_url(name)).expect("postgres"));
    let duckdb: Arc<dyn Destination> =
        Arc::new(berth::duckdb::DuckDbDestination::open(dir.path().join(format!("{name}.duckdb"))).expect("duckdb"));
    Destinations {
        _cluster: cluster,
        _dir: dir,
        both: vec![("postgres", postgres), ("duckdb", duckdb)],
    }
}

pub(crate) async fn load(destination: &Arc<dyn Destination>, package: &Path, dataset: &str) -> PackageSummary {
    let options = LoaderOptions {
        dataset: Some(dataset.to_string()),
        ..LoaderOptions::default()
    };
    Loader::new(Arc::clone(destination))
        .with_options(options)
        .load(PackageLocation::parse(&package.to_string_lossy()).expect("location"))
        .await
        .unwrap_or_else(|e| panic!("{}: the package opens: {e}", package.display()))
}

/// The error of a package refused before anything of it loads.
pub(crate) async fn refused(destination: &Arc<dyn Destination>, package: &Path) -> berth::loader::Error {
    Loader::new(Arc::clone(destination))
        .load(PackageLocation::parse(&package.to_string_lossy()).expect("location"))
        .await
        .expect_err("the package is refused")
}

/// The one failed job's error, after checking that the package stayed pending.
fn only_error(summary: &PackageSummary) -> String {
    assert_eq!(summary.status, PackageStatus::Pending, "{summary:?}");
    let failed: Vec<_> = summary.failed_jobs().collect();
    assert_eq!(failed.len(), 1, "{summary:?}");
    failed[0].error.clone().unwrap_or_default()
}

/// Does `error` name `dataset.table` and `column` (each destination words it its own way)?
fn names(error: &str, dataset: &str, table: &str, column: &str) -> bool {
    let table_named = error.contains(&format!("`{dataset}.{table}`"));
    let column_named = [
        format!("`{column}`"),
        format!("{table}.{column}"),
        format!("column {column}"),
        format!("column \"{column}\""),
    ]
    .iter()
    .any(|form| error.contains(form.as_str()));
    table_named && column_named
}

pub(crate) async fn rows(destination: &dyn Destination, dataset: &str, table: &str, columns: &[&str]) -> Vec<String> {
    table_rows(destination, dataset, table, columns)
        .await
        .unwrap_or_else(|e| panic!("{dataset}.{table}: {e}"))
        .0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn null_into_not_null_overflow_and_nul_bytes_fail_their_job_by_name() {
    let d = destinations("bad_values");
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, destination) in &d.both {
        // NULL into a NOT NULL column.
        let strings: ArrayRef = Arc::new(StringArray::from(vec![Some("a"), None, Some("c")]));
        let ids: ArrayRef = Arc::new(Int64Array::from(vec![1, 2, 3]));
        let root = package(
            &dir.path().join(format!("{name}-null")),
            json!({"people": table("people", &[column("id", "bigint", false), column("name", "text", false)])}),
            &[(
                "people.nulls.0.parquet".into(),
                parquet(vec![("id", Arc::clone(&ids)), ("name", strings)]),
            )],
        );
        let error = only_error(&load(destination, &root, "nulls").await);
        assert!(
            error.contains("people.nulls.0.parquet") && names(&error, "nulls", "people", "name"),
            "{name}: {error}"
        );
        assert!(error.to_lowercase().contains("null"), "{name}: {error}");
        assert!(rows(destination.as_ref(), "nulls", "people", &["id"]).await.is_empty());

        // A decimal beyond the column's precision.
        let amounts: ArrayRef = Arc::new(
            Decimal128Array::from(vec![Some(1_00), Some(12_345_678_901_234), None])
                .with_precision_and_scale(38, 2)
                .expect("decimal"),
        );
        let mut amount = column("amount", "decimal", true);
        amount["precision"] = json!(10);
        amount["scale"] = json!(2);
        let root = package(
            &dir.path().join(format!("{name}-overflow")),
            json!({"prices": table("prices", &[column("id", "bigint", false), amount])}),
            &[(
                "prices.big.0.parquet".into(),
                parquet(vec![("id", Arc::clone(&ids)), ("amount", amounts)]),
            )],
        );
        let error = only_error(&load(destination, &root, "overflow").await);
        assert!(
            error.contains("prices.big.0.parquet") && names(&error, "overflow", "prices", "amount"),
            "{name}: {error}"
        );
        assert!(
            rows(destination.as_ref(), "overflow", "prices", &["id"])
                .await
                .is_empty()
        );

        // A bigint beyond a small integer column (dlt: bigint with precision 16 is smallint).
        let mut small = column("n", "bigint", true);
        small["precision"] = json!(16);
        let ns: ArrayRef = Arc::new(Int64Array::from(vec![1, 40_000, 3]));
        let root = package(
            &dir.path().join(format!("{name}-small")),
            json!({"counts": table("counts", &[column("id", "bigint", false), small])}),
            &[(
                "counts.big.0.parquet".into(),
                parquet(vec![("id", Arc::clone(&ids)), ("n", ns)]),
            )],
        );
        let error = only_error(&load(destination, &root, "small").await);
        assert!(
            error.contains("counts.big.0.parquet") && names(&error, "small", "counts", "n"),
            "{name}: {error}"
        );
        assert!(rows(destination.as_ref(), "small", "counts", &["id"]).await.is_empty());

        // Text with a NUL byte: PostgreSQL cannot store it, DuckDB can.
        let texts: ArrayRef = Arc::new(StringArray::from(vec!["plain", "nul\0inside", "end"]));
        let root = package(
            &dir.path().join(format!("{name}-nul")),
            json!({"notes": table("notes", &[column("id", "bigint", false), column("body", "text", true)])}),
            &[(
                "notes.nul.0.parquet".into(),
                parquet(vec![("id", Arc::clone(&ids)), ("body", texts)]),
            )],
        );
        let summary = load(destination, &root, "nul").await;
        if *name == "postgres" {
            let error = only_error(&summary);
            assert!(
                error.contains("notes.nul.0.parquet") && names(&error, "nul", "notes", "body") && error.contains("NUL"),
                "{name}: {error}"
            );
            assert!(rows(destination.as_ref(), "nul", "notes", &["id"]).await.is_empty());
        } else {
            assert_eq!(summary.status, PackageStatus::Loaded, "{summary:?}");
            let got = rows(destination.as_ref(), "nul", "notes", &["body"]).await;
            assert!(got.iter().any(|r| r.contains("nul\\u0000inside")), "{got:?}");
        }
    }
}

/// A Parquet file whose `name` column is annotated UTF-8 but holds the bytes `bad`.
fn parquet_with_invalid_utf8(bad: &[u8]) -> Vec<u8> {
    use parquet::data_type::{ByteArray, ByteArrayType, Int64Type};
    use parquet::file::writer::SerializedFileWriter;
    let schema = Arc::new(
        parquet::schema::parser::parse_message_type("message m { required int64 id; required binary name (UTF8); }")
            .expect("schema"),
    );
    let mut out = Vec::new();
    let props = Arc::new(parquet::file::properties::WriterProperties::builder().build());
    let mut writer = SerializedFileWriter::new(&mut out, schema, props).expect("writer");
    let mut group = writer.next_row_group().expect("row group");
    let mut ids = group.next_column().expect("column").expect("id");
    ids.typed::<Int64Type>().write_batch(&[1, 2], None, None).expect("ids");
    ids.close().expect("close");
    let mut names = group.next_column().expect("column").expect("name");
    names
        .typed::<ByteArrayType>()
        .write_batch(&[ByteArray::from("fine"), ByteArray::from(bad.to_vec())], None, None)
        .expect("names");
    names.close().expect("close");
    group.close().expect("close");
    writer.close().expect("close");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_utf8_fails_its_job_and_empty_packages_and_files_load_as_empty() {
    let d = destinations("utf8");
    let dir = tempfile::tempdir().expect("tempdir");
    let people = || json!({"people": table("people", &[column("id", "bigint", false), column("name", "text", true)])});
    for (name, destination) in &d.both {
        for (file, bytes) in [
            ("people.bad.0.parquet", parquet_with_invalid_utf8(b"caf\xe9")),
            ("people.bad.0.jsonl", b"{\"id\": 1, \"name\": \"caf\xe9\"}\n".to_vec()),
            ("people.bad.0.csv", b"id,name\n1,caf\xe9\n".to_vec()),
        ] {
            let root = package(
                &dir.path().join(format!("{name}-{file}")),
                people(),
                &[(file.into(), bytes)],
            );
            let dataset = format!("utf8_{}", file.rsplit('.').next().unwrap_or_default());
            let error = only_error(&load(destination, &root, &dataset).await);
            assert!(
                error.contains(file) && error.to_lowercase().contains("utf"),
                "{name} {file}: {error}"
            );
            assert!(rows(destination.as_ref(), &dataset, "people", &["id"]).await.is_empty());
        }

        // A package without jobs commits (dlt records such loads too).
        let root = package(&dir.path().join(format!("{name}-nojobs")), people(), &[]);
        let summary = load(destination, &root, "empty").await;
        assert_eq!(summary.status, PackageStatus::Loaded, "{summary:?}");
        let loads = rows(destination.as_ref(), "empty", "_dlt_loads", &["load_id"]).await;
        assert_eq!(loads.len(), 1, "{name}: {loads:?}");
        let again = load(destination, &root, "empty").await;
        assert_eq!(again.status, PackageStatus::AlreadyLoaded);

        // Files without rows: a Parquet file with no rows, an empty JSONL file, a CSV header.
        let ids: ArrayRef = Arc::new(Int64Array::from(Vec::<i64>::new()));
        let names: ArrayRef = Arc::new(StringArray::from(Vec::<&str>::new()));
        let root = package(
            &dir.path().join(format!("{name}-emptyfiles")),
            people(),
            &[
                ("people.a.0.parquet".into(), parquet(vec![("id", ids), ("name", names)])),
                ("people.b.0.jsonl".into(), Vec::new()),
                ("people.c.0.csv".into(), b"id,name\n".to_vec()),
            ],
        );
        let summary = load(destination, &root, "empty_files").await;
        assert_eq!(summary.status, PackageStatus::Loaded, "{name}: {summary:?}");
        assert_eq!(summary.rows(), 0);
        assert!(
            rows(destination.as_ref(), "empty_files", "people", &["id"])
                .await
                .is_empty()
        );
    }
}

/// Quotes, a semicolon, spaces, unicode, a percent sign and a comment in a table name (and so in
/// its job file names).
const WEIRD_TABLE: &str = "tå\"ble 'x' 100%; DROP TABLE y; --";
const WEIRD_KEY: &str = "id'); DROP TABLE y; --";
const WEIRD_COLUMNS: [&str; 4] = ["a\"b", "it's", "ünï 名前", "semi;colon"];

/// A merge package for [`WEIRD_TABLE`], keyed by [`WEIRD_KEY`], with `values` for every weird column.
fn weird_package(dir: &Path, load_id: &str, keys: &[i64], value: &str) -> PathBuf {
    let mut key = column(WEIRD_KEY, "bigint", false);
    key["primary_key"] = json!(true);
    let mut columns = vec![key];
    columns.extend(WEIRD_COLUMNS.iter().map(|c| column(c, "text", true)));
    let mut dlt_id = column("_dlt_id", "text", false);
    dlt_id["unique"] = json!(true);
    dlt_id["row_key"] = json!(true);
    columns.push(column("_dlt_load_id", "text", false));
    columns.push(dlt_id);
    let mut weird = table(WEIRD_TABLE, &columns);
    weird["write_disposition"] = json!("merge");
    weird["x-merge-strategy"] = json!("delete-insert");
    let n = keys.len();
    let mut arrays: Vec<(&str, ArrayRef)> = vec![(WEIRD_KEY, Arc::new(Int64Array::from(keys.to_vec())))];
    for c in WEIRD_COLUMNS {
        arrays.push((c, Arc::new(StringArray::from(vec![format!("{value} {c}"); n]))));
    }
    arrays.push(("_dlt_load_id", Arc::new(StringArray::from(vec![load_id; n]))));
    let ids: Vec<String> = keys.iter().map(|k| format!("{load_id}-{k}")).collect();
    arrays.push(("_dlt_id", Arc::new(StringArray::from(ids))));
    let root = package(
        &dir.join(load_id),
        json!({ WEIRD_TABLE: weird }),
        &[(format!("{WEIRD_TABLE}.f1.0.parquet"), parquet(arrays))],
    );
    // A naming convention berth does not know (a custom module) leaves the dataset name as
    // given, so the weird dataset name reaches the destination and its escaping is tested.
    let schema_path = root.join("schema.json");
    let mut schema: Value =
        serde_json::from_str(&std::fs::read_to_string(&schema_path).expect("schema")).expect("json");
    schema["normalizers"] = json!({"names": "tests.verbatim"});
    std::fs::write(&schema_path, schema.to_string()).expect("schema");
    let target = root.with_file_name(load_id);
    std::fs::rename(&root, &target).expect("rename to the load id");
    target
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quotes_semicolons_and_unicode_in_names_are_escaped_and_over_long_names_refused() {
    let d = destinations("names");
    let dir = tempfile::tempdir().expect("tempdir");
    let dataset = "Tëst \"ds\"; --";
    for (name, destination) in &d.both {
        let first = weird_package(&dir.path().join(format!("{name}-1")), "1795400001.1", &[1, 2, 3], "old");
        let summary = load(destination, &first, dataset).await;
        assert_eq!(summary.status, PackageStatus::Loaded, "{name}: {summary:?}");
        let second = weird_package(&dir.path().join(format!("{name}-2")), "1795400002.1", &[2, 4], "new");
        let summary = load(destination, &second, dataset).await;
        assert_eq!(summary.status, PackageStatus::Loaded, "{name}: {summary:?}");
        // The stored dataset name is folded as the destination folds names.
        let stored = destination.capabilities().dialect.stored_name(dataset);
        let mut columns = vec![WEIRD_KEY];
        columns.extend(WEIRD_COLUMNS);
        let got = rows(destination.as_ref(), &stored, WEIRD_TABLE, &columns).await;
        let expected: Vec<String> = [(1, "old"), (2, "new"), (3, "old"), (4, "new")]
            .iter()
            .map(|(k, v)| {
                let mut row = serde_json::Map::new();
                row.insert(WEIRD_KEY.into(), json!(k));
                for c in WEIRD_COLUMNS {
                    row.insert(c.into(), json!(format!("{v} {c}")));
                }
                let sorted: std::collections::BTreeMap<_, _> = row.into_iter().collect();
                serde_json::to_string(&sorted).expect("json")
            })
            .collect();
        let mut expected = expected;
        expected.sort();
        assert_eq!(got, expected, "{name}");
    }

    // Names longer than the destination takes: PostgreSQL counts 63 bytes and would cut them
    // silently; berth refuses them before creating anything. DuckDB takes them.
    let long_ascii = "x".repeat(64);
    let long_unicode = "é".repeat(32); // 32 characters, 64 bytes
    for (index, long) in [&long_ascii, &long_unicode].into_iter().enumerate() {
        let dataset = format!("long_names_{index}");
        for (name, destination) in &d.both {
            let ids: ArrayRef = Arc::new(Int64Array::from(vec![1]));
            let values: ArrayRef = Arc::new(StringArray::from(vec!["v"]));
            let root = package(
                &dir.path().join(format!("{name}-long-{index}")),
                json!({"t": table("t", &[column("id", "bigint", false), column(long, "text", true)])}),
                &[(
                    "t.f.0.parquet".into(),
                    parquet(vec![("id", ids), (long.as_str(), values)]),
                )],
            );
            let location = PackageLocation::parse(&root.to_string_lossy()).expect("location");
            let options = LoaderOptions {
                dataset: Some(dataset.clone()),
                ..LoaderOptions::default()
            };
            let result = Loader::new(Arc::clone(destination))
                .with_options(options)
                .load(location)
                .await;
            if *name == "postgres" {
                let error = result.expect_err("PostgreSQL cannot take it").to_string();
                assert!(
                    error.contains(&format!("column name `{long}` of table `t`")) && error.contains("64 bytes"),
                    "{error}"
                );
                let schemata = query_text(
                    destination.as_ref(),
                    &format!("SELECT schema_name FROM information_schema.schemata WHERE schema_name = '{dataset}'"),
                )
                .await
                .expect("schemata");
                assert!(schemata.is_empty(), "nothing may be created: {schemata:?}");
            } else {
                let summary = result.expect("DuckDB takes long names");
                assert_eq!(summary.status, PackageStatus::Loaded, "{summary:?}");
            }
        }
    }
}

/// Dates and timestamps beyond what every destination stores (a date of -2^31 or 2^31-1 days, a
/// timestamp of -2^63+1 or 2^63-1 µs: PostgreSQL refuses them, DuckDB would store ±infinity)
/// fail their job by column with the same error on both destinations, never a panic, a wrapped
/// value or an infinity.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_range_dates_and_timestamps_fail_their_job_alike_everywhere() {
    use arrow::array::{Date32Array, TimestampMicrosecondArray};
    let d = destinations("ranges");
    let dir = tempfile::tempdir().expect("tempdir");
    let ids: ArrayRef = Arc::new(Int64Array::from(vec![1, 2]));
    let timestamps =
        |v: i64| -> ArrayRef { Arc::new(TimestampMicrosecondArray::from(vec![0, v]).with_timezone("UTC")) };
    let cases: [(&str, &str, ArrayRef); 4] = [
        ("d_min", "date", Arc::new(Date32Array::from(vec![0, i32::MIN]))),
        ("d_max", "date", Arc::new(Date32Array::from(vec![0, i32::MAX]))),
        ("ts_min", "timestamp", timestamps(i64::MIN + 1)),
        ("ts_max", "timestamp", timestamps(i64::MAX)),
    ];
    for (column_name, data_type, values) in cases {
        let mut errors = Vec::new();
        for (name, destination) in &d.both {
            let root = package(
                &dir.path().join(format!("{name}-{column_name}")),
                json!({"t": table("t", &[column("id", "bigint", false), column(column_name, data_type, true)])}),
                &[(
                    "t.range.0.parquet".into(),
                    parquet(vec![("id", Arc::clone(&ids)), (column_name, Arc::clone(&values))]),
                )],
            );
            let dataset = format!("ranges_{column_name}");
            let error = only_error(&load(destination, &root, &dataset).await);
            assert!(
                error.contains(&format!("`{column_name}`")),
                "{name} {column_name}: {error}"
            );
            assert!(
                rows(destination.as_ref(), &dataset, "t", &["id"]).await.is_empty(),
                "{name} {column_name}: nothing of the failed job is kept"
            );
            errors.push(error.replace(name, "<destination>"));
        }
        assert_eq!(
            errors[0], errors[1],
            "{column_name}: the same error on both destinations"
        );
    }
}

/// A job file that is a symbolic link to a file outside the package is refused before anything
/// loads, on every destination, and the error quotes nothing of the file it points to.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_linked_out_of_its_package_is_refused() {
    let d = destinations("links");
    let dir = tempfile::tempdir().expect("tempdir");
    let outside = dir.path().join("outside.jsonl");
    std::fs::write(&outside, "{\"id\": 666}\n").expect("planted file");
    for (name, destination) in &d.both {
        let root = package(
            &dir.path().join(*name),
            json!({"t": table("t", &[column("id", "bigint", false)])}),
            &[],
        );
        std::os::unix::fs::symlink(&outside, root.join("new_jobs/t.planted.0.jsonl")).expect("link");
        let err = refused(destination, &root).await;
        assert!(
            matches!(err, berth::loader::Error::Package(berth::model::Error::Symlink { .. })),
            "{name}: {err}"
        );
        assert!(!err.to_string().contains("666"), "{name}: {err}");
        assert!(
            table_rows(destination.as_ref(), "links", "t", &["id"]).await.is_err(),
            "{name}: nothing is created"
        );
    }
}

/// A small gzip file that inflates to one huge line is bad data: the job fails at once (no
/// retries as if transient) without holding the line in memory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gzip_bomb_line_fails_its_job_once() {
    use std::io::Write as _;
    let d = destinations("bomb");
    let dir = tempfile::tempdir().expect("tempdir");
    // 100 MiB of one JSON string, more than a JSONL line may hold.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(b"{\"id\": 1, \"s\": \"").expect("gzip");
    let chunk = vec![b'x'; 1 << 20];
    for _ in 0..100 {
        gz.write_all(&chunk).expect("gzip");
    }
    gz.write_all(b"\"}\n").expect("gzip");
    let bomb = gz.finish().expect("gzip");
    assert!(bomb.len() < 1 << 20, "the file is small: {}", bomb.len());
    for (name, destination) in &d.both {
        let root = package(
            &dir.path().join(*name),
            json!({"t": table("t", &[column("id", "bigint", false), column("s", "text", true)])}),
            &[("t.bomb.0.jsonl.gz".into(), bomb.clone())],
        );
        let summary = load(destination, &root, "bombs").await;
        let failed: Vec<_> = summary.failed_jobs().collect();
        assert_eq!(failed.len(), 1, "{name}: {summary:?}");
        assert_eq!(failed[0].attempts, 1, "{name}: bad data is not retried: {summary:?}");
        assert!(
            rows(destination.as_ref(), "bombs", "t", &["id"]).await.is_empty(),
            "{name}: nothing of the job is kept"
        );
    }
}

/// A large Parquet job loads on PostgreSQL as row-group parts that commit one by one; when its
/// last row group holds a NULL for a NOT NULL column, the job fails and keeps none of its rows —
/// also when failed jobs are allowed and the package commits without it. Another job of the same
/// table keeps all of its rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_split_into_parts_that_fails_keeps_none_of_its_rows() {
    let cluster = PgCluster::start();
    let postgres: Arc<dyn Destination> =
        Arc::new(berth::postgres::PostgresDestination::from_url(&cluster.database_url("parts")).expect("postgres"));
    let dir = tempfile::tempdir().expect("tempdir");
    const ROWS: i64 = 6_000;
    let ids: ArrayRef = Arc::new(Int64Array::from_iter_values(0..ROWS));
    let names: ArrayRef = Arc::new(StringArray::from_iter(
        (0..ROWS).map(|i| (i != ROWS - 1).then(|| format!("name {i}"))),
    ));
    let big = berth_tests::parquet_bytes(vec![("id", ids), ("name", names)], 200);
    let good = parquet(vec![
        ("id", Arc::new(Int64Array::from(vec![-1, -2])) as ArrayRef),
        ("name", Arc::new(StringArray::from(vec!["x", "y"])) as ArrayRef),
    ]);
    let tables = json!({"t": table("t", &[column("id", "bigint", false), column("name", "text", false)])});
    for allow_failed_jobs in [false, true] {
        let root = package(
            &dir.path().join(format!("allow-{allow_failed_jobs}")),
            tables.clone(),
            &[
                ("t.big.0.parquet".into(), big.clone()),
                ("t.good.0.parquet".into(), good.clone()),
            ],
        );
        let dataset = format!("parts_{allow_failed_jobs}");
        let options = LoaderOptions {
            dataset: Some(dataset.clone()),
            split_min_bytes: 1,
            parallel_jobs: 4,
            allow_failed_jobs,
            ..LoaderOptions::default()
        };
        let summary = Loader::new(Arc::clone(&postgres))
            .with_options(options)
            .load(PackageLocation::parse(&root.to_string_lossy()).expect("location"))
            .await
            .expect("load");
        let expected = if allow_failed_jobs {
            PackageStatus::LoadedWithFailedJobs
        } else {
            PackageStatus::Pending
        };
        assert_eq!(summary.status, expected, "{summary:?}");
        let failed: Vec<_> = summary.failed_jobs().collect();
        assert_eq!(failed.len(), 1, "{summary:?}");
        assert!(failed[0].file.contains("t.big"), "{summary:?}");
        let kept = rows(postgres.as_ref(), &dataset, "t", &["id"]).await;
        assert!(
            kept == [r#"{"id":-1}"#, r#"{"id":-2}"#],
            "allow_failed_jobs={allow_failed_jobs}: only the good job's 2 rows, not {}",
            kept.len()
        );
        let journal = rows(postgres.as_ref(), &dataset, "_berth_journal", &["job_id"]).await;
        assert!(
            journal.iter().all(|j| !j.contains("big")),
            "the failed job's parts are not journaled: {journal:?}"
        );
    }
}

/// The journal decides what is loaded, so a row of it berth cannot read (a negative row count,
/// an empty row-group range, an empty job id) stops the load with a bug-kind error instead of
/// being read as "nothing" or "the whole file".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_journal_row_stops_the_load() {
    use berth::destination::{Error as DestinationError, ErrorKind};
    let cluster = PgCluster::start();
    let postgres: Arc<dyn Destination> =
        Arc::new(berth::postgres::PostgresDestination::from_url(&cluster.database_url("journal")).expect("postgres"));
    let dir = tempfile::tempdir().expect("tempdir");
    let tables = json!({"t": table("t", &[column("id", "bigint", false)])});
    let job = (
        "t.one.0.parquet".to_string(),
        parquet(vec![("id", Arc::new(Int64Array::from(vec![1])) as ArrayRef)]),
    );
    // A first package creates the dataset and its journal.
    let first = package(&dir.path().join("first"), tables.clone(), std::slice::from_ref(&job));
    assert_eq!(load(&postgres, &first, "journal").await.status, PackageStatus::Loaded);
    let rows = ["'t.one', 0, NULL, -5", "'t.one', 3, 2, 10", "'', 0, NULL, 10"];
    for (n, row) in rows.iter().enumerate() {
        let load_id = format!("1795400001.{n}");
        cluster.psql(
            "journal",
            &format!("INSERT INTO journal._berth_journal VALUES ('{load_id}', {row}, now())"),
        );
        let root = dir.path().join(format!("bad-{n}"));
        let made = package(&root, tables.clone(), std::slice::from_ref(&job));
        let renamed = root.join(&load_id);
        std::fs::rename(&made, &renamed).expect("rename");
        let err = Loader::new(Arc::clone(&postgres))
            .with_options(LoaderOptions {
                dataset: Some("journal".into()),
                ..LoaderOptions::default()
            })
            .load(PackageLocation::parse(&renamed.to_string_lossy()).expect("location"))
            .await
            .expect_err("the load stops");
        assert_eq!(err.kind(), ErrorKind::Bug, "{row}: {err}");
        assert!(
            matches!(
                err,
                berth::loader::Error::Destination(DestinationError::MalformedJournal { .. })
            ),
            "{row}: {err}"
        );
    }
}
