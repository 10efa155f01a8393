//! Sample-quality metrics on 64x64 RGB faces (row-major HWC u8, packed back to back): the
//! sliced Wasserstein distance (SWD) of Karras et al. 2018, "Progressive Growing of GANs",
//! after their `metrics/sliced_wasserstein.py`, and a memorisation ("copy") check asking
//! whether generated faces sit nearer the training faces than unseen real faces do.

use rand::{rngs::StdRng, Rng, SeedableRng};
use rayon::prelude::*;

use crate::data::{FACE_BYTES as FACE, SIZE as SIDE};
use crate::rng::{mix64, standard_normal_f64};

const PIXELS: usize = SIDE * SIDE;
/// The 1-D factor of Karras's 5x5 Gaussian ([1,4,6,4,1] outer itself, / 256).
const TAPS: [f32; 5] = [1.0 / 16.0, 4.0 / 16.0, 6.0 / 16.0, 4.0 / 16.0, 1.0 / 16.0];
/// Directions (or training faces) handled together in one pass over the rows.
const GROUP: usize = 32;

/// SWD settings. `Default` is Karras's: 7x7 patches, 128 per image and level, levels down to
/// 16x16, and 4 repeats of 128 random directions (512 projections in all).
#[derive(Clone, Debug)]
pub struct SwdConfig {
    pub patch: usize,
    pub descriptors_per_image: usize,
    /// Directions drawn per repeat (Karras's `dirs_per_repeat`).
    pub directions: usize,
    pub repeats: usize,
    pub min_resolution: usize,
}

impl Default for SwdConfig {
    fn default() -> Self {
        Self {
            patch: 7,
            descriptors_per_image: 128,
            directions: 128,
            repeats: 4,
            min_resolution: 16,
        }
    }
}

/// SWD x 1e3 per level (64: finest Laplacian band ... 16: coarsest, the Gaussian level itself)
/// and their mean, as Karras prints them.
#[derive(Clone, Debug, PartialEq)]
pub struct SwdReport {
    pub levels: Vec<(usize, f64)>,
    pub mean: f64,
}

/// Sliced Wasserstein distance between two sets of faces, the same for the same `seed`
/// (whatever the thread count). Patch positions come from a random stream per (seed, set,
/// level, face), directions from one per (seed, level). As in `finalize_descriptors`,
/// each set's descriptors are normalised with that set's own per-channel mean and std; if the
/// sets differ in size, the larger's descriptors are then subsampled to the smaller count.
pub fn swd(a: &[u8], b: &[u8], cfg: &SwdConfig, seed: u64) -> SwdReport {
    let ok = |x: &[u8]| !x.is_empty() && x.len().is_multiple_of(FACE);
    assert!(ok(a) && ok(b), "swd takes 1+ faces per set");
    let sizes = cfg.patch % 2 == 1 && cfg.patch <= cfg.min_resolution && cfg.min_resolution <= SIDE;
    let counts = cfg.descriptors_per_image * cfg.directions * cfg.repeats > 0;
    assert!(
        sizes && counts,
        "odd patch <= min_resolution <= 64, counts > 0"
    );
    let res: Vec<usize> = std::iter::successors(Some(SIDE), |r| Some(r / 2))
        .take_while(|&r| r >= cfg.min_resolution)
        .collect();
    let dim = 3 * cfg.patch * cfg.patch;
    let mut levels = vec![];
    for (l, &r) in res.iter().enumerate() {
        let top = res.len().min(l + 2); // levels past l + 1 do not change level l
        let da = descriptors(a, (l, top), cfg, [seed, 0]);
        let db = descriptors(b, (l, top), cfg, [seed, 1]);
        let (keep, mut rng) = (da.len().min(db.len()) / dim, stream(seed, &[3, l as u64]));
        let da = subsample(da, dim, keep, &mut rng);
        let db = subsample(db, dim, keep, &mut rng);
        let dist = sliced(&da, &db, dim, cfg, stream(seed, &[2, l as u64]));
        levels.push((r, 1e3 * dist));
    }
    let mean = levels.iter().map(|l| l.1).sum::<f64>() / levels.len() as f64;
    SwdReport { levels, mean }
}

fn stream(seed: u64, tags: &[u64]) -> StdRng {
    let mix2 = |s, &t| mix64(s ^ mix64(t ^ 0x9e3779b97f4a7c15));
    StdRng::seed_from_u64(tags.iter().fold(mix64(seed), mix2))
}

/// One s x s plane blurred by TAPS (times `gain`) along both axes; borders mirrored about the
/// edge pixel, as scipy's mode="mirror" (cv2's BORDER_REFLECT_101).
fn blur(p: &[f32], s: usize, gain: f32) -> Vec<f32> {
    let m = |i: usize| i.abs_diff(2).min(2 * s - 2 - i.abs_diff(2)); // padded index -> source
    let t = TAPS.map(|t| t * gain);
    let (mut tmp, mut out, mut pad) = (vec![0.0; s * s], vec![0.0; s * s], vec![0.0; s + 4]);
    for (row, o) in p.chunks(s).zip(tmp.chunks_mut(s)) {
        pad.iter_mut().enumerate().for_each(|(i, v)| *v = row[m(i)]);
        let mut x = 0; // `while` loops here and in `project`: no calls in debug builds
        while x < s {
            let w = &pad[x..x + 5];
            o[x] = t[0] * w[0] + t[1] * w[1] + t[2] * w[2] + t[3] * w[3] + t[4] * w[4];
            x += 1;
        }
    }
    for (y, o) in out.chunks_mut(s).enumerate() {
        let (r, mut x) = ([0, 1, 2, 3, 4].map(|k| &tmp[m(y + k) * s..][..s]), 0);
        while x < s {
            o[x] =
                t[0] * r[0][x] + t[1] * r[1][x] + t[2] * r[2][x] + t[3] * r[3][x] + t[4] * r[4][x];
            x += 1;
        }
    }
    out
}

/// Karras's `generate_laplacian_pyramid` of one face: CHW levels of [0, 255]-scale floats,
/// finest first; each but the last is image - pyr_up(pyr_down(image)).
fn laplacian_pyramid(face: &[u8], levels: usize) -> Vec<Vec<f32>> {
    let chw = (0..FACE).map(|i| face[(i % PIXELS) * 3 + i / PIXELS] as f32);
    let (mut pyr, mut s) = (vec![chw.collect::<Vec<f32>>()], SIDE);
    for _ in 1..levels {
        let (h, mut down) = (s / 2, vec![]);
        for plane in pyr.last_mut().unwrap().chunks_mut(s * s) {
            let (blurred, mut up) = (blur(plane, s, 1.0), vec![0.0; s * s]);
            for i in 0..h * h {
                let at = (i / h) * 2 * s + (i % h) * 2; // even rows and columns
                up[at] = blurred[at];
                down.push(blurred[at]);
            }
            let up = blur(&up, s, 2.0);
            plane.iter_mut().zip(up).for_each(|(p, u)| *p -= u);
        }
        pyr.push(down);
        s = h;
    }
    pyr
}

/// Karras's `get_descriptors_for_minibatch` (random patches of level `lvl.0` of pyramids
/// `lvl.1` deep) then `finalize_descriptors`.
fn descriptors(faces: &[u8], lvl: (usize, usize), cfg: &SwdConfig, seed: [u64; 2]) -> Vec<f32> {
    let (p, s, pp) = (cfg.patch, SIDE >> lvl.0, cfg.patch * cfg.patch);
    let per_face = cfg.descriptors_per_image * 3 * pp;
    let mut out = vec![0.0f32; faces.len() / FACE * per_face];
    let jobs = out.par_chunks_mut(per_face).zip(faces.par_chunks(FACE));
    jobs.enumerate().for_each(|(i, (out, face))| {
        let level = &laplacian_pyramid(face, lvl.1)[lvl.0];
        let mut rng = stream(seed[0], &[seed[1], lvl.0 as u64, i as u64]);
        for d in out.chunks_mut(3 * pp) {
            let (y, x) = (rng.random_range(0..=s - p), rng.random_range(0..=s - p));
            for (dy, row) in d.chunks_mut(p).enumerate() {
                let at = (dy / p) * s * s + (y + dy % p) * s + x; // channel dy / p
                row.copy_from_slice(&level[at..at + p]);
            }
        }
    });
    // Per channel (a run of p*p values in each descriptor): subtract the mean and divide by
    // the population std over this set. Fixed chunks keep the sums deterministic.
    let part = |c: &[f32]| {
        let mut s = [0.0f64; 6];
        for (i, &v) in c.iter().enumerate() {
            let k = 2 * (i / pp % 3);
            (s[k], s[k + 1]) = (s[k] + v as f64, s[k + 1] + v as f64 * v as f64);
        }
        s
    };
    let parts: Vec<[f64; 6]> = out.par_chunks(3 * pp * 256).map(part).collect();
    let n = (out.len() / 3) as f64;
    let stats = [0, 2, 4].map(|k| {
        let mean = parts.iter().map(|s| s[k]).sum::<f64>() / n;
        let square = parts.iter().map(|s| s[k + 1]).sum::<f64>() / n;
        (mean, (square - mean * mean).max(0.0).sqrt().max(1e-12))
    });
    let norm = |(i, v): (usize, &mut [f32])| {
        let (mean, std) = stats[i % 3];
        v.iter_mut()
            .for_each(|v| *v = ((*v as f64 - mean) / std) as f32);
    };
    out.par_chunks_mut(pp).enumerate().for_each(norm);
    out
}

/// `keep` descriptors drawn at random without replacement (all of them if there are `keep`).
fn subsample(d: Vec<f32>, dim: usize, keep: usize, rng: &mut StdRng) -> Vec<f32> {
    let n = d.len() / dim;
    if n == keep {
        return d;
    }
    let mut idx: Vec<usize> = (0..n).collect();
    (0..keep).for_each(|i| idx.swap(i, rng.random_range(i..n)));
    idx[..keep].sort_unstable();
    let row = |&i: &usize| d[i * dim..][..dim].to_vec();
    idx[..keep].iter().flat_map(row).collect()
}

/// Karras's `sliced_wasserstein`: mean |sort(A.dir) - sort(B.dir)| over descriptors and unit
/// directions drawn from a Gaussian. Every repeat draws as many directions, so the mean over
/// all of them is Karras's mean of per-repeat means.
fn sliced(a: &[f32], b: &[f32], dim: usize, cfg: &SwdConfig, mut rng: StdRng) -> f64 {
    let mut dirs = Vec::with_capacity(cfg.repeats * cfg.directions * dim);
    for _ in 0..cfg.repeats * cfg.directions {
        let v: Vec<f64> = (0..dim).map(|_| standard_normal_f64(&mut rng)).collect();
        let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
        dirs.extend(v.iter().map(|x| (x / norm) as f32));
    }
    let n = a.len() / dim;
    // Scratch reused per thread: fresh 10-100 MB buffers cost page faults.
    let new = || (vec![], vec![], vec![], vec![], vec![]);
    let group = |(pa, pb, ka, kb, t): &mut (_, _, _, _, _), g: &[f32]| -> f64 {
        project(a, g, dim, pa);
        project(b, g, dim, pb);
        let pairs = pa.chunks(n).zip(pb.chunks(n));
        let one = |(x, y)| -> f64 {
            sort_keys(x, ka, t);
            sort_keys(y, kb, t);
            let diff = |(p, q): (&u32, &u32)| (unkey(*p) - unkey(*q)).abs() as f64;
            ka.iter().zip(kb.iter()).map(diff).sum()
        };
        pairs.map(one).sum()
    };
    let sums: Vec<f64> = dirs.par_chunks(GROUP * dim).map_init(new, group).collect();
    sums.iter().sum::<f64>() / (n * cfg.directions * cfg.repeats) as f64
}

/// `keys` := the floats as order-preserving u32 keys, sorted by a 3-pass LSD radix sort
/// (about twice as quick as a comparison sort at 10^4..10^6 values).
fn sort_keys(v: &[f32], keys: &mut Vec<u32>, tmp: &mut Vec<u32>) {
    keys.clear();
    let key = |f: &f32| f.to_bits() ^ ((f.to_bits() as i32 >> 31) as u32 | 1 << 31);
    keys.extend(v.iter().map(key));
    tmp.resize(keys.len(), 0);
    let mut start = [[0u32; 2048]; 3];
    for k in keys.iter() {
        (0..3).for_each(|p| start[p][(k >> (11 * p) & 2047) as usize] += 1);
    }
    for (p, start) in start.iter_mut().enumerate() {
        let exclusive_prefix_sum = |sum, s: &mut u32| sum + std::mem::replace(s, sum);
        start.iter_mut().fold(0, exclusive_prefix_sum);
        for &k in keys.iter() {
            let b = &mut start[(k >> (11 * p) & 2047) as usize];
            (tmp[*b as usize], *b) = (k, *b + 1);
        }
        std::mem::swap(keys, tmp);
    }
}

fn unkey(k: u32) -> f32 {
    f32::from_bits(if k >> 31 == 1 { k ^ 1 << 31 } else { !k })
}

/// `out` := dot products of every row of `rows` with up to GROUP vectors (`group`), one column
/// of rows.len() values per vector. The vectors are laid out component-major, so each step
/// along a row is a run of independent multiply-adds the compiler turns into vector ops.
#[allow(clippy::needless_range_loop)] // plain indexing: also tolerable in debug builds
fn project(rows: &[f32], group: &[f32], dim: usize, out: &mut Vec<f32>) {
    let mut w = vec![0.0f32; dim * GROUP];
    for (j, d) in group.chunks(dim).enumerate() {
        (0..dim).for_each(|k| w[k * GROUP + j] = d[k]);
    }
    let n = rows.len() / dim;
    out.resize(n * group.len() / dim, 0.0);
    for (i, row) in rows.chunks_exact(dim).enumerate() {
        let mut acc = [0.0f32; GROUP];
        let mut k = 0;
        while k < dim {
            let (x, wk, mut j) = (row[k], &w[k * GROUP..][..GROUP], 0);
            while j < GROUP {
                acc[j] += x * wk[j];
                j += 1;
            }
            k += 1;
        }
        out.chunks_mut(n).zip(acc).for_each(|(c, v)| c[i] = v);
    }
}

/// Memorisation check: per face, the distance to its nearest training face.
#[derive(Clone, Debug)]
pub struct CopyReport {
    /// Per generated face: RMS pixel difference (0..255 scale) to its nearest training face.
    pub nearest: Vec<f32>,
    /// Per holdout real face: the same; the yardstick for "close".
    pub holdout_nearest: Vec<f32>,
    /// Fraction of generated faces strictly nearer than the 5th percentile of
    /// `holdout_nearest` (lower nearest rank: sorted[floor(0.05 (n - 1))]). About 0.05 for a
    /// generator that does not copy, 1 for one that reproduces training faces; NaN without
    /// holdout faces.
    pub fraction_closer: f64,
}

/// Distances are Euclidean in pixel space on 32x32 images made by 2x2 averaging, reported as
/// RMS per value (L2 / sqrt(3072)). Half the resolution is a quarter of the work (2,000 x
/// 4,000 faces: 25 G multiply-adds, not 100 G), and a copy, even a slightly noisy one, stays
/// far nearer its source than any other face, since what tells faces apart (shape, pose,
/// hair, colour) lives at low frequencies. All sets are centred on the training mean to cut
/// cancellation in |a|^2 + |b|^2 - 2 a.b, and the winner's distance is recomputed directly,
/// so an exact copy reads exactly 0. Panics without training faces.
pub fn copy_check(generated: &[u8], train: &[u8], holdout: &[u8]) -> CopyReport {
    assert!(!train.is_empty(), "copy_check needs training faces");
    let (mut g, mut t, mut h) = (shrink(generated), shrink(train), shrink(holdout));
    let mut sum = vec![0.0f64; SMALL];
    for f in t.chunks(SMALL) {
        sum.iter_mut().zip(f).for_each(|(s, v)| *s += *v as f64);
    }
    let n = (train.len() / FACE) as f64;
    let mean: Vec<f32> = sum.iter().map(|s| (s / n) as f32).collect();
    for set in [&mut g, &mut t, &mut h] {
        let centre = |v: &mut [f32]| v.iter_mut().zip(&mean).for_each(|(v, m)| *v -= m);
        set.par_chunks_mut(SMALL).for_each(centre);
    }
    let (nearest, holdout_nearest) = (nearest(&g, &t), nearest(&h, &t));
    let mut sorted = holdout_nearest.clone();
    sorted.sort_unstable_by(f32::total_cmp);
    let cut = sorted.get(sorted.len().saturating_sub(1) / 20).copied();
    let cut = cut.unwrap_or(f32::NAN); // no holdout: no yardstick
    let closer = nearest.iter().filter(|&&d| d < cut).count() as f64;
    let fraction_closer = match cut.is_nan() {
        true => f64::NAN,
        false => closer / nearest.len().max(1) as f64,
    };
    CopyReport {
        nearest,
        holdout_nearest,
        fraction_closer,
    }
}

const SMALL: usize = FACE / 4;

fn shrink(faces: &[u8]) -> Vec<f32> {
    let px = |f: &[u8], i: usize, dy: usize, dx: usize| {
        f[((i / 96 * 2 + dy) * SIDE + i / 3 % 32 * 2 + dx) * 3 + i % 3] as f32
    };
    let quad =
        |f: &[u8], i| (px(f, i, 0, 0) + px(f, i, 0, 1) + px(f, i, 1, 0) + px(f, i, 1, 1)) / 4.0;
    let face = |f| (0..SMALL).map(move |i| quad(f, i));
    faces.chunks(FACE).flat_map(face).collect()
}

/// Per query, the RMS difference to its nearest training face: rayon over tiles of GROUP
/// training faces, each an L2-resident `project` of all queries. Ties go to the lower index,
/// so the answer does not depend on how the tiles were shared out.
fn nearest(queries: &[f32], train: &[f32]) -> Vec<f32> {
    let nq = queries.len() / SMALL;
    if nq == 0 {
        return vec![];
    }
    let pick = |x: (f32, usize), y: (f32, usize)| if (y.0, y.1) < (x.0, x.1) { y } else { x };
    let tile_best = |(ti, tile): (usize, &[f32])| {
        // |query|^2 is the same for every candidate, so it is left out.
        let (mut dots, mut best) = (vec![], vec![(f32::INFINITY, 0); nq]);
        project(queries, tile, SMALL, &mut dots);
        for (j, (d, t)) in dots.chunks(nq).zip(tile.chunks(SMALL)).enumerate() {
            let norm: f32 = t.iter().map(|v| v * v).sum();
            for (b, dq) in best.iter_mut().zip(d) {
                *b = pick(*b, (norm - 2.0 * dq, ti * GROUP + j));
            }
        }
        best
    };
    let tiles = train.par_chunks(GROUP * SMALL).enumerate().map(tile_best);
    let best = tiles.reduce(
        || vec![(f32::INFINITY, 0); nq],
        |a, b| a.into_iter().zip(b).map(|(x, y)| pick(x, y)).collect(),
    );
    let exact = |(q, (_, i)): (&[f32], (f32, usize))| {
        let t = &train[i * SMALL..][..SMALL];
        (q.iter().zip(t).map(|(a, b)| (a - b) * (a - b)).sum::<f32>() / SMALL as f32).sqrt()
    };
    queries.par_chunks(SMALL).zip(best).map(exact).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::OnceLock;

    /// Faces `r` of the 300 real CelebA photos the project ships for tests (in file-name
    /// order), cropped and resized as the trainer does.
    fn faces(r: std::ops::Range<usize>) -> &'static [u8] {
        static FACES: OnceLock<Vec<u8>> = OnceLock::new();
        let all = FACES.get_or_init(|| {
            let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/faces");
            let mut files: Vec<_> = std::fs::read_dir(dir)
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            files.sort();
            assert_eq!(files.len(), 300, "expected 300 faces in {dir}");
            let crop = crate::config::TrainingConfig::preset("dcgan")
                .unwrap()
                .data
                .crop;
            let face = |p: &std::path::PathBuf| {
                crate::data::load_face(p, crop, crate::config::ResizeFilter::Bicubic).unwrap()
            };
            files.par_iter().flat_map_iter(face).collect()
        });
        &all[r.start * FACE..r.end * FACE]
    }

    /// Karras's descriptors, but 32 directions once: 1/16 of the projecting and sorting.
    fn quick(descriptors_per_image: usize) -> SwdConfig {
        SwdConfig {
            descriptors_per_image,
            directions: 32,
            repeats: 1,
            ..SwdConfig::default()
        }
    }

    #[test]
    fn real_beats_blurred_beats_noise() {
        let (a, b) = (faces(0..150), faces(150..300));
        let blur = |f: &[u8]| {
            let img = image::RgbImage::from_raw(64, 64, f.to_vec()).unwrap();
            let small =
                image::imageops::resize(&img, 16, 16, image::imageops::FilterType::Triangle);
            image::imageops::resize(&small, 64, 64, image::imageops::FilterType::Triangle)
                .into_raw()
        };
        let blurred: Vec<u8> = b.chunks(FACE).flat_map(blur).collect();
        let mut rng = StdRng::seed_from_u64(5);
        let noise: Vec<u8> = (0..b.len()).map(|_| rng.random()).collect();
        let [real, blur, noise] = [b, &blurred, &noise].map(|x| swd(a, x, &quick(128), 1));
        eprintln!("real {real:?}\nblurred {blur:?}\nnoise {noise:?}");
        assert_eq!(
            real.levels.iter().map(|l| l.0).collect::<Vec<_>>(),
            [64, 32, 16]
        );
        // Measured: means 26.0 / 75.4 / 185.4; finest 14.2 / 95.7; coarsest 49.6 / 225.0.
        assert!(blur.mean > 2.0 * real.mean && blur.levels[0].1 > 4.0 * real.levels[0].1);
        assert!(noise.mean > 1.5 * blur.mean && noise.levels[2].1 > 3.0 * blur.levels[2].1);
    }

    #[test]
    fn swd_is_deterministic_and_nearly_symmetric() {
        let (a, b, cfg) = (faces(0..100), faces(200..300), quick(64));
        let ab = swd(a, b, &cfg, 7);
        assert_eq!(ab, swd(a, b, &cfg, 7));
        // Measured: 32.1 against 30.4 swapped, 28.5 with another seed, 29.0 uneven.
        let uneven = swd(a, faces(100..300), &cfg, 7); // the larger set is subsampled
        for other in [swd(b, a, &cfg, 7), swd(a, b, &cfg, 8), uneven] {
            assert!(
                (other.mean / ab.mean - 1.0).abs() < 0.25,
                "{ab:?} vs {other:?}"
            );
        }
    }

    #[test]
    fn flat_face_has_flat_laplacian_bands() {
        let pyr = laplacian_pyramid(&[77; FACE], 3);
        assert_eq!(
            pyr.iter().map(Vec::len).collect::<Vec<_>>(),
            [FACE, FACE / 4, FACE / 16]
        );
        assert!(pyr[0].iter().chain(&pyr[1]).all(|v| v.abs() < 1e-3));
        assert!(pyr[2].iter().all(|v| (v - 77.0).abs() < 1e-3));
    }

    #[test]
    fn copy_check_flags_copies_not_fresh_faces() {
        let (train, holdout) = (faces(0..200), faces(200..250));
        let copies = copy_check(faces(20..60), train, holdout);
        assert!(copies.nearest.iter().all(|&d| d == 0.0), "{copies:?}");
        assert!(
            copies.holdout_nearest.iter().all(|&d| d > 5.0),
            "{copies:?}"
        );
        assert_eq!(copies.fraction_closer, 1.0);
        let fresh = copy_check(faces(250..300), train, holdout);
        assert!(
            fresh.nearest.iter().all(|&d| d > 5.0) && fresh.fraction_closer < 0.2,
            "{fresh:?}"
        );
        // Copies with a little noise are still far nearer their sources than fresh faces.
        let mut rng = StdRng::seed_from_u64(3);
        let noisy: Vec<u8> = faces(0..50)
            .iter()
            .map(|&v| v.saturating_add(rng.random_range(0..8)))
            .collect();
        assert!(copy_check(&noisy, train, holdout).fraction_closer > 0.9);
        assert!(copy_check(&noisy, train, &[]).fraction_closer.is_nan());
    }
}
