//! git's pre-receive hook for an app repo: validates and deploys a push before the ref moves.
//! Anything printed reaches the pusher as `remote:` lines; a non-zero exit rejects the push.

use std::io::Read;

/// berth's one `unsafe` call, allowed here alone.
#[allow(unsafe_code)]
fn limit_mapped_packs() {
    // SAFETY: sets a libgit2 global without synchronisation, which is sound only while no
    // other thread exists: this runs first in `main`, before the engine's runtime or the build
    // context's writer thread start. A failure leaves libgit2's default, which is only slower
    // to give memory back.
    unsafe {
        let _ = git2::opts::set_mwindow_size(berth::git::PACK_WINDOW);
        let _ = git2::opts::set_mwindow_mapped_limit(berth::git::MAPPED_PACK_LIMIT);
    }
}

fn main() {
    limit_mapped_packs();
    let root = berth::state::Root::from_env();
    let out = berth::output::Reporter::stdio();
    let mut input = String::new();
    let result = std::io::stdin()
        .read_to_string(&mut input)
        .map_err(|e| anyhow::anyhow!("cannot read the pushed refs: {e}"))
        .and_then(|_| {
            let git_dir = std::env::var_os("GIT_DIR").map_or_else(|| ".".into(), std::path::PathBuf::from);
            let app = berth::hook::app_of_repo(&git_dir)?;
            berth::hook::pre_receive(&root, &app, &berth::hook::parse_updates(&input), &out)?;
            Ok(())
        });
    if let Err(error) = result {
        berth::hook::report_failure(&error, &out);
        std::process::exit(1);
    }
}
