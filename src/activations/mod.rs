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

pub(crate) mod layer_file;
pub mod probe;
pub mod record;
pub mod store;

use crate::config::Config;
use crate::error::{Side, SimilarityError};
use crate::similarity::summary::{self, Layers};
use crate::similarity::{self, conv, ConvOptions, Keep, Method, Options};
use tch::Tensor;

/// The `[analysis]` settings as the similarity module's.
fn settings(config: &Config) -> (Options, ConvOptions) {
    let an = &config.analysis;
    let keep = if an.method == Method::Svcca { an.keep_rule.keep(an.keep) } else { Keep::All };
    let conv = ConvOptions { method: an.conv, seed: an.seed, cut: an.dft_cut, dense: an.conv_dense, ..Default::default() };
    (Options { method: an.method, keep, precision: an.precision }, conv)
}

/// Layers on one side of many comparisons under `config.analysis` (a checkpoint's
/// layers, or the final network's). For SVCCA and CCA each layer's side of a comparison
/// is computed once and reused ([`summary`]); PWCCA and CKA compare each pair afresh.
pub(crate) enum LayerSet {
    Summarised(Layers),
    Pairwise { layers: Vec<Tensor>, options: Options, conv: ConvOptions },
}

impl LayerSet {
    /// A set may be either side of a comparison, or both in turn.
    pub(crate) fn new(layers: Vec<Tensor>, config: &Config) -> LayerSet {
        let (options, conv) = settings(config);
        match options.method {
            Method::Svcca | Method::Cca => LayerSet::Summarised(Layers::new(layers, options, conv)),
            Method::Pwcca | Method::Cka => LayerSet::Pairwise { layers, options, conv },
        }
    }

    /// The same layers, for comparisons with this set: with the summaries it has made so
    /// far ([`Layers::sharing_summaries`]), so none is computed twice.
    pub(crate) fn sharing(&self) -> LayerSet {
        match self {
            LayerSet::Summarised(l) => LayerSet::Summarised(l.sharing_summaries()),
            LayerSet::Pairwise { layers, options, conv } => {
                LayerSet::Pairwise { layers: layers.iter().map(Tensor::shallow_clone).collect(), options: *options, conv: *conv }
            }
        }
    }

    /// Layer `i`.
    pub(crate) fn layer(&self, i: usize) -> &Tensor {
        match self {
            LayerSet::Summarised(l) => l.layer(i),
            LayerSet::Pairwise { layers, .. } => &layers[i],
        }
    }

    pub(crate) fn len(&self) -> usize {
        match self {
            LayerSet::Summarised(l) => l.len(),
            LayerSet::Pairwise { layers, .. } => layers.len(),
        }
    }

    /// What comparing layer `i` with layers `js` of `other` takes, per form, estimated
    /// from the shapes ([`summary::summary_bytes`]); PWCCA and CKA keep no summary, so
    /// their layers stay as they are (what a compacted one holds) and each pair makes
    /// float64 copies of both.
    pub(crate) fn bytes(&self, i: usize, other: &LayerSet, js: &[usize]) -> Vec<summary::Bytes> {
        match (self, other) {
            (LayerSet::Summarised(a), LayerSet::Summarised(b)) => summary::summary_bytes(a, i, b, js),
            _ => {
                let raw = 4 * self.layer(i).numel() as i64;
                vec![summary::Bytes { made: 4 * raw, row: 4 * raw, compact: raw }]
            }
        }
    }

    /// Layers `js` of `other` grouped by the form layer `i` takes against them (one group
    /// for methods compared pair by pair).
    pub(crate) fn form_groups(&self, i: usize, other: &LayerSet, js: &[usize]) -> Vec<Vec<usize>> {
        match (self, other) {
            (LayerSet::Summarised(a), LayerSet::Summarised(b)) => summary::form_groups(a, i, b, js).into_iter().map(|(_, g)| g).collect(),
            _ => vec![js.to_vec()],
        }
    }

    /// Keeps of layer `i` only what later comparisons need: its summaries made so far,
    /// compacted ([`Layers::compact`]); PWCCA and CKA need the layer itself.
    pub(crate) fn compact(&mut self, i: usize) {
        if let LayerSet::Summarised(l) = self {
            l.compact(i);
        }
    }

    /// Compacts the summaries of layer `i` made so far, keeping the layer to make more.
    pub(crate) fn compact_summaries(&mut self, i: usize) {
        if let LayerSet::Summarised(l) = self {
            l.compact_summaries(i);
        }
    }

    /// Drops layer `i`'s data and summaries (its comparisons are done).
    pub(crate) fn release(&mut self, i: usize) {
        match self {
            LayerSet::Summarised(l) => l.release(i),
            LayerSet::Pairwise { layers, .. } => layers[i] = summary::stand_in(&layers[i]),
        }
    }

    /// No side-by-side copies of summaries ([`Layers::with_joined_budget`]): an analysis
    /// streamed through a memory budget counts every byte.
    pub(crate) fn without_joined_copies(self) -> LayerSet {
        match self {
            LayerSet::Summarised(l) => LayerSet::Summarised(l.with_joined_budget(0)),
            pairwise => pairwise,
        }
    }
}

/// The order of `n` datapoints for a chance level: one permutation drawn from `seed`
/// (`analysis.seed`), the same for every layer and every analysis of a probe, so that a
/// chance level is one number however often it is computed.
pub(crate) fn chance_order(seed: u64, n: usize) -> Tensor {
    Tensor::from_slice(&crate::data::rng::Rng::stream(seed, &[0x73687566]).permutation(n))
}

/// `t.index_select(0, order)` (`order` a permutation of its datapoints) made in `t`'s own
/// memory where `t` is a contiguous CPU tensor: no second copy of a layer is held beside
/// it while its datapoints are shuffled (a streamed analysis's memory plan counts each
/// layer once). Elsewhere, `index_select`.
///
/// `t` must share its memory with no other tensor (a layer just read or recorded): the
/// rows are moved in place.
pub(crate) fn shuffled_in_place(mut t: Tensor, order: &Tensor) -> Tensor {
    let n = t.size().first().copied().unwrap_or(0) as usize;
    if t.device() != tch::Device::Cpu || !t.is_contiguous() || t.numel() == 0 {
        return t.index_select(0, &order.to_device(t.device()));
    }
    let order = Vec::<i64>::try_from(order).expect("datapoint indices");
    assert_eq!(order.len(), n, "a permutation of the datapoints");
    let row = t.numel() / n * t.kind().elt_size_in_bytes();
    let data = crate::host::view::bytes_mut(&mut t).expect("a contiguous CPU tensor");
    let (mut moved, mut first) = (vec![false; n], vec![0u8; row]);
    // Row k takes row order[k]: along each cycle of the permutation, each row's new
    // value is the next one's old value, and the last takes the first's, held aside.
    for start in 0..n {
        if moved[start] {
            continue;
        }
        first.copy_from_slice(&data[start * row..][..row]);
        let mut k = start;
        loop {
            moved[k] = true;
            let from = usize::try_from(order[k]).ok().filter(|&f| f < n).expect("a datapoint index");
            if from == start {
                data[k * row..][..row].copy_from_slice(&first);
                break;
            }
            assert!(!moved[from], "the order repeats datapoint {from}: not a permutation");
            data.copy_within(from * row..(from + 1) * row, k * row);
            k = from;
        }
    }
    t
}

/// What the two sides of a comparison are called in the warning for a cell left empty:
/// `a` the row's layer (with its step, and its file where it was read from one), `b[j]`
/// layer `j` of the other side.
pub(crate) struct Names<'a> {
    pub a: String,
    pub b: &'a [String],
}

/// The similarity of layer `i` of `a` with layer `j` of `b` (`None`, with a warning
/// naming both by `names`, where it is undefined). Conv layers are compared by
/// `analysis.conv` (a conv pair too small for the DFT, 1 x 1, by `avgpool`: channels
/// averaged over positions); a conv layer against a dense one by `analysis.conv_dense`,
/// `flatten` falling back to `avgpool` where the probe is too small
/// ([`conv_dense_fallbacks`]).
pub(crate) fn similarity(a: &mut LayerSet, i: usize, b: &mut LayerSet, j: usize, names: &Names) -> Option<f64> {
    let [one] = similarities(a, i, b, &[j], names).try_into().expect("one pair asked");
    one
}

/// Makes, for the rows of layers `is` of `a` against every layer of `b`, the summaries
/// of `a`'s layers they will ask for, all at once and side by side
/// ([`summary::summarise_rows`]); the rows then find them made. Nothing to do for
/// methods compared pair by pair.
pub(crate) fn summarise_rows(a: &mut LayerSet, is: &[usize], b: &LayerSet) {
    let js: Vec<usize> = (0..b.len()).collect();
    summarise_against(a, is, b, &js);
}

/// [`summarise_rows`] for the comparisons with layers `js` of `b` only.
pub(crate) fn summarise_against(a: &mut LayerSet, is: &[usize], b: &LayerSet, js: &[usize]) {
    if let (LayerSet::Summarised(a), LayerSet::Summarised(b)) = (a, b) {
        summary::summarise_rows(a, is, b, js);
    }
}

/// [`similarity`] of layer `i` of `a` with each layer `js` of `b`, in order: a row of
/// the learning-dynamics matrix asks for all of `b`, whose products with layer `i` are
/// then shared where the forms allow ([`summary::similarities`]).
pub(crate) fn similarities(a: &mut LayerSet, i: usize, b: &mut LayerSet, js: &[usize], names: &Names) -> Vec<Option<f64>> {
    let results = match (a, b) {
        (LayerSet::Summarised(a), LayerSet::Summarised(b)) => summary::similarities(a, i, b, js),
        (LayerSet::Pairwise { layers: xs, options, conv }, LayerSet::Pairwise { layers: ys, .. }) => js
            .iter()
            .map(|&j| {
                let (x, y) = (&xs[i], &ys[j]);
                let compared = if x.dim() == 2 && y.dim() == 2 {
                    similarity::compare(x, y, options)
                } else {
                    let applied = conv::applicable(*conv, [conv::LayerShape::of(x), conv::LayerShape::of(y)], x.size()[0]);
                    similarity::compare_conv(x, y, applied, options).map(|(s, _)| s)
                };
                compared.map(|s| s.mean)
            })
            .collect(),
        _ => unreachable!("both sides of a comparison are made from the same config"),
    };
    left_empty(results, js, names)
}

/// The cells of a row, those undefined left empty with a warning that names them: one
/// for the whole row where its own layer is at fault (a NaN in it fails every cell
/// alike), else one per cell.
fn left_empty(results: Vec<Result<f64, SimilarityError>>, js: &[usize], names: &Names) -> Vec<Option<f64>> {
    let own: Vec<&SimilarityError> =
        results.iter().filter_map(|r| r.as_ref().err()).filter(|e| matches!(e, SimilarityError::Layer { side: Side::A, .. })).collect();
    if let Some(SimilarityError::Layer { message, .. }) = own.first() {
        tracing::warn!("{}: {message}; its {} comparisons are left empty", names.a, own.len());
    }
    results
        .into_iter()
        .zip(js)
        .map(|(result, &j)| match result {
            Ok(mean) if mean.is_finite() => Some(mean),
            Ok(mean) => {
                tracing::warn!("{} vs {}: the similarity is {mean}; left empty", names.a, names.b[j]);
                None
            }
            Err(SimilarityError::Layer { side: Side::A, .. }) => None,
            Err(e) => {
                tracing::warn!("{}; left empty", e.naming(&names.a, &names.b[j]));
                None
            }
        })
        .collect()
}

/// The similarity of one pair of layers under `config.analysis`: [`similarity`] of two
/// sets of one, `names` the two layers' for the warning where it is undefined.
pub fn pair(a: &Tensor, b: &Tensor, config: &Config, names: [&str; 2]) -> Option<f64> {
    let mut x = LayerSet::new(vec![a.shallow_clone()], config);
    let mut y = LayerSet::new(vec![b.shallow_clone()], config);
    similarity(&mut x, 0, &mut y, 0, &Names { a: names[0].to_string(), b: &[names[1].to_string()] })
}

/// The conv layers of an analysis that `analysis.conv_dense = "flatten"` compares with
/// dense layers by `avgpool` instead, because the probe has fewer than
/// [`conv::FLATTEN_DATAPOINTS_PER_NEURON`] datapoints per flattened neuron (see
/// [`conv::applicable`]), with a warning naming them: once per analysis, where its
/// layers are first known. `layers` and `names` are one side's; `dense_partner` says
/// whether the analysis compares them with any dense layer (else nothing falls back).
/// The fallback is a function of the shapes and the probe size, so the settings record
/// what was asked.
pub(crate) fn conv_dense_fallbacks(config: &Config, names: &[String], layers: &[Tensor], dense_partner: bool) -> Vec<String> {
    if config.analysis.conv_dense != conv::ConvDense::Flatten || !dense_partner {
        return Vec::new();
    }
    let mut fallen = Vec::new();
    let mut described = Vec::new();
    let mut probe = 0;
    for (name, t) in names.iter().zip(layers) {
        let shape = conv::LayerShape::of(t);
        probe = t.size()[0];
        if let conv::LayerShape::Conv { c, h, w } = shape {
            if !conv::flattens(shape, probe) {
                fallen.push(name.clone());
                described.push(format!("{name} ({c}x{h}x{w} = {} neurons)", shape.neurons()));
            }
        }
    }
    if !fallen.is_empty() {
        let per = conv::FLATTEN_DATAPOINTS_PER_NEURON;
        tracing::warn!(
            "analysis.conv_dense = \"flatten\": {} compared with dense layers by avgpool (channel means) instead: the probe's {probe} \
             datapoints are fewer than {per} per flattened neuron, where SVCCA is biased upward. To flatten, raise \
             analysis.probe_size to {per} x the neurons; to silence this, set analysis.conv_dense = \"avgpool\"",
            described.join(", ")
        );
    }
    fallen
}

#[cfg(test)]
mod conv_dense_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    /// Shuffled in place, a layer is its `index_select` to the bit, in any kind and shape.
    #[test]
    fn a_layer_shuffled_in_place_is_its_index_select() {
        tch::manual_seed(9);
        let order = chance_order(3, 37);
        for t in [
            Tensor::randn([37, 4, 3, 5], (Kind::Float, Device::Cpu)),
            Tensor::randn([37, 6], (Kind::Double, Device::Cpu)),
            Tensor::randn([37], (Kind::Float, Device::Cpu)),
        ] {
            let want = t.index_select(0, &order);
            let got = shuffled_in_place(t.copy(), &order);
            assert!(bool::try_from(got.eq_tensor(&want).all()).unwrap(), "{:?}", t.size());
        }
        // A view that is not contiguous goes to index_select, its storage untouched.
        let base = Tensor::randn([6, 37], (Kind::Float, Device::Cpu));
        let got = shuffled_in_place(base.transpose(0, 1), &order);
        assert!(bool::try_from(got.eq_tensor(&base.transpose(0, 1).index_select(0, &order)).all()).unwrap());
    }
}
