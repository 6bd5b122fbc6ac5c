//! `svcca experiment toy-regression`: the paper's toy regression, its Figures 1 and 3.
//!
//! Two fully connected networks, 1 input → four hidden tanh layers of `width` units → 4
//! linear outputs, from two initialisations (seeds N and N + 1), trained full-batch with
//! Adam on the same four functions of x on an even grid over [-1, 1]: sin(2πx), cos(πx),
//! 2x² − 1 and 2|x| − 1. The nets differ in their initial weights only. Then, on the
//! same grid:
//!
//! - **Figure 1**: one hidden layer of both nets as functions of x, in three bases: each
//!   net's most active neurons (largest mean |activation|, the paper's "neurons with
//!   highest activation"), its top SVD directions (principal components) and its top
//!   SVCCA directions (each side cut to the directions holding `keep` of its variance,
//!   then CCA). Curves are paired by rank between the nets. Net B's partner of net A's
//!   i-th canonical variate is that variate projected onto B's kept subspace (spanned by
//!   B's canonical variates), which correlates with it by exactly the i-th canonical
//!   correlation. Every curve standardised; SVD and SVCCA curves of net B sign-matched to
//!   net A's. For each of A's top neurons the best-matching neuron of B is also reported.
//! - **Figure 3**: net A's output when its last hidden layer is projected onto its top k
//!   SVCCA directions, onto its top k SVD directions, and with its k most active neurons
//!   kept and the others at their mean, for each panel's k (the paper's 2, 6, 15, 30).
//!   The SVCCA directions are counted explicitly, not by a variance rule: each net's
//!   layer is cut to its top `figure3_svd` principal directions (30: the largest panel),
//!   CCA against net B's pairs them, and a panel keeps the k most correlated. (The 99%
//!   variance cut of Figure 1 keeps 5 directions of this layer, too few for the panels
//!   of 6, 15 and 30.) The error is relative: `|out_k − out|² / |out − mean(out)|²`: 1
//!   with nothing kept, 0 with everything.
//!
//! Files in OUT: `loss.csv` (training loss of both nets), `figure1.csv` (the Figure 1
//! curves), `correlations.csv` (every hidden layer's top pairs in each basis),
//! `figure3.csv` (targets, output and projected outputs), `figure3_errors.csv` (the error
//! at every k), `summary.json`, and `plots/figure1.{png,svg}`, `plots/figure3.{png,svg}`.

use crate::error::InputError;
use crate::similarity::{directions, most_active, Fitted, Keep};
use serde::Serialize;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Instant;
use tch::nn::{self, Module, OptimizerConfig};
use tch::{Device, Kind, Tensor};

/// Hidden layers of each net (the paper's four).
pub const HIDDEN_LAYERS: usize = 4;
/// The four targets, in output order.
pub const TARGETS: [&str; 4] = ["sin(2 pi x)", "cos(pi x)", "2x^2 - 1", "2|x| - 1"];
/// Most points drawn per curve in the plots (the CSV files have every point).
const PLOTTED: usize = 250;
const F64: (Kind, Device) = (Kind::Double, Device::Cpu);

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Settings {
    /// Net A starts from this seed, net B from the next.
    pub seed: u64,
    /// Units per hidden layer.
    pub width: usize,
    /// Grid points over [-1, 1]: the training set and the datapoints of every comparison.
    pub points: usize,
    /// Full-batch Adam steps.
    pub steps: usize,
    pub learning_rate: f64,
    /// The hidden layer of Figure 1 (1 to 4).
    pub layer: usize,
    /// Curves per basis in Figure 1.
    pub shown: usize,
    /// SVCCA's cut in Figure 1 and the per-layer summaries: each side keeps the fewest
    /// principal directions holding this fraction of its variance (the paper's 0.99).
    pub keep: f64,
    /// SVCCA's cut in Figure 3: each side keeps exactly this many principal directions,
    /// of which the panels take the top k by canonical correlation (at least the
    /// largest k).
    pub figure3_svd: usize,
    /// The k of Figure 3's panels.
    pub ks: Vec<usize>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            seed: 0,
            width: 50,
            points: 500,
            steps: 2000,
            learning_rate: 2e-3,
            layer: 4,
            shown: 4,
            keep: 0.99,
            figure3_svd: 30,
            ks: vec![2, 6, 15, 30],
        }
    }
}

impl Settings {
    /// Refuses what cannot run, naming the flag.
    pub fn check(&self) -> Result<(), InputError> {
        let bad = |m: String| Err(InputError::new(m));
        if self.seed == u64::MAX {
            return bad(format!("--seed: at most {} (net B uses the next seed)", u64::MAX - 1));
        }
        if self.width < 2 {
            return bad(format!("--width {}: give at least 2 units per hidden layer", self.width));
        }
        if self.points < 2 * self.width {
            return bad(format!(
                "--points {}: give at least twice --width ({}), so that a layer's directions are seen on more points than it has units",
                self.points,
                2 * self.width
            ));
        }
        if self.steps == 0 {
            return bad("--steps: give at least 1 training step".into());
        }
        if !(self.learning_rate.is_finite() && self.learning_rate > 0.0) {
            return bad(format!("--learning-rate {}: give a positive number", self.learning_rate));
        }
        if !(1..=HIDDEN_LAYERS).contains(&self.layer) {
            return bad(format!("--layer {}: the hidden layers are 1 to {HIDDEN_LAYERS}", self.layer));
        }
        if self.shown == 0 || self.shown > self.width {
            return bad(format!("--shown {}: give 1 to --width ({})", self.shown, self.width));
        }
        if !(self.keep > 0.0 && self.keep <= 1.0) {
            return bad(format!("--keep {}: give a fraction of the variance, above 0 and at most 1", self.keep));
        }
        if self.ks.is_empty() {
            return bad("--ks: give at least one number of directions".into());
        }
        if let Some(k) = self.ks.iter().find(|&&k| k > self.width) {
            return bad(format!("--ks: {k} directions asked of a layer of --width {} units", self.width));
        }
        if self.figure3_svd == 0 {
            return bad("--figure3-svd: give at least 1 direction".into());
        }
        if self.figure3_svd > self.width {
            return bad(format!(
                "--figure3-svd {}: a layer of --width {} units has at most that many directions",
                self.figure3_svd, self.width
            ));
        }
        if let Some(k) = self.ks.iter().find(|&&k| k > self.figure3_svd) {
            return bad(format!(
                "--ks: {k} SVCCA directions asked of the {} that --figure3-svd keeps; raise --figure3-svd to at least {k}",
                self.figure3_svd
            ));
        }
        Ok(())
    }
}

/// The grid of `points` inputs over [-1, 1], points x 1.
pub(crate) fn grid(points: usize) -> Tensor {
    Tensor::linspace(-1.0, 1.0, points as i64, F64).unsqueeze(1)
}

/// The four targets of `x` (points x 1): points x 4, in the order of [`TARGETS`].
pub(crate) fn targets(x: &Tensor) -> Tensor {
    let pi = std::f64::consts::PI;
    Tensor::cat(&[(x * (2.0 * pi)).sin(), (x * pi).cos(), x.square() * 2.0 - 1.0, x.abs() * 2.0 - 1.0], 1)
}

/// One of the two networks (float64, CPU).
#[derive(Debug)]
pub(crate) struct Net {
    vs: nn::VarStore,
    hidden: Vec<nn::Linear>,
    readout: nn::Linear,
}

impl Net {
    /// A fresh net, its initial weights drawn from `seed` (libtorch's default initialisation).
    pub(crate) fn new(seed: u64, width: usize) -> Net {
        crate::device::seed(seed);
        let mut vs = nn::VarStore::new(Device::Cpu);
        vs.set_kind(Kind::Double);
        let root = vs.root();
        let w = width as i64;
        let hidden = (0..HIDDEN_LAYERS)
            .map(|i| nn::linear(&root / format!("h{}", i + 1), if i == 0 { 1 } else { w }, w, Default::default()))
            .collect();
        let readout = nn::linear(&root / "out", w, TARGETS.len() as i64, Default::default());
        Net { vs, hidden, readout }
    }

    /// The hidden layers' outputs (points x width each, input first) and the output
    /// (points x 4) for inputs `x` (points x 1).
    pub(crate) fn forward(&self, x: &Tensor) -> (Vec<Tensor>, Tensor) {
        let mut h = x.shallow_clone();
        let mut layers = Vec::with_capacity(self.hidden.len());
        for l in &self.hidden {
            h = l.forward(&h).tanh();
            layers.push(h.shallow_clone());
        }
        let out = self.readout.forward(&h);
        (layers, out)
    }

    /// The output from the last hidden layer's values (points x width).
    pub(crate) fn readout(&self, last_hidden: &Tensor) -> Tensor {
        self.readout.forward(last_hidden)
    }

    /// Full-batch Adam on the mean squared error for `steps` steps; the loss at step 1,
    /// every 50 steps and the last, as `(step, loss)`. `tick(steps done)` after each
    /// recorded step. An error on a non-finite loss.
    pub(crate) fn train(
        &self,
        x: &Tensor,
        y: &Tensor,
        steps: usize,
        lr: f64,
        mut tick: impl FnMut(usize),
    ) -> anyhow::Result<Vec<(usize, f64)>> {
        let mut opt = nn::Adam::default().build(&self.vs, lr)?;
        let mut losses = Vec::new();
        for step in 1..=steps {
            let loss = (self.forward(x).1 - y).square().mean(Kind::Double);
            opt.backward_step(&loss);
            if step == 1 || step % 50 == 0 || step == steps {
                let l = f64::try_from(&loss)?;
                if !l.is_finite() {
                    anyhow::bail!("the training loss is {l} at step {step}; try a smaller --learning-rate");
                }
                losses.push((step, l));
                tick(step);
            }
        }
        Ok(losses)
    }
}

/// The three bases of the figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Basis {
    Svcca,
    Svd,
    Neurons,
}

impl Basis {
    pub const ALL: [Basis; 3] = [Basis::Svcca, Basis::Svd, Basis::Neurons];

    pub fn as_str(self) -> &'static str {
        match self {
            Basis::Svcca => "svcca",
            Basis::Svd => "svd",
            Basis::Neurons => "neurons",
        }
    }

    fn describe(self, k: usize) -> String {
        match self {
            Basis::Svcca => format!("top {k} SVCCA directions"),
            Basis::Svd => format!("top {k} SVD directions"),
            Basis::Neurons => format!("top {k} neurons"),
        }
    }
}

/// One curve of net A and its counterpart in net B (Figure 1).
#[derive(Debug, Clone, Serialize)]
pub struct Pair {
    pub basis: Basis,
    /// 1 for the top one.
    pub rank: usize,
    /// The neurons compared (neurons basis only; 0-based).
    pub neuron_a: Option<usize>,
    pub neuron_b: Option<usize>,
    /// |Pearson correlation| of the two curves over the grid.
    pub correlation: f64,
    /// Neurons: the largest |correlation| of net A's neuron with any neuron of net B.
    pub best_match: Option<f64>,
    /// Net A's curve and net B's, standardised (directions: B's sign matched to A's).
    #[serde(skip)]
    pub a: Vec<f64>,
    #[serde(skip)]
    pub b: Vec<f64>,
}

/// The top `shown` pairs in each basis of one layer of two nets (points x width each,
/// the same points), SVCCA keeping `keep` of each side's variance; also the SVCCA
/// directions kept on each side.
pub(crate) fn pairs(a: &Tensor, b: &Tensor, shown: usize, keep: f64) -> anyhow::Result<(Vec<Pair>, (usize, usize))> {
    let (a, b) = (a.to_kind(Kind::Double), b.to_kind(Kind::Double));
    let mut out = Vec::new();

    // SVCCA: A's canonical variates, and their projections onto B's kept subspace (B's
    // canonical variates have orthonormal columns spanning it).
    let keep = Keep::Variance(keep);
    let da = directions(&a, &b, keep)?;
    let db = directions(&b, &a, keep)?;
    let r = da.correlations.len();
    let za = (&a - &da.mean).matmul(&da.weights.narrow(1, 0, r as i64));
    let zb = (&b - &db.mean).matmul(&db.weights);
    let partner = zb.matmul(&zb.tr().matmul(&za));
    let (za, partner) = (columns(&za), columns(&partner));
    for i in 0..shown.min(r) {
        out.push(pair(Basis::Svcca, i + 1, None, &za[i], &partner[i]));
    }

    // SVD: principal components, by rank.
    let (sa, sb) = (columns(&principal_components(&a)), columns(&principal_components(&b)));
    for i in 0..shown.min(sa.len()).min(sb.len()) {
        out.push(pair(Basis::Svd, i + 1, None, &sa[i], &sb[i]));
    }

    // Neurons: each net's by mean absolute activation (the paper's "neurons with highest
    // activation"), paired by rank; and the neuron of B most correlated with A's.
    let (na, nb) = (columns(&a), columns(&b));
    let (oa, ob) = (most_active(&a), most_active(&b));
    for i in 0..shown.min(na.len()).min(nb.len()) {
        let (n, m) = (oa[i] as usize, ob[i] as usize);
        let mut p = pair(Basis::Neurons, i + 1, Some((n, m)), &na[n], &nb[m]);
        // A neuron's sign is not arbitrary: drawn as it is.
        p.b = standardised(&nb[m]);
        p.best_match = nb.iter().map(|c| correlation(&na[n], c).abs()).max_by(f64::total_cmp);
        out.push(p);
    }
    Ok((out, (da.len(), db.len())))
}

fn pair(basis: Basis, rank: usize, neurons: Option<(usize, usize)>, a: &[f64], b: &[f64]) -> Pair {
    let c = correlation(a, b);
    let sign = if c < 0.0 { -1.0 } else { 1.0 };
    Pair {
        basis,
        rank,
        neuron_a: neurons.map(|n| n.0),
        neuron_b: neurons.map(|n| n.1),
        correlation: c.abs(),
        best_match: None,
        a: standardised(a),
        b: standardised(b).into_iter().map(|v| sign * v).collect(),
    }
}

/// The scores of the centred layer on its principal directions, largest variance first.
fn principal_components(t: &Tensor) -> Tensor {
    let c = t - t.mean_dim(0, true, Kind::Double);
    let (_, _, v) = c.svd(true, true);
    c.matmul(&v)
}

/// The columns of a points x m float64 matrix.
fn columns(t: &Tensor) -> Vec<Vec<f64>> {
    let n = t.size()[0] as usize;
    let flat = Vec::<f64>::try_from(t.to_kind(Kind::Double).tr().contiguous().view(-1)).expect("a float64 tensor");
    flat.chunks(n.max(1)).map(<[f64]>::to_vec).collect()
}

fn mean_var(v: &[f64]) -> (f64, f64) {
    let n = v.len().max(1) as f64;
    let m = v.iter().sum::<f64>() / n;
    (m, v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / n)
}

/// Pearson correlation; 0 when either side is constant.
pub(crate) fn correlation(a: &[f64], b: &[f64]) -> f64 {
    let ((ma, va), (mb, vb)) = (mean_var(a), mean_var(b));
    if va <= 0.0 || vb <= 0.0 {
        return 0.0;
    }
    let cov = a.iter().zip(b).map(|(x, y)| (x - ma) * (y - mb)).sum::<f64>() / a.len() as f64;
    (cov / (va * vb).sqrt()).clamp(-1.0, 1.0)
}

fn standardised(v: &[f64]) -> Vec<f64> {
    let (m, var) = mean_var(v);
    let s = if var > 0.0 { var.sqrt() } else { 1.0 };
    v.iter().map(|x| (x - m) / s).collect()
}

/// A layer's projections onto its top k directions in each basis (Figure 3): the SVCCA
/// directions and the most active neurons from [`Fitted`] (as compression's), the SVD
/// basis its own. The projections stay in float64, the centred layer times a projection
/// plus the mean (the neurons basis: the other neurons' centred values zeroed), where
/// compression's maps round to the layer's float32 and keep neurons by selection.
#[derive(Debug)]
pub(crate) struct Projector {
    centred: Tensor,
    fitted: Fitted,
    /// Principal directions, width x width, largest variance first.
    svd: Tensor,
}

impl Projector {
    /// For layer `h` (points x width), its SVCCA directions against `reference` (the same
    /// points), each side cut by `keep` before CCA (Figure 3: [`Keep::TopK`]).
    pub(crate) fn new(h: &Tensor, reference: &Tensor, keep: Keep) -> anyhow::Result<Projector> {
        let fitted = Fitted::fit(h, reference, keep)?;
        let centred = h.to_kind(Kind::Double) - &fitted.directions.mean;
        let (_, _, svd) = centred.svd(true, true);
        Ok(Projector { centred, fitted, svd })
    }

    /// The canonical correlations of the SVCCA directions, descending.
    pub(crate) fn correlations(&self) -> &[f64] {
        &self.fitted.directions.correlations
    }

    /// The most directions (or neurons) `basis` can keep.
    pub(crate) fn most(&self, basis: Basis) -> usize {
        match basis {
            Basis::Svcca => self.fitted.directions.len(),
            Basis::Svd | Basis::Neurons => self.fitted.units(),
        }
    }

    /// The layer with only its top `k` directions of `basis` (k ≤ [`Projector::most`]):
    /// the mean plus the centred layer projected; for neurons, the other neurons at their mean.
    pub(crate) fn project(&self, basis: Basis, k: usize) -> Tensor {
        assert!(k <= self.most(basis), "{k} of {} {}", self.most(basis), basis.as_str());
        let projected = match basis {
            Basis::Svcca => self.centred.matmul(&self.fitted.directions.projection(k)),
            Basis::Svd => {
                let v = self.svd.narrow(1, 0, k as i64);
                self.centred.matmul(&v).matmul(&v.tr())
            }
            Basis::Neurons => {
                let mask = Tensor::zeros([self.fitted.units() as i64], F64);
                let kept = Tensor::from_slice(&self.fitted.active[..k]);
                let mask = mask.index_fill(0, &kept, 1.0);
                &self.centred * mask.unsqueeze(0)
            }
        };
        projected + &self.fitted.directions.mean
    }
}

/// `|got − full|² / |full − mean(full)|²` over every point and output.
pub(crate) fn relative_error(got: &Tensor, full: &Tensor) -> f64 {
    let num = f64::try_from((got - full).square().sum(Kind::Double)).unwrap_or(f64::NAN);
    let den = f64::try_from((full - full.mean_dim(0, true, Kind::Double)).square().sum(Kind::Double)).unwrap_or(f64::NAN);
    num / den.max(f64::MIN_POSITIVE)
}

fn mse(a: &Tensor, b: &Tensor) -> f64 {
    f64::try_from((a - b).square().mean(Kind::Double)).unwrap_or(f64::NAN)
}

/// One point of Figure 3's error curves.
#[derive(Debug, Clone, Serialize)]
pub struct ErrorPoint {
    pub basis: Basis,
    /// Directions (or neurons) kept.
    pub k: usize,
    /// Relative to the unprojected output ([`relative_error`]).
    pub relative_error: f64,
    /// Mean squared error of the projected output against the targets.
    pub mse_to_targets: f64,
}

/// One panel of Figure 3: the output with the top `k` directions of `basis` kept.
#[derive(Debug, Clone, Serialize)]
pub struct Figure3Panel {
    pub basis: Basis,
    pub k: usize,
    pub relative_error: f64,
}

/// Mean |correlation| between the nets of one layer's top pairs in each basis.
#[derive(Debug, Clone, Serialize)]
pub struct LayerSummary {
    /// 1 to 4.
    pub layer: usize,
    /// SVCCA directions kept in net A and net B.
    pub kept_a: usize,
    pub kept_b: usize,
    pub svcca: f64,
    pub svd: f64,
    /// The most active neurons paired by rank.
    pub neurons: f64,
    /// Each of A's most active neurons against the neuron of B most correlated with it.
    pub neurons_best_match: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub settings: Settings,
    /// Final training loss (mean squared error) of net A and net B.
    pub final_loss: [f64; 2],
    /// Every hidden layer's mean correlations (Figure 1 draws `settings.layer`).
    pub layers: Vec<LayerSummary>,
    /// The Figure 1 layer's pairs.
    pub figure1: Vec<Pair>,
    /// Figure 3's canonical correlations between the nets' last hidden layers, each cut
    /// to its top `figure3_svd` principal directions, descending: the SVCCA panels keep
    /// the directions of the first k.
    pub figure3_correlations: Vec<f64>,
    pub figure3: Vec<Figure3Panel>,
    /// The error at every k (`figure3_errors.csv`).
    #[serde(skip)]
    pub errors: Vec<ErrorPoint>,
    pub seconds: f64,
}

impl Summary {
    /// The error of `basis` at `k`, if measured.
    pub fn error(&self, basis: Basis, k: usize) -> Option<f64> {
        self.errors.iter().find(|e| e.basis == basis && e.k == k).map(|e| e.relative_error)
    }

    /// Hidden layer `layer` (1 to 4).
    pub fn layer(&self, layer: usize) -> &LayerSummary {
        &self.layers[layer - 1]
    }
}

/// Trains both nets, compares them and writes the files and figures into `out`.
pub fn run(settings: &Settings, out: &Path) -> anyhow::Result<Summary> {
    settings.check()?;
    // The toy nets are small float64 work: always on the CPU (no CUDA backend loaded).
    crate::device::DeviceChoice::Cpu.resolve()?;
    let started = Instant::now();
    let _lock = crate::run_dir::lock(out, crate::run_dir::Access::Exclusive)?;
    let s = settings;
    // One thread: the matrices are small, and a second thread only contends.
    let one = crate::host::LibtorchOnOneThread::new();
    let result = train_and_compare(s, out);
    drop(one);
    let summary = result?;
    let summary = Summary { seconds: started.elapsed().as_secs_f64(), ..summary };
    crate::io::write_json_atomic(&out.join("summary.json"), &summary)?;
    Ok(summary)
}

fn train_and_compare(s: &Settings, out: &Path) -> anyhow::Result<Summary> {
    let x = grid(s.points);
    let y = targets(&x);
    let (nets, losses) = train_both(s, &x, &y)?;
    let final_loss = [losses[0].last().map_or(f64::NAN, |p| p.1), losses[1].last().map_or(f64::NAN, |p| p.1)];

    let _guard = tch::no_grad_guard();
    let (ha, out_a) = nets[0].forward(&x);
    let (hb, _) = nets[1].forward(&x);

    // Figure 1's comparison, for every hidden layer.
    let mut layers = Vec::new();
    let mut figure1 = Vec::new();
    let mut corr_csv = String::from("layer,basis,rank,neuron_a,neuron_b,correlation,best_match\n");
    for l in 0..HIDDEN_LAYERS {
        let (ps, (kept_a, kept_b)) = pairs(&ha[l], &hb[l], s.shown, s.keep)?;
        let mean = |b: Basis, f: fn(&Pair) -> f64| {
            let c: Vec<f64> = ps.iter().filter(|p| p.basis == b).map(f).collect();
            c.iter().sum::<f64>() / c.len().max(1) as f64
        };
        for p in &ps {
            let n = |v: Option<usize>| v.map_or(String::new(), |v| v.to_string());
            let best = p.best_match.map_or(String::new(), |v| format!("{v:.6}"));
            let _ = writeln!(
                corr_csv,
                "{},{},{},{},{},{:.6},{best}",
                l + 1,
                p.basis.as_str(),
                p.rank,
                n(p.neuron_a),
                n(p.neuron_b),
                p.correlation
            );
        }
        let summary = LayerSummary {
            layer: l + 1,
            kept_a,
            kept_b,
            svcca: mean(Basis::Svcca, |p| p.correlation),
            svd: mean(Basis::Svd, |p| p.correlation),
            neurons: mean(Basis::Neurons, |p| p.correlation),
            neurons_best_match: mean(Basis::Neurons, |p| p.best_match.unwrap_or(0.0)),
        };
        tracing::info!(
            "hidden layer {}: mean |correlation| between the nets of the top {}: SVCCA directions {:.3} ({} and {} kept), SVD directions {:.3}, neurons {:.3} (best-matching neurons {:.3})",
            l + 1,
            s.shown,
            summary.svcca,
            kept_a,
            kept_b,
            summary.svd,
            summary.neurons,
            summary.neurons_best_match
        );
        layers.push(summary);
        if l + 1 == s.layer {
            figure1 = ps;
        }
    }

    // Figure 3: net A's last hidden layer projected.
    let last = HIDDEN_LAYERS - 1;
    for (net, h) in [("A", &ha[last]), ("B", &hb[last])] {
        let (_, rank) = crate::similarity::principal_variances(h)?;
        if rank < s.figure3_svd {
            return Err(InputError::new(format!(
                "--figure3-svd {}: net {net}'s last hidden layer holds {rank} directions above rounding noise; give at most {rank}",
                s.figure3_svd
            ))
            .into());
        }
    }
    let proj = Projector::new(&ha[last], &hb[last], Keep::TopK(s.figure3_svd))?;
    let mut errors = Vec::new();
    for basis in Basis::ALL {
        for k in 0..=proj.most(basis) {
            let o = nets[0].readout(&proj.project(basis, k));
            errors.push(ErrorPoint { basis, k, relative_error: relative_error(&o, &out_a), mse_to_targets: mse(&o, &y) });
        }
    }
    let mut figure3 = Vec::new();
    for basis in Basis::ALL {
        for &k in &s.ks {
            // Every k is within what each basis keeps (checked with the settings).
            let e = errors.iter().find(|e| e.basis == basis && e.k == k).map_or(f64::NAN, |e| e.relative_error);
            tracing::info!("figure 3: {}: output error {:.2}% of its variance", basis.describe(k), 100.0 * e);
            figure3.push(Figure3Panel { basis, k, relative_error: e });
        }
    }

    let summary = Summary {
        settings: s.clone(),
        final_loss,
        layers,
        figure1,
        figure3_correlations: proj.correlations().to_vec(),
        figure3,
        errors,
        seconds: 0.0,
    };
    write_files(&summary, &Curves { x: &x, y: &y, out: &out_a, losses: &losses }, &nets[0], &proj, &corr_csv, out)?;
    Ok(summary)
}

/// Both nets trained, with their losses.
type Trained = ([Net; 2], Vec<Vec<(usize, f64)>>);

fn train_both(s: &Settings, x: &Tensor, y: &Tensor) -> anyhow::Result<Trained> {
    let nets = [Net::new(s.seed, s.width), Net::new(s.seed + 1, s.width)];
    let bar = indicatif::ProgressBar::new(2 * s.steps as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} training steps (2 nets) [{elapsed_precise} < {eta_precise}]")
            .expect("a valid template"),
    );
    let mut losses = Vec::new();
    for (i, net) in nets.iter().enumerate() {
        let l = net.train(x, y, s.steps, s.learning_rate, |step| bar.set_position((i * s.steps + step) as u64))?;
        bar.suspend(|| {
            tracing::info!(
                "net {} (seed {}): training loss {:.2e} after {} steps",
                ["A", "B"][i],
                s.seed + i as u64,
                l.last().map_or(f64::NAN, |p| p.1),
                s.steps
            )
        });
        losses.push(l);
    }
    bar.finish_and_clear();
    Ok((nets, losses))
}

/// What the CSV files and figures are drawn from.
struct Curves<'a> {
    x: &'a Tensor,
    y: &'a Tensor,
    /// Net A's output.
    out: &'a Tensor,
    losses: &'a [Vec<(usize, f64)>],
}

/// Every `step`-th of `n` indices, the last included: the points a plot draws.
fn plotted(n: usize) -> Vec<usize> {
    let step = n.div_ceil(PLOTTED).max(1);
    let mut idx: Vec<usize> = (0..n).step_by(step).collect();
    if idx.last() != Some(&(n - 1)) {
        idx.push(n - 1);
    }
    idx
}

fn write_files(s: &Summary, c: &Curves, net: &Net, proj: &Projector, corr_csv: &str, out: &Path) -> anyhow::Result<()> {
    use crate::report::panels::{panel_grid, Line, Panel};
    let set = &s.settings;
    let write = |name: &str, text: &str| crate::io::write_atomic(&out.join(name), text.as_bytes());
    let xs = columns(c.x).remove(0);
    let idx = plotted(xs.len());
    let curve = |v: &[f64]| idx.iter().map(|&i| (xs[i], v[i])).collect::<Vec<_>>();
    let plots = out.join(crate::report::FOLDER);

    let mut loss = String::from("step,loss_a,loss_b\n");
    for (a, b) in c.losses[0].iter().zip(&c.losses[1]) {
        let _ = writeln!(loss, "{},{:.6e},{:.6e}", a.0, a.1, b.1);
    }
    write("loss.csv", &loss)?;
    write("correlations.csv", corr_csv)?;

    // Figure 1: a row per basis (the paper's order), net A left, net B right, one colour
    // per rank.
    let mut head = String::from("x");
    for p in &s.figure1 {
        let _ = write!(head, ",{b}{r}_a,{b}{r}_b", b = p.basis.as_str(), r = p.rank);
    }
    let mut csv = head + "\n";
    for (i, xv) in xs.iter().enumerate() {
        let _ = write!(csv, "{xv:.6}");
        for p in &s.figure1 {
            let _ = write!(csv, ",{:.6},{:.6}", p.a[i], p.b[i]);
        }
        csv.push('\n');
    }
    write("figure1.csv", &csv)?;
    let mut panels = Vec::new();
    for basis in [Basis::Neurons, Basis::Svd, Basis::Svcca] {
        let row: Vec<&Pair> = s.figure1.iter().filter(|p| p.basis == basis).collect();
        let what = match basis {
            Basis::Neurons => format!("{} most active neurons", row.len()),
            Basis::Svd => format!("top {} SVD directions", row.len()),
            Basis::Svcca => format!("top {} SVCCA directions", row.len()),
        };
        let lines = |b: bool| {
            row.iter()
                .map(|p| Line {
                    label: format!("rank {}", p.rank),
                    colour: p.rank - 1,
                    faint: false,
                    points: curve(if b { &p.b } else { &p.a }),
                })
                .collect()
        };
        let r: Vec<String> = row.iter().map(|p| format!("{:.2}", p.correlation)).collect();
        panels.push(Panel { title: format!("net A: {what}"), lines: lines(false) });
        panels.push(Panel { title: format!("net B: {what}; |r| with A's: {}", r.join(", ")), lines: lines(true) });
    }
    let caption = format!(
        "Figure 1: hidden layer {} of two nets (seeds {}, {}) against x, each curve standardised",
        set.layer,
        set.seed,
        set.seed + 1
    );
    panel_grid(&plots, "figure1", &caption, 2, (540, 250), &panels, "x")?;

    // Figure 3: a row per basis, a column per k.
    let outputs: Vec<(&Figure3Panel, Tensor)> = s.figure3.iter().map(|f| (f, net.readout(&proj.project(f.basis, f.k)))).collect();
    let (yc, oc) = (columns(c.y), columns(c.out));
    let mut head = String::from("x");
    for t in 1..=TARGETS.len() {
        let _ = write!(head, ",target_{t}");
    }
    for t in 1..=TARGETS.len() {
        let _ = write!(head, ",network_{t}");
    }
    for (f, _) in &outputs {
        for t in 1..=TARGETS.len() {
            let _ = write!(head, ",{}_k{}_{t}", f.basis.as_str(), f.k);
        }
    }
    let projected: Vec<Vec<Vec<f64>>> = outputs.iter().map(|(_, o)| columns(o)).collect();
    let mut csv = head + "\n";
    for (i, xv) in xs.iter().enumerate() {
        let _ = write!(csv, "{xv:.6}");
        for col in yc.iter().chain(&oc).chain(projected.iter().flatten()) {
            let _ = write!(csv, ",{:.6}", col[i]);
        }
        csv.push('\n');
    }
    write("figure3.csv", &csv)?;
    let mut errs = String::from("basis,k,relative_error,mse_to_targets\n");
    for e in &s.errors {
        let _ = writeln!(errs, "{},{},{:.6e},{:.6e}", e.basis.as_str(), e.k, e.relative_error, e.mse_to_targets);
    }
    write("figure3_errors.csv", &errs)?;
    let mut panels = Vec::new();
    for ((f, _), cols) in outputs.iter().zip(&projected) {
        let mut lines: Vec<Line> =
            oc.iter().enumerate().map(|(t, v)| Line { label: String::new(), colour: t, faint: true, points: curve(v) }).collect();
        lines.extend(cols.iter().enumerate().map(|(t, v)| Line { label: TARGETS[t].into(), colour: t, faint: false, points: curve(v) }));
        let what = match f.basis {
            Basis::Svcca => format!("top {} of {} SVCCA directions", f.k, set.figure3_svd),
            basis => basis.describe(f.k),
        };
        panels.push(Panel { title: format!("{what}: error {:.2}%", 100.0 * f.relative_error), lines });
    }
    let caption = format!(
        "Figure 3: net A's output (faint: unprojected) with its last hidden layer ({} units) projected onto its top k directions",
        set.width
    );
    panel_grid(&plots, "figure3", &caption, set.ks.len(), (330, 250), &panels, "x")?;
    Ok(())
}

#[cfg(test)]
mod tests;
