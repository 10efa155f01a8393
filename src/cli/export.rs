//! `dcgan export`: a checkpoint's network as a PyTorch state dict in safetensors.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};

use crate::backend::Cpu;
use crate::nn::torch_names;
use crate::run;
use crate::sample;

/// Which network a checkpoint holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Net {
    /// The generator (g.mpk, g_ema.mpk, g_best.mpk).
    G,
    /// The discriminator (d.mpk).
    D,
}

/// Write a generator or discriminator as a PyTorch state dict (safetensors).
#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  dcgan export --ckpt run/g.mpk --out g.safetensors\n  dcgan export --ckpt run/d.mpk --out d.safetensors\n  dcgan sample --ckpt g.safetensors --config run/config.json\n\nThe tensors are named and laid out as the reference networks in tests/reference/torch_step.py\n(torch.nn.Sequential), so in PyTorch: G.load_state_dict(safetensors.torch.load_file(\"g.safetensors\"))."
)]
pub struct ExportArgs {
    /// Checkpoint written by `dcgan train`.
    #[arg(long, default_value = "run/g.mpk", value_name = "FILE")]
    pub ckpt: PathBuf,
    /// Config describing the network (default: config.json beside the checkpoint).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Which network the checkpoint holds (default: d for files named d*.mpk, else g).
    #[arg(long, value_enum)]
    pub net: Option<Net>,
    /// The safetensors file to write.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
}

pub(super) fn export_command(args: ExportArgs) -> Result<()> {
    let cfg = sample::config_for(&args.ckpt, args.config.as_deref())?;
    let stem = args
        .ckpt
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned());
    let net = args.net.unwrap_or(match stem.as_deref() {
        Some(s) if s == "d" || s.ends_with("-d") => Net::D,
        _ => Net::G,
    });
    let device = Default::default();
    let load = || {
        format!(
            "cannot load {} as the {net:?} network; pass --net g or --net d",
            args.ckpt.display()
        )
    };
    let tensors = match net {
        Net::G => {
            let g = sample::load_generator::<Cpu>(&cfg, &args.ckpt, &device).with_context(load)?;
            torch_names::generator_tensors(&g)
        }
        Net::D => {
            let template = cfg.discriminator.init::<Cpu>(cfg.image_size, 0, &device);
            let d = run::load_module(template, &args.ckpt, &device).with_context(load)?;
            torch_names::discriminator_tensors(&d)
        }
    };
    run::safetensors::write_state_dict(&args.out, &tensors)?;
    eprintln!(
        "wrote {} tensors of {} to {}",
        tensors.len(),
        args.ckpt.display(),
        args.out.display()
    );
    Ok(())
}
