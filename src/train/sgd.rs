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
    /// Frozen parameters: no gradient, no update (momentum and weight decay included).
    frozen: Vec<bool>,
    pub momentum: f64,
    pub nesterov: bool,
    pub weight_decay: f64,
}

impl Sgd {
    pub fn new(vs: &VarStore, momentum: f64, nesterov: bool, weight_decay: f64) -> Sgd {
        let mut params: Vec<(String, Tensor)> = vs.variables().into_iter().filter(|(_, t)| t.requires_grad()).collect();
        params.sort_by(|a, b| a.0.cmp(&b.0));
        let buffers = params.iter().map(|(_, p)| p.zeros_like()).collect();
        let frozen = vec![false; params.len()];
        Sgd { params, buffers, frozen, momentum, nesterov, weight_decay }
    }

    /// Freezes the parameters of `layer` (those named `layer.*`): from now on they get
    /// no update and no gradient. Returns how many parameters it froze.
    pub fn freeze_layer(&mut self, layer: &str) -> usize {
        let prefix = format!("{layer}.");
        let mut n = 0;
        for ((name, p), f) in self.params.iter_mut().zip(self.frozen.iter_mut()) {
            if !*f && name.starts_with(&prefix) {
                *f = true;
                let _ = p.set_requires_grad(false);
                n += 1;
            }
        }
        n
    }

    /// Whether the parameter `name` is frozen.
    pub fn is_frozen(&self, name: &str) -> bool {
        self.params.iter().zip(&self.frozen).any(|((n, _), f)| n == name && *f)
    }

    pub fn zero_grad(&mut self) {
        for ((_, p), f) in self.params.iter_mut().zip(&self.frozen) {
            if !*f {
                p.zero_grad();
            }
        }
    }

    /// One update with learning rate `lr`, from the gradients of the last backward pass.
    pub fn step(&mut self, lr: f64) {
        tch::no_grad(|| {
            for (((_, p), buf), frozen) in self.params.iter_mut().zip(self.buffers.iter_mut()).zip(&self.frozen) {
                if *frozen {
                    continue;
                }
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
