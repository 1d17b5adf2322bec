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
    download_from(&server.client(bucket), prefix, to).await;
}

/// Copies every object under `prefix` of `store` into `to`, as files.
async fn download_from(store: &dyn ObjectStore, prefix: &str, to: &Path) {
    let objects: Vec<_> = store
        .list(Some(&prefix.into()))
        .try_collect()
        .await
        .expect("list the lake");
    for object in objects {
        let key = object.location.to_string();
        let relative = key.strip_prefix(prefix).unwrap_or(&key).trim_start_matches('/');
        let path = to.join(relative);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        let bytes = store
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

/// A lake in Azure Blob Storage (Azurite): dlt's rows after a merge, a replace and a
/// delete-insert, and a second load of the same packages changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lake_in_azure_blob_storage_ends_with_dlt_s_rows() {
    let azurite = berth_tests::azurite::Azurite::start(&[LAKE]);
    let options = berth::OpenOptions {
        storage: azurite.storage_config(),
        ..berth::OpenOptions::default()
    };
    for scenario in ["merge_upsert", "replace", "merge_delete_insert"] {
        let dir = scenario_dir("duckdb", scenario);
        let work = tempfile::tempdir().expect("tempdir");
        berth_tests::copy_tree(&dir.join("packages"), work.path()).expect("copy");
        let url = format!("delta:az://{LAKE}/{scenario}");
        let locations = resolve_locations(&[work.path().to_string_lossy().to_string()], &options.storage)
            .await
            .expect("list the packages");
        let summary = berth::open_loader(&url, &options)
            .expect("open the lake")
            .load_all(locations.clone())
            .await
            .expect("load into the lake");
        assert!(summary.all_loaded(), "{scenario}: {summary:?}");
        let lake = berth::delta::Lake::open(&format!("az://{LAKE}/{scenario}"), &options.storage).expect("lake");
        let local = tempfile::tempdir().expect("tempdir");
        download_from(lake.store().as_ref(), lake.path(&[]).as_ref(), local.path()).await;
        berth_tests::delta::check_lake(&dir, local.path())
            .await
            .unwrap_or_else(|e| panic!("{scenario}: {e}"));
        let again = berth::open_loader(&url, &options)
            .expect("open the lake")
            .load_all(locations)
            .await
            .expect("load again");
        assert!(
            again
                .packages
                .iter()
                .all(|p| p.status == berth::loader::PackageStatus::AlreadyLoaded),
            "{scenario}: {again:?}"
        );
    }
}

/// The `id`s of the narrow table of a lake in S3, sorted.
async fn ids(server: &S3Server, prefix: &str, package: &Path) -> Vec<i64> {
    let local = tempfile::tempdir().expect("tempdir");
    download(server, LAKE, prefix, local.path()).await;
    local_ids(local.path(), package).await
}

/// The `id`s of the table `package` loads, in the lake at `root`, sorted.
async fn local_ids(root: &Path, package: &Path) -> Vec<i64> {
    let package = LoadPackage::open(PackageLocation::parse(&package.to_string_lossy()).expect("location"))
        .await
        .expect("package");
    let table = package.schema.data_tables().next().expect("a data table").name.clone();
    let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, true)]));
    let dataset = package.dataset_name(None);
    let rows = berth_tests::delta::table_rows(&root.join(&dataset).join(&table), &schema, &["id".to_string()])
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

/// Many small appends leave a file each; compacting merges them into one commit of one file
/// without changing a row or the journal: the packages stay loaded, and an upsert after it finds
/// its keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compacting_a_lake_table_merges_small_files_and_keeps_rows_and_journal() {
    let work = tempfile::tempdir().expect("tempdir");
    let root = work.path().join("lake");
    let url = format!("delta:{}", root.display());
    let write = |load_id: &str, first_id: u64, merge: bool| {
        let mut package = SyntheticPackage::new(Shape::Narrow, 2_000)
            .with_load_id(load_id)
            .with_first_id(first_id)
            .with_seed(first_id);
        if merge {
            package = package.with_merge(berth::model::MergeStrategy::Upsert);
        }
        package.write(work.path().join("packages")).expect("package")
    };
    let load = |package: &Path| {
        let loader = berth::open_loader(&url, &berth::OpenOptions::default()).expect("open the lake");
        let location = PackageLocation::parse(&package.to_string_lossy()).expect("location");
        async move { loader.load(location).await.expect("load").status }
    };
    let packages: Vec<_> = (0..6u64)
        .map(|i| write(&format!("1800000003.{i}"), 1 + i * 2_000, false))
        .collect();
    for package in &packages {
        assert_eq!(load(package).await, berth::loader::PackageStatus::Loaded);
    }
    let package = LoadPackage::open(PackageLocation::parse(&packages[0].to_string_lossy()).expect("location"))
        .await
        .expect("package");
    let dataset = package.dataset_name(None);
    let table_dir = root.join(&dataset).join("narrow");
    let (before, journal_before) = berth_tests::delta::live_files(&table_dir).expect("log");
    assert!(before.len() >= 6, "a file per append at least: {before:?}");

    let lake = berth::delta::DeltaExecutor::from_url(&url, &Default::default()).expect("lake");
    let options = berth::delta::CompactOptions {
        dataset: dataset.clone(),
        tables: Vec::new(),
        target_file_size: 128 << 20,
    };
    let compacted = lake.compact(&options).await.expect("compact");
    assert_eq!(compacted.len(), 1, "the dataset's one table: {compacted:?}");
    assert_eq!(compacted[0].table, "narrow");
    assert_eq!(compacted[0].files_removed, before.len() as u64);
    assert_eq!((compacted[0].files_added, compacted[0].files_after), (1, 1));
    let (after, journal_after) = berth_tests::delta::live_files(&table_dir).expect("log");
    assert_eq!(after.len(), 1);
    assert_eq!(journal_after, journal_before, "the journal stays");
    assert_eq!(local_ids(&root, &packages[0]).await, (1..=12_000).collect::<Vec<_>>());

    // Nothing left to merge: no commit.
    let again = lake.compact(&options).await.expect("compact again");
    assert_eq!((again[0].files_removed, again[0].version), (0, compacted[0].version));

    // The packages are still loaded; an upsert over the compacted file finds its keys.
    assert_eq!(load(&packages[0]).await, berth::loader::PackageStatus::AlreadyLoaded);
    let upsert = write("1800000003.9", 11_001, true);
    assert_eq!(load(&upsert).await, berth::loader::PackageStatus::Loaded);
    assert_eq!(local_ids(&root, &upsert).await, (1..=13_000).collect::<Vec<_>>());

    // A table that is not there is a configuration error naming it.
    let missing = berth::delta::CompactOptions {
        tables: vec!["nope".into()],
        ..options
    };
    let error = lake.compact(&missing).await.expect_err("no such table");
    assert!(matches!(error, berth::destination::Error::Config { .. }), "{error:?}");
}

/// `berth plan` for a lake is the program the load runs: the follow-up of a delete-insert with
/// nested tables shows one commit per table (the delete and the insert together), and loading
/// the package lands exactly those commits, with the transactions the plan names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lake_plan_names_the_commits_the_load_makes() {
    use berth::loader::explain::{ExplainOptions, Step};
    let dir = scenario_dir("duckdb", "merge_delete_insert");
    let work = tempfile::tempdir().expect("tempdir");
    berth_tests::copy_tree(&dir.join("packages"), work.path()).expect("copy");
    let mut packages: Vec<_> = std::fs::read_dir(work.path())
        .expect("packages")
        .map(|e| e.expect("entry").path())
        .collect();
    packages.sort();
    let open = |path: &Path| PackageLocation::parse(&path.to_string_lossy()).expect("location");
    let last = LoadPackage::open(open(&packages[1])).await.expect("package");
    let dataset = last.dataset_name(None);
    let options = ExplainOptions {
        plan: berth::plan::PlanOptions {
            dataset: dataset.clone(),
            replace_strategy: berth::model::ReplaceStrategy::StagingOptimized,
            widen_types: false,
        },
        assume_empty: false,
        jobs: None,
    };
    let phases = berth::delta::plan::explain(&last, &options).await.expect("plan");
    let followup = phases
        .iter()
        .find(|p| p.title.starts_with("follow-up of `users`"))
        .expect("a follow-up phase");
    let notes: Vec<&str> = followup
        .steps
        .iter()
        .filter_map(|s| match s {
            Step::Note(n) => Some(n.as_str()),
            Step::Sql(_) => None,
        })
        .collect();
    let txn = format!("berth:{}:followup:users:0", last.load_id);
    let mut planned: Vec<String> = notes
        .iter()
        .filter(|n| n.starts_with("commit 0 to ") && n.contains(&txn))
        .map(|n| {
            n["commit 0 to ".len()..]
                .split(' ')
                .next()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    planned.sort();
    let lands = notes.iter().filter(|n| n.ends_with(" lands")).count();
    assert_eq!(lands, planned.len(), "{notes:#?}");
    let tables = [
        "users",
        "users__orders",
        "users__orders__items",
        "users__prefs__langs",
        "users__tags",
    ];
    let expected: Vec<String> = tables.iter().map(|t| format!("{dataset}.{t}")).collect();
    assert_eq!(planned, expected, "one commit per table: {notes:#?}");

    // The load makes those commits: each table's log holds the planned transaction.
    let root = work.path().join("lake");
    let loader = berth::open_loader(&format!("delta:{}", root.display()), &berth::OpenOptions::default())
        .expect("open the lake");
    for package in &packages {
        let summary = loader.load(open(package)).await.expect("load");
        assert_eq!(summary.status, berth::loader::PackageStatus::Loaded);
    }
    for table in tables {
        let (_, txns) = berth_tests::delta::live_files(&root.join(&dataset).join(table)).expect("log");
        assert!(txns.contains_key(&txn), "{table}: {txns:?}");
        assert!(
            !txns.contains_key(&format!("berth:{}:followup:users:1", last.load_id)),
            "{table}: {txns:?}"
        );
    }
}

/// A job cut short (Ctrl-C twice, or a shutdown) abandons the files it was writing: nothing is
/// committed, no data file is left in the table, and the job starts over on the next run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_write_leaves_no_files_and_no_commit() {
    use arrow::array::{Int64Array, RecordBatch};
    let work = tempfile::tempdir().expect("tempdir");
    let packages = work.path().join("packages");
    let package = SyntheticPackage::new(Shape::Narrow, 100)
        .with_load_id("1800000004.1")
        .write(&packages)
        .expect("package");
    let root = work.path().join("lake");
    let url = format!("delta:{}", root.display());
    let loader = berth::open_loader(&url, &berth::OpenOptions::default()).expect("open the lake");
    let location = PackageLocation::parse(&package.to_string_lossy()).expect("location");
    assert_eq!(
        loader.load(location).await.expect("load").status,
        berth::loader::PackageStatus::Loaded
    );
    let opened = LoadPackage::open(PackageLocation::parse(&package.to_string_lossy()).expect("location"))
        .await
        .expect("package");
    let dataset = opened.dataset_name(None);
    let table_dir = root.join(&dataset).join("narrow");
    let files_before = std::fs::read_dir(&table_dir).expect("table").count();

    let lake = berth::delta::Lake::open(&root.to_string_lossy(), &Default::default()).expect("lake");
    let table = lake.table(&dataset, "narrow").await.expect("open").expect("a table");
    let version = table.version();
    let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, true)]));
    let batch = |first: i64| {
        RecordBatch::try_new(
            Arc::clone(&schema),
            vec![Arc::new(Int64Array::from_iter_values(first..first + 50_000))],
        )
        .map_err(berth::destination::Error::from)
    };
    // Past a row group (1M rows), so the writer has started uploading the file when it stops.
    let batches = futures::stream::iter((0..40).map(|i| batch(i * 50_000)));
    let asked = std::sync::atomic::AtomicUsize::new(0);
    let stop = move || asked.fetch_add(1, std::sync::atomic::Ordering::SeqCst) >= 30;
    let written = berth::delta::write::write_files(&table, "narrow", Default::default(), Box::pin(batches), &stop)
        .await
        .expect("write");
    assert!(written.stopped && written.adds.is_empty(), "{written:?}");
    assert_eq!(written.rows, 1_500_000, "thirty batches before the stop");
    let table = lake.table(&dataset, "narrow").await.expect("open").expect("a table");
    assert_eq!(table.version(), version, "no commit");
    let files_after = std::fs::read_dir(&table_dir).expect("table").count();
    assert_eq!(files_after, files_before, "no data file left behind");
}

/// dlt's usual scd2 active-record marker, `9999-12-31`, lies past what DataFusion's cast of text
/// to a timestamp reaches (2262): a lake's follow-up, which DataFusion runs itself, takes it as a
/// typed timestamp. Every package of dlt's scd2 scenario loads with it (the later ones retire
/// versions), and the active versions carry the marker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lake_scd2_with_dlt_s_usual_active_record_marker_retires_and_inserts() {
    let work = tempfile::tempdir().expect("tempdir");
    berth_tests::copy_tree(&scenario_dir("duckdb", "merge_scd2").join("packages"), work.path()).expect("copy");
    let mut packages: Vec<_> = std::fs::read_dir(work.path())
        .expect("packages")
        .map(|e| e.expect("entry").path())
        .collect();
    packages.sort();
    let lake = tempfile::tempdir().expect("tempdir");
    let loader = berth::open_loader(
        &format!("delta:{}", lake.path().display()),
        &berth::OpenOptions::default(),
    )
    .expect("lake");
    let mut dataset = String::new();
    for package in &packages {
        let path = package.join("schema.json");
        let mut schema: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).expect("schema")).expect("json");
        schema["tables"]["customers"]["columns"]["_dlt_valid_to"]["x-active-record-timestamp"] = "9999-12-31".into();
        std::fs::write(&path, serde_json::to_string(&schema).expect("json")).expect("write");
        let location = PackageLocation::parse(&package.to_string_lossy()).expect("location");
        dataset = LoadPackage::open(location.clone())
            .await
            .expect("package")
            .dataset_name(None);
        let summary = loader.load(location).await.expect("load");
        assert_eq!(
            summary.status,
            berth::loader::PackageStatus::Loaded,
            "{}",
            package.display()
        );
    }
    let schema = Arc::new(Schema::new(vec![Field::new("_dlt_valid_to", DataType::Utf8, true)]));
    let rows = berth_tests::delta::table_rows(
        &lake.path().join(&dataset).join("customers"),
        &schema,
        &["_dlt_valid_to".to_string()],
    )
    .expect("read the table");
    let active = rows.iter().filter(|row| row.contains("9999-12-31")).count();
    let retired = rows.iter().filter(|row| !row.contains("9999-12-31")).count();
    assert!(active > 0 && retired > 0, "{rows:?}");
}
