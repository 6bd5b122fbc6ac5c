//! svcca: train networks on libtorch, record what their layers compute, and measure how
//! representations learn with SVCCA, PWCCA and CKA.
//!
//! Each module is a stage of one pipeline, and dependencies run one way, from
//! `config` through `data`, `model`, `activations`, `train`, `analysis` and `report` to
//! `experiment`/`sweep` and `cli`, with `similarity` (the maths, functions of tensors)
//! and the small shared modules (`error`, `io`, `run_dir`, `device`, `host`) below them:
//! see docs/ARCHITECTURE.md, checked by tests/architecture.rs.

pub mod activations;
pub mod analysis;
pub mod cli;
pub mod compare;
pub mod config;
pub mod data;
pub mod device;
pub mod error;
pub mod example_pair;
pub mod experiment;
pub mod host;
pub mod io;
pub mod model;
pub mod npy;
pub mod preempt;
pub mod report;
pub mod run_dir;
pub mod similarity;
pub mod stats;
pub mod sweep;
pub mod toy_regression;
pub mod train;
