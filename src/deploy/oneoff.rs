//! One-off runs (`berth run`): a container of the current release with the run-phase mounts,
//! attached until it exits, then removed.

use super::specs::{base_env, engine_mounts, labels, mount_image_volumes, phase_options};
use super::storage::{StorageSpec, check_mounts, ensure_storage};
use super::{DeployError, Result};
use crate::engine::ContainerSpec;
use crate::names::AppName;
use crate::output::Reporter;
use crate::scheduler::{OnOutput, Scheduler};
use crate::state::Root;
use crate::storage::{DEFAULT_PROCESS_TYPE, Phase};
use crate::user::AppUser;

/// Runs a one-off command in a container of the current release with the run-phase mounts,
/// passing its output to `on_output`; returns its exit status.
pub fn run_oneoff(
    root: &Root,
    scheduler: &dyn Scheduler,
    app: &AppName,
    command: &[String],
    on_output: OnOutput<'_>,
    out: &Reporter,
) -> Result<i64> {
    let state = root.read_app(app)?;
    let releases = root.read_releases(app)?;
    let number = state.current_release.ok_or_else(|| DeployError::NoRelease(app.clone()))?;
    let release = releases.get(number).ok_or_else(|| DeployError::NoSuchRelease(app.clone(), number))?;
    let entries = root.entries_by_name()?;
    check_mounts(root, app, number, &state.mounts, &entries)?;
    let owner = release.run.user.as_ref().map(AppUser::chown_ids);
    ensure_storage(root, scheduler, app, &state.mounts, &entries, StorageSpec::owned_by(owner), out)?;
    let name = format!("{app}.run.{}", std::process::id());
    let mut spec = ContainerSpec {
        name: name.clone(),
        image: release.image.clone(),
        cmd: (!command.is_empty()).then(|| command.to_vec()),
        env: base_env(root, app, number, &release.run)?,
        user: release.run.user.as_ref().map(ToString::to_string),
        labels: labels(app, "run"),
        mounts: engine_mounts(root, app, &state.mounts, &entries, Phase::Run, "run")?,
        publish: None,
        address: None,
        restart: false,
        options: phase_options(&state, DEFAULT_PROCESS_TYPE, Phase::Run)?,
    };
    mount_image_volumes(scheduler, app, &mut spec)?;
    scheduler.create_container(&spec)?;
    let result = scheduler.run_attached(&name, on_output);
    scheduler.remove_container(&name)?;
    Ok(result?)
}
