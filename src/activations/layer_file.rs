//! A safetensors file of layers written a block of datapoints at a time: its header first,
//! from the layers' shapes, then each block of rows at its place in the file. What writes
//! activations that way holds one block, never a whole probe's layers: store mode's step
//! files and the Python recorder's ([`super::store::StepFile`]), and an analysis's spill
//! file ([`super::record::record_to_file`]).

use crate::error::InputError;
use anyhow::Context;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

/// Bytes of a block converted to the stored kind at a time by [`LayerFile::write_rows`]:
/// a float16 file of large layers is never converted whole beside them.
const CONVERT_BYTES: i64 = 16 << 20;

/// Where each layer's values go in a file begun by [`LayerFile::start`].
pub(crate) struct LayerFile {
    /// The file's name, for messages.
    path: PathBuf,
    kind: Kind,
    layers: Vec<Slot>,
}

struct Slot {
    name: String,
    shape: Vec<i64>,
    /// File offset of its first value.
    offset: u64,
    /// Datapoints written so far (they are written in order).
    written: i64,
}

/// The safetensors code of a stored kind.
fn code(kind: Kind) -> &'static str {
    match kind {
        Kind::Half => "F16",
        Kind::Float => "F32",
        other => unreachable!("layers are stored in float32 or float16, not {other:?}"),
    }
}

impl LayerFile {
    /// Writes the header of `layers` (name, shape: datapoints first) of `kind` (float32 or
    /// float16) into `file`, an empty file named `path` in messages, and sizes it.
    pub(crate) fn start(file: &File, path: &Path, layers: &[(String, Vec<i64>)], kind: Kind) -> anyhow::Result<LayerFile> {
        let value = kind.elt_size_in_bytes() as u64;
        let mut header = serde_json::Map::new();
        let mut end = 0u64;
        let mut slots = Vec::with_capacity(layers.len());
        for (name, shape) in layers {
            let begin = end;
            end += shape.iter().map(|&d| d as u64).product::<u64>() * value;
            header.insert(name.clone(), serde_json::json!({"dtype": code(kind), "shape": shape, "data_offsets": [begin, end]}));
            slots.push(Slot { name: name.clone(), shape: shape.clone(), offset: begin, written: 0 });
        }
        let mut json = serde_json::to_vec(&header)?;
        // Padded with spaces so the data starts 8-byte aligned, as the safetensors library
        // writes it.
        json.resize(json.len().div_ceil(8) * 8, b' ');
        let base = 8 + json.len() as u64;
        let err = || format!("cannot write {}", path.display());
        file.write_all_at(&(json.len() as u64).to_le_bytes(), 0).with_context(err)?;
        file.write_all_at(&json, 8).with_context(err)?;
        file.set_len(base + end).with_context(err)?;
        for slot in &mut slots {
            slot.offset += base;
        }
        Ok(LayerFile { path: path.to_path_buf(), kind, layers: slots })
    }

    /// Writes `rows` (any float kind, on any device) as layer `layer`'s next datapoints.
    pub(crate) fn write_rows(&mut self, file: &File, layer: usize, rows: &Tensor) -> anyhow::Result<()> {
        let slot = &mut self.layers[layer];
        let (shape, count) = (rows.size(), rows.size().first().copied().unwrap_or(0));
        if shape.len() != slot.shape.len() || shape[1..] != slot.shape[1..] || slot.written + count > slot.shape[0] {
            let (name, written, whole) = (&slot.name, slot.written, &slot.shape);
            return Err(
                InputError::new(format!("{}: '{name}': {shape:?} after {written} of {whole:?} written", self.path.display())).into()
            );
        }
        let row_bytes = shape[1..].iter().product::<i64>() * self.kind.elt_size_in_bytes() as i64;
        let chunk = (CONVERT_BYTES / row_bytes.max(1)).max(1);
        let mut bytes = Vec::new();
        for start in (0..count).step_by(chunk as usize) {
            let n = chunk.min(count - start);
            let part = rows.narrow(0, start, n).to_device(Device::Cpu).to_kind(self.kind).contiguous();
            bytes.resize((n * row_bytes) as usize, 0);
            part.f_copy_data_u8(&mut bytes, part.numel())?;
            let at = slot.offset + ((slot.written + start) * row_bytes) as u64;
            file.write_all_at(&bytes, at).with_context(|| format!("cannot write {}", self.path.display()))?;
        }
        slot.written += count;
        Ok(())
    }

    /// Refuses a file with a layer not wholly written.
    pub(crate) fn check_complete(&self) -> Result<(), InputError> {
        match self.layers.iter().find(|s| s.written != s.shape[0]) {
            Some(s) => Err(InputError::new(format!(
                "{}: '{}' has {} of its {} datapoints written",
                self.path.display(),
                s.name,
                s.written,
                s.shape[0]
            ))),
            None => Ok(()),
        }
    }

    /// The layers' names and shapes, in order.
    pub(crate) fn layers(&self) -> impl Iterator<Item = (&str, &[i64])> {
        self.layers.iter().map(|s| (s.name.as_str(), s.shape.as_slice()))
    }
}
