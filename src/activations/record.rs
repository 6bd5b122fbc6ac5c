//! A network's activations on the probe set: each named layer's output in inference mode
//! (batch norm uses its running statistics, nothing is updated), float32. Conv layers stay
//! N x C x H x W, dense layers N x neurons.

use super::probe::Probe;
use crate::error::InputError;
use crate::model::Network;
use tch::{Kind, Tensor};

/// Images per forward pass.
const BATCH: i64 = 500;

/// The activations of `layers` on `probe`, in that order, on the probe's device.
pub fn record(net: &Network, probe: &Probe, layers: &[String]) -> Result<Vec<Tensor>, InputError> {
    let taps: Vec<&str> = layers.iter().map(String::as_str).collect();
    let n = probe.images.size()[0];
    let mut parts: Vec<Vec<Tensor>> = layers.iter().map(|_| Vec::new()).collect();
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
    Ok(parts.into_iter().map(|p| Tensor::cat(&p, 0)).collect())
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
