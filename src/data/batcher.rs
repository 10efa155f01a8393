//! u8 faces to the normalised float batches the networks take.

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use rayon::prelude::*;

use super::{face_bytes, Faces};
use crate::config::Normalization;

/// Turns u8 faces into the float NCHW batch the networks eat.
#[derive(Clone, Copy, Debug)]
pub struct FaceBatcher {
    pub normalization: Normalization,
}

impl FaceBatcher {
    pub fn new(normalization: Normalization) -> Self {
        Self { normalization }
    }

    /// Normalised planar floats for the faces at `indices`: [N, 3, side, side] row-major.
    pub fn floats(&self, faces: &Faces, indices: &[usize]) -> Vec<f32> {
        let (plane, n) = (faces.side() * faces.side(), face_bytes(faces.side()));
        let mut out = vec![0f32; indices.len() * n];
        out.par_chunks_mut(n)
            .zip(indices.par_iter())
            .for_each(|(dst, &i)| {
                let src = faces.face(i);
                let (scale, offset) = match self.normalization {
                    Normalization::Unit => (1.0 / 255.0, 0.0),
                    Normalization::Symmetric => (1.0 / 127.5, -1.0),
                    Normalization::Notebook => {
                        let min = *src.iter().min().unwrap() as f32;
                        // An all-white image has 255 - min = 0; map it to zeros, not NaN.
                        let range = (255.0 - min).max(1.0);
                        (1.0 / range, -min / range)
                    }
                };
                for (p, rgb) in src.chunks_exact(3).enumerate() {
                    for c in 0..3 {
                        dst[c * plane + p] = rgb[c] as f32 * scale + offset;
                    }
                }
            });
        out
    }

    pub fn batch<B: Backend>(
        &self,
        faces: &Faces,
        indices: &[usize],
        device: &B::Device,
    ) -> Tensor<B, 4> {
        let s = faces.side();
        let data = TensorData::new(self.floats(faces, indices), [indices.len(), 3, s, s]);
        Tensor::from_data(data, device)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIZE: usize = 64;
    const FACE_BYTES: usize = SIZE * SIZE * 3;

    #[test]
    fn normalisations() {
        let mut face = vec![100u8; FACE_BYTES];
        face[0] = 55; // min of the image (red channel of pixel 0)
        face[FACE_BYTES - 1] = 255; // blue of the last pixel
        let faces = Faces::from_pixels(face, SIZE);
        let plane = SIZE * SIZE;
        let f = |n| FaceBatcher::new(n).floats(&faces, &[0]);

        let unit = f(Normalization::Unit);
        assert!((unit[0] - 55.0 / 255.0).abs() < 1e-6 && unit[3 * plane - 1] == 1.0);

        let sym = f(Normalization::Symmetric);
        assert!((sym[0] - (55.0 / 127.5 - 1.0)).abs() < 1e-6 && sym[3 * plane - 1] == 1.0);
        assert!((sym[1] - (100.0 / 127.5 - 1.0)).abs() < 1e-6);

        let nb = f(Normalization::Notebook);
        assert_eq!(nb[0], 0.0);
        assert!((nb[1] - 45.0 / 200.0).abs() < 1e-6);
        assert!((nb[3 * plane - 1] - 1.0).abs() < 1e-6);

        // Planar layout: green of pixel 0 sits one plane after red of pixel 0.
        assert!((unit[plane] - 100.0 / 255.0).abs() < 1e-6);

        let white = Faces::from_pixels(vec![255u8; FACE_BYTES], SIZE);
        let v = FaceBatcher::new(Normalization::Notebook).floats(&white, &[0]);
        assert!(v.iter().all(|x| *x == 0.0));
    }
}
