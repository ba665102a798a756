//! `docker-swarm`: a release runs as one swarm service per process type, its image pushed to
//! the registry of `[swarm]` and named by digest. A deploy is a service update the engine
//! rolls out (stop-first for exclusive mounts, else start-first behind the health check) and
//! rolls back on failure. Storage decides placement: volumes of a driver every node can mount
//! go with the task, anything else pins the app to the node its data lives on, and a pinned
//! node that cannot run tasks fails the deploy before anything is touched.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bollard::models::TaskState;

use super::Scheduler;
use super::selection::{SchedulerKind, selected};
use crate::deploy::{
    ProcessSpec, Result, Routing, Serving, Timing, image_repo, mount_image_volumes, stop_and_remove,
    stop_timeout, warn_anonymous_volume,
};
use crate::docker_options::RunOptions;
use crate::engine::{EngineMount, MountKind};
use crate::helper_image::CHOWN_COMMAND;
use crate::names::AppName;
use crate::output::Reporter;
use crate::scale::scale_of;
use crate::state::{AppState, Release, Root};
use crate::storage::Source;
use crate::swarm::{
    HealthCheck, ImageDigest, JobDef, NodeName, Registry, RestartCondition, RestartPolicy, ServiceDef, Swarm,
    SwarmError, SwarmMount, UpdateOrder, VolumeDriver,
};

/// Where berth's helper image goes in the registry, for one-off tasks on other nodes.
const HELPER_REPOSITORY: &str = "berth/helper";
/// Where a preparing task sees its node's root directory.
const NODE_ROOT: &str = "/node";
/// Label naming the process type a service runs (as on containers).
const PROCESS_LABEL: &str = "berth.process";
/// The process the proxy serves.
const WEB: &str = "web";
/// `type` options of the `local` driver whose data is not on the node: network file systems,
/// and tmpfs, which keeps nothing to leave behind.
const MOVABLE_LOCAL_TYPES: [&str; 4] = ["nfs", "nfs4", "cifs", "tmpfs"];

/// Whether the app's next deploy (or restart) goes to the swarm.
pub fn is_selected(root: &Root, state: &AppState) -> Result<bool> {
    Ok(selected(&root.read_settings()?, state) == SchedulerKind::DockerSwarm)
}

/// The service of a process type: `<app>_<process>` (app names have no `_`, so two never clash).
pub fn service_name(app: &AppName, process: &str) -> String {
    format!("{app}_{process}")
}

/// Records the node a swarm app's node-local data lives on, at its first swarm deploy: the
/// manager berth runs on. Nothing for other apps, or when a node is recorded.
pub fn choose_node(root: &Root, state: &mut AppState, out: &Reporter) -> Result<()> {
    if state.swarm_node.is_some() || !is_selected(root, state)? {
        return Ok(());
    }
    let this = Swarm::connect()?.this_node()?;
    out.detail(format!("Node-local data of this app lives on swarm node {} (this manager)", this.hostname));
    state.swarm_node = Some(this.hostname);
    Ok(())
}

/// One mount of a task, and whether its data lives on one node.
struct Placed {
    mount: SwarmMount,
    /// What stays on the node, for messages: `None` for storage any node reaches.
    local_data: Option<String>,
}

/// A volume's data leaves with the task when its driver is not `local`, or its `local`
/// options mount a network file system (or tmpfs).
fn is_movable(driver: &VolumeDriver) -> bool {
    driver.name != "local"
        || driver.options.get("type").is_some_and(|t| MOVABLE_LOCAL_TYPES.contains(&t.as_str()))
}

fn place(swarm: &Swarm, mount: &EngineMount) -> Result<Placed> {
    let target = mount.target.clone();
    let read_only = mount.read_only;
    if mount.kind == MountKind::Bind {
        let local_data = Some(format!("directory {}", mount.source));
        return Ok(Placed {
            mount: SwarmMount::Bind { source: mount.source.clone(), target, read_only },
            local_data,
        });
    }
    let driver = swarm.volume_driver(&mount.source)?;
    let movable = driver.as_ref().is_some_and(is_movable);
    let mount_volume = SwarmMount::Volume {
        source: mount.source.clone(),
        target,
        read_only,
        no_copy: mount.options.iter().any(|o| o == "nocopy"),
        driver: driver.filter(|_| movable),
    };
    let local_data = (!movable).then(|| format!("volume {}", mount.source));
    Ok(Placed { mount: mount_volume, local_data })
}

/// The health check the engine runs inside a web task before a start-first update stops the
/// old one: `GET` of `[web].healthcheck` on the app's port, with the image's wget or curl.
fn health_check(release: &Release, timing: Timing) -> Option<HealthCheck> {
    let path = release.run.healthcheck.as_deref()?;
    let port = release.run.web_port?;
    let url = format!("http://127.0.0.1:{port}{path}");
    let script = format!("wget -q -O /dev/null '{url}' || curl -fsS -o /dev/null '{url}'");
    Some(HealthCheck {
        command: vec!["/bin/sh".into(), "-c".into(), script],
        interval: Duration::from_secs(1),
        timeout: Duration::from_secs(5),
        retries: u32::try_from(timing.health_timeout.as_secs()).unwrap_or(u32::MAX).max(1),
        start_period: Duration::ZERO,
    })
}

/// A release on its way to the swarm.
struct Rollout<'a> {
    app: &'a AppName,
    /// Where the release's image is pushed, and berth's helper image for one-off tasks.
    registry: Registry,
    state: &'a AppState,
    release: &'a Release,
    image: ImageDigest,
    timing: Timing,
}

/// The node a release is pinned to, and the data there that pins it.
struct Pin {
    node: NodeName,
    data: Vec<String>,
}

/// The services of a release, placed.
struct Services {
    defs: Vec<ServiceDef>,
    /// `None` when every mount may move with its task.
    pin: Option<Pin>,
}

/// The service of one process of the release.
fn service_def(
    rollout: &Rollout<'_>,
    process: &ProcessSpec,
    mounts: Vec<SwarmMount>,
    pinned_to: Option<NodeName>,
    replicas: u32,
) -> ServiceDef {
    let Rollout { app, release, timing, .. } = *rollout;
    let spec = &process.spec;
    let env = spec
        .env
        .iter()
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let is_web = process.process == WEB;
    let exclusive = release.run.exclusive.contains(&process.process);
    ServiceDef {
        name: service_name(app, &process.process),
        image: rollout.image.clone(),
        command: spec.cmd.clone(),
        env,
        labels: spec.labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        user: spec.user.clone(),
        replicas,
        mounts,
        pinned_to,
        publish: if is_web { release.run.web_port } else { None },
        publish_at: None,
        update_order: if exclusive { UpdateOrder::StopFirst } else { UpdateOrder::StartFirst },
        health: if is_web { health_check(release, timing) } else { None },
        restart: RestartPolicy {
            condition: RestartCondition::Always,
            max_attempts: None,
            delay: Duration::from_secs(1),
        },
        stop_grace: stop_timeout(&release.run, timing),
        monitor: timing.settle,
    }
}

/// The services of a release, placed: each process's mounts, and the node the app is pinned
/// to with the data that pins it.
fn plan_services(
    scheduler: &dyn Scheduler,
    swarm: &Swarm,
    rollout: &Rollout<'_>,
    mut specs: Vec<ProcessSpec>,
    out: &Reporter,
) -> Result<Services> {
    let Rollout { app, state, release, .. } = *rollout;
    // One spec per instance, in process order: a service runs its process's instances as
    // replicas, so the first instance's spec stands for them all.
    specs.dedup_by(|next, first| next.process == first.process);
    let mut anonymous = BTreeMap::new();
    let second_web = second_web_service(app);
    for ProcessSpec { process, spec } in &mut specs {
        if service_name(app, process) == second_web {
            return Err(
                SwarmError::ProcessNameTaken { app: app.to_string(), process: process.clone() }.into()
            );
        }
        anonymous.extend(mount_image_volumes(scheduler, app, spec)?);
        // Its binds and limits would be dropped silently: refused instead.
        if spec.options != RunOptions::default() {
            return Err(SwarmError::DockerOptions { app: app.to_string(), process: process.clone() }.into());
        }
    }
    for (path, volume) in &anonymous {
        warn_anonymous_volume(app, path, volume, out);
    }
    let mut placed = Vec::new();
    let mut local_data = Vec::new();
    for process in &specs {
        let mut mounts = Vec::new();
        for mount in &process.spec.mounts {
            let Placed { mount, local_data: data } = place(swarm, mount)?;
            local_data.extend(data.filter(|d| !local_data.contains(d)));
            mounts.push(mount);
        }
        placed.push(mounts);
    }
    let pin = if local_data.is_empty() {
        None
    } else {
        let node = match &state.swarm_node {
            Some(node) => NodeName::new(node)?,
            None => NodeName::new(&swarm.this_node()?.hostname)?,
        };
        Some(Pin { node, data: local_data })
    };
    let scale = scale_of(state, &release.run);
    let defs = specs
        .iter()
        .zip(placed)
        .map(|(process, mounts)| {
            let replicas = scale.get(&process.process).copied().unwrap_or(1);
            let node = pin.as_ref().map(|pin| pin.node.clone());
            service_def(rollout, process, mounts, node, replicas)
        })
        .collect();
    Ok(Services { defs, pin })
}

/// The registry of `[swarm]` in berth.toml.
fn registry(root: &Root) -> Result<Registry> {
    let address = root.read_settings()?.swarm.registry.ok_or(SwarmError::NoRegistry)?;
    Ok(Registry::parse(&address)?)
}

/// Fails, naming the node and the data there, unless the pinned node may run tasks.
fn require_pinned_node(swarm: &Swarm, app: &AppName, node: &NodeName, data: &[String]) -> Result<()> {
    match swarm.require_schedulable(node) {
        Err(SwarmError::NodeUnavailable { hostname, availability, state }) => {
            Err(SwarmError::PinnedNodeUnavailable {
                app: app.to_string(),
                node: hostname,
                data: data.join(", "),
                availability,
                state,
            }
            .into())
        }
        other => Ok(other.map(drop)?),
    }
}

/// Deploys the release as services: pushes its image, checks the pinned node, stops local
/// containers the services replace (an exclusive one before its service starts), updates every
/// service and waits for each to converge, and removes the services of processes the release
/// no longer declares. A failed update is rolled back by the engine and reported with its
/// reason. The web process swaps as on docker-local (unless exclusive): the release starts as
/// a second web service beside the serving one, the proxy switches to all its tasks once they
/// all run (every upstream it lists answers whenever its table is loaded), the old tasks
/// drain, then their service is removed (SIGTERM and the stop grace period, from the engine).
/// `specs` are the release's containers, one per instance, as the deploy built them.
#[allow(clippy::too_many_arguments)]
pub(crate) fn start_release(
    root: &Root,
    scheduler: &dyn Scheduler,
    routing: &mut Routing,
    state: &AppState,
    release: &Release,
    specs: Vec<ProcessSpec>,
    timing: Timing,
    out: &Reporter,
) -> Result<Serving> {
    let app = &routing.app().clone();
    let swarm = Swarm::connect()?;
    let registry = registry(root)?;
    out.step(format!("Pushing {} to {}", release.image, registry.as_str()));
    let image = swarm.push(&release.image, &registry, &image_repo(app), &release.number.to_string())?;
    out.detail(format!("Services run {image}"));
    let rollout = Rollout { app, registry, state, release, image, timing };
    let Services { mut defs, pin } = plan_services(scheduler, &swarm, &rollout, specs, out)?;
    if let Some(Pin { node, data }) = &pin {
        require_pinned_node(&swarm, app, node, data)?;
        out.detail(format!("Pinned to node {node}, where its data lives: {}", data.join(", ")));
        if node.as_str() != swarm.this_node()?.hostname {
            prepare_app_dirs(root, scheduler, &swarm, &rollout, node, &defs, out)?;
        }
    }
    let serving_web = serving_web_service(&swarm, app, routing)?;
    let timeout = stop_timeout(&release.run, timing);
    if let Some(web) = defs.iter_mut().find(|d| d.publish.is_some()) {
        web.name = next_web_service(app, web.update_order, serving_web.as_deref());
        if web.update_order == UpdateOrder::StartFirst {
            // What an interrupted swap left under the name serves nothing; its tasks may hold
            // the port the release's tasks publish at, until they stopped.
            if swarm.remove(&web.name)? {
                out.detail(format!(
                    "Removed service {}, left by an interrupted swap: it served nothing",
                    web.name
                ));
            }
            web.publish_at = fixed_port(&swarm, routing, web, timeout)?;
        }
    }
    for def in &mut defs {
        if def.update_order == UpdateOrder::StopFirst {
            retire_local(scheduler, app, def, timeout, out)?;
        }
        if def.publish.is_some() && def.update_order == UpdateOrder::StopFirst {
            hold_for_successor(&swarm, routing, def, out)?;
        }
        out.step(format!(
            "Updating service {} ({} replicas, {:?})",
            def.name, def.replicas, def.update_order
        ));
        swarm.deploy(def)?;
    }
    let serving = converge(&swarm, routing, &defs, serving_web.as_deref(), &rollout, out)?;
    for def in &defs {
        retire_local(scheduler, app, def, timeout, out)?;
    }
    remove_undeclared(&swarm, app, &defs, out)?;
    Ok(serving)
}

/// Waits for each service to converge, in order; once the web service has, points the proxy
/// at all its tasks and removes the web service it replaced. A web service started beside the
/// serving one that fails is removed; the engine's rollback of an updated one is followed.
fn converge(
    swarm: &Swarm,
    routing: &mut Routing,
    defs: &[ServiceDef],
    serving_web: Option<&str>,
    rollout: &Rollout<'_>,
    out: &Reporter,
) -> Result<Serving> {
    let Rollout { release, timing, .. } = *rollout;
    let timeout = stop_timeout(&release.run, timing);
    let mut serving = Serving::default();
    for def in defs {
        let wait = timing.health_timeout + (timeout + timing.settle) * def.replicas.max(1);
        let replaced = serving_web.filter(|s| def.publish.is_some() && *s != def.name);
        if let Err(error) = swarm.wait_converged(&def.name, def.replicas, wait) {
            if replaced.is_some() {
                remove_failed_web(swarm, &def.name, replaced, out);
            } else if def.publish.is_some() {
                follow_rollback(swarm, routing, &def.name, timing, out);
            }
            return Err(error.into());
        }
        out.detail(format!("{} runs {} task(s) of release {}", def.name, def.replicas, release.number));
        if def.publish.is_some() && def.replicas > 0 {
            serving = route_to_web(swarm, routing, &def.name, out)?;
        }
        if let Some(old) = replaced {
            out.step(format!("Removing service {old}: {} serves release {}", def.name, release.number));
            swarm.remove(old)?;
        }
    }
    Ok(serving)
}

/// The second name of the web service, which a swap alternates with `<app>_web`.
fn second_web_service(app: &AppName) -> String {
    format!("{}_b", service_name(app, WEB))
}

/// Whether `service` runs `process` of the app: the web process has two names.
fn is_service_of(app: &AppName, process: &str, service: &str) -> bool {
    service == service_name(app, process) || (process == WEB && service == second_web_service(app))
}

/// The app's web service that serves now: of its two names, the one that exists, or the one
/// the proxy routes to when both do (a swap was interrupted).
fn serving_web_service(swarm: &Swarm, app: &AppName, routing: &Routing) -> Result<Option<String>> {
    let services = swarm.services_labelled(crate::engine::APP_LABEL, app.as_str())?;
    let existing: Vec<String> = services.into_iter().filter(|s| is_service_of(app, WEB, s)).collect();
    for service in existing.iter().filter(|_| existing.len() > 1) {
        let addresses = web_tasks(swarm, service)?;
        if routing.current().into_iter().any(|a| addresses.iter().any(|(b, _)| *b == a)) {
            return Ok(Some(service.clone()));
        }
    }
    Ok(existing.into_iter().next())
}

/// The service the release's web process goes to: the serving one, updated in place, for an
/// exclusive web process (stop-first); else the other name, to start beside it.
fn next_web_service(app: &AppName, order: UpdateOrder, serving: Option<&str>) -> String {
    let first = service_name(app, WEB);
    match (order, serving) {
        (UpdateOrder::StopFirst, Some(serving)) => serving.to_string(),
        (UpdateOrder::StartFirst, Some(serving)) if serving == first => second_web_service(app),
        _ => first,
    }
}

/// Where the tasks of a web service started beside the serving one publish: one port for
/// all, so that the proxy's config holds their addresses from the app's third swarm deploy
/// on (the switch moves the marker, Caddy reloads nothing and keeps its connections): the
/// route's standby port (once the tasks of the service removed two releases ago stopped, up
/// to `stop_timeout`), else a free one. `None`, a port the engine picks for each task, when
/// the replicas may not fit one per node (a node publishes a port for one task).
fn fixed_port(
    swarm: &Swarm,
    routing: &Routing,
    def: &ServiceDef,
    stop_timeout: Duration,
) -> Result<Option<u16>> {
    let nodes = match def.pinned_to {
        Some(_) => 1,
        None => swarm.nodes()?.iter().filter(|n| n.schedulable()).count(),
    };
    if def.replicas as usize > nodes {
        return Ok(None);
    }
    match routing.standby_port() {
        Some(port) if swarm.wait_port_free(port, stop_timeout)? => Ok(Some(port)),
        _ => Ok(Some(swarm.free_port()?)),
    }
}

/// Before the stop-first update of an exclusive web service pinned to its node: its successor
/// is published at the serving task's port there, and the proxy holds requests for that
/// address until the successor answers (as on docker-local). Nothing to hold otherwise: the
/// engine picks the successor's port, and requests in that gap fail.
fn hold_for_successor(
    swarm: &Swarm,
    routing: &mut Routing,
    def: &mut ServiceDef,
    out: &Reporter,
) -> Result<()> {
    let Some(node) = &def.pinned_to else { return Ok(()) };
    let node_ip = swarm.node(node)?.address.and_then(|a| a.parse::<IpAddr>().ok());
    let tasks = web_tasks(swarm, &def.name)?;
    let [(serving, _)] = tasks.as_slice() else { return Ok(()) };
    if node_ip == Some(serving.ip()) {
        def.publish_at = Some(serving.port());
        routing.hold(*serving, out)?;
    }
    Ok(())
}

/// The release's web service started beside the serving one did not converge: it goes (the
/// engine stops its tasks), and the serving one, untouched, keeps serving.
fn remove_failed_web(swarm: &Swarm, failed: &str, serving: Option<&str>, out: &Reporter) {
    let serving = serving.unwrap_or("the previous release");
    out.step(format!("Removing service {failed}: its release failed, {serving} keeps serving"));
    if let Err(e) = swarm.remove(failed) {
        out.warn(format!(
            "could not remove service {failed}: {e}; remove it with `docker service rm {failed}`"
        ));
    }
}

/// Points the proxy at every running task of the web service; what the release records.
fn route_to_web(swarm: &Swarm, routing: &mut Routing, service: &str, out: &Reporter) -> Result<Serving> {
    let tasks = web_tasks(swarm, service)?;
    let addresses: Vec<SocketAddr> = tasks.iter().map(|(address, _)| *address).collect();
    if addresses.is_empty() {
        out.warn(format!("no running task of {service} publishes its port; the proxy was not changed"));
    } else {
        routing.switch(&addresses, out)?;
    }
    Ok(serving_of(&tasks))
}

/// How long the one-off task that prepares app directories on a node may take.
const PREPARE_TIMEOUT: Duration = Duration::from_secs(120);

/// Creates the app directories the services bind on `node`, owned by the app's user, with a
/// one-off task of berth's helper image there: berth writes only this host's disk, and the
/// engine would create a missing bind source root-owned, or refuse it.
fn prepare_app_dirs(
    root: &Root,
    scheduler: &dyn Scheduler,
    swarm: &Swarm,
    rollout: &Rollout<'_>,
    node: &NodeName,
    defs: &[ServiceDef],
    out: &Reporter,
) -> Result<()> {
    let app_dir = root.app_storage_dir(rollout.app);
    let mut dirs: Vec<String> = Vec::new();
    for def in defs {
        for mount in &def.mounts {
            if let SwarmMount::Bind { source, .. } = mount
                && std::path::Path::new(source).starts_with(&app_dir)
                && !dirs.contains(source)
            {
                dirs.push(source.clone());
            }
        }
    }
    if dirs.is_empty() {
        return Ok(());
    }
    out.step(format!("Preparing {} app director(ies) on node {node}", dirs.len()));
    let helper = scheduler.helper_image()?;
    let image = swarm.push(&helper, &rollout.registry, HELPER_REPOSITORY, "current")?;
    // Without [app].user the engine would have made them root's: so does berth.
    let (uid, gid) = rollout.release.run.user.as_ref().map(crate::user::AppUser::chown_ids).unwrap_or((0, 0));
    let mut command =
        vec!["/berth".to_string(), CHOWN_COMMAND.into(), "--create".into(), format!("{uid}:{gid}")];
    command.extend(dirs.iter().map(|d| format!("{NODE_ROOT}{d}")));
    let job = JobDef {
        name: format!("{}_prepare", rollout.app),
        image: image.to_string(),
        command,
        user: Some("0:0".into()),
        labels: BTreeMap::from([(crate::engine::APP_LABEL.to_string(), rollout.app.to_string())]),
        mounts: vec![SwarmMount::Bind { source: "/".into(), target: NODE_ROOT.into(), read_only: false }],
        node: node.clone(),
    };
    swarm.run_job(&job, PREPARE_TIMEOUT)?;
    for dir in &dirs {
        out.detail(format!("Directory {dir} ready on node {node}"));
    }
    Ok(())
}

/// Stops (SIGTERM, the stop timeout) and removes the `docker-local` containers a service
/// replaces, left from before the app switched schedulers.
fn retire_local(
    scheduler: &dyn Scheduler,
    app: &AppName,
    def: &ServiceDef,
    timeout: Duration,
    out: &Reporter,
) -> Result<()> {
    let process = def.labels.get(PROCESS_LABEL).map(String::as_str).unwrap_or_default();
    let prefix = format!("{app}.{process}.");
    for name in scheduler.app_containers(app.as_str())? {
        if name.starts_with(&prefix) {
            out.step(format!("Stopping {name}: {} replaces it on the swarm", def.name));
            stop_and_remove(scheduler, &name, timeout, out)?;
        }
    }
    Ok(())
}

/// After a failed update of an exclusive web service: the engine's rollback may serve from a
/// new task (the old one stopped once its successor ran), at another port. The proxy follows
/// it; the recorded upstream is fixed by the next deploy or `ps:restart`.
fn follow_rollback(swarm: &Swarm, routing: &mut Routing, service: &str, timing: Timing, out: &Reporter) {
    let deadline = std::time::Instant::now() + timing.health_timeout;
    while std::time::Instant::now() < deadline {
        if let Ok(tasks) = web_tasks(swarm, service)
            && !tasks.is_empty()
        {
            let addresses: Vec<SocketAddr> = tasks.iter().map(|(address, _)| *address).collect();
            if !routing.current().into_iter().any(|a| addresses.contains(&a)) {
                out.warn(format!(
                    "the rolled-back {service} serves from a new task at {}; the proxy follows it, run `berth ps:restart` to record it",
                    addresses[0]
                ));
                if let Err(e) = routing.switch(&addresses, out) {
                    out.warn(format!("could not point the proxy at {service}'s tasks: {e}"));
                }
            }
            return;
        }
        std::thread::sleep(timing.poll);
    }
}

/// Removes the app's services of process types the release does not declare.
fn remove_undeclared(swarm: &Swarm, app: &AppName, defs: &[ServiceDef], out: &Reporter) -> Result<()> {
    for name in swarm.services_labelled(crate::engine::APP_LABEL, app.as_str())? {
        if !defs.iter().any(|d| d.name == name) {
            out.step(format!("Removing service {name} (process no longer declared)"));
            swarm.remove(&name)?;
        }
    }
    Ok(())
}

/// Where the running tasks of the web service answer: each one's node address and the port
/// the node publishes for it, and whether it runs on this host.
fn web_tasks(swarm: &Swarm, service: &str) -> Result<Vec<(SocketAddr, bool)>> {
    let nodes = swarm.nodes()?;
    let this = swarm.this_node()?;
    let tasks = swarm.tasks(service)?;
    let running = tasks.iter().filter(|t| {
        t.current
            && t.state == TaskState::RUNNING
            && t.desired == TaskState::RUNNING
            && !t.published.is_empty()
    });
    let mut addresses = Vec::new();
    for task in running {
        let Some(node) = nodes.iter().find(|n| Some(&n.id) == task.node_id.as_ref()) else { continue };
        let Some(ip) = node.address.as_deref().and_then(|a| a.parse::<IpAddr>().ok()) else { continue };
        addresses.push((SocketAddr::new(ip, task.published[0]), node.id == this.id));
    }
    addresses.sort();
    Ok(addresses)
}

/// What a release records of its web tasks: their addresses, and the port of the first one
/// on this host's loopback.
fn serving_of(tasks: &[(SocketAddr, bool)]) -> Serving {
    Serving {
        host_port: tasks.iter().find(|(_, here)| *here).map(|(address, _)| address.port()),
        upstreams: tasks.iter().map(|(address, _)| *address).collect(),
    }
}

/// Removes the app's services (`ps:stop`, `apps:destroy`): the engine stops each task with
/// SIGTERM and its stop grace period. Nothing for an app never deployed to the swarm.
pub fn remove_services(state: &AppState, app: &AppName, out: &Reporter) -> Result<()> {
    let Some(swarm) = connect_if_deployed(state)? else { return Ok(()) };
    for name in swarm.services_labelled(crate::engine::APP_LABEL, app.as_str())? {
        out.step(format!("Removing service {name}"));
        swarm.remove(&name)?;
    }
    Ok(())
}

/// The swarm, when the app went to one (it has a node) and the engine still manages it: an
/// app back on docker-local after the engine left the swarm has no services left.
fn connect_if_deployed(state: &AppState) -> Result<Option<Swarm>> {
    if state.swarm_node.is_none() {
        return Ok(None);
    }
    match Swarm::connect() {
        Ok(swarm) => Ok(Some(swarm)),
        Err(SwarmError::NotManager(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// One instance of a process, as `ps:report` shows it.
pub struct InstanceStatus {
    /// A container's name, or `<service>.<slot>` for a task.
    pub name: String,
    pub running: bool,
    pub text: String,
}

/// The tasks the app's services want running, when it runs on the swarm: their state, node
/// and id; `None` for an app without services.
pub fn task_statuses(state: &AppState, app: &AppName) -> Result<Option<Vec<InstanceStatus>>> {
    let Some(swarm) = connect_if_deployed(state)? else { return Ok(None) };
    let services = swarm.services_labelled(crate::engine::APP_LABEL, app.as_str())?;
    if services.is_empty() {
        return Ok(None);
    }
    let mut statuses = Vec::new();
    for service in services {
        for task in swarm.tasks(&service)?.into_iter().filter(|t| t.desired == TaskState::RUNNING) {
            let node = task.node.as_deref().unwrap_or("no node yet");
            let id = task.id.get(..12).unwrap_or(&task.id);
            statuses.push(InstanceStatus {
                name: format!("{service}.{}", task.slot.unwrap_or_default()),
                running: task.state == TaskState::RUNNING,
                text: format!("{} on {node} (task: {id})", task.state),
            });
        }
    }
    Ok(Some(statuses))
}

/// Fails when `berth run` would start the app's one-off container away from its data: the app
/// runs on the swarm pinned to another node than this manager.
pub fn require_local_run(root: &Root, state: &AppState, app: &AppName) -> Result<()> {
    if !is_selected(root, state)? {
        return Ok(());
    }
    let Some(swarm) = connect_if_deployed(state)? else { return Ok(()) };
    let this = swarm.this_node()?.hostname;
    match &state.swarm_node {
        Some(node) if *node != this && !state.mounts.is_empty() => {
            Err(SwarmError::RunElsewhere { app: app.to_string(), node: node.clone(), this }.into())
        }
        _ => Ok(()),
    }
}

/// Where each of the app's mounts keeps its data, for `scheduler:*` and `storage:report`.
pub fn data_locations(state: &AppState, scheduler: SchedulerKind) -> Vec<String> {
    let place = match (scheduler, &state.swarm_node) {
        (SchedulerKind::DockerSwarm, Some(node)) => format!("on swarm node {node}"),
        (SchedulerKind::DockerSwarm, None) => "on the swarm manager, chosen at the next deploy".into(),
        (SchedulerKind::DockerLocal, _) => "on this server".into(),
    };
    state
        .mounts
        .iter()
        .map(|m| match &m.source {
            Source::AppVolume(_) | Source::Volume(_) => {
                format!("{} ({place}, unless its driver is shared across nodes)", m.source)
            }
            _ => format!("{} ({place})", m.source),
        })
        .collect()
}

/// The output of the app's services (of one process type, or all), when it runs on the
/// swarm; `false` when it has no services.
pub fn logs(
    state: &AppState,
    app: &AppName,
    process: Option<&str>,
    follow: bool,
    tail: Option<usize>,
    on_output: &mut dyn FnMut(bool, &str),
) -> Result<bool> {
    let Some(swarm) = connect_if_deployed(state)? else { return Ok(false) };
    let services: Vec<String> = swarm
        .services_labelled(crate::engine::APP_LABEL, app.as_str())?
        .into_iter()
        .filter(|name| process.is_none_or(|p| is_service_of(app, p, name)))
        .collect();
    if services.is_empty() {
        return Ok(false);
    }
    for service in services {
        swarm.logs(&service, follow, tail, on_output)?;
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::RunConfig;

    fn driver(name: &str, options: &[(&str, &str)]) -> VolumeDriver {
        VolumeDriver {
            name: name.into(),
            options: options.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        }
    }

    #[test]
    fn only_data_off_the_node_may_move() {
        assert!(is_movable(&driver("local", &[("type", "nfs"), ("device", ":/export")])));
        assert!(is_movable(&driver("local", &[("type", "tmpfs")])));
        assert!(is_movable(&driver("rexray", &[])));
        assert!(!is_movable(&driver("local", &[])));
        assert!(!is_movable(&driver("local", &[("type", "none"), ("o", "bind")])));
    }

    #[test]
    fn the_web_health_check_gets_the_healthcheck_path_on_the_apps_port() {
        let timing = Timing {
            settle: Duration::from_secs(1),
            health_timeout: Duration::from_secs(10),
            stop_timeout: Duration::from_secs(5),
            poll: Duration::from_millis(250),
        };
        let run =
            RunConfig { web_port: Some(5000), healthcheck: Some("/health".into()), ..RunConfig::default() };
        let release = Release {
            number: 3,
            commit: "c".into(),
            image: "berth/demo:3".into(),
            created_at: 0,
            outcome: crate::state::Outcome::Deployed,
            reason: None,
            run,
            mounts: Vec::new(),
            web_host_port: None,
            web_upstreams: Vec::new(),
        };
        let check = health_check(&release, timing).unwrap();
        assert_eq!(
            check.command,
            [
                "/bin/sh",
                "-c",
                "wget -q -O /dev/null 'http://127.0.0.1:5000/health' || curl -fsS -o /dev/null 'http://127.0.0.1:5000/health'"
            ]
        );
        assert_eq!((check.interval, check.retries), (Duration::from_secs(1), 10));
        let no_path = Release { run: RunConfig { web_port: Some(5000), ..RunConfig::default() }, ..release };
        assert_eq!(health_check(&no_path, timing), None);
    }

    #[test]
    fn the_web_service_alternates_between_two_names_unless_exclusive() {
        let app = AppName::new("demo").unwrap();
        let next = |order, serving| next_web_service(&app, order, serving);
        assert_eq!(next(UpdateOrder::StartFirst, None), "demo_web");
        assert_eq!(next(UpdateOrder::StartFirst, Some("demo_web")), "demo_web_b");
        assert_eq!(next(UpdateOrder::StartFirst, Some("demo_web_b")), "demo_web");
        assert_eq!(next(UpdateOrder::StopFirst, Some("demo_web_b")), "demo_web_b", "updated in place");
        assert_eq!(next(UpdateOrder::StopFirst, None), "demo_web");
        assert!(is_service_of(&app, "web", "demo_web_b") && is_service_of(&app, "web", "demo_web"));
        assert!(!is_service_of(&app, "worker", "demo_web_b"));
    }

    #[test]
    fn data_locations_name_the_node() {
        let mut state = AppState::default();
        state.mounts.push(crate::storage::Attachment {
            source: Source::AppDir("uploads".into()),
            container_path: "/app/storage".into(),
            phases: [crate::storage::Phase::Deploy].into(),
            process_type: crate::storage::DEFAULT_PROCESS_TYPE.into(),
            subpath: None,
            readonly: false,
            volume_options: None,
            volume_chown: None,
            made_by: crate::storage::Origin::Repo,
        });
        assert_eq!(data_locations(&state, SchedulerKind::DockerLocal), ["app-dir:uploads (on this server)"]);
        state.swarm_node = Some("berth-sw1".into());
        assert_eq!(
            data_locations(&state, SchedulerKind::DockerSwarm),
            ["app-dir:uploads (on swarm node berth-sw1)"]
        );
    }
}
