//! An exponential moving average of the generator's weights (Karras et al. 2018, Yazıcı et
//! al. 2019): G's weights jitter from step to step as D and G chase each other, and their
//! average over the last few thousand steps makes smoother, steadier faces than any one step.
//!
//! Every float tensor is averaged, BatchNorm's running statistics included: the averaged
//! weights belong to a generator centred a few hundred steps back, and so should the
//! statistics it normalises with.

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

use crate::nn::Generator;

/// The averaged generator; it lives outside autodiff, since it is never trained.
pub struct Ema<B: Backend> {
    pub g: Generator<B>,
    decay: f64,
}

impl<B: Backend> Ema<B> {
    /// Starts the average at `g` (a fresh generator, or the one a checkpoint restored).
    pub fn new(g: Generator<B>, decay: f64) -> Self {
        Self { g, decay }
    }

    /// The decay used after `step` updates: warmed up as TensorFlow's
    /// `ExponentialMovingAverage(num_updates)` does, so the first few hundred steps do not
    /// leave the average stuck near the random initial weights.
    pub fn decay_at(&self, step: usize) -> f64 {
        self.decay.min((1 + step) as f64 / (10 + step) as f64)
    }

    /// Folds in the live generator after training step `step` (1-based): a pure function of
    /// the step, so a resumed run averages exactly as an uninterrupted one.
    pub fn update(self, live: &Generator<B>, step: usize) -> Self {
        let mut collect = Collect(Vec::new());
        live.visit(&mut collect);
        let mut blend = Blend {
            live: collect.0.into_iter(),
            decay: self.decay_at(step),
        };
        let g = self.g.map(&mut blend);
        assert!(
            blend.live.next().is_none(),
            "EMA and live generator visit the same tensors"
        );
        Self { g, ..self }
    }
}

/// G's float tensors, flattened, in visiting order.
struct Collect<B: Backend>(Vec<Tensor<B, 1>>);

impl<B: Backend> ModuleVisitor<B> for Collect<B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        self.0.push(param.val().flatten(0, D - 1));
    }
}

/// `ema = decay * ema + (1 - decay) * live`, tensor by tensor in the same visiting order:
/// both modules are one architecture, so order identifies the tensor.
struct Blend<B: Backend, I: Iterator<Item = Tensor<B, 1>>> {
    live: I,
    decay: f64,
}

impl<B: Backend, I: Iterator<Item = Tensor<B, 1>>> ModuleMapper<B> for Blend<B, I> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let (id, ema, mapper) = param.consume();
        let live = self
            .live
            .next()
            .expect("EMA and live generator have the same tensors")
            .reshape(ema.shape());
        let blended = ema
            .mul_scalar(self.decay)
            .add(live.mul_scalar(1.0 - self.decay));
        Param::from_mapped_value(id, blended, mapper)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TrainingConfig;
    use burn::backend::Flex;

    fn weights(g: &Generator<Flex>) -> Vec<f32> {
        let mut c = Collect(Vec::new());
        g.visit(&mut c);
        c.0.into_iter()
            .flat_map(|t| t.into_data().to_vec::<f32>().unwrap())
            .collect()
    }

    #[test]
    fn average_moves_toward_the_live_weights_by_one_minus_decay() {
        let cfg = TrainingConfig::preset("dcgan").unwrap();
        let device = Default::default();
        let a = cfg.generator.init::<Flex>(cfg.image_size, 1, &device);
        let b = cfg.generator.init::<Flex>(cfg.image_size, 2, &device);
        let (wa, wb) = (weights(&a), weights(&b));
        assert_ne!(wa, wb);

        let ema = Ema::new(a, 0.999);
        // Warm-up: after step 1 the decay is 2/11, not 0.999.
        let d = ema.decay_at(1);
        assert!((d - 2.0 / 11.0).abs() < 1e-12);
        assert_eq!(ema.decay_at(1_000_000), 0.999);
        let ema = ema.update(&b, 1);
        let we = weights(&ema.g);
        assert_eq!(we.len(), wa.len());
        for ((e, x), y) in we.iter().zip(&wa).zip(&wb) {
            let want = d as f32 * x + (1.0 - d as f32) * y;
            assert!(
                (e - want).abs() <= 1e-6 * want.abs().max(1.0),
                "{e} vs {want}"
            );
        }
        // The live generator is left alone.
        assert_eq!(weights(&b), wb);
    }
}
