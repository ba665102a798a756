//! Docker Swarm, as the `docker-swarm` scheduler drives it: a typed, blocking client over the
//! engine connection (a swarm manager) that pushes images to the cluster's registry, creates
//! and updates services from typed specs, waits for an update to converge or be rolled back,
//! and reports nodes and tasks. [`spec`] builds the engine's specs, [`rollout`] reads a
//! rollout's state; both are pure.

mod client;
pub mod rollout;
pub mod spec;

pub use client::{JobOutcome, NodeFacts, Swarm};
pub use rollout::{Progress, TaskFacts};
pub use spec::{
    HealthCheck, ImageDigest, JobDef, NodeName, Registry, RestartCondition, RestartPolicy, ServiceDef,
    SwarmMount, UpdateOrder, VolumeDriver,
};

use crate::engine::EngineError;

#[derive(Debug, thiserror::Error)]
pub enum SwarmError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(
        "the Docker engine berth talks to is not a swarm manager (swarm state: {0}); run `docker swarm init --advertise-addr <address>` on it, or point DOCKER_HOST at a manager (docs/swarm.md)"
    )]
    NotManager(String),
    #[error(
        "registry \"{0}\" is not <host>:<port> (such as 10.0.0.5:5000); set `[swarm] registry` in berth.toml"
    )]
    BadRegistry(String),
    #[error("image reference \"{0}\" is not <repository>@sha256:<64 hex digits>")]
    BadDigest(String),
    #[error(
        "service name \"{0}\" is not valid (up to 63 letters, digits, '-' and '_', starting with a letter or digit)"
    )]
    BadServiceName(String),
    #[error("node name \"{0}\" is not a hostname (letters, digits, '-', '.', '_')")]
    BadNodeName(String),
    #[error(
        "pushing {image} failed: {message}; check that the registry answers (curl http://{registry}/v2/)"
    )]
    Push { image: String, registry: String, message: String },
    #[error("the engine recorded no digest for {0} after pushing it")]
    NoDigest(String),
    #[error("no swarm node has hostname \"{0}\"; `docker node ls` lists them")]
    NoSuchNode(String),
    #[error("{count} swarm nodes have hostname \"{hostname}\"; remove the stale ones with `docker node rm`")]
    AmbiguousNode { hostname: String, count: usize },
    #[error(
        "swarm node \"{hostname}\" cannot run tasks: its availability is {availability} and its state {state}; make it `docker node update --availability active {hostname}` and bring it up"
    )]
    NodeUnavailable { hostname: String, availability: String, state: String },
    #[error("the update of service {service} failed and the engine rolled it back: {reason}")]
    RolledBack { service: String, reason: String },
    #[error(
        "the update of service {service} is paused by the engine: {reason}; see `docker service ps {service}`"
    )]
    Paused { service: String, reason: String },
    #[error("service {service} failed to start: {reason}")]
    Failed { service: String, reason: String },
    #[error("service {service} cannot place its tasks: {reason}")]
    Unschedulable { service: String, reason: String },
    #[error("service {service} did not converge within {seconds} s: {last}")]
    Timeout { service: String, seconds: u64, last: String },
    #[error(
        "no registry for swarm images: set `[swarm] registry = \"<host>:<port>\"` in berth.toml, a registry every node can pull from (docs/swarm.md)"
    )]
    NoRegistry,
    #[error(
        "{app} has docker-options for its {process} process, which swarm services cannot take; nothing was changed: remove them (`berth docker-options:clear {app}`) or keep the app on docker-local (`berth scheduler:set {app} selected docker-local`)"
    )]
    DockerOptions { app: String, process: String },
    #[error(
        "{app}'s data lives on swarm node \"{node}\" ({data}), which cannot run tasks: its availability is {availability} and its state {state}; nothing was changed and its running tasks were left alone. Make the node active (`docker node update --availability active {node}`) and push again, or move the data and `berth scheduler:set {app} node <hostname>`"
    )]
    PinnedNodeUnavailable { app: String, node: String, data: String, availability: String, state: String },
    #[error(
        "{app} is pinned to swarm node \"{node}\", where its data is, and `berth run` runs on this manager ({this}) only; run the command in its task there (`docker ps --filter label=berth.app={app}` on {node}), or pin it here (`berth scheduler:set {app} node {this}`)"
    )]
    RunElsewhere { app: String, node: String, this: String },
    #[error(
        "{app}'s process type {process} has the name of the second web service a swarm swap starts ({app}_{process}); nothing was changed: rename the process in app.toml or the Procfile"
    )]
    ProcessNameTaken { app: String, process: String },
    #[error("no free port on this host for the web service's tasks: {0}")]
    NoFreePort(#[source] std::io::Error),
    #[error("one-off task {service} on node {node} failed: {reason}")]
    JobFailed { service: String, node: String, reason: String },
}

pub type Result<T> = std::result::Result<T, SwarmError>;
