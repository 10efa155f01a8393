//! dcgan: train a DCGAN on CelebA faces with burn, then sample and chart it.

pub mod backend;
pub mod bench;
pub mod cache;
pub mod checkpoint;
pub mod cli;
pub mod config;
pub mod cpu;
pub mod data;
pub mod ema;
pub mod eval;
pub mod interrupt;
pub mod layers;
pub mod model;
pub mod plot;
pub mod progress;
pub mod resize;
pub mod sample;
pub mod swd;
pub mod train;
