//! The alternating DCGAN loop, written once for every backend.
//!
//! Per batch, as the notebook: fakes from G in inference mode, detached; one D update on the
//! real batch (label 1); one D update on the fakes (label 0); one G update through a frozen D
//! on fresh noise (label 1).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use burn::module::{AutodiffModule, Module};
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::{Adam, AdamConfig, GradientsParams, Optimizer};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Tensor, TensorData};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use crate::checkpoint;
use crate::config::{AdamSettings, TrainingConfig};
use crate::data::{FaceBatcher, Faces};
use crate::model::{Discriminator, Generator, Mode};
use crate::progress;
use crate::sample;

/// One row of `losses.jsonl`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct LossRow {
    pub epoch: usize,
    pub step: usize,
    pub d_loss_real: f32,
    pub d_loss_fake: f32,
    pub d_loss: f32,
    pub g_loss: f32,
    /// Mean D(x) on the real batch, before D's update.
    pub d_real_mean: f32,
    /// Mean D(G(z)) on the fake batch, before D's update.
    pub d_fake_mean: f32,
    pub images_per_sec: f32,
}

/// The run folder's files, in one place.
pub struct RunDir(pub PathBuf);

impl RunDir {
    pub fn config(&self) -> PathBuf {
        self.0.join("config.json")
    }
    pub fn generator(&self) -> PathBuf {
        self.0.join("g.mpk")
    }
    pub fn discriminator(&self) -> PathBuf {
        self.0.join("d.mpk")
    }
    pub fn losses(&self) -> PathBuf {
        self.0.join("losses.jsonl")
    }
    pub fn samples(&self) -> PathBuf {
        self.0.join("samples")
    }
    pub fn preview(&self, epoch: usize) -> PathBuf {
        self.samples().join(format!("epoch_{epoch:04}.png"))
    }

    /// Makes the folder, refusing one that already holds a run unless `force`, and proves it
    /// writable before hours of training depend on it.
    pub fn prepare(&self, force: bool) -> Result<()> {
        let existing: Vec<PathBuf> = [self.config(), self.generator(), self.losses()]
            .into_iter()
            .filter(|p| p.exists())
            .collect();
        if !existing.is_empty() && !force {
            bail!(
                "{} already holds a run ({} exists)\n  choose another folder with --out, or pass --force to overwrite it",
                self.0.display(),
                existing[0].display()
            );
        }
        std::fs::create_dir_all(self.samples())
            .with_context(|| format!("cannot create run folder {}", self.0.display()))?;
        if force {
            for f in [self.losses(), self.generator(), self.discriminator()] {
                let _ = std::fs::remove_file(f);
            }
            if let Ok(entries) = std::fs::read_dir(self.samples()) {
                for e in entries.flatten() {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        let probe = self.0.join(".write-test");
        std::fs::write(&probe, b"ok").with_context(|| {
            format!(
                "run folder {} is not writable; choose another with --out",
                self.0.display()
            )
        })?;
        let _ = std::fs::remove_file(probe);
        Ok(())
    }
}

/// Independent random streams, each derived from the run seed, the epoch and a purpose, so an
/// epoch's shuffle and noise do not depend on how many numbers earlier epochs drew.
#[derive(Clone, Copy)]
pub enum Stream {
    GeneratorInit = 1,
    DiscriminatorInit = 2,
    Noise = 3,
    Shuffle = 4,
    Preview = 5,
    Dropout = 6,
}

pub fn stream_seed(seed: u64, epoch: usize, stream: Stream) -> u64 {
    // SplitMix64 finaliser: nearby inputs give unrelated seeds.
    let mut z = seed
        .wrapping_add((epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15))
        .wrapping_add((stream as u64).wrapping_mul(0xD1B5_4A32_D192_ED03));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

pub fn rng(seed: u64, epoch: usize, stream: Stream) -> StdRng {
    StdRng::seed_from_u64(stream_seed(seed, epoch, stream))
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

fn adam<B: AutodiffBackend, M: AutodiffModule<B>>(s: &AdamSettings) -> Opt<M, B> {
    AdamConfig::new()
        .with_beta_1(s.beta1)
        .with_beta_2(s.beta2)
        .with_epsilon(s.epsilon)
        .init()
}

/// Both networks and their optimisers: everything one training step changes.
pub struct Gan<B: AutodiffBackend> {
    pub g: Generator<B>,
    pub d: Discriminator<B>,
    opt_g: Opt<Generator<B>, B>,
    opt_d: Opt<Discriminator<B>, B>,
    lr_g: f64,
    lr_d: f64,
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

impl<B: AutodiffBackend> Gan<B> {
    pub fn new(cfg: &TrainingConfig, device: &B::Device) -> Self {
        Self {
            g: cfg
                .generator
                .init(stream_seed(cfg.seed, 0, Stream::GeneratorInit), device),
            d: cfg
                .discriminator
                .init(stream_seed(cfg.seed, 0, Stream::DiscriminatorInit), device),
            opt_g: adam(&cfg.optimizer_g),
            opt_d: adam(&cfg.optimizer_d),
            lr_g: cfg.optimizer_g.lr,
            lr_d: cfg.optimizer_d.lr,
        }
    }

    /// One notebook step. `noise_d` makes the fakes D learns from, `noise_g` those G learns
    /// through.
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
        } = self;

        // Keras predict_on_batch: inference mode, no graph, so D's loss cannot reach G.
        let fakes = Tensor::from_inner(g.valid().forward(noise_d.inner(), Mode::Eval));

        let logits = d.forward(real, Mode::Train);
        let real_mean = burn::tensor::activation::sigmoid(logits.clone().detach()).mean();
        let loss_real = bce_with_logits(logits, 1.0);
        let grads = GradientsParams::from_grads(loss_real.backward(), &d);
        let d = opt_d.step(lr_d, d, grads);

        let logits = d.forward(fakes, Mode::Train);
        let fake_mean = burn::tensor::activation::sigmoid(logits.clone().detach()).mean();
        let loss_fake = bce_with_logits(logits, 0.0);
        let grads = GradientsParams::from_grads(loss_fake.backward(), &d);
        let d = opt_d.step(lr_d, d, grads);

        // D frozen: its weights need no gradients, its BatchNorm uses running statistics.
        let frozen = d.clone().no_grad();
        let loss_g = bce_with_logits(
            frozen.forward(g.forward(noise_g, Mode::Train), Mode::Frozen),
            1.0,
        );
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
            },
            stats,
        )
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

/// The same 64 noise vectors every epoch, so the preview grids show one face changing.
pub fn preview_noise<B: Backend>(cfg: &TrainingConfig, device: &B::Device) -> Tensor<B, 2> {
    noise(cfg, &mut rng(cfg.seed, 0, Stream::Preview), 64, device)
}

/// Trains for `cfg.epochs` epochs, writing everything the run folder promises.
pub fn train<B: AutodiffBackend>(
    cfg: &TrainingConfig,
    faces: &Faces,
    run: &RunDir,
    device: &B::Device,
) -> Result<()> {
    let batches = faces.len() / cfg.batch_size;
    if batches == 0 {
        bail!(
            "only {} usable images, fewer than one batch of {}: lower --batch-size or add images",
            faces.len(),
            cfg.batch_size
        );
    }
    checkpoint::write_atomic(&run.config(), cfg.to_json().as_bytes())?;
    let mut log = BufWriter::new(
        File::create(run.losses())
            .with_context(|| format!("cannot create {}", run.losses().display()))?,
    );
    let batcher = FaceBatcher::new(cfg.data.normalization);
    let preview = preview_noise::<B::InnerBackend>(cfg, device);
    let mut gan = Gan::<B>::new(cfg, device);
    let started = Instant::now();
    let mut step = 0;

    for epoch in 1..=cfg.epochs {
        let epoch_start = Instant::now();
        let mut order: Vec<usize> = (0..faces.len()).collect();
        if cfg.data.shuffle {
            order.shuffle(&mut rng(cfg.seed, epoch, Stream::Shuffle));
        }
        let mut noise_rng = rng(cfg.seed, epoch, Stream::Noise);
        B::seed(device, stream_seed(cfg.seed, epoch, Stream::Dropout));
        let bar = progress::bar(batches as u64, &format!("epoch {epoch}"));
        let mut sums = [0f64; 4];

        for batch in order.chunks_exact(cfg.batch_size) {
            let t = Instant::now();
            let real = batcher.batch::<B>(faces, batch, device);
            let noise_d = noise::<B>(cfg, &mut noise_rng, cfg.batch_size, device);
            let noise_g = noise::<B>(cfg, &mut noise_rng, cfg.batch_size, device);
            let (next, s) = gan.step(real, noise_d, noise_g);
            gan = next;
            step += 1;
            if !s.all_finite() {
                log.flush()?;
                bail!(
                    "losses became non-finite at epoch {epoch}, step {step} (D real {}, D fake {}, G {}); \
                     the run diverged. The checkpoint in {} is from the last completed epoch. Try a lower learning rate (--lr)",
                    s.d_loss_real, s.d_loss_fake, s.g_loss, run.0.display()
                );
            }
            let row = LossRow {
                epoch,
                step,
                d_loss_real: s.d_loss_real,
                d_loss_fake: s.d_loss_fake,
                d_loss: s.d_loss_real + s.d_loss_fake,
                g_loss: s.g_loss,
                d_real_mean: s.d_real_mean,
                d_fake_mean: s.d_fake_mean,
                images_per_sec: cfg.batch_size as f32 / t.elapsed().as_secs_f32(),
            };
            serde_json::to_writer(&mut log, &row)?;
            log.write_all(b"\n")
                .with_context(|| format!("cannot write {}", run.losses().display()))?;
            for (sum, v) in
                sums.iter_mut()
                    .zip([row.d_loss, row.g_loss, row.d_real_mean, row.d_fake_mean])
            {
                *sum += v as f64;
            }
            bar.inc(1);
            bar.set_message(format!(
                "D {:.3} G {:.3} {:.0} img/s",
                row.d_loss, row.g_loss, row.images_per_sec
            ));
        }
        bar.finish_and_clear();
        log.flush()
            .with_context(|| format!("cannot write {}", run.losses().display()))?;

        checkpoint::save_module(gan.g.valid(), &run.generator())?;
        checkpoint::save_module(gan.d.valid(), &run.discriminator())?;
        let images = gan.g.valid().forward(preview.clone(), Mode::Eval);
        sample::write_grid(
            &sample::to_faces(images, cfg.generator.output),
            8,
            &run.preview(epoch),
        )?;

        let secs = epoch_start.elapsed().as_secs_f64();
        let n = batches as f64;
        let left = started.elapsed().as_secs_f64() / epoch as f64 * (cfg.epochs - epoch) as f64;
        eprintln!(
            "epoch {epoch}/{}  D {:.3}  G {:.3}  D(x) {:.2}  D(G(z)) {:.2}  {:.0} img/s  {}  (about {} left)",
            cfg.epochs,
            sums[0] / n,
            sums[1] / n,
            sums[2] / n,
            sums[3] / n,
            (batches * cfg.batch_size) as f64 / secs,
            human_secs(secs),
            human_secs(left),
        );
    }
    eprintln!(
        "done: {} epochs, {step} steps in {}; generator in {}, samples in {}",
        cfg.epochs,
        human_secs(started.elapsed().as_secs_f64()),
        run.generator().display(),
        run.samples().display()
    );
    Ok(())
}

pub fn human_secs(s: f64) -> String {
    if s < 60.0 {
        format!("{s:.1}s")
    } else if s < 3600.0 {
        format!("{}m{:02}s", (s / 60.0) as u64, (s % 60.0) as u64)
    } else {
        format!(
            "{}h{:02}m",
            (s / 3600.0) as u64,
            ((s % 3600.0) / 60.0) as u64
        )
    }
}

/// Reads `losses.jsonl`, naming the line that does not parse.
pub fn read_losses(path: &Path) -> Result<Vec<LossRow>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read {}; train first, or pass --log", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l)
                .with_context(|| format!("{} line {} is not a loss row", path.display(), i + 1))
        })
        .collect()
}
