//! The learning-dynamics analysis in a memory budget (`analysis.memory_mib`).
//!
//! Before it starts, the analysis estimates from the layers' shapes what each phase of
//! its work holds ([`crate::activations::LayerSet::bytes`], an upper bound): the final
//! network's layers while they are summarised, then their summaries compacted to their
//! whitened `Z`s; a checkpoint's layers as recorded, and the summaries of one row. It
//! then picks the fastest way through that fits:
//!
//! - **Side by side** (everything fits): the final network's summaries are made once for
//!   the whole analysis, each checkpoint is recorded once and its layers summarised side
//!   by side ([`crate::activations::summarise_rows`]).
//! - **Streamed**: the final layers in column blocks and each checkpoint's layers in row
//!   blocks, one layer summarised at a time and released as soon as its part of the row
//!   is done. With one column block the final summaries are still made once; with more,
//!   each block's are made again for every checkpoint (and each row block is recorded
//!   again per column block): more time, the same numbers.
//! - **Refused**, at once and with nothing computed, where even one final layer and one
//!   checkpoint layer at a time do not fit, saying which settings to change.
//!
//! The estimate is printed; `scripts/bench_analysis_memory.sh` compares it with the
//! measured peak at the paper's widths.

use crate::activations::LayerSet;
use crate::error::InputError;
use crate::similarity::summary::JOINED_BYTES;

const MIB: i64 = 1 << 20;

/// What every analysis holds besides the layers: libtorch's runtime, the network, the
/// probe's images, and the allocator's slack: freed blocks below
/// `host::HEAP_BLOCK_BYTES` stay in the heap for reuse, about 0.8 GiB more than the
/// layers' estimate at the paper's widths (`scripts/bench_analysis_memory.sh`).
const BASE: i64 = 1280 * MIB;

/// Beside what the process holds when the analysis plans: the allocator's slack.
const SLACK: i64 = 256 * MIB;

/// The share of the available memory an analysis takes by default.
const DEFAULT_SHARE: f64 = 0.25;

/// The memory an analysis may use, and where the figure came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Budget {
    pub bytes: i64,
    /// What the process holds besides the layers ([`BASE`] but in tests).
    pub base: i64,
    pub source: String,
}

impl Budget {
    /// `analysis.memory_mib` when set. Else, inside a memory limit of its own (a cgroup's,
    /// as Slurm sets for a job's --mem), three quarters of what is left under it: the
    /// job's memory is the job's; on a shared machine, a quarter of the kernel's
    /// MemAvailable. What the process holds already counts against it (`svcca run`
    /// analyses after training, whose freed memory the allocator keeps for reuse).
    pub fn of(memory_mib: Option<u64>) -> Budget {
        let budget = Budget::chosen(memory_mib);
        Budget { base: budget.base.max(resident().0 + SLACK), ..budget }
    }

    fn chosen(memory_mib: Option<u64>) -> Budget {
        if let Some(m) = memory_mib {
            return Budget { bytes: m as i64 * MIB, base: BASE, source: format!("analysis.memory_mib = {m}") };
        }
        let choose = "set analysis.memory_mib to choose";
        match (crate::device::available(), crate::device::cgroup_room()) {
            (Some(avail), Some(room)) if room < avail => Budget {
                bytes: (room as f64 * JOB_SHARE) as i64,
                base: BASE,
                source: format!("three quarters of the {} left under this job's memory limit; {choose}", gib(room)),
            },
            (Some(avail), _) => Budget {
                bytes: (avail as f64 * DEFAULT_SHARE) as i64,
                base: BASE,
                source: format!("a quarter of the {} available; {choose}", gib(avail)),
            },
            (None, _) => {
                Budget { bytes: 4096 * MIB, base: BASE, source: format!("4 GiB (the available memory could not be read); {choose}") }
            }
        }
    }
}

/// The share of a job's own memory limit an analysis takes by default.
const JOB_SHARE: f64 = 0.75;

/// This process's resident memory now and its peak so far (VmRSS, VmHWM), for the
/// debug log that checks the estimates.
pub(crate) fn resident() -> (i64, i64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| -> i64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<i64>().ok())
            .unwrap_or(0)
            * 1024
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Bytes as GiB (or MiB below one GiB), for messages.
pub(crate) fn gib(bytes: i64) -> String {
    if bytes >= 1 << 30 {
        format!("{:.1} GiB", bytes as f64 / (1u64 << 30) as f64)
    } else {
        format!("{} MiB", (bytes + MIB - 1) / MIB)
    }
}

/// Final layers (`columns`) whose summaries are held together, and the blocks of a
/// checkpoint's layers recorded together to be compared with them.
#[derive(Debug, Clone, PartialEq)]
pub struct Block {
    pub columns: Vec<usize>,
    pub rows: Vec<Vec<usize>>,
}

/// How an analysis goes through its budget.
#[derive(Debug, Clone, PartialEq)]
pub struct MemoryPlan {
    pub blocks: Vec<Block>,
    /// Everything at once: the final summaries made side by side and kept, a checkpoint's
    /// layers summarised side by side, with the side-by-side copies of the summaries.
    pub side_by_side: bool,
    /// The estimated peak, in bytes.
    pub peak: i64,
    pub budget: Budget,
}

impl MemoryPlan {
    /// Whether the final summaries are made once for the whole analysis (one column block).
    pub fn finals_kept(&self) -> bool {
        self.blocks.len() == 1
    }

    /// Passes over the probe per checkpoint: the recordings of the checkpoint's row
    /// blocks, plus the final network's where its summaries are not kept.
    pub fn recordings_per_checkpoint(&self) -> usize {
        let rows: usize = self.blocks.iter().map(|b| b.rows.len()).sum();
        rows + if self.finals_kept() { 0 } else { self.blocks.len() }
    }

    /// One line for the log: the estimate against the budget, and how the work goes.
    pub fn describe(&self) -> String {
        let how = if self.side_by_side {
            "all layers side by side".to_string()
        } else {
            let reads = match self.recordings_per_checkpoint() {
                1 => "each checkpoint recorded once".to_string(),
                n => format!("each checkpoint recorded once into a spill file and read in {n} blocks"),
            };
            format!(
                "streamed: {} block(s) of final layers{}, {reads}",
                self.blocks.len(),
                if self.finals_kept() { " (kept for every checkpoint)" } else { " (made again for every checkpoint)" },
            )
        };
        format!(
            "analysis memory: estimated peak {} of a budget of {} ({}); {how}",
            gib(self.peak),
            gib(self.budget.bytes),
            self.budget.source
        )
    }
}

/// What phases of the analysis hold, from the layers' shapes: `set` holds the analysed
/// layers (stand-ins of their shapes will do), which are both the final network's and a
/// checkpoint's.
struct Costs<'s> {
    set: &'s LayerSet,
    raw: Vec<i64>,
}

impl Costs<'_> {
    fn raw(&self, is: &[usize]) -> i64 {
        is.iter().map(|&i| self.raw[i]).sum()
    }
    /// Layer `i` summarised in all its forms against `js` at once (and compacted).
    fn made(&self, i: usize, js: &[usize]) -> i64 {
        self.set.bytes(i, self.set, js).iter().map(|b| b.made).sum()
    }
    /// Layer `i` of a checkpoint summarised in all its forms against `js`, as a row.
    fn row(&self, i: usize, js: &[usize]) -> i64 {
        self.set.bytes(i, self.set, js).iter().map(|b| b.row).sum()
    }
    fn compact(&self, i: usize, js: &[usize]) -> i64 {
        self.set.bytes(i, self.set, js).iter().map(|b| b.compact).sum()
    }
    /// Final layer `j` summarised one form at a time, largest first, each compacted once
    /// made: each form while it is made, beside the larger ones compacted.
    fn made_by_form(&self, j: usize, js: &[usize]) -> i64 {
        let mut forms = self.set.bytes(j, self.set, js);
        forms.sort_by_key(|b| std::cmp::Reverse(b.made));
        let mut held = 0;
        let mut peak = 0;
        for b in forms {
            peak = peak.max(held + b.made);
            held += b.compact;
        }
        peak.max(held)
    }
    /// Column block `b`'s summaries, made a layer and a form at a time and compacted,
    /// while its layers are recorded: (while made, once compacted). Bounded by the
    /// layers before the last compacted beside the last one being made.
    fn columns(&self, b: &[usize], all: &[usize]) -> (i64, i64) {
        let compact: i64 = b.iter().map(|&j| self.compact(j, all)).sum();
        let made = b.iter().map(|&j| self.made_by_form(j, all) - self.compact(j, all)).max().unwrap_or(0);
        (self.raw(b) + compact + made, compact)
    }
    /// Row block `r` against column block `b` (compacted, `held` bytes), one row
    /// summarised at a time.
    fn rows(&self, r: &[usize], b: &[usize], held: i64) -> i64 {
        held + self.raw(r) + r.iter().map(|&i| self.row(i, b)).max().unwrap_or(0)
    }
}

/// The plan for the analysed layers in `set` within `budget`; refused where one layer at
/// a time does not fit. `names` name the layers, for the refusal.
pub(crate) fn plan(set: &LayerSet, names: &[String], budget: Budget) -> Result<MemoryPlan, InputError> {
    let n = set.len();
    let all: Vec<usize> = (0..n).collect();
    let c = Costs { set, raw: all.iter().map(|&i| 4 * set.layer(i).numel() as i64).collect() };
    let base = budget.base;
    let avail = budget.bytes - base;
    // Streamed in blocks, a checkpoint is recorded once into a file, a batch at a time.
    let datapoints = set.layer(0).size()[0].max(1);
    let batch = 2 * c.raw(&all) * datapoints.min(crate::activations::record::SPILL_BATCH) / datapoints;

    // Side by side: the final layers recorded and summarised together, then compacted;
    // a checkpoint's likewise beside them, with the side-by-side copies of the Zs.
    let compact: i64 = all.iter().map(|&j| c.compact(j, &all)).sum();
    let made: i64 = all.iter().map(|&j| c.made(j, &all)).sum();
    let finals_phase = c.raw(&all) + made;
    let rows: i64 = all.iter().map(|&i| c.row(i, &all)).sum();
    let rows_phase = compact + compact.min(JOINED_BYTES) + c.raw(&all) + rows;
    let together = finals_phase.max(rows_phase);
    if together <= avail {
        let blocks = vec![Block { columns: all.clone(), rows: vec![all.clone()] }];
        return Ok(MemoryPlan { blocks, side_by_side: true, peak: base + together, budget });
    }

    // Streamed. The smallest unit: one final layer and one checkpoint layer, beside a
    // batch of the recording.
    let avail = avail - batch;
    let (need, worst) = all
        .iter()
        .flat_map(|&j| all.iter().map(move |&i| (i, j)))
        .map(|(i, j)| {
            let (while_made, held) = c.columns(&[j], &all);
            (while_made.max(c.rows(&[i], &[j], held)), (i, j))
        })
        .max()
        .expect("at least one layer");
    if need > avail {
        return Err(InputError::new(format!(
            "the analysis needs about {} even one layer at a time (the final {} against the checkpoint's {}), but its budget is {} ({}): \
             raise analysis.memory_mib, lower analysis.probe_size (the memory grows with it), or leave the widest layers out with analysis.layers",
            gib(base + need),
            names[worst.1],
            names[worst.0],
            gib(budget.bytes),
            budget.source
        )));
    }

    // Column blocks in layer order, each leaving at least half the budget to the rows
    // (a block of one layer whatever it holds); then the rows packed beside each block.
    let mut columns: Vec<Vec<usize>> = Vec::new();
    let mut current: Vec<usize> = Vec::new();
    for &j in &all {
        let mut trial = current.clone();
        trial.push(j);
        let (while_made, held) = c.columns(&trial, &all);
        let rows_fit = all.iter().all(|&i| c.rows(&[i], &trial, held) <= avail);
        if current.is_empty() || (while_made <= avail && held <= avail / 2 && rows_fit) {
            current = trial;
        } else {
            columns.push(std::mem::take(&mut current));
            current.push(j);
        }
    }
    columns.push(current);
    let mut peak = 0;
    let blocks = columns
        .into_iter()
        .map(|b| {
            let (while_made, held) = c.columns(&b, &all);
            peak = peak.max(while_made);
            let mut rows: Vec<Vec<usize>> = Vec::new();
            let mut r: Vec<usize> = Vec::new();
            for &i in &all {
                let mut trial = r.clone();
                trial.push(i);
                if r.is_empty() || c.rows(&trial, &b, held) <= avail {
                    r = trial;
                } else {
                    peak = peak.max(c.rows(&r, &b, held));
                    rows.push(std::mem::replace(&mut r, vec![i]));
                }
            }
            peak = peak.max(c.rows(&r, &b, held));
            rows.push(r);
            Block { columns: b, rows }
        })
        .collect();
    Ok(MemoryPlan { blocks, side_by_side: false, peak: base + peak, budget })
}

/// The estimated peak of the learning-dynamics analysis of a run of `config` done side by
/// side (the fastest way), from its network's shapes, before anything is trained: what
/// a Slurm task asks for by default (`svcca sweep --submit`).
pub(crate) fn side_by_side_need(config: &crate::config::Config) -> anyhow::Result<i64> {
    use crate::config::DatasetName;
    use tch::{Device, Kind, Tensor};
    let shape: [i64; 3] = match config.data.dataset {
        DatasetName::Cifar10 | DatasetName::Synthetic => [3, 32, 32],
        DatasetName::Mnist | DatasetName::FashionMnist => [1, 28, 28],
    };
    let vs = tch::nn::VarStore::new(Device::Cpu);
    let net = crate::model::build(&vs.root(), &config.model, shape, 10)?;
    let layers = crate::activations::store::layers(config, &net)?;
    let two = Tensor::zeros([2, shape[0], shape[1], shape[2]], (Kind::Float, Device::Cpu));
    let taps: Vec<&str> = layers.iter().map(String::as_str).collect();
    let (_, outs) = tch::no_grad(|| net.forward_taps(&two, false, &taps))?;
    let n = config.analysis.probe_size as i64;
    let stand_ins: Vec<Tensor> = outs
        .iter()
        .map(|o| {
            let mut s = o.size();
            s[0] = n;
            Tensor::zeros([1], (Kind::Float, Device::Cpu)).expand(s.as_slice(), false)
        })
        .collect();
    let unlimited = Budget { bytes: i64::MAX / 4, base: BASE, source: "unlimited".into() };
    Ok(plan(&LayerSet::new(stand_ins, config), &layers, unlimited)?.peak)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use tch::{Kind, Tensor};

    /// The paper's convnet's analysed layers (64 channels, fc1 512, fc2 256) on `n` datapoints, as shapes.
    fn convnet(n: i64) -> (LayerSet, Vec<String>) {
        let shapes: Vec<(&str, Vec<i64>)> = vec![
            ("in", vec![n, 3, 32, 32]),
            ("c1", vec![n, 64, 32, 32]),
            ("c2", vec![n, 64, 32, 32]),
            ("p1", vec![n, 64, 16, 16]),
            ("c3", vec![n, 64, 16, 16]),
            ("p2", vec![n, 64, 8, 8]),
            ("fc1", vec![n, 512]),
            ("fc2", vec![n, 256]),
            ("logits", vec![n, 10]),
        ];
        let layers = shapes.iter().map(|(_, s)| Tensor::zeros([1], (Kind::Float, tch::Device::Cpu)).expand(s.as_slice(), false)).collect();
        (LayerSet::new(layers, &Config::default()), shapes.iter().map(|(n, _)| n.to_string()).collect())
    }

    fn budget(mib: i64) -> Budget {
        Budget { bytes: mib * MIB, base: BASE, source: "test".into() }
    }

    #[test]
    fn a_small_analysis_goes_side_by_side_and_a_large_one_streams_within_its_budget() {
        let (small, names) = convnet(100);
        let p = plan(&small, &names, budget(8192)).unwrap();
        assert!(p.side_by_side && p.finals_kept() && p.recordings_per_checkpoint() == 1, "{p:?}");

        let (large, names) = convnet(2560);
        for mib in [8192, 6144, 5632] {
            let p = plan(&large, &names, budget(mib)).unwrap();
            assert!(!p.side_by_side, "{}", p.describe());
            assert!(p.peak <= mib * MIB, "{}", p.describe());
            // Every pair is covered once: the column blocks partition the layers, and so
            // do each block's row blocks.
            let cols: Vec<usize> = p.blocks.iter().flat_map(|b| b.columns.clone()).collect();
            assert_eq!(cols, (0..names.len()).collect::<Vec<_>>());
            for b in &p.blocks {
                assert_eq!(b.rows.concat(), (0..names.len()).collect::<Vec<_>>());
            }
        }
        // A tighter budget needs more passes, never a higher peak.
        let loose = plan(&large, &names, budget(6144)).unwrap();
        let tight = plan(&large, &names, budget(5632)).unwrap();
        assert!(tight.recordings_per_checkpoint() >= loose.recordings_per_checkpoint());
    }

    #[test]
    fn a_budget_that_one_layer_at_a_time_exceeds_is_refused_naming_the_settings() {
        let (large, names) = convnet(2560);
        let e = plan(&large, &names, budget(1024)).unwrap_err().to_string();
        for needle in ["analysis.memory_mib", "analysis.probe_size", "the final c", "the checkpoint's c", "test"] {
            assert!(e.contains(needle), "{e}");
        }
    }
}
