//! One GAN training step on both networks and their optimisers, in the notebook's or the
//! paper's order, and the networks' state as checkpoint records.

use anyhow::Result;
use burn::module::{AutodiffModule, Module};
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::{GradientsParams, Optimizer};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::Tensor;
use rand::rngs::StdRng;

use super::adam::Adam;
use super::ema::Ema;
use super::start_weights::StartWeights;
use crate::config::{GanLoop, OptimizerConfig, TrainingConfig};
use crate::data::{FaceBatcher, Faces};
use crate::nn::{self, Discriminator, Generator, Mode, TrainBackend};
use crate::rng::{stream_seed, Stream};
use crate::run::{self, Records, RunDir};

/// D's logits on `images` in training mode, and the mean of their sigmoid (detached).
fn d_forward<B: TrainBackend>(
    d: &Discriminator<B>,
    images: Tensor<B, 4>,
) -> (Tensor<B, 2>, Tensor<B, 1>) {
    let logits = d.forward(images, Mode::Train);
    let mean = burn::tensor::activation::sigmoid(logits.clone().detach()).mean();
    (logits, mean)
}

/// Binary cross-entropy of `sigmoid(logits)` against a constant label, computed from the
/// logits as max(x, 0) - x*y + log(1 + exp(-|x|)), which never takes the log of zero.
pub fn bce_with_logits<B: Backend>(logits: Tensor<B, 2>, label: f32) -> Tensor<B, 1> {
    let softplus = logits.clone().abs().neg().exp().log1p();
    logits
        .clone()
        .clamp_min(0.0)
        .sub(logits.mul_scalar(label))
        .add(softplus)
        .mean()
}

type Opt<M, B> = OptimizerAdaptor<Adam, M, B>;

fn adam<B: AutodiffBackend, M: AutodiffModule<B>>(s: &OptimizerConfig) -> Opt<M, B> {
    OptimizerAdaptor::from(Adam::new(s))
}

/// Both networks and their optimisers: everything one training step changes.
pub struct Gan<B: AutodiffBackend> {
    pub g: Generator<B>,
    pub d: Discriminator<B>,
    opt_g: Opt<Generator<B>, B>,
    opt_d: Opt<Discriminator<B>, B>,
    lr_g: f64,
    lr_d: f64,
    /// The moving average of G's weights, when the config keeps one.
    pub ema: Option<Ema<B::InnerBackend>>,
    gan_loop: GanLoop,
}

/// Losses and D's outputs of one step, read back from the device in one transfer.
#[derive(Clone, Copy, Debug)]
pub struct StepStats {
    pub d_loss_real: f32,
    pub d_loss_fake: f32,
    pub g_loss: f32,
    pub d_real_mean: f32,
    pub d_fake_mean: f32,
}

impl StepStats {
    pub fn all_finite(&self) -> bool {
        [self.d_loss_real, self.d_loss_fake, self.g_loss]
            .iter()
            .all(|x| x.is_finite())
    }
}

impl<B: TrainBackend> Gan<B> {
    pub fn new(cfg: &TrainingConfig, device: &B::Device) -> Self {
        let g: Generator<B> = cfg.generator.init(
            cfg.image_size,
            stream_seed(cfg.seed, 0, Stream::GeneratorInit),
            device,
        );
        Self {
            ema: cfg.ema.map(|e| Ema::new(g.valid(), e.decay)),
            g,
            d: cfg.discriminator.init(
                cfg.image_size,
                stream_seed(cfg.seed, 0, Stream::DiscriminatorInit),
                device,
            ),
            opt_g: adam(&cfg.optimizer_g),
            opt_d: adam(&cfg.optimizer_d),
            lr_g: cfg.optimizer_g.lr,
            lr_d: cfg.optimizer_d.lr,
            gan_loop: cfg.gan_loop,
        }
    }

    /// Replaces the initialised networks with `weights` where given; the moving average of G
    /// starts from the loaded G. The first tensor missing or of the wrong shape is an error
    /// naming it and its file.
    pub fn with_start(mut self, cfg: &TrainingConfig, weights: &StartWeights) -> Result<Self> {
        (self.g, self.d) = weights.apply(self.g, self.d)?;
        if weights.g.is_some() {
            self.ema = cfg.ema.map(|e| Ema::new(self.g.valid(), e.decay));
        }
        Ok(self)
    }

    /// Serialised networks and optimiser states.
    pub fn records(&self) -> Result<Records> {
        Ok(Records {
            g: run::record_bytes::<B, _>(self.g.clone().into_record())?,
            d: run::record_bytes::<B, _>(self.d.clone().into_record())?,
            g_optim: run::record_bytes::<B, _>(self.opt_g.to_record())?,
            d_optim: run::record_bytes::<B, _>(self.opt_d.to_record())?,
            g_ema: self
                .ema
                .as_ref()
                .map(|e| run::record_bytes::<B::InnerBackend, _>(e.g.clone().into_record()))
                .transpose()?,
        })
    }

    /// Folds the live G into the moving average after training step `step`.
    pub fn update_ema(&mut self, step: usize) {
        if let Some(ema) = self.ema.take() {
            self.ema = Some(ema.update(&self.g.valid(), step));
        }
    }

    /// Rebuilds the networks from `cfg` and loads a checkpoint's weights and optimiser state.
    pub fn restore(
        cfg: &TrainingConfig,
        records: &Records,
        run: &RunDir,
        device: &B::Device,
    ) -> Result<Self> {
        let fresh = Self::new(cfg, device);
        let name = |role: &str| run.records().join(format!("*-{role}.mpk"));
        let g = run::module_from_record_bytes(fresh.g, &records.g, &name("g"), device)?;
        let d = run::module_from_record_bytes(fresh.d, &records.d, &name("d"), device)?;
        let opt_g = fresh.opt_g.load_record(run::record_from_bytes(
            &records.g_optim,
            &name("g_optim"),
            device,
        )?);
        let opt_d = fresh.opt_d.load_record(run::record_from_bytes(
            &records.d_optim,
            &name("d_optim"),
            device,
        )?);
        // A checkpoint from before the config asked for an average starts it at G.
        let ema = match (cfg.ema, &records.g_ema) {
            (Some(e), Some(bytes)) => Some(Ema::new(
                run::module_from_record_bytes(
                    cfg.generator.init(cfg.image_size, 0, device),
                    bytes,
                    &name("g_ema"),
                    device,
                )?,
                e.decay,
            )),
            (Some(e), None) => Some(Ema::new(g.valid(), e.decay)),
            (None, _) => None,
        };
        Ok(Self {
            g,
            d,
            opt_g,
            opt_d,
            lr_g: fresh.lr_g,
            lr_d: fresh.lr_d,
            ema,
            gan_loop: fresh.gan_loop,
        })
    }

    /// One step on the faces at `batch`, drawing D's noise and then G's from `noise`: the
    /// training loop, `bench` and the backend comparison all step this way.
    pub fn step_on(
        self,
        cfg: &TrainingConfig,
        faces: &Faces,
        batch: &[usize],
        noise: &mut StdRng,
        device: &B::Device,
    ) -> (Self, StepStats) {
        let real = FaceBatcher::new(cfg.data.normalization).batch::<B>(faces, batch, device);
        // One upload for both: the same draws, in the same order, as two separate batches.
        let n = batch.len();
        let z = nn::noise::<B>(cfg, noise, 2 * n, device);
        self.step(real, z.clone().narrow(0, 0, n), z.narrow(0, n, n))
    }

    /// One step of the config's loop. Notebook: `noise_d` makes (in inference mode) the fakes
    /// D learns from, `noise_g` those G learns through; D takes one update per batch. Paper:
    /// one fake batch from `noise_g` in training mode serves both, and D takes one update on
    /// the real and fake batches' summed gradients; `noise_d` is unused.
    pub fn step(
        self,
        real: Tensor<B, 4>,
        noise_d: Tensor<B, 2>,
        noise_g: Tensor<B, 2>,
    ) -> (Self, StepStats) {
        let Self {
            g,
            d,
            mut opt_g,
            mut opt_d,
            lr_g,
            lr_d,
            ema,
            gan_loop,
        } = self;

        // The paper's loop makes its one fake batch first, in training mode, with G's graph.
        let paper_fakes =
            (gan_loop == GanLoop::Paper).then(|| g.forward(noise_g.clone(), Mode::Train));
        let fakes = match &paper_fakes {
            Some(f) => f.clone().detach(),
            // Keras predict_on_batch: inference mode, no graph, so D's loss cannot reach G.
            None => Tensor::from_inner(g.valid().forward(noise_d.inner(), Mode::Eval)),
        };

        let (logits, real_mean) = d_forward(&d, real);
        let loss_real = bce_with_logits(logits, 1.0);
        let d = match gan_loop {
            // Keras's two train_on_batch calls: two updates, the second through the first.
            GanLoop::Notebook => {
                let grads = GradientsParams::from_grads(loss_real.backward(), &d);
                opt_d.step(lr_d, d, grads)
            }
            // PyTorch's DCGAN example: both batches' gradients summed into one update.
            GanLoop::Paper => d,
        };
        let (logits, fake_mean) = d_forward(&d, fakes);
        let loss_fake = bce_with_logits(logits, 0.0);
        let d_loss = match gan_loop {
            GanLoop::Notebook => loss_fake.clone(),
            GanLoop::Paper => loss_real.clone().add(loss_fake.clone()),
        };
        let grads = GradientsParams::from_grads(d_loss.backward(), &d);
        let d = opt_d.step(lr_d, d, grads);

        // D frozen: no gradients for its weights, its running statistics left alone.
        let frozen = d.clone().no_grad();
        let generated = paper_fakes.unwrap_or_else(|| g.forward(noise_g, Mode::Train));
        let loss_g = bce_with_logits(frozen.forward(generated, Mode::Frozen), 1.0);
        let grads = GradientsParams::from_grads(loss_g.backward(), &g);
        let g = opt_g.step(lr_g, g, grads);

        let stats = Tensor::cat(
            vec![
                loss_real.detach(),
                loss_fake.detach(),
                loss_g.detach(),
                real_mean,
                fake_mean,
            ],
            0,
        )
        .into_data()
        .to_vec::<f32>()
        .expect("f32 losses");
        let stats = StepStats {
            d_loss_real: stats[0],
            d_loss_fake: stats[1],
            g_loss: stats[2],
            d_real_mean: stats[3],
            d_fake_mean: stats[4],
        };
        (
            Self {
                g,
                d,
                opt_g,
                opt_d,
                lr_g,
                lr_d,
                ema,
                gan_loop,
            },
            stats,
        )
    }
}
