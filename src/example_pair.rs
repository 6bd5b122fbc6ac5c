//! A pair of layers with a shared low-rank signal: something real to try `svcca compare`
//! on before any network is trained, and the data of the similarity benchmarks.
//!
//! `A = Z W_a + noise * E_a + c_a` and `B = Z W_b + noise * E_b + c_b`, with `Z` an
//! N x rank signal both layers see (its i-th component scaled by 0.8^i, so the spectrum
//! decays as a trained layer's does and the weakest shared components sink into the
//! noise), `W` random mixing, `E` independent noise and `c` a per-neuron offset.
//! Deterministic for a given seed. Written as float32, as layers are.

use crate::error::InputError;
use ndarray::Array2;
use ndarray_npy::WriteNpyExt;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

#[derive(Debug, Clone)]
pub(crate) struct ExamplePair {
    pub datapoints: i64,
    pub neurons_a: i64,
    pub neurons_b: i64,
    pub rank: i64,
    pub noise: f64,
    pub seed: i64,
}

impl Default for ExamplePair {
    fn default() -> Self {
        ExamplePair { datapoints: 5000, neurons_a: 128, neurons_b: 96, rank: 16, noise: 0.2, seed: 0 }
    }
}

impl ExamplePair {
    /// The two matrices (datapoints x neurons, float32, CPU).
    pub(crate) fn generate(&self) -> (Tensor, Tensor) {
        tch::manual_seed(self.seed);
        let opts = (Kind::Float, Device::Cpu);
        let decay = Tensor::arange(self.rank, opts).multiply_scalar(0.8f64.ln()).exp();
        let z = Tensor::randn([self.datapoints, self.rank], opts) * decay;
        let layer = |neurons: i64| {
            let w = Tensor::randn([self.rank, neurons], opts);
            let e = Tensor::randn([self.datapoints, neurons], opts);
            let c = Tensor::rand([1, neurons], opts);
            z.mm(&w) + e * self.noise + c
        };
        let a = layer(self.neurons_a);
        let b = layer(self.neurons_b);
        (a, b)
    }

    /// Writes `a.npy` and `b.npy` into `dir` (created if missing). Existing files are
    /// kept unless `overwrite`; each file appears whole or not at all.
    pub(crate) fn write(&self, dir: &Path, overwrite: bool) -> Result<[PathBuf; 2], InputError> {
        let paths = [dir.join("a.npy"), dir.join("b.npy")];
        if !overwrite {
            if let Some(p) = paths.iter().find(|p| p.exists()) {
                return Err(InputError::new(format!("{}: already exists (pass --force to overwrite)", p.display())));
            }
        }
        std::fs::create_dir_all(dir).map_err(|e| InputError::new(format!("{}: cannot create: {e}", dir.display())))?;
        let (a, b) = self.generate();
        for (path, t) in paths.iter().zip([a, b]) {
            write_npy_atomic(path, &t)?;
        }
        Ok(paths)
    }
}

/// Writes a 2-D float32 tensor as `.npy` through a temporary file and a rename.
pub(crate) fn write_npy_atomic(path: &Path, t: &Tensor) -> Result<(), InputError> {
    let err = |e: &dyn std::fmt::Display| InputError::new(format!("{}: cannot write: {e}", path.display()));
    let (rows, cols) = (t.size()[0] as usize, t.size()[1] as usize);
    let values = Vec::<f32>::try_from(&t.to_kind(Kind::Float).contiguous().flatten(0, -1)).map_err(|e| err(&e))?;
    let array = Array2::from_shape_vec((rows, cols), values).map_err(|e| err(&e))?;
    crate::io::write_with(path, crate::io::Replace::Always, |tmp| {
        let file = std::fs::File::create(tmp)?;
        Ok(array.write_npy(BufWriter::new(file))?)
    })
    .map_err(|e| err(&format!("{e:#}")))
}
