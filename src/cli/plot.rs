use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use crate::plot;
use crate::run::{self, MetricRow, RunDir};

/// Chart the D and G losses of a run.
#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  dcgan plot\n  dcgan plot --run run-notebook --out notebook-losses.png"
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
}

pub(super) fn plot_command(args: PlotArgs) -> Result<()> {
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
