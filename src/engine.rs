//! The container engine: a blocking facade over bollard (Docker's API), so the rest of berth
//! stays synchronous. One current-thread runtime per process, created on first connect.

use std::collections::HashMap;

use bollard::Docker;
use bollard::models::VolumeCreateRequest;
use bollard::query_parameters::{ListVolumesOptionsBuilder, RemoveVolumeOptions};
use tokio::runtime::Runtime;

/// Label every object berth creates carries, naming the app it belongs to.
pub const APP_LABEL: &str = "berth.app";

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
}

pub type Result<T> = std::result::Result<T, EngineError>;

fn api_error(action: impl Into<String>) -> impl FnOnce(bollard::errors::Error) -> EngineError {
    let action = action.into();
    move |error| match error {
        bollard::errors::Error::DockerResponseServerError { message, .. } => {
            EngineError::Api { action, message }
        }
        other => EngineError::Api { action, message: other.to_string() },
    }
}

fn is_not_found(error: &bollard::errors::Error) -> bool {
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

    /// Creates a volume labelled with its app (no-op when it exists).
    pub fn ensure_app_volume(
        &self,
        name: &str,
        app: &str,
        driver: Option<&str>,
        driver_opts: &HashMap<String, String>,
    ) -> Result<()> {
        if self.volume_exists(name)? {
            return Ok(());
        }
        let request = VolumeCreateRequest {
            name: Some(name.to_string()),
            driver: driver.map(str::to_string),
            driver_opts: Some(driver_opts.clone()),
            labels: Some(HashMap::from([(APP_LABEL.to_string(), app.to_string())])),
            ..Default::default()
        };
        self.runtime
            .block_on(self.docker.create_volume(request))
            .map(drop)
            .map_err(api_error(format!("create volume {name}")))
    }

    /// Names of the volumes labelled with the app, sorted.
    pub fn app_volumes(&self, app: &str) -> Result<Vec<String>> {
        let filters = HashMap::from([("label", vec![format!("{APP_LABEL}={app}")])]);
        let options = ListVolumesOptionsBuilder::default().filters(&filters).build();
        let response = self
            .runtime
            .block_on(self.docker.list_volumes(Some(options)))
            .map_err(api_error("list volumes"))?;
        let mut names: Vec<String> =
            response.volumes.unwrap_or_default().into_iter().map(|v| v.name).collect();
        names.sort();
        Ok(names)
    }

    pub fn remove_volume(&self, name: &str) -> Result<()> {
        self.runtime
            .block_on(self.docker.remove_volume(name, None::<RemoveVolumeOptions>))
            .map_err(api_error(format!("remove volume {name}")))
    }
}
