//! The toy regression's command (`svcca experiment toy-regression`, the paper's Figures
//! 1 and 3) on tiny nets: it writes its files and figures, and refuses bad arguments.
//! What the figures claim is tested on the nets themselves in
//! src/toy_regression/tests.rs.

mod common;

use common::{assert_refused, stdout, svcca};

#[test]
fn the_command_writes_the_curves_and_both_figures() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("toy");
    let o = svcca(&[
        "experiment",
        "toy-regression",
        "--out",
        out.to_str().unwrap(),
        "--width",
        "16",
        "--points",
        "160",
        "--steps",
        "300",
        "--ks",
        "2,4,8",
        "--figure3-svd",
        "8",
    ]);
    assert!(o.status.success(), "{}", common::stderr(&o));
    let text = stdout(&o);
    assert!(text.contains("SVCCA directions") && text.contains("figure1.png") && text.contains("figure3.png"), "{text}");
    for name in ["figure1", "figure3"] {
        let bytes = std::fs::read(out.join("plots").join(format!("{name}.png"))).unwrap();
        let img = image::load_from_memory(&bytes).unwrap().to_rgb8();
        assert!(img.width() > 500 && img.height() > 500, "{name}: {}x{}", img.width(), img.height());
        // Drawn on, not blank: plenty of pixels neither white nor grey.
        let coloured = img.pixels().filter(|p| p.0.iter().max().unwrap() - p.0.iter().min().unwrap() > 60).count();
        assert!(coloured > 2000, "{name}: {coloured} coloured pixels");
        let svg = std::fs::read_to_string(out.join("plots").join(format!("{name}.svg"))).unwrap();
        assert!(svg.contains("<polyline") || svg.contains("<path"), "{name}.svg has no lines");
    }
    // The CSV files: a header and a row per grid point (or per k).
    let rows = |name: &str| std::fs::read_to_string(out.join(name)).unwrap().lines().map(str::to_string).collect::<Vec<_>>();
    let f1 = rows("figure1.csv");
    assert_eq!(f1.len(), 161);
    assert!(f1[0].starts_with("x,svcca1_a,svcca1_b,"), "{}", f1[0]);
    let f3 = rows("figure3.csv");
    assert_eq!(f3.len(), 161);
    // x, 4 targets, 4 outputs, then 4 outputs for each of 3 bases x 3 k.
    assert_eq!(f3[0].split(',').count(), 1 + 4 + 4 + 3 * 3 * 4, "{}", f3[0]);
    assert!(f3[0].contains("neurons_k8_4"), "{}", f3[0]);
    let errors = rows("figure3_errors.csv");
    assert_eq!(errors[0], "basis,k,relative_error,mse_to_targets");
    // SVD and neurons at every k from 0 to 16, SVCCA from 0 to the 8 directions kept.
    let count = |b: &str| errors.iter().filter(|l| l.starts_with(&format!("{b},"))).count();
    assert_eq!((count("svd"), count("neurons"), count("svcca")), (17, 17, 9));
    let corr = rows("correlations.csv");
    assert_eq!(corr[0], "layer,basis,rank,neuron_a,neuron_b,correlation,best_match");
    for layer in 1..=4 {
        let of = |b: &str| corr.iter().filter(|l| l.starts_with(&format!("{layer},{b},"))).count();
        assert_eq!((of("neurons"), of("svd")), (4, 4), "layer {layer}");
        assert!((1..=4).contains(&of("svcca")), "layer {layer}");
    }
    let summary: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["layers"].as_array().unwrap().len(), 4);
    assert_eq!(summary["figure3"].as_array().unwrap().len(), 9);
    assert_eq!(summary["figure3_correlations"].as_array().unwrap().len(), 8);
    assert_eq!(rows("loss.csv")[0], "step,loss_a,loss_b");
}

#[test]
fn bad_arguments_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("toy");
    let run = |extra: &[&str]| {
        let mut args = vec!["experiment", "toy-regression", "--out", out.to_str().unwrap(), "--steps", "1"];
        args.extend_from_slice(extra);
        svcca(&args)
    };
    assert_refused(&run(&["--width", "1"]), &["--width"]);
    assert_refused(&run(&["--width", "8", "--points", "10"]), &["--points"]);
    assert_refused(&run(&["--width", "8", "--ks", "2,9"]), &["--ks", "9"]);
    assert_refused(&run(&["--layer", "5"]), &["--layer", "1 to 4"]);
    assert_refused(&run(&["--layer", "0"]), &["--layer"]);
    assert_refused(&run(&["--keep", "0"]), &["--keep"]);
    assert_refused(&run(&["--keep", "1.5"]), &["--keep"]);
    assert_refused(&run(&["--learning-rate=-1"]), &["--learning-rate"]);
    assert_refused(&run(&["--steps", "0"]), &["--steps"]);
    assert_refused(&run(&["--ks", "two"]), &["--ks"]);
    assert_refused(&run(&["--width", "8", "--ks", "2", "--figure3-svd", "9"]), &["--figure3-svd 9", "--width 8"]);
    assert_refused(&run(&["--ks", "2,31", "--figure3-svd", "30"]), &["--ks", "31", "--figure3-svd"]);
    assert_refused(&run(&["--figure3-svd", "0"]), &["--figure3-svd"]);
    assert!(!out.join("summary.json").exists());
}
