//! Finding the pictures in a folder, and reading one picture file's bytes.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

const EXTENSIONS: [&str; 3] = ["jpg", "jpeg", "png"];
/// Larger than any picture file a face set holds: refused before it is read or decoded.
pub(super) const MAX_DECODE_BYTES: u64 = 512 << 20;

/// Every `*.jpg`, `*.jpeg` and `*.png` (any case) under `dir`, recursively, sorted by path, so
/// Kaggle's nested `img_align_celeba/img_align_celeba/` works and runs are repeatable.
pub fn find_images(dir: &Path) -> Result<Vec<PathBuf>> {
    if !dir.exists() {
        bail!(
            "data folder {} does not exist\n  point --data at the folder that holds the CelebA JPEGs (img_align_celeba)",
            dir.display()
        );
    }
    if !dir.is_dir() {
        bail!("--data {} is a file, not a folder of images", dir.display());
    }
    let mut files = Vec::new();
    let mut seen = HashSet::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        // Canonical paths break symlink loops: a folder is listed once however it is reached.
        match d.canonicalize() {
            Ok(c) => {
                if !seen.insert(c) {
                    continue;
                }
            }
            Err(e) => {
                eprintln!("warning: skipping {}: {e}", d.display());
                continue;
            }
        }
        let entries = match std::fs::read_dir(&d) {
            Ok(e) => e,
            Err(e) if d == dir => bail!("cannot list data folder {}: {e}", dir.display()),
            Err(e) => {
                eprintln!("warning: cannot list {}: {e}; skipping it", d.display());
                continue;
            }
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if has_image_extension(&path) {
                files.push(path);
            }
        }
    }
    if files.is_empty() {
        bail!(
            "no images in {}: looked for *.jpg, *.jpeg and *.png (any case) in it and its subfolders",
            dir.display()
        );
    }
    files.sort();
    Ok(files)
}

pub(super) fn has_image_extension(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| EXTENSIONS.iter().any(|x| e.eq_ignore_ascii_case(x)))
}

/// An image file's bytes, refusing one too large to be a face photo before reading it.
pub(super) fn read_image_file(path: &Path) -> Result<Vec<u8>, String> {
    let size = std::fs::metadata(path)
        .map_err(|e| format!("cannot open: {e}"))?
        .len();
    if size > MAX_DECODE_BYTES {
        return Err(format!("file is {size} bytes, too large for a face photo"));
    }
    std::fs::read(path).map_err(|e| format!("cannot read: {e}"))
}
