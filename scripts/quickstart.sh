#!/usr/bin/env bash
# Sets up (scripts/setup.sh) and runs the main job on the built-in default: an example
# pair of layers with a shared signal, compared by SVCCA (99% of the variance kept).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/setup.sh
if [ ! -f example/a.npy ] || [ ! -f example/b.npy ]; then
    target/release/svcca example example
fi
target/release/svcca compare example/a.npy example/b.npy "$@"
