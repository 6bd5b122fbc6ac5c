//! Tensors' host memory as Rust slices and faer matrices, each view checked once here:
//! on the CPU, of the element type asked for, contiguous (or, for faer, within its own
//! sizes and strides), and alive for the borrow the view is tied to.
//!
//! Writes are where aliasing could arise, since tch's tensors share storage
//! (`shallow_clone`, views): a `&mut` slice is made only
//! - over a fresh tensor, made by the call that hands out the slice and returned after
//!   it ([`fill_new`], [`try_fill_new`], [`fill_new_bytes`], [`write_new`],
//!   [`write_new_each`]): nothing
//!   else can refer to it; or
//! - over tensors the caller holds by `&mut`, checked apart (no byte in common) from each
//!   other and from every tensor the same call reads ([`slices_mut_apart`],
//!   [`bytes_mut`]).
//!
//! What no check here can see is another tch handle on the same storage (a
//! `shallow_clone` kept elsewhere) written or viewed while a view lives; tch lets its
//! own in-place operations race that way too. svcca keeps no such handle of a tensor it
//! views: the tensors written here are fresh, flat buffers owned by one struct, or a
//! block of a fresh stack.

use faer::MatRef;
use std::mem::MaybeUninit;
use std::ops::Range;
use tch::{Device, Kind, Tensor};

/// The element types a view may take, each with its libtorch kind.
pub trait Element: sealed::Sealed + Copy + Send + Sync + 'static {
    const KIND: Kind;
}

impl Element for f32 {
    const KIND: Kind = Kind::Float;
}

impl Element for f64 {
    const KIND: Kind = Kind::Double;
}

/// Only f32 and f64 are elements: a slice view trusts `KIND` to give its element's size,
/// and the Python module reaches this trait (through `compare`), so no other crate may
/// implement it.
mod sealed {
    // Public in a private module: the sealed-trait pattern, unreachable on purpose.
    #[allow(unreachable_pub)]
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for f64 {}
}

/// Whether `t` is a non-empty contiguous CPU tensor (of `kind` where given): its
/// elements lie one after the other from its data pointer, which is not null.
fn flat(t: &Tensor, kind: Option<Kind>) -> bool {
    t.device() == Device::Cpu && kind.is_none_or(|k| t.kind() == k) && t.is_contiguous() && t.numel() > 0
}

/// The bytes of storage that `t`'s elements span (strides are never negative in
/// libtorch); empty for an empty tensor.
fn span(t: &Tensor) -> Range<usize> {
    if t.numel() == 0 {
        return 0..0;
    }
    let last: i64 = t.size().iter().zip(t.stride()).map(|(&n, s)| (n - 1) * s).sum();
    let start = t.data_ptr() as usize;
    start..start + (last as usize + 1) * t.kind().elt_size_in_bytes()
}

fn apart(a: &Range<usize>, b: &Range<usize>) -> bool {
    a.is_empty() || b.is_empty() || a.end <= b.start || b.end <= a.start
}

/// The elements of a non-empty contiguous CPU tensor of `T`'s kind, in order; `None`
/// for any other tensor (a strided view, another kind, a GPU tensor, no elements).
pub(crate) fn slice<T: Element>(t: &Tensor) -> Option<&[T]> {
    if !flat(t, Some(T::KIND)) {
        return None;
    }
    // SAFETY: `t`'s storage holds `numel` contiguous, initialised elements of `T` from
    // its (non-null) data pointer, and stays alive while `t` is borrowed.
    Some(unsafe { std::slice::from_raw_parts(t.data_ptr() as *const T, t.numel()) })
}

/// The elements of each of `outs` to write, while `reads` are read: `None` unless each
/// is a non-empty contiguous CPU tensor of `T`'s kind and no two of `outs`, nor any of
/// `outs` and any of `reads`, share a byte of storage.
pub(crate) fn slices_mut_apart<'a, T: Element, const N: usize>(outs: [&'a mut Tensor; N], reads: &[&Tensor]) -> Option<[&'a mut [T]; N]> {
    let spans: Vec<Range<usize>> = outs.iter().map(|t| span(t)).collect();
    for (i, (out, s)) in outs.iter().zip(&spans).enumerate() {
        let mut others = spans[i + 1..].iter().cloned().chain(reads.iter().map(|r| span(r)));
        if !flat(out, Some(T::KIND)) || !others.all(|o| apart(s, &o)) {
            return None;
        }
    }
    // SAFETY: as in `slice`; each slice covers only its own tensor's bytes, which no other
    // slice made here and no tensor read beside them shares, and the caller's `&mut`
    // keeps the tensors alive and their handles unused for `'a`.
    Some(outs.map(|t| unsafe { std::slice::from_raw_parts_mut(t.data_ptr() as *mut T, t.numel()) }))
}

/// The bytes of a non-empty contiguous CPU tensor of any kind, to move whole elements
/// about (rows shuffled in place); `None` for any other tensor.
pub(crate) fn bytes_mut(t: &mut Tensor) -> Option<&mut [u8]> {
    if !flat(t, None) {
        return None;
    }
    let n = t.numel() * t.kind().elt_size_in_bytes();
    // SAFETY: as in `slices_mut_apart`, with nothing read beside it.
    Some(unsafe { std::slice::from_raw_parts_mut(t.data_ptr() as *mut u8, n) })
}

/// A new contiguous CPU tensor of `size` whose elements `f` writes: zeros first (`f`
/// may read what it has not written), for writers that take `&mut [T]` (faer, `Read`).
pub(crate) fn fill_new<T: Element>(size: &[i64], f: impl FnOnce(&mut [T])) -> Tensor {
    let Ok(t) = try_fill_new(size, |values| {
        f(values);
        Ok::<(), std::convert::Infallible>(())
    });
    t
}

/// As [`fill_new`], `f` failing or not.
pub fn try_fill_new<T: Element, E>(size: &[i64], f: impl FnOnce(&mut [T]) -> Result<(), E>) -> Result<Tensor, E> {
    let mut t = Tensor::zeros(size, (T::KIND, Device::Cpu));
    match slices_mut_apart::<T, 1>([&mut t], &[]) {
        Some([values]) => f(values)?,
        None => f(&mut [])?,
    }
    Ok(t)
}

/// As [`fill_new`], in bytes, for a tensor of `kind` (any), `f` failing or not.
pub(crate) fn fill_new_bytes<E>(size: &[i64], kind: Kind, f: impl FnOnce(&mut [u8]) -> Result<(), E>) -> Result<Tensor, E> {
    let mut t = Tensor::zeros(size, (kind, Device::Cpu));
    match bytes_mut(&mut t) {
        Some(bytes) => f(bytes)?,
        None => f(&mut [])?,
    }
    Ok(t)
}

/// A new contiguous CPU tensor of `size` whose every element `f` writes, with no
/// pass over the memory beforehand (for the kernels whose output is as large as their
/// input). An element `f` leaves unwritten is unspecified, as in `Tensor::empty`.
pub(crate) fn write_new<T: Element>(size: &[i64], f: impl FnOnce(&mut [MaybeUninit<T>])) -> Tensor {
    write_new_each(&[size.to_vec()], |outs| f(outs[0])).pop().expect("one tensor")
}

/// As [`write_new`], several tensors written together.
pub(crate) fn write_new_each<T: Element>(sizes: &[Vec<i64>], f: impl FnOnce(&mut [&mut [MaybeUninit<T>]])) -> Vec<Tensor> {
    let outs: Vec<Tensor> = sizes.iter().map(|s| Tensor::empty(s.as_slice(), (T::KIND, Device::Cpu))).collect();
    let mut views: Vec<&mut [MaybeUninit<T>]> = outs
        .iter()
        .map(|t| match t.numel() {
            0 => &mut [][..],
            // SAFETY: a fresh contiguous CPU tensor of `numel` elements of `T`, which no
            // other handle refers to until it is returned, after the views are gone;
            // `MaybeUninit` because `Tensor::empty` leaves its memory unwritten.
            n => unsafe { std::slice::from_raw_parts_mut(t.data_ptr() as *mut MaybeUninit<T>, n) },
        })
        .collect();
    f(&mut views);
    drop(views);
    outs
}

/// Several buffers of groups x `rows` x `width` elements (each its own number of
/// groups), written by parallel tasks one row index each: the task of row `n` writes row
/// `n` of every group of every buffer ([`RowSet::write`]), so no two tasks write the same
/// element (the DFT: a task per datapoint, its spectrum's rows spread over the
/// frequencies).
pub(crate) struct RowSets<'a, T> {
    /// Each buffer's address and number of groups.
    buffers: Vec<(usize, usize)>,
    rows: usize,
    width: usize,
    _borrow: std::marker::PhantomData<&'a mut [MaybeUninit<T>]>,
}

impl<'a, T: Copy + Send + Sync> RowSets<'a, T> {
    pub(crate) fn new(buffers: &'a mut [&mut [MaybeUninit<T>]], rows: usize, width: usize) -> RowSets<'a, T> {
        let stride = rows * width;
        let buffers = buffers
            .iter_mut()
            .map(|b| {
                assert!(stride == 0 || b.len() % stride == 0, "a buffer of groups x {rows} x {width}");
                (b.as_mut_ptr() as usize, b.len().checked_div(stride).unwrap_or(0))
            })
            .collect();
        RowSets { buffers, rows, width, _borrow: std::marker::PhantomData }
    }

    /// One writer per row index, in order, for rayon to hand to its tasks.
    pub(crate) fn par_rows(&mut self) -> impl rayon::iter::IndexedParallelIterator<Item = RowSet<'_, 'a, T>> + '_ {
        use rayon::prelude::*;
        let sets = &*self;
        (0..self.rows).into_par_iter().map(move |n| RowSet { sets, n })
    }
}

/// The writer of one row index of [`RowSets`]; one exists per index at a time.
pub(crate) struct RowSet<'s, 'a, T> {
    sets: &'s RowSets<'a, T>,
    n: usize,
}

impl<T: Copy> RowSet<'_, '_, T> {
    /// The row index this writes.
    #[cfg(test)]
    pub(crate) fn index(&self) -> usize {
        self.n
    }

    /// Writes `values` (one row of `width`) as row `index()` of group `group` of buffer
    /// `buffer`.
    pub(crate) fn write(&mut self, buffer: usize, group: usize, values: &[T]) {
        let (rows, width) = (self.sets.rows, self.sets.width);
        let (at, groups) = self.sets.buffers[buffer];
        assert!(group < groups && values.len() == width, "a row of {width} in one of {groups} groups");
        // SAFETY: in bounds (group < groups, n < rows, width values); only this writer,
        // the one of row n, writes these elements; the buffer is borrowed for 'a.
        unsafe {
            let dst = (at as *mut T).add((group * rows + self.n) * width);
            std::ptr::copy_nonoverlapping(values.as_ptr(), dst, width);
        }
    }
}

/// A CPU float64 tensor of 2 or 3 dimensions as faer reads it: a stack of `problems`
/// matrices of `rows` x `cols` (a matrix is a stack of one), read in place through the
/// tensor's own strides (transposed and narrowed views included, nothing copied).
pub(crate) struct MatStack<'a> {
    ptr: usize,
    pub problems: usize,
    pub rows: usize,
    pub cols: usize,
    strides: [isize; 3],
    _borrow: std::marker::PhantomData<&'a [f64]>,
}

impl<'a> MatStack<'a> {
    /// `None` for a tensor on a GPU, of another kind or dimension, or with no elements.
    pub(crate) fn of(t: &'a Tensor) -> Option<MatStack<'a>> {
        if t.device() != Device::Cpu || t.kind() != Kind::Double || !(2..=3).contains(&t.dim()) || t.numel() == 0 {
            return None;
        }
        let (size, stride) = (t.size(), t.stride());
        let (size, stride) = if t.dim() == 2 {
            ([1, size[0], size[1]], [0, stride[0], stride[1]])
        } else {
            ([size[0], size[1], size[2]], [stride[0], stride[1], stride[2]])
        };
        Some(MatStack {
            ptr: t.data_ptr() as usize,
            problems: size[0] as usize,
            rows: size[1] as usize,
            cols: size[2] as usize,
            strides: stride.map(|s| s as isize),
            _borrow: std::marker::PhantomData,
        })
    }

    /// Matrix `q` of the stack.
    pub(crate) fn problem(&self, q: usize) -> MatRef<'a, f64> {
        assert!(q < self.problems, "problem {q} of {}", self.problems);
        let base = (self.ptr as *const f64).wrapping_offset(q as isize * self.strides[0]);
        // SAFETY: the tensor's own sizes and strides from its data pointer, so within its
        // storage, initialised, and kept alive by the borrow of the tensor for 'a.
        unsafe { MatRef::from_raw_parts(base, self.rows, self.cols, self.strides[1], self.strides[2]) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_view_holds_the_tensors_values_in_order() {
        let t = Tensor::arange(12, (Kind::Double, Device::Cpu)).view([3, 4]);
        assert_eq!(slice::<f64>(&t).unwrap(), Vec::<f64>::try_from(&t.flatten(0, -1)).unwrap().as_slice());
        let f = t.to_kind(Kind::Float);
        assert_eq!(slice::<f32>(&f).unwrap()[5], 5.0);
    }

    #[test]
    fn views_of_strided_other_kinds_and_empty_tensors_are_refused() {
        let t = Tensor::arange(12, (Kind::Double, Device::Cpu)).view([3, 4]);
        assert!(slice::<f64>(&t.transpose(0, 1)).is_none(), "strided");
        assert!(slice::<f32>(&t).is_none(), "another kind");
        assert!(slice::<f64>(&t.narrow(0, 0, 0)).is_none(), "no elements");
        assert!(slice::<f64>(&t.to_kind(Kind::Int64)).is_none());
        if tch::Cuda::is_available() {
            assert!(slice::<f64>(&t.to_device(Device::Cuda(0))).is_none(), "on a GPU");
        }
        let mut strided = t.transpose(0, 1);
        assert!(bytes_mut(&mut strided).is_none());
        assert!(slices_mut_apart::<f64, 1>([&mut strided], &[]).is_none());
    }

    #[test]
    fn a_write_over_storage_that_is_read_is_refused() {
        let h = Tensor::zeros([4, 6], (Kind::Double, Device::Cpu));
        let mut same = h.shallow_clone();
        assert!(slices_mut_apart::<f64, 1>([&mut same], &[&h]).is_none(), "the same storage");
        let mut row = h.narrow(0, 1, 1);
        assert!(slices_mut_apart::<f64, 1>([&mut row], &[&h.narrow(0, 1, 3)]).is_none(), "an overlapping part");
        assert!(slices_mut_apart::<f64, 1>([&mut row], &[&h.narrow(1, 0, 2)]).is_none(), "a strided part spanning it");
        assert!(slices_mut_apart::<f64, 1>([&mut row], &[&h.narrow(0, 2, 2)]).is_some(), "rows apart");
        let (mut a, mut b) = (h.narrow(0, 0, 2), h.narrow(0, 1, 2));
        assert!(slices_mut_apart::<f64, 2>([&mut a, &mut b], &[]).is_none(), "two writes over one row");
        let (mut a, mut b) = (h.narrow(0, 0, 2), h.narrow(0, 2, 2));
        let [x, y] = slices_mut_apart::<f64, 2>([&mut a, &mut b], &[]).unwrap();
        x[0] = 1.0;
        y[0] = 2.0;
        assert_eq!(Vec::<f64>::try_from(&h.select(1, 0)).unwrap(), [1.0, 0.0, 2.0, 0.0]);
    }

    #[test]
    fn fresh_tensors_hold_what_was_written() {
        let t = fill_new::<f32>(&[2, 3], |v| v.iter_mut().enumerate().for_each(|(i, x)| *x += i as f32));
        assert_eq!(Vec::<f32>::try_from(&t.flatten(0, -1)).unwrap(), [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
        let t = write_new::<f64>(&[3], |v| v.iter_mut().for_each(|x| _ = x.write(7.0)));
        assert_eq!(Vec::<f64>::try_from(&t).unwrap(), [7.0; 3]);
        assert_eq!(write_new::<f64>(&[0, 3], |v| assert!(v.is_empty())).size(), [0, 3]);
        let err = fill_new_bytes(&[2], Kind::Half, |b| if b.len() == 4 { Err("seen") } else { Ok(()) });
        assert_eq!(err.unwrap_err(), "seen");
    }

    #[test]
    fn row_sets_write_row_n_of_every_group() {
        use rayon::prelude::*;
        let sizes = [vec![2, 3, 2], vec![1, 3, 2]];
        let out = write_new_each::<f64>(&sizes, |bufs| {
            let mut sets = RowSets::new(bufs, 3, 2);
            sets.par_rows().for_each(|mut set| {
                let n = set.index() as f64;
                set.write(0, 0, &[n, n]);
                set.write(0, 1, &[10.0 + n, 10.0 + n]);
                set.write(1, 0, &[20.0 + n, 20.0 + n]);
            });
        });
        assert_eq!(Vec::<f64>::try_from(&out[0].select(2, 1).flatten(0, -1)).unwrap(), [0.0, 1.0, 2.0, 10.0, 11.0, 12.0]);
        assert_eq!(Vec::<f64>::try_from(&out[1].select(2, 0).flatten(0, -1)).unwrap(), [20.0, 21.0, 22.0]);
    }

    #[test]
    fn a_stack_reads_strided_views_in_place() {
        let t = Tensor::arange(24, (Kind::Double, Device::Cpu)).view([2, 3, 4]);
        let tr = t.transpose(1, 2);
        let s = MatStack::of(&tr).unwrap();
        assert_eq!((s.problems, s.rows, s.cols), (2, 4, 3));
        assert_eq!(s.problem(1)[(3, 2)], f64::try_from(tr.get(1).get(3).get(2)).unwrap());
        assert!(MatStack::of(&t.to_kind(Kind::Float)).is_none());
    }
}
