//! Adam, with epsilon where PyTorch puts it or where Keras does.
//!
//! Both scale the first moment by sqrt(1 - beta2^t) / (1 - beta1^t); PyTorch (and burn) then
//! divide by sqrt(v) + epsilon * sqrt(1 - beta2^t), Keras by sqrt(v) + epsilon. Early on, where
//! sqrt(1 - beta2^t) is small (0.03 at t = 1), Keras's epsilon weighs ~30 times more: with its
//! default 1e-7, a weight whose gradient is near 1e-5 moves about a quarter less in Keras's
//! first step than in PyTorch's. The notebook ran Keras's, so its preset does too.
//!
//! The state is burn's own `AdamState`, so checkpoints read and write as with burn's Adam.

use burn::optim::{AdamState, AdaptiveMomentumState, LearningRate, SimpleOptimizer};
use burn::tensor::backend::Backend;
use burn::tensor::{Device, Tensor};

use crate::config::{EpsilonForm, OptimizerConfig};

#[derive(Clone, Debug)]
pub struct Adam {
    beta_1: f32,
    beta_2: f32,
    epsilon: f32,
    form: EpsilonForm,
}

impl Adam {
    pub fn new(c: &OptimizerConfig) -> Self {
        Self {
            beta_1: c.beta1,
            beta_2: c.beta2,
            epsilon: c.epsilon,
            form: c.epsilon_form,
        }
    }
}

impl<B: Backend> SimpleOptimizer<B> for Adam {
    type State<const D: usize> = AdamState<B, D>;

    /// The same operations, in the same order, as burn 0.21's Adam (without its AMSGrad and
    /// weight decay, which the configs never use), so the PyTorch form gives burn's numbers.
    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<B, D>,
        grad: Tensor<B, D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<B, D>, Option<Self::State<D>>) {
        let (b1, b2) = (self.beta_1, self.beta_2);
        let m = match state {
            Some(AdamState { momentum: mut m }) => {
                m.moment_1 = m
                    .moment_1
                    .mul_scalar(b1)
                    .add(grad.clone().mul_scalar(1.0 - b1));
                m.moment_2 = m
                    .moment_2
                    .mul_scalar(b2)
                    .add(grad.square().mul_scalar(1.0 - b2));
                m.time += 1;
                m
            }
            None => AdaptiveMomentumState::new(
                1,
                grad.clone().mul_scalar(1.0 - b1),
                grad.square().mul_scalar(1.0 - b2),
            ),
        };
        let time = m.time as i32;
        let bias_correction2_sqrt = (1.0 - b2.powi(time)).sqrt();
        let factor = bias_correction2_sqrt / (1.0 - b1.powi(time));
        let epsilon = match self.form {
            EpsilonForm::Pytorch => self.epsilon * bias_correction2_sqrt,
            EpsilonForm::Keras => self.epsilon,
        };
        let delta = m
            .moment_1
            .clone()
            .mul_scalar(factor)
            .div(m.moment_2.clone().sqrt().add_scalar(epsilon))
            .mul_scalar(lr);
        (tensor - delta, Some(AdamState::new(m)))
    }

    fn to_device<const D: usize>(mut state: Self::State<D>, device: &Device<B>) -> Self::State<D> {
        state.momentum = state.momentum.to_device(device);
        state
    }
}
