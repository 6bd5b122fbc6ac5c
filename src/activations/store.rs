//! `store` mode: the probe activations of every analysed layer, written at each checkpoint
//! during training as `activations/step-NNNNNNNN.safetensors` (one tensor per layer,
//! named after it, float32 or float16), with `activations/manifest.json` listing layer,
//! step, shape, dtype and file, and the probe's test-set indices. Python opens them with
//! `safetensors.numpy.load_file`. Each file is written to a temporary and renamed; an
//! existing file is never overwritten.
//!
//! The input layer ([`INPUT`], `in`) is not stored: it does not change during training,
//! and it is the probe's normalised images, which [`load`] takes from the probe.

use super::layer_file::LayerFile;
use super::probe::Probe;
use super::record;
use crate::config::{Config, StoreDtype};
use crate::error::InputError;
use crate::model::{Network, INPUT};
use crate::run_dir::{step_file_name, step_files};
use anyhow::Context;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

pub const FOLDER: &str = "activations";
pub(crate) const MANIFEST: &str = "manifest.json";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Entry {
    pub step: u64,
    pub layer: String,
    pub shape: Vec<i64>,
    pub dtype: String,
    pub file: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Manifest {
    /// The probe's test-set indices (empty in an activation folder written elsewhere).
    #[serde(default)]
    pub probe_indices: Vec<i64>,
    pub entries: Vec<Entry>,
}

/// Records and writes activations at checkpoints.
pub struct Recorder {
    dir: PathBuf,
    probe: Probe,
    /// The analysed layers but the input.
    layers: Vec<String>,
    dtype: StoreDtype,
}

/// The layers the analysis covers: the config's list, or the input ([`INPUT`]) and every
/// named layer.
pub fn layers(config: &Config, net: &Network) -> Result<Vec<String>, InputError> {
    let all = net.analysable_layers();
    match &config.analysis.layers {
        None => Ok(all.iter().map(|s| s.to_string()).collect()),
        Some(list) => {
            for l in list {
                if !all.contains(&l.as_str()) {
                    return Err(InputError::new(format!(
                        "analysis.layers: no layer '{l}' in this network; its layers are {} ('{INPUT}': the input)",
                        all.join(" ")
                    )));
                }
            }
            net.check_bottom_up(list, "analysis.layers")?;
            Ok(list.clone())
        }
    }
}

impl Recorder {
    pub fn new(config: &Config, data: &crate::data::Dataset, net: &Network, run: &Path) -> anyhow::Result<Recorder> {
        let dir = run.join(FOLDER);
        std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let layers = layers(config, net)?.into_iter().filter(|l| l != INPUT).collect();
        Ok(Recorder { dir, probe: Probe::new(data, &config.analysis), layers, dtype: config.analysis.dtype })
    }

    /// Writes the activations of `net` at `step`, unless that step's file exists.
    pub fn save(&self, net: &Network, step: u64) -> anyhow::Result<()> {
        let path = self.dir.join(step_file_name(step));
        if path.exists() {
            return Ok(());
        }
        let acts = record::record(net, &self.probe, &self.layers)?;
        let tensors: Vec<(String, Tensor)> = self.layers.iter().cloned().zip(acts).collect();
        write_step(&self.dir, step, &tensors, self.dtype, &self.probe.indices)
    }
}

/// Writes `layers` (name, activations; bottom-up) as step `step`'s file in the
/// `activations/` folder `dir`, in `dtype`, and lists them in its manifest (with the
/// probe's indices, empty for an activation folder written elsewhere). An existing
/// file is never replaced: that is refused.
pub(crate) fn write_step(
    dir: &Path,
    step: u64,
    layers: &[(String, Tensor)],
    dtype: StoreDtype,
    probe_indices: &[i64],
) -> anyhow::Result<()> {
    let shapes: Vec<(String, Vec<i64>)> = layers.iter().map(|(l, a)| (l.clone(), a.size())).collect();
    let mut file = StepFile::create(dir, step, &shapes, dtype)?;
    for (i, (_, a)) in layers.iter().enumerate() {
        file.write_rows(i, a)?;
    }
    file.finish(probe_indices)
}

/// One step's file being written, layer by layer and a block of datapoints at a time
/// ([`LayerFile`]: the Python recorder writes each forward batch as it comes, so it
/// never holds a whole probe's activations). [`StepFile::finish`] names the file and
/// lists it in the manifest once every row is there; dropped before that, nothing is left.
pub struct StepFile {
    staged: crate::io::Staged,
    layers: LayerFile,
    dir: PathBuf,
    step: u64,
    dtype: StoreDtype,
}

/// A stored dtype's libtorch kind and manifest name.
fn stored(dtype: StoreDtype) -> (Kind, &'static str) {
    match dtype {
        StoreDtype::Float32 => (Kind::Float, "float32"),
        StoreDtype::Float16 => (Kind::Half, "float16"),
    }
}

impl StepFile {
    /// Starts step `step`'s file in `dir` for `layers` (name, shape; datapoints first).
    /// Refused when the step's file exists.
    pub fn create(dir: &Path, step: u64, layers: &[(String, Vec<i64>)], dtype: StoreDtype) -> anyhow::Result<StepFile> {
        let path = dir.join(step_file_name(step));
        if path.symlink_metadata().is_ok() {
            return Err(InputError::new(format!("{}: exists already; a step's file is never replaced", path.display())).into());
        }
        let staged = crate::io::Staged::create(&path)?;
        let layers = LayerFile::start(staged.file(), &path, layers, stored(dtype).0)?;
        Ok(StepFile { staged, layers, dir: dir.to_path_buf(), step, dtype })
    }

    /// Writes `rows` (any float kind, on any device) as layer `layer`'s next datapoints.
    pub fn write_rows(&mut self, layer: usize, rows: &Tensor) -> anyhow::Result<()> {
        self.layers.write_rows(self.staged.file(), layer, rows)
    }

    /// Names the file, once every layer's datapoints are written, and lists its layers in
    /// the folder's manifest (with `probe_indices`).
    pub fn finish(self, probe_indices: &[i64]) -> anyhow::Result<()> {
        self.layers.check_complete()?;
        let entries: Vec<Entry> = self
            .layers
            .layers()
            .map(|(layer, shape)| Entry {
                step: self.step,
                layer: layer.to_string(),
                shape: shape.to_vec(),
                dtype: stored(self.dtype).1.into(),
                file: step_file_name(self.step),
            })
            .collect();
        self.staged.finish(crate::io::Replace::Never)?;
        let mut manifest = read_manifest(&self.dir)?.unwrap_or_default();
        manifest.probe_indices = probe_indices.to_vec();
        manifest.entries.retain(|e| e.step != self.step);
        manifest.entries.extend(entries);
        manifest.entries.sort_by_key(|a| a.step);
        crate::io::write_json_atomic(&self.dir.join(MANIFEST), &manifest)?;
        Ok(())
    }
}

/// The manifest in `dir` (an `activations/` folder), if there is one.
pub(crate) fn read_manifest(dir: &Path) -> anyhow::Result<Option<Manifest>> {
    let path = dir.join(MANIFEST);
    if !path.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(Some(serde_json::from_str(&text).map_err(|e| InputError::new(format!("{}: {e}", path.display())))?))
}

/// Stored activation files in the run folder, by step (refused where their folder
/// cannot be listed: see [`crate::run_dir::step_files`]).
pub fn list(run: &Path) -> anyhow::Result<Vec<(u64, PathBuf)>> {
    step_files(&run.join(FOLDER))
}

/// The stored activations of `layers` at one file, float32 on `device`; in a run
/// folder the input layer ([`INPUT`]) is not in the file but taken from `probe` (the
/// probe the file was recorded on, drawn again from the data); an activation folder
/// written elsewhere has no probe, and every layer is in its files. Only the tensors
/// asked for are read, so an analysis streaming its layers through a memory budget
/// holds no more of the file than those.
pub fn load(path: &Path, layers: &[String], probe: Option<&Probe>, device: Device) -> anyhow::Result<Vec<Tensor>> {
    let header = read_header(path)?;
    let mut file = std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    layers
        .iter()
        .map(|l| {
            if let Some(probe) = probe.filter(|_| l == INPUT) {
                return Ok(record::input(probe).to_device(device));
            }
            let t = header.get(l).ok_or_else(|| InputError::new(format!("{}: no activations of layer '{l}'", path.display())))?;
            Ok(t.read(&mut file, path, READ_BYTES)?.to_kind(Kind::Float).to_device(device))
        })
        .collect()
}

/// The shapes of `layers` in one file (the input layer's from `probe`, where there is
/// one: see [`load`]), without reading their data.
pub fn shapes(path: &Path, layers: &[String], probe: Option<&Probe>) -> anyhow::Result<Vec<Vec<i64>>> {
    let header = read_header(path)?;
    layers
        .iter()
        .map(|l| {
            if let Some(probe) = probe.filter(|_| l == INPUT) {
                return Ok(probe.images.size());
            }
            Ok(header.get(l).ok_or_else(|| InputError::new(format!("{}: no activations of layer '{l}'", path.display())))?.shape.clone())
        })
        .collect()
}

/// Bytes read at a time by [`load`].
const READ_BYTES: u64 = 32 << 20;

/// One tensor's entry in a safetensors header.
#[derive(Debug, Deserialize)]
struct Stored {
    dtype: String,
    shape: Vec<i64>,
    data_offsets: [u64; 2],
    /// Where the data begins in the file (after the header); not in the JSON.
    #[serde(skip)]
    base: u64,
}

impl Stored {
    /// Reads this tensor's bytes (float32, float16, bfloat16 or float64, little-endian)
    /// from `file`, at most `chunk` bytes (whole datapoints) at a time.
    fn read(&self, file: &mut std::fs::File, path: &Path, chunk: u64) -> anyhow::Result<Tensor> {
        use std::io::{Read, Seek, SeekFrom};
        let (kind, size) = match self.dtype.as_str() {
            "F32" => (Kind::Float, 4),
            "F16" => (Kind::Half, 2),
            "BF16" => (Kind::BFloat16, 2),
            "F64" => (Kind::Double, 8),
            other => {
                return Err(
                    InputError::new(format!("{}: dtype {other} is not float32, float16, bfloat16 or float64", path.display())).into()
                )
            }
        };
        let len = self.data_offsets[1].checked_sub(self.data_offsets[0]).unwrap_or(u64::MAX);
        let elements: i64 = self.shape.iter().product();
        if len != elements as u64 * size {
            return Err(
                InputError::new(format!("{}: a tensor of shape {:?} does not fill its {len} bytes", path.display(), self.shape)).into()
            );
        }
        // Read a block of datapoints at a time into the tensor: the file's bytes are never
        // held whole beside it (a memory budget counts the tensor only).
        let out = Tensor::empty(self.shape.as_slice(), (kind, Device::Cpu));
        let Some(&rows) = self.shape.first() else {
            return Err(InputError::new(format!("{}: a tensor without dimensions is no layer's activations", path.display())).into());
        };
        if len == 0 {
            return Ok(out); // no datapoints: nothing to read
        }
        let row_bytes = len / rows as u64;
        let per_read = (chunk / row_bytes.max(1)).max(1) as i64;
        file.seek(SeekFrom::Start(self.base + self.data_offsets[0])).with_context(|| format!("cannot read {}", path.display()))?;
        let mut bytes = Vec::new();
        let mut at = 0;
        while at < rows {
            let n = per_read.min(rows - at);
            bytes.resize((n as u64 * row_bytes) as usize, 0);
            file.read_exact(&mut bytes).with_context(|| format!("cannot read {}", path.display()))?;
            let mut shape = self.shape.clone();
            if let Some(first) = shape.first_mut() {
                *first = n;
            }
            out.narrow(0, at, n).copy_(&Tensor::from_data_size(&bytes, &shape, kind));
            at += n;
        }
        Ok(out)
    }
}

/// The shape of each tensor a safetensors file holds, by name, from its header alone.
pub(crate) fn header_shapes(path: &Path) -> anyhow::Result<std::collections::HashMap<String, Vec<i64>>> {
    Ok(read_header(path)?.into_iter().map(|(name, t)| (name, t.shape)).collect())
}

/// The tensors a safetensors file holds, by name, from its header: an 8-byte
/// little-endian length, then that much JSON.
fn read_header(path: &Path) -> anyhow::Result<std::collections::HashMap<String, Stored>> {
    use std::io::Read;
    let bad = |why: String| InputError::new(format!("{}: not a safetensors file ({why})", path.display()));
    let mut file = std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut len = [0u8; 8];
    file.read_exact(&mut len).map_err(|e| bad(e.to_string()))?;
    let len = u64::from_le_bytes(len);
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    if len > size.saturating_sub(8) {
        return Err(bad(format!("a header of {len} bytes in a file of {size}")).into());
    }
    let mut json = vec![0u8; len as usize];
    file.read_exact(&mut json).map_err(|e| bad(e.to_string()))?;
    let value: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&json).map_err(|e| bad(e.to_string()))?;
    value
        .into_iter()
        .filter(|(name, _)| name != "__metadata__")
        .map(|(name, v)| {
            let mut t: Stored = serde_json::from_value(v).map_err(|e| bad(format!("tensor '{name}': {e}")))?;
            t.base = 8 + len;
            Ok((name, t))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tensors_read_back_block_by_block_and_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.safetensors");
        let a = Tensor::randn([10, 3, 4], (Kind::Float, Device::Cpu));
        let b = Tensor::randn([10, 7], (Kind::Float, Device::Cpu)).to_kind(Kind::Half);
        Tensor::write_safetensors(&[("a", &a), ("b", &b)], &path).unwrap();
        let header = read_header(&path).unwrap();
        let mut file = std::fs::File::open(&path).unwrap();
        // 100 bytes: two datapoints of a (48 bytes each) and seven of b (14 each) a read.
        for chunk in [100, 1 << 20] {
            assert!(header["a"].read(&mut file, &path, chunk).unwrap().equal(&a));
            assert!(header["b"].read(&mut file, &path, chunk).unwrap().equal(&b));
        }
        let probe = Probe { indices: vec![], images: Tensor::zeros([10, 1, 2, 2], (Kind::Float, Device::Cpu)) };
        let got = load(&path, &["b".to_string(), "in".to_string()], Some(&probe), Device::Cpu).unwrap();
        assert!(got[0].equal(&b.to_kind(Kind::Float)));
        assert_eq!(got[1].size(), [10, 1, 2, 2]);
        assert_eq!(shapes(&path, &["a".to_string()], Some(&probe)).unwrap(), [vec![10, 3, 4]]);
        let e = load(&path, &["c".to_string()], Some(&probe), Device::Cpu).unwrap_err().to_string();
        assert!(e.contains("no activations of layer 'c'"), "{e}");
    }

    /// A step written a block of datapoints at a time (in more than one conversion chunk
    /// for the large layer) is the file libtorch's safetensors writer makes of the whole
    /// layers, value for value, in either dtype, and readable by both readers; its data
    /// starts 8-byte aligned.
    #[test]
    fn a_step_written_block_by_block_reads_back_as_the_whole_layers() {
        tch::manual_seed(3);
        let dir = tempfile::tempdir().unwrap();
        // 300 x 16 x 32 x 32 float32: 19.7 MB, more than one of LayerFile's conversions.
        let conv = Tensor::randn([300, 16, 32, 32], (Kind::Float, Device::Cpu));
        let dense = Tensor::randn([300, 10], (Kind::Float, Device::Cpu));
        assert!(conv.numel() * 4 > 16 << 20);
        for (step, dtype, kind) in [(1u64, StoreDtype::Float32, Kind::Float), (2, StoreDtype::Float16, Kind::Half)] {
            let layers = [("conv".to_string(), conv.size()), ("fc".to_string(), dense.size())];
            let mut file = StepFile::create(dir.path(), step, &layers, dtype).unwrap();
            for (at, n) in [(0, 7), (7, 250), (257, 43)] {
                file.write_rows(1, &dense.narrow(0, at, n)).unwrap();
                file.write_rows(0, &conv.narrow(0, at, n)).unwrap();
            }
            file.finish(&[4, 5]).unwrap();
            let path = dir.path().join(step_file_name(step));
            let bytes = std::fs::read(&path).unwrap();
            assert_eq!(u64::from_le_bytes(bytes[..8].try_into().unwrap()) % 8, 0);
            let read: std::collections::HashMap<String, Tensor> = Tensor::read_safetensors(&path).unwrap().into_iter().collect();
            assert!(read["conv"].equal(&conv.to_kind(kind)) && read["fc"].equal(&dense.to_kind(kind)), "{dtype:?}");
            let ours = load(&path, &["fc".to_string(), "conv".to_string()], None, Device::Cpu).unwrap();
            assert!(ours[0].equal(&dense.to_kind(kind).to_kind(Kind::Float)) && ours[1].equal(&conv.to_kind(kind).to_kind(Kind::Float)));
            let manifest = read_manifest(dir.path()).unwrap().unwrap();
            assert_eq!(manifest.probe_indices, [4, 5]);
            let listed: Vec<(&str, &str)> =
                manifest.entries.iter().filter(|e| e.step == step).map(|e| (e.layer.as_str(), e.dtype.as_str())).collect();
            let name = if kind == Kind::Float { "float32" } else { "float16" };
            assert_eq!(listed, [("conv", name), ("fc", name)]);
        }
    }

    /// Rows past a layer's end or of another shape are refused; a step not complete is
    /// not named, and whether finished or dropped it leaves no temporary file; an
    /// existing step is refused before anything is written.
    #[test]
    fn an_incomplete_or_misshapen_step_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let x = Tensor::ones([4, 3], (Kind::Float, Device::Cpu));
        let layers = [("a".to_string(), vec![4, 3])];
        let mut file = StepFile::create(dir.path(), 5, &layers, StoreDtype::Float32).unwrap();
        file.write_rows(0, &x.narrow(0, 0, 3)).unwrap();
        let e = file.write_rows(0, &x.narrow(0, 0, 2)).unwrap_err().to_string();
        assert!(e.contains("'a': [2, 3] after 3 of [4, 3] written"), "{e}");
        let e = file.write_rows(0, &Tensor::ones([1, 4], (Kind::Float, Device::Cpu))).unwrap_err().to_string();
        assert!(e.contains("[1, 4]"), "{e}");
        let e = file.finish(&[]).unwrap_err().to_string();
        assert!(e.contains("'a' has 3 of its 4 datapoints written"), "{e}");
        let left = || std::fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(left(), 0, "an unfinished step leaves nothing");
        drop(StepFile::create(dir.path(), 5, &layers, StoreDtype::Float32).unwrap());
        assert_eq!(left(), 0, "a dropped step leaves nothing");
        write_step(dir.path(), 5, &[("a".to_string(), x.shallow_clone())], StoreDtype::Float32, &[]).unwrap();
        let e = StepFile::create(dir.path(), 5, &layers, StoreDtype::Float32).err().unwrap().to_string();
        assert!(e.contains("exists already"), "{e}");
    }
}
