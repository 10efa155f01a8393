use burn::module::Module;
use burn::nn::Linear;
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use rand::rngs::StdRng;
use rand::SeedableRng;

use super::batch_norm::BatchNorm;
use super::init::Initialiser;
use super::layer::{activate, from_layers, to_layers, Conv, LayerBackend};
use super::Mode;
use crate::config::{GeneratorConfig, Output, TrainingConfig};

#[derive(Module, Debug)]
pub struct Generator<B: Backend> {
    pub(crate) fc: Linear<B>,
    pub(crate) deconv1: Conv<B>,
    pub(crate) bn1: BatchNorm<B>,
    pub(crate) deconv2: Conv<B>,
    pub(crate) bn2: BatchNorm<B>,
    pub(crate) deconv3: Conv<B>,
    pub(crate) bn3: BatchNorm<B>,
    pub(crate) deconv4: Conv<B>,
    #[module(skip)]
    pub(crate) output: Output,
}

impl GeneratorConfig {
    pub fn init<B: Backend>(&self, seed: u64, device: &B::Device) -> Generator<B> {
        let mut i = Initialiser {
            init: self.init,
            rng: StdRng::seed_from_u64(seed),
        };
        let (m, e) = (self.bn_momentum, self.bn_epsilon);
        Generator {
            fc: i.linear(self.noise_dim, 4 * 4 * 512, device),
            deconv1: i.deconv(512, 256, device),
            bn1: BatchNorm::new(256, m, e, i.gamma(256), device),
            deconv2: i.deconv(256, 128, device),
            bn2: BatchNorm::new(128, m, e, i.gamma(128), device),
            deconv3: i.deconv(128, 64, device),
            bn3: BatchNorm::new(64, m, e, i.gamma(64), device),
            deconv4: i.deconv(64, 3, device),
            output: self.output,
        }
    }
}

impl<B: LayerBackend> Generator<B> {
    pub fn forward(&self, noise: Tensor<B, 2>, mode: Mode) -> Tensor<B, 4> {
        let [n, _] = noise.dims();
        // Shapes as NCHW; between the ends, the layout the backend's layers take.
        let x = to_layers(self.fc.forward(noise).reshape([n, 512, 4, 4])); // [N, 512, 4, 4]
        let x = self.bn1.leaky_forward(self.deconv1.forward(x), mode); // [N, 256, 8, 8]
        let x = self.bn2.leaky_forward(self.deconv2.forward(x), mode); // [N, 128, 16, 16]
        let x = self.bn3.leaky_forward(self.deconv3.forward(x), mode); // [N, 64, 32, 32]
        let x = self.deconv4.forward(x); // [N, 3, 64, 64]
        from_layers(activate(x, self.output.into()))
    }

    pub fn output(&self) -> Output {
        self.output
    }
}

pub fn noise<B: Backend>(
    cfg: &TrainingConfig,
    rng: &mut StdRng,
    n: usize,
    device: &B::Device,
) -> Tensor<B, 2> {
    let dim = cfg.generator.noise_dim;
    Tensor::from_data(
        TensorData::new(cfg.generator.noise.sample(rng, n * dim), [n, dim]),
        device,
    )
}
