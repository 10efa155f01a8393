use burn::module::Module;
use burn::nn::Linear;
use burn::tensor::activation::leaky_relu;
use burn::tensor::backend::Backend;
use burn::tensor::{Distribution, Tensor};
use rand::rngs::StdRng;
use rand::SeedableRng;

use super::batch_norm::BatchNorm;
use super::init::Initialiser;
use super::layer::{Conv, LayerBackend, LEAKY_SLOPE};
use super::Mode;
use crate::config::{DiscriminatorConfig, FrozenBn};

fn dropout<B: Backend, const D: usize>(x: Tensor<B, D>, p: f64, mode: Mode) -> Tensor<B, D> {
    if mode == Mode::Eval || p == 0.0 {
        return x;
    }
    let keep = x.random_like(Distribution::Bernoulli(1.0 - p));
    x.mul(keep).div_scalar(1.0 - p)
}

#[derive(Module, Debug)]
pub struct Discriminator<B: Backend> {
    pub(crate) conv1: Conv<B>,
    pub(crate) conv2: Conv<B>,
    pub(crate) bn2: BatchNorm<B>,
    pub(crate) conv3: Conv<B>,
    pub(crate) bn3: BatchNorm<B>,
    pub(crate) conv4: Conv<B>,
    pub(crate) fc: Linear<B>,
    pub(crate) dropout: f64,
    #[module(skip)]
    pub(crate) frozen_bn: FrozenBn,
}

impl DiscriminatorConfig {
    pub fn init<B: Backend>(&self, seed: u64, device: &B::Device) -> Discriminator<B> {
        let mut i = Initialiser {
            init: self.init,
            rng: StdRng::seed_from_u64(seed),
        };
        let (m, e) = (self.bn_momentum, self.bn_epsilon);
        Discriminator {
            conv1: i.conv(3, 32, device),
            conv2: i.conv(32, 64, device),
            bn2: BatchNorm::new(64, m, e, i.gamma(64), device),
            conv3: i.conv(64, 128, device),
            bn3: BatchNorm::new(128, m, e, i.gamma(128), device),
            conv4: i.conv(128, 256, device),
            fc: i.linear(256 * 4 * 4, 1, device),
            dropout: self.dropout,
            frozen_bn: self.frozen_bn,
        }
    }
}

impl<B: LayerBackend> Discriminator<B> {
    /// Returns logits; the notebook's sigmoid is folded into the loss, where it is stable.
    pub fn forward(&self, images: Tensor<B, 4>, mode: Mode) -> Tensor<B, 2> {
        let [n, _, _, _] = images.dims();
        let bn = match (mode, self.frozen_bn) {
            (Mode::Frozen, FrozenBn::Running) => Mode::Eval,
            _ => mode,
        };
        let x = self.conv1.forward(images); // [N, 32, 32, 32], no activation, as the notebook
        let x = self.bn2.leaky_forward(self.conv2.forward(x), bn); // [N, 64, 16, 16]
        let x = self.bn3.leaky_forward(self.conv3.forward(x), bn); // [N, 128, 8, 8]
        let x = leaky_relu(self.conv4.forward(x), LEAKY_SLOPE as f64); // [N, 256, 4, 4]
        let x = dropout(x.reshape([n, 256 * 4 * 4]), self.dropout, mode); // [N, 4096]
        self.fc.forward(x) // [N, 1]
    }
}
