#!/usr/bin/env bash
# Sets up a fresh machine and builds the release binary, target/release/svcca.
#
# Needs only the Rust toolchain and Python 3. tch 0.24 pairs with PyTorch 2.11.0 exactly,
# so unless LIBTORCH points at a libtorch of your own, PyTorch 2.11.0 (and numpy, for the
# benchmark scripts) is installed from PyPI into a virtual environment: SVCCA_VENV, by
# default .venv in the repository root (about 5 GB). A venv that already holds the right
# version is reused as it is. The first build compiles torch-sys (about 5 minutes).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

TORCH_VERSION=2.11.0
if [ -n "${LIBTORCH:-}" ]; then
    echo "setup: using your libtorch at $LIBTORCH" >&2
else
    venv="${SVCCA_VENV:-$PWD/.venv}"
    if "$venv/bin/python" - "$TORCH_VERSION" 2>/dev/null <<'PY'
import sys, torch, numpy
sys.exit(torch.__version__.split("+")[0] != sys.argv[1])
PY
    then
        echo "setup: reusing $venv (torch $TORCH_VERSION)" >&2
    else
        echo "setup: installing torch==$TORCH_VERSION into $venv (about 5 GB, a few minutes)" >&2
        python3 -m venv "$venv"
        "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
            "torch==$TORCH_VERSION" numpy
    fi
fi

source scripts/env.sh
echo "setup: building target/release/svcca (the first build compiles libtorch bindings, ~5 min)" >&2
cargo build --release --locked
