//! Runs that survive: exact resume after Ctrl-C, SIGKILL at random moments, a failing disk,
//! divergence, and damaged checkpoints — all on the CPU backend with a few dozen real faces.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;
use burn::backend::Flex;
use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;
use dcgan::config::TrainingConfig;
use dcgan::run as checkpoint;
use dcgan::run::{read_losses, LossRow};

/// 48 faces, batch 8: 6 steps an epoch, 3 epochs, with a moving average of G (which a
/// resume must restore exactly too).
fn train_args<'a>(data: &'a str, out: &'a str) -> Vec<&'a str> {
    vec![
        "train",
        "--data",
        data,
        "--limit",
        "48",
        "--batch-size",
        "8",
        "--epochs",
        "3",
        "--backend",
        "cpu",
        "--preset",
        "notebook",
        "--seed",
        "11",
        "--out",
        out,
        "--ema",
        "0.9",
    ]
}

fn spawn(args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_dcgan"))
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn signal(child: &Child, sig: i32) {
    unsafe {
        libc::kill(child.id() as i32, sig);
    }
}

fn rows_in(path: &Path) -> usize {
    std::fs::read_to_string(path)
        .map(|t| t.lines().count())
        .unwrap_or(0)
}

fn wait_for_rows(path: &Path, n: usize) {
    let t = Instant::now();
    while rows_in(path) < n {
        assert!(
            t.elapsed() < Duration::from_secs(120),
            "training never reached {n} rows"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn losses(rows: &[LossRow]) -> Vec<(usize, usize, [f32; 6])> {
    rows.iter()
        .zip(loss_values(rows))
        .map(|(r, v)| (r.epoch, r.step, v))
        .collect()
}

/// Every weight and running statistic of a saved generator (`g.mpk`, `g_ema.mpk`), in order.
fn generator_weights(run: &Path, file: &str) -> Vec<f32> {
    struct Flat(Vec<f32>);
    impl<B: Backend> ModuleVisitor<B> for Flat {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            self.0
                .extend(param.val().into_data().to_vec::<f32>().unwrap());
        }
    }
    let cfg = TrainingConfig::load(&run.join("config.json")).unwrap();
    let device = Default::default();
    let g = checkpoint::load_module(
        cfg.generator.init::<Flex>(cfg.image_size, 0, &device),
        &run.join(file),
        &device,
    )
    .unwrap();
    let mut flat = Flat(Vec::new());
    g.visit(&mut flat);
    flat.0
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// A straight 3-epoch run, the reference every interrupted run must end equal to.
fn reference_run(tmp: &Path) -> std::path::PathBuf {
    let faces = faces_dir();
    let out = tmp.join("straight");
    dcgan_ok(&train_args(p(&faces), p(&out)));
    out
}

#[test]
fn ctrl_c_mid_epoch_then_resume_matches_an_uninterrupted_run() {
    let tmp = tempdir().unwrap();
    let straight = reference_run(tmp.path());
    let faces = faces_dir();
    let out = tmp.path().join("stopped");

    // Stop with SIGINT in the middle of epoch 1 (after at least 2 of its 6 batches).
    let child = spawn(&train_args(p(&faces), p(&out)));
    wait_for_rows(&out.join("losses.jsonl"), 2);
    signal(&child, libc::SIGINT);
    let o = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("dcgan train --resume --out"), "{stderr}");
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("checkpoint.json")).unwrap())
            .unwrap();
    let step = manifest["step"].as_u64().unwrap() as usize;
    assert!((2..18).contains(&step), "stopped at step {step}");
    assert_eq!(rows_in(&out.join("losses.jsonl")), step);

    // Resume with no --data: the run folder remembers it.
    let log = dcgan_ok(&["train", "--resume", "--out", p(&out), "--backend", "cpu"]);
    assert!(log.contains(&format!("step {step}")), "{log}");

    let a = read_losses(&straight.join("losses.jsonl")).unwrap();
    let b = read_losses(&out.join("losses.jsonl")).unwrap();
    assert_eq!(b.len(), 18, "each step once, none missing");
    assert_eq!(losses(&a), losses(&b));
    for file in ["g.mpk", "g_ema.mpk"] {
        let diff = max_abs_diff(
            &generator_weights(&straight, file),
            &generator_weights(&out, file),
        );
        assert!(diff <= 1e-6, "{file}: weights differ by {diff}");
    }
    // The average is its own record, not a copy of G.
    let lag = max_abs_diff(
        &generator_weights(&out, "g.mpk"),
        &generator_weights(&out, "g_ema.mpk"),
    );
    assert!(lag > 1e-4, "g_ema.mpk equals g.mpk");
    for epoch in 1..=3 {
        assert!(out.join(format!("samples/epoch_{epoch:04}.png")).exists());
    }
    // TensorBoard shows each step once: the resume cut the event file back to the checkpoint.
    check_tensorboard(&out);

    // --epochs may be raised on resume; the log continues where it stopped.
    dcgan_ok(&[
        "train",
        "--resume",
        "--out",
        p(&out),
        "--epochs",
        "4",
        "--backend",
        "cpu",
    ]);
    let c = read_losses(&out.join("losses.jsonl")).unwrap();
    assert_eq!(c.len(), 24);
    assert_eq!(losses(&c[..18]), losses(&b));
    assert!(c.iter().enumerate().all(|(i, r)| r.step == i + 1));
    // ... but not lowered below what is done.
    let err = dcgan_err(&[
        "train",
        "--resume",
        "--out",
        p(&out),
        "--epochs",
        "2",
        "--backend",
        "cpu",
    ]);
    assert!(err.contains("fewer than the 4 epochs"), "{err}");
}

#[test]
fn sigkill_at_random_moments_always_leaves_a_resumable_run() {
    let tmp = tempdir().unwrap();
    let faces = faces_dir();
    // 16 faces, batch 8: 2 steps an epoch, 4 epochs, so checkpoints come often and kills
    // land inside them as well as between them.
    let small = |out: &Path| -> Vec<String> {
        let mut a: Vec<String> = train_args(p(&faces), p(out))
            .iter()
            .map(|s| s.to_string())
            .collect();
        a[4] = "16".into();
        a[8] = "4".into();
        a
    };
    let straight = tmp.path().join("straight");
    dcgan_ok(
        &small(&straight)
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    let out = tmp.path().join("killed");
    let fresh_owned = small(&out);
    let fresh: Vec<&str> = fresh_owned.iter().map(String::as_str).collect();
    let resume = ["train", "--resume", "--out", p(&out), "--backend", "cpu"];

    // A fixed pseudo-random schedule of kills, keyed to the run's own progress rather than
    // to the clock (so they land however fast or loaded the machine is): 0 to 300 ms after
    // start-up or after the first epoch's rows reach the log, which is just before that
    // epoch's checkpoint, so some land in start-up, some mid-checkpoint, some mid-batch.
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    let mut kills = 0;
    let mut finished = false;
    for round in 0..20 {
        let args: &[&str] = if out.join("checkpoint.json").exists() {
            &resume
        } else {
            &fresh
        };
        let mut force = args.to_vec();
        if !out.join("checkpoint.json").exists() && out.exists() {
            force.push("--force"); // killed before the first checkpoint: start over
        }
        let mut child = spawn(&force);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let wait_rows = (x % 2) as usize;
        let delay = Duration::from_millis(x % 300);
        let start_rows = rows_in(&out.join("losses.jsonl"));
        let mut t: Option<Instant> = None;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                let mut err = String::new();
                std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
                assert!(status.success(), "round {round}: {err}");
                finished = true;
                break;
            }
            if t.is_none() && (wait_rows == 0 || rows_in(&out.join("losses.jsonl")) > start_rows) {
                t = Some(Instant::now());
            }
            if t.is_some_and(|t| t.elapsed() >= delay) {
                signal(&child, libc::SIGKILL);
                child.wait().unwrap();
                kills += 1;
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        if finished {
            break;
        }
        // After every kill the folder holds a checkpoint that loads, or none yet.
        if out.join("checkpoint.json").exists() {
            checkpoint::RunDir(out.clone()).load_checkpoint().unwrap();
        }
    }
    if !finished {
        dcgan_ok(&resume);
    }
    assert!(kills >= 3, "only {kills} kills landed");

    let a = read_losses(&straight.join("losses.jsonl")).unwrap();
    let b = read_losses(&out.join("losses.jsonl")).unwrap();
    assert_eq!(
        losses(&a),
        losses(&b),
        "after {kills} kills the run is the uninterrupted one"
    );
    for file in ["g.mpk", "g_ema.mpk"] {
        let diff = max_abs_diff(
            &generator_weights(&straight, file),
            &generator_weights(&out, file),
        );
        assert!(diff <= 1e-6, "{file}: weights differ by {diff}");
    }
    let leftovers: Vec<_> = files_under(&out)
        .into_iter()
        .filter(|f| f.to_string_lossy().contains(".partial"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    check_tensorboard(&out);
    // And the final checkpoint samples.
    sample_cpu(&out.join("g.mpk"), &tmp.path().join("s.png"), &["--n", "4"]);
}

#[test]
fn second_ctrl_c_quits_at_once_and_keeps_the_last_checkpoint() {
    let tmp = tempdir().unwrap();
    let faces = faces_dir();
    let out = tmp.path().join("run");
    let child = spawn(&train_args(p(&faces), p(&out)));
    // Past the first epoch's checkpoint (6 steps), then two interrupts back to back.
    wait_for_rows(&out.join("losses.jsonl"), 7);
    signal(&child, libc::SIGINT);
    std::thread::sleep(Duration::from_millis(5));
    signal(&child, libc::SIGINT);
    let o = child.wait_with_output().unwrap();
    assert_eq!(
        o.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let (manifest, _) = checkpoint::RunDir(out.clone()).load_checkpoint().unwrap();
    assert!(manifest.step >= 6);
    dcgan_ok(&["train", "--resume", "--out", p(&out), "--backend", "cpu"]);
    assert_eq!(read_losses(&out.join("losses.jsonl")).unwrap().len(), 18);
}

#[test]
fn sigterm_checkpoints_like_ctrl_c() {
    let tmp = tempdir().unwrap();
    let faces = faces_dir();
    let out = tmp.path().join("run");
    let child = spawn(&train_args(p(&faces), p(&out)));
    wait_for_rows(&out.join("losses.jsonl"), 1);
    signal(&child, libc::SIGTERM);
    let o = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("checkpoint saved"), "{stderr}");
    let (manifest, _) = checkpoint::RunDir(out).load_checkpoint().unwrap();
    assert!(manifest.step >= 1);
}

#[test]
fn a_failing_write_stops_the_run_and_keeps_the_previous_checkpoint() {
    let tmp = tempdir().unwrap();
    let faces = faces_dir();
    let out = tmp.path().join("run");
    let mut args = train_args(p(&faces), p(&out));
    args[8] = "1"; // one epoch
    dcgan_ok(&args);
    let before = std::fs::read(out.join("checkpoint.json")).unwrap();

    // A 4 MB file-size limit: the 14 MB generator record of epoch 2 cannot be written, as on
    // a full disk.
    let o = Command::new("prlimit")
        .args(["--fsize=4000000", "--", env!("CARGO_BIN_EXE_dcgan")])
        .args([
            "train",
            "--resume",
            "--out",
            p(&out),
            "--epochs",
            "2",
            "--backend",
            "cpu",
        ])
        .output()
        .expect("prlimit (util-linux)");
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        stderr.contains("cannot write") && stderr.contains("previous checkpoint is intact"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(
        std::fs::read(out.join("checkpoint.json")).unwrap(),
        before,
        "manifest untouched"
    );
    checkpoint::RunDir(out.clone()).load_checkpoint().unwrap();

    // With room again, the run resumes from epoch 1 and completes epoch 2.
    dcgan_ok(&[
        "train",
        "--resume",
        "--out",
        p(&out),
        "--epochs",
        "2",
        "--backend",
        "cpu",
    ]);
    let rows = read_losses(&out.join("losses.jsonl")).unwrap();
    assert_eq!(rows.len(), 12);
    assert!(rows.iter().enumerate().all(|(i, r)| r.step == i + 1));
}

#[test]
fn divergence_stops_with_advice_and_keeps_the_last_good_checkpoint() {
    let tmp = tempdir().unwrap();
    let faces = faces_dir();
    let out = tmp.path().join("run");
    let mut args = train_args(p(&faces), p(&out));
    args[8] = "1";
    dcgan_ok(&args);
    let good = std::fs::read(out.join("checkpoint.json")).unwrap();

    // Raise the learning rate of the saved run to absurd heights and continue it.
    let mut manifest: serde_json::Value = serde_json::from_slice(&good).unwrap();
    manifest["config"]["optimizer_d"]["lr"] = 1e38.into();
    manifest["config"]["optimizer_g"]["lr"] = 1e38.into();
    manifest["config"]["epochs"] = 3.into();
    std::fs::write(out.join("checkpoint.json"), manifest.to_string()).unwrap();
    let err = dcgan_err(&["train", "--resume", "--out", p(&out), "--backend", "cpu"]);
    assert!(
        err.contains("non-finite") && err.contains("lower learning rate"),
        "{err}"
    );
    // The checkpoint on disk is still the last good one: step 6.
    let (m, _) = checkpoint::RunDir(out).load_checkpoint().unwrap();
    assert_eq!(m.step, 6);
}

#[test]
fn damaged_checkpoints_are_named_errors() {
    let tmp = tempdir().unwrap();
    let faces = faces_dir();
    let out = tmp.path().join("run");
    let mut args = train_args(p(&faces), p(&out));
    args[8] = "1";
    dcgan_ok(&args);
    let resume = ["train", "--resume", "--out", p(&out), "--backend", "cpu"];
    let record = |role: &str| {
        files_under(&out.join("checkpoints"))
            .into_iter()
            .find(|f| f.to_string_lossy().ends_with(&format!("-{role}.mpk")))
            .unwrap()
    };

    // Truncated.
    let g = record("g");
    let bytes = std::fs::read(&g).unwrap();
    std::fs::write(&g, &bytes[..bytes.len() / 2]).unwrap();
    let err = dcgan_err(&resume);
    assert!(
        err.contains("truncated") && err.contains(&*g.file_name().unwrap().to_string_lossy()),
        "{err}"
    );

    // Same size, one byte changed.
    let mut flipped = bytes.clone();
    flipped[bytes.len() / 2] ^= 0xff;
    std::fs::write(&g, &flipped).unwrap();
    let err = dcgan_err(&resume);
    assert!(err.contains("corrupt") && err.contains("CRC"), "{err}");
    std::fs::write(&g, &bytes).unwrap();

    // Missing.
    let d_optim = record("d_optim");
    let saved = std::fs::read(&d_optim).unwrap();
    std::fs::remove_file(&d_optim).unwrap();
    let err = dcgan_err(&resume);
    assert!(
        err.contains("missing") && err.contains("d_optim.mpk"),
        "{err}"
    );
    std::fs::write(&d_optim, saved).unwrap();

    // A manifest that is not JSON.
    let manifest = std::fs::read(out.join("checkpoint.json")).unwrap();
    std::fs::write(out.join("checkpoint.json"), b"{ half a manif").unwrap();
    let err = dcgan_err(&resume);
    assert!(
        err.contains("checkpoint.json") && err.contains("damaged"),
        "{err}"
    );
    std::fs::write(out.join("checkpoint.json"), manifest).unwrap();

    // No checkpoint at all.
    let empty = tmp.path().join("empty");
    let err = dcgan_err(&["train", "--resume", "--out", p(&empty), "--backend", "cpu"]);
    assert!(err.contains("holds no checkpoint"), "{err}");

    // A generator read with another architecture's config.
    let mut other = TrainingConfig::load(&out.join("config.json")).unwrap();
    other.generator.noise_dim = 128;
    let other_cfg = tmp.path().join("other.json");
    std::fs::write(&other_cfg, other.to_json()).unwrap();
    let err = dcgan_err(&[
        "sample",
        "--ckpt",
        p(&out.join("g.mpk")),
        "--config",
        p(&other_cfg),
        "--out",
        p(&tmp.path().join("x.png")),
        "--backend",
        "cpu",
    ]);
    assert!(
        err.contains("g.mpk") && err.contains("another architecture"),
        "{err}"
    );

    // A file that is not a record at all.
    std::fs::write(tmp.path().join("fake.mpk"), b"not msgpack").unwrap();
    std::fs::copy(out.join("config.json"), tmp.path().join("config.json")).unwrap();
    let err = dcgan_err(&[
        "sample",
        "--ckpt",
        p(&tmp.path().join("fake.mpk")),
        "--out",
        p(&tmp.path().join("x.png")),
        "--backend",
        "cpu",
    ]);
    assert!(err.contains("fake.mpk"), "{err}");

    // After all that, the intact checkpoint still resumes.
    dcgan_ok(&[
        "train",
        "--resume",
        "--out",
        p(&out),
        "--epochs",
        "2",
        "--backend",
        "cpu",
    ]);
}

#[test]
fn resident_memory_does_not_grow_over_epochs() {
    let tmp = tempdir().unwrap();
    let faces = faces_dir();
    let out = tmp.path().join("run");
    // dcgan keeps freed pages (src/main.rs), so its size is a high-water mark that can step
    // up once late in a run from fragmentation alone. A leak shows under the allocator's
    // default too, where freed pages go back to the system: the test runs under it.
    let log = dcgan_ok_env(
        &[
            "train",
            "--data",
            p(&faces),
            "--limit",
            "16",
            "--batch-size",
            "8",
            "--epochs",
            "10",
            "--backend",
            "cpu",
            "--out",
            p(&out),
        ],
        &[("MIMALLOC_PURGE_DELAY", "10")],
    );
    let rss: Vec<u64> = log
        .lines()
        .filter(|l| l.starts_with("epoch "))
        .map(|l| {
            l.split("rss ")
                .nth(1)
                .unwrap()
                .split(' ')
                .next()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    assert_eq!(rss.len(), 10, "{log}");
    let (e2, e10) = (rss[1] as f64, rss[9] as f64);
    assert!(
        e10 <= e2 * 1.05,
        "resident memory grew from {e2} MB after epoch 2 to {e10} MB after epoch 10: {rss:?}"
    );
}

/// The natural thing after a crash: the same command line with `--resume` appended. Flags that
/// say what the run started with are accepted; a changed one is refused by name with both
/// values, and leaves the run as it was.
#[test]
fn resume_takes_the_original_command_line_and_refuses_changed_flags() {
    let tmp = tempdir().unwrap();
    let out = tmp.path().join("run");
    let faces = faces_dir();
    let original = train_args(p(&faces), p(&out));
    let with = |changes: &[(&str, &str)], extra: &[&str]| -> Vec<String> {
        let mut args: Vec<String> = original.iter().map(|s| s.to_string()).collect();
        for (flag, value) in changes {
            match args.iter().position(|a| a == flag) {
                Some(i) => args[i + 1] = value.to_string(),
                None => args.extend([flag.to_string(), value.to_string()]),
            }
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    };
    let run = |args: &[String]| dcgan(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let one_epoch = with(&[("--epochs", "1")], &[]);
    let o = run(&one_epoch);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    let refused = [
        ("--batch-size", "16", "this run's 8"),
        ("--lr", "0.01", "this run's 0.001"),
        ("--seed", "12", "this run's 11"),
        ("--ema", "0.5", "this run's 0.9"),
        ("--limit", "40", "this run's 48"),
        (
            "--preset",
            "dcgan",
            "--preset dcgan does not match this run's config",
        ),
    ];
    for (flag, value, says) in refused {
        let o = run(&with(&[(flag, value)], &["--resume"]));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{flag} {value} was accepted");
        assert!(
            err.contains(&format!("{flag} {value}")) && err.contains(says),
            "{flag}: {err}"
        );
        assert!(!err.contains("panicked"), "{err}");
    }
    let err = String::from_utf8_lossy(&run(&with(&[], &["--resume", "--swd-every", "1"])).stderr)
        .into_owned();
    assert!(err.contains("--swd-every 1 does not match"), "{err}");
    assert_eq!(read_losses(&out.join("losses.jsonl")).unwrap().len(), 6);

    // The full original command line (3 epochs) with --resume, from a moved copy of the
    // images and with --force, which a resume ignores: it continues the run to the end.
    let moved = tmp.path().join("moved");
    copy_faces(&moved, 300);
    let mut again = with(&[("--data", p(&moved))], &["--resume", "--force"]);
    let o = run(&again);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    assert!(stderr.contains("resuming"), "{stderr}");
    let rows = read_losses(&out.join("losses.jsonl")).unwrap();
    assert_eq!(rows.len(), 18);
    assert!(rows.iter().enumerate().all(|(i, r)| r.step == i + 1));
    // Resumed the same way, the finished run stays finished.
    again.retain(|a| a != "--force");
    assert!(run(&again).status.success());
    assert_eq!(read_losses(&out.join("losses.jsonl")).unwrap().len(), 18);
}

/// The paper's loop trains differently from the notebook's, is recorded in the run's config,
/// and resumes exactly: one epoch then a resume ends where a straight run does.
#[test]
fn paper_loop_resumes_exactly() {
    let tmp = tempdir().unwrap();
    let faces = faces_dir();
    let run = |out: &Path, epochs: &str, extra: &[&str]| {
        let mut args = train_args(p(&faces), p(out));
        let i = args.iter().position(|a| *a == "--epochs").unwrap();
        args[i + 1] = epochs;
        args.extend_from_slice(extra);
        dcgan_ok(&args);
        read_losses(&out.join("losses.jsonl")).unwrap()
    };
    let straight = tmp.path().join("straight");
    let a = run(&straight, "2", &["--loop", "paper"]);
    let notebook = run(&tmp.path().join("notebook"), "2", &["--loop", "notebook"]);
    assert_ne!(
        losses(&a),
        losses(&notebook),
        "--loop paper changed nothing"
    );
    let cfg = TrainingConfig::load(&straight.join("config.json")).unwrap();
    assert_eq!(cfg.gan_loop, dcgan::config::GanLoop::Paper);

    let resumed = tmp.path().join("resumed");
    run(&resumed, "1", &["--loop", "paper"]);
    let b = run(&resumed, "2", &["--loop", "paper", "--resume"]);
    assert_eq!(losses(&a), losses(&b));
    let diff = max_abs_diff(
        &generator_weights(&straight, "g.mpk"),
        &generator_weights(&resumed, "g.mpk"),
    );
    assert!(diff <= 1e-6, "weights differ by {diff}");
    // The loop is part of the run: resuming with the other one is refused by name.
    let mut other = train_args(p(&faces), p(&resumed));
    other.extend(["--loop", "notebook", "--resume"]);
    let err = dcgan_err(&other);
    assert!(
        err.contains("--loop notebook does not match this run's paper"),
        "{err}"
    );
}

/// A kill after the last checkpoint's manifest but before `g.mpk`, `d.mpk` and `g_ema.mpk` were
/// refreshed leaves them one checkpoint behind; resuming the finished run writes them again
/// from the checkpoint.
#[test]
fn resume_refreshes_the_networks_a_kill_left_behind() {
    let tmp = tempdir().unwrap();
    let faces = faces_dir();
    let out = tmp.path().join("run");
    let mut args = train_args(p(&faces), p(&out));
    let i = args.iter().position(|a| *a == "--epochs").unwrap();
    args[i + 1] = "1";
    dcgan_ok(&args);
    let expected = [
        generator_weights(&out, "g.mpk"),
        generator_weights(&out, "g_ema.mpk"),
    ];
    let stale = tmp.path().join("stale");
    std::fs::create_dir_all(&stale).unwrap();
    std::fs::copy(out.join("config.json"), stale.join("config.json")).unwrap();
    // Stand-ins from another run, as if the copies were a checkpoint behind.
    let other_out = stale.join("other");
    let mut other = train_args(p(&faces), p(&other_out));
    other[i + 1] = "1";
    let s = other.iter().position(|a| *a == "--seed").unwrap();
    other[s + 1] = "5";
    dcgan_ok(&other);
    for f in ["g.mpk", "g_ema.mpk", "d.mpk"] {
        std::fs::copy(other_out.join(f), out.join(f)).unwrap();
    }
    assert!(max_abs_diff(&generator_weights(&out, "g.mpk"), &expected[0]) > 1e-3);
    args.push("--resume");
    dcgan_ok(&args);
    assert_eq!(generator_weights(&out, "g.mpk"), expected[0]);
    assert_eq!(generator_weights(&out, "g_ema.mpk"), expected[1]);
}
