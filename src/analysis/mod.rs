//! Learning dynamics: activations of every named layer on a fixed probe set, at every
//! checkpoint, compared by SVCCA with the final network.
//!
//! - [`probe`]: the probe set, a seeded subset of the test split.
//! - [`record`]: a network's activations on the probe set (inference mode).
//! - [`store`]: `store` mode, activations written at each checkpoint during training.
//! - [`dynamics`]: `svcca analyze RUN_DIR`, the tables in `RUN_DIR/analysis/`.
//! - [`shard`]: the same work split over the tasks of a job array, then merged.

pub mod dynamics;
pub mod probe;
pub mod record;
pub mod shard;
pub mod store;

pub use dynamics::{analyze, AnalyzeSummary};
