//! Sink destinations against a local HTTP server that fails some requests: every row arrives, in
//! batches of the configured size, acknowledged batches are never sent again, and the package
//! state records the progress dlt's way.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use berth::model::PackageLocation;
use berth::sink::{SinkLoader, SinkOptions, WebhookConfig, WebhookSink};
use berth_bench::synth::{Shape, SyntheticPackage};
use berth_tests::http::{Received, Reply, TestServer};

/// Rows per batch by idempotency key, over acknowledged requests; and every id delivered.
fn delivered(received: &[Received]) -> (BTreeMap<String, usize>, Vec<i64>) {
    let mut batches = BTreeMap::new();
    let mut ids = Vec::new();
    for request in received.iter().filter(|r| r.acknowledged()) {
        let body: serde_json::Value = serde_json::from_slice(&request.body).expect("a JSON body");
        let rows = body["rows"].as_array().expect("rows");
        let key = request
            .header("idempotency-key")
            .expect("an idempotency key")
            .to_string();
        assert!(
            batches.insert(key.clone(), rows.len()).is_none(),
            "batch {key} acknowledged twice"
        );
        ids.extend(rows.iter().map(|r| r["id"].as_i64().expect("id")));
    }
    ids.sort_unstable();
    (batches, ids)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_delivers_every_row_in_batches_through_500s_429s_and_dropped_connections() {
    // Request 1 gets a 500, 3 a 429 asking for a 1 s wait, 5 a dropped connection; the rest 200.
    let server = TestServer::start(|n| match n {
        1 => Reply::Status(500, vec![]),
        3 => Reply::Status(429, vec!["Retry-After: 1".into()]),
        5 => Reply::Drop,
        _ => Reply::Status(200, vec![]),
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let package = SyntheticPackage::new(Shape::Narrow, 1050)
        .with_row_group_rows(400)
        .write(dir.path())
        .expect("package");
    let config = WebhookConfig {
        headers: vec![("Authorization".into(), "Bearer s3cret-token".into())],
        ..WebhookConfig::default()
    };
    let sink = WebhookSink::new(&format!("webhook+{}/hook?key=hidden", server.url), config).expect("sink");
    assert!(!format!("{sink:?}").contains("s3cret") && !format!("{sink:?}").contains("hidden"));
    let options = SinkOptions {
        retry_backoff: Duration::from_millis(20),
        ..SinkOptions::default().with_batch_size(100)
    };
    let loader = SinkLoader::new(Arc::new(sink)).with_options(options);
    let location = PackageLocation::parse(&package.to_string_lossy()).expect("location");
    let summary = loader.load(location.clone()).await.expect("load");
    assert_eq!(summary.status, berth::loader::PackageStatus::Loaded, "{summary:?}");
    assert_eq!(summary.rows(), 1050);
    assert!(!summary.destination.contains("hidden"), "{}", summary.destination);

    let received = server.received();
    let (batches, ids) = delivered(&received);
    assert_eq!(batches.len(), 11, "{batches:?}");
    let sizes: Vec<usize> = batches.values().copied().collect();
    assert_eq!(sizes.iter().filter(|s| **s == 100).count(), 10);
    assert_eq!(sizes.iter().filter(|s| **s == 50).count(), 1);
    assert_eq!(ids, (1..=1050).collect::<Vec<_>>(), "every row exactly once");
    // The failed requests were retried, the 429 not before its Retry-After.
    assert_eq!(received.len(), 11 + 3);
    assert_eq!(received[3].status, 429);
    assert!(received[4].at.duration_since(received[3].at) >= Duration::from_millis(950));
    for request in &received {
        assert_eq!(request.line, "POST /hook?key=hidden HTTP/1.1");
        assert_eq!(request.header("authorization"), Some("Bearer s3cret-token"));
        assert_eq!(request.header("x-berth-table"), Some("narrow"));
    }
    // Retries repeat the batch's key, so a receiver can drop a repeat.
    let key = |i: usize| received[i].header("idempotency-key");
    assert_ne!(key(0), key(1));
    assert_eq!(key(1), key(2));
    assert_eq!(key(3), key(4));
    assert_eq!(key(5), key(6));

    // dlt's record of the progress, and the completion marker.
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(package.join("load_package_state.json")).expect("state")).expect("json");
    let progress = state["destination_state"].as_object().expect("destination_state");
    assert_eq!(
        progress
            .values()
            .filter_map(serde_json::Value::as_u64)
            .collect::<Vec<_>>(),
        [1050]
    );
    assert!(package.join("package_completed.json").exists());
    assert_eq!(
        std::fs::read_dir(package.join("completed_jobs"))
            .expect("completed")
            .count(),
        1
    );
    // Loading it again sends nothing.
    let again = loader.load(location).await.expect("load again");
    assert_eq!(again.status, berth::loader::PackageStatus::AlreadyLoaded);
    assert_eq!(server.received().len(), received.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_that_keeps_failing_leaves_the_package_pending_and_the_rerun_resumes() {
    // The receiver takes 3 batches, then fails every request until it is "fixed".
    let fixed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = Arc::clone(&fixed);
    let server = TestServer::start(move |n| {
        if n < 3 || flag.load(std::sync::atomic::Ordering::SeqCst) {
            Reply::Status(204, vec![])
        } else {
            Reply::Status(503, vec![])
        }
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let package = SyntheticPackage::new(Shape::Narrow, 700)
        .write(dir.path())
        .expect("package");
    let sink = WebhookSink::new(&format!("webhook+{}/in", server.url), WebhookConfig::default()).expect("sink");
    let options = SinkOptions {
        retry_backoff: Duration::from_millis(5),
        max_attempts: 3,
        ..SinkOptions::default().with_batch_size(100)
    };
    let loader = SinkLoader::new(Arc::new(sink)).with_options(options);
    let location = PackageLocation::parse(&package.to_string_lossy()).expect("location");
    let first = loader.load(location.clone()).await.expect("load");
    assert_eq!(first.status, berth::loader::PackageStatus::Pending);
    // A sink that keeps answering 503 is a transient failure: the package stays pending.
    assert_eq!(
        first.jobs[0].error_kind,
        Some(berth::model::FailureKind::Transient),
        "{first:?}"
    );
    assert!(
        first.jobs[0].error.as_deref().unwrap_or_default().contains("503"),
        "{first:?}"
    );
    // Re-queued dlt's way, with the reason.
    assert_eq!(
        std::fs::read_dir(package.join("new_jobs")).expect("new_jobs").count(),
        1
    );
    assert_eq!(
        std::fs::read_dir(package.join(".exceptions"))
            .expect("exceptions")
            .count(),
        1
    );

    fixed.store(true, std::sync::atomic::Ordering::SeqCst);
    let second = loader.load(location).await.expect("load again");
    assert_eq!(second.status, berth::loader::PackageStatus::Loaded);
    assert_eq!(second.rows(), 400, "only the rows not acknowledged before");
    let received = server.received();
    let (batches, ids) = delivered(&received);
    assert_eq!(batches.len(), 7);
    assert_eq!(ids, (1..=700).collect::<Vec<_>>());
    let keys: BTreeSet<&str> = received.iter().filter_map(|r| r.header("idempotency-key")).collect();
    assert_eq!(keys.len(), 7, "the 4th batch was retried under one key: {keys:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closures_are_sinks_and_terminal_errors_fail_the_job() {
    let dir = tempfile::tempdir().expect("tempdir");
    let package = SyntheticPackage::new(Shape::Nested, 300)
        .write(dir.path())
        .expect("package");
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    let sink = berth::sink::sink_fn("collect", move |batch| {
        let log = Arc::clone(&log);
        async move {
            let columns: Vec<String> = batch.table.schema.fields().iter().map(|f| f.name().clone()).collect();
            log.lock()
                .expect("log")
                .push((batch.table.name.clone(), batch.rows.num_rows(), columns));
            Ok(())
        }
    });
    let loader = SinkLoader::new(Arc::new(sink)).with_options(SinkOptions::default().with_batch_size(64));
    let summary = loader
        .load(PackageLocation::parse(&package.to_string_lossy()).expect("location"))
        .await
        .expect("load");
    assert_eq!(summary.status, berth::loader::PackageStatus::Loaded);
    let seen = seen.lock().expect("log").clone();
    let root: usize = seen.iter().filter(|(t, ..)| t == "nested").map(|(_, n, _)| n).sum();
    assert_eq!(root, 300);
    assert!(seen.iter().all(|(_, n, _)| *n <= 64));
    // `_dlt_*` columns are left out by default.
    assert!(
        seen.iter()
            .all(|(_, _, columns)| columns.iter().all(|c| !c.starts_with("_dlt_"))),
        "{seen:?}"
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let package = SyntheticPackage::new(Shape::Narrow, 10)
        .write(dir.path())
        .expect("package");
    let refuse = berth::sink::sink_fn("refuse", |_batch| async {
        Err(berth::sink::SinkError::terminal("the CRM refuses this record"))
    });
    let options = SinkOptions {
        allow_failed_jobs: true,
        ..SinkOptions::default()
    };
    let summary = SinkLoader::new(Arc::new(refuse))
        .with_options(options)
        .load(PackageLocation::parse(&package.to_string_lossy()).expect("location"))
        .await
        .expect("load");
    assert_eq!(summary.status, berth::loader::PackageStatus::LoadedWithFailedJobs);
    assert_eq!(summary.jobs[0].attempts, 1, "terminal errors are not retried");
    assert_eq!(summary.jobs[0].error_kind, Some(berth::model::FailureKind::Terminal));
    assert_eq!(
        std::fs::read_dir(package.join("failed_jobs")).expect("failed").count(),
        2,
        "the job and its .exception"
    );
}
