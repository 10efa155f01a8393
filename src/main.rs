use clap::Parser;

fn main() {
    let cli = dcgan::cli::Cli::parse();
    if let Err(e) = dcgan::cli::run(cli) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
