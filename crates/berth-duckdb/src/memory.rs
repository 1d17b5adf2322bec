//! How much memory the embedded DuckDB may use.
//!
//! DuckDB keeps the blocks it wrote in its buffer pool until `memory_limit` (by default 80% of the
//! machine) forces them out, so a loader that leaves the limit alone grows with the rows it loads
//! (1 GB for a 1M-row, 50-column table). When the destination URL sets no `memory_limit`, berth
//! starts DuckDB at [`BASE_LIMIT`] and raises the limit only as far as the work needs:
//!
//! - before a Parquet job, to what DuckDB's threads need to decode one row group each
//!   ([`MemoryBudget::fit_row_groups`]): memory follows the widest row group, not the row count;
//!   where the row groups are so wide that DuckDB's threads would need more than
//!   [`THREADS_BUDGET`] between them, berth streams the job to DuckDB instead
//!   ([`MemoryBudget::scans_row_groups`]), fitted to DuckDB's own row groups of those rows, on
//!   fewer threads where they are still too wide (one such job at a time);
//! - after an out-of-memory error, doubling up to DuckDB's own default ([`MemoryBudget::grow`]),
//!   and the work runs again: berth's default never fails a load that DuckDB's default would pass.
//!
//! The limit never shrinks while the destination is open. A `memory_limit` in the URL is the
//! user's choice and is left alone, as is an in-memory database (whose data is its memory); so is
//! a `threads` in the URL.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use crate::raw::{Connection, Database, DuckError};

/// The limit berth starts DuckDB at: enough for DuckDB to stream narrow tables at full speed
/// (`berth bench`, 5M rows: same time as without a limit).
pub(crate) const BASE_LIMIT: u64 = 64 << 20;

/// What DuckDB's threads may hold between them to load row groups: each thread of a Parquet
/// INSERT holds about twice a decoded row group (the table's row group it fills, and the scan's
/// pages and dictionaries of all columns). The wide bench file's 56 MiB row groups peaked at
/// 290 MiB with two threads and 176 MiB with one; narrow files (8–19 MiB) keep every thread.
pub(crate) const THREADS_BUDGET: u64 = 128 << 20;

const MIB: u64 = 1 << 20;

/// The memory limit of one database, and whether berth may move it.
#[derive(Debug, Default)]
pub(crate) struct MemoryBudget {
    auto: Option<Automatic>,
}

#[derive(Debug)]
struct Automatic {
    limit: Mutex<u64>,
    /// DuckDB's own default, the most berth raises to (lower under a load's memory budget).
    ceiling: AtomicU64,
    threads: u64,
    /// What DuckDB's threads may hold between them for row groups ([`THREADS_BUDGET`], or less
    /// under a capped ceiling).
    threads_budget: AtomicU64,
    /// Whether berth may run a job on fewer threads (the URL set none).
    fit_threads: bool,
    /// Held by the one job running on fewer threads.
    narrowed: Mutex<()>,
}

impl MemoryBudget {
    /// A limit berth does not touch (the user's, or DuckDB's for an in-memory database).
    pub(crate) fn fixed() -> Self {
        Self::default()
    }

    /// Sets [`BASE_LIMIT`] on `db` and lets berth raise it as work needs; with `fit_threads`,
    /// berth also runs jobs of very wide row groups on fewer threads.
    pub(crate) fn automatic(db: &Database, fit_threads: bool) -> Result<Self, DuckError> {
        let conn = db.crate_connection()?;
        let (threads, default): (i64, String) = conn
            .query_row(
                "SELECT current_setting('threads')::BIGINT, current_setting('memory_limit')",
                [],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .map_err(|e| DuckError::new(berth_destination::ErrorKind::Terminal, e.to_string()))?;
        drop(conn);
        let ceiling = parse_size(&default).unwrap_or(u64::MAX).max(BASE_LIMIT);
        set_limit(&db.connect()?, BASE_LIMIT)?;
        Ok(Self {
            auto: Some(Automatic {
                limit: Mutex::new(BASE_LIMIT),
                ceiling: AtomicU64::new(ceiling),
                threads: u64::try_from(threads).unwrap_or(1).max(1),
                threads_budget: AtomicU64::new(THREADS_BUDGET),
                fit_threads,
                narrowed: Mutex::new(()),
            }),
        })
    }

    /// Never raises the automatic limit past `cap` (a load's memory budget's share for DuckDB),
    /// and lets threads hold at most half of it for row groups; lowers the limit now if it is
    /// higher. Returns the ceiling now, or 0 when berth does not manage the limit (the URL set
    /// one, or an in-memory database).
    pub(crate) fn cap(&self, db: &Database, cap: u64) -> Result<u64, DuckError> {
        let Some(auto) = &self.auto else { return Ok(0) };
        let ceiling = auto.ceiling.load(Ordering::Relaxed).min(cap).max(BASE_LIMIT);
        auto.ceiling.store(ceiling, Ordering::Relaxed);
        auto.threads_budget
            .store(THREADS_BUDGET.min(ceiling / 2), Ordering::Relaxed);
        let mut limit = lock(&auto.limit);
        if *limit > ceiling {
            set_limit(&db.connect()?, ceiling)?;
            *limit = ceiling;
        }
        Ok(ceiling)
    }

    /// The most berth lets DuckDB take (0 when berth does not manage the limit).
    pub(crate) fn ceiling(&self) -> u64 {
        self.auto
            .as_ref()
            .map_or(0, |auto| auto.ceiling.load(Ordering::Relaxed))
    }

    /// The limit now (0 when berth does not manage it); pass it to [`Self::grow`] after a failure.
    pub(crate) fn current(&self) -> u64 {
        self.auto.as_ref().map_or(0, |auto| *lock(&auto.limit))
    }

    /// Fits DuckDB to a Parquet job whose widest row group decodes to `decoded` bytes: the
    /// threads, so that they hold no more than [`THREADS_BUDGET`] between them (waiting while
    /// another job runs on fewer threads), then the limit, raised to one row group per thread:
    /// what the Parquet scan keeps in the buffer pool while each thread fills a row group (the
    /// wide bench file's 56 MiB row groups fail below about 96 MiB with two threads, and load at
    /// full speed from 112 MiB; twice that only cost 90 MiB more resident memory). A file that
    /// needs more gets it through [`Self::grow`]. Keep the result until the job ended: dropping
    /// it gives DuckDB its threads back.
    pub(crate) fn fit_row_groups<'a>(&'a self, db: &'a Database, decoded: u64) -> Result<Fitted<'a>, DuckError> {
        let Some(auto) = &self.auto else {
            return Ok(Fitted { narrowed: None });
        };
        let threads = auto.threads_for(decoded);
        let narrowed = if threads < auto.threads {
            let turn = lock(&auto.narrowed);
            set_threads(&db.connect()?, threads)?;
            tracing::debug!(
                "DuckDB runs a job of {} MiB row groups on {threads} of {} threads",
                decoded.div_ceil(MIB),
                auto.threads
            );
            Some(Narrowed {
                _turn: turn,
                db,
                running: threads,
                threads: auto.threads,
            })
        } else {
            None
        };
        let need = decoded
            .saturating_mul(threads)
            .min(auto.ceiling.load(Ordering::Relaxed));
        let mut limit = lock(&auto.limit);
        if need > *limit {
            set_limit(&db.connect()?, need)?;
            tracing::debug!(
                "DuckDB memory_limit raised to {} MiB for row groups of {} MiB",
                need.div_ceil(MIB),
                decoded.div_ceil(MIB)
            );
            *limit = need;
        }
        Ok(Fitted { narrowed })
    }

    /// Whether DuckDB's own Parquet scan should read row groups of `decoded` bytes: only where
    /// all of DuckDB's threads may scan them, each holding about two, within what the threads may
    /// hold between them ([`THREADS_BUDGET`], less under a load's budget). Row groups too wide
    /// for that are read by berth, page by page, and streamed to DuckDB: its scan on fewer
    /// threads would hold as much and run on one core, where berth's decoding takes another.
    /// dlt's row groups of 1,048,576 rows of 50 mixed columns decode to about 450 MiB (DuckDB's
    /// scan of one peaked at 431 MiB); `berth bench --shape wide`'s row groups of 131,072 rows,
    /// 56 MiB, loaded in 4.28–4.49 s at 176 MiB scanned on one thread and in 3.81–3.87 s at
    /// 197–199 MiB streamed. Always true where the user set `memory_limit` or `threads`: the
    /// scan is theirs to size.
    pub(crate) fn scans_row_groups(&self, decoded: u64) -> bool {
        self.auto
            .as_ref()
            .is_none_or(|auto| !auto.fit_threads || auto.fits_all_threads(decoded))
    }

    /// After DuckDB ran out of memory while the limit was `seen`: doubles it (up to DuckDB's own
    /// default). True when the work should run again: the limit is now higher than `seen`.
    pub(crate) fn grow(&self, conn: &Connection, seen: u64, context: &str) -> Result<bool, DuckError> {
        let Some(auto) = &self.auto else { return Ok(false) };
        let mut limit = lock(&auto.limit);
        if *limit > seen {
            return Ok(true);
        }
        let ceiling = auto.ceiling.load(Ordering::Relaxed);
        if *limit >= ceiling {
            return Ok(false);
        }
        let raised = limit.saturating_mul(2).min(ceiling);
        set_limit(conn, raised)?;
        tracing::warn!(
            "{context}: DuckDB needed more than {} MiB; memory_limit raised to {} MiB and the work runs again \
             (set ?memory_limit= in the destination URL to choose the limit yourself)",
            limit.div_ceil(MIB),
            raised.div_ceil(MIB)
        );
        *limit = raised;
        Ok(true)
    }

    /// Runs `work`; each time it fails for lack of memory under berth's limit, [`Self::grow`]s the
    /// limit and runs it again. Work that cannot run twice (`rerun` false: it consumed an Arrow
    /// stream) still grows the limit, then returns the error for the caller's retry to rerun under
    /// it. `context` names the failing work in the warning.
    pub(crate) fn retry_on_oom<T>(
        &self,
        db: &Database,
        rerun: bool,
        context: impl Fn() -> String,
        mut work: impl FnMut() -> Result<T, DuckError>,
    ) -> Result<T, DuckError> {
        loop {
            let seen = self.current();
            match work() {
                Err(e) if e.out_of_memory => {
                    let grown = db.connect().and_then(|conn| self.grow(&conn, seen, &context()));
                    if rerun && matches!(grown, Ok(true)) {
                        continue;
                    }
                    return Err(e);
                }
                other => return other,
            }
        }
    }
}

impl Automatic {
    /// Whether every thread may hold two row groups of `decoded` bytes within the threads' budget.
    fn fits_all_threads(&self, decoded: u64) -> bool {
        decoded.saturating_mul(2).saturating_mul(self.threads) <= self.threads_budget.load(Ordering::Relaxed)
    }

    /// The threads a job of `decoded`-byte row groups runs on: as many as fit [`THREADS_BUDGET`]
    /// at two row groups each, at least one.
    fn threads_for(&self, decoded: u64) -> u64 {
        if !self.fit_threads {
            return self.threads;
        }
        (self.threads_budget.load(Ordering::Relaxed) / decoded.saturating_mul(2).max(1)).clamp(1, self.threads)
    }
}

/// A Parquet job fitted by [`MemoryBudget::fit_row_groups`].
#[must_use = "dropping it ends the job's fitting at once"]
pub(crate) struct Fitted<'a> {
    /// Held for its `Drop`.
    #[cfg_attr(not(test), expect(dead_code, reason = "held for its Drop; read only by tests"))]
    narrowed: Option<Narrowed<'a>>,
}

impl Fitted<'_> {
    /// DuckDB's threads for this job, when berth lowered them for it.
    #[cfg(test)]
    pub(crate) fn threads(&self) -> Option<u64> {
        self.narrowed.as_ref().map(|n| n.running)
    }
}

struct Narrowed<'a> {
    _turn: MutexGuard<'a, ()>,
    db: &'a Database,
    /// The threads the job runs on.
    #[cfg_attr(not(test), expect(dead_code, reason = "read only by tests"))]
    running: u64,
    /// What to set back.
    threads: u64,
}

impl Drop for Narrowed<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.db.connect().and_then(|conn| set_threads(&conn, self.threads)) {
            tracing::warn!("could not give DuckDB back its {} threads: {}", self.threads, e.message);
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn set_threads(conn: &Connection, threads: u64) -> Result<u64, DuckError> {
    conn.execute(&format!("SET threads = {threads}"))
}

fn set_limit(conn: &Connection, bytes: u64) -> Result<u64, DuckError> {
    conn.execute(&format!("SET memory_limit = '{}MiB'", bytes.div_ceil(MIB)))
}

/// DuckDB's rendering of a size (`18.8 GiB`, `512.0 MiB`, `100 bytes`) in bytes.
fn parse_size(text: &str) -> Option<u64> {
    let (number, unit) = text.trim().split_once(' ')?;
    let number: f64 = number.parse().ok()?;
    let scale = match unit {
        "bytes" | "byte" => 1u64,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "TiB" => 1 << 40,
        "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        _ => return None,
    };
    // Sizes are far below 2^53: the product is exact enough, and non-negative (`as` saturates).
    Some((number * scale as f64) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_as_duckdb_prints_them() {
        assert_eq!(parse_size("18.8 GiB"), Some((18.8 * f64::from(1u32 << 30)) as u64));
        assert_eq!(parse_size("512.0 MiB"), Some(512 << 20));
        assert_eq!(parse_size("100 bytes"), Some(100));
        assert_eq!(parse_size("1.5 GB"), Some(1_500_000_000));
        assert_eq!(parse_size("lots"), None);
        assert_eq!(parse_size("3 parsecs"), None);
    }

    #[test]
    fn berth_raises_its_own_limit_and_leaves_the_users_alone() {
        let db = Database::open(":memory:").expect("duckdb");
        let conn = db.connect().expect("connect");
        let budget = MemoryBudget::automatic(&db, false).expect("budget");
        assert_eq!(budget.current(), BASE_LIMIT);
        let limit = || {
            db.crate_connection()
                .expect("connect")
                .query_row("SELECT current_setting('memory_limit')", [], |r| r.get::<_, String>(0))
                .expect("setting")
        };
        assert_eq!(limit(), "64.0 MiB");

        // Narrow row groups fit the base limit; wide ones raise it (never lower it).
        drop(budget.fit_row_groups(&db, 6 << 20).expect("fit"));
        assert_eq!(budget.current(), BASE_LIMIT);
        let wide = budget.fit_row_groups(&db, 96 << 20).expect("fit");
        assert_eq!(wide.threads(), None, "the threads are left alone without fit_threads");
        drop(wide);
        let threads = budget.auto.as_ref().map(|a| a.threads).unwrap_or_default();
        assert_eq!(budget.current(), threads * (96 << 20));
        let fitted = budget.current();
        drop(budget.fit_row_groups(&db, 1 << 20).expect("fit"));
        assert_eq!(budget.current(), fitted);

        // An out-of-memory error doubles it once, however many jobs saw the old limit fail.
        assert!(budget.grow(&conn, fitted, "job a").expect("grow"));
        assert!(budget.grow(&conn, fitted, "job b").expect("grow"));
        assert_eq!(budget.current(), 2 * fitted);
        assert_eq!(limit(), format!("{}.0 MiB", 2 * fitted / MIB));

        let fixed = MemoryBudget::fixed();
        assert_eq!(fixed.current(), 0);
        assert!(!fixed.grow(&conn, 0, "job").expect("grow"));
        drop(fixed.fit_row_groups(&db, 1 << 30).expect("fit"));
        assert_eq!(limit(), format!("{}.0 MiB", 2 * fitted / MIB));
    }

    #[test]
    fn very_wide_row_groups_run_on_fewer_threads_one_job_at_a_time() {
        let db = Database::open(":memory:").expect("duckdb");
        db.connect()
            .expect("connect")
            .execute("SET threads = 4")
            .expect("threads");
        let budget = MemoryBudget::automatic(&db, true).expect("budget");
        let threads = || {
            db.crate_connection()
                .expect("connect")
                .query_row("SELECT current_setting('threads')::BIGINT", [], |r| r.get::<_, i64>(0))
                .expect("setting")
        };

        // 4 threads × 2 × 16 MiB fit the budget: nothing changes.
        let narrow = budget.fit_row_groups(&db, 16 << 20).expect("fit");
        assert_eq!((narrow.threads(), threads()), (None, 4));
        drop(narrow);
        // 2 × 32 MiB per thread: two threads, while the job runs; the limit fits two row groups.
        let wider = budget.fit_row_groups(&db, 32 << 20).expect("fit");
        assert_eq!((wider.threads(), threads()), (Some(2), 2));
        assert_eq!(budget.current(), 64 << 20);
        // A second narrowed job waits for the first one's turn.
        std::thread::scope(|scope| {
            let (started, waiting) = std::sync::mpsc::channel();
            let (budget, db, threads) = (&budget, &db, &threads);
            let second = scope.spawn(move || {
                started.send(()).expect("send");
                let widest = budget.fit_row_groups(db, 256 << 20).expect("fit");
                (widest.threads(), threads())
            });
            waiting.recv().expect("started");
            std::thread::sleep(std::time::Duration::from_millis(100));
            assert_eq!(threads(), 2, "the second job started before the first ended");
            drop(wider);
            assert_eq!(second.join().expect("second job"), (Some(1), 1));
        });
        // Every job ended: DuckDB has its threads back.
        assert_eq!(threads(), 4);
        assert_eq!(budget.current(), 256 << 20);
    }

    #[test]
    fn row_groups_wider_than_all_threads_may_hold_are_not_scanned_by_duckdb() {
        let db = Database::open(":memory:").expect("duckdb");
        db.connect()
            .expect("connect")
            .execute("SET threads = 2")
            .expect("threads");
        let budget = MemoryBudget::automatic(&db, true).expect("budget");
        // Two threads hold two row groups each within THREADS_BUDGET: up to 32 MiB each. Wider
        // ones would run on one thread: berth streams them instead.
        assert!(budget.scans_row_groups(THREADS_BUDGET / 4));
        assert!(!budget.scans_row_groups(THREADS_BUDGET / 4 + 1));
        // A load's memory budget lowers what the threads may hold.
        budget.cap(&db, 96 << 20).expect("cap");
        assert!(budget.scans_row_groups(12 << 20));
        assert!(!budget.scans_row_groups(13 << 20));
        // On one thread, row groups up to half of what it may hold.
        db.connect()
            .expect("connect")
            .execute("SET threads = 1")
            .expect("threads");
        let one = MemoryBudget::automatic(&db, true).expect("budget");
        assert!(one.scans_row_groups(THREADS_BUDGET / 2));
        assert!(!one.scans_row_groups(THREADS_BUDGET / 2 + 1));
        // The user's threads or memory limit: DuckDB's scan, whatever the row groups.
        let threads_given = MemoryBudget::automatic(&db, false).expect("budget");
        assert!(threads_given.scans_row_groups(1 << 30));
        assert!(MemoryBudget::fixed().scans_row_groups(1 << 30));
    }
}
