//! dlt's surface beyond the fixture matrix (`tests/conformance`): what a dlt user's packages hold
//! that the fixtures do not, and how berth names and decides things as dlt does.

use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Array, ListArray, StructArray};
use arrow::datatypes::{DataType, Field, Int64Type};
use berth::loader::{Loader, LoaderOptions, PackageStatus};
use berth::model::PackageLocation;
use berth_tests::{copy_tree, scenario_dir};
use serde_json::json;

use crate::hostile::{column, destinations, load, package, parquet, refused, rows, table};

/// pyarrow and arrow-rs write a `json` column of nested values as Arrow structs and lists: each
/// destination stores them as the JSON documents they are.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_columns_written_as_structs_and_lists_load_as_documents() {
    let d = destinations("nested_json");
    let dir = tempfile::tempdir().expect("tempdir");
    let ids: ArrayRef = Arc::new(Int64Array::from(vec![1, 2, 3]));
    let a: ArrayRef = Arc::new(Int64Array::from(vec![Some(7), None, Some(9)]));
    let structs: ArrayRef = Arc::new(StructArray::from(vec![(
        Arc::new(Field::new("a", DataType::Int64, true)),
        a,
    )]));
    let lists: ArrayRef = Arc::new(ListArray::from_iter_primitive::<Int64Type, _, _>(vec![
        Some(vec![Some(1), Some(2)]),
        Some(vec![]),
        None,
    ]));
    for (name, destination) in &d.both {
        let root = package(
            &dir.path().join(*name),
            json!({"docs": table("docs", &[column("id", "bigint", false), column("s", "json", true), column("l", "json", true)])}),
            &[(
                "docs.nested.0.parquet".into(),
                parquet(vec![
                    ("id", Arc::clone(&ids)),
                    ("s", Arc::clone(&structs)),
                    ("l", Arc::clone(&lists)),
                ]),
            )],
        );
        let summary = load(destination, &root, "nested").await;
        assert_eq!(summary.status, PackageStatus::Loaded, "{name}: {summary:?}");
        let loaded = rows(destination.as_ref(), "nested", "docs", &["id", "s", "l"]).await;
        assert_eq!(
            loaded,
            [
                r#"{"id":1,"l":[1,2],"s":{"a":7}}"#,
                r#"{"id":2,"l":[],"s":{"a":null}}"#,
                r#"{"id":3,"l":null,"s":{"a":9}}"#,
            ],
            "{name}"
        );
    }
}

/// The load id is the package's: a folder named otherwise is refused before anything is loaded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_folder_not_named_by_its_load_id_is_refused() {
    let d = destinations("load_ids");
    let dir = tempfile::tempdir().expect("tempdir");
    let ids: ArrayRef = Arc::new(Int64Array::from(vec![1]));
    let root = package(
        dir.path(),
        json!({"t": table("t", &[column("id", "bigint", false)])}),
        &[("t.x.0.parquet".into(), parquet(vec![("id", ids)]))],
    );
    let renamed = dir.path().join("pkgA");
    std::fs::rename(&root, &renamed).expect("rename");
    for (name, destination) in &d.both {
        let err = refused(destination, &renamed).await;
        assert!(
            matches!(err, berth::loader::Error::Package(berth::model::Error::LoadId { .. })),
            "{name}: {err}"
        );
        assert!(
            berth_tests::table_rows(destination.as_ref(), "load_ids", "t", &["id"])
                .await
                .is_err(),
            "{name}: nothing is created"
        );
    }
}

/// A package loaded into one destination is not "already loaded" into another: the target's
/// `_dlt_loads` decides, the `package_completed.json` marker only says it was loaded somewhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_completed_package_loads_into_a_destination_that_lacks_it() {
    let d = destinations("second_target");
    let dir = tempfile::tempdir().expect("tempdir");
    let scenario = scenario_dir("duckdb", "append_types");
    copy_tree(&scenario.join("packages"), dir.path()).expect("copy");
    let first = dir.path().join("0_1795379913.1787062");
    assert!(first.is_dir(), "fixture package");
    let mut counts = Vec::new();
    for (name, destination) in &d.both {
        let summary = Loader::new(Arc::clone(destination))
            .with_options(LoaderOptions::default())
            .load(PackageLocation::parse(&first.to_string_lossy()).expect("location"))
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(summary.status, PackageStatus::Loaded, "{name}: {summary:?}");
        assert!(first.join("package_completed.json").exists());
        counts.push(rows(destination.as_ref(), "fx", "users", &["_dlt_id"]).await.len());
    }
    assert!(counts[0] > 0 && counts[0] == counts[1], "{counts:?}");
}

/// A dataset named like its DuckDB database file (`fx` in `fx.duckdb`, as `dlt.pipeline("fx",
/// destination="duckdb")` makes by default) loads to dlt's rows: names carry the database, so
/// DuckDB does not find `fx.users` ambiguous between catalog `fx` and schema `fx`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dataset_named_like_its_duckdb_file_loads() {
    let dir = tempfile::tempdir().expect("tempdir");
    let duckdb: Arc<dyn berth::destination::Destination> =
        Arc::new(berth::duckdb::DuckDbDestination::open(dir.path().join("fx.duckdb")).expect("duckdb"));
    berth_tests::check_scenario(
        duckdb,
        &scenario_dir("duckdb", "merge_delete_insert"),
        LoaderOptions::default(),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
}

/// dlt loads Arrow tables without `_dlt_id` by default (`add_dlt_id = false`): an upsert of such
/// a root table without nested tables, into an empty table and then over it, keeps every key
/// once on PostgreSQL and DuckDB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upsert_of_a_root_without_dlt_id_loads_into_empty_and_existing_tables() {
    use berth_bench::synth::{Shape, SyntheticPackage};
    let d = destinations("upsert_no_dlt_id");
    let dir = tempfile::tempdir().expect("tempdir");
    let write = |load_id: &str, first_id: u64, rows: u64| {
        SyntheticPackage::new(Shape::Narrow, rows)
            .with_load_id(load_id)
            .with_first_id(first_id)
            .with_merge(berth::model::MergeStrategy::Upsert)
            .write(dir.path().join(load_id))
            .expect("package")
    };
    for (n, (name, destination)) in d.both.iter().enumerate() {
        let first = write(&format!("1800000005.{n}1"), 1, 1_000);
        let second = write(&format!("1800000005.{n}2"), 901, 200);
        for package in [&first, &second] {
            let summary = load(destination, package, "no_dlt_id").await;
            assert_eq!(summary.status, PackageStatus::Loaded, "{name}: {summary:?}");
        }
        let ids = rows(destination.as_ref(), "no_dlt_id", "narrow", &["id"]).await;
        assert_eq!(ids.len(), 1_100, "{name}: every key once");
    }
}
