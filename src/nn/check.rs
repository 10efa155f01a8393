//! The layers against burn's own ops on any backend: the CPU's in this crate's unit tests,
//! the GPU's through `crate::testing` from `tests/wgpu.rs`.

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};

use super::layer::{down_options, up_options, LayerBackward};
use super::patch_conv::{conv_down, conv_down_backward, conv_up, conv_up_backward};
use super::primitive::{primitive, tensor};
use super::LayerBackend;

/// The largest difference between these layers and burn's own convolution ops on backend
/// `B`, over the outputs and every gradient, relative to the largest value compared.
pub fn difference_from_burn<B: burn::tensor::backend::AutodiffBackend>(device: &B::Device) -> f32 {
    use burn::tensor::module::{conv2d, conv_transpose2d};
    use rand::{Rng, SeedableRng};

    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut random = |shape: [usize; 4]| -> Tensor<B::InnerBackend, 4> {
        let v: Vec<f32> = (0..shape.iter().product())
            .map(|_| rng.random_range(-1.0..1.0))
            .collect();
        Tensor::from_data(TensorData::new(v, shape), device)
    };
    let bias = |n: usize| {
        let v: Vec<f32> = (0..n).map(|i| 0.1 * i as f32 - 0.2).collect();
        Tensor::<B::InnerBackend, 1>::from_data(TensorData::new(v, [n]), device)
    };
    let mut worst = Worst::default();
    // A small layer, and one as wide as the 128-pixel networks' widest (G's last, D's first).
    for (side, up) in [(8, false), (8, true), (128, false), (128, true)] {
        let (x, w, dy, o) = if up {
            let x = random([2, 5, side / 2, side / 2]);
            (x, random([5, 3, 4, 4]), random([2, 3, side, side]), 3)
        } else {
            let x = random([2, 3, side, side]);
            (
                x,
                random([5, 3, 4, 4]),
                random([2, 5, side / 2, side / 2]),
                5,
            )
        };
        let (x, w, dy) = (&x, &w, &dy);
        let b = bias(o);
        // burn's ops, differentiated by burn's autodiff through (y * dy).sum().
        let xa = Tensor::<B, 4>::from_inner(x.clone()).require_grad();
        let wa = Tensor::<B, 4>::from_inner(w.clone()).require_grad();
        let ba = Tensor::<B, 1>::from_inner(b.clone()).require_grad();
        let y = if up {
            conv_transpose2d(xa.clone(), wa.clone(), Some(ba.clone()), up_options())
        } else {
            conv2d(xa.clone(), wa.clone(), Some(ba.clone()), down_options())
        };
        let grads = y
            .clone()
            .mul(Tensor::from_inner(dy.clone()))
            .sum()
            .backward();
        let (px, pw, pb, pdy) = (
            primitive(x.clone()),
            primitive(w.clone()),
            primitive(b),
            primitive(dy.clone()),
        );
        let (ours, [gx, gw, gb]) = if up {
            (
                conv_up::<B::InnerBackend>(px.clone(), pw.clone(), pb),
                conv_up_backward::<B::InnerBackend>(px, pw, pdy, [true; 3]),
            )
        } else {
            (
                conv_down::<B::InnerBackend>(px.clone(), pw.clone(), pb),
                conv_down_backward::<B::InnerBackend>(px, pw, pdy, [true; 3]),
            )
        };
        worst.add(tensor::<_, 4>(ours), y.inner());
        worst.add(tensor::<_, 4>(gx.unwrap()), xa.grad(&grads).unwrap());
        worst.add(tensor::<_, 4>(gw.unwrap()), wa.grad(&grads).unwrap());
        worst.add(tensor::<_, 1>(gb.unwrap()), ba.grad(&grads).unwrap());
    }
    worst.relative()
}

/// The largest absolute difference seen, and the largest magnitude it is relative to.
#[derive(Default)]
struct Worst {
    diff: f32,
    scale: f32,
}

impl Worst {
    fn add<B: Backend, const D: usize>(&mut self, ours: Tensor<B, D>, burns: Tensor<B, D>) {
        assert_eq!(ours.dims(), burns.dims(), "shapes differ");
        let a = ours.into_data().to_vec::<f32>().expect("f32");
        let b = burns.into_data().to_vec::<f32>().expect("f32");
        for (x, y) in a.iter().zip(&b) {
            self.diff = self.diff.max((x - y).abs());
            self.scale = self.scale.max(y.abs());
        }
    }

    fn relative(&self) -> f32 {
        self.diff / self.scale.max(1e-12)
    }
}

/// [`difference_from_burn`] on a resolved backend, compiled once here rather than in each test
/// binary.
pub fn difference_from_burn_on(backend: &crate::backend::Resolved) -> f32 {
    crate::with_backend!(backend, |B, device| difference_from_burn::<
        burn::backend::Autodiff<B>,
    >(&device))
}

/// The largest difference between backend `B`'s LeakyReLU + BatchNorm layer and the textbook
/// formula on burn's differentiable ops, over the output, the batch statistics and the three
/// gradients, relative to the largest value compared, as
/// [`difference_from_burn`] is for the convolutions.
pub fn leaky_bn_difference_from_burn<B>(device: &B::Device) -> f32
where
    B: burn::tensor::backend::AutodiffBackend,
    B::InnerBackend: LayerBackward,
{
    use burn::tensor::{Tensor, TensorData};
    use rand::{Rng, SeedableRng};

    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let mut random = |shape: Vec<usize>, scale: f32, offset: f32| {
        let v: Vec<f32> = (0..shape.iter().product())
            .map(|_| offset + scale * rng.random_range(-1.0..1.0))
            .collect();
        TensorData::new(v, shape)
    };
    let mut worst = Worst::default();
    let eps = 1e-3;
    // Fewer elements per channel than threads, and more (with a remainder), and an offset mean.
    for [n, c, h] in [[3, 5, 6], [4, 3, 17]] {
        let x = Tensor::<B, 4>::from_data(random(vec![n, c, h, h], 3.0, 0.5), device);
        let gamma = Tensor::<B, 1>::from_data(random(vec![c], 0.5, 1.0), device);
        let beta = Tensor::<B, 1>::from_data(random(vec![c], 0.5, 0.0), device);
        let dy =
            Tensor::<B::InnerBackend, 4>::from_data(random(vec![n, c, h, h], 1.0, 0.0), device);
        let (x, gamma, beta) = (x.require_grad(), gamma.require_grad(), beta.require_grad());

        let (y, m, v) =
            super::layer::textbook_leaky_bn(x.clone(), gamma.clone(), beta.clone(), eps);
        let grads = y
            .clone()
            .mul(Tensor::from_inner(dy.clone()))
            .sum()
            .backward();

        // In and out of the layout the backend's layers take.
        let (to, from) = (super::layer::to_layers, super::layer::from_layers);
        let (px, pg, pb) = (
            primitive(to(x.clone().inner())),
            primitive(gamma.clone().inner()),
            primitive(beta.clone().inner()),
        );
        let [oy, om, ov] = B::InnerBackend::leaky_bn(px.clone(), pg.clone(), pb.clone(), eps);
        let stats = [om.clone(), ov.clone()];
        let g =
            B::InnerBackend::leaky_bn_backward(px, pg, primitive(to(dy)), stats, eps, [true; 3]);
        worst.add(from(tensor::<_, 4>(oy)), y.inner());
        worst.add(tensor::<_, 1>(om), m.reshape([c]).inner());
        worst.add(tensor::<_, 1>(ov), v.reshape([c]).inner());
        worst.add(
            from(tensor::<_, 4>(g.x.expect("dx"))),
            x.grad(&grads).expect("x grad"),
        );
        worst.add(
            tensor::<_, 1>(g.weight.expect("dgamma")),
            gamma.grad(&grads).expect("gamma grad"),
        );
        worst.add(
            tensor::<_, 1>(g.bias.expect("dbeta")),
            beta.grad(&grads).expect("beta grad"),
        );
    }
    worst.relative()
}

/// [`leaky_bn_difference_from_burn`] on a resolved backend.
pub fn leaky_bn_difference_from_burn_on(backend: &crate::backend::Resolved) -> f32 {
    crate::with_backend!(backend, |B, device| leaky_bn_difference_from_burn::<
        burn::backend::Autodiff<B>,
    >(&device))
}

#[cfg(test)]
mod tests {
    use burn::backend::{Autodiff, Flex};

    #[test]
    fn matches_burns_convolutions_and_their_gradients_on_the_cpu() {
        let d = super::difference_from_burn::<Autodiff<Flex>>(&Default::default());
        assert!(d < 1e-5, "relative difference {d}");
    }

    /// The CPU's LeakyReLU + BatchNorm (`cpu/`) against the same formula; the WGPU kernels
    /// (`fused_bn.rs`) are checked by `tests/wgpu.rs` on a Vulkan driver.
    #[test]
    fn cpu_leaky_bn_matches_the_formula_on_burns_ops() {
        let d = super::leaky_bn_difference_from_burn::<Autodiff<Flex>>(&Default::default());
        assert!(d < 1e-5, "relative difference {d}");
    }
}
