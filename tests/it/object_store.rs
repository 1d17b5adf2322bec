//! Packages read straight from an object store (here the in-memory one), never modified there.

use std::sync::Arc;

use berth::destination::Destination;
use berth::duckdb::DuckDbDestination;
use berth::loader::{Loader, PackageStatus};
use berth::model::PackageLocation;
use berth_tests::{Scenario, diff_rows, expected_rows, scenario_dir, table_rows};
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};

async fn upload(store: &InMemory, dir: &std::path::Path, prefix: &str) {
    for entry in walk(dir) {
        let relative = entry.strip_prefix(dir).expect("inside").to_string_lossy().to_string();
        let bytes = std::fs::read(&entry).expect("read fixture");
        store
            .put(&Path::from(format!("{prefix}/{relative}")), bytes.into())
            .await
            .expect("put");
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read_dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loads_packages_from_an_object_store_without_touching_them() {
    let dir = scenario_dir("duckdb", "append_types");
    let scenario = Scenario::read(&dir);
    let store = Arc::new(InMemory::new());
    let mut locations = Vec::new();
    for package in &scenario.packages {
        let prefix = format!("bucket/{package}");
        upload(&store, &dir.join("packages").join(package), &prefix).await;
        locations.push(PackageLocation::from_store(
            Arc::clone(&store) as Arc<dyn ObjectStore>,
            prefix.as_str(),
            format!("memory:///{prefix}"),
        ));
    }
    let before = store
        .list(None)
        .map(|m| m.map(|m| m.location))
        .collect::<Vec<_>>()
        .await;

    let destination: Arc<dyn Destination> = Arc::new(DuckDbDestination::in_memory().expect("duckdb"));
    let summary = Loader::new(Arc::clone(&destination))
        .load_all(locations)
        .await
        .expect("load");
    assert!(summary.all_loaded(), "{summary:?}");
    assert!(summary.packages.iter().all(|p| p.status == PackageStatus::Loaded));

    for (table, columns) in &scenario.tables {
        let columns: Vec<&str> = columns.iter().map(String::as_str).collect();
        let (actual, types) = table_rows(destination.as_ref(), &scenario.dataset, table, &columns)
            .await
            .expect("rows");
        let expected = expected_rows(&dir.join("expected").join(format!("{table}.jsonl")), &types);
        diff_rows(table, &actual, &expected).expect("same rows as dlt");
    }
    let after = store
        .list(None)
        .map(|m| m.map(|m| m.location))
        .collect::<Vec<_>>()
        .await;
    assert_eq!(
        before.len(),
        after.len(),
        "the object store package must stay as it was"
    );
}

use futures::StreamExt;
