//! The conformance matrix: every dlt fixture scenario, in every job format dlt writes, loaded into
//! every destination whose dlt capabilities take that format, ends with dlt's rows and dlt's
//! bookkeeping.
//!
//! The trials come from the folder listing of `testdata/dlt/<normalized_for>[-<format>]/<scenario>/`:
//! a new fixture folder is a new trial, there is no list to keep. A trial is named
//! `<folder>/<scenario>/into_<destination>`, so `cargo test --test conformance -- postgres-csv`
//! runs one format and `-- into_duckdb` one destination. PostgreSQL trials share one throwaway
//! cluster (started on the first PostgreSQL trial, removed when the run ends), a database each.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use berth::destination::Destination;
use berth::duckdb::DuckDbDestination;
use berth::loader::LoaderOptions;
use berth::postgres::PostgresDestination;
use berth_tests::pg::PgCluster;
use berth_tests::{ScenarioOutcome, check_scenario_outcome, testdata};
use libtest_mimic::{Arguments, Failed, Trial};

/// Scenarios whose dlt features berth does not implement yet. berth must refuse them (a plan
/// error, nothing of the package committed) instead of loading other rows than dlt; the trial
/// checks exactly that. Remove a line when the feature lands, and the trial checks dlt's rows.
const REFUSED: &[(&str, &str)] = &[];

/// A destination berth loads into in this matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    DuckDb,
    Postgres,
    /// A Delta lake in a temp folder, read back by the test's own log reader.
    Delta,
}

impl Target {
    const ALL: [Target; 3] = [Target::DuckDb, Target::Postgres, Target::Delta];

    fn name(self) -> &'static str {
        match self {
            Target::DuckDb => "duckdb",
            Target::Postgres => "postgres",
            Target::Delta => "delta",
        }
    }

    /// The job formats loaded into this destination in the matrix: those dlt 1.31 itself loads
    /// there (`supported_loader_file_formats`; PostgreSQL's Parquet through ADBC), and CSV into
    /// DuckDB, which dlt's DuckDB does not take but whose rows are plain (JSONL into PostgreSQL
    /// is left out: its binary values would be dlt-on-DuckDB's base64 text, see the README).
    fn takes(self, format: &str) -> bool {
        match self {
            Target::DuckDb => matches!(format, "insert_values" | "parquet" | "jsonl" | "csv"),
            Target::Postgres => matches!(format, "insert_values" | "parquet" | "csv"),
            // dlt's filesystem destination writes Delta from Parquet; berth reads every format.
            Target::Delta => true,
        }
    }
}

/// One fixture folder: `testdata/dlt/<folder>/<scenario>`.
#[derive(Debug, Clone)]
struct Fixture {
    folder: String,
    scenario: String,
    dir: PathBuf,
    format: String,
}

fn fixtures() -> Vec<Fixture> {
    let root = testdata().join("dlt");
    let mut found = Vec::new();
    for folder in sorted_dirs(&root) {
        let folder_name = file_name(&folder);
        for dir in sorted_dirs(&folder) {
            if !dir.join("scenario.json").is_file() {
                continue;
            }
            let scenario: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(dir.join("scenario.json")).expect("scenario.json"))
                    .expect("scenario.json is JSON");
            let format = scenario["loader_file_format"].as_str().unwrap_or("parquet").to_string();
            found.push(Fixture {
                folder: folder_name.clone(),
                scenario: file_name(&dir),
                dir,
                format,
            });
        }
    }
    found
}

fn sorted_dirs(dir: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs
}

fn file_name(path: &Path) -> String {
    path.file_name().unwrap_or_default().to_string_lossy().into_owned()
}

/// The PostgreSQL cluster of this run, started by the first trial that needs it.
#[derive(Debug, Default)]
struct Postgres {
    cluster: OnceLock<PgCluster>,
    databases: AtomicUsize,
}

impl Postgres {
    fn fresh_database(&self) -> String {
        let cluster = self.cluster.get_or_init(PgCluster::start);
        let n = self.databases.fetch_add(1, Ordering::Relaxed);
        cluster.database_url(&format!("matrix_{n}"))
    }
}

fn run_trial(fixture: &Fixture, target: Target, postgres: &Postgres) -> Result<(), Failed> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let scratch = tempfile::tempdir().map_err(|e| e.to_string())?;
    if target == Target::Delta {
        return runtime
            .block_on(berth_tests::delta::check_delta_scenario(
                &fixture.dir,
                &scratch.path().join("lake"),
                LoaderOptions::default(),
            ))
            .map_err(Failed::from);
    }
    let destination: Arc<dyn Destination> = match target {
        Target::DuckDb => {
            Arc::new(DuckDbDestination::open(scratch.path().join("matrix.duckdb")).map_err(|e| e.to_string())?)
        }
        Target::Postgres => {
            Arc::new(PostgresDestination::from_url(&postgres.fresh_database()).map_err(|e| e.to_string())?)
        }
        Target::Delta => return Err("a lake is checked above".into()),
    };
    let expect = match REFUSED.iter().find(|(s, _)| *s == fixture.scenario) {
        Some((_, why)) => ScenarioOutcome::Refused { why },
        None => ScenarioOutcome::DltRows,
    };
    runtime
        .block_on(check_scenario_outcome(
            destination,
            &fixture.dir,
            LoaderOptions::default(),
            expect,
        ))
        .map_err(Failed::from)
}

fn main() -> ExitCode {
    let args = Arguments::from_args();
    let postgres = Arc::new(Postgres::default());
    let mut trials = Vec::new();
    for fixture in fixtures() {
        for target in Target::ALL {
            if !target.takes(&fixture.format) {
                continue;
            }
            let name = format!("{}/{}/into_{}", fixture.folder, fixture.scenario, target.name());
            let (fixture, postgres) = (fixture.clone(), Arc::clone(&postgres));
            trials.push(Trial::test(name, move || run_trial(&fixture, target, &postgres)));
        }
    }
    let conclusion = libtest_mimic::run(&args, trials);
    // Stops and removes the cluster before the process exits (statics are never dropped).
    drop(postgres);
    conclusion.exit_code()
}
