//! SGD with momentum (optionally Nesterov) and weight decay, as `torch.optim.SGD` with
//! dampening 0. Written here rather than taken from tch's optimizer because a checkpoint
//! must hold the momentum buffers, and tch does not expose its optimizer's state.
//!
//! The update costs a constant number of libtorch calls per step, not a few per
//! parameter tensor: every trainable parameter is a view into one flat buffer, and so
//! is its gradient (backward adds into the gradient tensors in place, so into the flat
//! gradient buffer) and its momentum buffer. Zeroing the gradients is one call, and the
//! update is a handful of calls on each *run* of consecutive unfrozen parameters. The
//! parameters are laid out in the order the network made them (bottom-up), and freezing
//! takes a prefix of layers, so there is one run whatever is frozen. A per-tensor loop
//! made ResNet-62's update about 1,500 kernel launches per step on a GPU (eight per
//! tensor, plus a zeroing each); see `cargo bench --bench optimizer`.
//!
//! On a GPU the update is eight libtorch calls per run; on the CPU it is one pass of
//! Rust over the three buffers ([`Sgd::step_on_cpu`]): libtorch's flat calls would each
//! stream the whole buffers through memory.
//!
//! The arithmetic is the per-tensor loop's, element by element (`d = g + wd p`,
//! `b = m b + d`, `d = d + m b` (Nesterov) or `b`, `p = p - lr d`), so the results are
//! the same to the bit (tested against that loop, on both paths).

use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

#[derive(Debug)]
pub struct Sgd {
    /// Trainable parameters by name, in the order the network made them; each a view of
    /// `flat` at `offsets[i]` (start, length).
    names: Vec<String>,
    params: Vec<Tensor>,
    offsets: Vec<(i64, i64)>,
    flat: Tensor,
    /// The gradients, laid out as `flat` (each parameter's `.grad` is a view of it).
    grads: Tensor,
    /// The momentum buffers, laid out as `flat`.
    buffers: Tensor,
    /// Frozen parameters: no gradient, no update (momentum and weight decay included).
    frozen: Vec<bool>,
    /// Runs of consecutive unfrozen parameters, as (start, length) in `flat`.
    runs: Vec<(i64, i64)>,
    pub momentum: f64,
    pub nesterov: bool,
    pub weight_decay: f64,
}

impl Sgd {
    /// The optimiser of `vs`'s trainable parameters, which from now on live in one flat
    /// buffer (their values are kept). Call it once per variable store, before training.
    pub fn new(vs: &VarStore, momentum: f64, nesterov: bool, weight_decay: f64) -> Sgd {
        let mut params = creation_order(vs);
        let (flat, grads, offsets) = tch::no_grad(|| {
            let numel: Vec<i64> = params.iter().map(|(_, p)| p.numel() as i64).collect();
            let total: i64 = numel.iter().sum();
            let kind = params.first().map_or(Kind::Float, |(_, p)| p.kind());
            let device = vs.device();
            let flat = Tensor::empty([total], (kind, device));
            let grads = Tensor::zeros([total], (kind, device));
            let mut offsets = Vec::with_capacity(params.len());
            let mut at = 0;
            for ((_, p), n) in params.iter_mut().zip(&numel) {
                let view = flat.narrow(0, at, *n).view(p.size().as_slice());
                view.shallow_clone().copy_(p);
                p.set_data(&view);
                offsets.push((at, *n));
                at += n;
            }
            (flat, grads, offsets)
        });
        // Gradients that exist, to point them into `grads`: a backward pass of zero
        // defines every one (libtorch makes a gradient only in backward).
        if !params.is_empty() {
            let zero =
                params.iter().map(|(_, p)| p.sum(Kind::Float)).fold(Tensor::zeros([], (Kind::Float, vs.device())), |a, b| a + b) * 0.0;
            zero.backward();
        }
        tch::no_grad(|| {
            for ((_, p), &(at, n)) in params.iter().zip(&offsets) {
                let mut g = p.grad();
                g.set_data(&grads.narrow(0, at, n).view(p.size().as_slice()));
                let _ = g.zero_();
            }
        });
        let buffers = flat.zeros_like();
        let frozen = vec![false; params.len()];
        let (names, params): (Vec<String>, Vec<Tensor>) = params.into_iter().unzip();
        let mut sgd = Sgd { names, params, offsets, flat, grads, buffers, frozen, runs: Vec::new(), momentum, nesterov, weight_decay };
        sgd.runs = sgd.unfrozen_runs();
        sgd
    }

    /// Freezes the parameters of `layer` (those named `layer.*`): from now on they get
    /// no update and no gradient. Returns how many parameters it froze.
    pub fn freeze_layer(&mut self, layer: &str) -> usize {
        let prefix = format!("{layer}.");
        let mut n = 0;
        for ((name, p), f) in self.names.iter().zip(self.params.iter_mut()).zip(self.frozen.iter_mut()) {
            if !*f && name.starts_with(&prefix) {
                *f = true;
                let _ = p.set_requires_grad(false);
                n += 1;
            }
        }
        self.runs = self.unfrozen_runs();
        n
    }

    /// Whether the parameter `name` is frozen.
    pub fn is_frozen(&self, name: &str) -> bool {
        self.names.iter().zip(&self.frozen).any(|(n, f)| n == name && *f)
    }

    /// Zeroes every gradient: one call.
    pub fn zero_grad(&mut self) {
        let _ = self.grads.zero_();
    }

    /// One update with learning rate `lr`, from the gradients of the last backward pass.
    pub fn step(&mut self, lr: f64) {
        if self.flat.device() == Device::Cpu && self.flat.kind() == Kind::Float {
            return self.step_on_cpu(lr);
        }
        tch::no_grad(|| {
            for &(at, n) in &self.runs {
                let mut p = self.flat.narrow(0, at, n);
                let mut d = self.grads.narrow(0, at, n);
                let mut buf = self.buffers.narrow(0, at, n);
                if self.weight_decay != 0.0 {
                    let _ = d.g_add_(&(&p * self.weight_decay));
                }
                if self.momentum != 0.0 {
                    let _ = buf.g_mul_scalar_(self.momentum).g_add_(&d);
                    if self.nesterov {
                        let _ = d.g_add_(&(&buf * self.momentum));
                    } else {
                        d = buf.shallow_clone();
                    }
                }
                let _ = p.g_sub_(&(d * lr));
            }
        });
    }

    /// [`Sgd::step`] on the CPU: one vectorised pass over the buffers, split across
    /// rayon's threads, instead of libtorch's eight flat passes (each allocating and
    /// writing a whole buffer: on the CPU those were slower than the per-tensor loop,
    /// whose small tensors stay in cache; `cargo bench --bench optimizer`). The same
    /// float32 operations in the same order as the libtorch ops (the scalars rounded to
    /// float32 as libtorch rounds them, no fused multiply-adds), so the same numbers to
    /// the bit.
    fn step_on_cpu(&mut self, lr: f64) {
        use rayon::prelude::*;
        let (wd, m, lr) = (self.weight_decay as f32, self.momentum as f32, lr as f32);
        let (decay, momentum, nesterov) = (self.weight_decay != 0.0, self.momentum != 0.0, self.nesterov);
        let total = self.flat.numel();
        // Three flat float32 buffers made by `Sgd::new` and owned here (the parameters and
        // gradients are views into them, not used while this runs).
        let g = crate::host::view::slice::<f32>(&self.grads).expect("a flat float32 gradient buffer");
        let [p, b] = crate::host::view::slices_mut_apart::<f32, 2>([&mut self.flat, &mut self.buffers], &[&self.grads])
            .expect("flat float32 buffers apart from the gradients");
        assert!(p.len() == total && g.len() == total && b.len() == total, "flat buffers of {total}");
        const CHUNK: usize = 1 << 14;
        for &(at, n) in &self.runs {
            let range = at as usize..(at + n) as usize;
            let (p, g, b) = (&mut p[range.clone()], &g[range.clone()], &mut b[range]);
            let update = match (decay, momentum, nesterov) {
                (true, true, true) => update::<true, true, true>,
                (true, true, false) => update::<true, true, false>,
                (false, true, true) => update::<false, true, true>,
                (false, true, false) => update::<false, true, false>,
                (true, false, _) => update::<true, false, false>,
                (false, false, _) => update::<false, false, false>,
            };
            p.par_chunks_mut(CHUNK)
                .zip(g.par_chunks(CHUNK))
                .zip(b.par_chunks_mut(CHUNK))
                .for_each(|((p, g), b)| update(p, g, b, wd, m, lr));
        }
    }

    /// How many runs of consecutive unfrozen parameters the update walks (for tests).
    pub fn runs(&self) -> usize {
        self.runs.len()
    }

    /// The momentum buffers by parameter name (for checkpoints).
    pub fn state(&self) -> Vec<(String, Tensor)> {
        self.names
            .iter()
            .zip(&self.params)
            .zip(&self.offsets)
            .map(|((n, p), &(at, len))| (n.clone(), self.buffers.narrow(0, at, len).view(p.size().as_slice())))
            .collect()
    }

    /// Restores the buffers from `state` (name, tensor); every parameter must be there.
    pub fn load_state(&mut self, mut find: impl FnMut(&str) -> Option<Tensor>) -> Result<(), String> {
        for ((name, p), &(at, len)) in self.names.iter().zip(&self.params).zip(&self.offsets) {
            let saved = find(name).ok_or_else(|| format!("no momentum buffer for {name}"))?;
            tch::no_grad(|| self.buffers.narrow(0, at, len).view(p.size().as_slice()).copy_(&saved));
        }
        Ok(())
    }

    /// Consecutive unfrozen parameters joined: a run ends at a frozen one.
    fn unfrozen_runs(&self) -> Vec<(i64, i64)> {
        let mut runs: Vec<(i64, i64)> = Vec::new();
        for (&(at, n), &frozen) in self.offsets.iter().zip(&self.frozen) {
            if frozen {
                continue;
            }
            match runs.last_mut() {
                Some(last) if last.0 + last.1 == at => last.1 += n,
                _ => runs.push((at, n)),
            }
        }
        runs
    }
}

/// The CPU update of one chunk, each case its own loop (no branch inside, so that the
/// compiler vectorises it): `d = g + wd p`, `b = m b + d`, `d = d + m b` (Nesterov) or
/// `b`, `p = p - lr d`, in float32, without fused multiply-adds.
fn update<const DECAY: bool, const MOMENTUM: bool, const NESTEROV: bool>(
    p: &mut [f32],
    g: &[f32],
    b: &mut [f32],
    wd: f32,
    m: f32,
    lr: f32,
) {
    let n = p.len();
    let (g, b) = (&g[..n], &mut b[..n]);
    for i in 0..n {
        let mut d = g[i];
        if DECAY {
            d += p[i] * wd;
        }
        if MOMENTUM {
            b[i] = b[i] * m + d;
            d = if NESTEROV { d + b[i] * m } else { b[i] };
        }
        p[i] -= d * lr;
    }
}

/// The trainable parameters with their names, in the order the network made them (tch
/// keeps that order; the names come from matching the same tensors).
fn creation_order(vs: &VarStore) -> Vec<(String, Tensor)> {
    let named = vs.variables();
    let by_ptr: std::collections::HashMap<usize, String> = named.iter().map(|(n, t)| (t.data_ptr() as usize, n.clone())).collect();
    vs.trainable_variables()
        .into_iter()
        .filter(|t| t.requires_grad())
        .map(|t| {
            let name = by_ptr.get(&(t.data_ptr() as usize)).cloned().expect("a trainable variable is named");
            (name, t)
        })
        .collect()
}

/// The update tensor by tensor: the reference of the tests and of the bench.
#[cfg(test)]
mod per_tensor;

#[cfg(test)]
mod tests {
    use super::per_tensor::Reference;
    use super::*;
    use tch::nn::{self, Module};
    use tch::Device;

    fn net(seed: i64) -> (nn::VarStore, nn::Sequential) {
        net_of(seed, Kind::Float)
    }

    /// float32: the update's CPU kernel; float64: its libtorch calls (the GPU's path).
    fn net_of(seed: i64, kind: Kind) -> (nn::VarStore, nn::Sequential) {
        tch::manual_seed(seed);
        let mut vs = nn::VarStore::new(Device::Cpu);
        let r = vs.root();
        let seq = nn::seq()
            .add(nn::linear(&r / "l1", 6, 8, Default::default()))
            .add_fn(|x| x.relu())
            .add(nn::linear(&r / "l2", 8, 8, Default::default()))
            .add_fn(|x| x.relu())
            .add(nn::linear(&r / "l3", 8, 3, Default::default()));
        vs.set_kind(kind);
        (vs, seq)
    }

    #[test]
    fn the_flat_update_equals_the_per_tensor_loop_to_the_bit() {
        let cases = [(0.9, true, 5e-4), (0.9, false, 1e-3), (0.0, false, 0.0)];
        for (kind, (momentum, nesterov, wd)) in [Kind::Float, Kind::Double].into_iter().flat_map(|k| cases.map(|c| (k, c))) {
            // The same initial weights by copy, not by seed: tests on other threads draw
            // from libtorch's generator too.
            let (vs_a, net_a) = net_of(11, kind);
            let (mut vs_b, net_b) = net_of(12, kind);
            let (mut vs_0, _) = net_of(13, kind);
            vs_b.copy(&vs_a).unwrap();
            vs_0.copy(&vs_a).unwrap();
            let mut flat = Sgd::new(&vs_a, momentum, nesterov, wd);
            let mut reference = Reference::new(&vs_b);
            assert_eq!(flat.runs(), 1);
            let x = Tensor::randn([32, 6], (kind, Device::Cpu));
            let y = Tensor::randint(3, [32], (Kind::Int64, Device::Cpu));
            for step in 0..12 {
                if step == 6 {
                    // A frozen prefix, as freeze training makes: still one run.
                    flat.freeze_layer("l1");
                    reference.freeze("l1");
                    assert_eq!(flat.runs(), 1);
                    assert!(flat.is_frozen("l1.weight") && !flat.is_frozen("l2.weight"));
                }
                flat.zero_grad();
                net_a.forward(&x).cross_entropy_for_logits(&y).backward();
                flat.step(0.1);
                reference.zero_grad();
                net_b.forward(&x).cross_entropy_for_logits(&y).backward();
                reference.step(0.1, momentum, nesterov, wd);
            }
            let (a, b) = (vs_a.variables(), vs_b.variables());
            for (name, t) in &a {
                assert!(t.equal(&b[name]), "{name} differs from the per-tensor loop ({kind:?}, momentum {momentum}, nesterov {nesterov})");
            }
            // It trained: the parameters moved from their initial values.
            assert!(!a["l3.weight"].equal(&vs_0.variables()["l3.weight"]));
            // The frozen layer kept its values from step 6 on, and the state reads back.
            let state = flat.state();
            assert_eq!(state.len(), 6);
            let mut again = Sgd::new(&net_of(11, kind).0, momentum, nesterov, wd);
            again.load_state(|n| state.iter().find(|(m, _)| m == n).map(|(_, t)| t.shallow_clone())).unwrap();
            for ((n, x), (_, y)) in state.iter().zip(again.state()) {
                assert!(x.equal(&y), "{n}");
            }
        }
    }

    #[test]
    fn a_frozen_layer_between_unfrozen_ones_splits_the_update_in_two_runs() {
        let (vs, _) = net(1);
        let mut sgd = Sgd::new(&vs, 0.9, true, 0.0);
        assert_eq!(sgd.freeze_layer("l2"), 2);
        assert_eq!(sgd.runs(), 2);
    }
}
