//! dcgan: train a DCGAN on CelebA faces with burn, then sample and chart it.
//!
//! Layers, top to bottom (each uses only those below it): `cli` -> `sample`, `eval`, `bench`,
//! `plot` -> `train` -> `metrics` -> `run`, `data`, `nn`, `config`, `rng` -> `backend`.

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
pub mod train;
