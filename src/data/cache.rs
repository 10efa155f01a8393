//! Preprocessed faces on disk, so a second run on the same photos starts without decoding.
//!
//! A cache file holds the u8 faces exactly as [`data::load_faces`] made them, plus the list of
//! skipped files. Its name is a hash of everything the faces depend on: each file's path, size
//! and modification time, the crop, the resize filter and the faces' size. Change any of those
//! and the name changes, so a stale cache is never read; it is simply not found.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::{Faces, ImageList, Preprocess};
use crate::run;

const MAGIC: &[u8; 8] = b"DCGANFC1";

/// What the cached faces were made from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheKey {
    hash: u64,
    files: usize,
    side: usize,
}

/// FNV-1a: stable across Rust releases (std's hasher is not), fast enough for 200k paths.
struct Fnv(u64);

impl Fnv {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= *b as u64;
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

impl CacheKey {
    /// Reads every file's size and modification time (one `stat` each, no decoding).
    pub fn new(images: &ImageList, prep: &Preprocess) -> Result<Self> {
        let mut h = Fnv(0xcbf2_9ce4_8422_2325);
        h.write(MAGIC);
        // 64-pixel faces keep the key they had before the size was part of it.
        let size = match prep.size {
            64 => String::new(),
            s => format!(" {s}"),
        };
        // A named crop keys as its box where it is one, so `celeba` shares the cache of the
        // box it names.
        let crop = match prep.fixed_box() {
            Some(b) => format!("{b:?}"),
            None => format!("{:?}", prep.crop),
        };
        h.write(format!("{crop} {:?}{size}", prep.filter).as_bytes());
        images.stamp(&mut |bytes| h.write(bytes));
        Ok(Self {
            hash: h.0,
            files: images.len(),
            side: prep.size,
        })
    }

    pub fn path(&self, dir: &Path) -> PathBuf {
        dir.join(format!("faces-{}-{:016x}.bin", self.files, self.hash))
    }
}

/// The cached faces, `Ok(None)` when there are none for this key. A damaged cache file is
/// reported and treated as absent: it is only a cache.
pub fn load(dir: &Path, key: &CacheKey) -> Result<Option<Faces>> {
    let path = key.path(dir);
    let file = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot open {}", path.display())),
    };
    match read(file, key) {
        Ok(faces) => Ok(Some(faces)),
        Err(e) => {
            eprintln!(
                "warning: ignoring damaged face cache {} ({e}); decoding the photos again",
                path.display()
            );
            Ok(None)
        }
    }
}

/// Maps the file rather than reading it: training then reads the faces from the system's
/// page cache, which can give pages back under memory pressure and read them again, so a set
/// larger than the free memory (full CelebA at 128 pixels, ~10 GB) still trains. A cache file
/// is only ever replaced by renaming a complete new one over it, never changed in place, so
/// the mapped bytes stay the ones checked here.
fn read(file: File, key: &CacheKey) -> std::io::Result<Faces> {
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string());
    // SAFETY: see above; the file is opened read-only and the map is read-only.
    let map = unsafe { memmap2::Mmap::map(&file)? };
    let header: &[u8; 32] = map
        .get(..32)
        .and_then(|h| h.try_into().ok())
        .ok_or_else(|| bad("cut short"))?;
    let word = |i: usize| u64::from_le_bytes(header[i..i + 8].try_into().expect("8 bytes"));
    if &header[..8] != MAGIC || word(8) != key.hash {
        return Err(bad("not a face cache for these files"));
    }
    let (faces, skipped_len) = (word(16) as usize, word(24) as usize);
    if faces > key.files {
        return Err(bad("more faces than files"));
    }
    let pixels = 32..32 + faces * super::face_bytes(key.side);
    let skipped = pixels.end..pixels.end + skipped_len;
    if map.len() != skipped.end + 4 {
        return Err(bad("cut short or too long"));
    }
    let crc = u32::from_le_bytes(map[skipped.end..].try_into().expect("4 bytes"));
    if crc32fast::hash(&map[..skipped.end]) != crc {
        return Err(bad("checksum mismatch"));
    }
    let skipped: Vec<(String, String)> =
        serde_json::from_slice(&map[skipped]).map_err(|_| bad("damaged skipped-file list"))?;
    let mut out = Faces::mapped(map, pixels, key.side);
    out.skipped = skipped
        .into_iter()
        .map(|(p, why)| (PathBuf::from(p), why))
        .collect();
    Ok(out)
}

/// Writes the faces for `key` atomically: a crash leaves the old state, never half a cache.
pub fn store(dir: &Path, key: &CacheKey, faces: &Faces) -> Result<()> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create cache folder {}", dir.display()))?;
    let skipped: Vec<(String, &str)> = faces
        .skipped
        .iter()
        .map(|(p, why)| (p.to_string_lossy().into_owned(), why.as_str()))
        .collect();
    let skipped = serde_json::to_vec(&skipped).context("cannot serialise skipped files")?;
    let mut header = Vec::with_capacity(32);
    header.extend_from_slice(MAGIC);
    for w in [key.hash, faces.len() as u64, skipped.len() as u64] {
        header.extend_from_slice(&w.to_le_bytes());
    }
    let mut h = crc32fast::Hasher::new();
    h.update(&header);
    h.update(faces.pixels());
    h.update(&skipped);
    let crc = h.finalize();
    run::write_atomic_with(&key.path(dir), |f| {
        f.write_all(&header)?;
        f.write_all(faces.pixels())?;
        f.write_all(&skipped)?;
        f.write_all(&crc.to_le_bytes())
    })
}

/// Faces for `files`: from the cache in `dir` when it holds them, else decoded and then
/// cached. A cache that cannot be written costs a warning, not the run.
pub fn load_or_decode(
    dir: Option<&Path>,
    images: &ImageList,
    prep: &Preprocess,
) -> Result<(Faces, bool)> {
    let Some(dir) = dir else {
        return Ok((super::load_faces(images, prep)?, false));
    };
    let key = CacheKey::new(images, prep)?;
    if let Some(faces) = load(dir, &key)? {
        return Ok((faces, true));
    }
    let faces = super::load_faces(images, prep)?;
    if let Err(e) = store(dir, &key, &faces) {
        eprintln!("warning: could not cache the decoded faces ({e:#}); the next run decodes again");
        return Ok((faces, false));
    }
    // Train from the mapped file just written: the decoded copy's memory goes back to the
    // system first, so the faces are never held twice.
    drop(faces);
    crate::progress::return_freed_memory();
    match load(dir, &key)? {
        Some(mapped) => Ok((mapped, false)),
        None => {
            eprintln!("warning: the face cache just written cannot be read back; decoding again without it");
            Ok((super::load_faces(images, prep)?, false))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Crop, CropBox, CropRule, ResizeFilter};

    const FACE_BYTES: usize = 64 * 64 * 3;

    fn prep(crop: Crop, filter: ResizeFilter, size: usize) -> Preprocess {
        Preprocess { crop, filter, size }
    }

    fn faces(n: usize) -> Faces {
        let mut f = Faces::from_pixels((0..n * FACE_BYTES).map(|i| (i % 253) as u8).collect(), 64);
        f.skipped = vec![(PathBuf::from("bad.jpg"), "truncated JPEG".into())];
        f
    }

    #[test]
    fn round_trip_and_key_changes() {
        let tmp = std::env::temp_dir().join(format!("dcgan-cache-test-{}", std::process::id()));
        std::fs::create_dir_all(&tmp).unwrap();
        let files: Vec<PathBuf> = (0..3)
            .map(|i| {
                let p = tmp.join(format!("{i}.jpg"));
                std::fs::write(&p, [i as u8; 10]).unwrap();
                p
            })
            .collect();
        let crop = Crop::Box(Crop::CELEBA_BOX);
        let bicubic = prep(crop, ResizeFilter::Bicubic, 64);
        let list = |files: &[PathBuf]| ImageList::files(&tmp, files.to_vec());
        let key = CacheKey::new(&list(&files), &bicubic).unwrap();
        let cache = tmp.join("cache");
        assert!(load(&cache, &key).unwrap().is_none());
        store(&cache, &key, &faces(2)).unwrap();
        let back = load(&cache, &key).unwrap().expect("cached");
        assert_eq!(back.pixels(), faces(2).pixels());
        assert_eq!(back.skipped, faces(2).skipped);

        // `celeba` names the same box, so it shares the cache.
        let celeba = prep(Crop::Rule(CropRule::Celeba), ResizeFilter::Bicubic, 64);
        assert_eq!(CacheKey::new(&list(&files), &celeba).unwrap(), key);
        // Another filter, crop, size, file size or file list: another key.
        let moved = Crop::Box(CropBox {
            left: 31,
            ..Crop::CELEBA_BOX
        });
        let other = [
            prep(crop, ResizeFilter::Bilinear, 64),
            prep(moved, ResizeFilter::Bicubic, 64),
            prep(Crop::Rule(CropRule::Center), ResizeFilter::Bicubic, 64),
            prep(Crop::Rule(CropRule::Whole), ResizeFilter::Bicubic, 64),
            prep(crop, ResizeFilter::Bicubic, 128),
        ];
        for p in other {
            assert_ne!(CacheKey::new(&list(&files), &p).unwrap(), key, "{p:?}");
        }
        assert_ne!(CacheKey::new(&list(&files[..2]), &bicubic).unwrap(), key);
        std::fs::write(&files[1], [9u8; 11]).unwrap();
        assert_ne!(CacheKey::new(&list(&files), &bicubic).unwrap(), key);

        // A damaged cache is ignored, not trusted.
        let path = key.path(&cache);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[100] ^= 0xFF;
        std::fs::write(&path, &bytes).unwrap();
        assert!(load(&cache, &key).unwrap().is_none());
        std::fs::write(&path, &bytes[..50]).unwrap();
        assert!(load(&cache, &key).unwrap().is_none());
        std::fs::remove_dir_all(&tmp).unwrap();
    }

    #[test]
    fn decoded_faces_are_trained_from_the_mapped_cache() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/faces");
        let mut images = ImageList::open(&dir).unwrap();
        images.truncate(8);
        let prep = prep(Crop::Rule(CropRule::Celeba), ResizeFilter::Bicubic, 32);
        let decoded = crate::data::load_faces(&images, &prep).unwrap();
        let tmp = std::env::temp_dir().join(format!("dcgan-cache-map-{}", std::process::id()));
        let (first, hit) = load_or_decode(Some(&tmp), &images, &prep).unwrap();
        assert!(!hit && first.is_mapped(), "decoded, cached, then mapped");
        let (again, hit) = load_or_decode(Some(&tmp), &images, &prep).unwrap();
        assert!(hit && again.is_mapped());
        assert!(first.pixels() == decoded.pixels() && again.pixels() == decoded.pixels());
        assert_eq!((again.len(), again.side()), (8, 32));
        std::fs::remove_dir_all(&tmp).unwrap();
    }
}
