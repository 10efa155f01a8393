//! Command-line interface: one file per subcommand, each its clap arguments and a thin handler.

mod bench;
mod eval;
mod plot;
mod sample;
mod train;

pub use bench::BenchArgs;
pub use eval::EvalArgs;
pub use plot::PlotArgs;
pub use sample::SampleArgs;
pub use train::TrainArgs;

use std::process::ExitCode;

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
    Sample(SampleArgs),
    Plot(PlotArgs),
    Bench(BenchArgs),
    Eval(EvalArgs),
}

/// The exit code of a run stopped by Ctrl-C or SIGTERM after saving its checkpoint, as a
/// shell reports a process killed by SIGINT.
pub const INTERRUPTED: u8 = 130;

/// Runs one subcommand; the exit code says whether it finished or was interrupted.
pub fn run(cli: Cli) -> Result<ExitCode> {
    progress::tune_allocator();
    let done = |r: Result<()>| r.map(|()| ExitCode::SUCCESS);
    match cli.command {
        Command::Train(args) => train::train_command(args),
        Command::Sample(args) => done(sample::sample_command(args)),
        Command::Plot(args) => done(plot::plot_command(args)),
        Command::Bench(args) => done(bench::bench_command(args)),
        Command::Eval(args) => done(eval::eval_command(args)),
    }
}
