//! `--memory-budget`: a load within its budget ends with every row (parts wait for room rather
//! than run together); a budget too small for a job, or for the embedded DuckDB, fails the load
//! before any row is loaded, as a configuration error. Row groups too wide for DuckDB's own scan
//! within the bound are read by berth.

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

    row_groups_too_wide_for_duckdbs_scan_are_read_by_berth(dir.path()).await;
}

/// Row groups as wide as dlt writes them (1,048,576 rows: for 50 mixed columns about 450 MiB
/// decoded) would make DuckDB's own scan hold two of them. Where that exceeds what DuckDB's threads
/// may hold, berth reads the file page by page and streams it to DuckDB; every row arrives as
/// from a file of small row groups, which DuckDB still scans itself. (Part of the test above: a
/// budget is measured against the test process's memory, which concurrent loads would move.)
async fn row_groups_too_wide_for_duckdbs_scan_are_read_by_berth(dir: &std::path::Path) {
    const ROWS: u64 = 80_000;
    for (name, row_group_rows, read_by_berth) in [
        ("one-row-group", ROWS as usize, true),
        ("small-row-groups", 2_000, false),
    ] {
        // A database of its own: a budget's cap on DuckDB's memory stays with the destination.
        let duckdb: Arc<dyn Destination> =
            Arc::new(berth::duckdb::DuckDbDestination::open(dir.join(format!("{name}.duckdb"))).expect("duckdb"));
        let path = SyntheticPackage::new(Shape::Wide, ROWS)
            .with_row_group_rows(row_group_rows)
            .write(dir.join(name))
            .expect("package");
        // A budget that leaves DuckDB a small memory limit (about 88 MiB, at least 64 MiB if the
        // process grows meanwhile): its threads may hold at most 44 MiB of row groups, two of
        // them, so the single row group of 80,000 wide rows (about 35 MiB decoded) is too wide.
        // Small row groups load without a budget: DuckDB's scan of them needs more than 88 MiB.
        let budget = read_by_berth.then(|| {
            berth::loader::budget::resident_now()
                + 88 * MIB
                + berth::loader::budget::ENGINE_OVERHEAD
                + 2 * berth::loader::budget::ENGINE_PART
        });
        let options = LoaderOptions {
            memory_budget: budget,
            ..LoaderOptions::default()
        };
        let summary = Loader::new(Arc::clone(&duckdb))
            .with_options(options)
            .load(PackageLocation::parse(&path.to_string_lossy()).expect("location"))
            .await
            .expect("load");
        assert_eq!(summary.status, PackageStatus::Loaded, "{name}: {:?}", summary.jobs);
        // DuckDB's own scan reports no decoding of berth's; berth's reader does.
        assert_eq!(
            summary.phases.decode > std::time::Duration::ZERO,
            read_by_berth,
            "{name}"
        );
        let loaded = table_rows(duckdb.as_ref(), "bench", "wide", &["id"])
            .await
            .map_or(0, |(ids, _)| ids.len());
        assert_eq!(loaded, ROWS as usize, "{name}");
    }
}
