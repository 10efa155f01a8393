use std::process::ExitCode;

use clap::Parser;

/// Exit codes: 0 done, 1 error (the message says what to do), 130 interrupted after a checkpoint.
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
