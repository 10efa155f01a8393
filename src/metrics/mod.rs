//! How good a generator is: the sliced Wasserstein distance to real faces, a copy check
//! against the training faces, and the tracker that scores G during training.

pub mod swd;
mod tracker;

pub use swd::{copy_check, swd, CopyReport, SwdConfig, SwdReport};
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
