//! `dcgan bench`: how fast faces load, a training step runs and a generator samples.
//!
//! Every figure is the median of several timed runs after untimed warm-up runs, because
//! these machines are shared and a single timing says little. `--json` prints one line per
//! measurement in the schema the reference scripts in `tests/reference/` print, so the
//! comparison table can be built from both.

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::nn::TrainBackend;
use anyhow::{bail, Result};
use burn::module::AutodiffModule;
use serde::Serialize;

use crate::backend::launches;
use crate::config::TrainingConfig;
use crate::data::cache;
use crate::data::{self, Faces, ImageList, Preprocess, Split};
use crate::metrics::median;
use crate::nn::{cpu, noise, profile, Mode};
use crate::progress;
use crate::rng::{rng, Stream};
use crate::train::Gan;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Part {
    /// Decode + crop + resize a folder of photos.
    Load,
    /// Read the same faces back from the preprocessed cache.
    Cache,
    /// One full training step: D on real, D on fake, G through D.
    Step,
    /// Generator forward pass in inference mode, to u8 faces.
    Sample,
}

pub struct BenchSettings {
    pub data: Option<PathBuf>,
    pub limit: Option<usize>,
    pub config: TrainingConfig,
    pub parts: Vec<Part>,
    pub warmup: usize,
    pub runs: usize,
    pub backend_name: String,
    /// Count the kernels a step launches (WGPU, with [`crate::backend::launches`] enabled).
    pub count_launches: bool,
    /// Time the CPU layers' operations and matrix products in one more step (`--profile`).
    pub profile: bool,
}

/// One measurement: the schema shared with `tests/reference/*.py`.
#[derive(Serialize, Debug, Clone)]
pub struct Measurement {
    pub tool: &'static str,
    pub bench: &'static str,
    pub backend: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub images: Option<usize>,
    pub runs: Vec<f64>,
    pub median_s: f64,
    pub images_per_sec: f64,
    pub threads: usize,
    pub peak_rss_mb: f64,
    /// GPU kernels launched per training step, counted over two untimed steps after the
    /// timed ones.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub launches_per_step: Option<f64>,
}

fn time<T>(f: impl FnOnce() -> T) -> (f64, T) {
    let t = Instant::now();
    let out = f();
    (t.elapsed().as_secs_f64(), out)
}

fn measurement(
    bench: &'static str,
    backend: &str,
    batch: Option<usize>,
    images: Option<usize>,
    runs: Vec<f64>,
    per_run: usize,
) -> Measurement {
    let median_s = median(&runs);
    Measurement {
        tool: "dcgan",
        bench,
        backend: backend.to_string(),
        batch,
        images,
        images_per_sec: per_run as f64 / median_s,
        median_s,
        runs,
        threads: rayon::current_num_threads(),
        peak_rss_mb: progress::peak_rss_bytes() as f64 / (1 << 20) as f64,
        launches_per_step: None,
    }
}

/// Faces for the step and sampling benchmarks: the real ones when a folder is given, else
/// a deterministic pattern (the arithmetic does not depend on the pixel values).
fn faces_for_steps(loaded: Option<&Faces>, batch: usize, side: usize) -> Faces {
    let bytes = batch * data::face_bytes(side);
    match loaded {
        Some(f) if f.len() >= batch => Faces::from_pixels(f.pixels()[..bytes].to_vec(), side),
        _ => Faces::from_pixels((0..bytes).map(|i| (i * 31 % 251) as u8).collect(), side),
    }
}

/// Runs `f` `warmup` times untimed, then `runs` times timed; returns the timings and the
/// last result.
fn repeat<T>(s: &BenchSettings, mut f: impl FnMut(usize) -> Result<T>) -> Result<(Vec<f64>, T)> {
    let mut runs = Vec::new();
    let mut last = None;
    for i in 0..s.warmup + s.runs {
        let (secs, out) = time(|| f(i));
        if i >= s.warmup {
            runs.push(secs);
        }
        last = Some(out?);
    }
    Ok((runs, last.expect("at least one timed run")))
}

/// Runs the chosen parts on backend `B`; returns the measurements in order.
pub fn run<B: TrainBackend>(s: &BenchSettings, device: &B::Device) -> Result<Vec<Measurement>> {
    let needs_files = s
        .parts
        .iter()
        .any(|p| matches!(p, Part::Load | Part::Cache));
    let files = match (&s.data, needs_files) {
        (Some(dir), _) => ImageList::select(dir, None, Split::All, None, s.limit)?.0,
        (None, true) => bail!("--only load/cache needs --data DIR, a folder of face photos"),
        (None, false) => ImageList::files(Path::new("."), Vec::new()),
    };
    // `auto` is resolved (its headers read) once, for both loading benchmarks.
    let prep = needs_files.then(|| Preprocess::resolve(&s.config, &files));
    let mut out = Vec::new();
    let mut loaded: Option<Faces> = None;
    // Always in this order: the step and sampling use the faces loading just decoded.
    let parts = [Part::Load, Part::Cache, Part::Step, Part::Sample];
    for part in parts.iter().filter(|p| s.parts.contains(p)) {
        let m = match (part, &prep) {
            (Part::Load, Some(prep)) => bench_load(s, &files, prep, &mut loaded)?,
            (Part::Cache, Some(prep)) => bench_cache(s, &files, prep, &mut loaded)?,
            (Part::Load | Part::Cache, None) => unreachable!("the loading parts resolve a crop"),
            (Part::Step, _) => bench_step::<B>(s, loaded.as_ref(), device)?,
            (Part::Sample, _) => bench_sample::<B>(s, device)?,
        };
        out.push(m);
    }
    Ok(out)
}

fn bench_load(
    s: &BenchSettings,
    files: &ImageList,
    prep: &Preprocess,
    loaded: &mut Option<Faces>,
) -> Result<Measurement> {
    let (runs, faces) = repeat(s, |_| data::load_faces(files, prep))?;
    *loaded = Some(faces);
    let m = measurement("load", "cpu", None, Some(files.len()), runs, files.len());
    report(&m, &format!("load    {} files", files.len()));
    Ok(m)
}

fn bench_cache(
    s: &BenchSettings,
    files: &ImageList,
    prep: &Preprocess,
    loaded: &mut Option<Faces>,
) -> Result<Measurement> {
    let dir = tempfile_dir()?;
    let key = cache::CacheKey::new(files, prep)?;
    let faces = match loaded.take() {
        Some(f) => f,
        None => data::load_faces(files, prep)?,
    };
    cache::store(&dir, &key, &faces)?;
    let (runs, hit) = repeat(s, |_| {
        cache::load(&dir, &key)?
            .ok_or_else(|| anyhow::anyhow!("the cache just written was not found"))
    })?;
    *loaded = Some(hit);
    let _ = std::fs::remove_dir_all(&dir);
    let m = measurement("cache", "cpu", None, Some(files.len()), runs, files.len());
    report(&m, &format!("cache   {} files", files.len()));
    Ok(m)
}

fn bench_step<B: TrainBackend>(
    s: &BenchSettings,
    loaded: Option<&Faces>,
    device: &B::Device,
) -> Result<Measurement> {
    let cfg = &s.config;
    let batch = cfg.batch_size;
    let faces = faces_for_steps(loaded, batch, cfg.image_size);
    let indices: Vec<usize> = (0..batch).collect();
    let mut gan = Some(Gan::<B>::new(cfg, device));
    // `step_on` reads the losses back, so a timed step ends after the device finished.
    let mut step = |i: usize| {
        let mut r = rng(cfg.seed, i, Stream::Noise);
        let next = gan.take().expect("a GAN");
        gan = Some(next.step_on(cfg, &faces, &indices, &mut r, device).0);
    };
    let (runs, ()) = repeat(s, |i| {
        step(i);
        Ok(())
    })?;
    let mut m = measurement("step", &s.backend_name, Some(batch), None, runs, batch);
    if s.count_launches {
        const STEPS: usize = 2;
        let sync =
            || B::sync(device).map_err(|e| anyhow::anyhow!("cannot synchronise the device: {e:?}"));
        sync()?;
        let before = launches::settled();
        (0..STEPS).for_each(&mut step);
        sync()?;
        m.launches_per_step = Some((launches::settled() - before) as f64 / STEPS as f64);
    }
    report(&m, &format!("step    batch {batch}"));
    if s.profile {
        profile::start();
        let (secs, ()) = time(|| step(s.warmup + s.runs));
        let profile = profile::stop();
        report_gemms(&profile.products, m.median_s);
        report_ops(&profile.ops, secs);
    }
    Ok(m)
}

/// The time of each operation of one step and of its parts, and what ran outside them.
fn report_ops(ops: &[(profile::Op, profile::Timing)], step_s: f64) {
    let ms = |s: f64| 1e3 * s;
    let tops: f64 = ops
        .iter()
        .filter(|(o, _)| o.part.is_none())
        .map(|(_, t)| t.secs)
        .sum();
    eprintln!(
        "time by operation in that step ({:.0} ms in all):",
        ms(step_s)
    );
    eprintln!(
        "  {:<34} {:>5} {:>8}",
        "operation (its parts indented)", "calls", "ms"
    );
    for (op, t) in ops.iter().filter(|(o, _)| o.part.is_none()) {
        eprintln!("  {:<34} {:>5} {:>8.1}", op.name, t.calls, ms(t.secs));
        let parts: Vec<_> = ops
            .iter()
            .filter(|(o, _)| o.name == op.name && o.part.is_some())
            .collect();
        for (part, p) in &parts {
            let name = part.part.unwrap_or_default();
            eprintln!("    {name:<32} {:>5} {:>8.1}", p.calls, ms(p.secs));
        }
        if !parts.is_empty() {
            let rest = t.secs - parts.iter().map(|(_, p)| p.secs).sum::<f64>();
            eprintln!("    {:<32} {:>5} {:>8.1}", "(the rest)", "", ms(rest));
        }
    }
    eprintln!(
        "  {:<34} {:>5} {:>8.1}",
        "outside these: burn's own ops",
        "",
        ms(step_s - tops)
    );
    eprintln!("    (dense layers, losses, dropout, Adam, noise)");
}

/// The products of one step by shape, beside a large square product on the same cores.
fn report_gemms(times: &[(profile::Shape, profile::Timing)], step_s: f64) {
    const SQUARE: usize = 4096;
    let a: Vec<f32> = (0..SQUARE * SQUARE)
        .map(|i| (i % 17) as f32 * 0.01)
        .collect();
    // One untimed product first, then the median of three.
    let secs: Vec<f64> = (0..4)
        .map(|_| time(|| std::hint::black_box(cpu::square_product(&a, SQUARE))).0)
        .skip(1)
        .collect();
    let square = 2.0 * (SQUARE as f64).powi(3) / median(&secs) / 1e9;
    let total: f64 = times.iter().map(|(_, t)| t.secs).sum();
    let flops: f64 = times.iter().map(|(s, t)| s.flops() * t.calls as f64).sum();
    eprintln!(
        "matrix products of one step: {:.3} s ({:.0}% of the median step), {:.1} GFLOP, \
         {:.0} GFLOP/s; a {SQUARE}^3 product here: {square:.0} GFLOP/s",
        total,
        100.0 * total / step_s,
        flops / 1e9,
        flops / total / 1e9
    );
    eprintln!(
        "  {:>24} {:>5} {:>9} {:>8} {:>8}",
        "[m, k] x [k, n]", "calls", "ms each", "GFLOP/s", "of peak"
    );
    for (shape, t) in times {
        let rate = shape.flops() * t.calls as f64 / t.secs / 1e9;
        let ops = format!(
            "[{}, {}]{} x [{}, {}]{}",
            shape.m,
            shape.k,
            if shape.ta { "'" } else { "" },
            shape.k,
            shape.n,
            if shape.tb { "'" } else { "" }
        );
        eprintln!(
            "  {ops:>24} {:>5} {:>9.2} {rate:>8.0} {:>7.0}%",
            t.calls,
            1e3 * t.secs / t.calls as f64,
            100.0 * rate / square
        );
    }
}

fn bench_sample<B: TrainBackend>(s: &BenchSettings, device: &B::Device) -> Result<Measurement> {
    let cfg = &s.config;
    let batch = cfg.batch_size;
    let g = Gan::<B>::new(cfg, device).g.valid();
    let (runs, faces) = repeat(s, |i| {
        let mut r = rng(cfg.seed, i, Stream::Noise);
        let z = noise::<B::InnerBackend>(cfg, &mut r, batch, device);
        Ok(data::to_faces(g.forward(z, Mode::Eval), g.output()))
    })?;
    assert_eq!(faces.len(), batch);
    let m = measurement("sample", &s.backend_name, Some(batch), None, runs, batch);
    report(&m, &format!("sample  batch {batch}"));
    Ok(m)
}

fn report(m: &Measurement, what: &str) {
    let runs: Vec<String> = m.runs.iter().map(|r| format!("{r:.3}")).collect();
    let launches = m
        .launches_per_step
        .map(|l| format!("  {l:.0} kernel launches per step"))
        .unwrap_or_default();
    eprintln!(
        "{what:<22} median {:>8.3} s  {:>9.0} images/s  (runs: {})  peak rss {:.0} MB{launches}",
        m.median_s,
        m.images_per_sec,
        runs.join(" "),
        m.peak_rss_mb
    );
}

fn tempfile_dir() -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("dcgan-bench-cache-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
