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

/// `dcgan eval` of a generator against 64 of the committed faces, as JSON.
pub fn eval_64(ckpt: &Path) -> serde_json::Value {
    let out = dcgan_stdout(&[
        "eval",
        "--ckpt",
        p(ckpt),
        "--real",
        p(&faces_dir()),
        "--n",
        "64",
        "--json",
        "--backend",
        "cpu",
    ]);
    serde_json::from_str(out.trim()).unwrap()
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

/// `files` as zip members named `prefix` + file name, with their bytes, in the order given.
pub fn zip_members(files: &[PathBuf], prefix: &str) -> Vec<(String, Vec<u8>)> {
    files
        .iter()
        .map(|f| {
            let name = f.file_name().unwrap().to_string_lossy();
            (format!("{prefix}{name}"), std::fs::read(f).unwrap())
        })
        .collect()
}

/// How [`write_zip`] lays an archive out: the layouts CelebA's downloads come in.
#[derive(Clone, Copy, Debug, Default)]
pub struct ZipLayout {
    /// Deflated members rather than stored ones.
    pub deflate: bool,
    /// Written as a stream: zero sizes and CRC in the local headers and a data descriptor
    /// after each member, as streaming writers (and some of Kaggle's archives) do.
    pub streamed: bool,
    /// ZIP64 extra fields on every member, as archives over 4 GiB need.
    pub zip64: bool,
}

/// Writes `members` (names ending in '/' become folder entries) to `path` with the `zip`
/// crate's writer, in the order given.
pub fn write_zip(path: &Path, members: &[(String, Vec<u8>)], layout: ZipLayout) {
    let file = std::fs::File::create(path).expect("create test zip");
    if layout.streamed {
        add_members(zip::ZipWriter::new_stream(file), members, layout);
    } else {
        add_members(zip::ZipWriter::new(file), members, layout);
    }
}

fn add_members<W: std::io::Write + std::io::Seek>(
    mut zip: zip::ZipWriter<W>,
    members: &[(String, Vec<u8>)],
    layout: ZipLayout,
) {
    use std::io::Write;
    let method = if layout.deflate {
        zip::CompressionMethod::Deflated
    } else {
        zip::CompressionMethod::Stored
    };
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(method)
        .large_file(layout.zip64);
    for (name, data) in members {
        if name.ends_with('/') {
            zip.add_directory(name.as_str(), options)
                .expect("add folder");
        } else {
            zip.start_file(name.as_str(), options)
                .expect("start member");
            zip.write_all(data).expect("write member");
        }
    }
    zip.finish().expect("finish test zip");
}

/// Checks the run's TensorBoard log against its own files: one event file whose every step
/// tag holds, once per step, exactly the value of that step's `losses.jsonl` row; one preview
/// image per epoch whose PNG is the bytes of `samples/epoch_NNNN.png`; the SWD rows of
/// `metrics.jsonl`. Then, where TensorBoard is installed, the same through TensorBoard's own
/// reader (`tests/reference/tensorboard_check.py`).
pub fn check_tensorboard(run: &Path) {
    use dcgan::run::tensorboard::{read_events, ValueKind, What};
    use std::collections::BTreeMap;

    let files = dcgan::run::RunDir(run.to_path_buf()).event_files();
    assert_eq!(
        files.len(),
        1,
        "one event file in {}: {files:?}",
        run.display()
    );
    let mut scalars: BTreeMap<String, Vec<(usize, f32)>> = BTreeMap::new();
    let mut images: Vec<(usize, Vec<u8>)> = Vec::new();
    for event in read_events(&files[0]).unwrap() {
        let Some(What::Summary(s)) = event.what else {
            continue;
        };
        for v in s.value {
            match v.kind {
                Some(ValueKind::SimpleValue(x)) => scalars
                    .entry(v.tag)
                    .or_default()
                    .push((event.step as usize, x)),
                Some(ValueKind::Image(img)) => {
                    assert_eq!(v.tag, dcgan::run::PREVIEW_TAG);
                    images.push((event.step as usize, img.encoded_image_string));
                }
                None => panic!("tag {} holds no value", v.tag),
            }
        }
    }
    let rows = dcgan::run::read_losses(&run.join("losses.jsonl")).unwrap();
    for (tag, field) in dcgan::run::STEP_TAGS {
        let want: Vec<(usize, u32)> = rows.iter().map(|r| (r.step, field(r).to_bits())).collect();
        let got: Vec<(usize, u32)> = scalars[tag]
            .iter()
            .map(|(s, v)| (*s, v.to_bits()))
            .collect();
        assert_eq!(got, want, "{tag}: each step once, with the logged value");
    }
    let epochs = rows.last().unwrap().epoch;
    assert_eq!(images.len(), epochs, "one preview per epoch");
    for (epoch, (step, png)) in (1..).zip(&images) {
        let last = rows
            .iter()
            .filter(|r| r.epoch == epoch)
            .map(|r| r.step)
            .max();
        assert_eq!(
            Some(*step),
            last,
            "epoch {epoch}'s preview at its last step"
        );
        let file = run.join(format!("samples/epoch_{epoch:04}.png"));
        assert!(
            *png == std::fs::read(&file).unwrap(),
            "{} differs",
            file.display()
        );
    }
    let metrics = run.join("metrics.jsonl");
    if metrics.exists() {
        let text = std::fs::read_to_string(&metrics).unwrap();
        let rows: Vec<dcgan::run::MetricRow> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let want: Vec<(usize, u32)> = rows
            .iter()
            .map(|r| (r.step, (r.swd_mean as f32).to_bits()))
            .collect();
        let got: Vec<(usize, u32)> = scalars["swd/mean"]
            .iter()
            .map(|(s, v)| (*s, v.to_bits()))
            .collect();
        assert_eq!(got, want, "swd/mean");
    }
    tensorboard_reads(run);
}

/// Says plainly on the terminal that a check was NOT run and why, or fails the test where
/// `require_var` is `1` (CI sets it), so a missing tool is never counted as a pass.
pub fn skipped(require_var: &str, why: &str) {
    use std::io::Write;
    assert!(
        std::env::var(require_var).as_deref() != Ok("1"),
        "{require_var}=1, but {why}"
    );
    // Straight to the terminal: the test harness hides what a passing test prints.
    let _ = writeln!(std::io::stderr(), "\nSKIPPED: {why}\n");
}

/// Runs TensorBoard's own reader over the run, with the Python named by
/// `DCGAN_TENSORBOARD_PYTHON` (CI makes a virtual environment with tensorboard for it). Without
/// it the check says so on the terminal, unless `DCGAN_REQUIRE_TENSORBOARD=1` (set by CI).
fn tensorboard_reads(run: &Path) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/reference/tensorboard_check.py");
    let Some(python) = std::env::var_os("DCGAN_TENSORBOARD_PYTHON") else {
        let why = format!(
            "DCGAN_TENSORBOARD_PYTHON names no Python, so TensorBoard's own reader was NOT run; \
             set it to a Python with tensorboard, numpy and Pillow to run {}",
            script.display()
        );
        skipped("DCGAN_REQUIRE_TENSORBOARD", &why);
        return;
    };
    let out = Command::new(python)
        .arg(&script)
        .arg(run)
        .output()
        .expect("run the TensorBoard check");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "tensorboard_check.py failed:\n{text}");
    assert!(text.contains("ok"), "{text}");
}
