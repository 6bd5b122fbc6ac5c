//! Link flags so that the `svcca` binary finds libtorch and sees a GPU without any
//! `LD_LIBRARY_PATH`.
//!
//! torch-sys tells its direct dependents where libtorch lives (`DEP_TCH_LIBTORCH_LIB`);
//! that is why `torch-sys` is a direct dependency in Cargo.toml.
//! - rpath: the binary starts from any shell, not only from one that sourced the venv.
//! - `torch_cuda`: nothing in our code references a symbol of `libtorch_cuda.so`, so the
//!   linker's default `--as-needed` drops it and libtorch then never registers its CUDA
//!   backend: `Cuda::is_available()` would stay false on a GPU machine.
use std::path::Path;

fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    let Ok(lib_dir) = std::env::var("DEP_TCH_LIBTORCH_LIB") else {
        return;
    };
    let lib_dir = Path::new(&lib_dir);
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib_dir.display());
    if lib_dir.join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-search=native={}", lib_dir.display());
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
        println!("cargo:rustc-link-arg=-ltorch_cuda");
        println!("cargo:rustc-link-arg=-Wl,--as-needed");
    }
}
