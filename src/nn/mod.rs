//! The notebook's Generator and Discriminator, layer for layer (at 64 pixels; 32 and 128 drop
//! or add one block each).
//!
//! BatchNorm and Dropout take an explicit [`Mode`] instead of burn's "train when on an
//! autodiff backend" rule, because the notebook's G step runs D *frozen*: Keras sets
//! `trainable = False`, which puts BatchNorm in inference mode while Dropout stays active.

mod autodiff;
mod batch_norm;
pub(crate) mod check;
pub(crate) mod cpu;
mod discriminator;
mod fused_bn;
mod generator;
mod init;
mod layer;
mod patch_conv;
mod primitive;
pub(crate) mod profile;
pub mod torch_names;

pub use batch_norm::BatchNorm;
pub use discriminator::Discriminator;
pub use generator::{noise, Generator};
pub use layer::{LayerBackend, TrainBackend};

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::Tensor;

/// The notebook's LeakyReLU slope (Keras's default is 0.3; the notebook sets 0.2), for the
/// CPU layers, burn's ops and the GPU kernels alike.
pub const LEAKY_SLOPE: f32 = 0.2;

/// How BatchNorm and Dropout behave in one forward pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Batch statistics (and running averages updated), dropout on.
    Train,
    /// Running statistics, dropout off: Keras `predict_on_batch`, sampling.
    Eval,
    /// D during G's update: weights frozen, dropout on, BatchNorm on the batch's statistics
    /// without updating the running ones (PyTorch's DCGAN, standalone Keras), or on the running
    /// statistics if the config says `frozen_bn: running` (tf.keras 2's `trainable = False`).
    Frozen,
}

/// Parameters an optimiser updates, as Keras's "Trainable params" counts them: burn's
/// `num_params` also counts BatchNorm's running statistics.
pub fn trainable_params<B: AutodiffBackend, M: Module<B>>(module: &M) -> usize {
    struct Count(usize);
    impl<B: Backend> ModuleVisitor<B> for Count {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            if param.is_require_grad() {
                self.0 += param.shape().num_elements();
            }
        }
    }
    let mut c = Count(0);
    module.visit(&mut c);
    c.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TrainingConfig;
    use burn::backend::Flex;
    use burn::tensor::Distribution;

    type B = Flex;

    #[test]
    fn shapes_and_parameter_counts_match_keras() {
        let cfg = TrainingConfig::preset("notebook").unwrap();
        let device = Default::default();
        // Keras model.summary(): trainable parameters (BatchNorm moving stats excluded).
        type AB = burn::backend::Autodiff<B>;
        assert_eq!(
            trainable_params(&cfg.generator.init::<AB>(cfg.image_size, 1, &device)),
            3_584_323
        );
        assert_eq!(
            trainable_params(&cfg.discriminator.init::<AB>(cfg.image_size, 2, &device)),
            694_625
        );
        let g = cfg.generator.init::<B>(cfg.image_size, 1, &device);
        let d = cfg.discriminator.init::<B>(cfg.image_size, 2, &device);
        // Plus 2 running statistics per BatchNorm channel.
        assert_eq!(g.num_params(), 3_584_323 + 2 * (256 + 128 + 64));

        let noise = Tensor::<B, 2>::random([2, 100], Distribution::Uniform(-1.0, 1.0), &device);
        let images = g.forward(noise, Mode::Eval);
        assert_eq!(images.dims(), [2, 3, 64, 64]);
        let v = images.clone().into_data().to_vec::<f32>().unwrap();
        assert!(
            v.iter().all(|x| (0.0..=1.0).contains(x)),
            "sigmoid output in [0, 1]"
        );
        assert_eq!(d.forward(images, Mode::Train).dims(), [2, 1]);
    }

    #[test]
    fn normal_init_has_dcgan_statistics() {
        let cfg = TrainingConfig::preset("dcgan").unwrap();
        let g = cfg
            .generator
            .init::<B>(cfg.image_size, 7, &Default::default());
        let w = g.blocks[1]
            .deconv
            .weight
            .val()
            .into_data()
            .to_vec::<f32>()
            .unwrap();
        let mean = w.iter().sum::<f32>() / w.len() as f32;
        let std = (w.iter().map(|x| (x - mean).powi(2)).sum::<f32>() / w.len() as f32).sqrt();
        assert!(
            mean.abs() < 1e-3 && (std - 0.02).abs() < 1e-3,
            "mean {mean} std {std}"
        );
        let b = g.blocks[1]
            .deconv
            .bias
            .val()
            .into_data()
            .to_vec::<f32>()
            .unwrap();
        assert!(b.iter().all(|x| *x == 0.0));
        let out = g.forward(Tensor::zeros([1, 100], &Default::default()), Mode::Eval);
        let v = out.into_data().to_vec::<f32>().unwrap();
        assert!(
            v.iter().all(|x| (-1.0..=1.0).contains(x)),
            "tanh output in [-1, 1]"
        );
    }

    #[test]
    fn same_seed_same_weights() {
        let cfg = TrainingConfig::preset("notebook").unwrap();
        let a = cfg
            .generator
            .init::<B>(cfg.image_size, 3, &Default::default());
        let b = cfg
            .generator
            .init::<B>(cfg.image_size, 3, &Default::default());
        let (a, b) = (a.fc.weight.val().into_data(), b.fc.weight.val().into_data());
        assert_eq!(a.to_vec::<f32>().unwrap(), b.to_vec::<f32>().unwrap());
    }
}
