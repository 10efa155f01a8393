//! `dcgan plot`: the loss chart of a run, or the animated GIF of its preview grids.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use crate::plot;
use crate::run::{self, MetricRow, RunDir};

/// Chart the D and G losses of a run, or animate its preview grids.
#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  dcgan plot\n  dcgan plot --run run-notebook --out notebook-losses.png\n  dcgan plot --run run --gif training.gif"
)]
pub struct PlotArgs {
    /// Run folder whose losses.jsonl to chart.
    #[arg(
        long,
        default_value = "run",
        value_name = "DIR",
        conflicts_with = "log"
    )]
    pub run: PathBuf,
    /// A losses.jsonl file to chart instead.
    #[arg(long, value_name = "FILE")]
    pub log: Option<PathBuf>,
    /// Output PNG (default: losses.png in the run folder).
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Write an animated GIF of the run's per-epoch preview grids, each frame captioned
    /// with its epoch (the loss chart is then written only if --out is given too).
    #[arg(long, value_name = "FILE", conflicts_with = "log")]
    pub gif: Option<PathBuf>,
    /// How long each epoch's frame of --gif shows, in milliseconds (the last one stays 2 s).
    #[arg(long, value_name = "MS", default_value_t = 100, requires = "gif")]
    pub frame_ms: u16,
}

pub(super) fn plot_command(args: PlotArgs) -> Result<()> {
    if let Some(gif) = &args.gif {
        let (bytes, frames) =
            plot::preview_gif(&RunDir(args.run.clone()).samples(), args.frame_ms)?;
        run::write_atomic(gif, &bytes)?;
        eprintln!("wrote {} ({frames} epochs)", gif.display());
        if args.out.is_none() {
            return Ok(());
        }
    }
    let log = args
        .log
        .clone()
        .unwrap_or_else(|| RunDir(args.run.clone()).losses());
    let out = args.out.unwrap_or_else(|| log.with_file_name("losses.png"));
    let rows = run::read_losses(&log)?;
    let metrics_path = log.with_file_name("metrics.jsonl");
    // Optional: only runs trained with --swd-every have one.
    let metrics: Vec<MetricRow> = std::fs::read_to_string(&metrics_path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    plot::plot(&rows, &metrics, &out)?;
    eprintln!("wrote {} ({} batches)", out.display(), rows.len());
    Ok(())
}
