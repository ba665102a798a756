//! git's post-receive hook for an app repo: prunes old release images and sums up. The deploy
//! itself already happened in pre-receive; nothing here can undo a push.

fn main() {
    let root = berth::state::Root::from_env();
    let out = berth::output::Reporter::stdio();
    let git_dir = std::env::var_os("GIT_DIR").map_or_else(|| ".".into(), std::path::PathBuf::from);
    let result =
        berth::hook::app_of_repo(&git_dir).and_then(|app| berth::hook::post_receive(&root, &app, &out));
    if let Err(error) = result {
        // The push has landed; say what went wrong but do not fail it.
        out.warn(error.to_string());
    }
}
