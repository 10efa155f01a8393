//! `dcgan eval`: its flags, and the report on the terminal or as JSON.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use crate::backend::{self, BackendChoice};
use crate::data::Split;
use crate::eval;
use crate::with_backend;

/// Score a generator: sliced Wasserstein distance to real faces, and a copy check.
#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  dcgan eval --ckpt run/g.mpk --real celeba-valid/\n  dcgan eval --ckpt run/g.mpk --real img_align_celeba.zip --split test\n  dcgan eval --ckpt run/g.mpk --real celeba-valid/ --train img_align_celeba --n 2000 --json"
)]
pub struct EvalArgs {
    /// Generator checkpoint written by `dcgan train`, or a state dict of G from elsewhere
    /// (`.safetensors`, or PyTorch's `.pt`/`.pth`; give its settings with --config).
    #[arg(long, default_value = "run/g.mpk", value_name = "FILE")]
    pub ckpt: PathBuf,
    /// Config describing the network (default: config.json beside the checkpoint).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Real faces the generator did not train on: a folder or zip of validation or holdout
    /// photos, or all of CelebA with its partition file beside it (see --split).
    #[arg(long, value_name = "DIR|ZIP")]
    pub real: PathBuf,
    /// Which part of CelebA's official partition --real means (default: valid where the
    /// partition file is found, else every image).
    #[arg(long, value_enum)]
    pub split: Option<Split>,
    /// CelebA's list_eval_partition.txt (or Kaggle's .csv), if it is not beside --real.
    #[arg(long, value_name = "FILE")]
    pub partition: Option<PathBuf>,
    /// Training photos for the copy check (default: the images the run trained on, if they
    /// are still there).
    #[arg(long, value_name = "DIR|ZIP")]
    pub train: Option<PathBuf>,
    /// Faces to generate and to read from --real.
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u64).range(64..=100_000))]
    pub n: u64,
    /// Noise and projection seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Print the scores as one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
    /// Where to compute: a GPU if present (auto), WGPU, or the CPU.
    #[arg(long, value_enum, default_value_t)]
    pub backend: BackendChoice,
}

pub(super) fn eval_command(args: EvalArgs) -> Result<()> {
    let resolved = backend::resolve(args.backend)?;
    let settings = eval::EvalSettings {
        ckpt: args.ckpt,
        config: args.config,
        real: args.real,
        split: args.split,
        partition: args.partition,
        train: args.train,
        n: args.n as usize,
        seed: args.seed,
    };
    let report = with_backend!(resolved, |B, device| eval::run::<B>(&settings, &device))?;
    eval::print(&report);
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    }
    Ok(())
}
