//! Tensors of files written by `torch.save`, read without Python: a tensor becomes a
//! [`Header`] (dtype, shape, order and the byte offset of its first element in the file),
//! so its rows are then read as a `.npy` file's are.
//!
//! Since PyTorch 1.6, `torch.save` writes a zip archive whose entries are stored, not
//! compressed: `ARCHIVE/data.pkl`, a pickle of the saved object, `ARCHIVE/data/KEY`, the
//! raw bytes of each storage, and `ARCHIVE/byteorder`. In the pickle (protocol 2, as
//! PyTorch 2.11 writes it) a tensor is the call
//! `torch._utils._rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad,
//! hooks[, metadata])`, possibly wrapped in `torch._utils._rebuild_parameter(tensor, ...)`,
//! and its storage the persistent id `('storage', torch.FloatStorage, KEY, location,
//! numel)` (a typed storage class per dtype). A state_dict is an `OrderedDict` given its
//! `_metadata` by BUILD.
//!
//! Unpickling runs whatever code the file names, so `data.pkl` is not unpickled: the small
//! pickle machine here knows the opcodes `torch.save` emits, and only the globals a tensor,
//! a dict of tensors or a state_dict need (the two rebuild functions, the storage classes,
//! `OrderedDict`), as names that are never called; any other global (a whole pickled
//! module, a numpy array) is refused.

use super::{Dtype, Header};
use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::rc::Rc;

/// How to save what this module reads, for the refusals.
const SAVE_TENSORS: &str = "save a tensor (torch.save(t)) or a dict of tensors (torch.save({'name': t}))";
/// Limits on what is read into memory: far above any file of tensors.
const MAX_DIRECTORY: u64 = 1 << 28;
const MAX_PICKLE: u64 = 1 << 28;
/// Nesting of pickled containers (a state_dict needs 4); deeper values could overflow the
/// stack when dropped.
const MAX_DEPTH: usize = 64;

/// The header of tensor `tensor` of the torch.save archive `file` (`file_len` bytes), or
/// of the file's only tensor when `None`.
pub(super) fn read_header<F: Read + Seek>(file: &mut F, file_len: u64, tensor: Option<&str>) -> Result<Header, String> {
    let entries = central_directory(file, file_len)?;
    let pickles: Vec<&Entry> = entries.iter().filter(|e| e.name.strip_suffix("/data.pkl").is_some_and(|p| !p.contains('/'))).collect();
    let [pickle] = pickles[..] else {
        return Err(match pickles.len() {
            0 => {
                "a zip archive without an ARCHIVE/data.pkl entry, so not a torch.save file (a numpy .npz? save each layer with numpy.save)"
                    .into()
            }
            n => format!("a zip archive with {n} ARCHIVE/data.pkl entries, not a torch.save file (which has one): {SAVE_TENSORS}"),
        });
    };
    let archive = pickle.name.strip_suffix("/data.pkl").expect("filtered above");
    let entry = |name: &str| entries.iter().find(|e| e.name == name);
    // Older archives have no byteorder entry; PyTorch reads them in the machine's order,
    // little-endian on every machine svcca runs on.
    if let Some(byteorder) = entry(&format!("{archive}/byteorder")) {
        match &read_entry(file, byteorder, 16)?[..] {
            b"little" => {}
            b"big" => return Err("a big-endian torch.save archive (byteorder 'big'), which svcca does not read: save it on a little-endian machine, or with numpy.save".into()),
            other => return Err(format!("a torch.save archive of unknown byteorder '{}'", String::from_utf8_lossy(other))),
        }
    }
    let code = read_entry(file, pickle, MAX_PICKLE)?;
    let saved = Machine::new(&code).run()?;
    let t = choose(saved, tensor)?;
    let key = &t.storage.key;
    let storage = entry(&format!("{archive}/data/{key}"))
        .ok_or_else(|| format!("the archive has no entry {archive}/data/{key}, the storage of the tensor (a damaged file?)"))?;
    header(&t, storage, data_start(file, storage)?)
}

// ---------------------------------------------------------------------------------------
// The zip archive: its central directory (at the end of the file, as zip64 when large),
// and the stored entries' data.

/// One file of the archive, from its central directory record.
#[derive(Debug)]
struct Entry {
    name: String,
    /// General-purpose flags: bit 0 is encryption.
    flags: u16,
    /// Compression method: 0 is stored.
    method: u16,
    /// Bytes of data, uncompressed.
    size: u64,
    /// Offset of its local header.
    local_header: u64,
}

/// Little-endian reads from a byte slice; `None` past its end.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Cursor { bytes, pos: 0 }
    }
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let out = self.bytes.get(self.pos..self.pos.checked_add(n)?)?;
        self.pos += n;
        Some(out)
    }
    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N).map(|b| b.try_into().expect("N bytes"))
    }
    fn u8(&mut self) -> Option<u8> {
        self.array::<1>().map(|[b]| b)
    }
    fn u16(&mut self) -> Option<u16> {
        self.array().map(u16::from_le_bytes)
    }
    fn u32(&mut self) -> Option<u32> {
        self.array().map(u32::from_le_bytes)
    }
    fn u64(&mut self) -> Option<u64> {
        self.array().map(u64::from_le_bytes)
    }
}

fn read_at<F: Read + Seek>(file: &mut F, offset: u64, len: u64) -> Result<Vec<u8>, String> {
    let mut out = vec![0u8; len as usize];
    file.seek(SeekFrom::Start(offset)).and_then(|_| file.read_exact(&mut out)).map_err(|e| format!("read failed at byte {offset}: {e}"))?;
    Ok(out)
}

/// The archive's entries, from its central directory: found through the
/// end-of-central-directory record at the end of the file, or through the zip64 record
/// that precedes it (PyTorch writes both, every time).
fn central_directory<F: Read + Seek>(file: &mut F, file_len: u64) -> Result<Vec<Entry>, String> {
    let not_whole = || "truncated, or not a whole zip archive: no end-of-central-directory record at its end".to_string();
    // The record is 22 bytes and a comment of at most 64 KiB; the zip64 locator, 20 bytes before it.
    let tail_len = file_len.min(20 + 22 + 0xffff);
    let tail = read_at(file, file_len - tail_len, tail_len)?;
    let at = (0..(tail.len() + 1).saturating_sub(22))
        .rev()
        .find(|&i| tail[i..].starts_with(b"PK\x05\x06") && i + 22 + u16::from_le_bytes([tail[i + 20], tail[i + 21]]) as usize == tail.len())
        .ok_or_else(not_whole)?;
    let mut c = Cursor::new(&tail[at + 10..]);
    let (mut count, mut size, mut offset) = (c.u16().unwrap() as u64, c.u32().unwrap() as u64, c.u32().unwrap() as u64);
    if at >= 20 && tail[at - 20..].starts_with(b"PK\x06\x07") {
        let record = Cursor::new(&tail[at - 12..]).u64().unwrap();
        let zip64 = read_at(file, record, 56).map_err(|_| not_whole())?;
        if !zip64.starts_with(b"PK\x06\x06") {
            return Err("a damaged zip archive: its zip64 end-of-central-directory record is not where its locator says".into());
        }
        let mut c = Cursor::new(&zip64[32..]);
        (count, size, offset) = (c.u64().unwrap(), c.u64().unwrap(), c.u64().unwrap());
    } else if count == 0xffff || size == 0xffff_ffff || offset == 0xffff_ffff {
        return Err("a damaged zip archive: it needs zip64 records and has none".into());
    }
    if size > MAX_DIRECTORY || offset.checked_add(size).is_none_or(|end| end > file_len) {
        return Err(format!("a damaged zip archive: its central directory ({size} bytes at {offset}) is not within the file"));
    }
    let directory = read_at(file, offset, size)?;
    let mut c = Cursor::new(&directory);
    let bad = || "a damaged zip archive: a malformed central directory".to_string();
    let mut entries = Vec::new();
    for _ in 0..count {
        if c.take(4) != Some(b"PK\x01\x02") {
            return Err(bad());
        }
        c.take(4).ok_or_else(bad)?; // versions
        let (flags, method) = (c.u16().ok_or_else(bad)?, c.u16().ok_or_else(bad)?);
        c.take(8).ok_or_else(bad)?; // time, date, CRC
        let (mut compressed, mut size) = (c.u32().ok_or_else(bad)? as u64, c.u32().ok_or_else(bad)? as u64);
        let (name_len, extra_len, comment_len) = (c.u16().ok_or_else(bad)?, c.u16().ok_or_else(bad)?, c.u16().ok_or_else(bad)?);
        c.take(8).ok_or_else(bad)?; // disk, attributes
        let mut local_header = c.u32().ok_or_else(bad)? as u64;
        let name = String::from_utf8_lossy(c.take(name_len as usize).ok_or_else(bad)?).into_owned();
        let mut extra = Cursor::new(c.take(extra_len as usize).ok_or_else(bad)?);
        c.take(comment_len as usize).ok_or_else(bad)?;
        // The zip64 extra field holds, in this order, each of these that is 0xffffffff above.
        while let (Some(id), Some(len)) = (extra.u16(), extra.u16()) {
            let mut field = Cursor::new(extra.take(len as usize).ok_or_else(bad)?);
            if id == 1 {
                for value in [&mut size, &mut compressed, &mut local_header] {
                    if *value == 0xffff_ffff {
                        *value = field.u64().ok_or_else(bad)?;
                    }
                }
            }
        }
        entries.push(Entry { name, flags, method, size, local_header });
    }
    Ok(entries)
}

/// Where an entry's data starts: after its local header, whose name and extra field (the
/// padding that aligns PyTorch's storages) may differ in length from the directory's.
fn data_start<F: Read + Seek>(file: &mut F, entry: &Entry) -> Result<u64, String> {
    if entry.method != 0 || entry.flags & 1 != 0 {
        return Err(format!(
            "entry {} is compressed or encrypted (zip method {}), and torch.save stores its entries as they are: save the file again with torch.save",
            entry.name, entry.method
        ));
    }
    let local = read_at(file, entry.local_header, 30).map_err(|_| format!("truncated: entry {}'s header is cut off", entry.name))?;
    if !local.starts_with(b"PK\x03\x04") {
        return Err(format!("a damaged zip archive: entry {}'s header is not where the directory says", entry.name));
    }
    let mut c = Cursor::new(&local[26..]);
    Ok(entry.local_header + 30 + c.u16().unwrap() as u64 + c.u16().unwrap() as u64)
}

/// An entry's bytes, refused above `limit`.
fn read_entry<F: Read + Seek>(file: &mut F, entry: &Entry, limit: u64) -> Result<Vec<u8>, String> {
    if entry.size > limit {
        return Err(format!("entry {} is {} bytes, more than svcca reads ({limit})", entry.name, entry.size));
    }
    let start = data_start(file, entry)?;
    read_at(file, start, entry.size).map_err(|_| format!("truncated: entry {} is cut off", entry.name))
}

// ---------------------------------------------------------------------------------------
// The pickle: a stack machine over the opcodes torch.save emits.

/// A value on the pickle machine's stack. Containers are shared (`Rc`) between the stack
/// and the memo and copied when one of them is changed: what the memo holds is the value
/// when it was memoized, which is all torch.save's pickles use it for.
#[derive(Clone, Debug)]
enum Value {
    None,
    Bool(bool),
    Int(i64),
    Float,
    Str(Rc<str>),
    Tuple(Rc<Seq>),
    List(Rc<Seq>),
    Dict(Rc<Map>),
    /// An allow-listed global, named but never called.
    Global(Global),
    Storage(Rc<Storage>),
    Tensor(Rc<Tensor>),
}

impl Value {
    fn depth(&self) -> usize {
        match self {
            Value::Tuple(s) | Value::List(s) => s.depth,
            Value::Dict(m) => m.depth,
            _ => 0,
        }
    }
    fn kind(&self) -> &'static str {
        match self {
            Value::None => "None",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float => "float",
            Value::Str(_) => "str",
            Value::Tuple(_) => "tuple",
            Value::List(_) => "list",
            Value::Dict(_) => "dict",
            Value::Global(_) => "class or function",
            Value::Storage(_) => "storage",
            Value::Tensor(_) => "tensor",
        }
    }
}

/// The items of a tuple or list, and how deeply containers nest in it.
#[derive(Clone, Debug)]
struct Seq {
    items: Vec<Value>,
    depth: usize,
}

/// A dict's items in insertion order (a later duplicate key wins), and its nesting.
#[derive(Clone, Debug)]
struct Map {
    items: Vec<(Value, Value)>,
    depth: usize,
}

/// The depth of a container holding `v`, refused past [`MAX_DEPTH`].
fn nest(depth: usize, v: &Value) -> Result<usize, String> {
    let d = depth.max(v.depth() + 1);
    if d > MAX_DEPTH {
        return Err(format!("data.pkl nests containers more than {MAX_DEPTH} deep, as no file of tensors does: {SAVE_TENSORS}"));
    }
    Ok(d)
}

fn empty_dict() -> Value {
    Value::Dict(Rc::new(Map { items: Vec::new(), depth: 1 }))
}

impl Seq {
    fn new(items: Vec<Value>) -> Result<Seq, String> {
        let depth = items.iter().try_fold(1, nest)?;
        Ok(Seq { items, depth })
    }
}

/// The globals a file of tensors names. The storage classes are indices into [`STORAGES`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Global {
    RebuildTensor,
    RebuildParameter,
    OrderedDict,
    Storage(usize),
}

/// PyTorch's typed storage classes (`torch.FloatStorage`, ...): the dtype each holds, by
/// its torch name, and as svcca reads it.
const STORAGES: &[(&str, &str, Option<Dtype>)] = &[
    ("FloatStorage", "float32", Some(Dtype::F32)),
    ("DoubleStorage", "float64", Some(Dtype::F64)),
    ("HalfStorage", "float16", Some(Dtype::F16)),
    ("BFloat16Storage", "bfloat16", Some(Dtype::BF16)),
    ("LongStorage", "int64", None),
    ("IntStorage", "int32", None),
    ("ShortStorage", "int16", None),
    ("CharStorage", "int8", None),
    ("ByteStorage", "uint8", None),
    ("BoolStorage", "bool", None),
    ("ComplexFloatStorage", "complex64", None),
    ("ComplexDoubleStorage", "complex128", None),
];

/// The allow-listed global `module.name`; any other is refused.
fn global(module: &str, name: &str) -> Result<Global, String> {
    match (module, name) {
        ("torch._utils", "_rebuild_tensor_v2") => return Ok(Global::RebuildTensor),
        ("torch._utils", "_rebuild_parameter") => return Ok(Global::RebuildParameter),
        ("collections", "OrderedDict") => return Ok(Global::OrderedDict),
        ("torch", _) => {
            if let Some(i) = STORAGES.iter().position(|s| s.0 == name) {
                return Ok(Global::Storage(i));
            }
        }
        _ => {}
    }
    Err(format!("it holds a pickled {module}.{name}, and svcca reads tensors only, running no pickled code: {SAVE_TENSORS}"))
}

/// A storage, as the persistent id `('storage', class, key, location, numel)` names it.
#[derive(Debug)]
struct Storage {
    /// Index into [`STORAGES`].
    class: usize,
    /// Its entry is `ARCHIVE/data/KEY`.
    key: String,
}

/// A tensor: a view of a storage.
#[derive(Debug)]
struct Tensor {
    storage: Rc<Storage>,
    /// In elements.
    offset: u64,
    shape: Vec<u64>,
    /// In elements.
    stride: Vec<u64>,
}

struct Machine<'a> {
    code: Cursor<'a>,
    stack: Vec<Value>,
    /// Stack heights at each MARK.
    marks: Vec<usize>,
    memo: HashMap<u32, Value>,
    /// Items copied because a shared container was changed: bounded, so that a hostile
    /// pickle cannot make the copies quadratic.
    copied: usize,
}

fn malformed(what: &str) -> String {
    format!("a malformed pickle in data.pkl ({what})")
}

impl<'a> Machine<'a> {
    fn new(code: &'a [u8]) -> Self {
        Machine { code: Cursor::new(code), stack: Vec::new(), marks: Vec::new(), memo: HashMap::new(), copied: 0 }
    }

    fn arg(&mut self, n: usize) -> Result<&'a [u8], String> {
        self.code.take(n).ok_or_else(|| malformed("it ends inside an opcode"))
    }
    fn arg_u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.arg(4)?.try_into().expect("4 bytes")))
    }
    fn text(&mut self, n: usize) -> Result<Value, String> {
        let bytes = self.arg(n)?;
        Ok(Value::Str(std::str::from_utf8(bytes).map_err(|_| malformed("a string that is not UTF-8"))?.into()))
    }
    /// A newline-terminated argument (GLOBAL's module and name).
    fn line(&mut self) -> Result<&'a str, String> {
        let rest = &self.code.bytes[self.code.pos..];
        let end = rest.iter().position(|&b| b == b'\n').ok_or_else(|| malformed("an unterminated GLOBAL"))?;
        let line = self.arg(end + 1)?;
        std::str::from_utf8(&line[..end]).map_err(|_| malformed("a GLOBAL that is not UTF-8"))
    }

    fn pop(&mut self) -> Result<Value, String> {
        self.stack.pop().ok_or_else(|| malformed("the stack runs empty"))
    }
    fn pop_mark(&mut self) -> Result<Vec<Value>, String> {
        let mark = self.marks.pop().ok_or_else(|| malformed("no MARK"))?;
        if mark > self.stack.len() {
            return Err(malformed("a MARK above the stack"));
        }
        Ok(self.stack.split_off(mark))
    }
    fn top(&mut self) -> Result<&mut Value, String> {
        self.stack.last_mut().ok_or_else(|| malformed("the stack runs empty"))
    }
    fn push_tuple(&mut self, items: Vec<Value>) -> Result<(), String> {
        self.stack.push(Value::Tuple(Rc::new(Seq::new(items)?)));
        Ok(())
    }

    /// Counts the items a change to a shared container copies.
    fn charge(&mut self, items: usize) -> Result<(), String> {
        self.copied += items;
        if self.copied > 1 << 24 {
            return Err(format!("data.pkl changes shared containers more than a file of tensors does: {SAVE_TENSORS}"));
        }
        Ok(())
    }

    /// APPEND(S): `items` onto the list on top of the stack.
    fn append(&mut self, items: Vec<Value>) -> Result<(), String> {
        let Some(Value::List(list)) = self.stack.last() else { return Err(malformed("APPEND to what is not a list")) };
        if Rc::strong_count(list) > 1 {
            self.charge(list.items.len())?;
        }
        let Some(Value::List(list)) = self.stack.last_mut() else { unreachable!("a list, above") };
        let list = Rc::make_mut(list);
        for item in items {
            list.depth = nest(list.depth, &item)?;
            list.items.push(item);
        }
        Ok(())
    }

    /// SETITEM(S): `items` (key, value, key, value...) into the dict on top of the stack.
    fn set_items(&mut self, items: Vec<Value>) -> Result<(), String> {
        if !items.len().is_multiple_of(2) {
            return Err(malformed("SETITEMS of an odd number of values"));
        }
        let Some(Value::Dict(dict)) = self.stack.last() else { return Err(malformed("SETITEM on what is not a dict")) };
        if Rc::strong_count(dict) > 1 {
            self.charge(dict.items.len())?;
        }
        let Some(Value::Dict(dict)) = self.stack.last_mut() else { unreachable!("a dict, above") };
        let dict = Rc::make_mut(dict);
        let mut items = items.into_iter();
        while let (Some(k), Some(v)) = (items.next(), items.next()) {
            dict.depth = nest(nest(dict.depth, &k)?, &v)?;
            dict.items.push((k, v));
        }
        Ok(())
    }

    /// The saved object.
    fn run(mut self) -> Result<Value, String> {
        loop {
            let op = self.code.u8().ok_or_else(|| malformed("it ends without STOP"))?;
            match op {
                0x80 => {
                    // PROTO
                    let v = self.arg(1)?[0];
                    if v > 5 {
                        return Err(malformed(&format!("pickle protocol {v}")));
                    }
                }
                0x95 => {
                    // FRAME: a length, for buffering only.
                    self.arg(8)?;
                }
                b'c' => {
                    // GLOBAL
                    let (module, name) = (self.line()?, self.line()?);
                    self.stack.push(Value::Global(global(module, name)?));
                }
                0x93 => {
                    // STACK_GLOBAL
                    let (name, module) = (self.pop()?, self.pop()?);
                    let (Value::Str(module), Value::Str(name)) = (module, name) else {
                        return Err(malformed("STACK_GLOBAL of what is not a string"));
                    };
                    self.stack.push(Value::Global(global(&module, &name)?));
                }
                b'X' => {
                    // BINUNICODE
                    let n = self.arg_u32()? as usize;
                    let s = self.text(n)?;
                    self.stack.push(s);
                }
                0x8c => {
                    // SHORT_BINUNICODE
                    let n = self.arg(1)?[0] as usize;
                    let s = self.text(n)?;
                    self.stack.push(s);
                }
                b'q' | b'r' | 0x94 => {
                    // BINPUT, LONG_BINPUT, MEMOIZE
                    let key = match op {
                        b'q' => self.arg(1)?[0] as u32,
                        b'r' => self.arg_u32()?,
                        _ => self.memo.len() as u32,
                    };
                    let top = self.top()?.clone();
                    self.memo.insert(key, top);
                }
                b'h' | b'j' => {
                    // BINGET, LONG_BINGET
                    let key = if op == b'h' { self.arg(1)?[0] as u32 } else { self.arg_u32()? };
                    let v = self.memo.get(&key).ok_or_else(|| malformed("BINGET of a key never put"))?.clone();
                    self.stack.push(v);
                }
                b'(' => self.marks.push(self.stack.len()),
                b't' => {
                    let items = self.pop_mark()?;
                    self.push_tuple(items)?;
                }
                b')' => self.push_tuple(Vec::new())?,
                0x85..=0x87 => {
                    // TUPLE1, TUPLE2, TUPLE3
                    let n = (op - 0x84) as usize;
                    if self.stack.len() < n {
                        return Err(malformed("the stack runs empty"));
                    }
                    let items = self.stack.split_off(self.stack.len() - n);
                    self.push_tuple(items)?;
                }
                b'}' => self.stack.push(empty_dict()),
                b']' => self.stack.push(Value::List(Rc::new(Seq { items: Vec::new(), depth: 1 }))),
                b'a' => {
                    let v = self.pop()?;
                    self.append(vec![v])?;
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    self.append(items)?;
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    self.set_items(vec![k, v])?;
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    self.set_items(items)?;
                }
                b'J' => {
                    let v = self.arg_u32()? as i32;
                    self.stack.push(Value::Int(v as i64));
                }
                b'K' => {
                    let v = self.arg(1)?[0];
                    self.stack.push(Value::Int(v as i64));
                }
                b'M' => {
                    let b = self.arg(2)?;
                    self.stack.push(Value::Int(u16::from_le_bytes([b[0], b[1]]) as i64));
                }
                0x8a => {
                    // LONG1: little-endian two's complement of n bytes.
                    let n = self.arg(1)?[0] as usize;
                    if n > 8 {
                        return Err(malformed("an integer beyond 64 bits"));
                    }
                    let b = self.arg(n)?;
                    let fill = if b.last().is_some_and(|&x| x & 0x80 != 0) { 0xff } else { 0 };
                    let mut full = [fill; 8];
                    full[..n].copy_from_slice(b);
                    self.stack.push(Value::Int(i64::from_le_bytes(full)));
                }
                0x88 => self.stack.push(Value::Bool(true)),
                0x89 => self.stack.push(Value::Bool(false)),
                b'N' => self.stack.push(Value::None),
                b'G' => {
                    // BINFLOAT: no tensor needs its value.
                    self.arg(8)?;
                    self.stack.push(Value::Float);
                }
                b'Q' => {
                    // BINPERSID
                    let pid = self.pop()?;
                    self.stack.push(Value::Storage(Rc::new(storage(pid)?)));
                }
                b'R' | 0x81 => {
                    // REDUCE, NEWOBJ: only allow-listed globals reach the stack.
                    let args = self.pop()?;
                    let f = self.pop()?;
                    let (Value::Global(f), Value::Tuple(args)) = (f, args) else {
                        return Err(malformed("REDUCE of what is not a call"));
                    };
                    self.stack.push(call(f, &args.items)?);
                }
                b'b' => {
                    // BUILD: an OrderedDict's attributes (a state_dict's _metadata) are not needed.
                    self.pop()?;
                    if !matches!(self.top()?, Value::Dict(_)) {
                        return Err(malformed("BUILD of what is not a dict"));
                    }
                }
                b'0' => {
                    self.pop()?;
                }
                b'1' => {
                    self.pop_mark()?;
                }
                b'2' => {
                    let top = self.top()?.clone();
                    self.stack.push(top);
                }
                b'.' => return self.pop(),
                other => {
                    return Err(format!(
                        "its pickle has opcode 0x{other:02x}, which torch.save does not write for tensors, and svcca does not read: {SAVE_TENSORS}"
                    ))
                }
            }
        }
    }
}

/// A storage from its persistent id.
fn storage(pid: Value) -> Result<Storage, String> {
    let bad = || malformed("a persistent id that is not a storage");
    let Value::Tuple(pid) = pid else { return Err(bad()) };
    match &pid.items[..] {
        [Value::Str(kind), Value::Global(Global::Storage(class)), Value::Str(key), Value::Str(_location), Value::Int(_numel)]
            if &**kind == "storage" =>
        {
            Ok(Storage { class: *class, key: key.to_string() })
        }
        _ => Err(bad()),
    }
}

/// A call of an allow-listed global, as far as a tensor needs it.
fn call(f: Global, args: &[Value]) -> Result<Value, String> {
    let bad = |what: &str| malformed(&format!("{what} with unexpected arguments"));
    let sizes = |v: &Value| match v {
        Value::Tuple(t) => {
            t.items.iter().map(|x| if let Value::Int(i) = x { u64::try_from(*i).ok() } else { None }).collect::<Option<Vec<u64>>>()
        }
        _ => None,
    };
    match f {
        Global::OrderedDict if args.is_empty() => Ok(empty_dict()),
        Global::RebuildParameter => match args {
            [Value::Tensor(t), Value::Bool(_), _hooks] => Ok(Value::Tensor(t.clone())),
            _ => Err(bad("_rebuild_parameter")),
        },
        Global::RebuildTensor => {
            let (storage, offset, shape, stride, metadata) = match args {
                [Value::Storage(s), Value::Int(o), size, stride, Value::Bool(_), _hooks, rest @ ..] if rest.len() <= 1 => {
                    (s, *o, sizes(size), sizes(stride), rest.first())
                }
                _ => return Err(bad("_rebuild_tensor_v2")),
            };
            // Metadata such as {'neg': True} marks a lazily negated view, saved un-negated.
            if let Some(Value::Dict(m)) = metadata {
                let flags: Vec<String> =
                    m.items.iter().filter(|(_, v)| !matches!(v, Value::Bool(false))).map(|(k, _)| key_text(k)).collect();
                if !flags.is_empty() {
                    return Err(format!(
                        "a tensor saved with the flags {} (a negated or conjugated view), which svcca does not apply: save t.resolve_neg().resolve_conj()",
                        flags.join(", ")
                    ));
                }
            }
            let (Some(shape), Some(stride), Ok(offset)) = (shape, stride, u64::try_from(offset)) else {
                return Err(bad("_rebuild_tensor_v2"));
            };
            if shape.len() != stride.len() {
                return Err(bad("_rebuild_tensor_v2"));
            }
            Ok(Value::Tensor(Rc::new(Tensor { storage: storage.clone(), offset, shape, stride })))
        }
        _ => Err(bad("a class")),
    }
}

fn key_text(k: &Value) -> String {
    match k {
        Value::Str(s) => s.to_string(),
        other => other.kind().to_string(),
    }
}

// ---------------------------------------------------------------------------------------
// From the saved object to the tensor asked for, and its header.

/// The tensor named `name` of a dict of tensors, or the file's only tensor.
fn choose(saved: Value, name: Option<&str>) -> Result<Rc<Tensor>, String> {
    let dict = match saved {
        Value::Tensor(t) => {
            return match name {
                None => Ok(t),
                Some(n) => Err(format!("a torch.save file of one tensor, not a dict of tensors: drop ':{n}'")),
            }
        }
        Value::Dict(d) => d,
        other => return Err(format!("it holds a {} (not a tensor or a dict of tensors): {SAVE_TENSORS}", other.kind())),
    };
    // Tensors by name in the dict's order, a repeated key's last value winning as in
    // Python; other values (a step count) are left alone.
    let mut tensors: Vec<(&str, &Rc<Tensor>)> = Vec::new();
    let mut place: HashMap<&str, usize> = HashMap::new();
    for (k, v) in &dict.items {
        if let (Value::Str(k), Value::Tensor(t)) = (k, v) {
            match place.get(&**k) {
                Some(&i) => tensors[i].1 = t,
                None => {
                    place.insert(k, tensors.len());
                    tensors.push((k, t));
                }
            }
        }
    }
    let names = || tensors.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ");
    match name {
        Some(n) => match tensors.iter().find(|(t, _)| *t == n) {
            Some((_, t)) => Ok(Rc::clone(t)),
            None => Err(format!("no tensor '{n}' in this torch.save file; it holds {}", names())),
        },
        None if tensors.len() == 1 => Ok(Rc::clone(tensors[0].1)),
        None if tensors.is_empty() => Err(format!("it holds a dict without tensors: {SAVE_TENSORS}")),
        None => Err(format!("a torch.save file of {} tensors: name one as FILE:NAME ({})", tensors.len(), names())),
    }
}

/// The header of tensor `t`, whose storage is `entry`, its data starting at byte `start`.
fn header(t: &Tensor, entry: &Entry, start: u64) -> Result<Header, String> {
    let (class, dtype_name, dtype) = STORAGES[t.storage.class];
    let dtype = dtype.ok_or_else(|| format!("dtype {dtype_name} (torch.{class}) is not float16, bfloat16, float32 or float64"))?;
    let size = dtype.size() as u64;
    let too_large = || format!("a tensor of shape {:?} at storage offset {}: its size in bytes does not fit 64 bits", t.shape, t.offset);
    // Strides of C order (the last axis fastest) and of Fortran order (the first fastest);
    // an axis of length 1 may have any stride.
    let strides = |axes: &mut dyn Iterator<Item = usize>| -> Option<bool> {
        let mut expected = 1u64;
        let mut matches = true;
        for axis in axes {
            matches &= t.shape[axis] == 1 || t.stride[axis] == expected;
            expected = expected.checked_mul(t.shape[axis])?;
        }
        Some(matches)
    };
    let c_order = strides(&mut (0..t.shape.len()).rev()).ok_or_else(too_large)?;
    let fortran_order = !c_order && strides(&mut (0..t.shape.len())).ok_or_else(too_large)?;
    let elements = t.shape.iter().try_fold(1u64, |n, &d| n.checked_mul(d)).ok_or_else(too_large)?;
    if !c_order && !fortran_order && elements > 0 {
        return Err(format!(
            "a non-contiguous tensor (shape {:?}, strides {:?}: a view of a larger tensor, saved as it is): save t.contiguous()",
            t.shape, t.stride
        ));
    }
    let needed = t.offset.checked_add(elements).and_then(|n| n.checked_mul(size)).ok_or_else(too_large)?;
    if elements > 0 && needed > entry.size {
        return Err(format!(
            "its storage {} holds {} bytes, fewer than the {needed} that its tensor of shape {:?} at storage offset {} needs (a damaged file?)",
            entry.name, entry.size, t.shape, t.offset
        ));
    }
    let shape = t.shape.iter().map(|&d| usize::try_from(d).map_err(|_| too_large())).collect::<Result<Vec<_>, _>>()?;
    let data_offset = t.offset.checked_mul(size).and_then(|b| b.checked_add(start)).ok_or_else(too_large)?;
    let header = Header { dtype, big_endian: false, fortran_order, shape, data_offset };
    if header.data_bytes().and_then(|b| b.checked_add(data_offset)).is_none() {
        return Err(too_large());
    }
    Ok(header)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A zip archive of stored entries, its central directory in zip64 form when `zip64`
    /// (sizes and offsets 0xffffffff, the values in the extra field; a zip64 end record
    /// and locator), as PyTorch writes archives over 4 GiB.
    fn zip(entries: &[(&str, &[u8])], zip64: bool) -> Vec<u8> {
        fn put(out: &mut Vec<u8>, values: &[(u64, usize)]) {
            for &(v, bytes) in values {
                out.extend(&v.to_le_bytes()[..bytes]);
            }
        }
        let (mut out, mut directory) = (Vec::new(), Vec::new());
        for (name, data) in entries {
            let (offset, len, name_len) = (out.len() as u64, data.len() as u64, name.len() as u64);
            // Signature, version, flags, method, time, date, CRC, sizes, name and extra
            // lengths (an extra field of 3 padding bytes, as PyTorch pads to align).
            out.extend(b"PK\x03\x04");
            put(&mut out, &[(20, 2), (0, 2), (0, 2), (0, 4), (0, 4), (len, 4), (len, 4), (name_len, 2), (3, 2)]);
            out.extend(name.as_bytes());
            out.extend([0, 0, 0]);
            out.extend(*data);
            let (size, local, extra) = if zip64 { (0xffff_ffff, 0xffff_ffff, 28) } else { (len, offset, 0) };
            // Signature, versions, flags, method, time, date, CRC, sizes, name, extra and
            // comment lengths, disk, attributes, local header offset.
            directory.extend(b"PK\x01\x02");
            put(&mut directory, &[(45, 2), (45, 2), (0, 2), (0, 2), (0, 4), (0, 4), (size, 4), (size, 4), (name_len, 2), (extra, 2)]);
            put(&mut directory, &[(0, 2), (0, 2), (0, 2), (0, 4), (local, 4)]);
            directory.extend(name.as_bytes());
            if zip64 {
                put(&mut directory, &[(1, 2), (24, 2), (len, 8), (len, 8), (offset, 8)]);
            }
        }
        let (start, n, dir_len) = (out.len() as u64, entries.len() as u64, directory.len() as u64);
        out.extend(&directory);
        if zip64 {
            let record = out.len() as u64;
            out.extend(b"PK\x06\x06");
            put(&mut out, &[(44, 8), (45, 2), (45, 2), (0, 4), (0, 4), (n, 8), (n, 8), (dir_len, 8), (start, 8)]);
            out.extend(b"PK\x06\x07");
            put(&mut out, &[(0, 4), (record, 8), (1, 4)]);
        }
        let (count, size, offset) = if zip64 { (0xffff, 0xffff_ffff, 0xffff_ffff) } else { (n, dir_len, start) };
        out.extend(b"PK\x05\x06");
        put(&mut out, &[(0, 2), (0, 2), (count, 2), (count, 2), (size, 4), (offset, 4), (0, 2)]);
        out
    }

    /// The pickle of `_rebuild_tensor_v2` on storage `key` (float32), as torch.save writes it.
    fn tensor_pickle(key: &str, offset: u8, shape: [u8; 2], stride: [u8; 2]) -> Vec<u8> {
        let mut p = b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\nq\x00((X\x07\x00\x00\x00storagectorch\nFloatStorage\n".to_vec();
        p.push(b'X');
        p.extend((key.len() as u32).to_le_bytes());
        p.extend(key.as_bytes());
        p.extend(b"X\x03\x00\x00\x00cpuK\x06tQ");
        p.extend([b'K', offset, b'K', shape[0], b'K', shape[1], 0x86, b'K', stride[0], b'K', stride[1], 0x86, 0x89]);
        p.extend(b"ccollections\nOrderedDict\n)Rtq\x01R.");
        p
    }

    fn open(bytes: &[u8], name: Option<&str>) -> Result<Header, String> {
        read_header(&mut std::io::Cursor::new(bytes), bytes.len() as u64, name)
    }

    #[test]
    fn reads_stored_archives_plain_and_zip64() {
        let data: Vec<u8> = (0..6).flat_map(|i| (i as f32).to_le_bytes()).collect();
        for zip64 in [false, true] {
            let pickle = tensor_pickle("0", 1, [2, 2], [2, 1]);
            let archive = zip(&[("x/data.pkl", &pickle), ("x/byteorder", b"little"), ("x/data/0", &data)], zip64);
            let h = open(&archive, None).unwrap();
            assert_eq!((h.dtype, h.shape.clone(), h.fortran_order), (Dtype::F32, vec![2, 2], false));
            // Storage offset 1: the tensor's first element is the storage's second, 1.0.
            let at = h.data_offset as usize;
            assert_eq!(f32::from_le_bytes(archive[at..at + 4].try_into().unwrap()), 1.0, "zip64 {zip64}");
            // Fortran strides of the same shape.
            let pickle = tensor_pickle("0", 0, [2, 3], [1, 2]);
            let archive = zip(&[("x/data.pkl", &pickle), ("x/data/0", &data)], zip64);
            assert!(open(&archive, None).unwrap().fortran_order);
        }
    }

    #[test]
    fn refuses_what_does_not_add_up() {
        let data = [0u8; 24];
        let refused =
            |pickle: &[u8], storage: &[u8]| open(&zip(&[("x/data.pkl", pickle), ("x/data/0", storage)], false), None).unwrap_err();
        // A storage shorter than the tensor: 2 x 3 at offset 1 needs 28 bytes.
        let e = refused(&tensor_pickle("0", 1, [2, 3], [3, 1]), &data);
        assert!(e.contains("holds 24 bytes, fewer than the 28"), "{e}");
        // A storage that is not there.
        let e = refused(&tensor_pickle("7", 0, [2, 3], [3, 1]), &data);
        assert!(e.contains("no entry x/data/7"), "{e}");
        // Strides of neither order.
        let e = refused(&tensor_pickle("0", 0, [2, 2], [1, 1]), &data);
        assert!(e.contains("non-contiguous") && e.contains("t.contiguous()"), "{e}");
        // A pickle cut short, an opcode outside torch.save's, deep nesting.
        let pickle = tensor_pickle("0", 0, [2, 3], [3, 1]);
        assert!(refused(&pickle[..40], &data).contains("malformed pickle"));
        assert!(refused(b"\x80\x02I1\n.", &data).contains("opcode 0x49"));
        let deep: Vec<u8> = [&b"\x80\x02"[..], &[b']'; 100], &[b'a'; 99], b"."].concat();
        assert!(refused(&deep, &data).contains("more than 64 deep"));
        // Not a zip archive's end.
        let archive = zip(&[("x/data.pkl", &pickle), ("x/data/0", &data)], true);
        assert!(open(&archive[..archive.len() - 1], None).unwrap_err().contains("truncated"));
    }

    #[test]
    fn memo_and_containers_behave_as_in_python() {
        // d = {}; d['a'] = [1, 2]; d['b'] = memo'd list again; 'b' dropped as no tensor.
        let pickle = b"\x80\x02}q\x00(X\x01\x00\x00\x00a](K\x01K\x02eq\x01X\x01\x00\x00\x00bh\x01u.";
        let v = Machine::new(pickle).run().unwrap();
        let Value::Dict(d) = v else { panic!("{v:?}") };
        assert_eq!(d.items.len(), 2);
        let Value::List(l) = &d.items[1].1 else { panic!() };
        assert_eq!(l.items.len(), 2);
        assert_eq!(d.depth, 2);
        let e = choose(Value::Dict(d), None).unwrap_err();
        assert!(e.contains("dict without tensors"), "{e}");
    }
}
