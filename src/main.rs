//! The `svcca` binary: all of it is [`svcca::cli::process::main`].

fn main() {
    svcca::cli::process::main()
}
