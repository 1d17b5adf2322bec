//! Terminal output: progress bars, the load summary, `package show`.

use std::sync::Mutex;

use anyhow::Result;
use berth::loader::{JobSummary, LoadSummary, PackageStatus, PackageSummary, Progress};
use berth::model::read::{self, ReadOptions};
use berth::model::{FileFormat, JobState, LoadPackage, PackageLocation};
use comfy_table::{Cell, CellAlignment, Table, presets::UTF8_FULL_CONDENSED};
use futures::TryStreamExt;
use indicatif::{ProgressBar, ProgressStyle};

/// A progress bar per package on a terminal; nothing otherwise.
#[derive(Debug)]
pub struct ProgressBars {
    enabled: bool,
    bar: Mutex<Option<ProgressBar>>,
    /// Rows and bytes read in this package so far (shown while jobs load).
    read: std::sync::atomic::AtomicU64,
    read_bytes: std::sync::atomic::AtomicU64,
}

impl ProgressBars {
    /// Bars shown when `enabled` (a terminal), else nothing.
    pub fn new(enabled: bool) -> Self {
        Self {
            enabled,
            bar: Mutex::new(None),
            read: std::sync::atomic::AtomicU64::new(0),
            read_bytes: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Clears the bar of the package loading, if any.
    pub fn finish(&self) {
        if let Some(bar) = self
            .bar
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
        {
            bar.finish_and_clear();
        }
    }
}

impl Progress for ProgressBars {
    fn package_started(&self, package: &LoadPackage, jobs: usize) {
        if !self.enabled {
            return;
        }
        let bar = ProgressBar::new(jobs as u64);
        bar.set_style(
            ProgressStyle::with_template("{spinner} {prefix} [{bar:30}] {pos}/{len} jobs {msg} ({elapsed})")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar.set_prefix(package.load_id.to_string());
        self.read.store(0, std::sync::atomic::Ordering::Relaxed);
        self.read_bytes.store(0, std::sync::atomic::Ordering::Relaxed);
        bar.enable_steady_tick(std::time::Duration::from_millis(120));
        *self.bar.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(bar);
    }

    fn batch_read(&self, job: &str, rows: u64, bytes: u64) {
        if !self.enabled {
            return;
        }
        use std::sync::atomic::Ordering::Relaxed;
        let total = self.read.fetch_add(rows, Relaxed) + rows;
        let total_bytes = self.read_bytes.fetch_add(bytes, Relaxed) + bytes;
        if let Some(bar) = self
            .bar
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_ref()
        {
            let table = job.split('.').next().unwrap_or(job);
            bar.set_message(format!("{table}: {total} rows, {} read", human_bytes(total_bytes)));
        }
    }

    fn job_finished(&self, job: &JobSummary) {
        if let Some(bar) = self
            .bar
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_ref()
        {
            bar.inc(1);
            bar.set_message(job.table.clone());
        }
    }

    fn package_finished(&self, _summary: &PackageSummary) {
        self.finish();
    }
}

fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

fn right(text: impl ToString) -> Cell {
    Cell::new(text).set_alignment(CellAlignment::Right)
}

/// Prints a load's summary on standard output.
pub(crate) fn print_summary(summary: &LoadSummary) {
    print!("{}", summary_text(summary));
}

/// Prints a load's summary on standard error (when standard output carries data).
pub(crate) fn eprint_summary(summary: &LoadSummary) {
    eprint!("{}", summary_text(summary));
}

fn summary_text(summary: &LoadSummary) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    for package in &summary.packages {
        let status = match package.status {
            PackageStatus::Loaded => "LOADED",
            PackageStatus::LoadedWithFailedJobs => {
                "LOADED WITH FAILED JOBS (their rows are not loaded; see failed_jobs/)"
            }
            PackageStatus::AlreadyLoaded => "ALREADY LOADED (nothing to do)",
            PackageStatus::Pending => "PENDING (jobs failed; load it again to retry them)",
            PackageStatus::Interrupted => "INTERRUPTED (load it again to resume)",
        };
        let _ = writeln!(
            out,
            "Package {} ({}) into dataset `{}` at {}: {status}",
            package.load_id, package.schema, package.dataset, package.destination
        );
        if package.status == PackageStatus::AlreadyLoaded {
            continue;
        }
        let mut table = Table::new();
        table.load_preset(UTF8_FULL_CONDENSED);
        table.set_header(vec!["table", "jobs", "rows", "bytes", "time", "rows/s"]);
        for (name, t) in &package.tables {
            let secs = t.seconds.as_secs_f64();
            let rate = if secs > 0.0 {
                format!("{:.0}", t.rows as f64 / secs)
            } else {
                "-".into()
            };
            let jobs = if t.failed_jobs > 0 {
                format!("{} ({} failed)", t.jobs, t.failed_jobs)
            } else {
                t.jobs.to_string()
            };
            table.add_row(vec![
                Cell::new(name),
                right(jobs),
                right(t.rows),
                right(human_bytes(t.bytes)),
                right(format!("{secs:.2}s")),
                right(rate),
            ]);
        }
        let _ = writeln!(out, "{table}");
        let m = &package.migration;
        if !m.created_tables.is_empty() || !m.added_columns.is_empty() {
            let _ = writeln!(
                out,
                "Schema: {} table(s) created, {} column(s) added",
                m.created_tables.len(),
                m.added_columns.len()
            );
        }
        if package.interrupted_jobs > 0 {
            let _ = writeln!(
                out,
                "{} job(s) were left unfinished by the interruption; their committed parts stay",
                package.interrupted_jobs
            );
        }
        if package.previously_completed_jobs > 0 {
            let _ = writeln!(
                out,
                "{} job(s) had been loaded by an earlier run",
                package.previously_completed_jobs
            );
        }
        for failed in package.failed_jobs() {
            let _ = writeln!(
                out,
                "FAILED {}: {}",
                failed.file,
                failed.error.as_deref().unwrap_or_default()
            );
        }
        let p = &package.phases;
        let _ = writeln!(
            out,
            "{} rows in {:.2}s (migrate {:.2}s, jobs {:.2}s, follow-up {:.2}s, commit {:.2}s; summed over job parts: \
             decode {:.2}s, encode {:.2}s, transfer {:.2}s)",
            package.rows(),
            package.elapsed.as_secs_f64(),
            p.migrate.as_secs_f64(),
            p.jobs.as_secs_f64(),
            p.followup.as_secs_f64(),
            p.commit.as_secs_f64(),
            p.decode.as_secs_f64(),
            p.encode.as_secs_f64(),
            p.transfer.as_secs_f64()
        );
    }
    if let Some(peak) = summary.peak_rss_bytes {
        let _ = writeln!(out, "Peak memory (RSS): {}", human_bytes(peak));
    }
    out
}

/// The tables with jobs, and the jobs, of `package` as two tables.
fn print_package_tables(package: &LoadPackage, jobs: &[serde_json::Value]) {
    let mut tables = Table::new();
    tables.load_preset(UTF8_FULL_CONDENSED);
    tables.set_header(vec!["table", "parent", "disposition", "columns"]);
    let with_jobs: std::collections::BTreeSet<&str> = package.jobs.iter().map(|j| j.name.table.as_str()).collect();
    for t in package
        .schema
        .tables
        .values()
        .filter(|t| with_jobs.contains(t.name.as_str()))
    {
        tables.add_row(vec![
            Cell::new(&t.name),
            Cell::new(t.parent.as_deref().unwrap_or("-")),
            Cell::new(package.schema.write_disposition(t).as_str()),
            right(t.complete_columns().count()),
        ]);
    }
    println!("{tables}");
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED);
    table.set_header(vec!["job file", "table", "format", "state", "rows", "bytes"]);
    for job in jobs {
        table.add_row(vec![
            Cell::new(job["file"].as_str().unwrap_or_default()),
            Cell::new(job["table"].as_str().unwrap_or_default()),
            Cell::new(job["format"].as_str().unwrap_or_default()),
            Cell::new(job["state"].as_str().unwrap_or_default()),
            right(job["rows"].as_u64().map_or_else(|| "-".into(), |r| r.to_string())),
            right(human_bytes(job["bytes"].as_u64().unwrap_or_default())),
        ]);
    }
    println!("{table}");
}

/// Rows in a data job file (CSV read as `options` say); `None` for other formats.
async fn count_rows(package: &LoadPackage, job: &berth::model::JobFile, options: &ReadOptions) -> Result<Option<u64>> {
    Ok(match job.name.format {
        FileFormat::Parquet => Some(read::inspect_parquet(package, job).await?.num_rows),
        f if f.is_data() => {
            let reader = read::open_job(package, job, options).await?;
            Some(
                reader
                    .stream
                    .try_fold(0u64, |n, b| async move { Ok(n + b.num_rows() as u64) })
                    .await?,
            )
        }
        _ => None,
    })
}

/// `berth package show --json`'s document: the package, its schema, state and jobs (with rows,
/// and each failed job's error).
pub async fn package_document(location: &str, storage: &berth::model::StorageConfig) -> Result<serde_json::Value> {
    let (package, jobs, state) = package_jobs(location, storage).await?;
    Ok(serde_json::json!({
        "load_id": package.load_id,
        "location": package.location.to_string(),
        "schema": package.schema.name,
        "schema_version": package.schema.version,
        "schema_version_hash": package.schema.version_hash,
        "dataset": package.default_dataset(),
        "created_at": package.state.created_at.map(|t| t.to_rfc3339()),
        "state": state,
        "pending_transitions": package.pending_transitions.len(),
        "jobs": jobs,
    }))
}

/// A package, its jobs as JSON objects and its state in words.
async fn package_jobs(
    location: &str,
    storage: &berth::model::StorageConfig,
) -> Result<(LoadPackage, Vec<serde_json::Value>, String)> {
    let location = PackageLocation::parse_with(location, storage)?;
    let package = LoadPackage::open(location.clone()).await?;
    let options = ReadOptions {
        csv: crate::csv_format_for(None, Some(&location), &Default::default()).await?,
        ..ReadOptions::default()
    };
    let mut jobs = Vec::new();
    for job in &package.jobs {
        // A file that cannot be read is shown, not fatal: `package show` is how one finds it.
        let (rows, unreadable) = match count_rows(&package, job, &options).await {
            Ok(rows) => (rows, None),
            Err(e) => (None, Some(e.to_string())),
        };
        let failure = package.job_failure(job).await?;
        jobs.push(serde_json::json!({
            "file": job.name.to_string(),
            "path": job.relative_path(),
            "table": job.name.table,
            "format": job.name.format.as_str(),
            "state": job.state.to_string(),
            "retry_count": job.name.retry_count,
            "bytes": job.size,
            "rows": rows,
            "unreadable": unreadable,
            "error": failure.as_ref().map(|f| &f.message),
            "error_kind": failure.as_ref().map(|f| f.kind),
        }));
    }
    let state = match (&package.completed, package.jobs_in(JobState::New).count()) {
        (Some(marker), _) => marker.clone(),
        (None, 0) if !package.jobs.is_empty() => "jobs done, not committed".into(),
        (None, _) => "pending".into(),
    };
    Ok((package, jobs, state))
}

pub(crate) async fn show_package(location: &str, storage: &berth::model::StorageConfig, json: bool) -> Result<()> {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&package_document(location, storage).await?)?
        );
        return Ok(());
    }
    let (package, jobs, state) = package_jobs(location, storage).await?;
    println!("Package {} at {}", package.load_id, package.location);
    println!(
        "Schema {} v{} ({}), dataset {}, created {}",
        package.schema.name,
        package.schema.version,
        package.schema.version_hash,
        package.default_dataset(),
        package.state.created_at.map_or_else(|| "-".into(), |t| t.to_rfc3339())
    );
    println!("State: {state}");
    print_package_tables(&package, &jobs);
    for job in &jobs {
        if let Some(problem) = job["unreadable"].as_str() {
            println!("UNREADABLE {}: {problem}", job["path"].as_str().unwrap_or_default());
        }
        let Some(error) = job["error"].as_str() else { continue };
        let what = match (job["state"].as_str(), job["error_kind"].as_str()) {
            (Some("failed"), _) => "FAILED",
            (_, Some("terminal")) => "FAILED (queued again)",
            _ => "RETRYING after a transient error",
        };
        println!("{what} {}:", job["path"].as_str().unwrap_or_default());
        for line in error.lines() {
            println!("  {line}");
        }
    }
    Ok(())
}

/// The benchmark report as a table.
pub(crate) fn print_bench(report: &berth_bench::BenchReport) {
    let files = if report.row_group_rows == 0 {
        format!("{} of job files", human_bytes(report.parquet_bytes))
    } else {
        format!(
            "{} of Parquet, row groups of {} rows",
            human_bytes(report.parquet_bytes),
            report.row_group_rows
        )
    };
    println!(
        "{} rows of `{}`, {} ({files}) into {}, {} parallel",
        report.rows, report.shape, report.disposition, report.destination, report.parallel_jobs
    );
    let mut table = Table::new();
    table.load_preset(comfy_table::presets::UTF8_BORDERS_ONLY);
    table.set_header(vec![
        "case", "min s", "median s", "max s", "rows/s", "MB/s", "CPU s", "peak RSS", "ratio",
    ]);
    for case in &report.cases {
        table.add_row(vec![
            Cell::new(&case.name),
            right(format!("{:.2}", case.seconds.min)),
            right(format!("{:.2}", case.seconds.median)),
            right(format!("{:.2}", case.seconds.max)),
            right(format!("{:.0}", case.rows_per_second)),
            right(format!("{:.1}", case.mb_per_second)),
            right(case.cpu_seconds.map_or_else(|| "-".into(), |s| format!("{s:.2}"))),
            right(case.peak_rss_bytes.map_or_else(|| "-".into(), human_bytes)),
            right(case.berth_ratio.map_or_else(|| "-".into(), |r| format!("{r:.2}x"))),
        ]);
    }
    println!("{table}");
    for case in &report.cases {
        match case.row_count_parity {
            Some(true) => println!("{}: its tables ended with berth's row counts", case.name),
            Some(false) => println!(
                "{}: its tables did NOT end with berth's row counts (see the log)",
                case.name
            ),
            None => {}
        }
    }
    let with_phases: Vec<_> = report.cases.iter().filter(|c| !c.phases.is_empty()).collect();
    if let Some(first) = with_phases.first() {
        println!("Where berth's time goes (median seconds; decode, encode and transfer are summed over job parts):");
        let mut phases = Table::new();
        phases.load_preset(comfy_table::presets::UTF8_BORDERS_ONLY);
        let mut header = vec!["case".to_string()];
        header.extend(first.phases.iter().map(|p| p.phase.clone()));
        phases.set_header(header);
        for case in with_phases {
            let mut row = vec![Cell::new(&case.name)];
            row.extend(case.phases.iter().map(|p| right(format!("{:.2}", p.seconds))));
            phases.add_row(row);
        }
        println!("{phases}");
    }
}

/// Appends the phases of a planned load to `out`: one statement per line group, each ending in
/// `;`, phases and jobs as `--` comments.
pub(crate) fn print_plan(out: &mut String, load_id: &str, dialect: &str, phases: &[berth::loader::explain::Phase]) {
    use std::fmt::Write as _;
    let _ = writeln!(out, "-- package {load_id}, {dialect}");
    for phase in phases {
        let _ = writeln!(out, "\n-- {}", phase.title);
        for step in &phase.steps {
            match step {
                berth::loader::explain::Step::Sql(statement) => {
                    let _ = writeln!(out, "{statement};");
                }
                berth::loader::explain::Step::Note(note) => {
                    let _ = writeln!(out, "-- {note}");
                }
            }
        }
    }
}

/// What `berth compact` did, a table per row.
pub(crate) fn print_compaction(dataset: &str, compacted: &[berth::delta::TableCompaction]) {
    if compacted.is_empty() {
        println!("{dataset}: no Delta tables to compact");
        return;
    }
    let mut table = Table::new();
    table.load_preset(comfy_table::presets::UTF8_BORDERS_ONLY);
    table.set_header(vec!["table", "files merged", "into", "files now", "version"]);
    for done in compacted {
        let (merged, into) = if done.files_removed == 0 {
            ("nothing to merge".to_string(), "-".to_string())
        } else {
            (
                format!("{} ({})", done.files_removed, human_bytes(done.bytes_removed)),
                format!("{} ({})", done.files_added, human_bytes(done.bytes_added)),
            )
        };
        table.add_row(vec![
            Cell::new(format!("{dataset}.{}", done.table)),
            right(merged),
            right(into),
            right(done.files_after.to_string()),
            right(done.version.to_string()),
        ]);
    }
    println!("{table}");
}
