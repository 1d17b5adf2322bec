//! PostgreSQL passes the same conformance suite as DuckDB, on a throwaway cluster per test.

use std::sync::Arc;

use berth::destination::Destination;
use berth::loader::LoaderOptions;
use berth::model::ReplaceStrategy;
use berth::postgres::PostgresDestination;
use berth_tests::pg::PgCluster;
use berth_tests::{check_scenario, scenario_dir};

fn destination(cluster: &PgCluster, database: &str) -> Arc<dyn Destination> {
    Arc::new(PostgresDestination::from_url(&cluster.database_url(database)).expect("postgres url"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_fixtures_end_with_dlts_rows() {
    let cluster = PgCluster::start();
    for (index, scenario) in ["append_types", "replace", "schema_evolution"].iter().enumerate() {
        let dest = destination(&cluster, &format!("conformance_{index}"));
        if let Err(e) = check_scenario(dest, &scenario_dir("postgres", scenario), LoaderOptions::default()).await {
            panic!("postgres/{scenario}: {e}");
        }
    }
    let options = LoaderOptions {
        replace_strategy: Some(ReplaceStrategy::InsertFromStaging),
        ..LoaderOptions::default()
    };
    let dest = destination(&cluster, "conformance_staging");
    if let Err(e) = check_scenario(dest, &scenario_dir("postgres", "replace"), options).await {
        panic!("postgres/replace insert-from-staging: {e}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duckdb_normalized_packages_load_into_postgres_too() {
    // insert_values escaping and types differ per destination; berth parses them into Arrow.
    let cluster = PgCluster::start();
    let dest = destination(&cluster, "cross");
    if let Err(e) = check_scenario(dest, &scenario_dir("duckdb", "append_types"), LoaderOptions::default()).await {
        panic!("duckdb packages into postgres: {e}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_type_round_trips_with_edge_values() {
    let cluster = PgCluster::start();
    if let Err(e) = berth_tests::check_type_round_trip(destination(&cluster, "types")).await {
        panic!("postgres: {e}");
    }
}
