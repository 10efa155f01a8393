//! Finding, decoding and batching the faces.
//!
//! Every face is decoded once, cropped (the face box, a centred square or the whole picture),
//! resized to the run's size (64x64: 12,288 bytes a face) and kept as RGB u8 in one
//! contiguous buffer; floats exist only one batch at a time.

mod archive;
mod batcher;
pub mod cache;
mod crop;
mod decode;
mod find;
mod grid;
pub mod partition;
pub mod resize;
mod source;

pub use batcher::FaceBatcher;
pub use crop::{check_crop_fits, choose_crop, CropChoice, Preprocess, CELEBA_SIZE};
pub use decode::{face_from_rgb, load_face, load_faces};
pub use find::find_images;
pub use grid::{encode_png, grid, to_faces, write_grid, write_png};
pub use partition::Split;
pub use source::{list_crc32, ImageList};

use std::path::PathBuf;

/// Bytes of one `side` x `side` RGB face.
pub fn face_bytes(side: usize) -> usize {
    side * side * 3
}

/// Where the faces' bytes live: decoded in memory, or in a mapped face cache file, whose
/// pages the system can drop and read again under memory pressure (full CelebA at 128 pixels
/// is ~10 GB).
enum Pixels {
    Owned(Vec<u8>),
    Mapped {
        map: memmap2::Mmap,
        range: std::ops::Range<usize>,
    },
}

impl std::ops::Deref for Pixels {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Pixels::Owned(v) => v,
            Pixels::Mapped { map, range } => &map[range.clone()],
        }
    }
}

/// Decoded faces, `len()` of them, each `side` x `side` of row-major RGB.
pub struct Faces {
    pixels: Pixels,
    side: usize,
    /// Files that could not be used, with the reason.
    pub skipped: Vec<(PathBuf, String)>,
}

impl Faces {
    pub fn from_pixels(pixels: Vec<u8>, side: usize) -> Self {
        assert_eq!(pixels.len() % face_bytes(side), 0);
        Self {
            pixels: Pixels::Owned(pixels),
            side,
            skipped: Vec::new(),
        }
    }

    /// The faces at `range` of a mapped cache file.
    fn mapped(map: memmap2::Mmap, range: std::ops::Range<usize>, side: usize) -> Self {
        assert_eq!(range.len() % face_bytes(side), 0);
        Self {
            pixels: Pixels::Mapped { map, range },
            side,
            skipped: Vec::new(),
        }
    }

    /// Whether the faces are read from a mapped cache file rather than held in memory.
    pub fn is_mapped(&self) -> bool {
        matches!(self.pixels, Pixels::Mapped { .. })
    }
    pub fn len(&self) -> usize {
        self.pixels.len() / face_bytes(self.side)
    }
    pub fn is_empty(&self) -> bool {
        self.pixels.is_empty()
    }
    /// The faces' width and height in pixels.
    pub fn side(&self) -> usize {
        self.side
    }
    pub fn face(&self, i: usize) -> &[u8] {
        let n = face_bytes(self.side);
        &self.pixels[i * n..(i + 1) * n]
    }
    pub fn pixels(&self) -> &[u8] {
        &self.pixels
    }
}
