use clap::Parser;
use std::process::ExitCode;
use svcca::cli::Cli;
use svcca::error::InputError;
use svcca::preempt::{Preempted, EXIT_STATUS};

fn main() -> ExitCode {
    svcca::device::reuse_freed_host_memory();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SVCCA_LOG").unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
    match Cli::parse().run() {
        Ok(()) => ExitCode::SUCCESS,
        // The user's to fix: one line, status 2 (as clap does for bad arguments).
        Err(e) if e.is::<InputError>() => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
        // State saved on SIGUSR1/SIGTERM: the batch script requeues on this status.
        Err(e) if e.is::<Preempted>() => {
            eprintln!("{e}");
            ExitCode::from(EXIT_STATUS)
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
