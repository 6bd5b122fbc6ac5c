//! Agreement with google/svcca's own numbers (tests/fixtures/svcca_ref, tolerances from
//! its README for a float64 implementation: 1e-6). The fixtures are float32 files; the
//! same data as float64 tensors must give the same answers (float32 input against a
//! float64 reference).

mod common;
use common::*;
use svcca::similarity::{compare, Keep, Method, Options, Similarity};
use tch::Kind;

const TOL: f64 = 1e-6;

/// Runs one comparison with the fixture tensors given as `kind` (the files are float32;
/// float64 input of the same values must give the same answers).
fn run(a: &str, b: &str, method: Method, keep: Keep, kind: Kind) -> Similarity {
    let options = Options { method, keep, ..Options::default() };
    compare(&load(a).to_kind(kind), &load(b).to_kind(kind), &options).unwrap()
}

fn both_input_kinds(check: impl Fn(Kind)) {
    check(Kind::Float);
    check(Kind::Double);
}

#[test]
fn case1_plain_cca_all_coefficients() {
    let c = case("case1_plain_cca");
    let want = floats(&c["expected"]["cca_coef1"]);
    both_input_kinds(|kind| {
        let s = run("case1_A.npy", "case1_B.npy", Method::Cca, Keep::All, kind);
        assert_eq!((s.kept_a, s.kept_b), (64, 48));
        assert_close(&s.correlations, &want, TOL, "case1 coefficients");
        let mean = c["expected"]["mean_all_coefs"].as_f64().unwrap();
        assert!((s.mean - mean).abs() <= TOL, "case1 mean {} vs {mean}", s.mean);
    });
}

#[test]
fn case2_svcca_99_percent_variance() {
    let c = case("case2_svcca_99pct");
    let e = &c["expected"];
    both_input_kinds(|kind| {
        let s = run("case2_A.npy", "case2_B.npy", Method::Svcca, Keep::Variance(0.99), kind);
        assert_eq!(s.kept_a, e["k_A"].as_i64().unwrap());
        assert_eq!(s.kept_b, e["k_B"].as_i64().unwrap());
        assert_close(&s.correlations, &floats(&e["cca_coef1"]), TOL, "case2 coefficients");
        assert!((s.mean - e["mean_all_coefs"].as_f64().unwrap()).abs() <= TOL);
    });
}

#[test]
fn case3_svcca_top_20() {
    let c = case("case3_svcca_top20");
    let e = &c["expected"];
    both_input_kinds(|kind| {
        let s = run("case2_A.npy", "case2_B.npy", Method::Svcca, Keep::TopK(20), kind);
        assert_eq!((s.kept_a, s.kept_b), (20, 20));
        assert_close(&s.correlations, &floats(&e["cca_coef1"]), TOL, "case3 coefficients");
        assert!((s.mean - e["mean_all_coefs"].as_f64().unwrap()).abs() <= TOL);
    });
}

#[test]
fn case4_pwcca_value_weights_and_coefficients() {
    let c = case("case4_pwcca");
    let e = &c["expected"];
    let s = run("case2_A.npy", "case2_B.npy", Method::Pwcca, Keep::All, Kind::Double);
    let want = e["pwcca"].as_f64().unwrap();
    assert!((s.mean - want).abs() <= 1e-6, "pwcca {} vs {want}", s.mean);
    assert_close(&s.correlations, &floats(&e["coefs"]), 1e-6, "case4 coefficients");
    assert_close(s.weights.as_ref().unwrap(), &floats(&e["weights"]), 1e-6, "case4 weights");
    // Asymmetric, as the reference: B first gives the reference's swapped value.
    let swapped = run("case2_B.npy", "case2_A.npy", Method::Pwcca, Keep::All, Kind::Double);
    let want = c["also"]["pwcca_swapped_args_B_then_A"].as_f64().unwrap();
    assert!((swapped.mean - want).abs() <= 1e-6, "swapped pwcca {} vs {want}", swapped.mean);
}

#[test]
fn case6_invariance_every_coefficient_is_one() {
    both_input_kinds(|kind| {
        let s = run("case6_A.npy", "case6_B.npy", Method::Cca, Keep::All, kind);
        assert_eq!(s.correlations.len(), 32);
        let min = s.correlations.iter().cloned().fold(f64::INFINITY, f64::min);
        assert!(min >= 1.0 - 1e-6, "smallest coefficient {min}");
    });
}

#[test]
fn case7_constant_neurons_dropped() {
    let c = case("case7_dead_neurons");
    let e = &c["expected"];
    both_input_kinds(|kind| {
        let s = run("case7_A_dead.npy", "case7_B.npy", Method::Cca, Keep::All, kind);
        assert_eq!((s.kept_a, s.kept_b), (14, 12));
        assert_eq!((s.constant_a, s.constant_b), (2, 0));
        assert!(s.correlations.iter().all(|c| c.is_finite()));
        assert_close(&s.correlations, &floats(&e["cca_coef1"]), TOL, "case7 coefficients");
        assert!((s.mean - e["mean_all_coefs"].as_f64().unwrap()).abs() <= TOL);
    });
}
