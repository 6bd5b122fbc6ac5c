//! The optimizer step for ResNet-62's parameters (the paper's n = 10, width 16): the
//! flat update of `train::sgd` against the per-tensor loop it replaced, side by side in
//! one process, on the CPU. Each timed step is a zeroing of the gradients, then the
//! update (momentum 0.9, Nesterov, weight decay 5e-4), from the same gradients.
//!
//!     source scripts/env.sh && cargo bench --locked --bench optimizer [-- STEPS]
//!
//! Prints milliseconds per step for each and the ratio (BENCHMARKS.md).

use std::time::Instant;
use svcca::config::{Arch, ModelConfig};
use svcca::train::sgd::Sgd;

/// The update tensor by tensor, the reference measured against: the file sgd.rs's tests
/// use too.
#[path = "../src/train/sgd/per_tensor.rs"]
#[allow(dead_code)] // its freeze is not measured
mod per_tensor;
use per_tensor::Reference;
use tch::{nn, Device, Kind, Tensor};

fn resnet62() -> (nn::VarStore, svcca::model::Network) {
    svcca::device::DeviceChoice::Cpu.resolve().expect("the CPU");
    svcca::device::seed(0);
    let vs = nn::VarStore::new(Device::Cpu);
    let config = ModelConfig { arch: Arch::Resnet, depth: 62, ..ModelConfig::default() };
    let net = svcca::model::build(&vs.root(), &config, [3, 32, 32], 10).expect("ResNet-62 builds");
    (vs, net)
}

/// One backward pass on a small batch, so that every parameter has a gradient.
fn gradients(net: &svcca::model::Network) {
    let x = Tensor::randn([8, 3, 32, 32], (Kind::Float, Device::Cpu));
    let y = Tensor::zeros([8], (Kind::Int64, Device::Cpu));
    net.forward_frozen(&x, true, 0, false).cross_entropy_for_logits(&y).backward();
}

fn main() {
    let steps: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(200);
    let (vs_flat, net_flat) = resnet62();
    let (vs_loop, net_loop) = resnet62();
    let tensors = vs_flat.trainable_variables().len();
    let params: i64 = vs_flat.trainable_variables().iter().map(|t| t.numel() as i64).sum();
    let mut flat = Sgd::new(&vs_flat, 0.9, true, 5e-4);
    let mut per_tensor = Reference::new(&vs_loop);
    gradients(&net_flat);
    gradients(&net_loop);
    println!(
        "ResNet-62: {tensors} parameter tensors, {params} parameters; {steps} steps each, {} libtorch threads",
        tch::get_num_threads()
    );
    // Interleaved rounds, so that a noisy neighbour slows both alike.
    let (mut t_flat, mut t_loop) = (0.0, 0.0);
    for round in 0..5 {
        let n = steps / 5;
        let t = Instant::now();
        for _ in 0..n {
            flat.step(1e-3);
        }
        let flat_s = t.elapsed().as_secs_f64();
        let t = Instant::now();
        for _ in 0..n {
            per_tensor.step(1e-3, 0.9, true, 5e-4);
        }
        let loop_s = t.elapsed().as_secs_f64();
        if round > 0 {
            // The first round warms the allocator and the caches.
            t_flat += flat_s;
            t_loop += loop_s;
        }
    }
    let timed = (steps / 5 * 4) as f64;
    // Zeroing the gradients: one call against one per tensor.
    let t = Instant::now();
    for _ in 0..steps {
        flat.zero_grad();
    }
    let zero_flat = t.elapsed().as_secs_f64() / steps as f64;
    let t = Instant::now();
    for _ in 0..steps {
        per_tensor.zero_grad();
    }
    let zero_loop = t.elapsed().as_secs_f64() / steps as f64;
    let (f, l) = (1e3 * t_flat / timed, 1e3 * t_loop / timed);
    println!("update       flat {f:8.3} ms   per-tensor {l:8.3} ms   {:.1}x", l / f);
    println!("zero grads   flat {:8.3} ms   per-tensor {:8.3} ms   {:.1}x", 1e3 * zero_flat, 1e3 * zero_loop, zero_loop / zero_flat);
    let (fs, ls) = (f + 1e3 * zero_flat, l + 1e3 * zero_loop);
    println!("step (both)  flat {fs:8.3} ms   per-tensor {ls:8.3} ms   {:.1}x", ls / fs);
}
