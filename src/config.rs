//! The training configuration: one serde struct, read from the JSON presets in `configs/`,
//! overridden by command-line flags, and written back beside every run as `config.json` so
//! `sample` and `resume` rebuild exactly the networks that were trained.

use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use rand::rngs::StdRng;
use rand::Rng;

use crate::rng::standard_normal;

/// The two presets ship inside the binary so `dcgan train` works from any directory.
pub const PRESETS: [(&str, &str); 2] = [
    ("dcgan", include_str!("../configs/dcgan.json")),
    ("notebook", include_str!("../configs/notebook.json")),
];

/// A built-in preset, as `--preset` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Preset {
    /// The DCGAN paper's recipe: N(0, 0.02) weights, tanh output on [-1, 1] faces, shuffling.
    #[default]
    Dcgan,
    /// The reference Keras notebook exactly as it ran.
    Notebook,
}

impl Preset {
    pub fn name(self) -> &'static str {
        match self {
            Preset::Dcgan => "dcgan",
            Preset::Notebook => "notebook",
        }
    }

    pub fn config(self) -> TrainingConfig {
        TrainingConfig::preset(self.name()).expect("the built-in presets are valid")
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TrainingConfig {
    /// Free text shown in `config.json`, e.g. where the preset came from.
    #[serde(default)]
    pub description: String,
    pub data: DataConfig,
    pub generator: GeneratorConfig,
    pub discriminator: DiscriminatorConfig,
    pub optimizer_g: OptimizerConfig,
    pub optimizer_d: OptimizerConfig,
    pub batch_size: usize,
    pub epochs: usize,
    pub seed: u64,
    /// Score the generator during training (off unless set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub track: Option<TrackConfig>,
    /// Keep an exponential moving average of G's weights as `g_ema.mpk` (off unless set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ema: Option<EmaConfig>,
    /// The order of a training step (default: the notebook's).
    #[serde(default, rename = "loop")]
    pub gan_loop: GanLoop,
    /// Side of the square faces G makes and D judges: 32, 64 or 128 pixels. G and D gain
    /// (or lose) one stride-2 block per doubling; 64 is the notebook's networks.
    #[serde(default = "default_image_size")]
    pub image_size: usize,
}

/// The sizes the networks are built for: 4x4 doubled three to five times.
pub const IMAGE_SIZES: [usize; 3] = [32, 64, 128];

fn default_image_size() -> usize {
    64
}

/// How one training step makes its fakes.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum GanLoop {
    /// The notebook's: D learns from fakes G made in inference mode (no graph), then G learns
    /// through a second fake batch made in training mode.
    #[default]
    Notebook,
    /// The DCGAN paper's (and PyTorch's DCGAN example): one fake batch in training mode; D learns
    /// from it detached (one update on the real and fake batches' summed gradients), and G
    /// through the same batch. One G forward pass a step instead of two.
    Paper,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EmaConfig {
    /// Weight of the old average at each step, e.g. 0.999 (an average over ~1,000 steps).
    pub decay: f64,
}

/// Every `every_epochs` epochs: SWD of `faces` generated faces (fixed noise) against the first
/// `faces` training faces, logged to `metrics.jsonl`; the best generator is kept as `g_best.mpk`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TrackConfig {
    pub every_epochs: usize,
    pub faces: usize,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// Keep only the first N files of the sorted listing (the notebook used 50,000).
    pub limit: Option<usize>,
    /// What part of each photo becomes the face: `auto`, `celeba`, `center`, `none`, or a box.
    pub crop: Crop,
    pub filter: ResizeFilter,
    pub normalization: Normalization,
    /// Reshuffle the image order every epoch from the run's seed.
    pub shuffle: bool,
}

/// What part of each photo is resized into a face: a named rule, or one fixed box.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(untagged)]
pub enum Crop {
    Rule(CropRule),
    Box(CropBox),
}

/// The named crops of `--crop` and `data.crop`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum CropRule {
    /// `celeba` when every image is CelebA's aligned 178x218, else `center`: chosen when a
    /// run starts, and recorded in its config.
    Auto,
    /// The notebook's face box on CelebA's aligned photos (left 30, top 55, right 150,
    /// bottom 175).
    Celeba,
    /// The largest centred square of each picture.
    Center,
    /// The whole picture, squeezed to a square.
    #[value(name = "none")]
    #[serde(rename = "none")]
    Whole,
}

impl Crop {
    /// The face box the notebook cuts from CelebA's aligned 178x218 photos.
    pub const CELEBA_BOX: CropBox = CropBox {
        left: 30,
        top: 55,
        right: 150,
        bottom: 175,
    };

    /// The name `--crop` gives it, or the box's four numbers.
    pub fn describe(&self) -> String {
        match self {
            Crop::Rule(r) => r.name().to_string(),
            Crop::Box(b) => format!(
                "box (left {}, top {}, right {}, bottom {})",
                b.left, b.top, b.right, b.bottom
            ),
        }
    }

    /// The same crop, whether named or given as its box (`celeba` is CelebA's face box).
    pub fn same_as(&self, other: &Crop) -> bool {
        let norm = |c: &Crop| match c {
            Crop::Rule(CropRule::Celeba) => Crop::Box(Self::CELEBA_BOX),
            c => *c,
        };
        norm(self) == norm(other)
    }

    /// The box to cut from a `width` x `height` picture for a `size`-pixel face, or why this
    /// picture is too small for the crop. `Auto` must be resolved first (data::choose_crop).
    pub fn box_for(&self, width: u32, height: u32, size: usize) -> Result<CropBox, String> {
        let size = size as u32;
        let (cut, rule) = match self {
            Crop::Box(b) => (*b, "the crop box"),
            Crop::Rule(CropRule::Celeba) => (Self::CELEBA_BOX, "CelebA's face box"),
            Crop::Rule(CropRule::Center) => {
                let side = width.min(height);
                let (left, top) = ((width - side) / 2, (height - side) / 2);
                let b = CropBox {
                    left,
                    top,
                    right: left + side,
                    bottom: top + side,
                };
                (b, "--crop center")
            }
            Crop::Rule(CropRule::Whole) => {
                let b = CropBox {
                    left: 0,
                    top: 0,
                    right: width,
                    bottom: height,
                };
                (b, "--crop none")
            }
            Crop::Rule(CropRule::Auto) => return Err("the crop rule was not resolved".into()),
        };
        if cut.right > width || cut.bottom > height {
            return Err(format!(
                "image is {width}x{height}, smaller than {rule} (right {}, bottom {}); \
                 train it with --crop center",
                cut.right, cut.bottom
            ));
        }
        // Enlarging more than twice would teach G blur; a little (CelebA's 120-pixel box to
        // 128) is harmless.
        if 2 * cut.width() < size || 2 * cut.height() < size {
            return Err(format!(
                "image is {width}x{height}: {rule} gives {}x{}, less than half the {size}x{size} faces \
                 (enlarged it would teach G blur); use larger images or a smaller --image-size",
                cut.width(),
                cut.height()
            ));
        }
        Ok(cut)
    }
}

impl CropRule {
    pub fn name(self) -> &'static str {
        match self {
            CropRule::Auto => "auto",
            CropRule::Celeba => "celeba",
            CropRule::Center => "center",
            CropRule::Whole => "none",
        }
    }
}

/// Pillow's `(left, top, right, bottom)` box: right and bottom are exclusive.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CropBox {
    pub left: u32,
    pub top: u32,
    pub right: u32,
    pub bottom: u32,
}

impl CropBox {
    pub fn width(&self) -> u32 {
        self.right - self.left
    }
    pub fn height(&self) -> u32 {
        self.bottom - self.top
    }
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ResizeFilter {
    Nearest,
    Bilinear,
    /// Pillow's default for `resize`: Catmull-Rom, widened when shrinking (antialiased).
    Bicubic,
    Lanczos3,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Normalization {
    /// x / 255, in [0, 1]: pairs with a sigmoid output.
    Unit,
    /// The notebook's per-image (x - min) / (255 - min), in [0, 1].
    Notebook,
    /// x / 127.5 - 1, in [-1, 1]: pairs with a tanh output.
    Symmetric,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OptimizerConfig {
    pub lr: f64,
    pub beta1: f32,
    pub beta2: f32,
    pub epsilon: f32,
    /// Where epsilon enters Adam's update (`train/adam.rs`).
    #[serde(default)]
    pub epsilon_form: EpsilonForm,
}

/// Where Adam adds epsilon: to the bias-corrected sqrt(v) (PyTorch, burn) or to the raw
/// sqrt(v) (Keras).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum EpsilonForm {
    #[default]
    Pytorch,
    Keras,
}

impl TrainingConfig {
    pub fn preset(name: &str) -> Result<Self> {
        let (_, text) = PRESETS.iter().find(|(n, _)| *n == name).with_context(|| {
            format!("unknown preset `{name}`; the presets are `dcgan` and `notebook`")
        })?;
        Self::parse(text, &format!("built-in preset `{name}`"))
    }

    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        Self::parse(&text, &path.display().to_string())
    }

    /// serde_json's message already carries "at line L column C"; we add the file name and
    /// the fix, and validate, so a bad file never starts a run.
    pub fn parse(text: &str, origin: &str) -> Result<Self> {
        let cfg: Self = serde_json::from_str(text).map_err(|e| {
            anyhow::anyhow!(
                "{origin} is not a valid dcgan config: {e}\n  fix the file, or start from one in configs/ (dcgan.json, notebook.json)"
            )
        })?;
        cfg.validate().with_context(|| format!("in {origin}"))?;
        Ok(cfg)
    }

    pub fn validate(&self) -> Result<()> {
        if let Some(t) = &self.track {
            if t.every_epochs == 0 || t.faces < 64 {
                bail!("track: every_epochs must be at least 1 and faces at least 64 (SWD needs a few hundred faces to be stable)");
            }
        }
        if let Some(e) = &self.ema {
            if !(e.decay > 0.0 && e.decay < 1.0) {
                bail!(
                    "ema.decay must be between 0 and 1 (e.g. 0.999), got {}",
                    e.decay
                );
            }
        }
        if self.batch_size == 0 {
            bail!("batch size must be at least 1");
        }
        if self.epochs == 0 {
            bail!("epochs must be at least 1");
        }
        if self.data.limit == Some(0) {
            bail!("limit must be at least 1 (leave it out to use every image)");
        }
        if let Crop::Box(c) = self.data.crop {
            if c.right <= c.left || c.bottom <= c.top {
                bail!(
                    "crop box (left {}, top {}, right {}, bottom {}) is empty: right must exceed left and bottom must exceed top",
                    c.left, c.top, c.right, c.bottom
                );
            }
        }
        if !IMAGE_SIZES.contains(&self.image_size) {
            bail!(
                "image_size {} is not one the networks are built for: use 32, 64 or 128",
                self.image_size
            );
        }
        for (name, o) in [
            ("optimizer_g", &self.optimizer_g),
            ("optimizer_d", &self.optimizer_d),
        ] {
            if !(o.lr > 0.0 && o.lr.is_finite()) {
                bail!("{name}.lr must be a positive number, got {}", o.lr);
            }
            if !(0.0..1.0).contains(&o.beta1) || !(0.0..1.0).contains(&o.beta2) {
                bail!("{name}: beta1 and beta2 must be in [0, 1)");
            }
            if o.epsilon.is_nan() || o.epsilon <= 0.0 {
                bail!("{name}.epsilon must be positive");
            }
        }
        if self.generator.noise_dim == 0 {
            bail!("generator.noise_dim must be at least 1");
        }
        if !(0.0..1.0).contains(&self.discriminator.dropout) {
            bail!("discriminator.dropout must be in [0, 1)");
        }
        Ok(())
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("config serialises") + "\n"
    }

    /// The first setting where `self` and `other` differ: its dotted path (`data.crop`) and
    /// both values. A resumed run refuses a config that differs from the one it started with.
    pub fn first_difference(&self, other: &TrainingConfig) -> Option<(String, Value, Value)> {
        let (a, b) = (serde_json::to_value(self), serde_json::to_value(other));
        first_difference(
            &a.expect("config serialises"),
            &b.expect("config serialises"),
            "",
        )
    }
}

/// The first leaf where two JSON values differ: its dotted path and both values.
fn first_difference(a: &Value, b: &Value, path: &str) -> Option<(String, Value, Value)> {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys = x.keys().chain(y.keys().filter(|k| !x.contains_key(*k)));
            keys.into_iter().find_map(|k| {
                let (u, v) = (
                    x.get(k).unwrap_or(&Value::Null),
                    y.get(k).unwrap_or(&Value::Null),
                );
                let sub = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                first_difference(u, v, &sub)
            })
        }
        _ if a == b => None,
        _ => Some((path.to_string(), a.clone(), b.clone())),
    }
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
    /// LeakyReLU after the first convolution, as the DCGAN paper's D has; the notebook's has
    /// none.
    #[serde(default)]
    pub first_activation: bool,
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

/// Which of CelebA's official partitions to use.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    clap::ValueEnum,
    serde::Serialize,
    serde::Deserialize,
    Default,
)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    /// Partition 0: 162,770 images, the faces published GANs train on.
    #[default]
    Train,
    /// Partition 1: 19,867 images, held out for choosing settings.
    Valid,
    /// Partition 2: 19,962 images, held out for the final comparison.
    Test,
    /// Every image, listed or not: when no partition file is at hand or the split does not
    /// matter.
    All,
}

impl Split {
    /// The name used on the command line and in configs.
    pub fn name(&self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Valid => "valid",
            Split::Test => "test",
            Split::All => "all",
        }
    }

    /// The partition number the file uses, None for All (which is not a partition).
    pub fn number(self) -> Option<u8> {
        match self {
            Split::Train => Some(0),
            Split::Valid => Some(1),
            Split::Test => Some(2),
            Split::All => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_parse_and_validate() {
        let nb = TrainingConfig::preset("notebook").unwrap();
        assert_eq!(nb.batch_size, 128);
        assert_eq!(nb.epochs, 300);
        assert_eq!(nb.data.limit, Some(50_000));
        assert!(!nb.data.shuffle);
        assert_eq!(nb.optimizer_d.lr, 1e-3);
        assert_eq!(nb.optimizer_d.epsilon, 1e-7);
        let dc = TrainingConfig::preset("dcgan").unwrap();
        assert_eq!(dc.optimizer_g.lr, 2e-4);
        assert_eq!(dc.optimizer_g.beta1, 0.5);
        // A round trip through JSON is lossless: config.json rebuilds the same run.
        assert_eq!(TrainingConfig::parse(&dc.to_json(), "x").unwrap(), dc);
    }

    #[test]
    fn unknown_fields_and_bad_json_are_refused_with_position() {
        let err = TrainingConfig::parse("{\n  \"batch_size\": 1,,\n}", "bad.json")
            .unwrap_err()
            .to_string();
        assert!(err.contains("bad.json") && err.contains("line 2"), "{err}");
        let mut v: serde_json::Value =
            serde_json::from_str(&TrainingConfig::preset("dcgan").unwrap().to_json()).unwrap();
        v["batch_sise"] = 3.into();
        let err = format!(
            "{:#}",
            TrainingConfig::parse(&v.to_string(), "typo.json").unwrap_err()
        );
        assert!(err.contains("unknown field `batch_sise`"), "{err}");
    }

    #[test]
    fn zero_batch_and_empty_crop_are_refused() {
        let mut c = TrainingConfig::preset("dcgan").unwrap();
        c.batch_size = 0;
        assert!(c.validate().is_err());
        let mut c = TrainingConfig::preset("dcgan").unwrap();
        c.data.crop = Crop::Box(CropBox {
            right: 30,
            ..Crop::CELEBA_BOX
        });
        assert!(c.validate().unwrap_err().to_string().contains("empty"));
        let mut c = TrainingConfig::preset("dcgan").unwrap();
        c.image_size = 48;
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("32, 64 or 128"));
    }

    #[test]
    fn crops_in_json_and_their_boxes() {
        for (json, crop) in [
            (r#""auto""#, Crop::Rule(CropRule::Auto)),
            (r#""celeba""#, Crop::Rule(CropRule::Celeba)),
            (r#""center""#, Crop::Rule(CropRule::Center)),
            (r#""none""#, Crop::Rule(CropRule::Whole)),
            (
                r#"{"left": 30, "top": 55, "right": 150, "bottom": 175}"#,
                Crop::Box(Crop::CELEBA_BOX),
            ),
        ] {
            assert_eq!(serde_json::from_str::<Crop>(json).unwrap(), crop, "{json}");
            let back = serde_json::to_string(&crop).unwrap();
            assert_eq!(serde_json::from_str::<Crop>(&back).unwrap(), crop);
        }
        let center = Crop::Rule(CropRule::Center);
        let b = center.box_for(300, 200, 64).unwrap();
        assert_eq!((b.left, b.top, b.right, b.bottom), (50, 0, 250, 200));
        let b = center.box_for(100, 151, 64).unwrap();
        assert_eq!((b.left, b.top, b.right, b.bottom), (0, 25, 100, 125));
        let whole = Crop::Rule(CropRule::Whole).box_for(90, 70, 64).unwrap();
        assert_eq!((whole.right, whole.bottom), (90, 70));
        let celeba = Crop::Rule(CropRule::Celeba);
        assert_eq!(celeba.box_for(178, 218, 64).unwrap(), Crop::CELEBA_BOX);
        let err = celeba.box_for(120, 150, 64).unwrap_err();
        assert!(
            err.contains("120x150") && err.contains("--crop center"),
            "{err}"
        );
        let err = center.box_for(100, 31, 64).unwrap_err();
        assert!(
            err.contains("100x31") && err.contains("--image-size"),
            "{err}"
        );
        assert!(center.box_for(100, 32, 64).is_ok());
        // CelebA's 120-pixel box serves 128-pixel faces too.
        assert_eq!(celeba.box_for(178, 218, 128).unwrap(), Crop::CELEBA_BOX);
    }
}
