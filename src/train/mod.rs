//! The alternating DCGAN loop, written once for every backend, and resumable at any batch.
//!
//! Per batch, as the notebook: fakes from G in inference mode, detached; one D update on the
//! real batch (label 1); one D update on the fakes (label 0); one G update through a frozen D
//! on fresh noise (label 1).
//!
//! Every random number is drawn from a stream keyed by (seed, epoch or step, purpose), never
//! from a generator that runs across steps, so a resumed run needs no saved RNG state to
//! continue exactly where it stopped.

mod adam;
mod ema;
mod gan;
pub mod interrupt;
mod start_weights;

pub use adam::Adam;
pub use ema::Ema;
pub use gan::{bce_with_logits, Gan, StepStats};
pub use start_weights::StartWeights;

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use burn::module::AutodiffModule;
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;
use rand::seq::SliceRandom;

use crate::config::TrainingConfig;
use crate::data::{self, Faces};
use crate::metrics::Tracker;
use crate::nn::{noise, Mode, TrainBackend};
use crate::progress::{self, human_secs};
use crate::rng::{rng, stream_seed, Stream};
use crate::run::{truncate_jsonl, Board, DataFingerprint, LossRow, Manifest, Records, RunDir};
use indicatif::ProgressBar;

/// A long epoch still checkpoints this often, so a killed run loses at most this much.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(15 * 60);

/// Faces in each epoch's preview grid, and the grid's columns.
const PREVIEW_FACES: usize = 64;
const PREVIEW_COLUMNS: usize = 8;

/// The same noise vectors every epoch, so the preview grids show one face changing.
pub fn preview_noise<B: Backend>(cfg: &TrainingConfig, device: &B::Device) -> Tensor<B, 2> {
    let mut r = rng(cfg.seed, 0, Stream::Preview);
    noise(cfg, &mut r, PREVIEW_FACES, device)
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
    /// A new run; its networks start from the config's initialiser, or where given from
    /// `--init-from`'s weights.
    Fresh(StartWeights),
    Resume(Manifest, Records),
}

/// Running means of an epoch's losses and D outputs, for its summary line.
#[derive(Default)]
struct EpochSums {
    d_loss: f64,
    g_loss: f64,
    d_real: f64,
    d_fake: f64,
    batches: usize,
}

impl EpochSums {
    fn add(&mut self, row: &LossRow) {
        self.d_loss += row.d_loss as f64;
        self.g_loss += row.g_loss as f64;
        self.d_real += row.d_real_mean as f64;
        self.d_fake += row.d_fake_mean as f64;
        self.batches += 1;
    }
}

/// What stays fixed while a run trains.
struct Run<'a, B: TrainBackend> {
    cfg: &'a TrainingConfig,
    faces: &'a Faces,
    data: DataFingerprint,
    run: &'a RunDir,
    device: &'a B::Device,
    batches: usize,
}

impl<B: TrainBackend> Run<'_, B> {
    fn commit(&self, gan: &Gan<B>, board: &mut Board, step: usize) -> Result<()> {
        let keep = "the previous checkpoint is intact; fix the problem (e.g. free disk space) and continue with --resume";
        let mut manifest = Manifest::new(step, self.batches, self.data.clone(), self.cfg.clone());
        manifest.tensorboard = Some(board.position().context(keep)?);
        self.run.commit(manifest, &gan.records()?).context(keep)
    }

    /// Training step `step + 1` on `batch`; a non-finite loss stops the run.
    fn step(
        &self,
        gan: Gan<B>,
        batch: &[usize],
        epoch: usize,
        step: usize,
    ) -> Result<(Gan<B>, LossRow)> {
        let (cfg, device) = (self.cfg, self.device);
        let t = Instant::now();
        let mut noise_rng = rng(cfg.seed, step, Stream::Noise);
        B::seed(device, stream_seed(cfg.seed, step, Stream::Dropout));
        let (mut gan, s) = gan.step_on(cfg, self.faces, batch, &mut noise_rng, device);
        if !s.all_finite() {
            bail!(
                "losses became non-finite at epoch {epoch}, step {} (D real {}, D fake {}, G {}): the run diverged. \
                 {} still holds the checkpoint from before it. Try a lower learning rate (--lr), e.g. half of {}",
                step + 1,
                s.d_loss_real,
                s.d_loss_fake,
                s.g_loss,
                self.run.0.display(),
                cfg.optimizer_d.lr
            );
        }
        gan.update_ema(step + 1);
        let row = LossRow {
            epoch,
            step: step + 1,
            d_loss_real: s.d_loss_real,
            d_loss_fake: s.d_loss_fake,
            d_loss: s.d_loss_real + s.d_loss_fake,
            g_loss: s.g_loss,
            d_real_mean: s.d_real_mean,
            d_fake_mean: s.d_fake_mean,
            images_per_sec: cfg.batch_size as f32 / t.elapsed().as_secs_f32(),
        };
        Ok((gan, row))
    }

    /// The epoch's preview grid and, when due, its score; both before the epoch's commit, so
    /// a kill in between redoes the epoch and never leaves a committed epoch without them.
    fn finish_epoch(
        &self,
        gan: &Gan<B>,
        (tracker, board): (&mut Option<Tracker>, &mut Board),
        preview: &Tensor<B::InnerBackend, 2>,
        epoch: usize,
        step: usize,
    ) -> Result<String> {
        let (cfg, run) = (self.cfg, self.run);
        let images = gan.g.valid().forward(preview.clone(), Mode::Eval);
        let grid = data::grid(
            &data::to_faces(images, cfg.generator.output),
            PREVIEW_COLUMNS,
        );
        let png = data::encode_png(&grid)?;
        crate::run::write_atomic(&run.preview(epoch), &png)?;
        let cannot_board = || "cannot write the TensorBoard event file";
        board
            .preview(step, &png, grid.width(), grid.height())
            .context(cannot_board())?;
        let Some(t) = tracker.as_mut() else {
            return Ok(String::new());
        };
        let ema = gan.ema.as_ref().map(|e| &e.g);
        let scored = t.after_epoch(epoch, step, &gan.g.valid(), ema, cfg, run, self.device)?;
        if let Some(m) = &scored {
            board.metrics(m).context(cannot_board())?;
        }
        Ok(scored.map_or(String::new(), |m| {
            format!(
                "  SWD {:.2}{}{}",
                m.swd_mean,
                if m.best { " (best)" } else { "" },
                m.ema_swd_mean
                    .map(|e| format!(", EMA {e:.2}"))
                    .unwrap_or_default()
            )
        }))
    }
}

/// One line a quarter of the way through an epoch, where there is no progress bar to watch.
fn report_batch(bar: &ProgressBar, row: &LossRow, done: usize, batches: usize) {
    bar.inc(1);
    bar.set_message(format!(
        "D {:.3} G {:.3} {:.0} img/s",
        row.d_loss, row.g_loss, row.images_per_sec
    ));
    let step = row.step;
    if !progress::is_terminal()
        && done.is_multiple_of((batches / 4).max(1))
        && !step.is_multiple_of(batches)
    {
        eprintln!(
            "  epoch {} batch {}/{batches}  D {:.3}  G {:.3}",
            row.epoch,
            step % batches,
            row.d_loss,
            row.g_loss
        );
    }
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
        Start::Fresh(weights) => (Gan::<B>::new(cfg, device).with_start(cfg, weights)?, 0),
        Start::Resume(manifest, records) => {
            run.write_copies(records).context(
                "the checkpoint is intact; fix the problem (e.g. free disk space) and continue with --resume",
            )?;
            (Gan::<B>::restore(cfg, records, run, device)?, manifest.step)
        }
    };
    crate::run::write_atomic(&run.config(), cfg.to_json().as_bytes())?;
    let mut log = open_log(run, step)?;
    let mut board = match &start {
        Start::Resume(manifest, _) => Board::open(&run.0, manifest.tensorboard.as_ref()),
        Start::Fresh(_) => Board::open(&run.0, None),
    }
    .context("cannot write the TensorBoard event file; choose another run folder with --out")?;
    let mut tracker = Tracker::new(cfg, faces, run, step)?;
    let preview = preview_noise::<B::InnerBackend>(cfg, device);
    let ctx = Run::<B> {
        cfg,
        faces,
        data,
        run,
        device,
        batches,
    };
    let total = batches * cfg.epochs;
    let (started, first_step) = (Instant::now(), step);
    let mut last_checkpoint = Instant::now();
    let cannot_log = || format!("cannot write {}", run.losses().display());
    let cannot_board = || "cannot write the TensorBoard event file";

    while step < total {
        let epoch = step / batches + 1;
        let epoch_start = Instant::now();
        let order = epoch_order(cfg, faces.len(), epoch);
        let bar = progress::bar(batches as u64, &format!("epoch {epoch}"));
        bar.set_position((step % batches) as u64);
        let mut sums = EpochSums::default();
        for batch in order.chunks_exact(cfg.batch_size).skip(step % batches) {
            let (next, row) = ctx.step(gan, batch, epoch, step).inspect_err(|_| {
                bar.finish_and_clear();
                let _ = log.flush();
            })?;
            (gan, step) = (next, step + 1);
            write_row(&mut log, &row).with_context(cannot_log)?;
            board.losses(&row).context(cannot_board())?;
            sums.add(&row);
            report_batch(&bar, &row, sums.batches, batches);
            let interrupted = interrupt::requested();
            if interrupted || (last_checkpoint.elapsed() > CHECKPOINT_EVERY && step % batches != 0)
            {
                log.flush().with_context(cannot_log)?;
                ctx.commit(&gan, &mut board, step)?;
                last_checkpoint = Instant::now();
                if interrupted {
                    bar.finish_and_clear();
                    return Ok(Outcome::Interrupted { epoch, step });
                }
            }
        }
        bar.finish_and_clear();
        log.flush().with_context(cannot_log)?;
        let scored = ctx.finish_epoch(&gan, (&mut tracker, &mut board), &preview, epoch, step)?;
        ctx.commit(&gan, &mut board, step)?;
        last_checkpoint = Instant::now();
        let per_step = started.elapsed().as_secs_f64() / (step - first_step) as f64;
        print_epoch(
            cfg,
            epoch,
            &sums,
            epoch_start.elapsed().as_secs_f64(),
            &scored,
            per_step * (total - step) as f64,
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

fn print_epoch(
    cfg: &TrainingConfig,
    epoch: usize,
    sums: &EpochSums,
    secs: f64,
    scored: &str,
    left: f64,
) {
    let n = sums.batches.max(1) as f64;
    eprintln!(
        "epoch {epoch}/{}  D {:.3}  G {:.3}  D(x) {:.2}  D(G(z)) {:.2}  {:.0} img/s  {}  rss {} MB{scored}  (about {} left)",
        cfg.epochs,
        sums.d_loss / n,
        sums.g_loss / n,
        sums.d_real / n,
        sums.d_fake / n,
        (sums.batches * cfg.batch_size) as f64 / secs,
        human_secs(secs),
        progress::rss_bytes() / (1 << 20),
        human_secs(left),
    );
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
