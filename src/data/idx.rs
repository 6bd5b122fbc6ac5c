//! MNIST and Fashion-MNIST in their IDX files, gzipped or not:
//! `train-images-idx3-ubyte`, `train-labels-idx1-ubyte`, `t10k-images-idx3-ubyte`,
//! `t10k-labels-idx1-ubyte` (each optionally `.gz`). An IDX file is a big-endian header
//! (two zero bytes, a type byte, 0x08 for unsigned bytes, the number of dimensions, then
//! each dimension as a u32) followed by the data.

use super::RawSplit;
use crate::error::InputError;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Which of the two sets, for messages that say how to get the files.
#[derive(Debug, Clone, Copy)]
pub enum Flavour {
    Mnist,
    FashionMnist,
}

impl Flavour {
    fn how_to_get(self) -> &'static str {
        match self {
            Flavour::Mnist => "download the four IDX files from http://yann.lecun.com/exdb/mnist/ (or a mirror)",
            Flavour::FashionMnist => {
                "on Debian/Ubuntu `apt-get install dataset-fashion-mnist` puts them in /usr/share/datasets/fashion-mnist; or download from https://github.com/zalandoresearch/fashion-mnist"
            }
        }
    }
}

pub fn load(dir: &Path, flavour: Flavour) -> Result<(RawSplit, RawSplit), InputError> {
    let train = split(dir, flavour, "train")?;
    let test = split(dir, flavour, "t10k")?;
    Ok((train, test))
}

fn split(dir: &Path, flavour: Flavour, prefix: &str) -> Result<RawSplit, InputError> {
    let images_path = find(dir, &format!("{prefix}-images-idx3-ubyte"), flavour)?;
    let labels_path = find(dir, &format!("{prefix}-labels-idx1-ubyte"), flavour)?;
    let (idims, images) = read_idx(&images_path)?;
    let (ldims, labels) = read_idx(&labels_path)?;
    let shown = |p: &PathBuf| p.display().to_string();
    if idims.len() != 3 {
        return Err(InputError::new(format!("{}: images must have 3 dimensions (N x H x W), found {idims:?}", shown(&images_path))));
    }
    if ldims.len() != 1 {
        return Err(InputError::new(format!("{}: labels must have 1 dimension, found {ldims:?}", shown(&labels_path))));
    }
    if idims[0] != ldims[0] {
        return Err(InputError::new(format!(
            "{} holds {} images but {} holds {} labels",
            shown(&images_path),
            idims[0],
            shown(&labels_path),
            ldims[0]
        )));
    }
    if let Some((i, &l)) = labels.iter().enumerate().find(|(_, &l)| l > 9) {
        return Err(InputError::new(format!("{}: label {i} is {l}, labels are 0..9", shown(&labels_path))));
    }
    Ok(RawSplit {
        channels: 1,
        height: idims[1] as i64,
        width: idims[2] as i64,
        images,
        labels: labels.into_iter().map(i64::from).collect(),
    })
}

fn find(dir: &Path, stem: &str, flavour: Flavour) -> Result<PathBuf, InputError> {
    for name in [stem.to_string(), format!("{stem}.gz")] {
        let p = dir.join(name);
        if p.is_file() {
            return Ok(p);
        }
    }
    Err(InputError::new(format!("{}: {stem} (or {stem}.gz) is missing; {}", dir.display(), flavour.how_to_get())))
}

/// Reads a u8 IDX file: its dimensions and data, checked against each other.
pub(crate) fn read_idx(path: &Path) -> Result<(Vec<usize>, Vec<u8>), InputError> {
    let name = path.display();
    let raw = std::fs::read(path).map_err(|e| InputError::new(format!("{name}: cannot read: {e}")))?;
    let bytes = if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .map_err(|e| InputError::new(format!("{name}: corrupt gzip data ({e})")))?;
        out
    } else {
        raw
    };
    if bytes.len() < 4 || bytes[0] != 0 || bytes[1] != 0 {
        return Err(InputError::new(format!("{name}: not an IDX file (bad magic number)")));
    }
    if bytes[2] != 0x08 {
        return Err(InputError::new(format!("{name}: IDX data type 0x{:02x}, expected 0x08 (unsigned bytes)", bytes[2])));
    }
    let ndims = bytes[3] as usize;
    let header = 4 + 4 * ndims;
    if ndims == 0 || bytes.len() < header {
        return Err(InputError::new(format!("{name}: truncated IDX header")));
    }
    let dims: Vec<usize> = (0..ndims).map(|i| u32::from_be_bytes(bytes[4 + 4 * i..8 + 4 * i].try_into().unwrap()) as usize).collect();
    let expected: usize = dims.iter().product();
    let found = bytes.len() - header;
    if found != expected {
        return Err(InputError::new(format!(
            "{name}: header says {dims:?} ({expected} bytes of data) but the file holds {found}{}",
            if found < expected { " (truncated)" } else { "" }
        )));
    }
    Ok((dims, bytes[header..].to_vec()))
}
