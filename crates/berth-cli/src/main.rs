//! The `berth` binary: the command line of [`berth_cli`].

use std::process::ExitCode;

fn main() -> ExitCode {
    // Output piped into a reader that stops early (`berth package show … | head -1`) ends berth
    // as it ends `cat`, instead of a panic in `println!` on the closed pipe.
    #[cfg(unix)]
    // SAFETY: first thing in main, before any other thread exists; SIG_DFL is a valid disposition
    // for SIGPIPE.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    ExitCode::from(berth_cli::run_cli(std::env::args_os()))
}
