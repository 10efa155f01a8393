//! Checkpoints that survive crashes: burn named-MessagePack records (`.mpk`) plus a manifest.
//!
//! A checkpoint is four records (both networks, both optimisers; five with G's moving
//! average) in `checkpoints/`, named by
//! step, and `checkpoint.json`, which lists them with their sizes and CRC-32s. Every file is
//! written to a temporary name, flushed and renamed; the manifest goes last, so whatever
//! moment a crash, a kill or a full disk strikes, `checkpoint.json` names a complete set.
//! Older records are deleted only after the new manifest is in place.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use super::atomic::write_atomic;
use super::board::BoardPosition;
use crate::config::{Split, TrainingConfig};

pub const MANIFEST: &str = "checkpoint.json";
pub const RECORDS: &str = "checkpoints";
/// 2: the networks' blocks are lists (`blocks.0.deconv`), so one layout serves every image
/// size; format 1 named each layer (`deconv1`).
const FORMAT: u32 = 2;

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct FileEntry {
    /// Path relative to the run folder.
    pub name: String,
    pub bytes: u64,
    pub crc32: u32,
}

/// Which images a run trains on, so a resume can refuse a data folder that changed.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct DataFingerprint {
    pub dir: PathBuf,
    pub files: usize,
    pub faces: usize,
    /// CRC-32 of the sorted file list (paths relative to `dir`).
    pub list_crc32: u32,
    /// The part of CelebA's partition trained on; absent in runs from before splits existed,
    /// which used every image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split: Option<Split>,
    /// The partition file named by `--partition`, if one was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<PathBuf>,
}

impl DataFingerprint {
    /// The folder may have moved; the images in it must be the same.
    pub fn check_same_images(&self, now: &DataFingerprint, data: &Path) -> Result<()> {
        let same = |d: &DataFingerprint| (d.files, d.faces, d.list_crc32);
        if same(self) != same(now) {
            bail!(
                "the images changed since this run started ({} files, {} usable then; {} files, {} usable now in {}): \
                 an exact resume needs the same images; point --data at the original folder",
                self.files,
                self.faces,
                now.files,
                now.faces,
                data.display()
            );
        }
        Ok(())
    }
}

#[derive(Serialize, Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: u32,
    /// Batches trained so far; the run continues with step `step + 1`.
    pub step: usize,
    /// The epoch that step belongs to, and how many of its batches are done.
    pub epoch: usize,
    pub batches_done: usize,
    pub data: DataFingerprint,
    pub config: TrainingConfig,
    pub files: Vec<FileEntry>,
    /// How far the TensorBoard event file had reached; a resume cuts it back there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tensorboard: Option<BoardPosition>,
}

/// The record files of one checkpoint, as bytes, under their roles.
pub struct Records {
    pub g: Vec<u8>,
    pub d: Vec<u8>,
    pub g_optim: Vec<u8>,
    pub d_optim: Vec<u8>,
    /// The moving average of G, when the config keeps one.
    pub g_ema: Option<Vec<u8>>,
}

/// The run folder's files, in one place.
#[derive(Clone, Debug)]
pub struct RunDir(pub PathBuf);

impl RunDir {
    pub fn config(&self) -> PathBuf {
        self.0.join("config.json")
    }
    pub fn generator(&self) -> PathBuf {
        self.0.join("g.mpk")
    }
    pub fn discriminator(&self) -> PathBuf {
        self.0.join("d.mpk")
    }
    pub fn losses(&self) -> PathBuf {
        self.0.join("losses.jsonl")
    }
    pub fn manifest(&self) -> PathBuf {
        self.0.join(MANIFEST)
    }
    pub fn records(&self) -> PathBuf {
        self.0.join(RECORDS)
    }
    pub fn metrics(&self) -> PathBuf {
        self.0.join("metrics.jsonl")
    }
    /// The moving average of the generator's weights (config `ema`).
    pub fn ema_generator(&self) -> PathBuf {
        self.0.join("g_ema.mpk")
    }
    /// The generator with the best tracked score so far.
    pub fn best_generator(&self) -> PathBuf {
        self.0.join("g_best.mpk")
    }
    /// Decoded faces from earlier runs; kept by --force, which restarts the run, not the data.
    pub fn cache(&self) -> PathBuf {
        self.0.join("cache")
    }
    pub fn samples(&self) -> PathBuf {
        self.0.join("samples")
    }
    pub fn preview(&self, epoch: usize) -> PathBuf {
        self.samples().join(format!("epoch_{epoch:04}.png"))
    }

    /// TensorBoard's event files in the run folder.
    pub fn event_files(&self) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&self.0)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("events.out.tfevents."))
            })
            .collect();
        files.sort();
        files
    }

    pub fn holds_run(&self) -> Option<PathBuf> {
        [
            self.manifest(),
            self.config(),
            self.generator(),
            self.losses(),
        ]
        .into_iter()
        .find(|p| p.exists())
    }

    /// Makes the folder for a new run, refusing one that already holds a run unless
    /// `force`, and proves it writable before hours of training depend on it.
    pub fn prepare_new(&self, force: bool) -> Result<()> {
        if let Some(existing) = self.holds_run() {
            if !force {
                bail!(
                    "{} already holds a run ({} exists)\n  continue it with --resume, choose another folder with --out, or pass --force to overwrite it",
                    self.0.display(),
                    existing.display()
                );
            }
            for f in [
                self.manifest(),
                self.config(),
                self.losses(),
                self.generator(),
                self.discriminator(),
                self.metrics(),
                self.best_generator(),
                self.ema_generator(),
            ] {
                let _ = std::fs::remove_file(f);
            }
            let _ = std::fs::remove_dir_all(self.records());
            let _ = std::fs::remove_dir_all(self.samples());
            for events in self.event_files() {
                let _ = std::fs::remove_file(events);
            }
        }
        self.prepare_dirs()
    }

    pub fn prepare_dirs(&self) -> Result<()> {
        for dir in [self.samples(), self.records()] {
            std::fs::create_dir_all(&dir).with_context(|| {
                format!(
                    "cannot create {}; choose another run folder with --out",
                    dir.display()
                )
            })?;
        }
        let probe = self.0.join(".write-test");
        std::fs::write(&probe, b"ok").with_context(|| {
            format!(
                "run folder {} is not writable; choose another with --out",
                self.0.display()
            )
        })?;
        let _ = std::fs::remove_file(probe);
        Ok(())
    }

    /// Commits a checkpoint: records first, then the manifest (the commit point), then the
    /// convenience copies `g.mpk`/`d.mpk`, then removal of records no manifest names.
    pub fn commit(&self, mut manifest: Manifest, records: &Records) -> Result<()> {
        let prefix = format!("{:09}", manifest.step);
        manifest.files.clear();
        let roles = [
            ("g", Some(&records.g)),
            ("d", Some(&records.d)),
            ("g_optim", Some(&records.g_optim)),
            ("d_optim", Some(&records.d_optim)),
            ("g_ema", records.g_ema.as_ref()),
        ];
        for (role, bytes) in roles.into_iter().filter_map(|(r, b)| Some((r, b?))) {
            let name = format!("{RECORDS}/{prefix}-{role}.mpk");
            write_atomic(&self.0.join(&name), bytes)?;
            manifest.files.push(FileEntry {
                name,
                bytes: bytes.len() as u64,
                crc32: crc32fast::hash(bytes),
            });
        }
        let json = serde_json::to_string_pretty(&manifest).expect("manifest serialises") + "\n";
        write_atomic(&self.manifest(), json.as_bytes())?;
        self.write_copies(records)?;
        self.remove_stale(&manifest);
        Ok(())
    }

    /// `g.mpk`, `d.mpk` and `g_ema.mpk`: the latest checkpoint's networks where `sample` and
    /// `eval` look for them. Written after the manifest, so a resume writes them again from
    /// the checkpoint it loads: a kill between the two would otherwise leave them one
    /// checkpoint behind, for good if that was the run's last. Only files whose contents
    /// differ are rewritten.
    pub fn write_copies(&self, records: &Records) -> Result<()> {
        let copies = [
            (self.generator(), Some(&records.g)),
            (self.discriminator(), Some(&records.d)),
            (self.ema_generator(), records.g_ema.as_ref()),
        ];
        for (path, bytes) in copies.iter().filter_map(|(p, b)| Some((p, (*b)?))) {
            if std::fs::read(path).ok().as_ref() != Some(bytes) {
                write_atomic(path, bytes)?;
            }
        }
        Ok(())
    }

    /// Deletes records the manifest does not name, and temporary files a kill left behind.
    pub fn remove_stale(&self, manifest: &Manifest) {
        let keep: Vec<PathBuf> = manifest
            .files
            .iter()
            .map(|f| self.0.join(&f.name))
            .collect();
        for dir in [self.records(), self.0.clone(), self.samples()] {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in entries.flatten() {
                let path = e.path();
                let name = e.file_name().to_string_lossy().into_owned();
                let stale_record = dir == self.records() && !keep.contains(&path);
                if stale_record || name.ends_with(".partial") {
                    let _ = std::fs::remove_file(path);
                }
            }
        }
    }

    /// Reads and verifies the manifest and every record it names.
    pub fn load_checkpoint(&self) -> Result<(Manifest, Records)> {
        let path = self.manifest();
        if !path.exists() {
            bail!(
                "{} holds no checkpoint ({} is missing): nothing to resume; start a new run without --resume",
                self.0.display(),
                path.display()
            );
        }
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let manifest: Manifest = serde_json::from_str(&text).with_context(|| {
            format!(
                "{} is damaged or not a dcgan checkpoint manifest",
                path.display()
            )
        })?;
        if manifest.format == 1 {
            bail!(
                "{} was written by an earlier dcgan (checkpoint format 1, its layers named one by one); \
                 this dcgan reads format {FORMAT}: finish the run with the version that started it, \
                 or start a new run",
                path.display()
            );
        }
        if manifest.format != FORMAT {
            bail!(
                "{} has format {}, this dcgan reads format {FORMAT}",
                path.display(),
                manifest.format
            );
        }
        let entry = |role: &str| {
            manifest
                .files
                .iter()
                .find(|f| f.name.ends_with(&format!("-{role}.mpk")))
        };
        let read = |role: &str| -> Result<Vec<u8>> {
            let entry = entry(role)
                .with_context(|| format!("{} lists no {role} record", path.display()))?;
            let file = self.0.join(&entry.name);
            let bytes = std::fs::read(&file).with_context(|| {
                format!(
                    "checkpoint file {} is missing or unreadable",
                    file.display()
                )
            })?;
            if bytes.len() as u64 != entry.bytes {
                bail!(
                    "checkpoint file {} is truncated or replaced: {} bytes, the manifest says {}",
                    file.display(),
                    bytes.len(),
                    entry.bytes
                );
            }
            if crc32fast::hash(&bytes) != entry.crc32 {
                bail!(
                    "checkpoint file {} is corrupt: its CRC-32 does not match the manifest",
                    file.display()
                );
            }
            Ok(bytes)
        };
        let records = Records {
            g: read("g")?,
            d: read("d")?,
            g_optim: read("g_optim")?,
            d_optim: read("d_optim")?,
            g_ema: entry("g_ema").map(|_| read("g_ema")).transpose()?,
        };
        Ok((manifest, records))
    }
}

impl Manifest {
    pub fn new(
        step: usize,
        batches_per_epoch: usize,
        data: DataFingerprint,
        config: TrainingConfig,
    ) -> Self {
        Self {
            format: FORMAT,
            step,
            epoch: step.saturating_sub(1) / batches_per_epoch + 1,
            batches_done: if step == 0 {
                0
            } else {
                (step - 1) % batches_per_epoch + 1
            },
            data,
            config,
            files: Vec::new(),
            tensorboard: None,
        }
    }
}
