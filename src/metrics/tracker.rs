//! Scoring G during training (`--swd-every`): SWD on fixed noise against fixed real faces,
//! `metrics.jsonl` and the best generator so far.

use anyhow::Result;

use super::swd::{swd, SwdConfig};
use crate::config::TrainingConfig;
use crate::data::Faces;
use crate::nn::{Generator, LayerBackend};
use crate::rng::{stream_seed, Stream};
use crate::run::{self, truncate_jsonl, MetricRow, RunDir};
use crate::sample;

/// Scores the generator every few epochs during training against fixed real faces, with
/// fixed noise, so successive scores differ only because G changed.
pub struct Tracker {
    every: usize,
    real: Vec<u8>,
    side: usize,
    faces: usize,
    best: f64,
}

impl Tracker {
    /// `None` unless the config asks for tracking. On resume, the rows past the checkpoint
    /// are dropped and the best score so far is read back.
    pub fn new(
        cfg: &TrainingConfig,
        faces: &Faces,
        run: &RunDir,
        step: usize,
    ) -> Result<Option<Self>> {
        let Some(t) = &cfg.track else {
            return Ok(None);
        };
        let n = t.faces.min(faces.len());
        let rows = truncate_jsonl::<MetricRow>(&run.metrics(), step, |r| r.step)?;
        Ok(Some(Self {
            every: t.every_epochs,
            real: faces.pixels()[..n * faces.face(0).len()].to_vec(),
            side: faces.side(),
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
        g: &Generator<B>,
        ema: Option<&Generator<B>>,
        cfg: &TrainingConfig,
        run: &RunDir,
        device: &B::Device,
    ) -> Result<Option<MetricRow>> {
        if !epoch.is_multiple_of(self.every) {
            return Ok(None);
        }
        let seed = stream_seed(cfg.seed, 0, Stream::Track);
        let score = |g: &Generator<B>| {
            let generated = sample::generate(cfg, g, self.faces, seed, device).concat();
            swd(
                &generated,
                &self.real,
                self.side,
                &SwdConfig::default(),
                seed,
            )
        };
        let r = score(g);
        let ema_swd_mean = ema.map(|e| score(e).mean);
        let best = r.mean < self.best;
        if best {
            self.best = r.mean;
            run::save_module(g.clone(), &run.best_generator())?;
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
