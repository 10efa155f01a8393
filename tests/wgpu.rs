//! WGPU against the CPU backend, on Mesa's software Vulkan driver (lavapipe) where there is
//! no GPU: the same training steps give the same losses, a CPU-trained checkpoint samples the
//! same faces, and a machine without any Vulkan driver gets a clear error or a CPU fallback.
//!
//! On a machine with no Vulkan driver at all the first two cannot run: they say so on the
//! terminal and return, unless `DCGAN_REQUIRE_WGPU=1` (set by CI, which installs lavapipe),
//! where a missing adapter fails them.

mod common;

use std::process::Command;

use common::*;
use dcgan::backend::{self, BackendChoice, Resolved};
use dcgan::config::TrainingConfig;
use dcgan::data::{load_faces, ImageList, Preprocess};
use dcgan::testing::first_steps;

const BATCH: usize = 4;

/// Keeps a software GPU quick: Mesa's LLVM shader optimiser off (compiling the kernels of a
/// step otherwise takes ~9 minutes on 2 cores) and no autotuning.
const LAVAPIPE_ENV: [(&str, &str); 2] = [
    ("GALLIVM_PERF", "nopt"),
    ("CUBECL_AUTOTUNE_LEVEL", "minimal"),
];

/// burn autotunes each convolution, matmul and reduction the first time it meets a shape,
/// by compiling and timing every candidate kernel: on lavapipe that took over 20 minutes of a
/// fresh clone's CI run. The tests start from autotune results recorded on lavapipe
/// (`tests/data/autotune/`, cubecl 0.10.0's format, read by cubecl from `target/autotune/`
/// under the package root, where `cargo test` runs). Files already there are left alone;
/// a shape missing from them is still tuned, only slowly.
fn seed_autotune_cache() {
    static SEED: std::sync::Once = std::sync::Once::new();
    SEED.call_once(|| {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let device = "device-4-0-wgpu_wgsl_";
        let from = root.join("tests/data/autotune").join(device);
        let to = root.join("target/autotune/0.10.0").join(device);
        std::fs::create_dir_all(&to).unwrap();
        for entry in std::fs::read_dir(&from).unwrap() {
            let entry = entry.unwrap();
            let dest = to.join(entry.file_name());
            if !dest.exists() {
                std::fs::copy(entry.path(), dest).unwrap();
            }
        }
    });
}

/// The WGPU adapter to test on, or `None` where this machine has none and the test may skip.
fn adapter_or_skip(test: &str) -> Option<Resolved> {
    const INSTALL: &str = "sudo apt-get install mesa-vulkan-drivers";
    match backend::resolve(BackendChoice::Wgpu) {
        Ok(resolved) => Some(resolved),
        Err(e) => {
            let why = format!(
                "{test}: no Vulkan driver on this machine ({e:#}), so the WGPU backend was NOT tested.\n  \
                 Install Mesa's software driver to run it (Debian/Ubuntu): {INSTALL}"
            );
            skipped("DCGAN_REQUIRE_WGPU", &why);
            None
        }
    }
}

/// The adapter to test on, with the recorded autotune results in place and Mesa's settings
/// made before the first Vulkan call (the driver reads them when it loads).
fn lavapipe(test: &str) -> Option<Resolved> {
    seed_autotune_cache();
    for (k, v) in LAVAPIPE_ENV {
        std::env::set_var(k, v);
    }
    adapter_or_skip(test)
}

#[test]
fn wgpu_training_steps_match_cpu() {
    let Some(resolved) = lavapipe("wgpu_training_steps_match_cpu") else {
        return;
    };
    eprintln!("wgpu adapter: {}", resolved.name());

    let mut cfg = TrainingConfig::preset("dcgan").unwrap();
    // Dropout masks come from each device's own RNG; without dropout a step is deterministic.
    cfg.discriminator.dropout = 0.0;
    cfg.batch_size = BATCH;
    let mut images = ImageList::open(&faces_dir()).unwrap();
    images.truncate(2 * BATCH);
    let faces = load_faces(&images, &Preprocess::resolve(&cfg, &images)).unwrap();

    let cpu = first_steps(&cfg, &faces, 2, &Resolved::Cpu);
    let gpu = first_steps(&cfg, &faces, 2, &resolved);
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
            assert!(
                (a - b).abs() <= 1e-3 * a.abs().max(1.0),
                "step {step}: cpu {c:?}\nwgpu {g:?}"
            );
        }
    }
}

/// The GPU's convolution layers (im2col, one matrix product, col2im) against burn's own WGPU
/// convolution ops: outputs and every gradient.
#[test]
fn wgpu_layers_match_burns_own_convolutions() {
    let Some(resolved) = lavapipe("wgpu_layers_match_burns_own_convolutions") else {
        return;
    };
    let d = dcgan::testing::difference_from_burn_on(&resolved);
    assert!(d < 1e-4, "relative difference {d} on {}", resolved.name());
}

/// The GPU's LeakyReLU + BatchNorm kernels against the textbook formula on burn's own WGPU
/// ops: output, batch statistics and every gradient.
#[test]
fn wgpu_leaky_bn_kernels_match_burns_ops() {
    let Some(resolved) = lavapipe("wgpu_leaky_bn_kernels_match_burns_ops") else {
        return;
    };
    let d = dcgan::testing::leaky_bn_difference_from_burn_on(&resolved);
    assert!(d < 1e-4, "relative difference {d} on {}", resolved.name());
}

#[test]
fn wgpu_samples_the_faces_cpu_samples() {
    if lavapipe("wgpu_samples_the_faces_cpu_samples").is_none() {
        return;
    }
    let tmp = tempdir().unwrap();
    let run = tmp.path().join("run");
    let faces = faces_dir();
    dcgan_ok(&[
        "train",
        "--data",
        p(&faces),
        "--limit",
        "16",
        "--batch-size",
        "16",
        "--epochs",
        "1",
        "--backend",
        "cpu",
        "--out",
        p(&run),
    ]);
    let mut grids = Vec::new();
    for backend in ["cpu", "wgpu"] {
        let out = tmp.path().join(format!("{backend}.png"));
        let o = Command::new(env!("CARGO_BIN_EXE_dcgan"))
            .args([
                "sample",
                "--ckpt",
                p(&run.join("g.mpk")),
                "--n",
                "4",
                "--out",
                p(&out),
                "--backend",
                backend,
            ])
            .envs(LAVAPIPE_ENV)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{backend}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        grids.push(image::open(&out).unwrap().to_rgb8());
    }
    assert_eq!(grids[0].dimensions(), grids[1].dimensions());
    let worst = grids[0]
        .as_raw()
        .iter()
        .zip(grids[1].as_raw())
        .map(|(a, b)| a.abs_diff(*b))
        .max()
        .unwrap();
    assert!(
        worst <= 2,
        "CPU and WGPU faces differ by up to {worst} levels"
    );
}

#[test]
fn no_vulkan_driver_is_an_error_for_wgpu_and_a_cpu_fallback_for_auto() {
    let tmp = tempdir().unwrap();
    let no_driver = |args: &[&str]| {
        let none = "/nonexistent.json";
        dcgan_env(
            args,
            &[("VK_ICD_FILENAMES", none), ("VK_DRIVER_FILES", none)],
        )
    };
    let run = tmp.path().join("r");
    let faces = faces_dir();
    let base = [
        "train",
        "--data",
        p(&faces),
        "--limit",
        "4",
        "--batch-size",
        "4",
        "--epochs",
        "1",
        "--out",
        p(&run),
    ];

    let o = no_driver(&[&base[..], &["--backend", "wgpu"]].concat());
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        stderr.contains("no GPU adapter found") && stderr.contains("--backend cpu"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(!run.join("config.json").exists(), "nothing started");

    let o = no_driver(&base);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    assert!(
        stderr.contains("no GPU found, training on the CPU"),
        "{stderr}"
    );
}
