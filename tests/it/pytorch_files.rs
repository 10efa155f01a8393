//! PyTorch's own `.pt` files, written by `torch.save` (`tests/reference/pytorch_files.py`),
//! read through burn's importer: the values of both of its formats, and the refusals.

use std::path::{Path, PathBuf};

use crate::common::{dcgan, p, small_train_args};
use dcgan::run::read_state_dict;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/pytorch")
        .join(name)
}

/// Both formats give the float tensors exactly as float32 (the float64 weight rounded once),
/// under their state-dict names, without the int64 `num_batches_tracked`.
#[test]
fn pt_files_read_exactly_in_both_formats() {
    let expected = read_state_dict(&fixture("d_first_layers.safetensors")).unwrap();
    assert_eq!(expected.len(), 6);
    for name in ["d_first_layers.pt", "d_first_layers_legacy.pt"] {
        let got = read_state_dict(&fixture(name)).unwrap();
        let names: Vec<&str> = got.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "0.bias",
                "0.weight",
                "3.bias",
                "3.running_mean",
                "3.running_var",
                "3.weight"
            ],
            "{name}"
        );
        for t in &got {
            let want = expected.iter().find(|e| e.name == t.name).unwrap();
            assert_eq!(t.shape, want.shape, "{name}: {}", t.name);
            assert_eq!(t.data, want.data, "{name}: {}", t.name);
        }
    }
}

/// A whole model pickled as an object is refused with the fix: save its state dict.
#[test]
fn a_pickled_model_object_is_refused_with_the_fix() {
    let e = read_state_dict(&fixture("model_object.pt"))
        .expect_err("a model object is no state dict")
        .to_string();
    assert!(
        e.contains("model_object.pt") && e.contains("torch.save(model.state_dict()"),
        "{e}"
    );
}

/// `train --init-from` a PyTorch file recognises D by its first layer and stops at the first
/// tensor the file lacks, naming it and the file, before decoding or writing anything.
#[test]
fn init_from_a_partial_pt_file_names_the_first_missing_tensor() {
    let tmp = std::env::temp_dir().join(format!("dcgan-pt-{}", std::process::id()));
    let pt = fixture("d_first_layers.pt");
    let out = dcgan(&small_train_args(&tmp, "1", &["--init-from", p(&pt)]));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("d_first_layers.pt") && err.contains("1.weight"),
        "{err}"
    );
    assert!(!tmp.exists(), "nothing written for a refused start");
    let _ = std::fs::remove_dir_all(&tmp);
}
