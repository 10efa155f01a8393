//! Step-for-step parity with the frameworks themselves: replays fixtures written by
//! `tests/reference/parity_torch.py` (PyTorch, `--preset dcgan` with the paper's loop) and
//! `tests/reference/parity_keras.py` (Keras, `--preset notebook`), so CI guards the parity
//! without Python.
//!
//! A fixture is `tests/data/parity/NAME.safetensors` (what `write_fixture` in
//! `parity_common.py` lists: the losses of a float64 and a float32 run, of float64 runs from
//! nudged starts and of float32 runs with dropout on, the noise, and each state-dict tensor
//! sampled after step 1 and at the end) and `NAME.png`, the real faces the steps use, in order.
//! Both sides start from the weights `parity_common.py` defines from each tensor's name.

use std::path::Path;

use burn::backend::{Autodiff, Flex};
use burn::module::AutodiffModule;
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use dcgan::config::{FrozenBn, GanLoop, TrainingConfig};
use dcgan::data::{FaceBatcher, Faces};
use dcgan::nn::torch_names::{self, NamedTensor};
use dcgan::rng::{stream_seed, Stream};
use dcgan::run::safetensors::read_state_dict;
use dcgan::train::Gan;

type B = Autodiff<Flex>;

/// Losses must agree to this relative difference, step by step.
const LOSS_TOLERANCE: f32 = 1e-4;
/// Final weights: the largest difference in a tensor, relative to its largest magnitude.
const WEIGHT_TOLERANCE: f32 = 1e-4;
/// After the first steps: how many times the framework's own float32-sized departures
/// (`check`) dcgan's may be.
const SPREAD: f32 = 3.0;

fn fnv1a32(text: &str) -> u64 {
    let mut h: u32 = 0x811C_9DC5;
    for byte in text.bytes() {
        h = (h ^ byte as u32).wrapping_mul(0x0100_0193);
    }
    h as u64
}

/// `parity_common.start_value`: the start value of a state-dict tensor from its name.
fn start_value(prefix: &str, t: &NamedTensor) -> NamedTensor {
    let n = t.data.len();
    let seed = fnv1a32(&format!("{prefix}{}", t.name));
    let data = (0..n as u64)
        .map(|i| {
            let u = (i.wrapping_mul(2_654_435_761).wrapping_add(seed) % (1 << 32)) as f64
                / 4_294_967_296.0;
            let signed = 2.0 * u - 1.0;
            (if t.name.ends_with("running_mean") {
                0.0
            } else if t.name.ends_with("running_var") {
                1.0
            } else if t.name.ends_with(".bias") {
                0.1 * signed
            } else if t.shape.len() == 1 {
                1.0 + 0.1 * signed
            } else {
                signed * (3.0 / (n as f64 / t.shape[0] as f64)).sqrt()
            }) as f32
        })
        .collect();
    NamedTensor { data, ..t.clone() }
}

struct Fixture {
    tensors: Vec<NamedTensor>,
    faces: Faces,
}

impl Fixture {
    fn open(name: &str) -> Self {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/parity")
            .join(name);
        let png = path.with_extension("png");
        let faces = image::open(&png)
            .unwrap_or_else(|e| panic!("{}: {e}", png.display()))
            .to_rgb8()
            .into_raw();
        Self {
            tensors: read_state_dict(&path.with_extension("safetensors")).expect("fixture"),
            faces: Faces::from_pixels(faces, 64),
        }
    }

    fn get(&self, name: &str) -> &NamedTensor {
        self.tensors
            .iter()
            .find(|t| t.name == name)
            .unwrap_or_else(|| panic!("the fixture has no tensor {name}"))
    }

    /// The losses of the framework's float64 runs from nudged starts, one list per run (none
    /// where the fixture has no `losses64n`).
    fn nudged_losses(&self) -> Vec<Vec<f32>> {
        let Some(t) = self.tensors.iter().find(|t| t.name == "losses64n") else {
            return Vec::new();
        };
        t.data
            .chunks(t.data.len() / t.shape[0])
            .map(<[f32]>::to_vec)
            .collect()
    }

    /// Step `s` on `gan`: the fixture's faces and noise, dropout masks seeded as training
    /// seeds them. Returns the losses (D real, D fake, G).
    fn step(&self, gan: Gan<B>, cfg: &TrainingConfig, s: usize) -> (Gan<B>, [f32; 3]) {
        let device = Default::default();
        let batch = self.get("noise_g").shape[1];
        let indices: Vec<usize> = (s * batch..(s + 1) * batch).collect();
        let batcher = FaceBatcher::new(cfg.data.normalization);
        let real = batcher.batch::<B>(&self.faces, &indices, &device);
        B::seed(&device, stream_seed(cfg.seed, s, Stream::Dropout));
        let (gan, st) = gan.step(real, self.noise("noise_d", s), self.noise("noise_g", s));
        (gan, [st.d_loss_real, st.d_loss_fake, st.g_loss])
    }

    /// Step `s`'s noise.
    fn noise(&self, name: &str, s: usize) -> Tensor<B, 2> {
        let t = self.get(name);
        let [b, z] = [t.shape[1], t.shape[2]];
        let data = TensorData::new(t.data[s * b * z..(s + 1) * b * z].to_vec(), [b, z]);
        Tensor::from_data(data, &Default::default())
    }
}

fn relative(ours: f32, theirs: f32) -> f32 {
    (ours - theirs).abs() / theirs.abs().max(1e-6)
}

/// For each tensor of `ours`, the largest difference from the fixture's float64 samples
/// `KEY.PREFIXNAME` (`final` or `after1`), relative to the tensor's largest magnitude, and the
/// same for the fixture's float32 run where it has one (`final32.`, else 0): the worst tensor.
fn weight_difference(
    fixture: &Fixture,
    key: &str,
    nets: [&[NamedTensor]; 2],
) -> (f32, f32, String) {
    let mut worst = (0.0f32, 0.0f32, String::new());
    for (prefix, ours) in ["g.", "d."].into_iter().zip(nets) {
        for t in ours {
            let exact = &fixture.get(&format!("{key}.{prefix}{}", t.name)).data;
            let scale = exact.iter().fold(0.0f32, |m, x| m.max(x.abs())).max(1e-6);
            let ours: Vec<f32> = t
                .data
                .iter()
                .step_by(t.data.len().div_ceil(512))
                .copied()
                .collect();
            assert_eq!(ours.len(), exact.len(), "{prefix}{}", t.name);
            let diff = |xs: &[f32]| {
                xs.iter()
                    .zip(exact)
                    .map(|(a, b)| (a - b).abs() / scale)
                    .fold(0.0, f32::max)
            };
            let f32_run = fixture
                .tensors
                .iter()
                .find(|x| x.name == format!("{key}32.{prefix}{}", t.name))
                .map_or(0.0, |x| diff(&x.data));
            worst.1 = worst.1.max(f32_run);
            let d = diff(&ours);
            if d >= worst.0 {
                worst = (d, worst.1, format!("{prefix}{}", t.name));
            }
        }
    }
    worst
}

/// G's and D's state dicts.
fn state(gan: &Gan<B>) -> [Vec<NamedTensor>; 2] {
    [
        torch_names::generator_tensors(&gan.g.valid()),
        torch_names::discriminator_tensors(&gan.d.valid()),
    ]
}

/// A GAN of `cfg`'s holding the shared start weights.
fn started(cfg: &TrainingConfig) -> Gan<B> {
    let mut gan = Gan::<B>::new(cfg, &Default::default());
    let start = |prefix, ts: Vec<NamedTensor>| -> Vec<NamedTensor> {
        ts.iter().map(|t| start_value(prefix, t)).collect()
    };
    let g_start = start("g.", torch_names::generator_tensors(&gan.g));
    let d_start = start("d.", torch_names::discriminator_tensors(&gan.d));
    gan.g = torch_names::generator_from_tensors(gan.g, &g_start, "start").expect("G loads");
    gan.d = torch_names::discriminator_from_tensors(gan.d, &d_start, "start").expect("D loads");
    gan
}

/// Replays `name` with `cfg` from the shared start weights. Returns the report it prints and
/// the largest relative differences from the float64 run: the losses of the first
/// `exact_steps` steps that the nudged runs leave within `LOSS_TOLERANCE`, and the weights after
/// step 1 (ours); the other losses and the final weights, each
/// as (ours, the farthest of the framework's float32 run and its nudged float64 runs).
fn replay(
    name: &str,
    cfg: TrainingConfig,
    exact_steps: usize,
) -> (String, f32, [f32; 2], [f32; 2]) {
    let fixture = Fixture::open(name);
    let losses = fixture.get("losses");
    let steps = losses.shape[0];
    let mut gan = started(&cfg);
    let (exact, f32_run) = (&losses.data, &fixture.get("losses32").data);
    let nudged = fixture.nudged_losses();
    let mut report = format!("{name}: losses (D real, D fake, G): ours / float64 / float32\n");
    let (mut first, mut ours_later, mut theirs_later) = (0.0f32, 0.0f32, 0.0f32);
    let (mut after1, mut nudged_later) = (0.0f32, 0.0f32);
    for s in 0..steps {
        let (next, ours) = fixture.step(gan, &cfg, s);
        gan = next;
        for k in 0..3 {
            let (o, t) = (
                relative(ours[k], exact[3 * s + k]),
                relative(f32_run[3 * s + k], exact[3 * s + k]),
            );
            // A loss the framework's own nudged float64 runs move beyond the tolerance is
            // as sensitive as the later ones (the Keras fixture's step-2 G loss: 3.6e-3).
            let nudged_move = (nudged.iter())
                .map(|run| relative(run[3 * s + k], exact[3 * s + k]))
                .fold(0.0f32, f32::max);
            if s < exact_steps && nudged_move < LOSS_TOLERANCE {
                first = first.max(o);
            } else {
                ours_later = ours_later.max(o);
                theirs_later = theirs_later.max(t);
                for run in &nudged {
                    nudged_later = nudged_later.max(relative(run[3 * s + k], exact[3 * s + k]));
                }
            }
        }
        if s == 0 {
            let [g, d] = state(&gan);
            after1 = weight_difference(&fixture, "after1", [&g, &d]).0;
        }
        report += &format!(
            "  step {}: {ours:?} / {:?} / {:?}\n",
            s + 1,
            &exact[3 * s..3 * s + 3],
            &f32_run[3 * s..3 * s + 3]
        );
    }
    let [g, d] = state(&gan);
    let (ours_w, theirs_w, at) = weight_difference(&fixture, "final", [&g, &d]);
    let nudged_w = (fixture.tensors.iter())
        .find(|t| t.name == "final64n_difference")
        .map_or(0.0, |t| t.data.iter().copied().fold(0.0, f32::max));
    report += &format!(
        "  steps 1-{exact_steps}: losses {first:.1e}; step 1: weights after it {after1:.1e} from float64\n  \
         later losses: ours {ours_later:.1e}, the framework's float32 run {theirs_later:.1e}, \
         its float64 runs from {} nudged starts {nudged_later:.1e} from float64\n  \
         final weights: ours {ours_w:.1e} (at {at}), the framework's float32 run {theirs_w:.1e}, \
         its nudged runs {nudged_w:.1e} from float64\n",
        nudged.len()
    );
    eprintln!("{report}");
    (
        report,
        first.max(after1),
        [ours_later, theirs_later.max(nudged_later)],
        [ours_w, theirs_w.max(nudged_w)],
    )
}

/// The checks, from measurements recorded in `docs/design.md` ("Parity"). The first steps
/// agree to `LOSS_TOLERANCE`, as do the weights after step 1. After that (or sooner, for a
/// loss the nudged runs already move beyond that tolerance), float32 rounding is
/// amplified (BatchNorm's backward cancels large sums; Adam divides each gradient by its own
/// size, so a near-zero gradient's rounding becomes a full step; a value crossing a LeakyReLU
/// kink changes the gradient by a jump): the framework's own float32 run, and its float64 runs
/// from starts nudged by a float32 rounding, part from its float64 run there. dcgan is held to
/// the float64 answer as closely as the farthest of those is, within `SPREAD`.
/// `later`: (ours, theirs) for the later losses, then for the final weights.
fn check(report: &str, first: f32, later: ([f32; 2], [f32; 2])) {
    let (losses, weights) = later;
    assert!(first < LOSS_TOLERANCE, "the first steps differ\n{report}");
    assert!(
        losses[0] <= (SPREAD * losses[1]).max(LOSS_TOLERANCE),
        "later losses differ more than the framework's own float32-sized changes do\n{report}"
    );
    assert!(
        weights[0] <= (SPREAD * weights[1]).max(WEIGHT_TOLERANCE),
        "final weights differ more than the framework's own float32-sized changes do\n{report}"
    );
}

/// `--preset dcgan --loop paper` against PyTorch's DCGAN loop on the same networks.
#[test]
fn dcgan_preset_matches_pytorch_step_for_step() {
    let mut cfg = TrainingConfig::preset("dcgan").unwrap();
    cfg.discriminator.dropout = 0.0;
    // The PyTorch script builds the notebook's D, as both presets had it when the fixture was
    // made; the preset's LeakyReLU after D's first convolution is tested on its own.
    cfg.discriminator.first_activation = false;
    cfg.gan_loop = GanLoop::Paper;
    cfg.discriminator.frozen_bn = FrozenBn::Batch;
    let (report, first, later, weights) = replay("torch_dcgan.safetensors", cfg, 1);
    check(&report, first, (later, weights));
}

/// `--preset notebook` against the notebook's own Keras loop (Keras 3: D's BatchNorm frozen
/// on its moving statistics while G trains through it).
#[test]
fn notebook_preset_matches_keras_step_for_step() {
    let mut cfg = TrainingConfig::preset("notebook").unwrap();
    cfg.discriminator.dropout = 0.0;
    cfg.discriminator.frozen_bn = FrozenBn::Running;
    let (report, first, later, weights) = replay("keras_notebook.safetensors", cfg, 2);
    check(&report, first, (later, weights));
}

/// D's dropout rate of the fixtures' dropout runs (`parity_common.DROPOUT`).
const DROPOUT: f64 = 0.5;
/// How far apart, in standard errors of their difference, dcgan's and the framework's mean
/// loss may be at any step, with dropout on (15 comparisons a framework).
const DROPOUT_T: f32 = 4.0;

/// Mean and sample standard deviation.
fn mean_sd(xs: &[f32]) -> (f32, f32) {
    let n = xs.len() as f32;
    let mean = xs.iter().sum::<f32>() / n;
    let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f32>() / (n - 1.0);
    (mean, var.sqrt())
}

/// Dropout masks cannot agree across frameworks, so with D's dropout on the losses are
/// compared in distribution: the fixture's float32 runs over many mask seeds against as many
/// of dcgan's, step by step, by the difference of their means in standard errors.
fn dropout_check(name: &str, mut cfg: TrainingConfig) {
    let fixture = Fixture::open(name);
    let theirs = fixture.get("losses_dropout");
    let (runs, per_run) = (theirs.shape[0], theirs.data.len() / theirs.shape[0]);
    cfg.discriminator.dropout = DROPOUT;
    let mut ours = Vec::new();
    for seed in 0..runs as u64 {
        cfg.seed = seed;
        let mut gan = started(&cfg);
        for s in 0..per_run / 3 {
            let (next, losses) = fixture.step(gan, &cfg, s);
            gan = next;
            ours.extend(losses);
        }
    }
    let mut report =
        format!("{name}, dropout {DROPOUT}, {runs} mask seeds each: mean (sd) of ours / theirs\n");
    let mut worst = 0.0f32;
    for i in 0..per_run {
        let column =
            |xs: &[f32]| -> Vec<f32> { xs.iter().skip(i).step_by(per_run).copied().collect() };
        let ((mo, so), (mt, st)) = (mean_sd(&column(&ours)), mean_sd(&column(&theirs.data)));
        let t = (mo - mt).abs() / ((so * so + st * st) / runs as f32).sqrt().max(1e-6);
        worst = worst.max(t);
        report += &format!(
            "  step {} {}: {mo:.3} ({so:.3}) / {mt:.3} ({st:.3}), {t:.1} standard errors\n",
            i / 3 + 1,
            ["D real", "D fake", "G"][i % 3]
        );
    }
    eprintln!("{report}");
    assert!(
        worst < DROPOUT_T,
        "with dropout on, dcgan's losses are not distributed as the framework's\n{report}"
    );
}

/// The `dcgan` preset with D's dropout on, against PyTorch's runs of it.
#[test]
fn dcgan_preset_with_dropout_matches_pytorch_in_distribution() {
    let mut cfg = TrainingConfig::preset("dcgan").unwrap();
    cfg.discriminator.first_activation = false;
    cfg.gan_loop = GanLoop::Paper;
    cfg.discriminator.frozen_bn = FrozenBn::Batch;
    dropout_check("torch_dcgan.safetensors", cfg);
}

/// The `notebook` preset with D's dropout on, against Keras's runs of it.
#[test]
fn notebook_preset_with_dropout_matches_keras_in_distribution() {
    let mut cfg = TrainingConfig::preset("notebook").unwrap();
    cfg.discriminator.frozen_bn = FrozenBn::Running;
    dropout_check("keras_notebook.safetensors", cfg);
}
