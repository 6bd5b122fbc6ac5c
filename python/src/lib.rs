//! `svcca._svcca`: the compiled half of the Python package (python/svcca/). It hands
//! numpy arrays to the same Rust code as the command line: `compare` runs the
//! `svcca compare` job ([`svcca::compare`]) on arrays instead of files, and
//! `ActivationWriter` writes an activation folder
//! ([`svcca::analysis::activation_folder::Writer`]) for `svcca analyze`. The Python side
//! (python/svcca/) turns torch tensors and half precision into float32 or float64 arrays
//! first, and builds its result objects from the report's JSON.
use pyo3::buffer::{Element, PyBuffer};
use pyo3::exceptions::{PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use std::path::PathBuf;
use svcca::activations::store::StepFile;
use svcca::analysis::activation_folder::Writer;
use svcca::compare::{Operand, Settings, Spelling};
use svcca::config::StoreDtype;
use svcca::error::InputError;
use svcca::similarity::Named;
use tch::{Device, Kind, Tensor};

/// The user's mistake (an [`InputError`]) as a `ValueError`, anything else as a
/// `RuntimeError`, with its causes.
fn py_error(e: anyhow::Error) -> PyErr {
    if e.is::<InputError>() {
        PyValueError::new_err(e.to_string())
    } else {
        PyRuntimeError::new_err(format!("{e:#}"))
    }
}

/// A setting given as text, one of `T`'s values (as the command line spells them, in any
/// case).
fn choice<T: Named>(key: &str, value: &str) -> PyResult<T> {
    T::from_name(value).ok_or_else(|| {
        let names: Vec<String> = T::NAMES.iter().map(|n| format!("'{}'", n.1)).collect();
        PyValueError::new_err(format!("{key}='{value}': expected one of {}", names.join(", ")))
    })
}

/// A float32 or float64 array (any object with the buffer protocol) as a host tensor of
/// its own: one copy, so that nothing done to it reaches the caller's array.
fn copied(py: Python<'_>, array: &Bound<'_, PyAny>, name: &str) -> PyResult<Tensor> {
    fn copy<T: Element + svcca::compare::Element>(py: Python<'_>, buffer: &PyBuffer<T>) -> PyResult<Tensor> {
        let shape: Vec<i64> = buffer.shape().iter().map(|&d| d as i64).collect();
        svcca::compare::try_fill_new::<T, _>(&shape, |out| buffer.copy_to_slice(py, out))
    }
    if let Ok(b) = PyBuffer::<f64>::get(array) {
        return copy(py, &b);
    }
    if let Ok(b) = PyBuffer::<f32>::get(array) {
        return copy(py, &b);
    }
    Err(PyTypeError::new_err(format!("{name}: expected a float32 or float64 array")))
}

/// `svcca.compare`'s work: the comparison of arrays `a` and `b` (float32 or float64,
/// datapoints first, 2-D or 4-D) as `svcca compare` makes it of two files, returned as
/// the JSON `svcca compare --json` prints. The keywords are the command line's options.
#[pyfunction]
#[pyo3(signature = (a, b, *, name_a, name_b, method, keep, keep_rule, top_k, conv, conv_dense, layout, dft_cut, max_datapoints, seed, baseline, device, memory_budget))]
#[allow(clippy::too_many_arguments)]
fn compare(
    py: Python<'_>,
    a: &Bound<'_, PyAny>,
    b: &Bound<'_, PyAny>,
    name_a: String,
    name_b: String,
    method: &str,
    keep: Option<f64>,
    keep_rule: Option<&str>,
    top_k: Option<usize>,
    conv: Option<&str>,
    conv_dense: Option<&str>,
    layout: &str,
    dft_cut: &str,
    max_datapoints: usize,
    seed: u64,
    baseline: Option<usize>,
    device: &str,
    memory_budget: &str,
) -> PyResult<String> {
    let settings = Settings {
        method: choice("method", method)?,
        keep,
        keep_rule: keep_rule.map(|r| choice("keep_rule", r)).transpose()?,
        top_k,
        conv: conv.map(|c| choice("conv", c)).transpose()?,
        conv_dense: conv_dense.map(|c| choice("conv_dense", c)).transpose()?,
        layout: choice("layout", layout)?,
        dft_cut: choice("dft_cut", dft_cut)?,
        max_datapoints,
        seed,
        baseline,
        device: device.parse().map_err(|e| PyValueError::new_err(format!("device='{device}': {e}")))?,
        memory_budget: svcca::compare::parse_bytes(memory_budget).map_err(|e| PyValueError::new_err(format!("memory_budget: {e}")))?,
    };
    let a = Operand::Tensor { tensor: copied(py, a, &name_a)?, name: name_a };
    let b = Operand::Tensor { tensor: copied(py, b, &name_b)?, name: name_b };
    let job = settings.job(a, b, Spelling::Python).map_err(|e| py_error(e.into()))?;
    // Without the GIL: other Python threads run while it computes.
    let report = py.detach(move || job.run()).map_err(|e| py_error(e.into()))?;
    serde_json::to_string(&report).map_err(|e| PyRuntimeError::new_err(e.to_string()))
}

/// An activation folder being written (`svcca.Recorder`'s), holding the folder's lock
/// until `close`.
#[pyclass(module = "svcca._svcca")]
struct ActivationWriter {
    writer: Option<Writer>,
    /// The step being written, between `begin` and `finish`.
    step: Option<StepFile>,
}

#[pymethods]
impl ActivationWriter {
    /// Opens `folder` (made if missing) for steps stored as `dtype`, "float32" or
    /// "float16".
    #[new]
    fn new(folder: PathBuf, dtype: &str) -> PyResult<Self> {
        let dtype = match dtype {
            "float32" => StoreDtype::Float32,
            "float16" => StoreDtype::Float16,
            other => return Err(PyValueError::new_err(format!("dtype='{other}': expected 'float32' or 'float16'"))),
        };
        Ok(ActivationWriter { writer: Some(Writer::create(&folder, dtype).map_err(py_error)?), step: None })
    }

    /// Starts step `step` of `layers`, (name, shape) pairs bottom-up, the datapoints
    /// first: the step's file is made, and filled by `rows`.
    fn begin(&mut self, step: u64, layers: Vec<(String, Vec<i64>)>) -> PyResult<()> {
        let writer = self.writer.as_ref().ok_or_else(|| PyValueError::new_err("this recorder is closed"))?;
        if self.step.is_some() {
            return Err(PyRuntimeError::new_err("a step is being written: finish or abort it first"));
        }
        self.step = Some(writer.begin(step, &layers).map_err(py_error)?);
        Ok(())
    }

    /// Writes `array` (float32, C-contiguous) as the next datapoints of layer `layer`
    /// (its index in `begin`'s list). The array is read in place (no copy).
    fn rows(&mut self, py: Python<'_>, layer: usize, array: &Bound<'_, PyAny>) -> PyResult<()> {
        let file = self.step.as_mut().ok_or_else(|| PyRuntimeError::new_err("no step begun"))?;
        let buffer = PyBuffer::<f32>::get(array).map_err(|_| PyTypeError::new_err(format!("layer {layer}: expected a float32 array")))?;
        if !buffer.is_c_contiguous() {
            return Err(PyValueError::new_err(format!("layer {layer}: expected a C-contiguous array")));
        }
        let shape: Vec<i64> = buffer.shape().iter().map(|&d| d as i64).collect();
        let strides = contiguous_strides(&shape);
        // SAFETY: the buffer holds a C-contiguous float32 array of this shape and stays
        // alive (held by `buffer`) as long as the tensor, which is only read (converted
        // and written to the file) before this call returns.
        let t = unsafe { Tensor::from_blob(buffer.buf_ptr() as *const u8, &shape, &strides, Kind::Float, Device::Cpu) };
        py.detach(move || file.write_rows(layer, &t)).map_err(py_error)
    }

    /// Names the step's file and lists it in the folder's manifest.
    fn finish(&mut self) -> PyResult<()> {
        let file = self.step.take().ok_or_else(|| PyRuntimeError::new_err("no step begun"))?;
        file.finish(&[]).map_err(py_error)
    }

    /// Drops the step being written: its temporary file is removed, nothing is listed.
    fn abort(&mut self) {
        self.step = None;
    }

    /// Releases the folder's lock; later writes are refused.
    fn close(&mut self) {
        self.step = None;
        self.writer = None;
    }
}

/// Element strides of a C-contiguous array of `shape`.
fn contiguous_strides(shape: &[i64]) -> Vec<i64> {
    let mut strides = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        strides[i] = strides[i + 1] * shape[i + 1];
    }
    strides
}

#[pymodule]
fn _svcca(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_function(wrap_pyfunction!(compare, m)?)?;
    m.add_class::<ActivationWriter>()?;
    Ok(())
}
