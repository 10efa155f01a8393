//! Turning a trained generator into pictures: PNG grids and single faces.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use burn::tensor::{Tensor, TensorData};
use image::RgbImage;

use crate::config::NoiseDist;
use crate::config::TrainingConfig;
use crate::data::{to_faces, write_grid, write_png};
use crate::nn::{noise, torch_names, Generator, LayerBackend, Mode};
use crate::rng::{rng, Stream};
use crate::run;

/// Faces generated per forward pass: bounded memory whatever `--n` is.
const CHUNK: usize = 256;

pub struct SampleSettings {
    pub ckpt: PathBuf,
    pub config: Option<PathBuf>,
    pub n: usize,
    pub seed: u64,
    pub cols: Option<usize>,
    pub out: PathBuf,
    pub each: Option<PathBuf>,
    /// Faces per interpolation row; rows = ceil(n / interpolate).
    pub interpolate: Option<usize>,
}

/// The config beside the checkpoint, unless one is named.
pub fn config_for(ckpt: &Path, config: Option<&Path>) -> Result<TrainingConfig> {
    let path = match config {
        Some(p) => p.to_path_buf(),
        None => ckpt.with_file_name("config.json"),
    };
    if !path.exists() && run::is_state_dict(ckpt) {
        bail!(
            "no config for {}: a state dict holds weights, not the settings they were trained \
             with\n  pass --config configs/dcgan.json (tanh output), \
             configs/notebook.json (sigmoid output) or the run's config.json",
            ckpt.display()
        );
    }
    if !path.exists() {
        bail!(
            "no config for {}: expected {} beside it (written by `dcgan train`); pass --config FILE",
            ckpt.display(),
            path.display()
        );
    }
    TrainingConfig::load(&path)
}

pub fn load_generator<B: LayerBackend>(
    cfg: &TrainingConfig,
    ckpt: &Path,
    device: &B::Device,
) -> Result<Generator<B>> {
    if !ckpt.exists() {
        bail!(
            "checkpoint {} does not exist; train first, or pass --ckpt RUN/g.mpk",
            ckpt.display()
        );
    }
    let template = cfg.generator.init::<B>(cfg.image_size, 0, device);
    if run::is_state_dict(ckpt) {
        let tensors = run::read_state_dict(ckpt)?;
        return torch_names::generator_from_tensors(
            template,
            &tensors,
            &ckpt.display().to_string(),
        );
    }
    run::load_module(template, ckpt, device)
}

/// Generates `n` faces from `seed`: the same seed gives the same faces.
pub fn generate<B: LayerBackend>(
    cfg: &TrainingConfig,
    g: &Generator<B>,
    n: usize,
    seed: u64,
    device: &B::Device,
) -> Vec<Vec<u8>> {
    let mut r = rng(seed, 0, Stream::Noise);
    let mut faces = Vec::with_capacity(n);
    while faces.len() < n {
        let k = CHUNK.min(n - faces.len());
        let z = noise::<B>(cfg, &mut r, k, device);
        faces.extend(to_faces(g.forward(z, Mode::Eval), g.output()));
    }
    faces
}

/// Spherical interpolation between latent points: for normal noise, points along the great
/// circle keep the norm the generator saw in training, where a straight line would pass
/// through atypically short vectors. Falls back to a straight line for (anti)parallel ends.
pub fn slerp(a: &[f32], b: &[f32], t: f32) -> Vec<f32> {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    let cos = (dot / (norm(a) * norm(b))).clamp(-1.0, 1.0);
    let theta = cos.acos();
    let (wa, wb) = if theta.sin().abs() < 1e-4 {
        (1.0 - t, t)
    } else {
        (
            ((1.0 - t) * theta).sin() / theta.sin(),
            (t * theta).sin() / theta.sin(),
        )
    };
    a.iter().zip(b).map(|(x, y)| wa * x + wb * y).collect()
}

/// `rows` walks of `steps` faces each, from one random latent point to another: spherical
/// for normal noise, straight for uniform noise (which must stay inside its cube).
pub fn interpolate<B: LayerBackend>(
    cfg: &TrainingConfig,
    g: &Generator<B>,
    rows: usize,
    steps: usize,
    seed: u64,
    device: &B::Device,
) -> Vec<Vec<u8>> {
    let dim = cfg.generator.noise_dim;
    let mut r = rng(seed, 0, Stream::Noise);
    let mut z = Vec::with_capacity(rows * steps * dim);
    for _ in 0..rows {
        let a = cfg.generator.noise.sample(&mut r, dim);
        let b = cfg.generator.noise.sample(&mut r, dim);
        for s in 0..steps {
            let t = s as f32 / (steps - 1).max(1) as f32;
            z.extend(match cfg.generator.noise {
                NoiseDist::Normal => slerp(&a, &b, t),
                NoiseDist::Uniform => a.iter().zip(&b).map(|(x, y)| x + t * (y - x)).collect(),
            });
        }
    }
    z.chunks(CHUNK * dim)
        .flat_map(|c| {
            let k = c.len() / dim;
            let z = Tensor::from_data(TensorData::new(c.to_vec(), [k, dim]), device);
            to_faces(g.forward(z, Mode::Eval), g.output())
        })
        .collect()
}

pub fn run<B: LayerBackend>(args: &SampleSettings, device: &B::Device) -> Result<()> {
    let cfg = config_for(&args.ckpt, args.config.as_deref())?;
    let g = load_generator::<B>(&cfg, &args.ckpt, device)?;
    if let Some(steps) = args.interpolate {
        let rows = args.n.div_ceil(steps).max(1);
        let faces = interpolate(&cfg, &g, rows, steps, args.seed, device);
        write_grid(&faces, steps, &args.out)?;
        eprintln!(
            "wrote {rows} interpolations of {steps} faces to {}",
            args.out.display()
        );
        return Ok(());
    }
    let faces = generate(&cfg, &g, args.n, args.seed, device);
    if let Some(dir) = &args.each {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        for (i, face) in faces.iter().enumerate() {
            let side = cfg.image_size as u32;
            let img = RgbImage::from_raw(side, side, face.clone()).expect("a square face");
            write_png(&img, &dir.join(format!("face_{:05}.png", i + 1)))?;
        }
        eprintln!("wrote {} faces to {}", faces.len(), dir.display());
    } else {
        let cols = args
            .cols
            .unwrap_or_else(|| (args.n as f64).sqrt().ceil() as usize);
        write_grid(&faces, cols, &args.out)?;
        eprintln!("wrote {} faces to {}", faces.len(), args.out.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::slerp;

    #[test]
    fn slerp_keeps_ends_and_norm() {
        let a = [3.0f32, 0.0, 0.0];
        let b = [0.0f32, 3.0, 0.0];
        assert_eq!(slerp(&a, &b, 0.0), a.to_vec());
        let end = slerp(&a, &b, 1.0);
        assert!(end.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-5));
        let mid = slerp(&a, &b, 0.5);
        let norm = mid.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!(
            (norm - 3.0).abs() < 1e-4,
            "norm {norm}: a straight line would give 2.12"
        );
        // Parallel ends fall back to a straight line instead of dividing by sin(0).
        assert_eq!(slerp(&a, &a, 0.5), a.to_vec());
    }
}
