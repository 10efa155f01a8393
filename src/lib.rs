//! dcgan: train a DCGAN on CelebA faces with burn, then sample and chart it.
//!
//! Layers, top to bottom; each module uses only modules below it, so there are no cycles:
//!
//! - `cli`: arguments and handlers, one file per subcommand
//! - `eval`, `bench`, `plot`: what those commands compute
//! - `train`: the loop, one GAN step, the moving average, interrupts
//! - `metrics`: SWD, the copy check, the in-training tracker
//! - `sample`: generating faces from a generator
//! - `data`: finding, decoding, caching and batching faces; PNG grids
//! - `run`: the run folder, checkpoints, logs, atomic writes
//! - `nn`: the networks and their layers on each backend
//! - `config`, `rng`, `progress`, `backend`, `simd`: settings, random streams, terminal,
//!   devices, AVX2 dispatch

pub mod backend;
pub mod bench;
pub mod cli;
pub mod config;
pub mod data;
pub mod eval;
pub mod metrics;
pub mod nn;
pub mod plot;
pub mod progress;
pub mod rng;
pub mod run;
pub mod sample;
mod simd;
#[doc(hidden)]
pub mod testing;
pub mod train;
