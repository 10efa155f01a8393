//! Finding, decoding and batching the faces.
//!
//! Every face is decoded once, cropped to the face box, resized to 64x64 and kept as RGB u8
//! in one contiguous buffer (12,288 bytes a face); floats exist only one batch at a time.

mod batcher;
pub mod cache;
mod decode;
mod find;
mod grid;
pub mod partition;
pub mod resize;
mod source;
pub mod zip;

pub use batcher::FaceBatcher;
pub use decode::{face_from_rgb, load_face, load_faces};
pub use find::{check_crop_fits, find_images, list_crc32};
pub use grid::{to_faces, write_grid, write_png};
pub use partition::Split;
pub use source::ImageList;

use std::path::PathBuf;

pub const SIZE: usize = 64;
pub const FACE_BYTES: usize = SIZE * SIZE * 3;

/// Decoded faces, `len()` of them, each `FACE_BYTES` of row-major RGB.
pub struct Faces {
    pixels: Vec<u8>,
    /// Files that could not be used, with the reason.
    pub skipped: Vec<(PathBuf, String)>,
}

impl Faces {
    pub fn from_pixels(pixels: Vec<u8>) -> Self {
        assert_eq!(pixels.len() % FACE_BYTES, 0);
        Self {
            pixels,
            skipped: Vec::new(),
        }
    }
    pub fn len(&self) -> usize {
        self.pixels.len() / FACE_BYTES
    }
    pub fn is_empty(&self) -> bool {
        self.pixels.is_empty()
    }
    pub fn face(&self, i: usize) -> &[u8] {
        &self.pixels[i * FACE_BYTES..(i + 1) * FACE_BYTES]
    }
    pub fn pixels(&self) -> &[u8] {
        &self.pixels
    }
}
