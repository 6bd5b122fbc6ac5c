//! A network's activations on the probe set: each named layer's output in inference mode
//! (batch norm uses its running statistics, nothing is updated), float32. Conv layers stay
//! N x C x H x W, dense layers N x neurons. The input layer ([`INPUT`], `in`) is the
//! probe's normalised images themselves: nothing is run for it.

use super::probe::Probe;
use crate::error::InputError;
use crate::model::{Network, INPUT};
use tch::{Kind, Tensor};

/// Images per forward pass.
const BATCH: i64 = 500;

/// The activations of `layers` on `probe`, in that order, on the probe's device.
pub fn record(net: &Network, probe: &Probe, layers: &[String]) -> Result<Vec<Tensor>, InputError> {
    // The network runs only for the layers above the input, and not at all without any.
    let taps: Vec<&str> = layers.iter().map(String::as_str).filter(|&l| l != INPUT).collect();
    let n = probe.images.size()[0];
    let mut parts: Vec<Vec<Tensor>> = taps.iter().map(|_| Vec::new()).collect();
    if !taps.is_empty() {
        tch::no_grad(|| -> Result<(), InputError> {
            let mut i = 0;
            while i < n {
                let len = BATCH.min(n - i);
                let (_, outs) = net.forward_taps(&probe.images.narrow(0, i, len), false, &taps)?;
                for (p, o) in parts.iter_mut().zip(outs) {
                    p.push(o.to_kind(Kind::Float));
                }
                i += len;
            }
            Ok(())
        })?;
    }
    let mut tapped = parts.into_iter().map(|p| Tensor::cat(&p, 0));
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

/// Warns when the probe has fewer datapoints than the widest layer has units.
pub fn warn_if_small(probe_len: usize, layers: &[String], acts: &[Tensor]) {
    if let Some((name, width)) = layers.iter().zip(acts).map(|(n, a)| (n, units(a))).max_by_key(|(_, w)| *w) {
        if (probe_len as i64) < width {
            tracing::warn!(
                "analysis.probe_size {probe_len} is below the {width} units of layer {name}: its correlations are biased upward; use 5 to 10 times more datapoints than units"
            );
        }
    }
}
