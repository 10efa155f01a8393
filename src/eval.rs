//! `dcgan eval`: how close a generator's faces are to real ones (sliced Wasserstein distance),
//! and whether it copies its training faces.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use serde::Serialize;

use crate::checkpoint::Manifest;
use crate::data;
use crate::layers::LayerBackend;
use crate::sample;
use crate::swd::{self, SwdConfig};

pub struct EvalArgs {
    pub ckpt: PathBuf,
    pub config: Option<PathBuf>,
    /// Real faces the generator never trained on (a validation or holdout folder).
    pub real: PathBuf,
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

/// Loads up to `n` faces of a folder, cropped and resized as training does.
fn faces(dir: &Path, n: Option<usize>, cfg: &crate::config::TrainingConfig) -> Result<Vec<u8>> {
    let mut files = data::find_images(dir)?;
    if let Some(n) = n {
        files.truncate(n);
    }
    Ok(data::load_faces(&files, cfg.data.crop, cfg.data.filter)?
        .pixels()
        .to_vec())
}

pub fn run<B: LayerBackend>(args: &EvalArgs, device: &B::Device) -> Result<EvalReport> {
    let cfg = sample::config_for(&args.ckpt, args.config.as_deref())?;
    let g = sample::load_generator::<B>(&cfg, &args.ckpt, device)?;
    let real = faces(&args.real, Some(args.n), &cfg)?;
    let n = real.len() / data::FACE_BYTES;
    if n < 64 {
        bail!(
            "{} holds only {n} usable faces; SWD needs at least 64 (a few hundred or more for stable figures)",
            args.real.display()
        );
    }
    let generated = sample::generate(&cfg, &g, n, args.seed, device).concat();
    let report = swd::swd(&generated, &real, &SwdConfig::default(), args.seed);

    let train_dir = args.train.clone().or_else(|| {
        let manifest = args.ckpt.with_file_name(crate::checkpoint::MANIFEST);
        let text = std::fs::read_to_string(manifest).ok()?;
        serde_json::from_str::<Manifest>(&text)
            .ok()
            .map(|m| m.data.dir)
            .filter(|d| d.is_dir())
    });
    let copy = match train_dir {
        Some(dir) => {
            let train = faces(&dir, cfg.data.limit, &cfg)?;
            let c = swd::copy_check(&generated, &train, &real);
            Some(CopySummary {
                train_faces: train.len() / data::FACE_BYTES,
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

fn median(v: &[f32]) -> f32 {
    let mut s = v.to_vec();
    s.sort_unstable_by(f32::total_cmp);
    s.get(s.len() / 2).copied().unwrap_or(f32::NAN)
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

/// One row of `metrics.jsonl`.
#[derive(Serialize, serde::Deserialize, Debug, Clone, PartialEq)]
pub struct MetricRow {
    pub epoch: usize,
    pub step: usize,
    pub swd_levels: Vec<(usize, f64)>,
    pub swd_mean: f64,
    /// This epoch's generator became `g_best.mpk`.
    pub best: bool,
    /// The same score for the moving average of G (`g_ema.mpk`), when the run keeps one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ema_swd_mean: Option<f64>,
}

/// Scores the generator every few epochs during training against fixed real faces, with
/// fixed noise, so successive scores differ only because G changed.
pub struct Tracker {
    every: usize,
    real: Vec<u8>,
    faces: usize,
    best: f64,
}

impl Tracker {
    /// `None` unless the config asks for tracking. On resume, the rows past the checkpoint
    /// are dropped and the best score so far is read back.
    pub fn new(
        cfg: &crate::config::TrainingConfig,
        faces: &data::Faces,
        run: &crate::checkpoint::RunDir,
        step: usize,
    ) -> Result<Option<Self>> {
        let Some(t) = &cfg.track else {
            return Ok(None);
        };
        let n = t.faces.min(faces.len());
        let rows = crate::train::truncate_jsonl::<MetricRow>(&run.metrics(), step, |r| r.step)?;
        Ok(Some(Self {
            every: t.every_epochs,
            real: faces.pixels()[..n * data::FACE_BYTES].to_vec(),
            faces: n,
            best: rows
                .iter()
                .map(|r| r.swd_mean)
                .fold(f64::INFINITY, f64::min),
        }))
    }

    /// After epoch `epoch`: scores G if this epoch is due, appends the row to
    /// `metrics.jsonl` and writes `g_best.mpk` when the score is the best so far. The moving
    /// average `ema`, if any, is scored on the same noise and faces, beside it.
    #[allow(clippy::too_many_arguments)]
    pub fn after_epoch<B: LayerBackend>(
        &mut self,
        epoch: usize,
        step: usize,
        g: &crate::model::Generator<B>,
        ema: Option<&crate::model::Generator<B>>,
        cfg: &crate::config::TrainingConfig,
        run: &crate::checkpoint::RunDir,
        device: &B::Device,
    ) -> Result<Option<MetricRow>> {
        if !epoch.is_multiple_of(self.every) {
            return Ok(None);
        }
        let seed = crate::train::stream_seed(cfg.seed, 0, crate::train::Stream::Track);
        let score = |g: &crate::model::Generator<B>| {
            let generated = sample::generate(cfg, g, self.faces, seed, device).concat();
            swd::swd(&generated, &self.real, &SwdConfig::default(), seed)
        };
        let r = score(g);
        let ema_swd_mean = ema.map(|e| score(e).mean);
        let best = r.mean < self.best;
        if best {
            self.best = r.mean;
            crate::checkpoint::save_module(g.clone(), &run.best_generator())?;
        }
        let row = MetricRow {
            epoch,
            step,
            swd_levels: r.levels,
            swd_mean: r.mean,
            best,
            ema_swd_mean,
        };
        let mut line = serde_json::to_string(&row)?;
        line.push('\n');
        use std::io::Write;
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(run.metrics())
            .and_then(|mut f| f.write_all(line.as_bytes()))
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", run.metrics().display()))?;
        Ok(Some(row))
    }
}
