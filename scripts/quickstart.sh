#!/usr/bin/env bash
# Sets up (scripts/setup.sh) and runs the main job on the built-in default: the learning
# dynamics of the paper's convnet (narrowed) on the built-in synthetic set. Trains it,
# compares every layer at every checkpoint with the final network by SVCCA, and draws the
# plots into runs/quickstart/plots/. Rerunning resumes (finished work is skipped).
# Extra arguments go to `svcca run` (e.g. --out DIR, --device cpu).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/setup.sh
target/release/svcca run configs/quickstart.toml "$@"
