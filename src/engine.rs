//! The container engine: a blocking facade over bollard (Docker's API), so the rest of berth
//! stays synchronous. One current-thread runtime per process, created on first connect.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::models::VolumeCreateRequest;
use bollard::query_parameters::{ListVolumesOptionsBuilder, RemoveVolumeOptions};
use tokio::runtime::Runtime;

/// Label every object berth creates carries, naming the app it belongs to.
pub const APP_LABEL: &str = "berth.app";
/// On a volume berth made for an image's `VOLUME` path: that path.
pub const ANONYMOUS_LABEL: &str = "berth.anonymous";

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(
        "the Docker engine is not reachable ({0}); start it (dockerd, or systemctl start docker) and try again"
    )]
    Unreachable(String),
    #[error("Docker volume \"{0}\" does not exist; create it first with `docker volume create {0}`")]
    NoSuchVolume(String),
    #[error("Docker engine: {action}: {message}")]
    Api { action: String, message: String },
    #[error("volume driver \"{0}\" is not a plain name; berth never hands the engine a path as a driver")]
    BadDriver(String),
}

pub type Result<T> = std::result::Result<T, EngineError>;

pub(crate) fn api_error(action: impl Into<String>) -> impl FnOnce(bollard::errors::Error) -> EngineError {
    let action = action.into();
    move |error| match error {
        bollard::errors::Error::DockerResponseServerError { message, .. } => {
            EngineError::Api { action, message }
        }
        other => match lost_connection(&other) {
            Some(cause) => EngineError::Unreachable(format!("{action}: {cause}")),
            None => EngineError::Api { action, message: other.to_string() },
        },
    }
}

/// The I/O error under a failed connection to the engine (it stopped, or its socket went
/// away, after berth connected), which bollard reports only as "client error (Connect)".
fn lost_connection(error: &bollard::errors::Error) -> Option<&std::io::Error> {
    if !matches!(error, bollard::errors::Error::HyperLegacyError { .. }) {
        return None;
    }
    let mut cause = std::error::Error::source(error);
    while let Some(error) = cause {
        if let Some(io) = error.downcast_ref::<std::io::Error>() {
            return Some(io);
        }
        cause = error.source();
    }
    None
}

pub(crate) fn is_not_found(error: &bollard::errors::Error) -> bool {
    matches!(error, bollard::errors::Error::DockerResponseServerError { status_code: 404, .. })
}

/// A connection to the engine named by `DOCKER_HOST` (default: the local socket).
pub struct Engine {
    runtime: Runtime,
    docker: Docker,
}

impl Engine {
    /// Connects and agrees on an API version the engine speaks (Debian's engine is older than
    /// bollard's default).
    pub fn connect() -> Result<Engine> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| EngineError::Unreachable(e.to_string()))?;
        let docker = Docker::connect_with_defaults().map_err(|e| EngineError::Unreachable(e.to_string()))?;
        let docker = runtime
            .block_on(async {
                let docker = docker.negotiate_version().await?;
                docker.ping().await?;
                Ok::<_, bollard::errors::Error>(docker)
            })
            .map_err(|e| EngineError::Unreachable(e.to_string()))?;
        Ok(Engine { runtime, docker })
    }

    /// Runs a request of another domain's client (`swarm`) on this connection and runtime.
    pub(crate) fn run<'a, T, F>(&'a self, request: impl FnOnce(&'a Docker) -> F) -> T
    where
        F: std::future::Future<Output = T> + 'a,
    {
        self.runtime.block_on(request(&self.docker))
    }

    pub fn volume_exists(&self, name: &str) -> Result<bool> {
        match self.runtime.block_on(self.docker.inspect_volume(name)) {
            Ok(_) => Ok(true),
            Err(e) if is_not_found(&e) => Ok(false),
            Err(e) => Err(api_error(format!("inspect volume {name}"))(e)),
        }
    }

    /// Fails with a clear message unless the volume exists.
    pub fn require_volume(&self, name: &str) -> Result<()> {
        if self.volume_exists(name)? { Ok(()) } else { Err(EngineError::NoSuchVolume(name.to_string())) }
    }

    /// Creates a volume labelled with its app; returns whether it was created.
    pub fn ensure_app_volume(
        &self,
        name: &str,
        app: &str,
        driver: Option<&str>,
        driver_opts: &HashMap<String, String>,
    ) -> Result<bool> {
        if let Some(driver) = driver.filter(|d| !crate::storage::is_driver_name(d)) {
            return Err(EngineError::BadDriver(driver.to_string()));
        }
        self.ensure_volume(VolumeCreateRequest {
            name: Some(name.to_string()),
            driver: driver.map(str::to_string),
            driver_opts: Some(driver_opts.clone()),
            labels: Some(HashMap::from([(APP_LABEL.to_string(), app.to_string())])),
            ..Default::default()
        })
    }

    /// Creates the `local` volume keeping what the app's image declares at `path` with
    /// `VOLUME`, labelled with the app and the path, unless it exists; true when created.
    pub fn ensure_anonymous_volume(&self, name: &str, app: &str, path: &str) -> Result<bool> {
        self.ensure_volume(VolumeCreateRequest {
            name: Some(name.to_string()),
            labels: Some(HashMap::from([
                (APP_LABEL.to_string(), app.to_string()),
                (ANONYMOUS_LABEL.to_string(), path.to_string()),
            ])),
            ..Default::default()
        })
    }

    fn ensure_volume(&self, request: VolumeCreateRequest) -> Result<bool> {
        let name = request.name.clone().unwrap_or_default();
        if self.volume_exists(&name)? {
            return Ok(false);
        }
        self.runtime
            .block_on(self.docker.create_volume(request))
            .map(|_| true)
            .map_err(api_error(format!("create volume {name}")))
    }

    /// Creates a `local` volume with these labels unless it exists; true when created (an
    /// existing volume keeps its labels: the engine cannot change them).
    pub fn ensure_labelled_volume(&self, name: &str, labels: HashMap<String, String>) -> Result<bool> {
        self.ensure_volume(VolumeCreateRequest {
            name: Some(name.to_string()),
            labels: Some(labels),
            ..Default::default()
        })
    }

    /// Names of the volumes labelled with the app, sorted.
    pub fn app_volumes(&self, app: &str) -> Result<Vec<String>> {
        let volumes = self.volumes_labelled(vec![format!("{APP_LABEL}={app}")])?;
        let mut names: Vec<String> = volumes.into_iter().map(|v| v.name).collect();
        names.sort();
        Ok(names)
    }

    /// The volumes berth keeps for the app's image `VOLUME` paths, as (name, path), sorted.
    pub fn anonymous_volumes(&self, app: &str) -> Result<Vec<(String, String)>> {
        let volumes =
            self.volumes_labelled(vec![format!("{APP_LABEL}={app}"), ANONYMOUS_LABEL.to_string()])?;
        let mut pairs: Vec<(String, String)> = volumes
            .into_iter()
            .map(|v| {
                let path = v.labels.get(ANONYMOUS_LABEL).cloned().unwrap_or_default();
                (v.name, path)
            })
            .collect();
        pairs.sort();
        Ok(pairs)
    }

    fn volumes_labelled(&self, labels: Vec<String>) -> Result<Vec<bollard::models::Volume>> {
        let filters = HashMap::from([("label", labels)]);
        let options = ListVolumesOptionsBuilder::default().filters(&filters).build();
        let response = self
            .runtime
            .block_on(self.docker.list_volumes(Some(options)))
            .map_err(api_error("list volumes"))?;
        Ok(response.volumes.unwrap_or_default())
    }

    /// Every volume labelled with an app, as (name, app), sorted.
    pub fn labelled_volumes(&self) -> Result<Vec<(String, String)>> {
        let volumes = self.volumes_labelled(vec![APP_LABEL.to_string()])?;
        let mut pairs: Vec<(String, String)> = volumes
            .into_iter()
            .map(|v| {
                let app = v.labels.get(APP_LABEL).cloned().unwrap_or_default();
                (v.name, app)
            })
            .collect();
        pairs.sort();
        Ok(pairs)
    }

    /// Where a volume's data is on the host (for a size walk), when the engine says.
    pub fn volume_mountpoint(&self, name: &str) -> Result<Option<String>> {
        match self.runtime.block_on(self.docker.inspect_volume(name)) {
            Ok(volume) => Ok(Some(volume.mountpoint).filter(|m| !m.is_empty())),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(api_error(format!("inspect volume {name}"))(e)),
        }
    }

    pub fn remove_volume(&self, name: &str) -> Result<()> {
        self.runtime
            .block_on(self.docker.remove_volume(name, None::<RemoveVolumeOptions>))
            .map_err(api_error(format!("remove volume {name}")))
    }
}

/// Whether a mount binds a host path or a Docker volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountKind {
    Bind,
    Volume,
}

/// One mount of a container, as berth hands it to the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineMount {
    pub kind: MountKind,
    pub source: String,
    pub target: String,
    pub read_only: bool,
    /// Other `-v` options (`z`, `Z`, `nocopy`, propagation), already validated.
    pub options: Vec<String>,
}

/// Everything needed to create one container.
#[derive(Debug, Clone, Default)]
pub struct ContainerSpec {
    pub name: String,
    pub image: String,
    /// Replaces the image's CMD when set.
    pub cmd: Option<Vec<String>>,
    pub env: Vec<String>,
    pub user: Option<String>,
    pub labels: HashMap<String, String>,
    pub mounts: Vec<EngineMount>,
    /// Container port to publish on an engine-chosen port of the host's loopback address.
    pub publish: Option<u16>,
    /// The network the container joins, at a fixed address (instead of the default bridge).
    pub address: Option<NetworkAddress>,
    /// Restart the container when it exits or the engine restarts (long-running processes).
    pub restart: bool,
    /// Extra `docker run` options from docker-options, already translated.
    pub options: crate::docker_options::RunOptions,
}

/// A container's fixed address on a user-defined network: the engine gives it back to the
/// container at every start, so it stays the same across engine restarts and reboots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkAddress {
    pub network: String,
    pub ip: Ipv4Addr,
}

/// An IPv4 network as `address/prefix`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subnet {
    pub base: Ipv4Addr,
    pub prefix: u8,
}

impl Subnet {
    /// Parses `172.18.0.0/16`.
    pub fn parse(text: &str) -> Option<Subnet> {
        let (base, prefix) = text.split_once('/')?;
        let prefix: u8 = prefix.parse().ok().filter(|p| *p <= 32)?;
        Some(Subnet { base: base.parse().ok()?, prefix })
    }
}

impl std::fmt::Display for Subnet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.base, self.prefix)
    }
}

/// How a container stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// It was not running.
    NotRunning,
    /// It exited after the stop signal, within the timeout.
    Exited(i64),
    /// It was still running when the timeout passed and the engine killed it (SIGKILL).
    Killed,
}

/// What berth needs to know about a running or stopped container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerFacts {
    pub id: String,
    pub name: String,
    /// Up and not waiting to be restarted: the engine reports a crash-looping container as
    /// running while its restart policy waits, which must not count.
    pub running: bool,
    pub exit_code: Option<i64>,
    /// How often the engine restarted it after it exited (restart policy).
    pub restart_count: i64,
    pub labels: HashMap<String, String>,
    /// Host port bound to the published container port, if any.
    pub host_port: Option<u16>,
    /// Its IPv4 address on each network it is configured for (the fixed one when it has one).
    pub addresses: HashMap<String, Ipv4Addr>,
    pub mounts: Vec<(String, String, bool)>,
}

/// The parts of an image's config a `docker commit` must keep.
#[derive(Debug, Clone, Default)]
pub struct ImageConfig {
    pub cmd: Option<Vec<String>>,
    pub entrypoint: Option<Vec<String>>,
    pub user: Option<String>,
    pub working_dir: Option<String>,
    pub env: Option<Vec<String>>,
    pub exposed_ports: Option<Vec<String>>,
    pub labels: Option<HashMap<String, String>>,
}

/// A `Write` that hands chunks to the engine request body, so a build context streams from
/// git to the engine without being held in memory.
struct ChannelWriter {
    sender: tokio::sync::mpsc::Sender<std::result::Result<bytes::Bytes, std::io::Error>>,
}

impl std::io::Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.sender.blocking_send(Ok(bytes::Bytes::copy_from_slice(buf))).map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::BrokenPipe,
                "the engine stopped reading the build context",
            )
        })?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn output_text(output: bollard::container::LogOutput) -> String {
    String::from_utf8_lossy(&output.into_bytes()).into_owned()
}

impl Engine {
    /// Builds an image from a tar context produced by `write_context` on another thread, with
    /// `build_args` for the Dockerfile's `ARG`s, passing each line of build output to `on_line`.
    pub fn build_image(
        &self,
        tag: &str,
        dockerfile: &str,
        labels: &HashMap<String, String>,
        build_args: &HashMap<String, String>,
        write_context: impl FnOnce(&mut dyn std::io::Write) -> std::io::Result<()> + Send + 'static,
        on_line: &mut dyn FnMut(&str),
    ) -> Result<()> {
        use bollard::query_parameters::BuildImageOptionsBuilder;
        use futures_util::StreamExt;

        let (sender, receiver) = tokio::sync::mpsc::channel(16);
        let writer_thread = std::thread::spawn(move || {
            let mut writer = ChannelWriter { sender: sender.clone() };
            let result = write_context(&mut writer);
            if let Err(error) = &result {
                // Abort the request body so the engine does not build a truncated context.
                let _ = sender.blocking_send(Err(std::io::Error::new(error.kind(), error.to_string())));
            }
            result
        });
        let options = BuildImageOptionsBuilder::default()
            .t(tag)
            .dockerfile(dockerfile)
            .rm(true)
            .forcerm(true)
            .labels(labels)
            .buildargs(build_args)
            .build();
        let body = bollard::body_try_stream(tokio_stream_from(receiver));
        let build_result: Result<()> = self.runtime.block_on(async {
            let mut stream = self.docker.build_image(options, None, Some(body));
            while let Some(item) = stream.next().await {
                let info = item.map_err(api_error("build image"))?;
                if let Some(detail) = info.error_detail {
                    return Err(EngineError::Api {
                        action: "build image".into(),
                        message: detail.message.unwrap_or_default(),
                    });
                }
                if let Some(text) = info.stream.as_deref().or(info.status.as_deref()) {
                    for line in text.lines().filter(|l| !l.trim().is_empty()) {
                        on_line(line);
                    }
                }
            }
            Ok(())
        });
        let context_result = writer_thread.join().map_err(|_| EngineError::Api {
            action: "build image".into(),
            message: "the build context writer panicked".into(),
        })?;
        if let Err(error) = context_result {
            return Err(EngineError::Api {
                action: "stream the build context".into(),
                message: error.to_string(),
            });
        }
        build_result.map_err(|error| self.unless_gone(error))
    }

    /// A call that failed because the engine is going away (stopping mid-build, it fails the
    /// build with errors about its own teardown) is reported as the engine being unreachable,
    /// when it no longer answers a ping.
    fn unless_gone(&self, error: EngineError) -> EngineError {
        let EngineError::Api { action, message } = error else { return error };
        let ping = self.runtime.block_on(async {
            tokio::time::timeout(std::time::Duration::from_secs(5), self.docker.ping()).await
        });
        if matches!(ping, Ok(Ok(_))) {
            EngineError::Api { action, message }
        } else {
            EngineError::Unreachable(format!("{action}: {message}"))
        }
    }

    pub fn image_config(&self, image: &str) -> Result<ImageConfig> {
        let inspect = self
            .runtime
            .block_on(self.docker.inspect_image(image))
            .map_err(api_error(format!("inspect image {image}")))?;
        let config = inspect.config.unwrap_or_default();
        Ok(ImageConfig {
            cmd: config.cmd,
            entrypoint: config.entrypoint,
            user: config.user,
            working_dir: config.working_dir,
            env: config.env,
            exposed_ports: config.exposed_ports,
            labels: config.labels,
        })
    }

    /// The paths the image declares with `VOLUME`, sorted.
    pub fn image_volumes(&self, image: &str) -> Result<Vec<String>> {
        let inspect = self
            .runtime
            .block_on(self.docker.inspect_image(image))
            .map_err(api_error(format!("inspect image {image}")))?;
        let mut paths = inspect.config.and_then(|c| c.volumes).unwrap_or_default();
        paths.sort();
        Ok(paths)
    }

    pub fn image_exists(&self, image: &str) -> Result<bool> {
        match self.runtime.block_on(self.docker.inspect_image(image)) {
            Ok(_) => Ok(true),
            Err(e) if is_not_found(&e) => Ok(false),
            Err(e) => Err(api_error(format!("inspect image {image}"))(e)),
        }
    }

    /// Commits a container as `repo:tag`, with the given image config (so a build command does
    /// not become the image's CMD).
    pub fn commit(&self, container: &str, repo: &str, tag: &str, config: &ImageConfig) -> Result<()> {
        use bollard::query_parameters::CommitContainerOptionsBuilder;
        let options = CommitContainerOptionsBuilder::default()
            .container(container)
            .repo(repo)
            .tag(tag)
            .pause(true)
            .build();
        let body = bollard::models::ContainerConfig {
            cmd: config.cmd.clone(),
            entrypoint: config.entrypoint.clone(),
            user: config.user.clone(),
            working_dir: config.working_dir.clone(),
            env: config.env.clone(),
            exposed_ports: config.exposed_ports.clone(),
            labels: config.labels.clone(),
            ..Default::default()
        };
        self.runtime
            .block_on(self.docker.commit_container(options, body))
            .map(drop)
            .map_err(api_error(format!("commit container {container}")))
    }

    pub fn remove_image(&self, image: &str) -> Result<()> {
        use bollard::query_parameters::RemoveImageOptionsBuilder;
        // Untagged parents stay: they are the build cache another app's build may be reading
        // right now (pruning them mid-build fails it: "failed to get digest"); `docker image
        // prune` reclaims them.
        let options = RemoveImageOptionsBuilder::default().noprune(true).build();
        match self.runtime.block_on(self.docker.remove_image(image, Some(options), None)) {
            Ok(_) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(api_error(format!("remove image {image}"))(e)),
        }
    }

    /// Creates (does not start) a container.
    pub fn create_container(&self, spec: &ContainerSpec) -> Result<String> {
        use bollard::models::{
            ContainerCreateBody, HostConfig, Mount, MountBindOptions, MountBindOptionsPropagationEnum,
            MountType, MountVolumeOptions, PortBinding, RestartPolicy, RestartPolicyNameEnum,
        };
        use bollard::query_parameters::CreateContainerOptionsBuilder;

        let mut mounts = Vec::new();
        let mut binds = Vec::new();
        for mount in &spec.mounts {
            // SELinux relabelling exists only in the `-v` form; paths were checked free of `:`
            // and `,`, so rendering them cannot smuggle options.
            if mount.options.iter().any(|o| o == "z" || o == "Z") {
                // The engine refuses these in the `-v` form; they hold by other means (see
                // `storage::RESTRICTIVE_OPTIONS`).
                let mut options: Vec<String> = mount
                    .options
                    .iter()
                    .filter(|o| !crate::storage::RESTRICTIVE_OPTIONS.contains(&o.as_str()))
                    .cloned()
                    .collect();
                if mount.read_only {
                    options.insert(0, "ro".into());
                }
                binds.push(format!("{}:{}:{}", mount.source, mount.target, options.join(",")));
                continue;
            }
            let propagation = mount.options.iter().find_map(|o| match o.as_str() {
                "shared" => Some(MountBindOptionsPropagationEnum::SHARED),
                "slave" => Some(MountBindOptionsPropagationEnum::SLAVE),
                "private" => Some(MountBindOptionsPropagationEnum::PRIVATE),
                "rshared" => Some(MountBindOptionsPropagationEnum::RSHARED),
                "rslave" => Some(MountBindOptionsPropagationEnum::RSLAVE),
                "rprivate" => Some(MountBindOptionsPropagationEnum::RPRIVATE),
                _ => None,
            });
            let nocopy = mount.options.iter().any(|o| o == "nocopy");
            mounts.push(Mount {
                target: Some(mount.target.clone()),
                source: Some(mount.source.clone()),
                typ: Some(match mount.kind {
                    MountKind::Bind => MountType::BIND,
                    MountKind::Volume => MountType::VOLUME,
                }),
                read_only: Some(mount.read_only),
                bind_options: (mount.kind == MountKind::Bind && propagation.is_some())
                    .then(|| MountBindOptions { propagation, ..Default::default() }),
                volume_options: (mount.kind == MountKind::Volume && nocopy)
                    .then(|| MountVolumeOptions { no_copy: Some(true), ..Default::default() }),
                ..Default::default()
            });
        }
        let mut host_config = HostConfig {
            mounts: Some(mounts),
            binds: (!binds.is_empty()).then_some(binds),
            restart_policy: spec.restart.then_some(RestartPolicy {
                name: Some(RestartPolicyNameEnum::UNLESS_STOPPED),
                maximum_retry_count: None,
            }),
            ..Default::default()
        };
        let mut exposed_ports = None;
        if let Some(port) = spec.publish {
            let key = format!("{port}/tcp");
            host_config.port_bindings = Some(HashMap::from([(
                key.clone(),
                // Loopback only: from elsewhere, only the proxy reaches the app.
                Some(vec![PortBinding { host_ip: Some("127.0.0.1".into()), host_port: Some(String::new()) }]),
            )]));
            exposed_ports = Some(vec![key]);
        }
        let mut networking_config = None;
        if let Some(address) = &spec.address {
            host_config.network_mode = Some(address.network.clone());
            let endpoint = bollard::models::EndpointSettings {
                ipam_config: Some(bollard::models::EndpointIpamConfig {
                    ipv4_address: Some(address.ip.to_string()),
                    ..Default::default()
                }),
                ..Default::default()
            };
            networking_config = Some(bollard::models::NetworkingConfig {
                endpoints_config: Some(HashMap::from([(address.network.clone(), endpoint)])),
            });
        }
        let mut body = ContainerCreateBody {
            image: Some(spec.image.clone()),
            networking_config,
            cmd: spec.cmd.clone(),
            env: Some(spec.env.clone()),
            user: spec.user.clone(),
            labels: Some(spec.labels.clone()),
            exposed_ports,
            host_config: Some(host_config),
            ..Default::default()
        };
        spec.options.apply(&mut body);
        let options = CreateContainerOptionsBuilder::default().name(&spec.name).build();
        self.runtime
            .block_on(self.docker.create_container(Some(options), body))
            .map(|response| response.id)
            .map_err(api_error(format!("create container {}", spec.name)))
    }

    /// Starts a container; one already running is fine.
    pub fn start_container(&self, name: &str) -> Result<()> {
        use bollard::query_parameters::StartContainerOptions;
        match self.runtime.block_on(self.docker.start_container(name, None::<StartContainerOptions>)) {
            Ok(()) => Ok(()),
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 304, .. }) => Ok(()),
            Err(e) => Err(api_error(format!("start container {name}"))(e)),
        }
    }

    /// Stops a container the way `docker stop` does: its stop signal (SIGTERM unless the image
    /// says otherwise), then SIGKILL once `timeout` has passed. Says whether it had to be
    /// killed: the engine reports exit status 137 (128 + SIGKILL) after the whole timeout.
    pub fn stop_gracefully(&self, name: &str, timeout: Duration) -> Result<Stopped> {
        use bollard::query_parameters::StopContainerOptionsBuilder;
        let seconds = i32::try_from(timeout.as_secs()).unwrap_or(i32::MAX);
        let options = StopContainerOptionsBuilder::default().t(seconds).build();
        let started = Instant::now();
        match self.runtime.block_on(self.docker.stop_container(name, Some(options))) {
            Ok(()) => {}
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 304, .. }) => {
                return Ok(Stopped::NotRunning);
            }
            Err(e) if is_not_found(&e) => return Ok(Stopped::NotRunning),
            Err(e) => return Err(api_error(format!("stop container {name}"))(e)),
        }
        let code = self.inspect_container(name)?.and_then(|facts| facts.exit_code).unwrap_or(0);
        Ok(if code == 137 && started.elapsed() >= timeout { Stopped::Killed } else { Stopped::Exited(code) })
    }

    /// Creates berth's network for web containers with `subnet`, unless it exists; returns the
    /// subnet it has. With no subnet given, the engine picks a free one from its pools first.
    pub fn ensure_network(&self, name: &str, labels: &HashMap<String, String>) -> Result<Option<Subnet>> {
        use bollard::models::{Ipam, IpamConfig, NetworkCreateRequest};
        if let Some(subnet) = self.network_subnet(name)? {
            return Ok(Some(subnet));
        }
        let create = |ipam: Option<Ipam>| NetworkCreateRequest {
            name: name.to_string(),
            driver: Some("bridge".into()),
            ipam,
            labels: Some(labels.clone()),
            ..Default::default()
        };
        // Fixed addresses need a subnet given at creation: let the engine choose a free one,
        // then create the network again with it.
        let action = format!("create network {name}");
        self.runtime.block_on(self.docker.create_network(create(None))).map_err(api_error(&action))?;
        let chosen = self.network_subnet(name)?;
        self.runtime
            .block_on(self.docker.remove_network(name))
            .map_err(api_error(format!("remove network {name}")))?;
        let Some(subnet) = chosen else { return Ok(None) };
        let ipam = Ipam {
            config: Some(vec![IpamConfig { subnet: Some(subnet.to_string()), ..Default::default() }]),
            ..Default::default()
        };
        self.runtime.block_on(self.docker.create_network(create(Some(ipam)))).map_err(api_error(&action))?;
        self.network_subnet(name)
    }

    /// The IPv4 subnet of a network, or `None` when the network does not exist.
    fn network_subnet(&self, name: &str) -> Result<Option<Subnet>> {
        use bollard::query_parameters::InspectNetworkOptions;
        match self.runtime.block_on(self.docker.inspect_network(name, None::<InspectNetworkOptions>)) {
            Ok(network) => Ok(network
                .ipam
                .and_then(|ipam| ipam.config)
                .into_iter()
                .flatten()
                .find_map(|config| config.subnet.as_deref().and_then(Subnet::parse))),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(api_error(format!("inspect network {name}"))(e)),
        }
    }

    /// The addresses containers (running or not) hold on a network, fixed or current.
    pub fn network_addresses(&self, network: &str) -> Result<Vec<Ipv4Addr>> {
        use bollard::query_parameters::ListContainersOptionsBuilder;
        let filters = HashMap::from([("network", vec![network.to_string()])]);
        let options = ListContainersOptionsBuilder::default().all(true).filters(&filters).build();
        let containers = self
            .runtime
            .block_on(self.docker.list_containers(Some(options)))
            .map_err(api_error("list containers"))?;
        Ok(containers
            .into_iter()
            .filter_map(|c| c.network_settings.and_then(|n| n.networks))
            .filter_map(|mut networks| networks.remove(network))
            .flat_map(|endpoint| endpoint_addresses(&endpoint))
            .collect())
    }

    /// Removes a container (forcefully: stops it first). Absent is fine.
    pub fn remove_container(&self, name: &str) -> Result<()> {
        use bollard::query_parameters::RemoveContainerOptionsBuilder;
        let options = RemoveContainerOptionsBuilder::default().force(true).v(false).build();
        match self.runtime.block_on(self.docker.remove_container(name, Some(options))) {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(api_error(format!("remove container {name}"))(e)),
        }
    }

    pub fn rename_container(&self, name: &str, new_name: &str) -> Result<()> {
        use bollard::query_parameters::RenameContainerOptionsBuilder;
        let options = RenameContainerOptionsBuilder::default().name(new_name).build();
        self.runtime
            .block_on(self.docker.rename_container(name, options))
            .map_err(api_error(format!("rename container {name} to {new_name}")))
    }

    /// Facts about a container, or `None` when it does not exist.
    pub fn inspect_container(&self, name: &str) -> Result<Option<ContainerFacts>> {
        use bollard::query_parameters::InspectContainerOptions;
        let inspect =
            match self.runtime.block_on(self.docker.inspect_container(name, None::<InspectContainerOptions>))
            {
                Ok(inspect) => inspect,
                Err(e) if is_not_found(&e) => return Ok(None),
                Err(e) => return Err(api_error(format!("inspect container {name}"))(e)),
            };
        let state = inspect.state.unwrap_or_default();
        let host_port = inspect
            .network_settings
            .clone()
            .and_then(|n| n.ports)
            .into_iter()
            .flat_map(|ports| ports.into_values())
            .flatten()
            .flatten()
            .find_map(|binding| binding.host_port.and_then(|p| p.parse().ok()));
        let addresses = inspect
            .network_settings
            .as_ref()
            .and_then(|n| n.networks.as_ref())
            .into_iter()
            .flatten()
            .filter_map(|(network, endpoint)| {
                endpoint_addresses(endpoint).into_iter().next().map(|ip| (network.clone(), ip))
            })
            .collect();
        let mounts = inspect
            .mounts
            .unwrap_or_default()
            .into_iter()
            .map(|m| {
                let source = m.name.or(m.source).unwrap_or_default();
                (source, m.destination.unwrap_or_default(), !m.rw.unwrap_or(true))
            })
            .collect();
        Ok(Some(ContainerFacts {
            id: inspect.id.unwrap_or_default(),
            name: inspect.name.unwrap_or_default().trim_start_matches('/').to_string(),
            running: state.running.unwrap_or(false) && !state.restarting.unwrap_or(false),
            exit_code: state.exit_code,
            restart_count: inspect.restart_count.unwrap_or(0),
            labels: inspect.config.and_then(|c| c.labels).unwrap_or_default(),
            host_port,
            addresses,
            mounts,
        }))
    }

    /// Names of every container (running or not) labelled with the app, sorted.
    pub fn app_containers(&self, app: &str) -> Result<Vec<String>> {
        use bollard::query_parameters::ListContainersOptionsBuilder;
        let filters = HashMap::from([("label", vec![format!("{APP_LABEL}={app}")])]);
        let options = ListContainersOptionsBuilder::default().all(true).filters(&filters).build();
        let containers = self
            .runtime
            .block_on(self.docker.list_containers(Some(options)))
            .map_err(api_error("list containers"))?;
        let mut names: Vec<String> = containers
            .into_iter()
            .filter_map(|c| c.names.and_then(|n| n.into_iter().next()))
            .map(|n| n.trim_start_matches('/').to_string())
            .collect();
        names.sort();
        Ok(names)
    }

    /// Starts a created container, streams its output to `on_output` until it exits, and
    /// returns its exit code. The container is left in place (for a commit); remove it after.
    pub fn run_attached(&self, name: &str, on_output: &mut dyn FnMut(bool, &str)) -> Result<i64> {
        use bollard::query_parameters::{AttachContainerOptionsBuilder, WaitContainerOptions};
        use futures_util::StreamExt;
        self.runtime.block_on(async {
            let options = AttachContainerOptionsBuilder::default()
                .stream(true)
                .stdout(true)
                .stderr(true)
                // Attached before the start, the stream has every byte; replaying the logs too
                // delivered output written during the attach twice on a loaded engine.
                .logs(false)
                .build();
            let mut attached = self
                .docker
                .attach_container(name, Some(options))
                .await
                .map_err(api_error(format!("attach to {name}")))?;
            self.docker
                .start_container(name, None::<bollard::query_parameters::StartContainerOptions>)
                .await
                .map_err(api_error(format!("start container {name}")))?;
            while let Some(item) = attached.output.next().await {
                match item {
                    Ok(output @ bollard::container::LogOutput::StdErr { .. }) => {
                        on_output(true, &output_text(output))
                    }
                    Ok(output) => on_output(false, &output_text(output)),
                    Err(e) => return Err(api_error(format!("read output of {name}"))(e)),
                }
            }
            let mut wait = self.docker.wait_container(name, None::<WaitContainerOptions>);
            let mut code = 0;
            while let Some(item) = wait.next().await {
                match item {
                    Ok(response) => code = response.status_code,
                    // A non-zero exit arrives as an error carrying the code.
                    Err(bollard::errors::Error::DockerContainerWaitError { code: c, .. }) => code = c,
                    Err(e) => return Err(api_error(format!("wait for {name}"))(e)),
                }
            }
            Ok(code)
        })
    }

    /// Streams a container's logs to `on_output`; with `follow`, until the container stops.
    pub fn logs(
        &self,
        name: &str,
        follow: bool,
        tail: Option<usize>,
        on_output: &mut dyn FnMut(bool, &str),
    ) -> Result<()> {
        use futures_util::StreamExt;
        let options = logs_options(follow, tail);
        self.runtime.block_on(async {
            let mut stream = self.docker.logs(name, Some(options));
            while let Some(item) = stream.next().await {
                match item {
                    Ok(output @ bollard::container::LogOutput::StdErr { .. }) => {
                        on_output(true, &output_text(output))
                    }
                    Ok(output) => on_output(false, &output_text(output)),
                    Err(e) => return Err(api_error(format!("read logs of {name}"))(e)),
                }
            }
            Ok(())
        })
    }
}

/// Both streams, the last `tail` lines (all without), then new ones while `follow`.
pub(crate) fn logs_options(follow: bool, tail: Option<usize>) -> bollard::query_parameters::LogsOptions {
    let tail = tail.map_or_else(|| "all".to_string(), |n| n.to_string());
    bollard::query_parameters::LogsOptionsBuilder::default()
        .follow(follow)
        .stdout(true)
        .stderr(true)
        .tail(&tail)
        .build()
}

/// An endpoint's fixed address first, then the one it has now (none while stopped).
fn endpoint_addresses(endpoint: &bollard::models::EndpointSettings) -> Vec<Ipv4Addr> {
    let fixed = endpoint.ipam_config.as_ref().and_then(|c| c.ipv4_address.as_deref());
    [fixed, endpoint.ip_address.as_deref()].into_iter().flatten().filter_map(|ip| ip.parse().ok()).collect()
}

/// Adapts a tokio receiver to a `Stream` without pulling in tokio-stream.
fn tokio_stream_from<T: Send + 'static>(
    receiver: tokio::sync::mpsc::Receiver<T>,
) -> impl futures_util::Stream<Item = T> + Send + 'static {
    futures_util::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|item| (item, receiver))
    })
}
