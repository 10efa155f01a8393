//! How a photo becomes a face: which part of it is cut (the crop rule), how it is resized,
//! and to what size; and the choice `--crop auto` makes from the photos' sizes.

use anyhow::{bail, Result};
use rayon::prelude::*;

use super::source::ImageList;
use crate::config::{Crop, CropBox, CropRule, ResizeFilter, TrainingConfig};

/// CelebA's aligned photos, the ones the notebook's face box was drawn on.
pub const CELEBA_SIZE: (u32, u32) = (178, 218);

/// Everything a face's pixels depend on besides the photo: the cache is keyed by it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Preprocess {
    /// Resolved: never `auto`.
    pub crop: Crop,
    pub filter: ResizeFilter,
    /// The faces' side in pixels.
    pub size: usize,
}

impl Preprocess {
    /// The config's crop, filter and size; its crop must already be resolved.
    pub fn of(cfg: &TrainingConfig) -> Self {
        debug_assert!(cfg.data.crop != Crop::Rule(CropRule::Auto));
        Self {
            crop: cfg.data.crop,
            filter: cfg.data.filter,
            size: cfg.image_size,
        }
    }

    /// The config's crop, filter and size, with `auto` resolved on `images` (saying what it
    /// chose and why on the first line of output).
    pub fn resolve(cfg: &TrainingConfig, images: &ImageList) -> Self {
        let mut crop = cfg.data.crop;
        if crop == Crop::Rule(CropRule::Auto) {
            let choice = choose_crop(images);
            eprintln!("crop: {} ({})", choice.crop.describe(), choice.why);
            crop = choice.crop;
        }
        Self {
            crop,
            filter: cfg.data.filter,
            size: cfg.image_size,
        }
    }

    /// Bytes of one face: `size` x `size` RGB.
    pub fn face_bytes(&self) -> usize {
        super::face_bytes(self.size)
    }

    /// The one box every photo is cut with, when the crop does not depend on the photo.
    pub fn fixed_box(&self) -> Option<CropBox> {
        match self.crop {
            Crop::Box(b) => Some(b),
            Crop::Rule(CropRule::Celeba) => Some(Crop::CELEBA_BOX),
            Crop::Rule(_) => None,
        }
    }
}

/// What `--crop auto` chose, and why, in words for the first line of a run's output.
pub struct CropChoice {
    pub crop: Crop,
    pub why: String,
}

/// `celeba` when every readable image is CelebA's aligned 178x218, else `center`. Reads only
/// the headers of the images in a folder (an archive's members are inflated), on all cores;
/// an image whose header cannot be read is left to decoding, which names it.
pub fn choose_crop(images: &ImageList) -> CropChoice {
    let sizes: Vec<Option<(u32, u32)>> = (0..images.len())
        .into_par_iter()
        .map(|i| images.dimensions(i).ok())
        .collect();
    let other = sizes
        .iter()
        .enumerate()
        .filter_map(|(i, s)| s.filter(|s| *s != CELEBA_SIZE).map(|s| (i, s)));
    let (count, first) = other.fold((0, None), |(n, f), x| (n + 1, f.or(Some(x))));
    match first {
        None => CropChoice {
            crop: Crop::Rule(CropRule::Celeba),
            why: "every image is CelebA's aligned 178x218, so its face box is cut; \
                  --crop center or none to choose otherwise"
                .to_string(),
        },
        Some((i, (w, h))) => CropChoice {
            crop: Crop::Rule(CropRule::Center),
            why: format!(
                "{count} of {} images are not CelebA's aligned 178x218 (e.g. {} is {w}x{h}), so the largest centred square is cut; \
                 --crop none keeps whole pictures",
                images.len(),
                images.label(i)
            ),
        },
    }
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
