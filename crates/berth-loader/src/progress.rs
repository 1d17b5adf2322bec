//! Progress reporting hooks (the CLI draws a progress bar with them).

use std::fmt::Debug;

use berth_model::LoadPackage;

use crate::summary::{JobSummary, PackageSummary};

/// Receives progress events. Every method has a no-op default; implementations must be cheap.
pub trait Progress: Send + Sync + Debug {
    /// A package's jobs are about to run.
    fn package_started(&self, _package: &LoadPackage, _jobs: usize) {}
    /// A batch of a job was read: its rows and bytes (in memory), while the job loads. Jobs a
    /// destination reads itself (DuckDB's `read_parquet`) report none.
    fn batch_read(&self, _job: &str, _rows: u64, _bytes: u64) {}
    /// A job finished (loaded or failed).
    fn job_finished(&self, _job: &JobSummary) {}
    /// A package finished.
    fn package_finished(&self, _summary: &PackageSummary) {}
}

/// Reports nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl Progress for NoProgress {}
