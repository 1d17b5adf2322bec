//! DuckDB conformance beyond the fixture matrix (`tests/conformance`, every scenario in every
//! format): other loader options, the quickstart, and every type's edge values.

use std::sync::Arc;

use berth::destination::Destination;
use berth::duckdb::DuckDbDestination;
use berth::loader::LoaderOptions;
use berth::model::ReplaceStrategy;
use berth_tests::{check_scenario, scenario_dir, testdata};

fn duckdb_file(dir: &tempfile::TempDir) -> Arc<dyn Destination> {
    Arc::new(DuckDbDestination::open(dir.path().join("conformance.duckdb")).expect("open duckdb"))
}

async fn run(scenario: &std::path::Path, options: LoaderOptions) {
    let dir = tempfile::tempdir().expect("tempdir");
    if let Err(e) = check_scenario(duckdb_file(&dir), scenario, options).await {
        panic!("{}: {e}", scenario.display());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duckdb_replace_insert_from_staging() {
    let options = LoaderOptions {
        replace_strategy: Some(ReplaceStrategy::InsertFromStaging),
        ..LoaderOptions::default()
    };
    run(&scenario_dir("duckdb", "replace"), options).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duckdb_quickstart() {
    run(&testdata().join("quickstart"), LoaderOptions::default()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duckdb_sequential_jobs_give_the_same_rows() {
    let options = LoaderOptions {
        parallel_jobs: 1,
        ..LoaderOptions::default()
    };
    run(&scenario_dir("duckdb", "append_types"), options).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duckdb_refuses_staging_optimized_like_dlt() {
    let dir = tempfile::tempdir().expect("tempdir");
    let options = LoaderOptions {
        replace_strategy: Some(ReplaceStrategy::StagingOptimized),
        ..LoaderOptions::default()
    };
    let err = check_scenario(duckdb_file(&dir), &scenario_dir("duckdb", "replace"), options)
        .await
        .expect_err("duckdb has no staging-optimized replace");
    assert!(err.contains("staging-optimized") && err.contains("users"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duckdb_every_type_round_trips_with_edge_values() {
    let dir = tempfile::tempdir().expect("tempdir");
    if let Err(e) = berth_tests::check_type_round_trip(duckdb_file(&dir)).await {
        panic!("duckdb: {e}");
    }
}
