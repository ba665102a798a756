//! The `berth` admin command.

fn main() {
    match berth::cli::run(std::env::args_os()) {
        Ok(code) => std::process::exit(code),
        Err(error) => {
            eprintln!(" !     {error}");
            std::process::exit(error.exit_code());
        }
    }
}
