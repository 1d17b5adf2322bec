//! Handing the memory DuckDB freed back to the system while it works.
//!
//! DuckDB allocates through its own jemalloc, which keeps freed pages resident for about a second
//! (`dirty_decay_ms` 1000) so that the next allocation can reuse them. A load frees and allocates
//! at a high rate (Parquet pages and dictionaries, vectors, 256 KiB blocks, on several threads
//! with their own arenas), so a second's worth of freed pages sits in the process's resident
//! memory next to what is live: the 5-table upsert of `berth bench` peaked at 206–246 MiB, of
//! which about 160 MiB was live. Freeing at once (`dirty_decay_ms` 0) costs 30% of the load time
//! in page faults. Instead, while DuckDB works, a thread looks at the process's resident memory
//! every [`PERIOD`] and purges every arena when it is above [`PURGE_ABOVE`]: the peak stays near
//! the live memory (168–171 MiB as one `berth load`) at no measurable cost, and loads that stay
//! below pay nothing.
//! When the last DuckDB call ends the arenas are purged once more, so memory a load freed does
//! not stay with the process.
//!
//! jemalloc's `mallctl` is looked up at run time (`duckdb_je_mallctl`, exported by the prebuilt
//! library): a DuckDB built without jemalloc simply gets no purges.

use std::ffi::{c_char, c_int, c_void};
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::Duration;

/// How often the purge thread looks at the process's resident memory while DuckDB works.
pub(crate) const PERIOD: Duration = Duration::from_millis(50);

/// Resident memory above which the purge thread hands DuckDB's freed pages back. Below it a
/// purge only costs time (pages handed back are faulted in again when reused): the wide bench
/// file on one DuckDB thread took 5.3–5.9 s purged every 100 ms and 4.7 s unpurged. Above it the
/// peak stays near the live memory: the 5-table upsert peaked at 206–246 MiB unpurged and at
/// 170–184 MiB purged every 100 ms, at the same speed.
pub(crate) const PURGE_ABOVE: u64 = 150 << 20;

type Mallctl = unsafe extern "C" fn(*const c_char, *mut c_void, *mut usize, *mut c_void, usize) -> c_int;

fn mallctl() -> Option<Mallctl> {
    static MALLCTL: OnceLock<Option<Mallctl>> = OnceLock::new();
    #[cfg(unix)]
    let find = || {
        // SAFETY: dlsym with RTLD_DEFAULT only looks a name up among the loaded objects.
        let symbol = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"duckdb_je_mallctl".as_ptr()) };
        // SAFETY: when present, the symbol is jemalloc's mallctl, whose signature is `Mallctl`.
        (!symbol.is_null()).then(|| unsafe { std::mem::transmute::<*mut c_void, Mallctl>(symbol) })
    };
    #[cfg(not(unix))]
    let find = || None;
    *MALLCTL.get_or_init(find)
}

/// Returns the freed pages of every arena of DuckDB's jemalloc to the system. False when there
/// is no jemalloc to ask.
pub(crate) fn purge() -> bool {
    let Some(mallctl) = mallctl() else { return false };
    // MALLCTL_ARENAS_ALL is 4096.
    // SAFETY: "arena.4096.purge" takes and returns nothing: null pointers and zero length.
    unsafe {
        mallctl(
            c"arena.4096.purge".as_ptr(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            0,
        ) == 0
    }
}

/// The process's resident memory (Linux: `/proc/self/statm`; elsewhere unknown, and the purge
/// thread purges every [`PERIOD`]).
#[cfg(not(target_os = "linux"))]
fn resident() -> Option<u64> {
    None
}

/// The process's resident memory (Linux: `/proc/self/statm`).
#[cfg(target_os = "linux")]
fn resident() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf only reads a system constant.
    let page = u64::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).ok()?;
    Some(pages * page)
}

/// Counts the DuckDB calls in flight; one thread for the whole process purges while any is.
#[derive(Default)]
struct Working {
    calls: Mutex<usize>,
    changed: Condvar,
}

fn working() -> &'static Working {
    static WORKING: OnceLock<&'static Working> = OnceLock::new();
    WORKING.get_or_init(|| {
        let working: &'static Working = Box::leak(Box::default());
        if mallctl().is_some() {
            let spawned = std::thread::Builder::new()
                .name("berth-duckdb-purge".into())
                .spawn(move || working.purge_while_busy());
            if let Err(e) = spawned {
                tracing::debug!("no allocator purge thread: {e}");
            }
        }
        working
    })
}

impl Working {
    fn purge_while_busy(&self) {
        let mut calls = self.calls.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        loop {
            while *calls == 0 {
                calls = self
                    .changed
                    .wait(calls)
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
            }
            drop(calls);
            std::thread::sleep(PERIOD);
            if resident().is_none_or(|bytes| bytes > PURGE_ABOVE) {
                purge();
            }
            calls = self.calls.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        }
    }
}

/// Held while DuckDB works on one call: the arenas are purged every [`PERIOD`] meanwhile, and
/// once more when the last call ends.
pub(crate) struct Busy(());

impl Busy {
    pub(crate) fn start() -> Self {
        let working = working();
        let mut calls = working.calls.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        *calls += 1;
        working.changed.notify_all();
        Self(())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let working = working();
        let mut calls = working.calls.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        *calls -= 1;
        if *calls == 0 {
            drop(calls);
            purge();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prebuilt_library_has_jemalloc_to_purge() {
        let _db = crate::raw::Database::open(":memory:").expect("duckdb");
        assert!(purge(), "duckdb_je_mallctl not found in the linked libduckdb");
        let busy = Busy::start();
        std::thread::sleep(PERIOD * 2);
        drop(busy);
        assert_eq!(*working().calls.lock().expect("lock"), 0);
    }
}
