//! svcca: train networks on libtorch, record what their layers compute, and measure how
//! representations learn with SVCCA, PWCCA and CKA.
//!
//! Stages, each a module (see DESIGN notes in the README): `config` (experiment TOML),
//! `data` (datasets, augmentation), `model` (networks with named layers), `train` (the
//! resumable trainer), `similarity` (the math, pure functions of tensors), `npy` (reading
//! activation files), `compare` (the file-to-file comparison job), `analysis` (learning dynamics over
//! checkpoints), `report` (plots), `cli` (argument
//! parsing only).

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
pub mod io;
pub mod model;
pub mod npy;
pub mod preempt;
pub mod report;
pub mod run_dir;
pub mod similarity;
pub mod stats;
pub mod sweep;
pub mod train;
