//! The swap: a release's instances replace the old ones one at a time (see [`rolling`]), each
//! new one started beside the old one, which is set aside as `<name>.retiring`; once the new
//! one is healthy the proxy routes to it, the old one drains and is stopped (SIGTERM, its
//! timeout, SIGKILL only then); the stopped old containers are removed once every instance is
//! replaced. A failure partway starts the old instances again. `recover` finishes or undoes a
//! swap a crash interrupted, instance by instance.
//!
//! [`rolling`]: super::rolling

use std::collections::BTreeMap;
use std::net::SocketAddr;

pub use super::rolling::Replace;
use super::rolling::{Rolling, Swap};
pub use super::route::Routing;
use super::specs::{ProcessSpec, mount_image_volumes, warn_anonymous_volume};
use super::stop::{stop_and_remove, stop_timeout};
use super::{PROCESS_LABEL, RELEASE_LABEL, RETIRING, ROLE_LABEL, Result, Timing};
use crate::engine::ContainerFacts;
use crate::names::AppName;
use crate::output::Reporter;
use crate::scheduler::{Scheduler, docker_swarm};
use crate::state::{AppState, Release, Root};

/// Where a release's web process serves, once it does.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Serving {
    /// The port of its first instance on the host's loopback address.
    pub host_port: Option<u16>,
    /// Each instance's address on berth's network, which the proxy dials, in instance order.
    pub upstreams: Vec<SocketAddr>,
}

/// Puts containers left by an interrupted deploy back in order, so the release the state
/// names is the one serving: a retiring container of that release serves again and its
/// unrecorded successor goes; a retiring container whose successor is that release goes; build
/// and chown helpers of a killed deploy are removed. `serving` is the app's current release.
/// Containers are stopped within `timeout` before they are removed.
pub fn recover(
    scheduler: &dyn Scheduler,
    app: &AppName,
    serving: Option<u32>,
    timeout: std::time::Duration,
    out: &Reporter,
) -> Result<()> {
    let release_of =
        |facts: &ContainerFacts| facts.labels.get(RELEASE_LABEL).and_then(|r| r.parse::<u32>().ok());
    for name in scheduler.app_containers(app.as_str())? {
        let Some(facts) = scheduler.inspect_container(&name)? else { continue };
        // No role label: not created by berth but by the engine's builder for a `RUN` step of
        // an interrupted build (it inherits the image's labels); it holds no app data.
        let helper =
            matches!(facts.labels.get(ROLE_LABEL).map(String::as_str), Some("build" | "chown") | None);
        if helper {
            out.warn(format!("Removing {name}, left by an interrupted deploy"));
            stop_and_remove(scheduler, &name, timeout, out)?;
            continue;
        }
        let Some(base) = name.strip_suffix(&format!(".{RETIRING}")) else { continue };
        match scheduler.inspect_container(base)? {
            Some(successor) if release_of(&successor) == serving || release_of(&facts) != serving => {
                out.warn(format!(
                    "Removing {name}: {base} serves release {}",
                    release_of(&successor).unwrap_or(0)
                ));
                stop_and_remove(scheduler, &name, timeout, out)?;
            }
            successor => {
                if successor.is_some() {
                    out.warn(format!("Removing {base}: its release was never recorded"));
                    stop_and_remove(scheduler, base, timeout, out)?;
                }
                out.warn(format!("Restoring {base} from an interrupted deploy"));
                scheduler.rename_container(&name, base)?;
                scheduler.start_container(base)?;
            }
        }
    }
    Ok(())
}

/// Starts the release's instances in place of the old ones, one at a time, each healthy and
/// routed before its predecessor stops; then removes the stopped predecessors and the
/// instances the release's scale no longer has. On failure the old instances serve again,
/// with their route. Returns where web serves.
/// `specs` are the release's instances ([`process_specs`](super::specs::process_specs)); an
/// app on the swarm (`state`) is started as its services instead.
#[allow(clippy::too_many_arguments)]
pub(super) fn start_release(
    root: &Root,
    scheduler: &dyn Scheduler,
    routing: &mut Routing,
    state: &AppState,
    release: &Release,
    mut specs: Vec<ProcessSpec>,
    timing: Timing,
    replace: Replace,
    out: &Reporter,
) -> Result<Serving> {
    let app = &routing.app().clone();
    if docker_swarm::is_selected(root, state)? {
        return docker_swarm::start_release(root, scheduler, routing, state, release, specs, timing, out);
    }
    // Back from the swarm: its tasks stop before containers start, never two writers.
    docker_swarm::remove_services(state, app, out)?;
    let mut anonymous = BTreeMap::new();
    for ProcessSpec { spec, .. } in &mut specs {
        anonymous.extend(mount_image_volumes(scheduler, app, spec)?);
    }
    for (path, volume) in &anonymous {
        warn_anonymous_volume(app, path, volume, out);
    }
    let timeout = stop_timeout(&release.run, timing);
    let current = root.read_app(app)?.current_release;
    recover(scheduler, app, current, timeout, out)?;
    let releases = root.read_releases(app)?;
    let previous = current.and_then(|n| releases.get(n));
    let mut rolling = Rolling::new(scheduler, routing, release, previous, timing, out);
    match rolling.replace_all(&mut specs, replace) {
        Ok(serving) => {
            retire(scheduler, app, release, &specs, rolling.swaps(), timeout, out)?;
            Ok(serving)
        }
        Err(error) => {
            if let Some(failed) = rolling.swaps().last() {
                show_last_logs(scheduler, &failed.name, out);
            }
            rolling.undo();
            Err(error)
        }
    }
}

/// Removes the stopped predecessors of a healthy release's instances, then stops and removes
/// the instances above its scale and the processes it no longer declares (their data stays).
fn retire(
    scheduler: &dyn Scheduler,
    app: &AppName,
    release: &Release,
    specs: &[ProcessSpec],
    swaps: &[Swap],
    timeout: std::time::Duration,
    out: &Reporter,
) -> Result<()> {
    for swap in swaps.iter().filter(|s| s.had_old) {
        if swap.stopped_old {
            scheduler.remove_container(&swap.retiring())?;
        } else {
            stop_and_remove(scheduler, &swap.retiring(), timeout, out)?;
        }
    }
    let keep: Vec<&str> = specs.iter().map(|s| s.spec.name.as_str()).collect();
    for name in scheduler.app_containers(app.as_str())? {
        let Some(facts) = scheduler.inspect_container(&name)? else { continue };
        let is_process = facts.labels.get(ROLE_LABEL).is_some_and(|role| role == "process");
        if !is_process || keep.contains(&name.as_str()) || name.ends_with(RETIRING) {
            continue;
        }
        let process = facts.labels.get(PROCESS_LABEL).map(String::as_str).unwrap_or_default();
        let why = if release.run.processes.contains_key(process) {
            "above the scale"
        } else {
            "process no longer declared"
        };
        out.step(format!("Stopping {name} ({why}; SIGTERM, up to {}s)", timeout.as_secs()));
        stop_and_remove(scheduler, &name, timeout, out)?;
    }
    Ok(())
}

fn show_last_logs(scheduler: &dyn Scheduler, name: &str, out: &Reporter) {
    let mut lines = Vec::new();
    if let Err(e) =
        scheduler.logs(name, false, Some(20), &mut |_, text| lines.push(text.trim_end().to_string()))
    {
        out.warn(format!("could not read the output of {name}: {e}"));
    }
    if !lines.is_empty() {
        out.warn(format!("Last output of {name}:"));
        for line in lines.iter().flat_map(|l| l.lines()) {
            out.warn(format!("  {line}"));
        }
    }
}
