//! The CPU (`flex`) kernels behind [`LayerBackend`]: each convolution is im2col or col2im plus
//! one GEMM over the whole batch, and LeakyReLU + BatchNorm is a few passes per channel.
//!
//! Activations are NCHW. A GEMM over the whole batch reads or writes channel-major
//! [C, N*H*W] matrices: im2col reads NCHW and col2im writes it directly; the other operands
//! are converted on the way in or out (contiguous runs of H*W floats), and the weight
//! gradients read one operand channels-last ([N*H*W, C]), the layout GEMM packs fastest.

use std::borrow::Cow;

use burn::backend::flex::FlexTensor;
use burn::backend::Flex;
use burn::tensor::{TensorData, TensorMetadata};
use rayon::prelude::*;

use super::gemm_time;
use super::layer::{LayerBackend, LayerGrads, LEAKY_SLOPE};

const K: usize = 4;

impl LayerBackend for Flex {
    fn conv_down(x: FlexTensor, w: FlexTensor, b: FlexTensor) -> FlexTensor {
        let [n, c, h, wd] = dims(&x);
        let o = dims(&w)[0];
        let (ho, wo) = (h / 2, wd / 2);
        let cols = im2col(&floats(&x), c, n, (h, wd), (ho, wo));
        let y = matmul(&floats(&w), false, &cols, false, o, c * K * K, n * ho * wo);
        flex(
            to_nchw(&y, o, n, ho * wo, Some(&floats(&b))),
            [n, o, ho, wo],
        )
    }

    fn conv_up(x: FlexTensor, w: FlexTensor, b: FlexTensor) -> FlexTensor {
        let [n, c, h, wd] = dims(&x);
        let o = dims(&w)[1];
        let xc = to_cnhw(&floats(&x), n, c, h * wd);
        let cols = matmul(&floats(&w), true, &xc, false, o * K * K, c, n * h * wd);
        let out = col2im(&cols, o, n, (2 * h, 2 * wd), (h, wd), Some(&floats(&b)));
        flex(out, [n, o, 2 * h, 2 * wd])
    }

    fn conv_down_backward(
        x: FlexTensor,
        w: FlexTensor,
        _b: FlexTensor,
        dy: FlexTensor,
        need: [bool; 3],
    ) -> LayerGrads<Self> {
        let [n, c, h, wd] = dims(&x);
        let o = dims(&w)[0];
        let (ho, wo, kk) = (h / 2, wd / 2, c * K * K);
        let p = n * ho * wo;
        let dyc = to_cnhw(&floats(&dy), n, o, ho * wo);
        // dW' [kk, o] = cols [kk, P] x dy [P, o]: both operands in the layouts GEMM packs
        // fastest (dW = dy x cols' reads cols transposed, measured 2-4x slower).
        let weight = need[1].then(|| {
            let cols = im2col(&floats(&x), c, n, (h, wd), (ho, wo));
            let dy_last = to_nhwc(&floats(&dy), o, ho * wo);
            let dwt = matmul(&cols, false, &dy_last, false, kk, p, o);
            flex(to_nhwc(&dwt, kk, o), [o, c, K, K])
        });
        let x = need[0].then(|| {
            let dcols = matmul(&floats(&w), true, &dyc, false, kk, o, p);
            flex(col2im(&dcols, c, n, (h, wd), (ho, wo), None), [n, c, h, wd])
        });
        let bias = need[2].then(|| flex(row_sums(&dyc, o), [o]));
        LayerGrads { x, weight, bias }
    }

    fn conv_up_backward(
        x: FlexTensor,
        w: FlexTensor,
        _b: FlexTensor,
        dy: FlexTensor,
        need: [bool; 3],
    ) -> LayerGrads<Self> {
        let [n, c, h, wd] = dims(&x);
        let o = dims(&w)[1];
        let (p, kk) = (n * h * wd, o * K * K);
        let dy = floats(&dy);
        let dcols = (need[0] || need[1]).then(|| im2col(&dy, o, n, (2 * h, 2 * wd), (h, wd)));
        let dcols = dcols.as_deref().unwrap_or_default();
        let x_grad = need[0].then(|| {
            let dxc = matmul(&floats(&w), false, dcols, false, c, kk, p);
            flex(to_nchw(&dxc, c, n, h * wd, None), [n, c, h, wd])
        });
        // dW' [kk, c] = dcols [kk, P] x x [P, c], as in `conv_down_backward`.
        let weight = need[1].then(|| {
            let x_last = to_nhwc(&floats(&x), c, h * wd);
            let dwt = matmul(dcols, false, &x_last, false, kk, p, c);
            flex(to_nhwc(&dwt, kk, c), [c, o, K, K])
        });
        let bias = need[2].then(|| flex(channel_sums(&dy, o, 4 * h * wd), [o]));
        LayerGrads {
            x: x_grad,
            weight,
            bias,
        }
    }

    fn leaky_bn(x: FlexTensor, gamma: FlexTensor, beta: FlexTensor, eps: f64) -> [FlexTensor; 3] {
        let [n, c, h, w] = dims(&x);
        let xs = floats(&x);
        let (mean, var) = leaky_channel_stats(&xs, n, c, h * w);
        let (g, b) = (floats(&gamma), floats(&beta));
        let scale: Vec<f32> = (0..c)
            .map(|ci| g[ci] / (var[ci] + eps as f32).sqrt())
            .collect();
        let shift: Vec<f32> = (0..c).map(|ci| b[ci] - mean[ci] * scale[ci]).collect();
        let y = affine(&xs, c, h * w, &scale, &shift);
        [flex(y, [n, c, h, w]), flex(mean, [c]), flex(var, [c])]
    }

    fn leaky_affine(x: FlexTensor, scale: FlexTensor, shift: FlexTensor) -> FlexTensor {
        let [n, c, h, w] = dims(&x);
        let (xs, scale, shift) = (floats(&x), floats(&scale), floats(&shift));
        flex(affine(&xs, c, h * w, &scale, &shift), [n, c, h, w])
    }

    fn leaky_bn_backward(
        x: FlexTensor,
        gamma: FlexTensor,
        _beta: FlexTensor,
        dy: FlexTensor,
        eps: f64,
        need: [bool; 3],
    ) -> LayerGrads<Self> {
        let [n, c, h, w] = dims(&x);
        let hw = h * w;
        let (xs, dys, g) = (floats(&x), floats(&dy), floats(&gamma));
        let (mean, var) = leaky_channel_stats(&xs, n, c, hw);
        let inv: Vec<f32> = var.iter().map(|v| 1.0 / (v + eps as f32).sqrt()).collect();
        // Per channel: sum of dy (beta's gradient) and of dy * x_hat (gamma's).
        let sums: Vec<(f64, f64)> = (0..c)
            .into_par_iter()
            .map(|ci| {
                let (mut s, mut sx) = (0.0f64, 0.0f64);
                for ni in 0..n {
                    let o = (ni * c + ci) * hw;
                    let (mut a, mut b) = (0.0f32, 0.0f32);
                    for (&v, &d) in xs[o..o + hw].iter().zip(&dys[o..o + hw]) {
                        a += d;
                        b += d * (leaky(v) - mean[ci]) * inv[ci];
                    }
                    s += a as f64;
                    sx += b as f64;
                }
                (s, sx)
            })
            .collect();
        let m = (n * hw) as f32;
        let x_grad = need[0].then(|| {
            let mut dx = vec![0.0f32; xs.len()];
            dx.par_chunks_mut(c * hw)
                .zip(xs.par_chunks(c * hw).zip(dys.par_chunks(c * hw)))
                .for_each(|(dst, (xv, dv))| {
                    for ci in 0..c {
                        let k = g[ci] * inv[ci];
                        let (mdy, mdyx) = (sums[ci].0 as f32 / m, sums[ci].1 as f32 / m);
                        let range = ci * hw..(ci + 1) * hw;
                        for ((o, &v), &d) in dst[range.clone()]
                            .iter_mut()
                            .zip(&xv[range.clone()])
                            .zip(&dv[range])
                        {
                            let xhat = (leaky(v) - mean[ci]) * inv[ci];
                            let slope = if v > 0.0 { 1.0 } else { LEAKY_SLOPE };
                            *o = k * (d - mdy - xhat * mdyx) * slope;
                        }
                    }
                });
            flex(dx, [n, c, h, w])
        });
        let gamma_grad = need[1].then(|| flex(sums.iter().map(|s| s.1 as f32).collect(), [c]));
        let beta_grad = need[2].then(|| flex(sums.iter().map(|s| s.0 as f32).collect(), [c]));
        LayerGrads {
            x: x_grad,
            weight: gamma_grad,
            bias: beta_grad,
        }
    }
}

/// LeakyReLU(x) * scale + shift per channel of [N, C, HW].
fn affine(xs: &[f32], c: usize, hw: usize, scale: &[f32], shift: &[f32]) -> Vec<f32> {
    let mut y = vec![0.0f32; xs.len()];
    y.par_chunks_mut(c * hw)
        .zip(xs.par_chunks(c * hw))
        .for_each(|(dst, src)| {
            for ci in 0..c {
                let (sc, sh) = (scale[ci], shift[ci]);
                let range = ci * hw..(ci + 1) * hw;
                for (d, &v) in dst[range.clone()].iter_mut().zip(&src[range]) {
                    *d = leaky(v) * sc + sh;
                }
            }
        });
    y
}

fn leaky(v: f32) -> f32 {
    if v > 0.0 {
        v
    } else {
        v * LEAKY_SLOPE
    }
}

/// Mean and biased variance of LeakyReLU(x) per channel of [N, C, HW]; two passes, so the
/// variance does not lose its digits to cancellation.
fn leaky_channel_stats(xs: &[f32], n: usize, c: usize, hw: usize) -> (Vec<f32>, Vec<f32>) {
    let m = (n * hw) as f64;
    (0..c)
        .into_par_iter()
        .map(|ci| {
            let planes = || (0..n).map(move |ni| &xs[(ni * c + ci) * hw..][..hw]);
            let sum: f64 = planes()
                .map(|p| p.iter().map(|&v| leaky(v)).sum::<f32>() as f64)
                .sum();
            let mean = (sum / m) as f32;
            let sq: f64 = planes()
                .map(|p| p.iter().map(|&v| (leaky(v) - mean).powi(2)).sum::<f32>() as f64)
                .sum();
            (mean, (sq / m) as f32)
        })
        .unzip()
}

fn dims(t: &FlexTensor) -> [usize; 4] {
    let s = t.shape();
    [s[0], s[1], s[2], s[3]]
}

/// The tensor's f32 values in row-major order, borrowed when already laid out that way.
fn floats(t: &FlexTensor) -> Cow<'_, [f32]> {
    match t.as_slice::<f32>() {
        Some(s) => Cow::Borrowed(s),
        None => Cow::Owned(
            t.to_contiguous()
                .as_slice::<f32>()
                .expect("contiguous f32")
                .to_vec(),
        ),
    }
}

fn flex<const D: usize>(values: Vec<f32>, shape: [usize; D]) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape))
}

/// [N, C, HW] -> [C, N, HW].
fn to_cnhw(x: &[f32], n: usize, c: usize, hw: usize) -> Vec<f32> {
    let mut out = vec![0.0; x.len()];
    out.par_chunks_mut(n * hw)
        .enumerate()
        .for_each(|(ci, dst)| {
            for (ni, d) in dst.chunks_exact_mut(hw).enumerate() {
                d.copy_from_slice(&x[(ni * c + ci) * hw..][..hw]);
            }
        });
    out
}

/// [N, C, HW] -> [N, HW, C] (channels last; of one [C, HW] matrix, its transpose),
/// in square tiles that stay in cache.
fn to_nhwc(x: &[f32], c: usize, hw: usize) -> Vec<f32> {
    const TILE: usize = 32;
    let mut out = vec![0.0; x.len()];
    out.par_chunks_mut(c * hw)
        .zip(x.par_chunks(c * hw))
        .for_each(|(dst, src)| {
            for p0 in (0..hw).step_by(TILE) {
                for c0 in (0..c).step_by(TILE) {
                    for p in p0..(p0 + TILE).min(hw) {
                        for ci in c0..(c0 + TILE).min(c) {
                            dst[p * c + ci] = src[ci * hw + p];
                        }
                    }
                }
            }
        });
    out
}

/// [C, N, HW] -> [N, C, HW], adding a per-channel bias on the way.
fn to_nchw(y: &[f32], c: usize, n: usize, hw: usize, bias: Option<&[f32]>) -> Vec<f32> {
    let mut out = vec![0.0; y.len()];
    out.par_chunks_mut(c * hw)
        .enumerate()
        .for_each(|(ni, dst)| {
            for (ci, d) in dst.chunks_exact_mut(hw).enumerate() {
                let src = &y[(ci * n + ni) * hw..][..hw];
                match bias {
                    Some(b) => d.iter_mut().zip(src).for_each(|(d, s)| *d = s + b[ci]),
                    None => d.copy_from_slice(src),
                }
            }
        });
    out
}

/// The output positions `i` whose tap `2i + k - 1` lands inside a side of `len` pixels.
fn valid(k: usize, len: usize, out: usize) -> std::ops::Range<usize> {
    let first = usize::from(k == 0);
    // 2i + k - 1 <= len - 1  <=>  i <= (len - k) / 2
    let last = len.checked_sub(k).map_or(0, |r| r / 2 + 1).min(out);
    first..last.max(first)
}

/// Input planes [N, C, H, W] to columns [C*16, N*Ho*Wo] for a kernel-4, stride-2, padding-1
/// convolution with output grid Ho x Wo; out-of-image taps are zero.
fn im2col(
    src: &[f32],
    c: usize,
    n: usize,
    (h, w): (usize, usize),
    (ho, wo): (usize, usize),
) -> Vec<f32> {
    let p = n * ho * wo;
    let mut cols = vec![0.0; c * K * K * p];
    cols.par_chunks_mut(p).enumerate().for_each(|(row, dst)| {
        let (ci, kh, kw) = (row / (K * K), row / K % K, row % K);
        let (rows, js) = (valid(kh, h, ho), valid(kw, w, wo));
        for ni in 0..n {
            let plane = &src[(ni * c + ci) * h * w..][..h * w];
            for i in rows.clone() {
                let line = &plane[(2 * i + kh - 1) * w..][..w];
                let d = &mut dst[(ni * ho + i) * wo..][..wo];
                for j in js.clone() {
                    d[j] = line[2 * j + kw - 1];
                }
            }
        }
    });
    cols
}

/// The adjoint of [`im2col`]: sums columns back into planes [N, C, H, W], each starting
/// from its channel's `bias` (or zero).
fn col2im(
    cols: &[f32],
    c: usize,
    n: usize,
    (h, w): (usize, usize),
    (ho, wo): (usize, usize),
    bias: Option<&[f32]>,
) -> Vec<f32> {
    let p = n * ho * wo;
    let mut out = vec![0.0; n * c * h * w];
    // One task per sample: it writes its own planes, and only them.
    out.par_chunks_mut(c * h * w)
        .enumerate()
        .for_each(|(ni, planes)| {
            for (ci, plane) in planes.chunks_exact_mut(h * w).enumerate() {
                if let Some(b) = bias {
                    plane.fill(b[ci]);
                }
                for k in 0..K * K {
                    let (kh, kw) = (k / K, k % K);
                    let (rows, js) = (valid(kh, h, ho), valid(kw, w, wo));
                    let row = &cols[(ci * K * K + k) * p..][..p];
                    for i in rows.clone() {
                        let line = &mut plane[(2 * i + kh - 1) * w..][..w];
                        let src = &row[(ni * ho + i) * wo..][..wo];
                        for j in js.clone() {
                            line[2 * j + kw - 1] += src[j];
                        }
                    }
                }
            }
        });
    out
}

/// Per-channel sums of [N, C, HW].
fn channel_sums(x: &[f32], c: usize, hw: usize) -> Vec<f32> {
    (0..c)
        .into_par_iter()
        .map(|ci| {
            (x.chunks_exact(c * hw))
                .map(|sample| sample[ci * hw..][..hw].iter().sum::<f32>())
                .sum()
        })
        .collect()
}

fn row_sums(m: &[f32], rows: usize) -> Vec<f32> {
    let cols = m.len() / rows;
    m.par_chunks(cols).map(|r| r.iter().sum()).collect()
}

/// Products whose inner dimension `k` is at least twice this are split along `k` into
/// slices of this many, computed in parallel and summed in order. The weight gradients
/// reduce over every pixel of the batch (k up to 131,072) into small [m, n] results, where
/// GEMM finds too few blocks of m and n to share between threads (measured at 4-40% of the
/// large-product rate). A fixed slice, not one per thread, keeps the summation order, and so
/// the result, the same on every machine.
const K_SLICE: usize = 4096;

/// `a * b` for row-major operands, [m, k] x [k, n] -> [m, n]; `ta`/`tb` mean the operand is
/// stored transposed ([k, m] or [n, k]), which GEMM reads through strides without a copy.
#[allow(clippy::too_many_arguments)]
fn matmul(a: &[f32], ta: bool, b: &[f32], tb: bool, m: usize, k: usize, n: usize) -> Vec<f32> {
    assert!(a.len() == m * k && b.len() == k * n, "matmul operand sizes");
    let shape = gemm_time::Shape { m, k, n, ta, tb };
    gemm_time::timed(shape, || {
        if k < 2 * K_SLICE {
            let mut dst = vec![0.0f32; m * n];
            let parallelism = if m * n * k >= 1 << 18 {
                gemm::Parallelism::Rayon(0)
            } else {
                gemm::Parallelism::None
            };
            product(&mut dst, a, ta, b, tb, [m, k, n], 0..k, parallelism);
            return dst;
        }
        let slices: Vec<Vec<f32>> = (0..k.div_ceil(K_SLICE))
            .into_par_iter()
            .map(|i| {
                let mut dst = vec![0.0f32; m * n];
                let ks = i * K_SLICE..((i + 1) * K_SLICE).min(k);
                product(
                    &mut dst,
                    a,
                    ta,
                    b,
                    tb,
                    [m, k, n],
                    ks,
                    gemm::Parallelism::None,
                );
                dst
            })
            .collect();
        let mut dst = vec![0.0f32; m * n];
        for slice in &slices {
            dst.iter_mut().zip(slice).for_each(|(d, s)| *d += s);
        }
        dst
    })
}

/// `dst` = the product of `a` and `b` over the inner indices `ks` only (see [`matmul`] for
/// the layouts; `[m, k, n]` are the full operands' sizes).
#[allow(clippy::too_many_arguments)]
fn product(
    dst: &mut [f32],
    a: &[f32],
    ta: bool,
    b: &[f32],
    tb: bool,
    [m, k, n]: [usize; 3],
    ks: std::ops::Range<usize>,
    parallelism: gemm::Parallelism,
) {
    assert!(dst.len() == m * n && ks.end <= k, "product sizes");
    // Element (i, kk) of A and (kk, j) of B: the strides, and where inner index ks.start is.
    let (a_cs, a_rs, a_at) = if ta {
        (m, 1, ks.start * m)
    } else {
        (1, k, ks.start)
    };
    let (b_cs, b_rs, b_at) = if tb {
        (k, 1, ks.start)
    } else {
        (1, n, ks.start * n)
    };
    // SAFETY: the operand lengths were asserted (m*k and k*n) and `ks` lies inside 0..k, so
    // every element the offsets and strides reach is inside them; `dst` is its own buffer
    // of m*n floats and aliases neither operand.
    unsafe {
        gemm::gemm(
            m,
            n,
            ks.len(),
            dst.as_mut_ptr(),
            1,
            n as isize,
            false,
            a.as_ptr().add(a_at),
            a_cs as isize,
            a_rs as isize,
            b.as_ptr().add(b_at),
            b_cs as isize,
            b_rs as isize,
            0.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// `a` times itself for a square `a` of `size` x `size`: the large square product
/// `dcgan bench --gemm` measures the machine's GEMM rate with.
pub fn square_product(a: &[f32], size: usize) -> Vec<f32> {
    matmul(a, false, a, false, size, size, size)
}

#[cfg(test)]
mod tests {
    use super::{matmul, to_nhwc, valid, K_SLICE};

    /// Every layout, with k split into slices (uneven last one) and not: against the
    /// product summed in f64.
    #[test]
    fn matmul_matches_the_textbook_product_in_every_layout() {
        for (m, k, n) in [(5, 3 * K_SLICE + 17, 7), (9, 40, 11)] {
            let a: Vec<f32> = (0..m * k)
                .map(|i| ((i * 7 % 23) as f32 - 11.0) / 8.0)
                .collect();
            let b: Vec<f32> = (0..k * n)
                .map(|i| ((i * 5 % 19) as f32 - 9.0) / 8.0)
                .collect();
            for (ta, tb) in [(false, false), (false, true), (true, false), (true, true)] {
                let got = matmul(&a, ta, &b, tb, m, k, n);
                for i in 0..m {
                    for j in 0..n {
                        let want: f64 = (0..k)
                            .map(|kk| {
                                let x = if ta { a[kk * m + i] } else { a[i * k + kk] };
                                let y = if tb { b[j * k + kk] } else { b[kk * n + j] };
                                x as f64 * y as f64
                            })
                            .sum();
                        let diff = (got[i * n + j] as f64 - want).abs();
                        assert!(diff <= 1e-4 * want.abs().max(1.0), "{m}x{k}x{n} {ta} {tb}");
                    }
                }
            }
        }
    }

    #[test]
    fn to_nhwc_moves_channels_last() {
        let (n, c, hw) = (3, 37, 70);
        let x: Vec<f32> = (0..n * c * hw).map(|i| i as f32).collect();
        let y = to_nhwc(&x, c, hw);
        for ni in 0..n {
            for ci in 0..c {
                for p in 0..hw {
                    assert_eq!(y[(ni * hw + p) * c + ci], x[(ni * c + ci) * hw + p]);
                }
            }
        }
    }

    #[test]
    fn valid_taps_stay_inside_the_side() {
        for len in 1..10 {
            for out in [len / 2, len, 2 * len] {
                for k in 0..4usize {
                    let brute: Vec<usize> = (0..out)
                        .filter(|&i| (2 * i + k).checked_sub(1).is_some_and(|x| x < len))
                        .collect();
                    assert_eq!(
                        valid(k, len, out).collect::<Vec<_>>(),
                        brute,
                        "{len} {out} {k}"
                    );
                }
            }
        }
    }
}
