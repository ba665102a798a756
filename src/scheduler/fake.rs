//! An in-memory container platform for unit tests: containers are records, starting one makes
//! it "running", and the test decides which images fail their health check or exit. Every call
//! that changes something is logged in `events`, so a test can assert the order of a swap.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use super::{
    AddressRequest, BuildContext, ContainerFacts, ContainerSpec, EngineError, ImageConfig, NetworkAddress,
    NetworkError, OnOutput, Result, Scheduler, Stopped,
};
use crate::engine::APP_LABEL;
use crate::helper_image::HelperImageError;

#[derive(Debug, Clone)]
pub struct FakeContainer {
    pub spec: ContainerSpec,
    pub running: bool,
}

#[derive(Debug, Default)]
pub struct FakeState {
    pub containers: BTreeMap<String, FakeContainer>,
    pub images: BTreeSet<String>,
    pub volumes: BTreeSet<String>,
    /// `create web.1`, `start web.1`, `stop web.1 (10s)`, `rename a -> b`, `remove a`, ...
    pub events: Vec<String>,
    /// Images whose containers answer their health check with 500.
    pub unhealthy: BTreeSet<String>,
    /// Containers (by name) that answer their health check with 500.
    pub unhealthy_names: BTreeSet<String>,
    /// Images whose containers exit (status 1) as soon as they start.
    pub crashing: BTreeSet<String>,
    /// Images whose containers ignore SIGTERM (the stop ends with SIGKILL).
    pub ignoring_term: BTreeSet<String>,
    /// Every call fails as when the engine is gone.
    pub unreachable: bool,
}

#[derive(Debug, Default)]
pub struct Fake {
    pub state: RefCell<FakeState>,
}

impl Fake {
    pub fn new() -> Fake {
        Fake::default()
    }

    /// The names of the app's containers that run, sorted.
    pub fn running(&self) -> Vec<String> {
        let state = self.state.borrow();
        state.containers.iter().filter(|(_, c)| c.running).map(|(name, _)| name.clone()).collect()
    }

    /// The image a container was created from.
    pub fn image_of(&self, name: &str) -> Option<String> {
        self.state.borrow().containers.get(name).map(|c| c.spec.image.clone())
    }

    pub fn events(&self) -> Vec<String> {
        self.state.borrow().events.clone()
    }

    pub fn clear_events(&self) {
        self.state.borrow_mut().events.clear();
    }

    fn log(&self, event: String) -> Result<()> {
        let mut state = self.state.borrow_mut();
        if state.unreachable {
            return Err(EngineError::Unreachable("the fake engine is down".into()));
        }
        state.events.push(event);
        Ok(())
    }

    fn missing(action: &str, name: &str) -> EngineError {
        EngineError::Api { action: format!("{action} {name}"), message: "No such container".into() }
    }
}

impl Scheduler for Fake {
    fn build_image(
        &self,
        tag: &str,
        _dockerfile: &str,
        _labels: &HashMap<String, String>,
        _build_args: &HashMap<String, String>,
        context: BuildContext,
        on_line: &mut dyn FnMut(&str),
    ) -> Result<()> {
        let mut sink = Vec::new();
        context(&mut sink)
            .map_err(|e| EngineError::Api { action: "build image".into(), message: e.to_string() })?;
        on_line(&format!("Successfully tagged {tag}"));
        self.log(format!("build {tag}"))?;
        self.state.borrow_mut().images.insert(tag.to_string());
        Ok(())
    }

    fn image_config(&self, _image: &str) -> Result<ImageConfig> {
        Ok(ImageConfig::default())
    }

    fn image_volumes(&self, _image: &str) -> Result<Vec<String>> {
        Ok(Vec::new())
    }

    fn image_exists(&self, image: &str) -> Result<bool> {
        Ok(self.state.borrow().images.contains(image))
    }

    fn commit(&self, container: &str, repo: &str, tag: &str, _config: &ImageConfig) -> Result<()> {
        self.log(format!("commit {container} {repo}:{tag}"))?;
        self.state.borrow_mut().images.insert(format!("{repo}:{tag}"));
        Ok(())
    }

    fn helper_image(&self) -> std::result::Result<String, HelperImageError> {
        Ok("berth-helper:fake".into())
    }

    fn ensure_app_volume(
        &self,
        name: &str,
        _app: &str,
        _driver: Option<&str>,
        _options: &HashMap<String, String>,
    ) -> Result<bool> {
        self.ensure_anonymous_volume(name, "", "")
    }

    fn ensure_anonymous_volume(&self, name: &str, _app: &str, _path: &str) -> Result<bool> {
        let created = self.state.borrow_mut().volumes.insert(name.to_string());
        if created {
            self.log(format!("volume {name}"))?;
        }
        Ok(created)
    }

    fn require_volume(&self, name: &str) -> Result<()> {
        if self.state.borrow().volumes.contains(name) {
            Ok(())
        } else {
            Err(EngineError::NoSuchVolume(name.to_string()))
        }
    }

    fn create_container(&self, spec: &ContainerSpec) -> Result<String> {
        self.log(format!("create {}", spec.name))?;
        let mut state = self.state.borrow_mut();
        if state.containers.contains_key(&spec.name) {
            return Err(EngineError::Api {
                action: format!("create container {}", spec.name),
                message: "Conflict: the name is in use".into(),
            });
        }
        state.containers.insert(spec.name.clone(), FakeContainer { spec: spec.clone(), running: false });
        Ok(spec.name.clone())
    }

    fn start_container(&self, name: &str) -> Result<()> {
        self.log(format!("start {name}"))?;
        let mut state = self.state.borrow_mut();
        let crashing = state.crashing.clone();
        let container = state.containers.get_mut(name).ok_or_else(|| Fake::missing("start", name))?;
        container.running = !crashing.contains(&container.spec.image);
        Ok(())
    }

    fn stop(&self, name: &str, timeout: Duration) -> Result<Stopped> {
        if !self.state.borrow().containers.contains_key(name) {
            return Ok(Stopped::NotRunning);
        }
        self.log(format!("stop {name} ({}s)", timeout.as_secs()))?;
        let mut state = self.state.borrow_mut();
        let ignoring = state.ignoring_term.clone();
        let container = state.containers.get_mut(name).ok_or_else(|| Fake::missing("stop", name))?;
        let was_running = std::mem::replace(&mut container.running, false);
        Ok(match (was_running, ignoring.contains(&container.spec.image)) {
            (false, _) => Stopped::NotRunning,
            (true, true) => Stopped::Killed,
            (true, false) => Stopped::Exited(0),
        })
    }

    fn remove_container(&self, name: &str) -> Result<()> {
        if self.state.borrow().containers.contains_key(name) {
            self.log(format!("remove {name}"))?;
            self.state.borrow_mut().containers.remove(name);
        }
        Ok(())
    }

    fn rename_container(&self, name: &str, new_name: &str) -> Result<()> {
        self.log(format!("rename {name} -> {new_name}"))?;
        let mut state = self.state.borrow_mut();
        let mut container = state.containers.remove(name).ok_or_else(|| Fake::missing("rename", name))?;
        container.spec.name = new_name.to_string();
        state.containers.insert(new_name.to_string(), container);
        Ok(())
    }

    fn inspect_container(&self, name: &str) -> Result<Option<ContainerFacts>> {
        let state = self.state.borrow();
        Ok(state.containers.get(name).map(|c| ContainerFacts {
            id: name.to_string(),
            name: name.to_string(),
            running: c.running,
            exit_code: (!c.running).then_some(1),
            restart_count: 0,
            labels: c.spec.labels.clone(),
            host_port: c.spec.publish,
            addresses: c.spec.address.iter().map(|a| (a.network.clone(), a.ip)).collect(),
            mounts: c.spec.mounts.iter().map(|m| (m.source.clone(), m.target.clone(), m.read_only)).collect(),
        }))
    }

    fn app_containers(&self, app: &str) -> Result<Vec<String>> {
        let state = self.state.borrow();
        Ok(state
            .containers
            .iter()
            .filter(|(_, c)| c.spec.labels.get(APP_LABEL).is_some_and(|a| a == app))
            .map(|(name, _)| name.clone())
            .collect())
    }

    fn run_attached(&self, name: &str, on_output: OnOutput<'_>) -> Result<i64> {
        self.log(format!("run {name}"))?;
        let state = self.state.borrow();
        let container = state.containers.get(name).ok_or_else(|| Fake::missing("run", name))?;
        on_output(false, &format!("ran {}\n", container.spec.image));
        Ok(if state.crashing.contains(&container.spec.image) { 1 } else { 0 })
    }

    fn logs(&self, name: &str, _follow: bool, _tail: Option<usize>, on_output: OnOutput<'_>) -> Result<()> {
        on_output(false, &format!("log of {name}\n"));
        Ok(())
    }

    fn http_status(&self, upstream: SocketAddr, _path: &str) -> std::io::Result<u16> {
        let state = self.state.borrow();
        let container = state.containers.values().find(|c| {
            c.running && c.spec.address.as_ref().is_some_and(|a| std::net::IpAddr::V4(a.ip) == upstream.ip())
        });
        match container {
            Some(c)
                if state.unhealthy.contains(&c.spec.image)
                    || state.unhealthy_names.contains(&c.spec.name) =>
            {
                Ok(500)
            }
            Some(_) => Ok(200),
            None => Err(std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "nothing listens")),
        }
    }

    fn allocate_address(
        &self,
        request: &AddressRequest,
    ) -> std::result::Result<NetworkAddress, NetworkError> {
        let state = self.state.borrow();
        let mut used: Vec<Ipv4Addr> =
            state.containers.values().filter_map(|c| c.spec.address.as_ref()).map(|a| a.ip).collect();
        used.extend(&request.avoid);
        let ip = request
            .prefer
            .iter()
            .copied()
            .chain((2..=254).map(|i| Ipv4Addr::new(10, 0, 0, i)))
            .find(|ip| !used.contains(ip))
            .unwrap_or(Ipv4Addr::UNSPECIFIED);
        Ok(NetworkAddress { network: crate::network::NETWORK.to_string(), ip })
    }
}
