//! Checkpoints: burn named-MessagePack records (`.mpk`), written whole or not at all.
//!
//! Each file is written to a temporary name in the same folder, flushed to disk and renamed
//! over the old one, so a crash or a full disk never leaves a torn checkpoint behind.

use std::fs::File;
use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use burn::module::{Module, ModuleVisitor, Param};
use burn::record::{FullPrecisionSettings, NamedMpkBytesRecorder, Recorder};
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

type Mpk = NamedMpkBytesRecorder<FullPrecisionSettings>;

/// Writes `bytes` to `path` atomically (temporary file, fsync, rename).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = path.with_file_name(format!(".{name}.partial"));
    let write = || -> std::io::Result<()> {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        anyhow::anyhow!("cannot write {}: {e}", path.display())
    })
}

pub fn record_bytes<B: Backend, M: Module<B>>(module: M) -> Result<Vec<u8>> {
    Mpk::default()
        .record(module.into_record(), ())
        .context("cannot serialise model record")
}

pub fn save_module<B: Backend, M: Module<B>>(module: M, path: &Path) -> Result<()> {
    write_atomic(path, &record_bytes(module)?)
}

/// Loads a record saved by [`save_module`] into `module`, which fixes the architecture.
pub fn load_module<B: Backend, M: Module<B>>(
    module: M,
    path: &Path,
    device: &B::Device,
) -> Result<M> {
    let bytes = std::fs::read(path)
        .with_context(|| format!("cannot read checkpoint {}", path.display()))?;
    let record = Mpk::default().load(bytes, device).map_err(|e| {
        anyhow::anyhow!(
            "{} is not a dcgan checkpoint of this network ({e}); pass the g.mpk written by `dcgan train`",
            path.display()
        )
    })?;
    let expected = shapes(&module);
    let loaded = module.load_record(record);
    let found = shapes(&loaded);
    if found != expected {
        anyhow::bail!(
            "{} holds a network of another shape than its config.json describes \
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
