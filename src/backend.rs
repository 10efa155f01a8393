//! Choosing where the arithmetic runs: a GPU through WGPU when one exists, else the CPU.
//!
//! burn panics on the first tensor operation when WGPU finds no adapter, so we ask wgpu
//! ourselves first and only then touch a burn device.

use std::future::Future;
use std::pin::pin;
use std::task::{Context as TaskContext, Poll, Waker};

use anyhow::{bail, Result};
use clap::ValueEnum;

pub use burn::backend::wgpu::WgpuDevice;
pub use burn::backend::{Autodiff, Flex, Wgpu};

/// The CPU backend: pure Rust, SIMD GEMM on all cores.
pub type Cpu = Flex;

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum BackendChoice {
    /// A hardware GPU through WGPU if there is one, else the CPU.
    #[default]
    Auto,
    /// WGPU (Vulkan, Metal, DirectX 12); fails if no adapter exists.
    Wgpu,
    /// The CPU backend (burn `flex`).
    Cpu,
}

/// What `BackendChoice` resolved to on this machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resolved {
    Cpu,
    Wgpu { adapter: String },
}

impl Resolved {
    pub fn name(&self) -> String {
        match self {
            Resolved::Cpu => "cpu (flex)".into(),
            Resolved::Wgpu { adapter } => format!("wgpu ({adapter})"),
        }
    }
}

struct Adapter {
    name: String,
    backend: String,
    software: bool,
}

fn adapters() -> Vec<Adapter> {
    // Mesa prints a warning on every start when this is unset; it only needs to be a folder.
    if std::env::var_os("XDG_RUNTIME_DIR").is_none() {
        std::env::set_var("XDG_RUNTIME_DIR", std::env::temp_dir());
    }
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor {
        backends: wgpu::Backends::PRIMARY,
        ..wgpu::InstanceDescriptor::new_without_display_handle()
    });
    block_on(instance.enumerate_adapters(wgpu::Backends::PRIMARY))
        .into_iter()
        .map(|a| {
            let info = a.get_info();
            Adapter {
                name: info.name.clone(),
                backend: format!("{:?}", info.backend),
                software: info.device_type == wgpu::DeviceType::Cpu,
            }
        })
        .collect()
}

/// Native adapter enumeration completes at once; polling it once avoids an async runtime.
fn block_on<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    let mut cx = TaskContext::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::yield_now();
    }
}

pub fn resolve(choice: BackendChoice) -> Result<Resolved> {
    match choice {
        BackendChoice::Cpu => Ok(Resolved::Cpu),
        BackendChoice::Auto => {
            let all = adapters();
            match all.iter().find(|a| !a.software) {
                Some(a) => Ok(Resolved::Wgpu {
                    adapter: format!("{} via {}", a.name, a.backend),
                }),
                None => {
                    eprintln!("note: no GPU found, training on the CPU (use --backend wgpu to insist on a GPU)");
                    Ok(Resolved::Cpu)
                }
            }
        }
        BackendChoice::Wgpu => {
            let all = adapters();
            if let Some(a) = all.iter().find(|a| !a.software) {
                return Ok(Resolved::Wgpu {
                    adapter: format!("{} via {}", a.name, a.backend),
                });
            }
            match all.first() {
                Some(a) => {
                    eprintln!(
                        "warning: the only WGPU adapter is {} ({}), a CPU emulation of a GPU: expect it to be far slower than --backend cpu",
                        a.name, a.backend
                    );
                    Ok(Resolved::Wgpu { adapter: format!("{} via {}, software", a.name, a.backend) })
                }
                None => bail!(
                    "--backend wgpu: no GPU adapter found (no Vulkan, Metal or DirectX 12 driver answered)\n  install your GPU's Vulkan driver, or run on the CPU with --backend cpu"
                ),
            }
        }
    }
}

/// Runs `$body` with `$B` bound to the resolved backend and `$device` to its device.
/// Macro rather than trait object: training code is generic and monomorphised per backend.
#[macro_export]
macro_rules! with_backend {
    ($resolved:expr, |$B:ident, $device:ident| $body:expr) => {
        match $resolved {
            $crate::backend::Resolved::Cpu => {
                type $B = $crate::backend::Cpu;
                let $device = burn::tensor::Device::<$B>::default();
                $body
            }
            $crate::backend::Resolved::Wgpu { .. } => {
                type $B = $crate::backend::Wgpu;
                let $device = $crate::backend::WgpuDevice::DefaultDevice;
                $body
            }
        }
    };
}

/// Counts the kernels the WGPU backend launches, so `dcgan bench` can report launches per
/// training step on any Vulkan driver, the software one included: cubecl's "minimal" profiling
/// level logs one line per launch, fused kernels included, through the `log` crate, where
/// this counts them. Process-wide, and only for `bench`: every launch then also sends a line to
/// cubecl's logger thread.
pub mod launches {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Duration;

    use cubecl_common::config::RuntimeConfig;
    use cubecl_runtime::config::CubeClRuntimeConfig;

    static LAUNCHES: AtomicU64 = AtomicU64::new(0);

    struct Counter;

    impl log::Log for Counter {
        fn enabled(&self, metadata: &log::Metadata) -> bool {
            metadata.target().starts_with("cubecl")
        }

        fn log(&self, record: &log::Record) {
            if self.enabled(record.metadata())
                && record.args().as_str().map_or_else(
                    || record.args().to_string().starts_with("Executing "),
                    |s| s.starts_with("Executing "),
                )
            {
                LAUNCHES.fetch_add(1, Ordering::Relaxed);
            }
        }

        fn flush(&self) {}
    }

    /// Starts counting. Must run before the first GPU tensor exists: cubecl reads its
    /// configuration once. Returns false (and counts nothing) where that already happened or
    /// another logger is installed.
    pub fn enable() -> bool {
        let mut config = CubeClRuntimeConfig::from_current_dir().override_from_env();
        config.profiling.logger = match serde_json::from_value(serde_json::json!({
            "level": "minimal",
            "log": "info",
        })) {
            Ok(logger) => logger,
            Err(_) => return false,
        };
        if log::set_logger(&Counter).is_err() {
            return false;
        }
        log::set_max_level(log::LevelFilter::Info);
        std::panic::catch_unwind(|| CubeClRuntimeConfig::set(config)).is_ok()
    }

    /// Launches counted so far, once cubecl's logger thread has delivered them all: call after
    /// synchronising the device; the count is read when it has stopped changing.
    pub fn settled() -> u64 {
        let mut last = LAUNCHES.load(Ordering::Relaxed);
        loop {
            std::thread::sleep(Duration::from_millis(50));
            let now = LAUNCHES.load(Ordering::Relaxed);
            if now == last {
                return now;
            }
            last = now;
        }
    }
}
