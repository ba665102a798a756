//! `read_manifest <repo> <commit>`: what pre-receive does before it plans a deploy — open the
//! repository, read `app.toml` from the pushed commit and check it — as one process, so
//! `scripts/bench.sh` can time it with hyperfine beside `git cat-file -p <commit>:app.toml`.
//! Prints `app.toml` (as `git cat-file -p` does) and exits 0 when it is valid.
//!
//! Without arguments (as `cargo bench` and `cargo test --all-targets` run it) it does nothing.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use berth::git::PushedRepo;
use berth::manifest::{self, Policy};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let [repo, commit] = args.as_slice() else {
        eprintln!("read_manifest: usage: read_manifest <repo> <commit> (run by scripts/bench.sh)");
        return ExitCode::SUCCESS;
    };
    let result = PushedRepo::open(Path::new(repo))
        .and_then(|repo| repo.read_file(commit, manifest::FILE_NAME, manifest::MAX_BYTES));
    let bytes = match result {
        Ok(Some(bytes)) => bytes,
        Ok(None) => {
            eprintln!("read_manifest: no app.toml in {commit}");
            return ExitCode::FAILURE;
        }
        Err(error) => {
            eprintln!("read_manifest: {error}");
            return ExitCode::FAILURE;
        }
    };
    let policy = Policy { host_paths: &[], volumes: &[], drivers: &[], server: None };
    if let Err(problems) = manifest::check(&bytes, &policy, &[]) {
        for problem in problems {
            eprintln!("{problem}");
        }
        return ExitCode::FAILURE;
    }
    match std::io::stdout().lock().write_all(&bytes) {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => ExitCode::FAILURE,
    }
}
