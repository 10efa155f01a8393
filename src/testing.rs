//! Entry points for `tests/wgpu.rs` alone, hidden from the documentation. That test runs in
//! a process of its own, because it sets the Vulkan driver's environment before the driver
//! loads, so it cannot be one of the crate's unit tests; these let it compare the GPU's
//! layers and training steps with burn's ops and the CPU without compiling its own copy of
//! the layers and the training code.

use crate::backend::Resolved;
use crate::config::TrainingConfig;
use crate::data::Faces;
use crate::nn::TrainBackend;
use crate::rng::{rng, Stream};
use crate::train::{Gan, StepStats};

pub use crate::nn::check::{difference_from_burn_on, leaky_bn_difference_from_burn_on};

/// The first `steps` steps of a fresh run on `backend`, step k on faces `k*batch..(k+1)*batch`
/// in file order. Not generic, so the WGPU test reuses this crate's compiled training code
/// instead of compiling its own copy of it.
pub fn first_steps(
    cfg: &TrainingConfig,
    faces: &Faces,
    steps: usize,
    backend: &Resolved,
) -> Vec<StepStats> {
    fn on<B: TrainBackend>(
        cfg: &TrainingConfig,
        faces: &Faces,
        steps: usize,
        device: &B::Device,
    ) -> Vec<StepStats> {
        let mut gan = Gan::<B>::new(cfg, device);
        let mut r = rng(cfg.seed, 1, Stream::Noise);
        let n = cfg.batch_size;
        let mut out = Vec::new();
        for step in 0..steps {
            let idx: Vec<usize> = (step * n..(step + 1) * n).collect();
            let (next, s) = gan.step_on(cfg, faces, &idx, &mut r, device);
            gan = next;
            out.push(s);
        }
        out
    }
    crate::with_backend!(backend, |B, device| on::<burn::backend::Autodiff<B>>(
        cfg, faces, steps, &device
    ))
}
