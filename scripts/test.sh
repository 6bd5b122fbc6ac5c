#!/usr/bin/env bash
# Sets up (scripts/setup.sh) and runs the whole test suite. What CI runs.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/setup.sh
source scripts/env.sh
cargo test --release --locked "$@"
