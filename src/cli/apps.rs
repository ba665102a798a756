//! `apps:*`: create, list, destroy and report apps.

use super::{Format, Result, confirm_destructive, existing_app, print_json};
use crate::deploy;
use crate::names::AppName;
use crate::output::{Report, Reporter};
use crate::proxy::records::Records;
use crate::state::Root;
use crate::{git, hostfs};

pub fn create(root: &Root, app: &AppName, out: &Reporter) -> Result<()> {
    if root.app_exists(app) {
        return Err(crate::state::StateError::AppExists(app.clone()).into());
    }
    out.step(format!("Creating {app}..."));
    create_quietly(root, app)
}

/// Creates the app's repo, hooks and state without printing (an SSH push's stdout is git's).
pub fn create_quietly(root: &Root, app: &AppName) -> Result<()> {
    let lock = root.lock_app(app)?;
    if root.app_exists(app) {
        return Err(crate::state::StateError::AppExists(app.clone()).into());
    }
    // The repo first: if it fails, no app state claims an app without a repo.
    let repo = root.repo_dir(app);
    crate::state::make_dir(&root.repos_dir())?;
    git::init_bare(&repo)?;
    git::install_hooks(&repo, &super::hook_dir()?, root.path())?;
    // Pushes over SSH write the repo as the berth user, whoever created it.
    if crate::state::running_as_root()
        && let Ok(owner) = std::fs::metadata(root.repos_dir())
    {
        use std::os::unix::fs::MetadataExt;
        hostfs::chown_tree(&repo, owner.uid(), owner.gid())?;
    }
    root.create_app(app, &lock)?;
    Ok(())
}

pub fn list(root: &Root, format: Format, out: &Reporter) -> Result<()> {
    let apps = root.list_apps()?;
    match format {
        Format::Json => print_json(&apps, out),
        Format::Text => {
            out.heading("My Apps");
            for app in apps {
                out.text(format!("{app}\n"));
            }
            Ok(())
        }
    }
}

pub fn destroy(root: &Root, app: &AppName, force: bool, purge_storage: bool, out: &Reporter) -> Result<()> {
    existing_app(root, app)?;
    confirm_destructive("app", "apps:destroy", app.as_str(), force, None, out)?;
    let lock = root.lock_app(app)?;
    // Read again under the lock: another destroy may have won the race.
    let state = existing_app(root, app)?;
    let served = !Records::read(root)?.hosts(app).is_empty();
    deploy::destroy_app(root, app, &state, purge_storage, &lock, out)?;
    super::proxy::republish(root, served, out)
}

pub fn report(root: &Root, args: &[String], format: Format, out: &Reporter) -> Result<()> {
    let request = super::report::Request::parse(root, "apps:report", args, format)?;
    request.print(
        "app",
        "app",
        |app| {
            let state = existing_app(root, app)?;
            let mut report = Report::default();
            report.row("app-created-at", state.created_at.to_string());
            report.row("app-deploy-branch", crate::hook::deploy_branches(root, app)?.join(" or "));
            report.row("app-dir", root.app_dir(app).display().to_string());
            report.row("app-repo", root.repo_dir(app).display().to_string());
            report.row("app-scale", crate::scale::describe(&crate::scale::of_app(root, app, &state)?));
            report.row("app-storage-dir", root.app_storage_dir(app).display().to_string());
            Ok(report)
        },
        out,
    )
}

/// `git:set <app> deploy-branch [<branch>]`: which branch's pushes deploy.
pub fn git_set(
    root: &Root,
    app: &AppName,
    property: &str,
    value: Option<&str>,
    out: &Reporter,
) -> Result<()> {
    if property != "deploy-branch" {
        return Err(super::CliError::Usage(format!(
            "Invalid property specified \"{property}\", valid properties include: deploy-branch"
        )));
    }
    if let Some(branch) = value
        && !git2::Reference::is_valid_name(&format!("refs/heads/{branch}"))
    {
        return Err(super::Refusal::BadBranchName(branch.to_string()).into());
    }
    root.update_app(app, |state| {
        state.deploy_branch = value.map(str::to_string);
        Ok::<_, super::CliError>(())
    })?;
    match value {
        Some(branch) => out.step(format!("Set deploy-branch to {branch} for {app}")),
        None => out.step(format!("Unset deploy-branch for {app}; main or master deploy")),
    }
    Ok(())
}
