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
    match DeviceChoice::Cuda(None).resolve() {
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

#[test]
fn device_choices_read_and_write_as_the_cli_and_configs_spell_them() {
    for (text, choice) in [
        ("cpu", DeviceChoice::Cpu),
        ("cuda", DeviceChoice::Cuda(None)),
        ("cuda:0", DeviceChoice::Cuda(Some(0))),
        ("cuda:3", DeviceChoice::Cuda(Some(3))),
        ("auto", DeviceChoice::Auto),
    ] {
        assert_eq!(text.parse::<DeviceChoice>().unwrap(), choice);
        assert_eq!(choice.to_string(), text);
    }
    for bad in ["gpu", "cuda:", "cuda:x", "cuda:-1", "CUDA"] {
        let e = bad.parse::<DeviceChoice>().unwrap_err();
        assert!(e.contains("cuda:N"), "{bad}: {e}");
    }
    assert!(DeviceChoice::Cuda(Some(1)).wants_gpu() && !DeviceChoice::Auto.wants_gpu());
    // In a config file, and refused with the value named.
    let c = svcca::config::Config::parse("[train]\ndevice = \"cuda:1\"\n", "c.toml", &[]).unwrap();
    assert_eq!(c.train.device, DeviceChoice::Cuda(Some(1)));
    let e = svcca::config::Config::parse("[train]\ndevice = \"tpu\"\n", "c.toml", &[]).unwrap_err().to_string();
    assert!(e.contains("tpu") && e.contains("cuda:N"), "{e}");
}

#[test]
fn cuda_n_on_the_command_line_is_tried_and_refused_without_that_gpu() {
    let out = svcca(&["compare", "--device", "cuda:7", "a.npy", "b.npy"]);
    if !device::cuda_available() {
        assert_refused_silent(&out, &["--device cuda:7", "no CUDA device"]);
    } else if tch::Cuda::device_count() < 8 {
        assert_refused_silent(&out, &["--device cuda:7", "CUDA device(s) are visible"]);
    }
    let out = svcca(&["compare", "--device", "gpu", "a.npy", "b.npy"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(common::stderr(&out).contains("cuda:N"), "{}", common::stderr(&out));
}

/// The GPU's arithmetic switches are libtorch's own (`at::Context`, in libtorch_cpu):
/// set and read back here, without a GPU.
#[test]
fn gpu_arithmetic_sets_libtorchs_cudnn_switches() {
    use svcca::device::GpuArithmetic;
    for (set, tf32, benchmark) in [
        (GpuArithmetic { tf32: true, deterministic: false }, true, true),
        (GpuArithmetic { tf32: false, deterministic: false }, false, true),
        // Deterministic: no TF32 and no benchmark search, whatever tf32 says.
        (GpuArithmetic { tf32: true, deterministic: true }, false, false),
    ] {
        set.apply();
        let (now, bench) = GpuArithmetic::current().expect("at::Context's switches found");
        assert_eq!(now, GpuArithmetic { tf32, deterministic: set.deterministic }, "after {set:?}");
        assert_eq!(bench, benchmark, "benchmark after {set:?}");
    }
}

/// Every command, run through the binary, resolves its device before it seeds libtorch:
/// the binary's guard (`device::require_resolution`) turns a seed before that into a
/// panic, exit 101. Each leaf command runs once here on tiny inputs; the list is checked
/// against `svcca --help`, so a new command must join it.
#[test]
fn every_command_resolves_its_device_before_it_seeds() {
    let tmp = tempfile::tempdir().unwrap();
    let p = |name: &str| tmp.path().join(name).display().to_string();
    let mut c = common::Tiny { steps: 20, every: 10, probe_size: Some(64), ..common::Tiny::default() }.config();
    c.train.device = DeviceChoice::Auto;
    let cfg = common::write_config(tmp.path(), "tiny.toml", &c);
    let mut frozen = c.clone();
    frozen.freeze.schedule = svcca::config::FreezeSchedule::Linear;
    let frozen_cfg = common::write_config(tmp.path(), "freeze.toml", &frozen);
    let sweep_cfg = common::write_file(tmp.path(), "sweep.toml", &format!("{}\n[sweep]\ntrain.seed = [0, 1]\n", common::to_toml(&c)));
    let (a, b) = (format!("{}/a.npy", p("ex")), format!("{}/b.npy", p("ex")));
    let commands: Vec<(&str, Vec<String>)> = vec![
        ("example", vec!["example".into(), p("ex"), "--datapoints".into(), "200".into()]),
        ("compare", vec!["compare".into(), a.clone(), b.clone()]),
        ("train", vec!["train".into(), cfg.clone(), "--out".into(), p("r1")]),
        ("analyze", vec!["analyze".into(), p("r1"), "--no-plots".into()]),
        ("analyze", vec!["analyze".into(), p("r1"), "--dimensionality".into()]),
        ("run", vec!["run".into(), cfg.clone(), "--out".into(), p("r2"), "--set".into(), "train.seed=1".into()]),
        ("compare-runs", vec!["compare-runs".into(), p("r1"), p("r2"), "--out".into(), p("cr")]),
        ("experiment", vec!["experiment".into(), "freeze".into(), frozen_cfg, "--seeds".into(), "1".into(), "--out".into(), p("fz")]),
        (
            "experiment",
            vec![
                "experiment".into(),
                "toy-regression".into(),
                "--out".into(),
                p("toy"),
                "--steps".into(),
                "5".into(),
                "--points".into(),
                "100".into(),
                "--width".into(),
                "10".into(),
                "--ks".into(),
                "2".into(),
            ],
        ),
        ("sweep", vec!["sweep".into(), sweep_cfg, "--out".into(), p("sw")]),
        (
            "data",
            vec![
                "data".into(),
                "synthetic".into(),
                "mnist".into(),
                "--dir".into(),
                p("mnist"),
                "--train".into(),
                "64".into(),
                "--test".into(),
                "32".into(),
            ],
        ),
    ];
    for (_, args) in &commands {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = svcca(&args);
        let stderr = common::stderr(&out);
        assert!(out.status.success(), "svcca {}: {stderr}", args.join(" "));
        assert!(!stderr.contains("programming error"), "svcca {}: {stderr}", args.join(" "));
    }
    let help = common::stdout(&svcca(&["--help"]));
    let listed: Vec<&str> = help
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|&c| c != "help")
        .collect();
    for command in listed {
        assert!(commands.iter().any(|(c, _)| *c == command), "svcca {command} is not run through the device guard here");
    }
}

/// The GPU's memory is read from the CUDA runtime where there is a GPU, and not made up
/// where there is none (training's size check then assumes a generous figure).
#[test]
fn gpu_memory_is_the_runtimes_figure_or_nothing() {
    let gpus = if device::gpus_visible() > 0 { tch::Cuda::device_count() as usize } else { 0 };
    match device::gpu_memory(0) {
        Some((free, total)) => {
            assert!(gpus > 0, "a GPU's memory read without a GPU");
            assert!(total >= 1 << 30 && free <= total, "free {free} of {total}");
        }
        None => assert_eq!(gpus, 0, "the CUDA runtime did not say what GPU 0 holds"),
    }
    assert_eq!(device::gpu_memory(gpus), None, "a GPU past the last one has no memory");
}
