//! The CPU (`flex`) kernels behind [`LayerBackend`]: each convolution is im2col or col2im plus
//! one GEMM over the whole batch, and LeakyReLU + BatchNorm is a few passes per channel.
//!
//! Activations are channel-major, [C, N, H, W] ([`LayerBackend::CHANNEL_MAJOR`]): the
//! [C, N*H*W] matrices a GEMM over the whole batch reads and writes, with no layout copies
//! between layers, and each channel's values contiguous for BatchNorm. The weight gradients
//! read one operand channels-last ([N*H*W, C]), the layout GEMM packs fastest.
//!
//! By concept: `conv.rs` (im2col and col2im), `matmul.rs` (the sliced GEMM and transposes),
//! `batch_norm.rs` (the LeakyReLU + BatchNorm passes), `reduce.rs` (order-fixed sums),
//! `buffer.rs` (tensors to slices and back, unzeroed buffers, element-wise passes).

mod batch_norm;
mod buffer;
mod conv;
mod matmul;
mod reduce;

use burn::backend::flex::FlexTensor;
use burn::backend::Flex;
use burn::tensor::ops::IntTensorOps;
use burn::tensor::{Distribution, IntDType, Shape, TensorData, TensorMetadata};
use rayon::prelude::*;

use super::layer::{Activation, LayerBackend, LayerBackward, LayerGrads, LEAKY_SLOPE};
use super::profile;
use batch_norm::{affine, bn_dx, bn_sums, leaky, leaky_channel_stats, BnChannel};
use buffer::{dims, flex, floats, map, map2, swap_outer, written, CHUNK};
use conv::{add_to_rows, col2im, im2col, K};
use matmul::{matmul, transpose};
use reduce::row_sums;

pub use matmul::square_product;

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

#[cfg(test)]
mod tests {
    use super::buffer::{flex, floats};
    use super::reduce::row_sums;
    use crate::simd::both_paths;

    /// BatchNorm forward and backward, the activations and the sums give the same bits with
    /// and without AVX2, so a run does not depend on which processor it is resumed on.
    #[test]
    fn avx2_and_baseline_paths_give_the_same_bits() {
        use burn::backend::Flex;

        use crate::nn::layer::{Activation, LayerBackend, LayerBackward};
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
        let (fast, baseline) = both_paths(run);
        assert_eq!(fast.len(), 7);
        assert!(fast == baseline, "AVX2 and baseline results differ");
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
}
