//! The deploy pipeline: plan a release from a pushed commit, then apply it — ensure storage,
//! build the image, run the build command, start the new containers beside the old ones, wait
//! for health, retire the old ones, record the release. Every step before the swap can fail
//! without touching what serves: the old containers keep running and the state is written only
//! once the new release is healthy.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::docker_options::{OptionsError, RunOptions};
use crate::engine::{APP_LABEL, ContainerSpec, Engine, EngineError, EngineMount, MountKind};
use crate::hostfs::{self, HostFsError};
use crate::names::{AppName, EntryName};
use crate::output::{detail, note, step, warn};
use crate::state::{AppState, Outcome, Release, Root, RunConfig, StateError};
use crate::storage::binds::{self, Bind, BindError};
use crate::storage::{
    Attachment, Chown, DEFAULT_PROCESS_TYPE, Entry, MountSource, Origin, Phase, Source, app_volume_name,
};

const PROCESS_LABEL: &str = "berth.process";
const RELEASE_LABEL: &str = "berth.release";
/// What a container is for: `process` (long-running), `run` (one-off), `build`, `chown`.
const ROLE_LABEL: &str = "berth.role";
/// Suffix of a container being replaced while its successor starts.
const RETIRING: &str = "retiring";

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
    #[error(transparent)]
    Binds(#[from] BindError),
    #[error(
        "release {release} of {app} mounts {what} at {container_path}, which the admin no longer allows for {app}; \
         nothing was changed and the running containers stay: allow it again (berth storage:allow {app} {grant}), \
         or push a release without it"
    )]
    NoLongerAllowed { app: AppName, release: u32, what: String, container_path: String, grant: String },
    #[error("{0}")]
    Rejected(String),
}

pub type Result<T> = std::result::Result<T, DeployError>;

/// Timing knobs, from the environment so tests and slow servers can set them.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// How long a process without an HTTP health check must stay up to count as started.
    pub settle: Duration,
    /// How long an HTTP health check may take to answer 2xx.
    pub health_timeout: Duration,
    /// How long old containers get to stop.
    pub stop_timeout: i32,
}

impl Timing {
    pub fn from_env() -> Timing {
        let seconds = |name: &str, default: u64| {
            std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok()).unwrap_or(default)
        };
        Timing {
            settle: Duration::from_secs(seconds("BERTH_CHECK_SECONDS", 5)),
            health_timeout: Duration::from_secs(seconds("BERTH_HEALTH_TIMEOUT", 60)),
            stop_timeout: i32::try_from(seconds("BERTH_STOP_TIMEOUT", 10)).unwrap_or(10),
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

/// Parses `uid[:gid]` (or a preset) into the container user and the owner of created dirs.
pub fn parse_user(user: &str) -> Option<(u32, u32)> {
    let (uid, gid) = match user.split_once(':') {
        Some((uid, gid)) => (uid, Some(gid)),
        None => (user, None),
    };
    let uid = uid.parse::<Chown>().ok()?.uid()?;
    let gid = match gid {
        Some(gid) => gid.parse().ok()?,
        None => uid,
    };
    Some((uid, gid))
}

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
        let source =
            attachment.resolve(app, &root.app_storage_dir(app), entries).ok_or_else(|| match &attachment
                .source
            {
                Source::Entry(name) => DeployError::MissingEntry(name.clone()),
                other => DeployError::Rejected(format!("cannot resolve mount source {other}")),
            })?;
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
fn mount_image_volumes(
    engine: &Engine,
    app: &AppName,
    spec: &mut ContainerSpec,
) -> Result<Vec<(String, String)>> {
    let covered = |path: &str| {
        spec.options.mounts_at(path) || spec.mounts.iter().any(|m| m.target.trim_end_matches('/') == path)
    };
    let uncovered: Vec<String> = engine
        .image_volumes(&spec.image)?
        .into_iter()
        .map(|p| p.trim_end_matches('/').to_string())
        .filter(|p| !p.is_empty() && !covered(p))
        .collect();
    let mut added = Vec::new();
    for path in uncovered {
        let volume = anonymous_volume_name(app, &path);
        engine.ensure_anonymous_volume(&volume, app.as_str(), &path)?;
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

/// Tells the pusher how to take charge of a volume berth made for a Dockerfile `VOLUME`.
fn warn_anonymous_volume(app: &AppName, path: &str, volume: &str) {
    let name = volume.strip_prefix(&format!("{app}_")).unwrap_or(volume);
    warn(format!("Dockerfile VOLUME {path} is kept in the app volume {volume}; declare it in app.toml:"));
    for line in
        ["[[storage.mounts]]".to_string(), format!("source = \"{name}\""), format!("target = \"{path}\"")]
    {
        warn(format!("  {line}"));
    }
}

/// Makes sure every directory and volume the app's mounts need exists, owned by the user that
/// will write it, before any container starts, so the engine never creates a root-owned
/// directory on its own. Ownership is given directly when berth may (root), else through a
/// short-lived root container of berth's helper image.
pub fn ensure_storage(
    root: &Root,
    engine: &Engine,
    app: &AppName,
    mounts: &[Attachment],
    entries: &BTreeMap<EntryName, Entry>,
    app_owner: Option<(u32, u32)>,
    volume_specs: &HashMap<String, (Option<String>, HashMap<String, String>)>,
) -> Result<()> {
    let app_dir = root.app_storage_dir(app);
    // What the engine must chown for us: (kind, dir or volume, owner).
    let mut via_engine: Vec<(MountKind, String, (u32, u32))> = Vec::new();
    for attachment in mounts {
        // A read-only attachment's data is never rewritten, whatever `--volume-chown` says.
        let chown = attachment
            .volume_chown
            .and_then(Chown::uid)
            .filter(|_| !attachment.readonly)
            .map(|uid| (uid, uid));
        match &attachment.source {
            Source::AppDir(rel) => {
                // The app's root and the parents of `./a/b` stay berth's, so a later push can
                // still add directories; only the mounted directory is given away.
                root.make_data_root()?;
                crate::state::make_dir(&app_dir)?;
                let dir = hostfs::ensure_dir_beneath(&app_dir, rel)?;
                give_to(&mut via_engine, &dir, chown.or(app_owner))?;
                note(format!("Directory {} ready", app_dir.join(rel).display()));
            }
            Source::AppVolume(name) => {
                let volume = app_volume_name(app, name);
                let (driver, options) = volume_specs.get(name).cloned().unwrap_or_default();
                if engine.ensure_app_volume(&volume, app.as_str(), driver.as_deref(), &options)?
                    && let Some(owner) = chown.or(app_owner)
                {
                    via_engine.push((MountKind::Volume, volume.clone(), owner));
                }
                note(format!("Volume {volume} ready"));
            }
            Source::Entry(name) => {
                let entry = entries.get(name).ok_or_else(|| DeployError::MissingEntry(name.clone()))?;
                if let crate::storage::EntryBacking::Dir(base) = &entry.host_path {
                    hostfs::ensure_dir(base)?;
                    match &attachment.subpath {
                        Some(sub) => {
                            let dir = hostfs::ensure_dir_beneath(base, std::path::Path::new(sub))?;
                            give_to(&mut via_engine, &dir, chown)?;
                        }
                        None => give_to(&mut via_engine, &hostfs::HostDir::open(base)?, chown)?,
                    }
                }
            }
            Source::HostPath(path) => {
                if attachment.made_by == crate::storage::Origin::Repo {
                    hostfs::check_no_symlinks(path)?;
                }
                if !path.exists() {
                    return Err(DeployError::Rejected(format!(
                        "host path {} does not exist; create it or unmount it",
                        path.display()
                    )));
                }
            }
            Source::Volume(name) => engine.require_volume(name)?,
        }
    }
    chown_via_engine(engine, app, &via_engine)
}

/// Gives a directory to its owner, or queues it for `chown_via_engine` when berth may not.
fn give_to(
    via_engine: &mut Vec<(MountKind, String, (u32, u32))>,
    dir: &hostfs::HostDir,
    owner: Option<(u32, u32)>,
) -> Result<()> {
    let Some((uid, gid)) = owner else { return Ok(()) };
    match dir.chown(uid, gid) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            via_engine.push((MountKind::Bind, dir.path.display().to_string(), (uid, gid)));
            Ok(())
        }
        Err(e) => {
            Err(HostFsError::Io { action: "change the owner of", path: dir.path.clone(), source: e }.into())
        }
    }
}

/// Gives directories and new volumes to their users from a root container of berth's own
/// helper image (never the pushed one): a fresh volume belongs to root, and a berth that is
/// not root cannot chown a directory. Each directory is mounted alone.
fn chown_via_engine(
    engine: &Engine,
    app: &AppName,
    targets: &[(MountKind, String, (u32, u32))],
) -> Result<()> {
    if targets.is_empty() {
        return Ok(());
    }
    let image = &crate::helper_image::ensure(engine)?;
    let mut owners: Vec<(u32, u32)> = targets.iter().map(|t| t.2).collect();
    owners.sort_unstable();
    owners.dedup();
    for (uid, gid) in owners {
        let mounts: Vec<EngineMount> = targets
            .iter()
            .filter(|t| t.2 == (uid, gid))
            .enumerate()
            .map(|(i, (kind, source, _))| EngineMount {
                kind: *kind,
                source: source.clone(),
                target: format!("/berth-chown-{i}"),
                read_only: false,
                options: Vec::new(),
            })
            .collect();
        let mut cmd = vec![format!("{uid}:{gid}")];
        cmd.extend(mounts.iter().map(|m| m.target.clone()));
        let name = format!("{app}.chown.{}", std::process::id());
        let spec = ContainerSpec {
            name: name.clone(),
            image: image.to_string(),
            cmd: Some(cmd),
            user: Some("0:0".into()),
            options: helper_options()?,
            labels: HashMap::from([
                (APP_LABEL.to_string(), app.to_string()),
                (ROLE_LABEL.to_string(), "chown".into()),
            ]),
            mounts,
            ..ContainerSpec::default()
        };
        engine.remove_container(&name)?;
        engine.create_container(&spec)?;
        let mut output = String::new();
        let status = engine.run_attached(&name, &mut |_, text| output.push_str(text));
        engine.remove_container(&name)?;
        match status? {
            0 => {}
            code => {
                return Err(DeployError::Rejected(format!(
                    "could not give storage to {uid}:{gid}: chown in {image} exited {code}: {}",
                    output.trim()
                )));
            }
        }
    }
    Ok(())
}

/// The helper reaches nothing but its mounts: no network, and of root's powers only those
/// changing owners needs.
fn helper_options() -> Result<crate::docker_options::RunOptions> {
    let options =
        ["--network none", "--cap-drop ALL", "--cap-add CHOWN", "--cap-add FOWNER", "--cap-add DAC_OVERRIDE"];
    Ok(crate::docker_options::RunOptions::parse(&options.map(String::from))?)
}

/// The settings a process container is created with, apart from its name.
struct ProcessSpec {
    process: String,
    spec: ContainerSpec,
}

fn process_specs(
    root: &Root,
    app: &AppName,
    state: &AppState,
    release: &Release,
    entries: &BTreeMap<EntryName, Entry>,
) -> Result<Vec<ProcessSpec>> {
    let mut specs = Vec::new();
    for (process, command) in &release.run.processes {
        let mut options =
            state.docker_options.get(&format!("{DEFAULT_PROCESS_TYPE}.deploy")).cloned().unwrap_or_default();
        options.extend(state.docker_options.get(&format!("{process}.deploy")).cloned().unwrap_or_default());
        let is_web = process == "web";
        let mut env = vec![format!("BERTH_APP={app}"), format!("BERTH_RELEASE={}", release.number)];
        if let (true, Some(port)) = (is_web, release.run.web_port) {
            env.push(format!("PORT={port}"));
        }
        specs.push(ProcessSpec {
            process: process.clone(),
            spec: ContainerSpec {
                name: container_name(app, process, 1),
                image: release.image.clone(),
                cmd: command.as_ref().map(|c| vec!["/bin/sh".to_string(), "-c".to_string(), c.clone()]),
                env,
                user: release.run.user.clone(),
                labels: HashMap::from([
                    (APP_LABEL.to_string(), app.to_string()),
                    (PROCESS_LABEL.to_string(), process.clone()),
                    (RELEASE_LABEL.to_string(), release.number.to_string()),
                    (ROLE_LABEL.to_string(), "process".to_string()),
                ]),
                mounts: engine_mounts(root, app, &state.mounts, entries, Phase::Deploy, process)?,
                publish: if is_web { release.run.web_port } else { None },
                address: None,
                restart: true,
                options: RunOptions::parse(&options)?,
            },
        });
    }
    Ok(specs)
}

/// Puts containers left by an interrupted deploy back in order, so the release the state
/// names is the one serving: a retiring container of that release serves again and its
/// unrecorded successor goes; a retiring container whose successor is that release goes; build
/// and chown helpers of a killed deploy are removed. `serving` is the app's current release.
pub fn recover(engine: &Engine, app: &AppName, serving: Option<u32>) -> Result<()> {
    let release_of = |facts: &crate::engine::ContainerFacts| {
        facts.labels.get(RELEASE_LABEL).and_then(|r| r.parse::<u32>().ok())
    };
    for name in engine.app_containers(app.as_str())? {
        let Some(facts) = engine.inspect_container(&name)? else { continue };
        // No role label: not created by berth but by the engine's builder for a `RUN` step of
        // an interrupted build (it inherits the image's labels); it holds no app data.
        let helper =
            matches!(facts.labels.get(ROLE_LABEL).map(String::as_str), Some("build" | "chown") | None);
        if helper {
            warn(format!("Removing {name}, left by an interrupted deploy"));
            engine.remove_container(&name)?;
            continue;
        }
        let Some(base) = name.strip_suffix(&format!(".{RETIRING}")) else { continue };
        match engine.inspect_container(base)? {
            Some(successor) if release_of(&successor) == serving || release_of(&facts) != serving => {
                warn(format!(
                    "Removing {name}: {base} serves release {}",
                    release_of(&successor).unwrap_or(0)
                ));
                engine.remove_container(&name)?;
            }
            successor => {
                if successor.is_some() {
                    warn(format!("Removing {base}: its release was never recorded"));
                    engine.remove_container(base)?;
                }
                warn(format!("Restoring {base} from an interrupted deploy"));
                engine.rename_container(&name, base)?;
                engine.start_container(base)?;
            }
        }
    }
    Ok(())
}

/// A test-only switch to prove crash safety: `BERTH_FAULT=<point>` aborts the process at that
/// step of a deploy (as `kill -9` would), `BERTH_FAULT=<point>:pause` stops there until killed.
/// Points: after-build, after-storage, after-build-command, after-start, before-retire,
/// after-retire, after-release-write.
pub fn fault_point(point: &str) {
    let Ok(wanted) = std::env::var("BERTH_FAULT") else { return };
    let (name, mode) = wanted.split_once(':').unwrap_or((wanted.as_str(), "abort"));
    if name != point {
        return;
    }
    warn(format!("BERTH_FAULT: stopping at {point} ({mode})"));
    if mode == "pause" {
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }
    std::process::abort();
}

/// One process mid-swap: its new container and whether an old one was set aside.
struct Swap {
    name: String,
    had_old: bool,
    stopped_old: bool,
}

impl Swap {
    fn retiring(&self) -> String {
        format!("{}.{RETIRING}", self.name)
    }
}

fn undo_swaps(engine: &Engine, swaps: &[Swap]) {
    for swap in swaps.iter().rev() {
        if let Err(e) = engine.remove_container(&swap.name) {
            warn(format!("could not remove {}: {e}", swap.name));
        }
        if swap.had_old {
            let restored = engine
                .rename_container(&swap.retiring(), &swap.name)
                .and_then(|()| if swap.stopped_old { engine.start_container(&swap.name) } else { Ok(()) });
            if let Err(e) = restored {
                warn(format!("could not restore {}: {e}; run `berth ps:restart`", swap.name));
            }
        }
    }
}

/// Starts the release's containers beside the old ones, waits for them to be healthy, then
/// retires the old ones. On failure the new containers go and the old ones serve again.
/// Returns the host port of the web process.
pub fn start_release(
    root: &Root,
    engine: &Engine,
    app: &AppName,
    state: &AppState,
    release: &Release,
    timing: Timing,
) -> Result<Option<u16>> {
    let entries = root.entries_by_name()?;
    let mut specs = process_specs(root, app, state, release, &entries)?;
    let mut anonymous = BTreeMap::new();
    for ProcessSpec { spec, .. } in &mut specs {
        anonymous.extend(mount_image_volumes(engine, app, spec)?);
    }
    for (path, volume) in &anonymous {
        warn_anonymous_volume(app, path, volume);
    }
    recover(engine, app, root.read_app(app)?.current_release)?;
    let mut swaps: Vec<Swap> = Vec::new();
    let result = (|| {
        for ProcessSpec { process, spec } in &specs {
            let had_old = engine.inspect_container(&spec.name)?.is_some();
            let mut swap = Swap { name: spec.name.clone(), had_old, stopped_old: false };
            if had_old {
                engine.remove_container(&swap.retiring())?;
                engine.rename_container(&spec.name, &swap.retiring())?;
                if release.run.exclusive.contains(process) {
                    detail(format!("Stopping the old {process} container first (exclusive mounts)"));
                    engine.stop_container(&swap.retiring(), timing.stop_timeout)?;
                    swap.stopped_old = true;
                }
            }
            swaps.push(swap);
            step(format!("Starting {process} ({})", spec.name));
            engine.create_container(spec)?;
            engine.start_container(&spec.name)?;
        }
        fault_point("after-start");
        let mut web_port = None;
        for ProcessSpec { process, spec } in &specs {
            let port = wait_healthy(engine, process, &spec.name, release, timing)?;
            if process == "web" {
                web_port = port;
            }
        }
        Ok(web_port)
    })();
    match result {
        Ok(web_port) => {
            fault_point("before-retire");
            for swap in swaps.iter().filter(|s| s.had_old) {
                engine.remove_container(&swap.retiring())?;
            }
            // Processes this release no longer has.
            let keep: Vec<&str> = specs.iter().map(|s| s.spec.name.as_str()).collect();
            for name in engine.app_containers(app.as_str())? {
                let is_process = engine
                    .inspect_container(&name)?
                    .is_some_and(|facts| facts.labels.get(ROLE_LABEL).is_some_and(|role| role == "process"));
                if is_process && !keep.contains(&name.as_str()) && !name.ends_with(RETIRING) {
                    step(format!("Removing {name} (process no longer declared)"));
                    engine.remove_container(&name)?;
                }
            }
            Ok(web_port)
        }
        Err(error) => {
            for swap in &swaps {
                show_last_logs(engine, &swap.name);
            }
            undo_swaps(engine, &swaps);
            Err(error)
        }
    }
}

fn show_last_logs(engine: &Engine, name: &str) {
    let mut lines = Vec::new();
    let _ = engine.logs(name, false, Some(20), &mut |_, text| lines.push(text.trim_end().to_string()));
    if !lines.is_empty() {
        warn(format!("Last output of {name}:"));
        for line in lines.iter().flat_map(|l| l.lines()) {
            warn(format!("  {line}"));
        }
    }
}

/// Waits until a started container counts as healthy; returns its published host port.
fn wait_healthy(
    engine: &Engine,
    process: &str,
    name: &str,
    release: &Release,
    timing: Timing,
) -> Result<Option<u16>> {
    let unhealthy = |reason: String| DeployError::Unhealthy { process: process.to_string(), reason };
    let facts = engine.inspect_container(name)?.ok_or_else(|| unhealthy("the container vanished".into()))?;
    let port = facts.host_port;
    let path = (process == "web").then_some(release.run.healthcheck.as_deref()).flatten();
    let started = Instant::now();
    match (path, port) {
        (Some(path), Some(port)) => {
            detail(format!("Waiting for http://127.0.0.1:{port}{path} to answer 2xx"));
            loop {
                let facts = engine
                    .inspect_container(name)?
                    .ok_or_else(|| unhealthy("the container vanished".into()))?;
                if let Some(reason) = exited(&facts) {
                    return Err(unhealthy(reason));
                }
                let last = match http_status(port, path) {
                    Ok(status) if (200..300).contains(&status) => {
                        detail(format!("Healthy: {path} answered {status}"));
                        return Ok(Some(port));
                    }
                    Ok(status) => format!("{path} answered {status}"),
                    Err(e) => e.to_string(),
                };
                if started.elapsed() > timing.health_timeout {
                    return Err(unhealthy(format!(
                        "no 2xx from {path} within {}s ({last})",
                        timing.health_timeout.as_secs()
                    )));
                }
                std::thread::sleep(Duration::from_millis(250));
            }
        }
        _ => {
            detail(format!("Waiting {}s to check that {name} stays up", timing.settle.as_secs()));
            std::thread::sleep(timing.settle);
            let facts =
                engine.inspect_container(name)?.ok_or_else(|| unhealthy("the container vanished".into()))?;
            match exited(&facts) {
                None => {
                    detail("Default container check successful");
                    Ok(port)
                }
                Some(reason) => Err(unhealthy(reason)),
            }
        }
    }
}

/// Why a started container does not count as up: it is stopped, or it exited and its restart
/// policy brought it back (a crash loop can look running between two restarts).
fn exited(facts: &crate::engine::ContainerFacts) -> Option<String> {
    let status = facts.exit_code.unwrap_or(-1);
    if facts.restart_count > 0 {
        Some(format!(
            "the container exited and was restarted {} time(s) (status {status})",
            facts.restart_count
        ))
    } else if !facts.running {
        Some(format!("the container exited with status {status}"))
    } else {
        None
    }
}

/// The status code of `GET path` on a loopback port (HTTP/1.0, no dependencies).
fn http_status(port: u16, path: &str) -> std::io::Result<u16> {
    let mut stream = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\nUser-Agent: berth-healthcheck\r\n\r\n")?;
    let mut head = [0u8; 64];
    let mut read = 0;
    while read < 12 {
        let n = stream.read(&mut head[read..])?;
        if n == 0 {
            break;
        }
        read += n;
    }
    let text = String::from_utf8_lossy(&head[..read]);
    text.split_whitespace().nth(1).and_then(|code| code.parse().ok()).ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidData, format!("not an HTTP answer: {text:?}"))
    })
}

/// Checks the mounts containers of `release` are about to be created with, since the admin may
/// have changed the server since they were checked: the repo's host paths and external volumes
/// against today's grants, and every bind source against the mount-source rule (with the app's
/// current mounts, whose containers may still run).
pub fn check_mounts(
    root: &Root,
    app: &AppName,
    release: u32,
    mounts: &[Attachment],
    entries: &BTreeMap<EntryName, Entry>,
) -> Result<()> {
    let grants = root.grants_of(app)?;
    let policy = grants.policy();
    if let Some(mount) = mounts.iter().find(|m| m.made_by == Origin::Repo && !policy.allows(&m.source)) {
        let (what, grant) = match &mount.source {
            Source::HostPath(path) => ("the host path", path.display().to_string()),
            Source::Volume(name) => ("the external volume", name.clone()),
            other => ("the source", other.to_string()),
        };
        return Err(DeployError::NoLongerAllowed {
            app: app.clone(),
            release,
            what: format!("{what} {grant}"),
            container_path: mount.container_path.clone(),
            grant,
        });
    }
    check_binds(root, app, mounts, entries)
}

/// The mount-source rule for an app about to mount `mounts`, with every other app's mounts and
/// the app's recorded ones (whose containers may still run).
pub fn check_binds(
    root: &Root,
    app: &AppName,
    mounts: &[Attachment],
    entries: &BTreeMap<EntryName, Entry>,
) -> Result<()> {
    let app_dir = root.app_storage_dir(app);
    let mut binds = root.other_apps_binds(app, entries)?;
    binds.extend(Bind::all(app, &app_dir, &root.read_app(app)?.mounts, entries));
    binds.extend(Bind::all(app, &app_dir, mounts, entries));
    Ok(binds::check(&binds, app)?)
}

/// Re-creates the containers of the current release with the app's current mounts and
/// docker-options (how admin mount changes take effect).
pub fn restart(root: &Root, app: &AppName, timing: Timing) -> Result<Option<u16>> {
    let lock = root.lock_app_announced(app)?;
    let mut state = root.read_app(app)?;
    let mut releases = root.read_releases(app)?;
    let number = state.current_release.ok_or_else(|| DeployError::NoRelease(app.clone()))?;
    let engine = Engine::connect()?;
    let entries = root.entries_by_name()?;
    let release =
        releases.get(number).cloned().ok_or_else(|| DeployError::NoSuchRelease(app.clone(), number))?;
    check_mounts(root, app, number, &state.mounts, &entries)?;
    let owner = release.run.user.as_deref().and_then(parse_user);
    ensure_storage(root, &engine, app, &state.mounts, &entries, owner, &HashMap::new())?;
    let port = start_release(root, &engine, app, &state, &release, timing)?;
    if let Some(record) = releases.releases.iter_mut().find(|r| r.number == number) {
        record.web_host_port = port;
        record.mounts.clone_from(&state.mounts);
        // A deploy interrupted after making this release current ends here.
        record.outcome = Outcome::Deployed;
    }
    state.current_release = Some(number);
    root.write_releases(app, &releases, &lock)?;
    Ok(port)
}

/// Stops (and removes) the app's process containers; data and images stay.
pub fn stop(root: &Root, app: &AppName) -> Result<()> {
    let _lock = root.lock_app_announced(app)?;
    root.read_app(app)?;
    let engine = Engine::connect()?;
    let timing = Timing::from_env();
    for name in engine.app_containers(app.as_str())? {
        step(format!("Stopping {name}"));
        engine.stop_container(&name, timing.stop_timeout)?;
        engine.remove_container(&name)?;
    }
    Ok(())
}

/// Runs a one-off command in a container of the current release with the run-phase mounts;
/// returns its exit status.
pub fn run_oneoff(root: &Root, app: &AppName, command: &[String]) -> Result<i64> {
    let state = root.read_app(app)?;
    let releases = root.read_releases(app)?;
    let number = state.current_release.ok_or_else(|| DeployError::NoRelease(app.clone()))?;
    let release = releases.get(number).ok_or_else(|| DeployError::NoSuchRelease(app.clone(), number))?;
    let entries = root.entries_by_name()?;
    let engine = Engine::connect()?;
    let options =
        state.docker_options.get(&format!("{DEFAULT_PROCESS_TYPE}.run")).cloned().unwrap_or_default();
    check_mounts(root, app, number, &state.mounts, &entries)?;
    let owner = release.run.user.as_deref().and_then(parse_user);
    ensure_storage(root, &engine, app, &state.mounts, &entries, owner, &HashMap::new())?;
    let name = format!("{app}.run.{}", std::process::id());
    let mut spec = ContainerSpec {
        name: name.clone(),
        image: release.image.clone(),
        cmd: (!command.is_empty()).then(|| command.to_vec()),
        env: vec![format!("BERTH_APP={app}"), format!("BERTH_RELEASE={number}")],
        user: release.run.user.clone(),
        labels: HashMap::from([
            (APP_LABEL.to_string(), app.to_string()),
            (ROLE_LABEL.to_string(), "run".into()),
        ]),
        mounts: engine_mounts(root, app, &state.mounts, &entries, Phase::Run, "run")?,
        publish: None,
        address: None,
        restart: false,
        options: RunOptions::parse(&options)?,
    };
    mount_image_volumes(&engine, app, &mut spec)?;
    engine.create_container(&spec)?;
    let result = engine.run_attached(&name, &mut |is_err, text| {
        if is_err {
            eprint!("{text}");
        } else {
            print!("{text}");
            std::io::stdout().flush().ok();
        }
    });
    engine.remove_container(&name)?;
    Ok(result?)
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
    pub volume_specs: HashMap<String, (Option<String>, HashMap<String, String>)>,
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "-----> Plan for {} release {} ({})", self.app, self.release, short(&self.commit))?;
        writeln!(f, "       Build {} from {}", self.image, self.dockerfile)?;
        if let Some(command) = &self.build_command {
            writeln!(f, "       Run build command: {command}")?;
        }
        let describe = |m: &Attachment| {
            let phases: Vec<&str> = m.phases.iter().map(|p| p.as_str()).collect();
            let ro = if m.readonly { " (read-only)" } else { "" };
            let process = if m.process_type == DEFAULT_PROCESS_TYPE {
                String::new()
            } else {
                format!(" [{}]", m.process_type)
            };
            format!("{} -> {} ({}){ro}{process}", m.source, m.container_path, phases.join(","))
        };
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

pub fn short(commit: &str) -> &str {
    commit.get(..7).unwrap_or(commit)
}

/// Applies a plan: storage, image, build command, containers, state. Called with the app's
/// lock held. On failure nothing of the app's state changes and the old release serves on.
pub fn apply(
    root: &Root,
    engine: &Engine,
    plan: &Plan,
    write_context: impl FnOnce(&mut dyn Write) -> std::io::Result<()> + Send + 'static,
    lock: &crate::state::Lock,
    timing: Timing,
) -> Result<Release> {
    let app = &plan.app;
    let entries = root.entries_by_name()?;
    check_mounts(root, app, plan.release, &plan.mounts, &entries)?;
    let owner = plan.run.user.as_deref().and_then(parse_user);
    // Build first: a failed build leaves storage exactly as it was.
    step(format!("Building {}", plan.image));
    let labels = HashMap::from([(APP_LABEL.to_string(), app.to_string())]);
    engine.build_image(&plan.image, &plan.dockerfile, &labels, write_context, &mut |line| detail(line))?;
    fault_point("after-build");
    step("Ensuring storage");
    ensure_storage(root, engine, app, &plan.mounts, &entries, owner, &plan.volume_specs)?;
    fault_point("after-storage");
    if let Some(command) = &plan.build_command {
        run_build_command(root, engine, plan, command, &entries)?;
        fault_point("after-build-command");
    }
    let release = Release {
        number: plan.release,
        commit: plan.commit.clone(),
        image: plan.image.clone(),
        created_at: crate::state::unix_now(),
        outcome: Outcome::Deployed,
        reason: None,
        run: plan.run.clone(),
        mounts: plan.mounts.clone(),
        web_host_port: None,
        web_upstream: None,
    };
    let mut state = root.read_app(app)?;
    state.mounts.clone_from(&plan.mounts);
    state.detached.retain(|d| !plan.mounts.iter().any(|m| m.same_mount(d)));
    for removed in &plan.mounts_removed {
        if !state.detached.iter().any(|d| d.same_mount(removed)) {
            state.detached.push(removed.clone());
        }
    }
    let port = start_release(root, engine, app, &state, &release, timing)?;
    fault_point("after-retire");
    // Three writes, each atomic, so a crash between any two leaves a history that never calls
    // a release deployed unless the state made it current: the release is recorded as
    // interrupted, then made current, then marked deployed (restart finishes the last step).
    let mut releases = root.read_releases(app)?;
    releases.releases.push(Release { web_host_port: port, outcome: Outcome::Interrupted, ..release });
    root.write_releases(app, &releases, lock)?;
    fault_point("after-release-write");
    state.current_release = Some(plan.release);
    root.write_app(app, &state, lock)?;
    mark_deployed(root, app, &mut releases, plan.release, lock)
}

/// Marks a release that the state made current as deployed, and returns it.
fn mark_deployed(
    root: &Root,
    app: &AppName,
    releases: &mut crate::state::Releases,
    number: u32,
    lock: &crate::state::Lock,
) -> Result<Release> {
    let record = releases
        .releases
        .iter_mut()
        .find(|r| r.number == number)
        .ok_or_else(|| DeployError::NoSuchRelease(app.clone(), number))?;
    record.outcome = Outcome::Deployed;
    let release = record.clone();
    root.write_releases(app, releases, lock)?;
    Ok(release)
}

fn run_build_command(
    root: &Root,
    engine: &Engine,
    plan: &Plan,
    command: &str,
    entries: &BTreeMap<EntryName, Entry>,
) -> Result<()> {
    let app = &plan.app;
    step(format!("Running build command: {command}"));
    let config = engine.image_config(&plan.image)?;
    let name = format!("{app}.build.{}", plan.release);
    engine.remove_container(&name)?;
    let mut spec = ContainerSpec {
        name: name.clone(),
        image: plan.image.clone(),
        cmd: Some(vec!["/bin/sh".into(), "-c".into(), command.to_string()]),
        env: vec![format!("BERTH_APP={app}"), format!("BERTH_RELEASE={}", plan.release)],
        user: plan.run.user.clone(),
        labels: HashMap::from([
            (APP_LABEL.to_string(), app.to_string()),
            (ROLE_LABEL.to_string(), "build".into()),
        ]),
        mounts: engine_mounts(root, app, &plan.mounts, entries, Phase::Build, "build")?,
        publish: None,
        address: None,
        restart: false,
        // The admin's build-phase docker-options apply to the build command's container.
        options: RunOptions::parse(
            &root
                .read_app(app)?
                .docker_options
                .get(&format!("{DEFAULT_PROCESS_TYPE}.build"))
                .cloned()
                .unwrap_or_default(),
        )?,
    };
    mount_image_volumes(engine, app, &mut spec)?;
    engine.create_container(&spec)?;
    let status = engine.run_attached(&name, &mut |_, text| {
        for line in text.lines() {
            detail(line);
        }
    });
    let outcome = match status {
        Ok(0) => engine
            .commit(&name, &image_repo(app), &plan.release.to_string(), &config)
            .map_err(DeployError::from),
        Ok(code) => Err(DeployError::BuildCommand(code)),
        Err(e) => Err(e.into()),
    };
    engine.remove_container(&name)?;
    outcome
}

/// Records a failed deploy in the release history (the app's state is untouched).
pub fn record_failure(root: &Root, plan: &Plan, reason: &str, lock: &crate::state::Lock) -> Result<()> {
    let mut releases = root.read_releases(&plan.app)?;
    releases.releases.push(Release {
        number: plan.release,
        commit: plan.commit.clone(),
        image: plan.image.clone(),
        created_at: crate::state::unix_now(),
        outcome: Outcome::Failed,
        // Engine text (a failing RUN's output) may carry terminal escapes: stored inert.
        reason: Some(crate::output::printable(reason)),
        run: plan.run.clone(),
        mounts: plan.mounts.clone(),
        web_host_port: None,
        web_upstream: None,
    });
    root.write_releases(&plan.app, &releases, lock)?;
    Ok(())
}

/// Serves an earlier release again: its image and its repo mounts, with today's admin mounts.
/// Without a number, the newest deployed release before the current one.
pub fn rollback(root: &Root, app: &AppName, number: Option<u32>, timing: Timing) -> Result<u32> {
    let lock = root.lock_app_announced(app)?;
    let mut state = root.read_app(app)?;
    let mut releases = root.read_releases(app)?;
    let current = state.current_release.ok_or_else(|| DeployError::NoRelease(app.clone()))?;
    let target = match number {
        Some(n) => n,
        None => releases
            .releases
            .iter()
            .filter(|r| r.outcome == Outcome::Deployed && r.number < current)
            .map(|r| r.number)
            .max()
            .ok_or_else(|| {
                DeployError::Rejected(format!("{app} has no earlier deployed release to roll back to"))
            })?,
    };
    let release = releases
        .get(target)
        .filter(|r| r.outcome == Outcome::Deployed)
        .cloned()
        .ok_or_else(|| DeployError::NoSuchRelease(app.clone(), target))?;
    let engine = Engine::connect()?;
    if !engine.image_exists(&release.image)? {
        return Err(DeployError::Rejected(format!(
            "the image of release {target} ({}) was pruned",
            release.image
        )));
    }
    let mut mounts: Vec<Attachment> =
        state.mounts.iter().filter(|m| m.made_by == crate::storage::Origin::Admin).cloned().collect();
    mounts.extend(release.mounts.iter().filter(|m| m.made_by == crate::storage::Origin::Repo).cloned());
    let entries = root.entries_by_name()?;
    check_mounts(root, app, target, &mounts, &entries)?;
    state.mounts = mounts;
    let owner = release.run.user.as_deref().and_then(parse_user);
    ensure_storage(root, &engine, app, &state.mounts, &entries, owner, &HashMap::new())?;
    let port = start_release(root, &engine, app, &state, &release, timing)?;
    // The new container has a new host port; ps:report reads it from the release.
    if let Some(record) = releases.releases.iter_mut().find(|r| r.number == target) {
        record.web_host_port = port;
    }
    root.write_releases(app, &releases, &lock)?;
    state.current_release = Some(target);
    root.write_app(app, &state, &lock)?;
    Ok(target)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn anonymous_volume_names_never_collide() {
        let app: AppName = "demo".parse().unwrap();
        assert_eq!(anonymous_volume_name(&app, "/data"), "demo_anon-data");
        assert_eq!(anonymous_volume_name(&app, "/var/lib/db/"), "demo_anon-var-lib-db");
        assert_eq!(anonymous_volume_name(&app, "/a-b"), "demo_anon-a_2db");
        assert_ne!(anonymous_volume_name(&app, "/a/b"), anonymous_volume_name(&app, "/a-b"));
    }
}
