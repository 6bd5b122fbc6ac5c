//! Test accuracy with compressed layers: the evaluation images (`--eval-images`), and
//! `Evaluator`, which runs the network once per block of images and the layers above a
//! compressed layer on every map of it stacked into one batch.

use super::maps::{distinct, stack, Map};
use crate::analysis::runs::Run;
use crate::data::rng::Rng;
use crate::error::InputError;
use crate::model::Edit;
use tch::{Kind, Tensor};

/// Evaluation images per block: the layers below a compressed layer run once per block.
const BATCH: i64 = 500;
/// The most a stacked batch (one block under several maps) may take: 256 MiB.
const CHUNK_BYTES: i64 = 1 << 28;
/// Bytes per number of a stacked row: float64 projection (8), float32 input and output of
/// a layer above (4 + 4).
const ROW_BYTES: i64 = 16;

/// The evaluation images: the test split, or `--eval-images N` of it drawn by a seeded
/// permutation (stream `eval` of `analysis.seed`), in test-split order.
fn eval_set(run: &Run, eval_images: Option<usize>) -> Result<(Tensor, Tensor), InputError> {
    const STREAM: u64 = 0x65_76_61_6c; // "eval"
    let test = &run.data.test;
    let n = test.len();
    match eval_images {
        None => Ok((test.images.shallow_clone(), test.labels.shallow_clone())),
        Some(0) => Err(InputError::new("--eval-images: at least one image")),
        Some(k) if k > n => Err(InputError::new(format!("--eval-images {k}: the test split has only {n} images"))),
        Some(k) => {
            let mut indices = Rng::stream(run.config.analysis.seed, &[STREAM]).permutation(n);
            indices.truncate(k);
            indices.sort_unstable();
            let idx = Tensor::from_slice(&indices).to_device(test.images.device());
            Ok((test.images.index_select(0, &idx), test.labels.index_select(0, &idx)))
        }
    }
}

/// Accuracy of `run`'s network on the evaluation images, with edits (layer, mean, P).
pub(super) struct Evaluator<'a> {
    run: &'a Run,
    images: Tensor,
    pub(super) labels: Tensor,
}

impl<'a> Evaluator<'a> {
    pub(super) fn new(run: &'a Run, eval_images: Option<usize>) -> Result<Self, InputError> {
        let (images, labels) = eval_set(run, eval_images)?;
        Ok(Evaluator { run, images, labels })
    }

    /// (start, length) of each block of [`BATCH`] evaluation images.
    fn blocks(&self) -> impl Iterator<Item = (i64, i64)> {
        let n = self.labels.size()[0];
        (0..n).step_by(BATCH as usize).map(move |i| (i, BATCH.min(n - i)))
    }

    /// Evaluation images `start..start + len`, normalised.
    fn images(&self, start: i64, len: i64) -> Tensor {
        self.run.data.normalise(&self.images.narrow(0, start, len))
    }

    /// The accuracy with all `edits` applied at once (the full network when none).
    fn accuracy(&self, edits: &[(&str, &Tensor, &Map)]) -> anyhow::Result<f64> {
        let fns: Vec<_> = edits.iter().map(|&(l, m, map)| (l, move |h: &Tensor| map.apply(h, m))).collect();
        let refs: Vec<Edit> = fns.iter().map(|(l, f)| (*l, f as &dyn Fn(&Tensor) -> Tensor)).collect();
        tch::no_grad(|| {
            let mut correct = 0i64;
            for (i, len) in self.blocks() {
                let logits = self.run.net.forward_edited(&self.images(i, len), false, &refs)?;
                correct += logits.argmax(-1, false).eq_tensor(&self.labels.narrow(0, i, len)).sum(Kind::Int64).int64_value(&[]);
            }
            Ok(correct as f64 / self.labels.size()[0] as f64)
        })
    }

    /// The full network's accuracy, and for each (layer, mean, maps) the accuracy with
    /// that layer edited by each of its maps in turn (one number per map), batched: per
    /// block of images the network runs once, tapping every layer; then each layer's
    /// output projected by several maps is stacked into one batch for the layers above.
    /// Equal selections ([`Map::same`]: k = 0 of every method, for one) run once; one
    /// that keeps every unit is the full network.
    ///
    /// Memory: a stack of g maps on a block of b images costs about g * b * [`ROW_BYTES`]
    /// x (the largest per-image output of the layer and the layers above), which covers
    /// the float64 projection and the float32 input and output alive in a layer above; g
    /// is the largest that keeps this under [`CHUNK_BYTES`] (at least 1).
    ///
    /// Each map's projected block is the one the per-map evaluation computes (the same
    /// [`Map::apply_into`] on the same block), so the layers above see the same numbers; only
    /// the batch size they run at differs.
    pub(super) fn accuracies(&self, sweeps: &[(&str, &Tensor, &[Map])]) -> anyhow::Result<(f64, Vec<Vec<f64>>)> {
        let net = &self.run.net;
        let names = net.layer_names();
        let layers: Vec<&str> = sweeps.iter().map(|s| s.0).collect();
        // Per layer: each map's representative among the equal ones, and the maps to run.
        let representative: Vec<Vec<usize>> = sweeps
            .iter()
            .map(|s| {
                let (firsts, rep) = distinct(s.2, Map::same);
                rep.into_iter().map(|r| firsts[r]).collect()
            })
            .collect();
        let todo: Vec<Vec<usize>> = sweeps
            .iter()
            .zip(&representative)
            .map(|(s, f)| (0..s.2.len()).filter(|&i| f[i] == i && !s.2[i].is_identity()).collect())
            .collect();
        let mut full = 0i64;
        let mut correct: Vec<Vec<i64>> = sweeps.iter().map(|s| vec![0; s.2.len()]).collect();
        tch::no_grad(|| -> anyhow::Result<()> {
            // Bytes per (image, map) row of each layer's stack.
            let (_, ones) = net.forward_taps(&self.images(0, 1), false, &layers)?;
            let rows: Vec<i64> = layers
                .iter()
                .zip(&ones)
                .map(|(layer, one)| {
                    let at = names.iter().position(|l| l == layer).expect("a checked layer");
                    let widest = net.forward_range(one, false, at + 1..names.len()).iter().map(Tensor::numel).max().unwrap_or(0);
                    ROW_BYTES * widest.max(one.numel()) as i64
                })
                .collect();
            let maps: usize = todo.iter().map(Vec::len).sum();
            let bar = crate::analysis::progress((self.blocks().count() * maps) as u64, &format!("compressing {}", layers.join(", ")));
            for (i, len) in self.blocks() {
                let (logits, taps) = net.forward_taps(&self.images(i, len), false, &layers)?;
                let labels = self.labels.narrow(0, i, len).unsqueeze(0);
                full += logits.argmax(-1, false).eq_tensor(&labels.squeeze_dim(0)).sum(Kind::Int64).int64_value(&[]);
                for (s, ((&(layer, mean, maps), h), row)) in sweeps.iter().zip(&taps).zip(&rows).enumerate() {
                    let group = (CHUNK_BYTES / (row * len)).max(1) as usize;
                    for chunk in todo[s].chunks(group) {
                        let stacked = stack(h, chunk.len(), |j, out| maps[chunk[j]].apply_into(h, mean, out));
                        let logits = net.forward_after(&stacked, layer, false)?;
                        let hits = logits.argmax(-1, false).view([chunk.len() as i64, len]).eq_tensor(&labels).sum_dim_intlist(
                            1,
                            false,
                            Kind::Int64,
                        );
                        for (&m, v) in chunk.iter().zip(Vec::<i64>::try_from(&hits.to_device(tch::Device::Cpu))?) {
                            correct[s][m] += v;
                        }
                        bar.inc(chunk.len() as u64);
                    }
                }
            }
            bar.finish_and_clear();
            Ok(())
        })?;
        let n = self.labels.size()[0] as f64;
        let accuracies = sweeps
            .iter()
            .zip(&representative)
            .zip(&correct)
            .map(|((s, f), c)| (0..s.2.len()).map(|i| if s.2[i].is_identity() { full } else { c[f[i]] } as f64 / n).collect())
            .collect();
        Ok((full as f64 / n, accuracies))
    }

    /// The accuracy with every layer of `layers` (layer, mean) edited at once by its map in
    /// `maps[j]`, for each j, batched: per block the layers below the lowest one run once;
    /// from there the copies run stacked (up to [`CHUNK_BYTES`], as in [`Self::accuracies`]),
    /// each copy projected by its own map at each edited layer. Equal rows of selections
    /// run once.
    pub(super) fn joint_accuracies(&self, layers: &[(&str, &Tensor)], all: &[Vec<Map>]) -> anyhow::Result<Vec<f64>> {
        let net = &self.run.net;
        let names = net.layer_names();
        let at: Vec<usize> = layers.iter().map(|(l, _)| names.iter().position(|n| n == l).expect("a checked layer")).collect();
        let (low, lowest) = at.iter().enumerate().min_by_key(|x| *x.1).map(|(i, &a)| (i, a)).expect("a layer");
        let (firsts, rep) = distinct(all, |a, b| a.iter().zip(b).all(|(x, y)| x.same(y)));
        let maps: Vec<&Vec<Map>> = firsts.iter().map(|&f| &all[f]).collect();
        let mut correct = vec![0i64; maps.len()];
        tch::no_grad(|| -> anyhow::Result<()> {
            let one = net.forward_taps(&self.images(0, 1), false, &[layers[low].0])?.1.remove(0);
            let widest = net.forward_range(&one, false, lowest + 1..names.len()).iter().map(Tensor::numel).max().unwrap_or(0);
            let row = ROW_BYTES * widest.max(one.numel()) as i64;
            for (i, len) in self.blocks() {
                let h = net.forward_taps(&self.images(i, len), false, &[layers[low].0])?.1.remove(0);
                let labels = self.labels.narrow(0, i, len).unsqueeze(0);
                let group = (CHUNK_BYTES / (row * len)).max(1) as usize;
                for (c, chunk) in maps.chunks(group).enumerate() {
                    // Each copy's block projected at layer `l` by its own map.
                    let edit = |h: &Tensor, l: usize| {
                        let parts = h.split(len, 0);
                        stack(&parts[0], chunk.len(), |j, out| chunk[j][l].apply_into(&parts[j], layers[l].1, out))
                    };
                    // The edits of a layer in the order given, as forward_edited applies them.
                    let edits_at = |x: Tensor, j: usize| (0..at.len()).filter(|&l| at[l] == j).fold(x, |x, l| edit(&x, l));
                    let mut x = edits_at(Tensor::cat(&(0..chunk.len()).map(|_| h.shallow_clone()).collect::<Vec<_>>(), 0), lowest);
                    for j in lowest + 1..names.len() {
                        x = edits_at(net.forward_span(&x, false, j..j + 1), j);
                    }
                    let hits =
                        x.argmax(-1, false).view([chunk.len() as i64, len]).eq_tensor(&labels).sum_dim_intlist(1, false, Kind::Int64);
                    for (j, v) in Vec::<i64>::try_from(&hits.to_device(tch::Device::Cpu))?.into_iter().enumerate() {
                        correct[c * group + j] += v;
                    }
                }
            }
            Ok(())
        })?;
        let n = self.labels.size()[0] as f64;
        Ok(rep.into_iter().map(|r| correct[r] as f64 / n).collect())
    }
}

/// The accuracy on the evaluation images (`eval_images` as for [`super::compression`]) with
/// `layer`'s output projected by each of `maps` in turn: `batched` as the sweeps do it, or
/// one map at a time (a whole pass over the images per map, as before the batching).
pub fn layer_accuracies(
    run: &Run,
    eval_images: Option<usize>,
    layer: &str,
    mean: &Tensor,
    maps: &[Map],
    batched: bool,
) -> anyhow::Result<Vec<f64>> {
    run.check_layers([layer], "--compression")?;
    let eval = Evaluator::new(run, eval_images)?;
    if batched {
        Ok(eval.accuracies(&[(layer, mean, maps)])?.1.remove(0))
    } else {
        maps.iter().map(|p| eval.accuracy(&[(layer, mean, p)])).collect()
    }
}
