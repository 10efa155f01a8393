//! LeakyReLU + BatchNorm as GPU kernels of our own: two launches forward (per-channel
//! statistics, then normalise) and two backward (per-channel sums, then the input gradient).
//!
//! burn's tensor ops need a reduction per axis per statistic (the channels of an NCHW tensor
//! are not contiguous), and each reduction cuts its fused element-wise block in two; counted
//! on lavapipe, most of a WGPU step's ~600 launches came from these layers.
//!
//! The kernels are CubeCL, so they serve any cubecl runtime (WGPU today). Behind burn's
//! fusion backend they run as custom operations in its stream, like burn's own vision ops.

// In a `#[cube]` kernel, `acc += v` on a variable that started as a literal fails when the
// kernel is expanded ("mutable operation on a const variable"); `acc = acc + v` is the form
// cubecl 0.10 accepts.
#![allow(clippy::assign_op_pattern)]

use std::marker::PhantomData;

use burn::tensor::{DType, Shape, TensorMetadata};
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::ops::numeric::empty_device_contiguous_dtype;
use burn_cubecl::tensor::CubeTensor;
use burn_cubecl::{BoolElement, CubeBackend, CubeRuntime, FloatElement, IntElement};
use burn_fusion::stream::{Operation, OperationStreams};
use burn_fusion::{Fusion, FusionBackend, FusionRuntime};
use burn_ir::{CustomOpIr, HandleContainer, OperationIr, TensorIr};
use cubecl::prelude::*;
use cubecl::{calculate_cube_count_elemwise, CubeCount, CubeDim};

use burn::tensor::backend::Backend;
use burn::tensor::ops::FloatTensor;

use super::LEAKY_SLOPE;

/// Threads per channel in the reduction kernels (a power of two).
const THREADS: u32 = 256;

/// The notebook's LeakyReLU: max(v, slope v) is exact for a slope below 1.
#[cube]
fn leaky(v: f32) -> f32 {
    f32::max(v, v * LEAKY_SLOPE)
}

#[cube]
fn leaky_slope(v: f32) -> f32 {
    select(v > 0.0, 1.0, LEAKY_SLOPE)
}

/// Sum of one value per thread over the cube, returned to every thread.
#[cube]
fn cube_sum(v: f32, #[comptime] threads: u32) -> f32 {
    let mut sm = SharedMemory::<f32>::new(threads as usize);
    let tid = UNIT_POS_X as usize;
    sm[tid] = v;
    sync_cube();
    let mut s = (CUBE_DIM_X / 2) as usize;
    while s > 0 {
        if tid < s {
            sm[tid] = sm[tid] + sm[tid + s];
        }
        sync_cube();
        s = s / 2;
    }
    sm[0]
}

/// Where the `i`-th of a channel's N*H*W values is in an NCHW tensor: this cube's channel.
#[cube]
fn at(i: usize, hw: usize) -> usize {
    ((i / hw) * CUBE_COUNT_X as usize + CUBE_POS_X as usize) * hw + i % hw
}

/// The mean of LeakyReLU(x) over this cube's channel, given to every thread.
#[cube]
fn channel_mean(x: &Tensor<f32>, hw: usize, total: usize, #[comptime] threads: u32) -> f32 {
    let mut acc = 0.0f32;
    let mut i = UNIT_POS_X as usize;
    while i < total {
        acc = acc + leaky(x[at(i, hw)]);
        i = i + threads as usize;
    }
    cube_sum(acc, threads) / f32::cast_from(total)
}

/// One cube per channel: mean and biased variance of LeakyReLU(x) over batch and pixels,
/// in two passes (a one-pass sum of squares loses digits on large activations).
#[cube(launch)]
fn stats_kernel(
    x: &Tensor<f32>,
    mean: &mut Tensor<f32>,
    var: &mut Tensor<f32>,
    batch: u32,
    hw: u32,
    #[comptime] threads: u32,
) {
    let c = CUBE_POS_X as usize;
    let tid = UNIT_POS_X as usize;
    let hw = hw as usize;
    let total = batch as usize * hw;
    let step = threads as usize;

    let m = channel_mean(x, hw, total, threads);

    let mut acc2 = 0.0f32;
    let mut i = tid;
    while i < total {
        let d = leaky(x[at(i, hw)]) - m;
        acc2 = acc2 + d * d;
        i = i + step;
    }
    let v = cube_sum(acc2, threads) / f32::cast_from(total);
    if tid == 0 {
        mean[c] = m;
        var[c] = v;
    }
}

/// y = LeakyReLU(x) * scale + shift, with scale and shift from the batch statistics.
#[cube(launch)]
fn normalise_kernel(
    x: &Tensor<f32>,
    mean: &Tensor<f32>,
    var: &Tensor<f32>,
    gamma: &Tensor<f32>,
    beta: &Tensor<f32>,
    y: &mut Tensor<f32>,
    channels: u32,
    hw: u32,
    eps: f32,
) {
    let i = ABSOLUTE_POS;
    if i >= y.len() {
        terminate!();
    }
    let c = (i / hw as usize) % channels as usize;
    let scale = gamma[c] / f32::sqrt(var[c] + eps);
    y[i] = leaky(x[i]) * scale + (beta[c] - mean[c] * scale);
}

/// One cube per channel: the statistics again, then the sums the gradients need:
/// dbeta = sum(dy), dgamma = sum(dy * xhat); `inv` = 1 / sqrt(var + eps) for the next kernel.
#[cube(launch)]
fn backward_sums_kernel(
    x: &Tensor<f32>,
    dy: &Tensor<f32>,
    mean: &mut Tensor<f32>,
    inv: &mut Tensor<f32>,
    dgamma: &mut Tensor<f32>,
    dbeta: &mut Tensor<f32>,
    batch: u32,
    hw: u32,
    eps: f32,
    #[comptime] threads: u32,
) {
    let c = CUBE_POS_X as usize;
    let tid = UNIT_POS_X as usize;
    let hw = hw as usize;
    let total = batch as usize * hw;
    let step = threads as usize;

    let m = channel_mean(x, hw, total, threads);

    let mut sq = 0.0f32;
    let mut sdy = 0.0f32;
    let mut sdyd = 0.0f32;
    let mut i = tid;
    while i < total {
        let k = at(i, hw);
        let d = leaky(x[k]) - m;
        let g = dy[k];
        sq = sq + d * d;
        sdy = sdy + g;
        sdyd = sdyd + g * d;
        i = i + step;
    }
    let v = cube_sum(sq, threads) / f32::cast_from(total);
    let s_dy = cube_sum(sdy, threads);
    let s_dyd = cube_sum(sdyd, threads);
    if tid == 0 {
        let r = 1.0 / f32::sqrt(v + eps);
        mean[c] = m;
        inv[c] = r;
        dbeta[c] = s_dy;
        dgamma[c] = s_dyd * r;
    }
}

/// dx = (dy - dbeta/m - xhat * dgamma/m) * gamma * inv * LeakyReLU'(x).
#[cube(launch)]
fn backward_x_kernel(
    x: &Tensor<f32>,
    dy: &Tensor<f32>,
    mean: &Tensor<f32>,
    inv: &Tensor<f32>,
    dgamma: &Tensor<f32>,
    dbeta: &Tensor<f32>,
    gamma: &Tensor<f32>,
    dx: &mut Tensor<f32>,
    channels: u32,
    per_channel: u32,
    hw: u32,
) {
    let i = ABSOLUTE_POS;
    if i >= dx.len() {
        terminate!();
    }
    let c = (i / hw as usize) % channels as usize;
    let m = f32::cast_from(per_channel);
    let v = x[i];
    let xhat = (leaky(v) - mean[c]) * inv[c];
    let da = dy[i] - dbeta[c] / m - xhat * dgamma[c] / m;
    dx[i] = da * gamma[c] * inv[c] * leaky_slope(v);
}

/// The fused layer on a backend: [`super::LayerBackend`]'s `leaky_bn` and the x, gamma and
/// beta gradients of `leaky_bn_backward`, always all three (the kernel computes them together).
pub trait FusedBn: Backend {
    /// Returns y, the batch mean and the biased batch variance.
    fn fused_leaky_bn(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        eps: f64,
    ) -> [FloatTensor<Self>; 3];

    /// Returns dx, dgamma, dbeta.
    fn fused_leaky_bn_backward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        dy: FloatTensor<Self>,
        eps: f64,
    ) -> [FloatTensor<Self>; 3];
}

fn dims(x: &CubeTensor<impl CubeRuntime>) -> [usize; 4] {
    let s = x.shape();
    [s[0], s[1], s[2], s[3]]
}

fn empty<R: CubeRuntime>(like: &CubeTensor<R>, shape: Shape) -> CubeTensor<R> {
    empty_device_contiguous_dtype(like.client.clone(), like.device.clone(), shape, DType::F32)
}

fn elementwise<R: CubeRuntime>(x: &CubeTensor<R>) -> (CubeCount, CubeDim) {
    let dim = CubeDim::new_1d(THREADS);
    let n = x.shape().num_elements();
    (calculate_cube_count_elemwise(&x.client, n, dim), dim)
}

fn reduction(channels: usize) -> (CubeCount, CubeDim) {
    (
        CubeCount::Static(channels as u32, 1, 1),
        CubeDim::new_1d(THREADS),
    )
}

impl<R, I, BT> FusedBn for CubeBackend<R, f32, I, BT>
where
    R: CubeRuntime,
    I: IntElement,
    BT: BoolElement,
    f32: FloatElement,
{
    fn fused_leaky_bn(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        eps: f64,
    ) -> [FloatTensor<Self>; 3] {
        let (x, gamma, beta) = (
            into_contiguous(x),
            into_contiguous(gamma),
            into_contiguous(beta),
        );
        let [n, c, h, w] = dims(&x);
        let mean = empty(&x, Shape::new([c]));
        let var = empty(&x, Shape::new([c]));
        let y = empty(&x, x.shape());
        let (count, dim) = reduction(c);
        stats_kernel::launch::<R>(
            &x.client,
            count,
            dim,
            x.clone().into_tensor_arg(),
            mean.clone().into_tensor_arg(),
            var.clone().into_tensor_arg(),
            n as u32,
            (h * w) as u32,
            THREADS,
        );
        let (count, dim) = elementwise(&x);
        normalise_kernel::launch::<R>(
            &x.client,
            count,
            dim,
            x.clone().into_tensor_arg(),
            mean.clone().into_tensor_arg(),
            var.clone().into_tensor_arg(),
            gamma.into_tensor_arg(),
            beta.into_tensor_arg(),
            y.clone().into_tensor_arg(),
            c as u32,
            (h * w) as u32,
            eps as f32,
        );
        [y, mean, var]
    }

    fn fused_leaky_bn_backward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        dy: FloatTensor<Self>,
        eps: f64,
    ) -> [FloatTensor<Self>; 3] {
        let (x, gamma, dy) = (
            into_contiguous(x),
            into_contiguous(gamma),
            into_contiguous(dy),
        );
        let [n, c, h, w] = dims(&x);
        let per_channel = Shape::new([c]);
        let [mean, inv, dgamma, dbeta] = [0; 4].map(|_| empty(&x, per_channel.clone()));
        let (count, dim) = reduction(c);
        backward_sums_kernel::launch::<R>(
            &x.client,
            count,
            dim,
            x.clone().into_tensor_arg(),
            dy.clone().into_tensor_arg(),
            mean.clone().into_tensor_arg(),
            inv.clone().into_tensor_arg(),
            dgamma.clone().into_tensor_arg(),
            dbeta.clone().into_tensor_arg(),
            n as u32,
            (h * w) as u32,
            eps as f32,
            THREADS,
        );
        let dx = empty(&x, x.shape());
        let (count, dim) = elementwise(&x);
        backward_x_kernel::launch::<R>(
            &x.client,
            count,
            dim,
            x.clone().into_tensor_arg(),
            dy.into_tensor_arg(),
            mean.into_tensor_arg(),
            inv.into_tensor_arg(),
            dgamma.clone().into_tensor_arg(),
            dbeta.clone().into_tensor_arg(),
            gamma.into_tensor_arg(),
            dx.clone().into_tensor_arg(),
            c as u32,
            (n * h * w) as u32,
            (h * w) as u32,
        );
        [dx, dgamma, dbeta]
    }
}

/// The two operations recorded in burn's fusion stream; executed, they call the inner backend.
#[derive(Clone, Debug)]
struct FusedOp<B> {
    desc: CustomOpIr,
    backward: bool,
    eps: f64,
    _b: PhantomData<B>,
}

impl<B: FusionBackend + FusedBn> Operation<B::FusionRuntime> for FusedOp<B> {
    fn execute(
        &self,
        handles: &mut HandleContainer<<B::FusionRuntime as FusionRuntime>::FusionHandle>,
    ) {
        let ([a, b, c], [o1, o2, o3]) = self.desc.as_fixed();
        let (a, b, c) = (
            handles.get_float_tensor::<B>(a),
            handles.get_float_tensor::<B>(b),
            handles.get_float_tensor::<B>(c),
        );
        let out = if self.backward {
            B::fused_leaky_bn_backward(a, b, c, self.eps)
        } else {
            B::fused_leaky_bn(a, b, c, self.eps)
        };
        for (ir, t) in [o1, o2, o3].into_iter().zip(out) {
            handles.register_float_tensor::<B>(&ir.id, t);
        }
    }
}

/// Records the operation with inputs `[a, b, c]` and outputs shaped like `[a, b, b]`
/// (forward: y, mean, var; backward: dx, dgamma, dbeta).
fn register<B: FusionBackend + FusedBn>(
    backward: bool,
    eps: f64,
    [a, b, c]: [FloatTensor<Fusion<B>>; 3],
) -> [FloatTensor<Fusion<B>>; 3] {
    let client = a.client.clone();
    let streams = OperationStreams::with_inputs([&a, &b, &c]);
    let out =
        |shape: &Shape| TensorIr::uninit(client.create_empty_handle(), shape.clone(), a.dtype);
    let outputs = [out(&a.shape), out(&b.shape), out(&b.shape)];
    let name = if backward {
        "dcgan_leaky_bn_backward"
    } else {
        "dcgan_leaky_bn"
    };
    let desc = CustomOpIr::new(name, &[a.into_ir(), b.into_ir(), c.into_ir()], &outputs);
    let op = FusedOp::<B> {
        desc: desc.clone(),
        backward,
        eps,
        _b: PhantomData,
    };
    let mut out = client
        .register(streams, OperationIr::Custom(desc), op)
        .into_iter();
    let mut next = || {
        out.next()
            .expect("the custom operation declared three outputs")
    };
    [next(), next(), next()]
}

impl<B: FusionBackend + FusedBn> FusedBn for Fusion<B> {
    fn fused_leaky_bn(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        eps: f64,
    ) -> [FloatTensor<Self>; 3] {
        register::<B>(false, eps, [x, gamma, beta])
    }

    fn fused_leaky_bn_backward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        dy: FloatTensor<Self>,
        eps: f64,
    ) -> [FloatTensor<Self>; 3] {
        register::<B>(true, eps, [x, gamma, dy])
    }
}
