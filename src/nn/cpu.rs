//! The CPU (`flex`) kernels behind [`LayerBackend`]: each convolution is im2col or col2im plus
//! one GEMM over the whole batch, and LeakyReLU + BatchNorm is a few passes per channel.
//!
//! Activations are channel-major, [C, N, H, W] ([`LayerBackend::CHANNEL_MAJOR`]): the
//! [C, N*H*W] matrices a GEMM over the whole batch reads and writes, with no layout copies
//! between layers, and each channel's values contiguous for BatchNorm. The weight gradients
//! read one operand channels-last ([N*H*W, C]), the layout GEMM packs fastest.

use std::borrow::Cow;
use std::mem::MaybeUninit;

use burn::backend::flex::FlexTensor;
use burn::backend::Flex;
use burn::tensor::ops::IntTensorOps;
use burn::tensor::{Distribution, IntDType, Shape, TensorData, TensorMetadata};
use rayon::prelude::*;

use super::layer::{Activation, LayerBackend, LayerBackward, LayerGrads, LEAKY_SLOPE};
use super::profile;

const K: usize = 4;

impl LayerBackend for Flex {
    const CHANNEL_MAJOR: bool = true;

    fn conv_down(x: FlexTensor, w: FlexTensor, b: FlexTensor) -> FlexTensor {
        let _span = profile::span("conv_down");
        let [c, n, h, wd] = dims(&x);
        let o = dims(&w)[0];
        let (ho, wo) = (h / 2, wd / 2);
        let cols = im2col(&floats(&x), c, n, (h, wd), (ho, wo));
        let mut y = matmul(&floats(&w), false, &cols, false, o, c * K * K, n * ho * wo);
        add_to_rows(&mut y, &floats(&b));
        flex(y, [o, n, ho, wo])
    }

    fn conv_up(x: FlexTensor, w: FlexTensor, b: FlexTensor) -> FlexTensor {
        let _span = profile::span("conv_up");
        let [c, n, h, wd] = dims(&x);
        let o = dims(&w)[1];
        let cols = matmul(
            &floats(&w),
            true,
            &floats(&x),
            false,
            o * K * K,
            c,
            n * h * wd,
        );
        let out = col2im(&cols, o, n, (2 * h, 2 * wd), (h, wd), Some(&floats(&b)));
        flex(out, [o, n, 2 * h, 2 * wd])
    }

    fn swap_outer(x: FlexTensor) -> FlexTensor {
        let _span = profile::span("swap_outer");
        let [a, b, h, w] = dims(&x);
        flex(swap_outer(&floats(&x), [a, b], h * w), [b, a, h, w])
    }

    fn activation(x: FlexTensor, f: Activation) -> FlexTensor {
        let _span = profile::span("activation");
        let y = match f {
            // burn's own form: exp of a negative number only, so nothing overflows.
            Activation::Sigmoid => map(&floats(&x), |v| {
                if v >= 0.0 {
                    1.0 / (1.0 + (-v).exp())
                } else {
                    let e = v.exp();
                    e / (1.0 + e)
                }
            }),
            Activation::Tanh => map(&floats(&x), f32::tanh),
            Activation::Leaky => map(&floats(&x), leaky),
        };
        flex(y, dims(&x))
    }

    /// Each element's draw is a hash of its index and one 64-bit seed from burn's generator,
    /// so the mask is made in parallel and is the same on any number of threads (burn draws
    /// element by element on one thread, ~20 ns each).
    fn keep_mask(x: &FlexTensor, keep: f64) -> FlexTensor {
        let _span = profile::span("keep_mask");
        let words = Distribution::Uniform(0.0, 4_294_967_296.0);
        let draw = Flex::int_random(Shape::new([2]), words, &Default::default(), IntDType::I64);
        let w = draw.into_data().to_vec::<i64>().expect("two i64 draws");
        let seed = ((w[0] as u64) << 32) | w[1] as u64;
        // Kept where the draw's top 32 bits fall below keep * 2^32.
        let below = (keep * 4_294_967_296.0) as u64;
        let len = x.shape().num_elements();
        // SAFETY: every chunk writes all of its elements.
        let mask = unsafe {
            written(len, |out| {
                out.par_chunks_mut(CHUNK).enumerate().for_each(|(c, d)| {
                    for (j, v) in d.iter_mut().enumerate() {
                        let h = splitmix64(seed.wrapping_add((c * CHUNK + j) as u64));
                        v.write(if h >> 32 < below { 1.0 } else { 0.0 });
                    }
                })
            })
        };
        FlexTensor::from_data(TensorData::new(mask, x.shape()))
    }

    fn leaky_bn(x: FlexTensor, gamma: FlexTensor, beta: FlexTensor, eps: f64) -> [FlexTensor; 3] {
        let _span = profile::span("leaky_bn");
        let [c, n, h, w] = dims(&x);
        let xs = floats(&x);
        let (mean, var) = leaky_channel_stats(&xs, c);
        let (g, b) = (floats(&gamma), floats(&beta));
        let scale: Vec<f32> = (0..c)
            .map(|ci| g[ci] / (var[ci] + eps as f32).sqrt())
            .collect();
        let shift: Vec<f32> = (0..c).map(|ci| b[ci] - mean[ci] * scale[ci]).collect();
        let y = affine(&xs, &scale, &shift);
        [flex(y, [c, n, h, w]), flex(mean, [c]), flex(var, [c])]
    }

    fn leaky_affine(x: FlexTensor, scale: FlexTensor, shift: FlexTensor) -> FlexTensor {
        let _span = profile::span("leaky_affine");
        let (xs, scale, shift) = (floats(&x), floats(&scale), floats(&shift));
        flex(affine(&xs, &scale, &shift), dims(&x))
    }
}

impl LayerBackward for Flex {
    fn conv_down_backward(
        x: FlexTensor,
        w: FlexTensor,
        dy: FlexTensor,
        need: [bool; 3],
    ) -> LayerGrads<Self> {
        let _span = profile::span("conv_down_backward");
        let [c, n, h, wd] = dims(&x);
        let o = dims(&w)[0];
        let (ho, wo, kk) = (h / 2, wd / 2, c * K * K);
        let p = n * ho * wo;
        let dy = floats(&dy);
        // dW' [kk, o] = cols [kk, P] x dy' [P, o]: both operands in the layouts GEMM packs
        // fastest (dW = dy x cols' reads cols transposed, measured 2-4x slower).
        let weight = need[1].then(|| {
            let cols = im2col(&floats(&x), c, n, (h, wd), (ho, wo));
            let dy_last = transpose(&dy, o, p);
            let dwt = matmul(&cols, false, &dy_last, false, kk, p, o);
            flex(transpose(&dwt, kk, o), [o, c, K, K])
        });
        let x = need[0].then(|| {
            let dcols = matmul(&floats(&w), true, &dy, false, kk, o, p);
            flex(col2im(&dcols, c, n, (h, wd), (ho, wo), None), [c, n, h, wd])
        });
        let bias = need[2].then(|| flex(row_sums(&dy, o), [o]));
        LayerGrads { x, weight, bias }
    }

    fn conv_up_backward(
        x: FlexTensor,
        w: FlexTensor,
        dy: FlexTensor,
        need: [bool; 3],
    ) -> LayerGrads<Self> {
        let _span = profile::span("conv_up_backward");
        let [c, n, h, wd] = dims(&x);
        let o = dims(&w)[1];
        let (p, kk) = (n * h * wd, o * K * K);
        let dy = floats(&dy);
        let dcols = (need[0] || need[1]).then(|| im2col(&dy, o, n, (2 * h, 2 * wd), (h, wd)));
        let dcols = dcols.as_deref().unwrap_or_default();
        let x_grad = need[0].then(|| {
            let dx = matmul(&floats(&w), false, dcols, false, c, kk, p);
            flex(dx, [c, n, h, wd])
        });
        // dW' [kk, c] = dcols [kk, P] x x' [P, c], as in `conv_down_backward`.
        let weight = need[1].then(|| {
            let x_last = transpose(&floats(&x), c, p);
            let dwt = matmul(dcols, false, &x_last, false, kk, p, c);
            flex(transpose(&dwt, kk, c), [c, o, K, K])
        });
        let bias = need[2].then(|| flex(row_sums(&dy, o), [o]));
        LayerGrads {
            x: x_grad,
            weight,
            bias,
        }
    }

    fn activation_backward(y: FlexTensor, dy: FlexTensor, f: Activation) -> FlexTensor {
        let _span = profile::span("activation_backward");
        let (ys, dys) = (floats(&y), floats(&dy));
        let dx = match f {
            Activation::Sigmoid => map2(&ys, &dys, |y, d| d * y * (1.0 - y)),
            Activation::Tanh => map2(&ys, &dys, |y, d| d * (1.0 - y * y)),
            Activation::Leaky => map2(&ys, &dys, |y, d| if y > 0.0 { d } else { d * LEAKY_SLOPE }),
        };
        flex(dx, dims(&y))
    }

    fn leaky_bn_backward(
        x: FlexTensor,
        gamma: FlexTensor,
        dy: FlexTensor,
        [mean, var]: [FlexTensor; 2],
        eps: f64,
        need: [bool; 3],
    ) -> LayerGrads<Self> {
        let _span = profile::span("leaky_bn_backward");
        let c = dims(&x)[0];
        let (xs, dys, g) = (floats(&x), floats(&dy), floats(&gamma));
        let m = xs.len() / c;
        // The forward's batch statistics, not computed again.
        let (mean, var) = (floats(&mean), floats(&var));
        let inv: Vec<f32> = var.iter().map(|v| 1.0 / (v + eps as f32).sqrt()).collect();
        // Per channel: sum of dy (beta's gradient) and of dy * x_hat (gamma's).
        let sums: Vec<(f64, f64)> = (xs.par_chunks(m).zip(dys.par_chunks(m)))
            .zip(mean.par_iter().zip(inv.par_iter()))
            .map(|((xv, dv), (&mu, &inv))| bn_sums(xv, dv, mu, inv))
            .collect();
        let x_grad = need[0].then(|| {
            let channel = |ci: usize| BnChannel {
                k: g[ci] * inv[ci],
                mean: mean[ci],
                inv: inv[ci],
                mean_dy: sums[ci].0 as f32 / m as f32,
                mean_dy_xhat: sums[ci].1 as f32 / m as f32,
            };
            // SAFETY: each channel's chunk is written whole.
            let dx = unsafe {
                written(xs.len(), |dx| {
                    dx.par_chunks_mut(m)
                        .zip(xs.par_chunks(m).zip(dys.par_chunks(m)))
                        .enumerate()
                        .for_each(|(ci, (dst, (xv, dv)))| bn_dx(dst, xv, dv, channel(ci)))
                })
            };
            flex(dx, dims(&x))
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

/// SplitMix64's output function of the `i`-th state: a well-mixed 64-bit word per index.
fn splitmix64(i: u64) -> u64 {
    let mut z = i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Element-wise chunks a pass shares between threads.
const CHUNK: usize = 1 << 14;

/// `f` of each element, in parallel.
fn map(x: &[f32], f: impl Fn(f32) -> f32 + Sync) -> Vec<f32> {
    map2(x, x, |v, _| f(v))
}

/// `f` of each pair of elements, in parallel.
fn map2(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32 + Sync) -> Vec<f32> {
    assert_eq!(a.len(), b.len(), "map2 operands");
    // SAFETY: the chunks of `out`, `a` and `b` pair up one for one, and each is written whole.
    unsafe {
        written(a.len(), |out| {
            out.par_chunks_mut(CHUNK)
                .zip(a.par_chunks(CHUNK).zip(b.par_chunks(CHUNK)))
                .for_each(|(d, (x, y))| {
                    for (d, (&x, &y)) in d.iter_mut().zip(x.iter().zip(y)) {
                        d.write(f(x, y));
                    }
                })
        })
    }
}

/// LeakyReLU(x) * scale + shift per channel of [C, N*H*W].
fn affine(xs: &[f32], scale: &[f32], shift: &[f32]) -> Vec<f32> {
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
fn leaky(v: f32) -> f32 {
    if v > 0.0 {
        v
    } else {
        v * LEAKY_SLOPE
    }
}

/// Mean and biased variance of LeakyReLU(x) per channel of [C, N*H*W].
fn leaky_channel_stats(xs: &[f32], c: usize) -> (Vec<f32>, Vec<f32>) {
    let _span = profile::span("leaky_channel_stats");
    xs.par_chunks(xs.len() / c).map(channel_stats).unzip()
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

/// The transpose of the [rows, cols] matrix `x`. Each task takes a block of output rows
/// (columns of `x`) and moves it in tiles of 16 x 16; blocks of 64 make each source row read
/// 4 whole cache lines (faster than blocks of 16 on the wide layers, where each row read
/// was one line; `dcgan bench --profile` times `transpose`).
fn transpose(x: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let _span = profile::span("transpose");
    let block = [64, TILE]
        .into_iter()
        .find(|b| cols.is_multiple_of(*b))
        .unwrap_or(cols);
    // SAFETY: each task writes all `rows` elements of each of its `block` output rows.
    unsafe {
        written(x.len(), |out| {
            out.par_chunks_mut(block * rows)
                .enumerate()
                .for_each(|(k, dst)| {
                    let c0 = k * block;
                    for r0 in (0..rows).step_by(TILE) {
                        for j0 in (0..block).step_by(TILE) {
                            let n = ((rows - r0).min(TILE), (block - j0).min(TILE));
                            let from = &x[r0 * cols + c0 + j0..];
                            transpose_tile(from, cols, &mut dst[j0 * rows + r0..], rows, n);
                        }
                    }
                })
        })
    }
}

/// The tile side of [`transpose`].
const TILE: usize = 16;

/// Writes `dst[r * dst_stride + j] = src[j * src_stride + r]` for the `cols` x `rows` tile
/// `(cols, rows)`; a whole 16 x 16 tile goes through a local array, so the compiler sees
/// fixed-length rows.
fn transpose_tile(
    src: &[f32],
    src_stride: usize,
    dst: &mut [MaybeUninit<f32>],
    dst_stride: usize,
    (cols, rows): (usize, usize),
) {
    if (cols, rows) != (TILE, TILE) {
        for j in 0..cols {
            for r in 0..rows {
                dst[r * dst_stride + j].write(src[j * src_stride + r]);
            }
        }
        return;
    }
    let mut tile = [[0.0f32; TILE]; TILE];
    for (j, row) in tile.iter_mut().enumerate() {
        row.copy_from_slice(&src[j * src_stride..][..TILE]);
    }
    for r in 0..TILE {
        let d: &mut [MaybeUninit<f32>; TILE] = (&mut dst[r * dst_stride..][..TILE])
            .try_into()
            .expect("a whole tile row");
        for (j, d) in d.iter_mut().enumerate() {
            d.write(tile[j][r]);
        }
    }
}

/// `bias[r]` added to each element of row r of the matrix `m`.
fn add_to_rows(m: &mut [f32], bias: &[f32]) {
    let _span = profile::span("add_to_rows");
    m.par_chunks_mut(m.len() / bias.len())
        .zip(bias.par_iter())
        .for_each(|(row, b)| row.iter_mut().for_each(|v| *v += b));
}

/// [A, B, HW] -> [B, A, HW], planes of HW floats copied whole.
fn swap_outer(x: &[f32], [a, b]: [usize; 2], hw: usize) -> Vec<f32> {
    // SAFETY: each chunk of the output (one index of B) writes all `a` of its planes.
    unsafe {
        written(x.len(), |out| {
            out.par_chunks_mut(a * hw)
                .enumerate()
                .for_each(|(bi, dst)| {
                    for (ai, d) in dst.chunks_exact_mut(hw).enumerate() {
                        copy(d, &x[(ai * b + bi) * hw..][..hw]);
                    }
                })
        })
    }
}

/// The output positions `i` whose tap `2i + k - 1` lands inside a side of `len` pixels.
fn valid(k: usize, len: usize, out: usize) -> std::ops::Range<usize> {
    let first = usize::from(k == 0);
    // 2i + k - 1 <= len - 1  <=>  i <= (len - k) / 2
    let last = len.checked_sub(k).map_or(0, |r| r / 2 + 1).min(out);
    first..last.max(first)
}

/// Input planes [C, N, H, W] to columns [C*16, N*Ho*Wo] for a kernel-4, stride-2, padding-1
/// convolution with output grid Ho x Wo; out-of-image taps are zero.
fn im2col(
    src: &[f32],
    c: usize,
    n: usize,
    (h, w): (usize, usize),
    (ho, wo): (usize, usize),
) -> Vec<f32> {
    let _span = profile::span("im2col");
    assert!(
        w == 2 * wo && w <= MAX_SIDE,
        "im2col: a stride-2 layer halves each side"
    );
    match wo {
        1 => return im2col_narrow::<1>(src, c, n, h, ho),
        2 => return im2col_narrow::<2>(src, c, n, h, ho),
        4 => return im2col_narrow::<4>(src, c, n, h, ho),
        8 => return im2col_narrow::<8>(src, c, n, h, ho),
        _ => {}
    }
    let p = n * ho * wo;
    // SAFETY: each block writes all four of its rows whole.
    unsafe {
        tap_blocks(c, p, |ci, kh, dst| {
            let rows = valid(kh, h, ho);
            let (r0, rest) = dst.split_at_mut(p);
            let (r1, rest) = rest.split_at_mut(p);
            let (r2, r3) = rest.split_at_mut(p);
            for ni in 0..n {
                let plane = &src[(ci * n + ni) * h * w..][..h * w];
                for i in 0..ho {
                    let at = (ni * ho + i) * wo..(ni * ho + i + 1) * wo;
                    let (d0, d1) = (&mut r0[at.clone()], &mut r1[at.clone()]);
                    let (d2, d3) = (&mut r2[at.clone()], &mut r3[at]);
                    if !rows.contains(&i) {
                        for r in [d0, d1, d2, d3] {
                            fill(r, 0.0);
                        }
                        continue;
                    }
                    let line = &plane[(2 * i + kh - 1) * w..][..w];
                    im2col_row([d0, d1, d2, d3], line);
                }
            }
        })
    }
}

/// [`im2col`] for the narrow grids (`WO` columns, known when compiling). Their rows are a
/// few floats each: at a fixed length the compiler unrolls the row instead of looping and
/// calling `memcpy` per row (faster at widths 4 and 8; `dcgan bench --profile` times
/// `im2col`). The wide rows measured fastest as [`im2col`] copies them.
fn im2col_narrow<const WO: usize>(
    src: &[f32],
    c: usize,
    n: usize,
    h: usize,
    ho: usize,
) -> Vec<f32> {
    let w = 2 * WO;
    let p = n * ho * WO;
    // SAFETY: each block writes all four of its rows whole.
    unsafe {
        tap_blocks(c, p, |ci, kh, dst| {
            let rows = valid(kh, h, ho);
            // The four tap rows kw = 0..3, each cut into grid rows of WO.
            let mut rows_of = dst.chunks_exact_mut(p);
            let mut next = || rows_of.next().expect("4 rows").chunks_exact_mut(WO);
            let (mut r0, mut r1, mut r2, mut r3) = (next(), next(), next(), next());
            for ni in 0..n {
                let plane = &src[(ci * n + ni) * h * w..][..h * w];
                for i in 0..ho {
                    let (d0, d1, d2, d3) = (
                        grid_row::<WO>(&mut r0),
                        grid_row::<WO>(&mut r1),
                        grid_row::<WO>(&mut r2),
                        grid_row::<WO>(&mut r3),
                    );
                    if !rows.contains(&i) {
                        for d in [d0, d1, d2, d3] {
                            fill(d, 0.0);
                        }
                        continue;
                    }
                    let line = &plane[(2 * i + kh - 1) * w..][..2 * WO];
                    let (mut even, mut odd) = ([0.0f32; WO], [0.0f32; WO]);
                    for s in 0..WO {
                        (even[s], odd[s]) = (line[2 * s], line[2 * s + 1]);
                    }
                    d0[0].write(0.0);
                    d0[1..].write_copy_of_slice(&odd[..WO - 1]);
                    d1.write_copy_of_slice(&even);
                    d2.write_copy_of_slice(&odd);
                    d3[..WO - 1].write_copy_of_slice(&even[1..]);
                    d3[WO - 1].write(0.0);
                }
            }
        })
    }
}

/// The next grid row of one tap row of [`im2col_narrow`].
fn grid_row<'a, const WO: usize>(
    rows: &mut std::slice::ChunksExactMut<'a, MaybeUninit<f32>>,
) -> &'a mut [MaybeUninit<f32>; WO] {
    (rows.next().expect("a grid row").try_into()).expect("rows of WO")
}

/// The columns of [`im2col`] for `c` input channels and `p` grid positions, written in
/// parallel by blocks: `fill(ci, kh, block)` writes the rows of taps (kh, 0..4) of channel ci.
///
/// # Safety
/// `fill` must write its block whole.
unsafe fn tap_blocks(
    c: usize,
    p: usize,
    fill: impl Fn(usize, usize, &mut [MaybeUninit<f32>]) + Sync,
) -> Vec<f32> {
    // SAFETY: the blocks tile the columns, and the caller's `fill` writes each whole.
    unsafe {
        written(c * K * K * p, |cols| {
            cols.par_chunks_mut(K * p)
                .enumerate()
                .for_each(|(block, dst)| fill(block / K, block % K, dst))
        })
    }
}

/// The widest side the stride-2 layers handle (the networks' largest images, 128x128).
const MAX_SIDE: usize = 128;

/// One grid row of the four taps kw = 0..3 from input `line` (twice their length): output
/// j's tap kw reads input 2j + kw - 1, so kw = 1 and 3 read the even pixels and kw = 0 and 2
/// the odd ones, shifted by one or not. De-interleaved once, then copied (measured faster than
/// four strided loops).
fn im2col_row([d0, d1, d2, d3]: [&mut [MaybeUninit<f32>]; 4], line: &[f32]) {
    let wo = d0.len();
    let (mut even, mut odd) = ([0.0f32; MAX_SIDE / 2], [0.0f32; MAX_SIDE / 2]);
    for (s, pair) in line.chunks_exact(2).enumerate() {
        (even[s], odd[s]) = (pair[0], pair[1]);
    }
    let (even, odd) = (&even[..wo], &odd[..wo]);
    d0[0].write(0.0);
    copy(&mut d0[1..], &odd[..wo - 1]);
    copy(d1, even);
    copy(d2, odd);
    copy(&mut d3[..wo - 1], &even[1..]);
    d3[wo - 1].write(0.0);
}

fn copy(dst: &mut [MaybeUninit<f32>], src: &[f32]) {
    dst.write_copy_of_slice(src);
}

fn fill(dst: &mut [MaybeUninit<f32>], v: f32) {
    dst.iter_mut().for_each(|d| {
        d.write(v);
    });
}

/// The adjoint of [`im2col`]: sums columns back into planes [C, N, H, W] (H = 2*Ho and
/// W = 2*Wo), each starting from its channel's `bias` (or zero). Each output pixel is
/// written once, as the sum of the four taps that reach it.
fn col2im(
    cols: &[f32],
    c: usize,
    n: usize,
    (h, w): (usize, usize),
    (ho, wo): (usize, usize),
    bias: Option<&[f32]>,
) -> Vec<f32> {
    let _span = profile::span("col2im");
    assert!(
        h == 2 * ho && w == 2 * wo && w <= MAX_SIDE,
        "col2im: a stride-2 layer doubles each side"
    );
    match wo {
        1 => return col2im_at::<1>(cols, c, n, ho, bias),
        2 => return col2im_at::<2>(cols, c, n, ho, bias),
        4 => return col2im_at::<4>(cols, c, n, ho, bias),
        8 => return col2im_at::<8>(cols, c, n, ho, bias),
        16 => return col2im_at::<16>(cols, c, n, ho, bias),
        32 => return col2im_at::<32>(cols, c, n, ho, bias),
        _ => {}
    }
    let p = n * ho * wo;
    let zeros = vec![0.0f32; wo];
    // SAFETY: `tap_row` writes all w pixels of each of a plane's rows.
    unsafe {
        by_planes(c, n, h * w, |ci, ni, dst| {
            let b = bias.map_or(0.0, |b| b[ci]);
            // Row i of the grid, in the column row of tap (kh, kw); zeros off the grid.
            let base = (ci * K * K) * p + ni * ho * wo;
            let tap = |kh: usize, kw: usize, i: Option<usize>| match i {
                Some(i) if i < ho => &cols[base + (kh * K + kw) * p + i * wo..][..wo],
                _ => &zeros[..],
            };
            for (y, line) in dst.chunks_exact_mut(w).enumerate() {
                let taps = kernel_rows(y)
                    .map(|(kh, i)| [tap(kh, 0, i), tap(kh, 1, i), tap(kh, 2, i), tap(kh, 3, i)]);
                tap_row(line, &taps, b);
            }
        })
    }
}

/// [`col2im`] at the networks' grid widths (`WO` columns, known when compiling): each output
/// row's sums run over fixed-length arrays the compiler unrolls (faster than [`col2im`]'s
/// run-time rows, which remain for other widths; `dcgan bench --profile` times `col2im`).
/// The same sums in the same order.
fn col2im_at<const WO: usize>(
    cols: &[f32],
    c: usize,
    n: usize,
    ho: usize,
    bias: Option<&[f32]>,
) -> Vec<f32> {
    let (h, w) = (2 * ho, 2 * WO);
    let p = n * ho * WO;
    // SAFETY: each row's 2 * WO pixels are written.
    unsafe {
        by_planes(c, n, h * w, |ci, ni, dst| {
            let b = bias.map_or(0.0, |b| b[ci]);
            // This sample's grid in the column row of each tap kh * 4 + kw.
            let base = ci * K * K * p + ni * ho * WO;
            let grids: [&[f32]; K * K] = std::array::from_fn(|t| &cols[base + t * p..][..ho * WO]);
            let zeros = [0.0f32; WO];
            let row = |tap: usize, i: Option<usize>| -> &[f32; WO] {
                match i {
                    Some(i) if i < ho => grids[tap][i * WO..][..WO].try_into().expect("WO"),
                    _ => &zeros,
                }
            };
            for (y, line) in dst.chunks_exact_mut(w).enumerate() {
                let [(kh0, i0), (kh1, i1)] = kernel_rows(y);
                let a: [&[f32; WO]; K] = std::array::from_fn(|kw| row(kh0 * K + kw, i0));
                let e: [&[f32; WO]; K] = std::array::from_fn(|kw| row(kh1 * K + kw, i1));
                let (mut even, mut odd) = ([b; WO], [b; WO]);
                for s in 0..WO {
                    even[s] += a[1][s] + e[1][s];
                }
                for s in 1..WO {
                    even[s] += a[3][s - 1] + e[3][s - 1];
                }
                for s in 0..WO {
                    odd[s] += a[2][s] + e[2][s];
                }
                for s in 0..WO - 1 {
                    odd[s] += a[0][s + 1] + e[0][s + 1];
                }
                let line = &mut line[..2 * WO];
                for s in 0..WO {
                    line[2 * s].write(even[s]);
                    line[2 * s + 1].write(odd[s]);
                }
            }
        })
    }
}

/// The two kernel rows kh that reach output row y of [`col2im`], each with its grid row i
/// (y = 2i + kh - 1; `None` above the grid): even rows take kh = 1 (i = y/2) and kh = 3
/// (i = y/2 - 1), odd rows kh = 0 (i = y/2 + 1) and kh = 2 (i = y/2).
fn kernel_rows(y: usize) -> [(usize, Option<usize>); 2] {
    let t = y / 2;
    if y.is_multiple_of(2) {
        [(1, Some(t)), (3, t.checked_sub(1))]
    } else {
        [(0, Some(t + 1)), (2, Some(t))]
    }
}

/// Planes [C, N, HW] written in parallel, one task per plane: `fill(ci, ni, plane)`.
/// Channel-major order, so each thread reads every column row of [`col2im`] front to back.
///
/// # Safety
/// `fill` must write its plane whole.
unsafe fn by_planes(
    c: usize,
    n: usize,
    hw: usize,
    fill: impl Fn(usize, usize, &mut [MaybeUninit<f32>]) + Sync,
) -> Vec<f32> {
    let mut out = Vec::with_capacity(n * c * hw);
    let planes = Planes(out.spare_capacity_mut().as_mut_ptr(), hw);
    (0..c * n).into_par_iter().for_each(|task| {
        let (ci, ni) = (task / n, task % n);
        // SAFETY: plane ci * n + ni is inside `out`'s capacity and no other task touches it.
        fill(ci, ni, unsafe { planes.plane(ci * n + ni) });
    });
    // SAFETY: the tasks wrote every plane whole (the caller's `fill`).
    unsafe { out.set_len(n * c * hw) };
    out
}

/// The planes of an output being written in parallel, one task per plane.
#[derive(Clone, Copy)]
struct Planes(*mut MaybeUninit<f32>, usize);
// SAFETY: tasks write disjoint planes (see `plane`).
unsafe impl Send for Planes {}
unsafe impl Sync for Planes {}

impl Planes {
    /// # Safety
    /// Plane `i` must lie inside the buffer, and no other live slice may overlap it.
    #[allow(clippy::mut_from_ref)]
    unsafe fn plane(&self, i: usize) -> &mut [MaybeUninit<f32>] {
        unsafe { std::slice::from_raw_parts_mut(self.0.add(i * self.1), self.1) }
    }
}

/// One output row of [`col2im`] from the two kernel rows' taps ([kw][j]): even pixels 2s
/// take kw = 1 (j = s) and kw = 3 (j = s - 1), odd ones kw = 0 (j = s + 1) and kw = 2 (j = s).
fn tap_row(line: &mut [MaybeUninit<f32>], taps: &[[&[f32]; 4]; 2], b: f32) {
    let wo = line.len() / 2;
    let [a, c] = taps;
    let (mut even, mut odd) = ([b; MAX_SIDE / 2], [b; MAX_SIDE / 2]);
    let (even, odd) = (&mut even[..wo], &mut odd[..wo]);
    for (e, (x, y)) in even.iter_mut().zip(a[1].iter().zip(c[1])) {
        *e += x + y;
    }
    for (e, (x, y)) in even[1..].iter_mut().zip(a[3].iter().zip(c[3])) {
        *e += x + y;
    }
    for (o, (x, y)) in odd.iter_mut().zip(a[2].iter().zip(c[2])) {
        *o += x + y;
    }
    for (o, (x, y)) in odd.iter_mut().zip(a[0][1..].iter().zip(&c[0][1..])) {
        *o += x + y;
    }
    for (pair, (e, o)) in line.chunks_exact_mut(2).zip(even.iter().zip(odd.iter())) {
        pair[0].write(*e);
        pair[1].write(*o);
    }
}

/// Defines a function whose body also exists compiled for AVX2, taken where the processor
/// has it. The binary targets baseline x86-64, whose SSE2 vectors are half as wide; built for
/// AVX2, the BatchNorm passes took about half the time (`dcgan bench --profile`). The body must call nothing that is
/// not inlined (no iterator sums), or that part runs at the baseline. Only the instructions
/// differ: Rust never fuses or reorders float operations on its own, so both give the same
/// bits.
macro_rules! with_avx2 {
    ($(#[$attr:meta])* fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$attr])*
        fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            fn body($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2")]
                fn avx2_body($($arg: $ty),*) $(-> $ret)? {
                    body($($arg),*)
                }
                if avx2() {
                    // SAFETY: the processor has AVX2, checked just now.
                    return unsafe { avx2_body($($arg),*) };
                }
            }
            body($($arg),*)
        }
    };
}

#[cfg(target_arch = "x86_64")]
fn avx2() -> bool {
    #[cfg(test)]
    if tests::BASELINE_ONLY.load(std::sync::atomic::Ordering::Relaxed) {
        return false;
    }
    std::is_x86_feature_detected!("avx2")
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
    fn bn_sums(xs: &[f32], dys: &[f32], mu: f32, inv: f32) -> (f64, f64) {
        let [s, sx] = lane_sums(xs, dys, |v, d| [d, d * (leaky(v) - mu) * inv]);
        (s as f64, sx as f64)
    }
}

/// One channel's constants of BatchNorm's input gradient.
#[derive(Clone, Copy)]
struct BnChannel {
    /// gamma / sqrt(var + eps).
    k: f32,
    mean: f32,
    /// 1 / sqrt(var + eps).
    inv: f32,
    mean_dy: f32,
    mean_dy_xhat: f32,
}

with_avx2! {
    /// BatchNorm + LeakyReLU's input gradient over one channel's values.
    fn bn_dx(dst: &mut [MaybeUninit<f32>], xv: &[f32], dv: &[f32], b: BnChannel) {
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

/// A vector of `len` floats that `fill` writes, without zeroing them first (each pass over
/// a step's large buffers costs as much as the copy itself).
///
/// # Safety
/// `fill` must write every one of the `len` elements.
unsafe fn written(len: usize, fill: impl FnOnce(&mut [MaybeUninit<f32>])) -> Vec<f32> {
    let mut v = Vec::with_capacity(len);
    fill(&mut v.spare_capacity_mut()[..len]);
    // SAFETY: the caller's promise: all `len` elements were written.
    unsafe { v.set_len(len) };
    v
}

/// Independent partial sums a reduction keeps, so its adds vectorise instead of each
/// waiting for the one before (the order is fixed, so the result is the same everywhere).
const LANES: usize = 16;

/// The sums over i of `f(x[i], y[i])`, each of its Q terms summed in [`LANES`] lanes.
#[inline(always)]
fn lane_sums<const Q: usize>(x: &[f32], y: &[f32], f: impl Fn(f32, f32) -> [f32; Q]) -> [f32; Q] {
    assert_eq!(x.len(), y.len(), "lane_sums operands");
    let mut acc = [[0.0f32; LANES]; Q];
    let (xc, yc) = (x.chunks_exact(LANES), y.chunks_exact(LANES));
    let (xt, yt) = (xc.remainder(), yc.remainder());
    for (xs, ys) in xc.zip(yc) {
        for l in 0..LANES {
            let terms = f(xs[l], ys[l]);
            for q in 0..Q {
                acc[q][l] += terms[q];
            }
        }
    }
    for (l, (&a, &b)) in xt.iter().zip(yt).enumerate() {
        let terms = f(a, b);
        for q in 0..Q {
            acc[q][l] += terms[q];
        }
    }
    acc.map(|lanes| {
        let mut sum = 0.0;
        for v in lanes {
            sum += v;
        }
        sum
    })
}

#[inline(always)]
fn lane_sum(x: &[f32]) -> f32 {
    lane_sums(x, x, |v, _| [v])[0]
}

fn row_sums(m: &[f32], rows: usize) -> Vec<f32> {
    let _span = profile::span("row_sums");
    let cols = m.len() / rows;
    m.par_chunks(cols).map(lane_sum).collect()
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
    let shape = profile::Shape { m, k, n, ta, tb };
    profile::timed(shape, || {
        if k < 2 * K_SLICE {
            let parallelism = if m * n * k >= 1 << 18 {
                gemm::Parallelism::Rayon(0)
            } else {
                gemm::Parallelism::None
            };
            // SAFETY: `product` writes all m*n elements of its destination.
            return unsafe {
                written(m * n, |dst| {
                    product(dst, a, ta, b, tb, [m, k, n], 0..k, parallelism)
                })
            };
        }
        let slices: Vec<Vec<f32>> = (0..k.div_ceil(K_SLICE))
            .into_par_iter()
            .map(|i| {
                let ks = i * K_SLICE..((i + 1) * K_SLICE).min(k);
                let one = gemm::Parallelism::None;
                // SAFETY: `product` writes all m*n elements of its destination.
                unsafe { written(m * n, |dst| product(dst, a, ta, b, tb, [m, k, n], ks, one)) }
            })
            .collect();
        let mut slices = slices.into_iter();
        let mut dst = slices.next().expect("k >= 2 slices");
        for slice in slices {
            dst.iter_mut().zip(&slice).for_each(|(d, s)| *d += s);
        }
        dst
    })
}

/// `dst` = the product of `a` and `b` over the inner indices `ks` only (see [`matmul`] for
/// the layouts; `[m, k, n]` are the full operands' sizes).
#[allow(clippy::too_many_arguments)]
fn product(
    dst: &mut [MaybeUninit<f32>],
    a: &[f32],
    ta: bool,
    b: &[f32],
    tb: bool,
    [m, k, n]: [usize; 3],
    ks: std::ops::Range<usize>,
    parallelism: gemm::Parallelism,
) {
    assert!(
        dst.len() == m * n && ks.start < ks.end && ks.end <= k,
        "product sizes"
    );
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
    // of m*n floats and aliases neither operand. With `read_dst` false and a non-empty `ks`,
    // GEMM writes every element of `dst` and reads none, so it may start uninitialised.
    unsafe {
        gemm::gemm(
            m,
            n,
            ks.len(),
            dst.as_mut_ptr().cast::<f32>(),
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
/// `dcgan bench --profile` measures the machine's GEMM rate with.
pub fn square_product(a: &[f32], size: usize) -> Vec<f32> {
    matmul(a, false, a, false, size, size, size)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::{flex, floats, matmul, row_sums, transpose, valid, K_SLICE};

    /// Set while a test runs the baseline paths of `with_avx2!` functions on a processor
    /// that has AVX2.
    pub(super) static BASELINE_ONLY: AtomicBool = AtomicBool::new(false);

    /// BatchNorm forward and backward, the activations and the sums give the same bits with
    /// and without AVX2, so a run does not depend on which processor it is resumed on.
    #[test]
    fn avx2_and_baseline_paths_give_the_same_bits() {
        use burn::backend::Flex;

        use crate::nn::layer::{Activation, LayerBackend, LayerBackward};
        if !std::is_x86_feature_detected!("avx2") {
            eprintln!("NOTE: this processor has no AVX2; both runs take the baseline path");
        }
        let (n, c, side) = (4, 16, 8);
        let len = n * c * side * side;
        // Values of both signs and a spread of sizes, the same on every run.
        let x: Vec<f32> = (0..len)
            .map(|i| ((i * 7919 % 1013) as f32 - 506.0) / 97.0)
            .collect();
        let dy: Vec<f32> = (0..len)
            .map(|i| ((i * 104_729 % 997) as f32 - 498.0) / 211.0)
            .collect();
        let gamma: Vec<f32> = (0..c).map(|i| 0.5 + i as f32 / 16.0).collect();
        let run = || {
            let t = |v: &[f32]| flex(v.to_vec(), [c, n, side, side]);
            let (g, b) = (flex(gamma.clone(), [c]), flex(vec![0.1; c], [c]));
            let [y, mean, var] = Flex::leaky_bn(t(&x), g.clone(), b.clone(), 1e-3);
            let grads = Flex::leaky_bn_backward(t(&x), g, t(&dy), [mean, var], 1e-3, [true; 3]);
            let act = Flex::activation(t(&x), Activation::Leaky);
            let act_grad = Flex::activation_backward(act.clone(), t(&dy), Activation::Leaky);
            let mut out: Vec<Vec<f32>> = [y, act, act_grad]
                .iter()
                .chain([grads.x, grads.weight, grads.bias].iter().flatten())
                .map(|t| floats(t).to_vec())
                .collect();
            out.push(row_sums(&x, c));
            out.iter()
                .map(|v| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>())
                .collect::<Vec<_>>()
        };
        let fast = run();
        BASELINE_ONLY.store(true, Ordering::Relaxed);
        let baseline = run();
        BASELINE_ONLY.store(false, Ordering::Relaxed);
        assert_eq!(fast.len(), 7);
        assert!(fast == baseline, "AVX2 and baseline results differ");
    }

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

    /// Dropout masks follow burn's seed: the same seed, the same mask; the next draw, another.
    #[test]
    fn keep_masks_follow_the_seed() {
        use burn::backend::Flex;
        use burn::tensor::backend::Backend;
        use burn::tensor::ops::FloatTensorOps;
        use burn::tensor::{FloatDType, Shape};

        use crate::nn::layer::LayerBackend;
        let x = Flex::float_zeros(Shape::new([3, 1000]), &Default::default(), FloatDType::F32);
        let mask = || {
            let m = Flex::keep_mask(&x, 0.7).into_data();
            m.to_vec::<f32>().unwrap()
        };
        Flex::seed(&Default::default(), 5);
        let (a, b) = (mask(), mask());
        Flex::seed(&Default::default(), 5);
        assert_eq!(mask(), a);
        assert_ne!(a, b);
        let kept = a.iter().filter(|v| **v == 1.0).count() as f64 / a.len() as f64;
        assert!(a.iter().all(|v| *v == 0.0 || *v == 1.0));
        // 3,000 draws: the fraction's standard error is 0.008.
        assert!((kept - 0.7).abs() < 0.04, "{kept} kept");
    }

    #[test]
    fn transpose_swaps_rows_and_columns() {
        // Partial tiles and blocks of all columns; whole tiles in blocks of 16 and of 64.
        for (rows, cols) in [(37, 70), (48, 16), (32, 192)] {
            let x: Vec<f32> = (0..rows * cols).map(|i| i as f32).collect();
            let y = transpose(&x, rows, cols);
            for r in 0..rows {
                for c in 0..cols {
                    assert_eq!(y[c * rows + r], x[r * cols + c]);
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
