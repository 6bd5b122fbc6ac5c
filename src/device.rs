//! Choosing where tensors live, and loading libtorch's CUDA backend only when a GPU may
//! be used.
//!
//! The binary does not link `libtorch_cuda.so` (see build.rs): loading it (CUDA runtime,
//! cuBLAS, cuDNN, ...) costs about 0.2 s and 350 MiB per process, wasted on CPU work.
//! [`DeviceChoice::resolve`] dlopens it for `cuda`, and for `auto` when an NVIDIA driver
//! may be present; its static initialisers register libtorch's CUDA hooks. libtorch
//! reads those hooks once, at the first CUDA query (`tch::Cuda::*`,
//! `Device::cuda_if_available`, also `tch::manual_seed`, which seeds the GPUs too), and
//! keeps the answer: a query before the load leaves CUDA off for the whole process. So
//! every CUDA query goes through this module, and callers resolve their device before
//! they seed.

use crate::error::InputError;
use std::ffi::{CStr, CString};
use std::sync::OnceLock;
use tch::Device;

/// The `--device` choice: `auto` takes the first GPU when libtorch sees one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceChoice {
    Cpu,
    Cuda,
    #[default]
    Auto,
}

impl DeviceChoice {
    /// The device to compute on. `cpu` never loads the CUDA backend; `auto` loads it only
    /// where an NVIDIA driver is present ([`driver_present`]); `cuda` always tries, and
    /// without a usable GPU is an [`InputError`] that says why.
    pub fn resolve(self) -> Result<Device, InputError> {
        match self {
            DeviceChoice::Cpu => {
                tracing::debug!("device cpu: CUDA backend not loaded (--device cpu)");
                Ok(Device::Cpu)
            }
            DeviceChoice::Auto => {
                if let Err(why) = driver() {
                    tracing::debug!("device auto: CUDA backend not loaded (no NVIDIA driver: {why})");
                    return Ok(Device::Cpu);
                }
                match load_cuda_backend() {
                    Ok(from) => {
                        let available = tch::Cuda::is_available();
                        tracing::debug!("device auto: CUDA backend loaded ({from}); CUDA available: {available}");
                        Ok(if available { Device::Cuda(0) } else { Device::Cpu })
                    }
                    Err(why) => {
                        tracing::debug!("device auto: CUDA backend did not load ({why}); using the CPU");
                        Ok(Device::Cpu)
                    }
                }
            }
            DeviceChoice::Cuda => {
                let loaded = load_cuda_backend();
                // Asked only once the backend is in: an earlier query would disable CUDA.
                if loaded.is_ok() && tch::Cuda::is_available() {
                    tracing::debug!("device cuda: CUDA backend loaded ({})", loaded.unwrap_or_default());
                    return Ok(Device::Cuda(0));
                }
                let why = match (loaded, driver()) {
                    (Err(e), _) => format!("libtorch's CUDA backend did not load: {e}"),
                    (Ok(_), Err(e)) => format!("no NVIDIA driver: {e}"),
                    (Ok(_), Ok(())) => "the NVIDIA driver reports no usable device".into(),
                };
                match loaded {
                    Ok(from) => tracing::debug!("device cuda: CUDA backend loaded ({from}), but {why}"),
                    Err(_) => tracing::debug!("device cuda: {why}"),
                }
                Err(InputError::new(format!(
                    "--device cuda: libtorch sees no CUDA device on this machine ({why}); use --device cpu or auto"
                )))
            }
        }
    }
}

/// Whether a CUDA device can be used: loads the CUDA backend where an NVIDIA driver is
/// present (as `auto` does), then asks libtorch. The one way to ask outside `resolve`.
pub fn cuda_available() -> bool {
    driver().is_ok() && load_cuda_backend().is_ok() && tch::Cuda::is_available()
}

/// Whether an NVIDIA driver may be present, decided without loading CUDA.
pub fn driver_present() -> bool {
    driver().is_ok()
}

/// Whether this process has `libtorch_cuda.so` mapped (from `/proc/self/maps`): a
/// diagnostic, for tests and logs.
pub fn cuda_backend_loaded() -> bool {
    mapped("libtorch_cuda.so").is_some()
}

/// The test for "a driver may be present": whether `libcuda.so.1`, the driver's user-space
/// library, can be dlopened. It is the library the CUDA runtime itself opens, so where it
/// cannot be opened CUDA cannot work, whatever else is installed; and unlike
/// `/proc/driver/nvidia` it is also there under WSL2 (`/usr/lib/wsl/lib`) and in
/// containers that mount only the driver's libraries. On a machine without it the check
/// is one failed ld.so lookup; where it opens, the CUDA runtime would load it anyway (the
/// handle is kept for it). A driver without a GPU passes: `auto` then loads the backend,
/// finds no device and stays on the CPU.
fn driver() -> Result<(), &'static str> {
    static DRIVER: OnceLock<Result<(), String>> = OnceLock::new();
    DRIVER.get_or_init(|| dlopen("libcuda.so.1", libc::RTLD_LAZY | libc::RTLD_LOCAL)).as_ref().map(|_| ()).map_err(|e| e.as_str())
}

/// dlopens `libtorch_cuda.so` once per process, `RTLD_NOW | RTLD_GLOBAL`, and says from
/// where. First by plain name, which searches `LD_LIBRARY_PATH` and then the binary's
/// rpath, the same search that found `libtorch_cpu.so` at start-up, so the two come from
/// the same libtorch (a binary copied to a GPU machine runs with `LD_LIBRARY_PATH` set to
/// that machine's `torch/lib`); then by the full path of the libtorch it was built against.
fn load_cuda_backend() -> Result<&'static str, &'static str> {
    static LOADED: OnceLock<Result<String, String>> = OnceLock::new();
    let loaded = LOADED.get_or_init(|| {
        let mut names = vec!["libtorch_cuda.so".to_string()];
        if let Some(dir) = option_env!("SVCCA_LIBTORCH_LIB") {
            names.push(format!("{dir}/libtorch_cuda.so"));
        }
        let mut errors = Vec::new();
        for name in names {
            match dlopen(&name, libc::RTLD_NOW | libc::RTLD_GLOBAL) {
                Ok(()) => return Ok(mapped("libtorch_cuda.so").unwrap_or(name)),
                Err(e) => errors.push(e),
            }
        }
        Err(errors.join("; "))
    });
    loaded.as_deref().map_err(|e| e.as_str())
}

/// Opens `name` and keeps it open for the life of the process; the error is `dlerror`'s.
fn dlopen(name: &str, flags: libc::c_int) -> Result<(), String> {
    let c_name = CString::new(name).map_err(|e| e.to_string())?;
    // SAFETY: a valid C string; the handle is deliberately never closed. dlerror's message
    // is thread-local and read right after the failing call.
    unsafe {
        if !libc::dlopen(c_name.as_ptr(), flags).is_null() {
            return Ok(());
        }
        let err = libc::dlerror();
        Err(if err.is_null() { format!("{name}: dlopen failed") } else { CStr::from_ptr(err).to_string_lossy().into_owned() })
    }
}

/// The path of the first mapped file whose name is `file`, from `/proc/self/maps`.
fn mapped(file: &str) -> Option<String> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    maps.lines().map(|l| l.split_whitespace().skip(5).collect::<Vec<_>>().join(" ")).find(|p| p.rsplit('/').next() == Some(file))
}

/// A short name for logs and JSON: `cpu` or `cuda:0`.
pub fn name(device: Device) -> String {
    match device {
        Device::Cpu => "cpu".into(),
        Device::Cuda(i) => format!("cuda:{i}"),
        other => format!("{other:?}").to_lowercase(),
    }
}

/// The largest buffer glibc's allocator serves from its heap once
/// [`reuse_freed_host_memory`] has run; larger ones are mapped on their own.
pub const HEAP_BLOCK_BYTES: usize = 64 << 20;

/// Makes glibc's allocator keep freed host memory for reuse instead of returning it to
/// the system: blocks up to 64 MiB come from the heap rather than from their own `mmap`,
/// and the heap is trimmed only past 2 GiB free. libtorch allocates a fresh buffer for
/// every tensor, and by default glibc maps many of them afresh and unmaps them when freed,
/// the kernel zeroing every page again on first touch. Measured on a 2-core AMD EPYC
/// (BENCHMARKS.md): training the quickstart, page faults 3.5 M -> 0.1 M and about 17%
/// less wall-clock; its analysis 2.3 M -> 0.7 M. Larger blocks (a big layer's float64
/// copy) are still mapped on their own: keeping those in the heap saved little more and
/// raised `svcca compare`'s peak memory by a quarter.
///
/// Every thread allocates from that one heap (one arena): glibc would give each thread
/// that allocates its own arena, whose heaps are at most 64 MiB and do not keep freed
/// memory the same way, so a large tensor made on a rayon thread (the analysis
/// summarises layers side by side) would be mapped and zeroed afresh each time. Measured
/// on the quickstart's analysis with layers summarised on rayon's threads (2-core AMD
/// EPYC): 6.1 to 7.0 s of system time with an arena per thread, 1.9 to 2.1 s with one.
///
/// Called once at the start of `main`; skipped where the user tunes the allocator
/// (`MALLOC_*_`, `GLIBC_TUNABLES`).
pub fn reuse_freed_host_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let tuned = std::env::vars_os().any(|(k, _)| {
            let k = k.to_string_lossy();
            k == "GLIBC_TUNABLES" || (k.starts_with("MALLOC_") && k.ends_with('_'))
        });
        if tuned {
            return;
        }
        // SAFETY: mallopt only sets allocator parameters; called before other threads start.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, HEAP_BLOCK_BYTES as i32);
            libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
            libc::mallopt(libc::M_TOP_PAD, 256 << 20);
            libc::mallopt(libc::M_ARENA_MAX, 1);
        }
    }
}
