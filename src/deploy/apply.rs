//! Applying a plan: build, storage, build command, the swap, then the release records — in
//! that order, so a failure before the swap leaves storage and state as they were.

use super::fault::fault_point;
use super::plan::Plan;
use super::route::Routing;
use super::specs::{
    base_env, check_shadowed_volumes, engine_mounts, labels, mount_image_volumes, phase_options,
    process_specs,
};
use super::storage::{StorageSpec, check_mounts, ensure_storage};
use super::swap::{Replace, start_release};
use super::{DeployError, Result, Timing, image_repo};
use crate::engine::{APP_LABEL, ContainerSpec};
use crate::output::Reporter;
use crate::scheduler::{BuildContext, Scheduler};
use crate::state::{Lock, Outcome, Release, Releases, Root};
use crate::storage::{DEFAULT_PROCESS_TYPE, Phase};
use crate::user::AppUser;

/// Applies a plan: storage, image, build command, containers, state. Called with the app's
/// lock held. On failure nothing of the app's state changes and the old release serves on.
pub fn apply(
    root: &Root,
    scheduler: &dyn Scheduler,
    plan: &Plan,
    context: BuildContext,
    lock: &Lock,
    timing: Timing,
    out: &Reporter,
) -> Result<Release> {
    let app = &plan.app;
    let entries = root.entries_by_name()?;
    check_mounts(root, app, plan.release, &plan.mounts, &entries)?;
    let owner = plan.run.user.as_ref().map(AppUser::chown_ids);
    // Build first: a failed build leaves storage exactly as it was.
    out.step(format!("Building {}", plan.image));
    let build_labels = [(APP_LABEL.to_string(), app.to_string())].into();
    let mut build_args = crate::config::build_args(root, app, &plan.run)?;
    // The admin's build-phase `--build-arg`s win over config's `env_keys`: they name the build.
    build_args.extend(phase_options(&root.read_app(app)?, DEFAULT_PROCESS_TYPE, Phase::Build)?.build_args());
    scheduler.build_image(
        &plan.image,
        &plan.dockerfile,
        &build_labels,
        &build_args,
        context,
        &mut |line| out.detail(line),
    )?;
    fault_point("after-build", out);
    check_shadowed_volumes(scheduler, &plan.image, &plan.mounts, plan.allow_shadowed_volumes)?;
    out.step("Ensuring storage");
    let spec = StorageSpec { owner, volumes: Some(&plan.volume_specs) };
    ensure_storage(root, scheduler, app, &plan.mounts, &entries, spec, out)?;
    fault_point("after-storage", out);
    if let Some(command) = &plan.build_command {
        run_build_command(root, scheduler, plan, command, out)?;
        fault_point("after-build-command", out);
    }
    let release = new_release(plan, Outcome::Deployed);
    let mut state = root.read_app(app)?;
    crate::scheduler::docker_swarm::choose_node(root, &mut state, out)?;
    state.stopped = false;
    state.mounts.clone_from(&plan.mounts);
    state.detached.retain(|d| !plan.mounts.iter().any(|m| m.same_mount(d)));
    for removed in &plan.mounts_removed {
        if !state.detached.iter().any(|d| d.same_mount(removed)) {
            state.detached.push(removed.clone());
        }
    }
    // Held until the release is recorded: a table built from the records names it.
    let mut routing = Routing::open(root, app, &plan.run)?;
    let specs = process_specs(root, app, &state, &release, &entries)?;
    let serving =
        start_release(root, scheduler, &mut routing, &state, &release, specs, timing, Replace::Every, out)?;
    fault_point("after-retire", out);
    // Three writes, each atomic, so a crash between any two leaves a history that never calls
    // a release deployed unless the state made it current: the release is recorded as
    // interrupted, then made current, then marked deployed (restart finishes the last step).
    let mut releases = root.read_releases(app)?;
    releases.releases.push(Release {
        web_host_port: serving.host_port,
        web_upstreams: serving.upstreams,
        outcome: Outcome::Interrupted,
        ..release
    });
    root.write_releases(app, &releases, lock)?;
    fault_point("after-release-write", out);
    state.current_release = Some(plan.release);
    root.write_app(app, &state, lock)?;
    mark_deployed(root, &mut releases, plan, lock)
}

/// The release record a plan makes.
fn new_release(plan: &Plan, outcome: Outcome) -> Release {
    Release {
        number: plan.release,
        commit: plan.commit.clone(),
        image: plan.image.clone(),
        created_at: crate::state::unix_now(),
        outcome,
        reason: None,
        run: plan.run.clone(),
        mounts: plan.mounts.clone(),
        web_host_port: None,
        web_upstreams: Vec::new(),
    }
}

/// Marks the plan's release, which the state made current, as deployed, and returns it.
fn mark_deployed(root: &Root, releases: &mut Releases, plan: &Plan, lock: &Lock) -> Result<Release> {
    let record = releases
        .releases
        .iter_mut()
        .find(|r| r.number == plan.release)
        .ok_or_else(|| DeployError::NoSuchRelease(plan.app.clone(), plan.release))?;
    record.outcome = Outcome::Deployed;
    let release = record.clone();
    root.write_releases(&plan.app, releases, lock)?;
    Ok(release)
}

/// Runs `[build].command` in a container of the new image with the build-phase mounts, and
/// commits the result as the release image.
fn run_build_command(
    root: &Root,
    scheduler: &dyn Scheduler,
    plan: &Plan,
    command: &str,
    out: &Reporter,
) -> Result<()> {
    let app = &plan.app;
    out.step(format!("Running build command: {command}"));
    let config = scheduler.image_config(&plan.image)?;
    let entries = root.entries_by_name()?;
    let name = format!("{app}.build.{}", plan.release);
    scheduler.remove_container(&name)?;
    let mut spec = ContainerSpec {
        name: name.clone(),
        image: plan.image.clone(),
        cmd: Some(vec!["/bin/sh".into(), "-c".into(), command.to_string()]),
        env: base_env(root, app, plan.release, &plan.run)?,
        user: plan.run.user.as_ref().map(ToString::to_string),
        labels: labels(app, "build"),
        mounts: engine_mounts(root, app, &plan.mounts, &entries, Phase::Build, "build")?,
        publish: None,
        address: None,
        restart: false,
        // The admin's build-phase docker-options apply to the build command's container.
        options: phase_options(&root.read_app(app)?, DEFAULT_PROCESS_TYPE, Phase::Build)?,
    };
    mount_image_volumes(scheduler, app, &mut spec)?;
    scheduler.create_container(&spec)?;
    let status = scheduler.run_attached(&name, &mut |_, text| {
        for line in text.lines() {
            out.detail(line);
        }
    });
    let outcome = match status {
        Ok(0) => scheduler
            .commit(&name, &image_repo(app), &plan.release.to_string(), &config)
            .map_err(DeployError::from),
        Ok(code) => Err(DeployError::BuildCommand(code)),
        Err(e) => Err(e.into()),
    };
    scheduler.remove_container(&name)?;
    outcome
}

/// Records a failed deploy in the release history (the app's state is untouched).
pub fn record_failure(root: &Root, plan: &Plan, reason: &str, lock: &Lock) -> Result<()> {
    let mut releases = root.read_releases(&plan.app)?;
    // Engine text (a failing RUN's output) may carry terminal escapes: stored inert.
    let reason = Some(crate::output::printable(reason));
    releases.releases.push(Release { reason, ..new_release(plan, Outcome::Failed) });
    root.write_releases(&plan.app, &releases, lock)?;
    Ok(())
}
