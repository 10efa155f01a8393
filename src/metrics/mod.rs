//! How good a generator is: the sliced Wasserstein distance to real faces, a copy check
//! against the training faces, and the tracker that scores G during training.

mod copy;
pub mod swd;
mod tracker;

pub use copy::{copy_check, CopyReport};
pub use swd::{swd, SwdConfig, SwdReport};
pub use tracker::Tracker;

/// The middle value, or the mean of the middle two; NaN for no values.
pub fn median(xs: &[f64]) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// Faces `r` of the 300 real CelebA photos the project ships for tests (in file-name
/// order), cropped and resized as the trainer does: what the metrics' tests score.
#[cfg(test)]
pub(crate) fn test_faces(r: std::ops::Range<usize>) -> &'static [u8] {
    use rayon::prelude::*;
    use std::sync::OnceLock;

    static FACES: OnceLock<Vec<u8>> = OnceLock::new();
    let all = FACES.get_or_init(|| {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/faces");
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        assert_eq!(files.len(), 300, "expected 300 faces in {dir}");
        let prep = crate::data::Preprocess {
            crop: crate::config::Crop::Rule(crate::config::CropRule::Celeba),
            filter: crate::config::ResizeFilter::Bicubic,
            size: 64,
        };
        let face = |p: &std::path::PathBuf| crate::data::load_face(p, &prep).unwrap();
        files.par_iter().flat_map_iter(face).collect()
    });
    let face = crate::data::face_bytes(64);
    &all[r.start * face..r.end * face]
}

#[cfg(test)]
mod tests {
    use super::median;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert!(median(&[]).is_nan());
    }
}
