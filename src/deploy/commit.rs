//! Deploying one commit of an app's repository, from a push (`pre-receive`) or from the server
//! (`ps:rebuild`): read `app.toml` from the commit, check it against the server, plan, print the
//! plan, and apply it — or, for a dry run, stop after the plan with nothing changed.

use std::path::PathBuf;

use super::plan::{Plan, PlanInputs, plan};
use super::{DeployError, Timing, apply, record_failure};
use crate::git::{GitError, PushedRepo};
use crate::manifest::{self, Diagnostic, Manifest, Policy, Server};
use crate::names::AppName;
use crate::output::{self, Reporter};
use crate::scheduler::{BuildContext, Scheduler};
use crate::state::{Lock, Release, Root, StateError};
use crate::storage::binds::Bind;
use crate::storage::host_path;
use crate::storage::{Attachment, Origin, Source};

/// Largest Dockerfile berth accepts (only its presence is checked).
const MAX_DOCKERFILE_BYTES: usize = 16 << 20;

#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    #[error(transparent)]
    Deploy(#[from] DeployError),
    #[error(transparent)]
    Git(#[from] GitError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error("app.toml has {} problem(s); nothing was changed", .0.len())]
    Manifest(Vec<Diagnostic>),
    #[error("this was a dry run: the plan above was checked, and nothing was built, started or changed")]
    DryRun,
}

/// Whether to apply the plan or only show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Apply,
    DryRun,
}

/// Where the commit comes from: the repository, and how to open it again on the thread that
/// streams the build context (a repository handle cannot cross threads).
pub enum Repo {
    /// The repository a git hook runs for, with the push's quarantined objects.
    Hook,
    /// A repository by path.
    At(PathBuf),
}

impl Repo {
    fn open(&self) -> Result<PushedRepo, GitError> {
        match self {
            Repo::Hook => PushedRepo::open_from_env(),
            Repo::At(path) => PushedRepo::open(path),
        }
    }
}

/// The commit a deploy is of.
pub struct Commit<'a> {
    pub repo: Repo,
    pub app: &'a AppName,
    pub commit: &'a str,
    /// Its `app.toml` ([`read_manifest`]), `None` when it has none.
    pub manifest: Option<&'a [u8]>,
}

/// Reads `app.toml` of a commit, refusing an oversized one before any lock is taken.
pub fn read_manifest(repo: &Repo, commit: &str) -> Result<Option<Vec<u8>>, CommitError> {
    match repo.open()?.read_file(commit, manifest::FILE_NAME, manifest::MAX_BYTES) {
        Err(GitError::TooLarge { size, .. }) => Err(CommitError::Manifest(vec![manifest::too_large(size)])),
        read => Ok(read?),
    }
}

/// Checks, plans and (unless a dry run) applies `commit`, with the app's lock held. Returns the
/// plan and the release it deployed; a dry run ends in `CommitError::DryRun` once the plan is
/// printed.
pub fn deploy_commit(
    root: &Root,
    scheduler: &dyn Scheduler,
    source: Commit<'_>,
    lock: &Lock,
    mode: Mode,
    out: &Reporter,
) -> Result<(Plan, Release), CommitError> {
    let Commit { repo, app, commit, manifest: manifest_bytes } = source;
    let plan = plan_commit(root, &repo, app, commit, manifest_bytes)?;
    out.text(plan.to_string());
    // A proxy that is down refuses the push before anything is built or recorded.
    super::check_proxy(root, app, &plan.run)?;
    if mode == Mode::DryRun {
        return Err(CommitError::DryRun);
    }
    let context_commit = commit.to_string();
    let context: BuildContext = Box::new(move |out: &mut dyn std::io::Write| {
        repo.open()
            .and_then(|repo| repo.write_tree_tar(&context_commit, out))
            .map_err(|e| std::io::Error::other(e.to_string()))
    });
    match apply(root, scheduler, &plan, context, lock, Timing::from_env(), out) {
        Ok(release) => Ok((plan, release)),
        Err(error) => {
            if let Err(record) = record_failure(root, &plan, &error.to_string(), lock) {
                out.warn(format!("could not record the failed release: {record}"));
            }
            Err(error.into())
        }
    }
}

/// Prints why a deploy of a commit did not happen: each `app.toml` problem with its position
/// and hint, the dry run's verdict, or the deploy error; `verdict` says what that means
/// ("the push is rejected").
pub fn report_commit_failure(error: &CommitError, verdict: &str, out: &Reporter) {
    match error {
        CommitError::Manifest(problems) => {
            print_problems(problems, out);
            out.warn(format!(
                "app.toml has {} problem(s); {verdict} and nothing was changed",
                problems.len()
            ));
        }
        CommitError::DryRun => out.warn(format!("Dry run: {verdict}; nothing was built, started or changed")),
        other => {
            out.warn(output::printable(&other.to_string()));
            out.warn(format!("{}; the previous release keeps serving", capitalized(verdict)));
        }
    }
}

/// Each `app.toml` problem with its position and hint, on stderr.
pub fn print_problems(problems: &[Diagnostic], out: &Reporter) {
    for problem in problems {
        out.error_text(problem.to_string());
    }
}

fn capitalized(text: &str) -> String {
    let mut chars = text.chars();
    chars.next().map(|first| first.to_uppercase().chain(chars).collect()).unwrap_or_default()
}

/// Validates the manifest against the server and plans the release.
fn plan_commit(
    root: &Root,
    repo: &Repo,
    app: &AppName,
    commit: &str,
    manifest_bytes: Option<&[u8]>,
) -> Result<Plan, CommitError> {
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
    let manifest = match manifest_bytes {
        None => Manifest::default(),
        Some(bytes) => manifest::check(bytes, &policy, &admin_mounts).map_err(CommitError::Manifest)?,
    };
    let repo_host_paths = manifest.mounts.iter().filter_map(|mount| match &mount.source {
        Source::HostPath(path) => Some(path),
        _ => None,
    });
    let host_paths = host_path::repo_facts(repo_host_paths, &grants.host_paths);
    let dockerfile_found =
        repo.open()?.read_file(commit, &manifest.build.dockerfile, MAX_DOCKERFILE_BYTES)?.is_some();
    let releases = root.read_releases(app)?;
    let serving = state.current_release.and_then(|n| releases.get(n));
    let inputs = PlanInputs {
        app,
        commit,
        release: releases.next_number(),
        manifest: &manifest,
        state: &state,
        serving,
        host_paths: &host_paths,
        dockerfile_found,
    };
    plan(inputs).map_err(CommitError::Manifest)
}
