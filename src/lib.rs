//! svcca: train networks on libtorch, record what their layers compute, and measure how
//! representations learn with SVCCA, PWCCA and CKA.
//!
//! Stages, each a module (see DESIGN notes in the README): `similarity` (the math, pure
//! functions of tensors), `npy` (reading activation files), `compare` (the file-to-file
//! comparison job), `cli` (argument parsing only).

pub mod cli;
pub mod compare;
pub mod device;
pub mod error;
pub mod example_pair;
pub mod npy;
pub mod similarity;
