//! Comparing two activation files: the `svcca compare` job.
//!
//! Both `.npy` files are validated up front (so a bad second file fails before any work
//! on the first), then streamed block by block into [`Moments`]: a file pair larger than
//! the memory budget never sits in memory whole, and a pair that fits is one block.

use crate::device;
use crate::error::{InputError, Side};
use crate::npy::{Dtype, NpyFile};
use crate::similarity::{self, Keep, Moments, Options, Similarity};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Instant;
use tch::{Device, Kind, Tensor};

/// Everything `svcca compare` needs besides the two paths.
#[derive(Debug, Clone)]
pub struct CompareJob {
    pub a: PathBuf,
    pub b: PathBuf,
    pub options: Options,
    pub device: Device,
    /// Bytes of host memory the data blocks may take.
    pub memory_budget: u64,
}

/// The result with its context, as printed by `--json`.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    #[serde(flatten)]
    pub similarity: Similarity,
    pub keep: Keep,
    pub device: String,
    pub a: String,
    pub b: String,
    /// Blocks of datapoints the files were read in (1 when they fit the budget).
    pub blocks: usize,
    pub warnings: Vec<String>,
    pub seconds: f64,
}

fn display(p: &Path) -> String {
    p.display().to_string()
}

/// Opens a file and checks it is a 2-D float matrix.
fn open_matrix(path: &Path) -> Result<NpyFile, InputError> {
    let file = NpyFile::open(path)?;
    let shape = &file.header().shape;
    if shape.len() != 2 {
        return Err(InputError::new(format!(
            "{}: expected a 2-D array (datapoints x neurons), got shape {:?}",
            path.display(),
            shape
        )));
    }
    if file.rows() == 0 || file.cols() == 0 {
        return Err(InputError::new(format!(
            "{}: empty array of shape {:?}",
            path.display(),
            shape
        )));
    }
    Ok(file)
}

fn torch_kind(dtype: Dtype) -> Kind {
    match dtype {
        Dtype::F32 => Kind::Float,
        Dtype::F64 => Kind::Double,
    }
}

/// Rows per block so that the blocks of both files, as read and as converted to float64
/// and centred, fit in `budget` bytes (at least 256 rows, at most all of them).
fn rows_per_block(files: [&NpyFile; 2], budget: u64) -> usize {
    let per_row: u64 = files
        .iter()
        .map(|f| f.cols() as u64 * (2 * f.header().dtype.size() as u64 + 2 * 8))
        .sum();
    let rows = files[0].rows();
    ((budget / per_row.max(1)) as usize).clamp(256.min(rows), rows)
}

impl CompareJob {
    pub fn run(&self) -> Result<Report, InputError> {
        let started = Instant::now();
        let (name_a, name_b) = (display(&self.a), display(&self.b));
        let mut fa = open_matrix(&self.a)?;
        let mut fb = open_matrix(&self.b)?;
        if fa.rows() != fb.rows() {
            return Err(InputError::new(format!(
                "{name_a} has {} datapoints (rows) but {name_b} has {}: compare activations of the same inputs",
                fa.rows(),
                fb.rows()
            )));
        }
        let rows = fa.rows();
        let block = rows_per_block([&fa, &fb], self.memory_budget);
        let blocks = rows.div_ceil(block);
        tracing::info!(
            "comparing {name_a} ({rows}x{}) with {name_b} ({rows}x{}) by {} on {} in {} block(s) of {block} rows",
            fa.cols(),
            fb.cols(),
            self.options.method,
            device::name(self.device),
            blocks
        );
        let progress = if blocks > 1 {
            let bar = ProgressBar::new(rows as u64);
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner} reading [{bar:30}] {human_pos}/{human_len} datapoints {per_sec} eta {eta}",
                )
                .expect("valid template")
                .progress_chars("=> "),
            );
            bar
        } else {
            ProgressBar::hidden()
        };
        let mut moments = Moments::new(fa.cols() as i64, fb.cols() as i64, self.device);
        let mut start = 0;
        let (mut reading, mut summing) = (0.0, 0.0);
        while start < rows {
            let count = block.min(rows - start);
            let t = Instant::now();
            let ta = read_block(&mut fa, start, count)?;
            let tb = read_block(&mut fb, start, count)?;
            reading += t.elapsed().as_secs_f64();
            let t = Instant::now();
            moments
                .update(&ta, &tb)
                .map_err(|e| e.naming(&name_a, &name_b))?;
            summing += t.elapsed().as_secs_f64();
            start += count;
            progress.set_position(start as u64);
        }
        progress.finish_and_clear();
        let t = Instant::now();
        let covariance = moments.finish().map_err(|e| e.naming(&name_a, &name_b))?;
        let similarity = similarity::similarity(covariance, &self.options)
            .map_err(|e| e.naming(&name_a, &name_b))?;
        tracing::debug!(
            "read {reading:.3}s, accumulated {summing:.3}s, solved {:.3}s",
            t.elapsed().as_secs_f64()
        );
        let warnings: Vec<String> = similarity
            .warnings
            .iter()
            .map(|w| {
                let name = if w.side == Side::A { &name_a } else { &name_b };
                format!("{name}: {}", w.message)
            })
            .collect();
        for w in &warnings {
            tracing::warn!("{w}");
        }
        Ok(Report {
            keep: self.options.keep,
            device: device::name(self.device),
            a: name_a,
            b: name_b,
            blocks,
            warnings,
            seconds: started.elapsed().as_secs_f64(),
            similarity,
        })
    }
}

/// One block of rows as a tensor of the file's own dtype, on the host.
fn read_block(file: &mut NpyFile, start: usize, count: usize) -> Result<Tensor, InputError> {
    let bytes = file.read_rows(start, count)?;
    let kind = torch_kind(file.header().dtype);
    Ok(Tensor::from_data_size(&bytes, &[count as i64, file.cols() as i64], kind))
}
