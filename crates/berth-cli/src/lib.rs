//! `berth`: load dlt load packages into a destination.
//!
//! The command line as a library: the `berth` binary calls [`run_cli`], and so does the Python
//! package's `berth` console script (through its extension), so both are the same program.

mod render;

pub use render::{ProgressBars, package_document};

use std::io::IsTerminal;
use std::sync::Arc;

use anyhow::{Context, Result};
use berth::loader::{Loader, LoaderOptions, resolve_locations};
use berth::model::ReplaceStrategy;
use clap::{Args, Parser, Subcommand};

/// Loads dlt load packages into a database, fast: Parquet, Arrow IPC, JSONL, CSV and
/// insert_values jobs, with dlt's append, replace and merge semantics (delete-insert, upsert,
/// insert-only, scd2), its refresh modes and its bookkeeping tables, so dlt keeps working on
/// the same dataset.
#[derive(Debug, Parser)]
#[command(name = "berth", version, propagate_version = true)]
#[command(after_help = "Examples:
  berth load testdata/quickstart/packages/1795381980.7559764
  berth load ~/.dlt/pipelines/my_pipe/load/normalized --destination duckdb:warehouse.duckdb
  berth load s3://my-bucket/my_pipe/load/normalized --destination postgres://loader@db/analytics
  berth load pkg1 pkg2 --dataset analytics --json
  berth load ./load/normalized --destination delta:s3://lake/warehouse
  berth package show testdata/quickstart/packages/1795381980.7559764")]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// berth's config file: storage options per bucket, as `[storage."s3://bucket"]` tables of
    /// object_store option names (aws_region, aws_endpoint, aws_access_key_id,
    /// google_service_account, azure_storage_account_name, ...), and `[load]` defaults for
    /// `berth load` (widen_types = true) [default: ./berth.toml when it exists]. Values never
    /// appear in output.
    #[arg(long, global = true, env = "BERTH_CONFIG", value_name = "FILE")]
    config: Option<std::path::PathBuf>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Load packages into a destination, in the order given.
    ///
    /// A PACKAGE is a package folder, a folder of packages (such as a dlt pipeline's
    /// `load/normalized/`, loaded in load-id order), or the URL of either in a bucket:
    /// s3://bucket/prefix, gs://bucket/prefix, az://container/prefix,
    /// abfss://container@account.dfs.core.windows.net/prefix, file:///dir. Credentials come from
    /// the cloud's usual environment variables (AWS_*, GOOGLE_*, AZURE_*) or from berth.toml
    /// (--config). Packages in buckets are read in place and never changed, except for a
    /// package_completed.json marker once loaded. CSV jobs are read with the options dlt's writer
    /// was given (NORMALIZE__DATA_WRITER__DELIMITER, __INCLUDE_HEADER, __ENCODING, or
    /// [normalize.data_writer] in .dlt/config.toml).
    ///
    /// Loading is exactly-once: a load that is killed, loses its connection or is interrupted
    /// resumes where it stopped when run again, and a package that is already loaded is skipped.
    /// Ctrl-C (or SIGTERM) stops starting jobs, lets the running ones finish or roll back, and
    /// leaves the package to resume; a second Ctrl-C stops at once (still safe to resume).
    ///
    /// Exit status: 0 every package loaded; 3 jobs failed and their package stays pending (fix
    /// the cause and load again; `berth package show` lists the errors); 4 packages were
    /// committed without jobs that failed (--allow-failed-jobs); 130 interrupted; 2 bad
    /// arguments; 1 any other error.
    Load(LoadArgs),
    /// Measure load throughput against a destination, next to the destination's own limit.
    ///
    /// Generates a synthetic dlt package (deterministic by seed; cached in --work-dir), loads it
    /// --runs times into a fresh dataset each time, and in the same runs measures the
    /// destination's own fastest ingest of the same data: PostgreSQL reading a binary COPY file
    /// itself, in one stream and in as many streams as --parallel (needs superuser or
    /// pg_read/write_server_files), DuckDB's read_parquet. Each load
    /// runs as `berth load --json` in a process of its own, as a user's load would. Reports
    /// min/median/max seconds, rows/s, MB/s (of Parquet), the peak RSS of that process (its whole
    /// life, DuckDB's checkpoint at close included) and the ratio.
    Bench(BenchArgs),
    /// Print the SQL a load would run, statement by statement, without touching a destination.
    ///
    /// Phases: migration (for a destination without the package's datasets yet), preparation,
    /// the jobs (bulk loads, shown as notes; for a warehouse with --staging, each file's upload and
    /// the warehouse's COPY INTO / COPY / load job), each table chain's follow-up (replace from staging;
    /// merge: delete-insert, upsert, insert-only, scd2), the commit row and the staging clean-up.
    /// --destination takes a destination URL or a dialect name: postgres, duckdb, snowflake,
    /// bigquery, redshift, databricks, mssql, mysql.
    Plan(PlanArgs),
    /// Compact a Delta lake's tables: merge their small data files into files of about
    /// --target-file-mib, one commit per table.
    ///
    /// Every job of every package adds at least one data file, so a table fed by many small
    /// packages collects many small files, which every reader opens one by one. Compacting
    /// changes no row: the commit removes the small files and adds the merged ones (marked as
    /// no data change), and berth's journal in the log stays as it was. It holds the table's
    /// lock, as a merge does. Files that are at the target size already are left alone; a
    /// table with nothing to merge gets no commit.
    Compact(CompactArgs),
    /// Inspect load packages.
    Package {
        #[command(subcommand)]
        command: PackageCommand,
    },
    /// Show what dlt's configuration resolves a destination to, and where each value came from.
    ///
    /// For a bare --destination name (postgres, duckdb, redshift, snowflake, bigquery,
    /// databricks), berth reads credentials where dlt does, from dlt's sections
    /// ([destination.<name>.credentials], and [destination.filesystem] for a warehouse's staging
    /// bucket): the environment (DESTINATION__POSTGRES__CREDENTIALS as a connection string or its
    /// fields __HOST, __PORT, __DATABASE, __USERNAME, __PASSWORD; pipeline-prefixed
    /// <PIPELINE>__DESTINATION__… first), then the project's .dlt/secrets.toml and
    /// .dlt/config.toml, then ~/.dlt/ (DLT_DATA_DIR); for PostgreSQL then PGHOST, PGPORT,
    /// PGDATABASE, PGUSER, PGPASSWORD and the password file (PGPASSFILE, ~/.pgpass). Secrets
    /// are shown as ***.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Print the resolved destination settings with their sources (secrets masked).
    Show {
        /// A destination name dlt's configuration resolves: postgres, duckdb, redshift, snowflake,
        /// bigquery or databricks.
        #[arg(long, short, default_value = "postgres")]
        destination: String,
        /// The dlt pipeline whose sections (<PIPELINE>__DESTINATION__…) come first.
        #[arg(long)]
        pipeline_name: Option<String>,
    },
}

#[derive(Debug, Args)]
struct LoadArgs {
    /// Package folders or URLs.
    #[arg(required = true, value_name = "PACKAGE")]
    packages: Vec<String>,
    /// Where to load: duckdb:<file>, duckdb:///<absolute file>, duckdb::memory: (DuckDB
    /// settings as parameters: ?memory_limit=256MB&threads=2; without one, berth starts a
    /// database file at 64 MiB and raises the limit as loads need),
    /// postgres://user:password@host:port/database[?sslmode=verify-full&sslrootcert=ca.pem]
    /// (libpq's sslmode values; the password never appears in output). Sinks, for reverse ETL:
    /// webhook+https://host/path (each batch one POST; see the Sink options) and ndjson:<file>
    /// or ndjson:- (standard output): rows as JSON lines with their table under `_table`.
    /// Warehouses, which read staged Parquet from a bucket themselves (see --staging):
    /// snowflake://<account>/<database>?warehouse=WH&storage_integration=NAME (SNOWFLAKE_TOKEN),
    /// bigquery://<project>/<location> (Google credentials), redshift://user:password@host:5439/db?iam_role=ARN,
    /// databricks://<workspace host>/<warehouse id>?catalog=main (DATABRICKS_TOKEN).
    /// A Delta lake, laid out as dlt's filesystem destination with table_format="delta":
    /// delta:<folder>, delta:s3://bucket/prefix, delta:gs://…, delta:az://… (bucket credentials as
    /// for packages in buckets: environment or berth.toml).
    /// A bare `postgres`, `duckdb`, `redshift`, `snowflake`, `bigquery` or `databricks` takes its
    /// credentials from dlt's configuration, as a dlt pipeline would (environment, .dlt/secrets.toml, ~/.dlt/, libpq's PG* variables and
    /// ~/.pgpass; see `berth config show --help`): no password on the command line.
    /// [default: inside a dlt project (a .dlt/ folder here), the destination the package's
    /// pipeline recorded (postgres or duckdb), resolved from dlt's configuration; else
    /// duckdb:berth.duckdb]
    #[arg(long, short, env = "BERTH_DESTINATION", hide_env_values = true)]
    destination: Option<String>,
    /// The dlt pipeline whose configuration sections come first when --destination is a bare
    /// name [default: the pipeline recorded in the first package].
    #[arg(long)]
    pipeline_name: Option<String>,
    /// Staging bucket for warehouses (s3://bucket/prefix, gs://…, az://…): packages that are not
    /// in a bucket the warehouse reads are uploaded there first, as
    /// <staging>/<dataset>/<table>/<load id>.<file>. Credentials as for packages in buckets.
    #[arg(long, env = "BERTH_STAGING")]
    staging: Option<String>,
    #[command(flatten)]
    sink: SinkArgs,
    /// Dataset (schema) to load into [default: the one recorded in the package, else the schema
    /// name]. Normalized by the package's naming convention, as dlt does (`ShopData` loads into
    /// `shop_data` under dlt's default `snake_case`).
    #[arg(long, env = "BERTH_DATASET")]
    dataset: Option<String>,
    /// How replace tables are replaced: truncate-and-insert, insert-from-staging, staging-optimized
    /// [default: atomic where the destination allows it — readers never see the table empty:
    /// insert-from-staging on DuckDB, BigQuery and Redshift (one transaction), staging-optimized on
    /// Snowflake (a clone that keeps grants) and Databricks (INSERT OVERWRITE); PostgreSQL
    /// truncate-and-insert, as dlt].
    #[arg(long, value_parser = parse_replace_strategy)]
    replace_strategy: Option<ReplaceStrategy>,
    /// Jobs (and parts of large files) loading at once [default: one per core, 2 to 8].
    /// Memory grows with it: each holds about a decoded batch and a Parquet page per column.
    #[arg(long, default_value_t = berth::loader::default_parallel_jobs())]
    parallel: usize,
    /// Attempts per job when the destination reports a transient error.
    #[arg(long, default_value_t = berth::loader::DEFAULT_MAX_ATTEMPTS)]
    max_attempts: u32,
    /// Commit a package even when some of its jobs fail terminally (bad data, a type the table
    /// cannot take): those jobs move to the package's failed_jobs/ with their error and their rows
    /// are not loaded (dlt's raise_on_failed_jobs=false). By default the package stays pending.
    #[arg(long)]
    allow_failed_jobs: bool,
    /// Widen existing columns whose type in the package is wider than in the destination, with
    /// ALTER, along a safe lattice: integer → bigint → numeric of enough digits, real → double,
    /// varchar(n) → longer or text, more fractional second digits (PostgreSQL and DuckDB take
    /// every edge; each warehouse the ones it can). Anything else stays an error naming the
    /// column. By default, as dlt, a column keeps its type. Config: `[load] widen_types = true`.
    #[arg(long)]
    widen_types: bool,
    #[command(flatten)]
    tuning: Tuning,
    /// Print the load summary as JSON on stdout (and no progress bar).
    #[arg(long)]
    json: bool,
}

/// Memory and parallelism knobs shared by `load` and `bench`. Memory is bounded by these, not by
/// file sizes: about (parallel jobs) x (one Parquet row group + one batch + one send chunk).
#[derive(Debug, Args)]
struct Tuning {
    /// Rows per decoded record batch.
    #[arg(long, default_value_t = berth::model::read::DEFAULT_BATCH_SIZE)]
    batch_size: usize,
    /// Parquet files from this many MiB up load in parts of equal rows over several connections
    /// (PostgreSQL).
    #[arg(long, default_value_t = berth::loader::DEFAULT_SPLIT_MIN_BYTES >> 20)]
    split_mib: u64,
    /// Cap the load process's peak memory at about SIZE (512MiB, 2GiB, ...): job parts load as
    /// many at once as fit, an embedded DuckDB gets the rest (its memory_limit and threads follow),
    /// and a budget too small for a job is an error naming it, before anything loads. Config:
    /// `[load] memory_budget = "512MiB"` [default: no cap beyond berth's own bounds].
    #[arg(long, value_name = "SIZE", value_parser = parse_memory_budget)]
    memory_budget: Option<u64>,
}

fn parse_memory_budget(text: &str) -> std::result::Result<u64, String> {
    berth::model::size::parse_size(text)
}

impl Tuning {
    fn apply(&self, options: &mut LoaderOptions) {
        options.read_options.batch_size = self.batch_size.max(1);
        options.split_min_bytes = (self.split_mib << 20).max(1);
        if self.memory_budget.is_some() {
            options.memory_budget = self.memory_budget;
        }
    }
}

/// Options of sink destinations (webhook+http(s)://…, ndjson:…). Progress is recorded in the
/// package after every batch the sink acknowledged: a rerun resumes at the first unsent batch.
#[derive(Debug, Args)]
#[command(next_help_heading = "Sink options (webhook+…, ndjson:…)")]
struct SinkArgs {
    /// Rows per batch (one webhook request per batch).
    #[arg(long, default_value_t = 100)]
    sink_batch_size: usize,
    /// A header for every webhook request, `Name: value` (repeat for more). Values never appear
    /// in output. Also from BERTH_WEBHOOK_HEADERS, one header per line.
    #[arg(long = "header", value_name = "NAME: VALUE")]
    headers: Vec<String>,
    /// Webhook body: json ({"table", "load_id", "batch", "rows": [...]}) or ndjson (a row per line).
    #[arg(long, default_value = "json", value_parser = ["json", "ndjson"])]
    body: String,
    /// At most this many webhook requests per second.
    #[arg(long, value_name = "PER_SECOND")]
    rate_limit: Option<f64>,
    /// Send dlt's `_dlt_*` columns and tables too.
    #[arg(long)]
    keep_dlt_columns: bool,
    /// Flatten struct columns this many levels into `parent__child` columns (0: keep them nested).
    #[arg(long, default_value_t = 0)]
    max_nesting: usize,
}

#[derive(Debug, Args)]
struct BenchArgs {
    /// Where to load: postgres://user:password@host:port/database, duckdb:<file>, or a Delta lake
    /// delta:<folder or bucket URL> (no ceiling there: benches/python/delta.py measures delta-rs's
    /// own writer and dlt's Delta load next to berth). Scratch datasets `berth_bench_<run>` are
    /// created and dropped.
    #[arg(long, short, env = "BERTH_DESTINATION", hide_env_values = true, default_value = berth::DEFAULT_DESTINATION)]
    destination: String,
    /// Rows in the generated package.
    #[arg(long, default_value_t = 1_000_000)]
    rows: u64,
    /// Table shape: narrow (7 columns: id, ts, amount, qty, category, name, flag); wide (50
    /// columns of bigint, double, text, bool, timestamp, date and decimal); nested (a root table
    /// and a child table of 0-5 items per row, as dlt normalizes lists); or the path of a dlt
    /// schema file (a package's schema.json): every data table of it, values by column type, keys
    /// kept unique, nested tables 0-5 rows per parent row. --rows counts root rows.
    #[arg(long, default_value = "narrow", value_name = "narrow|wide|nested|SCHEMA.json")]
    shape: String,
    /// What to measure. append: one load into an empty dataset, next to the destination's own
    /// ceiling. merge:<strategy> (delete-insert, upsert, insert-only, scd2): (a) the first merge
    /// of --rows into an empty dataset, (b) a merge of --delta-rows (half updates of existing
    /// ids, half new ids) into it. replace[:<strategy>] (truncate-and-insert, insert-from-staging,
    /// staging-optimized): (a) the first replace into an empty dataset, (b) a full refresh of
    /// --rows over it. Each step runs next to a plain append of the same rows.
    #[arg(
        long,
        default_value = "append",
        value_name = "append|replace[:STRATEGY]|merge:STRATEGY"
    )]
    disposition: String,
    /// Rows of the merge delta (with --disposition merge:<strategy>).
    #[arg(long, default_value_t = 500_000)]
    delta_rows: u64,
    /// Timed runs (min, median and max are reported).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Rows per Parquet row group in the generated files.
    #[arg(long, default_value_t = 131_072)]
    row_group_rows: usize,
    /// Seed of the generated data.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Jobs (and parts of large files) loading at once [default: one per core, 2 to 8].
    #[arg(long, default_value_t = berth::loader::default_parallel_jobs())]
    parallel: usize,
    /// Folder for the generated package (reused by later runs with the same settings).
    #[arg(long, default_value = "target/berth-bench")]
    work_dir: std::path::PathBuf,
    /// Skip measuring the destination's own limit.
    #[arg(long)]
    no_ceiling: bool,
    /// Benchmark your own package instead of a generated one: a package folder, or a folder of
    /// packages such as a dlt pipeline's load/normalized/ (not loaded yet). Each run loads a copy
    /// (hard links) into a fresh scratch dataset; the tables, rows and dispositions are the
    /// package's own, and every run must load the same rows.
    #[arg(
        long,
        value_name = "DIR",
        conflicts_with_all = ["shape", "rows", "disposition", "delta_rows", "row_group_rows", "seed", "from_bucket"]
    )]
    package: Option<std::path::PathBuf>,
    /// Also run dlt's own load step of the same packages in the same runs and report the ratio:
    /// dlt 1.31's `pipeline.load()` (its fastest path: Parquet through ADBC into PostgreSQL,
    /// read_parquet in DuckDB), each a process of its own, with its wall time, CPU seconds, peak
    /// RSS and whether its tables ended with berth's row counts. PostgreSQL and DuckDB.
    #[arg(long, value_name = "dlt", value_parser = ["dlt"])]
    vs: Option<String>,
    /// The Python with dlt 1.31 that --vs dlt runs [default: berth creates a virtual environment
    /// with it once, in ~/.cache/berth/, from PyPI].
    #[arg(long, value_name = "PYTHON", requires = "vs")]
    dlt_python: Option<std::path::PathBuf>,
    /// Also load the package from this bucket prefix (s3://bucket/prefix, gs://…, az://…) in the
    /// same runs, next to the load from local disk (append only). The package is uploaded there
    /// once and reused; credentials as for `berth load`.
    #[arg(long, value_name = "URL")]
    from_bucket: Option<String>,
    #[command(flatten)]
    tuning: Tuning,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    json: bool,
    /// Also write the report as a self-contained HTML page with charts (time per case, and
    /// where berth's time goes phase by phase).
    #[arg(long, value_name = "FILE.html")]
    report: Option<std::path::PathBuf>,
}

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  berth plan testdata/dlt/postgres/merge_delete_insert/packages/1_1795379924.5126293 --destination postgres
  berth plan ./load/normalized --destination snowflake --dataset analytics
  berth plan pkg --destination duckdb --assume-empty
  berth plan ./load/normalized --destination delta")]
struct PlanArgs {
    /// Package folders or URLs.
    #[arg(required = true, value_name = "PACKAGE")]
    packages: Vec<String>,
    /// Destination URL or dialect name (postgres, duckdb, snowflake, bigquery, redshift,
    /// databricks, mssql, mysql, delta). Nothing is connected to. For a Delta lake (delta or
    /// delta:<URL>), the plan shows its commits with their transactions and the follow-up's
    /// steps as the SQL of the DataFusion plans the lake runs.
    #[arg(
        long,
        short,
        env = "BERTH_DESTINATION",
        hide_env_values = true,
        default_value = "duckdb"
    )]
    destination: String,
    /// Dataset (schema) to plan for [default: the one recorded in the package, else the schema
    /// name]; normalized by the package's naming convention, as for `berth load`.
    #[arg(long, env = "BERTH_DATASET")]
    dataset: Option<String>,
    /// How replace tables are replaced: truncate-and-insert, insert-from-staging, staging-optimized.
    #[arg(long, value_parser = parse_replace_strategy)]
    replace_strategy: Option<ReplaceStrategy>,
    /// Plan follow-ups as for a first load into empty tables (no deletes, retirements or MERGE).
    #[arg(long)]
    assume_empty: bool,
    /// Staging bucket of a warehouse (s3://bucket/prefix, …): the plan shows each job's upload
    /// and the warehouse's COPY (credentials as ***). Nothing is uploaded.
    #[arg(long, env = "BERTH_STAGING")]
    staging: Option<String>,
}

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  berth compact --destination delta:/data/lake --dataset analytics
  berth compact --destination delta:s3://lake/warehouse --dataset analytics --table events --json")]
struct CompactArgs {
    /// The lake: delta:<folder>, delta:s3://bucket/prefix, delta:gs://…, delta:az://…
    /// (bucket credentials as for `berth load`).
    #[arg(long, short, env = "BERTH_DESTINATION", hide_env_values = true)]
    destination: String,
    /// The dataset whose tables are compacted.
    #[arg(long, env = "BERTH_DATASET")]
    dataset: String,
    /// A table to compact (repeat for more) [default: every Delta table of the dataset].
    #[arg(long = "table", value_name = "TABLE")]
    tables: Vec<String>,
    /// Size of the merged files, in MiB.
    #[arg(long, default_value_t = 128)]
    target_file_mib: u64,
    /// Print what was compacted as JSON on stdout.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Subcommand)]
enum PackageCommand {
    /// Show a package: schema, tables, jobs with their states, rows and bytes.
    Show {
        /// Package folder or URL.
        package: String,
        /// Print as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Set by the Python package's console script to its interpreter (`sys.executable`): the command
/// line then runs inside Python, and starts itself again as `<python> -m berth._cli`.
pub const PYTHON_CLI_ENV: &str = "BERTH_PYTHON_CLI";

/// Exit status of a load that did all it was asked.
const EXIT_SUCCESS: u8 = 0;
/// What is logged without `BERTH_LOG`: warnings, but not delta-rs's note for every binary column
/// it keeps no statistics of.
pub const DEFAULT_LOG: &str = "warn,deltalake_core::writer::stats=error";

/// Exit status of an error (bad arguments, an unreachable destination, a broken package).
const EXIT_FAILURE: u8 = 1;
/// Exit status when some jobs failed and their packages stay pending.
const EXIT_JOBS_FAILED: u8 = 3;
/// Exit status when packages were committed without jobs that failed (--allow-failed-jobs).
const EXIT_LOADED_WITH_FAILED_JOBS: u8 = 4;
/// Exit status after Ctrl-C or SIGTERM (128 + SIGINT, as shells report it).
const EXIT_INTERRUPTED: u8 = 130;

fn parse_replace_strategy(s: &str) -> Result<ReplaceStrategy, String> {
    s.parse()
}

/// Runs the command line with `args` (the program name first, as `std::env::args_os` gives
/// them) and returns the process's exit status. Help, `--version` and usage errors print and
/// exit the process, as any command line does.
pub fn run_cli<I, T>(args: I) -> u8
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let cli = Cli::parse_from(args);
    // A second call in one process (the Python package) keeps the first subscriber.
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        // Colour only on a terminal: logs written to a file stay plain text.
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("BERTH_LOG").unwrap_or_else(|_| DEFAULT_LOG.into()),
        )
        .try_init();
    let json = cli.wants_json();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return EXIT_FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            if json {
                // With --json, standard output stays one JSON document, also on failure.
                println!("{}", serde_json::json!({ "error": { "message": format!("{e:#}") } }));
            }
            EXIT_FAILURE
        }
    }
}

impl Cli {
    /// Was JSON output asked for (`--json`)?
    fn wants_json(&self) -> bool {
        match &self.command {
            Command::Load(args) => args.json,
            Command::Bench(args) => args.json,
            Command::Compact(args) => args.json,
            Command::Package {
                command: PackageCommand::Show { json, .. },
            } => *json,
            Command::Plan(_) | Command::Config { .. } => false,
        }
    }
}

async fn run(cli: Cli) -> Result<u8> {
    let storage = match &cli.config {
        Some(path) => berth::model::StorageConfig::load_file(path, true)?,
        None => berth::model::StorageConfig::load()?,
    };
    match cli.command {
        Command::Load(args) => load(args, &storage).await,
        Command::Bench(args) => bench(args, storage, cli.config).await,
        Command::Plan(args) => plan(args, &storage).await,
        Command::Compact(args) => compact(args, &storage).await,
        Command::Package {
            command: PackageCommand::Show { package, json },
        } => render::show_package(&package, &storage, json)
            .await
            .map(|()| EXIT_SUCCESS),
        Command::Config {
            command: ConfigCommand::Show {
                destination,
                pipeline_name,
            },
        } => {
            let sources = berth::dlt_config::ConfigSources::discover(&std::env::current_dir()?)?;
            let resolved = berth::dlt_config::resolve(&destination, pipeline_name.as_deref(), &sources)?;
            print!("{}", resolved.describe());
            Ok(EXIT_SUCCESS)
        }
    }
}

/// What `berth load` opens: a URL as given; a bare name (`postgres`, `duckdb`, a warehouse)
/// resolved from dlt's configuration `sources` for the `pipeline`, with the variables, staging
/// bucket and bucket options it names.
fn resolve_destination(
    given: &str,
    pipeline: Option<&str>,
    sources: &berth::dlt_config::ConfigSources,
) -> Result<Option<berth::dlt_config::ResolvedDestination>> {
    if given.contains(':') || !berth::dlt_config::CONFIGURABLE.contains(&given.to_ascii_lowercase().as_str()) {
        return Ok(None);
    }
    let resolved = berth::dlt_config::resolve(&given.to_ascii_lowercase(), pipeline, sources)?;
    tracing::info!(
        "destination resolved from dlt's configuration:\n{}",
        resolved.describe()
    );
    Ok(Some(resolved))
}

/// The dlt pipeline whose configuration sections come first: the one given, else the one
/// recorded in the first package.
async fn pipeline_of(given: Option<&str>, first_package: Option<&berth::model::PackageLocation>) -> Option<String> {
    match (given, first_package) {
        (Some(name), _) => Some(name.to_string()),
        (None, Some(location)) => berth::model::LoadPackage::open(location.clone())
            .await
            .ok()
            .and_then(|p| p.restore.and_then(|r| r.pipeline_name)),
        (None, None) => None,
    }
}

/// How the packages' CSV jobs were written: dlt's `[normalize.data_writer]` options for the
/// pipeline (given, else the first package's), from the environment, `settings` (what a
/// `berth.dlt` destination resolved) and the dlt project in the current directory.
pub async fn csv_format_for(
    pipeline_name: Option<&str>,
    first_package: Option<&berth::model::PackageLocation>,
    settings: &berth::dlt_config::DltSettings,
) -> Result<berth::model::read::CsvFormat> {
    let pipeline = pipeline_of(pipeline_name, first_package).await;
    let sources = berth::dlt_config::ConfigSources::discover(&std::env::current_dir()?)?.with_settings(settings);
    Ok(berth::dlt_config::csv_format(pipeline.as_deref(), &sources)?)
}

/// One load as the library runs it: what `berth load` does for its arguments, and what the Python
/// package's `berth.load()` does for its own. Defaults are the command line's.
#[derive(Debug, Clone)]
pub struct LoadRequest {
    /// Package folders or URLs, loaded in order.
    pub packages: Vec<String>,
    /// Destination URL or bare dlt destination name; `None`: the project's or the default.
    pub destination: Option<String>,
    /// The dlt pipeline whose configuration sections come first for a bare name.
    pub pipeline_name: Option<String>,
    /// Staging bucket of a warehouse.
    pub staging: Option<String>,
    /// dlt settings already resolved, named as dlt's environment variables
    /// (`DESTINATION__SNOWFLAKE__CREDENTIALS__HOST`…), before every other source of a bare
    /// destination name's configuration: how `berth.dlt`'s warehouses hand over what dlt resolved.
    /// Never put into the process's environment.
    pub dlt_settings: berth::dlt_config::DltSettings,
    /// The loader's options (dataset, replace strategy, parallelism, attempts, failed jobs…).
    pub options: LoaderOptions,
    /// Bucket storage options and `[load]` defaults (berth.toml).
    pub storage: berth::model::StorageConfig,
}

impl LoadRequest {
    /// A request for `packages` with the command line's defaults and `berth.toml`'s settings.
    pub fn new(packages: Vec<String>, storage: berth::model::StorageConfig) -> Self {
        let options = LoaderOptions {
            widen_types: storage.load_settings().widen_types,
            memory_budget: storage.load_settings().memory_budget,
            ..LoaderOptions::default()
        };
        Self {
            packages,
            destination: None,
            pipeline_name: None,
            staging: None,
            dlt_settings: berth::dlt_config::DltSettings::default(),
            options,
            storage,
        }
    }

    /// Resolves the packages and the destination, then loads every package in order, reporting
    /// to `progress` and stopping at `cancel` (see [`Loader::with_cancel`]). The summary's peak
    /// RSS is the process's. Also returns how many packages were found: after a cancel, those
    /// past the summary's last were not started.
    pub async fn run(
        self,
        progress: Arc<dyn berth::loader::Progress>,
        cancel: berth::loader::CancellationToken,
    ) -> Result<(berth::loader::LoadSummary, usize)> {
        let locations = resolve_locations(&self.packages, &self.storage).await?;
        let found = locations.len();
        let given = match &self.destination {
            Some(destination) => destination.clone(),
            None => project_destination(locations.first()).await,
        };
        let pipeline = pipeline_of(self.pipeline_name.as_deref(), locations.first()).await;
        let sources =
            berth::dlt_config::ConfigSources::discover(&std::env::current_dir()?)?.with_settings(&self.dlt_settings);
        let mut options = self.options;
        // CSV jobs are read as dlt's writer wrote them (`[normalize.data_writer]`).
        options.read_options.csv = berth::dlt_config::csv_format(pipeline.as_deref(), &sources)?;
        let loader = match resolve_destination(&given, pipeline.as_deref(), &sources)? {
            Some(resolved) => {
                let open = berth::OpenOptions {
                    staging: self.staging.clone().or_else(|| resolved.staging().map(str::to_string)),
                    storage: resolved.storage(&self.storage),
                    env: resolved.env(),
                };
                berth::open_loader(resolved.url(), &open)?
            }
            None => {
                let open = berth::OpenOptions {
                    staging: self.staging.clone(),
                    storage: self.storage.clone(),
                    ..berth::OpenOptions::default()
                };
                berth::open_loader(&given, &open)?
            }
        };
        let loader = loader.with_options(options).with_progress(progress).with_cancel(cancel);
        Ok((load_measured(loader, locations).await?, found))
    }
}

/// Loads `locations` with `loader` and records the process's peak RSS in the summary. The loader
/// (and with it the destination) is dropped first: an embedded DuckDB checkpoints as it closes,
/// and that is part of the load's memory.
pub async fn load_measured(
    loader: Loader,
    locations: Vec<berth::model::PackageLocation>,
) -> Result<berth::loader::LoadSummary> {
    let loaded = loader.load_all(locations).await.context("load failed");
    drop(loader);
    let mut summary = loaded?;
    summary.peak_rss_bytes = berth::loader::process_peak_rss();
    Ok(summary)
}

async fn load(args: LoadArgs, storage: &berth::model::StorageConfig) -> Result<u8> {
    if let Some(sink) = args.destination.clone().filter(|d| berth::sink::is_sink_url(d)) {
        return load_into_sink(args, &sink, storage).await;
    }
    let mut request = LoadRequest::new(args.packages, storage.clone());
    request.destination = args.destination;
    request.pipeline_name = args.pipeline_name;
    request.staging = args.staging;
    request.options = LoaderOptions {
        dataset: args.dataset,
        replace_strategy: args.replace_strategy,
        parallel_jobs: args.parallel.max(1),
        max_attempts: args.max_attempts.max(1),
        allow_failed_jobs: args.allow_failed_jobs,
        widen_types: args.widen_types || request.options.widen_types,
        memory_budget: request.options.memory_budget,
        ..LoaderOptions::default()
    };
    args.tuning.apply(&mut request.options);
    let show_progress = !args.json && std::io::stderr().is_terminal();
    let progress = Arc::new(render::ProgressBars::new(show_progress));
    let cancel = berth::loader::CancellationToken::new();
    let signals = berth::model::task::spawn_owned(stop_on_signals(cancel.clone(), Arc::clone(&progress)));
    let loaded = request
        .run(
            Arc::clone(&progress) as Arc<dyn berth::loader::Progress>,
            cancel.clone(),
        )
        .await;
    signals.abort();
    let (summary, total) = loaded?;
    finish_load(&summary, args.json, &cancel, total, &progress)
}

/// The destination when none is given: inside a dlt project (a `.dlt/` folder in the current
/// directory), the one the first package's pipeline recorded, by its bare name, when berth
/// resolves it from dlt's configuration; else [`berth::DEFAULT_DESTINATION`].
async fn project_destination(first_package: Option<&berth::model::PackageLocation>) -> String {
    let default = berth::DEFAULT_DESTINATION.to_string();
    let (true, Some(location)) = (std::path::Path::new(".dlt").is_dir(), first_package) else {
        return default;
    };
    let recorded = berth::model::LoadPackage::open(location.clone())
        .await
        .ok()
        .and_then(|p| p.restore)
        .and_then(|r| r.destination_type);
    match recorded.as_deref().and_then(|t| t.rsplit('.').next()) {
        Some(name) if berth::dlt_config::CONFIGURABLE.contains(&name) => name.to_string(),
        _ => default,
    }
}

/// `berth load` into a sink: the same summary, exit codes and Ctrl-C handling as a database.
async fn load_into_sink(args: LoadArgs, destination: &str, storage: &berth::model::StorageConfig) -> Result<u8> {
    let mut headers = Vec::new();
    let from_env = std::env::var("BERTH_WEBHOOK_HEADERS").unwrap_or_default();
    for header in args.sink.headers.iter().map(String::as_str).chain(from_env.lines()) {
        if header.trim().is_empty() {
            continue;
        }
        let (name, value) = header
            .split_once(':')
            .ok_or_else(|| anyhow::anyhow!("a header is `Name: value`; one given has no `:`"))?;
        headers.push((name.trim().to_string(), value.trim().to_string()));
    }
    anyhow::ensure!(args.sink.sink_batch_size > 0, "--sink-batch-size must be at least 1");
    let webhook = berth::sink::WebhookConfig {
        headers,
        body: args.sink.body.parse().map_err(|e: String| anyhow::anyhow!(e))?,
        requests_per_second: args.sink.rate_limit,
        ..berth::sink::WebhookConfig::default()
    };
    let sink = berth::sink::open_sink(destination, webhook).map_err(|e| anyhow::anyhow!(e.message))?;
    let locations = resolve_locations(&args.packages, storage).await?;
    let total = locations.len();
    let mut options = berth::sink::SinkOptions {
        batch_size: args.sink.sink_batch_size,
        skip_dlt: !args.sink.keep_dlt_columns,
        max_nesting: args.sink.max_nesting,
        parallel_jobs: args.parallel.max(1),
        max_attempts: args.max_attempts.max(1),
        allow_failed_jobs: args.allow_failed_jobs,
        ..berth::sink::SinkOptions::default()
    };
    options.read_options.batch_size = args.tuning.batch_size.max(1);
    let settings = berth::dlt_config::DltSettings::default();
    options.read_options.csv = csv_format_for(args.pipeline_name.as_deref(), locations.first(), &settings).await?;
    // Lines on standard output are the data: progress bars stay off then.
    let to_stdout = matches!(destination, "ndjson:" | "ndjson:-");
    let show_progress = !args.json && !to_stdout && std::io::stderr().is_terminal();
    let progress = Arc::new(render::ProgressBars::new(show_progress));
    let loader = berth::sink::SinkLoader::new(sink).with_options(options).loader();
    let (summary, cancel) = run_loads(loader, locations, &progress).await?;
    if to_stdout && !args.json {
        // The summary goes to standard error, out of the data's way.
        progress.finish();
        render::eprint_summary(&summary);
        return Ok(exit_code(&summary, &cancel, total));
    }
    finish_load(&summary, args.json, &cancel, total, &progress)
}

/// Runs `loader` over `locations`, showing `progress`, until done or stopped by Ctrl-C (see
/// [`stop_on_signals`]), as [`load_measured`].
async fn run_loads(
    loader: Loader,
    locations: Vec<berth::model::PackageLocation>,
    progress: &Arc<render::ProgressBars>,
) -> Result<(berth::loader::LoadSummary, berth::loader::CancellationToken)> {
    let cancel = berth::loader::CancellationToken::new();
    let signals = berth::model::task::spawn_owned(stop_on_signals(cancel.clone(), Arc::clone(progress)));
    let loader = loader
        .with_progress(Arc::clone(progress) as Arc<dyn berth::loader::Progress>)
        .with_cancel(cancel.clone());
    let loaded = load_measured(loader, locations).await;
    signals.abort();
    Ok((loaded?, cancel))
}

/// Prints a load's summary and picks the exit code.
fn finish_load(
    summary: &berth::loader::LoadSummary,
    json: bool,
    cancel: &berth::loader::CancellationToken,
    total: usize,
    progress: &render::ProgressBars,
) -> Result<u8> {
    progress.finish();
    if json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        render::print_summary(summary);
    }
    Ok(exit_code(summary, cancel, total))
}

fn exit_code(summary: &berth::loader::LoadSummary, cancel: &berth::loader::CancellationToken, total: usize) -> u8 {
    if summary.interrupted() || (cancel.is_cancelled() && !summary.all_loaded()) {
        EXIT_INTERRUPTED
    } else if cancel.is_cancelled() && summary.packages.len() < total {
        eprintln!("interrupted: packages after the last one shown were not loaded; load them again");
        EXIT_INTERRUPTED
    } else if summary.any_pending() {
        EXIT_JOBS_FAILED
    } else if summary.has_failed_jobs() {
        EXIT_LOADED_WITH_FAILED_JOBS
    } else {
        EXIT_SUCCESS
    }
}

/// First Ctrl-C or SIGTERM: stop starting jobs (`cancel`), let running ones finish. Second: exit
/// at once; the journal in the destination makes that as safe as a crash.
async fn stop_on_signals(cancel: berth::loader::CancellationToken, progress: Arc<render::ProgressBars>) {
    let Ok(mut terminate) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) else {
        return;
    };
    let mut signal = async || {
        tokio::select! {
            r = tokio::signal::ctrl_c() => r.is_ok(),
            s = terminate.recv() => s.is_some(),
        }
    };
    if !signal().await {
        return;
    }
    progress.finish();
    eprintln!(
        "interrupted: finishing the jobs that are loading and starting no new ones; the package resumes on the \
         next run (press Ctrl-C again to stop at once)"
    );
    cancel.cancel();
    if signal().await {
        eprintln!("stopped; load the package again to resume it");
        std::process::exit(i32::from(EXIT_INTERRUPTED));
    }
}

async fn plan(args: PlanArgs, storage: &berth::model::StorageConfig) -> Result<u8> {
    let request = PlanRequest {
        packages: args.packages,
        destination: args.destination,
        dataset: args.dataset,
        replace_strategy: args.replace_strategy,
        assume_empty: args.assume_empty,
        staging: args.staging,
    };
    print!("{}", plan_text(&request, storage).await?);
    Ok(EXIT_SUCCESS)
}

/// What `berth plan` is asked: the statements a load of `packages` would run.
#[derive(Debug, Clone)]
pub struct PlanRequest {
    /// Package folders or URLs.
    pub packages: Vec<String>,
    /// Destination URL or dialect name (nothing is connected to).
    pub destination: String,
    /// Dataset to plan for; default: the package's.
    pub dataset: Option<String>,
    /// Replace strategy; default: the destination's first.
    pub replace_strategy: Option<ReplaceStrategy>,
    /// Plan as for a first load into empty tables.
    pub assume_empty: bool,
    /// Staging bucket of a warehouse: the plan shows each job's upload and COPY.
    pub staging: Option<String>,
}

/// The text `berth plan` prints for `request`: per package, its phases and statements.
pub async fn plan_text(request: &PlanRequest, storage: &berth::model::StorageConfig) -> Result<String> {
    let (dialect, caps) = berth::planning_dialect(&request.destination)?;
    let jobs = berth::job_steps(&request.destination, request.staging.as_deref())?;
    let locations = resolve_locations(&request.packages, storage).await?;
    let mut out = String::new();
    for location in locations {
        let package = berth::model::LoadPackage::open(location).await?;
        let dataset = package.dataset_name(request.dataset.as_deref());
        let options = berth::loader::explain::ExplainOptions {
            plan: berth::plan::PlanOptions {
                dataset,
                replace_strategy: request
                    .replace_strategy
                    .or_else(|| caps.replace_strategies.first().copied())
                    .unwrap_or_default(),
                widen_types: false,
            },
            assume_empty: request.assume_empty,
            jobs: jobs.clone(),
        };
        let phases = if dialect.name == berth::delta::SCHEME {
            berth::delta::plan::explain(&package, &options).await
        } else {
            berth::loader::explain::explain(&package, &dialect, &caps, &options).await
        }
        .with_context(|| format!("cannot plan package {}", package.load_id))?;
        render::print_plan(&mut out, &package.load_id, dialect.name, &phases);
    }
    Ok(out)
}

async fn compact(args: CompactArgs, storage: &berth::model::StorageConfig) -> Result<u8> {
    let options = berth::delta::CompactOptions {
        dataset: args.dataset,
        tables: args.tables,
        target_file_size: args.target_file_mib.max(1) << 20,
    };
    let compacted = compact_lake(&args.destination, &options, storage).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&compacted)?);
    } else {
        render::print_compaction(&options.dataset, &compacted);
    }
    Ok(EXIT_SUCCESS)
}

/// Compacts the tables of a Delta lake (`delta:…`) as `berth compact` does (and the Python
/// package's `berth.compact()`).
pub async fn compact_lake(
    destination: &str,
    options: &berth::delta::CompactOptions,
    storage: &berth::model::StorageConfig,
) -> Result<Vec<berth::delta::TableCompaction>> {
    anyhow::ensure!(
        berth::delta::is_delta_url(destination),
        "berth compact works on Delta lakes (delta:<folder or bucket URL>), not `{}`",
        berth::redact(destination)
    );
    let lake = berth::delta::DeltaExecutor::from_url(destination, storage)?;
    Ok(lake.compact(options).await?)
}

async fn bench(
    args: BenchArgs,
    storage: berth::model::StorageConfig,
    config_file: Option<std::path::PathBuf>,
) -> Result<u8> {
    let mut config = berth_bench::BenchConfig::new(&args.destination, &args.work_dir)
        .with_rows(args.rows)
        .with_runs(args.runs);
    config.row_group_rows = args.row_group_rows.max(1);
    config.shape = args.shape.parse().map_err(|e: String| anyhow::anyhow!(e))?;
    config.seed = args.seed;
    config.ceiling = !args.no_ceiling;
    config.disposition = args.disposition.parse().map_err(|e: String| anyhow::anyhow!(e))?;
    config.delta_rows = args.delta_rows.max(1);
    config.loader.parallel_jobs = args.parallel.max(1);
    args.tuning.apply(&mut config.loader);
    anyhow::ensure!(
        args.from_bucket.is_none() || config.disposition == berth_bench::synth::Disposition::Append,
        "--from-bucket measures appends; drop --disposition or --from-bucket"
    );
    config.bucket = args.from_bucket;
    config.package = args.package;
    if args.vs.is_some() {
        anyhow::ensure!(
            !berth::delta::is_delta_url(&config.destination),
            "--vs dlt measures PostgreSQL and DuckDB; for a Delta lake, benches/python/delta.py runs dlt's Delta load"
        );
        config.vs_dlt = Some(berth_bench::DltRunner::resolve(args.dlt_python.as_deref())?);
    }
    config.storage = storage;
    // Each timed load runs as `berth load` in a process of its own: its peak RSS is a user's load's.
    // Inside the Python package's console script this process is Python (which names itself in
    // BERTH_PYTHON_CLI): loads run as `python -m berth._cli load …`, the same command line.
    let mut global_args: Vec<std::ffi::OsString> = Vec::new();
    let program = match std::env::var_os(PYTHON_CLI_ENV) {
        Some(python) => {
            global_args.extend(["-m".into(), "berth._cli".into()]);
            std::path::PathBuf::from(python)
        }
        None => std::env::current_exe().context("cannot find the berth executable to run loads with")?,
    };
    if let Some(path) = config_file {
        global_args.extend(["--config".into(), path.into_os_string()]);
    }
    config.load_command = Some(berth_bench::LoadCommand { program, global_args });
    let report = berth_bench::run(&config).await.context("benchmark failed")?;
    if let Some(path) = &args.report {
        std::fs::write(path, berth_bench::html::render(&report))
            .with_context(|| format!("cannot write the report to {}", path.display()))?;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        render::print_bench(&report);
    }
    Ok(EXIT_SUCCESS)
}
