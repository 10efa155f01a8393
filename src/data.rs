//! Finding, decoding and batching the faces.
//!
//! Every face is decoded once, cropped to the face box, resized to 64x64 and kept as RGB u8
//! in one contiguous buffer (12,288 bytes a face); floats exist only one batch at a time.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use std::io::Cursor;

use image::{ImageFormat, ImageReader, Limits, RgbImage};
use rayon::prelude::*;

use crate::config::{CropBox, Normalization, ResizeFilter};
use crate::progress;
use crate::resize::Resampler;

pub const SIZE: usize = 64;
pub const FACE_BYTES: usize = SIZE * SIZE * 3;
const EXTENSIONS: [&str; 3] = ["jpg", "jpeg", "png"];
/// Larger than any photo a face set holds; a header claiming more is refused before decoding.
const MAX_SIDE: u32 = 16_384;
const MAX_DECODE_BYTES: u64 = 512 << 20;
const MAX_WARNINGS: usize = 10;

/// Decoded faces, `len()` of them, each `FACE_BYTES` of row-major RGB.
pub struct Faces {
    pixels: Vec<u8>,
    /// Files that could not be used, with the reason.
    pub skipped: Vec<(PathBuf, String)>,
}

impl Faces {
    pub fn from_pixels(pixels: Vec<u8>) -> Self {
        assert_eq!(pixels.len() % FACE_BYTES, 0);
        Self {
            pixels,
            skipped: Vec::new(),
        }
    }
    pub fn len(&self) -> usize {
        self.pixels.len() / FACE_BYTES
    }
    pub fn is_empty(&self) -> bool {
        self.pixels.is_empty()
    }
    pub fn face(&self, i: usize) -> &[u8] {
        &self.pixels[i * FACE_BYTES..(i + 1) * FACE_BYTES]
    }
    pub fn pixels(&self) -> &[u8] {
        &self.pixels
    }
}

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

fn has_image_extension(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| EXTENSIONS.iter().any(|x| e.eq_ignore_ascii_case(x)))
}

/// Refuses a crop box that lies outside the images before any decoding: the first few
/// readable files' headers say how large the photos are.
pub fn check_crop_fits(files: &[PathBuf], crop: CropBox) -> Result<()> {
    let sizes: Vec<(&PathBuf, (u32, u32))> = files
        .iter()
        .filter_map(|f| {
            let reader = ImageReader::open(f).ok()?.with_guessed_format().ok()?;
            Some((f, reader.into_dimensions().ok()?))
        })
        .take(5)
        .collect();
    if let Some((file, (w, h))) = sizes.first() {
        if sizes
            .iter()
            .all(|(_, (w, h))| crop.right > *w || crop.bottom > *h)
        {
            bail!(
                "the crop box (left {}, top {}, right {}, bottom {}) lies outside the images: {} is {w}x{h}\n  \
                 set data.crop in the config to a box inside the photos (CelebA's are 178x218)",
                crop.left,
                crop.top,
                crop.right,
                crop.bottom,
                file.display()
            );
        }
    }
    Ok(())
}

/// CRC-32 of the file list, relative to `dir`: identifies the data a run trained on.
pub fn list_crc32(dir: &Path, files: &[PathBuf]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    for f in files {
        let rel = f.strip_prefix(dir).unwrap_or(f);
        h.update(rel.as_os_str().as_encoded_bytes());
        h.update(b"\0");
    }
    h.finalize()
}

/// Decodes `files` on all cores. Unusable files are skipped with a warning (the first ten
/// named, then a count); it is an error only if no file at all is usable.
pub fn load_faces(files: &[PathBuf], crop: CropBox, filter: ResizeFilter) -> Result<Faces> {
    let bar = progress::bar(files.len() as u64, "decoding");
    // One buffer for all faces, filled in place, then compacted over the failures: peak
    // memory stays at one u8 copy of the set.
    let mut pixels = vec![0u8; files.len() * FACE_BYTES];
    let resampler = Resampler::new(crop, filter, SIZE, SIZE);
    let results: Vec<Result<(), String>> = pixels
        .par_chunks_mut(FACE_BYTES)
        .zip(files.par_iter())
        .map(|(out, path)| {
            let r = decode_face(path, crop, &resampler, out);
            bar.inc(1);
            r
        })
        .collect();
    bar.finish_and_clear();

    let mut skipped = Vec::new();
    let mut kept = 0;
    for (i, r) in results.into_iter().enumerate() {
        match r {
            Ok(()) => {
                if kept != i {
                    pixels.copy_within(i * FACE_BYTES..(i + 1) * FACE_BYTES, kept * FACE_BYTES);
                }
                kept += 1;
            }
            Err(reason) => {
                if skipped.len() < MAX_WARNINGS {
                    eprintln!("warning: skipping {}: {reason}", files[i].display());
                }
                skipped.push((files[i].clone(), reason));
            }
        }
    }
    if skipped.len() > MAX_WARNINGS {
        eprintln!(
            "warning: ... and {} more files skipped",
            skipped.len() - MAX_WARNINGS
        );
    }
    pixels.truncate(kept * FACE_BYTES);
    pixels.shrink_to_fit();
    if kept == 0 {
        let dir = files
            .first()
            .and_then(|f| f.parent())
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        bail!(
            "none of the {} image files under {dir} could be used (see the warnings above); \
             dcgan needs RGB or grayscale JPEG/PNG photos at least as large as the crop box",
            files.len()
        );
    }
    Ok(Faces { pixels, skipped })
}

/// One file to one 64x64 RGB face, or a one-line reason it cannot be used.
pub fn load_face(path: &Path, crop: CropBox, filter: ResizeFilter) -> Result<Vec<u8>, String> {
    let mut face = vec![0u8; FACE_BYTES];
    decode_face(
        path,
        crop,
        &Resampler::new(crop, filter, SIZE, SIZE),
        &mut face,
    )?;
    Ok(face)
}

/// [`load_face`] into `out`, with the resize coefficients computed once per load.
fn decode_face(
    path: &Path,
    crop: CropBox,
    resampler: &Resampler,
    out: &mut [u8],
) -> Result<(), String> {
    let size = std::fs::metadata(path)
        .map_err(|e| format!("cannot open: {e}"))?
        .len();
    if size == 0 {
        return Err("empty file (0 bytes)".into());
    }
    if size > MAX_DECODE_BYTES {
        return Err(format!("file is {size} bytes, too large for a face photo"));
    }
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read: {e}"))?;
    // Judge by contents, not by name: a PNG named .jpg is fine, text named .jpg is not.
    let format = image::guess_format(&bytes)
        .ok()
        .filter(|f| matches!(f, ImageFormat::Jpeg | ImageFormat::Png))
        .ok_or("not a JPEG or PNG image (unrecognised contents)")?;
    // A truncated JPEG decodes "successfully" with its missing rows filled grey; the
    // end-of-image marker (FF D9, which never occurs inside entropy-coded data) tells.
    let tail = &bytes[bytes.len().saturating_sub(1024)..];
    if format == ImageFormat::Jpeg && !tail.windows(2).any(|w| w == [0xFF, 0xD9]) {
        return Err("truncated JPEG (no end-of-image marker); re-download or delete it".into());
    }
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_DECODE_BYTES);
    reader.limits(limits);
    let img = reader.decode().map_err(|e| format!("cannot decode: {e}"))?;
    resize_into(&img.into_rgb8(), crop, resampler, out)
}

/// Pillow's `img.crop(box).resize((64, 64))`, pixel for pixel (see `resize.rs`).
pub fn face_from_rgb(
    img: &RgbImage,
    crop: CropBox,
    filter: ResizeFilter,
) -> Result<Vec<u8>, String> {
    let mut face = vec![0u8; FACE_BYTES];
    resize_into(
        img,
        crop,
        &Resampler::new(crop, filter, SIZE, SIZE),
        &mut face,
    )?;
    Ok(face)
}

fn resize_into(
    img: &RgbImage,
    crop: CropBox,
    resampler: &Resampler,
    out: &mut [u8],
) -> Result<(), String> {
    if img.width() < crop.right || img.height() < crop.bottom {
        return Err(format!(
            "image is {}x{}, smaller than the crop box (right {}, bottom {})",
            img.width(),
            img.height(),
            crop.right,
            crop.bottom
        ));
    }
    resampler.apply(
        img.as_raw(),
        img.width() as usize,
        img.height() as usize,
        out,
    );
    Ok(())
}

/// Turns u8 faces into the float NCHW batch the networks eat.
#[derive(Clone, Copy, Debug)]
pub struct FaceBatcher {
    pub normalization: Normalization,
}

impl FaceBatcher {
    pub fn new(normalization: Normalization) -> Self {
        Self { normalization }
    }

    /// Normalised planar floats for the faces at `indices`: [N, 3, 64, 64] row-major.
    pub fn floats(&self, faces: &Faces, indices: &[usize]) -> Vec<f32> {
        let plane = SIZE * SIZE;
        let mut out = vec![0f32; indices.len() * FACE_BYTES];
        out.par_chunks_mut(FACE_BYTES)
            .zip(indices.par_iter())
            .for_each(|(dst, &i)| {
                let src = faces.face(i);
                let (scale, offset) = match self.normalization {
                    Normalization::Unit => (1.0 / 255.0, 0.0),
                    Normalization::Symmetric => (1.0 / 127.5, -1.0),
                    Normalization::Notebook => {
                        let min = *src.iter().min().unwrap() as f32;
                        // An all-white image has 255 - min = 0; map it to zeros, not NaN.
                        let range = (255.0 - min).max(1.0);
                        (1.0 / range, -min / range)
                    }
                };
                for (p, rgb) in src.chunks_exact(3).enumerate() {
                    for c in 0..3 {
                        dst[c * plane + p] = rgb[c] as f32 * scale + offset;
                    }
                }
            });
        out
    }

    pub fn batch<B: Backend>(
        &self,
        faces: &Faces,
        indices: &[usize],
        device: &B::Device,
    ) -> Tensor<B, 4> {
        let data = TensorData::new(self.floats(faces, indices), [indices.len(), 3, SIZE, SIZE]);
        Tensor::from_data(data, device)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn box_120() -> CropBox {
        CropBox {
            left: 30,
            top: 55,
            right: 150,
            bottom: 175,
        }
    }

    #[test]
    fn crop_takes_the_face_box_and_resize_halves_blocks() {
        // A 178x218 image whose face box holds a 2x2 checkerboard of 60-pixel squares, and
        // whose outside is pure blue: any offset in the crop would let blue in.
        let img = RgbImage::from_fn(178, 218, |x, y| {
            let inside = (30..150).contains(&x) && (55..175).contains(&y);
            if !inside {
                return image::Rgb([0, 0, 255]);
            }
            let light = ((x - 30) / 60 + (y - 55) / 60) % 2 == 0;
            if light {
                image::Rgb([200, 100, 50])
            } else {
                image::Rgb([20, 40, 60])
            }
        });
        let face = face_from_rgb(&img, box_120(), ResizeFilter::Bicubic).unwrap();
        assert_eq!(face.len(), FACE_BYTES);
        let px = |x: usize, y: usize| &face[(y * SIZE + x) * 3..(y * SIZE + x) * 3 + 3];
        // Corners come from the box's corners; no blue from outside it.
        assert_eq!(px(0, 0), [200, 100, 50]);
        assert_eq!(px(63, 0), [20, 40, 60]);
        assert_eq!(px(0, 63), [20, 40, 60]);
        assert_eq!(px(63, 63), [200, 100, 50]);
        assert_eq!(px(16, 16), [200, 100, 50]);
        assert_eq!(px(48, 16), [20, 40, 60]);
        // The checker edge falls between output pixels 31 and 32; the widened bicubic kernel
        // (3.75 source pixels) blends only the pixels next to it.
        assert_eq!(px(29, 10), [200, 100, 50]);
        assert_eq!(px(34, 10), [20, 40, 60]);
        assert!(px(31, 10)[0] > px(32, 10)[0]);
    }

    #[test]
    fn image_smaller_than_box_is_refused() {
        let img = RgbImage::new(100, 100);
        let err = face_from_rgb(&img, box_120(), ResizeFilter::Bicubic).unwrap_err();
        assert!(err.contains("100x100") && err.contains("crop box"), "{err}");
    }

    #[test]
    fn normalisations() {
        let mut face = vec![100u8; FACE_BYTES];
        face[0] = 55; // min of the image (red channel of pixel 0)
        face[FACE_BYTES - 1] = 255; // blue of the last pixel
        let faces = Faces::from_pixels(face);
        let plane = SIZE * SIZE;
        let f = |n| FaceBatcher::new(n).floats(&faces, &[0]);

        let unit = f(Normalization::Unit);
        assert!((unit[0] - 55.0 / 255.0).abs() < 1e-6 && unit[3 * plane - 1] == 1.0);

        let sym = f(Normalization::Symmetric);
        assert!((sym[0] - (55.0 / 127.5 - 1.0)).abs() < 1e-6 && sym[3 * plane - 1] == 1.0);
        assert!((sym[1] - (100.0 / 127.5 - 1.0)).abs() < 1e-6);

        let nb = f(Normalization::Notebook);
        assert_eq!(nb[0], 0.0);
        assert!((nb[1] - 45.0 / 200.0).abs() < 1e-6);
        assert!((nb[3 * plane - 1] - 1.0).abs() < 1e-6);

        // Planar layout: green of pixel 0 sits one plane after red of pixel 0.
        assert!((unit[plane] - 100.0 / 255.0).abs() < 1e-6);

        let white = Faces::from_pixels(vec![255u8; FACE_BYTES]);
        let v = FaceBatcher::new(Normalization::Notebook).floats(&white, &[0]);
        assert!(v.iter().all(|x| *x == 0.0));
    }
}
