//! `apps:rename` and `apps:clone`. A rename moves the app's state, repo and app directory
//! (renames on one filesystem, nothing copied); a clone makes a new app with the old one's
//! admin mounts, docker-options, grants and git history, and copies app data only when asked.
//! Docker volumes cannot be renamed or relabelled, so apps that have some are refused.

use std::path::Path;

use super::refusal::Refusal;
use super::{CliError, Result, existing_app};
use crate::config::{self, Scope};
use crate::engine::Engine;
use crate::names::AppName;
use crate::output::Reporter;
use crate::proxy::records::Records;
use crate::state::{Lock, Root, StateError};
use crate::storage::Origin;
use crate::{git, hostfs};

#[derive(Debug, clap::Args)]
pub struct RenameArgs {
    old: String,
    new: String,
    /// Leave the renamed app stopped (default: start it if it was running)
    #[arg(long)]
    skip_deploy: bool,
}

#[derive(Debug, clap::Args)]
pub struct CloneArgs {
    old: String,
    new: String,
    /// Accepted for Dokku's scripts: berth never deploys a clone (push to it)
    #[arg(long)]
    skip_deploy: bool,
    /// Succeed without doing anything when the new app exists
    #[arg(long)]
    ignore_existing: bool,
    /// Copy the old app's directory (its app.toml `./dirs`) into the new app's
    #[arg(long, conflicts_with = "empty_storage")]
    copy_storage: bool,
    /// Give the new app empty storage even though the old app has data
    #[arg(long)]
    empty_storage: bool,
}

fn names(old: &str, new: &str) -> Result<(AppName, AppName)> {
    Ok((AppName::new(old)?, AppName::new(new)?))
}

/// Both apps' locks, taken in name order so two renames never wait on each other.
fn lock_both(root: &Root, a: &AppName, b: &AppName) -> Result<(Lock, Lock)> {
    let (first, second) = if a < b { (a, b) } else { (b, a) };
    Ok((root.lock_app(first)?, root.lock_app(second)?))
}

/// Docker has no way to rename a volume or change its labels; berth does not copy data on its own.
fn refuse_app_volumes(engine: &Engine, app: &AppName, command: &'static str) -> Result<()> {
    let volumes = engine.app_volumes(app.as_str())?;
    if volumes.is_empty() {
        return Ok(());
    }
    Err(Refusal::HasVolumes { app: app.clone(), volumes: volumes.join(", "), command }.into())
}

/// An app directory left from an earlier app of that name (destroyed without --purge-storage).
fn refuse_leftover_dir(root: &Root, new: &AppName) -> Result<()> {
    let dir = root.app_storage_dir(new);
    if dir.exists() {
        return Err(Refusal::LeftoverDir { dir, app: new.clone() }.into());
    }
    Ok(())
}

fn refuse_existing(root: &Root, new: &AppName) -> Result<()> {
    if root.app_exists(new) {
        return Err(StateError::AppExists(new.clone()).into());
    }
    Ok(())
}

fn rename_path(from: &Path, to: &Path) -> Result<bool> {
    if !from.exists() {
        return Ok(false);
    }
    std::fs::rename(from, to).map_err(|e| StateError::io("rename", from)(e))?;
    Ok(true)
}

pub fn rename(root: &Root, args: RenameArgs, out: &Reporter) -> Result<()> {
    let (old, new) = names(&args.old, &args.new)?;
    existing_app(root, &old)?;
    refuse_existing(root, &new)?;
    refuse_leftover_dir(root, &new)?;
    let engine = Engine::connect()?;
    refuse_app_volumes(&engine, &old, "apps:rename")?;
    let was_running = !engine.app_containers(old.as_str())?.is_empty();
    if was_running {
        out.step(format!("Stopping {old} to rename it"));
        super::ps::stop(root, &old, out)?;
    }
    {
        let _locks = lock_both(root, &old, &new)?;
        existing_app(root, &old)?;
        refuse_existing(root, &new)?;
        if !engine.app_containers(old.as_str())?.is_empty() {
            return Err(Refusal::StartedWhileRenaming(old).into());
        }
        let mut records = Records::read(root)?;
        let domains = records.own.remove(&old).unwrap_or_default();
        records.own.insert(new.clone(), domains);
        records.check_unique(Some(&new))?;
        out.step(format!("Renaming {old} to {new}"));
        // The repo and the data first, the state last: the state file is what makes an app exist.
        rename_path(&root.repo_dir(&old), &root.repo_dir(&new))?;
        if rename_path(&root.app_storage_dir(&old), &root.app_storage_dir(&new))? {
            out.detail(format!(
                "Moved {} to {}",
                root.app_storage_dir(&old).display(),
                root.app_storage_dir(&new).display()
            ));
        }
        rename_path(&root.app_dir(&old), &root.app_dir(&new))?;
    }
    if let Err(e) = super::proxy::build_config(root, None, out) {
        out.warn(format!("the proxy config was not reloaded ({e}); run berth proxy:build-config"));
    }
    if was_running && !args.skip_deploy {
        super::ps::start(root, &new, out)?;
    }
    out.step(format!("Renamed {old} to {new}"));
    Ok(())
}

pub fn clone(root: &Root, args: CloneArgs, out: &Reporter) -> Result<()> {
    let (old, new) = names(&args.old, &args.new)?;
    let state = existing_app(root, &old)?;
    if root.app_exists(&new) && args.ignore_existing {
        out.warn(format!("Name is already taken: {new}; leaving it as it is"));
        return Ok(());
    }
    refuse_existing(root, &new)?;
    refuse_leftover_dir(root, &new)?;
    let engine = Engine::connect()?;
    let data = root.app_storage_dir(&old);
    let has_data = std::fs::read_dir(&data).is_ok_and(|mut d| d.next().is_some());
    if !args.empty_storage {
        refuse_app_volumes(&engine, &old, "apps:clone")?;
    }
    if has_data && !args.copy_storage && !args.empty_storage {
        return Err(Refusal::HasData { old, data, new }.into());
    }
    out.step(format!("Cloning {old} to {new}"));
    super::apps::create_quietly(root, &new)?;
    git::copy_refs(&root.repo_dir(&old), &root.repo_dir(&new))?;
    if has_data && args.copy_storage {
        root.make_data_root()?;
        hostfs::copy_tree(&data, &root.app_storage_dir(&new))?;
        out.detail(format!("Copied {} to {}", data.display(), root.app_storage_dir(&new).display()));
    }
    root.update_app(&new, |clone| {
        // The repo's own mounts come back with the first push; domains stay the old app's;
        // config is copied below.
        clone.mounts = state.mounts.iter().filter(|m| m.made_by == Origin::Admin).cloned().collect();
        clone.docker_options = state.docker_options.clone();
        clone.allowed = state.allowed.clone();
        clone.deploy_branch = state.deploy_branch.clone();
        Ok::<_, CliError>(())
    })?;
    let vars = config::store::read(root, Scope::App(&old))?;
    config::store::change(root, Scope::App(&new), |clone| {
        *clone = vars;
        Ok(())
    })?;
    out.step(format!("Cloned {old} to {new}; push to it to deploy (git push <remote for {new}> <branch>)"));
    Ok(())
}
