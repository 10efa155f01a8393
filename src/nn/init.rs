//! The weight initialisers (Keras's Glorot-uniform, the DCGAN paper's N(0, 0.02)), drawn on
//! the host from the run's seed.

use burn::module::Param;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use rand::rngs::StdRng;
use rand::Rng;

use super::layer::Conv;
use crate::config::Init;
use crate::rng::standard_normal;

/// Draws weights on the host so the CPU and GPU backends start from the same numbers.
pub(crate) struct Initialiser {
    pub(crate) init: Init,
    pub(crate) rng: StdRng,
}

impl Initialiser {
    pub(crate) fn kernel(&mut self, n: usize, fan_in: usize, fan_out: usize) -> Vec<f32> {
        match self.init {
            Init::Keras => {
                let limit = (6.0 / (fan_in + fan_out) as f64).sqrt() as f32;
                (0..n)
                    .map(|_| self.rng.random_range(-limit..limit))
                    .collect()
            }
            Init::Normal => (0..n)
                .map(|_| 0.02 * standard_normal(&mut self.rng))
                .collect(),
        }
    }

    pub(crate) fn gamma(&mut self, n: usize) -> Vec<f32> {
        match self.init {
            Init::Keras => vec![1.0; n],
            Init::Normal => (0..n)
                .map(|_| 1.0 + 0.02 * standard_normal(&mut self.rng))
                .collect(),
        }
    }

    pub(crate) fn linear<B: Backend>(
        &mut self,
        d_in: usize,
        d_out: usize,
        device: &B::Device,
    ) -> Linear<B> {
        let mut layer = LinearConfig::new(d_in, d_out).init(device);
        let w = self.kernel(d_in * d_out, d_in, d_out);
        layer.weight =
            Param::from_tensor(Tensor::from_data(TensorData::new(w, [d_in, d_out]), device));
        layer.bias = Some(Param::from_tensor(Tensor::zeros([d_out], device)));
        layer
    }

    /// Kernel 4, stride 2, "same" padding: halves the spatial size.
    pub(crate) fn conv<B: Backend>(
        &mut self,
        c_in: usize,
        c_out: usize,
        device: &B::Device,
    ) -> Conv<B> {
        let w = self.kernel(c_out * c_in * 16, c_in * 16, c_out * 16);
        self.conv_layer([c_out, c_in, 4, 4], w, false, device)
    }

    /// Kernel 4, stride 2, "same" padding: doubles the spatial size.
    pub(crate) fn deconv<B: Backend>(
        &mut self,
        c_in: usize,
        c_out: usize,
        device: &B::Device,
    ) -> Conv<B> {
        // Keras counts a transposed kernel's fans the other way round.
        let w = self.kernel(c_in * c_out * 16, c_out * 16, c_in * 16);
        self.conv_layer([c_in, c_out, 4, 4], w, true, device)
    }

    pub(crate) fn conv_layer<B: Backend>(
        &mut self,
        shape: [usize; 4],
        w: Vec<f32>,
        transposed: bool,
        device: &B::Device,
    ) -> Conv<B> {
        let out = if transposed { shape[1] } else { shape[0] };
        Conv {
            weight: Param::from_tensor(Tensor::from_data(TensorData::new(w, shape), device)),
            bias: Param::from_tensor(Tensor::zeros([out], device)),
            transposed,
        }
    }
}
