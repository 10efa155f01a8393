//! Reading JPEGs straight out of a CelebA zip, so the 1.4 GB download need not be unpacked
//! (202,599 small files) before training.
//!
//! Hand-written rather than the `zip` crate: that crate's features would change those of crates
//! shared with wgpu and force a second full build, while flate2 and crc32fast are already linked.
//! Only what CelebA's archives use is supported: stored and deflated members, ZIP64, data
//! descriptors; no encryption, no multi-part archives.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use flate2::read::DeflateDecoder;

const EOCD_SIG: u32 = 0x0605_4b50;
const EOCD_LEN: usize = 22;
const ZIP64_LOCATOR_SIG: u32 = 0x0706_4b50;
const ZIP64_LOCATOR_LEN: u64 = 20;
const ZIP64_EOCD_SIG: u32 = 0x0606_4b50;
const ZIP64_EOCD_LEN: usize = 56;
const CENTRAL_SIG: u32 = 0x0201_4b50;
const CENTRAL_LEN: usize = 46;
const LOCAL_SIG: u32 = 0x0403_4b50;
const LOCAL_LEN: usize = 30;
/// The EOCD ends the file but may be followed by a comment of up to 65,535 bytes.
const EOCD_SEARCH: u64 = 65_535 + EOCD_LEN as u64;
/// A CelebA JPEG is a few KiB; anything this big is not one, and allocating for a damaged
/// size field could exhaust memory.
const MAX_MEMBER: u64 = 512 << 20;
const STORED: u16 = 0;
const DEFLATED: u16 = 8;

/// An open zip archive whose members can be read by many threads at once.
///
/// The file stays open and is read with positioned reads, so readers share no cursor and need no
/// lock; cloning is cheap (the file and entry list are shared).
#[derive(Clone, Debug)]
pub struct ZipArchive {
    path: PathBuf,
    file: Arc<File>,
    entries: Arc<[ZipEntry]>,
}

/// One member as the central directory describes it; the central directory, not the local
/// header, is trusted for sizes and CRC because data-descriptor archives leave the local ones 0.
#[derive(Clone, Debug)]
pub struct ZipEntry {
    pub name: String,
    pub size: u64,
    pub compressed_size: u64,
    pub crc32: u32,
    pub method: u16,
    pub header_offset: u64,
}

/// Where the central directory is, from the (ZIP64) end-of-central-directory record.
#[derive(Debug)]
struct Directory {
    /// Where the EOCD (or ZIP64 EOCD) record starts: the central directory must end before it.
    end: u64,
    entries: u64,
    size: u64,
    offset: u64,
}

impl ZipArchive {
    /// Parses the central directory (EOCD searched in the last 64 KiB + 22 bytes; ZIP64 EOCD
    /// locator and record when present; ZIP64 extra field (0x0001) in central entries for
    /// sizes/offset that are 0xFFFFFFFF).
    ///
    /// Encrypted members and compression methods other than stored and deflated are refused
    /// here, so a run fails before training starts rather than on some image hours in.
    pub fn open(path: &Path) -> Result<Self> {
        let shown = path.display();
        let file = File::open(path).with_context(|| format!("{shown}: cannot open the archive"))?;
        let len = file
            .metadata()
            .with_context(|| format!("{shown}: cannot read the archive's size"))?
            .len();
        let mut dir = find_eocd(&file, len, path)?;
        read_zip64_eocd(&file, path, &mut dir)?;
        if dir.offset.checked_add(dir.size).is_none_or(|e| e > dir.end) {
            return Err(cut_short(path));
        }
        let size = usize::try_from(dir.size).map_err(|_| cut_short(path))?;
        let mut central = vec![0; size];
        read_at(&file, &mut central, dir.offset).map_err(|_| cut_short(path))?;
        let entries = parse_central(&central, dir.entries, path)?;
        Ok(Self {
            path: path.to_path_buf(),
            file: Arc::new(file),
            entries: entries.into(),
        })
    }

    /// The archive's path, for messages that name where a member came from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every entry in central-directory order, directories (names ending in '/') excluded.
    pub fn entries(&self) -> &[ZipEntry] {
        &self.entries
    }

    /// The member's bytes: reads the local header (its own name/extra lengths decide where data
    /// starts), inflates or copies, checks size and CRC-32. Safe to call from many threads at
    /// once (&self).
    ///
    /// Errors are one line without the archive's path, for the caller to prefix with
    /// "archive.zip:member".
    pub fn read(&self, entry: &ZipEntry) -> Result<Vec<u8>, String> {
        check_readable(entry)?;
        let start = self.data_start(entry)?;
        let mut raw = vec![0; entry.compressed_size as usize];
        read_at(&self.file, &mut raw, start).map_err(|e| match e.kind() {
            io::ErrorKind::UnexpectedEof => {
                "member data runs past the end of the archive (archive truncated?)".to_string()
            }
            _ => format!("cannot read member data: {e}"),
        })?;
        let data = if entry.method == STORED {
            raw
        } else {
            inflate(&raw, entry.size)?
        };
        if data.len() as u64 != entry.size {
            return Err(format!(
                "size mismatch: got {} bytes, the directory says {} (damaged archive member)",
                data.len(),
                entry.size
            ));
        }
        if crc32fast::hash(&data) != entry.crc32 {
            return Err("CRC mismatch (damaged archive member)".to_string());
        }
        Ok(data)
    }

    /// Looks a member up by its exact name.
    ///
    /// A linear scan: lookups are rare (a CSV or two), and an index would double the memory
    /// 202,599 names take.
    pub fn find(&self, name: &str) -> Option<&ZipEntry> {
        self.entries.iter().find(|e| e.name == name)
    }

    /// Where the member's data begins: the local header's own name and extra lengths may differ
    /// from the central directory's (ZIP64 extras, for one), so they must be read.
    fn data_start(&self, entry: &ZipEntry) -> Result<u64, String> {
        let mut header = [0; LOCAL_LEN];
        read_at(&self.file, &mut header, entry.header_offset).map_err(|e| match e.kind() {
            io::ErrorKind::UnexpectedEof => {
                "local header past the end of the archive (archive truncated?)".to_string()
            }
            _ => format!("cannot read the local header: {e}"),
        })?;
        if u32_at(&header, 0) != LOCAL_SIG {
            return Err("local header signature missing (damaged archive)".to_string());
        }
        let name_len = u64::from(u16_at(&header, 26));
        let extra_len = u64::from(u16_at(&header, 28));
        // Saturating: a damaged offset then fails as a read past the end, not an overflow.
        Ok(entry
            .header_offset
            .saturating_add(LOCAL_LEN as u64 + name_len + extra_len))
    }
}

/// Refuses what `read` cannot decode or should not allocate for, before touching the file.
fn check_readable(entry: &ZipEntry) -> Result<(), String> {
    if entry.method != STORED && entry.method != DEFLATED {
        return Err(format!(
            "unsupported compression method {} (only stored and deflated members can be read)",
            entry.method
        ));
    }
    let largest = entry.size.max(entry.compressed_size);
    if largest > MAX_MEMBER {
        return Err(format!(
            "member declares {largest} bytes, over the {} MiB limit (not a CelebA image, or a damaged size field)",
            MAX_MEMBER >> 20
        ));
    }
    if entry.method == STORED && entry.size != entry.compressed_size {
        return Err(format!(
            "stored member with size {} but compressed size {} (damaged archive)",
            entry.size, entry.compressed_size
        ));
    }
    Ok(())
}

/// Inflates raw deflate data, stopping one byte past `size` so a lying size field cannot make
/// the output grow without bound; the caller's size check then catches the difference.
fn inflate(raw: &[u8], size: u64) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(size as usize);
    DeflateDecoder::new(raw)
        .take(size + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("cannot inflate: {e}"))?;
    Ok(out)
}

fn cut_short(path: &Path) -> anyhow::Error {
    anyhow::anyhow!(
        "{}: the central directory is cut short (archive truncated?); re-download it",
        path.display()
    )
}

/// Finds the end-of-central-directory record by scanning back from the end; a record whose
/// comment ends exactly at the end of the file is preferred, so "PK\5\6" inside a comment or
/// in the last image's bytes is not mistaken for it.
fn find_eocd(file: &File, len: u64, path: &Path) -> Result<Directory> {
    let shown = path.display();
    let tail_len = len.min(EOCD_SEARCH);
    let mut tail = vec![0; tail_len as usize];
    read_at(file, &mut tail, len - tail_len)
        .with_context(|| format!("{shown}: cannot read the end of the archive"))?;
    let candidates = || {
        (0..tail.len().saturating_sub(EOCD_LEN - 1))
            .rev()
            .filter(|&i| u32_at(&tail, i) == EOCD_SIG)
    };
    let comment_end = |i: usize| i + EOCD_LEN + usize::from(u16_at(&tail, i + 20));
    let found = candidates()
        .find(|&i| comment_end(i) == tail.len())
        .or_else(|| candidates().find(|&i| comment_end(i) <= tail.len()));
    let Some(i) = found else {
        let mut head = [0; 4];
        if read_at(file, &mut head, 0).is_ok() && u32::from_le_bytes(head) == LOCAL_SIG {
            bail!("{shown}: the archive is cut short (no end-of-central-directory record; download interrupted?); re-download it");
        }
        bail!("{shown}: not a zip archive (no end-of-central-directory record); re-download it or unpack it and pass the folder");
    };
    let eocd = &tail[i..];
    if u16_at(eocd, 4) != 0 || u16_at(eocd, 6) != 0 {
        bail!("{shown}: a multi-part (split) archive; join the parts into one zip or unpack them and pass the folder");
    }
    Ok(Directory {
        end: len - tail_len + i as u64,
        entries: u64::from(u16_at(eocd, 10)),
        size: u64::from(u32_at(eocd, 12)),
        offset: u64::from(u32_at(eocd, 16)),
    })
}

/// Replaces the EOCD's 16- and 32-bit counts with the ZIP64 record's when its locator sits just
/// before the EOCD: CelebA's 202,599 members overflow the 16-bit entry count.
fn read_zip64_eocd(file: &File, path: &Path, dir: &mut Directory) -> Result<()> {
    let shown = path.display();
    let Some(locator_at) = dir.end.checked_sub(ZIP64_LOCATOR_LEN) else {
        return Ok(());
    };
    let mut locator = [0; ZIP64_LOCATOR_LEN as usize];
    read_at(file, &mut locator, locator_at)
        .with_context(|| format!("{shown}: cannot read the ZIP64 locator"))?;
    if u32_at(&locator, 0) != ZIP64_LOCATOR_SIG {
        return Ok(());
    }
    if u32_at(&locator, 4) != 0 || u32_at(&locator, 16) > 1 {
        bail!("{shown}: a multi-part (split) archive; join the parts into one zip or unpack them and pass the folder");
    }
    let record_at = u64_at(&locator, 8);
    let mut record = [0; ZIP64_EOCD_LEN];
    let damaged = || {
        anyhow::anyhow!(
            "{shown}: the ZIP64 end-of-central-directory record is missing or damaged; re-download it"
        )
    };
    if record_at > locator_at.saturating_sub(ZIP64_EOCD_LEN as u64) {
        return Err(damaged());
    }
    read_at(file, &mut record, record_at).map_err(|_| damaged())?;
    if u32_at(&record, 0) != ZIP64_EOCD_SIG {
        return Err(damaged());
    }
    *dir = Directory {
        end: record_at,
        entries: u64_at(&record, 32),
        size: u64_at(&record, 40),
        offset: u64_at(&record, 48),
    };
    Ok(())
}

/// Parses every central entry, skipping directories; the directory's byte size, not its
/// entry count, bounds the walk, since some writers let the 16-bit count wrap.
fn parse_central(central: &[u8], declared: u64, path: &Path) -> Result<Vec<ZipEntry>> {
    let mut entries = Vec::with_capacity(declared.min(1 << 20) as usize);
    let mut at = 0;
    let mut seen = 0u64;
    while at < central.len() {
        let (entry, next) = parse_entry(central, at, path)?;
        at = next;
        seen += 1;
        if let Some(entry) = entry {
            entries.push(entry);
        }
    }
    if seen < declared {
        return Err(cut_short(path));
    }
    Ok(entries)
}

/// One central entry starting at `at`: the entry (None for a directory) and where the next
/// one starts.
fn parse_entry(central: &[u8], at: usize, path: &Path) -> Result<(Option<ZipEntry>, usize)> {
    let shown = path.display();
    let fixed = central
        .get(at..at + CENTRAL_LEN)
        .ok_or_else(|| cut_short(path))?;
    if u32_at(fixed, 0) != CENTRAL_SIG {
        bail!("{shown}: the central directory is damaged (entry signature missing at byte {at} of it); re-download it");
    }
    let name_len = usize::from(u16_at(fixed, 28));
    let extra_len = usize::from(u16_at(fixed, 30));
    let comment_len = usize::from(u16_at(fixed, 32));
    let name_at = at + CENTRAL_LEN;
    let next = name_at + name_len + extra_len + comment_len;
    let variable = central.get(name_at..next).ok_or_else(|| cut_short(path))?;
    // CelebA's names are ASCII; lossy decoding keeps an odd CP437 name usable rather than fatal.
    let name = String::from_utf8_lossy(&variable[..name_len]).into_owned();
    if name.ends_with('/') {
        return Ok((None, next));
    }
    let flags = u16_at(fixed, 8);
    if flags & 1 != 0 {
        bail!("{shown}: member {name} is encrypted, which is not supported; unpack the archive (with its password) and pass the folder");
    }
    let mut entry = ZipEntry {
        name,
        method: u16_at(fixed, 10),
        crc32: u32_at(fixed, 16),
        compressed_size: u64::from(u32_at(fixed, 20)),
        size: u64::from(u32_at(fixed, 24)),
        header_offset: u64::from(u32_at(fixed, 42)),
    };
    if entry.method != STORED && entry.method != DEFLATED {
        bail!("{shown}: member {} uses compression method {}, which is not supported (only stored and deflated); unpack the archive and pass the folder", entry.name, entry.method);
    }
    let extra = &variable[name_len..name_len + extra_len];
    apply_zip64_extra(extra, &mut entry).map_err(|why| {
        anyhow::anyhow!(
            "{shown}: member {}: {why}; re-download the archive",
            entry.name
        )
    })?;
    Ok((Some(entry), next))
}

/// Fills the fields saturated at 0xFFFFFFFF from the ZIP64 extra field, which holds only those,
/// in the order uncompressed size, compressed size, header offset.
fn apply_zip64_extra(mut extra: &[u8], entry: &mut ZipEntry) -> Result<(), String> {
    const SATURATED: u64 = 0xFFFF_FFFF;
    while extra.len() >= 4 {
        let id = u16_at(extra, 0);
        let len = usize::from(u16_at(extra, 2));
        let data = extra
            .get(4..4 + len)
            .ok_or("an extra field runs past its entry (damaged archive)")?;
        extra = &extra[4 + len..];
        if id != 0x0001 {
            continue;
        }
        let mut values = data.chunks_exact(8).map(|c| u64_at(c, 0));
        for field in [
            &mut entry.size,
            &mut entry.compressed_size,
            &mut entry.header_offset,
        ] {
            if *field == SATURATED {
                *field = values
                    .next()
                    .ok_or("the ZIP64 extra field is too short (damaged archive)")?;
            }
        }
        return Ok(());
    }
    let saturated = [entry.size, entry.compressed_size, entry.header_offset];
    if saturated.contains(&SATURATED) {
        return Err("a size or offset needs a ZIP64 extra field that is missing".to_string());
    }
    Ok(())
}

fn u16_at(b: &[u8], i: usize) -> u16 {
    u16::from_le_bytes([b[i], b[i + 1]])
}

fn u32_at(b: &[u8], i: usize) -> u32 {
    u32::from_le_bytes(b[i..i + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], i: usize) -> u64 {
    u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"))
}

/// A positioned read: no shared cursor, so threads can read the one open file at once.
#[cfg(unix)]
fn read_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    file.read_exact_at(buf, offset)
}

/// A positioned read: `seek_read` moves the file's cursor, but nothing here uses it, so threads
/// can still read at once; it may return short, hence the loop.
#[cfg(windows)]
fn read_at(file: &File, mut buf: &mut [u8], mut offset: u64) -> io::Result<()> {
    use std::os::windows::fs::FileExt;
    while !buf.is_empty() {
        match file.seek_read(buf, offset) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => {
                buf = &mut buf[n..];
                offset += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(not(any(unix, windows)))]
fn read_at(_file: &File, _buf: &mut [u8], _offset: u64) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "reading zip archives needs positioned reads (Unix or Windows); unpack the archive",
    ))
}

/// A minimal zip writer for tests, so archives of every layout the reader must handle can be
/// built without a zip tool. A test hook, public only so the integration tests can use it.
#[doc(hidden)]
pub mod testzip {
    use std::io::Write;
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicUsize, Ordering};

    use flate2::write::DeflateEncoder;
    use flate2::Compression;

    /// How `write_zip` lays the archive out.
    #[derive(Clone, Copy, Debug, Default)]
    pub struct ZipOpts {
        /// Deflate members (method 8) rather than store them (method 0); directories are always
        /// stored.
        pub deflate: bool,
        /// Set flag bit 3: zero CRC and sizes in local headers, a data descriptor after each
        /// member's data, as streaming writers (and some of Kaggle's archives) do.
        pub data_descriptor: bool,
        /// Write ZIP64 extra fields with saturated 32-bit sizes and offsets, and the ZIP64 EOCD
        /// record and locator, as archives over 65,535 members need.
        pub zip64: bool,
    }

    /// A file under the temp dir with a unique name, removed when dropped (even on a failed
    /// assertion), so tests can run in parallel and leave nothing behind.
    pub struct TempFile(PathBuf);

    impl TempFile {
        pub fn new(tag: &str) -> Self {
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let name = format!("dcgan-ziptest-{}-{n}-{tag}", std::process::id());
            Self(std::env::temp_dir().join(name))
        }
        pub fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0).or_else(|_| std::fs::remove_dir_all(&self.0));
        }
    }

    /// Writes `members` (names ending in '/' become directory entries) to `path`; panics on an
    /// I/O error, as a test would.
    pub fn write_zip(path: &Path, members: &[(&str, &[u8])], opts: ZipOpts) {
        let mut out = Vec::new();
        let mut central = Vec::new();
        for &(name, data) in members {
            let offset = out.len() as u64;
            let header = Header::new(name, data, opts);
            header.write_local(&mut out);
            out.extend_from_slice(&header.packed);
            header.write_descriptor(&mut out);
            header.write_central(&mut central, offset);
        }
        let cd_offset = out.len() as u64;
        out.extend_from_slice(&central);
        write_end(
            &mut out,
            members.len() as u64,
            central.len() as u64,
            cd_offset,
            opts,
        );
        std::fs::write(path, out).expect("write test zip");
    }

    struct Header<'a> {
        name: &'a str,
        packed: Vec<u8>,
        size: u64,
        crc: u32,
        method: u16,
        opts: ZipOpts,
    }

    impl<'a> Header<'a> {
        fn new(name: &'a str, data: &[u8], opts: ZipOpts) -> Self {
            let deflate = opts.deflate && !name.ends_with('/');
            let packed = if deflate {
                let mut enc = DeflateEncoder::new(Vec::new(), Compression::default());
                enc.write_all(data).expect("deflate");
                enc.finish().expect("deflate")
            } else {
                data.to_vec()
            };
            Self {
                name,
                packed,
                size: data.len() as u64,
                crc: crc32fast::hash(data),
                method: if deflate { 8 } else { 0 },
                opts,
            }
        }

        fn flags(&self) -> u16 {
            (1 << 11) | if self.opts.data_descriptor { 1 << 3 } else { 0 }
        }

        fn version(&self) -> u16 {
            if self.opts.zip64 {
                45
            } else {
                20
            }
        }

        fn write_local(&self, out: &mut Vec<u8>) {
            let (dd, z64) = (self.opts.data_descriptor, self.opts.zip64);
            let extra: Vec<u8> = if z64 {
                let sizes = if dd {
                    [0, 0]
                } else {
                    [self.size, self.packed.len() as u64]
                };
                zip64_extra(&sizes)
            } else {
                Vec::new()
            };
            let small = |v: u64| match (dd, z64) {
                (true, _) => 0,
                (false, true) => u32::MAX,
                (false, false) => v as u32,
            };
            put32(out, 0x0403_4b50);
            put16(out, self.version());
            put16(out, self.flags());
            put16(out, self.method);
            put16(out, 0); // time
            put16(out, 0x21); // date: 1980-01-01
            put32(out, if dd { 0 } else { self.crc });
            put32(out, small(self.packed.len() as u64));
            put32(out, small(self.size));
            put16(out, self.name.len() as u16);
            put16(out, extra.len() as u16);
            out.extend_from_slice(self.name.as_bytes());
            out.extend_from_slice(&extra);
        }

        fn write_descriptor(&self, out: &mut Vec<u8>) {
            if !self.opts.data_descriptor {
                return;
            }
            put32(out, 0x0807_4b50);
            put32(out, self.crc);
            if self.opts.zip64 {
                put64(out, self.packed.len() as u64);
                put64(out, self.size);
            } else {
                put32(out, self.packed.len() as u32);
                put32(out, self.size as u32);
            }
        }

        fn write_central(&self, out: &mut Vec<u8>, offset: u64) {
            let z64 = self.opts.zip64;
            let extra = if z64 {
                zip64_extra(&[self.size, self.packed.len() as u64, offset])
            } else {
                Vec::new()
            };
            let small = |v: u64| if z64 { u32::MAX } else { v as u32 };
            put32(out, 0x0201_4b50);
            put16(out, 0x031e); // made by: Unix, spec 3.0
            put16(out, self.version());
            put16(out, self.flags());
            put16(out, self.method);
            put16(out, 0);
            put16(out, 0x21);
            put32(out, self.crc);
            put32(out, small(self.packed.len() as u64));
            put32(out, small(self.size));
            put16(out, self.name.len() as u16);
            put16(out, extra.len() as u16);
            put16(out, 0); // comment
            put16(out, 0); // disk
            put16(out, 0); // internal attributes
            put32(out, 0o100644 << 16);
            put32(out, small(offset));
            out.extend_from_slice(self.name.as_bytes());
            out.extend_from_slice(&extra);
        }
    }

    fn zip64_extra(values: &[u64]) -> Vec<u8> {
        let mut extra = Vec::new();
        put16(&mut extra, 0x0001);
        put16(&mut extra, (values.len() * 8) as u16);
        for &v in values {
            put64(&mut extra, v);
        }
        extra
    }

    fn write_end(out: &mut Vec<u8>, count: u64, cd_size: u64, cd_offset: u64, opts: ZipOpts) {
        if opts.zip64 {
            let record_at = out.len() as u64;
            put32(out, 0x0606_4b50);
            put64(out, 44);
            put16(out, 0x031e);
            put16(out, 45);
            put32(out, 0);
            put32(out, 0);
            put64(out, count);
            put64(out, count);
            put64(out, cd_size);
            put64(out, cd_offset);
            put32(out, 0x0706_4b50);
            put32(out, 0);
            put64(out, record_at);
            put32(out, 1);
        }
        let (n, size, offset) = if opts.zip64 {
            (u16::MAX, u32::MAX, u32::MAX)
        } else {
            (count as u16, cd_size as u32, cd_offset as u32)
        };
        put32(out, 0x0605_4b50);
        put16(out, 0);
        put16(out, 0);
        put16(out, n);
        put16(out, n);
        put32(out, size);
        put32(out, offset);
        put16(out, 0);
    }

    fn put16(out: &mut Vec<u8>, v: u16) {
        out.extend_from_slice(&v.to_le_bytes());
    }

    fn put32(out: &mut Vec<u8>, v: u32) {
        out.extend_from_slice(&v.to_le_bytes());
    }

    fn put64(out: &mut Vec<u8>, v: u64) {
        out.extend_from_slice(&v.to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::testzip::{write_zip, TempFile, ZipOpts};
    use super::*;

    /// Incompressible-looking bytes, so deflated members are not trivially short.
    fn noise(len: usize, seed: u32) -> Vec<u8> {
        let mut x = seed.wrapping_mul(2_654_435_761).max(1);
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect()
    }

    fn sample_members() -> Vec<(String, Vec<u8>)> {
        vec![
            ("img_align_celeba/000001.jpg".into(), noise(5_000, 1)),
            ("img_align_celeba/000002.jpg".into(), b"face ".repeat(2_000)),
            ("img_align_celeba/empty.jpg".into(), Vec::new()),
            (
                "list_eval_partition.csv".into(),
                b"image_id,partition\n".to_vec(),
            ),
        ]
    }

    fn build(tag: &str, members: &[(String, Vec<u8>)], opts: ZipOpts) -> TempFile {
        let file = TempFile::new(tag);
        let borrowed: Vec<(&str, &[u8])> = members
            .iter()
            .map(|(n, d)| (n.as_str(), d.as_slice()))
            .collect();
        write_zip(file.path(), &borrowed, opts);
        file
    }

    /// Opens the archive and checks every member reads back byte for byte.
    fn assert_round_trip(file: &TempFile, members: &[(String, Vec<u8>)]) -> ZipArchive {
        let zip = ZipArchive::open(file.path()).unwrap();
        assert_eq!(zip.path(), file.path());
        let names: Vec<&str> = zip.entries().iter().map(|e| e.name.as_str()).collect();
        let expected: Vec<&str> = members
            .iter()
            .map(|(n, _)| n.as_str())
            .filter(|n| !n.ends_with('/'))
            .collect();
        assert_eq!(names, expected);
        let files = members.iter().filter(|(n, _)| !n.ends_with('/'));
        for (entry, (_, data)) in zip.entries().iter().zip(files) {
            assert!(zip.read(entry).unwrap() == *data, "{}", entry.name);
        }
        zip
    }

    fn error_of(result: Result<ZipArchive>) -> String {
        format!("{:#}", result.expect_err("open should fail"))
    }

    #[test]
    fn round_trip_stored_and_deflated() {
        let members = sample_members();
        for deflate in [false, true] {
            let opts = ZipOpts {
                deflate,
                ..ZipOpts::default()
            };
            let file = build("roundtrip.zip", &members, opts);
            let zip = assert_round_trip(&file, &members);
            let method = if deflate { 8 } else { 0 };
            assert!(zip.entries().iter().all(|e| e.method == method));
            let big = &zip.entries()[1];
            assert_eq!(big.size, 10_000);
            assert_eq!(big.compressed_size < big.size, deflate);
        }
    }

    #[test]
    fn reads_zip64_layout() {
        let members = sample_members();
        for deflate in [false, true] {
            let opts = ZipOpts {
                deflate,
                zip64: true,
                ..ZipOpts::default()
            };
            let file = build("zip64.zip", &members, opts);
            let bytes = std::fs::read(file.path()).unwrap();
            let eocd = &bytes[bytes.len() - EOCD_LEN..];
            assert_eq!((u16_at(eocd, 10), u32_at(eocd, 16)), (u16::MAX, u32::MAX));
            assert_round_trip(&file, &members);
        }
    }

    #[test]
    fn reads_data_descriptor_layout() {
        let members = sample_members();
        for (deflate, zip64) in [(false, false), (true, false), (true, true)] {
            let opts = ZipOpts {
                deflate,
                zip64,
                data_descriptor: true,
            };
            let file = build("descriptor.zip", &members, opts);
            assert_round_trip(&file, &members);
        }
    }

    #[test]
    fn flipped_byte_fails_only_that_member() {
        let members = sample_members();
        for deflate in [false, true] {
            let opts = ZipOpts {
                deflate,
                ..ZipOpts::default()
            };
            let file = build("flipped.zip", &members, opts);
            let zip = ZipArchive::open(file.path()).unwrap();
            let victim = zip.entries()[1].clone();
            let mut bytes = std::fs::read(file.path()).unwrap();
            let start = zip.data_start(&victim).unwrap() as usize;
            bytes[start + victim.compressed_size as usize / 2] ^= 0x55;
            std::fs::write(file.path(), &bytes).unwrap();

            let zip = ZipArchive::open(file.path()).unwrap();
            let err = zip.read(&zip.entries()[1]).unwrap_err();
            assert!(
                err.contains("CRC mismatch (damaged archive member)")
                    || err.contains("cannot inflate")
                    || err.contains("damaged archive member"),
                "{err}"
            );
            assert!(
                !err.contains('\n') && !err.contains("dcgan-ziptest"),
                "{err}"
            );
            if !deflate {
                assert_eq!(err, "CRC mismatch (damaged archive member)");
            }
            for i in [0, 2, 3] {
                assert!(zip.read(&zip.entries()[i]).unwrap() == members[i].1);
            }
        }
    }

    #[test]
    fn truncated_archive_is_named() {
        let file = build("truncated.zip", &sample_members(), ZipOpts::default());
        let bytes = std::fs::read(file.path()).unwrap();

        std::fs::write(file.path(), &bytes[..bytes.len() / 2]).unwrap();
        let err = error_of(ZipArchive::open(file.path()));
        assert!(err.contains(&*file.path().to_string_lossy()), "{err}");
        assert!(
            err.contains("cut short") && err.contains("re-download"),
            "{err}"
        );

        // Bytes lost from the middle: the EOCD survives but the directory no longer fits.
        let mut holed = bytes[..100].to_vec();
        holed.extend_from_slice(&bytes[1_100..]);
        std::fs::write(file.path(), &holed).unwrap();
        let err = error_of(ZipArchive::open(file.path()));
        assert!(err.contains(&*file.path().to_string_lossy()), "{err}");
        assert!(
            err.contains("the central directory is cut short (archive truncated?); re-download it"),
            "{err}"
        );
    }

    #[test]
    fn non_zip_file_is_named() {
        let file = TempFile::new("notzip.zip");
        for contents in [&b""[..], b"short", &noise(100_000, 7)] {
            std::fs::write(file.path(), contents).unwrap();
            let err = error_of(ZipArchive::open(file.path()));
            assert!(err.contains(&*file.path().to_string_lossy()), "{err}");
            assert!(
                err.contains("not a zip archive (no end-of-central-directory record); re-download it or unpack it and pass the folder"),
                "{err}"
            );
        }
        let missing = TempFile::new("missing.zip");
        let err = error_of(ZipArchive::open(missing.path()));
        assert!(err.contains(&*missing.path().to_string_lossy()), "{err}");
    }

    #[test]
    fn directories_are_skipped() {
        let mut members = sample_members();
        members.insert(0, ("img_align_celeba/".into(), Vec::new()));
        members.insert(1, ("img_align_celeba/img_align_celeba/".into(), Vec::new()));
        let file = build("dirs.zip", &members, ZipOpts::default());
        let zip = assert_round_trip(&file, &members);
        assert_eq!(zip.entries().len(), 4);
        assert!(zip.entries().iter().all(|e| !e.name.ends_with('/')));
    }

    #[test]
    fn find_looks_up_exact_names() {
        let members = sample_members();
        let file = build("find.zip", &members, ZipOpts::default());
        let zip = ZipArchive::open(file.path()).unwrap();
        let entry = zip.find("img_align_celeba/000002.jpg").unwrap();
        assert_eq!(zip.read(entry).unwrap(), members[1].1);
        assert!(zip.find("000002.jpg").is_none());
        assert!(zip.find("IMG_ALIGN_CELEBA/000002.jpg").is_none());
        assert!(zip.find("img_align_celeba/").is_none());
    }

    #[test]
    fn reads_from_many_threads_at_once() {
        let members: Vec<(String, Vec<u8>)> = (0..64)
            .map(|i| {
                (
                    format!("img_align_celeba/{i:06}.jpg"),
                    noise(3_000 + i, i as u32),
                )
            })
            .collect();
        let opts = ZipOpts {
            deflate: true,
            ..ZipOpts::default()
        };
        let file = build("threads.zip", &members, opts);
        let zip = ZipArchive::open(file.path()).unwrap();
        std::thread::scope(|s| {
            for t in 0..8 {
                let (zip, members) = (&zip, &members);
                s.spawn(move || {
                    for round in 0..20 {
                        let i = (t * 7 + round * 13) % members.len();
                        assert!(zip.read(&zip.entries()[i]).unwrap() == members[i].1);
                    }
                });
            }
        });
    }

    /// Patches the first central entry's field at `offset` (flags at 8, method at 10).
    fn patch_central(path: &Path, offset: usize, value: u16) {
        let mut bytes = std::fs::read(path).unwrap();
        let at = (0..bytes.len())
            .find(|&i| bytes[i..].starts_with(&CENTRAL_SIG.to_le_bytes()))
            .unwrap();
        bytes[at + offset..at + offset + 2].copy_from_slice(&value.to_le_bytes());
        std::fs::write(path, bytes).unwrap();
    }

    #[test]
    fn encrypted_and_unknown_methods_are_refused_by_name() {
        let members = sample_members();
        let file = build("encrypted.zip", &members, ZipOpts::default());
        patch_central(file.path(), 8, 1 | 1 << 11);
        let err = error_of(ZipArchive::open(file.path()));
        assert!(err.contains(&*file.path().to_string_lossy()), "{err}");
        assert!(
            err.contains("img_align_celeba/000001.jpg is encrypted"),
            "{err}"
        );

        let file = build("method.zip", &members, ZipOpts::default());
        patch_central(file.path(), 10, 12);
        let err = error_of(ZipArchive::open(file.path()));
        assert!(err.contains("img_align_celeba/000001.jpg"), "{err}");
        assert!(err.contains("compression method 12"), "{err}");
    }

    #[test]
    fn read_refuses_bad_entries_without_the_path() {
        let file = build("badentry.zip", &sample_members(), ZipOpts::default());
        let zip = ZipArchive::open(file.path()).unwrap();
        let good = zip.entries()[0].clone();
        let method = ZipEntry {
            method: 12,
            ..good.clone()
        };
        assert_eq!(
            zip.read(&method).unwrap_err(),
            "unsupported compression method 12 (only stored and deflated members can be read)"
        );
        let huge = ZipEntry {
            size: 600 << 20,
            compressed_size: 600 << 20,
            ..good.clone()
        };
        assert!(zip.read(&huge).unwrap_err().contains("512 MiB"));
        let misplaced = ZipEntry {
            header_offset: good.header_offset + 1,
            ..good.clone()
        };
        assert_eq!(
            zip.read(&misplaced).unwrap_err(),
            "local header signature missing (damaged archive)"
        );
        let beyond = ZipEntry {
            header_offset: std::fs::metadata(file.path()).unwrap().len() - 10,
            ..good
        };
        assert!(zip.read(&beyond).unwrap_err().contains("truncated"));
    }

    /// Archives written by real tools: Python's zipfile (deflated, with over 65,535 members so
    /// it must write ZIP64 end records) and Info-ZIP writing to a pipe (data descriptors).
    #[test]
    fn reads_archive_made_by_zip_tool() {
        let mut ran = false;
        if tool_exists("python3") {
            python_archive();
            ran = true;
        }
        if tool_exists("zip") {
            info_zip_archive();
            ran = true;
        }
        if !ran {
            eprintln!("skipped: no zip tool (neither python3 nor zip on PATH)");
        }
    }

    fn tool_exists(name: &str) -> bool {
        std::process::Command::new(name)
            .arg(if name == "zip" { "-v" } else { "--version" })
            .output()
            .is_ok_and(|o| o.status.success())
    }

    fn python_archive() {
        let file = TempFile::new("python.zip");
        let script = "import sys, zipfile\n\
            with zipfile.ZipFile(sys.argv[1], 'w', zipfile.ZIP_DEFLATED) as z:\n\
            \x20   z.writestr('img_align_celeba/', b'')\n\
            \x20   for i in range(1, 70001):\n\
            \x20       z.writestr('img_align_celeba/%06d.jpg' % i, b'jpeg %d ' % i * (i % 50))\n";
        let status = std::process::Command::new("python3")
            .args(["-c", script])
            .arg(file.path())
            .status()
            .unwrap();
        assert!(status.success());
        let zip = ZipArchive::open(file.path()).unwrap();
        assert_eq!(zip.entries().len(), 70_000);
        for i in [1, 2, 49, 50, 65_535, 65_536, 70_000] {
            let entry = zip.find(&format!("img_align_celeba/{i:06}.jpg")).unwrap();
            let expected = format!("jpeg {i} ").repeat(i % 50);
            assert_eq!(zip.read(entry).unwrap(), expected.as_bytes());
        }
    }

    fn info_zip_archive() {
        let dir = TempFile::new("infozip");
        let images = dir.path().join("img_align_celeba");
        std::fs::create_dir_all(&images).unwrap();
        let members: Vec<(String, Vec<u8>)> = (1..=5)
            .map(|i| {
                (
                    format!("img_align_celeba/{i:06}.jpg"),
                    noise(2_000 * i, i as u32),
                )
            })
            .chain([("notes.txt".to_string(), b"notes ".repeat(500))])
            .collect();
        for (name, data) in &members {
            std::fs::write(dir.path().join(name), data).unwrap();
        }
        // Writing to a pipe makes zip stream: data descriptors, as in some Kaggle archives.
        let output = std::process::Command::new("zip")
            .current_dir(dir.path())
            .args(["-q", "-r", "-", "img_align_celeba", "notes.txt"])
            .output()
            .unwrap();
        assert!(output.status.success());
        let archive = dir.path().join("out.zip");
        std::fs::write(&archive, output.stdout).unwrap();
        let zip = ZipArchive::open(&archive).unwrap();
        assert_eq!(zip.entries().len(), members.len());
        for (name, data) in &members {
            assert!(
                zip.read(zip.find(name).unwrap()).unwrap() == *data,
                "{name}"
            );
        }
    }
}
