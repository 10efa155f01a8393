use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use crate::backend::{self, BackendChoice};
use crate::eval;
use crate::with_backend;

/// Score a generator: sliced Wasserstein distance to real faces, and a copy check.
#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  dcgan eval --ckpt run/g.mpk --real celeba-valid/\n  dcgan eval --ckpt run/g.mpk --real celeba-valid/ --train img_align_celeba --n 2000 --json"
)]
pub struct EvalCli {
    /// Generator checkpoint written by `dcgan train`.
    #[arg(long, default_value = "run/g.mpk", value_name = "FILE")]
    pub ckpt: PathBuf,
    /// Config describing the network (default: config.json beside the checkpoint).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Real faces the generator did not train on (validation or holdout photos).
    #[arg(long, value_name = "DIR")]
    pub real: PathBuf,
    /// Training photos for the copy check (default: the run's data folder, if it exists).
    #[arg(long, value_name = "DIR")]
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
    #[arg(long, value_enum, default_value_t)]
    pub backend: BackendChoice,
}

pub(super) fn eval_command(args: EvalCli) -> Result<()> {
    let resolved = backend::resolve(args.backend)?;
    let settings = eval::EvalArgs {
        ckpt: args.ckpt,
        config: args.config,
        real: args.real,
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
