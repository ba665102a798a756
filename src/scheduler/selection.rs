//! Which scheduler runs an app: the app's own choice (`scheduler:set <app> selected`), else
//! the server's (`[scheduler] selected` in berth.toml), else `docker-local`; and the `[swarm]`
//! settings the `docker-swarm` scheduler needs.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::state::{AppState, Settings};

/// A scheduler an app can be deployed with, named as Dokku names its schedulers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SchedulerKind {
    /// Containers on the engine berth runs on.
    #[default]
    DockerLocal,
    /// Services on the Docker Swarm the engine berth runs on manages.
    DockerSwarm,
}

impl SchedulerKind {
    pub const ALL: [SchedulerKind; 2] = [SchedulerKind::DockerLocal, SchedulerKind::DockerSwarm];

    pub fn as_str(self) -> &'static str {
        match self {
            SchedulerKind::DockerLocal => "docker-local",
            SchedulerKind::DockerSwarm => "docker-swarm",
        }
    }
}

impl fmt::Display for SchedulerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown scheduler \"{0}\"; use docker-local or docker-swarm")]
pub struct UnknownScheduler(pub String);

impl FromStr for SchedulerKind {
    type Err = UnknownScheduler;

    fn from_str(name: &str) -> Result<SchedulerKind, UnknownScheduler> {
        SchedulerKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == name)
            .ok_or_else(|| UnknownScheduler(crate::output::printable(name)))
    }
}

/// `[scheduler]` in berth.toml.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchedulerSettings {
    /// The scheduler of every app that did not choose one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selected: Option<SchedulerKind>,
}

/// `[swarm]` in berth.toml.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SwarmSettings {
    /// `host:port` of the registry every node pulls release images from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry: Option<String>,
}

/// The scheduler the app's next deploy uses.
pub fn selected(settings: &Settings, state: &AppState) -> SchedulerKind {
    state.scheduler.or(settings.scheduler.selected).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_app_choice_wins_over_the_server_default() {
        let mut settings = Settings::default();
        let mut state = AppState::default();
        assert_eq!(selected(&settings, &state), SchedulerKind::DockerLocal);
        settings.scheduler.selected = Some(SchedulerKind::DockerSwarm);
        assert_eq!(selected(&settings, &state), SchedulerKind::DockerSwarm);
        state.scheduler = Some(SchedulerKind::DockerLocal);
        assert_eq!(selected(&settings, &state), SchedulerKind::DockerLocal);
    }

    #[test]
    fn names_are_dokkus() {
        assert_eq!("docker-swarm".parse(), Ok(SchedulerKind::DockerSwarm));
        assert_eq!(
            "k3s".parse::<SchedulerKind>().unwrap_err().to_string(),
            "unknown scheduler \"k3s\"; use docker-local or docker-swarm"
        );
        let settings: Settings = toml::from_str(
            "[scheduler]\nselected = \"docker-swarm\"\n[swarm]\nregistry = \"127.0.0.1:5000\"\n",
        )
        .unwrap();
        assert_eq!(settings.scheduler.selected, Some(SchedulerKind::DockerSwarm));
        assert_eq!(settings.swarm.registry.as_deref(), Some("127.0.0.1:5000"));
    }
}
