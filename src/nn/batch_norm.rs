//! BatchNorm with the mode (training, inference, frozen) chosen by the caller, fused with the
//! LeakyReLU before it, on each backend's layers.

use burn::module::{Module, Param, RunningState};
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};

use super::layer::LayerBackend;
use super::primitive::tensor;
use super::Mode;

/// BatchNorm over the channels of an activation in the layers' layout (see
/// [`LayerBackend::CHANNEL_MAJOR`]), with the mode chosen by the caller.
#[derive(Module, Debug)]
pub struct BatchNorm<B: Backend> {
    pub gamma: Param<Tensor<B, 1>>,
    pub beta: Param<Tensor<B, 1>>,
    pub running_mean: RunningState<Tensor<B, 1>>,
    pub running_var: RunningState<Tensor<B, 1>>,
    pub momentum: f64,
    pub epsilon: f64,
}

impl<B: Backend> BatchNorm<B> {
    pub(crate) fn new(
        channels: usize,
        momentum: f64,
        epsilon: f64,
        gamma: Vec<f32>,
        device: &B::Device,
    ) -> Self {
        Self {
            gamma: Param::from_tensor(Tensor::from_data(
                TensorData::new(gamma, [channels]),
                device,
            )),
            beta: Param::from_tensor(Tensor::zeros([channels], device)),
            running_mean: RunningState::new(Tensor::zeros([channels], device)),
            running_var: RunningState::new(Tensor::ones([channels], device)),
            momentum,
            epsilon,
        }
    }
}

impl<B: LayerBackend> BatchNorm<B> {
    /// LeakyReLU(0.2) of the convolution's output `x`, then this BatchNorm: the order of the
    /// notebook, fused into one backend operation where batch statistics are used.
    pub fn leaky_forward(&self, x: Tensor<B, 4>, mode: Mode) -> Tensor<B, 4> {
        if mode == Mode::Eval {
            // `value()` can lag one update behind (burn keeps the newest one aside until the
            // next update or sync): D frozen on its running statistics right after its own
            // update would normalise with the previous step's.
            let scale = self.gamma.val().div(
                self.running_var
                    .value_sync()
                    .add_scalar(self.epsilon)
                    .sqrt(),
            );
            let shift = self
                .beta
                .val()
                .sub(self.running_mean.value_sync().mul(scale.clone()));
            return tensor(B::leaky_affine(
                x.into_primitive().tensor(),
                scale.into_primitive().tensor(),
                shift.into_primitive().tensor(),
            ));
        }
        let [y, mean, var] = B::leaky_bn(
            x.into_primitive().tensor(),
            self.gamma.val().into_primitive().tensor(),
            self.beta.val().into_primitive().tensor(),
            self.epsilon,
        );
        if mode == Mode::Train {
            let m = self.momentum;
            let (mean, var): (Tensor<B, 1>, Tensor<B, 1>) = (tensor(mean), tensor(var));
            let rm = self.running_mean.value_sync().mul_scalar(1.0 - m);
            let rv = self.running_var.value_sync().mul_scalar(1.0 - m);
            self.running_mean
                .update(rm.add(mean.mul_scalar(m)).detach());
            self.running_var.update(rv.add(var.mul_scalar(m)).detach());
        }
        tensor(y)
    }
}
