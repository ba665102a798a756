//! What the git hooks do. pre-receive validates and deploys a push to the deploy branch before
//! the ref moves, so a bad `app.toml`, a failed build or an unhealthy start rejects the push
//! and the previous release keeps serving; post-receive prunes old images and sums up.

use std::collections::HashMap;
use std::path::Path;

use crate::deploy::{self, DeployError, Plan, Timing};
use crate::engine::Engine;
use crate::git::{GitError, PushedRepo};
use crate::manifest::{self, Diagnostic, Manifest, Policy, Server};
use crate::names::{AppName, NameError};
use crate::output::{detail, heading, printable, step, warn};
use crate::state::{Outcome, Root, RunConfig, StateError};
use crate::storage::binds::{self, Bind};
use crate::storage::{Attachment, Origin, Source};

/// Largest Dockerfile berth accepts (only its presence is checked).
const MAX_DOCKERFILE_BYTES: usize = 16 << 20;
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
    #[error("app.toml has {} problem(s); nothing was changed", .0.len())]
    Manifest(Vec<Diagnostic>),
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

pub fn pre_receive(root: &Root, app: &AppName, updates: &[RefUpdate]) -> Result<(), HookError> {
    let branches = deploy_branches(root, app)?;
    let target = deploy_update(updates, &branches)?;
    for update in updates.iter().filter(|u| !is_deploy_ref(&u.name, &branches)) {
        step(format!("Skipping deploy for {}: only {} deploy", update.name, branches.join(" or ")));
    }
    if let Some(update) = target {
        deploy_push(root, app, update)?;
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

fn deploy_push(root: &Root, app: &AppName, update: &RefUpdate) -> Result<(), HookError> {
    let commit = update.new.as_str();
    step(format!("Deploying {app} ({})", deploy::short(commit)));
    let repo = PushedRepo::open_from_env()?;
    // Read before taking the lock: an oversized or unreadable file is refused without waiting.
    let bytes = match repo.read_file(commit, manifest::FILE_NAME, manifest::MAX_BYTES) {
        Err(GitError::TooLarge { size, .. }) => {
            return Err(HookError::Manifest(vec![manifest::too_large(size)]));
        }
        read => read?,
    };
    let lock = root.lock_app_announced(app)?;
    // git moves the branch only if it still is what this push expects; a push that waited for
    // another one must not deploy what git is going to refuse.
    settle_previous_push(root, app)?;
    let now = ref_value(&update.name)?;
    if now != update.old {
        return Err(HookError::BranchMoved { name: update.name.clone(), now });
    }
    let state = root.read_app(app)?;
    let grants = root.grants_of(app)?;
    let entries = root.entries_by_name()?;
    let admin_mounts: Vec<Attachment> =
        state.mounts.iter().filter(|m| m.made_by == Origin::Admin).cloned().collect();
    let app_dir = root.app_storage_dir(app);
    // Every other bind source: other apps', and this app's now (its admin mounts and the
    // serving release's, whose containers run until the new ones are healthy).
    let mut binds = root.other_apps_binds(app, &entries)?;
    binds.extend(Bind::all(app, &app_dir, &state.mounts, &entries));
    let policy = Policy { server: Some(Server { app, app_dir: &app_dir, binds: &binds }), ..grants.policy() };
    let manifest = match &bytes {
        None => Manifest::default(),
        Some(bytes) => manifest::check(bytes, &policy, &admin_mounts).map_err(HookError::Manifest)?,
    };
    // What needs the server or the commit: checked once the file itself is sound.
    let mut problems = Vec::new();
    for mount in &manifest.mounts {
        let Source::HostPath(path) = &mount.source else { continue };
        if let Some(link) = symlink_below_grant(path, &grants.host_paths) {
            problems.push(Diagnostic::new(
                mount.at.source,
                format!("host path \"{}\" goes through the symlink \"{}\"", path.display(), link.display()),
                Some(
                    "berth does not follow symlinks below an allowed host path: mount the link's target, \
                     if the admin allowed it"
                        .into(),
                ),
            ));
        } else if !path.exists() {
            problems.push(Diagnostic::new(
                mount.at.source,
                format!("host path \"{}\" does not exist on the server", path.display()),
                Some("ask the admin to create it; berth creates only the app's own directories".into()),
            ));
        } else if let Err(unsafe_parent) = binds::check_parents(path) {
            problems.push(Diagnostic::new(mount.at.source, unsafe_parent.to_string(), None));
        }
    }
    if repo.read_file(commit, &manifest.build.dockerfile, MAX_DOCKERFILE_BYTES)?.is_none() {
        problems.push(Diagnostic::new(
            manifest::Pos { line: 1, column: 1 },
            format!("{} not found in the pushed commit", manifest.build.dockerfile),
            Some("add a Dockerfile at the repo root, or set [build].dockerfile".into()),
        ));
    }
    if !problems.is_empty() {
        return Err(HookError::Manifest(problems));
    }
    let repo_mounts: Vec<Attachment> = manifest.mounts.iter().flat_map(|m| m.attachments()).collect();
    let old_repo_mounts: Vec<&Attachment> =
        state.mounts.iter().filter(|m| m.made_by == Origin::Repo).collect();
    let mut mounts = admin_mounts.clone();
    mounts.extend(repo_mounts.iter().cloned());
    let releases = root.read_releases(app)?;
    let number = releases.next_number();
    let plan = Plan {
        app: app.clone(),
        release: number,
        commit: commit.to_string(),
        image: format!("{}:{number}", deploy::image_repo(app)),
        dockerfile: manifest.build.dockerfile.clone(),
        build_command: manifest.build.command.clone(),
        run: run_config(&manifest),
        mounts_added: repo_mounts.iter().filter(|m| !old_repo_mounts.contains(m)).cloned().collect(),
        mounts_removed: old_repo_mounts
            .iter()
            .filter(|m| !repo_mounts.contains(m))
            .map(|m| (*m).clone())
            .collect(),
        mounts_kept: repo_mounts.iter().filter(|m| old_repo_mounts.contains(m)).cloned().collect(),
        mounts,
        volume_specs: manifest
            .mounts
            .iter()
            .filter_map(|m| match &m.source {
                Source::AppVolume(name) => Some((
                    name.clone(),
                    (
                        m.driver.clone(),
                        m.driver_opts.iter().map(|(k, v)| (k.clone(), v.clone())).collect::<HashMap<_, _>>(),
                    ),
                )),
                _ => None,
            })
            .collect(),
    };
    print!("{plan}");
    // A proxy that is down refuses the push before anything is built or recorded.
    deploy::check_proxy(root, app, &plan.run)?;
    let engine = Engine::connect().map_err(DeployError::from)?;
    let context_commit = commit.to_string();
    let write_context: crate::scheduler::BuildContext = Box::new(move |out: &mut dyn std::io::Write| {
        PushedRepo::open_from_env()
            .and_then(|repo| repo.write_tree_tar(&context_commit, out))
            .map_err(|e| std::io::Error::other(e.to_string()))
    });
    match deploy::apply(root, &engine, &plan, write_context, &lock, Timing::from_env()) {
        Ok(release) => {
            let pending = format!("{} {commit} {}\n", update.name, std::os::unix::process::parent_id());
            if let Err(e) = crate::state::write_atomic(&pending_ref_file(root, app), pending.as_bytes()) {
                warn(format!("could not record the branch update for the next push: {e}"));
            }
            for removed in &plan.mounts_removed {
                detail(format!(
                    "Unmounted {} from {}; its data is kept",
                    removed.source, removed.container_path
                ));
            }
            if release.web_host_port.is_some() {
                let serving =
                    deploy::Serving { host_port: release.web_host_port, upstream: release.web_upstream };
                deploy::announce(root, app, serving);
            } else {
                heading(format!("Application deployed: {app} release {}", release.number));
            }
            Ok(())
        }
        Err(error) => {
            if let Err(record) = deploy::record_failure(root, &plan, &error.to_string(), &lock) {
                warn(format!("could not record the failed release: {record}"));
            }
            Err(error.into())
        }
    }
}

/// The symlink a host path goes through below the grant that allows it (the first one, from
/// the grant down), when every grant that allows the path leads through one. A link planted
/// below an allowed directory (by the app itself, through a mount of it) must not redirect a
/// mount elsewhere on the server. The grant itself may be a link: the admin chose it.
fn symlink_below_grant(path: &Path, grants: &[std::path::PathBuf]) -> Option<std::path::PathBuf> {
    let mut found = None;
    for grant in grants {
        let Ok(below) = path.strip_prefix(grant) else { continue };
        let mut at = grant.clone();
        let link = below.components().find_map(|part| {
            at.push(part);
            std::fs::symlink_metadata(&at).is_ok_and(|m| m.file_type().is_symlink()).then(|| at.clone())
        });
        match link {
            None => return None,
            Some(link) => {
                found.get_or_insert(link);
            }
        }
    }
    found
}

fn run_config(manifest: &Manifest) -> RunConfig {
    let processes = if manifest.processes.is_empty() {
        [("web".to_string(), None)].into()
    } else {
        manifest.processes.iter().map(|(name, cmd)| (name.clone(), Some(cmd.clone()))).collect()
    };
    let exclusive = manifest
        .process_types()
        .into_iter()
        .filter(|p| {
            manifest.mounts.iter().any(|m| m.exclusive && (m.processes.is_empty() || m.processes.contains(p)))
        })
        .collect();
    RunConfig {
        processes,
        user: manifest.user.as_ref().map(ToString::to_string),
        web_port: manifest.web.as_ref().map(|w| w.port),
        healthcheck: manifest.web.as_ref().and_then(|w| w.healthcheck.clone()),
        exclusive,
        stop_timeout: manifest.stop_timeout,
        drain_seconds: manifest.web.as_ref().and_then(|w| w.drain_seconds),
        hold_seconds: manifest.web.as_ref().and_then(|w| w.hold_seconds),
    }
}

/// Prunes images of releases older than the last few deployed ones and prints a summary.
pub fn post_receive(root: &Root, app: &AppName) -> Result<(), HookError> {
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
            detail(format!("Pruned image {}", release.image));
        }
    }
    if let Some(current) = state.current_release {
        step(format!("{app} is serving release {current}; `berth releases {app}` lists them all"));
    }
    Ok(())
}

/// Prints why a push is rejected: each `app.toml` problem with its position and hint, or the
/// deploy error, then the verdict.
pub fn report_failure(error: &anyhow::Error) {
    match error.downcast_ref::<HookError>() {
        Some(HookError::Manifest(problems)) => {
            for problem in problems {
                eprintln!("{problem}");
            }
            eprintln!(
                " !     app.toml has {} problem(s); the push is rejected and nothing was changed",
                problems.len()
            );
        }
        _ => {
            eprintln!(" !     {}", printable(&error.to_string()));
            eprintln!(" !     The push is rejected; the previous release keeps serving");
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
