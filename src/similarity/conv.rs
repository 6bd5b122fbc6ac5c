//! Comparing conv layers (datapoints x C x H x W): the DFT method, or positions folded
//! into datapoints (`flatten`), or global average pooling (`avgpool`).
//!
//! [`ConvComparison`] turns blocks of raw activations into what [`Moments`] accumulates
//! and the accumulated sums into a [`Similarity`], so a conv comparison streams exactly
//! as a dense one does.
//!
//! - `dft`: see [`super::dft`]. Different spatial sizes: the larger spectrum is cropped.
//! - `flatten`: every position of every datapoint is a datapoint of C neurons. When the
//!   two layers' spatial sizes differ, the larger map is average-pooled (adaptive
//!   pooling, as `torch.nn.AdaptiveAvgPool2d`) to the smaller size, so that position
//!   `(i, j)` of both covers the same part of the input. To stay within a datapoint
//!   budget, each datapoint keeps the same number of positions, drawn without
//!   replacement by a generator seeded from (seed, datapoint index): the draw does not
//!   depend on how the file is split into blocks.
//! - `avgpool`: the mean over positions, C neurons per datapoint.
//!
//! A conv layer against a dense one (datapoints x neurons, taken as it is) is compared
//! by [`ConvDense`]: the conv layer flattened to C*H*W neurons (the paper's Section 3
//! (2)), or its channel means. A flattened layer with more neurons than datapoints goes
//! through [`super::summary`]'s Gram route (datapoints x datapoints) for SVCCA and CCA:
//! no C*H*W square matrix is formed.

use super::dft::{FrequencyCorrelations, FrequencyPlan};
use super::{canonical, similarity, Keep, Method, Moments, Options, Similarity, Warning};
use crate::error::{Side, SimilarityError};
use std::cell::OnceCell;
use tch::{Device, Kind, Tensor};

/// How conv activations are compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConvMethod {
    #[default]
    Dft,
    Flatten,
    Avgpool,
}

super::spelling::spelled!(ConvMethod, "conv method", { Dft => "dft", Flatten => "flatten", Avgpool => "avgpool" });

/// Where SVCCA's keep rule cuts under the DFT method.
///
/// `global`: over the directions of all frequencies together, a pair of mirrored
/// frequencies counting twice: by Theorem 1 the flattened layer's covariance is
/// block-diagonal over frequencies, so this is the cut SVCCA makes on the flattened
/// layer, and the similarity is, as there, the sum of the correlations over
/// `min(K_a, K_b)`, `K` the directions kept on each side (some frequencies then keep
/// more directions on one side than the other, and the difference counts as zeros).
/// `per-frequency`: each frequency keeps its own fraction, and the similarity is the
/// mean of every correlation of every frequency (what this crate did before, and what
/// google/svcca's `fourier_ccas` does with its per-frequency SVCCA).
/// CCA and a fixed `--top-k` cut per frequency either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DftCut {
    #[default]
    Global,
    PerFrequency,
}

impl DftCut {
    /// The cut of results made before it was a setting: per frequency (for `serde`
    /// defaults of settings files written then).
    pub fn before_it_was_a_setting() -> DftCut {
        DftCut::PerFrequency
    }
}

super::spelling::spelled!(DftCut, "DFT cut", { Global => "global", PerFrequency => "per-frequency" });

/// How a conv layer (datapoints x C x H x W) is compared with a dense one (datapoints x
/// neurons).
///
/// `flatten`: the conv layer as C*H*W neurons, SVCCA against the dense layer as between
/// two dense layers (the paper's Section 3 (2)). `avgpool`: its C channel means (the
/// mean over positions). A multi-layer analysis flattens only where the probe has
/// [`FLATTEN_DATAPOINTS_PER_NEURON`] datapoints per flattened neuron, and falls back to
/// `avgpool` elsewhere (see [`applicable`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConvDense {
    #[default]
    Flatten,
    Avgpool,
}

impl ConvDense {
    /// What conv-vs-dense pairs were before it was a setting: channel means (for `serde`
    /// defaults of settings files written then).
    pub fn before_it_was_a_setting() -> ConvDense {
        ConvDense::Avgpool
    }
}

super::spelling::spelled!(ConvDense, "conv-dense comparison", { Flatten => "flatten", Avgpool => "avgpool" });

/// Datapoints per flattened neuron (C*H*W) a multi-layer analysis needs to compare a
/// conv layer with a dense one by `flatten`: the rule of thumb against SVCCA's upward bias
/// with few datapoints per neuron (see [`super::similarity`]'s warnings).
pub(crate) const FLATTEN_DATAPOINTS_PER_NEURON: i64 = 5;

/// Whether an analysis of `datapoints` datapoints flattens `shape` (a conv layer) against
/// a dense layer under `ConvDense::Flatten`.
pub fn flattens(shape: LayerShape, datapoints: i64) -> bool {
    match shape {
        LayerShape::Conv { .. } => datapoints >= FLATTEN_DATAPOINTS_PER_NEURON * shape.neurons(),
        LayerShape::Dense { .. } => false,
    }
}

/// Axis order of 4-D activations in a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    #[default]
    Nchw,
    Nhwc,
}

super::spelling::spelled!(Layout, "layout", {
    Nchw => "nchw" ("datapoints x channels x height x width (PyTorch)"),
    Nhwc => "nhwc" ("datapoints x height x width x channels (TensorFlow, numpy)"),
});

impl Layout {
    /// (channels, height, width) of a 4-D shape in this layout.
    pub fn chw(self, shape: &[i64]) -> [i64; 3] {
        match self {
            Layout::Nchw => [shape[1], shape[2], shape[3]],
            Layout::Nhwc => [shape[3], shape[1], shape[2]],
        }
    }

    /// A block of rows in this layout as rows x C x H x W.
    pub fn to_nchw(self, block: &Tensor) -> Tensor {
        match self {
            Layout::Nchw => block.shallow_clone(),
            Layout::Nhwc => block.permute([0, 3, 1, 2]),
        }
    }
}

/// Conv settings of a comparison.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ConvOptions {
    pub method: ConvMethod,
    /// `flatten`: at most this many datapoints (datapoints x positions kept).
    pub max_datapoints: usize,
    /// `flatten`: seed of the position draw.
    pub seed: u64,
    /// `dft` with SVCCA's variance or singular-value rule: where the rule cuts.
    pub cut: DftCut,
    /// A conv layer against a dense one (where `method` does not apply).
    pub dense: ConvDense,
}

impl Default for ConvOptions {
    fn default() -> Self {
        ConvOptions { method: ConvMethod::Dft, max_datapoints: 100_000, seed: 0, cut: DftCut::Global, dense: ConvDense::Flatten }
    }
}

/// A layer's shape as the comparison sees it: `C x H x W`, or `neurons` for a dense side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerShape {
    Conv { c: i64, h: i64, w: i64 },
    Dense { neurons: i64 },
}

impl LayerShape {
    /// The shape of in-memory activations: 4-D as conv, anything else as dense.
    pub fn of(t: &Tensor) -> LayerShape {
        let s = t.size();
        match s.len() {
            4 => LayerShape::Conv { c: s[1], h: s[2], w: s[3] },
            _ => LayerShape::Dense { neurons: s[1] },
        }
    }

    /// Neurons of the layer flattened: C*H*W, or the dense layer's.
    pub fn neurons(self) -> i64 {
        match self {
            LayerShape::Conv { c, h, w } => c * h * w,
            LayerShape::Dense { neurons } => neurons,
        }
    }

    fn is_dense(self) -> bool {
        matches!(self, LayerShape::Dense { .. })
    }
}

/// The settings an analysis of many layers uses for a pair of `datapoints` datapoints:
/// `conv.method` where it applies, else `avgpool` (a conv pair too small for the DFT,
/// 1 x 1); a conv-vs-dense pair by `conv.dense`, `flatten` falling back to `avgpool`
/// when the conv layer has more than a fifth as many neurons (C*H*W) as there are
/// datapoints ([`flattens`]).
pub(crate) fn applicable(conv: ConvOptions, shapes: [LayerShape; 2], datapoints: i64) -> ConvOptions {
    let spatial = |s: LayerShape| match s {
        LayerShape::Conv { h, w, .. } => h * w,
        LayerShape::Dense { .. } => 1,
    };
    let both_conv = matches!(shapes, [LayerShape::Conv { .. }, LayerShape::Conv { .. }]);
    let method = match conv.method {
        ConvMethod::Dft if both_conv && spatial(shapes[0]).min(spatial(shapes[1])) >= 2 => ConvMethod::Dft,
        ConvMethod::Flatten if both_conv => ConvMethod::Flatten,
        _ => ConvMethod::Avgpool,
    };
    let flat = shapes.iter().any(|&s| flattens(s, datapoints));
    let dense = if conv.dense == ConvDense::Flatten && flat { ConvDense::Flatten } else { ConvDense::Avgpool };
    ConvOptions { method, dense, ..conv }
}

/// The per-block transform and the final assembly of one conv comparison.
pub struct ConvComparison {
    options: ConvOptions,
    shapes: [LayerShape; 2],
    /// The common spatial size (flatten, dft).
    size: (i64, i64),
    plan: Option<FrequencyPlan>,
    /// `flatten`: positions kept per datapoint.
    positions: i64,
    /// A conv layer against a dense one, the conv layer as C*H*W neurons.
    neurons: bool,
    datapoints: i64,
    /// `dft`: each side's first datapoint, subtracted before the transform. The
    /// accumulator centres by shifting with the first datapoint anyway; done in the
    /// spatial domain it is free inside the FFT's input copy, and the accumulator, seeing a
    /// first row of exact zeros, skips its own pass over the much larger spectra.
    first: [OnceCell<Tensor>; 2],
}

/// Extra results of a conv comparison, reported beside the similarity.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ConvReport {
    pub method: ConvMethod,
    /// The common spatial size the layers were compared at (height, width).
    pub size: [i64; 2],
    /// `flatten`: positions kept per datapoint.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub positions_per_datapoint: Option<i64>,
    /// `dft`: frequencies whose CCA was computed (the rest mirror them).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frequencies_computed: Option<usize>,
    /// `dft`: every frequency of the common grid, numpy order.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frequencies: Option<Vec<FrequencyCorrelations>>,
    /// `dft`: where the keep rule cut (per frequency for CCA and a fixed top k).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cut: Option<DftCut>,
    /// A conv layer against a dense one: how (`method` then says the same: `flatten`
    /// for the conv layer as C*H*W neurons, `avgpool` for its channel means).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conv_dense: Option<ConvDense>,
}

impl ConvComparison {
    /// Checks that the layers suit the method and plans the comparison of `datapoints`
    /// datapoints.
    pub fn new(shapes: [LayerShape; 2], datapoints: i64, options: ConvOptions, method: Method) -> Result<Self, SimilarityError> {
        let mixed = shapes[0].is_dense() != shapes[1].is_dense();
        if mixed {
            // A conv layer against a dense one: `options.dense` decides, `method` is
            // for two conv layers.
            let conv = if shapes[0].is_dense() { shapes[1] } else { shapes[0] };
            let LayerShape::Conv { h, w, .. } = conv else { unreachable!("one side is conv") };
            let neurons = options.dense == ConvDense::Flatten;
            if neurons && matches!(method, Method::Pwcca | Method::Cka) && conv.neurons() > MAX_SCATTER_NEURONS {
                return Err(SimilarityError::Both(format!(
                    "--method {method} with --conv-dense flatten needs a {n} x {n} scatter matrix of the {n} flattened neurons \
                     (more than {MAX_SCATTER_NEURONS}): use --method svcca or cca (which work from the datapoints' Gram matrix), \
                     or --conv-dense avgpool",
                    n = conv.neurons()
                )));
            }
            let options = ConvOptions { method: if neurons { ConvMethod::Flatten } else { ConvMethod::Avgpool }, ..options };
            return Ok(ConvComparison {
                options,
                shapes,
                size: (h, w),
                plan: None,
                positions: 1,
                neurons,
                datapoints,
                first: [OnceCell::new(), OnceCell::new()],
            });
        }
        let mut size = (1, 1);
        if options.method != ConvMethod::Avgpool {
            let mut sizes = Vec::new();
            for (side, shape) in [(Side::A, shapes[0]), (Side::B, shapes[1])] {
                match shape {
                    LayerShape::Conv { h, w, .. } => sizes.push((h, w)),
                    LayerShape::Dense { .. } => {
                        return Err(SimilarityError::layer(
                            side,
                            format!("is 2-D (datapoints x neurons): --conv {} needs 4-D activations on both sides", name(options.method)),
                        ))
                    }
                }
            }
            size = (sizes[0].0.min(sizes[1].0), sizes[0].1.min(sizes[1].1));
        }
        let mut plan = None;
        let mut positions = 1;
        match options.method {
            ConvMethod::Dft => {
                if !matches!(method, Method::Svcca | Method::Cca) {
                    return Err(SimilarityError::Both(format!(
                        "--method {method} is not defined per frequency: with --conv dft use svcca or cca \
                         (or --conv flatten / avgpool for {method})"
                    )));
                }
                if size.0 * size.1 < 2 {
                    return Err(SimilarityError::Both(format!(
                        "spatial size {}x{} is too small for --conv dft (a 1x1 map has no frequencies \
                         but the mean): use --conv avgpool",
                        size.0, size.1
                    )));
                }
                let (LayerShape::Conv { h: ha, w: wa, .. }, LayerShape::Conv { h: hb, w: wb, .. }) = (shapes[0], shapes[1]) else {
                    unreachable!("checked above")
                };
                plan = Some(FrequencyPlan::new((ha, wa), (hb, wb)));
            }
            ConvMethod::Flatten => {
                let per = (options.max_datapoints as i64 / datapoints.max(1)).max(1);
                positions = per.min(size.0 * size.1);
            }
            ConvMethod::Avgpool => {}
        }
        Ok(ConvComparison { options, shapes, size, plan, positions, neurons: false, datapoints, first: [OnceCell::new(), OnceCell::new()] })
    }

    /// The accumulator this comparison feeds.
    pub fn moments(&self, device: Device) -> Moments {
        let [ca, cb] = self.shapes.map(|s| match s {
            LayerShape::Conv { .. } if self.neurons => s.neurons(),
            LayerShape::Conv { c, .. } => c,
            LayerShape::Dense { neurons } => neurons,
        });
        match &self.plan {
            Some(plan) => Moments::stacked(plan.computed.len() as i64, ca, cb, true, device),
            None => Moments::new(ca, cb, device),
        }
    }

    /// Transforms one side's block (rows x C x H x W, or rows x neurons for a dense
    /// side) whose first row is datapoint `first_row` into what [`Moments::update`] takes.
    pub fn transform(&self, side: Side, block: &Tensor, first_row: i64) -> Tensor {
        if block.dim() == 2 {
            return block.shallow_clone();
        }
        if self.neurons {
            return block.reshape([block.size()[0], -1]);
        }
        match (self.options.method, &self.plan) {
            (ConvMethod::Avgpool, _) => channel_means(block),
            (ConvMethod::Dft, Some(plan)) => {
                // A copy, not a view of a float64 block, which it would keep alive.
                let first = self.first[side as usize].get_or_init(|| block.get(0).to_kind(Kind::Double).copy());
                plan.spectrum(block, first, Kind::Double)
            }
            (ConvMethod::Dft, None) => unreachable!("a dft comparison has a plan"),
            (ConvMethod::Flatten, _) => self.flatten(block, first_row),
        }
    }

    /// [`ConvComparison::transform`] of a whole layer (rows x C x H x W) for one or more
    /// DFT comparisons at once, from one FFT per datapoint and channel (see
    /// [`FrequencyPlan::spectra`]): the layer against partners of other sizes. The
    /// spectra are of `kind` (float64, or float32 for [`super::Precision::Float32`]).
    pub(crate) fn spectra(comparisons: &[&ConvComparison], layer: &Tensor, kind: Kind) -> Vec<Tensor> {
        let plans: Vec<&FrequencyPlan> = comparisons.iter().map(|c| c.plan.as_ref().expect("dft comparisons")).collect();
        // The shift `transform` takes for a first block: the first datapoint.
        FrequencyPlan::spectra(&plans, layer, &layer.get(0).to_kind(Kind::Double), kind)
    }

    fn flatten(&self, block: &Tensor, first_row: i64) -> Tensor {
        let (h, w) = self.size;
        let s = block.size();
        let block = if (s[2], s[3]) != (h, w) { block.to_kind(Kind::Double).adaptive_avg_pool2d([h, w]) } else { block.shallow_clone() };
        let (rows, c) = (s[0], s[1]);
        // rows x positions x C
        let by_position = block.reshape([rows, c, h * w]).permute([0, 2, 1]);
        if self.positions == h * w {
            return by_position.reshape([rows * h * w, c]);
        }
        let picks: Vec<i64> = (0..rows).flat_map(|r| draw_positions(self.options.seed, first_row + r, h * w, self.positions)).collect();
        let picks =
            Tensor::from_slice(&picks).view([rows, self.positions, 1]).expand([rows, self.positions, c], false).to_device(block.device());
        by_position.gather(1, &picks, false).reshape([rows * self.positions, c])
    }

    /// What the report says before any sums: the method, the size, positions (flatten)
    /// and how a conv layer met a dense one.
    pub fn report(&self) -> ConvReport {
        let mixed = self.shapes[0].is_dense() != self.shapes[1].is_dense();
        let folded = self.options.method == ConvMethod::Flatten && !self.neurons;
        ConvReport {
            method: self.options.method,
            size: [self.size.0, self.size.1],
            positions_per_datapoint: folded.then_some(self.positions),
            frequencies_computed: None,
            frequencies: None,
            cut: None,
            conv_dense: mixed.then_some(if self.neurons { ConvDense::Flatten } else { ConvDense::Avgpool }),
        }
    }

    /// The method in a word or two, for logs: `dft`, `flatten`, `avgpool`, or for a
    /// conv layer against a dense one `conv-dense flatten` or `conv-dense avgpool`.
    pub fn describe(&self) -> String {
        match self.report().conv_dense {
            Some(d) => format!("conv-dense {d}"),
            None => name(self.options.method).to_string(),
        }
    }

    /// The similarity from the accumulated sums.
    pub fn finish(&self, moments: Moments, options: &Options) -> Result<(Similarity, ConvReport), SimilarityError> {
        let mut report = self.report();
        let Some(plan) = &self.plan else {
            let cov = moments.finish()?;
            return Ok((similarity(cov, options)?, report));
        };
        let cov = moments.finish()?;
        let joint = self.joint(options);
        let spectrum = self.spectrum(canonical(&cov, options, joint.as_deref())?, joint.is_some());
        let channels = cov.neurons;
        let mut warnings = Vec::new();
        for (side, c) in [(Side::A, channels[0]), (Side::B, channels[1])] {
            if cov.rows < c {
                warnings.push(Warning {
                    side,
                    message: format!(
                        "fewer datapoints ({}) than channels ({c}): each frequency's correlations are biased upward",
                        cov.rows
                    ),
                });
            }
        }
        let full = |shape: LayerShape| match shape {
            LayerShape::Conv { c, h, w } => c * h * w,
            LayerShape::Dense { neurons } => neurons,
        };
        let similarity = Similarity {
            method: options.method,
            mean: spectrum.mean,
            kept_a: spectrum.kept[0],
            kept_b: spectrum.kept[1],
            correlations: spectrum.correlations,
            weights: None,
            datapoints: cov.rows,
            neurons_a: full(self.shapes[0]),
            neurons_b: full(self.shapes[1]),
            constant_a: cov.constant[0],
            constant_b: cov.constant[1],
            warnings,
        };
        report.frequencies_computed = Some(plan.computed.len());
        report.frequencies = Some(spectrum.frequencies);
        report.cut = Some(if joint.is_some() { DftCut::Global } else { DftCut::PerFrequency });
        Ok((similarity, report))
    }

    /// Whether SVCCA or CCA (`method`) of this comparison goes through per-layer
    /// summaries rather than scatter matrices: a conv layer flattened against a dense
    /// one with more neurons than datapoints (the Gram route of [`super::summary`]).
    pub fn by_summaries(&self, method: Method) -> bool {
        let wide = self.shapes.iter().any(|s| s.neurons() > self.datapoints);
        self.neurons && wide && matches!(method, Method::Svcca | Method::Cca)
    }

    /// Whether a datapoint's transformed rows depend on the datapoint alone, not on its
    /// place in the file: all but `flatten` with its positions subsampled, which draws
    /// them by the datapoint's index. Where they do, a pass over the datapoints in
    /// another order feeds each side the same rows, and each side's sums do not change.
    pub fn by_datapoint(&self) -> bool {
        let (h, w) = self.size;
        self.neurons || self.options.method != ConvMethod::Flatten || self.positions == h * w
    }

    /// Whether the comparison runs on complex data (the DFT's spectra).
    pub fn is_complex(&self) -> bool {
        self.plan.is_some()
    }

    /// What one side's transformed block depends on besides the layer itself: two
    /// comparisons of a layer with the same form transform it identically.
    pub(crate) fn form(&self) -> Form {
        if self.neurons {
            return Form::Neurons;
        }
        match (&self.plan, self.options.method) {
            (Some(plan), _) => Form::Dft { size: self.size, cropped: plan.cropped },
            (None, ConvMethod::Flatten) => Form::Flatten { size: self.size, positions: self.positions, seed: self.options.seed },
            (None, _) => Form::Avgpool,
        }
    }

    /// For the DFT's global cut, how many grid frequencies each computed one stands for
    /// (the multiplicities [`super::canonical`]'s joint rule counts); `None` when the rule
    /// cuts per frequency (see [`DftCut`]).
    pub(crate) fn joint(&self, options: &Options) -> Option<Vec<usize>> {
        let plan = self.plan.as_ref()?;
        let rule = matches!(options.effective_keep(), Keep::Variance(_) | Keep::Singular(_));
        (self.options.cut == DftCut::Global && rule).then(|| plan.multiplicity.clone())
    }

    /// Every frequency of the grid from the computed ones' (kept_a, kept_b,
    /// correlations), and the similarity: the mean of every correlation, or with the
    /// global cut their sum over `min(K_a, K_b)` (see [`DftCut`]).
    pub(crate) fn spectrum(&self, computed: Vec<(usize, usize, Vec<f64>)>, joint: bool) -> Spectrum {
        let plan = self.plan.as_ref().expect("a dft comparison has a plan");
        let frequencies: Vec<FrequencyCorrelations> = plan
            .locations()
            .zip(&plan.source)
            .map(|(location, &src)| {
                let (ka, kb, ref corr) = computed[src];
                FrequencyCorrelations { location, kept_a: ka, kept_b: kb, correlations: corr.clone() }
            })
            .collect();
        let mut correlations: Vec<f64> = frequencies.iter().flat_map(|f| f.correlations.iter().copied()).collect();
        correlations.sort_by(|x, y| y.total_cmp(x));
        let kept = [0, 1].map(|side| frequencies.iter().map(|f| if side == 0 { f.kept_a } else { f.kept_b } as i64).sum::<i64>());
        let count = if joint { kept[0].min(kept[1]) as usize } else { correlations.len() };
        let mean = correlations.iter().sum::<f64>() / count as f64;
        Spectrum { frequencies, correlations, kept, mean }
    }
}

/// The outcome of a DFT comparison over the whole grid.
pub(crate) struct Spectrum {
    pub frequencies: Vec<FrequencyCorrelations>,
    /// Every correlation of every frequency, descending.
    pub correlations: Vec<f64>,
    /// Directions kept on each side, over the grid.
    pub kept: [i64; 2],
    pub mean: f64,
}

/// How a comparison presents one layer (see [`ConvComparison::form`]); a dense layer,
/// or a side taken as it is, is `Dense`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Form {
    Dense,
    Avgpool,
    /// A conv layer as C*H*W neurons (against a dense one).
    Neurons,
    Flatten {
        size: (i64, i64),
        positions: i64,
        seed: u64,
    },
    Dft {
        size: (i64, i64),
        cropped: (bool, bool),
    },
}

fn name(method: ConvMethod) -> &'static str {
    match method {
        ConvMethod::Dft => "dft",
        ConvMethod::Flatten => "flatten",
        ConvMethod::Avgpool => "avgpool",
    }
}

/// `count` distinct positions out of `total` for one datapoint: a partial Fisher-Yates
/// shuffle driven by SplitMix64 seeded from (seed, datapoint).
fn draw_positions(seed: u64, datapoint: i64, total: i64, count: i64) -> Vec<i64> {
    let mut state = seed ^ (datapoint as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut next = move || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let mut all: Vec<i64> = (0..total).collect();
    for i in 0..count as usize {
        let j = i + (next() % (total as u64 - i as u64)) as usize;
        all.swap(i, j);
    }
    all.truncate(count as usize);
    all
}

/// Datapoints [`channel_means`] averages at a time.
const MEAN_ROWS: i64 = 64;

/// The channel means of a block (rows x C x H x W), in float64: what `avgpool` compares.
/// libtorch's mean of float32 data into float64 first copies all of it to float64 (a
/// conv layer of the paper's convnet at probe 2560: 1.25 GiB beside its 0.63 GiB), so
/// such a block is averaged a few datapoints at a time; each mean is over the same
/// values in the same order, so the numbers are the same.
fn channel_means(block: &Tensor) -> Tensor {
    let mean = |b: &Tensor| b.mean_dim(&[2i64, 3][..], false, Kind::Double);
    let rows = block.size()[0];
    if block.kind() == Kind::Double || rows <= MEAN_ROWS {
        return mean(block);
    }
    let parts: Vec<Tensor> = (0..rows).step_by(MEAN_ROWS as usize).map(|at| mean(&block.narrow(0, at, MEAN_ROWS.min(rows - at)))).collect();
    Tensor::cat(&parts, 0)
}

/// Flattened neurons above which a conv-vs-dense `flatten` comparison by PWCCA or CKA
/// (which need the scatter matrices) is refused: 8192 neurons make a 512 MiB matrix.
pub(crate) const MAX_SCATTER_NEURONS: i64 = 8192;

#[cfg(test)]
mod tests {
    use super::*;

    /// The channel means a few datapoints at a time (no float64 copy of a float32 layer)
    /// are libtorch's means of the whole block, to the bit.
    #[test]
    fn channel_means_in_blocks_are_the_whole_blocks_means() {
        tch::manual_seed(8);
        let x = Tensor::randn([3 * MEAN_ROWS + 5, 4, 6, 5], (Kind::Float, Device::Cpu)) * 10.0 + 3.0;
        let means = channel_means(&x);
        assert_eq!(means.kind(), Kind::Double);
        assert!(bool::try_from(means.eq_tensor(&x.mean_dim(&[2i64, 3][..], false, Kind::Double)).all()).unwrap());
    }

    /// As for [`super::super::moments`]: a float64 block may be overwritten once
    /// transformed. The DFT's centring shift, the first block's first datapoint, was
    /// once a view of that block.
    #[test]
    fn a_dft_block_may_be_overwritten_once_transformed() {
        tch::manual_seed(6);
        let x = Tensor::randn([8, 3, 4, 4], (Kind::Double, Device::Cpu)) + 1.0;
        let shape = LayerShape::of(&x);
        let second = |overwrite: bool| {
            let c = ConvComparison::new([shape, shape], 8, ConvOptions::default(), Method::Cca).unwrap();
            let mut first = x.narrow(0, 0, 4).copy();
            let _ = c.transform(Side::A, &first, 0);
            if overwrite {
                let _ = first.fill_(1e6);
            }
            c.transform(Side::A, &x.narrow(0, 4, 4), 4)
        };
        let (kept, overwritten) = (second(false), second(true));
        assert!(bool::try_from(kept.eq_tensor(&overwritten).all()).unwrap());
    }
}
