//! Tensor helpers of the tests, in tch alone: the unit tests use this file as
//! `crate::test_support`, the integration tests include it into `tests/common`.
#![allow(dead_code, unreachable_pub)]

use tch::{Kind, Tensor};

/// Asserts two sequences agree elementwise within `tol`.
pub fn assert_close(got: &[f64], want: &[f64], tol: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: {} values, expected {}", got.len(), want.len());
    let worst = got.iter().zip(want).map(|(g, w)| (g - w).abs()).fold(0.0, f64::max);
    assert!(worst <= tol, "{what}: max abs difference {worst:e} > {tol:e}");
}

/// A seeded standard normal matrix (float64).
pub fn randn(seed: i64, rows: i64, cols: i64) -> Tensor {
    // Seeding and drawing are one step: tests run on parallel threads, and libtorch's
    // generator is global.
    static DRAW: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _held = DRAW.lock().unwrap_or_else(|e| e.into_inner());
    tch::manual_seed(seed);
    Tensor::randn([rows, cols], (Kind::Double, tch::Device::Cpu))
}

/// A centred `rows x s.len()` float64 matrix `U diag(s) V'` whose singular values are
/// exactly `s`: `U` orthonormal and orthogonal to the ones vector (so centring the columns
/// changes nothing), `V` orthonormal, both from QR factorisations of seeded normals.
pub fn with_singular_values(seed: i64, rows: i64, s: &[f64]) -> Tensor {
    let m = s.len() as i64;
    let opts = (Kind::Double, tch::Device::Cpu);
    let (q, _) = Tensor::linalg_qr(&Tensor::cat(&[Tensor::ones([rows, 1], opts), randn(seed, rows, m)], 1), "reduced");
    let u = q.narrow(1, 1, m);
    let (v, _) = Tensor::linalg_qr(&randn(seed + 1, m, m), "reduced");
    (u * Tensor::from_slice(s).unsqueeze(0)).mm(&v.tr())
}

/// Circular 3x3 convolution of NCHW `x` with `k` (out x in x 3 x 3).
pub fn circular_conv(x: &Tensor, k: &Tensor) -> Tensor {
    let padded = x.pad([1, 1, 1, 1], "circular", None);
    padded.conv2d(k, None::<Tensor>, [1], [0], [1], 1)
}

/// Every cyclic shift of every datapoint: translation-invariant data with circular
/// structure, the dataset of the DFT method's Theorem 1.
pub fn all_shifts(x: &Tensor) -> Tensor {
    let (h, w) = (x.size()[2], x.size()[3]);
    let shifted: Vec<Tensor> = (0..h).flat_map(|i| (0..w).map(move |j| (i, j))).map(|(i, j)| x.roll([i, j], [2, 3])).collect();
    Tensor::cat(&shifted, 0)
}

/// A conv layer of `n` datapoints and C x H x W neurons holding `rank` directions of
/// decaying strength plus a little noise, and a dense layer of `m` neurons reading the
/// strongest of them: related, neither identical nor unrelated.
pub fn conv_and_dense_pair(seed: i64, n: i64, chw: [i64; 3], m: i64) -> (Tensor, Tensor) {
    let [c, h, w] = chw;
    let rank = 40;
    let decay = Tensor::from_slice(&(0..rank).map(|i| 0.92f64.powi(i as i32)).collect::<Vec<_>>()).unsqueeze(0);
    let latent = randn(seed, n, rank) * decay;
    let conv = latent.mm(&randn(seed + 1, rank, c * h * w)) + randn(seed + 2, n, c * h * w) * 0.05 + 3.0;
    let dense = latent.narrow(1, 0, 25).mm(&randn(seed + 3, 25, m)) + randn(seed + 4, n, m) * 0.5;
    (conv.view([n, c, h, w]), dense)
}
