//! Progress within a job: every batch berth decodes is reported with its rows, so a large file
//! shows movement before it ends.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use berth::loader::{JobSummary, Loader, Progress};
use berth::model::PackageLocation;
use berth_tests::pg::PgCluster;
use berth_tests::{copy_tree, testdata};

#[derive(Debug, Default)]
struct Recorder {
    rows_read: Mutex<BTreeMap<String, u64>>,
    finished: Mutex<Vec<JobSummary>>,
}

impl Progress for Recorder {
    fn batch_read(&self, job: &str, rows: u64, bytes: u64) {
        assert!(rows == 0 || bytes > 0, "a batch with rows has bytes");
        let mut read = self.rows_read.lock().expect("lock");
        // Batches arrive while the job runs: it has not finished yet.
        assert!(!self.finished.lock().expect("lock").iter().any(|j| j.job_id == job));
        *read.entry(job.to_string()).or_default() += rows;
    }

    fn job_finished(&self, job: &JobSummary) {
        self.finished.lock().expect("lock").push(job.clone());
    }
}

#[tokio::test]
async fn batches_are_reported_while_their_job_loads_with_the_rows_it_loads() {
    let pg = PgCluster::start();
    let dir = tempfile::tempdir().expect("tempdir");
    copy_tree(&testdata().join("quickstart/packages"), dir.path()).expect("copy");
    let [package] = std::fs::read_dir(dir.path())
        .expect("list")
        .map(|e| e.expect("entry").path())
        .collect::<Vec<_>>()
        .try_into()
        .expect("one package");
    let destination = berth::open_destination(&pg.database_url("progress")).expect("open");
    let recorder = Arc::new(Recorder::default());
    let loader = Loader::new(destination).with_progress(Arc::clone(&recorder) as Arc<dyn Progress>);
    let location = PackageLocation::parse(package.to_str().expect("utf-8")).expect("location");
    let summary = loader.load(location).await.expect("loaded");
    let read = recorder.rows_read.lock().expect("lock").clone();
    for job in summary.jobs.iter().filter(|j| !j.table.starts_with("_dlt")) {
        assert_eq!(read.get(&job.job_id), Some(&job.rows), "{}", job.job_id);
    }
    assert_eq!(
        read.values().sum::<u64>(),
        summary.tables.values().map(|t| t.rows).sum::<u64>()
    );
}
