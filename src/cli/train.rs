//! `dcgan train`: its flags, the config they resolve to, what a resume may and may not
//! change, and the run from choosing the data to the last checkpoint.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};

use super::train_args::{self, TrainArgs};
use crate::backend::{self, Autodiff, Resolved};
use crate::config::{Preset, TrainingConfig};
use crate::data::{self, cache, Faces, ImageList, Preprocess, Split};
use crate::run::{DataFingerprint, Manifest, RunDir};
use crate::train::{self, interrupt, Outcome, Start};
use crate::with_backend;

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
        train_args::apply_all(self, cfg);
    }

    /// The checkpoint's config with --epochs applied, after checking that every other flag
    /// given says what the run started with: the same command line with --resume appended
    /// continues the run, and a changed setting is refused rather than silently ignored.
    fn resume_config(&self, manifest: &Manifest) -> Result<TrainingConfig> {
        let saved = &manifest.config;
        if let Some((flag, given, then)) = train_args::first_changed(self, saved) {
            same(flag, Some(given), then)?;
        }
        if let Some(mut base) = self.base_config()? {
            // Every field a flag sets was checked above; the rest must match the file or preset.
            base.epochs = saved.epochs;
            train_args::copy_flag_fields(&mut base, saved);
            let flag = match (&self.config, self.preset) {
                (Some(path), _) => format!("--config {}", path.display()),
                (None, preset) => format!("--preset {}", preset.unwrap_or_default().name()),
            };
            if let Some((field, given, then)) = base.first_difference(saved) {
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
        manifest.data.check_same_images(&fingerprint, &data)?;
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
