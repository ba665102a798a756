//! The `berth` admin command.

fn main() {
    if let Err(error) = berth::cli::run(std::env::args_os()) {
        eprintln!(" !     {error}");
        std::process::exit(error.exit_code());
    }
}
