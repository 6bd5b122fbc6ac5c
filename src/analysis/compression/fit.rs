//! Each compressed layer's fit: its SVCCA directions against the reference and its units
//! ranked by activity ([`similarity::Fitted`]), on the fit set.

use crate::analysis::runs::{as_rows, positions, Run};
use crate::error::InputError;
use crate::similarity::{self, Keep};

/// A compressed layer and its fit, from which its maps are made ([`super::maps`]).
pub struct FittedLayer {
    pub layer: String,
    pub fitted: similarity::Fitted,
}

/// Fits the directions and ranking of each layer on the fit set.
pub fn fit(run: &Run, layers: &[String], reference: Option<&Run>, keep: Keep) -> anyhow::Result<Vec<FittedLayer>> {
    let fit = run.fit_set();
    let mut taps = layers.to_vec();
    taps.push("logits".into());
    let acts = crate::activations::record::record(&run.net, &fit, &taps)?;
    let logits = acts.last().expect("tapped").shallow_clone();
    let others = match reference {
        Some(r) => Some(crate::activations::record::record(&r.net, &fit, layers)?),
        None => None,
    };
    let mut out = Vec::new();
    for (i, layer) in layers.iter().enumerate() {
        let a = &acts[i];
        let b = match &others {
            Some(o) => {
                if o[i].size()[1..] != a.size()[1..] {
                    return Err(InputError::new(format!(
                        "--against: layer '{layer}' has shape {:?} there and {:?} here",
                        &o[i].size()[1..],
                        &a.size()[1..]
                    ))
                    .into());
                }
                as_rows(&o[i])
            }
            None => logits.repeat_interleave_self_int(positions(a), 0, None),
        };
        let fitted = similarity::Fitted::fit(&as_rows(a), &b, keep).map_err(|e| e.naming(&format!("layer {layer}"), "the reference"))?;
        out.push(FittedLayer { layer: layer.clone(), fitted });
    }
    Ok(out)
}
