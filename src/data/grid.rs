use std::io::Cursor;
use std::path::Path;

use anyhow::{Context, Result};
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;
use image::{ImageFormat, RgbImage};

use super::{FACE_BYTES, SIZE};
use crate::config::Output;
use crate::run;

const GAP: u32 = 2;

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
    run::write_atomic(path, bytes.get_ref())
}
