//! Packages in buckets, read in place over the S3 protocol from a real server on loopback
//! (s3s-fs): prefix listing in load-id order, range reads of Parquet row groups, the completion
//! marker, and exactly-once when two loaders race for the same package; and from Azure Blob
//! Storage in Azurite.

use std::sync::Arc;

use berth::destination::Destination;
use berth::duckdb::DuckDbDestination;
use berth::loader::{Loader, LoaderOptions, PackageStatus, resolve_locations};
use berth::model::StorageConfig;
use berth::postgres::PostgresDestination;
use berth_bench::synth::{Shape, SyntheticPackage};
use berth_tests::azurite::Azurite;
use berth_tests::pg::PgCluster;
use berth_tests::s3::{S3Server, SECRET_KEY, upload_dir};
use berth_tests::{Scenario, check_scenario_tables, scenario_dir, table_rows};
use object_store::ObjectStoreExt;

const BUCKET: &str = "packages";

/// Uploads a fixture scenario's packages under `s3://packages/<prefix>/`.
async fn upload_scenario(server: &S3Server, normalized_for: &str, scenario: &str, prefix: &str) -> Scenario {
    let dir = scenario_dir(normalized_for, scenario);
    server.upload_dir(&dir.join("packages"), BUCKET, prefix).await;
    Scenario::read(&dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prefix_of_packages_loads_in_load_id_order_from_s3_and_stays_as_it_was() {
    let server = S3Server::start(&[BUCKET]);
    let scenario = upload_scenario(&server, "duckdb", "merge_delete_insert", "pipe/load/normalized").await;
    let before = server.keys(BUCKET).await;
    let storage = server.storage_config();

    let locations = resolve_locations(&[format!("s3://{BUCKET}/pipe/load/normalized")], &storage)
        .await
        .expect("list the prefix");
    let names: Vec<String> = locations.iter().map(|l| l.folder_name()).collect();
    assert_eq!(names, scenario.packages, "packages in load-id order");
    assert!(
        locations[0]
            .to_string()
            .starts_with("s3://packages/pipe/load/normalized/")
    );

    let destination: Arc<dyn Destination> = Arc::new(DuckDbDestination::in_memory().expect("duckdb"));
    let loader = Loader::new(Arc::clone(&destination));
    let summary = loader.load_all(locations).await.expect("load");
    assert!(summary.all_loaded(), "{summary:?}");
    check_scenario_tables(destination.as_ref(), &scenario_dir("duckdb", "merge_delete_insert"))
        .await
        .expect("the rows dlt loaded");

    // Nothing in the bucket changed but one completion marker per package.
    let after = server.keys(BUCKET).await;
    let added: Vec<&String> = after.iter().filter(|k| !before.contains(k)).collect();
    let expected: Vec<String> = scenario
        .packages
        .iter()
        .map(|p| format!("pipe/load/normalized/{p}/package_completed.json"))
        .collect();
    assert_eq!(added, expected.iter().collect::<Vec<_>>());
    assert!(before.iter().all(|k| after.contains(k)), "nothing removed or moved");

    // A second run sees the markers and loads nothing.
    let again = resolve_locations(&[format!("s3://{BUCKET}/pipe/load/normalized")], &storage)
        .await
        .expect("list");
    let summary = loader.load_all(again).await.expect("reload");
    assert!(
        summary
            .packages
            .iter()
            .all(|p| p.status == PackageStatus::AlreadyLoaded),
        "{summary:?}"
    );
}

/// The test server reads object bodies itself (in 1 MiB chunks, not s3s-fs's 4 KiB): whole
/// objects, ranges across chunk borders and suffixes come back byte for byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_s3_server_serves_whole_objects_ranges_and_suffixes_exactly() {
    use object_store::{GetOptions, GetRange, ObjectStore};

    let server = S3Server::start(&[BUCKET]);
    let client = server.client(BUCKET);
    let bytes: Vec<u8> = (0..3_500_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let path = object_store::path::Path::from("blob/data.bin");
    client.put(&path, bytes.clone().into()).await.expect("put");

    let whole = client.get(&path).await.expect("get").bytes().await.expect("body");
    assert_eq!(whole.as_ref(), bytes.as_slice());
    for range in [0..1, 1_048_000..2_200_000, 3_499_999..3_500_000] {
        let got = client.get_range(&path, range.clone()).await.expect("range");
        let expected = &bytes[range.start as usize..range.end as usize];
        assert_eq!(got.as_ref(), expected, "range {range:?}");
    }
    let options = GetOptions {
        range: Some(GetRange::Suffix(1_500_001)),
        ..Default::default()
    };
    let suffix = client
        .get_opts(&path, options)
        .await
        .expect("suffix")
        .bytes()
        .await
        .expect("body");
    assert_eq!(suffix.as_ref(), &bytes[bytes.len() - 1_500_001..]);
    let missing = client.get(&object_store::path::Path::from("blob/missing.bin")).await;
    assert!(
        matches!(missing, Err(object_store::Error::NotFound { .. })),
        "{missing:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_loaders_racing_for_one_bucket_package_load_it_exactly_once() {
    let server = S3Server::start(&[BUCKET]);
    let cluster = PgCluster::start();
    let storage = server.storage_config();
    // A package of several row-group parts, so both loaders have work to race for.
    let local = tempfile::tempdir().expect("tempdir");
    let package = SyntheticPackage::new(Shape::Narrow, 40_000)
        .with_row_group_rows(2_000)
        .with_seed(5)
        .write(local.path())
        .expect("package");
    let load_id = package.file_name().expect("name").to_string_lossy().to_string();
    server.upload_dir(&package, BUCKET, &format!("race/{load_id}")).await;
    let url = format!("s3://{BUCKET}/race/{load_id}");

    // Two destinations, as two processes would have: their own connections, nothing shared.
    let options = LoaderOptions {
        split_min_bytes: 1,
        parallel_jobs: 2,
        ..LoaderOptions::default()
    };
    let database_url = cluster.database_url("race");
    let load = |storage: StorageConfig| {
        let url = url.clone();
        let database_url = database_url.clone();
        let options = options.clone();
        async move {
            let pg: Arc<dyn Destination> = Arc::new(PostgresDestination::from_url(&database_url).expect("url"));
            let locations = resolve_locations(&[url], &storage).await.expect("locations");
            Loader::new(pg)
                .with_options(options)
                .load_all(locations)
                .await
                .expect("load")
        }
    };
    let (a, b) = tokio::join!(load(storage.clone()), load(storage.clone()));
    let mut statuses = vec![a.packages[0].status, b.packages[0].status];
    statuses.sort_by_key(|s| format!("{s:?}"));
    assert_eq!(statuses, vec![PackageStatus::AlreadyLoaded, PackageStatus::Loaded]);

    let pg = PostgresDestination::from_url(&database_url).expect("url");
    let (ids, _) = table_rows(&pg, "bench", "narrow", &["id"]).await.expect("rows");
    assert_eq!(ids.len(), 40_000, "every row once");
    let distinct: std::collections::BTreeSet<&String> = ids.iter().collect();
    assert_eq!(distinct.len(), 40_000, "no row twice");
    let (loads, _) = table_rows(&pg, "bench", "_dlt_loads", &["load_id"])
        .await
        .expect("loads");
    assert_eq!(loads.len(), 1, "{loads:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bucket_errors_name_the_location_and_never_the_secret() {
    let server = S3Server::start(&[BUCKET]);
    upload_scenario(&server, "duckdb", "append_types", "ok").await;

    // Nothing under the prefix.
    let err = resolve_locations(&[format!("s3://{BUCKET}/nothing/here")], &server.storage_config())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("s3://packages/nothing/here") && err.contains("schema.json"),
        "{err}"
    );

    // A wrong secret: the server refuses the signature; the message names the package, not the key.
    let wrong = StorageConfig::new()
        .with_options("s3://", server.options())
        .with_options("s3://", [("aws_secret_access_key", "wrong-secret-value")]);
    let err = resolve_locations(&[format!("s3://{BUCKET}/ok")], &wrong)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("s3://packages/ok"), "{err}");
    assert!(
        !err.contains("wrong-secret-value") && !err.contains(SECRET_KEY),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packages_load_from_azure_blob_storage_in_azurite() {
    let azurite = Azurite::start(&["packages"]);
    let storage = azurite.storage_config();
    let dir = scenario_dir("duckdb", "merge_upsert");
    let scenario = Scenario::read(&dir);
    let (store, _) = berth::model::open_store("az://packages", &storage).expect("azure store");
    upload_dir(store.as_ref(), &dir.join("packages"), "pipe/load/normalized").await;

    let locations = resolve_locations(&["az://packages/pipe/load/normalized".to_string()], &storage)
        .await
        .expect("list the prefix");
    let names: Vec<String> = locations.iter().map(|l| l.folder_name()).collect();
    assert_eq!(names, scenario.packages);
    let destination = berth_tests::load_all_into_duckdb(locations).await;
    check_scenario_tables(destination.as_ref(), &dir)
        .await
        .expect("the rows dlt loaded");
    let marker = object_store::path::Path::from(format!(
        "pipe/load/normalized/{}/package_completed.json",
        scenario.packages[0]
    ));
    let body = store.get(&marker).await.expect("marker").bytes().await.expect("body");
    assert_eq!(&body[..], b"loaded");

    // The wrong key: the emulator refuses the signature; the message names the location only.
    let wrong = StorageConfig::new()
        .with_options("az://", azurite.options())
        .with_options("az://", [("azure_storage_account_key", "d3Jvbmcta2V5LXZhbHVl")]);
    let err = resolve_locations(&["az://packages/pipe/load/normalized".to_string()], &wrong)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("az://packages/pipe/load/normalized"), "{err}");
    assert!(
        !err.contains("d3Jvbmcta2V5LXZhbHVl") && !err.contains(berth_tests::azurite::ACCOUNT_KEY),
        "{err}"
    );
}

/// No Google Cloud Storage emulator installs here, so this checks what berth asks a GCS server
/// for, against a scripted server on loopback answering 404: the package's `schema.json` by the
/// XML API's object URL, then a delimited listing of the prefix, and an error naming the URL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gcs_requests_go_to_the_objects_of_the_url() {
    use berth_tests::http::{Reply, TestServer};
    let server = TestServer::start(|_| Reply::Status(404, vec![]));
    let storage = StorageConfig::new().with_options(
        "gs://lake",
        [
            ("google_base_url", server.url.as_str()),
            ("google_skip_signature", "true"),
        ],
    );
    let err = resolve_locations(&["gs://lake/shop/load/normalized".to_string()], &storage)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("gs://lake/shop/load/normalized"), "{err}");
    let lines: Vec<String> = server.received().iter().map(|r| r.line.clone()).collect();
    assert!(
        // The object name percent-encoded as one path segment, as GCS's XML API takes it.
        lines[0].starts_with("HEAD /lake/shop%2Fload%2Fnormalized%2Fschema%2Ejson "),
        "{lines:?}"
    );
    let list = lines.get(1).expect("a listing after the missing schema.json");
    assert!(
        list.starts_with("GET /lake?") && list.contains("list-type=2") && list.contains("delimiter=%2F"),
        "{list}"
    );
    assert!(list.contains("prefix=shop%2Fload%2Fnormalized%2F"), "{list}");
}

/// The lease that keeps two processes off one package where the destination has no lock of its
/// own, on real protocol servers: S3 (`If-None-Match: *` / `If-Match`) and Azure Blob Storage.
/// One holder at a time, renewed past its time to live while held, taken over once it expires
/// unrenewed (a crashed holder), and released at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_on_s3_and_azure_keep_one_holder_and_expire_when_not_renewed() {
    use berth::model::lease::{Lease, LeaseOptions};
    use std::time::Duration;

    let s3 = S3Server::start(&["locks"]);
    let azurite = Azurite::start(&["locks"]);
    let stores = [
        (
            "s3",
            berth::model::open_store("s3://locks", &s3.storage_config())
                .expect("s3")
                .0,
        ),
        (
            "azure",
            berth::model::open_store("az://locks", &azurite.storage_config())
                .expect("azure")
                .0,
        ),
    ];
    let options = LeaseOptions {
        ttl: Duration::from_millis(1500),
        poll: Duration::from_millis(50),
    };
    for (name, store) in stores {
        let path = object_store::path::Path::from("ds/_berth_locks/1.json");
        let take = || Lease::acquire(Arc::clone(&store), path.clone(), name, "package 1", options);
        let first = take().await.expect("acquire").expect("conditional writes work");
        let waiter = berth::model::task::spawn_owned(take());
        tokio::time::sleep(Duration::from_millis(3000)).await;
        assert!(!waiter.is_finished(), "{name}: a renewed lease keeps others out");
        first.release().await;
        let second = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("released: the waiter goes on")
            .expect("task")
            .expect("acquire")
            .expect("lease");
        // The holder crashes: nothing renews the lease, the next one takes it once it expires
        // (measured against the expiry the lease file holds, not against this test's clock,
        // which a loaded machine may have delayed).
        drop(second);
        let held = store
            .get(&path)
            .await
            .expect("the lease file")
            .bytes()
            .await
            .expect("bytes");
        let expires: u64 = serde_json::from_slice::<serde_json::Value>(&held).expect("lease JSON")["expires_unix_ms"]
            .as_u64()
            .expect("expiry");
        let third = take().await.expect("acquire").expect("lease");
        let now = u64::try_from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("clock")
                .as_millis(),
        )
        .expect("ms");
        assert!(
            now >= expires,
            "{name}: took over only after expiry ({now} < {expires})"
        );
        third.release().await;
        assert!(
            matches!(store.head(&path).await, Err(object_store::Error::NotFound { .. })),
            "{name}: released"
        );
    }
}
