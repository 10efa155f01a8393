//! Generator output to u8 faces, and faces to PNG grids.

use std::io::Cursor;
use std::path::Path;

use anyhow::{Context, Result};
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;
use image::{ImageFormat, RgbImage};

use super::face_bytes;
use crate::config::Output;
use crate::run;

const GAP: u32 = 2;

/// [N, 3, S, S] generator output to N row-major RGB u8 faces.
pub fn to_faces<B: Backend>(images: Tensor<B, 4>, output: Output) -> Vec<Vec<u8>> {
    let [n, _, side, _] = images.dims();
    let v = images.into_data().to_vec::<f32>().expect("f32 images");
    let (plane, bytes) = (side * side, face_bytes(side));
    (0..n)
        .map(|i| {
            let src = &v[i * bytes..(i + 1) * bytes];
            let mut face = vec![0u8; bytes];
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

/// Lays square faces out `cols` to a row with a 2-pixel black gap, and writes a PNG
/// atomically.
pub fn write_grid(faces: &[Vec<u8>], cols: usize, path: &Path) -> Result<()> {
    write_png(&grid(faces, cols), path)
}

/// The grid [`write_grid`] writes.
pub fn grid(faces: &[Vec<u8>], cols: usize) -> RgbImage {
    let side = faces
        .first()
        .map_or(1, |f| ((f.len() / 3) as f64).sqrt() as u32);
    let cols = cols.clamp(1, faces.len().max(1)) as u32;
    let rows = (faces.len() as u32).div_ceil(cols);
    let cell = side + GAP;
    let mut grid = RgbImage::new(cols * cell + GAP, rows * cell + GAP);
    for (i, face) in faces.iter().enumerate() {
        let (x0, y0) = (
            GAP + (i as u32 % cols) * cell,
            GAP + (i as u32 / cols) * cell,
        );
        for (p, rgb) in face.chunks_exact(3).enumerate() {
            let (x, y) = (p as u32 % side, p as u32 / side);
            grid.put_pixel(x0 + x, y0 + y, image::Rgb([rgb[0], rgb[1], rgb[2]]));
        }
    }
    grid
}

pub fn write_png(img: &RgbImage, path: &Path) -> Result<()> {
    run::write_atomic(path, &encode_png(img)?)
}

pub fn encode_png(img: &RgbImage) -> Result<Vec<u8>> {
    let mut bytes = Cursor::new(Vec::new());
    img.write_to(&mut bytes, ImageFormat::Png)
        .context("cannot encode PNG")?;
    Ok(bytes.into_inner())
}
