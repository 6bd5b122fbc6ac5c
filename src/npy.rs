//! A streaming reader for arrays on disk: `.npy` files (float16, float32 or float64), and
//! tensors (float16, bfloat16, float32 or float64) of `.safetensors` files and of files
//! written by `torch.save` ([`torch_file`]), named `FILE:TENSOR`, or `FILE` for a file of
//! one tensor.
//!
//! `ndarray-npy` reads a whole array at once; comparing layers that are larger than memory
//! needs row blocks instead, so the header is parsed here and rows are read on demand.
//! Everything a user can get wrong (not .npy, truncated, wrong dtype or rank) is checked
//! when the file is opened, before any work starts, and reported as an [`InputError`]
//! naming the file.

use crate::error::InputError;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

mod torch_file;

const MAGIC: &[u8] = b"\x93NUMPY";
/// The start of a file of `torch.save`'s legacy format (PyTorch before 1.6, or
/// `_use_new_zipfile_serialization=False`): a protocol-2 pickle of its magic number.
const LEGACY_TORCH: &[u8] = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46";

/// Element type of an array on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dtype {
    F16,
    BF16,
    F32,
    F64,
}

impl Dtype {
    pub fn size(self) -> usize {
        match self {
            Dtype::F16 | Dtype::BF16 => 2,
            Dtype::F32 => 4,
            Dtype::F64 => 8,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Dtype::F16 => "float16",
            Dtype::BF16 => "bfloat16",
            Dtype::F32 => "float32",
            Dtype::F64 => "float64",
        }
    }

    /// The value of one little-endian element.
    fn value(self, b: &[u8]) -> f64 {
        match self {
            Dtype::F16 => half_to_f32(u16::from_le_bytes([b[0], b[1]])) as f64,
            Dtype::BF16 => f32::from_bits((u16::from_le_bytes([b[0], b[1]]) as u32) << 16) as f64,
            Dtype::F32 => f32::from_le_bytes(b.try_into().expect("4 bytes")) as f64,
            Dtype::F64 => f64::from_le_bytes(b.try_into().expect("8 bytes")),
        }
    }
}

/// IEEE half precision to single (exact: every half is a single).
fn half_to_f32(h: u16) -> f32 {
    let sign = ((h >> 15) as u32) << 31;
    let (exp, frac) = (((h >> 10) & 0x1f) as u32, (h & 0x3ff) as u32);
    let bits = match (exp, frac) {
        (0, 0) => sign,
        // Subnormal: frac x 2^-24.
        (0, f) => return if sign != 0 { -(f as f32) } else { f as f32 } * 2f32.powi(-24),
        (0x1f, f) => sign | 0x7f80_0000 | (f << 13),
        (e, f) => sign | ((e + 127 - 15) << 23) | (f << 13),
    };
    f32::from_bits(bits)
}

/// The parsed header of a `.npy` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub dtype: Dtype,
    pub big_endian: bool,
    pub fortran_order: bool,
    pub shape: Vec<usize>,
    /// Byte offset of the first element.
    pub data_offset: u64,
}

impl Header {
    /// Number of elements. Cannot overflow for a header that [`read_header`] accepted (see
    /// [`Header::data_bytes`]).
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Bytes of data the header promises, or `None` when that does not fit 64 bits, as in
    /// a corrupt or hand-made header. A row's bytes are computed first and then times the
    /// rows, so that when this is `Some` every size derived from the shape (columns, a
    /// row's bytes, any block of rows) fits too, even when there are zero rows.
    pub fn data_bytes(&self) -> Option<u64> {
        let row = self.shape.iter().skip(1).try_fold(self.dtype.size() as u64, |bytes, &d| bytes.checked_mul(d as u64))?;
        let rows = self.shape.first().map_or(1, |&r| r as u64);
        rows.checked_mul(row)
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// An open `.npy` file, read as a matrix of `rows` x `cols` (the first axis is the
/// datapoint axis; any further axes are flattened into `cols` in C order).
pub struct NpyFile {
    path: PathBuf,
    header: Header,
    reader: BufReader<File>,
}

impl NpyFile {
    /// Opens and validates `path`: magic, header, dtype, and that the file holds every
    /// element its header promises.
    pub fn open(path: &Path) -> Result<Self, InputError> {
        // `FILE:TENSOR` where no file has the whole name and FILE is one: a path with a
        // ':' of its own still opens whole, and a tensor name cannot hold one.
        let text = path.to_string_lossy();
        if let Some((file, tensor)) = text.rsplit_once(':').filter(|(f, t)| !t.is_empty() && !path.exists() && Path::new(f).is_file()) {
            return Self::open_with(path, Path::new(file), Some(tensor));
        }
        Self::open_with(path, path, None)
    }

    /// Opens `file` (the array named `name`), tensor `tensor` where it is a safetensors
    /// or torch.save file.
    fn open_with(name: &Path, file_path: &Path, tensor: Option<&str>) -> Result<Self, InputError> {
        let err = |msg: String| InputError::new(format!("{}: {msg}", name.display()));
        let file = File::open(file_path).map_err(|e| err(format!("cannot open: {e}")))?;
        let file_len = file.metadata().map_err(|e| err(format!("cannot stat: {e}")))?.len();
        let mut reader = BufReader::with_capacity(1 << 20, file);
        let mut start = [0u8; 8];
        let peeked = reader.fill_buf().map(|b| b.len().min(8)).unwrap_or(0);
        start[..peeked].copy_from_slice(&reader.buffer()[..peeked]);
        let header = if start.starts_with(MAGIC) {
            if let Some(t) = tensor {
                return Err(err(format!("a .npy file holds one array: drop ':{t}'")));
            }
            read_header(&mut reader).map_err(err)?
        } else if start.starts_with(b"PK\x03\x04") {
            torch_file::read_header(&mut reader, file_len, tensor).map_err(err)?
        } else if start.starts_with(LEGACY_TORCH) {
            return Err(err(
                "torch.save's legacy format (PyTorch before 1.6, or _use_new_zipfile_serialization=False), which svcca does not read: save the tensor again with torch.save's default format".into(),
            ));
        } else {
            read_safetensors_header(&mut reader, tensor).map_err(err)?
        };
        // Each header reader has checked that this does not overflow.
        let expected = header.data_offset + header.data_bytes().expect("checked by read_header");
        if file_len < expected {
            return Err(err(format!(
                "truncated: header promises shape {:?} of {} ({} bytes in all) but the file has {} bytes",
                header.shape,
                header.dtype.name(),
                expected,
                file_len
            )));
        }
        Ok(NpyFile { path: name.to_owned(), header, reader })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
    pub fn header(&self) -> &Header {
        &self.header
    }
    pub fn rows(&self) -> usize {
        self.header.shape.first().copied().unwrap_or(0)
    }
    pub fn cols(&self) -> usize {
        self.header.shape.iter().skip(1).product()
    }

    /// Reads rows `start..start + count` as little-endian bytes of the file's dtype, in
    /// row-major order (`count * cols` elements).
    pub fn read_rows(&mut self, start: usize, count: usize) -> Result<Vec<u8>, InputError> {
        let mut bytes = vec![0u8; count * self.cols() * self.header.dtype.size()];
        self.read_rows_into(start, count, &mut bytes)?;
        Ok(bytes)
    }

    /// As [`NpyFile::read_rows`], into `out` (exactly `count * cols * dtype size` bytes),
    /// so a caller can read straight into a tensor's memory.
    pub fn read_rows_into(&mut self, start: usize, count: usize, out: &mut [u8]) -> Result<(), InputError> {
        self.read_raw_rows(start, count, out)?;
        if self.header.big_endian {
            for element in out.chunks_exact_mut(self.header.dtype.size()) {
                element.reverse();
            }
        }
        Ok(())
    }

    /// As [`NpyFile::read_rows_into`] for the rows `rows` (any order; `rows.len() * cols *
    /// dtype size` bytes), row `rows[i]` at place `i`: a permutation baseline reads a
    /// block of the datapoints in shuffled order this way. Positional reads, so neither
    /// the buffered reader's state nor its capacity is involved: a C-order file is one
    /// read per row; a Fortran-order one, one read per column of the rows' span.
    pub fn read_rows_at(&mut self, rows: &[usize], out: &mut [u8]) -> Result<(), InputError> {
        use std::os::unix::fs::FileExt;
        let (total, cols, size) = (self.rows(), self.cols(), self.header.dtype.size());
        assert!(rows.iter().all(|&r| r < total), "row past the end of the array");
        assert_eq!(out.len(), rows.len() * cols * size, "output buffer of the wrong size");
        let (Some(&lo), Some(&hi)) = (rows.iter().min(), rows.iter().max()) else { return Ok(()) };
        let file = self.reader.get_ref();
        let path = &self.path;
        let io_err = |e: std::io::Error| InputError::new(format!("{}: read failed: {e}", path.display()));
        let row = cols * size;
        if !self.header.fortran_order || cols <= 1 || total <= 1 {
            for (&r, dst) in rows.iter().zip(out.chunks_exact_mut(row)) {
                file.read_exact_at(dst, self.header.data_offset + (r * row) as u64).map_err(io_err)?;
            }
        } else {
            // Each column's values of rows lo..=hi, then this block's rows picked from them.
            let mut span = vec![0u8; (hi - lo + 1) * size];
            for c in 0..cols {
                file.read_exact_at(&mut span, self.header.data_offset + ((c * total + lo) * size) as u64).map_err(io_err)?;
                for (i, &r) in rows.iter().enumerate() {
                    let dst = (i * cols + c) * size;
                    out[dst..dst + size].copy_from_slice(&span[(r - lo) * size..][..size]);
                }
            }
        }
        if self.header.big_endian {
            for element in out.chunks_exact_mut(size) {
                element.reverse();
            }
        }
        Ok(())
    }

    /// Reads rows `start..start + count` as float64 values in row-major order.
    pub fn read_rows_f64(&mut self, start: usize, count: usize) -> Result<Vec<f64>, InputError> {
        let bytes = self.read_rows(start, count)?;
        let dtype = self.header.dtype;
        Ok(bytes.chunks_exact(dtype.size()).map(|b| dtype.value(b)).collect())
    }

    /// The bytes of the requested rows as stored (file byte order), in row-major order.
    /// For a Fortran-order file, "row-major" means each row's values in the file's own
    /// (column-major) order of the remaining axes; see [`Header::fortran_order`].
    fn read_raw_rows(&mut self, start: usize, count: usize, out: &mut [u8]) -> Result<(), InputError> {
        let (rows, cols) = (self.rows(), self.cols());
        assert!(start + count <= rows, "row range past the end of the array");
        let size = self.header.dtype.size();
        let path = self.path.clone();
        let io_err = move |e: std::io::Error| InputError::new(format!("{}: read failed: {e}", path.display()));
        assert_eq!(out.len(), count * cols * size, "output buffer of the wrong size");
        if !self.header.fortran_order || cols <= 1 || rows <= 1 {
            let offset = self.header.data_offset + (start * cols * size) as u64;
            self.reader.seek(SeekFrom::Start(offset)).map_err(&io_err)?;
            self.reader.read_exact(out).map_err(&io_err)?;
            return Ok(());
        }
        // Fortran order: each column's slice of the rows is contiguous; gather then
        // transpose into row-major order.
        let mut columns = vec![0u8; count * cols * size];
        for c in 0..cols {
            let offset = self.header.data_offset + ((c * rows + start) * size) as u64;
            self.reader.seek(SeekFrom::Start(offset)).map_err(&io_err)?;
            let dst = &mut columns[c * count * size..(c + 1) * count * size];
            self.reader.read_exact(dst).map_err(&io_err)?;
        }
        for c in 0..cols {
            for r in 0..count {
                let src = (c * count + r) * size;
                let dst = (r * cols + c) * size;
                out[dst..dst + size].copy_from_slice(&columns[src..src + size]);
            }
        }
        Ok(())
    }
}

/// Parses the magic string, version and header dictionary.
fn read_header(reader: &mut impl Read) -> Result<Header, String> {
    let not_npy = || "not a .npy file (no \\x93NUMPY magic string at the start)".to_string();
    let mut magic = [0u8; 8];
    reader.read_exact(&mut magic).map_err(|_| not_npy())?;
    if &magic[..6] != MAGIC {
        return Err(not_npy());
    }
    let major = magic[6];
    let (len_bytes, prefix) = match major {
        1 => (2usize, 10u64),
        2 | 3 => (4usize, 12u64),
        v => return Err(format!("unsupported .npy format version {v}")),
    };
    let mut len_buf = [0u8; 4];
    reader.read_exact(&mut len_buf[..len_bytes]).map_err(|_| "truncated: the .npy header is cut off".to_string())?;
    let header_len = u32::from_le_bytes(len_buf) as usize;
    let mut text = vec![0u8; header_len];
    reader.read_exact(&mut text).map_err(|_| "truncated: the .npy header is cut off".to_string())?;
    let text = String::from_utf8(text).map_err(|_| "the .npy header is not text".to_string())?;
    let descr = dict_value(&text, "descr").ok_or("the .npy header has no 'descr'")?;
    let descr = descr.trim_matches(|c| c == '\'' || c == '"');
    let (big_endian, dtype) = match descr {
        "<f2" | "=f2" => (false, Dtype::F16),
        ">f2" => (true, Dtype::F16),
        "<f4" | "=f4" => (false, Dtype::F32),
        ">f4" => (true, Dtype::F32),
        "<f8" | "=f8" => (false, Dtype::F64),
        ">f8" => (true, Dtype::F64),
        other => return Err(format!("dtype '{other}' is not supported: expected float16 ('<f2'), float32 ('<f4') or float64 ('<f8')")),
    };
    let fortran_order = match dict_value(&text, "fortran_order").as_deref() {
        Some("True") => true,
        Some("False") => false,
        _ => return Err("the .npy header has no valid 'fortran_order'".into()),
    };
    let shape_text = dict_value(&text, "shape").ok_or("the .npy header has no 'shape'")?;
    let shape = shape_text
        .trim_start_matches('(')
        .trim_end_matches(')')
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.trim_end_matches('L').parse::<usize>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| format!("the .npy header has an invalid shape {shape_text}"))?;
    let header = Header { dtype, big_endian, fortran_order, shape, data_offset: prefix + header_len as u64 };
    // Sizes derived from the shape (rows, columns, offsets) are multiplied unchecked
    // everywhere else, so a shape whose size in bytes overflows 64 bits is refused here:
    // it could otherwise wrap around to a small number and pass the truncation check.
    if header.data_bytes().and_then(|bytes| bytes.checked_add(header.data_offset)).is_none() {
        return Err(format!(
            "the .npy header's shape {shape_text} of {} is too large: its size in bytes does not fit 64 bits (a corrupt header?)",
            dtype.name()
        ));
    }
    Ok(header)
}

/// The header of tensor `tensor` of a safetensors file (the file's only tensor when
/// `None`): an 8-byte little-endian length, then that much JSON naming each tensor's
/// dtype, shape and byte range after the header. Safetensors data is little-endian, in
/// C order.
fn read_safetensors_header(reader: &mut impl Read, tensor: Option<&str>) -> Result<Header, String> {
    let not_one = || "not a .npy, .safetensors or torch.save file (none's header at the start)".to_string();
    let mut len = [0u8; 8];
    reader.read_exact(&mut len).map_err(|_| not_one())?;
    let len = u64::from_le_bytes(len);
    if len > 100 << 20 {
        return Err(not_one());
    }
    let mut json = vec![0u8; len as usize];
    reader.read_exact(&mut json).map_err(|_| not_one())?;
    let map: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&json).map_err(|_| not_one())?;
    let names: Vec<&String> = map.keys().filter(|k| *k != "__metadata__").collect();
    let name = match tensor {
        Some(t) => names.iter().find(|n| n.as_str() == t).ok_or_else(|| {
            format!(
                "no tensor '{t}' in this safetensors file; it holds {}",
                names.iter().map(|n| n.as_str()).collect::<Vec<_>>().join(", ")
            )
        })?,
        None if names.len() == 1 => names[0],
        None => {
            return Err(format!(
                "a safetensors file of {} tensors: name one as FILE.safetensors:TENSOR ({})",
                names.len(),
                names.iter().map(|n| n.as_str()).collect::<Vec<_>>().join(", ")
            ))
        }
    };
    let entry = &map[name.as_str()];
    let dtype = match entry["dtype"].as_str() {
        Some("F16") => Dtype::F16,
        Some("BF16") => Dtype::BF16,
        Some("F32") => Dtype::F32,
        Some("F64") => Dtype::F64,
        other => return Err(format!("tensor '{name}': dtype {} is not float16, bfloat16, float32 or float64", other.unwrap_or("?"))),
    };
    let bad = || format!("tensor '{name}': a malformed safetensors entry");
    let shape: Vec<usize> =
        entry["shape"].as_array().ok_or_else(bad)?.iter().map(|d| d.as_u64().map(|d| d as usize)).collect::<Option<_>>().ok_or_else(bad)?;
    let offsets: Vec<u64> =
        entry["data_offsets"].as_array().ok_or_else(bad)?.iter().map(|d| d.as_u64()).collect::<Option<_>>().ok_or_else(bad)?;
    let [begin, end] = offsets[..] else { return Err(bad()) };
    let data_offset = begin.checked_add(8 + len).ok_or_else(bad)?;
    let header = Header { dtype, big_endian: false, fortran_order: false, shape, data_offset };
    if header.data_bytes() != Some(end.saturating_sub(begin)) {
        return Err(format!(
            "tensor '{name}': its shape {:?} of {} does not fill its {} bytes",
            header.shape,
            dtype.name(),
            end.saturating_sub(begin)
        ));
    }
    Ok(header)
}

/// The text of one value of the header's Python dict literal (tuples kept whole).
fn dict_value(text: &str, key: &str) -> Option<String> {
    let start = text.find(&format!("'{key}'")).or_else(|| text.find(&format!("\"{key}\"")))?;
    let rest = &text[start + key.len() + 2..];
    let rest = rest.trim_start().strip_prefix(':')?.trim_start();
    let end = if rest.starts_with('(') { rest.find(')')? + 1 } else { rest.find([',', '}']).unwrap_or(rest.len()) };
    Some(rest[..end].trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header_bytes(dict: &str) -> Vec<u8> {
        let mut dict = dict.to_string();
        while !(10 + dict.len() + 1).is_multiple_of(64) {
            dict.push(' ');
        }
        dict.push('\n');
        let mut out = MAGIC.to_vec();
        out.extend([1u8, 0u8]);
        out.extend((dict.len() as u16).to_le_bytes());
        out.extend(dict.as_bytes());
        out
    }

    /// A safetensors entry whose offsets would run past the end of the address space is
    /// refused as malformed (the data's offset once wrapped around).
    #[test]
    fn a_safetensors_offset_past_u64_is_malformed() {
        let json = format!(r#"{{"x":{{"dtype":"F32","shape":[1],"data_offsets":[{},{}]}}}}"#, u64::MAX - 3, u64::MAX);
        let mut bytes = (json.len() as u64).to_le_bytes().to_vec();
        bytes.extend(json.as_bytes());
        let e = read_safetensors_header(&mut bytes.as_slice(), None).unwrap_err();
        assert!(e.contains("malformed"), "{e}");
    }

    #[test]
    fn parses_numpy_headers() {
        let bytes = header_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }");
        let h = read_header(&mut bytes.as_slice()).unwrap();
        assert_eq!(h.dtype, Dtype::F32);
        assert!(!h.fortran_order && !h.big_endian);
        assert_eq!(h.shape, vec![3, 4]);
        assert_eq!(h.data_offset as usize, bytes.len());
        let bytes = header_bytes("{'descr': '>f8', 'fortran_order': True, 'shape': (5,), }");
        let h = read_header(&mut bytes.as_slice()).unwrap();
        assert_eq!((h.dtype, h.big_endian, h.fortran_order), (Dtype::F64, true, true));
        assert_eq!(h.shape, vec![5]);
    }

    #[test]
    fn rejects_other_dtypes_and_garbage() {
        let bytes = header_bytes("{'descr': '<i8', 'fortran_order': False, 'shape': (3, 4), }");
        let e = read_header(&mut bytes.as_slice()).unwrap_err();
        assert!(e.contains("'<i8'"), "{e}");
        let e = read_header(&mut &b"hello world, not numpy"[..]).unwrap_err();
        assert!(e.contains("not a .npy"), "{e}");
    }

    /// Rows picked in any order from C-order files, little- and big-endian, read as
    /// the same rows one at a time: the values written.
    #[test]
    fn reads_rows_in_any_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.npy");
        // 4 x 3, value 10 r + c.
        let values = |r: usize| (0..3).map(move |c| (10 * r + c) as f32);
        for (descr, big) in [("<f4", false), (">f4", true)] {
            let mut bytes = header_bytes(&format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': (4, 3), }}"));
            for v in (0..4).flat_map(values) {
                bytes.extend(if big { v.to_be_bytes() } else { v.to_le_bytes() });
            }
            std::fs::write(&path, &bytes).unwrap();
            let mut f = NpyFile::open(&path).unwrap();
            let rows = [3, 0, 3, 1];
            let mut out = vec![0u8; rows.len() * 3 * 4];
            f.read_rows_at(&rows, &mut out).unwrap();
            let got: Vec<f32> = out.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
            let want: Vec<f32> = rows.iter().flat_map(|&r| values(r)).collect();
            assert_eq!(got, want, "{descr}");
        }
    }

    #[test]
    fn reads_fortran_order_as_row_major() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.npy");
        // 3 x 2 matrix [[0,1],[2,3],[4,5]] stored column by column.
        let mut bytes = header_bytes("{'descr': '<f8', 'fortran_order': True, 'shape': (3, 2), }");
        for v in [0.0f64, 2.0, 4.0, 1.0, 3.0, 5.0] {
            bytes.extend(v.to_le_bytes());
        }
        std::fs::write(&path, &bytes).unwrap();
        let mut f = NpyFile::open(&path).unwrap();
        assert_eq!((f.rows(), f.cols()), (3, 2));
        assert_eq!(f.read_rows_f64(0, 3).unwrap(), vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
        assert_eq!(f.read_rows_f64(1, 2).unwrap(), vec![2.0, 3.0, 4.0, 5.0]);
        // Rows in any order, repeated: as each read on its own.
        let bytes_of = |f: &mut NpyFile, rows: &[usize]| {
            let mut out = vec![0u8; rows.len() * 2 * 8];
            f.read_rows_at(rows, &mut out).unwrap();
            out
        };
        for rows in [vec![2, 0, 1], vec![1, 1], vec![2], vec![]] {
            let want: Vec<u8> = rows.iter().flat_map(|&r| f.read_rows(r, 1).unwrap()).collect();
            assert_eq!(bytes_of(&mut f, &rows), want, "{rows:?}");
        }
        // Truncation is caught at open.
        std::fs::write(&path, &bytes[..bytes.len() - 8]).unwrap();
        let e = NpyFile::open(&path).err().unwrap().to_string();
        assert!(e.contains("truncated"), "{e}");
    }
}
