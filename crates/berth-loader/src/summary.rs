//! What a load did, for people (the CLI's table) and machines (`--json`, which reads back into a
//! [`LoadSummary`]: `berth bench` reads its `berth load` processes' summaries that way).

use std::collections::BTreeMap;
use std::time::Duration;

use berth_destination::{JobMetrics, MigrationReport};
use berth_model::{FailureKind, JobFailure, JobFile, LoadId, LoadPackage};
use serde::{Deserialize, Serialize};

/// Durations as seconds (milliseconds precision) in JSON, and back.
mod seconds {
    use std::time::Duration;

    use serde::Deserialize;

    pub(super) fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64((d.as_secs_f64() * 1000.0).round() / 1000.0)
    }

    pub(super) fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Duration::try_from_secs_f64(f64::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// How a package ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PackageStatus {
    /// Every job loaded and the load was committed (`_dlt_loads`).
    Loaded,
    /// Committed without the jobs that failed terminally (they are in `failed_jobs/`); only with
    /// [`crate::LoaderOptions::allow_failed_jobs`].
    LoadedWithFailedJobs,
    /// It had been loaded before; nothing was done.
    AlreadyLoaded,
    /// Some jobs failed; the package stays pending and can be loaded again.
    Pending,
    /// The load was cancelled (Ctrl-C) before its commit; loading it again resumes it.
    Interrupted,
}

/// How a job ended in a load (`completed` / `failed` in JSON summaries).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    /// Its rows are loaded.
    Completed,
    /// It failed; none of its rows are loaded.
    Failed,
}

impl std::fmt::Display for JobStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Completed => "completed",
            Self::Failed => "failed",
        })
    }
}

/// One job's result.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobSummary {
    /// `<table>.<file_id>.<format>`.
    pub job_id: String,
    /// Table loaded.
    pub table: String,
    /// Job file, for messages.
    pub file: String,
    /// How it ended.
    pub state: JobStatus,
    /// Rows inserted.
    pub rows: u64,
    /// File size.
    pub bytes: u64,
    /// Attempts made.
    pub attempts: u32,
    /// Wall time.
    #[serde(with = "seconds")]
    pub seconds: Duration,
    /// The error, when it failed.
    pub error: Option<String>,
    /// Whether a retry may load it (`transient`: the next run tries again) or not (`terminal`),
    /// when it failed.
    #[serde(default)]
    pub error_kind: Option<FailureKind>,
}

impl JobSummary {
    /// A job found in `failed_jobs/`: it failed in an earlier run that allowed failed jobs.
    pub(crate) fn previously_failed(package: &LoadPackage, job: &JobFile, failure: Option<JobFailure>) -> Self {
        Self {
            job_id: job.name.job_id(),
            table: job.name.table.clone(),
            file: package.job_display(job),
            state: JobStatus::Failed,
            rows: 0,
            bytes: job.size,
            attempts: 0,
            seconds: Duration::ZERO,
            error_kind: Some(failure.as_ref().map_or(FailureKind::Terminal, |f| f.kind)),
            error: Some(failure.map_or_else(|| "failed in an earlier run".into(), |f| f.message)),
        }
    }

    pub(crate) fn from_outcome(
        package: &LoadPackage,
        job: &JobFile,
        result: &Result<JobMetrics, berth_destination::Error>,
        attempts: u32,
        elapsed: Duration,
    ) -> Self {
        let (state, metrics, error) = match result {
            Ok(m) => (JobStatus::Completed, *m, None),
            Err(e) => (JobStatus::Failed, JobMetrics::default(), Some(e)),
        };
        let error_kind = error.map(|e| FailureKind::from(e.kind()));
        Self {
            job_id: job.name.job_id(),
            table: job.name.table.clone(),
            file: package.job_display(job),
            state,
            rows: metrics.rows,
            bytes: job.size,
            attempts,
            seconds: elapsed,
            error: error.map(ToString::to_string),
            error_kind,
        }
    }
}

/// Where a package's time went, in seconds. `migrate` through `commit` are the loader's phases
/// one after the other (their sum is about the package's wall time); `decode`, `encode` and
/// `transfer` split the job time, summed over every job part (parts overlap when parallel, and
/// reading runs ahead of sending, so they add up to more than `jobs`).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct PhaseTimes {
    /// Creating and altering tables, and emptying what the load replaces.
    #[serde(with = "seconds")]
    pub migrate: Duration,
    /// The jobs, wall time.
    #[serde(with = "seconds")]
    pub jobs: Duration,
    /// Reading and decoding job files (summed over parts).
    #[serde(with = "seconds")]
    pub decode: Duration,
    /// Encoding for the destination (summed over parts).
    #[serde(with = "seconds")]
    pub encode: Duration,
    /// The destination taking and committing the data (summed over parts).
    #[serde(with = "seconds")]
    pub transfer: Duration,
    /// Follow-up SQL: merges and replaces from staging, with their measuring queries.
    #[serde(with = "seconds")]
    pub followup: Duration,
    /// The `_dlt_loads` row, dropping the staging dataset, marking and moving the package.
    #[serde(with = "seconds")]
    pub commit: Duration,
}

impl std::ops::AddAssign<&PhaseTimes> for PhaseTimes {
    fn add_assign(&mut self, other: &PhaseTimes) {
        self.migrate += other.migrate;
        self.jobs += other.jobs;
        self.decode += other.decode;
        self.encode += other.encode;
        self.transfer += other.transfer;
        self.followup += other.followup;
        self.commit += other.commit;
    }
}

impl PhaseTimes {
    /// The phases by name, in order, in seconds.
    pub fn named(&self) -> [(&'static str, f64); 7] {
        [
            ("migrate", self.migrate.as_secs_f64()),
            ("jobs", self.jobs.as_secs_f64()),
            ("decode", self.decode.as_secs_f64()),
            ("encode", self.encode.as_secs_f64()),
            ("transfer", self.transfer.as_secs_f64()),
            ("followup", self.followup.as_secs_f64()),
            ("commit", self.commit.as_secs_f64()),
        ]
    }
}

/// Per-table totals.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TableSummary {
    /// Jobs loaded.
    pub jobs: usize,
    /// Jobs failed.
    pub failed_jobs: usize,
    /// Rows inserted.
    pub rows: u64,
    /// Bytes of job files.
    pub bytes: u64,
    /// Summed job time (jobs overlap when parallel).
    #[serde(with = "seconds")]
    pub seconds: Duration,
}

/// One package's result.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PackageSummary {
    /// The load id.
    pub load_id: LoadId,
    /// Where the package is.
    pub package: String,
    /// Schema name.
    pub schema: String,
    /// Dataset loaded into.
    pub dataset: String,
    /// Destination (no credentials).
    pub destination: String,
    /// How it ended.
    pub status: PackageStatus,
    /// Per-table totals, by table name.
    pub tables: BTreeMap<String, TableSummary>,
    /// Every job run in this load.
    pub jobs: Vec<JobSummary>,
    /// Jobs found already completed by an earlier run.
    pub previously_completed_jobs: usize,
    /// Jobs left unfinished because the load was cancelled.
    pub interrupted_jobs: usize,
    /// Schema changes made.
    pub migration: MigrationReport,
    /// Follow-up statements run (replace from staging, merge).
    pub followup_statements: usize,
    /// Where the time went.
    pub phases: PhaseTimes,
    /// Wall time.
    #[serde(with = "seconds")]
    pub elapsed: Duration,
}

impl PackageSummary {
    /// An empty summary of `package` (status `Pending`), for loaders of other kinds (sinks).
    pub fn new(package: &LoadPackage, dataset: &str, destination: &str) -> Self {
        Self {
            load_id: package.load_id.clone(),
            package: package.location.to_string(),
            schema: package.schema.name.clone(),
            dataset: dataset.to_string(),
            destination: destination.to_string(),
            status: PackageStatus::Pending,
            tables: BTreeMap::new(),
            jobs: Vec::new(),
            previously_completed_jobs: 0,
            interrupted_jobs: 0,
            migration: MigrationReport::default(),
            followup_statements: 0,
            phases: PhaseTimes::default(),
            elapsed: Duration::ZERO,
        }
    }

    /// Counts jobs an earlier run completed.
    pub fn record_completed<'a>(&mut self, jobs: impl Iterator<Item = &'a JobFile>) {
        self.previously_completed_jobs += jobs.count();
    }

    /// Adds a job's result and its table's totals.
    pub fn push_job(&mut self, job: JobSummary) {
        let table = self.tables.entry(job.table.clone()).or_default();
        if job.error.is_some() {
            table.failed_jobs += 1;
        } else {
            table.jobs += 1;
            table.rows += job.rows;
            table.bytes += job.bytes;
        }
        table.seconds += job.seconds;
        self.jobs.push(job);
    }

    /// Rows inserted by this load.
    pub fn rows(&self) -> u64 {
        self.tables.values().map(|t| t.rows).sum()
    }

    /// Jobs that failed.
    pub fn failed_jobs(&self) -> impl Iterator<Item = &JobSummary> {
        self.jobs.iter().filter(|j| j.error.is_some())
    }
}

/// The result of loading several packages.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoadSummary {
    /// Destination (no credentials).
    pub destination: String,
    /// Packages in load order.
    pub packages: Vec<PackageSummary>,
    /// Wall time.
    #[serde(with = "seconds")]
    pub elapsed: Duration,
    /// Peak resident memory of the process that loaded, in bytes, when its caller measured it:
    /// the `berth` command line reads it ([`process_peak_rss`]) after closing the destination, so
    /// an embedded database's close (DuckDB's checkpoint) counts. `None` from [`crate::Loader`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_rss_bytes: Option<u64>,
}

/// The peak resident memory of this process so far, in bytes (Linux: `VmHWM` of
/// `/proc/self/status`, this program's own since it started, whatever started it); `None` where
/// the platform does not tell.
pub fn process_peak_rss() -> Option<u64> {
    process_status_bytes("VmHWM:")
}

/// A size line of `/proc/self/status` (`VmHWM:`, `VmRSS:`), in bytes.
pub(crate) fn process_status_bytes(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

impl LoadSummary {
    /// Was every package committed (now or before), possibly without failed jobs?
    pub fn all_loaded(&self) -> bool {
        self.packages.iter().all(|p| {
            matches!(
                p.status,
                PackageStatus::Loaded | PackageStatus::LoadedWithFailedJobs | PackageStatus::AlreadyLoaded
            )
        })
    }

    /// Did any package stay pending because jobs failed?
    pub fn any_pending(&self) -> bool {
        self.packages.iter().any(|p| p.status == PackageStatus::Pending)
    }

    /// Was the load cancelled before every package was committed?
    pub fn interrupted(&self) -> bool {
        self.packages.iter().any(|p| p.status == PackageStatus::Interrupted)
    }

    /// Were jobs left out of a committed package?
    pub fn has_failed_jobs(&self) -> bool {
        self.packages.iter().any(|p| p.failed_jobs().next().is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_summaries_read_back() {
        let job = JobSummary {
            job_id: "items.abc.0.parquet".into(),
            table: "items".into(),
            file: "pkg/new_jobs/items.abc.0.parquet".into(),
            state: JobStatus::Failed,
            rows: 0,
            bytes: 10,
            attempts: 3,
            seconds: Duration::from_millis(1250),
            error: Some("items: column `id` is not nullable".into()),
            error_kind: Some(FailureKind::Terminal),
        };
        let mut package = PackageSummary {
            load_id: LoadId::parse("1.1").expect("a load id"),
            package: "pkg".into(),
            schema: "s".into(),
            dataset: "d".into(),
            destination: "duckdb:x.duckdb".into(),
            status: PackageStatus::LoadedWithFailedJobs,
            tables: BTreeMap::new(),
            jobs: Vec::new(),
            previously_completed_jobs: 1,
            interrupted_jobs: 0,
            migration: MigrationReport {
                created_tables: vec!["d.items".into()],
                ..MigrationReport::default()
            },
            followup_statements: 2,
            phases: PhaseTimes {
                transfer: Duration::from_millis(2500),
                ..PhaseTimes::default()
            },
            elapsed: Duration::from_secs(3),
        };
        package.push_job(job);
        let summary = LoadSummary {
            destination: "duckdb:x.duckdb".into(),
            packages: vec![package],
            elapsed: Duration::from_millis(3001),
            peak_rss_bytes: Some(160 << 20),
        };
        let json = serde_json::to_string_pretty(&summary).expect("json");
        let back: LoadSummary = serde_json::from_str(&json).expect("reads back");
        assert_eq!(serde_json::to_string_pretty(&back).expect("json"), json);
        assert_eq!(back.elapsed, Duration::from_millis(3001));
        assert_eq!(back.packages[0].phases.transfer, Duration::from_millis(2500));
        assert_eq!(back.packages[0].status, PackageStatus::LoadedWithFailedJobs);
        assert!(back.has_failed_jobs());
        assert_eq!(back.peak_rss_bytes, Some(160 << 20));
        let negative = json.replace("\"elapsed\": 3.001", "\"elapsed\": -1.0");
        assert!(serde_json::from_str::<LoadSummary>(&negative).is_err());
    }
}
