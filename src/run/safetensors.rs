//! The safetensors file format (what PyTorch's `safetensors.torch.save_file` writes): an
//! 8-byte little-endian header length, a JSON header naming each tensor's dtype, shape and byte
//! range, then the raw little-endian data. Written by hand: the format is that small, and the
//! crates for it would add to a build that is already long.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::atomic::write_atomic;
use crate::nn::torch_names::NamedTensor;

#[derive(Serialize, Deserialize)]
struct Entry {
    dtype: String,
    shape: Vec<usize>,
    data_offsets: [usize; 2],
}

/// Writes `tensors` as float32, plus a zero int64 `num_batches_tracked` beside each BatchNorm's
/// `running_mean`: PyTorch's `BatchNorm2d` keeps that counter in its state dict, and a strict
/// `load_state_dict` refuses a dict without it.
pub fn write_state_dict(path: &Path, tensors: &[NamedTensor]) -> Result<()> {
    let mut header = BTreeMap::new();
    let mut data = Vec::new();
    let mut add = |name: String, dtype: &str, shape: Vec<usize>, bytes: &[u8]| {
        let start = data.len();
        data.extend_from_slice(bytes);
        let entry = Entry {
            dtype: dtype.into(),
            shape,
            data_offsets: [start, data.len()],
        };
        header.insert(name, serde_json::to_value(entry).expect("a plain struct"));
    };
    for t in tensors {
        let bytes: Vec<u8> = t.data.iter().flat_map(|v| v.to_le_bytes()).collect();
        add(t.name.clone(), "F32", t.shape.clone(), &bytes);
        if let Some(layer) = t.name.strip_suffix(".running_mean") {
            add(
                format!("{layer}.num_batches_tracked"),
                "I64",
                vec![],
                &0i64.to_le_bytes(),
            );
        }
    }
    header.insert(
        "__metadata__".into(),
        serde_json::json!({ "format": "pt", "written_by": "dcgan" }),
    );
    let mut json = serde_json::to_vec(&header)?;
    // The format pads the header with spaces to a multiple of 8 bytes.
    json.resize(json.len().next_multiple_of(8), b' ');
    let mut bytes = (json.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(&json);
    bytes.extend_from_slice(&data);
    write_atomic(path, &bytes)
}

/// Reads every float32 tensor of a safetensors file; int64 counters are skipped, any other
/// dtype is an error naming the tensor.
pub fn read_state_dict(path: &Path) -> Result<Vec<NamedTensor>> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let bad = |why: &str| anyhow::anyhow!("{} is not a safetensors file: {why}", path.display());
    let len = bytes
        .get(..8)
        .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")) as usize)
        .ok_or_else(|| bad("shorter than its 8-byte header length"))?;
    let json = bytes
        .get(8..8usize.saturating_add(len))
        .ok_or_else(|| bad("the header runs past the end of the file"))?;
    let header: BTreeMap<String, Value> =
        serde_json::from_slice(json).map_err(|e| bad(&format!("bad JSON header ({e})")))?;
    let data = &bytes[8 + len..];
    let mut out = Vec::new();
    for (name, entry) in header.into_iter().filter(|(n, _)| n != "__metadata__") {
        let e: Entry = serde_json::from_value(entry).map_err(|e| bad(&format!("{name}: {e}")))?;
        let [start, end] = e.data_offsets;
        let raw = data
            .get(start..end)
            .ok_or_else(|| bad(&format!("tensor {name} lies past the end of the file")))?;
        match e.dtype.as_str() {
            "F32" if raw.len() == 4 * e.shape.iter().product::<usize>() => out.push(NamedTensor {
                name,
                shape: e.shape,
                data: raw
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
                    .collect(),
            }),
            "F32" => bail!("{}: tensor {name} holds {} bytes, not {:?} floats", path.display(), raw.len(), e.shape),
            "I64" => {}
            other => bail!(
                "{}: tensor {name} is {other}; dcgan reads float32 weights (in PyTorch: model.float() before saving)",
                path.display()
            ),
        }
    }
    Ok(out)
}
