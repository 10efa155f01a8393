//! The generator: noise to a square RGB face, through stride-2 transposed convolutions that
//! double the picture and halve the channels (the DCGAN paper's rule).

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

/// Channels of G's last hidden layer, at half the output's side, whatever the size: each
/// halving of the side towards 4x4 doubles them (64 pixels: 512 at 4x4, the notebook's G).
const LAST_HIDDEN: usize = 64;

/// Stride-2 transposed convolutions from 4x4 up to `size`: 3 for 32 pixels, 4 for 64, 5 for 128.
pub(crate) fn doublings(size: usize) -> usize {
    (size / 4).trailing_zeros() as usize
}

/// One doubling: transposed convolution, then LeakyReLU and BatchNorm (the notebook's order).
#[derive(Module, Debug)]
pub struct UpBlock<B: Backend> {
    pub(crate) deconv: Conv<B>,
    pub(crate) bn: BatchNorm<B>,
}

#[derive(Module, Debug)]
pub struct Generator<B: Backend> {
    pub(crate) fc: Linear<B>,
    /// 4x4 up to half the output's side.
    pub(crate) blocks: Vec<UpBlock<B>>,
    /// The last doubling, to RGB.
    pub(crate) to_rgb: Conv<B>,
    #[module(skip)]
    pub(crate) output: Output,
}

impl GeneratorConfig {
    /// G for `size`-pixel faces (32, 64 or 128); its weights drawn from `seed`.
    pub fn init<B: Backend>(&self, size: usize, seed: u64, device: &B::Device) -> Generator<B> {
        let mut i = Initialiser {
            init: self.init,
            rng: StdRng::seed_from_u64(seed),
        };
        let (m, e) = (self.bn_momentum, self.bn_epsilon);
        let top = LAST_HIDDEN << (doublings(size) - 1);
        // Drawn in layer order, so a seed gives the 64-pixel G the same weights as ever.
        let fc = i.linear(self.noise_dim, 4 * 4 * top, device);
        let blocks = (0..doublings(size) - 1)
            .map(|k| {
                let (cin, cout) = (top >> k, top >> (k + 1));
                let deconv = i.deconv(cin, cout, device);
                let bn = BatchNorm::new(cout, m, e, i.gamma(cout), device);
                UpBlock { deconv, bn }
            })
            .collect();
        Generator {
            fc,
            blocks,
            to_rgb: i.deconv(LAST_HIDDEN, 3, device),
            output: self.output,
        }
    }
}

impl<B: LayerBackend> Generator<B> {
    pub fn forward(&self, noise: Tensor<B, 2>, mode: Mode) -> Tensor<B, 4> {
        let [n, _] = noise.dims();
        let top = self.fc.weight.dims()[1] / 16;
        // Shapes as NCHW (64 pixels); between the ends, the layout the backend's layers take.
        let mut x = to_layers(self.fc.forward(noise).reshape([n, top, 4, 4])); // [N, 512, 4, 4]
        for b in &self.blocks {
            x = b.bn.leaky_forward(b.deconv.forward(x), mode); // [N, 256, 8, 8] .. [N, 64, 32, 32]
        }
        let x = self.to_rgb.forward(x); // [N, 3, 64, 64]
        from_layers(activate(x, self.output.into()))
    }

    pub fn output(&self) -> Output {
        self.output
    }

    /// The side of the faces it makes.
    pub fn image_size(&self) -> usize {
        4 << (self.blocks.len() + 1)
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
