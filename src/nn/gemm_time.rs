//! Per-shape timing of the CPU layers' matrix products (`dcgan bench --gemm`): which GEMMs of
//! a training step run below the rate one large square GEMM reaches on the same machine.
//! Off unless enabled; then each product is timed where the step runs it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Instant;

/// One product's shape: [m, k] x [k, n], and whether each operand is read transposed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Shape {
    pub m: usize,
    pub k: usize,
    pub n: usize,
    pub ta: bool,
    pub tb: bool,
}

impl Shape {
    pub fn flops(&self) -> f64 {
        2.0 * (self.m * self.k * self.n) as f64
    }
}

/// Calls and total seconds of one shape.
#[derive(Clone, Copy, Debug, Default)]
pub struct Timing {
    pub calls: usize,
    pub secs: f64,
}

static ON: AtomicBool = AtomicBool::new(false);
static TIMES: Mutex<BTreeMap<Shape, Timing>> = Mutex::new(BTreeMap::new());

/// Starts timing every product, from empty.
pub fn start() {
    TIMES.lock().expect("gemm timings").clear();
    ON.store(true, Ordering::Relaxed);
}

/// Stops timing; returns what was timed since `start`, by shape.
pub fn stop() -> Vec<(Shape, Timing)> {
    ON.store(false, Ordering::Relaxed);
    let times = std::mem::take(&mut *TIMES.lock().expect("gemm timings"));
    times.into_iter().collect()
}

/// Runs `f`, the product of `shape`, timing it when timing is on.
pub(crate) fn timed<T>(shape: Shape, f: impl FnOnce() -> T) -> T {
    if !ON.load(Ordering::Relaxed) {
        return f();
    }
    let t = Instant::now();
    let out = f();
    let secs = t.elapsed().as_secs_f64();
    let mut times = TIMES.lock().expect("gemm timings");
    let e = times.entry(shape).or_default();
    e.calls += 1;
    e.secs += secs;
    out
}
