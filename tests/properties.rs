//! Properties of the similarity engine on data made here, each against an independent
//! reference: a closed form, a different factorisation, or a different formula.

mod common;
use common::*;
use svcca::similarity::{compare, similarity, Keep, KeepRule, Method, Moments, Options};
use tch::{Device, Kind, Tensor};

fn opts(method: Method, keep: Keep) -> Options {
    Options { method, keep, ..Options::default() }
}

/// A layer with a few shared signals: `z w + noise`, float64.
fn layer(z: &Tensor, seed: i64, neurons: i64, noise: f64) -> Tensor {
    let w = randn(seed, z.size()[1], neurons);
    let e = randn(seed + 1000, z.size()[0], neurons);
    z.mm(&w) + e * noise
}

#[test]
fn invertible_affine_maps_give_correlations_of_one() {
    let a = randn(1, 2000, 16).mm(&randn(2, 16, 40));
    let a = a + randn(3, 2000, 40) * 0.5;
    // A well-conditioned random invertible map and an offset.
    let m = randn(4, 40, 40) + Tensor::eye(40, (Kind::Double, Device::Cpu)) * 8.0;
    let c = randn(5, 1, 40) * 100.0;
    let b = a.mm(&m) + c;
    let s = compare(&a, &b, &opts(Method::Cca, Keep::All)).unwrap();
    assert_eq!(s.correlations.len(), 40);
    let min = s.correlations.iter().cloned().fold(1.0, f64::min);
    assert!(min >= 1.0 - 1e-6, "smallest correlation {min}");
    let p = compare(&a, &b, &opts(Method::Pwcca, Keep::All)).unwrap();
    assert!((p.mean - 1.0).abs() < 1e-6, "pwcca {}", p.mean);
    // CKA is invariant to orthogonal maps and isotropic scaling only.
    let (q, _) = Tensor::linalg_qr(&randn(6, 40, 40), "reduced");
    let k = compare(&a, &(a.mm(&q) * 3.0 + 7.0), &opts(Method::Cka, Keep::All)).unwrap();
    assert!((k.mean - 1.0).abs() < 1e-9, "cka {}", k.mean);
    // ...and not to a general invertible map: the test can fail.
    let k = compare(&a, &b, &opts(Method::Cka, Keep::All)).unwrap();
    assert!(k.mean < 0.99, "cka of a skewed map {}", k.mean);
}

#[test]
fn identical_inputs_give_one_for_every_method() {
    let z = randn(10, 1500, 8);
    let a = layer(&z, 11, 30, 0.2);
    for method in [Method::Svcca, Method::Cca, Method::Pwcca, Method::Cka] {
        let s = compare(&a, &a, &opts(method, Keep::default())).unwrap();
        assert!((s.mean - 1.0).abs() < 1e-9, "{method}: {}", s.mean);
    }
}

#[test]
fn independent_noise_matches_the_closed_form() {
    // For independent Gaussian layers, sum(rho^2) = tr(P_a P_b) with projections onto
    // random subspaces of the (N-1)-dim centred space, so E[mean rho^2] = q / (N - 1)
    // over the min(p, q) = p correlations.
    let (n, p, q) = (2000i64, 20i64, 30i64);
    let mut total = 0.0;
    let runs = 6;
    for seed in 0..runs {
        let a = randn(100 + seed, n, p);
        let b = randn(200 + seed, n, q);
        let s = compare(&a, &b, &opts(Method::Cca, Keep::All)).unwrap();
        assert_eq!(s.correlations.len(), p as usize);
        total += s.correlations.iter().map(|r| r * r).sum::<f64>() / p as f64;
    }
    let got = total / runs as f64;
    let want = q as f64 / (n - 1) as f64;
    assert!((got - want).abs() < 0.15 * want, "mean rho^2 {got} vs closed form {want}");
}

#[test]
fn cca_matches_an_orthogonal_factorisation() {
    // Independent route: Householder QR of each centred layer, then the singular values
    // of Qa' Qb (the textbook stable CCA).
    let z = randn(20, 800, 6);
    let a = layer(&z, 21, 30, 1.0);
    let b = layer(&z, 22, 20, 1.0);
    let qr = |x: &Tensor| Tensor::linalg_qr(&(x - x.mean_dim(0, true, None)), "reduced").0;
    let (_, s, _) = qr(&a).tr().mm(&qr(&b)).svd(true, false);
    let want = Vec::<f64>::try_from(&s).unwrap();
    let got = compare(&a, &b, &opts(Method::Cca, Keep::All)).unwrap();
    assert_close(&got.correlations, &want, 1e-10, "cca vs QR");
}

#[test]
fn cka_matches_the_kernel_formula() {
    // HSIC form over datapoints: CKA = <K, L> / (|K| |L|) with K = Xc Xc', L = Yc Yc'.
    let z = randn(30, 300, 5);
    let a = layer(&z, 31, 25, 1.0);
    let b = layer(&z, 32, 15, 2.0);
    let centred = |x: &Tensor| x - x.mean_dim(0, true, None);
    let k = centred(&a).mm(&centred(&a).tr());
    let l = centred(&b).mm(&centred(&b).tr());
    let dot = |x: &Tensor, y: &Tensor| (x * y).sum(None).double_value(&[]);
    let want = dot(&k, &l) / (dot(&k, &k).sqrt() * dot(&l, &l).sqrt());
    let got = compare(&a, &b, &opts(Method::Cka, Keep::All)).unwrap().mean;
    assert!((got - want).abs() < 1e-10, "cka {got} vs kernel formula {want}");
}

#[test]
fn svcca_keeps_the_directions_the_variance_rule_names() {
    // Rank-8 signal plus small noise: 99% of the variance lies in 8 directions.
    let z = randn(40, 3000, 8);
    let a = layer(&z, 41, 50, 0.01);
    let b = layer(&z, 42, 40, 0.01);
    let s = compare(&a, &b, &opts(Method::Svcca, Keep::Variance(0.99))).unwrap();
    assert_eq!((s.kept_a, s.kept_b), (8, 8));
    assert!(s.mean > 0.999, "shared signal, mean {}", s.mean);
    let s = compare(&a, &b, &opts(Method::Svcca, Keep::TopK(12))).unwrap();
    assert_eq!((s.kept_a, s.kept_b, s.correlations.len()), (12, 12, 12));
}

#[test]
fn streamed_blocks_equal_one_block() {
    // Means far from zero test the shifted accumulation; uneven blocks test the sums.
    let z = randn(50, 3001, 6);
    let a = layer(&z, 51, 24, 0.5) + 1000.0;
    let b = layer(&z, 52, 18, 0.5) - 500.0;
    for method in [Method::Svcca, Method::Cca, Method::Pwcca, Method::Cka] {
        let whole = compare(&a, &b, &opts(method, Keep::default())).unwrap();
        let mut m = Moments::new(24, 18, Device::Cpu);
        let mut start = 0;
        for len in [1, 7, 500, 1493, 1000] {
            m.update(&a.narrow(0, start, len), &b.narrow(0, start, len)).unwrap();
            start += len;
        }
        assert_eq!(m.rows(), 3001);
        let streamed = similarity(m.finish().unwrap(), &opts(method, Keep::default())).unwrap();
        assert!((whole.mean - streamed.mean).abs() < 1e-9, "{method}: {} vs {}", whole.mean, streamed.mean);
        assert_close(&streamed.correlations, &whole.correlations, 1e-9, "streamed correlations");
    }
}

#[test]
fn constant_neurons_are_dropped_and_counted() {
    let z = randn(60, 1000, 5);
    let a = layer(&z, 61, 12, 0.5);
    let b = layer(&z, 62, 10, 0.5);
    let ones = Tensor::ones([1000, 1], (Kind::Double, Device::Cpu));
    let padded = Tensor::cat(&[ones.shallow_clone() * 3.0, a.shallow_clone(), ones.zeros_like()], 1);
    let plain = compare(&a, &b, &opts(Method::Cca, Keep::All)).unwrap();
    let s = compare(&padded, &b, &opts(Method::Cca, Keep::All)).unwrap();
    assert_eq!((s.neurons_a, s.constant_a, s.kept_a), (14, 2, 12));
    assert_close(&s.correlations, &plain.correlations, 1e-12, "with constant neurons");
}

#[test]
fn bad_values_are_refused_not_propagated() {
    let a = randn(70, 100, 4);
    let b = randn(71, 100, 3);
    let bad = b.copy();
    let _ = bad.get(42).get(1).fill_(f64::NAN);
    let e = compare(&a, &bad, &opts(Method::Svcca, Keep::default())).unwrap_err();
    assert!(e.to_string().contains("datapoint 42"), "{e}");
    let e = compare(&a, &randn(72, 99, 3), &opts(Method::Svcca, Keep::default())).unwrap_err();
    assert!(e.to_string().contains("100 vs 99"), "{e}");
    let e = compare(&a, &b, &opts(Method::Svcca, Keep::TopK(5))).unwrap_err();
    assert!(e.to_string().contains("--top-k 5"), "{e}");
}

/// The two keep rules on a layer whose singular values are `r^i` (i = 0..n-1): the first k
/// hold `(1 - q^k) / (1 - q^n)` of the sum of `q^i`, with `q = r^2` for the variance
/// (main text) and `q = r` for the singular values (Appendix A), so the smallest k
/// reaching `f` is `ceil(ln(1 / (1 - f (1 - q^n))) / ln(1 / q))`.
#[test]
fn keep_rules_count_the_directions_of_a_known_spectrum() {
    let (r, n, f) = (0.5f64, 12usize, 0.99);
    let s: Vec<f64> = (0..n).map(|i| r.powi(i as i32)).collect();
    let closed = |q: f64| (((1.0 / (1.0 - f * (1.0 - q.powi(n as i32)))).ln() / (1.0 / q).ln()).ceil()) as i64;
    // By hand: 4^-k <= 0.0100000... gives k = 4 (log4 of 100 is 3.32); 2^-k <= 0.01024...
    // gives k = 7 (log2 of 97.6 is 6.61).
    assert_eq!((closed(r * r), closed(r)), (4, 7));
    let a = with_singular_values(7, 600, &s);
    let b = with_singular_values(9, 600, &s);
    for (rule, want) in [(KeepRule::Variance, 4), (KeepRule::Singular, 7)] {
        let got = compare(&a, &b, &opts(Method::Svcca, rule.keep(f))).unwrap();
        assert_eq!((got.kept_a, got.kept_b), (want, want), "{rule}");
        assert_eq!(got.correlations.len(), want as usize, "{rule}");
    }
    // The default is the variance rule, the one used before the choice existed.
    assert_eq!(Keep::default(), KeepRule::default().keep(0.99));
    // The singular rule never keeps fewer directions than the variance rule.
    for f in [0.5, 0.9, 0.999] {
        let v = compare(&a, &a, &opts(Method::Svcca, Keep::Variance(f))).unwrap().kept_a;
        let s = compare(&a, &a, &opts(Method::Svcca, Keep::Singular(f))).unwrap().kept_a;
        assert!(s >= v, "{f}: singular {s} < variance {v}");
    }
}
