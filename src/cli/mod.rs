//! Command-line interface: one file per subcommand, each its clap arguments and a thin handler.

mod bench;
mod eval;
mod plot;
mod sample;
mod train;

pub use bench::BenchArgs;
pub use eval::EvalCli;
pub use plot::PlotArgs;
pub use sample::SampleCli;
pub use train::TrainArgs;

use anyhow::Result;
use clap::{Parser, Subcommand};

use crate::progress;

#[derive(Parser, Debug)]
#[command(
    name = "dcgan",
    version,
    about = "Train a DCGAN on CelebA faces, then sample and chart it",
    after_help = "Examples:\n  dcgan train --data img_align_celeba --epochs 300\n  dcgan sample --ckpt run/g.mpk --n 100\n  dcgan plot"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    Train(TrainArgs),
    Sample(SampleCli),
    Plot(PlotArgs),
    Bench(BenchArgs),
    Eval(EvalCli),
}

pub fn run(cli: Cli) -> Result<()> {
    progress::tune_allocator();
    match cli.command {
        Command::Train(args) => train::train_command(args),
        Command::Sample(args) => sample::sample_command(args),
        Command::Plot(args) => plot::plot_command(args),
        Command::Bench(args) => bench::bench_command(args),
        Command::Eval(args) => eval::eval_command(args),
    }
}
