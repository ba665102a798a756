//! The deploy pipeline: plan a release from a pushed commit, then apply it — ensure storage,
//! build the image, run the build command, start the new containers beside the old ones, wait
//! for health, retire the old ones, record the release. Every step before the swap can fail
//! without touching what serves: the old containers keep running and the state is written only
//! once the new release is healthy. Everything here reaches containers through a
//! [`Scheduler`](crate::scheduler::Scheduler), so the swap and its undo are unit-tested on a fake.

mod apply;
mod commit;
mod fault;
mod health;
mod oneoff;
mod ops;
mod plan;
mod rolling;
mod route;
mod specs;
mod stop;
mod storage;
mod swap;
mod teardown;

pub use apply::{apply, record_failure};
pub use commit::{
    Commit, CommitError, Mode, Repo, deploy_commit, print_problems, read_manifest, report_commit_failure,
};
pub use fault::fault_point;
pub use oneoff::run_oneoff;
pub use ops::{rescale, restart, rollback, stop};
pub use plan::{Plan, PlanInputs, plan, short};
pub(crate) use route::Routing;
pub use route::{announce, check as check_proxy};
pub use specs::engine_mounts;
pub(crate) use specs::{ProcessSpec, mount_image_volumes, warn_anonymous_volume};
pub use stop::{stop_and_remove, stop_timeout};
pub use storage::{StorageSpec, check_binds, check_mounts, ensure_storage};
pub use swap::{Replace, Serving, recover};
pub use teardown::destroy_app;

use std::time::Duration;

use crate::docker_options::OptionsError;
use crate::engine::EngineError;
use crate::hostfs::HostFsError;
use crate::names::{AppName, EntryName};
use crate::state::StateError;
use crate::storage::binds::BindError;

#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    HostFs(#[from] HostFsError),
    #[error(transparent)]
    Helper(#[from] crate::helper_image::HelperImageError),
    #[error(transparent)]
    Options(#[from] OptionsError),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Proxy(#[from] crate::proxy::ProxyError),
    #[error(transparent)]
    Network(#[from] crate::network::NetworkError),
    /// Boxed: its variants carry the node and the data, and every deploy result carries this.
    #[error(transparent)]
    Swarm(Box<crate::swarm::SwarmError>),
    #[error("storage entry \"{0}\" mounted by this app no longer exists; unmount it or re-create it")]
    MissingEntry(EntryName),
    #[error("[build].command exited with status {0}")]
    BuildCommand(i64),
    #[error("the {process} process is not healthy: {reason}")]
    Unhealthy { process: String, reason: String },
    #[error("{0} has no release yet; push it first")]
    NoRelease(AppName),
    #[error("release {1} of {0} does not exist or did not deploy; see `berth releases {0}`")]
    NoSuchRelease(AppName, u32),
    #[error("{0} has no earlier deployed release to roll back to")]
    NothingToRollBackTo(AppName),
    #[error("the image of release {release} ({image}) was pruned")]
    ImagePruned { release: u32, image: String },
    #[error(transparent)]
    HostPath(#[from] crate::storage::host_path::HostPathError),
    #[error("could not give storage to {uid}:{gid}: chown in {image} exited {status}: {output}")]
    Chown { uid: u32, gid: u32, image: String, status: i64, output: String },
    #[error(transparent)]
    Binds(#[from] BindError),
    #[error(
        "release {release} of {app} mounts {what} at {container_path}, which the admin no longer allows for {app}; \
         nothing was changed and the running containers stay: allow it again (berth storage:allow {app} {grant}), \
         or push a release without it"
    )]
    NoLongerAllowed { app: AppName, release: u32, what: String, container_path: String, grant: String },
    #[error(
        "the image declares VOLUME {volume}, and {by} mounts {mount} at {target}, a parent of it: the \
         image's data at {volume} would go to an anonymous volume hidden under that mount. {fix}"
    )]
    ShadowedVolume { volume: String, target: String, mount: String, by: &'static str, fix: String },
}

impl From<crate::swarm::SwarmError> for DeployError {
    fn from(error: crate::swarm::SwarmError) -> DeployError {
        DeployError::Swarm(Box::new(error))
    }
}

pub type Result<T> = std::result::Result<T, DeployError>;

/// Label naming a container's process type.
const PROCESS_LABEL: &str = "berth.process";
/// Label naming the release a container runs.
const RELEASE_LABEL: &str = "berth.release";
/// What a container is for: `process` (long-running), `run` (one-off), `build`, `chown`.
const ROLE_LABEL: &str = "berth.role";
/// Suffix of a container being replaced while its successor starts.
const RETIRING: &str = "retiring";

/// Timing knobs, from the environment so tests and slow servers can set them.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// How long a process without an HTTP health check must stay up to count as started.
    pub settle: Duration,
    /// How long an HTTP health check may take to answer 2xx.
    pub health_timeout: Duration,
    /// How long old containers get to stop, unless their release says (`BERTH_STOP_TIMEOUT`).
    pub stop_timeout: Duration,
    /// How often a health check is retried: every poll is a loopback request and a container
    /// inspect, cheap next to the time a new release waits on the next poll once it is ready.
    pub poll: Duration,
}

impl Timing {
    pub fn from_env() -> Timing {
        let seconds = |name: &str, default: u64| {
            std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok()).unwrap_or(default)
        };
        Timing {
            settle: Duration::from_secs(seconds("BERTH_CHECK_SECONDS", 5)),
            health_timeout: Duration::from_secs(seconds("BERTH_HEALTH_TIMEOUT", 60)),
            stop_timeout: Duration::from_secs(seconds("BERTH_STOP_TIMEOUT", 10)),
            poll: Duration::from_millis(50),
        }
    }
}

/// Container name of a process instance: `<app>.<process>.<n>`.
pub fn container_name(app: &AppName, process: &str, instance: u32) -> String {
    format!("{app}.{process}.{instance}")
}

pub fn image_repo(app: &AppName) -> String {
    format!("berth/{app}")
}

#[cfg(test)]
mod tests;
