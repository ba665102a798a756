//! The operations on a deployed app that re-create its containers from a recorded release:
//! `ps:restart` (today's mounts and docker-options), `ps:scale`, `ps:stop`, and `rollback`.

use super::route::Routing;
use super::specs::process_specs;
use super::stop::{stop_and_remove, stop_timeout};
use super::storage::{StorageSpec, check_mounts, ensure_storage};
use super::swap::{Replace, Serving, start_release};
use super::{DeployError, Result, Timing};
use crate::names::AppName;
use crate::output::Reporter;
use crate::scheduler::Scheduler;
use crate::state::{AppState, Lock, Outcome, Release, Root};
use crate::storage::{Attachment, Origin};
use crate::user::AppUser;

/// Re-creates the containers of the current release with the app's current mounts and
/// docker-options (how admin mount changes take effect).
pub fn restart(
    root: &Root,
    scheduler: &dyn Scheduler,
    app: &AppName,
    timing: Timing,
    out: &Reporter,
) -> Result<Serving> {
    recreate(root, scheduler, app, timing, Replace::Every, out)
}

/// Starts or stops instances of the current release until each process runs as many as the
/// app's scale says; the instances already running it stay (and serve throughout).
pub fn rescale(
    root: &Root,
    scheduler: &dyn Scheduler,
    app: &AppName,
    timing: Timing,
    out: &Reporter,
) -> Result<Serving> {
    recreate(root, scheduler, app, timing, Replace::Missing, out)
}

fn recreate(
    root: &Root,
    scheduler: &dyn Scheduler,
    app: &AppName,
    timing: Timing,
    replace: Replace,
    out: &Reporter,
) -> Result<Serving> {
    let lock = root.lock_app_announced(app, out)?;
    let mut state = root.read_app(app)?;
    let mut releases = root.read_releases(app)?;
    let number = state.current_release.ok_or_else(|| DeployError::NoRelease(app.clone()))?;
    let release =
        releases.get(number).cloned().ok_or_else(|| DeployError::NoSuchRelease(app.clone(), number))?;
    // The routing (the proxy's lock) is held until the release records the new upstreams.
    let mut routing = Routing::open(root, app, &release.run)?;
    let serving = serve(root, scheduler, &mut routing, &state, &release, timing, replace, out)?;
    if let Some(record) = releases.releases.iter_mut().find(|r| r.number == number) {
        record.web_host_port = serving.host_port;
        record.web_upstreams.clone_from(&serving.upstreams);
        record.mounts.clone_from(&state.mounts);
        // A deploy interrupted after making this release current ends here.
        record.outcome = Outcome::Deployed;
    }
    root.write_releases(app, &releases, &lock)?;
    if state.stopped {
        state.stopped = false;
        root.write_app(app, &state, &lock)?;
    }
    Ok(serving)
}

/// Checks the app's mounts again, ensures its storage and swaps to `release`'s containers;
/// returns the routing of the swap with where web serves.
#[allow(clippy::too_many_arguments)]
fn serve(
    root: &Root,
    scheduler: &dyn Scheduler,
    routing: &mut Routing,
    state: &AppState,
    release: &Release,
    timing: Timing,
    replace: Replace,
    out: &Reporter,
) -> Result<Serving> {
    let app = &routing.app().clone();
    let entries = root.entries_by_name()?;
    check_mounts(root, app, release.number, &state.mounts, &entries)?;
    let owner = release.run.user.as_ref().map(AppUser::chown_ids);
    ensure_storage(root, scheduler, app, &state.mounts, &entries, StorageSpec::owned_by(owner), out)?;
    let specs = process_specs(root, app, state, release, &entries)?;
    start_release(root, scheduler, routing, state, release, specs, timing, replace, out)
}

/// Stops (SIGTERM, the release's stop timeout) and removes the app's containers, and records
/// the app as stopped, so its route answers 503 at once; data and images stay.
pub fn stop(
    root: &Root,
    scheduler: &dyn Scheduler,
    app: &AppName,
    timing: Timing,
    out: &Reporter,
) -> Result<()> {
    let lock: Lock = root.lock_app_announced(app, out)?;
    let mut state = root.read_app(app)?;
    let releases = root.read_releases(app)?;
    let run = state.current_release.and_then(|n| releases.get(n)).map(|r| r.run.clone()).unwrap_or_default();
    let timeout = stop_timeout(&run, timing);
    for name in scheduler.app_containers(app.as_str())? {
        out.step(format!("Stopping {name}"));
        stop_and_remove(scheduler, &name, timeout, out)?;
    }
    crate::scheduler::docker_swarm::remove_services(&state, app, out)?;
    state.stopped = true;
    root.write_app(app, &state, &lock)?;
    Ok(())
}

/// Serves an earlier release again: its image and its repo mounts, with today's admin mounts.
/// Without a number, the newest deployed release before the current one.
pub fn rollback(
    root: &Root,
    scheduler: &dyn Scheduler,
    app: &AppName,
    number: Option<u32>,
    timing: Timing,
    out: &Reporter,
) -> Result<u32> {
    let lock = root.lock_app_announced(app, out)?;
    let mut state = root.read_app(app)?;
    let mut releases = root.read_releases(app)?;
    let current = state.current_release.ok_or_else(|| DeployError::NoRelease(app.clone()))?;
    let target = match number {
        Some(n) => n,
        None => releases
            .releases
            .iter()
            .filter(|r| r.outcome == Outcome::Deployed && r.number < current)
            .map(|r| r.number)
            .max()
            .ok_or_else(|| DeployError::NothingToRollBackTo(app.clone()))?,
    };
    let release = releases
        .get(target)
        .filter(|r| r.outcome == Outcome::Deployed)
        .cloned()
        .ok_or_else(|| DeployError::NoSuchRelease(app.clone(), target))?;
    if !scheduler.image_exists(&release.image)? {
        return Err(DeployError::ImagePruned { release: target, image: release.image.clone() });
    }
    let mut mounts: Vec<Attachment> =
        state.mounts.iter().filter(|m| m.made_by == Origin::Admin).cloned().collect();
    mounts.extend(release.mounts.iter().filter(|m| m.made_by == Origin::Repo).cloned());
    state.mounts = mounts;
    let mut routing = Routing::open(root, app, &release.run)?;
    let serving = serve(root, scheduler, &mut routing, &state, &release, timing, Replace::Every, out)?;
    // The new containers have new addresses; the proxy and ps:report read them from the release.
    if let Some(record) = releases.releases.iter_mut().find(|r| r.number == target) {
        record.web_host_port = serving.host_port;
        record.web_upstreams = serving.upstreams;
    }
    root.write_releases(app, &releases, &lock)?;
    state.current_release = Some(target);
    state.stopped = false;
    root.write_app(app, &state, &lock)?;
    Ok(target)
}
