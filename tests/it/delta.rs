//! The Delta lake in a bucket: packages and the lake both in S3 (the loopback S3 server), and two
//! writers loading into one lake table at once.

use std::path::Path;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema};
use berth::loader::resolve_locations;
use berth::model::{LoadPackage, PackageLocation};
use berth_bench::synth::{Shape, SyntheticPackage};
use berth_tests::s3::S3Server;
use berth_tests::scenario_dir;
use futures::TryStreamExt;
use object_store::{ObjectStore, ObjectStoreExt};

const PACKAGES: &str = "packages";
const LAKE: &str = "lake";

/// Copies every object under `prefix` of `bucket` into `to`, as files.
async fn download(server: &S3Server, bucket: &str, prefix: &str, to: &Path) {
    let client = server.client(bucket);
    let objects: Vec<_> = client
        .list(Some(&prefix.into()))
        .try_collect()
        .await
        .expect("list the lake");
    for object in objects {
        let key = object.location.to_string();
        let relative = key.strip_prefix(prefix).unwrap_or(&key).trim_start_matches('/');
        let path = to.join(relative);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        let bytes = client
            .get(&object.location)
            .await
            .expect("get")
            .bytes()
            .await
            .expect("body");
        std::fs::write(path, bytes).expect("write");
    }
}

fn open(url: &str, server: &S3Server) -> berth::loader::Loader {
    let options = berth::OpenOptions {
        storage: server.storage_config(),
        ..berth::OpenOptions::default()
    };
    berth::open_loader(url, &options).expect("open the lake")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lake_in_s3_loaded_from_packages_in_s3_ends_with_dlt_s_rows() {
    let server = S3Server::start(&[PACKAGES, LAKE]);
    for scenario in ["merge_upsert", "replace", "merge_delete_insert"] {
        let dir = scenario_dir("duckdb", scenario);
        server.upload_dir(&dir.join("packages"), PACKAGES, scenario).await;
        let locations = resolve_locations(&[format!("s3://{PACKAGES}/{scenario}")], &server.storage_config())
            .await
            .expect("list the packages");
        let summary = open(&format!("delta:s3://{LAKE}/{scenario}"), &server)
            .load_all(locations)
            .await
            .expect("load into the lake");
        assert!(summary.all_loaded(), "{scenario}: {summary:?}");
        let local = tempfile::tempdir().expect("tempdir");
        download(&server, LAKE, scenario, local.path()).await;
        berth_tests::delta::check_lake(&dir, local.path())
            .await
            .unwrap_or_else(|e| panic!("{scenario}: {e}"));
    }
}

/// The `id`s of the narrow table of a lake in S3, sorted.
async fn ids(server: &S3Server, prefix: &str, package: &Path) -> Vec<i64> {
    let local = tempfile::tempdir().expect("tempdir");
    download(server, LAKE, prefix, local.path()).await;
    let package = LoadPackage::open(PackageLocation::parse(&package.to_string_lossy()).expect("location"))
        .await
        .expect("package");
    let table = package.schema.data_tables().next().expect("a data table").name.clone();
    let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, true)]));
    let dataset = package.dataset_name(None);
    let rows = berth_tests::delta::table_rows(&local.path().join(&dataset).join(&table), &schema, &["id".to_string()])
        .expect("read the table");
    let mut ids: Vec<i64> = rows
        .iter()
        .map(|row| {
            serde_json::from_str::<serde_json::Value>(row).expect("row")["id"]
                .as_i64()
                .expect("id")
        })
        .collect();
    ids.sort_unstable();
    ids
}

/// Two writers, as two processes would be (their own executors, nothing shared), load packages
/// into the same table of a lake in S3 at once: appends both land (Delta's optimistic
/// concurrency retries the commit that lost the race), and upserts of overlapping keys are
/// serialized by the table lease, so every key is there exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_writers_into_one_lake_table_lose_and_double_nothing() {
    let server = S3Server::start(&[PACKAGES, LAKE]);
    let local = tempfile::tempdir().expect("tempdir");
    let write = |load_id: &str, first_id: u64, merge: bool| {
        let mut package = SyntheticPackage::new(Shape::Narrow, 20_000)
            .with_row_group_rows(5_000)
            .with_load_id(load_id)
            .with_first_id(first_id)
            .with_seed(first_id);
        if merge {
            package = package.with_merge(berth::model::MergeStrategy::Upsert);
        }
        package.write(local.path()).expect("package")
    };
    let race = |first: std::path::PathBuf, second: std::path::PathBuf, prefix: &'static str| {
        let server = &server;
        async move {
            let url = format!("delta:s3://{LAKE}/{prefix}");
            let load = |package: std::path::PathBuf| {
                let loader = open(&url, server);
                async move {
                    let location = PackageLocation::parse(&package.to_string_lossy()).expect("location");
                    loader.load(location).await.expect("load")
                }
            };
            let (a, b) = tokio::join!(load(first), load(second));
            assert!(a.status == berth::loader::PackageStatus::Loaded, "{a:?}");
            assert!(b.status == berth::loader::PackageStatus::Loaded, "{b:?}");
        }
    };

    // Appends of disjoint ids: both land, whole.
    let one = write("1800000001.1", 1, false);
    let two = write("1800000001.2", 100_001, false);
    race(one.clone(), two, "appends").await;
    let expected: Vec<i64> = (1..=20_000).chain(100_001..=120_000).collect();
    assert_eq!(ids(&server, "appends", &one).await, expected, "every row once");

    // Upserts of overlapping ids: one after the other, every key once.
    let one = write("1800000002.1", 1, true);
    let two = write("1800000002.2", 10_001, true);
    race(one.clone(), two, "upserts").await;
    let expected: Vec<i64> = (1..=30_000).collect();
    assert_eq!(ids(&server, "upserts", &one).await, expected, "every key exactly once");
}
