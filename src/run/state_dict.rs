//! Weights from elsewhere: a state dict file, read by its extension.

use std::path::Path;

use anyhow::{bail, Result};

use super::{pytorch, safetensors};
use crate::nn::torch_names::NamedTensor;

/// The readers of the state-dict files dcgan takes, by extension.
enum Format {
    Safetensors,
    Pytorch,
}

fn format(path: &Path) -> Option<Format> {
    match path.extension().and_then(|e| e.to_str())? {
        "safetensors" => Some(Format::Safetensors),
        "pt" | "pth" | "bin" => Some(Format::Pytorch),
        _ => None,
    }
}

/// The float tensors of `path`: safetensors (`.safetensors`, as `dcgan export` writes) or a
/// PyTorch pickle (`.pt`, `.pth`, `.bin`).
pub fn read_state_dict(path: &Path) -> Result<Vec<NamedTensor>> {
    if !path.exists() {
        bail!("{} does not exist", path.display());
    }
    match format(path) {
        Some(Format::Safetensors) => safetensors::read_state_dict(path),
        Some(Format::Pytorch) => pytorch::read_state_dict(path),
        None => bail!(
            "{}: not a state dict file dcgan reads; give a .safetensors file (`dcgan export`) \
             or a PyTorch `.pt`/`.pth` state dict",
            path.display()
        ),
    }
}

/// Whether `path` names a state dict (rather than one of dcgan's `.mpk` checkpoints).
pub fn is_state_dict(path: &Path) -> bool {
    format(path).is_some()
}
