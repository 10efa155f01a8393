//! Turning a trained generator into pictures: PNG grids and single faces.

use std::io::Cursor;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;
use image::{ImageFormat, RgbImage};

use crate::checkpoint;
use crate::config::TrainingConfig;
use crate::data::{FACE_BYTES, SIZE};
use crate::layers::LayerBackend;
use crate::model::{Generator, Mode, Output};
use crate::train::{noise, rng, Stream};

const GAP: u32 = 2;
/// Faces generated per forward pass: bounded memory whatever `--n` is.
const CHUNK: usize = 256;

/// [N, 3, 64, 64] generator output to N row-major RGB u8 faces.
pub fn to_faces<B: Backend>(images: Tensor<B, 4>, output: Output) -> Vec<Vec<u8>> {
    let [n, _, _, _] = images.dims();
    let v = images.into_data().to_vec::<f32>().expect("f32 images");
    let plane = SIZE * SIZE;
    (0..n)
        .map(|i| {
            let src = &v[i * FACE_BYTES..(i + 1) * FACE_BYTES];
            let mut face = vec![0u8; FACE_BYTES];
            for p in 0..plane {
                for c in 0..3 {
                    let x = src[c * plane + p];
                    let unit = match output {
                        Output::Sigmoid => x,
                        Output::Tanh => (x + 1.0) * 0.5,
                    };
                    face[p * 3 + c] = (unit * 255.0).round().clamp(0.0, 255.0) as u8;
                }
            }
            face
        })
        .collect()
}

/// Lays faces out `cols` to a row with a 2-pixel black gap, and writes a PNG atomically.
pub fn write_grid(faces: &[Vec<u8>], cols: usize, path: &Path) -> Result<()> {
    let cols = cols.clamp(1, faces.len().max(1)) as u32;
    let rows = (faces.len() as u32).div_ceil(cols);
    let cell = SIZE as u32 + GAP;
    let mut grid = RgbImage::new(cols * cell + GAP, rows * cell + GAP);
    for (i, face) in faces.iter().enumerate() {
        let (x0, y0) = (
            GAP + (i as u32 % cols) * cell,
            GAP + (i as u32 / cols) * cell,
        );
        for (p, rgb) in face.chunks_exact(3).enumerate() {
            let (x, y) = (p as u32 % SIZE as u32, p as u32 / SIZE as u32);
            grid.put_pixel(x0 + x, y0 + y, image::Rgb([rgb[0], rgb[1], rgb[2]]));
        }
    }
    write_png(&grid, path)
}

pub fn write_png(img: &RgbImage, path: &Path) -> Result<()> {
    let mut bytes = Cursor::new(Vec::new());
    img.write_to(&mut bytes, ImageFormat::Png)
        .context("cannot encode PNG")?;
    checkpoint::write_atomic(path, bytes.get_ref())
}

pub struct SampleArgs {
    pub ckpt: PathBuf,
    pub config: Option<PathBuf>,
    pub n: usize,
    pub seed: u64,
    pub cols: Option<usize>,
    pub out: PathBuf,
    pub each: Option<PathBuf>,
}

/// The config beside the checkpoint, unless one is named.
pub fn config_for(ckpt: &Path, config: Option<&Path>) -> Result<TrainingConfig> {
    let path = match config {
        Some(p) => p.to_path_buf(),
        None => ckpt.with_file_name("config.json"),
    };
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
    checkpoint::load_module(cfg.generator.init::<B>(0, device), ckpt, device)
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

pub fn run<B: LayerBackend>(args: &SampleArgs, device: &B::Device) -> Result<()> {
    let cfg = config_for(&args.ckpt, args.config.as_deref())?;
    let g = load_generator::<B>(&cfg, &args.ckpt, device)?;
    let faces = generate(&cfg, &g, args.n, args.seed, device);
    if let Some(dir) = &args.each {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        for (i, face) in faces.iter().enumerate() {
            let img =
                RgbImage::from_raw(SIZE as u32, SIZE as u32, face.clone()).expect("64x64 face");
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
