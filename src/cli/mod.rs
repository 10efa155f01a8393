//! Command-line interface: one file per subcommand, each its clap arguments and a thin handler.

mod bench;
mod eval;
mod export;
mod plot;
mod sample;
mod train;
mod train_args;

pub use bench::BenchArgs;
pub use eval::EvalArgs;
pub use export::ExportArgs;
pub use plot::PlotArgs;
pub use sample::SampleArgs;
pub use train_args::TrainArgs;

use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

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
    Export(ExportArgs),
}

/// The exit code of a run stopped by Ctrl-C or SIGTERM after saving its checkpoint, as a
/// shell reports a process killed by SIGINT.
pub const INTERRUPTED: u8 = 130;

/// Runs one subcommand; the exit code says whether it finished or was interrupted.
pub fn run(cli: Cli) -> Result<ExitCode> {
    let done = |r: Result<()>| r.map(|()| ExitCode::SUCCESS);
    match cli.command {
        Command::Train(args) => train::train_command(args),
        Command::Sample(args) => done(sample::sample_command(args)),
        Command::Plot(args) => done(plot::plot_command(args)),
        Command::Bench(args) => done(bench::bench_command(args)),
        Command::Eval(args) => done(eval::eval_command(args)),
        Command::Export(args) => done(export::export_command(args)),
    }
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::Cli;

    const README: &str = include_str!("../../README.md");

    /// Every command line the README shows parses with the real argument definitions, so the
    /// README and `--help` cannot drift apart.
    #[test]
    fn readme_commands_parse() {
        let mut seen = 0;
        for line in README.lines() {
            let line = line.trim_start();
            if !(line.starts_with("dcgan ") || line.starts_with("cargo run --release -- ")) {
                continue;
            }
            let command = line.split('#').next().unwrap();
            let command = command.replace("cargo run --release --", "dcgan");
            let words: Vec<&str> = command.split_whitespace().collect();
            if let Err(e) = Cli::try_parse_from(&words) {
                panic!("README: `{}` does not parse:\n{e}", words.join(" "));
            }
            seen += 1;
        }
        assert!(seen >= 10, "found only {seen} command lines in the README");
    }

    /// Every `--flag` the README's section on a subcommand names is a flag of that subcommand.
    #[test]
    fn readme_flags_exist() {
        let cli = Cli::command();
        let mut sub = None;
        for line in README.lines() {
            if let Some(rest) = line.strip_prefix("**`dcgan ") {
                sub = rest.split([' ', '`']).next().map(str::to_string);
            } else if line.starts_with('#') {
                sub = None;
            }
            let Some(name) = &sub else { continue };
            let cmd = cli
                .find_subcommand(name)
                .expect("a README section names a subcommand");
            for flag in line
                .split(['`', ' ', '(', ')', ','])
                .filter(|w| w.starts_with("--"))
            {
                let flag = flag
                    .trim_start_matches('-')
                    .split(['=', ' '])
                    .next()
                    .unwrap();
                assert!(
                    cmd.get_arguments().any(|a| a.get_long() == Some(flag)),
                    "README names --{flag} under `dcgan {name}`, which has no such flag"
                );
            }
        }
    }
}
