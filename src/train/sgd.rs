//! SGD with momentum (optionally Nesterov) and weight decay, as `torch.optim.SGD` with
//! dampening 0. Written here rather than taken from tch's optimizer because a checkpoint
//! must hold the momentum buffers, and tch does not expose its optimizer's state.

use tch::nn::VarStore;
use tch::Tensor;

#[derive(Debug)]
pub struct Sgd {
    /// Trainable parameters by name, in name order; the buffers in the same order.
    params: Vec<(String, Tensor)>,
    buffers: Vec<Tensor>,
    pub momentum: f64,
    pub nesterov: bool,
    pub weight_decay: f64,
}

impl Sgd {
    pub fn new(vs: &VarStore, momentum: f64, nesterov: bool, weight_decay: f64) -> Sgd {
        let mut params: Vec<(String, Tensor)> = vs.variables().into_iter().filter(|(_, t)| t.requires_grad()).collect();
        params.sort_by(|a, b| a.0.cmp(&b.0));
        let buffers = params.iter().map(|(_, p)| p.zeros_like()).collect();
        Sgd { params, buffers, momentum, nesterov, weight_decay }
    }

    pub fn zero_grad(&mut self) {
        for (_, p) in self.params.iter_mut() {
            p.zero_grad();
        }
    }

    /// One update with learning rate `lr`, from the gradients of the last backward pass.
    pub fn step(&mut self, lr: f64) {
        tch::no_grad(|| {
            for ((_, p), buf) in self.params.iter_mut().zip(self.buffers.iter_mut()) {
                let mut d = p.grad();
                if !d.defined() {
                    continue;
                }
                if self.weight_decay != 0.0 {
                    let _ = d.g_add_(&(&*p * self.weight_decay));
                }
                if self.momentum != 0.0 {
                    let _ = buf.g_mul_scalar_(self.momentum).g_add_(&d);
                    if self.nesterov {
                        let _ = d.g_add_(&(&*buf * self.momentum));
                    } else {
                        d = buf.shallow_clone();
                    }
                }
                let _ = p.g_sub_(&(d * lr));
            }
        });
    }

    /// The momentum buffers by parameter name (for checkpoints).
    pub fn state(&self) -> Vec<(String, Tensor)> {
        self.params.iter().zip(&self.buffers).map(|((n, _), b)| (n.clone(), b.shallow_clone())).collect()
    }

    /// Restores the buffers from `state` (name, tensor); every parameter must be there.
    pub fn load_state(&mut self, mut find: impl FnMut(&str) -> Option<Tensor>) -> Result<(), String> {
        for ((name, _), buf) in self.params.iter().zip(self.buffers.iter_mut()) {
            let saved = find(name).ok_or_else(|| format!("no momentum buffer for {name}"))?;
            tch::no_grad(|| buf.copy_(&saved));
        }
        Ok(())
    }
}
