//! # berth-bench
//!
//! Throughput benchmarks a user can run against their own destination: synthetic dlt packages
//! ([`synth`]), loaded by berth and, in the same run, by the destination's own fastest path (the
//! "ceiling": PostgreSQL reading a binary COPY file itself, in one stream and in as many as
//! berth's connections, DuckDB's `read_parquet`), so results
//! read as a ratio. `berth bench` is the command line for it, and runs each timed load as a
//! `berth load` process of its own ([`process`]), so that a run's peak memory is a load's own; as a
//! library, loads run in the calling process unless [`BenchConfig::load_command`] says how to start
//! `berth load`.
//!
//! ```no_run
//! use berth_bench::{BenchConfig, run};
//!
//! # async fn example() -> berth_bench::Result<()> {
//! let config = BenchConfig::new("postgres://bench:secret@localhost:5432/bench", "/tmp/berth-bench").with_rows(5_000_000);
//! let report = run(&config).await?;
//! for case in &report.cases {
//!     println!("{}: {:.2} s median", case.name, case.seconds.median);
//! }
//! # Ok(())
//! # }
//! ```

pub mod dlt;
pub mod html;
pub mod process;
mod runner;
pub mod synth;

use std::path::{Path, PathBuf};

pub use dlt::DltRunner;
pub use process::LoadCommand;
pub use runner::{BenchConfig, BenchReport, CaseReport, Stats, run};
pub use synth::{Disposition, Shape};

/// A `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a benchmark could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file or folder could not be written or read.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Generating the synthetic package failed.
    #[error("generating the benchmark package: {0}")]
    Generate(String),
    /// The destination failed.
    #[error(transparent)]
    Destination(#[from] berth::destination::Error),
    /// Loading failed.
    #[error(transparent)]
    Load(#[from] berth::loader::Error),
    /// The benchmark cannot run as configured.
    #[error("{0}")]
    Config(String),
}

impl Error {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}
