//! The module finds libtorch by rpath, as the `svcca` binary does (the root build.rs):
//! `import svcca` works whether or not PyTorch was imported first.
fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    if let Ok(lib_dir) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib_dir}");
    }
}
