//! Type widening (`--widen-types`) on PostgreSQL and DuckDB: a later package whose columns are
//! wider than the table's (more integer bits, an integer become a decimal, more decimal digits
//! and scale, a longer varchar, more fractional second digits) widens the table along the
//! lattice and loads its rows; without the flag the table keeps dlt's behaviour, and a type off
//! the lattice stays an error naming the column with the destination unchanged.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{ArrayRef, Decimal128Array, Int64Array, StringArray, TimestampMicrosecondArray};
use berth::destination::{Destination, Error as DestinationError};
use berth::loader::{Loader, LoaderOptions, PackageStatus, PackageSummary};
use berth::model::PackageLocation;
use berth_tests::query_text;
use serde_json::{Value, json};

use crate::hostile::{destinations, rows};

fn column(name: &str, data_type: &str, precision: Option<u32>, scale: Option<u32>) -> Value {
    let mut c = json!({"name": name, "data_type": data_type, "nullable": true, "timezone": false});
    if let Some(p) = precision {
        c["precision"] = json!(p);
    }
    if let Some(s) = scale {
        c["scale"] = json!(s);
    }
    c
}

/// A package `load_id` holding table `t` with `columns` and one Parquet job of `data`.
fn package(dir: &Path, load_id: &str, columns: &[Value], data: Vec<(&str, ArrayRef)>) -> PathBuf {
    let root = dir.join(load_id);
    std::fs::create_dir_all(root.join("new_jobs")).expect("mkdir");
    let columns: serde_json::Map<String, Value> = columns
        .iter()
        .map(|c| (c["name"].as_str().expect("name").to_string(), c.clone()))
        .collect();
    let schema = json!({
        "name": "widen", "version": 1, "version_hash": format!("widen-{load_id}"), "engine_version": 11,
        "tables": {"t": {"name": "t", "write_disposition": "append", "resource": "t", "columns": columns}},
    });
    std::fs::write(root.join("schema.json"), schema.to_string()).expect("schema");
    std::fs::write(
        root.join("new_jobs").join("t.1.0.parquet"),
        berth_tests::parquet_bytes(data, 1 << 20),
    )
    .expect("job");
    root
}

fn narrow_columns() -> Vec<Value> {
    vec![
        column("id", "bigint", Some(32), None),
        column("small", "bigint", Some(16), None),
        column("code", "bigint", None, None),
        column("amount", "decimal", Some(10), Some(2)),
        column("name", "text", Some(10), None),
        column("at", "timestamp", Some(3), None),
    ]
}

fn wide_columns() -> Vec<Value> {
    vec![
        column("id", "bigint", None, None),
        column("small", "bigint", Some(32), None),
        column("code", "decimal", Some(30), Some(0)),
        column("amount", "decimal", Some(14), Some(4)),
        column("name", "text", Some(40), None),
        column("at", "timestamp", Some(6), None),
    ]
}

fn narrow_package(dir: &Path) -> PathBuf {
    package(
        dir,
        "1795500000.0000001",
        &narrow_columns(),
        vec![
            ("id", Arc::new(Int64Array::from(vec![1])) as ArrayRef),
            ("small", Arc::new(Int64Array::from(vec![7]))),
            ("code", Arc::new(Int64Array::from(vec![42]))),
            (
                "amount",
                Arc::new(
                    Decimal128Array::from(vec![12_345])
                        .with_precision_and_scale(10, 2)
                        .expect("decimal"),
                ),
            ),
            ("name", Arc::new(StringArray::from(vec!["short"]))),
            (
                "at",
                Arc::new(TimestampMicrosecondArray::from(vec![1_700_000_000_123_000])),
            ),
        ],
    )
}

/// Values that fit only the wide types.
fn wide_package(dir: &Path) -> PathBuf {
    package(
        dir,
        "1795500000.0000002",
        &wide_columns(),
        vec![
            ("id", Arc::new(Int64Array::from(vec![5_000_000_000])) as ArrayRef),
            ("small", Arc::new(Int64Array::from(vec![100_000]))),
            (
                "code",
                Arc::new(
                    Decimal128Array::from(vec![10_i128.pow(25)])
                        .with_precision_and_scale(30, 0)
                        .expect("decimal"),
                ),
            ),
            (
                "amount",
                Arc::new(
                    Decimal128Array::from(vec![12_345_678_901_234])
                        .with_precision_and_scale(14, 4)
                        .expect("decimal"),
                ),
            ),
            (
                "name",
                Arc::new(StringArray::from(vec!["a name of forty characters, exactly ok!"])),
            ),
            (
                "at",
                Arc::new(TimestampMicrosecondArray::from(vec![1_700_000_000_123_456])),
            ),
        ],
    )
}

async fn load(
    destination: &Arc<dyn Destination>,
    package: &Path,
    dataset: &str,
    widen: bool,
) -> Result<PackageSummary, berth::loader::Error> {
    let options = LoaderOptions {
        dataset: Some(dataset.to_string()),
        widen_types: widen,
        ..LoaderOptions::default()
    };
    Loader::new(Arc::clone(destination))
        .with_options(options)
        .load(PackageLocation::parse(&package.to_string_lossy()).expect("location"))
        .await
}

/// The catalog's description of `dataset.t`'s columns: type and sizes, in column order.
async fn column_types(destination: &dyn Destination, dataset: &str) -> Vec<Vec<Option<String>>> {
    query_text(
        destination,
        &format!(
            "SELECT column_name, data_type, character_maximum_length, numeric_precision, numeric_scale, \
             datetime_precision FROM information_schema.columns WHERE table_schema = '{dataset}' AND \
             table_name = 't' AND column_name NOT LIKE '\\_dlt%' ESCAPE '\\' ORDER BY column_name"
        ),
    )
    .await
    .expect("catalog")
}

const COLUMNS: [&str; 6] = ["id", "small", "code", "amount", "name", "at"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wider_columns_are_altered_along_the_lattice_with_widen_types() {
    let destinations = destinations("widen");
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, destination) in &destinations.both {
        let narrow = narrow_package(&dir.path().join(name));
        let wide = wide_package(&dir.path().join(name));
        let summary = load(destination, &narrow, "ds", false).await.expect("narrow loads");
        assert_eq!(summary.status, PackageStatus::Loaded, "{name}: {summary:?}");
        let before = column_types(destination.as_ref(), "ds").await;

        // dlt's behaviour: an integer column never becomes a decimal. Refused before any row.
        let error = load(destination, &wide, "ds", false)
            .await
            .expect_err("refused without --widen-types");
        assert!(
            matches!(&error, berth::loader::Error::Destination(DestinationError::SchemaMismatch { column, .. }) if column == "code"),
            "{name}: {error}"
        );
        assert_eq!(
            column_types(destination.as_ref(), "ds").await,
            before,
            "{name}: unchanged"
        );

        let summary = load(destination, &wide, "ds", true)
            .await
            .expect("the wide package loads");
        assert_eq!(summary.status, PackageStatus::Loaded, "{name}: {summary:?}");
        let mut widened = summary.migration.widened_columns.clone();
        widened.sort();
        // DuckDB's VARCHAR has no length: the name needs no ALTER there.
        let expected: Vec<&str> = match *name {
            "duckdb" => vec!["ds.t.amount", "ds.t.at", "ds.t.code", "ds.t.id", "ds.t.small"],
            _ => vec![
                "ds.t.amount",
                "ds.t.at",
                "ds.t.code",
                "ds.t.id",
                "ds.t.name",
                "ds.t.small",
            ],
        };
        assert_eq!(widened, expected, "{name}");

        // The widened table has exactly the types berth creates for the wide package.
        let fresh = wide_package(&dir.path().join(format!("{name}-fresh")));
        load(destination, &fresh, "fresh", false).await.expect("fresh load");
        assert_eq!(
            column_types(destination.as_ref(), "ds").await,
            column_types(destination.as_ref(), "fresh").await,
            "{name}: widened types"
        );
        let rows = rows(destination.as_ref(), "ds", "t", &COLUMNS).await;
        assert_eq!(rows.len(), 2, "{name}: {rows:?}");
        let all = rows.join("\n");
        for value in [
            "5000000000",
            "100000",
            "10000000000000000000000000",
            "1234567890.1234",
            "forty characters",
            ".123456",
        ] {
            assert!(all.contains(value), "{name}: {value} in {all}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_type_off_the_lattice_stays_an_error_with_widen_types() {
    let destinations = destinations("offlattice");
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, destination) in &destinations.both {
        let narrow = narrow_package(&dir.path().join(name));
        load(destination, &narrow, "ds", true).await.expect("narrow loads");
        let before = column_types(destination.as_ref(), "ds").await;
        let mut columns = narrow_columns();
        // text → bigint, and a decimal that would lose integer digits for scale.
        columns[4] = column("name", "bigint", None, None);
        let bad = package(
            &dir.path().join(format!("{name}-bad")),
            "1795500000.0000003",
            &columns,
            vec![("id", Arc::new(Int64Array::from(vec![2])) as ArrayRef)],
        );
        let error = load(destination, &bad, "ds", true).await.expect_err("refused");
        assert!(
            matches!(&error, berth::loader::Error::Destination(DestinationError::SchemaMismatch { column, .. }) if column == "name"),
            "{name}: {error}"
        );
        columns[4] = column("name", "text", Some(10), None);
        columns[3] = column("amount", "decimal", Some(10), Some(4));
        let lossy = package(
            &dir.path().join(format!("{name}-lossy")),
            "1795500000.0000004",
            &columns,
            vec![("id", Arc::new(Int64Array::from(vec![3])) as ArrayRef)],
        );
        let error = load(destination, &lossy, "ds", true).await.expect_err("refused");
        assert!(
            matches!(&error, berth::loader::Error::Destination(DestinationError::SchemaMismatch { column, .. }) if column == "amount"),
            "{name}: {error}"
        );
        assert_eq!(
            column_types(destination.as_ref(), "ds").await,
            before,
            "{name}: unchanged"
        );
        assert_eq!(rows(destination.as_ref(), "ds", "t", &["id"]).await.len(), 1, "{name}");
    }
}

/// Without widening, a value the column cannot hold fails its job with an error that names the
/// column and the value, and leaves the table as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_that_does_not_fit_names_its_column_and_value() {
    let destinations = destinations("nofit");
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, destination) in &destinations.both {
        let narrow = narrow_package(&dir.path().join(name));
        load(destination, &narrow, "ds", false).await.expect("narrow loads");
        let too_big = package(
            &dir.path().join(format!("{name}-big")),
            "1795500000.0000005",
            &narrow_columns(),
            vec![("id", Arc::new(Int64Array::from(vec![5_000_000_000])) as ArrayRef)],
        );
        let summary = load(destination, &too_big, "ds", false)
            .await
            .expect("the package opens");
        assert_eq!(summary.status, PackageStatus::Pending, "{name}: {summary:?}");
        let failed: Vec<_> = summary.failed_jobs().collect();
        assert_eq!(failed.len(), 1, "{name}: {summary:?}");
        let error = failed[0].error.clone().unwrap_or_default();
        assert!(error.contains("5000000000") && error.contains("id"), "{name}: {error}");
        assert_eq!(rows(destination.as_ref(), "ds", "t", &["id"]).await.len(), 1, "{name}");
    }
}
