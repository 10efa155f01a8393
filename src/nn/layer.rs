//! The networks' heavy layers as backend operations: 4x4 stride-2 convolutions, their
//! transposes, and LeakyReLU fused with BatchNorm, each with its own backward pass.
//!
//! burn 0.21's CPU backend (`flex`) runs a transposed convolution one sample at a time,
//! computes weight gradients as a dilated convolution with the batch as channels, and
//! normalises through strided copies; profiled at batch 128, three quarters of a training
//! step went to layout shuffles and small GEMMs. [`LayerBackend`] (forward) and
//! [`LayerBackward`] let each backend supply its own kernels: `cpu/` gives the CPU one GEMM
//! per layer over the whole batch and one pass per normalisation, and WGPU has `patch_conv.rs`'s
//! matrix products and `fused_bn.rs`'s kernels; `autodiff.rs` records each layer as one node
//! of burn's autodiff graph.

use burn::backend::Wgpu;
use burn::module::{Module, Param};
use burn::tensor::activation::{leaky_relu, sigmoid};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::ops::{ConvOptions, ConvTransposeOptions, FloatTensor, FloatTensorOps};
use burn::tensor::Tensor;
use burn::tensor::{Distribution, FloatDType, TensorMetadata};

use super::fused_bn::FusedBn;
use super::patch_conv;
use super::primitive::tensor;
use crate::config::Output;

pub use super::LEAKY_SLOPE;

/// The layers' convolutions in burn's terms: what the layers are checked against.
pub(crate) fn down_options() -> ConvOptions<2> {
    ConvOptions::new([2, 2], [1, 1], [1, 1], 1)
}

pub(crate) fn up_options() -> ConvTransposeOptions<2> {
    ConvTransposeOptions::new([2, 2], [1, 1], [0, 0], [1, 1], 1)
}

/// An element-wise activation with a layer op of its own: G's output, and D's LeakyReLUs
/// outside BatchNorm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    Sigmoid,
    Tanh,
    /// LeakyReLU with slope [`LEAKY_SLOPE`].
    Leaky,
}

impl From<Output> for Activation {
    fn from(o: Output) -> Self {
        match o {
            Output::Sigmoid => Activation::Sigmoid,
            Output::Tanh => Activation::Tanh,
        }
    }
}

/// An NCHW tensor in the layout `B`'s layer ops take: [C, N, H, W] where
/// [`LayerBackend::CHANNEL_MAJOR`], else unchanged.
pub fn to_layers<B: LayerBackend>(x: Tensor<B, 4>) -> Tensor<B, 4> {
    if !B::CHANNEL_MAJOR {
        return x;
    }
    let y = B::swap_outer(x.into_primitive().tensor());
    tensor(y)
}

/// The inverse of [`to_layers`]: the layer ops' layout back to NCHW.
pub fn from_layers<B: LayerBackend>(x: Tensor<B, 4>) -> Tensor<B, 4> {
    to_layers(x)
}

/// `f` of `x` through [`LayerBackend::activation`].
pub fn activate<B: LayerBackend>(x: Tensor<B, 4>, f: Activation) -> Tensor<B, 4> {
    let y = B::activation(x.into_primitive().tensor(), f);
    tensor(y)
}

/// Gradients of one layer for its input, weight (or gamma) and bias (or beta); `None` where
/// the caller did not ask for it.
pub struct LayerGrads<B: Backend> {
    pub x: Option<FloatTensor<B>>,
    pub weight: Option<FloatTensor<B>>,
    pub bias: Option<FloatTensor<B>>,
}

/// A backend that can run the networks' layers forward: the CPU and WGPU backends with
/// kernels of their own, and burn's autodiff over them, which records each layer as one
/// graph node.
///
/// Shapes are written for NCHW activations; a backend whose layers take [C, N, H, W]
/// instead says so with [`LayerBackend::CHANNEL_MAJOR`], and the networks convert at their
/// ends ([`to_layers`], [`from_layers`]).
pub trait LayerBackend: Backend {
    /// Whether the layer ops take and return activations as [C, N, H, W]: each channel's
    /// values together, the layout of the matrices a convolution over the batch multiplies.
    const CHANNEL_MAJOR: bool;

    /// Conv2d, kernel 4, stride 2, padding 1: [N, C, H, W] * [O, C, 4, 4] -> [N, O, H/2, W/2].
    fn conv_down(
        x: FloatTensor<Self>,
        w: FloatTensor<Self>,
        b: FloatTensor<Self>,
    ) -> FloatTensor<Self>;

    /// ConvTranspose2d, kernel 4, stride 2, padding 1: [N, C, H, W] * [C, O, 4, 4] -> [N, O, 2H, 2W].
    fn conv_up(
        x: FloatTensor<Self>,
        w: FloatTensor<Self>,
        b: FloatTensor<Self>,
    ) -> FloatTensor<Self>;

    /// An activation, element by element.
    fn activation(x: FloatTensor<Self>, f: Activation) -> FloatTensor<Self>;

    /// [A, B, H, W] -> [B, A, H, W], copied: how activations enter and leave the layers of a
    /// backend that is [`LayerBackend::CHANNEL_MAJOR`].
    fn swap_outer(x: FloatTensor<Self>) -> FloatTensor<Self>;

    /// Dropout's mask for `x`: each element 1 with probability `keep`, else 0, drawn from the
    /// backend's seeded generator.
    fn keep_mask(x: &FloatTensor<Self>, keep: f64) -> FloatTensor<Self>;

    /// LeakyReLU(0.2), then BatchNorm with the batch's own statistics, over the channels of
    /// [N, C, H, W]. Returns the output and the batch mean and (biased) variance per channel,
    /// for the running averages.
    fn leaky_bn(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        eps: f64,
    ) -> [FloatTensor<Self>; 3];

    /// LeakyReLU(0.2), then `x * scale + shift` per channel: BatchNorm with fixed statistics.
    fn leaky_affine(
        x: FloatTensor<Self>,
        scale: FloatTensor<Self>,
        shift: FloatTensor<Self>,
    ) -> FloatTensor<Self>;
}

/// The layers' backward passes, on a backend that autodiff wraps: the autodiff backend's
/// graph nodes call these with what they saved of the forward pass.
///
/// A bias's gradient is the sum of `dy`, so the bias (and BatchNorm's beta) is not passed.
pub trait LayerBackward: LayerBackend {
    /// Gradients of [`LayerBackend::conv_down`] for x, weight and bias where `need` says so.
    fn conv_down_backward(
        x: FloatTensor<Self>,
        w: FloatTensor<Self>,
        dy: FloatTensor<Self>,
        need: [bool; 3],
    ) -> LayerGrads<Self>;

    /// Gradients of [`LayerBackend::conv_up`] for x, weight and bias where `need` says so.
    fn conv_up_backward(
        x: FloatTensor<Self>,
        w: FloatTensor<Self>,
        dy: FloatTensor<Self>,
        need: [bool; 3],
    ) -> LayerGrads<Self>;

    /// The gradient of [`LayerBackend::activation`] from its output `y`: dy * y * (1 - y) for
    /// sigmoid, dy * (1 - y^2) for tanh, dy or dy * slope for LeakyReLU (y has x's sign).
    fn activation_backward(
        y: FloatTensor<Self>,
        dy: FloatTensor<Self>,
        f: Activation,
    ) -> FloatTensor<Self>;

    /// Gradients of [`LayerBackend::leaky_bn`] for x, gamma and beta where `need` says so.
    /// `stats` are the batch mean and variance the forward pass returned: the CPU reuses
    /// them; the GPU's sums kernel, which reads x anyway, computes them again.
    fn leaky_bn_backward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        dy: FloatTensor<Self>,
        stats: [FloatTensor<Self>; 2],
        eps: f64,
        need: [bool; 3],
    ) -> LayerGrads<Self>;
}

/// LeakyReLU(0.2) then BatchNorm on the batch's statistics, written plainly in burn's
/// differentiable ops: what the backends' own kernels are tested against. Returns y, and the
/// mean and biased variance as [1, C, 1, 1].
pub fn textbook_leaky_bn<B: Backend>(
    x: Tensor<B, 4>,
    gamma: Tensor<B, 1>,
    beta: Tensor<B, 1>,
    eps: f64,
) -> (Tensor<B, 4>, Tensor<B, 4>, Tensor<B, 4>) {
    let c = x.dims()[1];
    let a = leaky_relu(x, LEAKY_SLOPE as f64);
    let m = a.clone().mean_dim(0).mean_dim(2).mean_dim(3);
    let v = a
        .clone()
        .sub(m.clone())
        .square()
        .mean_dim(0)
        .mean_dim(2)
        .mean_dim(3);
    let y = a
        .sub(m.clone())
        .div(v.clone().add_scalar(eps).sqrt())
        .mul(gamma.reshape([1, c, 1, 1]))
        .add(beta.reshape([1, c, 1, 1]));
    (y, m, v)
}

/// [`LayerBackend::leaky_affine`] in burn's tensor ops, in either layout: WGPU's, and the
/// autodiff backend's, which differentiates these ops rather than keeping a node of its own.
pub fn leaky_affine_ops<B: LayerBackend>(
    x: FloatTensor<B>,
    scale: FloatTensor<B>,
    shift: FloatTensor<B>,
) -> FloatTensor<B> {
    let x: Tensor<B, 4> = tensor(x);
    let scale: Tensor<B, 1> = tensor(scale);
    let shift: Tensor<B, 1> = tensor(shift);
    let c = scale.dims()[0];
    let per_channel = if B::CHANNEL_MAJOR {
        [c, 1, 1, 1]
    } else {
        [1, c, 1, 1]
    };
    leaky_relu(x, LEAKY_SLOPE as f64)
        .mul(scale.reshape(per_channel))
        .add(shift.reshape(per_channel))
        .into_primitive()
        .tensor()
}

/// On the GPU each convolution and its gradients are one matrix product over the batch, and
/// LeakyReLU + BatchNorm is two kernels of our own each way (`fused_bn.rs`); the element-wise
/// layers are burn's own ops, which its fusion backend merges with their neighbours.
impl LayerBackend for Wgpu {
    const CHANNEL_MAJOR: bool = false;

    fn conv_down(
        x: FloatTensor<Self>,
        w: FloatTensor<Self>,
        b: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        patch_conv::conv_down::<Self>(x, w, b)
    }

    fn conv_up(
        x: FloatTensor<Self>,
        w: FloatTensor<Self>,
        b: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        patch_conv::conv_up::<Self>(x, w, b)
    }

    fn activation(x: FloatTensor<Self>, f: Activation) -> FloatTensor<Self> {
        let x: Tensor<Self, 4> = tensor(x);
        match f {
            Activation::Sigmoid => sigmoid(x),
            Activation::Tanh => x.tanh(),
            Activation::Leaky => leaky_relu(x, LEAKY_SLOPE as f64),
        }
        .into_primitive()
        .tensor()
    }

    fn swap_outer(x: FloatTensor<Self>) -> FloatTensor<Self> {
        let x: Tensor<Self, 4> = tensor(x);
        x.swap_dims(0, 1).into_primitive().tensor()
    }

    fn keep_mask(x: &FloatTensor<Self>, keep: f64) -> FloatTensor<Self> {
        let device = Self::float_device(x);
        Self::float_random(
            x.shape(),
            Distribution::Bernoulli(keep),
            &device,
            FloatDType::F32,
        )
    }

    fn leaky_bn(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        eps: f64,
    ) -> [FloatTensor<Self>; 3] {
        Self::fused_leaky_bn(x, gamma, beta, eps)
    }

    fn leaky_affine(
        x: FloatTensor<Self>,
        scale: FloatTensor<Self>,
        shift: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        leaky_affine_ops::<Self>(x, scale, shift)
    }
}

impl LayerBackward for Wgpu {
    fn conv_down_backward(
        x: FloatTensor<Self>,
        w: FloatTensor<Self>,
        dy: FloatTensor<Self>,
        need: [bool; 3],
    ) -> LayerGrads<Self> {
        let [x, weight, bias] = patch_conv::conv_down_backward::<Self>(x, w, dy, need);
        LayerGrads { x, weight, bias }
    }

    fn conv_up_backward(
        x: FloatTensor<Self>,
        w: FloatTensor<Self>,
        dy: FloatTensor<Self>,
        need: [bool; 3],
    ) -> LayerGrads<Self> {
        let [x, weight, bias] = patch_conv::conv_up_backward::<Self>(x, w, dy, need);
        LayerGrads { x, weight, bias }
    }

    fn activation_backward(
        y: FloatTensor<Self>,
        dy: FloatTensor<Self>,
        f: Activation,
    ) -> FloatTensor<Self> {
        let y: Tensor<Self, 4> = tensor(y);
        let dy: Tensor<Self, 4> = tensor(dy);
        let slope = match f {
            Activation::Sigmoid => y.clone().mul(y.neg().add_scalar(1.0)),
            Activation::Tanh => y.square().neg().add_scalar(1.0),
            Activation::Leaky => y
                .greater_elem(0.0)
                .float()
                .mul_scalar(1.0 - LEAKY_SLOPE)
                .add_scalar(LEAKY_SLOPE),
        };
        dy.mul(slope).into_primitive().tensor()
    }

    fn leaky_bn_backward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        dy: FloatTensor<Self>,
        _stats: [FloatTensor<Self>; 2],
        eps: f64,
        need: [bool; 3],
    ) -> LayerGrads<Self> {
        let [dx, dgamma, dbeta] = Self::fused_leaky_bn_backward(x, gamma, dy, eps);
        LayerGrads {
            x: need[0].then_some(dx),
            weight: need[1].then_some(dgamma),
            bias: need[2].then_some(dbeta),
        }
    }
}

/// Training backends: autodiff over a backend whose inference twin also has the convolutions.
pub trait TrainBackend: AutodiffBackend<InnerBackend: LayerBackward> + LayerBackend {}
impl<B> TrainBackend for B
where
    B: AutodiffBackend + LayerBackend,
    B::InnerBackend: LayerBackward,
{
}

/// A convolution layer of the notebook's networks (always kernel 4, stride 2, padding 1).
#[derive(Module, Debug)]
pub struct Conv<B: Backend> {
    /// [out, in, 4, 4] for a convolution; [in, out, 4, 4] for a transposed one, as PyTorch.
    pub weight: Param<Tensor<B, 4>>,
    pub bias: Param<Tensor<B, 1>>,
    #[module(skip)]
    pub transposed: bool,
}

impl<B: LayerBackend> Conv<B> {
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let x = x.into_primitive().tensor();
        let w = self.weight.val().into_primitive().tensor();
        let b = self.bias.val().into_primitive().tensor();
        tensor(if self.transposed {
            B::conv_up(x, w, b)
        } else {
            B::conv_down(x, w, b)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, Flex};
    use burn::tensor::module::{conv2d, conv_transpose2d};
    use burn::tensor::Distribution;

    type AD = Autodiff<Flex>;

    fn rand<const D: usize>(shape: [usize; D]) -> Tensor<AD, D> {
        Tensor::random(shape, Distribution::Uniform(-1.0, 1.0), &Default::default())
    }

    /// `ours` within `tol` of `theirs`, relative to the largest of `theirs` (at least 1): the
    /// sums run in different orders, so float32 rounding grows with the values' scale.
    fn assert_close<const D: usize>(
        ours: Tensor<Flex, D>,
        theirs: Tensor<Flex, D>,
        tol: f32,
        what: &str,
    ) {
        let scale = theirs.clone().abs().max().into_scalar().max(1.0);
        let diff = ours.sub(theirs).abs().max().into_scalar();
        assert!(
            diff <= tol * scale,
            "{what}: differs by {diff} at scale {scale}"
        );
    }

    /// Forward values and all three gradients agree with burn's own convolution ops, at a
    /// small odd-sized layer, at ones the size of the networks', at every grid width the
    /// CPU kernels specialise (1 to 32 columns), and at the 128-pixel networks' widest layer.
    fn check(transposed: bool) {
        let widest = if transposed {
            (1, 4, 3, 64) // G's last layer at 128 pixels: 64x64 to 128x128
        } else {
            (1, 3, 4, 128) // D's first layer at 128 pixels
        };
        let shapes = [
            (3, 5, 4, 6),
            (2, 64, 32, 32),
            (2, 20, 3, 8),
            (2, 6, 5, 4),
            (1, 3, 2, 2),
            widest,
        ];
        for shape in shapes {
            check_at(transposed, shape);
        }
    }

    fn check_at(transposed: bool, (n, c, o, h): (usize, usize, usize, usize)) {
        let x = rand([n, c, h, h]).require_grad();
        let w = rand(if transposed {
            [c, o, 4, 4]
        } else {
            [o, c, 4, 4]
        })
        .require_grad();
        let b = rand([o]).require_grad();
        let conv = Conv {
            weight: Param::from_tensor(w.clone()),
            bias: Param::from_tensor(b.clone()),
            transposed,
        };
        let ours = from_layers(conv.forward(to_layers(x.clone())));
        let theirs = if transposed {
            conv_transpose2d(x.clone(), w.clone(), Some(b.clone()), up_options())
        } else {
            conv2d(x.clone(), w.clone(), Some(b.clone()), down_options())
        };
        assert_eq!(ours.dims(), theirs.dims());
        let at = format!("[{n}, {c}, {h}, {h}] to {o} channels");
        assert_close(ours.clone().inner(), theirs.clone().inner(), TOL, &at);

        // A loss that weighs every output differently, so every gradient entry is tested.
        let r = rand(ours.dims());
        let g1 = ours.mul(r.clone()).sum().backward();
        let g2 = theirs.mul(r).sum().backward();
        let grad = |t: &Tensor<AD, 4>, g| t.grad(g).unwrap();
        assert_close(
            grad(&x, &g1),
            grad(&x, &g2),
            TOL,
            &format!("{at}: x gradient"),
        );
        assert_close(
            grad(&w, &g1),
            grad(&w, &g2),
            TOL,
            &format!("{at}: weight gradient"),
        );
        let (b1, b2) = (b.grad(&g1).unwrap(), b.grad(&g2).unwrap());
        assert_close(b1, b2, TOL, &format!("{at}: bias gradient"));
    }

    /// Relative tolerance of the comparisons with burn's ops: float32 sums of up to a few
    /// thousand terms, added in another order.
    const TOL: f32 = 4e-6;

    #[test]
    fn leaky_bn_matches_burn_ops() {
        for (n, c, h) in [(4, 3, 5), (8, 16, 16)] {
            leaky_bn_at(n, c, h);
        }
    }

    fn leaky_bn_at(n: usize, c: usize, h: usize) {
        let x = rand([n, c, h, h]).require_grad();
        let gamma = rand([c]).require_grad();
        let beta = rand([c]).require_grad();
        let eps = 1e-3;
        let [ours, mean, var] = AD::leaky_bn(
            to_layers(x.clone()).into_primitive().tensor(),
            gamma.clone().into_primitive().tensor(),
            beta.clone().into_primitive().tensor(),
            eps,
        );
        let ours = from_layers(tensor::<AD, 4>(ours));
        let (theirs, m, v) = textbook_leaky_bn(x.clone(), gamma.clone(), beta.clone(), eps);
        let at = format!("[{n}, {c}, {h}, {h}]");
        assert_close(ours.clone().inner(), theirs.clone().inner(), TOL, &at);
        let mean: Tensor<AD, 1> = tensor(mean);
        let var: Tensor<AD, 1> = tensor(var);
        assert_close(
            mean.inner(),
            m.reshape([c]).inner(),
            TOL,
            &format!("{at}: mean"),
        );
        assert_close(
            var.inner(),
            v.reshape([c]).inner(),
            TOL,
            &format!("{at}: variance"),
        );

        let r = rand(ours.dims());
        let g1 = ours.mul(r.clone()).sum().backward();
        let g2 = theirs.mul(r).sum().backward();
        let grads = [(&gamma, "gamma"), (&beta, "beta")];
        assert_close(
            x.grad(&g1).unwrap(),
            x.grad(&g2).unwrap(),
            TOL,
            &format!("{at}: x gradient"),
        );
        for (t, name) in grads {
            let what = format!("{at}: {name} gradient");
            assert_close(t.grad(&g1).unwrap(), t.grad(&g2).unwrap(), TOL, &what);
        }
    }

    /// Each activation and its gradient, against burn's own ops.
    #[test]
    fn activations_match_burn_ops() {
        for f in [Activation::Sigmoid, Activation::Tanh, Activation::Leaky] {
            let x = rand([3, 4, 5, 6]).mul_scalar(4.0).require_grad();
            let ours = activate(x.clone(), f);
            let theirs = match f {
                Activation::Sigmoid => sigmoid(x.clone()),
                Activation::Tanh => x.clone().tanh(),
                Activation::Leaky => leaky_relu(x.clone(), LEAKY_SLOPE as f64),
            };
            let what = format!("{f:?}");
            assert_close(ours.clone().inner(), theirs.clone().inner(), TOL, &what);
            let r = rand(ours.dims());
            let g1 = ours.mul(r.clone()).sum().backward();
            let g2 = theirs.mul(r).sum().backward();
            let (d1, d2) = (x.grad(&g1).unwrap(), x.grad(&g2).unwrap());
            assert_close(d1, d2, TOL, &format!("{what} gradient"));
        }
    }

    #[test]
    fn conv_down_matches_burn() {
        check(false);
    }

    #[test]
    fn conv_up_matches_burn() {
        check(true);
    }
}
