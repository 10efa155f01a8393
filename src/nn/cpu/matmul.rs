//! Matrix products on the CPU: the `gemm` crate over whole batches, split along long inner
//! dimensions, and the tiled transposes around it.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::super::profile;
use super::buffer::written;

/// The transpose of the [rows, cols] matrix `x`. Each task takes a block of output rows
/// (columns of `x`) and moves it in tiles of 16 x 16; blocks of 64 make each source row read
/// 4 whole cache lines (faster than blocks of 16 on the wide layers, where each row read
/// was one line; `dcgan bench --profile` times `transpose`).
pub(super) fn transpose(x: &[f32], rows: usize, cols: usize) -> Vec<f32> {
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
pub(super) fn matmul(
    a: &[f32],
    ta: bool,
    b: &[f32],
    tb: bool,
    m: usize,
    k: usize,
    n: usize,
) -> Vec<f32> {
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
    use super::{matmul, transpose, K_SLICE};

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
}
