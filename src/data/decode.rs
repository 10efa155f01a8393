//! Photos to faces: decoding JPEG/PNG bytes of any colour type to RGB, then cutting and
//! resizing each as the run's [`Preprocess`] says.

use std::io::Cursor;
use std::path::{Path, PathBuf};

use super::source::ImageList;

use anyhow::{bail, Result};
use image::{ImageFormat, ImageReader, Limits, RgbImage};
use rayon::prelude::*;

use super::crop::Preprocess;
use super::find::{read_image_file, MAX_DECODE_BYTES};
use super::resize::Resampler;
use super::Faces;
use crate::progress;

/// Larger than any photo a face set holds; a header claiming more is refused before decoding.
const MAX_SIDE: u32 = 16_384;
const MAX_WARNINGS: usize = 10;

/// Decodes `images` on all cores. Unusable files are skipped with a warning (the first ten
/// named, then a count); it is an error only if no file at all is usable.
pub fn load_faces(images: &ImageList, prep: &Preprocess) -> Result<Faces> {
    let bar = progress::bar(images.len() as u64, "decoding");
    // One buffer for all faces, filled in place, then compacted over the failures: peak
    // memory stays at one u8 copy of the set.
    let face_bytes = prep.face_bytes();
    let mut pixels = vec![0u8; images.len() * face_bytes];
    let resizer = Resizer::new(prep);
    let results: Vec<Result<(), String>> = pixels
        .par_chunks_mut(face_bytes)
        .enumerate()
        .map(|(i, out)| {
            let r = images
                .read(i)
                .and_then(|bytes| decode_face(bytes, &resizer, out));
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
                    pixels.copy_within(i * face_bytes..(i + 1) * face_bytes, kept * face_bytes);
                }
                kept += 1;
            }
            Err(reason) => {
                if skipped.len() < MAX_WARNINGS {
                    eprintln!("warning: skipping {}: {reason}", images.label(i));
                }
                skipped.push((PathBuf::from(images.label(i)), reason));
            }
        }
    }
    if skipped.len() > MAX_WARNINGS {
        eprintln!(
            "warning: ... and {} more files skipped",
            skipped.len() - MAX_WARNINGS
        );
    }
    pixels.truncate(kept * face_bytes);
    pixels.shrink_to_fit();
    if kept == 0 {
        bail!(
            "none of the {} image files under {} could be used (see the warnings above); \
             dcgan needs JPEG/PNG pictures large enough for the crop ({})",
            images.len(),
            images.root().display(),
            prep.crop.describe()
        );
    }
    let mut faces = Faces::from_pixels(pixels, prep.size);
    faces.skipped = skipped;
    Ok(faces)
}

/// One file to one RGB face, or a one-line reason it cannot be used.
pub fn load_face(path: &Path, prep: &Preprocess) -> Result<Vec<u8>, String> {
    let mut face = vec![0u8; prep.face_bytes()];
    decode_face(read_image_file(path)?, &Resizer::new(prep), &mut face)?;
    Ok(face)
}

/// Cuts and resizes a decoded picture: one precomputed [`Resampler`] when every picture is cut
/// with the same box, else one per picture (its coefficients take microseconds).
struct Resizer {
    prep: Preprocess,
    fixed: Option<Resampler>,
}

impl Resizer {
    fn new(prep: &Preprocess) -> Self {
        let fixed = prep
            .fixed_box()
            .map(|b| Resampler::new(b, prep.filter, prep.size, prep.size));
        Self { prep: *prep, fixed }
    }

    fn apply(&self, img: &RgbImage, out: &mut [u8]) -> Result<(), String> {
        let (w, h, size) = (img.width(), img.height(), self.prep.size);
        let cut = self.prep.crop.box_for(w, h, size)?;
        let own;
        let resampler = match &self.fixed {
            Some(r) => r,
            None => {
                own = Resampler::new(cut, self.prep.filter, size, size);
                &own
            }
        };
        resampler.apply(img.as_raw(), w as usize, h as usize, out);
        Ok(())
    }
}

/// One image's bytes to one face in `out`, with the resize coefficients computed once per load.
fn decode_face(bytes: Vec<u8>, resizer: &Resizer, out: &mut [u8]) -> Result<(), String> {
    if bytes.is_empty() {
        return Err("empty file (0 bytes)".into());
    }
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
    // Grayscale, palette, alpha and 16-bit pictures all become 8-bit RGB (alpha dropped).
    resizer.apply(&img.into_rgb8(), out)
}

/// Pillow's `img.crop(box).resize((size, size))`, pixel for pixel (see `resize.rs`).
pub fn face_from_rgb(img: &RgbImage, prep: &Preprocess) -> Result<Vec<u8>, String> {
    let mut face = vec![0u8; prep.face_bytes()];
    Resizer::new(prep).apply(img, &mut face)?;
    Ok(face)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::config::{Crop, CropRule, ResizeFilter};

    const SIZE: usize = 64;

    fn box_120() -> Preprocess {
        Preprocess {
            crop: Crop::Rule(CropRule::Celeba),
            filter: ResizeFilter::Bicubic,
            size: SIZE,
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
        let face = face_from_rgb(&img, &box_120()).unwrap();
        assert_eq!(face.len(), SIZE * SIZE * 3);
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
        let err = face_from_rgb(&img, &box_120()).unwrap_err();
        assert!(err.contains("100x100") && err.contains("face box"), "{err}");
    }
}
