//! Concurrent loads of different packages into one PostgreSQL dataset, for every write
//! disposition: the result is that of some serial order of the same loads. Each package has the
//! same keys (a root table and its nested table), so without serialization merges duplicate
//! keys and child rows, and replaces keep the rows of two packages.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use berth::destination::Destination;
use berth::loader::{Loader, LoaderOptions, PackageStatus};
use berth::model::{MergeStrategy, PackageLocation, ReplaceStrategy};
use berth::postgres::PostgresDestination;
use berth_bench::synth::{Disposition, Shape, SyntheticPackage};
use berth_tests::pg::PgCluster;
use berth_tests::{copy_tree, query_text, table_rows};

/// Loads started together.
const WRITERS: u64 = 4;
/// Root rows per package; every package has keys 0..ROWS.
const ROWS: u64 = 3_000;

const ROOT: (&str, &[&str]) = ("nested", &["id", "ts", "name", "_dlt_id"]);
const CHILD: (&str, &[&str]) = (
    "nested__items",
    &[
        "value",
        "qty",
        "_dlt_root_id",
        "_dlt_parent_id",
        "_dlt_list_idx",
        "_dlt_id",
    ],
);

fn loader(url: &str, dataset: &str, disposition: Disposition) -> Loader {
    let destination: Arc<dyn Destination> = Arc::new(PostgresDestination::from_url(url).expect("url"));
    let replace_strategy = match disposition {
        Disposition::Replace(strategy) => Some(strategy),
        _ => None,
    };
    Loader::new(destination).with_options(LoaderOptions {
        dataset: Some(dataset.into()),
        replace_strategy,
        retry_backoff: std::time::Duration::from_millis(20),
        ..LoaderOptions::default()
    })
}

/// The rows of the root and the nested table.
async fn contents(url: &str, dataset: &str) -> Vec<Vec<String>> {
    let pg = PostgresDestination::from_url(url).expect("url");
    let mut tables = Vec::new();
    for (table, columns) in [ROOT, CHILD] {
        let (rows, _) = table_rows(&pg, dataset, table, columns).await.expect("rows");
        tables.push(rows);
    }
    tables
}

/// The load ids of `dataset`'s `_dlt_loads`, in commit order.
async fn commit_order(url: &str, dataset: &str) -> Vec<String> {
    let pg = PostgresDestination::from_url(url).expect("url");
    let sql = format!("SELECT load_id FROM {dataset}._dlt_loads ORDER BY inserted_at, load_id");
    query_text(&pg, &sql)
        .await
        .expect("_dlt_loads")
        .into_iter()
        .map(|row| row[0].clone().expect("load id"))
        .collect()
}

/// `WRITERS` packages of `disposition` with the same keys, in `dir`.
fn packages(dir: &Path, disposition: Disposition) -> Vec<PathBuf> {
    (0..WRITERS)
        .map(|i| {
            SyntheticPackage::new(Shape::Nested, ROWS)
                .with_load_id(format!("18000000{i:02}.000001"))
                .with_seed(i)
                .with_row_group_rows(500)
                .with_disposition(disposition)
                .write(dir)
                .expect("package")
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_loads_into_one_dataset_equal_a_serial_run_for_every_disposition() {
    let cluster = PgCluster::start();
    let work = tempfile::tempdir().expect("tempdir");
    let url = cluster.database_url("concurrent");
    let dispositions = [
        Disposition::Append,
        Disposition::Replace(ReplaceStrategy::TruncateAndInsert),
        Disposition::Replace(ReplaceStrategy::InsertFromStaging),
        Disposition::Replace(ReplaceStrategy::StagingOptimized),
        Disposition::Merge(MergeStrategy::DeleteInsert),
        Disposition::Merge(MergeStrategy::Upsert),
        Disposition::Merge(MergeStrategy::InsertOnly),
    ];
    for (n, disposition) in dispositions.into_iter().enumerate() {
        let label = disposition.to_string();
        let dir = work.path().join(format!("d{n}"));
        let together = packages(&dir.join("together"), disposition);
        let copies = dir.join("copies");
        copy_tree(&dir.join("together"), &copies).expect("copy");

        let dataset = format!("together_{n}");
        let mut loads = Vec::new();
        for package in &together {
            let loader = loader(&url, &dataset, disposition);
            let location = PackageLocation::local(package).expect("location");
            loads.push(berth::model::task::spawn_owned(
                async move { loader.load(location).await },
            ));
        }
        for load in loads {
            let summary = load.await.expect("task").unwrap_or_else(|e| panic!("{label}: {e}"));
            assert_eq!(summary.status, PackageStatus::Loaded, "{label}: {summary:?}");
        }
        let result = contents(&url, &dataset).await;

        // The same packages one after another, in the order the concurrent loads committed.
        let order = commit_order(&url, &dataset).await;
        assert_eq!(order.len(), together.len(), "{label}: every package committed once");
        let serial_dataset = format!("serial_{n}");
        for load_id in &order {
            let location = PackageLocation::local(&copies.join(load_id)).expect("location");
            let summary = loader(&url, &serial_dataset, disposition)
                .load(location)
                .await
                .expect("serial");
            assert_eq!(summary.status, PackageStatus::Loaded, "{label}: {summary:?}");
        }
        let serial = contents(&url, &serial_dataset).await;
        assert!(
            result == serial,
            "{label}: the concurrent loads' result is not the serial run's: {} and {} root rows ({} keys), {} and {} nested rows",
            result[0].len(),
            serial[0].len(),
            ROWS,
            result[1].len(),
            serial[1].len()
        );
    }
}
