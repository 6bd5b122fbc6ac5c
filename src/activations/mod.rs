//! What the layers of a network compute, and how two layers' outputs compare.
//!
//! - [`probe`]: the probe set, a seeded subset of the test (or training) split.
//! - [`record`]: a network's activations on the probe set (inference mode).
//! - [`store`]: `store` mode, activations written at each checkpoint during training.
//! - [`pair`]: the similarity of two layers' activations under the `[analysis]` settings:
//!   the number the learning-dynamics analysis reports, and the adaptive freeze schedule
//!   compares with its threshold.
//!
//! Used by training (store mode, adaptive freezing) and by the analyses, so it sits below
//! both (see docs/ARCHITECTURE.md).

pub mod probe;
pub mod record;
pub mod store;

use crate::config::Config;
use crate::similarity::{self, ConvMethod, ConvOptions, Keep, Method, Options};
use tch::Tensor;

/// The similarity of one pair of layers under `config.analysis` (`None`, with a warning,
/// where it is undefined). Conv layers are compared by `analysis.conv`; a conv-vs-dense
/// pair, or a conv pair too small for the DFT (1 x 1), by `avgpool` (channels averaged
/// over positions).
pub fn pair(a: &Tensor, b: &Tensor, config: &Config) -> Option<f64> {
    let an = &config.analysis;
    let method = an.method;
    let keep = if method == Method::Svcca { an.keep_rule.keep(an.keep) } else { Keep::All };
    let options = Options { method, keep };
    let result = if a.dim() == 2 && b.dim() == 2 {
        similarity::compare(a, b, &options)
    } else {
        let both_conv = a.dim() == 4 && b.dim() == 4;
        let spatial = |t: &Tensor| if t.dim() == 4 { t.size()[2] * t.size()[3] } else { 1 };
        let conv = match an.conv {
            ConvMethod::Dft if both_conv && spatial(a).min(spatial(b)) >= 2 => ConvMethod::Dft,
            ConvMethod::Flatten if both_conv => ConvMethod::Flatten,
            _ => ConvMethod::Avgpool,
        };
        let options = ConvOptions { method: conv, seed: an.seed, ..Default::default() };
        similarity::compare_conv(a, b, options, &Options { method, keep }).map(|(s, _)| s)
    };
    match result {
        Ok(s) if s.mean.is_finite() => Some(s.mean),
        Ok(_) => None,
        Err(e) => {
            tracing::warn!("a comparison is undefined ({e:?}); left empty");
            None
        }
    }
}
