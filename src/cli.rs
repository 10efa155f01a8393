//! Command-line interface: argument types and what each subcommand does with them.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};

use crate::backend::{self, Autodiff, BackendChoice};
use crate::bench;
use crate::cache;
use crate::checkpoint::{DataFingerprint, RunDir};
use crate::config::TrainingConfig;
use crate::data;
use crate::eval;
use crate::interrupt;
use crate::plot;
use crate::progress;
use crate::sample::{self, SampleArgs};
use crate::train::{self, Outcome, Start};
use crate::with_backend;

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

/// Train G and D on a folder of face photos; checkpoints, losses and previews go to --out.
#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  dcgan train --data img_align_celeba --epochs 300\n  dcgan train --data faces/ --preset notebook --out run-notebook\n  dcgan train --data faces/ --config my.json --batch-size 64 --lr 1e-4\n  dcgan train --data faces/ --swd-every 1 --ema 0.999\n  dcgan train --resume --out run --epochs 400\n\nCtrl-C (or SIGTERM) finishes the current batch, saves a checkpoint and says how to resume."
)]
pub struct TrainArgs {
    /// Folder of JPEG/PNG faces, searched recursively (e.g. img_align_celeba).
    #[arg(long, value_name = "DIR", required_unless_present = "resume")]
    pub data: Option<PathBuf>,
    /// Continue the run in --out from its last checkpoint (only --epochs may change).
    #[arg(long, conflicts_with_all = ["config", "preset", "batch_size", "limit", "lr", "seed", "force", "swd_every", "ema"])]
    pub resume: bool,
    /// Start from a JSON config file instead of a preset.
    #[arg(long, value_name = "FILE", conflicts_with = "preset")]
    pub config: Option<PathBuf>,
    /// Built-in preset: `dcgan` (the paper's recipe, the default) or `notebook` (the reference as it ran).
    #[arg(long, value_name = "NAME")]
    pub preset: Option<String>,
    /// Number of passes over the data.
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Images per batch; the last partial batch of each epoch is dropped.
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Use only the first N images of the sorted listing.
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// Learning rate for both G and D.
    #[arg(long)]
    pub lr: Option<f64>,
    /// Seed for initialisation, shuffling, noise and dropout.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Run folder for checkpoints, losses.jsonl and samples/.
    #[arg(long, default_value = "run", value_name = "DIR")]
    pub out: PathBuf,
    /// Overwrite a run folder that already holds a run.
    #[arg(long)]
    pub force: bool,
    /// Every N epochs, score G with SWD against 512 fixed training faces (metrics.jsonl) and
    /// keep the best generator as g_best.mpk.
    #[arg(long, value_name = "N")]
    pub swd_every: Option<usize>,
    /// Keep a moving average of G's weights with this decay (e.g. 0.999) as g_ema.mpk;
    /// sample or eval it with --ckpt run/g_ema.mpk.
    #[arg(long, value_name = "DECAY")]
    pub ema: Option<f64>,
    /// Keep the decoded faces here (default: <out>/cache), so the next run on the same
    /// photos skips decoding. Share one folder between runs with --cache-dir.
    #[arg(long, value_name = "DIR", conflicts_with = "no_cache")]
    pub cache_dir: Option<PathBuf>,
    /// Decode the photos every time; write no cache.
    #[arg(long)]
    pub no_cache: bool,
    /// Where to compute: a GPU if present (auto), WGPU, or the CPU.
    #[arg(long, value_enum, default_value_t)]
    pub backend: BackendChoice,
}

/// Measure loading, training-step and sampling speed (medians of several runs).
#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  dcgan bench --data img_align_celeba --limit 5000\n  dcgan bench --only step --backend cpu --batch-size 128 --json\n  dcgan bench --only step,sample --backend wgpu --runs 10"
)]
pub struct BenchArgs {
    /// Folder of photos for the loading benchmarks (and real faces for the step).
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Use only the first N images of the folder.
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// What to measure (default: load and cache when --data is given, then step and sample).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub only: Vec<bench::Part>,
    /// Built-in preset whose networks and optimiser to use.
    #[arg(long, value_name = "NAME", default_value = "dcgan")]
    pub preset: String,
    /// Images per training step and per sampling pass.
    #[arg(long, default_value_t = 128, value_parser = clap::value_parser!(u64).range(1..=65_536))]
    pub batch_size: u64,
    /// Untimed runs first (autotuning, caches, allocator).
    #[arg(long, default_value_t = 2)]
    pub warmup: usize,
    /// Timed runs; the median is reported.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
    pub runs: u64,
    /// Print one JSON object per measurement on stdout.
    #[arg(long)]
    pub json: bool,
    #[arg(long, value_enum, default_value_t)]
    pub backend: BackendChoice,
}

/// Generate faces from a trained generator.
#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  dcgan sample --ckpt run/g.mpk --n 100\n  dcgan sample --ckpt run/g.mpk --n 16 --seed 7 --out faces.png\n  dcgan sample --ckpt run/g.mpk --n 500 --each faces/\n  dcgan sample --ckpt run/g.mpk --n 64 --interpolate 8 --out walk.png"
)]
pub struct SampleCli {
    /// Generator checkpoint written by `dcgan train`.
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
    #[arg(long, value_enum, default_value_t)]
    pub backend: BackendChoice,
}

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

impl TrainArgs {
    /// The preset or file, with flags applied on top, validated.
    pub fn resolve_config(&self) -> Result<TrainingConfig> {
        let mut cfg = match &self.config {
            Some(path) => TrainingConfig::load(path)?,
            None => TrainingConfig::preset(self.preset.as_deref().unwrap_or("dcgan"))?,
        };
        if let Some(v) = self.epochs {
            cfg.epochs = v;
        }
        if let Some(v) = self.batch_size {
            cfg.batch_size = v;
        }
        if let Some(v) = self.limit {
            cfg.data.limit = Some(v);
        }
        if let Some(v) = self.lr {
            cfg.optimizer_g.lr = v;
            cfg.optimizer_d.lr = v;
        }
        if let Some(v) = self.seed {
            cfg.seed = v;
        }
        if let Some(every) = self.swd_every {
            cfg.track = Some(crate::config::Track {
                every_epochs: every,
                faces: 512,
            });
        }
        if let Some(decay) = self.ema {
            cfg.ema = Some(crate::config::EmaSettings { decay });
        }
        cfg.validate().context("invalid training settings")?;
        Ok(cfg)
    }
}

pub fn run(cli: Cli) -> Result<()> {
    progress::tune_allocator();
    match cli.command {
        Command::Train(args) => train_command(args),
        Command::Sample(args) => sample_command(args),
        Command::Plot(args) => plot_command(args),
        Command::Bench(args) => bench_command(args),
        Command::Eval(args) => eval_command(args),
    }
}

fn train_command(args: TrainArgs) -> Result<()> {
    let run = RunDir(args.out.clone());
    // Everything that can be checked is checked before a byte is decoded.
    let (cfg, data_dir, start) = if args.resume {
        let (manifest, records) = run.load_checkpoint()?;
        let mut cfg = manifest.config.clone();
        if let Some(epochs) = args.epochs {
            if epochs < manifest.epoch {
                bail!(
                    "--epochs {epochs} is fewer than the {} epochs this run has reached; pass at least {}",
                    manifest.epoch,
                    manifest.epoch
                );
            }
            cfg.epochs = epochs;
        }
        let data_dir = args
            .data
            .clone()
            .unwrap_or_else(|| manifest.data.dir.clone());
        (cfg, data_dir, Start::Resume(manifest, records))
    } else {
        let data_dir = args
            .data
            .clone()
            .expect("clap requires --data without --resume");
        (args.resolve_config()?, data_dir, Start::Fresh)
    };
    let resolved = backend::resolve(args.backend)?;
    let mut files = data::find_images(&data_dir)?;
    if let Some(limit) = cfg.data.limit {
        files.truncate(limit);
    }
    data::check_crop_fits(&files, cfg.data.crop)?;
    match &start {
        Start::Fresh => run.prepare_new(args.force)?,
        Start::Resume(..) => run.prepare_dirs()?,
    }

    let t = std::time::Instant::now();
    let cache_dir = match (&args.cache_dir, args.no_cache) {
        (_, true) => None,
        (Some(dir), false) => Some(dir.clone()),
        (None, false) => Some(run.cache()),
    };
    let (faces, cached) =
        cache::load_or_decode(cache_dir.as_deref(), &files, cfg.data.crop, cfg.data.filter)?;
    eprintln!(
        "{} {} faces from {} files in {:.1}s ({} skipped); training on {}",
        if cached { "read cached" } else { "decoded" },
        faces.len(),
        files.len(),
        t.elapsed().as_secs_f64(),
        faces.skipped.len(),
        resolved.name()
    );
    let fingerprint = DataFingerprint {
        dir: std::path::absolute(&data_dir).unwrap_or_else(|_| data_dir.clone()),
        files: files.len(),
        faces: faces.len(),
        list_crc32: data::list_crc32(&data_dir, &files),
    };
    if let Start::Resume(manifest, _) = &start {
        // The folder may have moved; the images in it must be the same.
        let same = |d: &DataFingerprint| (d.files, d.faces, d.list_crc32);
        if same(&manifest.data) != same(&fingerprint) {
            bail!(
                "the images changed since this run started ({} files, {} usable then; {} files, {} usable now in {}): \
                 an exact resume needs the same images; point --data at the original folder",
                manifest.data.files,
                manifest.data.faces,
                fingerprint.files,
                fingerprint.faces,
                data_dir.display()
            );
        }
        eprintln!(
            "resuming {} at epoch {}, step {} of {}",
            run.0.display(),
            manifest.epoch,
            manifest.step,
            cfg.epochs * (faces.len() / cfg.batch_size)
        );
    }
    interrupt::install();
    let outcome = with_backend!(resolved, |B, device| train::train::<Autodiff<B>>(
        &cfg,
        &faces,
        fingerprint,
        &run,
        start,
        &device
    ))?;
    if let Outcome::Interrupted { epoch, step } = outcome {
        eprintln!(
            "interrupted: checkpoint saved at epoch {epoch}, step {step}. Continue with:\n  dcgan train --resume --out {}",
            run.0.display()
        );
        std::process::exit(130);
    }
    Ok(())
}

fn sample_command(args: SampleCli) -> Result<()> {
    let resolved = backend::resolve(args.backend)?;
    let args = SampleArgs {
        ckpt: args.ckpt,
        config: args.config,
        n: args.n as usize,
        seed: args.seed,
        cols: args.cols.map(|c| c as usize),
        out: args.out,
        each: args.each,
        interpolate: args.interpolate.map(|k| k as usize),
    };
    with_backend!(resolved, |B, device| sample::run::<B>(&args, &device))
}

fn bench_command(args: BenchArgs) -> Result<()> {
    let mut config = TrainingConfig::preset(&args.preset)?;
    config.batch_size = args.batch_size as usize;
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

fn eval_command(args: EvalCli) -> Result<()> {
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

fn plot_command(args: PlotArgs) -> Result<()> {
    let log = args
        .log
        .clone()
        .unwrap_or_else(|| RunDir(args.run.clone()).losses());
    let out = args.out.unwrap_or_else(|| log.with_file_name("losses.png"));
    let rows = train::read_losses(&log)?;
    let metrics_path = log.with_file_name("metrics.jsonl");
    // Optional: only runs trained with --swd-every have one.
    let metrics: Vec<eval::MetricRow> = std::fs::read_to_string(&metrics_path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    plot::plot(&rows, &metrics, &out)?;
    eprintln!("wrote {} ({} batches)", out.display(), rows.len());
    Ok(())
}
