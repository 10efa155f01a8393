//! burn named-MessagePack records (`.mpk`) in full precision, with shape checks on load.

use std::path::Path;

use anyhow::{bail, Context, Result};
use burn::module::{Module, ModuleVisitor, Param};
use burn::record::{FullPrecisionSettings, NamedMpkBytesRecorder, Record, Recorder};
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

use super::atomic::write_atomic;

type Mpk = NamedMpkBytesRecorder<FullPrecisionSettings>;

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
