//! The learning-dynamics stage on a tiny run: the final checkpoint's layers x layers
//! matrix has ones on its diagonal; stored and replayed activations give the same
//! numbers; an interrupted analysis resumes without redoing finished checkpoints; the
//! plots are valid PNG and SVG; `svcca run` does it all in one command.

mod common;

use common::{assert_refused, svcca, Tiny};
use std::path::Path;
use svcca::analysis::dynamics::Dynamics;
use svcca::config::{ActivationMode, Config, StoreDtype};
use svcca::similarity::{ConvMethod, Method};

const LAYERS: [&str; 5] = ["c1", "c3", "p2", "fc1", "logits"];

/// 20 steps of a narrow convnet, analysed in `mode` on a probe of 64, layers `LAYERS`.
fn tiny(mode: ActivationMode) -> Config {
    let mut c = Tiny { width: 4, fc1: 16, fc2: 8, steps: 20, probe_size: Some(64), ..Tiny::default() }.config();
    c.analysis.mode = mode;
    c.analysis.layers = Some(LAYERS.map(String::from).to_vec());
    c
}

/// As `tiny`, 10 steps, these layers.
fn short(mode: ActivationMode, layers: &[&str]) -> Config {
    let mut c = tiny(mode);
    c.train.steps = Some(10);
    c.analysis.layers = Some(layers.iter().map(|l| l.to_string()).collect());
    c
}

fn train(dir: &Path, mode: ActivationMode) {
    svcca::train::train(tiny(mode), dir).unwrap();
}

fn matrices(d: &Dynamics) -> Vec<Vec<Vec<Option<f64>>>> {
    d.steps.iter().map(|r| r.matrix.clone()).collect()
}

#[test]
fn replay_store_resume_and_plots() {
    let tmp = tempfile::tempdir().unwrap();
    let (replay, store) = (tmp.path().join("replay"), tmp.path().join("store"));
    train(&store, ActivationMode::Store);
    // The stored activations: one safetensors file per checkpoint and a manifest.
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(store.join("activations/manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["probe_indices"].as_array().unwrap().len(), 64);
    assert_eq!(manifest["entries"].as_array().unwrap().len(), 3 * LAYERS.len());
    assert_eq!(manifest["entries"][0]["shape"], serde_json::json!([64, 4, 32, 32]));
    // The same run, analysed by replaying its checkpoints instead.
    std::fs::create_dir_all(replay.join("checkpoints")).unwrap();
    for e in std::fs::read_dir(store.join("checkpoints")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), replay.join("checkpoints").join(e.file_name())).unwrap();
    }
    let config = std::fs::read_to_string(store.join("config.toml")).unwrap();
    assert!(config.contains("mode = \"store\""));
    std::fs::write(replay.join("config.toml"), config.replace("mode = \"store\"", "mode = \"replay\"")).unwrap();

    let r = svcca::analysis::analyze(&replay, None).unwrap();
    let s = svcca::analysis::analyze(&store, None).unwrap();
    assert_eq!((r.computed, r.skipped), (3, 0));
    let steps: Vec<u64> = r.dynamics.steps.iter().map(|x| x.step).collect();
    assert_eq!(steps, [0, 10, 20]);
    // The final network against itself: ones on the diagonal.
    let last = r.dynamics.steps.last().unwrap();
    for (i, l) in LAYERS.iter().enumerate() {
        let v = last.matrix[i][i].unwrap();
        assert!((v - 1.0).abs() < 1e-6, "{l} against itself: {v}");
    }
    // Off the diagonal, below one; the shuffled baseline far below.
    assert!(last.matrix[0][4].unwrap() < 0.99);
    // The final row, made from the final layers' shared summaries, is each pair compared
    // on its own.
    let run = svcca::analysis::runs::Run::open(&replay, None).unwrap();
    let names: Vec<String> = LAYERS.iter().map(|l| l.to_string()).collect();
    let finals = svcca::activations::record::record(&run.net, &run.probe(), &names).unwrap();
    for (i, a) in finals.iter().enumerate() {
        for (j, b) in finals.iter().enumerate() {
            let alone = svcca::activations::pair(a, b, &run.config, ["a", "b"]).unwrap();
            let v = last.matrix[i][j].unwrap();
            assert!((v - alone).abs() < 1e-9, "{} vs {}: {v} in the analysis, {alone} alone", LAYERS[i], LAYERS[j]);
        }
    }
    for b in &r.dynamics.baseline {
        assert!(b.shuffled.unwrap() < 0.9, "{b:?}");
        assert!(b.init.is_some());
    }
    // The chance level of every cell: final layer i, the probe's datapoints in the order
    // of the permutation `analysis.seed` draws, against final layer j, each pair compared
    // on its own; its diagonal is the shuffled baseline.
    let n = finals[0].size()[0] as usize;
    let perm = tch::Tensor::from_slice(&svcca::data::rng::Rng::stream(run.config.analysis.seed, &[0x73687566]).permutation(n));
    assert_eq!(r.dynamics.chance.len(), LAYERS.len());
    for (i, a) in finals.iter().enumerate() {
        let shuffled = a.index_select(0, &perm);
        for (j, b) in finals.iter().enumerate() {
            let alone = svcca::activations::pair(&shuffled, b, &run.config, ["a", "b"]).unwrap();
            let v = r.dynamics.chance[i][j].unwrap();
            assert!((v - alone).abs() < 1e-9, "chance {} vs {}: {v} in the analysis, {alone} alone", LAYERS[i], LAYERS[j]);
        }
        assert_eq!(r.dynamics.baseline[i].shuffled, r.dynamics.chance[i][i]);
    }
    let chance = std::fs::read_to_string(replay.join("analysis/chance.csv")).unwrap();
    assert_eq!(chance.lines().next().unwrap(), "layer,final_layer,chance");
    assert_eq!(chance.lines().count(), 1 + 25);
    // Stored and replayed activations give the same numbers.
    for (mr, ms) in matrices(&r.dynamics).iter().zip(matrices(&s.dynamics)) {
        for (rr, rs) in mr.iter().zip(&ms) {
            for (a, b) in rr.iter().zip(rs) {
                assert!((a.unwrap() - b.unwrap()).abs() < 1e-9, "{a:?} vs {b:?}");
            }
        }
    }
    // Tables.
    let sim = std::fs::read_to_string(replay.join("analysis/similarity.csv")).unwrap();
    assert_eq!(sim.lines().next().unwrap(), "step,fraction,layer,final_layer,similarity");
    assert_eq!(sim.lines().count(), 1 + 3 * 25);
    let diag = std::fs::read_to_string(replay.join("analysis/to_final.csv")).unwrap();
    assert_eq!(diag.lines().count(), 1 + 3 * 5);
    assert!(replay.join("analysis/dynamics.json").exists() && replay.join("analysis/baseline.csv").exists());

    // Interrupted: one checkpoint's results missing. The rerun computes only that one and
    // leaves the others' files as they were.
    let kept = replay.join("analysis/steps/step-00000000.json");
    let before = std::fs::metadata(&kept).unwrap().modified().unwrap();
    std::fs::remove_file(replay.join("analysis/steps/step-00000010.json")).unwrap();
    std::fs::remove_file(replay.join("analysis/similarity.csv")).unwrap();
    let again = svcca::analysis::analyze(&replay, None).unwrap();
    assert_eq!((again.computed, again.skipped), (1, 2));
    assert_eq!(std::fs::metadata(&kept).unwrap().modified().unwrap(), before);
    assert_eq!(matrices(&again.dynamics), matrices(&r.dynamics));
    assert_eq!(std::fs::read_to_string(replay.join("analysis/similarity.csv")).unwrap(), sim);
    // Nothing left to do.
    let done = svcca::analysis::analyze(&replay, None).unwrap();
    assert_eq!((done.computed, done.skipped), (0, 3));

    // Plots: valid PNG (decodable) and SVG naming the layers.
    let files = svcca::report::plot(&replay, &r.dynamics).unwrap();
    assert_eq!(files.len(), 6, "heatmaps, heatmaps_minus_chance and to_final, each as PNG and SVG: {files:?}");
    for f in files {
        let bytes = std::fs::read(&f).unwrap();
        if f.extension().unwrap() == "png" {
            assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "{}", f.display());
            let img = image::load_from_memory(&bytes).unwrap();
            assert!(img.width() > 500 && img.height() > 300);
        } else {
            let text = String::from_utf8(bytes).unwrap();
            assert!(text.starts_with("<svg") && text.trim_end().ends_with("</svg>"), "{}", f.display());
            assert!(text.contains(">fc1<") || text.contains("fc1"), "{}", f.display());
        }
    }
}

#[test]
fn keep_last_with_replay_is_refused() {
    let keep_last = |mode| {
        let mut c = tiny(mode);
        c.checkpoints.keep_last = Some(2);
        common::to_toml(&c)
    };
    let e = Config::parse(&keep_last(ActivationMode::Replay), "tiny.toml", &[]).unwrap_err();
    assert!(e.message.contains("checkpoints.keep_last") && e.message.contains("replay"), "{}", e.message);
    assert!(Config::parse(&keep_last(ActivationMode::Store), "t", &[]).is_ok());
}

#[test]
fn analyze_refuses_what_it_cannot_analyse() {
    let tmp = tempfile::tempdir().unwrap();
    // Not a run folder.
    assert_refused(&svcca(&["analyze", tmp.path().to_str().unwrap()]), &["not a run folder"]);
    // An unfinished run: its checkpoints stop before the last step.
    let run = tmp.path().join("run");
    train(&run, ActivationMode::Replay);
    std::fs::remove_file(run.join("checkpoints/step-00000020.safetensors")).unwrap();
    assert_refused(&svcca(&["analyze", run.to_str().unwrap()]), &["finish training first"]);
}

#[test]
fn run_trains_analyses_and_plots() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = common::write_config(tmp.path(), "tiny.toml", &short(ActivationMode::Replay, &["c5", "fc2"]));
    let out_dir = tmp.path().join("out");
    let args = ["run", &cfg, "--out", out_dir.to_str().unwrap()];
    let out = svcca(&args);
    assert!(out.status.success(), "{}", common::stderr(&out));
    for f in ["analysis/to_final.csv", "plots/heatmaps.png", "plots/to_final.svg"] {
        assert!(out_dir.join(f).exists(), "{f}");
    }
    // Rerun: nothing to redo.
    let out = svcca(&args);
    assert!(out.status.success());
    assert!(common::stdout(&out).contains("(0 now, 2 already done)"), "{}", common::stdout(&out));
}

#[test]
fn changed_analysis_settings_reach_the_run_folder_and_are_not_mixed() {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = short(ActivationMode::Replay, &["fc2"]);
    let cfg = common::write_config(tmp.path(), "tiny.toml", &c);
    let out_dir = tmp.path().join("out");
    let args = ["run", &cfg, "--out", out_dir.to_str().unwrap()];
    assert!(svcca(&args).status.success());
    // Another probe: refused, as the analysis would not mix it with the old results,
    // before training touches the folder, whose config keeps the old value (so a plain
    // `svcca analyze` still goes on). With the analysis deleted, the new value reaches it.
    c.analysis.probe_size = 32;
    common::write_config(tmp.path(), "tiny.toml", &c);
    assert_refused(&svcca(&args), &["other settings", "delete"]);
    assert!(!std::fs::read_to_string(out_dir.join("config.toml")).unwrap().contains("probe_size = 32"));
    std::fs::remove_dir_all(out_dir.join("analysis")).unwrap();
    let out = svcca(&args);
    assert!(out.status.success(), "{}", common::stderr(&out));
    let d: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out_dir.join("analysis/dynamics.json")).unwrap()).unwrap();
    assert_eq!(d["settings"]["probe_size"], 32);
}

#[test]
fn float16_store_files_are_plain_safetensors() {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = tiny(ActivationMode::Store);
    c.train.steps = Some(10);
    c.analysis.dtype = StoreDtype::Float16;
    svcca::train::train(c, tmp.path()).unwrap();
    // The format a Python reader sees: an 8-byte little-endian header length, a JSON
    // header naming each tensor's dtype, shape and byte range, then the data.
    let bytes = std::fs::read(tmp.path().join("activations/step-00000010.safetensors")).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    assert_eq!(header["c3"]["dtype"], "F16");
    assert_eq!(header["c3"]["shape"], serde_json::json!([64, 4, 16, 16]));
    assert_eq!(header["fc1"]["shape"], serde_json::json!([64, 16]));
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(tmp.path().join("activations/manifest.json")).unwrap()).unwrap();
    assert!(manifest["entries"].as_array().unwrap().iter().all(|e| e["dtype"] == "float16"));
    // Analysed as stored: the final matrix still has (near) ones on its diagonal.
    let d = svcca::analysis::analyze(tmp.path(), None).unwrap().dynamics;
    let last = d.steps.last().unwrap();
    for i in 0..LAYERS.len() {
        assert!((last.matrix[i][i].unwrap() - 1.0).abs() < 1e-6);
    }
}

#[test]
fn every_conv_method_and_measure_gives_ones_on_the_final_diagonal() {
    let tmp = tempfile::tempdir().unwrap();
    let base = short(ActivationMode::Replay, &["c3", "p2", "fc1"]);
    let run = tmp.path().join("run");
    svcca::train::train(base.clone(), &run).unwrap();
    use ConvMethod::{Avgpool, Dft, Flatten};
    for (conv, method) in
        [(Flatten, Method::Svcca), (Avgpool, Method::Svcca), (Avgpool, Method::Pwcca), (Flatten, Method::Cka), (Dft, Method::Cca)]
    {
        let mut config = base.clone();
        (config.analysis.conv, config.analysis.method) = (conv, method);
        let config = config.resolve(512);
        std::fs::write(run.join("config.toml"), config.to_toml()).unwrap();
        let _ = std::fs::remove_dir_all(run.join("analysis"));
        let d = svcca::analysis::analyze(&run, None).unwrap().dynamics;
        let last = d.steps.last().unwrap();
        for i in 0..3 {
            let v = last.matrix[i][i].unwrap();
            assert!((v - 1.0).abs() < 1e-6, "{conv:?} {method}: {} against itself {v}", d.settings.layers[i]);
        }
        assert!(d.steps[0].matrix.iter().flatten().all(|v| v.is_some_and(|v| (0.0..=1.0 + 1e-9).contains(&v))), "{conv:?} {method}");
    }
}
