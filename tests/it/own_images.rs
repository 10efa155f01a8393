//! Beyond CelebA at 64 pixels: a folder of the user's own pictures in any size and colour
//! mode, and faces of 32 and 128 pixels through training, resume, sampling and export.

use std::path::Path;

use crate::common::*;
use dcgan::config::{Crop, CropRule, ResizeFilter};
use dcgan::data::{load_faces, ImageList, Preprocess};
use dcgan::run::read_losses;
use image::{DynamicImage, RgbImage};

/// A committed CelebA face, decoded.
fn face(i: usize) -> RgbImage {
    image::open(&files_in(&faces_dir())[i]).unwrap().to_rgb8()
}

fn resized(i: usize, w: u32, h: u32) -> RgbImage {
    image::imageops::resize(&face(i), w, h, image::imageops::FilterType::Triangle)
}

/// Real faces re-saved as other sizes and colour modes, beside unchanged CelebA JPEGs:
/// the names of the ones smaller than CelebA's face box.
fn mixed_folder(dir: &Path) -> Vec<&'static str> {
    copy_faces(dir, 9);
    resized(10, 150, 150).save(dir.join("square.png")).unwrap();
    resized(11, 256, 160)
        .save(dir.join("landscape.jpg"))
        .unwrap();
    resized(12, 100, 120).save(dir.join("small.jpg")).unwrap();
    DynamicImage::ImageRgb8(face(13))
        .to_luma8()
        .save(dir.join("gray.png"))
        .unwrap();
    DynamicImage::ImageRgb8(face(14))
        .to_rgba8()
        .save(dir.join("alpha.png"))
        .unwrap();
    DynamicImage::ImageRgb8(face(15))
        .to_rgb16()
        .save(dir.join("deep16.png"))
        .unwrap();
    write_cmyk_jpeg(&face(16), &dir.join("cmyk.jpg"));
    vec!["square.png", "landscape.jpg", "small.jpg"]
}

/// A CMYK JPEG of `img` (as a print workflow writes one), through the test-only encoder.
fn write_cmyk_jpeg(img: &RgbImage, path: &Path) {
    // Readers take R = (255 - C)(255 - K) / 255; the inks below invert that.
    let cmyk: Vec<u8> = img
        .pixels()
        .flat_map(|p| {
            let max = p.0.iter().copied().max().unwrap() as f32;
            let ink = |c: u8| (255.0 - c as f32 * 255.0 / max.max(1.0)).round() as u8;
            [ink(p[0]), ink(p[1]), ink(p[2]), 255 - max as u8]
        })
        .collect();
    let (w, h) = (img.width() as u16, img.height() as u16);
    jpeg_encoder::Encoder::new_file(path, 95)
        .unwrap()
        .encode(&cmyk, w, h, jpeg_encoder::ColorType::Cmyk)
        .unwrap();
}

fn center(size: usize) -> Preprocess {
    Preprocess {
        crop: Crop::Rule(CropRule::Center),
        filter: ResizeFilter::Bicubic,
        size,
    }
}

#[test]
fn a_folder_of_mixed_pictures_trains_under_center_and_celeba_names_the_small_ones() {
    let tmp = tempdir().unwrap();
    let dir = tmp.path().join("mixed");
    let small = mixed_folder(&dir);
    let run = tmp.path().join("run");
    let base = [
        "train",
        "--data",
        p(&dir),
        "--epochs",
        "1",
        "--batch-size",
        "8",
        "--backend",
        "cpu",
        "--out",
        p(&run),
    ];
    let log = dcgan_ok(&base);
    let first = log.lines().next().unwrap();
    assert!(
        first.starts_with("crop: center") && first.contains("not CelebA's aligned 178x218"),
        "the first line says which crop and why: {log}"
    );
    assert!(log.contains("decoded 16 faces from 16 files"), "{log}");
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("config.json")).unwrap()).unwrap();
    assert_eq!(
        cfg["data"]["crop"], "center",
        "the run records the crop it used"
    );

    let celeba = tmp.path().join("celeba");
    let log = dcgan_ok(&[&base[..9], &["--crop", "celeba", "--out", p(&celeba)]].concat());
    for name in &small {
        let line = log.lines().find(|l| l.contains(name));
        let line = line.unwrap_or_else(|| panic!("{name} not named in:\n{log}"));
        assert!(line.contains("smaller than CelebA's face box"), "{line}");
    }
    assert!(log.contains("decoded 13 faces from 16 files"), "{log}");

    // CMYK, grayscale, alpha and 16-bit pictures become the RGB face of the same photo.
    let faces = load_faces(&ImageList::open(&dir).unwrap(), &center(64)).unwrap();
    let names: Vec<String> = ImageList::open(&dir)
        .unwrap()
        .relative_names()
        .map(|n| n.display().to_string())
        .collect();
    let decoded = |name: &str| faces.face(names.iter().position(|n| n == name).unwrap());
    let reference = |i: usize| {
        let path = tmp.path().join(format!("ref{i}.png"));
        face(i).save(&path).unwrap();
        dcgan::data::load_face(&path, &center(64)).unwrap()
    };
    let mean_diff = |a: &[u8], b: &[u8]| {
        a.iter()
            .zip(b)
            .map(|(x, y)| x.abs_diff(*y) as f64)
            .sum::<f64>()
            / a.len() as f64
    };
    let cmyk = mean_diff(decoded("cmyk.jpg"), &reference(16));
    assert!(cmyk < 4.0, "CMYK differs by {cmyk} on average");
    assert_eq!(decoded("alpha.png"), reference(14));
    assert_eq!(decoded("deep16.png"), reference(15));
    let gray = decoded("gray.png");
    assert!(gray.chunks(3).all(|p| p[0] == p[1] && p[1] == p[2]));
    assert!(mean_diff(gray, &reference(13)) < 30.0);
}

#[test]
fn a_zip_of_the_folder_gives_the_same_faces() {
    let tmp = tempdir().unwrap();
    let dir = tmp.path().join("mixed");
    mixed_folder(&dir);
    let files = files_in(&dir);
    let members = zip_members(&files, "pictures/");
    let zip = tmp.path().join("mixed.zip");
    write_zip(&zip, &members, ZipLayout::default());
    for size in [32, 64] {
        let a = load_faces(&ImageList::open(&dir).unwrap(), &center(size)).unwrap();
        let b = load_faces(&ImageList::open(&zip).unwrap(), &center(size)).unwrap();
        assert_eq!(a.len(), 16);
        assert!(a.pixels() == b.pixels(), "{size}-pixel faces differ");
    }
}

/// 16 faces, batch 8: 2 steps an epoch.
fn sized_args<'a>(out: &'a Path, size: &'a str, epochs: &'a str) -> Vec<&'a str> {
    let faces: &'static Path = Box::leak(faces_dir().into_boxed_path());
    vec![
        "train",
        "--data",
        p(faces),
        "--limit",
        "16",
        "--batch-size",
        "8",
        "--epochs",
        epochs,
        "--image-size",
        size,
        "--backend",
        "cpu",
        "--seed",
        "3",
        "--out",
        p(out),
    ]
}

fn png_size(path: &Path) -> (u32, u32) {
    image::open(path).unwrap().to_rgb8().dimensions()
}

fn sizes_train_resume_sample_export(size: usize) {
    let tmp = tempdir().unwrap();
    let s = size.to_string();
    let straight = tmp.path().join("straight");
    dcgan_ok(&sized_args(&straight, &s, "2"));
    let resumed = tmp.path().join("resumed");
    dcgan_ok(&sized_args(&resumed, &s, "1"));
    dcgan_ok(&[&sized_args(&resumed, &s, "2")[..], &["--resume"]].concat());
    let a = read_losses(&straight.join("losses.jsonl")).unwrap();
    let b = read_losses(&resumed.join("losses.jsonl")).unwrap();
    assert_eq!(loss_values(&a), loss_values(&b), "{size}: resume is exact");
    assert_eq!(a.len(), 4);
    // The preview grid: 8x8 faces of `size` pixels with 2-pixel gaps.
    let grid = 8 * (size as u32 + 2) + 2;
    assert_eq!(
        png_size(&resumed.join("samples/epoch_0002.png")),
        (grid, grid)
    );
    check_tensorboard(&resumed);

    let err = dcgan_err(&[&sized_args(&resumed, "64", "3")[..], &["--resume"]].concat());
    assert!(err.contains("--image-size 64 does not match"), "{err}");

    let g = straight.join("g.mpk");
    // eval scores at the run's size: SWD levels from the size down to 16 pixels.
    let report = eval_64(&g);
    let levels: Vec<u64> = report["swd_levels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l[0].as_u64().unwrap())
        .collect();
    let want: Vec<u64> = std::iter::successors(Some(size as u64), |s| Some(s / 2))
        .take_while(|s| *s >= 16)
        .collect();
    assert_eq!(levels, want);
    assert_eq!(report["copy"]["train_faces"], 16);
    let from_mpk = sample_cpu(&g, &tmp.path().join("a.png"), &["--n", "4", "--seed", "5"]);
    assert_eq!(
        from_mpk.dimensions(),
        (2 * (size as u32 + 2) + 2, 2 * (size as u32 + 2) + 2)
    );
    let each = tmp.path().join("each");
    dcgan_ok(&[
        "sample",
        "--ckpt",
        p(&g),
        "--n",
        "2",
        "--each",
        p(&each),
        "--backend",
        "cpu",
    ]);
    assert_eq!(
        png_size(&each.join("face_00001.png")),
        (size as u32, size as u32)
    );

    // Export both networks, read G back for sampling, and start a new run from both.
    let (gs, ds) = (
        tmp.path().join("g.safetensors"),
        tmp.path().join("d.safetensors"),
    );
    dcgan_ok(&["export", "--ckpt", p(&g), "--out", p(&gs)]);
    dcgan_ok(&[
        "export",
        "--ckpt",
        p(&straight.join("d.mpk")),
        "--out",
        p(&ds),
    ]);
    let cfg = straight.join("config.json");
    let from_export = sample_cpu(
        &gs,
        &tmp.path().join("b.png"),
        &["--n", "4", "--seed", "5", "--config", p(&cfg)],
    );
    assert_eq!(from_mpk, from_export, "{size}: export keeps every weight");
    let init = tmp.path().join("init");
    let args = sized_args(&init, &s, "1");
    let log = dcgan_ok(&[&args[..], &["--init-from", p(&gs), "--init-from", p(&ds)]].concat());
    assert!(log.contains("G starts from"), "{log}");
}

#[test]
fn faces_of_32_pixels_train_resume_sample_and_export() {
    sizes_train_resume_sample_export(32);
}

#[test]
fn faces_of_128_pixels_train_resume_sample_and_export() {
    sizes_train_resume_sample_export(128);
}

#[test]
fn an_image_of_the_wrong_size_for_the_networks_is_refused() {
    let tmp = tempdir().unwrap();
    let out = tmp.path().join("run");
    let err = dcgan_err(&sized_args(&out, "48", "1"));
    assert!(err.contains("use 32, 64 or 128"), "{err}");
    assert!(!out.exists());
}
