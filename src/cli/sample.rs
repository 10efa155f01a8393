//! `dcgan sample`: its flags for grids, single faces and interpolations.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use crate::backend::{self, BackendChoice};
use crate::sample::{self, SampleSettings};
use crate::with_backend;

/// Generate faces from a trained generator.
#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  dcgan sample --ckpt run/g.mpk --n 100\n  dcgan sample --ckpt run/g.mpk --n 16 --seed 7 --out faces.png\n  dcgan sample --ckpt run/g.mpk --n 500 --each faces/\n  dcgan sample --ckpt run/g.mpk --n 64 --interpolate 8 --out walk.png\n  dcgan sample --ckpt netG.pt --config configs/dcgan.json --n 64"
)]
pub struct SampleArgs {
    /// Generator checkpoint written by `dcgan train`, or a state dict of G from elsewhere
    /// (`.safetensors`, or PyTorch's `.pt`/`.pth`; give its settings with --config).
    #[arg(long, default_value = "run/g.mpk", value_name = "FILE")]
    pub ckpt: PathBuf,
    /// Config describing the network (default: config.json beside the checkpoint).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Number of faces.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub n: u64,
    /// Noise seed: the same seed gives the same faces.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Columns of the grid (default: ceil(sqrt(n))).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub cols: Option<u64>,
    /// Output PNG for the grid.
    #[arg(long, default_value = "samples.png", value_name = "FILE")]
    pub out: PathBuf,
    /// Write one PNG per face into this folder instead of a grid.
    #[arg(long, value_name = "DIR", conflicts_with = "interpolate")]
    pub each: Option<PathBuf>,
    /// Rows of K faces walking between two random latent points (spherical for normal noise).
    #[arg(long, value_name = "K", value_parser = clap::value_parser!(u64).range(2..=64))]
    pub interpolate: Option<u64>,
    /// Where to compute: a GPU if present (auto), WGPU, or the CPU.
    #[arg(long, value_enum, default_value_t)]
    pub backend: BackendChoice,
}

pub(super) fn sample_command(args: SampleArgs) -> Result<()> {
    let resolved = backend::resolve(args.backend)?;
    let settings = SampleSettings {
        ckpt: args.ckpt,
        config: args.config,
        n: args.n as usize,
        seed: args.seed,
        cols: args.cols.map(|c| c as usize),
        out: args.out,
        each: args.each,
        interpolate: args.interpolate.map(|k| k as usize),
    };
    with_backend!(resolved, |B, device| sample::run::<B>(&settings, &device))
}
