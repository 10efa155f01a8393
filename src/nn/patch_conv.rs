//! The networks' 4x4 stride-2 convolutions, forward and both backward passes, as one large
//! matrix product each over the whole batch, written in tensor operations so any backend runs
//! them. Used on the GPU: burn 0.21's WGSL path has only a direct convolution kernel (one thread
//! per output, no tiling), and computes a weight gradient as a convolution whose kernel is a
//! whole feature map; its matrix product is tiled and autotuned.
//!
//! Layout: a picture's positions are gathered into patch rows by `select` with a fixed index
//! table (im2col) and scattered back by `select_assign` with addition (col2im), so a layer is
//! a gather, a product and a scatter, with no strided copies. Taps that fall in the padding
//! point at position 0 and are multiplied by a 0/1 mask.

use std::any::{Any, TypeId};
use std::sync::Mutex;

use burn::tensor::backend::Backend;
use burn::tensor::ops::FloatTensor;
use burn::tensor::{IndexingUpdateOp, Int, Tensor, TensorData};

use super::primitive::{primitive, tensor};

/// Taps per output position: the 4x4 kernel.
const TAPS: usize = 16;

/// [`make_patch_table`], uploaded once per backend, device and size and then reused, so a
/// training step sends no index tables to the device.
fn patch_table<B: Backend>(big: usize, device: &B::Device) -> (Tensor<B, 1, Int>, Tensor<B, 3>) {
    type Table = (TypeId, String, usize, Box<dyn Any + Send>);
    static TABLES: Mutex<Vec<Table>> = Mutex::new(Vec::new());
    let key = (TypeId::of::<B>(), format!("{device:?}"), big);
    let mut tables = TABLES.lock().unwrap_or_else(|e| e.into_inner());
    let found = tables
        .iter()
        .find(|(t, d, b, _)| (*t, d, *b) == (key.0, &key.1, key.2))
        .and_then(|(_, _, _, table)| table.downcast_ref::<(Tensor<B, 1, Int>, Tensor<B, 3>)>());
    if let Some(table) = found {
        return table.clone();
    }
    let table = make_patch_table::<B>(big, device);
    tables.push((key.0, key.1, key.2, Box::new(table.clone())));
    table
}

/// For a `big` x `big` picture and its `big/2` x `big/2` stride-2 counterpart: for each small
/// position and tap (row-major, tap fastest), the big position it touches, and 1 where that
/// position is inside the picture (0 in the padding, whose index is 0).
fn make_patch_table<B: Backend>(
    big: usize,
    device: &B::Device,
) -> (Tensor<B, 1, Int>, Tensor<B, 3>) {
    let small = big / 2;
    let mut idx = Vec::with_capacity(small * small * TAPS);
    let mut mask = Vec::with_capacity(small * small * TAPS);
    for oy in 0..small {
        for ox in 0..small {
            for ky in 0..4 {
                for kx in 0..4 {
                    let (iy, ix) = ((2 * oy + ky) as isize - 1, (2 * ox + kx) as isize - 1);
                    let inside = (0..big as isize).contains(&iy) && (0..big as isize).contains(&ix);
                    idx.push(if inside { iy * big as isize + ix } else { 0 } as i64);
                    mask.push(if inside { 1.0f32 } else { 0.0 });
                }
            }
        }
    }
    let n = idx.len();
    (
        Tensor::from_data(TensorData::new(idx, [n]), device),
        Tensor::from_data(TensorData::new(mask, [1, n, 1]), device),
    )
}

/// [N, C, H, W] -> [N, H*W, C]: channels last, so a position's channels are one row.
fn rows<B: Backend>(x: Tensor<B, 4>) -> Tensor<B, 3> {
    let [n, c, h, w] = x.dims();
    x.permute([0, 2, 3, 1]).reshape([n, h * w, c])
}

/// [N*h*w, C] -> [N, C, h, w].
fn planes<B: Backend>(x: Tensor<B, 2>, n: usize, side: usize) -> Tensor<B, 4> {
    let c = x.dims()[1];
    x.reshape([n, side, side, c]).permute([0, 3, 1, 2])
}

/// im2col: [N, H*W, C] of a `big` picture -> [N*(big/2)^2, 16*C] patch rows.
fn gather<B: Backend>(x: Tensor<B, 3>, big: usize) -> Tensor<B, 2> {
    let [n, _, c] = x.dims();
    let (idx, mask) = patch_table::<B>(big, &x.device());
    let lo = (big / 2) * (big / 2);
    x.select(1, idx).mul(mask).reshape([n * lo, TAPS * c])
}

/// col2im: [N*(big/2)^2, 16*C] patch rows summed into [N, big*big, C].
fn scatter<B: Backend>(cols: Tensor<B, 2>, n: usize, big: usize) -> Tensor<B, 3> {
    let c = cols.dims()[1] / TAPS;
    let lo = (big / 2) * (big / 2);
    let (idx, mask) = patch_table::<B>(big, &cols.device());
    let cols = cols.reshape([n, lo * TAPS, c]).mul(mask);
    Tensor::zeros([n, big * big, c], &cols.device()).select_assign(
        1,
        idx,
        cols,
        IndexingUpdateOp::Add,
    )
}

/// A [O, C, 4, 4] convolution weight as the [16*C, O] matrix patch rows multiply.
fn down_matrix<B: Backend>(w: Tensor<B, 4>) -> Tensor<B, 2> {
    let [o, c, _, _] = w.dims();
    w.permute([2, 3, 1, 0]).reshape([TAPS * c, o])
}

/// A [C, O, 4, 4] transposed-convolution weight as the [C, 16*O] matrix that makes patch rows.
fn up_matrix<B: Backend>(w: Tensor<B, 4>) -> Tensor<B, 2> {
    let [c, o, _, _] = w.dims();
    w.permute([0, 2, 3, 1]).reshape([c, TAPS * o])
}

/// Conv2d, kernel 4, stride 2, padding 1: [N, C, H, W] * [O, C, 4, 4] + [O] -> [N, O, H/2, W/2].
pub fn conv_down<B: Backend>(
    x: FloatTensor<B>,
    w: FloatTensor<B>,
    b: FloatTensor<B>,
) -> FloatTensor<B> {
    let x: Tensor<B, 4> = tensor(x);
    let [n, _, big, _] = x.dims();
    let o = w_dims::<B>(&w)[0];
    let cols = gather(rows(x), big); // [N*L, 16*C]
    let y = cols
        .matmul(down_matrix(tensor(w)))
        .add(tensor::<B, 1>(b).reshape([1, o])); // [N*L, O]
    primitive(planes(y, n, big / 2))
}

/// Gradients of [`conv_down`] for x, weight and bias where `need` says so.
pub fn conv_down_backward<B: Backend>(
    x: FloatTensor<B>,
    w: FloatTensor<B>,
    dy: FloatTensor<B>,
    need: [bool; 3],
) -> [Option<FloatTensor<B>>; 3] {
    let x: Tensor<B, 4> = tensor(x);
    let w: Tensor<B, 4> = tensor(w);
    let [n, c, big, _] = x.dims();
    let [o, _, _, _] = w.dims();
    let dy = rows(tensor::<B, 4>(dy)).reshape([n * (big / 2) * (big / 2), o]); // [N*L, O]
    let dx = need[0].then(|| {
        let dcols = dy.clone().matmul(down_matrix(w).transpose()); // [N*L, 16*C]
        let dx = scatter(dcols, n, big).reshape([n * big * big, c]);
        primitive(planes(dx, n, big))
    });
    let dw = need[1].then(|| {
        let dw = gather(rows(x), big).transpose().matmul(dy.clone()); // [16*C, O]
        primitive(dw.reshape([4, 4, c, o]).permute([3, 2, 0, 1]))
    });
    let db = need[2].then(|| primitive(dy.sum_dim(0).reshape([o])));
    [dx, dw, db]
}

/// ConvTranspose2d, kernel 4, stride 2, padding 1: [N, C, H, W] * [C, O, 4, 4] + [O]
/// -> [N, O, 2H, 2W].
pub fn conv_up<B: Backend>(
    x: FloatTensor<B>,
    w: FloatTensor<B>,
    b: FloatTensor<B>,
) -> FloatTensor<B> {
    let x: Tensor<B, 4> = tensor(x);
    let [n, c, small, _] = x.dims();
    let o = w_dims::<B>(&w)[1];
    let big = 2 * small;
    let cols = rows(x)
        .reshape([n * small * small, c])
        .matmul(up_matrix(tensor(w))); // [N*l, 16*O]
    let y = scatter(cols, n, big).add(tensor::<B, 1>(b).reshape([1, 1, o])); // [N, big^2, O]
    primitive(planes(y.reshape([n * big * big, o]), n, big))
}

/// Gradients of [`conv_up`] for x, weight and bias where `need` says so.
pub fn conv_up_backward<B: Backend>(
    x: FloatTensor<B>,
    w: FloatTensor<B>,
    dy: FloatTensor<B>,
    need: [bool; 3],
) -> [Option<FloatTensor<B>>; 3] {
    let x: Tensor<B, 4> = tensor(x);
    let w: Tensor<B, 4> = tensor(w);
    let [n, c, small, _] = x.dims();
    let [_, o, _, _] = w.dims();
    let big = 2 * small;
    let dy = rows(tensor::<B, 4>(dy)); // [N, big^2, O]
    let db = need[2].then(|| primitive(dy.clone().sum_dim(1).sum_dim(0).reshape([o])));
    let dcols = gather(dy, big); // [N*l, 16*O]
    let dx = need[0].then(|| {
        let dx = dcols.clone().matmul(up_matrix(w).transpose()); // [N*l, C]
        primitive(planes(dx, n, small))
    });
    let dw = need[1].then(|| {
        let x = rows(x).reshape([n * small * small, c]);
        let dw = x.transpose().matmul(dcols); // [C, 16*O]
        primitive(dw.reshape([c, 4, 4, o]).permute([0, 3, 1, 2]))
    });
    [dx, dw, db]
}

fn w_dims<B: Backend>(w: &FloatTensor<B>) -> [usize; 4] {
    tensor::<B, 4>(w.clone()).dims()
}
