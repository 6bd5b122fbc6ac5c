//! Choosing where tensors live, and loading libtorch's CUDA backend only when a GPU may
//! be used.
//!
//! The binary does not link `libtorch_cuda.so` (see build.rs): loading it (CUDA runtime,
//! cuBLAS, cuDNN, ...) costs time and hundreds of MiB per process (BENCHMARKS.md,
//! "Start-up"), wasted on CPU work.
//! [`DeviceChoice::resolve`] dlopens it for `cuda`, and for `auto` when an NVIDIA driver
//! may be present; its static initialisers register libtorch's CUDA hooks. libtorch
//! reads those hooks once, at the first CUDA query (`tch::Cuda::*`,
//! `Device::cuda_if_available`, also `tch::manual_seed`, which seeds the GPUs too), and
//! keeps the answer: a query before the load leaves CUDA off for the whole process. So
//! every CUDA query goes through this module, and callers resolve their device before
//! they seed.

use crate::error::InputError;
use std::ffi::{CStr, CString};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use tch::Device;

/// The `--device` choice: `auto` takes the first GPU when libtorch sees one; `cuda` is
/// `cuda:0`; `cuda:N` the N-th visible GPU (Slurm and `CUDA_VISIBLE_DEVICES` renumber
/// the GPUs a job may use from 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceChoice {
    Cpu,
    /// `None`: written `cuda`, the first visible GPU.
    Cuda(Option<usize>),
    #[default]
    Auto,
}

impl std::fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeviceChoice::Cpu => f.write_str("cpu"),
            DeviceChoice::Cuda(None) => f.write_str("cuda"),
            DeviceChoice::Cuda(Some(i)) => write!(f, "cuda:{i}"),
            DeviceChoice::Auto => f.write_str("auto"),
        }
    }
}

impl std::str::FromStr for DeviceChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "cpu" => Ok(DeviceChoice::Cpu),
            "cuda" => Ok(DeviceChoice::Cuda(None)),
            "auto" => Ok(DeviceChoice::Auto),
            _ => s
                .strip_prefix("cuda:")
                .and_then(|i| i.parse().ok())
                .map(|i| DeviceChoice::Cuda(Some(i)))
                .ok_or_else(|| format!("invalid device {s:?}: expected cpu, cuda, cuda:N (N a GPU's index, from 0) or auto")),
        }
    }
}

impl serde::Serialize for DeviceChoice {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for DeviceChoice {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl DeviceChoice {
    /// Whether the choice asks for a GPU (`cuda`, `cuda:N`): what a Slurm task must request.
    pub fn wants_gpu(self) -> bool {
        matches!(self, DeviceChoice::Cuda(_))
    }

    /// The device to compute on. `cpu` never loads the CUDA backend; `auto` loads it only
    /// where an NVIDIA driver is present ([`driver_present`]), and warns when a GPU is
    /// visible (`/dev/nvidia*`) but it still chose the CPU; `cuda[:N]` always tries, and
    /// without that GPU is an [`InputError`] that says why.
    ///
    /// Every command resolves its device here before anything else touches libtorch (see
    /// the module's note and [`require_resolution`]).
    pub fn resolve(self) -> Result<Device, InputError> {
        RESOLVED.store(true, Ordering::SeqCst);
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
                let why = match load_cuda_backend() {
                    Ok(from) => {
                        let available = tch::Cuda::is_available();
                        tracing::debug!("device auto: CUDA backend loaded ({from}); CUDA available: {available}");
                        if available {
                            return Ok(on_gpu(0));
                        }
                        "libtorch's CUDA backend loaded, but CUDA reports no usable device (check CUDA_VISIBLE_DEVICES and nvidia-smi)"
                            .to_string()
                    }
                    Err(why) => format!(
                        "libtorch's CUDA backend did not load ({why}): this PyTorch may be a CPU-only build; rerun scripts/setup.sh, which installs a CUDA build where a driver is present"
                    ),
                };
                match gpus_visible() {
                    0 => tracing::debug!("device auto: using the CPU: {why}"),
                    n => tracing::warn!("--device auto chose the CPU although {n} NVIDIA GPU(s) are visible: {why}"),
                }
                Ok(Device::Cpu)
            }
            DeviceChoice::Cuda(index) => {
                let asked = self.to_string();
                let loaded = load_cuda_backend();
                // Asked only once the backend is in: an earlier query would disable CUDA.
                if loaded.is_ok() && tch::Cuda::is_available() {
                    tracing::debug!("device {asked}: CUDA backend loaded ({})", loaded.unwrap_or_default());
                    let count = tch::Cuda::device_count().max(0) as usize;
                    let i = index.unwrap_or(0);
                    if i >= count {
                        return Err(InputError::new(format!(
                            "--device {asked}: only {count} CUDA device(s) are visible (cuda:0 to cuda:{}){}",
                            count.saturating_sub(1),
                            std::env::var("CUDA_VISIBLE_DEVICES").map_or(String::new(), |v| format!(", CUDA_VISIBLE_DEVICES={v}"))
                        )));
                    }
                    return Ok(on_gpu(i));
                }
                let why = match (loaded, driver()) {
                    (Err(e), _) => format!("libtorch's CUDA backend did not load: {e}"),
                    (Ok(_), Err(e)) => format!("no NVIDIA driver: {e}"),
                    (Ok(_), Ok(())) => "the NVIDIA driver reports no usable device".into(),
                };
                match loaded {
                    Ok(from) => tracing::debug!("device {asked}: CUDA backend loaded ({from}), but {why}"),
                    Err(_) => tracing::debug!("device {asked}: {why}"),
                }
                Err(InputError::new(format!(
                    "--device {asked}: libtorch sees no CUDA device on this machine ({why}); use --device cpu or auto"
                )))
            }
        }
    }
}

/// GPU `i`, with libtorch's float32 arithmetic made full float32 (no TF32 convolutions,
/// which libtorch enables by default): the analysis, evaluation and recording compute in
/// float32 as on the CPU; training turns TF32 on for its updates where `train.tf32`.
fn on_gpu(i: usize) -> Device {
    GpuArithmetic { tf32: false, deterministic: false }.apply();
    Device::Cuda(i)
}

static RESOLVED: AtomicBool = AtomicBool::new(false);
static STRICT: AtomicBool = AtomicBool::new(false);

/// Makes seeding before the device is resolved a programming error (a panic naming the
/// caller) for the rest of the process: the binary calls it first thing, so that every
/// command, as the CLI tests run it, proves it resolves its device before it seeds.
/// Library users may opt in too; those that stay on the CPU need not resolve anything,
/// and neither do the unit tests.
pub fn require_resolution() {
    STRICT.store(true, Ordering::SeqCst);
}

/// Asserts that the device was resolved when [`require_resolution`] is in force; `what`
/// names the caller in the panic.
pub(crate) fn assert_resolved(what: &str) {
    if STRICT.load(Ordering::SeqCst) && !RESOLVED.load(Ordering::SeqCst) {
        panic!(
            "programming error: {what} before the device was resolved (DeviceChoice::resolve); \
             libtorch would cache \"no CUDA\" for the whole process"
        );
    }
}

/// Seeds libtorch's generators (the CPU's and every GPU's): the one place svcca seeds.
/// A seed queries libtorch's CUDA hooks, so it must follow [`DeviceChoice::resolve`].
pub fn seed(seed: u64) {
    assert_resolved("seeding libtorch");
    tch::manual_seed(seed as i64);
}

/// NVIDIA GPUs this process could see: `/dev/nvidiaN` device files (what the driver makes
/// for each GPU a container or a Slurm job is given), without loading anything.
pub fn gpus_visible() -> usize {
    std::fs::read_dir("/dev")
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| {
                    e.file_name()
                        .to_str()
                        .and_then(|n| n.strip_prefix("nvidia"))
                        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
                })
                .count()
        })
        .unwrap_or(0)
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

/// The host memory the kernel says is available (MemAvailable), in bytes: with
/// [`cgroup_room`], what the memory checks of training and the analysis plan against.
pub fn available() -> Option<i64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kib: i64 = meminfo.lines().find_map(|l| l.strip_prefix("MemAvailable:"))?.trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kib * 1024)
}

/// What is left under this process's cgroup memory limit (v2, else v1), where it has one.
pub(crate) fn cgroup_room() -> Option<i64> {
    let read = |p: &str| std::fs::read_to_string(p).ok().and_then(|t| t.trim().parse::<i64>().ok());
    let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    // v2: one line "0::/path"; v1: "N:memory:/path".
    let v2 = own.lines().find_map(|l| l.strip_prefix("0::")).map(|p| format!("/sys/fs/cgroup{}", p.trim_end_matches('/')));
    let v1 = own.lines().find_map(|l| l.split_once(":memory:").map(|(_, p)| format!("/sys/fs/cgroup/memory{}", p.trim_end_matches('/'))));
    let pairs = [
        v2.map(|d| (format!("{d}/memory.max"), format!("{d}/memory.current"))),
        v1.map(|d| (format!("{d}/memory.limit_in_bytes"), format!("{d}/memory.usage_in_bytes"))),
    ];
    // "max" (v2) or a huge number (v1) reads as no limit.
    pairs
        .into_iter()
        .flatten()
        .find_map(|(limit, current)| Some((read(&limit)?, read(&current)?)))
        .filter(|(l, _)| *l < 1 << 60)
        .map(|(l, c)| (l - c).max(0))
}

/// How a GPU computes in float32 during training (`train.tf32`, `train.deterministic`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GpuArithmetic {
    /// cuDNN convolutions in TensorFloat-32 (ignored when `deterministic`).
    pub tf32: bool,
    /// cuDNN's deterministic algorithms, without the benchmark search and without TF32.
    pub deterministic: bool,
}

impl GpuArithmetic {
    /// Full float32 and deterministic algorithms: what evaluation and the recorded
    /// activations use, so that the analysis does not depend on `train.tf32`.
    pub const EXACT: GpuArithmetic = GpuArithmetic { tf32: false, deterministic: true };

    /// Sets libtorch's process-wide cuDNN switches. libtorch reads them at each
    /// convolution, so they can change between steps. tch exposes only the benchmark
    /// switch; the others are `at::Context`'s own setters, found by their C++ names in
    /// libtorch_cpu (where `at::Context` lives, so this works and is tested on the CPU
    /// too). Were a future libtorch to rename them, the switch is refused with a warning
    /// and libtorch's defaults stay (TF32 on for convolutions).
    pub fn apply(self) {
        tch::Cuda::cudnn_set_benchmark(!self.deterministic);
        match context() {
            Ok(c) => {
                // SAFETY: the functions are at::Context's setters, called on the global
                // context with a bool (x86-64: `this` then the argument, as a C call).
                unsafe {
                    (c.set_tf32)(c.this, self.tf32 && !self.deterministic);
                    (c.set_deterministic)(c.this, self.deterministic);
                }
            }
            Err(e) => {
                static SAID: std::sync::Once = std::sync::Once::new();
                SAID.call_once(|| tracing::warn!("cannot set cuDNN's TF32 and deterministic switches ({e}); libtorch's defaults apply"));
            }
        }
    }

    /// The switches as libtorch holds them now (for tests and logs).
    pub fn current() -> Option<(GpuArithmetic, bool)> {
        let c = context().ok()?;
        // SAFETY: at::Context's const getters on the global context. `allowTF32CuDNN`
        // takes a `std::optional<Float32Op>`: trivially copyable, 8 bytes, passed in one
        // register; 0 is `std::nullopt` (conv and RNN, which the setter sets together).
        let (tf32, deterministic, benchmark) = unsafe { ((c.tf32)(c.this, 0), (c.deterministic)(c.this), (c.benchmark)(c.this)) };
        Some((GpuArithmetic { tf32, deterministic }, benchmark))
    }
}

/// `at::globalContext()` and the switches of [`GpuArithmetic`], looked up once.
struct Context {
    this: *mut libc::c_void,
    set_tf32: unsafe extern "C" fn(*mut libc::c_void, bool),
    set_deterministic: unsafe extern "C" fn(*mut libc::c_void, bool),
    tf32: unsafe extern "C" fn(*mut libc::c_void, u64) -> bool,
    deterministic: unsafe extern "C" fn(*mut libc::c_void) -> bool,
    benchmark: unsafe extern "C" fn(*mut libc::c_void) -> bool,
}

// SAFETY: the global context lives for the whole process and its setters are plain
// flag writes; the pointers are only called, never written.
unsafe impl Send for Context {}
unsafe impl Sync for Context {}

fn context() -> Result<&'static Context, &'static str> {
    static CONTEXT: OnceLock<Result<Context, String>> = OnceLock::new();
    CONTEXT
        .get_or_init(|| {
            // SAFETY: each symbol is the function its field's type describes (the C++
            // names encode the argument types; the returns are `Context&` and bool).
            unsafe {
                let global: unsafe extern "C" fn() -> *mut libc::c_void = symbol("_ZN2at13globalContextEv")?;
                Ok(Context {
                    this: global(),
                    set_tf32: symbol("_ZN2at7Context17setAllowTF32CuDNNEb")?,
                    set_deterministic: symbol("_ZN2at7Context21setDeterministicCuDNNEb")?,
                    tf32: symbol("_ZNK2at7Context14allowTF32CuDNNESt8optionalINS_9Float32OpEE")?,
                    deterministic: symbol("_ZNK2at7Context18deterministicCuDNNEv")?,
                    benchmark: symbol("_ZNK2at7Context14benchmarkCuDNNEv")?,
                })
            }
        })
        .as_ref()
        .map_err(|e| e.as_str())
}

/// The free and total memory of GPU `index` in bytes, as the CUDA runtime libtorch
/// loaded reports them (`cudaMemGetInfo`), or `None` where it cannot say (no CUDA
/// runtime, no driver, no such GPU). The runtime's current device is put back as it was.
pub fn gpu_memory(index: usize) -> Option<(u64, u64)> {
    type GetDevice = unsafe extern "C" fn(*mut i32) -> i32;
    type SetDevice = unsafe extern "C" fn(i32) -> i32;
    type MemGetInfo = unsafe extern "C" fn(*mut usize, *mut usize) -> i32;
    // SAFETY: the CUDA runtime's C functions, by their C names and signatures
    // (cudaError_t is a C enum: an int, 0 for success), called with valid pointers.
    unsafe {
        let get: GetDevice = symbol("cudaGetDevice").ok()?;
        let set: SetDevice = symbol("cudaSetDevice").ok()?;
        let info: MemGetInfo = symbol("cudaMemGetInfo").ok()?;
        let mut was = 0;
        if get(&mut was) != 0 || set(i32::try_from(index).ok()?) != 0 {
            return None;
        }
        let (mut free, mut total) = (0usize, 0usize);
        let read = info(&mut free, &mut total) == 0;
        set(was);
        read.then_some((free as u64, total as u64))
    }
}

/// The function `name` among everything the process has loaded, as the function
/// pointer type `F`.
///
/// # Safety
/// `F` must be a function pointer type matching the symbol's signature.
unsafe fn symbol<F: Copy>(name: &str) -> Result<F, String> {
    assert_eq!(std::mem::size_of::<F>(), std::mem::size_of::<*mut libc::c_void>(), "a function pointer");
    let c_name = CString::new(name).expect("no NUL in a symbol name");
    let p = libc::dlsym(libc::RTLD_DEFAULT, c_name.as_ptr());
    if p.is_null() {
        return Err(format!("libtorch has no {name}"));
    }
    Ok(std::mem::transmute_copy::<*mut libc::c_void, F>(&p))
}
