use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;

use crate::backend::{self, Autodiff, BackendChoice};
use crate::config::TrainingConfig;
use crate::data::{self, cache};
use crate::run::{DataFingerprint, RunDir};
use crate::train::{self, interrupt, Outcome, Start};
use crate::with_backend;

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

pub(super) fn train_command(args: TrainArgs) -> Result<()> {
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
