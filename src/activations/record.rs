//! A network's activations on the probe set: each named layer's output in inference mode
//! (batch norm uses its running statistics, nothing is updated), float32. Conv layers stay
//! N x C x H x W, dense layers N x neurons. The input layer ([`INPUT`], `in`) is the
//! probe's normalised images themselves: nothing is run for it.

use super::layer_file::LayerFile;
use super::probe::Probe;
use crate::error::InputError;
use crate::model::{Network, INPUT};
use tch::{Kind, Tensor};

/// Images per forward pass.
const BATCH: i64 = 500;

/// Images per forward pass of [`record_to_file`]: what it holds is one such batch of
/// every layer (and its bytes).
pub(crate) const SPILL_BATCH: i64 = 100;

/// The activations of `layers` on `probe`, in that order, on the probe's device.
pub fn record(net: &Network, probe: &Probe, layers: &[String]) -> Result<Vec<Tensor>, InputError> {
    // The network runs only for the layers above the input, and not at all without any.
    let taps: Vec<&str> = layers.iter().map(String::as_str).filter(|&l| l != INPUT).collect();
    let n = probe.images.size()[0];
    // Each batch is copied into its place in the whole probe's tensor, made at the first
    // batch: the activations are held once, not once in batches and again concatenated.
    let mut whole: Vec<Tensor> = Vec::new();
    if !taps.is_empty() {
        tch::no_grad(|| -> Result<(), InputError> {
            let mut i = 0;
            while i < n {
                let len = BATCH.min(n - i);
                let (_, outs) = net.forward_taps(&probe.images.narrow(0, i, len), false, &taps)?;
                if whole.is_empty() {
                    whole = outs
                        .iter()
                        .map(|o| {
                            let mut size = o.size();
                            size[0] = n;
                            Tensor::empty(size.as_slice(), (Kind::Float, o.device()))
                        })
                        .collect();
                }
                for (w, o) in whole.iter_mut().zip(outs) {
                    w.narrow(0, i, len).copy_(&o);
                }
                i += len;
            }
            Ok(())
        })?;
    }
    let mut tapped = whole.into_iter();
    Ok(layers.iter().map(|l| if l == INPUT { input(probe) } else { tapped.next().expect("one output per tap") }).collect())
}

/// The input layer: the probe's normalised images, float32 (a copy, so nothing done to
/// it reaches the probe).
pub fn input(probe: &Probe) -> Tensor {
    probe.images.to_kind(Kind::Float).copy()
}

/// Units a layer offers the comparison: channels of a conv layer, neurons of a dense one.
pub fn units(t: &Tensor) -> i64 {
    t.size()[1]
}

/// Datapoints per unit of the widest analysed layer that the probe should have: the
/// documented recommendation (docs/analysis.md, `probe_size`; the paper's rule of thumb
/// is 5 to 10). SVCCA's correlations are biased upward with fewer.
pub(crate) const PROBE_DATAPOINTS_PER_UNIT: i64 = 5;

/// What to do about a small probe drawn by the config.
pub(crate) const RAISE_PROBE_SIZE: &str = "raise analysis.probe_size";

/// Warns when the probe has fewer than [`PROBE_DATAPOINTS_PER_UNIT`] datapoints per unit
/// of the widest layer ([`probe_warning`]); `remedy` says what to do about it (the
/// config's [`RAISE_PROBE_SIZE`], or for activations recorded elsewhere, recording more).
pub fn warn_if_small(probe_len: usize, layers: &[String], acts: &[Tensor], remedy: &str) {
    if let Some(message) = probe_warning(probe_len, layers.iter().zip(acts).map(|(n, a)| (n.as_str(), units(a))), remedy) {
        tracing::warn!("{message}");
    }
}

/// The warning for a probe of `probe_len` datapoints against layers of `(name, units)`,
/// if it has fewer than [`PROBE_DATAPOINTS_PER_UNIT`] per unit of the widest.
pub(crate) fn probe_warning<'a>(probe_len: usize, layers: impl IntoIterator<Item = (&'a str, i64)>, remedy: &str) -> Option<String> {
    let (name, width) = layers.into_iter().max_by_key(|(_, w)| *w)?;
    let per = PROBE_DATAPOINTS_PER_UNIT;
    ((probe_len as i64) < per * width).then(|| {
        format!(
            "the probe's {probe_len} datapoints are fewer than {per} per unit of layer {name} ({width} units: {} datapoints), the \
             recommended minimum (docs/analysis.md, probe_size): its correlations are biased upward; {remedy}",
            per * width
        )
    })
}

/// [`record`] of `layers` (none of them the input) written straight into a safetensors
/// file at `path` (float32, one tensor per layer, named after it) as each batch is
/// computed: what is held is one batch's activations, never the whole probe's. The file
/// reads back with [`super::store::load`], a layer at a time; an analysis streaming
/// through a memory budget records a checkpoint once this way and reads each block of
/// layers from it, instead of recording the checkpoint again for every block.
pub(crate) fn record_to_file(net: &Network, probe: &Probe, layers: &[String], path: &std::path::Path) -> anyhow::Result<()> {
    use anyhow::Context;
    let taps: Vec<&str> = layers.iter().map(String::as_str).collect();
    if let Some(t) = taps.iter().find(|&&t| t == INPUT) {
        return Err(InputError::new(format!("layer '{t}' is the probe itself: it is not recorded")).into());
    }
    let n = probe.images.size()[0];
    let file = std::fs::OpenOptions::new().write(true).open(path).with_context(|| format!("cannot write {}", path.display()))?;
    // Begun at the first batch, which gives the layers' shapes.
    let mut out: Option<LayerFile> = None;
    tch::no_grad(|| -> anyhow::Result<()> {
        let mut i = 0;
        while i < n {
            let len = SPILL_BATCH.min(n - i);
            let (_, outs) = net.forward_taps(&probe.images.narrow(0, i, len), false, &taps)?;
            if out.is_none() {
                let shapes: Vec<(String, Vec<i64>)> = layers
                    .iter()
                    .zip(&outs)
                    .map(|(name, o)| {
                        let mut shape = o.size();
                        shape[0] = n;
                        (name.clone(), shape)
                    })
                    .collect();
                out = Some(LayerFile::start(&file, path, &shapes, Kind::Float)?);
            }
            let writer = out.as_mut().expect("begun");
            for (l, o) in outs.iter().enumerate() {
                writer.write_rows(&file, l, o)?;
            }
            i += len;
        }
        Ok(())
    })?;
    if let Some(out) = out {
        out.check_complete()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_probe_warning_starts_below_five_datapoints_per_unit_of_the_widest_layer() {
        let layers = [("c1", 16), ("fc1", 128), ("logits", 10)];
        // 5 x 128 = 640: the first probe size that is not warned about.
        assert_eq!(probe_warning(640, layers, RAISE_PROBE_SIZE), None);
        let warned = probe_warning(639, layers, RAISE_PROBE_SIZE).unwrap();
        assert!(warned.contains("639") && warned.contains("layer fc1 (128 units: 640 datapoints)"), "{warned}");
        assert!(warned.ends_with("raise analysis.probe_size"), "{warned}");
        // Above one datapoint per unit but below five (the old threshold passed it).
        assert!(probe_warning(600, layers, "record more").unwrap().ends_with("; record more"));
        assert_eq!(probe_warning(100, [], RAISE_PROBE_SIZE), None);
    }
}
