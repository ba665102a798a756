//! `storage:backup`, `storage:restore` and `storage:prune-restores`, and the hidden
//! `internal:backup-*` jobs berth's helper container runs for them.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, BufWriter, IsTerminal, Read, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use super::{CliError, Result, app_name, confirm_destructive, existing_app};
use crate::backup::helper::{self, Job};
use crate::backup::inventory::{Kept, KeptRestores};
use crate::backup::manifest::{self, Kind, Manifest, MountRecord};
use crate::backup::restore::{Plan, Restored, Target};
use crate::backup::swap::Place;
use crate::backup::{BackupError, writer};
use crate::engine::{Engine, EngineMount, MountKind};
use crate::names::AppName;
use crate::output::Reporter;
use crate::state::{AppState, Root};
use crate::storage::{Attachment, MountSource, Source};

/// Where the helper sees the trees it backs up and the places it restores to.
const SOURCES_DIR: &str = "/berth-src";
const TARGETS_DIR: &str = "/berth-dst";

#[derive(Debug, clap::Args)]
pub struct BackupArgs {
    app: String,
    /// Only the mount at this container path (repeatable)
    #[arg(long = "mount", value_name = "CONTAINER_PATH")]
    mounts: Vec<String>,
    /// Stop the app's processes for the copy and start them again after
    #[arg(long)]
    stop: bool,
    /// Also back up the granted host paths and external Docker volumes the app mounts
    #[arg(long)]
    include_host_paths: bool,
    /// Write the stream to this file (default, or -: stdout)
    #[arg(short, long, value_name = "FILE")]
    output: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct RestoreArgs {
    /// The app the backup was taken from
    app: String,
    /// Read the stream from this file (default, or -: stdin)
    #[arg(short, long, value_name = "FILE")]
    input: Option<String>,
    /// Stop the app's processes for the restore and start them again after
    #[arg(long)]
    stop: bool,
    /// Only the mount at this container path (repeatable)
    #[arg(long = "mount", value_name = "CONTAINER_PATH")]
    mounts: Vec<String>,
    /// Restore into this app instead (a migration): it must have the same mounts
    #[arg(long = "as", value_name = "APP")]
    as_app: Option<String>,
    /// Also restore granted host paths and external Docker volumes
    #[arg(long)]
    include_host_paths: bool,
}

#[derive(Debug, clap::Args)]
pub struct PruneArgs {
    app: String,
    /// Do not ask for confirmation
    #[arg(long)]
    force: bool,
}

/// One of the app's mounts, resolved.
struct Selected {
    attachment: Attachment,
    source: MountSource,
}

impl Selected {
    fn kind(&self) -> Kind {
        match self.source {
            MountSource::Bind(_) => Kind::Bind,
            MountSource::Volume(_) => Kind::Volume,
        }
    }

    fn record(&self, id: String) -> MountRecord {
        MountRecord {
            id,
            source: self.attachment.source.to_string(),
            target: self.attachment.container_path.clone(),
            kind: self.kind(),
            host: self.source.to_string(),
            root: Default::default(),
            files: 0,
            bytes: 0,
        }
    }

    fn engine_mount(&self, target: String, read_only: bool) -> EngineMount {
        let (kind, source) = match &self.source {
            MountSource::Bind(path) => (MountKind::Bind, path.display().to_string()),
            MountSource::Volume(name) => (MountKind::Volume, name.clone()),
        };
        EngineMount { kind, source, target, read_only, options: Vec::new() }
    }
}

/// The app's mounts a backup covers: each source once, host paths and external volumes only
/// when asked, only the `--mount` paths when given.
fn select(
    root: &Root,
    app: &AppName,
    state: &AppState,
    only: &[String],
    host_paths: bool,
    out: &Reporter,
) -> Result<Vec<Selected>> {
    let entries = root.entries_by_name()?;
    let mut selected: Vec<Selected> = Vec::new();
    for attachment in &state.mounts {
        if !only.is_empty() && !only.contains(&attachment.container_path) {
            continue;
        }
        let Ok(source) = attachment.resolve(app, &root.app_storage_dir(app), &entries) else {
            out.warn(format!("Skipping {}: its storage entry is gone", attachment.source));
            continue;
        };
        if selected.iter().any(|s| s.source == source) {
            continue;
        }
        if matches!(attachment.source, Source::HostPath(_) | Source::Volume(_)) && !host_paths {
            out.warn(format!(
                "Skipping {} at {}: pass --include-host-paths to include it",
                attachment.source, attachment.container_path
            ));
            continue;
        }
        selected.push(Selected { attachment: attachment.clone(), source });
    }
    if let Some(path) = only.iter().find(|p| !state.mounts.iter().any(|m| &m.container_path == *p)) {
        return Err(CliError::Usage(format!(
            "app {app} has no mount at {path}; see `berth storage:list {app}`"
        )));
    }
    if selected.is_empty() {
        return Err(CliError::Usage(format!(
            "app {app} has no storage to back up; see `berth storage:list {app}`"
        )));
    }
    Ok(selected)
}

/// Whether any of the app's process containers runs.
fn running(engine: &Engine, app: &AppName) -> Result<bool> {
    for name in engine.app_containers(app.as_str())? {
        if engine.inspect_container(&name)?.is_some_and(|c| c.running) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Runs `work` with the app's processes stopped when `stop`, starting them again after, also
/// when `work` failed.
fn with_stopped<T>(
    root: &Root,
    app: &AppName,
    stop: bool,
    work: impl FnOnce() -> Result<T>,
    out: &Reporter,
) -> Result<T> {
    if !stop {
        return work();
    }
    let engine = Engine::connect()?;
    let timing = crate::deploy::Timing::from_env();
    crate::deploy::stop(root, &engine, app, timing, out)?;
    let result = work();
    if root.read_app(app)?.current_release.is_some() {
        crate::deploy::restart(root, &engine, app, timing, out)?;
    }
    result
}

pub fn backup(root: &Root, args: BackupArgs, out: &Reporter) -> Result<()> {
    let app = app_name(&args.app)?;
    let state = existing_app(root, &app)?;
    let selected = select(root, &app, &state, &args.mounts, args.include_host_paths, out)?;
    let engine = Engine::connect()?;
    for s in &selected {
        match &s.source {
            MountSource::Bind(path) if !path.is_dir() => {
                return Err(CliError::Usage(format!(
                    "{} at {} has no directory at {} yet: nothing to back up",
                    s.attachment.source,
                    s.attachment.container_path,
                    path.display()
                )));
            }
            MountSource::Volume(name) => engine.require_volume(name)?,
            MountSource::Bind(_) => {}
        }
    }
    let manifest = Manifest {
        format: manifest::FORMAT,
        app: app.to_string(),
        release: state.current_release,
        created_at: crate::state::unix_now(),
        berth_version: env!("CARGO_PKG_VERSION").to_string(),
        mounts: selected.iter().enumerate().map(|(i, s)| s.record(manifest::mount_id(i))).collect(),
    };
    let sink = Sink::open(args.output.as_deref())?;
    let live = running(&engine, &app)?;
    if live && !args.stop {
        out.warn(format!(
            "{app} is running: files it writes during the copy may be inconsistent; pass --stop for a consistent copy"
        ));
    }
    // Volumes are reached through the helper container; directories on the host are read here,
    // through directory handles (see `writer`), which spares the container's start.
    let on_host: Option<Vec<PathBuf>> = selected
        .iter()
        .map(|s| match &s.source {
            MountSource::Bind(path) => Some(path.clone()),
            MountSource::Volume(_) => None,
        })
        .collect();
    let read = || match &on_host {
        Some(dirs) => {
            let mut stream = helper::Progress::new(BufWriter::with_capacity(64 << 10, sink.file()), out);
            writer::write(manifest, dirs, &mut stream, out)?;
            Ok(stream.finish())
        }
        None => {
            let mounts = manifest
                .mounts
                .iter()
                .zip(&selected)
                .map(|(r, s)| s.engine_mount(format!("{SOURCES_DIR}/{}", r.id), true))
                .collect();
            let plan = serde_json::to_string(&manifest).map_err(|e| CliError::Usage(e.to_string()))?;
            let args = vec![helper::pipe_path(), plan];
            let job = Job { engine: &engine, app: &app, command: helper::READ_COMMAND, mounts, args };
            Ok(helper::read_into(job, sink.file(), true, out)?)
        }
    };
    let bytes = with_stopped(root, &app, args.stop && live, read, out)?;
    sink.commit()?;
    out.step(format!("Backed up {} mount(s) of {app}: {bytes} bytes", selected.len()));
    Ok(())
}

/// Where a backup goes: stdout (berth's own messages then go to stderr), or a file that
/// appears only once complete.
enum Sink {
    Stdout(File),
    File { temp: tempfile::NamedTempFile, path: PathBuf },
}

impl Sink {
    fn open(output: Option<&str>) -> Result<Sink> {
        match output {
            None | Some("-") => {
                let stdout = std::io::stdout();
                if stdout.is_terminal() {
                    return Err(CliError::Usage(
                        "refusing to write a backup to a terminal: redirect it (> backup.tar), pipe it, or pass -o <file>".into(),
                    ));
                }
                let usage = |e: rustix::io::Errno| {
                    CliError::Usage(format!("cannot set up stdout for the stream: {e}"))
                };
                let stream = rustix::io::dup(&stdout).map_err(usage)?;
                stdout.lock().flush().ok();
                rustix::stdio::dup2_stdout(std::io::stderr()).map_err(usage)?;
                Ok(Sink::Stdout(File::from(stream)))
            }
            Some(path) => {
                let path = PathBuf::from(path);
                let dir = match path.parent() {
                    Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
                    _ => PathBuf::from("."),
                };
                let temp = tempfile::Builder::new()
                    .prefix(".berth-backup-")
                    .tempfile_in(&dir)
                    .map_err(BackupError::io("create a file in", &dir))?;
                Ok(Sink::File { temp, path })
            }
        }
    }

    fn file(&self) -> &File {
        match self {
            Sink::Stdout(file) => file,
            Sink::File { temp, .. } => temp.as_file(),
        }
    }

    fn commit(self) -> Result<()> {
        match self {
            Sink::Stdout(_) => Ok(()),
            Sink::File { temp, path } => {
                temp.as_file().sync_all().map_err(BackupError::io("sync", &path))?;
                temp.persist(&path).map_err(|e| BackupError::io("write", &path)(e.error))?;
                Ok(())
            }
        }
    }
}

pub fn restore(root: &Root, args: RestoreArgs, out: &Reporter) -> Result<()> {
    let from = app_name(&args.app)?;
    let to = match &args.as_app {
        Some(name) => app_name(name)?,
        None => from.clone(),
    };
    let state = existing_app(root, &to)?;
    let mut input = match args.input.as_deref() {
        None | Some("-") => std::io::stdin()
            .as_fd()
            .try_clone_to_owned()
            .map(File::from)
            .map_err(|e| CliError::Usage(format!("cannot read the stream from stdin: {e}")))?,
        Some(path) => File::open(path).map_err(BackupError::io("open", Path::new(path)))?,
    };
    let (prefix, manifest) = read_manifest(&mut input)?;
    if manifest.app != from.as_str() {
        return Err(CliError::Usage(format!(
            "this backup is of app {}, not {from}; restore it with `berth storage:restore {} --as {to}`",
            manifest.app, manifest.app
        )));
    }
    let selected = select(root, &to, &state, &args.mounts, args.include_host_paths, out)?;
    let chosen: Vec<&MountRecord> = manifest
        .mounts
        .iter()
        .filter(|m| args.mounts.is_empty() || args.mounts.contains(&m.target))
        .collect();
    if chosen.is_empty() {
        return Err(CliError::Usage("the backup has none of the mounts asked for".into()));
    }
    let mut pairs = Vec::new();
    for record in chosen {
        let mount = selected
            .iter()
            .find(|s| {
                s.attachment.source.to_string() == record.source
                    && s.attachment.container_path == record.target
            })
            .ok_or_else(|| {
                BackupError::Refused(format!(
                    "the backup has {} at {}, a mount app {to} does not have (see `berth storage:list {to}`)",
                    record.source, record.target
                ))
            })?;
        pairs.push((record, mount));
    }
    let engine = Engine::connect()?;
    let live = running(&engine, &to)?;
    if live && !args.stop {
        return Err(CliError::Usage(format!(
            "{to} is running; stop it first (berth ps:stop {to}) or pass --stop"
        )));
    }
    for (_, mount) in &pairs {
        prepare_target(root, &engine, &to, mount)?;
    }
    let stamp = crate::backup::swap::stamp(crate::state::unix_now());
    let (targets, mounts) = targets(&pairs);
    let plan = Plan { targets, stamp };
    let plan_text = serde_json::to_string(&plan).map_err(|e| CliError::Usage(e.to_string()))?;
    let job = Job {
        engine: &engine,
        app: &to,
        command: helper::RESTORE_COMMAND,
        mounts,
        args: vec![helper::pipe_path(), plan_text],
    };
    let output = with_stopped(
        root,
        &to,
        args.stop && live,
        || Ok(helper::restore_from(job, &prefix, &input, out)?),
        out,
    )?;
    let restored: Vec<Restored> = serde_json::from_str(output.trim())
        .map_err(|e| CliError::Usage(format!("the restore helper answered {output:?}: {e}")))?;
    record_restores(root, &to, &pairs, &restored, out)?;
    out.step(format!(
        "Restored {to} from the backup of {} (release {})",
        manifest.app,
        manifest.release.map_or("none".into(), |r| r.to_string())
    ));
    for (done, (record, _)) in restored.iter().zip(&pairs) {
        out.detail(format!(
            "{} -> {}: {} files, {} bytes",
            record.source, record.target, done.files, done.bytes
        ));
    }
    Ok(())
}

/// The manifest at the head of the stream, and the bytes read for it (the helper reads the
/// whole stream again, from the start).
fn read_manifest(input: &mut dyn Read) -> Result<(Vec<u8>, Manifest)> {
    let mut prefix = vec![0u8; 512];
    input.read_exact(&mut prefix).map_err(BackupError::Stream)?;
    let header = tar::Header::from_byte_slice(&prefix);
    let refused = |m: &str| BackupError::Refused(m.to_string());
    if header.path_bytes().as_ref() != manifest::MANIFEST.as_bytes() {
        return Err(refused(
            "the stream does not start with berth-backup/manifest.json (is it a berth backup, uncompressed?)",
        )
        .into());
    }
    let size = header.size().map_err(BackupError::Stream)?;
    if size > manifest::MAX_META_BYTES {
        return Err(refused("the manifest is too large").into());
    }
    let padded = size.div_ceil(512) * 512;
    let mut data = vec![0u8; padded as usize];
    input.read_exact(&mut data).map_err(BackupError::Stream)?;
    let manifest: Manifest = serde_json::from_slice(&data[..size as usize])
        .map_err(|e| BackupError::Refused(format!("the manifest is not valid: {e}")))?;
    manifest.check()?;
    prefix.extend_from_slice(&data);
    Ok((prefix, manifest))
}

/// The directory above a restored directory, and a restored app volume, exist before the
/// helper mounts them (the engine would make a missing directory itself, root-owned).
fn prepare_target(root: &Root, engine: &Engine, app: &AppName, mount: &Selected) -> Result<()> {
    match (&mount.source, &mount.attachment.source) {
        (MountSource::Bind(path), _) => {
            if let Some(parent) = path.parent() {
                root.make_data_root()?;
                crate::hostfs::ensure_dir(parent)?;
            }
        }
        (MountSource::Volume(name), Source::AppVolume(_)) => {
            engine.ensure_app_volume(name, app.as_str(), None, &HashMap::new())?;
        }
        (MountSource::Volume(name), _) => engine.require_volume(name)?,
    }
    Ok(())
}

/// The helper's places and mounts for each restored mount.
fn targets(pairs: &[(&MountRecord, &Selected)]) -> (Vec<Target>, Vec<EngineMount>) {
    let mut targets = Vec::new();
    let mut mounts = Vec::new();
    for (record, mount) in pairs {
        let dir = format!("{TARGETS_DIR}/{}", record.id);
        let place = match &mount.source {
            MountSource::Bind(path) => {
                let parent = path.parent().unwrap_or(Path::new("/"));
                mounts.push(EngineMount {
                    kind: MountKind::Bind,
                    source: parent.display().to_string(),
                    target: dir.clone(),
                    read_only: false,
                    options: Vec::new(),
                });
                let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                Place::Sibling { parent: PathBuf::from(&dir), name }
            }
            MountSource::Volume(_) => {
                mounts.push(mount.engine_mount(dir.clone(), false));
                Place::Inside { root: PathBuf::from(&dir) }
            }
        };
        targets.push(Target { id: record.id.clone(), place });
    }
    (targets, mounts)
}

/// Lists the replaced data for `storage:report` and `storage:prune-restores`.
fn record_restores(
    root: &Root,
    app: &AppName,
    pairs: &[(&MountRecord, &Selected)],
    restored: &[Restored],
    out: &Reporter,
) -> Result<()> {
    let lock = root.lock_app(app)?;
    let mut kept = KeptRestores::read(root, app)?;
    for done in restored {
        let Some(replaced) = &done.replaced else { continue };
        let Some((record, mount)) = pairs.iter().find(|(r, _)| r.id == done.id) else { continue };
        let name = replaced.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let (host, path) = match &mount.source {
            MountSource::Bind(path) => {
                let parent = path.parent().unwrap_or(Path::new("/"));
                (parent.display().to_string(), name)
            }
            MountSource::Volume(volume) => (volume.clone(), name),
        };
        out.detail(format!("The data it replaced is kept at {}", Kept::show(record.kind, &host, &path)));
        kept.kept.push(Kept {
            source: record.source.clone(),
            target: record.target.clone(),
            kind: record.kind,
            host,
            name: path,
            created_at: crate::state::unix_now(),
        });
    }
    kept.write(root, app, &lock)?;
    Ok(())
}

pub fn prune_restores(root: &Root, args: PruneArgs, out: &Reporter) -> Result<()> {
    let app = app_name(&args.app)?;
    existing_app(root, &app)?;
    let kept = KeptRestores::read(root, &app)?;
    if kept.kept.is_empty() {
        out.step(format!("No replaced data kept for {app}"));
        return Ok(());
    }
    confirm_destructive(
        "the data earlier restores replaced in",
        "storage:prune-restores",
        app.as_str(),
        args.force,
        None,
        out,
    )?;
    let engine = Engine::connect()?;
    let mut mounts = Vec::new();
    let mut paths = Vec::new();
    for (i, k) in kept.kept.iter().enumerate() {
        let dir = format!("{TARGETS_DIR}/k{i}");
        let kind = match k.kind {
            Kind::Bind => MountKind::Bind,
            Kind::Volume => MountKind::Volume,
        };
        mounts.push(EngineMount {
            kind,
            source: k.host.clone(),
            target: dir.clone(),
            read_only: false,
            options: Vec::new(),
        });
        paths.push(format!("{dir}/{}", k.name));
    }
    helper::run_plain(
        Job { engine: &engine, app: &app, command: helper::PRUNE_COMMAND, mounts, args: paths },
        out,
    )?;
    let lock = root.lock_app(&app)?;
    for k in &kept.kept {
        out.detail(format!("Removed {}", Kept::show(k.kind, &k.host, &k.name)));
    }
    KeptRestores::default().write(root, &app, &lock)?;
    Ok(())
}

/// `internal:backup-read <fifo> <manifest>`: writes the stream of the trees under SOURCES_DIR.
pub fn internal_read(pipe: &Path, plan: &str, out: &Reporter) -> Result<()> {
    let manifest: Manifest =
        serde_json::from_str(plan).map_err(|e| CliError::Usage(format!("bad plan: {e}")))?;
    let dirs: Vec<PathBuf> = manifest.mounts.iter().map(|m| Path::new(SOURCES_DIR).join(&m.id)).collect();
    let fifo = File::options().write(true).open(pipe).map_err(BackupError::io("open", pipe))?;
    // Smaller than the writer's file chunks, which then bypass it: only headers are buffered.
    Ok(writer::write(manifest, &dirs, BufWriter::with_capacity(64 << 10, fifo), out)?)
}

/// `internal:backup-restore <fifo> <plan>`: verifies the stream into staging and swaps it in;
/// prints what it did as JSON.
pub fn internal_restore(pipe: &Path, plan: &str, out: &Reporter) -> Result<()> {
    let plan: Plan = serde_json::from_str(plan).map_err(|e| CliError::Usage(format!("bad plan: {e}")))?;
    let input = File::open(pipe).map_err(BackupError::io("open", pipe))?;
    // Smaller than a restore's file reads, which then bypass it.
    let done = crate::backup::restore::restore(BufReader::with_capacity(64 << 10, input), &plan)?;
    super::print_json(&done, out)
}

/// `internal:backup-prune <path>...`: removes data earlier restores replaced.
pub fn internal_prune(paths: &[PathBuf]) -> Result<()> {
    for path in paths {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if !name.contains(crate::backup::swap::REPLACED_MARK) {
            return Err(CliError::Usage(format!("{} is not data a restore replaced", path.display())));
        }
        crate::hostfs::remove_tree(path)?;
    }
    Ok(())
}
