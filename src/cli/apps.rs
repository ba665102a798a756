//! `apps:*`: create, list, destroy and report apps.

use super::{Format, Result, confirm_destructive, existing_app, print_json};
use crate::deploy::{self, Timing};
use crate::engine::Engine;
use crate::names::AppName;
use crate::output::{Report, detail, heading, step, warn};
use crate::proxy::records::Records;
use crate::state::Root;
use crate::{git, hostfs};

pub fn create(root: &Root, app: &AppName) -> Result<()> {
    if root.app_exists(app) {
        return Err(crate::state::StateError::AppExists(app.clone()).into());
    }
    step(format!("Creating {app}..."));
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

pub fn list(root: &Root, format: Format) -> Result<()> {
    let apps = root.list_apps()?;
    match format {
        Format::Json => print_json(&apps),
        Format::Text => {
            heading("My Apps");
            for app in apps {
                println!("{app}");
            }
            Ok(())
        }
    }
}

pub fn destroy(root: &Root, app: &AppName, force: bool, purge_storage: bool) -> Result<()> {
    existing_app(root, app)?;
    confirm_destructive("app", "apps:destroy", app.as_str(), force, None)?;
    let lock = root.lock_app(app)?;
    // Read again under the lock: another destroy may have won the race.
    let state = existing_app(root, app)?;
    // Ask the engine before anything is removed, so a purge or a deployed app's teardown never
    // stops half done.
    let engine =
        if purge_storage || state.current_release.is_some() { Some(Engine::connect()?) } else { None };
    step(format!("Destroying {app}"));
    let served = !Records::read(root)?.hosts(app).is_empty();
    if let Some(engine) = &engine {
        let releases = root.read_releases(app)?;
        let run =
            state.current_release.and_then(|n| releases.get(n)).map(|r| r.run.clone()).unwrap_or_default();
        let timeout = deploy::stop_timeout(&run, Timing::from_env());
        for container in engine.app_containers(app.as_str())? {
            deploy::stop_and_remove(engine, &container, timeout)?;
            detail(format!("Removed container {container}"));
        }
        crate::scheduler::docker_swarm::remove_services(&state, app)?;
        for release in root.read_releases(app)?.releases {
            engine.remove_image(&release.image)?;
        }
    }
    let storage_dir = root.app_storage_dir(app);
    match engine.as_ref().filter(|_| purge_storage) {
        Some(engine) => {
            for volume in engine.app_volumes(app.as_str())? {
                engine.remove_volume(&volume)?;
                detail(format!("Removed volume {volume}"));
            }
            if hostfs::remove_tree(&storage_dir)? {
                detail(format!("Removed {}", storage_dir.display()));
            }
        }
        None => {
            if storage_dir.exists() {
                warn(format!("Preserving storage directory {}", storage_dir.display()));
            }
            warn(format!(
                "App volumes ({app}_*) are kept too; `berth apps:destroy {app} --purge-storage` removes them"
            ));
        }
    }
    let repo = root.repo_dir(app);
    hostfs::remove_tree(&repo)?;
    root.remove_app_state(app, &lock)?;
    super::proxy::republish(root, served)
}

pub fn report(root: &Root, args: &[String], format: Format) -> Result<()> {
    let request = super::report::Request::parse(root, "apps:report", args, format)?;
    request.print("app", "app", |app| {
        let state = existing_app(root, app)?;
        let mut report = Report::default();
        report.row("app-created-at", state.created_at.to_string());
        report.row("app-deploy-branch", crate::hook::deploy_branches(root, app)?.join(" or "));
        report.row("app-dir", root.app_dir(app).display().to_string());
        report.row("app-repo", root.repo_dir(app).display().to_string());
        report.row("app-scale", crate::scale::describe(&crate::scale::of_app(root, app, &state)?));
        report.row("app-storage-dir", root.app_storage_dir(app).display().to_string());
        Ok(report)
    })
}

/// `git:set <app> deploy-branch [<branch>]`: which branch's pushes deploy.
pub fn git_set(root: &Root, app: &AppName, property: &str, value: Option<&str>) -> Result<()> {
    if property != "deploy-branch" {
        return Err(super::CliError::Usage(format!(
            "Invalid property specified \"{property}\", valid properties include: deploy-branch"
        )));
    }
    if let Some(branch) = value
        && !git2::Reference::is_valid_name(&format!("refs/heads/{branch}"))
    {
        return Err(super::CliError::Usage(format!("\"{branch}\" is not a valid branch name")));
    }
    root.update_app(app, |state| {
        state.deploy_branch = value.map(str::to_string);
        Ok::<_, super::CliError>(())
    })?;
    match value {
        Some(branch) => step(format!("Set deploy-branch to {branch} for {app}")),
        None => step(format!("Unset deploy-branch for {app}; main or master deploy")),
    }
    Ok(())
}
