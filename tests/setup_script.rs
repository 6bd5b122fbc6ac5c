//! `scripts/setup.sh`'s check that a machine with an NVIDIA driver gets a CUDA build of
//! PyTorch, run on fake venvs whose `bin/python` prints a chosen build (nothing is
//! installed or imported). The script, sourced, only defines its functions; each case
//! runs one of them in its own bash, with the driver detection stubbed where the case
//! needs a driver (or none) whatever this machine has.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn setup_sh() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/setup.sh")
}

fn write_executable(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// A venv under `dir` whose python prints `build` ("VERSION CUDA", as `torch_build`
/// reads it), or fails when `build` is None (torch does not import).
fn fake_venv(dir: &Path, name: &str, build: Option<&str>) -> PathBuf {
    let venv = dir.join(name);
    let body = match build {
        Some(b) => format!("#!/bin/sh\ncat >/dev/null\necho '{b}'\n"),
        None => "#!/bin/sh\ncat >/dev/null\necho 'ModuleNotFoundError: torch' >&2\nexit 1\n".to_string(),
    };
    write_executable(&venv.join("bin/python"), &body);
    venv
}

/// Runs `code` in bash after sourcing setup.sh (and `stub`, e.g. a replacement
/// `nvidia_driver`), with `env` set and SVCCA_ALLOW_CPU_TORCH cleared unless given.
fn bash(stub: &str, code: &str, env: &[(&str, &str)]) -> Output {
    let script = format!("source {}\n{stub}\n{code}", setup_sh().display());
    let mut c = Command::new("bash");
    c.arg("-c").arg(script).env_remove("SVCCA_ALLOW_CPU_TORCH");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

const DRIVER: &str = "nvidia_driver() { echo 'stub driver'; }";
const NO_DRIVER: &str = "nvidia_driver() { return 1; }";

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// `venv_reusable VENV`'s exit status and output (2: refused; 1: install; 0: reuse).
fn reusable(stub: &str, venv: &Path, env: &[(&str, &str)]) -> (i32, String) {
    let o = bash(stub, &format!("venv_reusable '{}'", venv.display()), env);
    (o.status.code().unwrap(), text(&o))
}

#[test]
fn a_cpu_only_torch_is_refused_where_a_driver_is_present() {
    let dir = tempfile::tempdir().unwrap();
    let cpu = fake_venv(dir.path(), "cpu", Some("2.11.0+cpu none"));
    let cuda = fake_venv(dir.path(), "cuda", Some("2.11.0+cu130 13.0"));

    // Reused venv, CPU-only, driver present: refused with what to do.
    let (code, out) = reusable(DRIVER, &cpu, &[]);
    assert_eq!(code, 2, "{out}");
    for want in ["2.11.0+cpu", "CPU-only", "stub driver", &format!("rm -rf {}", cpu.display()), "SVCCA_VENV", "SVCCA_ALLOW_CPU_TORCH=1"] {
        assert!(out.contains(want), "no {want:?} in the refusal:\n{out}");
    }
    // Kept deliberately.
    let (code, out) = reusable(DRIVER, &cpu, &[("SVCCA_ALLOW_CPU_TORCH", "1")]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("SVCCA_ALLOW_CPU_TORCH=1") && out.contains("reusing"), "{out}");
    // No driver: a CPU-only build is reused as before.
    let (code, out) = reusable(NO_DRIVER, &cpu, &[]);
    assert_eq!(code, 0, "{out}");
    // A CUDA build is reused with or without a driver.
    for stub in [DRIVER, NO_DRIVER] {
        let (code, out) = reusable(stub, &cuda, &[]);
        assert_eq!(code, 0, "{out}");
        assert!(out.contains("reusing") && out.contains("CUDA 13.0"), "{out}");
    }
    // Another version or no torch: installed (status 1), not refused.
    for venv in [fake_venv(dir.path(), "old", Some("2.10.0+cpu none")), fake_venv(dir.path(), "none", None)] {
        let (code, out) = reusable(DRIVER, &venv, &[]);
        assert_eq!(code, 1, "{}: {out}", venv.display());
    }

    // After a fresh install: a CPU-only wheel is refused, pointing at pip's configuration.
    let o = bash(DRIVER, &format!("require_cuda_build '{}' '2.11.0+cpu none' installed", cpu.display()), &[]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(2), "{out}");
    assert!(out.contains("pip config list") && out.contains("SVCCA_ALLOW_CPU_TORCH=1"), "{out}");
    let o = bash(DRIVER, &format!("require_cuda_build '{}' '2.11.0+cu130 13.0' installed", cuda.display()), &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}

/// The detection itself, with `ldconfig` and `nvidia-smi` replaced on PATH.
#[test]
fn the_driver_is_detected_by_ld_cache_or_nvidia_smi() {
    let dir = tempfile::tempdir().unwrap();
    let detect = |ldconfig: &str, smi_status: i32| {
        let bin = dir.path().join(format!("bin-{smi_status}-{}", ldconfig.len()));
        write_executable(&bin.join("ldconfig"), &format!("#!/bin/sh\necho '{ldconfig}'\n"));
        write_executable(&bin.join("nvidia-smi"), &format!("#!/bin/sh\nexit {smi_status}\n"));
        let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
        let o = bash("", "nvidia_driver", &[("PATH", &path)]);
        (o.status.success(), text(&o))
    };
    let (found, why) = detect("\tlibcuda.so.1 (libc6,x86-64) => /usr/lib/x86_64-linux-gnu/libcuda.so.1", 1);
    assert!(found && (why.contains("libcuda.so.1") || why.contains("/proc")), "{why}");
    let (found, why) = detect("\tlibc.so.6 (libc6,x86-64) => /lib/x86_64-linux-gnu/libc.so.6", 0);
    assert!(found && (why.contains("nvidia-smi") || why.contains("/proc")), "{why}");
    if !Path::new("/proc/driver/nvidia/version").exists() {
        let (found, why) = detect("\tlibc.so.6 (libc6,x86-64) => /lib/x86_64-linux-gnu/libc.so.6", 1);
        assert!(!found, "a driver detected from nothing: {why}");
    }
}

/// Sourcing defines the functions and runs nothing (no venv, no build).
#[test]
fn sourcing_runs_nothing() {
    let o = bash("", "type main venv_reusable require_cuda_build nvidia_driver >/dev/null && echo defined", &[]);
    assert!(o.status.success() && text(&o).trim() == "defined", "{}", text(&o));
    let o = Command::new("bash").arg("-n").arg(setup_sh()).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
}
