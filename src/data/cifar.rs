//! CIFAR-10 in its binary distribution: `data_batch_1.bin` .. `data_batch_5.bin` and
//! `test_batch.bin`, each a run of 3073-byte records (a label byte, then 3 x 32 x 32
//! pixels in channel, row, column order). Read from a folder, from the
//! `cifar-10-batches-bin` folder inside it, or straight from `cifar-10-binary.tar.gz`.

use super::RawSplit;
use crate::error::InputError;
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

pub const RECORD: usize = 1 + 3 * 32 * 32;
pub const TRAIN_FILES: [&str; 5] = ["data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin", "data_batch_4.bin", "data_batch_5.bin"];
pub const TEST_FILE: &str = "test_batch.bin";
pub const ARCHIVE: &str = "cifar-10-binary.tar.gz";
pub const FOLDER: &str = "cifar-10-batches-bin";

fn how_to_get(path: &Path) -> String {
    format!(
        "get it with `svcca data fetch cifar10 --dir {}` (or from https://www.cs.toronto.edu/~kriz/cifar.html, binary version)",
        path.display()
    )
}

/// Loads the train and test splits from `path` (folder or `.tar.gz`).
pub fn load(path: &Path) -> Result<(RawSplit, RawSplit), InputError> {
    let files = if path.is_file() {
        read_archive(path)?
    } else if path.is_dir() {
        let folder =
            [path.to_path_buf(), path.join(FOLDER)].into_iter().find(|d| d.join(TEST_FILE).is_file() || d.join(TRAIN_FILES[0]).is_file());
        match folder {
            Some(d) => read_folder(&d)?,
            None if path.join(ARCHIVE).is_file() => read_archive(&path.join(ARCHIVE))?,
            None => {
                return Err(InputError::new(format!(
                    "{}: no CIFAR-10 files ({} .. {}, {} or {ARCHIVE}); {}",
                    path.display(),
                    TRAIN_FILES[0],
                    TRAIN_FILES[4],
                    TEST_FILE,
                    how_to_get(path)
                )))
            }
        }
    } else {
        return Err(InputError::new(format!("{}: no such file or folder; {}", path.display(), how_to_get(path))));
    };
    let train_parts: Vec<(String, Vec<u8>)> = TRAIN_FILES
        .iter()
        .map(|&f| files.get(f).map(|(n, b)| (n.clone(), b.clone())).ok_or_else(|| missing(path, f)))
        .collect::<Result<_, _>>()?;
    let (name, test_bytes) = files.get(TEST_FILE).ok_or_else(|| missing(path, TEST_FILE))?;
    let test = decode(name, test_bytes)?;
    let mut train = RawSplit::empty(3, 32, 32);
    for (name, bytes) in &train_parts {
        let part = decode(name, bytes)?;
        train.images.extend_from_slice(&part.images);
        train.labels.extend_from_slice(&part.labels);
    }
    Ok((train, test))
}

fn missing(path: &Path, file: &str) -> InputError {
    InputError::new(format!("{}: CIFAR-10 file {file} is missing; {}", path.display(), how_to_get(path)))
}

/// file name -> (path for messages, bytes)
type Files = BTreeMap<String, (String, Vec<u8>)>;

fn read_folder(dir: &Path) -> Result<Files, InputError> {
    let mut out = Files::new();
    for f in TRAIN_FILES.iter().chain([&TEST_FILE]) {
        let p: PathBuf = dir.join(f);
        if p.is_file() {
            let bytes = std::fs::read(&p).map_err(|e| InputError::new(format!("{}: cannot read: {e}", p.display())))?;
            out.insert(f.to_string(), (p.display().to_string(), bytes));
        }
    }
    Ok(out)
}

fn read_archive(path: &Path) -> Result<Files, InputError> {
    let bad = |e: &dyn std::fmt::Display| {
        InputError::new(format!(
            "{}: not a readable CIFAR-10 .tar.gz ({e}); {}",
            path.display(),
            how_to_get(path.parent().unwrap_or(Path::new(".")))
        ))
    };
    let file = std::fs::File::open(path).map_err(|e| bad(&e))?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(std::io::BufReader::new(file)));
    let mut out = Files::new();
    for entry in archive.entries().map_err(|e| bad(&e))? {
        let mut entry = entry.map_err(|e| bad(&e))?;
        let entry_path = entry.path().map_err(|e| bad(&e))?.into_owned();
        let Some(name) = entry_path.file_name().and_then(|n| n.to_str()).map(str::to_string) else { continue };
        if TRAIN_FILES.contains(&name.as_str()) || name == TEST_FILE {
            let mut bytes = Vec::with_capacity(entry.size() as usize);
            entry.read_to_end(&mut bytes).map_err(|e| bad(&e))?;
            out.insert(name, (format!("{}:{}", path.display(), entry_path.display()), bytes));
        }
    }
    Ok(out)
}

/// Splits one batch file into images and labels, checking its length and labels.
pub(crate) fn decode(name: &str, bytes: &[u8]) -> Result<RawSplit, InputError> {
    if bytes.is_empty() || !bytes.len().is_multiple_of(RECORD) {
        return Err(InputError::new(format!(
            "{name}: {} bytes is not a whole number of {RECORD}-byte CIFAR-10 records (truncated or not a CIFAR-10 batch)",
            bytes.len()
        )));
    }
    let mut split = RawSplit::empty(3, 32, 32);
    for (i, record) in bytes.chunks_exact(RECORD).enumerate() {
        if record[0] > 9 {
            return Err(InputError::new(format!("{name}: record {i} has label {}, CIFAR-10 labels are 0..9", record[0])));
        }
        split.labels.push(record[0] as i64);
        split.images.extend_from_slice(&record[1..]);
    }
    Ok(split)
}
