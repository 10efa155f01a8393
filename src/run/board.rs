//! The run's TensorBoard log: per step the losses, D's outputs and speed, per epoch the
//! preview grid, per scored epoch the SWD. `tensorboard --logdir RUN` reads it as it grows.
//!
//! A checkpoint records how far the event file had reached; a resumed run cuts it back there,
//! as it does `losses.jsonl`, so every step shows once however often a run was killed.

use std::io;
use std::path::Path;

use anyhow::Result;
use serde::{Deserialize, Serialize};

use super::log::{LossRow, MetricRow};
use super::tensorboard::EventWriter;

/// Where a checkpoint's event file ends: its name in the run folder and its length.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct BoardPosition {
    pub file: String,
    pub bytes: u64,
}

/// Reads one value of a `losses.jsonl` row.
pub type RowField = fn(&LossRow) -> f32;

/// The tag of each per-step value in the event file, and the field of `losses.jsonl` it
/// holds.
pub const STEP_TAGS: [(&str, RowField); 7] = [
    ("loss/d", |r| r.d_loss),
    ("loss/g", |r| r.g_loss),
    ("loss/d_real", |r| r.d_loss_real),
    ("loss/d_fake", |r| r.d_loss_fake),
    ("d/real", |r| r.d_real_mean),
    ("d/fake", |r| r.d_fake_mean),
    ("speed/images_per_sec", |r| r.images_per_sec),
];

/// The tag of the per-epoch preview grid.
pub const PREVIEW_TAG: &str = "preview";

pub struct Board(EventWriter);

impl Board {
    /// A new event file in `dir`, or the checkpoint's cut back to where it was.
    pub fn open(dir: &Path, at: Option<&BoardPosition>) -> Result<Self> {
        Ok(Self(match at {
            Some(p) => EventWriter::resume(&dir.join(&p.file), p.bytes)?,
            None => EventWriter::create(dir)?,
        }))
    }

    pub fn losses(&mut self, row: &LossRow) -> io::Result<()> {
        let values = STEP_TAGS.map(|(tag, field)| (tag, field(row)));
        self.0.scalars(row.step as u64, &values)
    }

    /// The preview grid of the epoch that ended at `step`, as PNG bytes.
    pub fn preview(&mut self, step: usize, png: &[u8], width: u32, height: u32) -> io::Result<()> {
        self.0.image(step as u64, PREVIEW_TAG, png, width, height)
    }

    pub fn metrics(&mut self, row: &MetricRow) -> io::Result<()> {
        let levels: Vec<(String, f32)> = row
            .swd_levels
            .iter()
            .map(|(size, v)| (format!("swd/level_{size}"), *v as f32))
            .collect();
        let mut values: Vec<(&str, f32)> = vec![("swd/mean", row.swd_mean as f32)];
        values.extend(levels.iter().map(|(t, v)| (t.as_str(), *v)));
        if let Some(ema) = row.ema_swd_mean {
            values.push(("swd/ema_mean", ema as f32));
        }
        self.0.scalars(row.step as u64, &values)
    }

    /// Everything written so far on disk; where a checkpoint says the file ends.
    pub fn position(&mut self) -> io::Result<BoardPosition> {
        Ok(BoardPosition {
            file: self.0.file_name(),
            bytes: self.0.sync()?,
        })
    }
}
