//! The `dcgan` binary: the allocator's settings, then the command line.

use std::process::ExitCode;

use clap::Parser;

/// mimalloc reuses freed blocks where glibc unmaps big ones and faults them in again:
/// measured ~10% off a CPU training step (docs/benchmarks.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` in mimalloc.h's `mi_option_e` (the same in its v2 and v3): how long
/// freed memory stays with the process before it is handed back to the system.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Exit codes: 0 done, 1 error (the message says what to do), 130 interrupted after a checkpoint.
fn main() -> ExitCode {
    // A training step frees and reallocates the same large buffers; purged after mimalloc's
    // default 10 ms, each one comes back as fresh pages the kernel clears on first touch
    // (12% of a CPU step in the kernel's page clearing, measured). Never purging keeps them:
    // the process stays at its peak size (+28 MB at batch 128), which training reaches anyway.
    // MIMALLOC_PURGE_DELAY, if set, wins (mimalloc reads it at start-up).
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: sets a plain integer option; mimalloc reads it at its next purge decision.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
    }
    let cli = dcgan::cli::Cli::parse();
    match dcgan::cli::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
