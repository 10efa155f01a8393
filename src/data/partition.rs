//! CelebA's official train/valid/test split, so results are comparable with published ones and
//! evaluation never sees a training face.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{bail, Context, Result};

pub use crate::config::Split;

/// The names CelebA's partition list goes by: the official Google Drive release ships the
/// `.txt`, Kaggle's archive the `.csv`.
pub const FILE_NAMES: [&str; 2] = ["list_eval_partition.txt", "list_eval_partition.csv"];

/// Which partition each image belongs to, keyed by file name ("000001.jpg").
#[derive(Clone, Debug, Default)]
pub struct Partition {
    of: HashMap<String, u8>,
}

const EXPECTED: &str = "expected \"<image file name> <partition 0, 1 or 2>\", e.g. \"000001.jpg 0\" or \"000001.jpg,0\"";

impl Partition {
    /// Both formats: the official "000001.jpg 0" (whitespace separated), and Kaggle's CSV with a
    /// header line "image_id,partition" then "000001.jpg,0". Blank lines ignored; a bad line is
    /// an error naming origin and line number and what was expected; partition values other
    /// than 0/1/2 refused.
    ///
    /// A wrong split would silently mix test faces into training, so nothing is guessed: a
    /// line either parses fully or the whole file is refused.
    pub fn parse(text: &str, origin: &str) -> Result<Self> {
        let mut of = HashMap::new();
        let mut first = true;
        for (index, line) in text.lines().enumerate() {
            let line = line.trim().trim_start_matches('\u{feff}');
            if line.is_empty() {
                continue;
            }
            let header = std::mem::replace(&mut first, false);
            if header && is_csv_header(line) {
                continue;
            }
            let n = index + 1;
            let (name, part) =
                parse_line(line).map_err(|why| anyhow::anyhow!("{origin}, line {n}: {why}"))?;
            if let Some(old) = of.insert(name.to_string(), part) {
                if old != part {
                    bail!("{origin}, line {n}: {name} is listed again, in partition {part} after {old}; the file is damaged, re-download it");
                }
            }
        }
        if of.is_empty() {
            bail!("{origin}: lists no images (empty file?); {EXPECTED}, one image a line");
        }
        Ok(Self { of })
    }

    /// Reads and parses a partition file; errors name the file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the partition file {}", path.display()))?;
        Self::parse(&text, &path.display().to_string())
    }

    /// How many images are listed.
    pub fn len(&self) -> usize {
        self.of.len()
    }

    pub fn is_empty(&self) -> bool {
        self.of.is_empty()
    }

    /// Whether the image with this file name (the last path component, e.g. "000001.jpg")
    /// belongs to `split`. All keeps everything; a file the partition does not list is not in
    /// any split (false) except All.
    ///
    /// A longer path (a zip member name, say) is cut to its last component first, so callers
    /// need not.
    pub fn keeps(&self, split: Split, file_name: &str) -> bool {
        let Some(wanted) = split.number() else {
            return true;
        };
        let base = file_name.rsplit(['/', '\\']).next().unwrap_or(file_name);
        self.of.get(base) == Some(&wanted)
    }

    /// How many listed images each split has: [train, valid, test].
    pub fn counts(&self) -> [usize; 3] {
        let mut counts = [0; 3];
        for &part in self.of.values() {
            counts[usize::from(part)] += 1;
        }
        counts
    }
}

/// Kaggle's CSV starts with a header; matched loosely (case, spaces) since it names columns,
/// not images.
fn is_csv_header(line: &str) -> bool {
    let fields: Vec<String> = line
        .split(',')
        .map(|f| f.trim().trim_matches('"').to_ascii_lowercase())
        .collect();
    fields == ["image_id", "partition"]
}

/// Splits "name 0" or "name,0" into its two fields, refusing anything but exactly two with
/// a second of 0, 1 or 2.
fn parse_line(line: &str) -> Result<(&str, u8), String> {
    let fields: Vec<&str> = if line.contains(',') {
        line.split(',').map(str::trim).collect()
    } else {
        line.split_whitespace().collect()
    };
    let malformed = || format!("{EXPECTED}, found \"{}\"", shorten(line));
    let [name, part] = fields[..] else {
        return Err(malformed());
    };
    let name = name.trim_matches('"');
    if name.is_empty() {
        return Err(malformed());
    }
    let part = match part.trim_matches('"') {
        "0" => 0,
        "1" => 1,
        "2" => 2,
        other => {
            return Err(format!(
                "partition \"{}\" for {name} is not 0 (train), 1 (valid) or 2 (test)",
                shorten(other)
            ))
        }
    };
    Ok((name, part))
}

/// Keeps error messages one readable line when a binary or huge line is fed in by mistake.
fn shorten(line: &str) -> String {
    const MAX: usize = 60;
    match line.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}...", &line[..cut]),
        None => line.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OFFICIAL: &str = "000001.jpg 0\n000002.jpg 0\n\n162771.jpg 1\n182638.jpg   2\n";
    const KAGGLE: &str =
        "image_id,partition\r\n000001.jpg,0\r\n000002.jpg,0\r\n162771.jpg,1\r\n182638.jpg,2\r\n";

    fn error_of(text: &str, origin: &str) -> String {
        format!(
            "{:#}",
            Partition::parse(text, origin).expect_err("should fail")
        )
    }

    #[test]
    fn both_formats_parse_to_the_same_map() {
        let official = Partition::parse(OFFICIAL, "list_eval_partition.txt").unwrap();
        let kaggle = Partition::parse(KAGGLE, "list_eval_partition.csv").unwrap();
        assert_eq!(official.of, kaggle.of);
        assert_eq!(official.len(), 4);
        assert!(!official.is_empty());
        assert_eq!(official.counts(), [2, 1, 1]);
        assert_eq!(kaggle.counts(), [2, 1, 1]);
    }

    #[test]
    fn keeps_each_split() {
        let p = Partition::parse(OFFICIAL, "test").unwrap();
        let cases = [
            ("000001.jpg", [true, false, false]),
            ("162771.jpg", [false, true, false]),
            ("182638.jpg", [false, false, true]),
            ("999999.jpg", [false, false, false]),
        ];
        for (name, expected) in cases {
            let got = [Split::Train, Split::Valid, Split::Test].map(|s| p.keeps(s, name));
            assert_eq!(got, expected, "{name}");
            assert!(p.keeps(Split::All, name), "{name}");
        }
        assert!(p.keeps(Split::Valid, "img_align_celeba/img_align_celeba/162771.jpg"));
        assert!(p.keeps(Split::Test, r"C:\celeba\182638.jpg"));
    }

    #[test]
    fn split_names_match_clap_and_serde() {
        use clap::ValueEnum;
        use serde::de::IntoDeserializer;
        use serde::Deserialize;
        for split in Split::value_variants() {
            let clap_name = split.to_possible_value().unwrap().get_name().to_string();
            assert_eq!(clap_name, split.name());
            let text: serde::de::value::StrDeserializer<serde::de::value::Error> =
                split.name().into_deserializer();
            assert_eq!(Split::deserialize(text).unwrap(), *split);
        }
        assert_eq!(Split::default(), Split::Train);
    }

    #[test]
    fn malformed_line_names_origin_and_line() {
        let err = error_of("000001.jpg 0\n\n000002.jpg\n", "list_eval_partition.txt");
        assert!(err.contains("list_eval_partition.txt, line 3"), "{err}");
        assert!(
            err.contains("expected") && err.contains("000002.jpg"),
            "{err}"
        );

        let err = error_of("image_id,partition\n000001.jpg,0,extra\n", "kaggle.csv");
        assert!(err.contains("kaggle.csv, line 2"), "{err}");
    }

    #[test]
    fn partition_three_is_refused() {
        let err = error_of("000001.jpg 0\n000002.jpg 3\n", "list_eval_partition.txt");
        assert!(err.contains("list_eval_partition.txt, line 2"), "{err}");
        assert!(err.contains("partition \"3\" for 000002.jpg"), "{err}");
        assert!(err.contains("0 (train), 1 (valid) or 2 (test)"), "{err}");
        let err = error_of("000001.jpg -1\n", "p.txt");
        assert!(err.contains("p.txt, line 1"), "{err}");
    }

    #[test]
    fn empty_file_is_refused() {
        for text in ["", "\n  \n", "image_id,partition\n"] {
            let err = error_of(text, "list_eval_partition.csv");
            assert!(err.contains("list_eval_partition.csv"), "{err}");
            assert!(err.contains("lists no images"), "{err}");
        }
    }

    #[test]
    fn conflicting_duplicate_is_refused() {
        let err = error_of("000001.jpg 0\n000001.jpg 2\n", "p.txt");
        assert!(
            err.contains("p.txt, line 2") && err.contains("000001.jpg"),
            "{err}"
        );
        let same = Partition::parse("000001.jpg 0\n000001.jpg 0\n", "p.txt").unwrap();
        assert_eq!(same.len(), 1);
    }

    #[test]
    fn load_names_the_file() {
        let path = std::env::temp_dir().join(format!(
            "dcgan-partition-test-{}-missing.txt",
            std::process::id()
        ));
        let err = format!("{:#}", Partition::load(&path).unwrap_err());
        assert!(err.contains(&*path.to_string_lossy()), "{err}");

        let path = path.with_file_name(format!(
            "dcgan-partition-test-{}-bad.txt",
            std::process::id()
        ));
        std::fs::write(&path, "000001.jpg 7\n").unwrap();
        let result = Partition::load(&path);
        std::fs::remove_file(&path).unwrap();
        let err = format!("{:#}", result.unwrap_err());
        assert!(
            err.contains(&format!("{}, line 1", path.display())),
            "{err}"
        );
    }
}
