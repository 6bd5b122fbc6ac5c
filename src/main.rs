use clap::Parser;
use std::io::Write;
use svcca::cli::Cli;
use svcca::error::InputError;
use svcca::preempt::{Preempted, EXIT_STATUS};

fn main() {
    svcca::device::reuse_freed_host_memory();
    // Every command resolves its device before it seeds libtorch: checked from here on.
    svcca::device::require_resolution();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SVCCA_LOG").unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
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

/// Ends the process once everything the command made is dropped (files written,
/// run-folder lock released: `run` has returned) and its output flushed, skipping the
/// C++ static destructors: libtorch's unregister its thousands of operators, which took
/// about 70 ms of every `svcca` process (AMD EPYC, measured with strace), a tenth of a
/// `svcca compare` on 50000 x 512. The kernel frees the memory and closes the files.
fn exit_without_teardown(status: i32) -> ! {
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    // SAFETY: _exit only ends the process; nothing of Rust's is left to drop here.
    unsafe { libc::_exit(status) }
}
