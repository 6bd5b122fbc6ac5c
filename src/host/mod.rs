//! Host-side performance machinery, in one place: views of tensors' memory as Rust
//! slices and faer matrices ([`view`]), who runs libtorch's CPU work ([`threads`]), and
//! the allocator's settings ([`allocator`]).
//!
//! Every `unsafe` that reads or writes a tensor's memory from Rust lives in [`view`],
//! beside the checks that prove it: the callers (the similarity kernels, `compare`'s
//! reader, the SGD step, the projection of `--compression`) are safe code.

pub(crate) mod allocator;
pub(crate) mod threads;
pub(crate) mod view;

pub(crate) use allocator::{reuse_freed_host_memory, HEAP_BLOCK_BYTES};
pub(crate) use threads::{on_rayon, set_libtorch_threads, single_threaded, LibtorchOnOneThread};
