//! Runs a benchmark: generate once, then per run load with berth and measure the ceiling.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth::destination::Destination;
use berth::duckdb::DuckDbDestination;
use berth::loader::{Loader, LoaderOptions, PackageStatus, PhaseTimes};
use berth::model::{PackageLocation, StorageConfig};
use berth::plan::sql;
use berth::postgres::PostgresDestination;
use object_store::ObjectStoreExt;
use serde::Serialize;

use crate::process::LoadCommand;
use crate::synth::{Disposition, Shape, SyntheticPackage};
use crate::{Error, Result};

/// What to benchmark.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// Destination URL (as for `berth load --destination`).
    pub destination: String,
    /// Folder for the generated package and per-run copies (hard links).
    pub work_dir: PathBuf,
    /// Table shape.
    pub shape: Shape,
    /// Rows in the package.
    pub rows: u64,
    /// Rows per Parquet row group.
    pub row_group_rows: usize,
    /// Seed of the generated data.
    pub seed: u64,
    /// Timed runs; min, median and max are reported.
    pub runs: usize,
    /// Also measure the destination's own limit.
    pub ceiling: bool,
    /// What to measure. `Append`: one load into an empty dataset, next to the destination's
    /// ceiling. `Merge`: (a) the first merge into an empty dataset, then (b) a delta of
    /// `delta_rows` (half updates of existing ids, half new ids). `Replace`: (a) the first replace
    /// into an empty dataset, then (b) a full refresh of `rows` over it. Each step runs next to a
    /// plain append of the same rows.
    pub disposition: Disposition,
    /// Rows of the merge delta.
    pub delta_rows: u64,
    /// How berth loads.
    pub loader: LoaderOptions,
    /// Also load the append package from this bucket prefix (`s3://bucket/prefix`, `gs://…`,
    /// `az://…`), next to the same load from local disk in the same runs. The package is uploaded
    /// there once (multipart) and reused.
    pub bucket: Option<String>,
    /// Storage options for `bucket` (see [`berth::model::store`]).
    pub storage: StorageConfig,
    /// Benchmark this package, or folder of packages (a dlt pipeline's `load/normalized`),
    /// instead of a generated one: each run loads a copy (hard links) into a fresh dataset. The
    /// shape, rows and disposition are the package's own.
    pub package: Option<PathBuf>,
    /// Also run dlt's own load step of the same packages in the same runs (see [`crate::dlt`]):
    /// PostgreSQL and DuckDB.
    pub vs_dlt: Option<crate::dlt::DltRunner>,
    /// Run each timed load as this `berth load` process (the CLI's `berth bench` does), so that
    /// its peak memory is that of a user's load (see [`crate::process`]); `None` loads inside this
    /// process, and the peak then includes what this process holds besides the load.
    pub load_command: Option<LoadCommand>,
}

impl BenchConfig {
    /// Defaults: narrow shape, 1,000,000 rows, row groups of 131,072 rows, seed 0, 3 runs, with
    /// the ceiling.
    pub fn new(destination: impl Into<String>, work_dir: impl Into<PathBuf>) -> Self {
        Self {
            destination: destination.into(),
            work_dir: work_dir.into(),
            shape: Shape::Narrow,
            rows: 1_000_000,
            row_group_rows: 131_072,
            seed: 0,
            runs: 3,
            ceiling: true,
            disposition: Disposition::Append,
            delta_rows: 500_000,
            loader: LoaderOptions::default(),
            bucket: None,
            storage: StorageConfig::new(),
            package: None,
            vs_dlt: None,
            load_command: None,
        }
    }

    /// Rows in the package.
    pub fn with_rows(mut self, rows: u64) -> Self {
        self.rows = rows;
        self
    }

    /// Timed runs.
    pub fn with_runs(mut self, runs: usize) -> Self {
        self.runs = runs.max(1);
        self
    }
}

/// Min, median and max of the runs, in seconds.
#[derive(Debug, Clone, Serialize)]
pub struct Stats {
    /// Fastest run.
    pub min: f64,
    /// Median run.
    pub median: f64,
    /// Slowest run.
    pub max: f64,
    /// Every run, in order.
    pub runs: Vec<f64>,
}

impl Stats {
    fn from(samples: &[Duration]) -> Self {
        let runs: Vec<f64> = samples.iter().map(Duration::as_secs_f64).collect();
        let mut sorted = runs.clone();
        sorted.sort_by(f64::total_cmp);
        let median = match sorted.len() {
            0 => 0.0,
            n if n % 2 == 1 => sorted[n / 2],
            n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
        };
        Self {
            min: sorted.first().copied().unwrap_or_default(),
            median,
            max: sorted.last().copied().unwrap_or_default(),
            runs,
        }
    }
}

/// One measured case.
#[derive(Debug, Clone, Serialize)]
pub struct CaseReport {
    /// What was measured.
    pub name: String,
    /// Wall time.
    pub seconds: Stats,
    /// Bytes of the job files loaded per run.
    pub bytes: u64,
    /// Rows per second at the median.
    pub rows_per_second: f64,
    /// Parquet megabytes (10^6 bytes) per second at the median.
    pub mb_per_second: f64,
    /// Peak resident memory of the load (highest over the runs): of its `berth load` process with
    /// a [`LoadCommand`], else of this process during the load; `None` for the destination's
    /// ceiling, whose work happens in the server or a library call.
    pub peak_rss_bytes: Option<u64>,
    /// The ratio that puts this case in context: for a ceiling, berth's median over the
    /// ceiling's; for an append next to a merge or replace, the merge's (replace's) median over the
    /// append's; for a load from a bucket, its median over the same load from local disk.
    pub berth_ratio: Option<f64>,
    /// Where berth's time went: each phase's median over the runs, in seconds, in phase order
    /// (see [`berth::loader::PhaseTimes`]); empty for ceilings.
    pub phases: Vec<PhaseMedian>,
    /// CPU seconds (user and system) of the load process at the median, where it was a process
    /// of its own.
    pub cpu_seconds: Option<f64>,
    /// Rows each run loaded (every run must load the same: row-count parity); empty for
    /// ceilings.
    pub rows_loaded: Vec<u64>,
    /// For dlt's case (`--vs dlt`): did dlt's tables end with the rows berth's did, in every run?
    pub row_count_parity: Option<bool>,
}

/// One phase's median over the runs.
#[derive(Debug, Clone, Serialize)]
pub struct PhaseMedian {
    /// `migrate`, `jobs`, `decode`, `encode`, `transfer`, `followup` or `commit`.
    pub phase: String,
    /// Median seconds.
    pub seconds: f64,
}

/// Each phase's median over `runs`.
fn phase_medians(runs: &[PhaseTimes]) -> Vec<PhaseMedian> {
    let Some(first) = runs.first() else {
        return Vec::new();
    };
    first
        .named()
        .iter()
        .enumerate()
        .map(|(index, (name, _))| {
            let samples: Vec<Duration> = runs
                .iter()
                .map(|r| Duration::from_secs_f64(r.named()[index].1))
                .collect();
            PhaseMedian {
                phase: (*name).to_string(),
                seconds: Stats::from(&samples).median,
            }
        })
        .collect()
}

impl CaseReport {
    /// A case from its run times, with throughput at the median over `rows` and `bytes`.
    fn measured(name: String, times: &[Duration], rows: u64, bytes: u64, rss: Option<u64>) -> Self {
        let seconds = Stats::from(times);
        let per_second = |amount: f64| {
            if seconds.median > 0.0 {
                amount / seconds.median
            } else {
                0.0
            }
        };
        Self {
            name,
            bytes,
            rows_per_second: per_second(rows as f64),
            mb_per_second: per_second(bytes as f64 / 1e6),
            seconds,
            peak_rss_bytes: rss,
            berth_ratio: None,
            phases: Vec::new(),
            cpu_seconds: None,
            rows_loaded: Vec::new(),
            row_count_parity: None,
        }
    }

    /// A case of berth's loads: times, the highest peak, phases and CPU time over `runs`.
    fn from_runs(name: String, runs: &[Timed], rows: u64, bytes: u64) -> Self {
        let times: Vec<Duration> = runs.iter().map(|r| r.elapsed).collect();
        let rss = runs.iter().filter_map(|r| r.rss).max();
        let phases: Vec<PhaseTimes> = runs.iter().map(|r| r.phases).collect();
        let cpu: Vec<Duration> = runs
            .iter()
            .filter_map(|r| r.cpu_seconds)
            .map(Duration::from_secs_f64)
            .collect();
        let mut case = Self::measured(name, &times, rows, bytes, rss);
        case.phases = phase_medians(&phases);
        case.cpu_seconds = (!cpu.is_empty()).then(|| Stats::from(&cpu).median);
        case.rows_loaded = runs.iter().map(|r| r.rows).collect();
        case
    }
}

/// A benchmark's results.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    /// Destination, without credentials.
    pub destination: String,
    /// Shape of the table: `narrow`, `wide`, `nested` or the schema file's name.
    pub shape: String,
    /// `append`, `replace:<strategy>` or `merge:<strategy>`.
    pub disposition: String,
    /// Rows loaded per run.
    pub rows: u64,
    /// Size of the Parquet job files.
    pub parquet_bytes: u64,
    /// Row groups in the files.
    pub row_group_rows: usize,
    /// Loader parallelism.
    pub parallel_jobs: usize,
    /// The cases: berth first, then dlt's and the ceiling.
    pub cases: Vec<CaseReport>,
    /// The effective configuration of the runs (berth's version and loader options, how loads
    /// ran, dlt's Python and version with `--vs dlt`), as the galaxy-io harness records it.
    pub configuration: BTreeMap<String, serde_json::Value>,
}

/// The effective configuration of `config`'s runs (see [`BenchReport::configuration`]).
fn configuration(config: &BenchConfig) -> BTreeMap<String, serde_json::Value> {
    use serde_json::json;
    let loader = &config.loader;
    let mut out = BTreeMap::from([
        ("berth_version".to_string(), json!(env!("CARGO_PKG_VERSION"))),
        ("parallel_jobs".to_string(), json!(loader.parallel_jobs)),
        ("batch_size".to_string(), json!(loader.read_options.batch_size)),
        ("split_min_bytes".to_string(), json!(loader.split_min_bytes)),
        ("max_attempts".to_string(), json!(loader.max_attempts)),
        (
            "replace_strategy".to_string(),
            json!(loader.replace_strategy.map(|s| s.to_string())),
        ),
        (
            "load_process".to_string(),
            json!(if config.load_command.is_some() {
                "berth load, one process per load"
            } else {
                "in the bench's process"
            }),
        ),
        ("runs".to_string(), json!(config.runs)),
        (
            "cores".to_string(),
            json!(std::thread::available_parallelism().map_or(0, |n| n.get())),
        ),
    ]);
    if let Some(runner) = &config.vs_dlt {
        out.insert("dlt_version".into(), json!(runner.version));
        out.insert("dlt_python".into(), json!(runner.python().display().to_string()));
    }
    out
}

/// The destination measured. PostgreSQL's connections are shared by every step; DuckDB, which runs
/// inside berth's process, is opened afresh for each step and closed after it, as each `berth load`
/// process opens it once: no run starts with memory (cache, a raised memory limit) an earlier
/// run left behind, and a load's peak includes DuckDB's checkpoint at close. A Delta lake
/// (`delta:…`) has no server to measure against: its runs have no ceiling (benches/python/delta.py
/// sets it next to delta-rs's Python writer and dlt's own Delta load).
enum Target {
    Postgres(Arc<PostgresDestination>),
    DuckDb(String),
    Delta(String),
}

impl Target {
    fn open(url: &str, storage: &StorageConfig) -> Result<Self> {
        let scheme = url.split(':').next().unwrap_or_default();
        match scheme {
            "postgres" | "postgresql" => Ok(Self::Postgres(Arc::new(PostgresDestination::from_url(url)?))),
            "duckdb" => {
                // Checked now, so a bad URL fails before any package is generated.
                drop(DuckDbDestination::from_url(url)?);
                Ok(Self::DuckDb(url.to_string()))
            }
            berth::delta::SCHEME => {
                drop(berth::delta::DeltaExecutor::from_url(url, storage)?);
                Ok(Self::Delta(url.to_string()))
            }
            _ => Err(Error::Config(format!(
                "berth bench measures postgres://, duckdb: and delta: destinations, not `{}`",
                berth::redact(url)
            ))),
        }
    }

    /// The SQL destination for one step (see [`Target`]); `None` for a lake.
    fn destination(&self) -> Result<Option<Arc<dyn Destination>>> {
        Ok(match self {
            Self::Postgres(d) => Some(Arc::clone(d) as Arc<dyn Destination>),
            Self::DuckDb(url) => Some(Arc::new(DuckDbDestination::from_url(url)?) as Arc<dyn Destination>),
            Self::Delta(_) => None,
        })
    }

    /// A loader for one step.
    fn loader(&self, storage: &StorageConfig) -> Result<Loader> {
        Ok(match self {
            Self::Delta(url) => Loader::with_executor(Arc::new(berth::delta::DeltaExecutor::from_url(url, storage)?)),
            _ => Loader::new(
                self.destination()?
                    .ok_or_else(|| Error::Config("no destination".into()))?,
            ),
        })
    }

    /// Drops `dataset` (and its staging dataset) with everything in it.
    async fn drop_dataset(&self, dataset: &str, storage: &StorageConfig) -> Result<()> {
        if let Self::Delta(url) = self {
            let lake = berth::delta::DeltaExecutor::from_url(url, storage)?;
            for dataset in [dataset.to_string(), format!("{dataset}_staging")] {
                lake.lake().delete_prefix(&lake.lake().path(&[&dataset])).await?;
            }
            return Ok(());
        }
        if let Some(destination) = self.destination()? {
            let dialect = destination.capabilities().dialect.clone();
            let drop = vec![sql::drop_schema_cascade(&dialect, dataset).into()];
            destination.execute(drop, false).await?;
        }
        Ok(())
    }

    /// Rows of each of `tables` in `dataset` (SQL destinations).
    async fn table_rows(&self, dataset: &str, tables: &[String]) -> Result<BTreeMap<String, u64>> {
        let Some(destination) = self.destination()? else {
            return Err(Error::Config(
                "--vs dlt measures postgres and duckdb destinations".into(),
            ));
        };
        let dialect = destination.capabilities().dialect.clone();
        let mut rows = BTreeMap::new();
        for table in tables {
            let sql = format!("SELECT count(*) FROM {}", dialect.table_name(dataset, table));
            let statement = berth::plan::sqlparser::parser::Parser::parse_sql(
                &berth::plan::sqlparser::dialect::GenericDialect {},
                &sql,
            )
            .map_err(|e| Error::Config(format!("{sql}: {e}")))?
            .remove(0);
            let batches = destination.query(statement).await?;
            let count = batches
                .first()
                .filter(|b| b.num_rows() > 0)
                .and_then(|b| arrow::compute::cast(b.column(0), &arrow::datatypes::DataType::UInt64).ok())
                .and_then(|c| {
                    c.as_any()
                        .downcast_ref::<arrow::array::UInt64Array>()
                        .map(|a| a.value(0))
                })
                .unwrap_or_default();
            rows.insert(table.clone(), count);
        }
        Ok(rows)
    }

    /// What reports show.
    fn describe(&self, storage: &StorageConfig) -> Result<String> {
        Ok(match self {
            Self::Delta(url) => {
                let lake = berth::delta::DeltaExecutor::from_url(url, storage)?;
                format!("{}:{}", berth::delta::SCHEME, lake.lake().display())
            }
            _ => self.destination()?.map(|d| d.describe()).unwrap_or_default(),
        })
    }

    /// Has the destination a limit of its own to measure next to berth?
    fn has_ceiling(&self) -> bool {
        !matches!(self, Self::Delta(_))
    }

    async fn settle(&self) -> Result<()> {
        if let Self::Postgres(d) = self {
            d.checkpoint().await?;
        }
        Ok(())
    }

    /// One run of each of the destination's own limits, by name: PostgreSQL's single-stream
    /// server COPY (the classic anchor) and, when berth loads over several connections, as many
    /// server streams at once (what the server itself takes in parallel on the same cores);
    /// DuckDB's `read_parquet`.
    async fn ceilings(
        &self,
        dataset: &str,
        table: &str,
        files: &[PathBuf],
        parallel: usize,
    ) -> Result<Vec<(String, Duration)>> {
        match self {
            Self::Postgres(d) => {
                let mut streams = vec![1];
                if parallel > 1 {
                    streams.push(parallel);
                }
                let mut times = Vec::new();
                for n in streams {
                    let plural = if n == 1 { "stream" } else { "streams" };
                    let name = format!("server COPY FROM file (binary, {n} {plural})");
                    times.push((name, d.server_copy_ceiling(dataset, table, n).await?));
                }
                Ok(times)
            }
            Self::DuckDb(url) => {
                let duckdb = DuckDbDestination::from_url(url)?;
                let mut total = Duration::ZERO;
                for file in files {
                    total += duckdb.read_parquet_ceiling(dataset, file).await?;
                }
                Ok(vec![("DuckDB CREATE TABLE AS read_parquet".into(), total)])
            }
            Self::Delta(_) => Err(Error::Config("a lake has no ceiling to measure".into())),
        }
    }
}

/// Resets the peak-RSS watermark (Linux ≥ 4.0: writing 5 to `clear_refs`), after handing the
/// allocators' free pages back to the system (berth's and DuckDB's, which keeps what an earlier
/// run's closed database freed): what generating packages or earlier runs left in the heap is
/// not the next run's memory (a `berth load` process starts without it).
fn reset_peak_rss() {
    berth::duckdb::release_freed_memory();
    berth::loader::budget::return_freed_memory();
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn link_tree(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to).map_err(|e| Error::io(to, e))?;
    for entry in std::fs::read_dir(from).map_err(|e| Error::io(from, e))? {
        let entry = entry.map_err(|e| Error::io(from, e))?;
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            link_tree(&entry.path(), &target)?;
        } else {
            std::fs::hard_link(entry.path(), &target)
                .or_else(|_| std::fs::copy(entry.path(), &target).map(|_| ()))
                .map_err(|e| Error::io(&target, e))?;
        }
    }
    Ok(())
}

/// Generates a package once into `work_dir` (reused by later runs with the same settings).
fn generate(config: &BenchConfig, name: &str, package: SyntheticPackage, load_id: &str) -> Result<PathBuf> {
    let dir = config.work_dir.join(name);
    let pristine = dir.join(load_id);
    if !pristine.join("schema.json").exists() {
        tracing::info!("generating {}", dir.display());
        let partial = dir.with_extension("partial");
        let _ = std::fs::remove_dir_all(&partial);
        package
            .with_seed(config.seed)
            .with_row_group_rows(config.row_group_rows)
            .with_load_id(load_id)
            .write(&partial)?;
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::rename(&partial, &dir).map_err(|e| Error::io(&dir, e))?;
    }
    Ok(pristine)
}

/// Rows in every job file of `package` (root and child tables), from the Parquet footers.
fn parquet_rows(package: &Path) -> Result<u64> {
    let jobs = package.join("new_jobs");
    let mut rows = 0;
    for entry in std::fs::read_dir(&jobs).map_err(|e| Error::io(&jobs, e))? {
        let path = entry.map_err(|e| Error::io(&jobs, e))?.path();
        let file = std::fs::File::open(&path).map_err(|e| Error::io(&path, e))?;
        let reader = parquet::file::reader::SerializedFileReader::new(file)
            .map_err(|e| Error::Generate(format!("{}: {e}", path.display())))?;
        rows += u64::try_from(
            parquet::file::reader::FileReader::metadata(&reader)
                .file_metadata()
                .num_rows(),
        )
        .unwrap_or_default();
    }
    Ok(rows)
}

fn parquet_size(package: &Path) -> u64 {
    std::fs::read_dir(package.join("new_jobs"))
        .map(|entries| {
            entries
                .filter_map(|e| e.ok().and_then(|e| e.metadata().ok()))
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// One timed load.
#[derive(Debug, Clone, Default)]
struct Timed {
    elapsed: Duration,
    rss: Option<u64>,
    phases: PhaseTimes,
    /// CPU seconds of the `berth load` process (`None` in this process).
    cpu_seconds: Option<f64>,
    rows: u64,
}

/// Loads a hard-linked copy of `pristine` (a package, or a folder of packages) into `dataset`
/// and times it.
async fn timed_load(
    config: &BenchConfig,
    target: &Target,
    pristine: &Path,
    dataset: &str,
    expected_rows: Option<u64>,
) -> Result<Timed> {
    let name = pristine
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let run_dir = config.work_dir.join(format!("run-{dataset}"));
    let _ = std::fs::remove_dir_all(&run_dir);
    link_tree(pristine, &run_dir.join(&name))?;
    let source = run_dir.join(&name).to_string_lossy().to_string();
    let timed = timed_load_from(config, target, &source, dataset, expected_rows).await;
    let _ = std::fs::remove_dir_all(&run_dir);
    timed
}

/// Loads the package(s) at `source` (a folder or a bucket URL) into `dataset` and times it: in
/// a `berth load` process of its own when the config has a [`LoadCommand`], else in this
/// process. Every package must load, with `expected_rows` when given.
async fn timed_load_from(
    config: &BenchConfig,
    target: &Target,
    source: &str,
    dataset: &str,
    expected_rows: Option<u64>,
) -> Result<Timed> {
    let options = LoaderOptions {
        dataset: Some(dataset.to_string()),
        ..config.loader.clone()
    };
    target.settle().await?;
    let (summary, rss, cpu_seconds, wall) = match &config.load_command {
        Some(command) => {
            let loaded = command.load(&config.destination, source, dataset, &options).await?;
            (loaded.summary, loaded.peak_rss, loaded.cpu_seconds, None)
        }
        None => {
            let locations = berth::loader::resolve_locations(&[source.to_string()], &config.storage).await?;
            let loader = target.loader(&config.storage)?.with_options(options);
            reset_peak_rss();
            let started = Instant::now();
            let summary = loader.load_all(locations).await?;
            let elapsed = started.elapsed();
            // DuckDB closes here (its checkpoint): part of a load process's memory, not of the
            // load time, as the ceiling's time has no checkpoint either.
            drop(loader);
            (summary, berth::loader::process_peak_rss(), None, Some(elapsed))
        }
    };
    let mut timed = Timed {
        rss,
        cpu_seconds,
        ..Timed::default()
    };
    for package in &summary.packages {
        let rows_ok = summary.packages.len() > 1 || expected_rows.is_none_or(|rows| package.rows() == rows);
        if package.status != PackageStatus::Loaded || !rows_ok {
            let errors: Vec<String> = package.failed_jobs().filter_map(|j| j.error.clone()).collect();
            return Err(Error::Config(format!(
                "{dataset}: package {} ended {:?} with {} rows{}: {}",
                package.load_id,
                package.status,
                package.rows(),
                expected_rows.map(|r| format!(" of {r}")).unwrap_or_default(),
                errors.join("; ")
            )));
        }
        timed.elapsed += package.elapsed;
        timed.phases += &package.phases;
        timed.rows += package.rows();
    }
    if let Some(wall) = wall.filter(|_| summary.packages.len() == 1) {
        timed.elapsed = wall;
    }
    Ok(timed)
}

/// dlt's loads of `steps` (each a list of packages, loaded in turn) into `<dataset>_dlt`, timed
/// per step, then its final rows next to berth's in `dataset`: are they the same?
async fn dlt_steps(
    config: &BenchConfig,
    target: &Target,
    runner: &crate::dlt::DltRunner,
    steps: &[Vec<PathBuf>],
    dataset: &str,
) -> Result<(Vec<Timed>, bool)> {
    let dlt_dataset = format!("{dataset}_dlt");
    // dlt's merges stage in `<dataset>_staging`, which it leaves behind.
    let dlt_staging = format!("{dlt_dataset}_staging");
    target.drop_dataset(&dlt_dataset, &config.storage).await?;
    target.drop_dataset(&dlt_staging, &config.storage).await?;
    let mut timed = Vec::new();
    let mut rows = BTreeMap::new();
    for packages in steps {
        target.settle().await?;
        let work = config.work_dir.join(format!("dlt-{dlt_dataset}"));
        let loaded = runner.load(&work, &config.destination, &dlt_dataset, packages).await?;
        tracing::info!("{dlt_dataset}: dlt {:.2} s", loaded.seconds);
        timed.push(Timed {
            elapsed: Duration::from_secs_f64(loaded.seconds),
            rss: Some(loaded.peak_rss_bytes),
            cpu_seconds: loaded.cpu_seconds,
            rows: loaded.rows.values().sum(),
            ..Timed::default()
        });
        rows = loaded.rows;
    }
    let tables: Vec<String> = rows.keys().cloned().collect();
    let berth_rows = target.table_rows(dataset, &tables).await?;
    if berth_rows != rows {
        tracing::warn!("row counts differ: berth {berth_rows:?}, dlt {rows:?}");
    }
    target.drop_dataset(&dlt_dataset, &config.storage).await?;
    target.drop_dataset(&dlt_staging, &config.storage).await?;
    Ok((timed, berth_rows == rows))
}

/// The case of dlt's runs of the rows and bytes of `berth` (berth's case of the same packages):
/// the ratio is berth's median over dlt's.
fn dlt_case(
    runner: &crate::dlt::DltRunner,
    what: &str,
    runs: &[Timed],
    parity: &[bool],
    berth: &CaseReport,
) -> CaseReport {
    let rows = berth.rows_loaded.first().copied().unwrap_or_default();
    let berth_median = berth.seconds.median;
    let mut case = CaseReport::from_runs(format!("dlt {} {what}", runner.version), runs, rows, berth.bytes);
    case.phases.clear();
    case.berth_ratio = (case.seconds.median > 0.0).then(|| berth_median / case.seconds.median);
    case.row_count_parity = Some(!parity.is_empty() && parity.iter().all(|p| *p));
    case
}

/// The package `pristine` in the bucket at `<bucket>/<name>/<load id>` (its URL and location),
/// uploaded (multipart) unless every file is there already with its size.
async fn staged_in_bucket(
    config: &BenchConfig,
    bucket: &str,
    name: &str,
    pristine: &Path,
) -> Result<(String, PackageLocation)> {
    let load_id = pristine
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let url = format!("{}/{name}/{load_id}", bucket.trim_end_matches('/'));
    let location = PackageLocation::parse_with(&url, &config.storage).map_err(berth::loader::Error::from)?;
    let upload_error =
        |what: &str, e: &dyn std::fmt::Display| Error::Config(format!("uploading the package to {url}: {what}: {e}"));
    for file in files_under(pristine)? {
        let relative = file
            .strip_prefix(pristine)
            .map_err(|e| upload_error("path", &e))?
            .to_string_lossy()
            .replace('\\', "/");
        let size = std::fs::metadata(&file).map_err(|e| Error::io(&file, e))?.len();
        let key = location.child(&relative);
        if location.store().head(&key).await.is_ok_and(|m| m.size == size) {
            continue;
        }
        tracing::info!("uploading {relative} to {url}");
        let upload = location
            .store()
            .put_multipart(&key)
            .await
            .map_err(|e| upload_error(&relative, &e))?;
        let mut writer = object_store::WriteMultipart::new_with_chunk_size(upload, UPLOAD_PART_BYTES);
        let mut input = std::fs::File::open(&file).map_err(|e| Error::io(&file, e))?;
        let mut buffer = vec![0u8; UPLOAD_PART_BYTES];
        loop {
            let read = std::io::Read::read(&mut input, &mut buffer).map_err(|e| Error::io(&file, e))?;
            if read == 0 {
                break;
            }
            writer
                .wait_for_capacity(4)
                .await
                .map_err(|e| upload_error(&relative, &e))?;
            writer.write(&buffer[..read]);
        }
        writer.finish().await.map_err(|e| upload_error(&relative, &e))?;
    }
    // A load from the bucket marks the package loaded there; the benchmark loads it again.
    clear_completed(&location).await;
    Ok((url, location))
}

/// Multipart upload part size of the bucket package.
const UPLOAD_PART_BYTES: usize = 16 << 20;

async fn clear_completed(location: &PackageLocation) {
    let marker = location.child(berth::model::package::layout::COMPLETED);
    let _ = location.store().delete(&marker).await;
}

fn files_under(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let path = entry.map_err(|e| Error::io(dir, e))?.path();
        if path.is_dir() {
            out.extend(files_under(&path)?);
        } else {
            out.push(path);
        }
    }
    Ok(out)
}

/// The two-step benchmark of a merge or replace `disposition`: (a) the first load of `rows` into an
/// empty dataset, (b) a second package into it: for merge a delta of `delta_rows` (half updates of
/// existing ids, half new ids), for replace a full refresh of `rows`. Each step runs next to a plain
/// append of the same rows in the same run.
/// The packages of a two-step run: the base rows appended and with `disposition`, then the
/// second rows (a delta for merges, the same rows again otherwise), appended and with it.
fn two_step_packages(config: &BenchConfig, disposition: Disposition) -> Result<[PathBuf; 4]> {
    let shape = &config.shape;
    let base_load = "1800000000.000001";
    let second_load = "1800000000.000002";
    let (second_rows, second_first) = match disposition {
        Disposition::Merge(_) => (config.delta_rows, config.rows.saturating_sub(config.delta_rows / 2) + 1),
        _ => (config.rows, 1),
    };
    let label = disposition.to_string().replace(':', "-");
    let suffix = format!(
        "{}-{}-rg{}-seed{}",
        shape.cache_key(),
        config.rows,
        config.row_group_rows,
        config.seed
    );
    let second_name = format!("{suffix}-second{second_rows}from{second_first}");
    let package = |rows| SyntheticPackage::new(shape.clone(), rows);
    let packages = [
        generate(config, &suffix, package(config.rows), base_load)?,
        generate(
            config,
            &format!("{suffix}-{label}"),
            package(config.rows).with_disposition(disposition),
            base_load,
        )?,
        generate(
            config,
            &second_name,
            package(second_rows).with_first_id(second_first),
            second_load,
        )?,
        generate(
            config,
            &format!("{second_name}-{label}"),
            package(second_rows)
                .with_first_id(second_first)
                .with_disposition(disposition),
            second_load,
        )?,
    ];
    Ok(packages)
}

async fn run_two_step(config: &BenchConfig, disposition: Disposition) -> Result<BenchReport> {
    let target = Target::open(&config.destination, &config.storage)?;
    let described = target.describe(&config.storage)?;
    let packages = two_step_packages(config, disposition)?;
    let mut loader_options = config.loader.clone();
    if let Disposition::Replace(strategy) = disposition {
        loader_options.replace_strategy = Some(strategy);
    }
    let config = &BenchConfig {
        loader: loader_options,
        ..config.clone()
    };
    // runs[i]: append (a), disposition (a), append (b), disposition (b)
    let mut runs: [Vec<Timed>; 4] = Default::default();
    let (mut dlt_runs, mut dlt_parity): ([Vec<Timed>; 2], Vec<bool>) = Default::default();
    let kind_name = disposition.write_disposition();
    for run in 0..config.runs {
        for (kind, (first, second)) in [
            (0usize, (&packages[0], &packages[2])),
            (1, (&packages[1], &packages[3])),
        ] {
            let dataset = format!("berth_bench_{run}_{}", if kind == 0 { "append" } else { kind_name });
            target.drop_dataset(&dataset, &config.storage).await?;
            let a = timed_load(config, &target, first, &dataset, Some(parquet_rows(first)?)).await?;
            let b = timed_load(config, &target, second, &dataset, Some(parquet_rows(second)?)).await?;
            tracing::info!(
                "run {run} {dataset}: (a) {:.2} s, (b) {:.2} s",
                a.elapsed.as_secs_f64(),
                b.elapsed.as_secs_f64()
            );
            runs[kind].push(a);
            runs[kind + 2].push(b);
            if let Some(runner) = config.vs_dlt.as_ref().filter(|_| kind == 1) {
                let steps = [vec![first.clone()], vec![second.clone()]];
                let (timed, parity) = dlt_steps(config, &target, runner, &steps, &dataset).await?;
                dlt_runs[0].push(timed[0].clone());
                dlt_runs[1].push(timed[1].clone());
                dlt_parity.push(parity);
            }
            target.drop_dataset(&dataset, &config.storage).await?;
        }
    }
    let case = |name, index: usize, rows, bytes| CaseReport::from_runs(name, &runs[index], rows, bytes);
    let (base_bytes, second_bytes) = (parquet_size(&packages[0]), parquet_size(&packages[2]));
    let (base_rows, second_rows) = (parquet_rows(&packages[0])?, parquet_rows(&packages[2])?);
    let second = match disposition {
        Disposition::Merge(_) => format!("(b) {disposition}, delta {}", config.delta_rows),
        _ => format!("(b) {disposition} over the table (full refresh)"),
    };
    let mut cases = vec![
        case(format!("(a) {disposition} into empty"), 1, base_rows, base_bytes),
        case("(a) append, same rows".into(), 0, base_rows, base_bytes),
        case(second, 3, second_rows, second_bytes),
        case("(b) append, same rows".into(), 2, second_rows, second_bytes),
    ];
    for pair in cases.chunks_mut(2) {
        let measured = pair[0].seconds.median;
        let append = pair[1].seconds.median;
        pair[1].berth_ratio = (append > 0.0).then(|| measured / append);
    }
    if let Some(runner) = &config.vs_dlt {
        let mut dlt_a = dlt_case(
            runner,
            &format!("(a) {disposition}"),
            &dlt_runs[0],
            &dlt_parity,
            &cases[0],
        );
        let dlt_b = dlt_case(
            runner,
            &format!("(b) {disposition}"),
            &dlt_runs[1],
            &dlt_parity,
            &cases[2],
        );
        // (a)'s parity is only checked after (b), on the final tables.
        dlt_a.row_count_parity = None;
        cases.push(dlt_a);
        cases.push(dlt_b);
    }
    Ok(BenchReport {
        destination: described,
        shape: config.shape.name(),
        disposition: disposition.to_string(),
        rows: config.rows,
        parquet_bytes: base_bytes,
        row_group_rows: config.row_group_rows,
        parallel_jobs: config.loader.parallel_jobs,
        cases,
        configuration: configuration(config),
    })
}

/// Bytes and job files of every package under `dir` (a package, or a folder of them): the files in
/// their `new_jobs` folders.
fn package_jobs(dir: &Path) -> Result<(u64, usize)> {
    let mut found = (0, 0);
    for file in files_under(dir)? {
        let in_new_jobs = file
            .parent()
            .and_then(Path::file_name)
            .is_some_and(|n| n == berth::model::JobState::New.folder());
        if in_new_jobs {
            found.0 += std::fs::metadata(&file).map_err(|e| Error::io(&file, e))?.len();
            found.1 += 1;
        }
    }
    Ok(found)
}

/// The benchmark of a user's package(s) at `source` (see [`BenchConfig::package`]).
async fn run_package(config: &BenchConfig, source: &Path) -> Result<BenchReport> {
    let (bytes, jobs) = package_jobs(source)?;
    if jobs == 0 {
        return Err(Error::Config(format!(
            "{}: no package with jobs to load (a package folder has new_jobs/ with job files; a folder of \
             packages holds such folders)",
            source.display()
        )));
    }
    let target = Target::open(&config.destination, &config.storage)?;
    let described = target.describe(&config.storage)?;
    let mut runs = Vec::new();
    let (mut dlt_runs, mut dlt_parity) = (Vec::new(), Vec::new());
    for run in 0..config.runs {
        let dataset = format!("berth_bench_{run}");
        target.drop_dataset(&dataset, &config.storage).await?;
        let timed = timed_load(config, &target, source, &dataset, None).await?;
        tracing::info!(
            "run {run}: berth {:.2} s, {} rows",
            timed.elapsed.as_secs_f64(),
            timed.rows
        );
        if let Some(runner) = &config.vs_dlt {
            let packages = package_dirs(source, &config.storage).await?;
            let (timed, parity) = dlt_steps(config, &target, runner, &[packages], &dataset).await?;
            dlt_runs.extend(timed);
            dlt_parity.push(parity);
        }
        target.drop_dataset(&dataset, &config.storage).await?;
        runs.push(timed);
    }
    let rows = runs.first().map(|r| r.rows).unwrap_or_default();
    if let Some(other) = runs.iter().find(|r| r.rows != rows) {
        return Err(Error::Config(format!(
            "{}: runs loaded different row counts ({rows} and {})",
            source.display(),
            other.rows
        )));
    }
    let name = source
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    Ok(BenchReport {
        destination: described,
        shape: format!("package {name}"),
        disposition: "as in the package".into(),
        rows,
        parquet_bytes: bytes,
        row_group_rows: 0,
        parallel_jobs: config.loader.parallel_jobs,
        configuration: configuration(config),
        cases: {
            let mut cases = vec![CaseReport::from_runs(format!("berth load {name}"), &runs, rows, bytes)];
            if let Some(runner) = &config.vs_dlt {
                let case = dlt_case(runner, "load step", &dlt_runs, &dlt_parity, &cases[0]);
                cases.push(case);
            }
            cases
        },
    })
}

/// The package folders at `dir` (a package, or a folder of them), in load order, as `berth load`
/// finds them.
async fn package_dirs(dir: &Path, storage: &StorageConfig) -> Result<Vec<PathBuf>> {
    let locations = berth::loader::resolve_locations(&[dir.to_string_lossy().to_string()], storage).await?;
    Ok(locations
        .iter()
        .filter_map(|l| l.local_dir().map(Path::to_path_buf))
        .collect())
}

/// The job files of `package` (in `new_jobs/`) and their bytes.
fn job_files(package: &Path) -> Result<(Vec<PathBuf>, u64)> {
    let jobs_dir = package.join(berth::model::JobState::New.folder());
    let files: Vec<PathBuf> = std::fs::read_dir(&jobs_dir)
        .map_err(|e| Error::io(&jobs_dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    let bytes = files
        .iter()
        .filter_map(|f| std::fs::metadata(f).ok())
        .map(|m| m.len())
        .sum();
    Ok((files, bytes))
}

/// Generates the packages (once per shape, rows, row group size and seed; reused after) and runs
/// the benchmark.
pub async fn run(config: &BenchConfig) -> Result<BenchReport> {
    if let Some(package) = &config.package {
        return run_package(config, package).await;
    }
    if config.disposition != Disposition::Append {
        return run_two_step(config, config.disposition).await;
    }
    let target = Target::open(&config.destination, &config.storage)?;
    let described = target.describe(&config.storage)?;
    let table = config.shape.table();
    let name = format!(
        "{}-{}-rg{}-seed{}",
        config.shape.cache_key(),
        config.rows,
        config.row_group_rows,
        config.seed
    );
    let pristine = generate(
        config,
        &name,
        SyntheticPackage::new(config.shape.clone(), config.rows),
        "1800000000.000001",
    )?;
    let in_bucket = match &config.bucket {
        Some(bucket) => Some(staged_in_bucket(config, bucket, &name, &pristine).await?),
        None => None,
    };
    let (files, parquet_bytes) = job_files(&pristine)?;
    let expected_rows = parquet_rows(&pristine)?;
    // The destination's own ceiling is measured for one table; nested shapes load several.
    let ceiling = config.ceiling && config.shape.tables().len() == 1 && target.has_ceiling();
    let mut berth_runs = Vec::new();
    let parallel = config.loader.parallel_jobs;
    let mut ceiling_times: Vec<(String, Vec<Duration>)> = Vec::new();
    let mut bucket_runs = Vec::new();
    let (mut dlt_runs, mut dlt_parity) = (Vec::new(), Vec::new());
    for run in 0..config.runs {
        let dataset = format!("berth_bench_{run}");
        target.drop_dataset(&dataset, &config.storage).await?;
        let timed = timed_load(config, &target, &pristine, &dataset, Some(expected_rows)).await?;
        tracing::info!("run {run}: berth {:.2} s", timed.elapsed.as_secs_f64());
        berth_runs.push(timed);
        if let Some(runner) = &config.vs_dlt {
            let (timed, parity) = dlt_steps(config, &target, runner, &[vec![pristine.clone()]], &dataset).await?;
            dlt_runs.extend(timed);
            dlt_parity.push(parity);
        }

        if let Some((url, location)) = &in_bucket {
            target.drop_dataset(&dataset, &config.storage).await?;
            let timed = timed_load_from(config, &target, url, &dataset, Some(expected_rows)).await?;
            clear_completed(location).await;
            tracing::info!("run {run}: berth from {location} {:.2} s", timed.elapsed.as_secs_f64());
            bucket_runs.push(timed);
        }

        if ceiling {
            let times = target.ceilings(&dataset, table, &files, parallel).await?;
            tracing::info!("run {run}: ceilings {times:.2?}");
            for (name, time) in times {
                match ceiling_times.iter_mut().find(|(n, _)| *n == name) {
                    Some((_, series)) => series.push(time),
                    None => ceiling_times.push((name, vec![time])),
                }
            }
        }
        target.drop_dataset(&dataset, &config.storage).await?;
    }

    let mut cases = vec![CaseReport::from_runs(
        "berth append".into(),
        &berth_runs,
        expected_rows,
        parquet_bytes,
    )];
    if let Some((_, location)) = &in_bucket {
        let name = format!("berth append from {location}");
        let mut from_bucket = CaseReport::from_runs(name, &bucket_runs, expected_rows, parquet_bytes);
        let local = cases[0].seconds.median;
        from_bucket.berth_ratio = (local > 0.0).then(|| from_bucket.seconds.median / local);
        cases.push(from_bucket);
    }
    if let Some(runner) = &config.vs_dlt {
        let case = dlt_case(runner, "load step", &dlt_runs, &dlt_parity, &cases[0]);
        cases.push(case);
    }
    for (name, times) in ceiling_times {
        let mut ceiling = CaseReport::measured(name, &times, expected_rows, parquet_bytes, None);
        let berth = cases[0].seconds.median;
        ceiling.berth_ratio = (ceiling.seconds.median > 0.0).then(|| berth / ceiling.seconds.median);
        cases.push(ceiling);
    }
    Ok(BenchReport {
        destination: described,
        shape: config.shape.name(),
        disposition: Disposition::Append.to_string(),
        rows: config.rows,
        parquet_bytes,
        row_group_rows: config.row_group_rows,
        parallel_jobs: config.loader.parallel_jobs,
        cases,
        configuration: configuration(config),
    })
}
