//! What a destination can do, as a value the loader and planner consult.

use berth_model::{FileFormat, MergeStrategy, ReplaceStrategy};
use berth_plan::{PlanCapabilities, SqlDialect};

/// Default number of jobs (or job parts) loading at once: one per core, at least 2 (one
/// decodes and encodes while another waits on the destination), at most 8. Memory grows with it:
/// each part holds about a decoded batch and a page per column.
pub fn default_parallel_jobs() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 8))
}

/// A destination's capabilities.
#[derive(Debug, Clone)]
pub struct Capabilities {
    /// How SQL is printed for it (quoting, case folding, types, statement support).
    pub dialect: SqlDialect,
    /// Job formats its load path takes.
    pub loader_formats: Vec<FileFormat>,
    /// Replace strategies, the first being the default.
    pub replace_strategies: Vec<ReplaceStrategy>,
    /// Merge strategies, the first being the default.
    pub merge_strategies: Vec<MergeStrategy>,
    /// DDL can run inside a transaction.
    pub supports_ddl_transactions: bool,
    /// Statements can be grouped in a transaction.
    pub supports_transactions: bool,
    /// Most jobs that may load at once (`None`: no limit beyond the loader's).
    pub max_parallel_jobs: Option<usize>,
    /// A range of rows of a Parquet file ([`crate::JobPart::Rows`]) loads as its own unit, so one
    /// large file can load over several connections at once.
    pub row_group_parts: bool,
}

impl Capabilities {
    /// The part the planner needs.
    pub fn plan_capabilities(&self) -> PlanCapabilities {
        PlanCapabilities {
            replace_strategies: self.replace_strategies.clone(),
            merge_strategies: self.merge_strategies.clone(),
        }
    }
}
