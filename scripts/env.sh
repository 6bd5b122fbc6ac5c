# Source this file (`source scripts/env.sh`) to build against the project's libtorch.
#
# A user's own libtorch wins: with LIBTORCH set, it is used as is. Otherwise the build
# uses PyTorch 2.11.0 from the virtual environment that scripts/setup.sh makes
# (SVCCA_VENV, default .venv in the repository root). tch 0.24 pairs with that exact
# version, and torch-sys refuses any other.
_svcca_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ -n "${LIBTORCH:-}" ]; then
    unset LIBTORCH_USE_PYTORCH
else
    export VIRTUAL_ENV="${SVCCA_VENV:-$_svcca_root/.venv}"
    export PATH="$VIRTUAL_ENV/bin:$PATH"
    export LIBTORCH_USE_PYTORCH=1
fi
unset _svcca_root
