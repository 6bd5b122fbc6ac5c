//! How similar two layers' representations are: CCA, SVCCA, PWCCA and linear CKA.
//!
//! Functions of tensors, with no knowledge of models or files; not pure in the strict
//! sense: they allocate, and on the CPU run libtorch on one thread while rayon's threads
//! work ([`crate::host::threads`], a process-wide setting held by a guard). Activations are
//! datapoints x neurons, the same datapoints in the same order on both sides, any float
//! kind, on CPU or CUDA: the math is one code path of libtorch ops for both, except the
//! matrix products, which [`products`](self::products) runs through faer on the CPU.
//!
//! The arithmetic is float64 throughout. Float32 sums were tried and dropped: a
//! covariance summed in float32 cannot resolve directions below about 1e-4 of the
//! largest variance, and the reference's invariance case (B = A M + c) then reads 0.99
//! where the answer is 1.
//!
//! Every method works from the column means and centred scatter matrices that
//! [`Moments`] accumulates block by block, so a comparison's memory does not grow with
//! the number of datapoints. [`compare`] is the one-block convenience.
//!
//! Definitions (google/svcca's code where it has one, checked against reference values
//! computed with it; see `tests/fixtures/svcca_ref/README.md`):
//! - CCA: every canonical correlation, descending.
//! - SVCCA: keep on each side the top principal directions explaining a fraction of the
//!   variance (smallest k with `sum(s[..k]^2) / sum(s^2) >= fraction`, `s` the singular
//!   values of the centred activations: the paper's main text, "99% of the variance";
//!   [`KeepRule::Variance`]), or holding that fraction of the sum of the singular values
//!   themselves (`sum(s[..k]) / sum(s) >= fraction`: the paper's Appendix A, and the
//!   quantity google/svcca's tutorial prints as the fraction of variance its cut keeps;
//!   [`KeepRule::Singular`]), or a fixed top k (the tutorial's own cut, 20), then CCA. The
//!   similarity is the plain mean of all `min(k_a, k_b)` correlations.
//! - PWCCA: as the reference `compute_pwcca(A, B)`, see [`pwcca`](self::pwcca).
//! - Linear CKA: see [`cka`](self::cka).
//! - Constant neurons are dropped (and counted) before anything else.
//! - Conv layers (datapoints x C x H x W): the DFT method, `flatten` or `avgpool`, see
//!   [`conv`] and [`dft`].

mod cca;
mod cka;
pub mod conv;
pub(crate) mod dft;
pub mod directions;
mod moments;
mod products;
mod pwcca;
mod spelling;
pub(crate) mod summary;

pub use conv::{ConvDense, ConvMethod, ConvOptions, ConvReport, DftCut, Layout};
pub use directions::{directions, directions_each, directions_needed, most_active, principal_variances, Directions, Fitted};
pub use moments::{Covariance, Moments};
pub use spelling::Named;

use conv::{ConvComparison, LayerShape};

use crate::error::{Side, SimilarityError};
use crate::host;
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

/// Which similarity to compute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    #[default]
    Svcca,
    Cca,
    Pwcca,
    Cka,
}

spelling::spelled!(Method, "method", { Svcca => "svcca", Cca => "cca", Pwcca => "pwcca", Cka => "cka" });

/// What SVCCA's keep fraction is a fraction of. The paper says both: its main text keeps
/// the directions explaining "99% of the variance" (squared singular values), its
/// Appendix A the smallest m' with `sum_{i<=m'} |lambda_i| >= 0.99 sum_i |lambda_i|` over
/// the singular values themselves. google/svcca's code cuts at a fixed k ([`Keep::TopK`]);
/// the fraction its tutorial reports for that cut sums the singular values (the singular
/// rule's quantity). The singular rule keeps at least as many directions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeepRule {
    #[default]
    Variance,
    Singular,
}

spelling::spelled!(KeepRule, "keep rule", {
    Variance => "variance" ("A fraction of the variance: the sum of the squared singular values (the paper's main text; the default)"),
    Singular => "singular" ("A fraction of the sum of the singular values (the paper's Appendix A; what google/svcca's tutorial computes for its cut)"),
});

impl KeepRule {
    /// The [`Keep`] for `fraction` under this rule.
    pub fn keep(self, fraction: f64) -> Keep {
        match self {
            KeepRule::Variance => Keep::Variance(fraction),
            KeepRule::Singular => Keep::Singular(fraction),
        }
    }
}

/// How many principal directions SVCCA keeps on each side.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "rule", content = "value", rename_all = "snake_case")]
pub enum Keep {
    /// Every direction above rounding noise (plain CCA).
    All,
    /// The fewest directions explaining at least this fraction of the variance (the sum
    /// of the squared singular values): [`KeepRule::Variance`].
    Variance(f64),
    /// The fewest directions whose singular values hold at least this fraction of the
    /// sum of the singular values: [`KeepRule::Singular`].
    Singular(f64),
    /// Exactly this many directions.
    TopK(usize),
}

impl Default for Keep {
    /// The paper's rule: 99% of the variance.
    fn default() -> Self {
        Keep::Variance(0.99)
    }
}

/// What [`similarity`] computes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Options {
    pub method: Method,
    /// Used by SVCCA only; CCA keeps every direction, PWCCA and CKA use all neurons.
    pub keep: Keep,
    /// The arithmetic of the large products (the summaries' route, [`summary`]).
    pub precision: Precision,
}

/// The arithmetic of a comparison's large products: the scatter and Gram matrices of
/// the data and the cross products between layers. The decompositions, the centring
/// and every sum across blocks of datapoints stay in float64 either way.
///
/// `Float32` holds the shifted data (a conv layer's DFT spectrum, made in float32) and
/// the whitened directions in float32, with no float64 copy beside them, and multiplies
/// in float32: on GPUs whose float64 runs at 1/32 to 1/64 of float32 (L4, T4, RTX cards)
/// the products then run at the card's speed, and the summaries take about half
/// float64's memory (which the analysis's memory plan counts). What it costs is measured
/// against float64 in docs/analysis.md ("Precision").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    #[default]
    Float64,
    Float32,
}

impl Precision {
    /// The kind the products run in.
    pub fn kind(self) -> Kind {
        match self {
            Precision::Float64 => Kind::Double,
            Precision::Float32 => Kind::Float,
        }
    }
}

impl Options {
    /// The rule the method applies: SVCCA's `keep`; CCA keeps every direction.
    pub fn effective_keep(&self) -> Keep {
        if self.method == Method::Cca {
            Keep::All
        } else {
            self.keep
        }
    }
}

impl Default for Options {
    fn default() -> Self {
        Options { method: Method::Svcca, keep: Keep::default(), precision: Precision::Float64 }
    }
}

/// The outcome of one comparison.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Similarity {
    pub method: Method,
    /// The similarity: mean canonical correlation (SVCCA, CCA), the PWCCA value, or CKA.
    pub mean: f64,
    /// Canonical correlations, descending (empty for CKA).
    pub correlations: Vec<f64>,
    /// PWCCA's weight for each correlation (PWCCA only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weights: Option<Vec<f64>>,
    /// Directions kept on each side (SVCCA and CCA) or neurons used (PWCCA, CKA).
    pub kept_a: i64,
    pub kept_b: i64,
    pub datapoints: i64,
    pub neurons_a: i64,
    pub neurons_b: i64,
    /// Neurons dropped because they are constant over every datapoint.
    pub constant_a: i64,
    pub constant_b: i64,
    /// Things the user should know that did not stop the comparison.
    #[serde(skip)]
    pub warnings: Vec<Warning>,
}

/// A caution about one layer's data that did not stop the comparison.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub side: Side,
    pub message: String,
}

/// Compares two layers held in memory (datapoints x neurons, same datapoints).
///
/// ```
/// use svcca::similarity::{compare, Keep, Method, Options};
/// use tch::{Device, Kind, Tensor};
///
/// let opts = (Kind::Double, Device::Cpu);
/// tch::manual_seed(0);
/// let a = Tensor::randn([500, 8], opts);
/// // An invertible linear map of the same neurons, shifted: CCA sees the same
/// // representation, every canonical correlation 1.
/// let m = Tensor::randn([8, 8], opts) + Tensor::eye(8, opts) * 4.0;
/// let b = a.matmul(&m) + 3.0;
/// let same = compare(&a, &b, &Options { method: Method::Cca, keep: Keep::All, ..Options::default() })?;
/// assert!((same.mean - 1.0).abs() < 1e-9);
/// // An unrelated layer: SVCCA near its chance level (mean squared correlation about
/// // neurons / datapoints).
/// let noise = Tensor::randn([500, 8], opts);
/// let other = compare(&a, &noise, &Options { method: Method::Svcca, keep: Keep::Variance(0.99), ..Options::default() })?;
/// assert!(other.mean < 0.3);
/// # Ok::<(), svcca::error::SimilarityError>(())
/// ```
pub fn compare(a: &Tensor, b: &Tensor, options: &Options) -> Result<Similarity, SimilarityError> {
    for (side, t) in [(Side::A, a), (Side::B, b)] {
        if t.dim() != 2 {
            return Err(SimilarityError::layer(side, format!("expected a 2-D matrix (datapoints x neurons), got shape {:?}", t.size())));
        }
    }
    if a.size()[0] != b.size()[0] {
        return Err(SimilarityError::Both(format!("different numbers of datapoints: {} vs {}", a.size()[0], b.size()[0])));
    }
    let mut moments = Moments::new(a.size()[1], b.size()[1], a.device());
    moments.update(a, b)?;
    similarity(moments.finish()?, options)
}

/// Compares two layers held in memory. Each is rows x C x H x W, already in NCHW order,
/// or rows x neurons for a dense side (compared with a conv one by `conv.dense`).
pub fn compare_conv(a: &Tensor, b: &Tensor, conv: ConvOptions, options: &Options) -> Result<(Similarity, ConvReport), SimilarityError> {
    for (side, t) in [(Side::A, a), (Side::B, b)] {
        if t.dim() != 4 && t.dim() != 2 {
            return Err(SimilarityError::layer(side, format!("expected 4-D activations, got shape {:?}", t.size())));
        }
    }
    if a.size()[0] != b.size()[0] {
        return Err(SimilarityError::Both(format!("different numbers of datapoints: {} vs {}", a.size()[0], b.size()[0])));
    }
    let comparison = ConvComparison::new([LayerShape::of(a), LayerShape::of(b)], a.size()[0], conv, options.method)?;
    if comparison.by_summaries(options.method) {
        return comparison.summarised(a, b, options);
    }
    let mut moments = comparison.moments(a.device());
    moments.update(&comparison.transform(Side::A, a, 0), &comparison.transform(Side::B, b, 0))?;
    comparison.finish(moments, options)
}

/// A conv comparison through per-layer summaries (where [`ConvComparison::by_summaries`]):
/// here, above both `conv` and `summary`, since `summary` plans its forms by `conv`'s
/// comparisons.
impl ConvComparison {
    /// The comparison of two whole layers (rows x C x H x W or rows x neurons) through
    /// per-layer summaries, where [`ConvComparison::by_summaries`].
    pub fn summarised(&self, a: &Tensor, b: &Tensor, options: &Options) -> Result<(Similarity, ConvReport), SimilarityError> {
        Ok((self.summaries(a, b, options)?.similarity()?, self.report()))
    }

    /// The two layers' summaries behind [`ConvComparison::summarised`], kept for other
    /// pairings of their datapoints too.
    pub fn summaries(&self, a: &Tensor, b: &Tensor, options: &Options) -> Result<summary::Pair, SimilarityError> {
        summary::Pair::of(&self.transform(Side::A, a, 0), &self.transform(Side::B, b, 0), options)
    }
}

/// Computes the chosen similarity from accumulated statistics.
pub fn similarity(cov: Covariance, options: &Options) -> Result<Similarity, SimilarityError> {
    let warnings = size_warnings(cov.rows, cov.neurons);
    let mut result = Similarity {
        method: options.method,
        mean: f64::NAN,
        correlations: Vec::new(),
        weights: None,
        kept_a: cov.kept_neurons(Side::A),
        kept_b: cov.kept_neurons(Side::B),
        datapoints: cov.rows,
        neurons_a: cov.neurons[0],
        neurons_b: cov.neurons[1],
        constant_a: cov.constant[0],
        constant_b: cov.constant[1],
        warnings,
    };
    match options.method {
        Method::Svcca | Method::Cca => {
            let [(ka, kb, correlations)] = canonical(&cov, options, None)?.try_into().expect("a dense comparison is one problem");
            result.kept_a = ka as i64;
            result.kept_b = kb as i64;
            result.mean = mean(&correlations);
            result.correlations = correlations;
        }
        Method::Pwcca => {
            let p = pwcca::pwcca(&cov)?;
            result.mean = p.value;
            result.correlations = p.correlations;
            result.weights = Some(p.weights);
        }
        Method::Cka => result.mean = cka::linear_cka(&cov),
    }
    Ok(result)
}

/// The warnings for sides with fewer datapoints (`rows`) than neurons.
pub(crate) fn size_warnings(rows: i64, neurons: [i64; 2]) -> Vec<Warning> {
    [(Side::A, neurons[0]), (Side::B, neurons[1])]
        .into_iter()
        .filter(|&(_, n)| rows < n)
        .map(|(side, n)| Warning {
            side,
            message: format!(
                "fewer datapoints ({rows}) than neurons ({n}); correlations are biased \
                 upward, use 5 to 10 times more datapoints than neurons"
            ),
        })
        .collect()
}

/// CCA or SVCCA of every problem of a stack: (kept_a, kept_b, correlations) each.
/// With `joint`, the keep rule applies to all problems together, problem `p` counting
/// `joint[p]` times (the DFT's global cut, see [`conv::DftCut`]).
pub(crate) fn canonical(
    cov: &Covariance,
    options: &Options,
    joint: Option<&[usize]>,
) -> Result<Vec<(usize, usize, Vec<f64>)>, SimilarityError> {
    let keep = options.effective_keep();
    let n = cov.caa.size()[1].max(cov.cbb.size()[1]);
    host::single_threaded(cov.caa.device(), n, || {
        // The two layers' decompositions are independent: side by side.
        let (caa, cbb) = (cov.caa.shallow_clone(), cov.cbb.shallow_clone());
        let (pa, pb) = rayon::join(move || cca::Principal::of(&caa), move || cca::Principal::of(&cbb));
        let ka = pa.cut(keep, joint, Side::A, cov.rows)?;
        let kb = pb.cut(keep, joint, Side::B, cov.rows)?;
        let correlations = cca::correlations(&cov.cab, &pa.whitening(&ka), &pb.whitening(&kb), &ka, &kb);
        Ok(ka.into_iter().zip(kb).zip(correlations).map(|((a, b), c)| (a, b, c)).collect())
    })
}

fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len() as f64
}

#[cfg(test)]
mod spelling_tests {
    use super::{ConvDense, ConvMethod, DftCut, KeepRule, Layout, Method, Named};

    /// Each value's name is serde's spelling of it (the config's and the settings
    /// files'), `Display` writes it and `FromStr` reads it back in any case.
    fn spelled_alike<T: Named + PartialEq + serde::Serialize + std::fmt::Display + std::str::FromStr<Err = String> + std::fmt::Debug>() {
        assert!(!T::NAMES.is_empty());
        for &(value, name, _) in T::NAMES {
            assert_eq!(serde_json::to_value(value).unwrap(), serde_json::Value::String(name.to_string()));
            assert_eq!(value.to_string(), name);
            assert_eq!(name.to_uppercase().parse::<T>(), Ok(value));
        }
        let err = "no-such-value".parse::<T>().unwrap_err();
        assert!(T::NAMES.iter().all(|n| err.contains(n.1)), "{err}");
    }

    #[test]
    fn names_are_serdes_and_read_back() {
        spelled_alike::<Method>();
        spelled_alike::<KeepRule>();
        spelled_alike::<ConvMethod>();
        spelled_alike::<ConvDense>();
        spelled_alike::<DftCut>();
        spelled_alike::<Layout>();
        assert_eq!(Method::names(), "svcca, cca, pwcca or cka");
    }
}
