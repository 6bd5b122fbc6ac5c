//! The learning-dynamics analysis of an activation folder written elsewhere (any
//! network): the same numbers as the run folder whose stored activations it holds, each
//! cell as the pair compared on its own, float16/bfloat16/float64 files read, and what
//! does not fit refused naming the file.

mod common;

use common::{assert_refused, stderr, svcca, Tiny};
use serde_json::json;
use std::path::Path;
use svcca::analysis::dynamics::Dynamics;
use svcca::config::{ActivationMode, Config};
use tch::{Device, Kind, Tensor};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn ok(out: &std::process::Output) {
    assert!(out.status.success(), "status {:?}: {}", out.status, stderr(out));
}

fn dynamics(dir: &Path) -> Dynamics {
    serde_json::from_str(&std::fs::read_to_string(dir.join("analysis/dynamics.json")).unwrap()).unwrap()
}

/// A layer as written: its name, the kind it is stored in, its values.
type Layer<'a> = (&'a str, Kind, Tensor);

/// Writes an activation folder in `dir`: at each of `steps`, its layers in that order,
/// and the manifest.
fn write_folder(dir: &Path, steps: &[(u64, Vec<Layer>)]) {
    let acts = dir.join("activations");
    std::fs::create_dir_all(&acts).unwrap();
    let mut entries = Vec::new();
    for (step, layers) in steps {
        let file = format!("step-{step:08}.safetensors");
        let tensors: Vec<(String, Tensor)> = layers.iter().map(|(l, k, t)| (l.to_string(), t.to_kind(*k).contiguous())).collect();
        Tensor::write_safetensors(&tensors, acts.join(&file)).unwrap();
        for (l, k, t) in layers {
            entries.push(json!({"step": step, "layer": l, "shape": t.size(), "dtype": format!("{k:?}"), "file": file}));
        }
    }
    std::fs::write(acts.join("manifest.json"), serde_json::to_string_pretty(&json!({ "entries": entries })).unwrap()).unwrap();
}

/// A store-mode run's activations copied into a folder of their own, with the run's
/// `[analysis]` table and no checkpoints: analysed to the same matrices and chance level.
#[test]
fn a_run_folders_stored_activations_analyse_alike_without_the_run() {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = Tiny { steps: 20, every: 10, probe_size: Some(64), ..Tiny::default() }.config();
    c.analysis.mode = ActivationMode::Store;
    c.analysis.layers = Some(["c1", "p2", "fc1", "logits"].map(String::from).to_vec());
    let cfg = common::write_config(tmp.path(), "c.toml", &c);
    let run = tmp.path().join("run");
    ok(&svcca(&["run", &cfg, "--out", s(&run)]));
    let folder = tmp.path().join("folder");
    std::fs::create_dir_all(folder.join("activations")).unwrap();
    for e in std::fs::read_dir(run.join("activations")).unwrap().flatten() {
        std::fs::copy(e.path(), folder.join("activations").join(e.file_name())).unwrap();
    }
    let resolved = Config::load_resolved(&run.join("config.toml")).unwrap();
    let mut table = toml::Table::new();
    table.insert("analysis".into(), toml::Value::try_from(&resolved.analysis).unwrap());
    std::fs::write(folder.join("config.toml"), toml::to_string(&table).unwrap()).unwrap();
    let out = svcca(&["analyze", s(&folder)]);
    ok(&out);
    let (a, b) = (dynamics(&run), dynamics(&folder));
    assert_eq!(b.settings.layers, ["c1", "p2", "fc1", "logits"]);
    assert_eq!(b.steps.len(), 3);
    for (x, y) in a.steps.iter().zip(&b.steps) {
        assert_eq!(x.step, y.step);
        assert_eq!(x.matrix, y.matrix, "step {}", x.step);
    }
    assert_eq!(a.chance, b.chance);
    assert!(folder.join("plots/heatmaps.png").is_file() && folder.join("analysis/chance.csv").is_file());
    // The findings that need the network are refused, saying why.
    assert_refused(&svcca(&["analyze", s(&folder), "--dimensionality"]), &["activation folder", "run folder trained by svcca"]);
    // The run itself with its checkpoints gone is not taken for an activation folder of
    // its own: refused, saying what is missing.
    std::fs::rename(run.join("checkpoints"), tmp.path().join("checkpoints.moved")).unwrap();
    assert_refused(&svcca(&["analyze", s(&run)]), &["config.toml", "is a run folder, its checkpoints/ folder is missing"]);
}

/// Layers of any kind svcca does not build, in float16, bfloat16 and float64: each cell
/// is the pair compared on its own (the files' values read as float32), the final
/// diagonal is 1.
#[test]
fn any_networks_layers_in_any_float_kind_are_analysed_cell_by_cell() {
    tch::manual_seed(7);
    let tmp = tempfile::tempdir().unwrap();
    let n = 300;
    let conv = Tensor::randn([n, 4, 5, 5], (Kind::Float, Device::Cpu));
    let dense = Tensor::randn([n, 12], (Kind::Float, Device::Cpu));
    let out = Tensor::randn([n, 6], (Kind::Float, Device::Cpu));
    // Earlier steps: the final layers plus noise that shrinks.
    let at = |noise: f64| {
        vec![
            ("block1", Kind::Half, &conv + Tensor::randn([n, 4, 5, 5], (Kind::Float, Device::Cpu)) * noise),
            ("hidden", Kind::BFloat16, &dense + Tensor::randn([n, 12], (Kind::Float, Device::Cpu)) * noise),
            ("head", Kind::Double, &out + Tensor::randn([n, 6], (Kind::Float, Device::Cpu)) * noise),
        ]
    };
    let steps = vec![(0, at(2.0)), (5, at(0.5)), (9, at(0.0))];
    write_folder(tmp.path(), &steps);
    ok(&svcca(&["analyze", s(tmp.path()), "--no-plots"]));
    let d = dynamics(tmp.path());
    assert_eq!(d.settings.layers, ["block1", "hidden", "head"]);
    assert_eq!(d.settings.final_step, 9);
    let config = Config::default();
    let read = |(_, k, t): &(&str, Kind, Tensor)| t.to_kind(*k).to_kind(Kind::Float);
    for (r, (step, layers)) in d.steps.iter().zip(&steps) {
        assert_eq!(r.step, *step);
        for (i, x) in layers.iter().enumerate() {
            for (j, y) in steps[2].1.iter().enumerate() {
                let alone = svcca::activations::pair(&read(x), &read(y), &config, ["x", "y"]).unwrap();
                let v = r.matrix[i][j].unwrap();
                assert!((v - alone).abs() < 1e-9, "step {step}, {} vs {}: {v} vs {alone}", x.0, y.0);
            }
        }
    }
    for i in 0..3 {
        assert!((d.steps[2].matrix[i][i].unwrap() - 1.0).abs() < 1e-6);
        assert!(d.steps[0].matrix[i][i].unwrap() < d.steps[1].matrix[i][i].unwrap(), "less noise, more similar");
    }
}

/// A folder recorded on too few datapoints for its widest layer is analysed with a
/// warning that says to record more (it has no `analysis.probe_size` to raise).
#[test]
fn a_small_folder_is_warned_about_in_its_own_terms() {
    tch::manual_seed(8);
    let tmp = tempfile::tempdir().unwrap();
    let layer = |noise: f64| vec![("hidden", Kind::Float, Tensor::randn([40, 12], (Kind::Float, Device::Cpu)) * (1.0 + noise))];
    write_folder(tmp.path(), &[(0, layer(1.0)), (1, layer(0.0))]);
    let out = svcca(&["analyze", s(tmp.path()), "--no-plots"]);
    ok(&out);
    let err = stderr(&out);
    assert!(err.contains("the probe's 40 datapoints are fewer than 5 per unit of layer hidden"), "{err}");
    assert!(err.contains("record the activation folder on more datapoints") && !err.contains("analysis.probe_size"), "{err}");
}

/// What does not fit is refused before anything is computed, naming the file.
#[test]
fn a_folder_that_does_not_fit_is_refused_naming_the_file() {
    let layer = |rows: i64, d: i64| Tensor::randn([rows, d], (Kind::Float, Device::Cpu));
    let two = |rows_b: i64| vec![("a", Kind::Float, layer(50, 4)), ("b", Kind::Float, layer(rows_b, 3))];
    type Case<'a> = (&'a str, Box<dyn Fn(&Path) + 'a>, Vec<&'a str>);
    let cases: Vec<Case> = vec![
        (
            "a listed step without its file",
            Box::new(|d: &Path| {
                write_folder(d, &[(0, two(50)), (10, two(50))]);
                std::fs::remove_file(d.join("activations/step-00000000.safetensors")).unwrap();
            }),
            vec!["manifest.json", "step 0 is listed", "step-00000000.safetensors"],
        ),
        (
            "another row count",
            Box::new(|d: &Path| write_folder(d, &[(0, two(40)), (10, two(40))])),
            vec!["step-00000000.safetensors", "'b'", "50 datapoints"],
        ),
        (
            "a layer missing at a step",
            Box::new(|d: &Path| write_folder(d, &[(0, two(50)), (10, vec![("a", Kind::Float, layer(50, 4))])])),
            vec!["manifest.json", "step 10 lists the layers a where step 0 lists a b"],
        ),
        (
            "layers in another order",
            Box::new(|d: &Path| {
                let mut swapped = two(50);
                swapped.reverse();
                write_folder(d, &[(0, two(50)), (10, swapped)]);
            }),
            vec!["step 10 lists the layers b a"],
        ),
        (
            "steps out of order",
            Box::new(|d: &Path| write_folder(d, &[(10, two(50)), (0, two(50))])),
            vec!["manifest.json", "not in step order"],
        ),
        (
            "a config with more than [analysis]",
            Box::new(|d: &Path| {
                write_folder(d, &[(0, two(50)), (10, two(50))]);
                std::fs::write(d.join("config.toml"), "[train]\nlr = 0.1\n").unwrap();
            }),
            vec!["config.toml", "[train]", "[analysis] table only"],
        ),
    ];
    for (what, make, needles) in cases {
        let tmp = tempfile::tempdir().unwrap();
        make(tmp.path());
        let out = svcca(&["analyze", s(tmp.path()), "--no-plots"]);
        assert_refused(&out, &needles);
        assert!(!tmp.path().join("analysis/steps").read_dir().is_ok_and(|mut d| d.next().is_some()), "{what}: something computed");
    }
}
