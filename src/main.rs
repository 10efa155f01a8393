use std::process::ExitCode;

use clap::Parser;

/// Exit codes: 0 done, 1 error (the message says what to do), 130 interrupted after a checkpoint.
/// mimalloc keeps freed pages for reuse, where glibc unmaps big blocks and faults them in
/// again: measured ~10% off a CPU training step (docs/benchmarks.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = dcgan::cli::Cli::parse();
    match dcgan::cli::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
