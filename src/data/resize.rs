//! Pillow-exact `img.crop(box).resize((w, h), filter)` for 8-bit RGB (libImaging/Resample.c,
//! and Geometry.c for NEAREST), with the coefficients computed once per shape, not per image.

use std::cell::RefCell;

use crate::config::{CropBox, ResizeFilter};
use crate::simd::with_avx2;

/// Pillow's fixed point for 8-bit images: 22 fraction bits leave 8 for the pixel and 2 of
/// headroom for the negative lobes of bicubic/lanczos.
const PRECISION_BITS: u32 = 32 - 8 - 2;
const HALF: i32 = 1 << (PRECISION_BITS - 1);

/// One pass in Pillow's fixed point: output `i` is the sum of `taps[i][t]` times input
/// `first[i] + t`.
#[derive(Clone, Debug)]
struct Axis {
    first: Vec<usize>,
    taps: Vec<Vec<i32>>,
}

impl Axis {
    /// `precompute_coeffs` + `normalize_coeffs_8bpc` step for step (same f64 operations in
    /// the same order, C's truncating casts), so the fixed-point weights are bit-identical.
    fn new(in_size: usize, out_size: usize, filter: ResizeFilter) -> Self {
        let (support, kernel): (f64, fn(f64) -> f64) = match filter {
            // Pillow skips a pass whose size does not change; a pass of exact copies is the same.
            _ if in_size == out_size => return Self::pick(0..out_size),
            ResizeFilter::Nearest => return Self::pick(nearest(in_size, out_size)),
            ResizeFilter::Bilinear => (1.0, |x| (1.0 - x.abs()).max(0.0)),
            ResizeFilter::Bicubic => (2.0, bicubic),
            ResizeFilter::Lanczos3 => (3.0, lanczos),
        };
        // Pillow's box is f32, but integral here, so widening it to f64 is exact.
        let scale = in_size as f64 / out_size as f64;
        let filterscale = scale.max(1.0);
        let support = support * filterscale;
        let (mut first, mut taps) = (vec![], vec![]);
        for xx in 0..out_size {
            let center = (xx as f64 + 0.5) * scale;
            let xmin = ((center - support + 0.5) as i64).max(0);
            let xmax = ((center + support + 0.5) as i64).min(in_size as i64);
            let w = (xmin..xmax).map(|x| kernel((x as f64 - center + 0.5) * (1.0 / filterscale)));
            let w: Vec<f64> = w.collect();
            let ww = w.iter().fold(0.0, |sum, w| sum + w);
            let fixed = w.iter().map(|&w| {
                let w = if ww != 0.0 { w / ww } else { w } * f64::from(1 << PRECISION_BITS);
                // C's (int) truncates, so Pillow rounds half away from zero by hand.
                (if w < 0.0 { w - 0.5 } else { w + 0.5 }) as i32
            });
            first.push(xmin as usize);
            taps.push(fixed.collect());
        }
        Self { first, taps }
    }

    /// One tap of weight 1.0 per output: copies input `i` exactly (p << 22 >> 22 == p).
    fn pick(inputs: impl IntoIterator<Item = usize>) -> Self {
        let first: Vec<_> = inputs.into_iter().collect();
        let taps = vec![vec![1 << PRECISION_BITS]; first.len()];
        Self { first, taps }
    }
}

/// Pillow's a = -0.5, written as in Resample.c so that every f64 operation rounds alike.
fn bicubic(x: f64) -> f64 {
    const A: f64 = -0.5;
    match x.abs() {
        x if x < 1.0 => ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0,
        x if x < 2.0 => (((x - 5.0) * x + 8.0) * x - 4.0) * A,
        _ => 0.0,
    }
}

fn lanczos(x: f64) -> f64 {
    match x {
        x if (-3.0..3.0).contains(&x) => sinc(x) * sinc(x / 3.0),
        _ => 0.0,
    }
}

fn sinc(x: f64) -> f64 {
    let x = x * std::f64::consts::PI;
    if x == 0.0 {
        1.0
    } else {
        x.sin() / x
    }
}

/// Pillow resizes NEAREST with an affine transform (Geometry.c, ImagingScaleAffine) that
/// samples a running f64 sum from scale/2, truncated. (It would fill black past the edge, but
/// the last position is in_size - scale/2.)
fn nearest(in_size: usize, out_size: usize) -> Vec<usize> {
    let scale = in_size as f64 / out_size as f64;
    let mut pos = scale * 0.5;
    (0..out_size)
        .map(|_| (pos as usize, pos += scale).0)
        .collect()
}

/// Precomputed `crop(box).resize((out_w, out_h), filter)`: Send + Sync, clone or share it.
#[derive(Clone, Debug)]
pub struct Resampler {
    crop: CropBox,
    h: Axis,
    v: Axis,
    /// Pillow 13 (PR #9549) goes vertical first when the height shrinks by more than twice as
    /// many pixels as the width; Pillow 9-12 always go horizontal first. The order shows in
    /// the output through the clipped 8-bit intermediate image.
    vertical_first: bool,
}

thread_local! {
    /// Transposed input, intermediate image, one output column: grown on a thread's first
    /// call and reused, so `apply` allocates nothing after that.
    static SCRATCH: RefCell<[Vec<u8>; 3]> = const { RefCell::new([Vec::new(), Vec::new(), Vec::new()]) };
}

impl Resampler {
    pub fn new(crop: CropBox, filter: ResizeFilter, out_w: usize, out_h: usize) -> Self {
        let ok = crop.right > crop.left && crop.bottom > crop.top && out_w * out_h > 0;
        assert!(ok, "empty crop box or output: {crop:?}");
        let (cw, ch) = (crop.width() as usize, crop.height() as usize);
        let (h, v) = (Axis::new(cw, out_w, filter), Axis::new(ch, out_h, filter));
        let vertical_first = ch > out_h && ch - out_h > 2 * cw.saturating_sub(out_w);
        Self {
            crop,
            h,
            v,
            vertical_first,
        }
    }

    /// Crops the box out of `rgb` (row-major RGB, `width` x `height`) and resizes it into
    /// `out` (row-major RGB, out_w x out_h). Panics if the box does not fit the image.
    pub fn apply(&self, rgb: &[u8], width: usize, height: usize, out: &mut [u8]) {
        let (c, (ow, oh)) = (self.crop, (self.h.first.len(), self.v.first.len()));
        let ok = c.right as usize <= width && c.bottom as usize <= height;
        let ok = ok && rgb.len() == width * height * 3 && out.len() == ow * oh * 3;
        assert!(ok, "image smaller than the crop box, or wrong buffer sizes");
        SCRATCH.with_borrow_mut(|scratch| crop_resize(self, rgb, width, scratch, out));
    }

    #[inline(always)]
    fn run(&self, rgb: &[u8], width: usize, [cols, mid, col]: &mut [Vec<u8>; 3], out: &mut [u8]) {
        let (c, h, v) = (self.crop, &self.h, &self.v);
        let (cw3, ow3, oh) = (c.width() as usize * 3, h.first.len() * 3, v.first.len());
        let row = |y: usize| &rgb[((c.top as usize + y) * width + c.left as usize) * 3..][..cw3];
        if self.vertical_first {
            mid.resize(oh * cw3, 0);
            vertical(v, row, mid);
            let mid: &[u8] = mid;
            horizontal(h, |y| &mid[y * cw3..][..cw3], [cols, col], out);
        } else {
            // As Pillow does: the horizontal pass covers only the rows the vertical one reads.
            let first = v.first[0];
            mid.resize((v.first[oh - 1] + v.taps[oh - 1].len() - first) * ow3, 0);
            horizontal(h, |y| row(first + y), [cols, col], mid);
            let mid: &[u8] = mid;
            vertical(v, move |y| &mid[(y - first) * ow3..][..ow3], out);
        }
    }
}

with_avx2! {
    /// [`Resampler::apply`]'s passes, compiled for AVX2 too: x86-64's baseline SSE2 has no
    /// 32-bit vector multiply, and emulating it makes the whole resize ~2.5x slower.
    fn crop_resize(r: &Resampler, rgb: &[u8], width: usize, scratch: &mut [Vec<u8>; 3], out: &mut [u8]) {
        r.run(rgb, width, scratch, out)
    }
}

#[inline(always)]
fn vertical<'a>(v: &Axis, row: impl Fn(usize) -> &'a [u8], out: &mut [u8]) {
    let taps = v.first.iter().zip(&v.taps);
    for (o, (&first, k)) in out.chunks_exact_mut(out.len() / v.first.len()).zip(taps) {
        weighted_sum(o, k, |t| row(first + t));
    }
}

/// Works on a transposed copy (a contiguous column per input x, all rows' RGB in it), so it
/// vectorises over rows like the vertical pass: per-pixel scalar dot products, even with the
/// copy saved, took 1.5x (SSE2) to 3x (AVX2) the instructions.
#[inline(always)]
fn horizontal<'a>(h: &Axis, row: impl Fn(usize) -> &'a [u8], s: [&mut Vec<u8>; 2], out: &mut [u8]) {
    let ([cols, col], ow3) = (s, h.first.len() * 3);
    let (rows, len) = (out.len() / ow3, out.len() / ow3 * 3);
    cols.resize(row(0).len() * rows, 0);
    for y in 0..rows {
        for (c, p) in cols.chunks_exact_mut(len).zip(row(y).chunks_exact(3)) {
            c[y * 3..][..3].copy_from_slice(p);
        }
    }
    col.resize(len, 0);
    for (xx, (&first, k)) in h.first.iter().zip(&h.taps).enumerate() {
        weighted_sum(col, k, |t| &cols[(first + t) * len..][..len]);
        for (o, p) in out.chunks_exact_mut(ow3).zip(col.chunks_exact(3)) {
            o[xx * 3..][..3].copy_from_slice(p);
        }
    }
}

/// `out[j] = clip8(HALF + sum of k[t] * src(t)[j])`: Pillow's sum for one output value (in
/// any order: integer addition is exact), for many values at once from contiguous rows.
#[inline(always)]
fn weighted_sum<'a>(out: &mut [u8], k: &[i32], src: impl Fn(usize) -> &'a [u8]) {
    let (wide, rest) = out.split_at_mut(out.len() / 32 * 32);
    let (narrow, tail) = rest.split_at_mut(rest.len() / 8 * 8);
    lanes::<32>(wide, 0, k, &src);
    lanes::<8>(narrow, wide.len(), k, &src);
    lanes::<1>(tail, wide.len() + narrow.len(), k, &src);
}

/// N accumulators that stay in registers across the taps: N-wide SIMD multiply-adds, one
/// load per tap and lane, one clip per lane. Pillow's `clip8` table is this clamp.
#[inline(always)]
fn lanes<'a, const N: usize>(
    out: &mut [u8],
    at: usize,
    k: &[i32],
    src: &impl Fn(usize) -> &'a [u8],
) {
    for (j, o) in out.chunks_exact_mut(N).enumerate() {
        let mut acc = [HALF; N];
        for (t, &k) in k.iter().enumerate() {
            for (a, &p) in acc.iter_mut().zip(&src(t)[at + j * N..][..N]) {
                *a += i32::from(p) * k;
            }
        }
        for (o, a) in o.iter_mut().zip(acc) {
            *o = (a >> PRECISION_BITS).clamp(0, 255) as u8;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ResizeFilter::*;

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/pillow");

    fn resize(img: &[u8], w: usize, b: [u32; 4], f: ResizeFilter, size: (usize, usize)) -> Vec<u8> {
        let [left, top, right, bottom] = b;
        let crop = CropBox {
            left,
            top,
            right,
            bottom,
        };
        let mut out = vec![0; size.0 * size.1 * 3];
        Resampler::new(crop, f, size.0, size.1).apply(img, w, img.len() / w / 3, &mut out);
        out
    }

    /// Both code paths, AVX2 and baseline, give Pillow's bytes.
    #[test]
    fn matches_pillow_exactly() {
        let (fast, baseline) = crate::simd::both_paths(pillow_fixtures_checked);
        assert_eq!((fast, baseline), (36, 36));
    }

    /// Resizes the Pillow fixtures' photos, asserting each output equals Pillow's; returns
    /// how many were compared.
    fn pillow_fixtures_checked() -> usize {
        let cases = [
            ([30, 55, 150, 175], (64, 64)), // the project's box; every photo, the rest on the first
            ([40, 60, 140, 170], (24, 20)), // shrink, a different factor per axis
            ([70, 100, 90, 125], (24, 30)), // enlarge
            ([50, 70, 74, 170], (24, 16)),  // same width: Pillow skips the horizontal pass
            ([60, 60, 100, 170], (32, 20)), // tall: Pillow 13 runs the vertical pass first
        ];
        let mut checked = 0;
        for (i, stem) in ["000053", "002382", "005173", "007770", "010521"]
            .iter()
            .enumerate()
        {
            // tests/make_fixtures.py keeps only the box (30, 55, 150, 175) of each 178x218
            // photo; outside it is a pattern, so any read outside the box breaks the match.
            let crop = std::fs::read(format!("{FIXTURES}/{stem}.crop.rgb")).unwrap();
            let mut img: Vec<u8> = (0..178 * 218 * 3)
                .map(|i| (i * 7 / 3 % 256) as u8)
                .collect();
            for (y, src) in crop.chunks_exact(120 * 3).enumerate() {
                img[((55 + y) * 178 + 30) * 3..][..src.len()].copy_from_slice(src);
            }
            for &(b, (w, h)) in &cases[..if i == 0 { cases.len() } else { 1 }] {
                for f in [Nearest, Bilinear, Bicubic, Lanczos3] {
                    let [l, t, r, bt] = b;
                    let file = format!("{FIXTURES}/{stem}_{l}_{t}_{r}_{bt}_{w}x{h}_{f:?}.rgb");
                    let want = std::fs::read(file.to_lowercase()).unwrap();
                    let got = resize(&img, 178, b, f, (w, h));
                    let diff = got.iter().zip(&want).map(|(a, b)| a.abs_diff(*b)).max();
                    assert_eq!((got.len(), diff), (want.len(), Some(0)), "{file}");
                    checked += 1;
                }
            }
        }
        checked
    }

    #[test]
    fn constant_image_stays_constant() {
        for f in [Nearest, Bilinear, Bicubic, Lanczos3] {
            for size in [(64, 64), (20, 9), (44, 70), (44, 5)] {
                let out = resize(&[77; 50 * 40 * 3], 50, [3, 5, 47, 38], f, size);
                assert!(out.iter().all(|&p| p == 77), "{f:?} {size:?}");
            }
        }
    }

    #[test]
    fn same_size_box_is_copied() {
        let img: Vec<u8> = (0..100 * 90 * 3).map(|i| (i * 31 % 251) as u8).collect();
        let want: Vec<_> = (20..84)
            .flat_map(|y| &img[(y * 100 + 10) * 3..][..64 * 3])
            .copied()
            .collect();
        for f in [Nearest, Bilinear, Bicubic, Lanczos3] {
            assert_eq!(
                resize(&img, 100, [10, 20, 74, 84], f, (64, 64)),
                want,
                "{f:?}"
            );
        }
    }
}
