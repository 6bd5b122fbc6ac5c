//! The paper's CIFAR-10 convnet: c1 c2 bn1 p1 c3 c4 c5 bn2 p2 fc1 bn3 fc2 bn4 logits.
//!
//! The paper gives the layer list and widths (64 channels, so p2 is 8 x 8 x 64 = 4096 on
//! 32 x 32 input; fc1 512, fc2 256) but not the kernels: we use 3 x 3 convolutions with
//! padding 1 and 2 x 2 max pooling. Each conv and fc layer includes its ReLU, so a tap on
//! `c3` is what its neurons output; batch norm follows the ReLU, as the list's order says.

use super::ops::{max_pool, relu_fresh};
use super::Network;
use crate::error::InputError;
use tch::nn::{self, ConvConfig};

pub fn convnet(root: &nn::Path, shape: [i64; 3], classes: i64, width: i64, fc1: i64, fc2: i64) -> Result<Network, InputError> {
    let [c, h, w] = shape;
    if h < 4 || w < 4 {
        return Err(InputError::new(format!("the convnet needs images of at least 4 x 4 pixels, not {h} x {w}")));
    }
    let conv = |name: &str, cin: i64| {
        let cfg = ConvConfig { padding: 1, ..Default::default() };
        nn::seq_t().add(nn::conv2d(root / name, cin, width, 3, cfg)).add_fn(relu_fresh)
    };
    let fc = |name: &str, din: i64, dout: i64| nn::seq_t().add(nn::linear(root / name, din, dout, Default::default())).add_fn(relu_fresh);
    let bn2d = |name: &str| nn::seq_t().add(nn::batch_norm2d(root / name, width, Default::default()));
    let bn1d = |name: &str, d: i64| nn::seq_t().add(nn::batch_norm1d(root / name, d, Default::default()));
    let pool = || nn::seq_t().add_fn(max_pool);
    let flat = width * (h / 4) * (w / 4);

    let mut net = Network::new();
    net.push("c1", conv("c1", c));
    net.push("c2", conv("c2", width));
    net.push("bn1", bn2d("bn1"));
    net.push("p1", pool());
    net.push("c3", conv("c3", width));
    net.push("c4", conv("c4", width));
    net.push("c5", conv("c5", width));
    net.push("bn2", bn2d("bn2"));
    net.push("p2", pool());
    net.push("fc1", nn::seq_t().add_fn(|x| x.flatten(1, -1)).add(fc("fc1", flat, fc1)));
    net.push("bn3", bn1d("bn3", fc1));
    net.push("fc2", fc("fc2", fc1, fc2));
    net.push("bn4", bn1d("bn4", fc2));
    net.push("logits", nn::seq_t().add(nn::linear(root / "logits", fc2, classes, Default::default())));
    Ok(net)
}
