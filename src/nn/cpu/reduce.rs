//! Sums in a fixed order: lanes that vectorise, and the same result on every machine.

use rayon::prelude::*;

use super::super::profile;

/// Independent partial sums a reduction keeps, so its adds vectorise instead of each
/// waiting for the one before (the order is fixed, so the result is the same everywhere).
const LANES: usize = 16;

/// The sums over i of `f(x[i], y[i])`, each of its Q terms summed in [`LANES`] lanes.
#[inline(always)]
pub(super) fn lane_sums<const Q: usize>(
    x: &[f32],
    y: &[f32],
    f: impl Fn(f32, f32) -> [f32; Q],
) -> [f32; Q] {
    assert_eq!(x.len(), y.len(), "lane_sums operands");
    let mut acc = [[0.0f32; LANES]; Q];
    let (xc, yc) = (x.chunks_exact(LANES), y.chunks_exact(LANES));
    let (xt, yt) = (xc.remainder(), yc.remainder());
    for (xs, ys) in xc.zip(yc) {
        for l in 0..LANES {
            let terms = f(xs[l], ys[l]);
            for q in 0..Q {
                acc[q][l] += terms[q];
            }
        }
    }
    for (l, (&a, &b)) in xt.iter().zip(yt).enumerate() {
        let terms = f(a, b);
        for q in 0..Q {
            acc[q][l] += terms[q];
        }
    }
    acc.map(|lanes| {
        let mut sum = 0.0;
        for v in lanes {
            sum += v;
        }
        sum
    })
}

#[inline(always)]
fn lane_sum(x: &[f32]) -> f32 {
    lane_sums(x, x, |v, _| [v])[0]
}

pub(super) fn row_sums(m: &[f32], rows: usize) -> Vec<f32> {
    let _span = profile::span("row_sums");
    let cols = m.len() / rows;
    m.par_chunks(cols).map(lane_sum).collect()
}
