//! The `svcca` process: logging, the exit status of each kind of error, and the fast
//! exit. src/main.rs calls [`main`] and nothing else.

use super::Cli;
use crate::error::InputError;
use crate::preempt::{Preempted, EXIT_STATUS};
use clap::Parser;
use std::io::Write;

/// Runs the command line of this process and ends it with the command's exit status:
/// 0, 2 for the user's mistakes ([`InputError`]), 75 for a preempted job (state saved,
/// to be requeued), 1 for anything else.
pub fn main() -> ! {
    crate::host::reuse_freed_host_memory();
    // Every command resolves its device before it seeds libtorch: checked from here on.
    crate::device::require_resolution();
    tracing_subscriber::fmt().with_env_filter(log_filter()).with_writer(std::io::stderr).with_ansi(colour()).with_target(false).init();
    let status = match Cli::parse().run() {
        Ok(()) => 0,
        // The user's to fix: one line, status 2 (as clap does for bad arguments).
        Err(e) if e.is::<InputError>() => {
            eprintln!("error: {e}");
            2
        }
        // State saved on SIGUSR1/SIGTERM: the batch script requeues on this status.
        Err(e) if e.is::<Preempted>() => {
            eprintln!("{e}");
            EXIT_STATUS.into()
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            1
        }
    };
    exit_without_teardown(status)
}

/// The log filter: `SVCCA_LOG`, else `RUST_LOG`, else `info` (`SVCCA_LOG=debug`,
/// `RUST_LOG=warn`, ...). A variable that is set but empty counts as unset; one that does
/// not parse is said, and `info` used.
fn log_filter() -> tracing_subscriber::EnvFilter {
    let var = ["SVCCA_LOG", "RUST_LOG"].into_iter().find_map(|k| std::env::var(k).ok().filter(|v| !v.trim().is_empty()).map(|v| (k, v)));
    match var {
        None => tracing_subscriber::EnvFilter::new("info"),
        Some((k, v)) => tracing_subscriber::EnvFilter::try_new(&v).unwrap_or_else(|e| {
            eprintln!("warning: {k}={v} is not a log filter ({e}); logging at info");
            tracing_subscriber::EnvFilter::new("info")
        }),
    }
}

/// Whether logs are coloured: only on a terminal (never into a file or a Slurm log), and
/// not with `NO_COLOR` set to anything but the empty string (no-color.org).
fn colour() -> bool {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Ends the process once everything the command made is dropped (files written,
/// run-folder lock released: `run` has returned) and its output flushed, skipping the
/// C++ static destructors: libtorch's unregister its thousands of operators, a visible
/// share of a short `svcca` process (benches/records/2026-12-01.md). The kernel frees
/// the memory and closes the files.
fn exit_without_teardown(status: i32) -> ! {
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    // SAFETY: _exit only ends the process; nothing of Rust's is left to drop here.
    unsafe { libc::_exit(status) }
}
