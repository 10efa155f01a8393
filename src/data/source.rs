//! The photos a command reads: a folder searched recursively, or a zip archive read in place,
//! narrowed to one split of CelebA's official partition and to the first `--limit` images.

use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use anyhow::{bail, Context, Result};
use image::ImageReader;

use super::find::{find_images, has_image_extension, read_image_file};
use super::partition::{Partition, Split, FILE_NAMES};
use super::zip::ZipArchive;

/// Where the images live.
#[derive(Clone, Debug)]
enum Source {
    Dir(PathBuf),
    Zip(ZipArchive),
}

/// A sorted list of images, each readable as bytes. Members of an archive come in the order
/// the unpacked folder would list them, so a zip and its unpacked folder give the same faces.
#[derive(Clone, Debug)]
pub struct ImageList {
    source: Source,
    /// Full paths for a folder, member names for an archive.
    names: Vec<PathBuf>,
    /// For an archive, each name's index in its entry list (looked up once, not per read).
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
            let zip = ZipArchive::open(path)?;
            let mut members: Vec<(PathBuf, usize)> = zip
                .entries()
                .iter()
                .enumerate()
                .map(|(i, e)| (PathBuf::from(&e.name), i))
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
            Source::Zip(zip) => zip.read(&zip.entries()[self.entries[i]]),
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
            Source::Zip(zip) => zip.read(&zip.entries()[self.entries[i]])?,
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
    /// size and modification time, or the archive's with each member's name, size and CRC.
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
                for (name, &i) in self.names.iter().zip(&self.entries) {
                    let entry = &zip.entries()[i];
                    write(name.as_os_str().as_encoded_bytes());
                    write(&entry.size.to_le_bytes());
                    write(&entry.crc32.to_le_bytes());
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
            let member = zip.entries().iter().find(|e| {
                FILE_NAMES
                    .iter()
                    .any(|f| Path::new(&e.name).file_name() == Some(f.as_ref()))
            });
            if let Some(entry) = member {
                let origin = format!("{}:{}", zip.path().display(), entry.name);
                let bytes = zip
                    .read(entry)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Crop, CropRule, ResizeFilter};
    use crate::data::zip::testzip::{write_zip, TempFile, ZipOpts};
    use crate::data::{load_faces, Preprocess};

    fn faces_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/faces")
    }

    fn prep() -> Preprocess {
        Preprocess {
            crop: Crop::Rule(CropRule::Celeba),
            filter: ResizeFilter::Bicubic,
            size: 64,
        }
    }

    fn pixels(images: &ImageList) -> Vec<u8> {
        load_faces(images, &prep()).unwrap().pixels().to_vec()
    }

    /// The committed faces as zip members under `prefix`, in a shuffled order.
    fn members(prefix: &str, n: usize) -> Vec<(String, Vec<u8>)> {
        let files = find_images(&faces_dir()).unwrap();
        let mut m: Vec<(String, Vec<u8>)> = files[..n]
            .iter()
            .map(|f| {
                let name = f.file_name().unwrap().to_string_lossy();
                (format!("{prefix}{name}"), std::fs::read(f).unwrap())
            })
            .collect();
        m.reverse(); // an archive need not list its members sorted
        m
    }

    fn zip_of(tmp: &TempFile, members: &[(String, Vec<u8>)], opts: ZipOpts) {
        let refs: Vec<(&str, &[u8])> = members
            .iter()
            .map(|(n, b)| (n.as_str(), b.as_slice()))
            .collect();
        write_zip(tmp.path(), &refs, opts);
    }

    #[test]
    fn a_zip_gives_the_faces_of_its_unpacked_folder_byte_for_byte() {
        let folder = ImageList::open(&faces_dir()).unwrap();
        let expected = pixels(&folder);
        assert_eq!(expected.len(), 300 * crate::data::face_bytes(64));
        // The official archive's layout, and Kaggle's (nested folder, streamed, ZIP64).
        let layouts = [
            ("img_align_celeba/", ZipOpts::default()),
            (
                "img_align_celeba/img_align_celeba/",
                ZipOpts {
                    deflate: true,
                    data_descriptor: true,
                    zip64: true,
                },
            ),
        ];
        for (prefix, opts) in layouts {
            let tmp = TempFile::new("faces.zip");
            zip_of(&tmp, &members(prefix, 300), opts);
            let zipped = ImageList::open(tmp.path()).unwrap();
            assert_eq!(zipped.len(), 300);
            assert_eq!(pixels(&zipped), expected, "{prefix} {opts:?}");
        }
    }

    #[test]
    fn a_damaged_member_is_skipped_and_named() {
        let m = members("img/", 6);
        let tmp = TempFile::new("damaged.zip");
        zip_of(&tmp, &m, ZipOpts::default());
        // Flip one byte inside the third member's stored data, after the archive was written.
        let (damaged, bytes) = &m[2];
        let mut archive = std::fs::read(tmp.path()).unwrap();
        let at = archive
            .windows(64)
            .position(|w| w == &bytes[1000..1064])
            .unwrap();
        archive[at] ^= 0x55;
        std::fs::write(tmp.path(), archive).unwrap();
        let faces = load_faces(&ImageList::open(tmp.path()).unwrap(), &prep()).unwrap();
        assert_eq!(faces.len(), 5);
        let (label, reason) = &faces.skipped[0];
        let label = label.display().to_string();
        assert!(label.ends_with(&format!(".zip:{damaged}")), "{label}");
        assert!(reason.contains("CRC"), "{reason}");
    }

    #[test]
    fn the_partition_file_selects_its_split() {
        let tmp = TempFile::new("kaggle");
        let images = tmp.path().join("img_align_celeba/img_align_celeba");
        std::fs::create_dir_all(&images).unwrap();
        let mut csv = String::from("image_id,partition\n");
        for (i, (name, bytes)) in members("", 9).iter().enumerate() {
            std::fs::write(images.join(name), bytes).unwrap();
            csv.push_str(&format!("{name},{}\n", i % 3));
        }
        // Kaggle keeps the partition two folders above the images.
        std::fs::write(tmp.path().join("list_eval_partition.csv"), &csv).unwrap();
        let data = tmp.path().join("img_align_celeba");
        let pick = |split| {
            let (list, used) = ImageList::select(&data, split, Split::Train, None, None).unwrap();
            let names: Vec<String> = list
                .relative_names()
                .map(|n| n.file_name().unwrap().to_string_lossy().into_owned())
                .collect();
            (names, used)
        };
        let wanted = |k: usize| -> Vec<String> {
            let mut v: Vec<String> = csv
                .lines()
                .skip(1)
                .filter(|l| l.ends_with(&format!(",{k}")))
                .map(|l| l.split(',').next().unwrap().to_string())
                .collect();
            v.sort();
            v
        };
        assert_eq!(pick(None), (wanted(0), Split::Train));
        assert_eq!(pick(Some(Split::Valid)), (wanted(1), Split::Valid));
        assert_eq!(pick(Some(Split::Test)), (wanted(2), Split::Test));
        assert_eq!(pick(Some(Split::All)).0.len(), 9);

        // The same inside a zip, as Kaggle ships it.
        let zip = TempFile::new("archive.zip");
        let mut m = members("img_align_celeba/img_align_celeba/", 9);
        m.push(("list_eval_partition.csv".into(), csv.clone().into_bytes()));
        zip_of(&zip, &m, ZipOpts::default());
        let (list, _) =
            ImageList::select(zip.path(), Some(Split::Valid), Split::Train, None, None).unwrap();
        assert_eq!(list.len(), 3);

        // Without a partition file, a split other than all is refused with the fix.
        let bare = ImageList::select(&faces_dir(), Some(Split::Valid), Split::Train, None, None);
        let err = format!("{:#}", bare.unwrap_err());
        assert!(err.contains("--partition FILE"), "{err}");
        let (all, used) =
            ImageList::select(&faces_dir(), None, Split::Train, None, Some(7)).unwrap();
        assert_eq!((all.len(), used), (7, Split::All));
    }
}
