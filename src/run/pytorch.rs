//! PyTorch state dicts (`torch.save(model.state_dict(), "g.pt")`), read with burn's own
//! importer (`burn-store`): the zip format of PyTorch 1.6 and later, and the older one. Its
//! unpickler only rebuilds tensors and plain containers; it runs no code from the file.

use std::path::Path;

use anyhow::{anyhow, bail, Result};
use burn::tensor::DType;
use burn_store::pytorch::PytorchReader;

use crate::nn::torch_names::NamedTensor;

/// Reads every floating-point tensor of a PyTorch state dict as float32 (float64 and half
/// precision weights are converted); integer tensors (BatchNorm's `num_batches_tracked`)
/// are skipped. Nested dicts give dotted names (`{"g": ..., "d": ...}` -> `g.0.weight`).
/// Sorted by name, so errors and conversions do not depend on the file's order.
pub fn read_state_dict(path: &Path) -> Result<Vec<NamedTensor>> {
    let reader = PytorchReader::new(path).map_err(|e| {
        anyhow!(
            "{}: cannot read it as a PyTorch state dict: {e}\n  save the weights, not the \
             model object: `torch.save(model.state_dict(), \"{}\")`",
            path.display(),
            path.file_name()
                .map_or("g.pt".into(), |n| n.to_string_lossy())
        )
    })?;
    let mut out = Vec::new();
    for (name, snapshot) in reader.into_tensors() {
        match snapshot.dtype {
            DType::F64 | DType::F32 | DType::F16 | DType::BF16 => {}
            other if other.is_float() => bail!(
                "{}: tensor {name} is {other:?}; dcgan reads float32, float64 or half-precision weights",
                path.display()
            ),
            _ => continue,
        }
        let data = snapshot
            .to_data()
            .map_err(|e| anyhow!("{}: tensor {name}: {e:?}", path.display()))?;
        let data = data
            .convert::<f32>()
            .to_vec::<f32>()
            .map_err(|e| anyhow!("{}: tensor {name}: {e:?}", path.display()))?;
        out.push(NamedTensor {
            name,
            shape: snapshot.shape.to_vec(),
            data,
        });
    }
    if out.is_empty() {
        bail!(
            "{}: holds no floating-point tensors; is it a state dict (`model.state_dict()`)?",
            path.display()
        );
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}
