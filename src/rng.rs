//! Keyed random streams. Every random number is drawn from a stream keyed by (seed, epoch or
//! step, purpose), never from a generator that runs across steps, so a resumed run needs no
//! saved RNG state to continue exactly where it stopped.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Independent random streams, each derived from the run seed, an index and a purpose.
#[derive(Clone, Copy)]
pub enum Stream {
    GeneratorInit = 1,
    DiscriminatorInit = 2,
    Noise = 3,
    Shuffle = 4,
    Preview = 5,
    Dropout = 6,
    Track = 7,
}

/// SplitMix64's finaliser: nearby inputs give unrelated outputs.
pub fn mix64(z: u64) -> u64 {
    let z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    let z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

pub fn stream_seed(seed: u64, index: usize, stream: Stream) -> u64 {
    mix64(
        seed.wrapping_add((index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15))
            .wrapping_add((stream as u64).wrapping_mul(0xD1B5_4A32_D192_ED03)),
    )
}

pub fn rng(seed: u64, index: usize, stream: Stream) -> StdRng {
    StdRng::seed_from_u64(stream_seed(seed, index, stream))
}

/// One N(0, 1) draw by Box-Muller; rand 0.9 keeps its normal distribution in a separate crate.
pub fn standard_normal_f64(rng: &mut StdRng) -> f64 {
    let u1: f64 = 1.0 - rng.random::<f64>();
    let u2: f64 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

pub fn standard_normal(rng: &mut StdRng) -> f32 {
    standard_normal_f64(rng) as f32
}
