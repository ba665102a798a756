//! The plan of a deploy: what a push will build, mount, unmount and run, as a value that is
//! printed before anything changes and then applied. `plan` is pure: it reads nothing but its
//! inputs (the checked manifest, the app's state, the facts about the server's host paths that
//! validation needs), so it is tested without an engine or a filesystem.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::PathBuf;

use super::image_repo;
use super::storage::VolumeSpecs;
use crate::manifest::{Diagnostic, Manifest, Pos};
use crate::names::AppName;
use crate::state::{AppState, Release, RunConfig};
use crate::storage::host_path::HostPathFact;
use crate::storage::{Attachment, DEFAULT_PROCESS_TYPE, Origin, Source};

/// Everything a plan is made of.
#[derive(Debug, Clone, Copy)]
pub struct PlanInputs<'a> {
    pub app: &'a AppName,
    pub commit: &'a str,
    pub release: u32,
    /// Checked against the server's grants and the mount-source rule.
    pub manifest: &'a Manifest,
    pub state: &'a AppState,
    /// The release serving now, to show what changes.
    pub serving: Option<&'a Release>,
    pub host_paths: &'a BTreeMap<PathBuf, HostPathFact>,
    pub dockerfile_found: bool,
}

/// Plans a release, or says every problem the server finds with the manifest at once.
pub fn plan(inputs: PlanInputs<'_>) -> Result<Plan, Vec<Diagnostic>> {
    let PlanInputs { app, commit, release, manifest, state, serving, .. } = inputs;
    let problems = server_problems(&inputs);
    if !problems.is_empty() {
        return Err(problems);
    }
    let repo_mounts = manifest.attachments();
    let old_repo_mounts: Vec<&Attachment> =
        state.mounts.iter().filter(|m| m.made_by == Origin::Repo).collect();
    let mut mounts: Vec<Attachment> =
        state.mounts.iter().filter(|m| m.made_by == Origin::Admin).cloned().collect();
    mounts.extend(repo_mounts.iter().cloned());
    Ok(Plan {
        app: app.clone(),
        release,
        commit: commit.to_string(),
        image: format!("{}:{release}", image_repo(app)),
        dockerfile: manifest.build.dockerfile.clone(),
        build_command: manifest.build.command.clone(),
        run: run_config(manifest),
        mounts_added: repo_mounts.iter().filter(|m| !old_repo_mounts.contains(m)).cloned().collect(),
        mounts_removed: old_repo_mounts
            .iter()
            .filter(|m| !repo_mounts.contains(m))
            .map(|m| (*m).clone())
            .collect(),
        mounts_kept: repo_mounts.iter().filter(|m| old_repo_mounts.contains(m)).cloned().collect(),
        mounts,
        volume_specs: volume_specs(manifest),
        allow_shadowed_volumes: manifest.allow_shadowed_volumes,
        serving: serving.map(|r| (r.number, r.run.clone())),
    })
}

/// What only the server can say is wrong: host paths that are missing, reached through a
/// symlink or below an unsafe parent, and a Dockerfile the commit lacks.
fn server_problems(inputs: &PlanInputs<'_>) -> Vec<Diagnostic> {
    let mut problems = Vec::new();
    for mount in &inputs.manifest.mounts {
        let Source::HostPath(path) = &mount.source else { continue };
        let shown = path.display();
        match inputs.host_paths.get(path).unwrap_or(&HostPathFact::Missing) {
            HostPathFact::Usable => {}
            HostPathFact::ThroughSymlink(link) => problems.push(Diagnostic::new(
                mount.at.source,
                format!("host path \"{shown}\" goes through the symlink \"{}\"", link.display()),
                Some(
                    "berth does not follow symlinks below an allowed host path: mount the link's target, \
                     if the admin allowed it"
                        .into(),
                ),
            )),
            HostPathFact::Missing => problems.push(Diagnostic::new(
                mount.at.source,
                format!("host path \"{shown}\" does not exist on the server"),
                Some("ask the admin to create it; berth creates only the app's own directories".into()),
            )),
            HostPathFact::UnsafeParent(reason) => {
                problems.push(Diagnostic::new(mount.at.source, reason.clone(), None))
            }
        }
    }
    problems.extend(crate::scale::admin_conflicts(inputs.app.as_str(), &inputs.state.scale, inputs.manifest));
    if !inputs.dockerfile_found {
        problems.push(Diagnostic::new(
            Pos { line: 1, column: 1 },
            format!("{} not found in the pushed commit", inputs.manifest.build.dockerfile),
            Some("add a Dockerfile at the repo root, or set [build].dockerfile".into()),
        ));
    }
    problems
}

/// How the release runs: its processes (one `web` with the image's CMD when none are
/// declared), user, web port and health check, and which processes have single-writer mounts.
fn run_config(manifest: &Manifest) -> RunConfig {
    let processes = if manifest.processes.is_empty() {
        [("web".to_string(), None)].into()
    } else {
        manifest.processes.iter().map(|(name, cmd)| (name.clone(), Some(cmd.clone()))).collect()
    };
    let exclusive = manifest
        .process_types()
        .into_iter()
        .filter(|p| manifest.mounts.iter().any(|m| m.is_exclusive_for(p)))
        .collect::<Vec<String>>();
    let exclusive_mounts = exclusive
        .iter()
        .filter_map(|p| {
            manifest.mounts.iter().find(|m| m.is_exclusive_for(p)).map(|m| (p.clone(), m.describe()))
        })
        .collect();
    RunConfig {
        processes,
        user: manifest.user,
        web_port: manifest.web.as_ref().map(|w| w.port),
        healthcheck: manifest.web.as_ref().and_then(|w| w.healthcheck.clone()),
        exclusive,
        exclusive_mounts,
        env: manifest.env.clone(),
        build_env_keys: manifest.build.env_keys.clone(),
        scale: manifest.scale.iter().map(|(p, s)| (p.clone(), s.count)).collect(),
        stop_timeout: manifest.stop_timeout,
        drain_seconds: manifest.web.as_ref().and_then(|w| w.drain_seconds),
        hold_seconds: manifest.web.as_ref().and_then(|w| w.hold_seconds),
    }
}

/// The driver and options of each app volume the manifest declares.
fn volume_specs(manifest: &Manifest) -> VolumeSpecs {
    manifest
        .mounts
        .iter()
        .filter_map(|m| match &m.source {
            Source::AppVolume(name) => {
                let options: HashMap<String, String> = m.driver_opts.clone().into_iter().collect();
                Some((name.clone(), (m.driver.clone(), options)))
            }
            _ => None,
        })
        .collect()
}

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
    /// `[storage].allow_shadowed_volumes`: a mount may hide a `VOLUME` of the image.
    pub allow_shadowed_volumes: bool,
    /// The release serving now and how it runs, to show what changes.
    pub serving: Option<(u32, RunConfig)>,
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "-----> Plan for {} release {} ({})", self.app, self.release, short(&self.commit))?;
        if let Some((number, _)) = &self.serving {
            writeln!(f, "       Replaces release {number}, serving now")?;
        }
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
            writeln!(
                f,
                "       Process {process}: {}{}",
                shown(command),
                self.process_change(process, command)
            )?;
        }
        if let Some((_, serving)) = &self.serving {
            for process in serving.processes.keys().filter(|p| !self.run.processes.contains_key(*p)) {
                writeln!(f, "       Stop    {process} (no longer declared)")?;
            }
        }
        Ok(())
    }
}

impl Plan {
    /// How a process differs from the serving release's: ` (new)`, ` (was: ...)` or nothing.
    fn process_change(&self, process: &str, command: &Option<String>) -> String {
        let Some((_, serving)) = &self.serving else { return String::new() };
        match serving.processes.get(process) {
            None => " (new)".to_string(),
            Some(old) if old != command => format!(" (was: {})", shown(old)),
            Some(_) => String::new(),
        }
    }
}

fn shown(command: &Option<String>) -> &str {
    command.as_deref().unwrap_or("(image CMD)")
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::Policy;

    const GRANT: &str = "/srv/shared";

    fn manifest(text: &str) -> Manifest {
        let grants = [PathBuf::from(GRANT)];
        let policy = Policy { host_paths: &grants, ..Policy::default() };
        crate::manifest::check(text.as_bytes(), &policy, &[]).unwrap()
    }

    fn plan_of(
        text: &str,
        state: &AppState,
        serving: Option<&Release>,
        facts: &[(&str, HostPathFact)],
    ) -> Result<Plan, Vec<Diagnostic>> {
        let app: AppName = "shop".parse().unwrap();
        let manifest = manifest(text);
        let host_paths = facts.iter().map(|(p, f)| (PathBuf::from(p), f.clone())).collect();
        plan(PlanInputs {
            app: &app,
            commit: "0123456789abcdef0123456789abcdef01234567",
            release: serving.map_or(1, |r| r.number + 1),
            manifest: &manifest,
            state,
            serving,
            host_paths: &host_paths,
            dockerfile_found: true,
        })
    }

    const FIRST: &str = r#"
[app]
user = "1000"

[processes]
web = "serve --port 5000"
worker = "work"

[[storage.mounts]]
source = "./uploads"
target = "/app/uploads"

[[storage.mounts]]
source = "/srv/shared/assets"
target = "/app/assets"
read_only = true
processes = ["web"]
"#;

    #[test]
    fn a_first_deploy_plans_every_mount_and_process() {
        let plan =
            plan_of(FIRST, &AppState::default(), None, &[("/srv/shared/assets", HostPathFact::Usable)])
                .unwrap();
        assert_eq!(plan.image, "berth/shop:1");
        assert_eq!(plan.run.user.map(|user| user.to_string()).as_deref(), Some("1000"));
        insta::assert_snapshot!(plan.to_string(), @"
        -----> Plan for shop release 1 (0123456)
               Build berth/shop:1 from Dockerfile
               Mount   app-dir:uploads -> /app/uploads (deploy,run)
               Mount   host:/srv/shared/assets -> /app/assets (deploy,run) (read-only) [web]
               Process web: serve --port 5000
               Process worker: work
        ");
    }

    #[test]
    fn a_redeploy_shows_what_changes_against_the_serving_release() {
        let first =
            plan_of(FIRST, &AppState::default(), None, &[("/srv/shared/assets", HostPathFact::Usable)])
                .unwrap();
        let state =
            AppState { mounts: first.mounts.clone(), current_release: Some(1), ..AppState::default() };
        let serving = Release {
            number: 1,
            commit: first.commit.clone(),
            image: first.image.clone(),
            created_at: 0,
            outcome: crate::state::Outcome::Deployed,
            reason: None,
            run: first.run.clone(),
            mounts: first.mounts.clone(),
            web_host_port: None,
            web_upstreams: Vec::new(),
        };
        let second = r#"
[processes]
web = "serve --port 5001"
clock = "tick"

[[storage.mounts]]
source = "./uploads"
target = "/app/uploads"
"#;
        let plan = plan_of(second, &state, Some(&serving), &[]).unwrap();
        assert_eq!(plan.mounts_removed.len(), 1);
        insta::assert_snapshot!(plan.to_string(), @"
        -----> Plan for shop release 2 (0123456)
               Replaces release 1, serving now
               Build berth/shop:2 from Dockerfile
               Keep    app-dir:uploads -> /app/uploads (deploy,run)
               Unmount host:/srv/shared/assets -> /app/assets (deploy,run) (read-only) [web] (data kept)
               Process clock: tick (new)
               Process web: serve --port 5001 (was: serve --port 5000)
               Stop    worker (no longer declared)
        ");
    }

    #[test]
    fn what_only_the_server_knows_is_refused_with_the_app_toml_position() {
        let text = r#"
[[storage.mounts]]
source = "/srv/shared/missing"
target = "/a"

[[storage.mounts]]
source = "/srv/shared/link/x"
target = "/b"

[[storage.mounts]]
source = "/srv/shared/open"
target = "/c"
"#;
        let facts = [
            ("/srv/shared/link/x", HostPathFact::ThroughSymlink("/srv/shared/link".into())),
            ("/srv/shared/open", HostPathFact::UnsafeParent("/srv/shared is writable by others".into())),
        ];
        let problems = plan_of(text, &AppState::default(), None, &facts).unwrap_err();
        let shown: Vec<String> = problems.iter().map(ToString::to_string).collect();
        insta::assert_snapshot!(shown.join("\n"), @r#"
        app.toml:3:10: host path "/srv/shared/missing" does not exist on the server
          hint: ask the admin to create it; berth creates only the app's own directories
        app.toml:7:10: host path "/srv/shared/link/x" goes through the symlink "/srv/shared/link"
          hint: berth does not follow symlinks below an allowed host path: mount the link's target, if the admin allowed it
        app.toml:11:10: /srv/shared is writable by others
        "#);
    }
}
