//! TensorBoard event files, written directly so that `tensorboard --logdir RUN` shows a run's
//! losses, scores and preview grids without TensorFlow or a Python process beside training.
//!
//! An event file is a sequence of TFRecords: a little-endian `u64` length, the masked
//! CRC-32C of those 8 bytes, the data (one protobuf `Event`), and the masked CRC-32C of the
//! data. The messages below declare only the fields of TensorFlow's `event.proto` and
//! `summary.proto` that dcgan writes, with the same field numbers, so readers decode them as
//! the real thing.

use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use prost::Message;

/// `tensorflow.Event`. Readers take the first event's `file_version` to know the format;
/// with version 2 TensorBoard also stops dropping events whose step goes backwards.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Event {
    #[prost(double, tag = "1")]
    pub wall_time: f64,
    #[prost(int64, tag = "2")]
    pub step: i64,
    #[prost(oneof = "What", tags = "3, 5")]
    pub what: Option<What>,
}

/// The `what` oneof of `tensorflow.Event`.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum What {
    #[prost(string, tag = "3")]
    FileVersion(String),
    #[prost(message, tag = "5")]
    Summary(Summary),
}

/// `tensorflow.Summary`: the values one step logs, sharing the event's step and time.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Summary {
    #[prost(message, repeated, tag = "1")]
    pub value: Vec<SummaryValue>,
}

/// `tensorflow.Summary.Value`: one tagged scalar or image.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SummaryValue {
    #[prost(string, tag = "1")]
    pub tag: String,
    #[prost(oneof = "ValueKind", tags = "2, 4")]
    pub kind: Option<ValueKind>,
}

/// The `value` oneof of `tensorflow.Summary.Value`.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum ValueKind {
    #[prost(float, tag = "2")]
    SimpleValue(f32),
    #[prost(message, tag = "4")]
    Image(SummaryImage),
}

/// `tensorflow.Summary.Image`: an encoded PNG and its size, which TensorBoard shows as is.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SummaryImage {
    #[prost(int32, tag = "1")]
    pub height: i32,
    #[prost(int32, tag = "2")]
    pub width: i32,
    /// 1 grey, 2 grey + alpha, 3 RGB, 4 RGBA.
    #[prost(int32, tag = "3")]
    pub colorspace: i32,
    #[prost(bytes = "vec", tag = "4")]
    pub encoded_image_string: Vec<u8>,
}

/// What the first record of every file says, so readers know the format (and TensorBoard
/// does not purge "orphaned" events when a step repeats).
const FILE_VERSION: &str = "brain.Event:2";

/// CRC-32C (Castagnoli, the iSCSI polynomial), which TFRecord uses rather than zlib's CRC-32.
const CRC32C: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI);

/// The length header: `u64` length and its masked CRC.
const HEADER: usize = 12;
/// The data's masked CRC after it.
const FOOTER: usize = 4;

/// TFRecord's masked CRC-32C: rotated and offset so that a CRC over data that itself holds
/// CRCs does not degenerate.
fn masked_crc(bytes: &[u8]) -> u32 {
    let crc = CRC32C.checksum(bytes);
    // (crc >> 15) | (crc << 17), as TensorFlow's crc32c::Mask writes it.
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// Seconds since the Unix epoch, as TensorBoard's `wall_time` wants them.
fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Appends events to one TensorBoard event file, counting the bytes so that a checkpoint
/// can record how far the file belongs to it.
pub struct EventWriter {
    path: PathBuf,
    out: BufWriter<File>,
    /// Bytes of whole records written so far (flushed or not).
    len: u64,
}

impl EventWriter {
    /// New file `events.out.tfevents.<unix secs>.dcgan` in `dir` (file_version record first).
    /// Never overwrites: a file of that name already there is an error.
    pub fn create(dir: &Path) -> Result<Self> {
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let path = dir.join(format!("events.out.tfevents.{secs}.dcgan"));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .with_context(|| format!("cannot create event file {}", path.display()))?;
        let mut w = Self {
            path,
            out: BufWriter::new(file),
            len: 0,
        };
        w.write_file_version()
            .with_context(|| format!("cannot write {}", w.path.display()))?;
        Ok(w)
    }

    /// Reopen an existing event file, cut back to `len` bytes (what a checkpoint recorded),
    /// appending after it: events a killed run wrote past its checkpoint would otherwise show
    /// twice once the resumed run logs those steps again. Errors name the file when it is
    /// missing, shorter than `len`, or `len` does not end a record.
    pub fn resume(path: &Path, len: u64) -> Result<Self> {
        let name = path.display();
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .with_context(|| format!("cannot open event file {name} to resume it"))?;
        let actual = file
            .metadata()
            .with_context(|| format!("cannot stat {name}"))?
            .len();
        if actual < len {
            bail!("event file {name} has {actual} bytes, fewer than the {len} the checkpoint recorded");
        }
        check_record_ends(&mut file, len).with_context(|| format!("cannot resume {name}"))?;
        file.set_len(len)
            .with_context(|| format!("cannot cut {name} back to {len} bytes"))?;
        file.seek(SeekFrom::End(0))?;
        let mut w = Self {
            path: path.to_path_buf(),
            out: BufWriter::new(file),
            len,
        };
        if len == 0 {
            w.write_file_version()
                .with_context(|| format!("cannot write {name}"))?;
        }
        Ok(w)
    }

    /// One scalar; see [`Self::scalars`] to log a step's several scalars in one event.
    pub fn scalar(&mut self, step: u64, tag: &str, value: f32) -> io::Result<()> {
        self.scalars(step, &[(tag, value)])
    }

    /// Several scalars of one step in one event, which is smaller than an event apiece.
    pub fn scalars(&mut self, step: u64, values: &[(&str, f32)]) -> io::Result<()> {
        let value = values
            .iter()
            .map(|&(tag, v)| SummaryValue {
                tag: tag.to_string(),
                kind: Some(ValueKind::SimpleValue(v)),
            })
            .collect();
        self.write_summary(step, Summary { value })
    }

    /// PNG bytes already encoded, with its width/height (colorspace 3 = RGB).
    pub fn image(
        &mut self,
        step: u64,
        tag: &str,
        png: &[u8],
        width: u32,
        height: u32,
    ) -> io::Result<()> {
        let image = SummaryImage {
            height: i32::try_from(height).map_err(|_| invalid("image height"))?,
            width: i32::try_from(width).map_err(|_| invalid("image width"))?,
            colorspace: 3,
            encoded_image_string: png.to_vec(),
        };
        let value = vec![SummaryValue {
            tag: tag.to_string(),
            kind: Some(ValueKind::Image(image)),
        }];
        self.write_summary(step, Summary { value })
    }

    /// Flushes to the OS and returns the file's length in bytes (what a checkpoint records).
    pub fn flush(&mut self) -> io::Result<u64> {
        self.out.flush()?;
        Ok(self.len)
    }

    /// Like [`Self::flush`], and also waits for the disk, so that a checkpoint written after
    /// it never records more bytes than survive a power cut.
    pub fn sync(&mut self) -> io::Result<u64> {
        self.flush()?;
        self.out.get_ref().sync_data()?;
        Ok(self.len)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Just the file name, to store in a manifest that may move with the run folder.
    pub fn file_name(&self) -> String {
        self.path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    fn write_file_version(&mut self) -> io::Result<()> {
        let what = Some(What::FileVersion(FILE_VERSION.to_string()));
        self.write_event(&Event {
            wall_time: now(),
            step: 0,
            what,
        })
    }

    fn write_summary(&mut self, step: u64, summary: Summary) -> io::Result<()> {
        let step = i64::try_from(step).map_err(|_| invalid("step"))?;
        self.write_event(&Event {
            wall_time: now(),
            step,
            what: Some(What::Summary(summary)),
        })
    }

    /// Frames one event as a record. After an error the file may end in part of a record;
    /// `resume` from the last checkpoint cuts it away.
    fn write_event(&mut self, event: &Event) -> io::Result<()> {
        let data = event.encode_to_vec();
        let len = (data.len() as u64).to_le_bytes();
        self.out.write_all(&len)?;
        self.out.write_all(&masked_crc(&len).to_le_bytes())?;
        self.out.write_all(&data)?;
        self.out.write_all(&masked_crc(&data).to_le_bytes())?;
        self.len += (HEADER + data.len() + FOOTER) as u64;
        Ok(())
    }
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("{what} too large for an event file"),
    )
}

/// Walks the record headers up to `len` (skipping over the data) and fails unless a record
/// ends exactly there, so that a resumed file never continues from inside a record.
fn check_record_ends(file: &mut File, len: u64) -> Result<()> {
    file.rewind()?;
    let mut reader = BufReader::new(file);
    let mut offset = 0u64;
    while offset < len {
        let mut header = [0u8; HEADER];
        reader
            .read_exact(&mut header)
            .with_context(|| format!("record at byte {offset} is cut short"))?;
        let size = u64::from_le_bytes(header[..8].try_into().unwrap());
        if masked_crc(&header[..8]) != u32::from_le_bytes(header[8..].try_into().unwrap()) {
            bail!("record at byte {offset} has a damaged length");
        }
        let skip = size.saturating_add(FOOTER as u64);
        reader.seek_relative(i64::try_from(skip).context("record length out of range")?)?;
        offset = offset.saturating_add(HEADER as u64 + skip);
    }
    if offset != len {
        bail!("{len} bytes is not the end of a record (the record before ends at byte {offset})");
    }
    Ok(())
}

/// Reads back every record of an event file (for tests and for resume checks), decoded,
/// verifying both CRCs; an error names the file and the byte offset of the damaged record.
pub fn read_events(path: &Path) -> Result<Vec<Event>> {
    let bytes = std::fs::read(path)
        .with_context(|| format!("cannot read event file {}", path.display()))?;
    let mut events = Vec::new();
    let mut offset = 0usize;
    while offset < bytes.len() {
        let (event, size) = decode_record(&bytes[offset..]).with_context(|| {
            format!(
                "event file {} has a damaged record at byte {offset}",
                path.display()
            )
        })?;
        events.push(event);
        offset += size;
    }
    Ok(events)
}

/// Decodes the record at the start of `bytes`, returning it and its size in bytes.
fn decode_record(bytes: &[u8]) -> Result<(Event, usize)> {
    let crc_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
    if bytes.len() < HEADER {
        bail!("its length header is cut short");
    }
    if masked_crc(&bytes[..8]) != crc_at(8) {
        bail!("its length fails its CRC");
    }
    let size = u64::from_le_bytes(bytes[..8].try_into().unwrap());
    let end = usize::try_from(size)
        .ok()
        .and_then(|s| s.checked_add(HEADER + FOOTER))
        .filter(|&end| end <= bytes.len())
        .context("its data is cut short")?;
    let data = &bytes[HEADER..end - FOOTER];
    if masked_crc(data) != crc_at(end - FOOTER) {
        bail!("its data fails its CRC");
    }
    Ok((
        Event::decode(data).context("its data is not an Event")?,
        end,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh, empty folder of its own for each test.
    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("dcgan-tb-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn scalar_of(event: &Event) -> Vec<(String, f32)> {
        let Some(What::Summary(s)) = &event.what else {
            return Vec::new();
        };
        s.value
            .iter()
            .filter_map(|v| match v.kind {
                Some(ValueKind::SimpleValue(x)) => Some((v.tag.clone(), x)),
                _ => None,
            })
            .collect()
    }

    fn steps(path: &Path) -> Vec<i64> {
        read_events(path).unwrap().iter().map(|e| e.step).collect()
    }

    #[test]
    fn crc32c_matches_known_vectors() {
        // The standard check value, and RFC 3720 (iSCSI) B.4's 32 zero bytes and 32 0xFF bytes.
        assert_eq!(CRC32C.checksum(b"123456789"), 0xE306_9283);
        assert_eq!(CRC32C.checksum(&[0u8; 32]), 0x8A91_36AA);
        assert_eq!(CRC32C.checksum(&[0xFFu8; 32]), 0x62A8_AB43);
        // Masked values computed by the `tensorboard` Python package's own record writer
        // (tensorboard.summary.writer.record_writer.masked_crc32c).
        assert_eq!(masked_crc(b"123456789"), 0xC78A_B0E5);
        assert_eq!(masked_crc(&24u64.to_le_bytes()), 0x224B_7FA3);
    }

    #[test]
    fn events_round_trip() {
        let dir = scratch("round-trip");
        let mut w = EventWriter::create(&dir).unwrap();
        assert!(w.file_name().starts_with("events.out.tfevents."));
        assert!(w.file_name().ends_with(".dcgan"));
        w.scalar(1, "loss/d", std::f32::consts::LN_2).unwrap();
        w.scalars(2, &[("loss/d", 1.5), ("loss/g", -0.25)]).unwrap();
        w.image(2, "preview", b"\x89PNG fake", 66, 34).unwrap();
        let len = w.flush().unwrap();
        assert_eq!(len, std::fs::metadata(w.path()).unwrap().len());

        let events = read_events(w.path()).unwrap();
        assert_eq!(events.len(), 4);
        assert_eq!(
            events[0].what,
            Some(What::FileVersion("brain.Event:2".into()))
        );
        assert!(events[0].wall_time > 1.6e9, "wall_time is Unix seconds");
        assert_eq!(
            (events[1].step, scalar_of(&events[1])),
            (1, vec![("loss/d".into(), std::f32::consts::LN_2)])
        );
        let two = vec![("loss/d".to_string(), 1.5), ("loss/g".to_string(), -0.25)];
        assert_eq!((events[2].step, scalar_of(&events[2])), (2, two));
        let Some(What::Summary(s)) = &events[3].what else {
            panic!("not a summary")
        };
        let image = SummaryImage {
            height: 34,
            width: 66,
            colorspace: 3,
            encoded_image_string: b"\x89PNG fake".to_vec(),
        };
        assert_eq!(
            s.value,
            vec![SummaryValue {
                tag: "preview".into(),
                kind: Some(ValueKind::Image(image))
            }]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn resume_cuts_back_and_appends() {
        let dir = scratch("resume");
        let mut w = EventWriter::create(&dir).unwrap();
        for step in 1..=3 {
            w.scalar(step, "loss/g", step as f32).unwrap();
        }
        let recorded = w.flush().unwrap();
        for step in 4..=5 {
            w.scalar(step, "loss/g", step as f32).unwrap();
        }
        w.flush().unwrap();
        let path = w.path().to_path_buf();
        drop(w);
        assert_eq!(steps(&path), [0, 1, 2, 3, 4, 5]);

        let mut w = EventWriter::resume(&path, recorded).unwrap();
        w.scalar(4, "loss/g", 40.0).unwrap();
        let len = w.flush().unwrap();
        assert_eq!(len, std::fs::metadata(&path).unwrap().len());
        let events = read_events(&path).unwrap();
        assert_eq!(
            events.iter().map(|e| e.step).collect::<Vec<_>>(),
            [0, 1, 2, 3, 4]
        );
        assert_eq!(scalar_of(&events[3]), [("loss/g".to_string(), 3.0)]);
        assert_eq!(scalar_of(&events[4]), [("loss/g".to_string(), 40.0)]);
        drop(w);

        // Longer than the file, inside a record, or no file at all: refused, naming the file.
        let long = EventWriter::resume(&path, len + 1)
            .err()
            .unwrap()
            .to_string();
        assert!(
            long.contains(&path.display().to_string()) && long.contains("fewer"),
            "{long}"
        );
        let inside = format!(
            "{:#}",
            EventWriter::resume(&path, recorded - 1).err().unwrap()
        );
        assert!(
            inside.contains(&path.display().to_string()) && inside.contains("not the end"),
            "{inside}"
        );
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            len,
            "a refused resume cuts nothing"
        );
        let gone = dir.join("events.out.tfevents.0.dcgan");
        let missing = EventWriter::resume(&gone, 0).err().unwrap().to_string();
        assert!(missing.contains(&gone.display().to_string()), "{missing}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn resume_at_zero_starts_with_the_file_version() {
        let dir = scratch("resume-zero");
        let path = EventWriter::create(&dir).unwrap().path().to_path_buf();
        let mut w = EventWriter::resume(&path, 0).unwrap();
        w.scalar(1, "loss/d", 1.0).unwrap();
        w.flush().unwrap();
        let events = read_events(&path).unwrap();
        assert_eq!(events[0].what, Some(What::FileVersion(FILE_VERSION.into())));
        assert_eq!(events.len(), 2);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn damage_is_detected_and_located() {
        let dir = scratch("damage");
        let mut w = EventWriter::create(&dir).unwrap();
        let first = w.flush().unwrap();
        w.scalar(1, "loss/d", 0.5).unwrap();
        let second = w.flush().unwrap();
        w.scalar(2, "loss/d", 0.25).unwrap();
        w.flush().unwrap();
        let path = w.path().to_path_buf();
        drop(w);
        let good = std::fs::read(&path).unwrap();

        // A flipped byte in the second record's data, then in the third record's length.
        for (at, record, what) in [(first + 14, first, "data"), (second + 1, second, "length")] {
            let mut bad = good.clone();
            bad[at as usize] ^= 0x01;
            std::fs::write(&path, &bad).unwrap();
            let err = format!("{:#}", read_events(&path).unwrap_err());
            assert!(err.contains(&path.display().to_string()), "{err}");
            assert!(err.contains(&format!("at byte {record}")), "{err}");
            assert!(err.contains(what), "{err}");
        }
        // A file cut inside its last record.
        std::fs::write(&path, &good[..good.len() - 2]).unwrap();
        let err = format!("{:#}", read_events(&path).unwrap_err());
        assert!(
            err.contains(&format!("at byte {second}")) && err.contains("cut short"),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
