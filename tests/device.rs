//! libtorch's CUDA backend (`libtorch_cuda.so`, ~0.3 s and ~460 MiB) is loaded only when a
//! GPU may be used: `--device cpu` never loads it, `auto` only where an NVIDIA driver is
//! present, `cuda` always tries (and without a GPU is refused with status 2).
//!
//! Two observers: inside this process, `/proc/self/maps` (`device::cuda_backend_loaded`);
//! for the binary, ld.so's own record of every object it loads (`LD_DEBUG=files`) next
//! to device.rs's `SVCCA_LOG=debug` line.

mod common;

use common::{assert_refused_silent, svcca, svcca_env};
use std::process::Output;
use svcca::device::{self, DeviceChoice};
use tch::Device;

/// `svcca compare` on a small example pair, with ld.so listing what it loads.
fn compare(device: &str) -> (Output, String) {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("ex").display().to_string();
    let ex = svcca(&["example", &dir, "--datapoints", "300", "--neurons-a", "8", "--neurons-b", "6"]);
    assert!(ex.status.success(), "{}", common::stderr(&ex));
    let (a, b) = (format!("{dir}/a.npy"), format!("{dir}/b.npy"));
    let out = svcca_env(&["compare", &a, &b, "--json", "--device", device], &[("SVCCA_LOG", "debug"), ("LD_DEBUG", "files")]);
    let stderr = common::stderr(&out);
    // The observer works: ld.so did list the libtorch every run loads.
    assert!(stderr.contains("file=libtorch_cpu.so"), "LD_DEBUG=files listed nothing: {stderr}");
    (out, stderr)
}

fn loaded_cuda(ld_debug: &str) -> bool {
    ld_debug.contains("file=libtorch_cuda.so")
}

#[test]
fn compare_on_cpu_never_loads_the_cuda_backend() {
    let (out, stderr) = compare("cpu");
    assert!(out.status.success(), "{stderr}");
    assert!(!loaded_cuda(&stderr), "--device cpu loaded libtorch_cuda.so");
    assert!(stderr.contains("device cpu: CUDA backend not loaded"), "{stderr}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["device"], "cpu");
}

#[test]
fn compare_on_auto_loads_the_cuda_backend_only_with_a_driver() {
    let (out, stderr) = compare("auto");
    assert!(out.status.success(), "{stderr}");
    if device::driver_present() {
        assert!(loaded_cuda(&stderr), "a driver is present but auto did not load libtorch_cuda.so: {stderr}");
    } else {
        assert!(!loaded_cuda(&stderr), "auto without a driver loaded libtorch_cuda.so");
        assert!(stderr.contains("device auto: CUDA backend not loaded (no NVIDIA driver"), "{stderr}");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["device"], "cpu");
    }
}

#[test]
fn compare_on_cuda_tries_the_backend_and_without_a_gpu_is_refused() {
    let (out, stderr) = compare("cuda");
    // It tried: ld.so loaded the library, or device.rs says why it could not.
    assert!(loaded_cuda(&stderr) || stderr.contains("CUDA backend did not load"), "--device cuda did not try libtorch_cuda.so: {stderr}");
    if device::cuda_available() {
        assert!(out.status.success(), "{stderr}");
    } else {
        assert_refused_silent(&out, &["--device cuda", "no CUDA device"]);
    }
}

/// In one process, in the order that matters: loading is once and for all.
#[test]
fn resolve_loads_the_cuda_backend_only_when_a_gpu_may_be_used() {
    assert!(!device::cuda_backend_loaded(), "the test binary links libtorch_cuda.so");
    assert_eq!(DeviceChoice::Cpu.resolve().unwrap(), Device::Cpu);
    assert!(!device::cuda_backend_loaded(), "cpu loaded the CUDA backend");
    let auto = DeviceChoice::Auto.resolve().unwrap();
    if !device::driver_present() {
        assert_eq!(auto, Device::Cpu);
        assert!(!device::cuda_backend_loaded(), "auto without a driver loaded the CUDA backend");
    }
    match DeviceChoice::Cuda.resolve() {
        Ok(d) => {
            assert_eq!(d, Device::Cuda(0));
            assert!(device::cuda_backend_loaded());
            assert_eq!(auto, Device::Cuda(0), "cuda works but auto chose the CPU");
        }
        Err(e) => {
            let e = e.to_string();
            assert!(e.contains("no CUDA device"), "{e}");
            assert!(device::cuda_backend_loaded() || e.contains("did not load"), "cuda did not try the backend: {e}");
            assert_eq!(auto, Device::Cpu);
        }
    }
}
