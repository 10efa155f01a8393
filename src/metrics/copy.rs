//! The memorisation ("copy") check: do generated faces sit nearer the training faces than
//! unseen real faces do?

use rayon::prelude::*;

use super::swd::{project, GROUP};
use crate::data::face_bytes;

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

/// Distances are Euclidean in pixel space on images of half the side made by 2x2 averaging
/// (32x32 for 64-pixel faces), reported as RMS per value. Half the resolution is a quarter of the work (2,000 x
/// 4,000 faces: 25 G multiply-adds, not 100 G), and a copy, even a slightly noisy one, stays
/// far nearer its source than any other face, since what tells faces apart (shape, pose,
/// hair, colour) lives at low frequencies. All sets are centred on the training mean to cut
/// cancellation in |a|^2 + |b|^2 - 2 a.b, and the winner's distance is recomputed directly,
/// so an exact copy reads exactly 0. Panics without training faces.
/// `side` is the faces' width and height.
pub fn copy_check(generated: &[u8], train: &[u8], holdout: &[u8], side: usize) -> CopyReport {
    assert!(!train.is_empty(), "copy_check needs training faces");
    let small = face_bytes(side) / 4;
    let shrink = |f| shrink(f, side);
    let (mut g, mut t, mut h) = (shrink(generated), shrink(train), shrink(holdout));
    let mut sum = vec![0.0f64; small];
    for f in t.chunks(small) {
        sum.iter_mut().zip(f).for_each(|(s, v)| *s += *v as f64);
    }
    let n = (train.len() / face_bytes(side)) as f64;
    let mean: Vec<f32> = sum.iter().map(|s| (s / n) as f32).collect();
    for set in [&mut g, &mut t, &mut h] {
        let centre = |v: &mut [f32]| v.iter_mut().zip(&mean).for_each(|(v, m)| *v -= m);
        set.par_chunks_mut(small).for_each(centre);
    }
    let (nearest, holdout_nearest) = (nearest(&g, &t, small), nearest(&h, &t, small));
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

/// Faces of `side` pixels halved by 2x2 averaging.
fn shrink(faces: &[u8], side: usize) -> Vec<f32> {
    let (half, small) = (side / 2, face_bytes(side) / 4);
    let px = |f: &[u8], i: usize, dy: usize, dx: usize| {
        f[((i / (3 * half) * 2 + dy) * side + i / 3 % half * 2 + dx) * 3 + i % 3] as f32
    };
    let quad =
        |f: &[u8], i| (px(f, i, 0, 0) + px(f, i, 0, 1) + px(f, i, 1, 0) + px(f, i, 1, 1)) / 4.0;
    let face = move |f| (0..small).map(move |i| quad(f, i));
    faces.chunks(face_bytes(side)).flat_map(face).collect()
}

/// Per query, the RMS difference to its nearest training face: rayon over tiles of GROUP
/// training faces, each an L2-resident `project` of all queries. Ties go to the lower index,
/// so the answer does not depend on how the tiles were shared out.
fn nearest(queries: &[f32], train: &[f32], small: usize) -> Vec<f32> {
    let nq = queries.len() / small;
    if nq == 0 {
        return vec![];
    }
    let pick = |x: (f32, usize), y: (f32, usize)| if (y.0, y.1) < (x.0, x.1) { y } else { x };
    let tile_best = |(ti, tile): (usize, &[f32])| {
        // |query|^2 is the same for every candidate, so it is left out.
        let (mut dots, mut best) = (vec![], vec![(f32::INFINITY, 0); nq]);
        project(queries, tile, small, &mut dots);
        for (j, (d, t)) in dots.chunks(nq).zip(tile.chunks(small)).enumerate() {
            let norm: f32 = t.iter().map(|v| v * v).sum();
            for (b, dq) in best.iter_mut().zip(d) {
                *b = pick(*b, (norm - 2.0 * dq, ti * GROUP + j));
            }
        }
        best
    };
    let tiles = train.par_chunks(GROUP * small).enumerate().map(tile_best);
    let best = tiles.reduce(
        || vec![(f32::INFINITY, 0); nq],
        |a, b| a.into_iter().zip(b).map(|(x, y)| pick(x, y)).collect(),
    );
    let exact = |(q, (_, i)): (&[f32], (f32, usize))| {
        let t = &train[i * small..][..small];
        (q.iter().zip(t).map(|(a, b)| (a - b) * (a - b)).sum::<f32>() / small as f32).sqrt()
    };
    queries.par_chunks(small).zip(best).map(exact).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::test_faces as faces;
    use rand::{rngs::StdRng, Rng, SeedableRng};

    #[test]
    fn copy_check_flags_copies_not_fresh_faces() {
        let (train, holdout) = (faces(0..200), faces(200..250));
        let copies = copy_check(faces(20..60), train, holdout, 64);
        assert!(copies.nearest.iter().all(|&d| d == 0.0), "{copies:?}");
        assert!(
            copies.holdout_nearest.iter().all(|&d| d > 5.0),
            "{copies:?}"
        );
        assert_eq!(copies.fraction_closer, 1.0);
        let fresh = copy_check(faces(250..300), train, holdout, 64);
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
        assert!(copy_check(&noisy, train, holdout, 64).fraction_closer > 0.9);
        assert!(copy_check(&noisy, train, &[], 64).fraction_closer.is_nan());
    }
}
