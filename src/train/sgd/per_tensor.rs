//! The SGD update tensor by tensor, as it was written before the flat buffers: the
//! reference the flat update is tested against (to the bit, in `sgd.rs`'s tests) and
//! benchmarked against (`cargo bench --bench optimizer`, which includes this file). Not
//! for training; it uses tch alone, so that the bench can include it.

use tch::nn;
use tch::Tensor;

/// The update as it was written before the flat buffers, tensor by tensor: the
/// reference the flat update must equal to the bit.
pub(crate) struct Reference {
    params: Vec<(String, Tensor)>,
    buffers: Vec<Tensor>,
    frozen: Vec<bool>,
}

impl Reference {
    pub(crate) fn new(vs: &nn::VarStore) -> Reference {
        let mut params: Vec<(String, Tensor)> = vs.variables().into_iter().filter(|(_, t)| t.requires_grad()).collect();
        params.sort_by(|a, b| a.0.cmp(&b.0));
        let buffers = params.iter().map(|(_, p)| p.zeros_like()).collect();
        let frozen = vec![false; params.len()];
        Reference { params, buffers, frozen }
    }
    pub(crate) fn freeze(&mut self, layer: &str) {
        for ((n, p), f) in self.params.iter_mut().zip(self.frozen.iter_mut()) {
            if n.starts_with(&format!("{layer}.")) {
                *f = true;
                let _ = p.set_requires_grad(false);
            }
        }
    }
    pub(crate) fn zero_grad(&mut self) {
        for ((_, p), f) in self.params.iter_mut().zip(&self.frozen) {
            if !*f {
                p.zero_grad();
            }
        }
    }
    pub(crate) fn step(&mut self, lr: f64, momentum: f64, nesterov: bool, wd: f64) {
        tch::no_grad(|| {
            for (((_, p), buf), frozen) in self.params.iter_mut().zip(self.buffers.iter_mut()).zip(&self.frozen) {
                let mut d = p.grad();
                if *frozen || !d.defined() {
                    continue;
                }
                if wd != 0.0 {
                    let _ = d.g_add_(&(&*p * wd));
                }
                if momentum != 0.0 {
                    let _ = buf.g_mul_scalar_(momentum).g_add_(&d);
                    if nesterov {
                        let _ = d.g_add_(&(&*buf * momentum));
                    } else {
                        d = buf.shallow_clone();
                    }
                }
                let _ = p.g_sub_(&(d * lr));
            }
        });
    }
}
