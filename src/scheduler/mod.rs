//! The boundary between the deploy and a container platform: what a deploy needs to build an
//! image, give it storage, and create, start, stop, inspect and retire containers. `docker-local`
//! (the engine on this server) implements it; `fake` is an in-memory platform for unit tests of
//! the deploy's swap, undo and recovery, so they run without an engine.

pub mod docker_local;
pub mod docker_swarm;
#[cfg(test)]
pub mod fake;
pub mod selection;

use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

pub use crate::engine::{
    ContainerFacts, ContainerSpec, EngineError, ImageConfig, NetworkAddress, Result, Stopped,
};
use crate::helper_image::HelperImageError;
pub use crate::network::{AddressRequest, NetworkError};

/// Writes the build context (a tar stream) on another thread while the platform reads it.
pub type BuildContext = Box<dyn FnOnce(&mut dyn Write) -> std::io::Result<()> + Send + 'static>;

/// Receives a container's output: `true` for its stderr.
pub type OnOutput<'a> = &'a mut dyn FnMut(bool, &str);

pub trait Scheduler {
    /// Builds `tag` from a context with `build_args` for its `ARG`s, passing each line of build output to `on_line`.
    fn build_image(
        &self,
        tag: &str,
        dockerfile: &str,
        labels: &HashMap<String, String>,
        build_args: &HashMap<String, String>,
        context: BuildContext,
        on_line: &mut dyn FnMut(&str),
    ) -> Result<()>;
    fn image_config(&self, image: &str) -> Result<ImageConfig>;
    /// The paths an image declares with `VOLUME`.
    fn image_volumes(&self, image: &str) -> Result<Vec<String>>;
    fn image_exists(&self, image: &str) -> Result<bool>;
    /// Saves a stopped container's filesystem as `repo:tag` with `config`.
    fn commit(&self, container: &str, repo: &str, tag: &str, config: &ImageConfig) -> Result<()>;
    /// The image berth's root helpers run (never a pushed image).
    fn helper_image(&self) -> std::result::Result<String, HelperImageError>;

    /// Creates an app volume when missing; `true` when it was created now.
    fn ensure_app_volume(
        &self,
        name: &str,
        app: &str,
        driver: Option<&str>,
        options: &HashMap<String, String>,
    ) -> Result<bool>;
    /// Creates the volume kept for an image's `VOLUME` path when missing.
    fn ensure_anonymous_volume(&self, name: &str, app: &str, path: &str) -> Result<bool>;
    /// Fails unless an external volume exists.
    fn require_volume(&self, name: &str) -> Result<()>;

    fn create_container(&self, spec: &ContainerSpec) -> Result<String>;
    fn start_container(&self, name: &str) -> Result<()>;
    /// The stop signal (SIGTERM unless the image says otherwise), then SIGKILL once `timeout`
    /// has passed; says which ended it.
    fn stop(&self, name: &str, timeout: Duration) -> Result<Stopped>;
    /// Removes a container, absent or not.
    fn remove_container(&self, name: &str) -> Result<()>;
    fn rename_container(&self, name: &str, new_name: &str) -> Result<()>;
    fn inspect_container(&self, name: &str) -> Result<Option<ContainerFacts>>;
    /// Names of every container of the app, running or not, sorted.
    fn app_containers(&self, app: &str) -> Result<Vec<String>>;
    /// Starts a created container, streams its output until it exits, returns its status.
    fn run_attached(&self, name: &str, on_output: OnOutput<'_>) -> Result<i64>;
    fn logs(&self, name: &str, follow: bool, tail: Option<usize>, on_output: OnOutput<'_>) -> Result<()>;
    /// The status code `GET path` gets from a container's address.
    fn http_status(&self, upstream: SocketAddr, path: &str) -> std::io::Result<u16>;
    /// A free fixed address for a web container on berth's network, a preferred one when it
    /// is free. Callers hold the proxy's lock, so two deploys of one root never pick the same one.
    fn allocate_address(&self, request: &AddressRequest)
    -> std::result::Result<NetworkAddress, NetworkError>;
}
