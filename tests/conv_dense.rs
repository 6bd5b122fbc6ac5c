//! A conv layer against a dense one through the public API: `svcca compare
//! --conv-dense` (flatten against the explicitly reshaped layer, avgpool, streamed,
//! the Gram route, misuse) and settings files from before the setting. The analysis's
//! own route (summaries, the fallback to `avgpool` on a small probe and its warning):
//! src/activations/conv_dense_tests.rs.

mod common;
use common::*;
use svcca::config::Config;
use svcca::similarity::ConvDense;
use tch::{Kind, Tensor};

fn flat(x: &Tensor) -> Tensor {
    x.reshape([x.size()[0], -1])
}

#[test]
fn settings_from_before_the_setting_read_as_avgpool() {
    use svcca::analysis::{compare_runs, dynamics};
    let old = r#"{"method":"svcca","keep":0.99,"conv":"dft","probe_size":500,"seed":0,"layers":["c1","fc"],"final_step":10}"#;
    let s: dynamics::Settings = serde_json::from_str(old).unwrap();
    assert_eq!(s.similarity.conv_dense, ConvDense::Avgpool);
    let old = r#"{"runs":["a","b"],"method":"svcca","keep":0.99,"conv":"dft","probe_size":500,"seed":0}"#;
    let s: compare_runs::Settings = serde_json::from_str(old).unwrap();
    assert_eq!(s.similarity.conv_dense, ConvDense::Avgpool);
    // New settings record what was asked.
    let now = dynamics::Settings::new(&Config::default().analysis, vec!["c1".into()], 10);
    let text = serde_json::to_string(&now).unwrap();
    assert!(text.contains(r#""conv_dense":"flatten""#), "{text}");
    assert_eq!(serde_json::from_str::<dynamics::Settings>(&text).unwrap(), now);
}

#[test]
fn compare_takes_conv_dense_for_a_4d_file_against_a_2d_one() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Rounded to float32 as the files hold them, so both sides see the same numbers.
    let f32s = |t: &Tensor| t.to_kind(Kind::Float).to_kind(Kind::Double);
    let (conv, dense) = conv_and_dense_pair(31, 600, [4, 4, 4], 7);
    let (conv, dense) = (f32s(&conv), f32s(&dense));
    let (c, fc, flat_c) = (write_npy(d, "conv.npy", &conv), write_npy(d, "fc.npy", &dense), write_npy(d, "flat.npy", &flat(&conv)));
    let mean = |v: &serde_json::Value| v["mean"].as_f64().unwrap();
    let want = json(&svcca(&["compare", &flat_c, &fc, "--json"]));
    let got = json(&svcca(&["compare", &c, &fc, "--conv-dense", "flatten", "--json"]));
    assert!((mean(&got) - mean(&want)).abs() < 1e-9, "{} vs {}", mean(&got), mean(&want));
    assert_eq!((got["neurons_a"].as_i64(), got["conv"]["conv_dense"].as_str()), (Some(64), Some("flatten")));
    // Streamed in blocks, and the dense file first.
    let s = json(&svcca(&["compare", &fc, &c, "--conv-dense", "flatten", "--memory-budget", "100K", "--json"]));
    assert!(s["blocks"].as_u64().unwrap() > 1);
    assert!((mean(&s) - mean(&want)).abs() < 1e-9);
    // avgpool: as --conv avgpool alone did, and does.
    let p = json(&svcca(&["compare", &c, &fc, "--conv-dense", "avgpool", "--json"]));
    let q = json(&svcca(&["compare", &c, &fc, "--conv", "avgpool", "--json"]));
    assert_eq!((p["neurons_a"].as_i64(), q["neurons_a"].as_i64()), (Some(4), Some(4)));
    assert!((mean(&p) - mean(&q)).abs() < 1e-12 && (mean(&p) - mean(&want)).abs() > 0.02);

    // Wider than the datapoints: the Gram route, read whole.
    let (wide, wdense) = conv_and_dense_pair(32, 150, [8, 8, 8], 9);
    let (wide, wdense) = (f32s(&wide), f32s(&wdense));
    let (w, wf, wflat) = (write_npy(d, "wide.npy", &wide), write_npy(d, "wfc.npy", &wdense), write_npy(d, "wflat.npy", &flat(&wide)));
    let want = json(&svcca(&["compare", &wflat, &wf, "--top-k", "8", "--json"]));
    let out = svcca(&["compare", &w, &wf, "--conv-dense", "flatten", "--top-k", "8", "--json"]);
    let got = json(&out);
    assert!((mean(&got) - mean(&want)).abs() < 1e-9, "{} vs {}", mean(&got), mean(&want));
    assert_eq!((got["blocks"].as_u64(), got["kept_a"].as_i64()), (Some(1), Some(8)));
    assert!(stderr(&out).contains("fewer datapoints (150) than neurons (512)"), "{}", stderr(&out));

    // Misuse, named.
    assert_refused_silent(&svcca(&["compare", &c, &fc]), &["conv.npy", "--conv-dense"]);
    assert_refused_silent(&svcca(&["compare", &c, &fc, "--conv", "dft"]), &["fc.npy", "--conv-dense flatten or avgpool"]);
    assert_refused_silent(&svcca(&["compare", &c, &fc, "--conv", "avgpool", "--conv-dense", "flatten"]), &["--conv-dense alone"]);
    assert_refused_silent(&svcca(&["compare", &fc, &fc, "--conv-dense", "flatten"]), &["--conv-dense", "both files are 2-D"]);
    assert_refused_silent(&svcca(&["compare", &c, &c, "--conv-dense", "flatten"]), &["--conv-dense", "both files are 4-D"]);
    assert_refused_silent(&svcca(&["compare", &c, &fc, "--conv-dense", "mean"]), &["mean"]);
    let huge = write_npy(d, "huge.npy", &randn(41, 20, 16 * 32 * 32).view([20, 16, 32, 32]));
    let small = write_npy(d, "small.npy", &randn(42, 20, 3));
    assert_refused_silent(&svcca(&["compare", &huge, &small, "--conv-dense", "flatten", "--method", "cka"]), &["16384", "--method svcca"]);
}
