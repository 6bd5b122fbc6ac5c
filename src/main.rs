use clap::Parser;
use std::io::Write;
use svcca::cli::Cli;
use svcca::error::InputError;
use svcca::preempt::{Preempted, EXIT_STATUS};

fn main() {
    svcca::host::reuse_freed_host_memory();
    // Every command resolves its device before it seeds libtorch: checked from here on.
    svcca::device::require_resolution();
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
