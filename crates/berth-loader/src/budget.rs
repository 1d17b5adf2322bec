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

/// What berth's own reading of a part holds besides its row groups: decoded batches in flight,
/// the byte chunks between the store and the decoder, the encoder's and the connection's send
/// buffers. Measured with `berth bench` into PostgreSQL (release build): each part loading at once
/// added 28–38 MiB to the peak for row groups of 3.6 MiB (nested shape), and a part of 40 MiB row
/// groups about 95 MiB (wide shape).
pub const PART_OVERHEAD: u64 = 32 * MIB;

/// A part an embedded engine reads itself (DuckDB's `read_parquet` of a local file): berth holds
/// next to nothing for it.
pub const ENGINE_PART: u64 = 4 * MIB;

/// What an embedded engine (DuckDB) holds beyond its `memory_limit`: its allocations outside the
/// buffer pool. Measured with `berth bench` into DuckDB: the wide shape peaked about 40 MiB above
/// base plus limit.
pub const ENGINE_OVERHEAD: u64 = 40 * MIB;

/// The `memory_limit` an embedded engine (DuckDB) gets from a budget: what is left after the
/// process's base, room for two of the largest part (`largest`), and the engine's own overhead.
pub fn engine_share(budget: u64, base: u64, largest: u64) -> u64 {
    budget
        .saturating_sub(base)
        .saturating_sub(2 * largest)
        .saturating_sub(ENGINE_OVERHEAD)
}

/// The memory one part of `job` holds while it loads. Parquet that berth reads: half again its
/// largest compressed row group (fetched whole, then decoded page by page) and the reading
/// overhead; Parquet the engine reads itself ([`ENGINE_PART`]); other formats the overhead (their
/// decoders are bounded by the batch size). `info` is the file's footer, for Parquet berth reads.
pub fn unit_estimate(part: &JobPart, info: Option<&ParquetInfo>, engine_reads: bool) -> u64 {
    if engine_reads {
        return ENGINE_PART;
    }
    let Some(info) = info else {
        return PART_OVERHEAD;
    };
    let groups = part
        .rows(&info.row_group_rows)
        .map_or(0..info.row_groups, |rows| info.row_groups_holding(&rows));
    let sizes = &info.row_group_bytes;
    let largest = sizes[groups.start.min(sizes.len())..groups.end.min(sizes.len())]
        .iter()
        .copied()
        .max()
        .unwrap_or(0);
    largest + largest / 2 + PART_OVERHEAD
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
    crate::summary::process_status_bytes("VmRSS:").unwrap_or(0)
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

/// Hands the heap's free pages back to the system (glibc's `malloc_trim`). The loader calls it as
/// each part ends: parts run on different worker threads, each with its own malloc arena, and
/// without it every arena keeps the high-water mark of the parts it ran (measured: a budget that
/// fitted one part at a time peaked at two parts' memory, and ten packages loaded in one process
/// peaked 25–55% above one).
pub fn return_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free heap pages to the kernel; it takes no pointers.
    unsafe {
        libc::malloc_trim(0);
    }
}
