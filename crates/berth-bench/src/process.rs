//! Timed loads as `berth load` processes of their own.
//!
//! A load measured inside the bench's process would count what the bench holds besides it: the
//! code and heap of generating packages, what earlier runs left in the allocators' free lists
//! (glibc keeps fragments of freed arenas: by the tenth run of the 5-table upsert the bench's
//! baseline had grown from 50 to 110 MiB), the ceiling's DuckDB work. A user's load is a fresh
//! process, so the bench runs each timed load as one: `berth load <package> --json` with the
//! bench's loader options. Its time, phases and peak memory come from the summary it prints;
//! `berth load` reads its own peak (`VmHWM`) after closing the destination.
//!
//! The kernel's figure for a child (`wait4`'s `ru_maxrss`) would not do: a child started with
//! `vfork` (as `posix_spawn` and Rust's `Command` start them) shares the parent's memory until it
//! `exec`s, and the kernel records that memory's peak as the child's. After the DuckDB ceiling
//! had run in the bench process, every later wide load read 258 MiB that way, against 163-171 MiB
//! as the load's own.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use berth::loader::{LoadSummary, LoaderOptions};

use crate::{Error, Result};

/// How to start a `berth load` process: the `berth` executable and the options to put before
/// `load` (such as `--config`). The bench adds `load <package> --dataset … --json` and the loader
/// options it forwards (parallel jobs, attempts, batch size, split size, replace strategy); the
/// destination URL goes in `BERTH_DESTINATION`, out of the process list, where its password would
/// be readable by any user of the machine.
#[derive(Debug, Clone)]
pub struct LoadCommand {
    /// The `berth` executable.
    pub program: PathBuf,
    /// Arguments before `load`.
    pub global_args: Vec<OsString>,
}

impl LoadCommand {
    /// Runs `berth load <source>` into `dataset` of `destination` and waits for it. Returns its
    /// summary, however the load ended (at least one package), the process's peak resident memory
    /// in bytes (`None` where the platform does not tell) and the CPU seconds it used (user and
    /// system).
    pub(crate) async fn load(
        &self,
        destination: &str,
        source: &str,
        dataset: &str,
        options: &LoaderOptions,
    ) -> Result<Loaded> {
        let mut command = Command::new(&self.program);
        command
            .args(&self.global_args)
            .args(["load", source, "--dataset", dataset, "--json"])
            .args(forwarded(options)?)
            .env("BERTH_DESTINATION", destination)
            // The bench loads PostgreSQL and DuckDB, which take no staging bucket.
            .env_remove("BERTH_STAGING")
            .stdin(Stdio::null());
        let (output, cpu_seconds) = tokio::task::spawn_blocking(move || {
            let before = children_cpu_seconds();
            let output = command.output();
            (
                output,
                children_cpu_seconds().zip(before).map(|(after, before)| after - before),
            )
        })
        .await
        .map_err(|e| Error::Config(format!("waiting for berth load: {e}")))?;
        let output = output.map_err(|e| Error::io(&self.program, e))?;
        // A load that ran prints its summary whatever its exit status; the caller judges the
        // packages' status and rows. Without one, the error is on standard error.
        match serde_json::from_slice::<LoadSummary>(&output.stdout) {
            Ok(summary) if !summary.packages.is_empty() => Ok(Loaded {
                peak_rss: summary.peak_rss_bytes,
                summary,
                cpu_seconds,
            }),
            _ => Err(Error::Config(format!(
                "berth load {source} into {dataset} failed ({}): {}",
                output.status,
                last_lines(&String::from_utf8_lossy(&output.stderr), 10)
            ))),
        }
    }
}

/// What a `berth load` process did.
#[derive(Debug)]
pub(crate) struct Loaded {
    /// Its summary: one package or more.
    pub summary: LoadSummary,
    /// Its peak resident memory.
    pub peak_rss: Option<u64>,
    /// Its CPU time, user and system.
    pub cpu_seconds: Option<f64>,
}

/// CPU seconds (user and system) of this process's waited-for children so far.
pub(crate) fn children_cpu_seconds() -> Option<f64> {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes one rusage into the pointer it is given, which points at one.
    let usage = unsafe {
        if libc::getrusage(libc::RUSAGE_CHILDREN, usage.as_mut_ptr()) != 0 {
            return None;
        }
        usage.assume_init()
    };
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Some(seconds(usage.ru_utime) + seconds(usage.ru_stime))
}

/// The command-line options of `berth load` for `options`.
fn forwarded(options: &LoaderOptions) -> Result<Vec<String>> {
    let defaults = LoaderOptions::default();
    if options.keep_staging != defaults.keep_staging
        || options.allow_failed_jobs != defaults.allow_failed_jobs
        || options.retry_backoff != defaults.retry_backoff
    {
        return Err(Error::Config(
            "keep_staging, allow_failed_jobs and retry_backoff cannot be given to a `berth load` process; \
             run the bench without a LoadCommand"
                .into(),
        ));
    }
    let mut args = vec![
        "--parallel".to_string(),
        options.parallel_jobs.to_string(),
        "--max-attempts".into(),
        options.max_attempts.to_string(),
        "--batch-size".into(),
        options.read_options.batch_size.to_string(),
        "--split-mib".into(),
        (options.split_min_bytes >> 20).max(1).to_string(),
    ];
    if let Some(strategy) = options.replace_strategy {
        args.extend(["--replace-strategy".into(), strategy.to_string()]);
    }
    if options.widen_types {
        args.push("--widen-types".into());
    }
    if let Some(budget) = options.memory_budget {
        args.extend(["--memory-budget".into(), budget.to_string()]);
    }
    Ok(args)
}

pub(crate) fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwards_the_options_berth_load_takes() {
        let mut options = LoaderOptions {
            parallel_jobs: 3,
            replace_strategy: Some(berth::model::ReplaceStrategy::StagingOptimized),
            ..LoaderOptions::default()
        };
        options.split_min_bytes = 64 << 20;
        let args = forwarded(&options).expect("forwarded");
        let pairs: Vec<(&str, &str)> = args.chunks(2).map(|p| (p[0].as_str(), p[1].as_str())).collect();
        assert!(pairs.contains(&("--parallel", "3")));
        assert!(pairs.contains(&("--split-mib", "64")));
        assert!(pairs.contains(&("--replace-strategy", "staging-optimized")));
        options.keep_staging = true;
        assert!(forwarded(&options).is_err());
    }
}
