//! Link flags so that the `svcca` binary finds libtorch without any `LD_LIBRARY_PATH`,
//! and where libtorch's CUDA backend is, for `src/device.rs` to load at run time.
//!
//! torch-sys tells its direct dependents where libtorch lives (`DEP_TCH_LIBTORCH_LIB`);
//! that is why `torch-sys` is a direct dependency in Cargo.toml.
//! - rpath: the binary starts from any shell, not only from one that sourced the venv.
//! - `SVCCA_LIBTORCH_LIB` (a compile-time env of the crate): the same folder, where
//!   `device.rs` looks for `libtorch_cuda.so`. That library is deliberately not linked:
//!   nothing in our code references its symbols, so the linker's `--as-needed` drops it,
//!   and loading it (CUDA runtime, cuBLAS, cuDNN: about 0.2 s and 350 MiB) at every start
//!   would be wasted on CPU work. `device.rs` dlopens it only when a GPU may be used
//!   (`--device cuda`, or `auto` with an NVIDIA driver present); its static initialisers
//!   then register libtorch's CUDA backend, before the first CUDA query.
use std::path::Path;

fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    let Ok(lib_dir) = std::env::var("DEP_TCH_LIBTORCH_LIB") else {
        return;
    };
    let lib_dir = Path::new(&lib_dir);
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib_dir.display());
    println!("cargo:rustc-env=SVCCA_LIBTORCH_LIB={}", lib_dir.display());
}
