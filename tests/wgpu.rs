//! One training step on WGPU (Mesa's software Vulkan driver, lavapipe, on CI) against the
//! same step on the CPU backend: same weights, same faces, same noise, so the same losses.

mod common;

use burn::backend::wgpu::WgpuDevice;
use burn::backend::{Autodiff, Flex, Wgpu};
use burn::tensor::backend::AutodiffBackend;
use dcgan::backend::{self, BackendChoice};
use dcgan::config::TrainingConfig;
use dcgan::data::{find_images, load_faces, FaceBatcher, Faces};
use dcgan::train::{noise, rng, Gan, StepStats, Stream};

const BATCH: usize = 4;

fn two_steps<B: AutodiffBackend>(cfg: &TrainingConfig, faces: &Faces, device: &B::Device) -> Vec<StepStats> {
    let batcher = FaceBatcher::new(cfg.data.normalization);
    let mut gan = Gan::<B>::new(cfg, device);
    let mut r = rng(cfg.seed, 1, Stream::Noise);
    let mut out = Vec::new();
    for step in 0..2 {
        let idx: Vec<usize> = (step * BATCH..(step + 1) * BATCH).collect();
        let real = batcher.batch::<B>(faces, &idx, device);
        let nd = noise::<B>(cfg, &mut r, BATCH, device);
        let ng = noise::<B>(cfg, &mut r, BATCH, device);
        let (next, s) = gan.step(real, nd, ng);
        gan = next;
        out.push(s);
    }
    out
}

#[test]
fn wgpu_step_matches_cpu_step() {
    // Autotuning every kernel on a software GPU takes many minutes; the default kernels suffice.
    std::env::set_var("CUBECL_AUTOTUNE_LEVEL", "minimal");
    let resolved = backend::resolve(BackendChoice::Wgpu).unwrap_or_else(|e| {
        panic!("{e:#}\nthis test needs a Vulkan driver: on Debian/Ubuntu `apt-get install mesa-vulkan-drivers`")
    });
    eprintln!("wgpu adapter: {}", resolved.name());

    let mut cfg = TrainingConfig::preset("dcgan").unwrap();
    // Dropout masks come from each device's own RNG; without dropout the step is deterministic.
    cfg.discriminator.dropout = 0.0;
    cfg.batch_size = BATCH;
    let files = find_images(&common::faces_dir()).unwrap();
    let faces = load_faces(&files[..2 * BATCH], cfg.data.crop, cfg.data.filter).unwrap();

    let cpu = two_steps::<Autodiff<Flex>>(&cfg, &faces, &Default::default());
    let gpu = two_steps::<Autodiff<Wgpu>>(&cfg, &faces, &WgpuDevice::DefaultDevice);
    for (step, (c, g)) in cpu.iter().zip(&gpu).enumerate() {
        let pairs = [
            (c.d_loss_real, g.d_loss_real),
            (c.d_loss_fake, g.d_loss_fake),
            (c.g_loss, g.g_loss),
            (c.d_real_mean, g.d_real_mean),
            (c.d_fake_mean, g.d_fake_mean),
        ];
        for (a, b) in pairs {
            assert!(a.is_finite() && b.is_finite());
            assert!((a - b).abs() <= 1e-3 * a.abs().max(1.0), "step {step}: cpu {c:?} vs wgpu {g:?}");
        }
    }
}
