//! The alternating DCGAN loop, written once for every backend, and resumable at any batch.
//!
//! Per batch, as the notebook: fakes from G in inference mode, detached; one D update on the
//! real batch (label 1); one D update on the fakes (label 0); one G update through a frozen D
//! on fresh noise (label 1).
//!
//! Every random number is drawn from a stream keyed by (seed, epoch or step, purpose), never
//! from a generator that runs across steps, so a resumed run needs no saved RNG state to
//! continue exactly where it stopped.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::Path;
use std::time::{Duration, Instant};

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

use crate::checkpoint::{self, DataFingerprint, Manifest, Records, RunDir};
use crate::config::{AdamSettings, TrainingConfig};
use crate::data::{FaceBatcher, Faces};
use crate::ema::Ema;
use crate::interrupt;
use crate::layers::TrainBackend;
use crate::model::{Discriminator, Generator, Mode};
use crate::progress;
use crate::sample;

/// A long epoch still checkpoints this often, so a killed run loses at most this much.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(15 * 60);

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

/// Independent random streams, each derived from the run seed, an index and a purpose.
#[derive(Clone, Copy)]
pub enum Stream {
    GeneratorInit = 1,
    DiscriminatorInit = 2,
    Noise = 3,
    Shuffle = 4,
    Preview = 5,
    Dropout = 6,
    Track = 7,
}

pub fn stream_seed(seed: u64, index: usize, stream: Stream) -> u64 {
    // SplitMix64 finaliser: nearby inputs give unrelated seeds.
    let mut z = seed
        .wrapping_add((index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15))
        .wrapping_add((stream as u64).wrapping_mul(0xD1B5_4A32_D192_ED03));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

pub fn rng(seed: u64, index: usize, stream: Stream) -> StdRng {
    StdRng::seed_from_u64(stream_seed(seed, index, stream))
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
    /// The moving average of G's weights, when the config keeps one.
    pub ema: Option<Ema<B::InnerBackend>>,
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
        let g: Generator<B> = cfg
            .generator
            .init(stream_seed(cfg.seed, 0, Stream::GeneratorInit), device);
        Self {
            ema: cfg.ema.map(|e| Ema::new(g.valid(), e.decay)),
            g,
            d: cfg
                .discriminator
                .init(stream_seed(cfg.seed, 0, Stream::DiscriminatorInit), device),
            opt_g: adam(&cfg.optimizer_g),
            opt_d: adam(&cfg.optimizer_d),
            lr_g: cfg.optimizer_g.lr,
            lr_d: cfg.optimizer_d.lr,
        }
    }

    /// Serialised networks and optimiser states.
    pub fn records(&self) -> Result<Records> {
        Ok(Records {
            g: checkpoint::record_bytes::<B, _>(self.g.clone().into_record())?,
            d: checkpoint::record_bytes::<B, _>(self.d.clone().into_record())?,
            g_optim: checkpoint::record_bytes::<B, _>(self.opt_g.to_record())?,
            d_optim: checkpoint::record_bytes::<B, _>(self.opt_d.to_record())?,
            g_ema: self
                .ema
                .as_ref()
                .map(|e| checkpoint::record_bytes::<B::InnerBackend, _>(e.g.clone().into_record()))
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
        let g = checkpoint::module_from_record_bytes(fresh.g, &records.g, &name("g"), device)?;
        let d = checkpoint::module_from_record_bytes(fresh.d, &records.d, &name("d"), device)?;
        let opt_g = fresh.opt_g.load_record(checkpoint::record_from_bytes(
            &records.g_optim,
            &name("g_optim"),
            device,
        )?);
        let opt_d = fresh.opt_d.load_record(checkpoint::record_from_bytes(
            &records.d_optim,
            &name("d_optim"),
            device,
        )?);
        // A checkpoint from before the config asked for an average starts it at G.
        let ema = match (cfg.ema, &records.g_ema) {
            (Some(e), Some(bytes)) => Some(Ema::new(
                checkpoint::module_from_record_bytes(
                    cfg.generator.init(0, device),
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
        })
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
            ema,
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

        // D frozen: no gradients for its weights, its running statistics left alone.
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
                ema,
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

/// The first `steps` steps of a fresh run on `backend`, step k on faces `k*batch..(k+1)*batch`
/// in file order. Not generic, so callers comparing backends (the WGPU test) reuse this
/// crate's compiled training code instead of compiling their own copy of it.
pub fn first_steps(
    cfg: &TrainingConfig,
    faces: &Faces,
    steps: usize,
    backend: &crate::backend::Resolved,
) -> Vec<StepStats> {
    fn on<B: TrainBackend>(
        cfg: &TrainingConfig,
        faces: &Faces,
        steps: usize,
        device: &B::Device,
    ) -> Vec<StepStats> {
        let batcher = FaceBatcher::new(cfg.data.normalization);
        let mut gan = Gan::<B>::new(cfg, device);
        let mut r = rng(cfg.seed, 1, Stream::Noise);
        let n = cfg.batch_size;
        let mut out = Vec::new();
        for step in 0..steps {
            let idx: Vec<usize> = (step * n..(step + 1) * n).collect();
            let real = batcher.batch::<B>(faces, &idx, device);
            let noise_d = noise::<B>(cfg, &mut r, n, device);
            let noise_g = noise::<B>(cfg, &mut r, n, device);
            let (next, s) = gan.step(real, noise_d, noise_g);
            gan = next;
            out.push(s);
        }
        out
    }
    crate::with_backend!(backend, |B, device| on::<burn::backend::Autodiff<B>>(
        cfg, faces, steps, &device
    ))
}

/// The same 64 noise vectors every epoch, so the preview grids show one face changing.
pub fn preview_noise<B: Backend>(cfg: &TrainingConfig, device: &B::Device) -> Tensor<B, 2> {
    noise(cfg, &mut rng(cfg.seed, 0, Stream::Preview), 64, device)
}

/// The image order of an epoch (1-based): a pure function of the seed and the epoch.
pub fn epoch_order(cfg: &TrainingConfig, faces: usize, epoch: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..faces).collect();
    if cfg.data.shuffle {
        order.shuffle(&mut rng(cfg.seed, epoch, Stream::Shuffle));
    }
    order
}

/// How a call to [`train`] ended when it did not fail.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Finished,
    /// Stopped by Ctrl-C or SIGTERM after saving a checkpoint at this step.
    Interrupted {
        epoch: usize,
        step: usize,
    },
}

/// Where a run starts: fresh, or from a checkpoint read by `RunDir::load_checkpoint`.
#[allow(clippy::large_enum_variant)] // built once per run
pub enum Start {
    Fresh,
    Resume(Manifest, Records),
}

/// Trains until `cfg.epochs` epochs are done, writing everything the run folder promises.
pub fn train<B: TrainBackend>(
    cfg: &TrainingConfig,
    faces: &Faces,
    data: DataFingerprint,
    run: &RunDir,
    start: Start,
    device: &B::Device,
) -> Result<Outcome> {
    let batches = faces.len() / cfg.batch_size;
    if batches == 0 {
        bail!(
            "only {} usable images, fewer than one batch of {}: lower --batch-size or add images",
            faces.len(),
            cfg.batch_size
        );
    }
    let (mut gan, mut step) = match &start {
        Start::Fresh => (Gan::<B>::new(cfg, device), 0),
        Start::Resume(manifest, records) => {
            (Gan::<B>::restore(cfg, records, run, device)?, manifest.step)
        }
    };
    checkpoint::write_atomic(&run.config(), cfg.to_json().as_bytes())?;
    let mut log = open_log(run, step)?;
    let mut tracker = crate::eval::Tracker::new(cfg, faces, run, step)?;
    let batcher = FaceBatcher::new(cfg.data.normalization);
    let preview = preview_noise::<B::InnerBackend>(cfg, device);
    let total = batches * cfg.epochs;
    let started = Instant::now();
    let first_step = step;
    let mut last_checkpoint = Instant::now();
    let commit = |gan: &Gan<B>, step: usize| -> Result<()> {
        run.commit(Manifest::new(step, batches, data.clone(), cfg.clone()), &gan.records()?)
            .context("the previous checkpoint is intact; fix the problem (e.g. free disk space) and continue with --resume")
    };

    while step < total {
        let epoch = step / batches + 1;
        let epoch_start = Instant::now();
        let order = epoch_order(cfg, faces.len(), epoch);
        let bar = progress::bar(batches as u64, &format!("epoch {epoch}"));
        bar.set_position((step % batches) as u64);
        let mut sums = [0f64; 4];
        let mut done = 0usize;

        for batch in order.chunks_exact(cfg.batch_size).skip(step % batches) {
            let t = Instant::now();
            let real = batcher.batch::<B>(faces, batch, device);
            let mut noise_rng = rng(cfg.seed, step, Stream::Noise);
            let noise_d = noise::<B>(cfg, &mut noise_rng, cfg.batch_size, device);
            let noise_g = noise::<B>(cfg, &mut noise_rng, cfg.batch_size, device);
            B::seed(device, stream_seed(cfg.seed, step, Stream::Dropout));
            let (next, s) = gan.step(real, noise_d, noise_g);
            if !s.all_finite() {
                bar.finish_and_clear();
                log.flush()?;
                bail!(
                    "losses became non-finite at epoch {epoch}, step {} (D real {}, D fake {}, G {}): the run diverged. \
                     {} still holds the checkpoint from before it. Try a lower learning rate (--lr), e.g. half of {}",
                    step + 1,
                    s.d_loss_real,
                    s.d_loss_fake,
                    s.g_loss,
                    run.0.display(),
                    cfg.optimizer_d.lr
                );
            }
            gan = next;
            step += 1;
            gan.update_ema(step);
            done += 1;
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
            write_row(&mut log, &row)
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
            if !progress::is_terminal()
                && done.is_multiple_of((batches / 4).max(1))
                && step % batches != 0
            {
                eprintln!(
                    "  epoch {epoch} batch {}/{batches}  D {:.3}  G {:.3}",
                    step % batches,
                    row.d_loss,
                    row.g_loss
                );
            }

            let interrupted = interrupt::requested();
            if interrupted || (last_checkpoint.elapsed() > CHECKPOINT_EVERY && step % batches != 0)
            {
                log.flush()
                    .with_context(|| format!("cannot write {}", run.losses().display()))?;
                commit(&gan, step)?;
                last_checkpoint = Instant::now();
                if interrupted {
                    bar.finish_and_clear();
                    return Ok(Outcome::Interrupted { epoch, step });
                }
            }
        }
        bar.finish_and_clear();
        log.flush()
            .with_context(|| format!("cannot write {}", run.losses().display()))?;

        // Preview before the commit: a kill in between redoes the epoch and rewrites the
        // same grid, never leaves a committed epoch without its grid.
        let images = gan.g.valid().forward(preview.clone(), Mode::Eval);
        sample::write_grid(
            &sample::to_faces(images, cfg.generator.output),
            8,
            &run.preview(epoch),
        )?;
        // Scored before the commit, like the preview: a kill in between redoes the epoch.
        let mut scored = String::new();
        if let Some(t) = tracker.as_mut() {
            let ema = gan.ema.as_ref().map(|e| &e.g);
            if let Some(m) = t.after_epoch(epoch, step, &gan.g.valid(), ema, cfg, run, device)? {
                scored = format!(
                    "  SWD {:.2}{}{}",
                    m.swd_mean,
                    if m.best { " (best)" } else { "" },
                    m.ema_swd_mean
                        .map(|e| format!(", EMA {e:.2}"))
                        .unwrap_or_default()
                );
            }
        }
        commit(&gan, step)?;
        last_checkpoint = Instant::now();

        let secs = epoch_start.elapsed().as_secs_f64();
        progress::release_free_memory();
        let n = done.max(1) as f64;
        let per_step = started.elapsed().as_secs_f64() / (step - first_step) as f64;
        eprintln!(
            "epoch {epoch}/{}  D {:.3}  G {:.3}  D(x) {:.2}  D(G(z)) {:.2}  {:.0} img/s  {}  rss {} MB{scored}  (about {} left)",
            cfg.epochs,
            sums[0] / n,
            sums[1] / n,
            sums[2] / n,
            sums[3] / n,
            (done * cfg.batch_size) as f64 / secs,
            human_secs(secs),
            progress::rss_bytes() / (1 << 20),
            human_secs(per_step * (total - step) as f64),
        );
    }
    eprintln!(
        "done: {} epochs, {step} steps; generator in {}, preview grids in {}",
        cfg.epochs,
        run.generator().display(),
        run.samples().display()
    );
    Ok(Outcome::Finished)
}

fn write_row(log: &mut impl Write, row: &LossRow) -> std::io::Result<()> {
    serde_json::to_writer(&mut *log, row)?;
    log.write_all(b"\n")
}

/// Opens `losses.jsonl` for appending after keeping exactly the rows of steps `1..=step`:
/// rows a killed run wrote after its last checkpoint are dropped, so a resumed log has each
/// step once.
fn open_log(run: &RunDir, step: usize) -> Result<BufWriter<File>> {
    let path = run.losses();
    let rows = truncate_jsonl::<LossRow>(&path, step, |r| r.step)?.len();
    if rows != step {
        eprintln!(
            "warning: {} holds {rows} rows for {step} checkpointed steps; continuing it as it is",
            path.display()
        );
    }
    let f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    Ok(BufWriter::new(f))
}

/// Keeps the rows of a JSON-lines log up to `step` (a killed run may have written past its
/// last checkpoint, or half a line) and returns them; the file is rewritten atomically.
pub fn truncate_jsonl<R: serde::de::DeserializeOwned>(
    path: &Path,
    step: usize,
    step_of: impl Fn(&R) -> usize,
) -> Result<Vec<R>> {
    if step == 0 {
        let _ = std::fs::remove_file(path);
        return Ok(Vec::new());
    }
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut kept = String::new();
    let mut rows = Vec::new();
    for line in text.lines() {
        match serde_json::from_str::<R>(line) {
            Ok(r) if step_of(&r) <= step => {
                kept.push_str(line);
                kept.push('\n');
                rows.push(r);
            }
            _ => break,
        }
    }
    if path.exists() {
        checkpoint::write_atomic(path, kept.as_bytes())?;
    }
    Ok(rows)
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
