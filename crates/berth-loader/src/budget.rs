//! A memory budget for the whole load process (`--memory-budget`).
//!
//! The budget is split three ways: the process's own base (what is resident before the jobs
//! start: code, runtime, the destination's library, what migration and planning left), an
//! embedded engine's share (DuckDB's `memory_limit` ceiling and, through it, its threads; see
//! [`engine_share`]), and the jobs' share, which bounds the parts loading at once. Each part
//! reserves its estimate from the jobs' share before it starts ([`unit_estimate`]): parallelism
//! adapts to the budget (wide row groups load fewer at a time), and a part that could never fit
//! fails the load up front, naming the job and what it needs, before anything of it is loaded.

use berth_destination::JobPart;
use berth_model::read::{self, ParquetInfo};
use berth_model::{FileFormat, JobFile, LoadPackage};

const MIB: u64 = 1 << 20;

/// What berth's own reading of a part holds besides its row groups: two decoded batches in
/// flight (one being decoded, one being sent), the byte chunks between the store and the decoder,
/// and a send chunk (PostgreSQL's COPY).
pub const PART_OVERHEAD: u64 = 3 * read::TARGET_BATCH_BYTES + read::DEFAULT_CHUNK_BYTES as u64 + 2 * MIB;

/// The share of a budget an embedded engine (DuckDB) gets: what is left after the process's base
/// and a jobs' share of two parts of berth's own reading (jobs DuckDB does not read itself, and
/// the Arrow it is handed).
pub fn engine_share(budget: u64, base: u64) -> u64 {
    budget.saturating_sub(base).saturating_sub(2 * PART_OVERHEAD)
}

/// The memory one part of `job` holds while it loads: its largest compressed row group (fetched
/// whole before it is decoded) and berth's reading overhead; for other formats the overhead
/// (their decoders are bounded by the batch size). `info` is the file's footer for Parquet.
pub fn unit_estimate(part: &JobPart, info: Option<&ParquetInfo>) -> u64 {
    let Some(info) = info else {
        return PART_OVERHEAD;
    };
    let groups = part.row_groups().unwrap_or(0..info.row_groups);
    let largest = info.row_group_bytes
        [groups.start.min(info.row_group_bytes.len())..groups.end.min(info.row_group_bytes.len())]
        .iter()
        .copied()
        .max()
        .unwrap_or(0);
    largest + PART_OVERHEAD
}

/// The footer of `job` when it is a Parquet file (for [`unit_estimate`]).
pub async fn parquet_info(package: &LoadPackage, job: &JobFile) -> Option<ParquetInfo> {
    if job.name.format != FileFormat::Parquet {
        return None;
    }
    read::inspect_parquet(package, job).await.ok()
}

/// In MiB, rounded up, for messages.
pub fn mib(bytes: u64) -> u64 {
    bytes.div_ceil(MIB)
}

/// The process's resident memory now (Linux `VmRSS`), the base a budget starts from.
pub fn resident_now() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|l| l.starts_with("VmRSS:"))?.to_string();
            line.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .map_or(0, |kib| kib * 1024)
}

/// The error of a budget that cannot fit `needs`, with what the process and the embedded
/// database hold.
pub fn too_small(destination: &str, budget: u64, base: u64, engine: u64, needs: &str) -> berth_destination::Error {
    let engine = if engine > 0 {
        format!(" and the embedded database takes {} MiB", mib(engine))
    } else {
        String::new()
    };
    berth_destination::Error::Config {
        destination: destination.to_string(),
        reason: format!(
            "the memory budget of {} MiB is too small: {needs}, and the process holds {} MiB before the jobs{engine}; \
             raise --memory-budget",
            mib(budget),
            mib(base)
        ),
    }
}
