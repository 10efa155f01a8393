//! `dcgan bench`: its flags, and the settings they give the benchmarks in `bench.rs`.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;

use crate::backend::{self, Autodiff, BackendChoice};
use crate::bench;
use crate::config::{Crop, CropRule, GanLoop, Preset};
use crate::with_backend;

/// Measure loading, training-step and sampling speed (medians of several runs).
#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  dcgan bench --data img_align_celeba --limit 5000\n  dcgan bench --only step --backend cpu --batch-size 128 --json\n  dcgan bench --only step --backend cpu --profile\n  dcgan bench --only step,sample --backend wgpu --runs 10"
)]
pub struct BenchArgs {
    /// Folder or zip of photos for the loading benchmarks (and real faces for the step).
    #[arg(long, value_name = "DIR|ZIP")]
    pub data: Option<PathBuf>,
    /// Use only the first N images of the folder.
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// What to measure (default: load and cache when --data is given, then step and sample).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub only: Vec<bench::Part>,
    /// Built-in preset whose networks and optimiser to use.
    #[arg(long, value_enum, default_value_t)]
    pub preset: Preset,
    /// The order of a training step (see `dcgan train --help`).
    #[arg(long = "loop", value_enum, default_value_t, value_name = "LOOP")]
    pub gan_loop: GanLoop,
    /// Images per training step and per sampling pass.
    #[arg(long, default_value_t = 128, value_parser = clap::value_parser!(u64).range(1..=65_536))]
    pub batch_size: u64,
    /// Untimed runs first (autotuning, caches, allocator).
    #[arg(long, default_value_t = 2)]
    pub warmup: usize,
    /// Timed runs; the median is reported.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
    pub runs: u64,
    /// After the step: profile one more step, timing each layer operation and its parts,
    /// and each matrix product by shape beside a 4096 x 4096 product on the same cores
    /// (CPU backend only).
    #[arg(long, alias = "gemm")]
    pub profile: bool,
    /// Side of the faces in pixels (32, 64 or 128): the networks and the decoded faces.
    #[arg(long, value_name = "PIXELS", default_value_t = 64)]
    pub image_size: usize,
    /// What part of each picture the loading benchmarks cut (default: as `train` chooses).
    #[arg(long, value_enum, value_name = "CROP")]
    pub crop: Option<CropRule>,
    /// Print one JSON object per measurement on stdout.
    #[arg(long)]
    pub json: bool,
    /// Where to compute: a GPU if present (auto), WGPU, or the CPU.
    #[arg(long, value_enum, default_value_t)]
    pub backend: BackendChoice,
}

pub(super) fn bench_command(args: BenchArgs) -> Result<()> {
    let mut config = args.preset.config();
    config.batch_size = args.batch_size as usize;
    config.gan_loop = args.gan_loop;
    config.image_size = args.image_size;
    if let Some(crop) = args.crop {
        config.data.crop = Crop::Rule(crop);
    }
    config.validate().context("invalid benchmark settings")?;
    let parts = if args.only.is_empty() {
        let mut p = if args.data.is_some() {
            vec![bench::Part::Load, bench::Part::Cache]
        } else {
            Vec::new()
        };
        p.extend([bench::Part::Step, bench::Part::Sample]);
        p
    } else {
        args.only.clone()
    };
    let resolved = backend::resolve(args.backend)?;
    eprintln!("benchmarking on {}", resolved.name());
    let gpu = matches!(resolved, backend::Resolved::Wgpu { .. });
    if args.profile && (gpu || !parts.contains(&bench::Part::Step)) {
        bail!("--profile times the CPU layers in a training step: use it with --backend cpu and the step part (--only step)");
    }
    let count_launches = gpu && parts.contains(&bench::Part::Step) && backend::launches::enable();
    let settings = bench::BenchSettings {
        data: args.data,
        limit: args.limit,
        config,
        parts,
        warmup: args.warmup,
        runs: args.runs as usize,
        backend_name: match resolved {
            backend::Resolved::Cpu => "cpu".into(),
            backend::Resolved::Wgpu { .. } => "wgpu".into(),
        },
        count_launches,
        profile: args.profile,
    };
    let results = with_backend!(resolved, |B, device| bench::run::<Autodiff<B>>(
        &settings, &device
    ))?;
    if args.json {
        for m in results {
            println!("{}", serde_json::to_string(&m)?);
        }
    }
    Ok(())
}
