//! End to end on the CPU backend: train on real faces, then sample and plot, and open every
//! file that was written.

use crate::common::*;
use dcgan::run::read_losses;
use image::GenericImageView;

fn train_small(out: &std::path::Path, epochs: &str, extra: &[&str]) -> String {
    dcgan_ok(&small_train_args(out, epochs, extra))
}

#[test]
fn train_sample_plot_end_to_end() {
    let tmp = tempdir().unwrap();
    let run = tmp.path().join("run");
    let log = train_small(&run, "2", &[]);
    assert!(log.contains("decoded 48 faces from 48 files"), "{log}");
    assert!(log.contains("epoch 2/2"), "{log}");

    // The resolved config is written and reloads.
    let cfg = dcgan::config::TrainingConfig::load(&run.join("config.json")).unwrap();
    assert_eq!(
        (cfg.epochs, cfg.batch_size, cfg.seed, cfg.data.limit),
        (2, 16, 7, Some(48))
    );

    // 48 images / 16 = 3 batches per epoch, 2 epochs, every value finite.
    let rows = read_losses(&run.join("losses.jsonl")).unwrap();
    assert_eq!(rows.len(), 6);
    for (i, r) in rows.iter().enumerate() {
        assert_eq!(r.step, i + 1);
        assert_eq!(r.epoch, i / 3 + 1);
        for v in loss_values(std::slice::from_ref(r))[0]
            .into_iter()
            .chain([r.images_per_sec])
        {
            assert!(v.is_finite(), "row {i}: {r:?}");
        }
        assert!((r.d_loss - r.d_loss_real - r.d_loss_fake).abs() < 1e-5);
        assert!((0.0..=1.0).contains(&r.d_real_mean) && (0.0..=1.0).contains(&r.d_fake_mean));
        assert!(r.images_per_sec > 0.0);
    }
    // The raw loss log parses line by line as plain JSON too.
    let text = std::fs::read_to_string(run.join("losses.jsonl")).unwrap();
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(v["d_loss"].as_f64().unwrap().is_finite());
    }

    // Checkpoints exist, with no temporary files left beside them.
    for f in ["g.mpk", "d.mpk"] {
        assert!(
            std::fs::metadata(run.join(f)).unwrap().len() > 100_000,
            "{f}"
        );
    }
    let leftovers: Vec<_> = files_in(&run)
        .into_iter()
        .filter(|f| f.to_string_lossy().contains("partial"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // One 8x8 preview grid per epoch, 64 px faces with 2 px gaps.
    for epoch in 1..=2 {
        let img = image::open(run.join(format!("samples/epoch_{epoch:04}.png"))).unwrap();
        assert_eq!(img.dimensions(), (8 * 66 + 2, 8 * 66 + 2));
    }

    // sample reloads g.mpk with the config beside it.
    let g = run.join("g.mpk");
    let img = sample_cpu(&g, &tmp.path().join("grid.png"), &["--n", "10"]);
    // ceil(sqrt(10)) = 4 columns, 3 rows.
    assert_eq!(img.dimensions(), (4 * 66 + 2, 3 * 66 + 2));

    let again = sample_cpu(&g, &tmp.path().join("again.png"), &["--n", "10"]);
    assert_eq!(again, img, "same seed, same faces");
    let other = sample_cpu(
        &g,
        &tmp.path().join("other.png"),
        &["--n", "10", "--seed", "9"],
    );
    assert_ne!(other, img, "another seed, other faces");

    let cols = sample_cpu(
        &g,
        &tmp.path().join("cols.png"),
        &["--n", "6", "--cols", "6"],
    );
    assert_eq!(cols.dimensions(), (6 * 66 + 2, 66 + 2));

    let each = tmp.path().join("each");
    dcgan_ok(&[
        "sample",
        "--ckpt",
        p(&run.join("g.mpk")),
        "--n",
        "3",
        "--each",
        p(&each),
        "--backend",
        "cpu",
    ]);
    let files = files_in(&each);
    assert_eq!(files.len(), 3);
    for f in &files {
        assert_eq!(image::open(f).unwrap().dimensions(), (64, 64));
    }

    // Interpolation rows: 2 rows of 5 for --n 10 --interpolate 5.
    let walk = sample_cpu(
        &g,
        &tmp.path().join("walk.png"),
        &["--n", "10", "--interpolate", "5"],
    );
    assert_eq!(walk.dimensions(), (5 * 66 + 2, 2 * 66 + 2));
    let face = |col: u32| walk.view(2 + col * 66, 2, 64, 64).to_image();
    assert_ne!(face(0), face(4), "a row walks from one face to another");

    // eval scores the generator against real faces and checks for copies of the training
    // folder recorded in the run.
    let v = eval_64(&g);
    assert_eq!(v["faces"], 64);
    let levels = v["swd_levels"].as_array().unwrap();
    assert_eq!(levels.len(), 3);
    assert!(levels.iter().all(|l| l[1].as_f64().unwrap() > 0.0));
    assert_eq!(v["copy"]["train_faces"], 48);
    assert!(v["copy"]["generated_median"].as_f64().unwrap() > 0.0);

    // plot draws both panels with text, from the run folder.
    dcgan_ok(&["plot", "--run", p(&run)]);
    let chart = image::open(run.join("losses.png")).unwrap().to_rgb8();
    assert_eq!(chart.dimensions(), (1200, 900));
    let colored = chart
        .pixels()
        .filter(|px| px[0] != px[1] || px[1] != px[2])
        .count();
    let dark = chart
        .pixels()
        .filter(|px| px[0] < 60 && px[1] < 60 && px[2] < 60)
        .count();
    assert!(colored > 1000, "loss curves drawn in colour ({colored} px)");
    assert!(dark > 1000, "axis text and labels drawn ({dark} px)");

    // The preview grids as an animated GIF: one frame per epoch, captioned, the last held.
    let gif = tmp.path().join("training.gif");
    let log = dcgan_ok(&["plot", "--run", p(&run), "--gif", p(&gif)]);
    assert!(log.contains("2 epochs"), "{log}");
    let mut options = gif::DecodeOptions::new();
    options.set_color_output(gif::ColorOutput::RGBA);
    let mut decoder = options
        .read_info(std::fs::File::open(&gif).unwrap())
        .unwrap();
    let grid = image::open(run.join("samples/epoch_0002.png"))
        .unwrap()
        .to_rgb8();
    let (w, h) = (decoder.width() as u32, decoder.height() as u32);
    assert_eq!(w, grid.width());
    assert!(h > grid.height(), "a caption strip above the grid");
    let mut frames = Vec::new();
    while let Some(frame) = decoder.read_next_frame().unwrap() {
        frames.push((frame.delay, frame.buffer.to_vec()));
    }
    assert_eq!(frames.len(), 2, "one frame per epoch");
    assert!(frames[1].0 > frames[0].0, "the last frame stays longer");
    // The grid sits below the caption, close to the PNG's colours (256-colour palette).
    let last = &frames[1].1;
    let strip = (h - grid.height()) as usize;
    let diff: f64 = grid
        .pixels()
        .enumerate()
        .map(|(i, px)| {
            let at = ((strip + i / w as usize) * w as usize + i % w as usize) * 4;
            (0..3)
                .map(|c| px[c].abs_diff(last[at + c]) as f64)
                .sum::<f64>()
        })
        .sum::<f64>()
        / (3 * grid.width() * grid.height()) as f64;
    assert!(
        diff < 8.0,
        "frame 2 is epoch 2's grid (mean difference {diff})"
    );
    let caption = |f: &[u8]| f[..strip * w as usize * 4].to_vec();
    assert_ne!(
        caption(&frames[0].1),
        caption(last),
        "each frame names its epoch"
    );

    // A second train into the same folder is refused without --force ...
    let err = dcgan_err(&[
        "train",
        "--data",
        p(&faces_dir()),
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
    assert!(
        err.contains("already holds a run") && err.contains("--force"),
        "{err}"
    );
    assert_eq!(
        read_losses(&run.join("losses.jsonl")).unwrap().len(),
        6,
        "refused run left the old one alone"
    );
}

#[test]
fn same_seed_same_losses_and_force_overwrites() {
    let tmp = tempdir().unwrap();
    let a = tmp.path().join("a");
    let log = train_small(&a, "1", &["--preset", "notebook"]);
    assert!(log.contains("decoded 48 faces"), "{log}");
    let first = read_losses(&a.join("losses.jsonl")).unwrap();
    // --force trains again into the same folder, from scratch, reading the faces back from
    // the cache the first run left; training on them gives the same losses.
    let log = train_small(&a, "1", &["--preset", "notebook", "--force"]);
    assert!(log.contains("read cached 48 faces"), "{log}");
    let second = read_losses(&a.join("losses.jsonl")).unwrap();
    assert_eq!(first.len(), 3);
    assert_eq!(loss_values(&first), loss_values(&second));

    let b = tmp.path().join("b");
    train_small(&b, "1", &["--preset", "notebook", "--lr", "0.002"]);
    let other = read_losses(&b.join("losses.jsonl")).unwrap();
    assert_ne!(
        loss_values(&first),
        loss_values(&other),
        "other settings, another run"
    );
}

#[test]
fn swd_tracking_logs_metrics_keeps_the_best_generator_and_resumes() {
    let tmp = tempdir().unwrap();
    let run = tmp.path().join("run");
    let log = train_small(&run, "2", &["--swd-every", "1", "--ema", "0.9"]);
    assert!(log.contains("SWD ") && log.contains(", EMA "), "{log}");
    let read = || -> Vec<serde_json::Value> {
        std::fs::read_to_string(run.join("metrics.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let rows = read();
    assert_eq!(rows.len(), 2);
    for (i, r) in rows.iter().enumerate() {
        assert_eq!(r["epoch"], i + 1);
        assert_eq!(r["step"], 3 * (i + 1));
        assert_eq!(r["swd_levels"].as_array().unwrap().len(), 3);
        assert!(r["swd_mean"].as_f64().unwrap() > 0.0);
        let ema = r["ema_swd_mean"].as_f64().unwrap();
        assert!(ema > 0.0 && ema != r["swd_mean"].as_f64().unwrap());
    }
    assert_eq!(rows[0]["best"], true, "the first score is the best so far");
    // g_best.mpk is a generator `sample` loads with the config beside it.
    let best = sample_cpu(
        &run.join("g_best.mpk"),
        &tmp.path().join("best.png"),
        &["--n", "4"],
    );
    assert_eq!(best.dimensions(), (2 * 66 + 2, 2 * 66 + 2));

    // So is the moving average, and `eval` scores it.
    let ema = run.join("g_ema.mpk");
    let ema_grid = sample_cpu(&ema, &tmp.path().join("ema.png"), &["--n", "4"]);
    let live = sample_cpu(
        &run.join("g.mpk"),
        &tmp.path().join("live.png"),
        &["--n", "4"],
    );
    assert_ne!(ema_grid, live);
    assert!(eval_64(&ema)["swd_mean"].as_f64().unwrap() > 0.0);

    // plot adds the SWD panel below the other two.
    dcgan_ok(&["plot", "--run", p(&run)]);
    assert_eq!(
        image::open(run.join("losses.png")).unwrap().dimensions(),
        (1200, 1250)
    );

    // Resuming continues the log: one row per scored epoch, none repeated.
    dcgan_ok(&[
        "train",
        "--resume",
        "--out",
        p(&run),
        "--epochs",
        "3",
        "--backend",
        "cpu",
    ]);
    let steps: Vec<u64> = read().iter().map(|r| r["step"].as_u64().unwrap()).collect();
    assert_eq!(steps, [3, 6, 9]);
}

#[test]
fn bench_measures_every_part_as_json() {
    let out = dcgan_stdout(&[
        "bench",
        "--data",
        p(&faces_dir()),
        "--limit",
        "32",
        "--batch-size",
        "8",
        "--warmup",
        "0",
        "--runs",
        "2",
        "--json",
        "--backend",
        "cpu",
    ]);
    let rows: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let benches: Vec<&str> = rows.iter().map(|r| r["bench"].as_str().unwrap()).collect();
    assert_eq!(benches, ["load", "cache", "step", "sample"]);
    for r in &rows {
        assert_eq!(r["tool"], "dcgan");
        assert_eq!(r["runs"].as_array().unwrap().len(), 2);
        assert!(r["median_s"].as_f64().unwrap() > 0.0);
        assert!(r["images_per_sec"].as_f64().unwrap() > 0.0);
    }
    assert_eq!(rows[0]["images"], 32);
    assert_eq!(rows[2]["batch"], 8);
}

#[test]
fn help_shows_examples() {
    let out = dcgan(&["train", "--help"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("dcgan train --data img_align_celeba --epochs 300"),
        "{text}"
    );
}

#[test]
fn missing_and_empty_data_folders_are_clear_errors() {
    let tmp = tempdir().unwrap();
    let missing = tmp.path().join("nope");
    let err = dcgan_err(&[
        "train",
        "--data",
        p(&missing),
        "--out",
        p(&tmp.path().join("r")),
        "--backend",
        "cpu",
    ]);
    assert!(
        err.contains("does not exist") && err.contains("nope"),
        "{err}"
    );

    let empty = tmp.path().join("empty");
    std::fs::create_dir_all(empty.join("sub")).unwrap();
    std::fs::write(empty.join("notes.txt"), "hi").unwrap();
    let err = dcgan_err(&[
        "train",
        "--data",
        p(&empty),
        "--out",
        p(&tmp.path().join("r")),
        "--backend",
        "cpu",
    ]);
    assert!(
        err.contains("no images in") && err.contains("*.jpg"),
        "{err}"
    );
}

#[test]
fn broken_files_are_skipped_by_name_and_nested_folders_found() {
    let tmp = tempdir().unwrap();
    // Kaggle's layout: the images one folder deeper, with odd-case extensions.
    let data = tmp.path().join("img_align_celeba");
    let inner = data.join("img_align_celeba");
    copy_faces(&inner, 16);
    let first = files_in(&inner).remove(0);
    std::fs::rename(&first, inner.join("UPPER.JPG")).unwrap();
    std::fs::write(inner.join("broken.jpg"), b"this is not a jpeg").unwrap();
    std::fs::write(inner.join("empty.jpeg"), b"").unwrap();
    image::RgbImage::new(50, 40)
        .save(inner.join("tiny.png"))
        .unwrap();

    let log = dcgan_ok(&[
        "train",
        "--data",
        p(&data),
        "--batch-size",
        "16",
        "--epochs",
        "1",
        "--backend",
        "cpu",
        "--crop",
        "celeba",
        "--out",
        p(&tmp.path().join("run")),
    ]);
    assert!(log.contains("broken.jpg"), "{log}");
    assert!(log.contains("empty.jpeg"), "{log}");
    assert!(log.contains("tiny.png") && log.contains("50x40"), "{log}");
    assert!(
        log.contains("decoded 16 faces from 19 files") && log.contains("3 skipped"),
        "{log}"
    );
}

/// CelebA as Kaggle ships it: a zip with the images two folders deep and the partition file
/// at the top. `train` reads it in place and takes the official training split by default;
/// `eval --real` takes the validation split of the same archive.
#[test]
fn train_and_eval_read_a_celeba_zip_with_its_partition() {
    let tmp = tempdir().unwrap();
    let files = files_in(&faces_dir());
    // 32 training faces, 64 validation faces, 4 test faces.
    let part = |i: usize| match i {
        0..32 => 0,
        32..96 => 1,
        _ => 2,
    };
    let mut members = zip_members(&files[..100], "img_align_celeba/img_align_celeba/");
    let mut csv = String::from("image_id,partition\n");
    for (i, f) in files[..100].iter().enumerate() {
        let name = f.file_name().unwrap().to_string_lossy();
        csv.push_str(&format!("{name},{}\n", part(i)));
    }
    members.push(("list_eval_partition.csv".into(), csv.into_bytes()));
    let zip = tmp.path().join("archive.zip");
    let layout = ZipLayout {
        deflate: true,
        ..ZipLayout::default()
    };
    write_zip(&zip, &members, layout);

    let run = tmp.path().join("run");
    let log = dcgan_ok(&[
        "train",
        "--data",
        p(&zip),
        "--batch-size",
        "16",
        "--epochs",
        "1",
        "--backend",
        "cpu",
        "--out",
        p(&run),
    ]);
    assert!(
        log.contains("using the train split: 32 of 100 images"),
        "{log}"
    );
    assert!(log.contains("decoded 32 faces from 32 files"), "{log}");
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("checkpoint.json")).unwrap())
            .unwrap();
    assert_eq!(manifest["data"]["split"], "train");

    let out = dcgan_stdout(&[
        "eval",
        "--ckpt",
        p(&run.join("g.mpk")),
        "--real",
        p(&zip),
        "--n",
        "64",
        "--json",
        "--backend",
        "cpu",
    ]);
    let report: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(report["faces"], 64, "the 64 validation faces");
    assert_eq!(
        report["copy"]["train_faces"], 32,
        "the run's own training split"
    );

    // A test split of 4 faces is too few for SWD, and the error says so.
    let err = dcgan_err(&[
        "eval",
        "--ckpt",
        p(&run.join("g.mpk")),
        "--real",
        p(&zip),
        "--split",
        "test",
        "--n",
        "64",
        "--backend",
        "cpu",
    ]);
    assert!(err.contains("only 4 usable faces"), "{err}");
}

/// A generator exported as a PyTorch state dict samples the same faces as the checkpoint it
/// came from; the discriminator exports too.
#[test]
fn export_to_safetensors_and_sample_from_it() {
    let tmp = tempdir().unwrap();
    let run = tmp.path().join("run");
    train_small(&run, "1", &[]);
    let st = tmp.path().join("g.safetensors");
    let log = dcgan_ok(&["export", "--ckpt", p(&run.join("g.mpk")), "--out", p(&st)]);
    assert!(log.contains("wrote 22 tensors"), "{log}");
    let d = tmp.path().join("d.safetensors");
    dcgan_ok(&["export", "--ckpt", p(&run.join("d.mpk")), "--out", p(&d)]);
    let head = std::fs::read(&d).unwrap();
    let len = u64::from_le_bytes(head[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&head[8..8 + len]).unwrap();
    assert_eq!(header["11.weight"]["shape"], serde_json::json!([1, 4096]));
    assert_eq!(header["3.num_batches_tracked"]["dtype"], "I64");

    let config = run.join("config.json");
    let mut grids = Vec::new();
    for ckpt in [run.join("g.mpk"), st.clone()] {
        let out = tmp.path().join(format!("{}.png", grids.len()));
        dcgan_ok(&[
            "sample",
            "--ckpt",
            p(&ckpt),
            "--config",
            p(&config),
            "--n",
            "16",
            "--out",
            p(&out),
            "--backend",
            "cpu",
        ]);
        grids.push(std::fs::read(&out).unwrap());
    }
    assert_eq!(
        grids[0], grids[1],
        "the same faces from g.mpk and g.safetensors"
    );

    // The discriminator's file is no generator, and says which tensor does not fit.
    let err = dcgan_err(&[
        "sample",
        "--ckpt",
        p(&d),
        "--config",
        p(&config),
        "--out",
        p(&tmp.path().join("x.png")),
        "--backend",
        "cpu",
    ]);
    assert!(
        err.contains("tensor 0.weight has shape [32, 3, 4, 4]"),
        "{err}"
    );

    // Both files start a new run (which networks they hold is told by their shapes).
    let log = train_small(
        &tmp.path().join("again"),
        "1",
        &["--init-from", p(&d), "--init-from", p(&st)],
    );
    assert!(
        log.contains("G starts from") && log.contains("D starts from"),
        "{log}"
    );
}
