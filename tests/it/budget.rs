//! `--memory-budget`: a load within its budget ends with every row (parts wait for room rather
//! than run together); a budget too small for a job, or for the embedded DuckDB, fails the load
//! before any row is loaded, as a configuration error.

use std::sync::Arc;

use berth::destination::Destination;
use berth::loader::{Loader, LoaderOptions, PackageStatus};
use berth::model::PackageLocation;
use berth_bench::synth::{Shape, SyntheticPackage};
use berth_tests::pg::PgCluster;
use berth_tests::table_rows;

const MIB: u64 = 1 << 20;

fn package(dir: &std::path::Path) -> PackageLocation {
    let path = SyntheticPackage::new(Shape::Narrow, 20_000)
        .with_row_group_rows(1_000)
        .write(dir)
        .expect("package");
    PackageLocation::parse(&path.to_string_lossy()).expect("location")
}

async fn load(
    destination: &Arc<dyn Destination>,
    location: PackageLocation,
    budget: u64,
) -> berth::loader::Result<PackageStatus> {
    let options = LoaderOptions {
        memory_budget: Some(budget),
        // Small files split into parts too: several parts compete for the budget.
        split_min_bytes: 1,
        parallel_jobs: 4,
        ..LoaderOptions::default()
    };
    let summary = Loader::new(Arc::clone(destination))
        .with_options(options)
        .load(location)
        .await?;
    Ok(summary.status)
}

async fn rows(destination: &dyn Destination) -> usize {
    table_rows(destination, "bench", "narrow", &["id"])
        .await
        .map_or(0, |(ids, _)| ids.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_memory_budget_loads_every_row_or_refuses_before_loading() {
    let cluster = PgCluster::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let postgres: Arc<dyn Destination> =
        Arc::new(berth::postgres::PostgresDestination::from_url(&cluster.database_url("budget")).expect("postgres"));
    let duckdb: Arc<dyn Destination> =
        Arc::new(berth::duckdb::DuckDbDestination::open(dir.path().join("budget.duckdb")).expect("duckdb"));
    // Room for about one part at a time besides what the process holds: every row, once.
    for (name, destination) in [("postgres", &postgres), ("duckdb", &duckdb)] {
        let work = dir.path().join(format!("{name}-fits"));
        let resident = berth::loader::budget::resident_now();
        let budget = resident + 96 * MIB + 3 * berth::loader::budget::PART_OVERHEAD;
        let status = load(destination, package(&work), budget).await.expect("load");
        assert_eq!(status, PackageStatus::Loaded, "{name}");
        assert_eq!(rows(destination.as_ref()).await, 20_000, "{name}");
        let drop = vec![berth::plan::sql::drop_schema_cascade(&destination.capabilities().dialect, "bench").into()];
        destination.execute(drop, false).await.expect("drop");
    }

    // Too small: a configuration error, and no row loaded.
    for (name, destination) in [("postgres", &postgres), ("duckdb", &duckdb)] {
        let work = dir.path().join(format!("{name}-small"));
        let resident = berth::loader::budget::resident_now();
        let error = load(destination, package(&work), resident + MIB)
            .await
            .expect_err("too small");
        assert!(
            matches!(
                error,
                berth::loader::Error::Destination(berth::destination::Error::Config { .. })
            ),
            "{name}: {error:?}"
        );
        assert_eq!(rows(destination.as_ref()).await, 0, "{name}: nothing loaded");
    }
}
