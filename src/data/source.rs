//! The photos a command reads: a folder searched recursively, or a zip archive read in place,
//! narrowed to one split of CelebA's official partition and to the first `--limit` images.

use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use anyhow::{bail, Context, Result};
use image::ImageReader;

use super::archive::Archive;
use super::find::{find_images, has_image_extension, read_image_file};
use super::partition::{Partition, Split, FILE_NAMES};

/// Where the images live.
#[derive(Clone, Debug)]
enum Source {
    Dir(PathBuf),
    Zip(Archive),
}

/// A sorted list of images, each readable as bytes. Members of an archive come in the order
/// the unpacked folder would list them, so a zip and its unpacked folder give the same faces.
#[derive(Clone, Debug)]
pub struct ImageList {
    source: Source,
    /// Full paths for a folder, member names for an archive.
    names: Vec<PathBuf>,
    /// For an archive, each name's member index (looked up once, not per read).
    entries: Vec<usize>,
}

impl ImageList {
    /// `path` is a folder of JPEG/PNG photos (any depth) or a `.zip` holding them.
    pub fn open(path: &Path) -> Result<Self> {
        if !path.exists() && has_zip_extension(path) {
            bail!(
                "data archive {} does not exist\n  point --data at CelebA's zip (img_align_celeba.zip) or at the folder of its JPEGs",
                path.display()
            );
        }
        if path.is_file() && has_zip_extension(path) {
            let zip = Archive::open(path)?;
            let mut members: Vec<(PathBuf, usize)> = zip
                .files()
                .map(|(i, name)| (PathBuf::from(name), i))
                .filter(|(n, _)| has_image_extension(n))
                .collect();
            if members.is_empty() {
                bail!(
                    "no images in {}: looked for *.jpg, *.jpeg and *.png members",
                    path.display()
                );
            }
            members.sort();
            let (names, entries) = members.into_iter().unzip();
            return Ok(Self {
                source: Source::Zip(zip),
                names,
                entries,
            });
        }
        if path.is_file() {
            bail!(
                "--data {} is a file: pass the folder of images or CelebA's .zip archive",
                path.display()
            );
        }
        Ok(Self::files(path, find_images(path)?))
    }

    /// The images a command reads from `path`: one split of CelebA's partition (see
    /// [`Self::select_split`]), then the first `limit` of them. Returns the split used.
    pub fn select(
        path: &Path,
        split: Option<Split>,
        default: Split,
        partition: Option<&Path>,
        limit: Option<usize>,
    ) -> Result<(Self, Split)> {
        let mut images = Self::open(path)?;
        let split = images.select_split(split, default, partition)?;
        if let Some(n) = limit {
            images.truncate(n);
        }
        Ok((images, split))
    }

    /// A list of image files in a folder, already found.
    pub fn files(dir: &Path, files: Vec<PathBuf>) -> Self {
        Self {
            source: Source::Dir(dir.to_path_buf()),
            names: files,
            entries: Vec::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// The folder or archive given on the command line.
    pub fn root(&self) -> &Path {
        match &self.source {
            Source::Dir(dir) => dir,
            Source::Zip(zip) => zip.path(),
        }
    }

    /// Keeps the first `n` images.
    pub fn truncate(&mut self, n: usize) {
        self.names.truncate(n);
        self.entries.truncate(n);
    }

    /// The image's bytes, or a one-line reason they cannot be read.
    pub fn read(&self, i: usize) -> Result<Vec<u8>, String> {
        match &self.source {
            Source::Dir(_) => read_image_file(&self.names[i]),
            Source::Zip(zip) => zip.read(self.entries[i]),
        }
    }

    /// Image `i`'s width and height from its header: a file is read only that far.
    pub fn dimensions(&self, i: usize) -> Result<(u32, u32), String> {
        let reader = match &self.source {
            Source::Dir(_) => {
                let file = std::fs::File::open(&self.names[i]).map_err(|e| e.to_string())?;
                let reader = ImageReader::new(std::io::BufReader::new(file));
                return header_size(reader.with_guessed_format());
            }
            Source::Zip(zip) => zip.read(self.entries[i])?,
        };
        header_size(ImageReader::new(std::io::Cursor::new(reader)).with_guessed_format())
    }

    /// How to name image `i` in a message: its path, or `archive.zip:member`.
    pub fn label(&self, i: usize) -> String {
        match &self.source {
            Source::Dir(_) => self.names[i].display().to_string(),
            Source::Zip(zip) => format!("{}:{}", zip.path().display(), self.names[i].display()),
        }
    }

    /// The names relative to the root: identifies the images whatever folder they were moved to.
    pub fn relative_names(&self) -> impl Iterator<Item = &Path> {
        let root = self.root();
        self.names
            .iter()
            .map(move |n| n.strip_prefix(root).unwrap_or(n))
    }

    /// Feeds what identifies the images' contents without reading them: each file's path,
    /// size and modification time, or the archive's with each member's name (the archive's
    /// size and time change with any member).
    pub fn stamp(&self, write: &mut dyn FnMut(&[u8])) {
        let mut stat = |path: &Path| {
            let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
            write(abs.as_os_str().as_encoded_bytes());
            // A file that cannot be stat'ed is keyed as missing; decoding will name it.
            let (len, mtime) = std::fs::metadata(path)
                .map(|m| {
                    let t = m
                        .modified()
                        .ok()
                        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                        .map_or(0, |d| d.as_nanos());
                    (m.len(), t)
                })
                .unwrap_or((u64::MAX, 0));
            write(&len.to_le_bytes());
            write(&mtime.to_le_bytes());
        };
        match &self.source {
            Source::Dir(_) => self.names.iter().for_each(|f| stat(f)),
            Source::Zip(zip) => {
                stat(zip.path());
                for name in &self.names {
                    write(name.as_os_str().as_encoded_bytes());
                }
            }
        }
    }

    /// Keeps the images of `split` when CelebA's partition file is found (or given), and says
    /// which it used. Without one only `Split::All` is possible; `None` means "the default",
    /// `default` where a partition is found and every image where none is.
    pub fn select_split(
        &mut self,
        split: Option<Split>,
        default: Split,
        partition: Option<&Path>,
    ) -> Result<Split> {
        let found = match partition {
            Some(path) => Some((Partition::load(path)?, path.display().to_string())),
            None => self.find_partition()?,
        };
        let Some((partition, origin)) = found else {
            return match split {
                None | Some(Split::All) => Ok(Split::All),
                Some(s) => bail!(
                    "--split {} needs CelebA's partition file ({} or {}) beside the images; \
                     none is in {} or the folders above it: pass it with --partition FILE, or use --split all",
                    s.name(),
                    FILE_NAMES[0],
                    FILE_NAMES[1],
                    self.root().display()
                ),
            };
        };
        let split = split.unwrap_or(default);
        let before = self.len();
        let keep: Vec<bool> = self
            .names
            .iter()
            .map(|n| {
                let file = n
                    .file_name()
                    .map(|f| f.to_string_lossy())
                    .unwrap_or_default();
                partition.keeps(split, &file)
            })
            .collect();
        let mut k = keep.iter();
        self.names.retain(|_| *k.next().unwrap());
        if !self.entries.is_empty() {
            let mut k = keep.iter();
            self.entries.retain(|_| *k.next().unwrap());
        }
        if self.is_empty() {
            bail!(
                "none of the {before} images in {} is in the {} split of {origin} ({} images listed): \
                 is the partition file from the same CelebA? Pass another with --partition FILE, or use --split all",
                self.root().display(),
                split.name(),
                partition.len()
            );
        }
        eprintln!(
            "using the {} split: {} of {before} images (partition: {origin})",
            split.name(),
            self.len()
        );
        Ok(split)
    }

    /// CelebA's partition file inside the archive, or beside the images: in the folder or
    /// archive's own folder, or up to two folders above (Kaggle nests the images twice).
    fn find_partition(&self) -> Result<Option<(Partition, String)>> {
        if let Source::Zip(zip) = &self.source {
            let member = zip.files().find(|(_, name)| {
                FILE_NAMES
                    .iter()
                    .any(|f| Path::new(name).file_name() == Some(f.as_ref()))
            });
            if let Some((index, name)) = member {
                let origin = format!("{}:{name}", zip.path().display());
                let bytes = zip
                    .read(index)
                    .map_err(|e| anyhow::anyhow!("{origin}: {e}"))?;
                let text = String::from_utf8_lossy(&bytes);
                return Ok(Some((Partition::parse(&text, &origin)?, origin)));
            }
        }
        let start = match &self.source {
            Source::Dir(dir) => dir.clone(),
            Source::Zip(zip) => zip.path().parent().unwrap_or(Path::new(".")).to_path_buf(),
        };
        let start = std::path::absolute(&start).unwrap_or(start);
        for dir in start.ancestors().take(3) {
            for name in FILE_NAMES {
                let path = dir.join(name);
                if path.is_file() {
                    let partition = Partition::load(&path).with_context(|| {
                        "pass another with --partition FILE, or use --split all"
                    })?;
                    return Ok(Some((partition, path.display().to_string())));
                }
            }
        }
        Ok(None)
    }
}

/// CRC-32 of the image list, relative to its folder or archive: identifies the data a run
/// trained on, wherever the folder was moved.
pub fn list_crc32(images: &ImageList) -> u32 {
    let mut h = crc32fast::Hasher::new();
    for rel in images.relative_names() {
        h.update(rel.as_os_str().as_encoded_bytes());
        h.update(b"\0");
    }
    h.finalize()
}

fn header_size<R: std::io::BufRead + std::io::Seek>(
    reader: std::io::Result<ImageReader<R>>,
) -> Result<(u32, u32), String> {
    let reader = reader.map_err(|e| e.to_string())?;
    reader.into_dimensions().map_err(|e| e.to_string())
}

fn has_zip_extension(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("zip"))
}
