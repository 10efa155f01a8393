//! The notebook's Generator and Discriminator, layer for layer.
//!
//! BatchNorm and Dropout take an explicit [`Mode`] instead of burn's "train when on an
//! autodiff backend" rule, because the notebook's G step runs D *frozen*: Keras sets
//! `trainable = False`, which puts BatchNorm in inference mode while Dropout stays active.

use burn::module::{Module, ModuleVisitor, Param, RunningState};
use burn::nn::{Linear, LinearConfig};
use burn::tensor::activation::{leaky_relu, sigmoid};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Distribution, Tensor, TensorData, TensorPrimitive};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::layers::{Conv, LayerBackend, LEAKY_SLOPE};

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

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Output {
    Sigmoid,
    Tanh,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Init {
    /// Keras defaults: Glorot-uniform kernels, zero biases, BatchNorm gamma 1.
    Keras,
    /// The DCGAN paper: N(0, 0.02) kernels, zero biases, BatchNorm gamma ~ N(1, 0.02).
    Normal,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum NoiseDist {
    /// Uniform(-1, 1), as the notebook trains.
    Uniform,
    /// N(0, 1).
    Normal,
}

impl NoiseDist {
    /// Noise is drawn on the host from a seeded RNG so every backend sees the same numbers.
    pub fn sample(&self, rng: &mut StdRng, n: usize) -> Vec<f32> {
        match self {
            NoiseDist::Uniform => (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect(),
            NoiseDist::Normal => (0..n).map(|_| standard_normal(rng)).collect(),
        }
    }
}

/// Box-Muller; rand 0.9 keeps its normal distribution in a separate crate.
pub fn standard_normal(rng: &mut StdRng) -> f32 {
    let u1: f64 = 1.0 - rng.random::<f64>();
    let u2: f64 = rng.random::<f64>();
    ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GeneratorConfig {
    pub noise_dim: usize,
    pub noise: NoiseDist,
    pub output: Output,
    pub init: Init,
    /// PyTorch/burn convention: weight of the new batch (Keras momentum 0.99 is 0.01 here).
    pub bn_momentum: f64,
    pub bn_epsilon: f64,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DiscriminatorConfig {
    pub init: Init,
    pub bn_momentum: f64,
    pub bn_epsilon: f64,
    pub dropout: f64,
    /// BatchNorm in D while G trains through it.
    #[serde(default)]
    pub frozen_bn: FrozenBn,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum FrozenBn {
    /// Normalise with the fake batch's own statistics (measured: the one that trains).
    #[default]
    Batch,
    /// Use D's running statistics (tf.keras 2 semantics of `trainable = False`).
    Running,
}

/// BatchNorm over channels of an NCHW tensor, with the mode chosen by the caller.
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
    fn new(
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
            let scale = self
                .gamma
                .val()
                .div(self.running_var.value().add_scalar(self.epsilon).sqrt());
            let shift = self
                .beta
                .val()
                .sub(self.running_mean.value().mul(scale.clone()));
            return Tensor::from_primitive(TensorPrimitive::Float(B::leaky_affine(
                x.into_primitive().tensor(),
                scale.into_primitive().tensor(),
                shift.into_primitive().tensor(),
            )));
        }
        let [y, mean, var] = B::leaky_bn(
            x.into_primitive().tensor(),
            self.gamma.val().into_primitive().tensor(),
            self.beta.val().into_primitive().tensor(),
            self.epsilon,
        );
        if mode == Mode::Train {
            let m = self.momentum;
            let (mean, var): (Tensor<B, 1>, Tensor<B, 1>) = (
                Tensor::from_primitive(TensorPrimitive::Float(mean)),
                Tensor::from_primitive(TensorPrimitive::Float(var)),
            );
            let rm = self.running_mean.value_sync().mul_scalar(1.0 - m);
            let rv = self.running_var.value_sync().mul_scalar(1.0 - m);
            self.running_mean
                .update(rm.add(mean.mul_scalar(m)).detach());
            self.running_var.update(rv.add(var.mul_scalar(m)).detach());
        }
        Tensor::from_primitive(TensorPrimitive::Float(y))
    }
}

fn dropout<B: Backend, const D: usize>(x: Tensor<B, D>, p: f64, mode: Mode) -> Tensor<B, D> {
    if mode == Mode::Eval || p == 0.0 {
        return x;
    }
    let keep = x.random_like(Distribution::Bernoulli(1.0 - p));
    x.mul(keep).div_scalar(1.0 - p)
}

/// Draws weights on the host so the CPU and GPU backends start from the same numbers.
struct Initialiser {
    init: Init,
    rng: StdRng,
}

impl Initialiser {
    fn kernel(&mut self, n: usize, fan_in: usize, fan_out: usize) -> Vec<f32> {
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

    fn gamma(&mut self, n: usize) -> Vec<f32> {
        match self.init {
            Init::Keras => vec![1.0; n],
            Init::Normal => (0..n)
                .map(|_| 1.0 + 0.02 * standard_normal(&mut self.rng))
                .collect(),
        }
    }

    fn linear<B: Backend>(&mut self, d_in: usize, d_out: usize, device: &B::Device) -> Linear<B> {
        let mut layer = LinearConfig::new(d_in, d_out).init(device);
        let w = self.kernel(d_in * d_out, d_in, d_out);
        layer.weight =
            Param::from_tensor(Tensor::from_data(TensorData::new(w, [d_in, d_out]), device));
        layer.bias = Some(Param::from_tensor(Tensor::zeros([d_out], device)));
        layer
    }

    /// Kernel 4, stride 2, "same" padding: halves the spatial size.
    fn conv<B: Backend>(&mut self, c_in: usize, c_out: usize, device: &B::Device) -> Conv<B> {
        let w = self.kernel(c_out * c_in * 16, c_in * 16, c_out * 16);
        self.conv_layer([c_out, c_in, 4, 4], w, false, device)
    }

    /// Kernel 4, stride 2, "same" padding: doubles the spatial size.
    fn deconv<B: Backend>(&mut self, c_in: usize, c_out: usize, device: &B::Device) -> Conv<B> {
        // Keras counts a transposed kernel's fans the other way round.
        let w = self.kernel(c_in * c_out * 16, c_out * 16, c_in * 16);
        self.conv_layer([c_in, c_out, 4, 4], w, true, device)
    }

    fn conv_layer<B: Backend>(
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

#[derive(Module, Debug)]
pub struct Generator<B: Backend> {
    fc: Linear<B>,
    deconv1: Conv<B>,
    bn1: BatchNorm<B>,
    deconv2: Conv<B>,
    bn2: BatchNorm<B>,
    deconv3: Conv<B>,
    bn3: BatchNorm<B>,
    deconv4: Conv<B>,
    #[module(skip)]
    output: Output,
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
        let x = self.fc.forward(noise).reshape([n, 512, 4, 4]); // [N, 512, 4, 4]
        let x = self.bn1.leaky_forward(self.deconv1.forward(x), mode); // [N, 256, 8, 8]
        let x = self.bn2.leaky_forward(self.deconv2.forward(x), mode); // [N, 128, 16, 16]
        let x = self.bn3.leaky_forward(self.deconv3.forward(x), mode); // [N, 64, 32, 32]
        let x = self.deconv4.forward(x); // [N, 3, 64, 64]
        match self.output {
            Output::Sigmoid => sigmoid(x),
            Output::Tanh => x.tanh(),
        }
    }

    pub fn output(&self) -> Output {
        self.output
    }
}

#[derive(Module, Debug)]
pub struct Discriminator<B: Backend> {
    conv1: Conv<B>,
    conv2: Conv<B>,
    bn2: BatchNorm<B>,
    conv3: Conv<B>,
    bn3: BatchNorm<B>,
    conv4: Conv<B>,
    fc: Linear<B>,
    dropout: f64,
    #[module(skip)]
    frozen_bn: FrozenBn,
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

    type B = Flex;

    #[test]
    fn shapes_and_parameter_counts_match_keras() {
        let cfg = TrainingConfig::preset("notebook").unwrap();
        let device = Default::default();
        // Keras model.summary(): trainable parameters (BatchNorm moving stats excluded).
        type AB = burn::backend::Autodiff<B>;
        assert_eq!(
            trainable_params(&cfg.generator.init::<AB>(1, &device)),
            3_584_323
        );
        assert_eq!(
            trainable_params(&cfg.discriminator.init::<AB>(2, &device)),
            694_625
        );
        let g = cfg.generator.init::<B>(1, &device);
        let d = cfg.discriminator.init::<B>(2, &device);
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
        let g = cfg.generator.init::<B>(7, &Default::default());
        let w = g.deconv2.weight.val().into_data().to_vec::<f32>().unwrap();
        let mean = w.iter().sum::<f32>() / w.len() as f32;
        let std = (w.iter().map(|x| (x - mean).powi(2)).sum::<f32>() / w.len() as f32).sqrt();
        assert!(
            mean.abs() < 1e-3 && (std - 0.02).abs() < 1e-3,
            "mean {mean} std {std}"
        );
        let b = g.deconv2.bias.val().into_data().to_vec::<f32>().unwrap();
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
        let a = cfg.generator.init::<B>(3, &Default::default());
        let b = cfg.generator.init::<B>(3, &Default::default());
        let (a, b) = (a.fc.weight.val().into_data(), b.fc.weight.val().into_data());
        assert_eq!(a.to_vec::<f32>().unwrap(), b.to_vec::<f32>().unwrap());
    }
}
