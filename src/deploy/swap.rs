//! The swap: a release's containers start beside the old ones, which are set aside as
//! `<name>.retiring`; once every new one is healthy the proxy switches to the new web instance,
//! the old one drains, and the old containers are stopped (SIGTERM, their timeout, SIGKILL only
//! then) and removed; else the new ones go and the old ones serve again. `recover` finishes or
//! undoes a swap a crash interrupted.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use super::fault::fault_point;
use super::health::wait_healthy;
pub use super::route::Routing;
use super::specs::{ProcessSpec, mount_image_volumes, process_specs, warn_anonymous_volume};
use super::stop::{stop, stop_and_remove, stop_timeout};
use super::{RELEASE_LABEL, RETIRING, ROLE_LABEL, Result, Timing};
use crate::engine::ContainerFacts;
use crate::names::AppName;
use crate::output::{detail, step, warn};
use crate::scheduler::Scheduler;
use crate::state::{AppState, Release, Root};

/// Where a release's web process serves, once it does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Serving {
    /// Its port on the host's loopback address.
    pub host_port: Option<u16>,
    /// Its address on berth's network, which the proxy dials.
    pub upstream: Option<SocketAddr>,
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
            warn(format!("Removing {name}, left by an interrupted deploy"));
            stop_and_remove(scheduler, &name, timeout)?;
            continue;
        }
        let Some(base) = name.strip_suffix(&format!(".{RETIRING}")) else { continue };
        match scheduler.inspect_container(base)? {
            Some(successor) if release_of(&successor) == serving || release_of(&facts) != serving => {
                warn(format!(
                    "Removing {name}: {base} serves release {}",
                    release_of(&successor).unwrap_or(0)
                ));
                stop_and_remove(scheduler, &name, timeout)?;
            }
            successor => {
                if successor.is_some() {
                    warn(format!("Removing {base}: its release was never recorded"));
                    stop_and_remove(scheduler, base, timeout)?;
                }
                warn(format!("Restoring {base} from an interrupted deploy"));
                scheduler.rename_container(&name, base)?;
                scheduler.start_container(base)?;
            }
        }
    }
    Ok(())
}

/// One process mid-swap: its new container and whether an old one was set aside.
struct Swap {
    name: String,
    had_old: bool,
    stopped_old: bool,
}

impl Swap {
    fn retiring(&self) -> String {
        format!("{}.{RETIRING}", self.name)
    }
}

fn undo_swaps(scheduler: &dyn Scheduler, swaps: &[Swap], timeout: std::time::Duration) {
    for swap in swaps.iter().rev() {
        if let Err(e) = stop_and_remove(scheduler, &swap.name, timeout) {
            warn(format!("could not remove {}: {e}", swap.name));
        }
        if swap.had_old {
            let restored = scheduler
                .rename_container(&swap.retiring(), &swap.name)
                .and_then(|()| if swap.stopped_old { scheduler.start_container(&swap.name) } else { Ok(()) });
            if let Err(e) = restored {
                warn(format!("could not restore {}: {e}; run `berth ps:restart`", swap.name));
            }
        }
    }
}

/// Starts the release's containers beside the old ones, waits for them to be healthy, points
/// the proxy at the new web instance, then retires the old ones. On failure the new
/// containers go and the old ones serve again, with their route. Returns where web serves.
pub fn start_release(
    root: &Root,
    scheduler: &dyn Scheduler,
    routing: &mut Routing,
    app: &AppName,
    state: &AppState,
    release: &Release,
    timing: Timing,
) -> Result<Serving> {
    let entries = root.entries_by_name()?;
    let mut specs = process_specs(root, app, state, release, &entries)?;
    let mut anonymous = BTreeMap::new();
    for ProcessSpec { spec, .. } in &mut specs {
        anonymous.extend(mount_image_volumes(scheduler, app, spec)?);
    }
    for (path, volume) in &anonymous {
        warn_anonymous_volume(app, path, volume);
    }
    let timeout = stop_timeout(&release.run, timing);
    recover(scheduler, app, root.read_app(app)?.current_release, timeout)?;
    if release.run.web_port.is_some()
        && let Some(web) = specs.iter_mut().find(|s| s.process == "web")
    {
        web.spec.address = Some(routing.next_address(scheduler)?);
    }
    let previous = routing.current();
    let mut swaps: Vec<Swap> = Vec::new();
    let started = start_beside(scheduler, routing, &specs, release, timing, &mut swaps)
        .and_then(|serving| serving.upstream.map_or(Ok(()), |to| routing.switch(to)).map(|()| serving));
    match started {
        Ok(serving) => {
            fault_point("before-retire");
            retire(scheduler, app, &specs, &swaps, timeout)?;
            Ok(serving)
        }
        Err(error) => {
            for swap in &swaps {
                show_last_logs(scheduler, &swap.name);
            }
            undo_swaps(scheduler, &swaps, timeout);
            if routing.current() != previous {
                routing.restore(previous);
            }
            Err(error)
        }
    }
}

/// Sets each old container aside (stopping it first for exclusive mounts), starts the new
/// ones and waits until all are healthy. `swaps` records what to undo.
fn start_beside(
    scheduler: &dyn Scheduler,
    routing: &mut Routing,
    specs: &[ProcessSpec],
    release: &Release,
    timing: Timing,
    swaps: &mut Vec<Swap>,
) -> Result<Serving> {
    let timeout = stop_timeout(&release.run, timing);
    for ProcessSpec { process, spec } in specs {
        let had_old = scheduler.inspect_container(&spec.name)?.is_some();
        let swap = Swap { name: spec.name.clone(), had_old, stopped_old: false };
        if had_old {
            stop_and_remove(scheduler, &swap.retiring(), timeout)?;
            scheduler.rename_container(&spec.name, &swap.retiring())?;
            if release.run.exclusive.contains(process) {
                let retiring = swap.retiring();
                swaps.push(swap);
                if let Some(next) = upstream(spec, release) {
                    routing.hold(next)?;
                }
                detail(format!("Stopping the old {process} container first (exclusive mounts)"));
                // From here on a failure starts the old container again.
                if let Some(swap) = swaps.last_mut() {
                    swap.stopped_old = true;
                }
                stop(scheduler, &retiring, timeout)?;
                start_new(scheduler, process, spec)?;
                continue;
            }
        }
        swaps.push(swap);
        start_new(scheduler, process, spec)?;
    }
    fault_point("after-start");
    let mut serving = Serving::default();
    for ProcessSpec { process, spec } in specs {
        let upstream = upstream(spec, release);
        let port = wait_healthy(scheduler, process, &spec.name, upstream, release, timing)?;
        if process == "web" {
            serving = Serving { host_port: port, upstream };
        }
    }
    Ok(serving)
}

fn start_new(scheduler: &dyn Scheduler, process: &str, spec: &crate::engine::ContainerSpec) -> Result<()> {
    step(format!("Starting {process} ({})", spec.name));
    scheduler.create_container(spec)?;
    Ok(scheduler.start_container(&spec.name)?)
}

/// Where the proxy reaches a web container: its fixed address and the app's port.
fn upstream(spec: &crate::engine::ContainerSpec, release: &Release) -> Option<SocketAddr> {
    let ip = spec.address.as_ref()?.ip;
    release.run.web_port.map(|port| SocketAddr::from((ip, port)))
}

/// Removes the old containers of a healthy release and the processes it no longer declares.
fn retire(
    scheduler: &dyn Scheduler,
    app: &AppName,
    specs: &[ProcessSpec],
    swaps: &[Swap],
    timeout: std::time::Duration,
) -> Result<()> {
    for swap in swaps.iter().filter(|s| s.had_old) {
        step(format!("Stopping {} (SIGTERM, up to {}s)", swap.retiring(), timeout.as_secs()));
        stop_and_remove(scheduler, &swap.retiring(), timeout)?;
    }
    let keep: Vec<&str> = specs.iter().map(|s| s.spec.name.as_str()).collect();
    for name in scheduler.app_containers(app.as_str())? {
        let is_process = scheduler
            .inspect_container(&name)?
            .is_some_and(|facts| facts.labels.get(ROLE_LABEL).is_some_and(|role| role == "process"));
        if is_process && !keep.contains(&name.as_str()) && !name.ends_with(RETIRING) {
            step(format!("Removing {name} (process no longer declared)"));
            stop_and_remove(scheduler, &name, timeout)?;
        }
    }
    Ok(())
}

fn show_last_logs(scheduler: &dyn Scheduler, name: &str) {
    let mut lines = Vec::new();
    if let Err(e) =
        scheduler.logs(name, false, Some(20), &mut |_, text| lines.push(text.trim_end().to_string()))
    {
        warn(format!("could not read the output of {name}: {e}"));
    }
    if !lines.is_empty() {
        warn(format!("Last output of {name}:"));
        for line in lines.iter().flat_map(|l| l.lines()) {
            warn(format!("  {line}"));
        }
    }
}
