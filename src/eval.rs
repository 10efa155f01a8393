//! `dcgan eval`: how close a generator's faces are to real ones (sliced Wasserstein distance),
//! and whether it copies its training faces.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use serde::Serialize;

use crate::config::TrainingConfig;
use crate::data::{self, ImageList, Split};
use crate::metrics::{self as swd, SwdConfig};
use crate::nn::LayerBackend;
use crate::run::Manifest;
use crate::sample;

pub struct EvalSettings {
    pub ckpt: PathBuf,
    pub config: Option<PathBuf>,
    /// Real faces the generator never trained on (a validation or holdout folder or zip).
    pub real: PathBuf,
    /// The split of `real` to score against, where CelebA's partition file is found.
    pub split: Option<Split>,
    pub partition: Option<PathBuf>,
    /// Training faces for the copy check; default: the run's data folder.
    pub train: Option<PathBuf>,
    pub n: usize,
    pub seed: u64,
}

#[derive(Serialize, Debug)]
pub struct EvalReport {
    pub faces: usize,
    /// SWD x 1e3 per pyramid level (64, 32, 16 pixels), as Karras et al. print it.
    pub swd_levels: Vec<(usize, f64)>,
    pub swd_mean: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub copy: Option<CopySummary>,
}

#[derive(Serialize, Debug)]
pub struct CopySummary {
    pub train_faces: usize,
    /// Median RMS pixel distance (0..255) from a generated face to its nearest training face.
    pub generated_median: f32,
    /// The same for unseen real faces: the yardstick.
    pub real_median: f32,
    /// Generated faces nearer a training face than 95% of unseen real faces are.
    pub fraction_closer: f64,
}

/// Loads up to `n` faces of a folder or zip, cropped and resized as training does.
fn faces(
    path: &Path,
    split: (Option<Split>, Split),
    partition: Option<&Path>,
    n: Option<usize>,
    cfg: &TrainingConfig,
) -> Result<Vec<u8>> {
    let (images, _) = ImageList::select(path, split.0, split.1, partition, n)?;
    let prep = data::Preprocess::resolve(cfg, &images);
    Ok(data::load_faces(&images, &prep)?.pixels().to_vec())
}

pub fn run<B: LayerBackend>(args: &EvalSettings, device: &B::Device) -> Result<EvalReport> {
    let cfg = sample::config_for(&args.ckpt, args.config.as_deref())?;
    let g = sample::load_generator::<B>(&cfg, &args.ckpt, device)?;
    let split = (args.split, Split::Valid);
    let real = faces(
        &args.real,
        split,
        args.partition.as_deref(),
        Some(args.n),
        &cfg,
    )?;
    let face = data::face_bytes(cfg.image_size);
    let n = real.len() / face;
    if n < 64 {
        bail!(
            "{} holds only {n} usable faces; SWD needs at least 64 (a few hundred or more for stable figures)",
            args.real.display()
        );
    }
    let generated = sample::generate(&cfg, &g, n, args.seed, device).concat();
    let report = swd::swd(
        &generated,
        &real,
        cfg.image_size,
        &SwdConfig::default(),
        args.seed,
    );

    // The run's own training images, as it selected them, unless --train names others.
    let trained = std::fs::read_to_string(args.ckpt.with_file_name(crate::run::MANIFEST))
        .ok()
        .and_then(|text| serde_json::from_str::<Manifest>(&text).ok())
        .map(|m| m.data);
    let train = match (&args.train, &trained) {
        (Some(dir), _) => Some((dir.clone(), None, None)),
        (None, Some(d)) if d.dir.exists() => Some((d.dir.clone(), d.split, d.partition.clone())),
        (None, _) => None,
    };
    let copy = match train {
        Some((dir, split, partition)) => {
            let split = (split, Split::Train);
            let train = faces(&dir, split, partition.as_deref(), cfg.data.limit, &cfg)?;
            let c = swd::copy_check(&generated, &train, &real, cfg.image_size);
            Some(CopySummary {
                train_faces: train.len() / face,
                generated_median: median(&c.nearest),
                real_median: median(&c.holdout_nearest),
                fraction_closer: c.fraction_closer,
            })
        }
        None => {
            eprintln!("note: no training folder (pass --train DIR) so no copy check");
            None
        }
    };
    Ok(EvalReport {
        faces: n,
        swd_levels: report.levels,
        swd_mean: report.mean,
        copy,
    })
}

/// The median distance, in the f32 the report carries.
fn median(v: &[f32]) -> f32 {
    let v: Vec<f64> = v.iter().map(|&x| x as f64).collect();
    crate::metrics::median(&v) as f32
}

pub fn print(r: &EvalReport) {
    let levels: Vec<String> = r
        .swd_levels
        .iter()
        .map(|(res, d)| format!("{res}px {d:.2}"))
        .collect();
    eprintln!(
        "SWD x1e3 over {} faces: {}  mean {:.2}  (lower is closer to the real faces)",
        r.faces,
        levels.join("  "),
        r.swd_mean
    );
    if let Some(c) = &r.copy {
        eprintln!(
            "copy check against {} training faces: median distance to the nearest one {:.1} for generated faces, {:.1} for unseen real faces; {:.1}% of generated faces are nearer than 95% of real ones (about 5% means no copying)",
            c.train_faces,
            c.generated_median,
            c.real_median,
            100.0 * c.fraction_closer
        );
    }
}
