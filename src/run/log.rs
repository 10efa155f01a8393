//! The run's JSON-lines logs: `losses.jsonl` (one row per batch) and `metrics.jsonl`.

use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::atomic::write_atomic;

/// One row of `losses.jsonl`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct LossRow {
    pub epoch: usize,
    pub step: usize,
    pub d_loss_real: f32,
    pub d_loss_fake: f32,
    pub d_loss: f32,
    pub g_loss: f32,
    /// Mean D(x) on the real batch, before D's update.
    pub d_real_mean: f32,
    /// Mean D(G(z)) on the fake batch, before D's update.
    pub d_fake_mean: f32,
    pub images_per_sec: f32,
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

/// Keeps the rows of a JSON-lines log up to `step` (a killed run may have written past its
/// last checkpoint, or half a line) and returns them; the file is rewritten atomically.
pub fn truncate_jsonl<R: serde::de::DeserializeOwned>(
    path: &Path,
    step: usize,
    step_of: impl Fn(&R) -> usize,
) -> Result<Vec<R>> {
    if step == 0 {
        let _ = std::fs::remove_file(path);
        return Ok(Vec::new());
    }
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut kept = String::new();
    let mut rows = Vec::new();
    for line in text.lines() {
        match serde_json::from_str::<R>(line) {
            Ok(r) if step_of(&r) <= step => {
                kept.push_str(line);
                kept.push('\n');
                rows.push(r);
            }
            _ => break,
        }
    }
    if path.exists() {
        write_atomic(path, kept.as_bytes())?;
    }
    Ok(rows)
}

/// Reads `losses.jsonl`, naming the line that does not parse.
pub fn read_losses(path: &Path) -> Result<Vec<LossRow>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read {}; train first, or pass --log", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l)
                .with_context(|| format!("{} line {} is not a loss row", path.display(), i + 1))
        })
        .collect()
}
