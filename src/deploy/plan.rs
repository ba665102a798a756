//! The plan of a deploy: what a push will build, mount, unmount and run, as a value that is
//! printed before anything changes and then applied.

use std::fmt;

use super::storage::VolumeSpecs;
use crate::names::AppName;
use crate::state::RunConfig;
use crate::storage::{Attachment, DEFAULT_PROCESS_TYPE};

/// A printable deploy plan: what a push will change, before anything changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub app: AppName,
    pub release: u32,
    pub commit: String,
    pub image: String,
    pub dockerfile: String,
    pub build_command: Option<String>,
    pub run: RunConfig,
    pub mounts_added: Vec<Attachment>,
    pub mounts_removed: Vec<Attachment>,
    pub mounts_kept: Vec<Attachment>,
    /// The app's mounts once the release is deployed (admin ones and the new repo ones).
    pub mounts: Vec<Attachment>,
    pub volume_specs: VolumeSpecs,
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "-----> Plan for {} release {} ({})", self.app, self.release, short(&self.commit))?;
        writeln!(f, "       Build {} from {}", self.image, self.dockerfile)?;
        if let Some(command) = &self.build_command {
            writeln!(f, "       Run build command: {command}")?;
        }
        for m in &self.mounts_added {
            writeln!(f, "       Mount   {}", describe(m))?;
        }
        for m in &self.mounts_kept {
            writeln!(f, "       Keep    {}", describe(m))?;
        }
        for m in &self.mounts_removed {
            writeln!(f, "       Unmount {} (data kept)", describe(m))?;
        }
        for (process, command) in &self.run.processes {
            writeln!(f, "       Process {process}: {}", command.as_deref().unwrap_or("(image CMD)"))?;
        }
        Ok(())
    }
}

/// One mount as a plan line: `source -> target (phases)`, read-only and process when set.
fn describe(m: &Attachment) -> String {
    let phases: Vec<&str> = m.phases.iter().map(|p| p.as_str()).collect();
    let ro = if m.readonly { " (read-only)" } else { "" };
    let process =
        if m.process_type == DEFAULT_PROCESS_TYPE { String::new() } else { format!(" [{}]", m.process_type) };
    format!("{} -> {} ({}){ro}{process}", m.source, m.container_path, phases.join(","))
}

/// The short form of a commit id.
pub fn short(commit: &str) -> &str {
    commit.get(..7).unwrap_or(commit)
}
