//! `storage:*`: admin mounts, named entries, directories, grants and storage reports.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::json;

use super::refusal::Refusal;
use super::{CliError, Format, Result, confirm_destructive, existing_app, print_json};
use crate::deploy;
use crate::docker_options::volume_flag;
use crate::engine::Engine;
use crate::hostfs;
use crate::names::{AppName, EntryName, is_docker_volume_name};
use crate::output::{Report, Reporter};
use crate::state::{Root, StateError};
use crate::storage::host_path;
use crate::storage::lifecycle;
use crate::storage::metadata;
use crate::storage::mounts::{self, Unmounted};
use crate::storage::{
    Attachment, Chown, DEFAULT_PROCESS_TYPE, Entry, EntryBacking, LegacyMount, Mode, Origin, Phase,
    ReclaimPolicy, SCHEDULER, Source, StorageError, check_process_type, check_relative_subpath,
    is_driver_name, normalize_container_path, parse_phases,
};

#[derive(Debug, clap::Args)]
pub struct MountArgs {
    app: String,
    /// `<host-dir|volume>:<container-dir>[:<options>]`, or the name of a storage entry
    mount: String,
    /// Container path (named form)
    #[arg(long)]
    container_dir: Option<String>,
    /// Phases: build, deploy, run (repeatable or comma list; default deploy,run)
    #[arg(long = "phase")]
    phases: Vec<String>,
    /// Process type the mount applies to (default: every process)
    #[arg(long)]
    process_type: Option<String>,
    /// Directory inside the entry to mount instead of its top
    #[arg(long)]
    volume_subpath: Option<String>,
    /// Mount read-only
    #[arg(long)]
    volume_readonly: bool,
    /// Extra mount options, comma list (z, Z, nocopy, ...)
    #[arg(long)]
    volume_options: Option<String>,
    /// Owner to give the mounted directory on deploy (herokuish, heroku, paketo, root, false, uid)
    #[arg(long, allow_hyphen_values = true)]
    volume_chown: Option<String>,
    /// Re-create the app's containers now so the change applies
    #[arg(long)]
    restart: bool,
    /// Colon form: create a missing host directory, owned as --chown says
    #[arg(long)]
    create: bool,
    /// Owner of the directory --create makes: herokuish (default), heroku, paketo, root, false, uid
    #[arg(long, allow_hyphen_values = true, requires = "create")]
    chown: Option<String>,
}

impl MountArgs {
    fn named_flags_given(&self) -> bool {
        self.container_dir.is_some()
            || !self.phases.is_empty()
            || self.process_type.is_some()
            || self.volume_subpath.is_some()
            || self.volume_readonly
            || self.volume_options.is_some()
            || self.volume_chown.is_some()
    }
}

#[derive(Debug, clap::Args)]
pub struct UnmountArgs {
    app: String,
    /// `<host-dir|volume>:<container-dir>`, or the name of a storage entry
    mount: String,
    /// Container path of the entry's mount to remove (named form)
    #[arg(long)]
    container_dir: Option<String>,
    /// Re-create the app's containers now so the change applies
    #[arg(long)]
    restart: bool,
}

#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// An app, and/or one info flag such as --storage-deploy-mounts
    #[arg(allow_hyphen_values = true)]
    args: Vec<String>,
    /// Report every storage entry and the apps that mount it
    #[arg(long)]
    global: bool,
    /// Also show each mount's size on disk (walks the data)
    #[arg(long)]
    size: bool,
    /// Report every app directory, entry directory and app volume no app mounts
    #[arg(long)]
    detached: bool,
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    name: String,
    /// Absolute host directory or Docker volume name (default: <storage root>/<name>)
    path: Option<String>,
    /// Owner of the default directory: herokuish, heroku, paketo, root, false, or a uid
    #[arg(long, allow_hyphen_values = true)]
    chown: Option<String>,
    /// Mode of the default directory, such as 0750
    #[arg(long, allow_hyphen_values = true)]
    mode: Option<String>,
    /// Retain (default) keeps the data on destroy; Delete removes the default directory
    #[arg(long)]
    reclaim_policy: Option<String>,
    /// Only docker-local is supported
    #[arg(long, default_value = SCHEDULER)]
    scheduler: String,
    /// An annotation key=value (repeatable)
    #[arg(long = "annotation")]
    annotations: Vec<String>,
    /// A label key=value (repeatable); also a Docker label on a volume berth makes for the entry
    #[arg(long = "label")]
    labels: Vec<String>,
}

#[derive(Debug, clap::Args)]
pub struct SetArgs {
    name: String,
    property: Option<String>,
    #[arg(allow_hyphen_values = true)]
    value: Option<String>,
    /// Deprecated flag form of `storage:set <name> chown <value>`
    #[arg(long, allow_hyphen_values = true)]
    chown: Option<String>,
    /// Deprecated flag form of `storage:set <name> mode <value>`
    #[arg(long, allow_hyphen_values = true)]
    mode: Option<String>,
    /// Deprecated flag form of `storage:set <name> reclaim-policy <value>`
    #[arg(long)]
    reclaim_policy: Option<String>,
    /// Deprecated: replaces every annotation (use storage:annotations:set)
    #[arg(long = "annotation")]
    annotations: Vec<String>,
    /// Deprecated: replaces every label (use storage:labels:set)
    #[arg(long = "label")]
    labels: Vec<String>,
}

impl SetArgs {
    /// The properties the deprecated flag form names, as (property, value) pairs.
    fn flag_properties(&self) -> Vec<(&'static str, &str)> {
        [("chown", &self.chown), ("mode", &self.mode), ("reclaim-policy", &self.reclaim_policy)]
            .into_iter()
            .filter_map(|(property, value)| value.as_deref().map(|v| (property, v)))
            .collect()
    }
}

pub fn ensure_directory(root: &Root, directory: &str, chown: &str, out: &Reporter) -> Result<()> {
    out.warn("Deprecated: please use 'storage:create' instead of 'storage:ensure-directory'");
    if directory.is_empty() {
        return Err(CliError::Usage("Please specify a directory to create".into()));
    }
    let valid = directory.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if !valid {
        return Err(Refusal::BadDirectoryName(directory.to_string()).into());
    }
    let chown: Chown = chown.parse()?;
    let path = root.storage_root().join(directory);
    out.step(format!("Ensuring {} exists", path.display()));
    root.make_data_root()?;
    hostfs::ensure_dir(&path)?;
    if let Some(uid) = chown.uid() {
        out.detail(format!("Setting directory ownership to {uid}:{uid}"));
        hostfs::chown_tree(&path, uid, uid)?;
    }
    out.detail("Directory ready for mounting");
    Ok(())
}

pub fn mount(root: &Root, args: MountArgs, out: &Reporter) -> Result<()> {
    let app = AppName::new(&args.app)?;
    existing_app(root, &app)?;
    if args.mount.starts_with('/') && !args.mount.contains(':') {
        // A host path without its container path; not an entry name either.
        return Err(StorageError::NotTwoPaths(args.mount).into());
    }
    if args.mount.contains(':') {
        if args.named_flags_given() {
            return Err(CliError::Usage(format!(
                "--container-dir, --phase, --process-type and --volume-* apply to storage entry mounts \
                 (berth storage:mount <app> <entry> --container-dir <path>); the colon form takes its options \
                 after a second colon, as in {}:ro",
                args.mount.splitn(3, ':').take(2).collect::<Vec<_>>().join(":")
            )));
        }
        mount_legacy(root, &app, &args, out)?;
    } else if args.create {
        return Err(CliError::Usage(
            "--create applies to the colon form (berth storage:mount <app> /srv/x:/data --create); an entry's directory is made by storage:create".into(),
        ));
    } else {
        mount_entry(root, &app, &args, out)?;
    }
    super::apply_or_hint(root, &app, args.restart, out)
}

fn mount_legacy(root: &Root, app: &AppName, args: &MountArgs, out: &Reporter) -> Result<()> {
    let legacy = LegacyMount::parse(&args.mount)?;
    let chown: Chown = args.chown.as_deref().unwrap_or("herokuish").parse()?;
    let attachment = legacy.attachment([Phase::Deploy, Phase::Run].into());
    if let Some(warning) = crate::storage::unenforced_option_warning(attachment.volume_options.as_deref()) {
        out.warn(warning);
    }
    match &attachment.source {
        Source::HostPath(path) if args.create && !path.exists() => {
            // The mount rule first: nothing is created for a mount that would be refused.
            let mut mounts = existing_app(root, app)?.mounts;
            mounts.push(attachment.clone());
            deploy::check_binds(root, app, &mounts, &root.entries_by_name()?)?;
            create_host_dir(path, chown, out)?;
        }
        Source::HostPath(path) => host_path::check_present(path)?,
        Source::Volume(name) => Engine::connect()?.require_volume(name)?,
        _ => {}
    }
    let entries = root.entries_by_name()?;
    root.update_app(app, |state| {
        mounts::add(state, app, attachment)?;
        Ok::<_, CliError>(deploy::check_binds(root, app, &state.mounts, &entries)?)
    })
}

/// `storage:mount --create`: the missing host directory, given to its owner (only it: parents
/// made on the way stay root's, as `mkdir -p` leaves them).
fn create_host_dir(path: &Path, chown: Chown, out: &Reporter) -> Result<()> {
    hostfs::ensure_dir(path)?;
    out.detail(format!("Created {}", path.display()));
    if let Some(uid) = chown.uid() {
        out.detail(format!("Setting directory ownership to {uid}:{uid}"));
        hostfs::chown_tree(path, uid, uid)?;
    }
    Ok(())
}

/// Warns about process types the app's current release does not declare.
pub(super) fn warn_undeclared(
    root: &Root,
    app: &AppName,
    processes: &[String],
    out: &Reporter,
) -> Result<()> {
    let declared = root.declared_process_types(app)?;
    for process in processes {
        if let Some(warning) = crate::storage::undeclared_process_type(app, process, declared.as_deref()) {
            out.warn(warning);
        }
    }
    Ok(())
}

fn mount_entry(root: &Root, app: &AppName, args: &MountArgs, out: &Reporter) -> Result<()> {
    let name = EntryName::new(&args.mount)?;
    let _entries_lock = root.lock_entries()?;
    let entry = root.read_entry(&name)?;
    let container_dir = args.container_dir.as_deref().ok_or_else(|| {
        CliError::Usage("--container-dir is required when mounting a named storage entry".into())
    })?;
    let container_path = normalize_container_path(container_dir)?;
    let phases = parse_phases(&args.phases)?;
    let process_type = args.process_type.clone().unwrap_or_else(|| DEFAULT_PROCESS_TYPE.to_string());
    check_process_type(&process_type)?;
    warn_undeclared(root, app, std::slice::from_ref(&process_type), out)?;
    let subpath = match args.volume_subpath.as_deref() {
        None => None,
        Some(_) if matches!(entry.host_path, EntryBacking::Volume(_)) => {
            return Err(Refusal::SubpathOfVolume { name, volume: entry.host_path.to_string() }.into());
        }
        Some(sub) => Some(check_relative_subpath(sub)?.display().to_string()),
    };
    let volume_options = match args.volume_options.as_deref() {
        Some(options) => crate::storage::parse_mount_options(options)?.1,
        None => None,
    };
    let volume_chown = args.volume_chown.as_deref().map(str::parse::<Chown>).transpose()?;
    if let Some(warning) = crate::storage::unenforced_option_warning(volume_options.as_deref()) {
        out.warn(warning);
    }
    let attachment = Attachment {
        source: Source::Entry(name.clone()),
        container_path: container_path.clone(),
        phases,
        process_type,
        subpath,
        readonly: args.volume_readonly,
        volume_options,
        volume_chown,
        made_by: Origin::Admin,
    };
    let entries = root.entries_by_name()?;
    let updated = root.update_app(app, |state| {
        let updated = mounts::put(state, app, attachment)?;
        deploy::check_binds(root, app, &state.mounts, &entries)?;
        Ok::<_, CliError>(updated)
    })?;
    if updated {
        out.step(format!("Storage entry {name} mount at {container_path} on {app} updated"));
    } else {
        out.step(format!("Storage entry {name} mounted at {container_path} on {app}"));
    }
    Ok(())
}

pub fn unmount(root: &Root, args: UnmountArgs, out: &Reporter) -> Result<()> {
    let app = AppName::new(&args.app)?;
    existing_app(root, &app)?;
    if args.mount.starts_with('/') && !args.mount.contains(':') {
        return Err(StorageError::NotTwoPaths(args.mount).into());
    }
    if args.mount.contains(':') {
        if args.container_dir.is_some() {
            return Err(CliError::Usage("--container-dir applies to storage entry unmounts".into()));
        }
        let legacy = LegacyMount::parse(&args.mount)?;
        let entries = root.entries_by_name()?;
        let app_dir = root.app_storage_dir(&app);
        let unmounted = root.update_app(&app, |state| {
            Ok::<_, CliError>(mounts::unmount_legacy(state, &app, &app_dir, &entries, &legacy)?)
        })?;
        if let Unmounted::Forgot(detached) = unmounted {
            out.step(format!(
                "Forgot the detached mount {} at {}; its data is kept",
                detached.source, detached.container_path
            ));
            return Ok(());
        }
        return super::apply_or_hint(root, &app, args.restart, out);
    }
    let name = EntryName::new(&args.mount)?;
    let container_path = args.container_dir.as_deref().map(normalize_container_path).transpose()?;
    root.update_app(&app, |state| {
        Ok::<_, CliError>(mounts::unmount_entry(state, &app, &name, container_path.as_deref())?)
    })?;
    super::apply_or_hint(root, &app, args.restart, out)
}

pub fn list(root: &Root, app: &AppName, format: Format, out: &Reporter) -> Result<()> {
    let state = existing_app(root, app)?;
    let entries = root.entries_by_name()?;
    let mut rows: Vec<(&Attachment, String)> = state
        .mounts
        .iter()
        .filter_map(|m| {
            m.resolve_base(app, &root.app_storage_dir(app), &entries).ok().map(|s| (m, s.to_string()))
        })
        .collect();
    rows.sort_by(|a, b| (&a.1, &a.0.container_path).cmp(&(&b.1, &b.0.container_path)));
    // Only a deployed app can have them, and only the engine knows them.
    let anonymous = if state.current_release.is_some() {
        Engine::connect()?.anonymous_volumes(app.as_str())?
    } else {
        Vec::new()
    };
    match format {
        Format::Json => {
            let items: Vec<serde_json::Value> = rows
                .iter()
                .map(|(m, host)| {
                    let mut item = json!({
                        "entry_name": match &m.source { Source::Entry(n) => n.to_string(), _ => String::new() },
                        "source": m.source.to_string(),
                        "host_path": host,
                        "container_path": m.container_path,
                        "phases": m.phases,
                        "process_type": m.process_type,
                        "made_by": m.made_by,
                    });
                    if m.readonly {
                        item["readonly"] = json!(true);
                    }
                    if let Some(options) = &m.volume_options {
                        item["volume_options"] = json!(options);
                    }
                    item
                })
                .chain(anonymous.iter().map(|(volume, path)| {
                    json!({"source": format!("anonymous:{volume}"), "host_path": volume, "container_path": path, "anonymous": true})
                }))
                .collect();
            print_json(&items, out)
        }
        Format::Text => {
            out.step(format!("{app} volume bind-mounts:"));
            for (m, host) in rows {
                let mut line = format!("{host}:{}", m.container_path);
                if let Some(options) = m.option_suffix() {
                    line = format!("{line}:{options}");
                }
                let mut notes = Vec::new();
                if m.phases != [Phase::Deploy, Phase::Run].into() {
                    let phases: Vec<&str> = m.phases.iter().map(|p| p.as_str()).collect();
                    notes.push(format!("phases: {}", phases.join(",")));
                }
                if m.process_type != DEFAULT_PROCESS_TYPE {
                    notes.push(format!("process: {}", m.process_type));
                }
                if m.made_by == Origin::Repo {
                    notes.push("from app.toml".to_string());
                }
                if notes.is_empty() || out.is_quiet() {
                    out.item(line);
                } else {
                    out.detail(format!("{line}  ({})", notes.join("; ")));
                }
            }
            for (volume, path) in anonymous {
                if out.is_quiet() {
                    out.item(format!("{volume}:{path}"));
                } else {
                    out.detail(format!("{volume}:{path}  (anonymous: Dockerfile VOLUME, not in app.toml)"));
                }
            }
            Ok(())
        }
    }
}

/// Every info flag of one app's storage report, keyed without `--`.
fn storage_report(
    root: &Root,
    app: &AppName,
    entries: &BTreeMap<EntryName, Entry>,
    out: &Reporter,
) -> Result<Report> {
    let state = existing_app(root, app)?;
    let mut report = Report::default();
    let mut phase_mounts: BTreeMap<Phase, Vec<String>> = BTreeMap::new();
    for (index, m) in state.mounts.iter().enumerate() {
        let Ok(source) = m.resolve(app, &root.app_storage_dir(app), entries) else {
            out.warn(format!("Skipping attachment on \"{app}\": missing entry \"{}\"", m.source));
            continue;
        };
        let key = |field: &str| format!("storage-attachment.{}.{field}", index + 1);
        let entry_name = match &m.source {
            Source::Entry(name) => name.to_string(),
            _ => String::new(),
        };
        let phases: Vec<&str> = m.phases.iter().map(|p| p.as_str()).collect();
        report.row(key("entry-name"), entry_name);
        report.row(key("source"), m.source.to_string());
        let base =
            m.resolve_base(app, &root.app_storage_dir(app), entries).unwrap_or_else(|_| source.clone());
        report.row(key("host-path"), base.to_string());
        report.row(key("container-path"), m.container_path.clone());
        report.row(key("phases"), phases.join(","));
        report.row(key("process-type"), m.process_type.clone());
        report.row(key("subpath"), m.subpath.clone().unwrap_or_default());
        report.row(key("readonly"), m.readonly.to_string());
        report.row(key("volume-options"), m.volume_options.clone().unwrap_or_default());
        report.row(key("volume-chown"), m.volume_chown.map(|c| c.to_string()).unwrap_or_default());
        report.row(key("made-by"), m.made_by.to_string());
        for phase in &m.phases {
            phase_mounts.entry(*phase).or_default().push(m.volume_flag(&source));
        }
    }
    // Mounts an admin added as docker-options apply too: show them under their phase.
    for (key, options) in &state.docker_options {
        phase_mounts.entry(key.phase).or_default().extend(options.iter().filter_map(|o| volume_flag(o)));
    }
    for phase in Phase::ALL {
        report.row(
            format!("storage-{phase}-mounts"),
            phase_mounts.get(&phase).map(|m| m.join(" ")).unwrap_or_default(),
        );
    }
    let detached: Vec<String> = state
        .detached
        .iter()
        .filter_map(|d| {
            d.resolve(app, &root.app_storage_dir(app), entries)
                .ok()
                .map(|r| format!("{r}:{}", d.container_path))
        })
        .collect();
    report.row("storage-detached", detached.join(" "));
    let paths: Vec<String> = state.allowed.host_paths.iter().map(|p| p.display().to_string()).collect();
    report.row("storage-allowed-host-paths", paths.join(" "));
    report.row("storage-allowed-volumes", state.allowed.volumes.join(" "));
    report.row("storage-allowed-drivers", state.allowed.drivers.join(" "));
    // Only for apps that went to a swarm: their node-local data is on that node.
    if let Some(node) = &state.swarm_node {
        report.row("storage-swarm-node", node.clone());
    }
    Ok(report)
}

pub fn report(root: &Root, args: ReportArgs, out: &Reporter) -> Result<()> {
    let has = |flag: &str| args.args.iter().any(|w| w == flag);
    let (global, size, detached) =
        (args.global || has("--global"), args.size || has("--size"), args.detached || has("--detached"));
    let words: Vec<String> = args
        .args
        .into_iter()
        .filter(|w| !["--global", "--size", "--detached"].contains(&w.as_str()))
        .collect();
    if detached {
        let (rest, format) = super::report::take_format(&words, args.format)?;
        if !rest.is_empty() {
            return Err(CliError::Usage("--detached takes no app and no info flag".into()));
        }
        return super::inventory::report_detached(root, format, out);
    }
    if global {
        let (rest, format) = super::report::take_format(&words, args.format)?;
        if !rest.is_empty() {
            return Err(CliError::Usage("--global takes no app and no info flag".into()));
        }
        return report_global(root, format, out);
    }
    let request = super::report::Request::parse(root, "storage:report", &words, args.format)?;
    let entries = root.entries_by_name()?;
    request.print(
        "storage",
        "storage",
        |app| {
            let mut report = storage_report(root, app, &entries, out)?;
            super::inventory::app_rows(root, app, &entries, size, &mut report)?;
            Ok(report)
        },
        out,
    )
}

fn report_global(root: &Root, format: Format, out: &Reporter) -> Result<()> {
    let entries = root.list_entries()?;
    let mut rows = Vec::new();
    for entry in entries {
        let apps = root.apps_mounting(&entry.name)?;
        rows.push((entry, apps));
    }
    match format {
        Format::Json => {
            let items: Vec<serde_json::Value> =
                rows.iter().map(|(entry, apps)| json!({"entry": entry, "mounted_by": apps})).collect();
            print_json(&items, out)
        }
        Format::Text if rows.is_empty() => {
            out.step("No storage entries registered");
            Ok(())
        }
        Format::Text => {
            out.step("Storage report (global):");
            for (entry, apps) in rows {
                let names: Vec<&str> = apps.iter().map(AppName::as_str).collect();
                let mounted_by = if names.is_empty() { "—".to_string() } else { names.join(", ") };
                out.detail(format!("{}\t{}\tmounted by: {mounted_by}", entry.name, entry.scheduler));
            }
            Ok(())
        }
    }
}

/// The directory an entry's chown and mode apply to: only its default one, as in Dokku, since a
/// custom path may be anything on the host.
fn entry_default_dir(root: &Root, entry: &Entry) -> Option<PathBuf> {
    lifecycle::default_dir(entry, &root.entry_default_dir(&entry.name))
}

fn apply_entry_dir(root: &Root, entry: &Entry, out: &Reporter) -> Result<()> {
    let Some(dir) = entry_default_dir(root, entry) else { return Ok(()) };
    root.make_data_root()?;
    if hostfs::ensure_dir(&dir)? {
        out.detail(format!("Created {}", dir.display()));
    }
    if let Some(mode) = entry.mode {
        out.detail(format!("Setting directory mode to {mode}"));
        hostfs::set_mode(&dir, mode.0)?;
    }
    if let Some(uid) = entry.chown.and_then(Chown::uid) {
        out.detail(format!("Setting directory ownership to {uid}:{uid}"));
        hostfs::chown_tree(&dir, uid, uid)?;
    }
    Ok(())
}

pub fn create(root: &Root, args: CreateArgs, out: &Reporter) -> Result<()> {
    let name = EntryName::new(&args.name)?;
    lifecycle::check_scheduler(&name, &args.scheduler)?;
    let host_path = match args.path.as_deref() {
        Some(path) => EntryBacking::parse(&name, path)?,
        None => EntryBacking::Dir(root.entry_default_dir(&name)),
    };
    lifecycle::check_backing(&host_path)?;
    let mut entry = Entry {
        name: name.clone(),
        scheduler: SCHEDULER.to_string(),
        host_path,
        chown: args.chown.as_deref().map(str::parse).transpose()?,
        mode: args.mode.as_deref().map(str::parse::<Mode>).transpose()?,
        reclaim_policy: args.reclaim_policy.as_deref().map(str::parse).transpose()?.unwrap_or_default(),
        annotations: metadata::parse_pairs(metadata::Kind::Annotation, &args.annotations)?,
        labels: metadata::parse_pairs(metadata::Kind::Label, &args.labels)?,
    };
    lifecycle::check_default_path_settings(&entry, &root.entry_default_dir(&name))?;
    let lock = root.lock_entries()?;
    if root.entry_exists(&name) {
        let existing = root.read_entry(&name)?;
        // Metadata not named on this command line stays; Dokku's separate commands own it.
        if args.annotations.is_empty() {
            entry.annotations = existing.annotations.clone();
        }
        if args.labels.is_empty() {
            entry.labels = existing.labels.clone();
        }
        let changes = entry.changes_from(&existing)?;
        if changes.is_empty() {
            out.step(format!("Storage entry {name} already exists, leaving in place"));
        } else {
            out.step(format!("Storage entry {name} already exists, updating {}", changes.join(", ")));
        }
        // Ownership and mode are applied again either way, as Dokku does: something else may
        // have changed them since.
        apply_entry_dir(root, &entry, out)?;
        if !changes.is_empty() {
            root.write_entry(&entry, &lock)?;
            out.step(format!("Storage entry {name} updated"));
        }
        return Ok(());
    }
    crate::storage::check_new_entry_name(&name)?;
    // A custom directory is created as Dokku does (never chowned: it may be anything on the host),
    // so a mount of the entry does not leave the engine to create it root-owned.
    if let EntryBacking::Dir(path) = &entry.host_path
        && entry_default_dir(root, &entry).is_none()
        && hostfs::ensure_dir(path)?
    {
        out.detail(format!("Created {}", path.display()));
    }
    apply_entry_dir(root, &entry, out)?;
    super::storage_metadata::ensure_entry_volume(&entry, out)?;
    root.write_entry(&entry, &lock)?;
    out.step(format!("Storage entry {name} created"));
    Ok(())
}

pub fn destroy(root: &Root, name: &str, force: bool, destroy_host_dir: bool, out: &Reporter) -> Result<()> {
    let name = EntryName::new(name)?;
    let entry = root.read_entry(&name)?;
    let removable_dir = entry_default_dir(root, &entry);
    if destroy_host_dir {
        lifecycle::only_on_default_path(&entry, &root.entry_default_dir(&name), "--destroy-host-dir")?;
    }
    let remove_dir = (destroy_host_dir || entry.reclaim_policy == ReclaimPolicy::Delete)
        .then_some(removable_dir)
        .flatten();
    lifecycle::check_unmounted(&name, &root.apps_mounting(&name)?)?;
    let warning = remove_dir.as_ref().map(|dir| {
        format!(
            "Storage entry {name} is backed by {}, which will be removed along with its contents.",
            dir.display()
        )
    });
    confirm_destructive("storage entry", "storage:destroy", name.as_str(), force, warning.as_deref(), out)?;
    let lock = root.lock_entries()?;
    // Checked again under the lock: a mount may have been added while we asked.
    lifecycle::check_unmounted(&name, &root.apps_mounting(&name)?)?;
    root.remove_entry(&name, &lock)?;
    if let Some(dir) = remove_dir
        && hostfs::remove_tree(&dir)?
    {
        out.detail(format!("Removed {}", dir.display()));
    }
    out.step(format!("Storage entry {name} destroyed"));
    Ok(())
}

pub fn info(root: &Root, name: &str, format: Format, out: &Reporter) -> Result<()> {
    let entry = root.read_entry(&EntryName::new(name)?)?;
    match format {
        Format::Json => {
            let text = serde_json::to_string_pretty(&entry)?;
            out.text(format!("{text}\n"));
        }
        Format::Text => {
            out.step(format!("Storage entry {}", entry.name));
            let mut rows =
                vec![("Scheduler:", entry.scheduler.clone()), ("Host path:", entry.host_path.to_string())];
            if let Some(chown) = entry.chown {
                rows.push(("Chown:", chown.to_string()));
            }
            if let Some(mode) = entry.mode {
                rows.push(("Mode:", mode.to_string()));
            }
            rows.push(("Reclaim policy:", entry.reclaim_policy.to_string()));
            for (label, value) in rows {
                out.detail(format!("{label:<18}{value}"));
            }
        }
    }
    Ok(())
}

pub fn list_entries(root: &Root, format: Format, out: &Reporter) -> Result<()> {
    let entries = root.list_entries()?;
    match format {
        Format::Json => {
            let text = serde_json::to_string_pretty(&entries)?;
            out.text(format!("{text}\n"));
        }
        Format::Text if entries.is_empty() => out.step("No storage entries registered"),
        Format::Text => {
            out.step("Storage entries:");
            for entry in entries {
                out.detail(format!("{}\t{}\t{}", entry.name, entry.scheduler, entry.host_path));
            }
        }
    }
    Ok(())
}

/// `storage:set <name> <property> [<value>]`, and Dokku's deprecated flag form
/// (`storage:set <name> --mode 0770`, `--annotation k=v`, `--label k=v`) with its warning.
pub fn set(root: &Root, args: SetArgs, out: &Reporter) -> Result<()> {
    let name = EntryName::new(&args.name)?;
    let flags = args.flag_properties();
    let metadata_flags = !args.annotations.is_empty() || !args.labels.is_empty();
    if args.property.is_some() && (!flags.is_empty() || metadata_flags) {
        return Err(CliError::Usage(
            "storage:set accepts either a property and a value or flags, not both".into(),
        ));
    }
    let mut changes: Vec<(&str, Option<&str>)> = match args.property.as_deref() {
        Some(property) => vec![(property, args.value.as_deref())],
        None if flags.is_empty() && !metadata_flags => {
            return Err(CliError::Usage("No property specified".into()));
        }
        None => flags.into_iter().map(|(p, v)| (p, Some(v))).collect(),
    };
    if args.property.is_none() && !changes.is_empty() {
        out.warn("Deprecated: please use 'storage:set <name> <property> [<value>]' instead of flags");
    }
    if metadata_flags {
        out.warn(
            "Deprecated: please use 'storage:annotations:set' and 'storage:labels:set' instead of --annotation and --label",
        );
    }
    let lock = root.lock_entries()?;
    let before = root.read_entry(&name)?;
    let mut entry = before.clone();
    for (property, value) in changes.drain(..) {
        lifecycle::set_property(&mut entry, &root.entry_default_dir(&name), property, value)?;
    }
    if !args.annotations.is_empty() {
        entry.annotations = metadata::parse_pairs(metadata::Kind::Annotation, &args.annotations)?;
    }
    if !args.labels.is_empty() {
        entry.labels = metadata::parse_pairs(metadata::Kind::Label, &args.labels)?;
    }
    if before != entry {
        if before.chown != entry.chown || before.mode != entry.mode {
            apply_entry_dir(root, &entry, out)?;
        }
        root.write_entry(&entry, &lock)?;
    }
    out.step(format!("Storage entry {name} updated"));
    Ok(())
}

/// `storage:allow` and `storage:disallow`: a host path (and below), an external volume, or
/// `driver:<name>`, a volume driver.
pub fn allow(root: &Root, app: &AppName, source: &str, allow: bool, out: &Reporter) -> Result<()> {
    existing_app(root, app)?;
    let grant = parse_grant(source)?;
    let changed = root.update_app(app, |state| {
        let grants = &mut state.allowed;
        Ok::<_, StateError>(match grant {
            Grant::HostPath(path) => add_or_remove(&mut grants.host_paths, path, allow),
            Grant::Volume(name) => add_or_remove(&mut grants.volumes, name, allow),
            Grant::Driver(name) => add_or_remove(&mut grants.drivers, name, allow),
        })
    })?;
    match (allow, changed) {
        (true, true) => out.step(format!("Allowed {source} in app.toml of {app}")),
        (true, false) => out.step(format!("{source} is already allowed for {app}")),
        (false, true) => out.step(format!(
            "Disallowed {source} for {app}; running containers keep what they mount, but ps:restart and rollback \
             refuse releases that still use it until a push without it"
        )),
        (false, false) => {
            return Err(Refusal::NotAllowed { grant: source.to_string(), app: app.clone() }.into());
        }
    }
    Ok(())
}

/// What `storage:allow` grants.
enum Grant {
    HostPath(PathBuf),
    Volume(String),
    Driver(String),
}

fn parse_grant(source: &str) -> Result<Grant> {
    if let Some(driver) = source.strip_prefix("driver:") {
        return if is_driver_name(driver) {
            Ok(Grant::Driver(driver.to_string()))
        } else {
            Err(Refusal::BadDriverName(driver.to_string()).into())
        };
    }
    if source.starts_with('/') {
        crate::storage::check_no_separators("host path", source)?;
        let path = normalize_container_path(source).map_err(|_| Refusal::BadGrantPath(source.to_string()))?;
        Ok(Grant::HostPath(PathBuf::from(path)))
    } else if is_docker_volume_name(source) {
        Ok(Grant::Volume(source.to_string()))
    } else {
        Err(StorageError::RelativeHostPath(source.to_string()).into())
    }
}

/// Adds (or removes) a grant; whether the list changed.
fn add_or_remove<T: PartialEq>(list: &mut Vec<T>, value: T, add: bool) -> bool {
    let before = list.len();
    if add {
        if !list.contains(&value) {
            list.push(value);
        }
    } else {
        list.retain(|v| *v != value);
    }
    before != list.len()
}
