//! Messy data folders and bad arguments: every case gets a clear one-line reason, good
//! images keep training, and bad arguments are refused before any work starts.

use std::path::Path;
use std::time::Instant;

use crate::common::*;
use image::{ImageBuffer, Luma, Rgb, RgbImage};

/// A PNG whose header claims 100,000 x 100,000 pixels (30 GB decoded) and holds none.
fn huge_png(path: &Path) {
    let mut ihdr = b"IHDR".to_vec();
    ihdr.extend(100_000u32.to_be_bytes());
    ihdr.extend(100_000u32.to_be_bytes());
    ihdr.extend([8, 2, 0, 0, 0]); // 8-bit RGB
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend(13u32.to_be_bytes());
    png.extend(&ihdr);
    png.extend(crc32fast::hash(&ihdr).to_be_bytes());
    png.extend(0u32.to_be_bytes());
    png.extend(b"IEND");
    png.extend(crc32fast::hash(b"IEND").to_be_bytes());
    std::fs::write(path, png).unwrap();
}

fn real_face() -> RgbImage {
    image::open(&files_in(&faces_dir())[0]).unwrap().to_rgb8()
}

#[test]
fn messy_folder_skips_each_bad_file_by_name_and_trains_on_the_rest() {
    let tmp = tempdir().unwrap();
    let data = tmp.path().join("data");
    copy_faces(&data, 16);
    let face = real_face();
    let jpeg_bytes = std::fs::read(walk_first_jpeg(&data)).unwrap();

    // Unusable: each must be named with its reason.
    std::fs::write(data.join("text.jpg"), "just some text, not a photo\n").unwrap();
    std::fs::write(
        data.join("truncated.jpg"),
        &jpeg_bytes[..jpeg_bytes.len() / 3],
    )
    .unwrap();
    std::fs::write(data.join("zero.jpg"), b"").unwrap();
    RgbImage::new(100, 100)
        .save(data.join("small.jpg"))
        .unwrap();
    huge_png(&data.join("huge.png"));
    std::os::unix::fs::symlink(tmp.path().join("nowhere.jpg"), data.join("gone.jpg")).unwrap();

    // Usable after conversion: a PNG named .jpg, grayscale and CMYK JPEGs, a 16-bit PNG, and
    // a file name that is not UTF-8.
    let mut png = std::io::Cursor::new(Vec::new());
    face.write_to(&mut png, image::ImageFormat::Png).unwrap();
    std::fs::write(data.join("png_named.jpg"), png.into_inner()).unwrap();
    image::DynamicImage::ImageRgb8(face.clone())
        .to_luma8()
        .save(data.join("gray.jpg"))
        .unwrap();
    let cmyk: Vec<u8> = face
        .pixels()
        .flat_map(|p| {
            let k = 255 - p[0].max(p[1]).max(p[2]);
            [255 - p[0] - k, 255 - p[1] - k, 255 - p[2] - k, k]
        })
        .collect();
    jpeg_encoder::Encoder::new_file(data.join("cmyk.jpg"), 90)
        .unwrap()
        .encode(&cmyk, 178, 218, jpeg_encoder::ColorType::Cmyk)
        .unwrap();
    let deep: ImageBuffer<Rgb<u16>, Vec<u16>> = ImageBuffer::from_fn(178, 218, |x, y| {
        let p = face.get_pixel(x, y);
        Rgb([p[0] as u16 * 257, p[1] as u16 * 257, p[2] as u16 * 257])
    });
    deep.save(data.join("deep.png")).unwrap();
    let odd_name: &std::ffi::OsStr = std::os::unix::ffi::OsStrExt::from_bytes(b"face_\xff.jpg");
    std::fs::write(data.join(odd_name), &jpeg_bytes).unwrap();

    // A symlink loop back to the folder itself: listed once, no endless walk.
    std::os::unix::fs::symlink(&data, data.join("loop")).unwrap();

    let t = Instant::now();
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
    for (file, reason) in [
        ("text.jpg", "not a JPEG or PNG"),
        ("truncated.jpg", "truncated JPEG"),
        ("zero.jpg", "empty file"),
        ("small.jpg", "100x100, smaller than CelebA's face box"),
        ("huge.png", "cannot decode"),
        ("gone.jpg", "cannot open"),
    ] {
        let line = log
            .lines()
            .find(|l| l.contains(file))
            .unwrap_or_else(|| panic!("no warning names {file}:\n{log}"));
        assert!(
            line.starts_with("warning: skipping") && line.contains(reason),
            "{file}: {line}"
        );
    }
    assert!(
        log.contains("decoded 21 faces from 27 files") && log.contains("6 skipped"),
        "{log}"
    );
    assert!(
        t.elapsed().as_secs() < 120,
        "the huge header was refused, not decoded"
    );
    for name in ["gray.jpg", "cmyk.jpg", "deep.png", "png_named.jpg"] {
        assert!(
            !log.contains(&format!("skipping {}", data.join(name).display())),
            "{name} was skipped:\n{log}"
        );
    }
}

fn walk_first_jpeg(dir: &Path) -> std::path::PathBuf {
    files_in(dir)
        .into_iter()
        .find(|f| f.extension().is_some_and(|e| e == "jpg"))
        .unwrap()
}

#[test]
fn a_grayscale_image_trains_as_three_equal_channels() {
    let face = real_face();
    let gray = image::DynamicImage::ImageRgb8(face).to_luma8();
    let tmp = tempdir().unwrap();
    let path = tmp.path().join("g.png");
    ImageBuffer::<Luma<u8>, _>::from_raw(178, 218, gray.into_raw())
        .unwrap()
        .save(&path)
        .unwrap();
    let prep = dcgan::data::Preprocess {
        crop: dcgan::config::Crop::Rule(dcgan::config::CropRule::Celeba),
        filter: dcgan::config::ResizeFilter::Bicubic,
        size: 64,
    };
    let out = dcgan::data::load_face(&path, &prep).unwrap();
    assert!(out.chunks_exact(3).all(|p| p[0] == p[1] && p[1] == p[2]));
}

#[test]
fn bad_arguments_are_refused_before_any_work() {
    let tmp = tempdir().unwrap();
    let faces = faces_dir();
    let run = tmp.path().join("run");
    let base = ["train", "--data", p(&faces), "--out", p(&run)];
    let refused = |extra: &[&str], expect: &str| {
        let err = dcgan_err(&[&base[..], extra].concat());
        assert!(
            err.contains(expect),
            "{extra:?}: expected {expect:?} in:\n{err}"
        );
        assert!(!run.exists(), "{extra:?} created the run folder");
    };
    refused(&["--batch-size", "0"], "batch size must be at least 1");
    refused(&["--epochs", "0"], "epochs must be at least 1");
    refused(&["--backend", "tpu"], "invalid value 'tpu'");
    refused(&["--lr=-1"], "lr must be a positive number");
    refused(&["--ema", "1.5"], "ema.decay must be between 0 and 1");

    let mut cfg = dcgan::config::TrainingConfig::preset("dcgan").unwrap();
    cfg.data.crop = dcgan::config::Crop::Box(dcgan::config::CropBox {
        left: 300,
        top: 300,
        right: 400,
        bottom: 400,
    });
    let outside = tmp.path().join("outside.json");
    std::fs::write(&outside, cfg.to_json()).unwrap();
    refused(&["--config", p(&outside)], "does not fit the pictures");

    let broken = tmp.path().join("broken.json");
    std::fs::write(&broken, "{\n  \"batch_size\": 128,\n  \"epochs\": ,\n}\n").unwrap();
    refused(&["--config", p(&broken)], "line 3 column");

    let typo = tmp.path().join("typo.json");
    let text = dcgan::config::TrainingConfig::preset("dcgan")
        .unwrap()
        .to_json()
        .replace("\"epochs\"", "\"epoch\"");
    std::fs::write(&typo, text).unwrap();
    refused(&["--config", p(&typo)], "unknown field `epoch`");

    let err = dcgan_err(&[
        "train",
        "--data",
        p(&faces),
        "--out",
        p(&run),
        "--resume",
        "--lr",
        "0.1",
    ]);
    assert!(
        err.contains("no checkpoint") || err.contains("checkpoint.json"),
        "{err}"
    );

    // A file that is not a zip archive, named .zip.
    let fake = tmp.path().join("img_align_celeba.zip");
    std::fs::write(&fake, b"<html>not found</html>").unwrap();
    let err = dcgan_err(&["train", "--data", p(&fake), "--out", p(&run)]);
    assert!(
        err.contains("img_align_celeba.zip") && err.contains("re-download"),
        "{err}"
    );
    assert!(!run.join("config.json").exists(), "nothing started");
    let missing = tmp.path().join("missing.zip");
    let err = dcgan_err(&["train", "--data", p(&missing), "--out", p(&run)]);
    assert!(
        err.contains("missing.zip does not exist") && err.contains("--data"),
        "{err}"
    );

    let err = dcgan_err(&["sample", "--n", "0"]);
    assert!(err.contains("invalid value '0'"), "{err}");

    // An output folder that cannot be created: a path through a regular file.
    let file = tmp.path().join("file");
    std::fs::write(&file, "x").unwrap();
    let err = dcgan_err(&[
        "train",
        "--data",
        p(&faces),
        "--backend",
        "cpu",
        "--out",
        p(&file.join("run")),
    ]);
    assert!(
        err.contains("cannot create") && err.contains("--out"),
        "{err}"
    );
}
