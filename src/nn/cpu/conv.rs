//! The convolutions' layout passes on the CPU: im2col (input planes to the columns one GEMM
//! multiplies) and its adjoint col2im, for kernel 4, stride 2, padding 1.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::super::profile;
use super::buffer::{copy, fill, written};

pub(super) const K: usize = 4;

/// `bias[r]` added to each element of row r of the matrix `m`.
pub(super) fn add_to_rows(m: &mut [f32], bias: &[f32]) {
    let _span = profile::span("add_to_rows");
    m.par_chunks_mut(m.len() / bias.len())
        .zip(bias.par_iter())
        .for_each(|(row, b)| row.iter_mut().for_each(|v| *v += b));
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
pub(super) fn im2col(
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

/// The adjoint of [`im2col`]: sums columns back into planes [C, N, H, W] (H = 2*Ho and
/// W = 2*Wo), each starting from its channel's `bias` (or zero). Each output pixel is
/// written once, as the sum of the four taps that reach it.
pub(super) fn col2im(
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

#[cfg(test)]
mod tests {
    use super::valid;

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
