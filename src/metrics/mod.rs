//! How good a generator is: the sliced Wasserstein distance to real faces, a copy check
//! against the training faces, and the tracker that scores G during training.

pub mod swd;
mod tracker;

pub use swd::{copy_check, swd, CopyReport, SwdConfig, SwdReport};
pub use tracker::Tracker;
