//! What the git hooks do. pre-receive validates and deploys a push to the deploy branch before
//! the ref moves, so a bad `app.toml`, a failed build or an unhealthy start rejects the push
//! and the previous release keeps serving; post-receive prunes old images and sums up.

use std::path::Path;

use crate::deploy::{self, Commit, CommitError, DeployError, Mode, Repo};
use crate::engine::Engine;
use crate::git::GitError;
use crate::names::{AppName, NameError};
use crate::output::{Reporter, printable};
use crate::state::{Outcome, Root, StateError};
const ZERO_OID: &str = "0000000000000000000000000000000000000000";
/// Releases whose images stay for rollback.
const KEEP_RELEASES: usize = 5;

#[derive(Debug, thiserror::Error)]
pub enum HookError {
    #[error(transparent)]
    Deploy(#[from] DeployError),
    #[error(transparent)]
    Git(#[from] GitError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Name(#[from] NameError),
    #[error(transparent)]
    Commit(#[from] CommitError),
    #[error(
        "deleting the deploy branch {0} is refused: it would leave the app without a source; delete the app with `berth apps:destroy` instead"
    )]
    DeleteDeployBranch(String),
    #[error(
        "this push updates deploy branches more than once ({0}); berth checks and deploys one commit per push, so \
         nothing was deployed: push one deploy branch at a time (or set the app's deploy branch with `berth git:set \
         <app> deploy-branch <branch>`)"
    )]
    SeveralDeployUpdates(String),
    #[error(
        "cannot tell which app this repository belongs to ({0}); hooks must run in $BERTH_ROOT/repos/<app>.git"
    )]
    UnknownRepo(String),
    #[error(
        "{name} moved to {} while this push waited for another deploy; nothing was deployed: fetch, and push again",
        deploy::short(.now)
    )]
    BranchMoved { name: String, now: String },
}

/// One line of hook input: `<old> <new> <ref>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefUpdate {
    pub old: String,
    pub new: String,
    pub name: String,
}

pub fn parse_updates(input: &str) -> Vec<RefUpdate> {
    input
        .lines()
        .filter_map(|line| {
            let mut parts = line.split_whitespace();
            Some(RefUpdate {
                old: parts.next()?.into(),
                new: parts.next()?.into(),
                name: parts.next()?.into(),
            })
        })
        .collect()
}

/// The app a bare repo belongs to, from its directory name `<app>.git`.
pub fn app_of_repo(git_dir: &Path) -> Result<AppName, HookError> {
    let name = git_dir
        .canonicalize()
        .ok()
        .and_then(|p| p.file_name().and_then(|n| n.to_str()).map(str::to_string))
        .and_then(|n| n.strip_suffix(".git").map(str::to_string))
        .ok_or_else(|| HookError::UnknownRepo(git_dir.display().to_string()))?;
    Ok(AppName::new(&name)?)
}

/// The branches whose pushes deploy: the app's setting, else the server's, else `main` and
/// `master` (whichever the pusher uses).
pub fn deploy_branches(root: &Root, app: &AppName) -> Result<Vec<String>, HookError> {
    let state = root.read_app(app)?;
    let settings = root.read_settings()?;
    Ok(match state.deploy_branch.or(settings.deploy_branch) {
        Some(branch) => vec![branch],
        None => vec!["main".into(), "master".into()],
    })
}

pub fn pre_receive(
    root: &Root,
    app: &AppName,
    updates: &[RefUpdate],
    out: &Reporter,
) -> Result<(), HookError> {
    let branches = deploy_branches(root, app)?;
    let target = deploy_update(updates, &branches)?;
    for update in updates.iter().filter(|u| !is_deploy_ref(&u.name, &branches)) {
        out.step(format!("Skipping deploy for {}: only {} deploy", update.name, branches.join(" or ")));
    }
    if let Some(update) = target {
        deploy_push(root, app, update, out)?;
    }
    Ok(())
}

fn is_deploy_ref(name: &str, branches: &[String]) -> bool {
    name.strip_prefix("refs/heads/").is_some_and(|b| branches.iter().any(|d| d == b))
}

/// The one update of a push that deploys, if any. Refused: deleting a deploy branch, and more
/// than one update of deploy branches (the same ref listed twice, or `main` and `master` while
/// both deploy), since one push deploys the one commit it checked and git would move every ref.
fn deploy_update<'u>(
    updates: &'u [RefUpdate],
    branches: &[String],
) -> Result<Option<&'u RefUpdate>, HookError> {
    let deploys: Vec<&RefUpdate> = updates.iter().filter(|u| is_deploy_ref(&u.name, branches)).collect();
    if let Some(deleted) = deploys.iter().find(|u| u.new == ZERO_OID) {
        return Err(HookError::DeleteDeployBranch(deleted.name.clone()));
    }
    match deploys.as_slice() {
        [] => Ok(None),
        [only] => Ok(Some(only)),
        several => Err(HookError::SeveralDeployUpdates(
            several.iter().map(|u| u.name.as_str()).collect::<Vec<_>>().join(", "),
        )),
    }
}

/// The value of a ref in the hook's repository (all zeros when it does not exist), read afresh.
fn ref_value(name: &str) -> Result<String, HookError> {
    let read = |e: git2::Error| GitError::Read { what: name.to_string(), message: e.message().to_string() };
    let repo = git2::Repository::open_from_env().map_err(read)?;
    match repo.refname_to_id(name) {
        Ok(id) => Ok(id.to_string()),
        Err(e) if e.code() == git2::ErrorCode::NotFound => Ok(ZERO_OID.to_string()),
        Err(e) => Err(read(e).into()),
    }
}

/// Where a successful deploy leaves `<ref> <commit> <pid of git receive-pack>`: git moves the
/// branch only after the hook exited (and released the app's lock), so the next push must wait
/// for that move before it compares the branch with what it expects.
fn pending_ref_file(root: &Root, app: &AppName) -> std::path::PathBuf {
    root.app_dir(app).join("pending-ref-update")
}

/// Waits (a bounded time) until the branch update of the previous successful push is done:
/// the ref names its commit, or the git process that was to move it has exited. The caller
/// holds the app's lock; the record stays (a rejected push changes no file).
fn settle_previous_push(root: &Root, app: &AppName) -> Result<(), HookError> {
    let Ok(text) = std::fs::read_to_string(pending_ref_file(root, app)) else { return Ok(()) };
    let mut fields = text.split_whitespace();
    if let (Some(name), Some(commit), Some(pid)) = (fields.next(), fields.next(), fields.next()) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let alive = std::path::Path::new("/proc").join(pid);
        while ref_value(name)? != commit && alive.exists() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
    Ok(())
}

fn deploy_push(root: &Root, app: &AppName, update: &RefUpdate, out: &Reporter) -> Result<(), HookError> {
    let commit = update.new.as_str();
    let mode = if push_options().iter().any(|o| o == "dry-run") { Mode::DryRun } else { Mode::Apply };
    out.step(format!(
        "Deploying {app} ({}){}",
        deploy::short(commit),
        if mode == Mode::DryRun { ", dry run" } else { "" }
    ));
    // Read before taking the lock: an oversized or unreadable file is refused without waiting.
    let bytes = deploy::read_manifest(&Repo::Hook, commit)?;
    let lock = root.lock_app_announced(app, out)?;
    // git moves the branch only if it still is what this push expects; a push that waited for
    // another one must not deploy what git is going to refuse.
    settle_previous_push(root, app)?;
    let now = ref_value(&update.name)?;
    if now != update.old {
        return Err(HookError::BranchMoved { name: update.name.clone(), now });
    }
    let engine = Engine::connect().map_err(DeployError::from)?;
    let (plan, release) = deploy::deploy_commit(
        root,
        &engine,
        Commit { repo: Repo::Hook, app, commit, manifest: bytes.as_deref() },
        &lock,
        mode,
        out,
    )?;
    let pending = format!("{} {commit} {}\n", update.name, std::os::unix::process::parent_id());
    if let Err(e) = crate::state::write_atomic(&pending_ref_file(root, app), pending.as_bytes()) {
        out.warn(format!("could not record the branch update for the next push: {e}"));
    }
    for removed in &plan.mounts_removed {
        out.detail(format!("Unmounted {} from {}; its data is kept", removed.source, removed.container_path));
    }
    announce(root, app, &release, out);
    Ok(())
}

/// The push options (`git push -o <option>`) of the push being received.
fn push_options() -> Vec<String> {
    let count =
        std::env::var("GIT_PUSH_OPTION_COUNT").ok().and_then(|n| n.parse::<usize>().ok()).unwrap_or(0);
    (0..count).filter_map(|i| std::env::var(format!("GIT_PUSH_OPTION_{i}")).ok()).collect()
}

/// The last line of a deploy: where the app now answers.
pub fn announce(root: &Root, app: &AppName, release: &crate::state::Release, out: &Reporter) {
    if release.web_host_port.is_some() {
        deploy::announce(root, app, release.web_host_port, out);
    } else {
        out.heading(format!("Application deployed: {app} release {}", release.number));
    }
}

/// Prunes images of releases older than the last few deployed ones and prints a summary.
pub fn post_receive(root: &Root, app: &AppName, out: &Reporter) -> Result<(), HookError> {
    let state = root.read_app(app)?;
    let releases = root.read_releases(app)?;
    let Ok(engine) = Engine::connect() else { return Ok(()) };
    let mut deployed: Vec<u32> =
        releases.releases.iter().filter(|r| r.outcome == Outcome::Deployed).map(|r| r.number).collect();
    deployed.sort_unstable_by(|a, b| b.cmp(a));
    let keep: Vec<u32> = deployed.iter().take(KEEP_RELEASES).copied().chain(state.current_release).collect();
    for release in releases.releases.iter().filter(|r| !keep.contains(&r.number)) {
        if engine.image_exists(&release.image).map_err(DeployError::from)? {
            engine.remove_image(&release.image).map_err(DeployError::from)?;
            out.detail(format!("Pruned image {}", release.image));
        }
    }
    if let Some(current) = state.current_release {
        out.step(format!("{app} is serving release {current}; `berth releases {app}` lists them all"));
    }
    Ok(())
}

/// Prints why a push is rejected: each `app.toml` problem with its position and hint, or the
/// deploy error, then the verdict.
pub fn report_failure(error: &anyhow::Error, out: &Reporter) {
    match error.downcast_ref::<HookError>() {
        Some(HookError::Commit(error)) => deploy::report_commit_failure(error, "the push is rejected", out),
        _ => {
            out.warn(printable(&error.to_string()));
            out.warn("The push is rejected; the previous release keeps serving");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(name: &str, new: &str) -> RefUpdate {
        RefUpdate { old: ZERO_OID.into(), new: new.into(), name: name.into() }
    }

    #[test]
    fn one_push_deploys_at_most_one_deploy_branch_update() {
        let both = ["main".to_string(), "master".to_string()];
        let main = [update("refs/heads/main", "a"), update("refs/heads/feature", "b")];
        assert_eq!(deploy_update(&main, &both).unwrap(), Some(&main[0]));
        assert_eq!(deploy_update(&main[1..], &both).unwrap(), None);
        let twice = [update("refs/heads/main", "a"), update("refs/heads/main", "b")];
        let error = deploy_update(&twice, &both).unwrap_err().to_string();
        assert!(error.contains("more than once (refs/heads/main, refs/heads/main)"), "{error}");
        let main_and_master = [update("refs/heads/main", "a"), update("refs/heads/master", "b")];
        assert!(matches!(deploy_update(&main_and_master, &both), Err(HookError::SeveralDeployUpdates(_))));
        // With one deploy branch set, the other branch moves without a deploy.
        let only_main = ["main".to_string()];
        assert_eq!(deploy_update(&main_and_master, &only_main).unwrap(), Some(&main_and_master[0]));
        let deleted = [update("refs/heads/main", ZERO_OID)];
        assert!(matches!(deploy_update(&deleted, &both), Err(HookError::DeleteDeployBranch(_))));
    }
}
