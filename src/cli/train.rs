//! `dcgan train`: its flags, the config they resolve to, what a resume may and may not
//! change, and the run from choosing the data to the last checkpoint.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Args;
use serde_json::Value;

use crate::backend::{self, Autodiff, BackendChoice, Resolved};
use crate::config::{Crop, CropRule, EmaConfig, GanLoop, Preset, TrackConfig, TrainingConfig};
use crate::data::{self, cache, Faces, ImageList, Preprocess, Split};
use crate::run::{DataFingerprint, Manifest, RunDir};
use crate::train::{self, interrupt, Outcome, Start};
use crate::with_backend;

/// Train G and D on face photos; checkpoints, losses and previews go to --out.
#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  dcgan train --data img_align_celeba --epochs 300\n  dcgan train --data faces/ --preset notebook --out run-notebook\n  dcgan train --data faces/ --config my.json --batch-size 64 --lr 1e-4\n  dcgan train --data faces/ --swd-every 1 --ema 0.999\n  dcgan train --data img_align_celeba.zip --split train\n  dcgan train --data my_pictures/ --crop center --image-size 128\n  dcgan train --data faces/ --epochs 30 --resume\n  dcgan train --data faces/ --init-from g.safetensors --init-from d.safetensors\n\nCtrl-C (or SIGTERM) finishes the current batch, saves a checkpoint and says how to resume."
)]
pub struct TrainArgs {
    /// Folder of JPEG/PNG faces, searched recursively (e.g. img_align_celeba), or CelebA's
    /// .zip read in place.
    #[arg(long, value_name = "DIR|ZIP", required_unless_present = "resume")]
    pub data: Option<PathBuf>,
    /// Which part of CelebA's official partition to train on (default: train where the
    /// partition file is found beside the images, else every image).
    #[arg(long, value_enum)]
    pub split: Option<Split>,
    /// CelebA's list_eval_partition.txt (or Kaggle's .csv), if it is not beside the images.
    #[arg(long, value_name = "FILE")]
    pub partition: Option<PathBuf>,
    /// Continue the run in --out from its last checkpoint. Other flags may be repeated as
    /// they were; only --epochs may change (and --data may name a moved copy).
    #[arg(long)]
    pub resume: bool,
    /// Start from a JSON config file instead of a preset.
    #[arg(long, value_name = "FILE", conflicts_with = "preset")]
    pub config: Option<PathBuf>,

    /// Start G and/or D from these weights instead of the initialiser: a state dict written
    /// by `dcgan export`, or by PyTorch for the reference networks as safetensors or `.pt`
    /// (one network per file, or both under `g.` and `d.` prefixes). Repeat for G and D.
    #[arg(long, value_name = "FILE", conflicts_with = "resume")]
    pub init_from: Vec<PathBuf>,
    /// Built-in preset (default: dcgan).
    #[arg(long, value_enum)]
    pub preset: Option<Preset>,
    /// Number of passes over the data.
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Images per batch; the last partial batch of each epoch is dropped.
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// What part of each picture becomes a face: CelebA's face box, the largest centred
    /// square, or the whole picture (default: celeba when every image is CelebA's aligned
    /// 178x218, else center).
    #[arg(long, value_enum, value_name = "CROP")]
    pub crop: Option<CropRule>,
    /// Side of the generated faces in pixels: 32, 64 or 128 (default 64).
    #[arg(long, value_name = "PIXELS")]
    pub image_size: Option<usize>,
    /// Use only the first N images of the sorted listing.
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// Learning rate for both G and D.
    #[arg(long)]
    pub lr: Option<f64>,
    /// The order of a training step: the notebook's, or the DCGAN paper's (one fake batch a
    /// step, made in training mode, that D learns from and G learns through).
    #[arg(long = "loop", value_enum, value_name = "LOOP")]
    pub gan_loop: Option<GanLoop>,
    /// Seed for initialisation, shuffling, noise and dropout.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Run folder for checkpoints, losses.jsonl and samples/.
    #[arg(long, default_value = "run", value_name = "DIR")]
    pub out: PathBuf,
    /// Overwrite a run folder that already holds a run (ignored with --resume).
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
        let mut cfg = self
            .base_config()?
            .unwrap_or_else(|| Preset::default().config());
        self.apply_flags(&mut cfg);
        cfg.validate().context("invalid training settings")?;
        Ok(cfg)
    }

    /// The config named by --config or --preset, if either is given.
    fn base_config(&self) -> Result<Option<TrainingConfig>> {
        Ok(match (&self.config, self.preset) {
            (Some(path), _) => Some(TrainingConfig::load(path)?),
            (None, Some(preset)) => Some(preset.config()),
            (None, None) => None,
        })
    }

    fn apply_flags(&self, cfg: &mut TrainingConfig) {
        if let Some(v) = self.epochs {
            cfg.epochs = v;
        }
        if let Some(v) = self.batch_size {
            cfg.batch_size = v;
        }
        if let Some(v) = self.limit {
            cfg.data.limit = Some(v);
        }
        if let Some(v) = self.crop {
            cfg.data.crop = Crop::Rule(v);
        }
        if let Some(v) = self.image_size {
            cfg.image_size = v;
        }
        if let Some(v) = self.lr {
            cfg.optimizer_g.lr = v;
            cfg.optimizer_d.lr = v;
        }
        if let Some(v) = self.seed {
            cfg.seed = v;
        }
        if let Some(v) = self.gan_loop {
            cfg.gan_loop = v;
        }
        if let Some(every) = self.swd_every {
            cfg.track = Some(TrackConfig {
                every_epochs: every,
                faces: 512,
            });
        }
        if let Some(decay) = self.ema {
            cfg.ema = Some(EmaConfig { decay });
        }
    }

    /// The checkpoint's config with --epochs applied, after checking that every other flag
    /// given says what the run started with: the same command line with --resume appended
    /// continues the run, and a changed setting is refused rather than silently ignored.
    fn resume_config(&self, manifest: &Manifest) -> Result<TrainingConfig> {
        let saved = &manifest.config;
        let lrs = (saved.optimizer_g.lr == saved.optimizer_d.lr).then_some(saved.optimizer_g.lr);
        same("--batch-size", self.batch_size, Some(saved.batch_size))?;
        same("--limit", self.limit, saved.data.limit)?;
        same("--lr", self.lr, lrs)?;
        same("--seed", self.seed, Some(saved.seed))?;
        let name = |l: GanLoop| format!("{l:?}").to_lowercase();
        same(
            "--loop",
            self.gan_loop.map(name),
            Some(name(saved.gan_loop)),
        )?;
        same(
            "--swd-every",
            self.swd_every,
            saved.track.as_ref().map(|t| t.every_epochs),
        )?;
        same("--ema", self.ema, saved.ema.map(|e| e.decay))?;
        same("--image-size", self.image_size, Some(saved.image_size))?;
        if let Some(rule) = self.crop.filter(|r| *r != CropRule::Auto) {
            if !Crop::Rule(rule).same_as(&saved.data.crop) {
                same(
                    "--crop",
                    Some(rule.name().to_string()),
                    Some(saved.data.crop.describe()),
                )?;
            }
        }
        if let Some(mut base) = self.base_config()? {
            // Every field a flag sets was checked above; the rest must match the file or preset.
            base.epochs = saved.epochs;
            base.batch_size = saved.batch_size;
            base.data.limit = saved.data.limit;
            base.optimizer_g.lr = saved.optimizer_g.lr;
            base.optimizer_d.lr = saved.optimizer_d.lr;
            base.seed = saved.seed;
            base.gan_loop = saved.gan_loop;
            base.track = saved.track.clone();
            base.ema = saved.ema;
            base.image_size = saved.image_size;
            // `auto` became the crop the run chose; one named in the file must be that one.
            if base.data.crop == Crop::Rule(CropRule::Auto)
                || base.data.crop.same_as(&saved.data.crop)
            {
                base.data.crop = saved.data.crop;
            }
            let flag = match (&self.config, self.preset) {
                (Some(path), _) => format!("--config {}", path.display()),
                (None, preset) => format!("--preset {}", preset.unwrap_or_default().name()),
            };
            let (a, b) = (serde_json::to_value(&base)?, serde_json::to_value(saved)?);
            if let Some((field, given, then)) = first_difference(&a, &b, "") {
                bail!(
                    "{flag} does not match this run's config ({field} is {given} there, {then} in the run): \
                     a resumed run keeps the settings it started with; drop {flag}, or start a new run with another --out"
                );
            }
        }
        let mut cfg = saved.clone();
        if let Some(epochs) = self.epochs {
            if epochs < manifest.epoch {
                bail!(
                    "--epochs {epochs} is fewer than the {} epochs this run has reached; pass at least {}",
                    manifest.epoch,
                    manifest.epoch
                );
            }
            cfg.epochs = epochs;
        }
        Ok(cfg)
    }
}

/// Refuses a flag whose value differs from the one the run started with.
fn same<T: PartialEq + std::fmt::Display>(
    flag: &str,
    given: Option<T>,
    then: Option<T>,
) -> Result<()> {
    match given {
        Some(v) if Some(&v) != then.as_ref() => bail!(
            "{flag} {v} does not match this run's {}: a resumed run keeps the settings it started with \
             (only --epochs may be raised); drop {flag}, or start a new run with another --out",
            then.map_or("setting (none)".to_string(), |t| format!("{t}"))
        ),
        _ => Ok(()),
    }
}

/// The first leaf where two JSON values differ: its dotted path and both values.
fn first_difference(a: &Value, b: &Value, path: &str) -> Option<(String, Value, Value)> {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys = x.keys().chain(y.keys().filter(|k| !x.contains_key(*k)));
            keys.into_iter().find_map(|k| {
                let (u, v) = (
                    x.get(k).unwrap_or(&Value::Null),
                    y.get(k).unwrap_or(&Value::Null),
                );
                let sub = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                first_difference(u, v, &sub)
            })
        }
        _ if a == b => None,
        _ => Some((path.to_string(), a.clone(), b.clone())),
    }
}

/// What a run will do, settled before a byte is decoded.
struct Plan {
    cfg: TrainingConfig,
    data: PathBuf,
    split: Option<Split>,
    partition: Option<PathBuf>,
    start: Start,
}

fn plan(args: &TrainArgs, run: &RunDir) -> Result<Plan> {
    if !args.resume {
        let cfg = args.resolve_config()?;
        let weights = train::StartWeights::read(&args.init_from)?;
        weights.check::<backend::Cpu>(&cfg, &Default::default())?;
        return Ok(Plan {
            cfg,
            data: args
                .data
                .clone()
                .expect("clap requires --data without --resume"),
            split: args.split,
            partition: args.partition.clone(),
            start: Start::Fresh(weights),
        });
    }
    let (manifest, records) = run.load_checkpoint()?;
    let cfg = args.resume_config(&manifest)?;
    let saved = &manifest.data;
    same(
        "--split",
        args.split.map(|s| s.name()),
        saved.split.map(|s| s.name()),
    )?;
    Ok(Plan {
        cfg,
        data: args.data.clone().unwrap_or_else(|| saved.dir.clone()),
        split: args.split.or(saved.split),
        partition: args.partition.clone().or_else(|| saved.partition.clone()),
        start: Start::Resume(manifest, records),
    })
}

pub(super) fn train_command(args: TrainArgs) -> Result<ExitCode> {
    let run = RunDir(args.out.clone());
    // Everything that can be checked is checked before a byte is decoded.
    let Plan {
        cfg,
        data,
        split,
        partition,
        start,
    } = plan(&args, &run)?;
    if let Start::Fresh(w) = &start {
        for (name, net) in [("G", &w.g), ("D", &w.d)] {
            if let Some(net) = net {
                eprintln!("{name} starts from {}", net.origin);
            }
        }
    }
    let resolved = backend::resolve(args.backend)?;
    let (images, split) = ImageList::select(
        &data,
        split,
        Split::Train,
        partition.as_deref(),
        cfg.data.limit,
    )?;
    // The run records the crop `auto` chose, so a resume, `eval` and the cache use the same.
    let prep = Preprocess::resolve(&cfg, &images);
    let mut cfg = cfg;
    cfg.data.crop = prep.crop;
    data::check_crop_fits(&images, &prep)?;
    match &start {
        Start::Fresh(..) => run.prepare_new(args.force)?,
        Start::Resume(..) => run.prepare_dirs()?,
    }
    let faces = decode(&args, &run, &images, &prep, &resolved)?;
    let fingerprint = DataFingerprint {
        dir: std::path::absolute(&data).unwrap_or_else(|_| data.clone()),
        files: images.len(),
        faces: faces.len(),
        list_crc32: data::list_crc32(&images),
        split: Some(split),
        partition,
    };
    if let Start::Resume(manifest, _) = &start {
        check_same_images(&manifest.data, &fingerprint, &data)?;
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
        return Ok(ExitCode::from(super::INTERRUPTED));
    }
    Ok(ExitCode::SUCCESS)
}

/// The faces, from the cache when it holds them for exactly these images and settings.
fn decode(
    args: &TrainArgs,
    run: &RunDir,
    images: &ImageList,
    prep: &Preprocess,
    resolved: &Resolved,
) -> Result<Faces> {
    let t = std::time::Instant::now();
    let cache_dir = match (&args.cache_dir, args.no_cache) {
        (_, true) => None,
        (Some(dir), false) => Some(dir.clone()),
        (None, false) => Some(run.cache()),
    };
    let (faces, cached) = cache::load_or_decode(cache_dir.as_deref(), images, prep)?;
    eprintln!(
        "{} {} faces from {} files in {:.1}s ({} skipped); training on {}",
        if cached { "read cached" } else { "decoded" },
        faces.len(),
        images.len(),
        t.elapsed().as_secs_f64(),
        faces.skipped.len(),
        resolved.name()
    );
    Ok(faces)
}

/// The folder may have moved; the images in it must be the same.
fn check_same_images(then: &DataFingerprint, now: &DataFingerprint, data: &Path) -> Result<()> {
    let same = |d: &DataFingerprint| (d.files, d.faces, d.list_crc32);
    if same(then) != same(now) {
        bail!(
            "the images changed since this run started ({} files, {} usable then; {} files, {} usable now in {}): \
             an exact resume needs the same images; point --data at the original folder",
            then.files,
            then.faces,
            now.files,
            now.faces,
            data.display()
        );
    }
    Ok(())
}
