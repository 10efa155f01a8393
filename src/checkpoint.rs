//! Checkpoints that survive crashes: burn named-MessagePack records (`.mpk`) plus a manifest.
//!
//! A checkpoint is four records (both networks, both optimisers; five with G's moving
//! average) in `checkpoints/`, named by
//! step, and `checkpoint.json`, which lists them with their sizes and CRC-32s. Every file is
//! written to a temporary name, flushed and renamed; the manifest goes last, so whatever
//! moment a crash, a kill or a full disk strikes, `checkpoint.json` names a complete set.
//! Older records are deleted only after the new manifest is in place.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use burn::module::{Module, ModuleVisitor, Param};
use burn::record::{FullPrecisionSettings, NamedMpkBytesRecorder, Record, Recorder};
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use crate::config::TrainingConfig;

type Mpk = NamedMpkBytesRecorder<FullPrecisionSettings>;

pub const MANIFEST: &str = "checkpoint.json";
pub const RECORDS: &str = "checkpoints";
const FORMAT: u32 = 1;

/// Writes `bytes` to `path` atomically (temporary file, fsync, rename, fsync of the folder).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_with(path, |f| f.write_all(bytes))
}

/// Like [`write_atomic`], for contents streamed by `fill` rather than held in one buffer.
pub fn write_atomic_with(
    path: &Path,
    fill: impl FnOnce(&mut BufWriter<File>) -> std::io::Result<()>,
) -> Result<()> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = path.with_file_name(format!(".{name}.partial"));
    let write = || -> std::io::Result<()> {
        let mut f = BufWriter::new(File::create(&tmp)?);
        fill(&mut f)?;
        let f = f.into_inner().map_err(|e| e.into_error())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            File::open(dir)?.sync_all()?;
        }
        Ok(())
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        anyhow::anyhow!("cannot write {}: {e}", path.display())
    })
}

pub fn record_bytes<B: Backend, R: Record<B>>(record: R) -> Result<Vec<u8>> {
    Mpk::default()
        .record(record, ())
        .context("cannot serialise record")
}

pub fn save_module<B: Backend, M: Module<B>>(module: M, path: &Path) -> Result<()> {
    write_atomic(path, &record_bytes::<B, _>(module.into_record())?)
}

fn decode<B: Backend, R: Record<B>>(bytes: Vec<u8>, path: &Path, device: &B::Device) -> Result<R> {
    Mpk::default().load(bytes, device).map_err(|e| {
        anyhow::anyhow!(
            "{} is not a dcgan record of this network ({e}); pass a file written by `dcgan train`",
            path.display()
        )
    })
}

/// Loads a module record into `module`, which fixes the architecture; a record of another
/// shape is an error naming the file.
pub fn load_module<B: Backend, M: Module<B>>(
    module: M,
    path: &Path,
    device: &B::Device,
) -> Result<M> {
    let bytes = std::fs::read(path)
        .with_context(|| format!("cannot read checkpoint {}", path.display()))?;
    module_from_bytes(module, bytes, path, device)
}

fn module_from_bytes<B: Backend, M: Module<B>>(
    module: M,
    bytes: Vec<u8>,
    path: &Path,
    device: &B::Device,
) -> Result<M> {
    let record = decode(bytes, path, device)?;
    let expected = shapes(&module);
    let loaded = module.load_record(record);
    let found = shapes(&loaded);
    if found != expected {
        bail!(
            "{} holds a network of another architecture than its config describes \
             (parameter shapes {found:?}, expected {expected:?}); pass the config it was trained with (--config)",
            path.display()
        );
    }
    Ok(loaded)
}

/// burn loads a record of the wrong shape without complaint and fails later, deep inside a
/// convolution; comparing every parameter's shape turns that into an error naming the file.
fn shapes<B: Backend, M: Module<B>>(module: &M) -> Vec<Vec<usize>> {
    struct Shapes(Vec<Vec<usize>>);
    impl<B: Backend> ModuleVisitor<B> for Shapes {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            self.0.push(param.shape().dims::<D>().to_vec());
        }
    }
    let mut v = Shapes(Vec::new());
    module.visit(&mut v);
    v.0
}

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
        write_atomic(&self.generator(), &records.g)?;
        write_atomic(&self.discriminator(), &records.d)?;
        if let Some(ema) = &records.g_ema {
            write_atomic(&self.ema_generator(), ema)?;
        }
        self.remove_stale(&manifest);
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
        }
    }
}

/// Decodes a module from checkpoint bytes, checking its architecture.
pub fn module_from_record_bytes<B: Backend, M: Module<B>>(
    module: M,
    bytes: &[u8],
    name: &Path,
    device: &B::Device,
) -> Result<M> {
    module_from_bytes(module, bytes.to_vec(), name, device)
}

/// Decodes any record (an optimiser's state) from checkpoint bytes.
pub fn record_from_bytes<B: Backend, R: Record<B>>(
    bytes: &[u8],
    name: &Path,
    device: &B::Device,
) -> Result<R> {
    decode(bytes.to_vec(), name, device)
}
