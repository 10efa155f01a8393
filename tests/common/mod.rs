//! Helpers shared by the integration tests: run the real binary on real files.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// 300 real CelebA JPEGs committed with the repository.
pub fn faces_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/faces")
}

pub fn dcgan(args: &[&str]) -> Output {
    dcgan_env(args, &[])
}

/// Runs dcgan with these environment variables set as well.
pub fn dcgan_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dcgan"))
        .args(args)
        .env("NO_COLOR", "1")
        .envs(env.iter().copied())
        .output()
        .expect("run dcgan")
}

/// Runs dcgan and fails the test with its stderr if it does not succeed.
pub fn dcgan_ok(args: &[&str]) -> String {
    dcgan_ok_env(args, &[])
}

/// [`dcgan_ok`] with these environment variables set as well.
pub fn dcgan_ok_env(args: &[&str], env: &[(&str, &str)]) -> String {
    let out = dcgan_env(args, env);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "dcgan {args:?} failed:\n{stderr}");
    stderr
}

/// Runs dcgan, fails the test if it does not succeed, and returns its stdout.
pub fn dcgan_stdout(args: &[&str]) -> String {
    let out = dcgan(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "dcgan {args:?} failed:\n{stderr}");
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

/// Runs dcgan expecting failure; returns stderr after checking it is a clean error.
pub fn dcgan_err(args: &[&str]) -> String {
    let out = dcgan(args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success(),
        "dcgan {args:?} should have failed:\n{stderr}"
    );
    assert!(
        !stderr.contains("panicked"),
        "dcgan {args:?} panicked:\n{stderr}"
    );
    assert!(
        !stderr.contains("RUST_BACKTRACE"),
        "dcgan {args:?} printed a backtrace hint:\n{stderr}"
    );
    stderr
}

/// `dcgan sample --ckpt CKPT --out OUT --backend cpu` plus `extra`; returns the grid it wrote.
pub fn sample_cpu(ckpt: &Path, out: &Path, extra: &[&str]) -> image::RgbImage {
    let args = [
        &[
            "sample",
            "--ckpt",
            p(ckpt),
            "--out",
            p(out),
            "--backend",
            "cpu",
        ][..],
        extra,
    ]
    .concat();
    dcgan_ok(&args);
    image::open(out).unwrap().to_rgb8()
}

/// `dcgan train` on the first 48 committed faces at batch 16 on the CPU, seed 7, into `out`.
pub fn small_train_args<'a>(out: &'a Path, epochs: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let faces = p(FACES.get_or_init(faces_dir));
    let mut args = vec![
        "train",
        "--data",
        faces,
        "--limit",
        "48",
        "--batch-size",
        "16",
        "--epochs",
        epochs,
        "--backend",
        "cpu",
        "--seed",
        "7",
        "--out",
        p(out),
    ];
    args.extend_from_slice(extra);
    args
}

static FACES: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

pub fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 temp path")
}

/// The entries of `dir`, sorted by path.
pub fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    files.sort();
    files
}

/// Every file below `dir`, in any folder.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    files_in(dir)
        .into_iter()
        .flat_map(|f| if f.is_dir() { files_under(&f) } else { vec![f] })
        .collect()
}

/// Copies the first `n` committed faces into `dir`.
pub fn copy_faces(dir: &Path, n: usize) {
    std::fs::create_dir_all(dir).unwrap();
    for f in files_in(&faces_dir()).iter().take(n) {
        std::fs::copy(f, dir.join(f.file_name().unwrap())).unwrap();
    }
}

/// The six logged values of each loss row (everything but epoch, step and speed).
pub fn loss_values(rows: &[dcgan::run::LossRow]) -> Vec<[f32; 6]> {
    rows.iter()
        .map(|r| {
            [
                r.d_loss_real,
                r.d_loss_fake,
                r.d_loss,
                r.g_loss,
                r.d_real_mean,
                r.d_fake_mean,
            ]
        })
        .collect()
}

/// A folder under the system's temporary folder, removed with everything in it when dropped.
/// Written here rather than taken from the `tempfile` crate: as a dev-dependency it switches
/// on features of crates that wgpu shares (fastrand, bitflags), so `cargo test` would rebuild
/// the whole GPU stack that `cargo build` had already built.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn tempdir() -> std::io::Result<TempDir> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let dir = std::env::temp_dir().join(format!(
        "dcgan-test-{}-{}-{nanos}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir)?;
    Ok(TempDir(dir))
}
