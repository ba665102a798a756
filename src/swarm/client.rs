//! The calls: a [`Swarm`] wraps the engine connection berth already has (a manager) and
//! speaks the swarm endpoints of API 1.41 through it.

use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, TcpListener};
use std::time::{Duration, Instant};

use bollard::auth::DockerCredentials;
use bollard::models::{LocalNodeState, Node, NodeSpecAvailabilityEnum, NodeState, Service, TaskState};
use bollard::query_parameters::{
    ListNodesOptions, ListServicesOptions, ListServicesOptionsBuilder, ListTasksOptions,
    ListTasksOptionsBuilder, PushImageOptionsBuilder, TagImageOptionsBuilder, UpdateServiceOptions,
};
use futures_util::StreamExt;

use super::rollout::{self, Progress, TaskFacts};
use super::spec::{self, ImageDigest, JobDef, NodeName, Registry, ServiceDef, VolumeDriver};
use super::{Result, SwarmError};
use crate::engine::{Engine, EngineError, api_error, is_not_found, logs_options};

/// How often a wait asks the engine again.
const POLL: Duration = Duration::from_millis(250);
/// How long a task must stay unplaceable before a wait gives up on it: the scheduler reports
/// "no suitable node" for a moment while a node's state is catching up.
const UNSCHEDULABLE_GRACE: Duration = Duration::from_secs(3);
/// How many ports [`Swarm::free_port`] asks the kernel for before it gives up.
const FREE_PORT_TRIES: usize = 16;

/// A swarm node, as berth reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeFacts {
    pub id: String,
    pub hostname: String,
    /// `active`, `pause` or `drain`.
    pub availability: String,
    /// `ready`, `down`, `disconnected` or `unknown`.
    pub state: String,
    pub manager: bool,
    pub address: Option<String>,
}

impl NodeFacts {
    fn from_node(node: Node) -> NodeFacts {
        let spec = node.spec.unwrap_or_default();
        let status = node.status.unwrap_or_default();
        NodeFacts {
            id: node.id.unwrap_or_default(),
            hostname: node.description.and_then(|d| d.hostname).unwrap_or_default(),
            availability: spec.availability.map(|a| a.to_string()).unwrap_or_default(),
            state: status.state.map(|s| s.to_string()).unwrap_or_default(),
            manager: node.manager_status.is_some(),
            address: status.addr,
        }
    }

    /// Active and ready: the scheduler may give it tasks.
    pub fn schedulable(&self) -> bool {
        self.availability == NodeSpecAvailabilityEnum::ACTIVE.to_string()
            && self.state == NodeState::READY.to_string()
    }
}

/// How a one-off task ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobOutcome {
    pub node: String,
    pub exit_code: i64,
}

/// The engine berth talks to, known to be a swarm manager.
pub struct Swarm {
    engine: Engine,
}

/// No credentials: the header must still be there, or the engine reads the request body as
/// credentials and fails on it.
fn no_credentials() -> Option<DockerCredentials> {
    Some(DockerCredentials::default())
}

impl Swarm {
    /// Connects to the engine (`DOCKER_HOST`) and checks it manages a swarm.
    pub fn connect() -> Result<Swarm> {
        Swarm::on(Engine::connect()?)
    }

    /// Uses an existing connection, which must be to a swarm manager.
    pub fn on(engine: Engine) -> Result<Swarm> {
        let info = engine.run(|d| d.info()).map_err(api_error("read the engine's swarm state"))?;
        let swarm = info.swarm.unwrap_or_default();
        let state = swarm.local_node_state.unwrap_or(LocalNodeState::EMPTY);
        if state != LocalNodeState::ACTIVE || swarm.control_available != Some(true) {
            let state =
                if state == LocalNodeState::ACTIVE { "worker".to_string() } else { state.to_string() };
            return Err(SwarmError::NotManager(state));
        }
        Ok(Swarm { engine })
    }

    /// Tags the local image as `<registry>/<repository>:<tag>`, pushes it and returns the
    /// digest reference every node pulls.
    pub fn push(&self, local: &str, registry: &Registry, repository: &str, tag: &str) -> Result<ImageDigest> {
        let remote = format!("{}/{repository}", registry.as_str());
        let image = format!("{remote}:{tag}");
        let push_failed = |message: String| SwarmError::Push {
            image: image.clone(),
            registry: registry.as_str().to_string(),
            message,
        };
        let options = TagImageOptionsBuilder::default().repo(&remote).tag(tag).build();
        self.engine
            .run(|d| d.tag_image(local, Some(options)))
            .map_err(api_error(format!("tag {local} as {image}")))?;
        let options = PushImageOptionsBuilder::default().tag(tag).build();
        let name = remote.as_str();
        let push_failed = &push_failed;
        self.engine.run(|d| async move {
            let mut stream = d.push_image(name, Some(options), no_credentials());
            while let Some(item) = stream.next().await {
                let info = item.map_err(|e| push_failed(e.to_string()))?;
                if let Some(detail) = info.error_detail {
                    return Err(push_failed(detail.message.unwrap_or_default()));
                }
            }
            Ok(())
        })?;
        let inspect =
            self.engine.run(|d| d.inspect_image(&image)).map_err(api_error(format!("inspect {image}")))?;
        let prefix = format!("{remote}@");
        let digest = inspect.repo_digests.unwrap_or_default().into_iter().find(|r| r.starts_with(&prefix));
        ImageDigest::parse(&digest.ok_or_else(|| SwarmError::NoDigest(image.clone()))?)
    }

    fn inspect(&self, service: &str) -> Result<Option<Service>> {
        match self.engine.run(|d| d.inspect_service(service, None)) {
            Ok(found) => Ok(Some(found)),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(api_error(format!("inspect service {service}"))(e).into()),
        }
    }

    /// Creates the service, or updates it to `def` (a rolling update as `def` says). A service
    /// pinned to a node that cannot run tasks now (drained, paused, down) is left as it is:
    /// its data lives there, and an update would stop what still runs for a task that cannot
    /// start.
    pub fn deploy(&self, def: &ServiceDef) -> Result<()> {
        let spec = spec::service_spec(def)?;
        if let Some(node) = &def.pinned_to {
            self.require_schedulable(node)?;
        }
        let Some(current) = self.inspect(&def.name)? else {
            self.engine
                .run(|d| d.create_service(spec, no_credentials()))
                .map_err(api_error(format!("create service {}", def.name)))?;
            return Ok(());
        };
        let index = current.version.and_then(|v| v.index).unwrap_or_default();
        let version = i32::try_from(index).map_err(|_| EngineError::Api {
            action: format!("update service {}", def.name),
            message: format!("its version {index} is out of the API's range"),
        })?;
        let options = UpdateServiceOptions { version, ..Default::default() };
        self.engine
            .run(|d| d.update_service(&def.name, spec, options, no_credentials()))
            .map_err(api_error(format!("update service {}", def.name)))?;
        Ok(())
    }

    /// Removes the service; the engine stops its tasks (SIGTERM, then SIGKILL after its stop
    /// grace period) after this returns. Whether there was one to remove (none is fine).
    pub fn remove(&self, service: &str) -> Result<bool> {
        match self.engine.run(|d| d.delete_service(service)) {
            Ok(()) => Ok(true),
            Err(e) if is_not_found(&e) => Ok(false),
            Err(e) => Err(api_error(format!("remove service {service}"))(e).into()),
        }
    }

    /// The driver and options of a volume on the manager's engine; `None` when it does not
    /// exist there.
    pub fn volume_driver(&self, name: &str) -> Result<Option<VolumeDriver>> {
        match self.engine.run(|d| d.inspect_volume(name)) {
            Ok(volume) => {
                Ok(Some(VolumeDriver { name: volume.driver, options: volume.options.into_iter().collect() }))
            }
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(api_error(format!("inspect volume {name}"))(e).into()),
        }
    }

    /// Names of the services labelled `label=value`, sorted.
    pub fn services_labelled(&self, label: &str, value: &str) -> Result<Vec<String>> {
        let filter = format!("{label}={value}");
        let options = ListServicesOptionsBuilder::default()
            .filters(&HashMap::from([("label", vec![filter.as_str()])]))
            .build();
        let services = self
            .engine
            .run(|d| d.list_services(Some(options)))
            .map_err(api_error(format!("list services labelled {filter}")))?;
        let mut names: Vec<String> =
            services.into_iter().filter_map(|s| s.spec.and_then(|spec| spec.name)).collect();
        names.sort();
        Ok(names)
    }

    /// The node ports the swarm's services publish (the fixed ones of their specs, and those
    /// of tasks that may still run), each with whether only tasks on their way out (of a
    /// removed or scaled-down service) hold it.
    fn published_ports(&self) -> Result<BTreeMap<u16, bool>> {
        let services = self
            .engine
            .run(|d| d.list_services(None::<ListServicesOptions>))
            .map_err(api_error("list services"))?;
        let tasks =
            self.engine.run(|d| d.list_tasks(None::<ListTasksOptions>)).map_err(api_error("list tasks"))?;
        let fixed = services
            .into_iter()
            .filter_map(|s| s.spec?.endpoint_spec?.ports)
            .flatten()
            .map(|p| (p.published_port, false));
        let alive = tasks.into_iter().filter_map(|task| {
            let status = task.status?;
            let state = status.state.unwrap_or(TaskState::NEW);
            let stopping = task.desired_state != Some(TaskState::RUNNING);
            rollout::is_alive(state).then_some((status.port_status?.ports?, stopping))
        });
        let picked =
            alive.flat_map(|(ports, stopping)| ports.into_iter().map(move |p| (p.published_port, stopping)));
        let mut published = BTreeMap::new();
        for (port, stopping) in fixed.chain(picked) {
            if let Some(port) = port.and_then(|p| u16::try_from(p).ok()).filter(|p| *p != 0) {
                let only_stopping = published.entry(port).or_insert(true);
                *only_stopping &= stopping;
            }
        }
        Ok(published)
    }

    /// Waits until `port` is free, in the swarm and for a listener on this host, while no
    /// running service publishes it (tasks of a removed service may still be stopping there),
    /// up to `timeout` (their stop grace period); whether it is free.
    pub fn wait_port_free(&self, port: u16, timeout: Duration) -> Result<bool> {
        let start = Instant::now();
        loop {
            let free = match self.published_ports()?.get(&port) {
                None => TcpListener::bind((Ipv4Addr::UNSPECIFIED, port)).is_ok(),
                Some(true) => false,
                Some(false) => return Ok(false),
            };
            if free || start.elapsed() >= timeout {
                return Ok(free);
            }
            std::thread::sleep(POLL);
        }
    }

    /// A port that nothing on this host listens at and no swarm service publishes: the
    /// kernel's pick for port 0, from the range the engine picks published ports from.
    pub fn free_port(&self) -> Result<u16> {
        let published = self.published_ports()?;
        for _ in 0..FREE_PORT_TRIES {
            let port = TcpListener::bind((Ipv4Addr::UNSPECIFIED, 0))
                .and_then(|listener| listener.local_addr())
                .map_err(SwarmError::NoFreePort)?
                .port();
            if !published.contains_key(&port) {
                return Ok(port);
            }
        }
        Err(SwarmError::NoFreePort(std::io::Error::other(format!(
            "the {FREE_PORT_TRIES} ports the kernel offered are all published by swarm services"
        ))))
    }

    /// The output of every task of the service, on whichever node; `true` for stderr.
    pub fn logs(
        &self,
        service: &str,
        follow: bool,
        tail: Option<usize>,
        on_output: &mut dyn FnMut(bool, &str),
    ) -> Result<()> {
        use bollard::container::LogOutput;
        let options = logs_options(follow, tail);
        self.engine.run(|d| async move {
            let mut stream = d.service_logs(service, Some(options));
            while let Some(item) = stream.next().await {
                let output = item.map_err(api_error(format!("read logs of service {service}")))?;
                let is_err = matches!(output, LogOutput::StdErr { .. });
                on_output(is_err, &String::from_utf8_lossy(&output.into_bytes()));
            }
            Ok(())
        })
    }

    /// Every node of the swarm.
    pub fn nodes(&self) -> Result<Vec<NodeFacts>> {
        let nodes = self
            .engine
            .run(|d| d.list_nodes(None::<ListNodesOptions>))
            .map_err(api_error("list swarm nodes"))?;
        Ok(nodes.into_iter().map(NodeFacts::from_node).collect())
    }

    /// The node with this hostname; of several (a node that rejoined leaves its old entry
    /// down), the one not down.
    pub fn node(&self, hostname: &NodeName) -> Result<NodeFacts> {
        let mut matching: Vec<NodeFacts> =
            self.nodes()?.into_iter().filter(|n| n.hostname == hostname.as_str()).collect();
        if matching.len() > 1 {
            matching.retain(|n| n.state != NodeState::DOWN.to_string());
        }
        match matching.len() {
            0 => Err(SwarmError::NoSuchNode(hostname.to_string())),
            1 => Ok(matching.remove(0)),
            count => Err(SwarmError::AmbiguousNode { hostname: hostname.to_string(), count }),
        }
    }

    /// The node, failing unless it may run tasks now.
    pub fn require_schedulable(&self, hostname: &NodeName) -> Result<NodeFacts> {
        let node = self.node(hostname)?;
        if node.schedulable() {
            return Ok(node);
        }
        Err(SwarmError::NodeUnavailable {
            hostname: node.hostname,
            availability: node.availability,
            state: node.state,
        })
    }

    /// The node berth's engine is: where a pinned app goes unless told otherwise.
    pub fn this_node(&self) -> Result<NodeFacts> {
        let info = self.engine.run(|d| d.info()).map_err(api_error("read the engine's swarm state"))?;
        let id = info.swarm.and_then(|s| s.node_id).unwrap_or_default();
        let node =
            self.engine.run(|d| d.inspect_node(&id)).map_err(api_error(format!("inspect node {id}")))?;
        Ok(NodeFacts::from_node(node))
    }

    /// The service's tasks, old and new, with their nodes' hostnames.
    pub fn tasks(&self, service: &str) -> Result<Vec<TaskFacts>> {
        Ok(self.tasks_of(service)?.map(|(_, tasks)| tasks).unwrap_or_default())
    }

    /// The service and its tasks; `None` when there is no such service.
    fn tasks_of(&self, service: &str) -> Result<Option<(Service, Vec<TaskFacts>)>> {
        let Some(found) = self.inspect(service)? else { return Ok(None) };
        let id = found.id.clone().unwrap_or_default();
        let options = ListTasksOptionsBuilder::default()
            .filters(&HashMap::from([("service", vec![id.as_str()])]))
            .build();
        let tasks = self
            .engine
            .run(|d| d.list_tasks(Some(options)))
            .map_err(api_error(format!("list tasks of {service}")))?;
        let hostnames: HashMap<String, String> =
            self.nodes()?.into_iter().map(|n| (n.id, n.hostname)).collect();
        let template = found.spec.as_ref().and_then(|s| s.task_template.as_ref());
        let facts = tasks
            .into_iter()
            .filter(|t| t.service_id.as_deref() == Some(id.as_str()))
            .map(|task| {
                let status = task.status.unwrap_or_default();
                let container = status.container_status.unwrap_or_default();
                let published = status.port_status.and_then(|p| p.ports).unwrap_or_default();
                TaskFacts {
                    id: task.id.unwrap_or_default(),
                    slot: task.slot,
                    node: task.node_id.as_ref().and_then(|n| hostnames.get(n).cloned()),
                    node_id: task.node_id,
                    state: status.state.unwrap_or(TaskState::NEW),
                    desired: task.desired_state.unwrap_or(TaskState::NEW),
                    error: status.err,
                    message: status.message,
                    container_id: container.container_id,
                    exit_code: container.exit_code,
                    published: published
                        .iter()
                        .filter_map(|p| p.published_port.and_then(|n| u16::try_from(n).ok()))
                        .collect(),
                    version: task.version.and_then(|v| v.index).unwrap_or_default(),
                    current: rollout::runs_template(task.spec.as_ref(), template),
                }
            })
            .collect();
        Ok(Some((found, facts)))
    }

    /// Polls `judge` on the service until it returns an end; a task that fits no node fails
    /// the wait once it stayed so for [`UNSCHEDULABLE_GRACE`].
    fn watch<T>(
        &self,
        service: &str,
        timeout: Duration,
        judge: impl Fn(&Service, &[TaskFacts]) -> Watch<T>,
    ) -> Result<T> {
        let start = Instant::now();
        let mut unplaced_since: Option<Instant> = None;
        loop {
            let (found, tasks) = self.tasks_of(service)?.ok_or_else(|| SwarmError::Timeout {
                service: service.to_string(),
                seconds: 0,
                last: "the service does not exist".into(),
            })?;
            let last = match judge(&found, &tasks) {
                Watch::Done(value) => return Ok(value),
                Watch::Failed(error) => return Err(error),
                Watch::Unschedulable(reason) => {
                    let since = *unplaced_since.get_or_insert_with(Instant::now);
                    if since.elapsed() >= UNSCHEDULABLE_GRACE {
                        return Err(SwarmError::Unschedulable { service: service.to_string(), reason });
                    }
                    reason
                }
                Watch::Waiting(last) => {
                    unplaced_since = None;
                    last
                }
            };
            if start.elapsed() >= timeout {
                return Err(SwarmError::Timeout {
                    service: service.to_string(),
                    seconds: timeout.as_secs(),
                    last,
                });
            }
            std::thread::sleep(POLL);
        }
    }

    /// Waits until the service runs `replicas` tasks of its current spec, or the engine rolled
    /// its update back or paused it, or a task fits no node.
    pub fn wait_converged(&self, service: &str, replicas: u32, timeout: Duration) -> Result<()> {
        self.watch(service, timeout, |found, tasks| {
            let update = found.update_status.as_ref();
            let state = update.and_then(|u| u.state);
            let message = update.and_then(|u| u.message.as_deref());
            let owned = || service.to_string();
            match rollout::judge(state, message, replicas, tasks) {
                Progress::Converged => Watch::Done(()),
                Progress::Waiting(last) => Watch::Waiting(last),
                Progress::Unschedulable(reason) => Watch::Unschedulable(reason),
                Progress::RolledBack(reason) => {
                    Watch::Failed(SwarmError::RolledBack { service: owned(), reason })
                }
                Progress::Paused(reason) => Watch::Failed(SwarmError::Paused { service: owned(), reason }),
                Progress::Failed(reason) => Watch::Failed(SwarmError::Failed { service: owned(), reason }),
            }
        })
    }

    /// Runs a one-off task on its node to completion and removes it; fails unless it exits 0.
    pub fn run_job(&self, def: &JobDef, timeout: Duration) -> Result<JobOutcome> {
        let spec = spec::job_spec(def)?;
        self.require_schedulable(&def.node)?;
        self.engine
            .run(|d| d.create_service(spec, no_credentials()))
            .map_err(api_error(format!("create one-off task {}", def.name)))?;
        let ended = self.watch(&def.name, timeout, |_, tasks| {
            let ended = tasks
                .iter()
                .find(|t| matches!(t.state, TaskState::COMPLETE | TaskState::FAILED | TaskState::REJECTED));
            match (ended, tasks.iter().find(|t| t.state == TaskState::PENDING)) {
                (Some(task), _) => Watch::Done(task.clone()),
                (None, Some(TaskFacts { error: Some(error), .. })) if error.contains("no suitable node") => {
                    Watch::Unschedulable(error.clone())
                }
                (None, _) => Watch::Waiting(format!("{} task(s), none ended", tasks.len())),
            }
        });
        let removed = self.remove(&def.name);
        let task = ended?;
        removed?;
        let node = task.node.clone().unwrap_or_else(|| def.node.to_string());
        match (task.state, task.exit_code) {
            (TaskState::COMPLETE, code) => Ok(JobOutcome { node, exit_code: code.unwrap_or(0) }),
            _ => Err(SwarmError::JobFailed {
                service: def.name.clone(),
                node,
                reason: task.error.or(task.message).unwrap_or_else(|| "no reason given".into()),
            }),
        }
    }
}

/// What a [`Swarm::watch`] judge makes of one look at a service.
enum Watch<T> {
    Done(T),
    Failed(SwarmError),
    Waiting(String),
    Unschedulable(String),
}
