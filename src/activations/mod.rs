//! What the layers of a network compute, and how two layers' outputs compare.
//!
//! - [`probe`]: the probe set, a seeded subset of the test (or training) split.
//! - [`record`]: a network's activations on the probe set (inference mode).
//! - [`store`]: `store` mode, activations written at each checkpoint during training.
//! - [`similarity`] and [`pair`]: the similarity of two layers' activations under the
//!   `[analysis]` settings: the number the learning-dynamics analysis reports, and the
//!   adaptive freeze schedule compares with its threshold. [`LayerSet`] holds the layers
//!   of one side of many comparisons, each summarised once.
//!
//! Used by training (store mode, adaptive freezing) and by the analyses, so it sits below
//! both (see docs/ARCHITECTURE.md).

pub mod probe;
pub mod record;
pub mod store;

use crate::config::Config;
use crate::similarity::summary::{self, Layers};
use crate::similarity::{self, conv, ConvOptions, Keep, Method, Options};
use tch::Tensor;

/// The `[analysis]` settings as the similarity module's.
fn settings(config: &Config) -> (Options, ConvOptions) {
    let an = &config.analysis;
    let keep = if an.method == Method::Svcca { an.keep_rule.keep(an.keep) } else { Keep::All };
    let conv = ConvOptions { method: an.conv, seed: an.seed, cut: an.dft_cut, ..Default::default() };
    (Options { method: an.method, keep }, conv)
}

/// Layers on one side of many comparisons under `config.analysis` (a checkpoint's
/// layers, or the final network's). For SVCCA and CCA each layer's side of a comparison
/// is computed once and reused ([`summary`]); PWCCA and CKA compare each pair afresh.
pub enum LayerSet {
    Summarised(Layers),
    Pairwise { layers: Vec<Tensor>, options: Options, conv: ConvOptions },
}

impl LayerSet {
    /// A set may be either side of a comparison, or both in turn.
    pub fn new(layers: Vec<Tensor>, config: &Config) -> LayerSet {
        let (options, conv) = settings(config);
        match options.method {
            Method::Svcca | Method::Cca => LayerSet::Summarised(Layers::new(layers, options, conv)),
            Method::Pwcca | Method::Cka => LayerSet::Pairwise { layers, options, conv },
        }
    }
}

/// The similarity of layer `i` of `a` with layer `j` of `b` (`None`, with a warning,
/// where it is undefined). Conv layers are compared by `analysis.conv`; a conv-vs-dense
/// pair, or a conv pair too small for the DFT (1 x 1), by `avgpool` (channels averaged
/// over positions).
pub fn similarity(a: &mut LayerSet, i: usize, b: &mut LayerSet, j: usize) -> Option<f64> {
    let result = match (a, b) {
        (LayerSet::Summarised(a), LayerSet::Summarised(b)) => summary::similarity(a, i, b, j),
        (LayerSet::Pairwise { layers: xs, options, conv }, LayerSet::Pairwise { layers: ys, .. }) => {
            let (x, y) = (&xs[i], &ys[j]);
            let compared = if x.dim() == 2 && y.dim() == 2 {
                similarity::compare(x, y, options)
            } else {
                let method = conv::applicable(conv.method, [conv::LayerShape::of(x), conv::LayerShape::of(y)]);
                similarity::compare_conv(x, y, ConvOptions { method, ..*conv }, options).map(|(s, _)| s)
            };
            compared.map(|s| s.mean)
        }
        _ => unreachable!("both sides of a comparison are made from the same config"),
    };
    match result {
        Ok(mean) if mean.is_finite() => Some(mean),
        Ok(_) => None,
        Err(e) => {
            tracing::warn!("a comparison is undefined ({e:?}); left empty");
            None
        }
    }
}

/// The similarity of one pair of layers under `config.analysis`: [`similarity`] of two
/// sets of one.
pub fn pair(a: &Tensor, b: &Tensor, config: &Config) -> Option<f64> {
    let mut x = LayerSet::new(vec![a.shallow_clone()], config);
    let mut y = LayerSet::new(vec![b.shallow_clone()], config);
    similarity(&mut x, 0, &mut y, 0)
}
