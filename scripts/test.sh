#!/usr/bin/env bash
# Sets up (scripts/setup.sh) and runs the whole test suite, Rust and Python. What CI runs.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/setup.sh
source scripts/env.sh
# tests/slurm.rs submits to a real single-node Slurm cluster on this machine (root,
# Debian: slurm-wlm and munge). If it cannot start, that test fails and says so;
# SVCCA_SKIP_SLURM=1 skips both the cluster and the test.
if [ "${SVCCA_SKIP_SLURM:-0}" != 1 ]; then
  scripts/slurm/local-cluster.sh start || echo "scripts/test.sh: the local Slurm cluster did not start; tests/slurm.rs will fail (SVCCA_SKIP_SLURM=1 skips it)" >&2
fi
# Style and lints first (rustfmt.toml; clippy with every warning an error). Both ship
# with rustup's default profile; a toolchain without them skips them, saying so.
if cargo fmt --version >/dev/null 2>&1; then
  cargo fmt --check
else
  echo "scripts/test.sh: rustfmt is not installed (rustup component add rustfmt); skipping the format check" >&2
fi
if cargo clippy --version >/dev/null 2>&1; then
  cargo clippy --release --locked --workspace --all-targets -- -D warnings
else
  echo "scripts/test.sh: clippy is not installed (rustup component add clippy); skipping the lints" >&2
fi
cargo test --release --locked "$@"
# The Python module's tests (python/tests), against the binary just tested.
if [ -z "${LIBTORCH:-}" ]; then
  "$VIRTUAL_ENV/bin/python" -m pytest -q python/tests
else
  echo "scripts/test.sh: LIBTORCH is set: the Python module is not installed, its tests are skipped" >&2
fi
