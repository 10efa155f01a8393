//! LeakyReLU + BatchNorm on the CPU: per-channel statistics, the affine pass and the
//! backward sums, each compiled twice (baseline and AVX2) and picked at run time.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::super::profile;
use super::super::LEAKY_SLOPE;
use super::buffer::written;
use super::reduce::lane_sums;
use crate::simd::with_avx2;

/// LeakyReLU(x) * scale + shift per channel of [C, N*H*W].
pub(super) fn affine(xs: &[f32], scale: &[f32], shift: &[f32]) -> Vec<f32> {
    let _span = profile::span("affine");
    let m = xs.len() / scale.len();
    // SAFETY: each channel's chunk is written whole.
    unsafe {
        written(xs.len(), |y| {
            y.par_chunks_mut(m)
                .zip(xs.par_chunks(m))
                .enumerate()
                .for_each(|(ci, (dst, src))| affine_channel(dst, src, scale[ci], shift[ci]))
        })
    }
}

#[inline(always)]
pub(super) fn leaky(v: f32) -> f32 {
    if v > 0.0 {
        v
    } else {
        v * LEAKY_SLOPE
    }
}

/// Mean and biased variance of LeakyReLU(x) per channel of [C, N*H*W].
pub(super) fn leaky_channel_stats(xs: &[f32], c: usize) -> (Vec<f32>, Vec<f32>) {
    let _span = profile::span("leaky_channel_stats");
    xs.par_chunks(xs.len() / c).map(channel_stats).unzip()
}

with_avx2! {
    /// Mean and biased variance of LeakyReLU(x) over one channel's values: two passes, so
    /// the variance does not lose its digits to cancellation.
    fn channel_stats(xs: &[f32]) -> (f32, f32) {
        let m = xs.len() as f64;
        let sum = lane_sums(xs, xs, |v, _| [leaky(v)])[0] as f64;
        let mean = (sum / m) as f32;
        let sq = lane_sums(xs, xs, |v, _| [(leaky(v) - mean).powi(2)])[0] as f64;
        (mean, (sq / m) as f32)
    }
}

with_avx2! {
    /// BatchNorm backward's sums over one channel: of dy, and of dy * x_hat.
    pub(super) fn bn_sums(xs: &[f32], dys: &[f32], mu: f32, inv: f32) -> (f64, f64) {
        let [s, sx] = lane_sums(xs, dys, |v, d| [d, d * (leaky(v) - mu) * inv]);
        (s as f64, sx as f64)
    }
}

/// One channel's constants of BatchNorm's input gradient.
#[derive(Clone, Copy)]
pub(super) struct BnChannel {
    /// gamma / sqrt(var + eps).
    pub(super) k: f32,
    pub(super) mean: f32,
    /// 1 / sqrt(var + eps).
    pub(super) inv: f32,
    pub(super) mean_dy: f32,
    pub(super) mean_dy_xhat: f32,
}

with_avx2! {
    /// BatchNorm + LeakyReLU's input gradient over one channel's values.
    pub(super) fn bn_dx(dst: &mut [MaybeUninit<f32>], xv: &[f32], dv: &[f32], b: BnChannel) {
        for ((o, &v), &d) in dst.iter_mut().zip(xv).zip(dv) {
            let xhat = (leaky(v) - b.mean) * b.inv;
            let slope = if v > 0.0 { 1.0 } else { LEAKY_SLOPE };
            o.write(b.k * (d - b.mean_dy - xhat * b.mean_dy_xhat) * slope);
        }
    }
}

with_avx2! {
    /// LeakyReLU(x) * scale + shift over one channel's values.
    fn affine_channel(dst: &mut [MaybeUninit<f32>], src: &[f32], scale: f32, shift: f32) {
        for (d, &v) in dst.iter_mut().zip(src) {
            d.write(leaky(v) * scale + shift);
        }
    }
}
