//! Weights from elsewhere: a state dict file, read by its extension.

use std::path::Path;

use anyhow::{bail, Result};

use super::{pytorch, safetensors};
use crate::nn::torch_names::NamedTensor;

/// The float tensors of `path`: safetensors (`.safetensors`, as `dcgan export` writes) or a
/// PyTorch pickle (`.pt`, `.pth`, `.bin`).
pub fn read_state_dict(path: &Path) -> Result<Vec<NamedTensor>> {
    if !path.exists() {
        bail!("{} does not exist", path.display());
    }
    match path.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "safetensors" => safetensors::read_state_dict(path),
        "pt" | "pth" | "bin" => pytorch::read_state_dict(path),
        _ => bail!(
            "{}: not a state dict file dcgan reads; give a .safetensors file (`dcgan export`) \
             or a PyTorch `.pt`/`.pth` state dict",
            path.display()
        ),
    }
}

/// Whether `path` names a state dict (rather than one of dcgan's `.mpk` checkpoints).
pub fn is_state_dict(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| ["safetensors", "pt", "pth", "bin"].contains(&e))
}
