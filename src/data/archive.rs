//! Reading JPEGs straight out of a CelebA zip, so the 1.4 GB download need not be unpacked
//! (202,599 small files) before training.
//!
//! The `zip` crate parses the archive (ZIP64, data descriptors, every compression method its
//! features enable); this file adds what training needs on top: members read from many
//! threads at once, a size limit, and errors that name the archive and say what to do.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Result};
use zip::result::ZipError;
use zip::ZipArchive;

/// A CelebA JPEG is a few KiB; anything this big is not one, and allocating for a damaged
/// size field could exhaust memory.
const MAX_MEMBER: u64 = 512 << 20;

/// An open zip archive whose members can be read by many threads at once.
///
/// Each read works on its own clone of the `zip` crate's archive: the clones share the parsed
/// central directory and the open file, and each keeps its own position, so readers need no
/// lock.
#[derive(Clone, Debug)]
pub struct Archive {
    path: PathBuf,
    zip: ZipArchive<SharedFile>,
}

impl Archive {
    /// Opens the archive and parses its central directory.
    ///
    /// An encrypted archive or one whose compression method is not supported is refused here,
    /// from its first file, so a run fails before training starts rather than skipping every
    /// image.
    pub fn open(path: &Path) -> Result<Self> {
        let shown = path.display();
        let file = File::open(path)
            .map_err(|e| anyhow::anyhow!("{shown}: cannot open the archive: {e}"))?;
        let zip = ZipArchive::new(SharedFile::new(file, path)?).map_err(|e| open_error(path, e))?;
        let archive = Self {
            path: path.to_path_buf(),
            zip,
        };
        archive.check_first_member()?;
        Ok(archive)
    }

    /// The archive's path, for messages that name where a member came from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Each file's index and name, in central-directory order; directories are left out.
    pub fn files(&self) -> impl Iterator<Item = (usize, &str)> {
        self.zip
            .file_names()
            .enumerate()
            .filter(|(_, name)| !name.ends_with('/'))
    }

    /// The bytes of member `index` (from [`Self::files`]), their CRC-32 and size checked.
    /// Safe to call from many threads at once (&self).
    ///
    /// Errors are one line without the archive's path, for the caller to prefix with
    /// "archive.zip:member".
    pub fn read(&self, index: usize) -> Result<Vec<u8>, String> {
        let mut zip = self.zip.clone();
        let mut member = zip.by_index(index).map_err(member_error)?;
        let size = member.size();
        if size.max(member.compressed_size()) > MAX_MEMBER {
            return Err(format!(
                "member declares {size} bytes, over the {} MiB limit (not a CelebA image, or a damaged size field)",
                MAX_MEMBER >> 20
            ));
        }
        let mut data = Vec::with_capacity(size as usize);
        // One byte past `size`, so a lying size field cannot make the output grow without
        // bound; reading to the end is also what makes the crate check the CRC.
        (&mut member)
            .take(size + 1)
            .read_to_end(&mut data)
            .map_err(read_error)?;
        if data.len() as u64 != size {
            return Err(format!(
                "size mismatch: got {} bytes, the directory says {size} (damaged archive member)",
                data.len()
            ));
        }
        Ok(data)
    }

    /// Refuses an archive this reader cannot decode, judged by its first file.
    fn check_first_member(&self) -> Result<()> {
        let Some((index, name)) = self.files().next() else {
            return Ok(());
        };
        let shown = self.path.display();
        let mut zip = self.zip.clone();
        // A damaged first member is named when it is read, like any other, and skipped.
        let Ok(member) = zip.by_index_raw(index) else {
            return Ok(());
        };
        if member.encrypted() {
            bail!("{shown}: member {name} is encrypted, which is not supported; unpack the archive (with its password) and pass the folder");
        }
        let method = member.compression();
        if !zip::SUPPORTED_COMPRESSION_METHODS.contains(&method) {
            bail!("{shown}: member {name} uses compression method {method}, which is not supported; unpack the archive and pass the folder");
        }
        Ok(())
    }
}

/// Why an archive could not be opened, with the fix: a file that starts like a zip was cut
/// short or damaged; anything else is not a zip at all.
fn open_error(path: &Path, e: ZipError) -> anyhow::Error {
    let shown = path.display();
    if e.to_string().to_lowercase().contains("multi-disk") {
        return anyhow::anyhow!("{shown}: a multi-part (split) archive ({e}); join the parts into one zip or unpack them and pass the folder");
    }
    let mut head = [0; 4];
    let starts_like_zip = File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok()
        && head == *b"PK\x03\x04";
    if starts_like_zip {
        anyhow::anyhow!(
            "{shown}: the archive is cut short or damaged ({e}; download interrupted?); re-download it"
        )
    } else {
        anyhow::anyhow!(
            "{shown}: not a zip archive ({e}); re-download it or unpack it and pass the folder"
        )
    }
}

/// One line on why a member could not be found or opened.
fn member_error(e: ZipError) -> String {
    match e {
        ZipError::Io(e) => read_error(e),
        ZipError::UnsupportedArchive(ZipError::PASSWORD_REQUIRED) => {
            "encrypted member (not supported)".to_string()
        }
        ZipError::CompressionMethodNotSupported(method) => {
            format!("unsupported compression method {method}")
        }
        e => format!("{e} (damaged archive)"),
    }
}

/// One line on why a member's data could not be read.
fn read_error(e: io::Error) -> String {
    match e.kind() {
        io::ErrorKind::UnexpectedEof => {
            "member data runs past the end of the archive (archive truncated?)".to_string()
        }
        // The crate's words for a CRC-32 that does not match the data.
        io::ErrorKind::InvalidData if e.to_string() == "Invalid checksum" => {
            "CRC mismatch (damaged archive member)".to_string()
        }
        _ => format!("cannot read member data: {e} (damaged archive member)"),
    }
}

/// The archive file read at explicit positions: clones share the open file, each with its own
/// position, so threads read at once without a shared cursor.
///
/// Small reads go through a read-ahead buffer: the crate parses the central directory (and
/// each local header) a few bytes at a time, which was one system call per field, 0.1-0.3 s
/// of system time to open full CelebA's 202,599 members. Large reads (member data) bypass it.
#[derive(Debug)]
struct SharedFile {
    file: Arc<File>,
    len: u64,
    pos: u64,
    /// Bytes of the file from `buf_at` on.
    buf: Vec<u8>,
    buf_at: u64,
}

/// Reads shorter than this are served from the buffer.
const SMALL_READ: usize = 4 << 10;
/// How much the buffer reads ahead.
const READ_AHEAD: usize = 16 << 10;

impl SharedFile {
    fn new(file: File, path: &Path) -> Result<Self> {
        let len = file
            .metadata()
            .map_err(|e| {
                anyhow::anyhow!("{}: cannot read the archive's size: {e}", path.display())
            })?
            .len();
        Ok(Self {
            file: Arc::new(file),
            len,
            pos: 0,
            buf: Vec::new(),
            buf_at: 0,
        })
    }

    /// The buffered bytes from the current position on (empty when it is outside them).
    fn buffered(&self) -> &[u8] {
        match self.pos.checked_sub(self.buf_at) {
            Some(skip) if skip < self.buf.len() as u64 => &self.buf[skip as usize..],
            _ => &[],
        }
    }
}

/// A clone starts with an empty buffer: each member read clones the archive, and most of
/// them read past any buffer straight away.
impl Clone for SharedFile {
    fn clone(&self) -> Self {
        Self {
            file: Arc::clone(&self.file),
            len: self.len,
            pos: self.pos,
            buf: Vec::new(),
            buf_at: 0,
        }
    }
}

impl Read for SharedFile {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.buffered().is_empty() && out.len() < SMALL_READ {
            self.buf.resize(READ_AHEAD, 0);
            let n = read_at(&self.file, &mut self.buf, self.pos)?;
            self.buf.truncate(n);
            self.buf_at = self.pos;
        }
        let ahead = self.buffered();
        let n = if ahead.is_empty() {
            read_at(&self.file, out, self.pos)?
        } else {
            let n = ahead.len().min(out.len());
            out[..n].copy_from_slice(&ahead[..n]);
            n
        };
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for SharedFile {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let pos = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.len.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos = pos.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "seek before the archive's start",
            )
        })?;
        Ok(self.pos)
    }
}

#[cfg(unix)]
fn read_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    std::os::unix::fs::FileExt::read_at(file, buf, offset)
}

/// `seek_read` moves the file's own cursor, but nothing here uses it, so threads can still
/// read at once.
#[cfg(windows)]
fn read_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    std::os::windows::fs::FileExt::seek_read(file, buf, offset)
}

#[cfg(not(any(unix, windows)))]
fn read_at(_file: &File, _buf: &mut [u8], _offset: u64) -> io::Result<usize> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "reading zip archives needs positioned reads (Unix or Windows); unpack the archive",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads of every size at every kind of position (inside, across and past the buffer,
    /// after seeks, from a clone) give the file's bytes.
    #[test]
    fn shared_file_reads_the_bytes_at_its_position() {
        let path = std::env::temp_dir().join(format!("dcgan-shared-file-{}", std::process::id()));
        let bytes: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(&path, &bytes).unwrap();
        let mut f = SharedFile::new(File::open(&path).unwrap(), &path).unwrap();
        std::fs::remove_file(&path).unwrap();
        let mut x = 12_345u64;
        let mut next = |n: u64| {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            (x >> 33) % n
        };
        for _ in 0..2_000 {
            if next(4) == 0 {
                f.seek(SeekFrom::Start(next(bytes.len() as u64 + 10)))
                    .unwrap();
            }
            if next(50) == 0 {
                f = f.clone();
            }
            let len = [1, 30, 46, 4_095, 4_096, 20_000][next(6) as usize];
            let at = f.pos as usize;
            let mut out = vec![0; len];
            let n = f.read(&mut out).unwrap();
            let want = &bytes[at.min(bytes.len())..(at + len).min(bytes.len())];
            assert!(n <= want.len() && (n > 0 || want.is_empty()), "{n} at {at}");
            assert_eq!(&out[..n], &want[..n], "{len} at {at}");
            assert_eq!(f.pos, (at + n) as u64);
        }
        assert_eq!(f.seek(SeekFrom::End(-10)).unwrap(), bytes.len() as u64 - 10);
        assert!(f.seek(SeekFrom::Current(-200_000)).is_err());
    }
}
