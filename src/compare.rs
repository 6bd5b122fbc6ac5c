//! Comparing two layers' activations: the `svcca compare` job, and the Python module's
//! `svcca.compare` (python/), which hands it arrays in memory instead of files.
//!
//! Both inputs are validated up front (so a bad second file fails before any work on the
//! first), then streamed block by block into [`Moments`]: a file pair larger than the
//! memory budget never sits in memory whole, and a pair that fits is one block.
//! Conv layers (4-D files) go through a [`ConvComparison`] that transforms each block
//! (spectrum, folded positions or pooled channels) before it is accumulated.
//!
//! With a [`Baseline`], the same comparison runs again with A's datapoints shuffled
//! against B's (A's rows read in the shuffled order, block by block), one shuffle at a
//! time, for the similarity's chance level.

use crate::data::rng::Rng;
use crate::device;
use crate::device::DeviceChoice;
use crate::error::{InputError, Side, SimilarityError};
use crate::host;
use crate::npy::{Dtype, NpyFile};
use crate::similarity::conv::{ConvComparison, LayerShape};
use crate::similarity::{
    self, ConvDense, ConvMethod, ConvOptions, ConvReport, DftCut, Keep, KeepRule, Layout, Method, Moments, Options, Similarity,
};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use std::path::PathBuf;
use std::time::Instant;
use tch::{Device, Kind, Tensor};

/// A fresh host tensor filled by the caller (the Python module copies a NumPy buffer
/// into it), and the element types it takes.
pub use crate::host::view::{try_fill_new, Element};

/// Everything a comparison needs.
#[derive(Debug, Clone)]
pub struct CompareJob {
    pub a: Operand,
    pub b: Operand,
    pub options: Options,
    /// How 4-D (conv) inputs are compared; `None` accepts 2-D inputs only.
    pub conv: Option<ConvOptions>,
    /// How a 4-D input is compared with a 2-D one (`--conv-dense`); `None` takes
    /// `--conv avgpool` for channel means, as before it was an option.
    pub conv_dense: Option<ConvDense>,
    /// Axis order of 4-D inputs.
    pub layout: Layout,
    pub device: Device,
    /// Bytes of host memory the data blocks may take.
    pub memory_budget: u64,
    /// The chance level beside the similarity (`--baseline`); `None`: none.
    pub baseline: Option<Baseline>,
}

/// SVCCA's fraction when none is given (the paper's), under either rule.
pub const DEFAULT_KEEP: f64 = 0.99;

/// A comparison's settings as a user gives them (`svcca compare`'s options, the Python
/// module's keywords), checked into a [`CompareJob`] by [`Settings::job`].
#[derive(Debug, Clone)]
pub struct Settings {
    pub method: Method,
    /// SVCCA: the fraction kept (default [`DEFAULT_KEEP`]).
    pub keep: Option<f64>,
    pub keep_rule: Option<KeepRule>,
    /// SVCCA: exactly this many directions (instead of a fraction).
    pub top_k: Option<usize>,
    pub conv: Option<ConvMethod>,
    pub conv_dense: Option<ConvDense>,
    pub layout: Layout,
    pub dft_cut: DftCut,
    pub max_datapoints: usize,
    pub seed: u64,
    /// Shuffles of the chance level, if any.
    pub baseline: Option<usize>,
    pub device: DeviceChoice,
    pub memory_budget: u64,
}

impl Default for Settings {
    fn default() -> Self {
        let conv = ConvOptions::default();
        Settings {
            method: Method::Svcca,
            keep: None,
            keep_rule: None,
            top_k: None,
            conv: None,
            conv_dense: None,
            layout: Layout::Nchw,
            dft_cut: conv.cut,
            max_datapoints: conv.max_datapoints,
            seed: conv.seed,
            baseline: None,
            device: DeviceChoice::Auto,
            memory_budget: 2 << 30,
        }
    }
}

/// How messages name a setting: `svcca compare`'s `--top-k 0`, or Python's `top_k=0`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spelling {
    Cli,
    Python,
}

impl Spelling {
    /// The setting `key` (written as the CLI option, `top-k`).
    fn name(self, key: &str) -> String {
        match self {
            Spelling::Cli => format!("--{key}"),
            Spelling::Python => key.replace('-', "_"),
        }
    }

    /// The setting `key` given `value`.
    fn given(self, key: &str, value: impl std::fmt::Display) -> String {
        match self {
            Spelling::Cli => format!("--{key} {value}"),
            Spelling::Python => format!("{}={value}", key.replace('-', "_")),
        }
    }
}

impl Settings {
    /// The job comparing `a` with `b`, once the settings fit together (refused naming
    /// the setting, as `spelling` writes it); resolves the device.
    pub fn job(&self, a: Operand, b: Operand, spelling: Spelling) -> Result<CompareJob, InputError> {
        if self.max_datapoints == 0 {
            return Err(InputError::new(format!("{}: keep at least one datapoint", spelling.given("max-datapoints", 0))));
        }
        Ok(CompareJob {
            conv: self.conv.map(|method| ConvOptions {
                method,
                max_datapoints: self.max_datapoints,
                seed: self.seed,
                cut: self.dft_cut,
                ..ConvOptions::default()
            }),
            conv_dense: self.conv_dense,
            layout: self.layout,
            options: Options { method: self.method, keep: self.keep(spelling)?, ..Options::default() },
            device: self.device.resolve()?,
            memory_budget: self.memory_budget,
            baseline: self.baseline.map(|shuffles| Baseline { shuffles, seed: self.seed }),
            a,
            b,
        })
    }

    fn keep(&self, spelling: Spelling) -> Result<Keep, InputError> {
        if (self.keep.is_some() || self.keep_rule.is_some() || self.top_k.is_some()) && self.method != Method::Svcca {
            return Err(InputError::new(format!(
                "{}, {} and {} apply to {} only (got {})",
                spelling.name("keep"),
                spelling.name("keep-rule"),
                spelling.name("top-k"),
                spelling.given("method", "svcca"),
                spelling.given("method", self.method)
            )));
        }
        let rule = self.keep_rule.unwrap_or_default();
        match (self.keep, self.top_k) {
            (Some(f), _) if !(f > 0.0 && f <= 1.0) => {
                Err(InputError::new(format!("{}: the fraction must be in (0, 1]", spelling.given("keep", f))))
            }
            (Some(f), _) => Ok(rule.keep(f)),
            (_, Some(0)) => Err(InputError::new(format!("{}: keep at least one direction", spelling.given("top-k", 0)))),
            (_, Some(k)) => Ok(Keep::TopK(k)),
            (None, None) if self.method == Method::Svcca => Ok(rule.keep(DEFAULT_KEEP)),
            (None, None) => Ok(Keep::All),
        }
    }
}

/// One side of a comparison: a file ([`NpyFile`]: `.npy`, or a `.safetensors` tensor),
/// or a host tensor already in memory (float16, bfloat16, float32 or float64; datapoints
/// first, 2-D or 4-D), read block by block the same way, so both give the same numbers.
#[derive(Debug)]
pub enum Operand {
    File(PathBuf),
    /// `name` stands for the array in messages and in the report.
    Tensor {
        name: String,
        tensor: Tensor,
    },
}

impl Operand {
    /// How messages and the report name it.
    pub fn name(&self) -> String {
        match self {
            Operand::File(path) => path.display().to_string(),
            Operand::Tensor { name, .. } => name.clone(),
        }
    }
}

impl Clone for Operand {
    fn clone(&self) -> Self {
        match self {
            Operand::File(path) => Operand::File(path.clone()),
            Operand::Tensor { name, tensor } => Operand::Tensor { name: name.clone(), tensor: tensor.shallow_clone() },
        }
    }
}

impl<P: Into<PathBuf>> From<P> for Operand {
    fn from(path: P) -> Self {
        Operand::File(path.into())
    }
}

/// A permutation baseline: the similarity of A, its datapoints shuffled, against B, under
/// the comparison's own settings, for `shuffles` independent shuffles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Baseline {
    /// At least 2, for a spread.
    pub shuffles: usize,
    /// Of the shuffles' orders ([`Baseline::order`]).
    pub seed: u64,
}

impl Baseline {
    /// Shuffle `k`'s order of `rows` datapoints: A's row `order[i]` meets B's row `i`.
    pub fn order(&self, k: usize, rows: usize) -> Vec<i64> {
        Rng::stream(self.seed, &[SHUFFLE_STREAM, k as u64]).permutation(rows)
    }
}

/// The stream of the baseline's shuffles ("shuf", as the analysis's shuffled baseline).
const SHUFFLE_STREAM: u64 = 0x7368_7566;

/// The chance level of a comparison, as printed by `--json`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Chance {
    /// The mean of the shuffled similarities.
    pub mean: f64,
    /// Their sample standard deviation (n - 1 in the denominator).
    pub std: f64,
    /// The similarity minus `mean`.
    pub above: f64,
    pub shuffles: usize,
    pub seed: u64,
    /// Each shuffle's similarity, in order.
    pub similarities: Vec<f64>,
    /// Wall time of the shuffles.
    pub seconds: f64,
}

/// The bytes of one side's float64 working copy of a block (its shifted data, or a conv
/// layer's transform) above which the CPU path streams smaller blocks, whatever the
/// memory budget: three quarters of the allocator's threshold for mapping a buffer on
/// its own ([`host::HEAP_BLOCK_BYTES`]).
const BLOCK_COPY_BYTES: u64 = host::HEAP_BLOCK_BYTES as u64 / 4 * 3;

/// The result with its context, as printed by `--json`.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    #[serde(flatten)]
    pub similarity: Similarity,
    pub keep: Keep,
    pub device: String,
    pub a: String,
    pub b: String,
    /// Conv comparisons: the method, the common size, and for `dft` every frequency.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conv: Option<ConvReport>,
    /// With a [`Baseline`]: the similarity's chance level.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chance: Option<Chance>,
    /// Blocks of datapoints the files were read in (1 when they fit the budget and, on
    /// the CPU, each side's float64 copy of a block fits [`BLOCK_COPY_BYTES`]).
    pub blocks: usize,
    pub warnings: Vec<String>,
    /// Wall time of the whole job.
    pub seconds: f64,
    /// Where the time went.
    pub timings: Timings,
}

/// Seconds spent in each stage of a comparison.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Timings {
    /// Reading the files.
    pub read: f64,
    /// Conv layers: spectra, folded positions or pooling.
    pub transform: f64,
    /// Summing means and scatter matrices (the matrix products).
    pub accumulate: f64,
    /// Decompositions and correlations.
    pub solve: f64,
}

/// One input and how its rows become a tensor.
struct Input {
    source: Source,
    name: String,
    rows: usize,
    dtype: Dtype,
    /// Shape of one row block with the row count left out, in the input's axis order.
    row_shape: Vec<i64>,
}

enum Source {
    File(NpyFile),
    /// A contiguous host tensor of the input's dtype.
    Tensor(Tensor),
}

impl Input {
    /// Opens an operand and checks it is a 2-D or 4-D float array with data.
    fn open(operand: &Operand) -> Result<Input, InputError> {
        let name = operand.name();
        let (source, shape, dtype) = match operand {
            Operand::File(path) => {
                let file = NpyFile::open(path)?;
                let header = file.header();
                let (shape, dtype) = (header.shape.iter().map(|&d| d as i64).collect(), header.dtype);
                (Source::File(file), shape, dtype)
            }
            Operand::Tensor { tensor, .. } => {
                let dtype = match tensor.kind() {
                    Kind::Half => Dtype::F16,
                    Kind::BFloat16 => Dtype::BF16,
                    Kind::Float => Dtype::F32,
                    Kind::Double => Dtype::F64,
                    other => {
                        return Err(InputError::new(format!("{name}: a {other:?} array: expected float16, bfloat16, float32 or float64")))
                    }
                };
                (Source::Tensor(tensor.to_device(Device::Cpu).contiguous()), tensor.size(), dtype)
            }
        };
        if shape.len() != 2 && shape.len() != 4 {
            return Err(InputError::new(format!(
                "{name}: expected a 2-D array (datapoints x neurons) or a 4-D one (datapoints x C x H x W), got shape {shape:?}"
            )));
        }
        if shape.contains(&0) {
            return Err(InputError::new(format!("{name}: empty array of shape {shape:?}")));
        }
        Ok(Input { source, name, rows: shape[0] as usize, dtype, row_shape: shape[1..].to_vec() })
    }

    fn is_conv(&self) -> bool {
        self.row_shape.len() == 3
    }

    /// Values in one datapoint.
    fn cols(&self) -> usize {
        self.row_shape.iter().product::<i64>() as usize
    }

    /// The whole shape, datapoints first, in the input's axis order.
    fn full_shape(&self) -> Vec<i64> {
        let mut full = vec![self.rows as i64];
        full.extend(&self.row_shape);
        full
    }

    fn shape(&self, layout: Layout) -> LayerShape {
        if self.is_conv() {
            let [c, h, w] = layout.chw(&self.full_shape());
            LayerShape::Conv { c, h, w }
        } else {
            LayerShape::Dense { neurons: self.row_shape[0] }
        }
    }

    /// Rows `start..start + count` as a host tensor: rows x neurons, or rows x C x H x W
    /// for a conv layer.
    fn read(&mut self, start: usize, count: usize, layout: Layout) -> Result<Tensor, InputError> {
        if let Source::Tensor(t) = &self.source {
            return Ok(self.shaped(t.narrow(0, start as i64, count as i64), false, layout));
        }
        self.read_with(count, layout, |file, bytes| file.read_rows_into(start, count, bytes))
    }

    /// As [`Input::read`], the rows `rows` (indices, any order).
    fn read_at(&mut self, rows: &[i64], layout: Layout) -> Result<Tensor, InputError> {
        if let Source::Tensor(t) = &self.source {
            return Ok(self.shaped(t.index_select(0, &Tensor::from_slice(rows)), false, layout));
        }
        let rows: Vec<usize> = rows.iter().map(|&r| r as usize).collect();
        self.read_with(rows.len(), layout, |file, bytes| file.read_rows_at(&rows, bytes))
    }

    /// `count` rows of a file that `fill` writes as the file holds them, as a tensor.
    fn read_with(
        &mut self,
        count: usize,
        layout: Layout,
        fill: impl FnOnce(&mut NpyFile, &mut [u8]) -> Result<(), InputError>,
    ) -> Result<Tensor, InputError> {
        let Source::File(file) = &mut self.source else { unreachable!("read_with reads files") };
        let kind = match self.dtype {
            Dtype::F16 => Kind::Half,
            Dtype::BF16 => Kind::BFloat16,
            Dtype::F32 => Kind::Float,
            Dtype::F64 => Kind::Double,
        };
        // A Fortran-order file holds each row's remaining axes reversed (column-major).
        let fortran = file.header().fortran_order;
        let mut dims = self.row_shape.clone();
        if fortran {
            dims.reverse();
        }
        let mut shape = vec![count as i64];
        shape.extend(&dims);
        let t = host::view::fill_new_bytes(shape.as_slice(), kind, |bytes| fill(file, bytes))?;
        Ok(self.shaped(t, fortran, layout))
    }

    /// A block as read (file order, Fortran's axes reversed where `fortran`) as the
    /// pipeline takes it: half precision widened at once (exactly), as the pipeline's own
    /// kernels take float32 and float64; conv layers in NCHW.
    fn shaped(&self, t: Tensor, fortran: bool, layout: Layout) -> Tensor {
        let t = if self.dtype.size() < 4 { t.to_kind(Kind::Float) } else { t };
        let t = if fortran && self.is_conv() { t.permute([0, 3, 2, 1]) } else { t };
        if self.is_conv() {
            layout.to_nchw(&t)
        } else {
            t
        }
    }
}

/// Bytes one value of a file of `dtype` takes once read: as read, and widened to float32
/// where it is narrower ([`Input::read_with`]).
fn held_bytes(dtype: Dtype) -> u64 {
    let size = dtype.size() as u64;
    if size < 4 {
        size + 4
    } else {
        size
    }
}

/// Dense layers go straight into the accumulator; conv layers through their transform.
enum Pipeline {
    Dense,
    // Boxed: one per comparison, so its size does not matter, but the enum's would.
    Conv(Box<ConvComparison>),
}

impl Pipeline {
    fn moments(&self, cols: [i64; 2], device: Device) -> Moments {
        match self {
            Pipeline::Dense => Moments::new(cols[0], cols[1], device),
            Pipeline::Conv(c) => c.moments(device),
        }
    }

    fn transform(&self, side: Side, block: Tensor, first_row: i64) -> Tensor {
        match self {
            Pipeline::Dense => block,
            Pipeline::Conv(c) => c.transform(side, &block, first_row),
        }
    }

    fn finish(&self, moments: Moments, options: &Options) -> Result<(Similarity, Option<ConvReport>), SimilarityError> {
        match self {
            Pipeline::Dense => Ok((similarity::similarity(moments.finish()?, options)?, None)),
            Pipeline::Conv(c) => c.finish(moments, options).map(|(s, r)| (s, Some(r))),
        }
    }

    /// Whether a datapoint's transformed rows depend on it alone (see
    /// [`ConvComparison::by_datapoint`]): a pass in another pairing then leaves each
    /// side's sums as they were.
    fn by_datapoint(&self) -> bool {
        match self {
            Pipeline::Dense => true,
            Pipeline::Conv(c) => c.by_datapoint(),
        }
    }

    /// Whether a pass over the data runs on rayon's threads. Dense layers and the DFT: on
    /// the CPU the pass runs on rayon's threads (rustfft, the shifted copies, faer's
    /// sums), libtorch's steps single-threaded: its idle OpenMP threads would otherwise
    /// spin after each of them, taking the cores from rayon's (see
    /// `host::on_rayon`; benches/records/2026-12-01.md, "The pass over the data on rayon's
    /// threads"). The other conv transforms are libtorch's reductions and copies, which
    /// want its threads; the solve chooses its own by the size of its matrices.
    fn on_rayon(&self) -> bool {
        match self {
            Pipeline::Dense => true,
            Pipeline::Conv(c) => c.is_complex(),
        }
    }

    /// Bytes a block takes per datapoint and per input value: the bytes as read, the
    /// tensor made from them, and the float64 (or complex128 spectrum) working copies.
    fn bytes_per_value(&self, dtype_size: u64) -> u64 {
        match self {
            Pipeline::Dense => 2 * dtype_size + 16,
            Pipeline::Conv(_) => 2 * dtype_size + 48,
        }
    }
}

impl CompareJob {
    pub fn run(&self) -> Result<Report, InputError> {
        let started = Instant::now();
        let mut inputs = [Input::open(&self.a)?, Input::open(&self.b)?];
        let [name_a, name_b] = [inputs[0].name.clone(), inputs[1].name.clone()];
        let rows = inputs[0].rows;
        if rows != inputs[1].rows {
            return Err(InputError::new(format!(
                "{name_a} has {rows} datapoints (rows) but {name_b} has {}: compare activations of the same inputs",
                inputs[1].rows
            )));
        }
        if let Some(b) = self.baseline {
            if b.shuffles < 2 {
                return Err(InputError::new(format!("--baseline {}: a chance level's spread needs at least 2 shuffles", b.shuffles)));
            }
            if rows < 3 {
                return Err(InputError::new(format!(
                    "--baseline: {rows} datapoints can only be swapped, not shuffled: a chance level needs at least 3"
                )));
            }
        }
        let pipeline = self.pipeline(&inputs).map_err(|e| e.naming(&name_a, &name_b))?;
        if let Pipeline::Conv(c) = &pipeline {
            if c.by_summaries(self.options.method) {
                return self.summarised(c, inputs, started);
            }
        }
        let per_row: u64 = inputs
            .iter()
            .map(|i| (i.cols() as u64).saturating_mul(pipeline.bytes_per_value(held_bytes(i.dtype))))
            .fold(0u64, u64::saturating_add);
        let cols = [0, 1].map(|i| inputs[i].cols() as i64);
        let mut moments = pipeline.moments(cols, self.device);
        let mut block = self.memory_budget / per_row.max(1);
        if self.device == Device::Cpu {
            // Past this, larger blocks only cost: each block's float64 copy would be mapped
            // afresh and zeroed page by page by the kernel, where blocks under the
            // allocator's threshold reuse one another's memory: as fast or faster, in about
            // half the peak memory (benches/records/2026-12-01.md, "Products through faer,
            // compare in heap-sized blocks").
            block = block.min(BLOCK_COPY_BYTES / moments.row_bytes().max(1));
        }
        let block = (block as usize).clamp(256.min(rows), rows);
        let blocks = rows.div_ceil(block);
        tracing::info!(
            "comparing {name_a} {:?} with {name_b} {:?} by {}{} on {} in {} block(s) of {block} rows",
            inputs[0].full_shape(),
            inputs[1].full_shape(),
            self.options.method,
            match &pipeline {
                Pipeline::Conv(c) => format!(" (conv: {})", c.describe()),
                Pipeline::Dense => String::new(),
            },
            device::name(self.device),
            blocks
        );
        let progress = progress_bar(rows, blocks);
        let mut timings = Timings::default();
        self.pass(&mut inputs, &pipeline, &mut moments, block, None, &progress, &mut timings)?;
        progress.finish_and_clear();
        // The shuffles' passes feed each side the same rows as this one where rows
        // transform by datapoint: they keep its sides' sums and add only cross products.
        let rematch = (self.baseline.is_some() && pipeline.by_datapoint()).then(|| moments.rematched());
        let t = Instant::now();
        let (similarity, conv) = pipeline.finish(moments, &self.options).map_err(|e| e.naming(&name_a, &name_b))?;
        timings.solve = t.elapsed().as_secs_f64();
        tracing::debug!("{timings:?}");
        let chance = match self.baseline {
            None => None,
            Some(baseline) => {
                let reuse = if rematch.is_some() { "each side's sums reused" } else { "each pass in full" };
                tracing::info!("chance level: {} shuffles of {name_a}'s datapoints ({reuse})", baseline.shuffles);
                Some(self.chance(baseline, rows, similarity.mean, |order| {
                    let mut moments = rematch.as_ref().map_or_else(|| pipeline.moments(cols, self.device), Moments::rematched);
                    // Hidden: the shuffles have their own bar; their time is the chance's.
                    self.pass(&mut inputs, &pipeline, &mut moments, block, Some(order), &ProgressBar::hidden(), &mut Timings::default())?;
                    Ok(pipeline.finish(moments, &self.options).map_err(|e| e.naming(&name_a, &name_b))?.0.mean)
                })?)
            }
        };
        Ok(self.report(similarity, conv, chance, blocks, timings, started))
    }

    /// One pass over the datapoints into `moments`, `block` rows at a time: A's rows in
    /// `order` where given (a shuffle), else in the file's order; B's in the file's.
    #[allow(clippy::too_many_arguments)]
    fn pass(
        &self,
        inputs: &mut [Input; 2],
        pipeline: &Pipeline,
        moments: &mut Moments,
        block: usize,
        order: Option<&[i64]>,
        progress: &ProgressBar,
        timings: &mut Timings,
    ) -> Result<(), InputError> {
        let rows = inputs[0].rows;
        let [name_a, name_b] = [inputs[0].name.clone(), inputs[1].name.clone()];
        let mut pass = || -> Result<(), InputError> {
            let mut start = 0;
            while start < rows {
                let count = block.min(rows - start);
                let t = Instant::now();
                let ta = match order {
                    Some(order) => inputs[0].read_at(&order[start..start + count], self.layout)?,
                    None => inputs[0].read(start, count, self.layout)?,
                };
                let tb = inputs[1].read(start, count, self.layout)?;
                timings.read += t.elapsed().as_secs_f64();
                let t = Instant::now();
                let (ta, tb) = (ta.to_device(self.device), tb.to_device(self.device));
                let first = start as i64;
                let (ta, tb) = (pipeline.transform(Side::A, ta, first), pipeline.transform(Side::B, tb, first));
                timings.transform += t.elapsed().as_secs_f64();
                let t = Instant::now();
                moments.update(&ta, &tb).map_err(|e| e.naming(&name_a, &name_b))?;
                timings.accumulate += t.elapsed().as_secs_f64();
                start += count;
                progress.set_position(start as u64);
            }
            Ok(())
        };
        if pipeline.on_rayon() {
            host::on_rayon(self.device, pass)
        } else {
            pass()
        }
    }

    /// The baseline's shuffles of `rows` datapoints, one at a time (one permuted copy
    /// held at once), each scored by `score` (A's datapoints in the order given, against
    /// B's), and their mean and spread beside `similarity`.
    fn chance(
        &self,
        baseline: Baseline,
        rows: usize,
        similarity: f64,
        mut score: impl FnMut(&[i64]) -> Result<f64, InputError>,
    ) -> Result<Chance, InputError> {
        let started = Instant::now();
        let bar = shuffle_bar(baseline.shuffles);
        let mut similarities = Vec::with_capacity(baseline.shuffles);
        for k in 0..baseline.shuffles {
            similarities.push(score(&baseline.order(k, rows))?);
            bar.inc(1);
        }
        bar.finish_and_clear();
        let (mean, std) = crate::stats::mean_std(&similarities);
        Ok(Chance {
            mean,
            std,
            above: similarity - mean,
            shuffles: baseline.shuffles,
            seed: baseline.seed,
            similarities,
            seconds: started.elapsed().as_secs_f64(),
        })
    }

    /// The report, its warnings logged.
    fn report(
        &self,
        similarity: Similarity,
        conv: Option<ConvReport>,
        chance: Option<Chance>,
        blocks: usize,
        timings: Timings,
        started: Instant,
    ) -> Report {
        let (name_a, name_b) = (self.a.name(), self.b.name());
        let warnings: Vec<String> = similarity
            .warnings
            .iter()
            .map(|w| {
                let name = if w.side == Side::A { &name_a } else { &name_b };
                format!("{name}: {}", w.message)
            })
            .collect();
        for w in &warnings {
            tracing::warn!("{w}");
        }
        Report {
            keep: self.options.keep,
            device: device::name(self.device),
            a: name_a,
            b: name_b,
            conv,
            chance,
            blocks,
            warnings,
            seconds: started.elapsed().as_secs_f64(),
            timings,
            similarity,
        }
    }

    /// A conv layer flattened against a dense one with more neurons than datapoints
    /// (SVCCA, CCA): both files read whole, each layer summarised by the Gram route of
    /// its datapoints (no C*H*W square matrix).
    fn summarised(&self, c: &ConvComparison, mut inputs: [Input; 2], started: Instant) -> Result<Report, InputError> {
        let [name_a, name_b] = [inputs[0].name.clone(), inputs[1].name.clone()];
        let rows = inputs[0].rows;
        tracing::info!(
            "comparing {name_a} {:?} with {name_b} {:?} by {} (conv-dense: flatten, by the datapoints' Gram matrices) on {}, read whole",
            inputs[0].full_shape(),
            inputs[1].full_shape(),
            self.options.method,
            device::name(self.device),
        );
        let mut timings = Timings::default();
        let t = Instant::now();
        let ta = inputs[0].read(0, rows, self.layout)?.to_device(self.device);
        let tb = inputs[1].read(0, rows, self.layout)?.to_device(self.device);
        timings.read = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let naming = |e: SimilarityError| e.naming(&name_a, &name_b);
        let pair = c.summaries(&ta, &tb, &self.options).map_err(naming)?;
        let similarity = pair.similarity().map_err(naming)?;
        timings.solve = t.elapsed().as_secs_f64();
        // The summaries hold what the shuffles need; the files' data can go.
        drop((ta, tb));
        let chance = match self.baseline {
            None => None,
            Some(baseline) => {
                tracing::info!("chance level: {} shuffles of {name_a}'s datapoints (each side's summary reused)", baseline.shuffles);
                Some(self.chance(baseline, rows, similarity.mean, |order| pair.permuted(&Tensor::from_slice(order)).map_err(naming))?)
            }
        };
        Ok(self.report(similarity, Some(c.report()), chance, 1, timings, started))
    }

    /// Dense or conv, from the inputs' ranks and the `--conv` and `--conv-dense` choices.
    fn pipeline(&self, inputs: &[Input; 2]) -> Result<Pipeline, SimilarityError> {
        let sides = [(Side::A, &inputs[0]), (Side::B, &inputs[1])];
        let mixed = inputs[0].is_conv() != inputs[1].is_conv();
        if self.conv_dense.is_some() && !mixed {
            let what = if inputs[0].is_conv() { "both files are 4-D (use --conv)" } else { "both files are 2-D" };
            return Err(SimilarityError::Both(format!("--conv-dense applies to a 4-D (conv) file against a 2-D (dense) one, and {what}")));
        }
        let shapes = [inputs[0].shape(self.layout), inputs[1].shape(self.layout)];
        let rows = inputs[0].rows as i64;
        if mixed {
            let conv = self.conv.unwrap_or_default();
            let dense = match (self.conv_dense, self.conv.map(|c| c.method)) {
                (Some(_), Some(_)) => {
                    return Err(SimilarityError::Both(
                        "--conv applies to two 4-D files: for a 4-D file against a 2-D one pass --conv-dense alone".into(),
                    ))
                }
                (Some(dense), None) => dense,
                // Channel means, as --conv avgpool did before --conv-dense.
                (None, Some(ConvMethod::Avgpool)) => ConvDense::Avgpool,
                (None, method) => {
                    // The dense file for a --conv that needs two conv ones, else the conv file.
                    let side = sides.into_iter().find(|(_, i)| i.is_conv() == method.is_none()).expect("one of each").0;
                    let message = match method {
                        Some(m) => format!(
                            "is 2-D (datapoints x neurons): --conv {} needs 4-D activations on both sides; for a 4-D file against a 2-D one pass --conv-dense flatten or avgpool",
                            format!("{m:?}").to_lowercase()
                        ),
                        None => "is 4-D (conv activations) and the other file 2-D: pass --conv-dense flatten or avgpool (and --layout nhwc if channels come last)".into(),
                    };
                    return Err(SimilarityError::layer(side, message));
                }
            };
            let conv = ConvOptions { dense, ..conv };
            return Ok(Pipeline::Conv(Box::new(ConvComparison::new(shapes, rows, conv, self.options.method)?)));
        }
        let Some(conv) = self.conv else {
            for (side, input) in sides {
                if input.is_conv() {
                    return Err(SimilarityError::layer(
                        side,
                        "is 4-D (conv activations): pass --conv dft, flatten or avgpool (and --layout nhwc if channels come last)",
                    ));
                }
            }
            return Ok(Pipeline::Dense);
        };
        if !inputs[0].is_conv() && !inputs[1].is_conv() {
            return Err(SimilarityError::Both("--conv applies to 4-D (conv) activations, and both files are 2-D".into()));
        }
        Ok(Pipeline::Conv(Box::new(ConvComparison::new(shapes, rows, conv, self.options.method)?)))
    }
}

/// The baseline's bar: one step a shuffle.
fn shuffle_bar(shuffles: usize) -> ProgressBar {
    let bar = ProgressBar::new(shuffles as u64);
    bar.set_style(
        ProgressStyle::with_template("{spinner} chance level [{bar:30}] {pos}/{len} shuffles eta {eta}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar
}

fn progress_bar(rows: usize, blocks: usize) -> ProgressBar {
    if blocks <= 1 {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(rows as u64);
    bar.set_style(
        ProgressStyle::with_template("{spinner} reading [{bar:30}] {human_pos}/{human_len} datapoints {per_sec} eta {eta}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar
}

/// Parses a byte count (`--memory-budget`, Python's `memory_budget`): `1073741824`, `512M`, `2G`, `1.5GiB` (K, M, G, T are powers of
/// 1024, with or without `iB`/`B`).
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let number: f64 = number.parse().map_err(|_| format!("'{text}' is not a size such as 2G, 512M or 1073741824"))?;
    let scale: u64 = match unit.trim().to_ascii_uppercase().trim_end_matches("IB").trim_end_matches('B') {
        "" => 1,
        "K" => 1 << 10,
        "M" => 1 << 20,
        "G" => 1 << 30,
        "T" => 1 << 40,
        _ => return Err(format!("'{text}': unknown unit '{unit}', use K, M, G or T")),
    };
    let bytes = number * scale as f64;
    if bytes.is_nan() || bytes < 1.0 {
        return Err(format!("'{text}' must be at least one byte"));
    }
    Ok(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::parse_bytes;

    #[test]
    fn sizes() {
        assert_eq!(parse_bytes("1024").unwrap(), 1024);
        assert_eq!(parse_bytes("512M").unwrap(), 512 << 20);
        assert_eq!(parse_bytes("2GiB").unwrap(), 2 << 30);
        assert_eq!(parse_bytes("1.5g").unwrap(), 3 << 29);
        assert!(parse_bytes("lots").is_err());
        assert!(parse_bytes("3X").is_err());
        assert!(parse_bytes("0").is_err());
    }
}
