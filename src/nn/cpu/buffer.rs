//! Buffers of the CPU layers: tensors to f32 slices and back, vectors written without
//! zeroing first, element-wise passes in parallel, and the [A, B] plane swap.

use std::borrow::Cow;
use std::mem::MaybeUninit;

use burn::backend::flex::FlexTensor;
use burn::tensor::{TensorData, TensorMetadata};
use rayon::prelude::*;

/// Element-wise chunks a pass shares between threads.
pub(super) const CHUNK: usize = 1 << 14;

/// `f` of each element, in parallel.
pub(super) fn map(x: &[f32], f: impl Fn(f32) -> f32 + Sync) -> Vec<f32> {
    map2(x, x, |v, _| f(v))
}

/// `f` of each pair of elements, in parallel.
pub(super) fn map2(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32 + Sync) -> Vec<f32> {
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

pub(super) fn dims(t: &FlexTensor) -> [usize; 4] {
    let s = t.shape();
    [s[0], s[1], s[2], s[3]]
}

/// The tensor's f32 values in row-major order, borrowed when already laid out that way.
pub(super) fn floats(t: &FlexTensor) -> Cow<'_, [f32]> {
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

pub(super) fn flex<const D: usize>(values: Vec<f32>, shape: [usize; D]) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape))
}

/// [A, B, HW] -> [B, A, HW], planes of HW floats copied whole.
pub(super) fn swap_outer(x: &[f32], [a, b]: [usize; 2], hw: usize) -> Vec<f32> {
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

pub(super) fn copy(dst: &mut [MaybeUninit<f32>], src: &[f32]) {
    dst.write_copy_of_slice(src);
}

pub(super) fn fill(dst: &mut [MaybeUninit<f32>], v: f32) {
    dst.iter_mut().for_each(|d| {
        d.write(v);
    });
}

/// A vector of `len` floats that `fill` writes, without zeroing them first (each pass over
/// a step's large buffers costs as much as the copy itself).
///
/// # Safety
/// `fill` must write every one of the `len` elements.
pub(super) unsafe fn written(len: usize, fill: impl FnOnce(&mut [MaybeUninit<f32>])) -> Vec<f32> {
    let mut v = Vec::with_capacity(len);
    fill(&mut v.spare_capacity_mut()[..len]);
    // SAFETY: the caller's promise: all `len` elements were written.
    unsafe { v.set_len(len) };
    v
}
