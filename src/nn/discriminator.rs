//! The discriminator: a square RGB face to one logit, through stride-2 convolutions that halve
//! the picture and double the channels down to 4x4.

use burn::module::Module;
use burn::nn::Linear;
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;
use rand::rngs::StdRng;
use rand::SeedableRng;

use super::batch_norm::BatchNorm;
use super::generator::doublings;
use super::init::Initialiser;
use super::layer::{activate, from_layers, to_layers, Activation, Conv, LayerBackend};
use super::primitive::tensor;
use super::Mode;
use crate::config::{DiscriminatorConfig, FrozenBn};

fn dropout<B: LayerBackend, const D: usize>(x: Tensor<B, D>, p: f64, mode: Mode) -> Tensor<B, D> {
    if mode == Mode::Eval || p == 0.0 {
        return x;
    }
    let keep = B::keep_mask(&x.clone().into_primitive().tensor(), 1.0 - p);
    x.mul(tensor(keep)).div_scalar(1.0 - p)
}

/// Channels of D's first convolution, at half the input's side, whatever the size: each
/// halving of the side doubles them (64 pixels: 256 at 4x4, the notebook's D).
const FIRST: usize = 32;

/// One halving: convolution, then LeakyReLU and BatchNorm (the notebook's order).
#[derive(Module, Debug)]
pub struct DownBlock<B: Backend> {
    pub(crate) conv: Conv<B>,
    pub(crate) bn: BatchNorm<B>,
}

#[derive(Module, Debug)]
pub struct Discriminator<B: Backend> {
    /// RGB to FIRST channels at half the side; no BatchNorm.
    pub(crate) conv1: Conv<B>,
    /// Down to 8x8.
    pub(crate) blocks: Vec<DownBlock<B>>,
    /// The last halving, to 4x4; LeakyReLU and no BatchNorm.
    pub(crate) to_4x4: Conv<B>,
    pub(crate) fc: Linear<B>,
    pub(crate) dropout: f64,
    #[module(skip)]
    pub(crate) frozen_bn: FrozenBn,
    #[module(skip)]
    pub(crate) first_activation: bool,
}

impl DiscriminatorConfig {
    /// D for `size`-pixel faces (32, 64 or 128); its weights drawn from `seed`.
    pub fn init<B: Backend>(&self, size: usize, seed: u64, device: &B::Device) -> Discriminator<B> {
        let mut i = Initialiser {
            init: self.init,
            rng: StdRng::seed_from_u64(seed),
        };
        let (m, e) = (self.bn_momentum, self.bn_epsilon);
        let top = FIRST << (doublings(size) - 1);
        // Drawn in layer order, so a seed gives the 64-pixel D the same weights as ever.
        let conv1 = i.conv(3, FIRST, device);
        let blocks = (0..doublings(size) - 2)
            .map(|k| {
                let (cin, cout) = (FIRST << k, FIRST << (k + 1));
                let conv = i.conv(cin, cout, device);
                let bn = BatchNorm::new(cout, m, e, i.gamma(cout), device);
                DownBlock { conv, bn }
            })
            .collect();
        Discriminator {
            conv1,
            blocks,
            to_4x4: i.conv(top / 2, top, device),
            fc: i.linear(top * 4 * 4, 1, device),
            dropout: self.dropout,
            frozen_bn: self.frozen_bn,
            first_activation: self.first_activation,
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
        // Shapes as NCHW (64 pixels); between the ends, the layout the backend's layers take.
        let x = self.conv1.forward(to_layers(images)); // [N, 32, 32, 32]

        // The notebook's D has no activation here; the paper's has.
        let mut x = if self.first_activation {
            activate(x, Activation::Leaky)
        } else {
            x
        };
        for b in &self.blocks {
            x = b.bn.leaky_forward(b.conv.forward(x), bn); // [N, 64, 16, 16], [N, 128, 8, 8]
        }
        let x = from_layers(activate(self.to_4x4.forward(x), Activation::Leaky)); // [N, 256, 4, 4]
        let flat = self.fc.weight.dims()[0];
        let x = dropout(x.reshape([n, flat]), self.dropout, mode); // [N, 4096]
        self.fc.forward(x) // [N, 1]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::layer::LEAKY_SLOPE;
    use burn::backend::Flex;
    use burn::tensor::activation::leaky_relu;
    use burn::tensor::Distribution;

    /// `first_activation` puts LeakyReLU after the first convolution: the same weights then
    /// score a batch differently, and exactly as a D whose first convolution's negative
    /// outputs are scaled by 0.2 by hand would.
    #[test]
    fn first_activation_applies_leaky_relu_after_the_first_convolution() {
        let device = Default::default();
        let cfg = crate::config::TrainingConfig::preset("dcgan").unwrap();
        let mut d_cfg = cfg.discriminator.clone();
        d_cfg.dropout = 0.0;
        d_cfg.first_activation = false;
        let plain = d_cfg.init::<Flex>(64, 3, &device);
        let activated = Discriminator {
            first_activation: true,
            ..plain.clone()
        };
        let images = Tensor::<Flex, 4>::random([2, 3, 64, 64], Distribution::Default, &device);
        let by_hand = {
            let x = to_layers(images.clone());
            let x = leaky_relu(plain.conv1.forward(x), LEAKY_SLOPE as f64);
            let [b2, b3] = [&plain.blocks[0], &plain.blocks[1]];
            let x = b2.bn.leaky_forward(b2.conv.forward(x), Mode::Eval);
            let x = b3.bn.leaky_forward(b3.conv.forward(x), Mode::Eval);
            let x = from_layers(leaky_relu(plain.to_4x4.forward(x), LEAKY_SLOPE as f64));
            plain.fc.forward(x.reshape([2, 256 * 4 * 4]))
        };
        let a = activated.forward(images.clone(), Mode::Eval);
        let p = plain.forward(images, Mode::Eval);
        a.clone()
            .into_data()
            .assert_approx_eq::<f32>(&by_hand.into_data(), Default::default());
        let gap: f32 = (a - p).abs().max().into_scalar();
        assert!(gap > 1e-4, "the activation changes D's output ({gap})");
    }

    /// Inverted dropout: in training a fraction p of the values is zeroed and the rest scaled
    /// by 1/(1-p), so the mean is kept; in evaluation nothing changes.
    #[test]
    fn dropout_zeroes_a_fraction_p_and_keeps_the_mean() {
        let device = Default::default();
        Flex::seed(&device, 11);
        let x = Tensor::<Flex, 1>::ones([100_000], &device);
        for p in [0.5, 0.3] {
            let y: Vec<f32> = dropout(x.clone(), p, Mode::Train)
                .into_data()
                .to_vec()
                .unwrap();
            let zeros = y.iter().filter(|v| **v == 0.0).count() as f64 / y.len() as f64;
            // 100,000 draws: the fraction's standard error is below 0.0016.
            assert!((zeros - p).abs() < 0.01, "p {p}: {zeros} zeroed");
            let kept = (1.0 / (1.0 - p)) as f32;
            assert!(y.iter().all(|v| *v == 0.0 || (v - kept).abs() < 1e-6));
            let frozen: Vec<f32> = dropout(x.clone(), p, Mode::Frozen)
                .into_data()
                .to_vec()
                .unwrap();
            assert!(frozen.contains(&0.0), "dropout stays on in D's frozen pass");
        }
        assert_eq!(
            dropout(x.clone(), 0.5, Mode::Eval).into_data(),
            x.into_data()
        );
    }
}
