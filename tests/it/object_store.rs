//! Packages read straight from an object store (here the in-memory one), never modified there but
//! for the completion marker.

use std::sync::Arc;

use berth::model::PackageLocation;
use berth_tests::s3::upload_dir;
use berth_tests::{Scenario, check_scenario_tables, scenario_dir};
use object_store::ObjectStore;
use object_store::memory::InMemory;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loads_packages_from_an_object_store_without_touching_them() {
    let dir = scenario_dir("duckdb", "append_types");
    let scenario = Scenario::read(&dir);
    let store = Arc::new(InMemory::new());
    let mut locations = Vec::new();
    for package in &scenario.packages {
        let prefix = format!("bucket/{package}");
        upload_dir(store.as_ref(), &dir.join("packages").join(package), &prefix).await;
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

    let destination = berth_tests::load_all_into_duckdb(locations).await;

    check_scenario_tables(destination.as_ref(), &dir)
        .await
        .expect("the rows dlt loaded");
    let after = store
        .list(None)
        .map(|m| m.expect("listed").location.to_string())
        .collect::<Vec<_>>()
        .await;
    let before: Vec<String> = before.into_iter().map(|m| m.expect("listed").to_string()).collect();
    // The package stays as it was, but for its completion marker.
    let mut expected = before.clone();
    expected.extend(
        scenario
            .packages
            .iter()
            .map(|p| format!("bucket/{p}/package_completed.json")),
    );
    let (mut after, mut expected) = (after, expected);
    after.sort();
    expected.sort();
    assert_eq!(after, expected, "the object store package must stay as it was");
}

use futures::StreamExt;
