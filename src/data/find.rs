use std::collections::HashSet;
use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

use super::crop::Preprocess;
use super::source::ImageList;

const EXTENSIONS: [&str; 3] = ["jpg", "jpeg", "png"];

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

/// Refuses a crop that none of the first few readable images can give before any decoding:
/// their headers say how large the pictures are.
pub fn check_crop_fits(images: &ImageList, prep: &Preprocess) -> Result<()> {
    let sizes: Vec<(usize, (u32, u32))> = (0..images.len())
        .filter_map(|i| Some((i, images.dimensions(i).ok()?)))
        .take(5)
        .collect();
    let fits = |(w, h): (u32, u32)| prep.crop.box_for(w, h, prep.size);
    if let Some((first, size)) = sizes.first() {
        if sizes.iter().all(|(_, s)| fits(*s).is_err()) {
            let why = fits(*size).unwrap_err();
            bail!(
                "the crop ({}) does not fit the pictures: {}: {why}\n  \
                 choose another with --crop (center or none), or set data.crop in the config",
                prep.crop.describe(),
                images.label(*first)
            );
        }
    }
    Ok(())
}

/// CRC-32 of the image list, relative to its folder or archive: identifies the data a run
/// trained on, wherever the folder was moved.
pub fn list_crc32(images: &ImageList) -> u32 {
    let mut h = crc32fast::Hasher::new();
    for rel in images.relative_names() {
        h.update(rel.as_os_str().as_encoded_bytes());
        h.update(b"\0");
    }
    h.finalize()
}
