//! Container specs: what each container of a release is created with — image, command, user,
//! env, labels, the mounts of its phase, docker-options — and the app volumes kept for an
//! image's `VOLUME` paths.

use std::collections::{BTreeMap, HashMap};

use super::{DeployError, PROCESS_LABEL, RELEASE_LABEL, ROLE_LABEL, Result, container_name};
use crate::docker_options::{OptionsKey, RunOptions};
use crate::engine::{APP_LABEL, ContainerSpec, EngineMount, MountKind};
use crate::names::{AppName, EntryName};
use crate::output::Reporter;
use crate::scheduler::Scheduler;
use crate::state::{AppState, Release, Root, RunConfig};
use crate::storage::{Attachment, Entry, MountSource, Phase, app_volume_name};

/// Resolves an app's attachments for one phase and process into engine mounts.
pub fn engine_mounts(
    root: &Root,
    app: &AppName,
    mounts: &[Attachment],
    entries: &BTreeMap<EntryName, Entry>,
    phase: Phase,
    process: &str,
) -> Result<Vec<EngineMount>> {
    let mut result = Vec::new();
    for attachment in mounts.iter().filter(|m| m.applies_to(phase, process)) {
        let source = attachment
            .resolve(app, &root.app_storage_dir(app), entries)
            .map_err(|missing| DeployError::MissingEntry(missing.0))?;
        let (kind, source) = match source {
            MountSource::Bind(path) => (MountKind::Bind, path.display().to_string()),
            MountSource::Volume(name) => (MountKind::Volume, name),
        };
        let options = attachment
            .volume_options
            .as_deref()
            .map(|o| o.split(',').filter(|s| !s.is_empty()).map(str::to_string).collect())
            .unwrap_or_default();
        result.push(EngineMount {
            kind,
            source,
            target: attachment.container_path.clone(),
            read_only: attachment.readonly,
            options,
        });
    }
    Ok(result)
}

/// The labels of a container berth makes for `app` in `role`.
pub(super) fn labels(app: &AppName, role: &str) -> HashMap<String, String> {
    HashMap::from([(APP_LABEL.to_string(), app.to_string()), (ROLE_LABEL.to_string(), role.to_string())])
}

/// The environment every container of a release starts with: berth's own variables, then the
/// app's config (global < `app.toml` `[env]` < the admin's `config:set`).
pub(super) fn base_env(root: &Root, app: &AppName, release: u32, run: &RunConfig) -> Result<Vec<String>> {
    let mut env = vec![format!("BERTH_APP={app}"), format!("BERTH_RELEASE={release}")];
    env.extend(crate::config::environment(root, app, run)?);
    Ok(env)
}

/// The admin's docker-options for a phase: those for every process, then the process's own.
pub(super) fn phase_options(state: &AppState, process: &str, phase: Phase) -> Result<RunOptions> {
    let every = OptionsKey::every_process(phase);
    let own = OptionsKey { process_type: process.to_string(), phase };
    let keys = if own == every { vec![every] } else { vec![every, own] };
    let options: Vec<String> =
        keys.iter().filter_map(|key| state.docker_options.get(key)).flatten().cloned().collect();
    Ok(RunOptions::parse(&options)?)
}

/// The settings a process instance's container is created with.
pub(crate) struct ProcessSpec {
    pub process: String,
    pub spec: ContainerSpec,
}

/// One container spec per instance of each process type of the release (as many as the app's
/// scale says), every instance of a process with the same deploy-phase mounts.
pub(crate) fn process_specs(
    root: &Root,
    app: &AppName,
    state: &AppState,
    release: &Release,
    entries: &BTreeMap<EntryName, Entry>,
) -> Result<Vec<ProcessSpec>> {
    let mut specs = Vec::new();
    let scale = crate::scale::scale_of(state, &release.run);
    for (process, command) in &release.run.processes {
        let count = scale.get(process).copied().unwrap_or(crate::scale::DEFAULT_SCALE);
        let is_web = process == "web";
        let mut env = base_env(root, app, release.number, &release.run)?;
        if let (true, Some(port)) = (is_web, release.run.web_port) {
            env.push(format!("PORT={port}"));
        }
        let mut labels = labels(app, "process");
        labels.insert(PROCESS_LABEL.to_string(), process.clone());
        labels.insert(RELEASE_LABEL.to_string(), release.number.to_string());
        let spec = ContainerSpec {
            name: container_name(app, process, 1),
            image: release.image.clone(),
            cmd: command.as_ref().map(|c| vec!["/bin/sh".to_string(), "-c".to_string(), c.clone()]),
            env,
            user: release.run.user.as_ref().map(ToString::to_string),
            labels,
            mounts: engine_mounts(root, app, &state.mounts, entries, Phase::Deploy, process)?,
            publish: if is_web { release.run.web_port } else { None },
            address: None,
            restart: true,
            options: phase_options(state, process, Phase::Deploy)?,
        };
        specs.extend((1..=count).map(|instance| ProcessSpec {
            process: process.clone(),
            spec: ContainerSpec { name: container_name(app, process, instance), ..spec.clone() },
        }));
    }
    Ok(specs)
}

/// The app volume keeping an image's `VOLUME` path: `<app>_anon-<path>`, with `/` written `-`
/// and anything but letters, digits and `.` as `_<hex>`, so two paths never share a name.
fn anonymous_volume_name(app: &AppName, path: &str) -> String {
    let escaped: String = path
        .trim_matches('/')
        .bytes()
        .map(|b| match b {
            b'/' => "-".to_string(),
            b if b.is_ascii_alphanumeric() || b == b'.' => char::from(b).to_string(),
            b => format!("_{b:02x}"),
        })
        .collect();
    app_volume_name(app, &format!("anon-{escaped}"))
}

/// Mounts a labelled app volume at each path the image declares with `VOLUME` that no mount
/// targets, instead of the engine's unnamed volume a redeploy would lose and no purge would
/// find. Returns the (path, volume) pairs it added.
pub(crate) fn mount_image_volumes(
    scheduler: &dyn Scheduler,
    app: &AppName,
    spec: &mut ContainerSpec,
) -> Result<Vec<(String, String)>> {
    let covered = |path: &str| {
        spec.options.mounts_at(path) || spec.mounts.iter().any(|m| m.target.trim_end_matches('/') == path)
    };
    let uncovered: Vec<String> = scheduler
        .image_volumes(&spec.image)?
        .into_iter()
        .map(|p| p.trim_end_matches('/').to_string())
        .filter(|p| !p.is_empty() && !covered(p))
        .collect();
    let mut added = Vec::new();
    for path in uncovered {
        let volume = anonymous_volume_name(app, &path);
        scheduler.ensure_anonymous_volume(&volume, app.as_str(), &path)?;
        spec.mounts.push(EngineMount {
            kind: MountKind::Volume,
            source: volume.clone(),
            target: path.clone(),
            read_only: false,
            options: Vec::new(),
        });
        added.push((path, volume));
    }
    Ok(added)
}

/// Refuses a release whose mounts sit above a path its image declares with `VOLUME`, unless
/// `app.toml` allows it: the declared path would be an anonymous volume under the mount, where
/// the data the image's program writes is easily lost.
pub(super) fn check_shadowed_volumes(
    scheduler: &dyn Scheduler,
    image: &str,
    mounts: &[Attachment],
    allowed: bool,
) -> Result<()> {
    if allowed {
        return Ok(());
    }
    let volumes = scheduler.image_volumes(image)?;
    match shadowed(&volumes, mounts) {
        Some((volume, mount)) => Err(shadowed_error(volume, mount)),
        None => Ok(()),
    }
}

/// The first declared volume strictly below a mount's target (and not itself a mount's target),
/// with that mount.
fn shadowed<'a>(volumes: &'a [String], mounts: &'a [Attachment]) -> Option<(&'a str, &'a Attachment)> {
    let trimmed = |p: &str| p.trim_end_matches('/').to_string();
    volumes.iter().map(|v| v.trim_end_matches('/')).filter(|v| !v.is_empty()).find_map(|volume| {
        if mounts.iter().any(|m| trimmed(&m.container_path) == volume) {
            return None;
        }
        let below = |m: &&Attachment| {
            let target = trimmed(&m.container_path);
            volume.strip_prefix(target.as_str()).is_some_and(|rest| rest.starts_with('/'))
        };
        mounts.iter().find(below).map(|m| (volume, m))
    })
}

fn shadowed_error(volume: &str, mount: &Attachment) -> DeployError {
    let target = mount.container_path.clone();
    let (by, fix) = match mount.made_by {
        crate::storage::Origin::Repo => (
            "app.toml",
            format!(
                "Fix app.toml: add a mount at exactly that path ([[storage.mounts]] source = \"<name>\" target = \"{volume}\"), \
                 or move the mount's target = \"{target}\"; if hiding it is intended, set allow_shadowed_volumes = true under [storage]."
            ),
        ),
        crate::storage::Origin::Admin => (
            "an admin mount (berth storage:mount)",
            format!(
                "Add a mount at exactly that path in app.toml ([[storage.mounts]] source = \"<name>\" target = \"{volume}\"), \
                 ask the admin to move the mount at {target}, or, if hiding it is intended, set allow_shadowed_volumes = true under [storage] in app.toml."
            ),
        ),
    };
    DeployError::ShadowedVolume {
        volume: volume.to_string(),
        target,
        mount: mount.source.to_string(),
        by,
        fix,
    }
}

/// Tells the pusher how to take charge of a volume berth made for a Dockerfile `VOLUME`.
pub(crate) fn warn_anonymous_volume(app: &AppName, path: &str, volume: &str, out: &Reporter) {
    let name = volume.strip_prefix(&format!("{app}_")).unwrap_or(volume);
    out.warn(format!("Dockerfile VOLUME {path} is kept in the app volume {volume}; declare it in app.toml:"));
    for line in
        ["[[storage.mounts]]".to_string(), format!("source = \"{name}\""), format!("target = \"{path}\"")]
    {
        out.warn(format!("  {line}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{DEFAULT_PROCESS_TYPE, Source};

    fn mount(target: &str) -> Attachment {
        Attachment {
            source: Source::AppVolume("pg".into()),
            container_path: target.into(),
            phases: [Phase::Deploy, Phase::Run].into(),
            process_type: DEFAULT_PROCESS_TYPE.into(),
            subpath: None,
            readonly: false,
            volume_options: None,
            volume_chown: None,
            made_by: crate::storage::Origin::Repo,
        }
    }

    #[test]
    fn a_mount_above_a_declared_volume_shadows_it() {
        let volumes = vec!["/var/lib/postgresql/data".to_string(), "/cache/".to_string()];
        let parent = [mount("/var/lib/postgresql")];
        let (volume, by) = shadowed(&volumes, &parent).unwrap();
        assert_eq!((volume, by.container_path.as_str()), ("/var/lib/postgresql/data", "/var/lib/postgresql"));
        let err = shadowed_error(volume, by).to_string();
        assert!(
            err.contains("app.toml") && err.contains("allow_shadowed_volumes = true under [storage]"),
            "{err}"
        );
        // Mounted exactly, beside it, or below it: nothing is hidden under a mount.
        for targets in [
            &["/var/lib/postgresql", "/var/lib/postgresql/data"][..],
            &["/var/lib/postgres"],
            &["/var/lib/postgresql/data/sub"],
            &["/cache"],
        ] {
            let mounts: Vec<Attachment> = targets.iter().map(|t| mount(t)).collect();
            assert_eq!(shadowed(&volumes, &mounts).map(|(v, _)| v), None, "{targets:?}");
        }
    }

    #[test]
    fn anonymous_volume_names_never_collide() {
        let app: AppName = "demo".parse().unwrap();
        assert_eq!(anonymous_volume_name(&app, "/data"), "demo_anon-data");
        assert_eq!(anonymous_volume_name(&app, "/var/lib/db/"), "demo_anon-var-lib-db");
        assert_eq!(anonymous_volume_name(&app, "/a-b"), "demo_anon-a_2db");
        assert_ne!(anonymous_volume_name(&app, "/a/b"), anonymous_volume_name(&app, "/a-b"));
    }
}
