//! The built-in synthetic set written in a real dataset's own file format: CIFAR-10's
//! binary batches, or MNIST's and Fashion-MNIST's IDX files (`svcca data synthetic`).
//!
//! A config made for CIFAR-10 or Fashion-MNIST then runs unchanged (except `data.path`)
//! on a machine without the dataset: the test suite runs every shipped config this way,
//! and `scripts/paper_scale.sh` rehearses the paper's sizes. The images are learnable and
//! class-dependent ([`super::synthetic`]'s patterns); a 28 x 28 x 1 set takes the first
//! channel of the 32 x 32 images, cropped at the centre.

use super::{cifar, synthetic, RawSplit};
use crate::config::DatasetName;
use crate::error::InputError;
use std::path::{Path, PathBuf};

/// Writes `train` and `test` synthetic images (seed `seed`) as `dataset`'s files into
/// `dir` (made if missing; CIFAR-10's into `dir/cifar-10-batches-bin`, as `svcca data
/// fetch` leaves them). Returns the files written. Refused, with nothing written, where
/// one of them exists already (nothing is overwritten) or the sizes cannot be written.
pub(crate) fn write(dataset: DatasetName, dir: &Path, seed: u64, train: usize, test: usize) -> Result<Vec<PathBuf>, InputError> {
    let (train_split, test_split) = synthetic::generate(seed, train, test);
    let files: Vec<(PathBuf, Vec<u8>)> = match dataset {
        DatasetName::Cifar10 => {
            if train < cifar::TRAIN_FILES.len() {
                return Err(InputError::new(format!(
                    "--train {train}: CIFAR-10 spreads its training images over {} files, so write at least that many",
                    cifar::TRAIN_FILES.len()
                )));
            }
            let folder = dir.join(cifar::FOLDER);
            let parts = cifar::TRAIN_FILES.len();
            let mut out: Vec<(PathBuf, Vec<u8>)> = (0..parts)
                .map(|k| {
                    let (from, to) = (k * train / parts, (k + 1) * train / parts);
                    (folder.join(cifar::TRAIN_FILES[k]), cifar_records(&train_split, from..to))
                })
                .collect();
            out.push((folder.join(cifar::TEST_FILE), cifar_records(&test_split, 0..test)));
            out
        }
        DatasetName::Mnist | DatasetName::FashionMnist => {
            let (train_split, test_split) = (grey_28(&train_split), grey_28(&test_split));
            vec![
                (dir.join("train-images-idx3-ubyte"), idx_images(&train_split)),
                (dir.join("train-labels-idx1-ubyte"), idx_labels(&train_split)),
                (dir.join("t10k-images-idx3-ubyte"), idx_images(&test_split)),
                (dir.join("t10k-labels-idx1-ubyte"), idx_labels(&test_split)),
            ]
        }
        DatasetName::Synthetic => {
            return Err(InputError::new("synthetic: the built-in set needs no files (data.dataset = \"synthetic\")"));
        }
    };
    if let Some((p, _)) = files.iter().find(|(p, _)| p.exists() || p.symlink_metadata().is_ok()) {
        return Err(InputError::new(format!("{}: exists already; write into an empty folder (nothing is overwritten)", p.display())));
    }
    for (p, bytes) in &files {
        let parent = p.parent().expect("a file in a folder");
        std::fs::create_dir_all(parent).map_err(|e| InputError::new(format!("{}: cannot create: {e}", parent.display())))?;
        crate::io::write_atomic(p, bytes).map_err(|e| InputError::new(format!("{}: cannot write: {e:#}", p.display())))?;
    }
    Ok(files.into_iter().map(|(p, _)| p).collect())
}

/// Images `range` of `split` (3 x 32 x 32) as CIFAR-10 records: a label byte, then the
/// red, green and blue planes.
fn cifar_records(split: &RawSplit, range: std::ops::Range<usize>) -> Vec<u8> {
    let len = (split.channels * split.height * split.width) as usize;
    let mut out = Vec::with_capacity(range.len() * cifar::RECORD);
    for i in range {
        out.push(split.labels[i] as u8);
        out.extend_from_slice(&split.images[i * len..(i + 1) * len]);
    }
    out
}

/// The first channel of 32 x 32 images, its centre 28 x 28: MNIST's shape.
fn grey_28(split: &RawSplit) -> RawSplit {
    let (s, side, margin) = (split.height as usize, 28usize, 2usize);
    let len = (split.channels as usize) * s * s;
    let mut out = RawSplit::empty(1, side as i64, side as i64);
    for (i, &label) in split.labels.iter().enumerate() {
        let first = &split.images[i * len..i * len + s * s];
        for y in margin..margin + side {
            out.images.extend_from_slice(&first[y * s + margin..y * s + margin + side]);
        }
        out.labels.push(label);
    }
    out
}

/// An IDX header: unsigned bytes, then each dimension as a big-endian u32.
fn idx_header(dims: &[usize]) -> Vec<u8> {
    let mut out = vec![0, 0, 0x08, dims.len() as u8];
    for &d in dims {
        out.extend_from_slice(&(d as u32).to_be_bytes());
    }
    out
}

fn idx_images(split: &RawSplit) -> Vec<u8> {
    let mut out = idx_header(&[split.len(), split.height as usize, split.width as usize]);
    out.extend_from_slice(&split.images);
    out
}

fn idx_labels(split: &RawSplit) -> Vec<u8> {
    let mut out = idx_header(&[split.len()]);
    out.extend(split.labels.iter().map(|&l| l as u8));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::idx;

    #[test]
    fn cifar_files_read_back_as_the_synthetic_images() {
        let dir = tempfile::tempdir().unwrap();
        let files = write(DatasetName::Cifar10, dir.path(), 3, 12, 4).unwrap();
        assert_eq!(files.len(), 6);
        let (train, test) = cifar::load(dir.path()).unwrap();
        let (want_train, want_test) = synthetic::generate(3, 12, 4);
        assert_eq!((train, test), (want_train, want_test));
        // Nothing is overwritten.
        let e = write(DatasetName::Cifar10, dir.path(), 3, 12, 4).unwrap_err().to_string();
        assert!(e.contains("exists already"), "{e}");
        assert!(write(DatasetName::Cifar10, &dir.path().join("x"), 3, 4, 4).unwrap_err().to_string().contains("at least"));
    }

    #[test]
    fn idx_files_read_back_as_the_first_channel_cropped() {
        let dir = tempfile::tempdir().unwrap();
        write(DatasetName::FashionMnist, dir.path(), 1, 5, 3).unwrap();
        let (train, test) = idx::load(dir.path(), idx::Flavour::FashionMnist).unwrap();
        let (want, _) = synthetic::generate(1, 5, 3);
        assert_eq!((train.len(), test.len(), train.height, train.width, train.channels), (5, 3, 28, 28, 1));
        assert_eq!(train.labels, want.labels);
        // Pixel (y, x) of the crop is pixel (y + 2, x + 2) of the first channel.
        let (y, x) = (5, 7);
        assert_eq!(train.images[28 * 28 + y * 28 + x], want.images[3 * 32 * 32 + (y + 2) * 32 + x + 2]);
    }
}
