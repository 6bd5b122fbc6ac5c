//! `svcca compare A B` (`.npy`, safetensors or torch.save files)

use super::choice;
use crate::compare::{Report, Settings, Spelling};
use crate::device::DeviceChoice;
use crate::similarity::{ConvDense, ConvMethod, ConvOptions, DftCut, Keep, KeepRule, Layout, Method};
use clap::Args;
use std::io::Write;
use std::path::PathBuf;

#[derive(Debug, Args)]
pub(super) struct CompareArgs {
    /// First layer: .npy, FILE.safetensors[:TENSOR] or a torch.save file FILE.pt[:NAME];
    /// datapoints x neurons (or 4-D with --conv).
    a: PathBuf,
    /// Second layer: the same datapoints, in the same order.
    b: PathBuf,
    /// Similarity measure.
    #[arg(long, value_parser = choice::<Method>(), default_value_t = Method::Svcca)]
    method: Method,
    /// SVCCA: keep the fewest top directions holding this fraction (of the variance, or
    /// of the singular values' sum with --keep-rule singular; default 0.99).
    #[arg(long, value_name = "FRACTION", conflicts_with = "top_k")]
    keep: Option<f64>,
    /// SVCCA: what --keep is a fraction of: the variance (squared singular values, the
    /// paper's main text; default) or the sum of the singular values (its Appendix A).
    #[arg(long, value_parser = choice::<KeepRule>(), value_name = "RULE", conflicts_with = "top_k")]
    keep_rule: Option<KeepRule>,
    /// SVCCA: keep exactly the top K directions on each side.
    #[arg(long, value_name = "K")]
    top_k: Option<usize>,
    /// Conv layers (two 4-D inputs): the DFT method, positions as datapoints, or pooling.
    #[arg(long, value_parser = choice::<ConvMethod>(), value_name = "METHOD")]
    conv: Option<ConvMethod>,
    /// A 4-D input against a 2-D one: the conv layer as C*H*W neurons (flatten), or its
    /// channel means (avgpool; what --conv avgpool alone does).
    #[arg(long, value_parser = choice::<ConvDense>(), value_name = "HOW")]
    conv_dense: Option<ConvDense>,
    /// Axis order of 4-D inputs: nchw (PyTorch) or nhwc (TensorFlow, numpy).
    #[arg(long, value_parser = choice::<Layout>(), default_value_t = Layout::Nchw)]
    layout: Layout,
    /// --conv dft with SVCCA: cut over every frequency's directions together (global, the
    /// cut SVCCA makes on the flattened layer; default) or per frequency.
    #[arg(long, value_parser = choice::<DftCut>(), value_name = "CUT", default_value_t = DftCut::Global)]
    dft_cut: DftCut,
    /// --conv flatten: keep at most this many datapoints (positions are subsampled).
    #[arg(long, value_name = "N", default_value_t = ConvOptions::default().max_datapoints)]
    max_datapoints: usize,
    /// Seed of the random draws: --conv flatten's position subsampling, --baseline's
    /// shuffles.
    #[arg(long, default_value_t = ConvOptions::default().seed)]
    seed: u64,
    /// The chance level beside the similarity: the same comparison with A's datapoints
    /// (rows) shuffled against B's, N times (--baseline alone: 5; at least 2), reported as
    /// the shuffles' mean and standard deviation and the similarity minus that mean.
    #[arg(long, value_name = "N", num_args = 0..=1, require_equals = true, default_missing_value = "5")]
    baseline: Option<usize>,
    /// Where to compute: auto takes a GPU when there is one.
    #[arg(long, value_name = "cpu|cuda[:N]|auto", default_value_t = DeviceChoice::Auto)]
    device: DeviceChoice,
    /// Host memory the data may take; larger files are streamed in blocks (e.g. 512M, 4G).
    #[arg(long, value_name = "BYTES", default_value = "2G", value_parser = crate::compare::parse_bytes)]
    memory_budget: u64,
    /// Print one JSON object on stdout instead of a summary.
    #[arg(long)]
    json: bool,
}

impl CompareArgs {
    pub(super) fn run(self) -> anyhow::Result<()> {
        let settings = Settings {
            method: self.method,
            keep: self.keep,
            keep_rule: self.keep_rule,
            top_k: self.top_k,
            conv: self.conv,
            conv_dense: self.conv_dense,
            layout: self.layout,
            dft_cut: self.dft_cut,
            max_datapoints: self.max_datapoints,
            seed: self.seed,
            baseline: self.baseline,
            device: self.device,
            memory_budget: self.memory_budget,
        };
        let job = settings.job(self.a.into(), self.b.into(), Spelling::Cli)?;
        let report = job.run()?;
        let mut out = std::io::stdout().lock();
        let written = if self.json { writeln!(out, "{}", serde_json::to_string(&report)?) } else { write_summary(&mut out, &report) };
        super::ignore_broken_pipe(written)
    }
}

fn write_summary(out: &mut impl Write, r: &Report) -> std::io::Result<()> {
    let s = &r.similarity;
    let what = match s.method {
        Method::Svcca | Method::Cca => format!("mean of {} canonical correlations", s.correlations.len()),
        Method::Pwcca => format!("projection-weighted mean of {} canonical correlations", s.correlations.len()),
        Method::Cka => "linear CKA".to_string(),
    };
    writeln!(out, "{} similarity {:.6} ({what})", s.method.to_string().to_uppercase(), s.mean)?;
    if let Some(c) = &r.chance {
        // How many spreads above chance, where the shuffles spread at all.
        let spreads = if c.std > 0.0 { format!(" ({:.1} std)", c.above / c.std) } else { String::new() };
        writeln!(
            out,
            "  chance level {:.6} (std {:.6} over {} shuffles of {}'s datapoints, seed {}): similarity - chance = {:.6}{spreads}",
            c.mean, c.std, c.shuffles, r.a, c.seed, c.above
        )?;
    }
    let unit = match s.method {
        Method::Svcca | Method::Cca => "directions",
        _ => "neurons",
    };
    for (name, neurons, kept, constant) in [(&r.a, s.neurons_a, s.kept_a, s.constant_a), (&r.b, s.neurons_b, s.kept_b, s.constant_b)] {
        let dropped = if constant > 0 { format!(", {constant} constant neurons dropped") } else { String::new() };
        writeln!(out, "  {name}: {} datapoints x {neurons} neurons, {kept} {unit} used{dropped}", s.datapoints)?;
    }
    if let Some(conv) = &r.conv {
        let [h, w] = conv.size;
        let detail = match (conv.frequencies_computed, conv.positions_per_datapoint, conv.conv_dense) {
            (Some(f), _, _) => format!("one CCA per spatial frequency, {f} of {} computed (the rest are conjugate mirrors)", h * w),
            (_, Some(p), _) => format!("{p} positions per datapoint as datapoints"),
            (_, _, Some(ConvDense::Flatten)) => "the conv layer flattened to channels x height x width neurons".to_string(),
            _ => "channels averaged over positions".to_string(),
        };
        let method = format!("{:?}", conv.method).to_lowercase();
        writeln!(out, "  conv {method} at {h}x{w}: {detail}")?;
    }
    if !s.correlations.is_empty() {
        let top: Vec<String> = s.correlations.iter().take(8).map(|c| format!("{c:.4}")).collect();
        let more = if s.correlations.len() > 8 { " ..." } else { "" };
        writeln!(out, "  correlations: {}{more}", top.join(" "))?;
    }
    writeln!(
        out,
        "  {} in {:.2}s on {}",
        match r.keep {
            Keep::Variance(f) if s.method == Method::Svcca => format!("kept {}% of the variance", f * 100.0),
            Keep::Singular(f) if s.method == Method::Svcca => format!("kept {}% of the sum of the singular values", f * 100.0),
            Keep::TopK(k) => format!("kept the top {k} directions"),
            _ => "all directions".to_string(),
        },
        r.seconds,
        r.device
    )
}
