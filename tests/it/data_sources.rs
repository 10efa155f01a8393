//! Where the photos come from: a folder, or a zip read in place in every layout CelebA's
//! downloads use (stored or deflated, streamed with data descriptors, ZIP64; archives made by
//! Python's zipfile and by Info-ZIP), damaged archives named with the fix, and CelebA's
//! partition file choosing the split.

use std::path::{Path, PathBuf};

use crate::common::*;
use dcgan::config::{Crop, CropRule, ResizeFilter};
use dcgan::data::{find_images, load_faces, ImageList, Preprocess, Split};

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

/// The first `n` committed faces as zip members under `prefix`, in reverse order: an archive
/// need not list its members sorted.
fn faces(prefix: &str, n: usize) -> Vec<(String, Vec<u8>)> {
    let files = find_images(&faces_dir()).unwrap();
    let mut m = zip_members(&files[..n], prefix);
    m.reverse();
    m
}

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

/// Three "images" (one compressible, one empty), a folder entry and a CSV, which is no image.
fn sample_members() -> Vec<(String, Vec<u8>)> {
    vec![
        ("img_align_celeba/".into(), Vec::new()),
        ("img_align_celeba/000002.jpg".into(), b"face ".repeat(2_000)),
        ("img_align_celeba/000001.jpg".into(), noise(5_000, 1)),
        ("img_align_celeba/empty.jpg".into(), Vec::new()),
        (
            "list_eval_partition.csv".into(),
            b"image_id,partition\n".to_vec(),
        ),
    ]
}

/// Every combination of deflated, streamed and ZIP64.
fn layouts() -> Vec<ZipLayout> {
    (0..8)
        .map(|bits| ZipLayout {
            deflate: bits & 1 != 0,
            streamed: bits & 2 != 0,
            zip64: bits & 4 != 0,
        })
        .collect()
}

fn u16_at(b: &[u8], i: usize) -> u16 {
    u16::from_le_bytes([b[i], b[i + 1]])
}

/// The flags and the first extra field's id of member `name`'s local header (the first
/// place its name appears).
fn local_header(bytes: &[u8], name: &str) -> (u16, Option<u16>) {
    let at = bytes
        .windows(name.len())
        .position(|w| w == name.as_bytes())
        .unwrap();
    let header = at - 30;
    assert_eq!(&bytes[header..header + 4], b"PK\x03\x04");
    let extra_len = u16_at(bytes, header + 28);
    let extra_id = (extra_len >= 4).then(|| u16_at(bytes, at + name.len()));
    (u16_at(bytes, header + 6), extra_id)
}

/// Where the first central directory entry starts.
fn first_central_entry(bytes: &[u8]) -> usize {
    bytes.windows(4).position(|w| w == b"PK\x01\x02").unwrap()
}

fn open_error(path: &Path) -> String {
    format!("{:#}", ImageList::open(path).expect_err("open should fail"))
}

/// Each layout reads back byte for byte, in sorted order, folders and non-images left out;
/// the archive really has the layout it claims.
#[test]
fn every_zip_layout_reads_back_byte_for_byte() {
    let tmp = tempdir().unwrap();
    let members = sample_members();
    let mut images: Vec<&(String, Vec<u8>)> = members
        .iter()
        .filter(|(n, _)| n.ends_with(".jpg"))
        .collect();
    images.sort();
    let mut stored_len = Vec::new();
    for layout in layouts() {
        let path = tmp.path().join("layout.zip");
        write_zip(&path, &members, layout);
        let bytes = std::fs::read(&path).unwrap();
        let (flags, extra) = local_header(&bytes, "img_align_celeba/000001.jpg");
        assert_eq!(
            flags & 8 != 0,
            layout.streamed,
            "{layout:?}: data descriptor flag"
        );
        assert_eq!(
            extra == Some(1),
            layout.zip64,
            "{layout:?}: ZIP64 extra field"
        );
        if layout.deflate {
            assert!(
                bytes.len() < stored_len.remove(0),
                "{layout:?}: not deflated"
            );
        } else {
            stored_len.push(bytes.len());
        }

        let list = ImageList::open(&path).unwrap();
        let names: Vec<&Path> = list.relative_names().collect();
        let expected: Vec<&Path> = images.iter().map(|(n, _)| Path::new(n)).collect();
        assert_eq!(names, expected, "{layout:?}");
        for (i, (name, data)) in images.iter().enumerate() {
            assert!(list.read(i).unwrap() == *data, "{layout:?} {name}");
            assert_eq!(list.label(i), format!("{}:{name}", path.display()));
        }
    }
}

#[test]
fn a_zip_gives_the_faces_of_its_unpacked_folder_byte_for_byte() {
    let tmp = tempdir().unwrap();
    let folder = ImageList::open(&faces_dir()).unwrap();
    let expected = pixels(&folder);
    assert_eq!(expected.len(), 300 * dcgan::data::face_bytes(64));
    // The official archive's layout, and Kaggle's (nested folder, streamed, ZIP64).
    let layouts = [
        ("img_align_celeba/", ZipLayout::default()),
        (
            "img_align_celeba/img_align_celeba/",
            ZipLayout {
                deflate: true,
                streamed: true,
                zip64: true,
            },
        ),
    ];
    for (prefix, layout) in layouts {
        let path = tmp.path().join("faces.zip");
        write_zip(&path, &faces(prefix, 300), layout);
        let zipped = ImageList::open(&path).unwrap();
        assert_eq!(zipped.len(), 300);
        assert_eq!(pixels(&zipped), expected, "{prefix} {layout:?}");
    }
}

#[test]
fn a_damaged_member_is_skipped_and_named() {
    let tmp = tempdir().unwrap();
    let m = faces("img/", 6);
    let path = tmp.path().join("damaged.zip");
    write_zip(&path, &m, ZipLayout::default());
    // Flip one byte inside the third member's stored data, after the archive was written.
    let (damaged, bytes) = &m[2];
    let mut archive = std::fs::read(&path).unwrap();
    let at = archive
        .windows(64)
        .position(|w| w == &bytes[1000..1064])
        .unwrap();
    archive[at] ^= 0x55;
    std::fs::write(&path, archive).unwrap();
    let faces = load_faces(&ImageList::open(&path).unwrap(), &prep()).unwrap();
    assert_eq!(faces.len(), 5);
    let (label, reason) = &faces.skipped[0];
    let label = label.display().to_string();
    assert!(label.ends_with(&format!(".zip:{damaged}")), "{label}");
    assert!(reason.contains("CRC"), "{reason}");
}

/// A flipped byte in a deflated member fails that member alone, with a one-line reason
/// that leaves naming the archive to the caller.
#[test]
fn a_flipped_byte_fails_only_that_member() {
    let tmp = tempdir().unwrap();
    let members = sample_members();
    for deflate in [false, true] {
        let path = tmp.path().join("flipped.zip");
        let layout = ZipLayout {
            deflate,
            ..ZipLayout::default()
        };
        write_zip(&path, &members, layout);
        let mut bytes = std::fs::read(&path).unwrap();
        // The local header of 000001.jpg: its data follows the name and extra field.
        let name = b"img_align_celeba/000001.jpg";
        let at = bytes.windows(name.len()).position(|w| w == name).unwrap();
        let header = at - 30;
        let packed = u32::from_le_bytes(bytes[header + 18..header + 22].try_into().unwrap());
        let start = at + name.len() + u16_at(&bytes, header + 28) as usize;
        bytes[start + packed as usize / 2] ^= 0x55;
        std::fs::write(&path, &bytes).unwrap();

        let list = ImageList::open(&path).unwrap();
        let err = list.read(0).unwrap_err();
        assert!(
            err.contains("CRC mismatch (damaged archive member)")
                || err.contains("(damaged archive member)"),
            "{err}"
        );
        assert!(!err.contains('\n') && !err.contains("dcgan-test"), "{err}");
        if !deflate {
            assert_eq!(err, "CRC mismatch (damaged archive member)");
        }
        assert!(list.read(1).unwrap() == members[1].1);
        assert!(list.read(2).unwrap().is_empty());
    }
}

#[test]
fn a_truncated_archive_is_named_with_the_fix() {
    let tmp = tempdir().unwrap();
    let path = tmp.path().join("truncated.zip");
    write_zip(&path, &faces("img/", 5), ZipLayout::default());
    let bytes = std::fs::read(&path).unwrap();

    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let err = open_error(&path);
    assert!(err.contains(&*path.to_string_lossy()), "{err}");
    assert!(
        err.contains("cut short") && err.contains("re-download"),
        "{err}"
    );

    // Bytes lost from the middle: the end record survives but points past the directory.
    let mut holed = bytes[..100].to_vec();
    holed.extend_from_slice(&bytes[1_100..]);
    std::fs::write(&path, &holed).unwrap();
    let err = open_error(&path);
    assert!(err.contains(&*path.to_string_lossy()), "{err}");
    assert!(
        err.contains("cut short") && err.contains("re-download"),
        "{err}"
    );
}

#[test]
fn a_file_that_is_no_zip_is_named_with_the_fix() {
    let tmp = tempdir().unwrap();
    let path = tmp.path().join("notzip.zip");
    for contents in [&b""[..], b"short", &noise(100_000, 7)] {
        std::fs::write(&path, contents).unwrap();
        let err = open_error(&path);
        assert!(err.contains(&*path.to_string_lossy()), "{err}");
        assert!(
            err.contains("not a zip archive") && err.contains("unpack it and pass the folder"),
            "{err}"
        );
    }
    let missing = tmp.path().join("missing.zip");
    let err = open_error(&missing);
    assert!(err.contains(&*missing.to_string_lossy()), "{err}");
}

#[test]
fn members_read_from_many_threads_at_once() {
    let tmp = tempdir().unwrap();
    let members: Vec<(String, Vec<u8>)> = (0..64)
        .map(|i| (format!("img/{i:06}.jpg"), noise(3_000 + i, i as u32)))
        .collect();
    let path = tmp.path().join("threads.zip");
    let layout = ZipLayout {
        deflate: true,
        ..ZipLayout::default()
    };
    write_zip(&path, &members, layout);
    let list = ImageList::open(&path).unwrap();
    std::thread::scope(|s| {
        for t in 0..8 {
            let (list, members) = (&list, &members);
            s.spawn(move || {
                for round in 0..20 {
                    let i = (t * 7 + round * 13) % members.len();
                    assert!(list.read(i).unwrap() == members[i].1);
                }
            });
        }
    });
}

/// Sets a 16-bit field of the first central directory entry.
fn patch_central(path: &Path, offset: usize, value: &[u8]) {
    let mut bytes = std::fs::read(path).unwrap();
    let at = first_central_entry(&bytes) + offset;
    bytes[at..at + value.len()].copy_from_slice(value);
    std::fs::write(path, bytes).unwrap();
}

/// Archives this reader cannot decode are refused when opened, naming the member.
#[test]
fn encrypted_and_unknown_methods_are_refused_by_name() {
    let tmp = tempdir().unwrap();
    let members = sample_members()[1..].to_vec();
    let path = tmp.path().join("encrypted.zip");
    write_zip(&path, &members, ZipLayout::default());
    patch_central(&path, 8, &(1u16 | 1 << 11).to_le_bytes());
    let err = open_error(&path);
    assert!(err.contains(&*path.to_string_lossy()), "{err}");
    assert!(
        err.contains("img_align_celeba/000002.jpg is encrypted"),
        "{err}"
    );
    assert!(err.contains("pass the folder"), "{err}");

    write_zip(&path, &members, ZipLayout::default());
    patch_central(&path, 10, &13u16.to_le_bytes());
    let err = open_error(&path);
    assert!(err.contains("img_align_celeba/000002.jpg"), "{err}");
    assert!(err.contains("compression method"), "{err}");
}

/// A size field that claims more than any image, or a header offset that misses its
/// header, fails that member with a reason.
#[test]
fn a_member_with_a_damaged_size_or_offset_is_refused() {
    let tmp = tempdir().unwrap();
    let members = sample_members()[1..].to_vec();
    let path = tmp.path().join("badentry.zip");
    write_zip(&path, &members, ZipLayout::default());
    let huge = 600u32 << 20;
    patch_central(
        &path,
        20,
        &[huge.to_le_bytes(), huge.to_le_bytes()].concat(),
    );
    let list = ImageList::open(&path).unwrap();
    let err = list.read(1).unwrap_err();
    assert!(err.contains("512 MiB"), "{err}");
    assert!(list.read(0).unwrap() == members[1].1);

    write_zip(&path, &members, ZipLayout::default());
    let bytes = std::fs::read(&path).unwrap();
    let at = first_central_entry(&bytes) + 42;
    let offset = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
    patch_central(&path, 42, &(offset + 1).to_le_bytes());
    let list = ImageList::open(&path).unwrap();
    let err = list.read(1).unwrap_err();
    assert!(err.contains("damaged archive"), "{err}");
    assert!(!err.contains('\n'), "{err}");
    assert!(list.read(0).unwrap() == members[1].1);
}

/// Archives written by real tools: Python's zipfile (deflated, with over 65,535 members so
/// it must write ZIP64 end records) and Info-ZIP writing to a pipe (data descriptors).
#[test]
fn archives_made_by_python_and_info_zip_are_read() {
    if tool_or_skip("python3", "--version") {
        python_archive();
    }
    if tool_or_skip("zip", "-v") {
        info_zip_archive();
    }
}

/// Whether `tool` runs here; where it does not, says so on the terminal, or fails where
/// `DCGAN_REQUIRE_ZIP_TOOLS=1` (as in CI).
fn tool_or_skip(tool: &str, version_flag: &str) -> bool {
    let found = std::process::Command::new(tool)
        .arg(version_flag)
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        let why = format!("{tool} is not installed, so archives made by it were NOT tested");
        skipped("DCGAN_REQUIRE_ZIP_TOOLS", &why);
    }
    found
}

fn python_archive() {
    let tmp = tempdir().unwrap();
    let path = tmp.path().join("python.zip");
    let script = "import sys, zipfile\n\
        with zipfile.ZipFile(sys.argv[1], 'w', zipfile.ZIP_DEFLATED) as z:\n\
        \x20   z.writestr('img_align_celeba/', b'')\n\
        \x20   for i in range(1, 70001):\n\
        \x20       z.writestr('img_align_celeba/%06d.jpg' % i, b'jpeg %d ' % i * (i % 50))\n";
    let status = std::process::Command::new("python3")
        .args(["-c", script])
        .arg(&path)
        .status()
        .unwrap();
    assert!(status.success());
    let bytes = std::fs::read(&path).unwrap();
    let end = &bytes[bytes.len() - 22..];
    assert_eq!(
        u16_at(end, 10),
        u16::MAX,
        "the member count lives in the ZIP64 record"
    );
    let list = ImageList::open(&path).unwrap();
    assert_eq!(list.len(), 70_000);
    for i in [1, 2, 49, 50, 65_535, 65_536, 70_000] {
        let expected = format!("jpeg {i} ").repeat(i % 50);
        assert_eq!(list.read(i - 1).unwrap(), expected.as_bytes());
        assert!(list
            .label(i - 1)
            .ends_with(&format!("img_align_celeba/{i:06}.jpg")));
    }
}

fn info_zip_archive() {
    let tmp = tempdir().unwrap();
    let images = tmp.path().join("img_align_celeba");
    std::fs::create_dir_all(&images).unwrap();
    let members: Vec<(String, Vec<u8>)> = (1..=5)
        .map(|i| {
            (
                format!("img_align_celeba/{i:06}.jpg"),
                noise(2_000 * i, i as u32),
            )
        })
        .collect();
    for (name, data) in &members {
        std::fs::write(tmp.path().join(name), data).unwrap();
    }
    std::fs::write(tmp.path().join("notes.txt"), b"notes ".repeat(500)).unwrap();
    // Writing to a pipe makes zip stream: data descriptors, as in some Kaggle archives.
    let output = std::process::Command::new("zip")
        .current_dir(tmp.path())
        .args(["-q", "-r", "-", "img_align_celeba", "notes.txt"])
        .output()
        .unwrap();
    assert!(output.status.success());
    let (flags, _) = local_header(&output.stdout, "img_align_celeba/000001.jpg");
    assert_ne!(flags & 8, 0, "Info-ZIP wrote no data descriptors");
    let archive = tmp.path().join("out.zip");
    std::fs::write(&archive, output.stdout).unwrap();
    let list = ImageList::open(&archive).unwrap();
    assert_eq!(list.len(), members.len());
    for (i, (_, data)) in members.iter().enumerate() {
        assert!(list.read(i).unwrap() == *data, "{}", list.label(i));
    }
}

#[test]
fn the_partition_file_selects_its_split() {
    let tmp = tempdir().unwrap();
    let images = tmp.path().join("img_align_celeba/img_align_celeba");
    std::fs::create_dir_all(&images).unwrap();
    let mut csv = String::from("image_id,partition\n");
    for (i, (name, bytes)) in faces("", 9).iter().enumerate() {
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
    let zip: PathBuf = tmp.path().join("archive.zip");
    let mut m = faces("img_align_celeba/img_align_celeba/", 9);
    m.push(("list_eval_partition.csv".into(), csv.clone().into_bytes()));
    write_zip(&zip, &m, ZipLayout::default());
    let (list, _) = ImageList::select(&zip, Some(Split::Valid), Split::Train, None, None).unwrap();
    assert_eq!(list.len(), 3);

    // Without a partition file, a split other than all is refused with the fix.
    let bare = ImageList::select(&faces_dir(), Some(Split::Valid), Split::Train, None, None);
    let err = format!("{:#}", bare.unwrap_err());
    assert!(err.contains("--partition FILE"), "{err}");
    let (all, used) = ImageList::select(&faces_dir(), None, Split::Train, None, Some(7)).unwrap();
    assert_eq!((all.len(), used), (7, Split::All));
}
