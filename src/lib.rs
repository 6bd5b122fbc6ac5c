//! svcca: train networks on libtorch, record what their layers compute, and measure how
//! representations learn with SVCCA, PWCCA and CKA.
//!
//! Each module is a stage of one pipeline, and dependencies run one way, from
//! `config` through `data`, `model`, `activations`, `train`, `analysis` and `report` to
//! `experiment`/`sweep` and `cli`, with `similarity` (the maths, functions of tensors)
//! and the small shared modules (`error`, `io`, `run_dir`, `device`, `host`) below them:
//! see docs/ARCHITECTURE.md, checked by tests/architecture.rs.
//!
//! The public API is the `pub` modules below, described with examples in
//! docs/library.md; the rest is `pub(crate)`, free to change.

#![warn(unreachable_pub)]

pub mod activations;
pub mod analysis;
pub mod cli;
pub mod compare;
pub mod config;
pub mod data;
pub mod device;
pub mod error;
pub(crate) mod example_pair;
pub mod experiment;
pub(crate) mod host;
pub(crate) mod io;
pub mod model;
pub mod npy;
pub(crate) mod preempt;
pub mod report;
pub(crate) mod run_dir;
pub mod similarity;
pub(crate) mod stats;
pub mod sweep;
pub mod toy_regression;
pub mod train;

#[cfg(test)]
mod test_support;

/// docs/library.md's examples, run as doctests (`cargo test --doc`).
#[cfg(doctest)]
#[doc = include_str!("../docs/library.md")]
struct LibraryExamples;
