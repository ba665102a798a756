//! The `berth` admin command.

fn main() {
    // A reader that went away (`berth storage:report | head`) ends output, not in a panic
    // message: printing panics on a closed stdout, so that one panic exits quietly, as
    // ripgrep does.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if message.starts_with("failed printing to stdout") {
            std::process::exit(0);
        }
        default_hook(info);
    }));
    let out = berth::output::Reporter::stdio();
    match berth::cli::run(std::env::args_os(), &out) {
        Ok(code) => std::process::exit(code),
        Err(error) => {
            out.warn(berth::output::printable(&error.to_string()));
            std::process::exit(error.exit_code());
        }
    }
}
