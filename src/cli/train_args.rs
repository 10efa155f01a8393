//! The flags of `dcgan train`, and those that set a config field in one table: applying them
//! to a new run's config, refusing one that differs from a resumed run's, and comparing a
//! resumed run's `--config`/`--preset` with its saved config all read it, so a flag added
//! there is handled by all three. A test walks every flag of `TrainArgs` through it.

use std::path::PathBuf;

use clap::Args;

use crate::backend::BackendChoice;
use crate::config::{Crop, CropRule, EmaConfig, GanLoop, Preset, TrackConfig, TrainingConfig};
use crate::data::Split;

/// Train G and D on face photos; checkpoints, losses and previews go to --out.
#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  dcgan train --data img_align_celeba --epochs 300\n  dcgan train --data faces/ --preset notebook --out run-notebook\n  dcgan train --data faces/ --config my.json --batch-size 64 --lr 1e-4\n  dcgan train --data faces/ --swd-every 1 --ema 0.999\n  dcgan train --data img_align_celeba.zip --split train\n  dcgan train --data my_pictures/ --crop center --image-size 128\n  dcgan train --data faces/ --epochs 30 --resume\n  dcgan train --data faces/ --init-from g.safetensors --init-from d.safetensors\n\nCtrl-C (or SIGTERM) finishes the current batch, saves a checkpoint and says how to resume."
)]
pub struct TrainArgs {
    /// Folder of JPEG/PNG faces, searched recursively (e.g. img_align_celeba), or CelebA's
    /// .zip read in place.
    #[arg(long, value_name = "DIR|ZIP", required_unless_present = "resume")]
    pub data: Option<PathBuf>,
    /// Which part of CelebA's official partition to train on (default: train where the
    /// partition file is found beside the images, else every image).
    #[arg(long, value_enum)]
    pub split: Option<Split>,
    /// CelebA's list_eval_partition.txt (or Kaggle's .csv), if it is not beside the images.
    #[arg(long, value_name = "FILE")]
    pub partition: Option<PathBuf>,
    /// Continue the run in --out from its last checkpoint. Other flags may be repeated as
    /// they were; only --epochs may change (and --data may name a moved copy).
    #[arg(long)]
    pub resume: bool,
    /// Start from a JSON config file instead of a preset.
    #[arg(long, value_name = "FILE", conflicts_with = "preset")]
    pub config: Option<PathBuf>,

    /// Start G and/or D from these weights instead of the initialiser: a state dict written
    /// by `dcgan export`, or by PyTorch for the reference networks as safetensors or `.pt`
    /// (one network per file, or both under `g.` and `d.` prefixes). Repeat for G and D.
    #[arg(long, value_name = "FILE", conflicts_with = "resume")]
    pub init_from: Vec<PathBuf>,
    /// Built-in preset (default: dcgan).
    #[arg(long, value_enum)]
    pub preset: Option<Preset>,
    /// Number of passes over the data.
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Images per batch; the last partial batch of each epoch is dropped.
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// What part of each picture becomes a face: CelebA's face box, the largest centred
    /// square, or the whole picture (default: celeba when every image is CelebA's aligned
    /// 178x218, else center).
    #[arg(long, value_enum, value_name = "CROP")]
    pub crop: Option<CropRule>,
    /// Side of the generated faces in pixels: 32, 64 or 128 (default 64).
    #[arg(long, value_name = "PIXELS")]
    pub image_size: Option<usize>,
    /// Use only the first N images of the sorted listing.
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// Learning rate for both G and D.
    #[arg(long)]
    pub lr: Option<f64>,
    /// The order of a training step: the notebook's, or the DCGAN paper's (one fake batch a
    /// step, made in training mode, that D learns from and G learns through).
    #[arg(long = "loop", value_enum, value_name = "LOOP")]
    pub gan_loop: Option<GanLoop>,
    /// Seed for initialisation, shuffling, noise and dropout.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Run folder for checkpoints, losses.jsonl and samples/.
    #[arg(long, default_value = "run", value_name = "DIR")]
    pub out: PathBuf,
    /// Overwrite a run folder that already holds a run (ignored with --resume).
    #[arg(long)]
    pub force: bool,
    /// Every N epochs, score G with SWD against 512 fixed training faces (metrics.jsonl) and
    /// keep the best generator as g_best.mpk.
    #[arg(long, value_name = "N")]
    pub swd_every: Option<usize>,
    /// Keep a moving average of G's weights with this decay (e.g. 0.999) as g_ema.mpk;
    /// sample or eval it with --ckpt run/g_ema.mpk.
    #[arg(long, value_name = "DECAY")]
    pub ema: Option<f64>,
    /// Keep the decoded faces here (default: <out>/cache), so the next run on the same
    /// photos skips decoding. Share one folder between runs with --cache-dir.
    #[arg(long, value_name = "DIR", conflicts_with = "no_cache")]
    pub cache_dir: Option<PathBuf>,
    /// Decode the photos every time; write no cache.
    #[arg(long)]
    pub no_cache: bool,
    /// Where to compute: a GPU if present (auto), WGPU, or the CPU.
    #[arg(long, value_enum, default_value_t)]
    pub backend: BackendChoice,
}

/// One flag and the config field it sets.
pub(super) struct ConfigFlag {
    pub name: &'static str,
    /// Sets the field to the flag's value; false when the flag was not given.
    pub apply: fn(&TrainArgs, &mut TrainingConfig) -> bool,
    /// The field's value as the flag would write it, for comparing and for messages; None
    /// where the config holds no value a flag could give (no tracking, no moving average).
    pub value: fn(&TrainingConfig) -> Option<String>,
    /// Copies the field from one config into another.
    pub copy: fn(&mut TrainingConfig, &TrainingConfig),
}

/// Every flag that sets a config field, except `--epochs`, which a resume may raise.
pub(super) const CONFIG_FLAGS: [ConfigFlag; 9] = [
    ConfigFlag {
        name: "--batch-size",
        apply: |a, c| a.batch_size.map(|v| c.batch_size = v).is_some(),
        value: |c| Some(c.batch_size.to_string()),
        copy: |c, s| c.batch_size = s.batch_size,
    },
    ConfigFlag {
        name: "--limit",
        apply: |a, c| a.limit.map(|v| c.data.limit = Some(v)).is_some(),
        value: |c| c.data.limit.map(|v| v.to_string()),
        copy: |c, s| c.data.limit = s.data.limit,
    },
    ConfigFlag {
        name: "--crop",
        // `auto` asks for whatever the run chose.
        apply: |a, c| {
            let rule = a.crop.filter(|r| *r != CropRule::Auto);
            rule.map(|r| c.data.crop = Crop::Rule(r)).is_some()
        },
        value: |c| Some(crop_name(&c.data.crop)),
        copy: |c, s| {
            let auto = c.data.crop == Crop::Rule(CropRule::Auto);
            if auto || c.data.crop.same_as(&s.data.crop) {
                c.data.crop = s.data.crop;
            }
        },
    },
    ConfigFlag {
        name: "--image-size",
        apply: |a, c| a.image_size.map(|v| c.image_size = v).is_some(),
        value: |c| Some(c.image_size.to_string()),
        copy: |c, s| c.image_size = s.image_size,
    },
    ConfigFlag {
        name: "--lr",
        apply: |a, c| {
            let set = |v| (c.optimizer_g.lr, c.optimizer_d.lr) = (v, v);
            a.lr.map(set).is_some()
        },
        // One value only where G's and D's learning rates are the same.
        value: |c| (c.optimizer_g.lr == c.optimizer_d.lr).then(|| c.optimizer_g.lr.to_string()),
        copy: |c, s| (c.optimizer_g.lr, c.optimizer_d.lr) = (s.optimizer_g.lr, s.optimizer_d.lr),
    },
    ConfigFlag {
        name: "--seed",
        apply: |a, c| a.seed.map(|v| c.seed = v).is_some(),
        value: |c| Some(c.seed.to_string()),
        copy: |c, s| c.seed = s.seed,
    },
    ConfigFlag {
        name: "--loop",
        apply: |a, c| a.gan_loop.map(|v| c.gan_loop = v).is_some(),
        value: |c| Some(format!("{:?}", c.gan_loop).to_lowercase()),
        copy: |c, s| c.gan_loop = s.gan_loop,
    },
    ConfigFlag {
        name: "--swd-every",
        apply: |a, c| {
            let track = |every_epochs| {
                let faces = 512;
                c.track = Some(TrackConfig {
                    every_epochs,
                    faces,
                })
            };
            a.swd_every.map(track).is_some()
        },
        value: |c| c.track.as_ref().map(|t| t.every_epochs.to_string()),
        copy: |c, s| c.track = s.track.clone(),
    },
    ConfigFlag {
        name: "--ema",
        apply: |a, c| {
            a.ema
                .map(|decay| c.ema = Some(EmaConfig { decay }))
                .is_some()
        },
        value: |c| c.ema.map(|e| e.decay.to_string()),
        copy: |c, s| c.ema = s.ema,
    },
];

/// How `--crop` names a crop (`celeba` also when the config holds CelebA's box).
fn crop_name(crop: &Crop) -> String {
    match crop {
        c if c.same_as(&Crop::Rule(CropRule::Celeba)) => "celeba".into(),
        Crop::Rule(r) => r.name().into(),
        c => c.describe(),
    }
}

/// Applies every flag given to `cfg`.
pub(super) fn apply_all(args: &TrainArgs, cfg: &mut TrainingConfig) {
    for f in &CONFIG_FLAGS {
        (f.apply)(args, cfg);
    }
}

/// The first flag given whose value differs from `saved`'s: its name, the value given and
/// the run's (None where the run has none).
pub(super) fn first_changed(
    args: &TrainArgs,
    saved: &TrainingConfig,
) -> Option<(&'static str, String, Option<String>)> {
    CONFIG_FLAGS.iter().find_map(|f| {
        let mut probe = saved.clone();
        if !(f.apply)(args, &mut probe) {
            return None;
        }
        let (given, then) = ((f.value)(&probe), (f.value)(saved));
        (given != then).then(|| (f.name, given.unwrap_or_default(), then))
    })
}

/// `base` with every field a flag sets copied from `saved`: what is left to compare with the
/// run's config is what only a config file or preset sets.
pub(super) fn copy_flag_fields(base: &mut TrainingConfig, saved: &TrainingConfig) {
    for f in &CONFIG_FLAGS {
        (f.copy)(base, saved);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: TrainArgs,
    }

    /// Flags of `train` that set no config field (or, `--epochs`, one a resume may raise).
    const NOT_CONFIG: [&str; 13] = [
        "--data",
        "--split",
        "--partition",
        "--resume",
        "--config",
        "--init-from",
        "--preset",
        "--epochs",
        "--out",
        "--force",
        "--cache-dir",
        "--no-cache",
        "--backend",
    ];

    /// A value for each flag of the table, other than the `dcgan` preset's.
    const VALUES: [(&str, &str); 9] = [
        ("--batch-size", "7"),
        ("--limit", "9"),
        ("--crop", "center"),
        ("--image-size", "32"),
        ("--lr", "0.003"),
        ("--seed", "5"),
        ("--loop", "notebook"),
        ("--swd-every", "3"),
        ("--ema", "0.99"),
    ];

    #[test]
    fn every_flag_is_in_the_table_or_sets_no_config_field() {
        let cmd = TrainArgs::augment_args(clap::Command::new("train"));
        let longs = cmd.get_arguments().filter_map(|a| a.get_long());
        for name in longs.map(|l| format!("--{l}")) {
            let in_table = CONFIG_FLAGS.iter().any(|f| f.name == name);
            assert!(
                in_table != NOT_CONFIG.contains(&name.as_str()),
                "{name}: in the table or in NOT_CONFIG, exactly one"
            );
        }
        let names: Vec<&str> = VALUES.iter().map(|v| v.0).collect();
        let table: Vec<&str> = CONFIG_FLAGS.iter().map(|f| f.name).collect();
        assert_eq!(names, table, "a test value for every flag of the table");
    }

    /// Each flag sets its field; on resume the same value is accepted and the preset's is
    /// refused by name with both values; copying the flags' fields carries it over.
    #[test]
    fn each_flag_applies_is_compared_on_resume_and_copied() {
        let preset = crate::config::Preset::Dcgan.config();
        for (f, (name, value)) in CONFIG_FLAGS.iter().zip(VALUES) {
            let cli = Cli::try_parse_from(["train", "--data", "x", name, value]).unwrap();
            let mut cfg = preset.clone();
            assert!((f.apply)(&cli.args, &mut cfg), "{name} applied");
            assert_eq!(
                (f.value)(&cfg).as_deref(),
                Some(value),
                "{name} sets its field"
            );
            assert_ne!((f.value)(&preset), (f.value)(&cfg), "{name} {value}");
            assert_eq!(first_changed(&cli.args, &cfg), None, "{name}: same value");
            let (flag, given, then) = first_changed(&cli.args, &preset).expect(name);
            assert_eq!((flag, given.as_str()), (name, value));
            assert_eq!(then, (f.value)(&preset));
            let mut base = preset.clone();
            copy_flag_fields(&mut base, &cfg);
            assert_eq!((f.value)(&base), (f.value)(&cfg), "{name} copied");
        }
    }
}
