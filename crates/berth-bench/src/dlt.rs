//! dlt's own load step on the same packages, in the same run (`berth bench --vs dlt`).
//!
//! A Python with dlt 1.31 runs `dlt_load.py` (shipped inside berth) on a copy of each package:
//! the packages go into a fresh pipeline's `load/normalized/` and `pipeline.load()` — the step
//! `pipeline.run` ends with, dlt's own per-file job loop — is timed. dlt takes its fastest path per
//! destination: Parquet through ADBC into PostgreSQL (with `adbc-driver-postgresql` installed), and
//! DuckDB reading the Parquet files itself. The destination URL reaches the script through its
//! environment, never its command line. Without a Python given, berth creates a virtual
//! environment with dlt 1.31 once (`~/.cache/berth/dlt-<version>-venv`, from PyPI) and reuses it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::Deserialize;

use crate::{Error, Result};

/// The dlt version `--vs dlt` measures (the one berth's format follows).
pub const DLT_VERSION: &str = "1.31.0";

/// What the bench installs into the virtual environment it creates.
const PACKAGES: [&str; 3] = [
    "dlt[duckdb,postgres,parquet]==1.31.0",
    "adbc-driver-postgresql",
    "pyarrow",
];

const SCRIPT: &str = include_str!("dlt_load.py");

/// A Python that runs dlt's load step.
#[derive(Debug, Clone)]
pub struct DltRunner {
    python: PathBuf,
    /// dlt's version in it.
    pub version: String,
}

/// What one dlt load did.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct DltLoaded {
    /// The time of `pipeline.load()`.
    pub seconds: f64,
    /// Rows of each data table after the load.
    pub rows: BTreeMap<String, u64>,
    /// The Python process's peak RSS (`VmHWM`).
    pub peak_rss_bytes: u64,
    /// CPU seconds of the process (user and system).
    #[serde(skip)]
    pub cpu_seconds: Option<f64>,
}

impl DltRunner {
    /// The Python at `python` (checked to have dlt 1.31), or else berth's own virtual environment,
    /// created on first use.
    pub fn resolve(python: Option<&Path>) -> Result<Self> {
        let python = match python {
            Some(python) => python.to_path_buf(),
            None => own_venv()?,
        };
        let out = Command::new(&python)
            .args(["-c", "import dlt; print(dlt.__version__)"])
            .output()
            .map_err(|e| Error::io(&python, e))?;
        let version = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if !out.status.success() || !version.starts_with("1.31.") {
            return Err(Error::Config(format!(
                "--vs dlt needs a Python with dlt 1.31 ({} has {}); install it with `{} -m pip install {}`, or \
                 leave --dlt-python out and berth creates its own environment",
                python.display(),
                if version.is_empty() { "none" } else { &version },
                python.display(),
                PACKAGES.map(|p| format!("'{p}'")).join(" ")
            )));
        }
        Ok(Self { python, version })
    }

    /// The Python it runs.
    pub fn python(&self) -> &Path {
        &self.python
    }

    /// Loads `packages` (in order) into `dataset` of `destination` with dlt's load step, in a
    /// fresh pipeline under `work`.
    pub(crate) async fn load(
        &self,
        work: &Path,
        destination: &str,
        dataset: &str,
        packages: &[PathBuf],
    ) -> Result<DltLoaded> {
        let _ = std::fs::remove_dir_all(work);
        std::fs::create_dir_all(work).map_err(|e| Error::io(work, e))?;
        let script = work.join("dlt_load.py");
        std::fs::write(&script, SCRIPT).map_err(|e| Error::io(&script, e))?;
        let mut command = Command::new(&self.python);
        command
            .arg(&script)
            .arg(work.join("pipelines"))
            .arg(dataset)
            .args(packages)
            .env("BERTH_DLT_DESTINATION", destination)
            .env("RUNTIME__LOG_LEVEL", "WARNING")
            .stdin(Stdio::null());
        let (output, cpu_seconds) = tokio::task::spawn_blocking(move || {
            let before = crate::process::children_cpu_seconds();
            let output = command.output();
            let after = crate::process::children_cpu_seconds();
            (output, after.zip(before).map(|(after, before)| after - before))
        })
        .await
        .map_err(|e| Error::Config(format!("waiting for dlt: {e}")))?;
        let output = output.map_err(|e| Error::io(&self.python, e))?;
        let _ = std::fs::remove_dir_all(work);
        let stdout = String::from_utf8_lossy(&output.stdout);
        let parsed = stdout
            .lines()
            .last()
            .and_then(|l| serde_json::from_str::<DltLoaded>(l).ok());
        match parsed {
            Some(loaded) if output.status.success() => Ok(DltLoaded { cpu_seconds, ..loaded }),
            _ => Err(Error::Config(format!(
                "dlt's load into {dataset} failed ({}): {}",
                output.status,
                berth::redact(&crate::process::last_lines(
                    &String::from_utf8_lossy(&output.stderr),
                    12
                ))
            ))),
        }
    }
}

/// `~/.cache/berth/dlt-<version>-venv/bin/python`, created with dlt and its drivers on first use.
fn own_venv() -> Result<PathBuf> {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))
        .ok_or_else(|| Error::Config("--vs dlt: no HOME to keep a Python environment in; give --dlt-python".into()))?;
    let venv = cache.join("berth").join(format!("dlt-{DLT_VERSION}-venv"));
    let python = venv.join("bin").join("python");
    let ready = venv.join(".berth-ready");
    if ready.exists() {
        return Ok(python);
    }
    tracing::warn!("--vs dlt: creating {} with dlt {DLT_VERSION} (once)", venv.display());
    let run = |program: &Path, args: &[&str]| -> Result<()> {
        let status = Command::new(program)
            .args(args)
            .stdout(Stdio::null())
            .status()
            .map_err(|e| Error::io(program, e))?;
        if status.success() {
            Ok(())
        } else {
            Err(Error::Config(format!(
                "--vs dlt: `{} {}` failed ({status}); give a Python with dlt {DLT_VERSION} as --dlt-python",
                program.display(),
                args.join(" ")
            )))
        }
    };
    let venv_text = venv.to_string_lossy().to_string();
    run(Path::new("python3"), &["-m", "venv", &venv_text])?;
    let mut install = vec!["-m", "pip", "install", "--quiet"];
    install.extend(PACKAGES);
    run(&python, &install)?;
    std::fs::write(&ready, DLT_VERSION).map_err(|e| Error::io(&ready, e))?;
    Ok(python)
}
