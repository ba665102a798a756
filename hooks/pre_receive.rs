//! git's pre-receive hook for an app repo: validates and deploys a push before the ref moves.
//! Anything printed reaches the pusher as `remote:` lines; a non-zero exit rejects the push.

use std::io::Read;

fn main() {
    let root = berth::state::Root::from_env();
    let mut input = String::new();
    let result = std::io::stdin()
        .read_to_string(&mut input)
        .map_err(|e| anyhow::anyhow!("cannot read the pushed refs: {e}"))
        .and_then(|_| {
            let git_dir = std::env::var_os("GIT_DIR").map_or_else(|| ".".into(), std::path::PathBuf::from);
            let app = berth::hook::app_of_repo(&git_dir)?;
            berth::hook::pre_receive(&root, &app, &berth::hook::parse_updates(&input))?;
            Ok(())
        });
    if let Err(error) = result {
        berth::hook::report_failure(&error);
        std::process::exit(1);
    }
}
