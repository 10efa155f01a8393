//! Where a CPU training step's time goes (`dcgan bench --profile`): the time of each layer
//! operation and of its parts, and each matrix product by shape, so the products running
//! below the rate one large square GEMM reaches on the same machine stand out.
//! Off unless enabled; then each operation and product is timed where the step runs it.

use std::cell::Cell;
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

/// Calls and total seconds of one shape or operation.
#[derive(Clone, Copy, Debug, Default)]
pub struct Timing {
    pub calls: usize,
    pub secs: f64,
}

/// A timed span: an operation, or (`part` set) a part of the operation it ran inside.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Op {
    pub name: &'static str,
    pub part: Option<&'static str>,
}

/// What was timed between [`start`] and [`stop`].
#[derive(Debug, Default)]
pub struct Profile {
    pub products: Vec<(Shape, Timing)>,
    pub ops: Vec<(Op, Timing)>,
}

/// The part name under which an operation's matrix products are counted.
pub const PRODUCTS: &str = "matrix products";

static ON: AtomicBool = AtomicBool::new(false);
static PRODUCT_TIMES: Mutex<BTreeMap<Shape, Timing>> = Mutex::new(BTreeMap::new());
static OP_TIMES: Mutex<BTreeMap<Op, Timing>> = Mutex::new(BTreeMap::new());

thread_local! {
    /// The operation this thread is inside; its nested spans count as its parts.
    static CURRENT: Cell<Option<&'static str>> = const { Cell::new(None) };
}

/// Starts timing every operation and product, from empty.
pub fn start() {
    PRODUCT_TIMES.lock().expect("timings").clear();
    OP_TIMES.lock().expect("timings").clear();
    ON.store(true, Ordering::Relaxed);
}

/// Stops timing; returns what was timed since `start`.
pub fn stop() -> Profile {
    ON.store(false, Ordering::Relaxed);
    Profile {
        products: take(&PRODUCT_TIMES),
        ops: take(&OP_TIMES),
    }
}

fn take<K: Ord>(times: &Mutex<BTreeMap<K, Timing>>) -> Vec<(K, Timing)> {
    let times = std::mem::take(&mut *times.lock().expect("timings"));
    times.into_iter().collect()
}

fn add<K: Ord>(times: &Mutex<BTreeMap<K, Timing>>, key: K, secs: f64) {
    let mut times = times.lock().expect("timings");
    let e = times.entry(key).or_default();
    e.calls += 1;
    e.secs += secs;
}

/// Runs `f`, the product of `shape`, timing it when timing is on.
pub(crate) fn timed<T>(shape: Shape, f: impl FnOnce() -> T) -> T {
    if !ON.load(Ordering::Relaxed) {
        return f();
    }
    let t = Instant::now();
    let out = f();
    let secs = t.elapsed().as_secs_f64();
    add(&PRODUCT_TIMES, shape, secs);
    if let Some(name) = CURRENT.get() {
        let part = Some(PRODUCTS);
        add(&OP_TIMES, Op { name, part }, secs);
    }
    out
}

/// Times the operation `name` from here until the returned guard drops, when timing is on.
/// Inside another operation (on the same thread), it counts as a part of that one.
pub fn span(name: &'static str) -> Option<Span> {
    if !ON.load(Ordering::Relaxed) {
        return None;
    }
    let outer = CURRENT.get();
    if outer.is_none() {
        CURRENT.set(Some(name));
    }
    Some(Span {
        name,
        outer,
        start: Instant::now(),
    })
}

/// An operation being timed; recorded when dropped.
pub struct Span {
    name: &'static str,
    outer: Option<&'static str>,
    start: Instant,
}

impl Drop for Span {
    fn drop(&mut self) {
        let secs = self.start.elapsed().as_secs_f64();
        CURRENT.set(self.outer);
        let op = match self.outer {
            Some(outer) => Op {
                name: outer,
                part: Some(self.name),
            },
            None => Op {
                name: self.name,
                part: None,
            },
        };
        add(&OP_TIMES, op, secs);
    }
}
