//! The storage model: named entries, attachments (how an app mounts a source at a container
//! path, in which phases, for which process type), ownership presets, and rendering an
//! attachment to the `-v` form shown in reports and to the structured mount the engine gets.
//! [`binds`] holds the rule every bind source on the server must follow; [`host_path`] the
//! checks of host paths against the server; [`lifecycle`] what may change in an entry;
//! [`metadata`] the entries' labels and annotations; [`migrate`] turns `-v` docker-options into
//! mounts; [`mounts`] the admin's changes to an app's mounts.

pub mod binds;
pub mod host_path;
pub mod lifecycle;
pub mod metadata;
pub mod migrate;
pub mod mounts;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Component, Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::names::{AppName, EntryName, NameError, is_docker_volume_name};
use crate::user::{Preset, parse_id};

/// Process type an attachment applies to when none is named: every process.
pub const DEFAULT_PROCESS_TYPE: &str = "_default_";

/// Names an app's process types cannot take: `_default_`, and the roles of berth's own
/// short-lived containers (`<app>.build.<n>`, `<app>.run.<pid>`, `<app>.chown.<pid>`).
pub const RESERVED_PROCESS_TYPES: [&str; 4] = [DEFAULT_PROCESS_TYPE, "build", "run", "chown"];

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StorageError {
    #[error(transparent)]
    Name(#[from] NameError),
    #[error("phase \"{0}\" is not supported (must be one of build, deploy, run)")]
    UnknownPhase(String),
    #[error("process type \"{0}\" is not valid (letters, digits, '-' and '_')")]
    BadProcessType(String),
    #[error("at least one phase is required")]
    NoPhases,
    #[error(
        "Unsupported chown permissions \"{0}\". Use herokuish, heroku, paketo, root, false or a uid from 0 to 65535"
    )]
    BadChown(String),
    #[error("attachment container path \"{0}\" must be absolute")]
    RelativeContainerPath(String),
    #[error(
        "attachment container path \"{0}\" must not be \"/\": mounting over the container's root hides the whole image"
    )]
    RootContainerPath(String),
    #[error("attachment container path \"{0}\" must not contain \"..\"")]
    DotDotContainerPath(String),
    #[error("{what} \"{value}\" must not contain \"{ch}\": it would be read as a mount option separator")]
    SeparatorInPath { what: &'static str, value: String, ch: char },
    #[error(
        "Storage path must be two valid paths divided by colon: \"{0}\" (use <host-dir|volume>:<container-dir>[:<options>])"
    )]
    NotTwoPaths(String),
    #[error(
        "host path \"{0}\" is relative; use an absolute path (such as one made with `berth storage:ensure-directory`) or a Docker volume name"
    )]
    RelativeHostPath(String),
    #[error(
        "host path \"{0}\" does not exist; add --create (and --chown <owner>) to make it, or mkdir it first (the engine would make it owned by root)"
    )]
    MissingHostPath(String),
    #[error("host path \"{0}\" exists but is not a directory or file")]
    OddHostPath(String),
    #[error(
        "unsupported mount option \"{0}\" (supported: ro, rw, z, Z, nocopy, shared, slave, private, rshared, rslave, rprivate, delegated, cached, consistent, noexec, nosuid, nodev)"
    )]
    UnknownMountOption(String),
    #[error("volume subpath \"{0}\" must be relative and must not contain \"..\"")]
    BadSubpath(String),
    #[error("Unsupported directory mode \"{0}\". Value must be a 3 or 4 digit octal mode, such as 0755")]
    BadMode(String),
    #[error(
        "storage entry \"{0}\" host path must be an absolute path (not \"/\", without \"..\") or a docker named volume token, got \"{1}\""
    )]
    BadEntryHostPath(String, String),
    #[error("unsupported reclaim policy \"{0}\" (supported: Retain, Delete)")]
    BadReclaimPolicy(String),
    #[error("storage entry name \"{0}\" is too long (max {MAX_NEW_ENTRY_NAME} characters)")]
    EntryNameTooLong(String),
    #[error("storage entry name \"{0}\" must not start with reserved prefix \"{RESERVED_ENTRY_PREFIX}\"")]
    ReservedEntryPrefix(String),
    #[error(
        "storage entry \"{name}\" already exists at {old}; re-creating it at {new} would move its data (destroy it and create it again, or omit the path)"
    )]
    EntryPathChange { name: String, old: String, new: String },
    #[error("No {0} key specified")]
    NoMetadataKey(&'static str),
    #[error("{kind} key \"{key}\" must be non-empty, without \"=\", spaces or control characters")]
    BadMetadataKey { kind: &'static str, key: String },
    #[error("expected key=value, got \"{0}\"")]
    NotKeyValue(String),
    #[error("Mount path already exists.")]
    MountExists,
    #[error("Mount path does not exist.")]
    NoSuchMount,
    #[error(
        "Container path {container_path} on app {app} is already mounted by {holder} for process type {process_type}; unmount it first"
    )]
    PathTaken { app: AppName, container_path: String, holder: Source, process_type: String },
    #[error("storage entry \"{name}\" is not mounted on app \"{app}\"")]
    EntryNotMounted { name: EntryName, app: AppName },
    #[error(
        "storage entry \"{name}\" is mounted at multiple paths on app \"{app}\" ({paths}); pass --container-dir to disambiguate"
    )]
    EntryMountedAtMany { name: EntryName, app: AppName, paths: String },
    #[error("storage entry \"{name}\" is not mounted at \"{target}\" on app \"{app}\"")]
    EntryNotMountedAt { name: EntryName, app: AppName, target: String },
    #[error(
        "the mount at {0} comes from the app's app.toml; remove it there and push, or it comes back on the next deploy"
    )]
    RepoMade(String),
    #[error(
        "{flag} is only supported when the storage entry uses the default host path ({default}); omit {flag} and manage {backing} manually"
    )]
    NotDefaultPath { flag: String, default: String, backing: String },
    #[error("storage entry \"{name}\" has unsupported scheduler \"{scheduler}\" (supported: {SCHEDULER})")]
    UnsupportedScheduler { name: EntryName, scheduler: String },
    #[error("storage entry path {0} exists but is not a directory")]
    EntryPathNotDir(String),
    #[error(
        "storage:set cannot change {0} in place; recreate the entry (berth has no {0}: entries are {SCHEDULER})"
    )]
    NotInPlace(String),
    #[error("storage entry \"{name}\" ({SCHEDULER}) does not accept {property}")]
    NotAccepted { name: EntryName, property: String },
    #[error(
        "Invalid property specified, valid properties include: chown, mode, reclaim-policy (not \"{0}\")"
    )]
    UnknownProperty(String),
    #[error(
        "storage entry \"{name}\" is still mounted by app(s): {apps}; unmount it first (berth storage:unmount <app> {name})"
    )]
    StillMounted { name: EntryName, apps: String },
}

/// Longest name `storage:create` gives a new entry (Dokku's budget; older entries still load).
pub const MAX_NEW_ENTRY_NAME: usize = 45;

/// Prefix Dokku keeps for the entries its migration makes; berth keeps it free too.
pub const RESERVED_ENTRY_PREFIX: &str = "legacy-";

/// Dokku's rules for a new entry's name, on top of the DNS label every entry name is.
pub fn check_new_entry_name(name: &EntryName) -> Result<(), StorageError> {
    if name.as_str().len() > MAX_NEW_ENTRY_NAME {
        return Err(StorageError::EntryNameTooLong(name.to_string()));
    }
    if name.as_str().starts_with(RESERVED_ENTRY_PREFIX) {
        return Err(StorageError::ReservedEntryPrefix(name.to_string()));
    }
    Ok(())
}

/// When a mount applies: while building (`[build].command`), to long-running processes, or to
/// one-off `berth run` containers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    Build,
    Deploy,
    Run,
}

impl Phase {
    pub const ALL: [Phase; 3] = [Phase::Build, Phase::Deploy, Phase::Run];

    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Build => "build",
            Phase::Deploy => "deploy",
            Phase::Run => "run",
        }
    }
}

impl FromStr for Phase {
    type Err = StorageError;
    fn from_str(s: &str) -> Result<Self, StorageError> {
        match s {
            "build" => Ok(Phase::Build),
            "deploy" => Ok(Phase::Deploy),
            "run" => Ok(Phase::Run),
            other => Err(StorageError::UnknownPhase(other.to_string())),
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Parses `--phase` values: each may be repeated and/or a comma list; empty means the default
/// (deploy and run). The result is sorted and free of repeats.
pub fn parse_phases(values: &[String]) -> Result<BTreeSet<Phase>, StorageError> {
    let mut phases = BTreeSet::new();
    for value in values.iter().flat_map(|v| v.split(',')) {
        let value = value.trim();
        if !value.is_empty() {
            phases.insert(value.parse()?);
        }
    }
    if phases.is_empty() {
        phases.extend([Phase::Deploy, Phase::Run]);
    }
    Ok(phases)
}

/// Who owns a directory berth creates: Dokku's presets or a numeric uid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Chown {
    Preset(Preset),
    /// Leave ownership alone.
    Skip,
    Uid(u32),
}

impl Chown {
    /// The uid (and gid) to chown to, or `None` to leave ownership alone.
    pub fn uid(self) -> Option<u32> {
        match self {
            Chown::Preset(preset) => Some(preset.uid()),
            Chown::Skip => None,
            Chown::Uid(uid) => Some(uid),
        }
    }
}

impl FromStr for Chown {
    type Err = StorageError;
    fn from_str(s: &str) -> Result<Self, StorageError> {
        let bad = || StorageError::BadChown(s.to_string());
        Ok(match s {
            "false" => Chown::Skip,
            // Dokku accepts this spelling too.
            "packeto" => Chown::Preset(Preset::Paketo),
            name => match Preset::named(name) {
                Some(preset) => Chown::Preset(preset),
                None => Chown::Uid(parse_id(s).map_err(|_| bad())?),
            },
        })
    }
}

impl TryFrom<String> for Chown {
    type Error = StorageError;
    fn try_from(s: String) -> Result<Self, StorageError> {
        s.parse()
    }
}

impl From<Chown> for String {
    fn from(chown: Chown) -> String {
        chown.to_string()
    }
}

impl fmt::Display for Chown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Chown::Preset(preset) => f.write_str(preset.name()),
            Chown::Skip => f.write_str("false"),
            Chown::Uid(uid) => write!(f, "{uid}"),
        }
    }
}

/// What an attachment mounts. Stored as `<kind>:<value>` so state files stay readable.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Source {
    /// A named storage entry (`berth storage:create`).
    Entry(EntryName),
    /// An absolute host path, bind-mounted as is.
    HostPath(PathBuf),
    /// An existing Docker volume, by its own name.
    Volume(String),
    /// A directory of the app: `$BERTH_ROOT/data/apps/<app>/<rel>`.
    AppDir(PathBuf),
    /// A volume of the app: Docker volume `<app>_<name>`, labelled with the app.
    AppVolume(String),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Entry(name) => write!(f, "entry:{name}"),
            Source::HostPath(path) => write!(f, "host:{}", path.display()),
            Source::Volume(name) => write!(f, "volume:{name}"),
            Source::AppDir(rel) => write!(f, "app-dir:{}", rel.display()),
            Source::AppVolume(name) => write!(f, "app-volume:{name}"),
        }
    }
}

impl TryFrom<String> for Source {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let (kind, value) = s.split_once(':').ok_or_else(|| format!("bad source \"{s}\""))?;
        match kind {
            "entry" => EntryName::new(value).map(Source::Entry).map_err(|e| e.to_string()),
            "host" => Ok(Source::HostPath(PathBuf::from(value))),
            "volume" => Ok(Source::Volume(value.to_string())),
            "app-dir" => Ok(Source::AppDir(PathBuf::from(value))),
            "app-volume" => Ok(Source::AppVolume(value.to_string())),
            _ => Err(format!("bad source kind \"{kind}\" in \"{s}\"")),
        }
    }
}

impl From<Source> for String {
    fn from(source: Source) -> String {
        source.to_string()
    }
}

/// Who made an attachment: the server admin (trusted) or the pushed `app.toml`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    #[default]
    Admin,
    Repo,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Origin::Admin => "admin",
            Origin::Repo => "repo",
        })
    }
}

/// How one app mounts one source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    pub source: Source,
    pub container_path: String,
    pub phases: BTreeSet<Phase>,
    #[serde(default = "default_process_type")]
    pub process_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subpath: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub readonly: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_options: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_chown: Option<Chown>,
    #[serde(default)]
    pub made_by: Origin,
}

fn default_process_type() -> String {
    DEFAULT_PROCESS_TYPE.to_string()
}

impl Attachment {
    /// Two attachments with the same identity are the same mount (re-mounting updates it).
    pub fn same_mount(&self, other: &Attachment) -> bool {
        self.source == other.source
            && self.container_path == other.container_path
            && self.process_type == other.process_type
    }

    /// The option suffix of the `-v` form: `ro` and the volume options, comma-joined.
    pub fn option_suffix(&self) -> Option<String> {
        let mut options: Vec<&str> = Vec::new();
        if self.readonly {
            options.push("ro");
        }
        if let Some(extra) = self.volume_options.as_deref().filter(|o| !o.is_empty()) {
            options.push(extra);
        }
        (!options.is_empty()).then(|| options.join(","))
    }

    pub fn applies_to(&self, phase: Phase, process_type: &str) -> bool {
        self.phases.contains(&phase)
            && (self.process_type == DEFAULT_PROCESS_TYPE || self.process_type == process_type)
    }
}

/// Where an attachment's data is on the host side, once resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountSource {
    Bind(PathBuf),
    Volume(String),
}

impl fmt::Display for MountSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MountSource::Bind(path) => write!(f, "{}", path.display()),
            MountSource::Volume(name) => f.write_str(name),
        }
    }
}

/// An attachment names a storage entry that no longer exists: the only source that can fail
/// to resolve, since every other one names its host side itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("storage entry \"{0}\" does not exist")]
pub struct MissingEntry(pub EntryName);

impl Attachment {
    /// Resolves the source against the app's storage directory and the entries.
    pub fn resolve(
        &self,
        app: &AppName,
        app_dir: &Path,
        entries: &BTreeMap<EntryName, Entry>,
    ) -> Result<MountSource, MissingEntry> {
        let base = self.resolve_base(app, app_dir, entries)?;
        Ok(match (base, &self.subpath) {
            (MountSource::Bind(path), Some(sub)) => MountSource::Bind(path.join(sub)),
            (base, _) => base,
        })
    }

    /// The source without the subpath: the entry's own path, which Dokku's reports and lists
    /// show as `host-path` (the subpath has a key of its own).
    pub fn resolve_base(
        &self,
        app: &AppName,
        app_dir: &Path,
        entries: &BTreeMap<EntryName, Entry>,
    ) -> Result<MountSource, MissingEntry> {
        Ok(match &self.source {
            Source::Entry(name) => {
                match &entries.get(name).ok_or_else(|| MissingEntry(name.clone()))?.host_path {
                    EntryBacking::Dir(path) => MountSource::Bind(path.clone()),
                    EntryBacking::Volume(volume) => MountSource::Volume(volume.clone()),
                }
            }
            Source::HostPath(path) => MountSource::Bind(path.clone()),
            Source::Volume(name) => MountSource::Volume(name.clone()),
            Source::AppDir(rel) => MountSource::Bind(app_dir.join(rel)),
            Source::AppVolume(name) => MountSource::Volume(app_volume_name(app, name)),
        })
    }

    /// The `-v host:container[:options]` form, for reports.
    pub fn volume_flag(&self, source: &MountSource) -> String {
        match self.option_suffix() {
            Some(options) => format!("-v {source}:{}:{options}", self.container_path),
            None => format!("-v {source}:{}", self.container_path),
        }
    }

    /// Two attachments that would put different data at one path of one container.
    pub fn collides_with(&self, other: &Attachment) -> bool {
        self.container_path == other.container_path
            && !self.phases.is_disjoint(&other.phases)
            && (self.process_type == other.process_type
                || self.process_type == DEFAULT_PROCESS_TYPE
                || other.process_type == DEFAULT_PROCESS_TYPE)
    }
}

/// Dokku's warning for a `--process-type`/`--process` the app does not declare (a typo, most
/// likely); the setting is recorded anyway, as Dokku does. `None` when it is declared, is the
/// default, or nothing is known yet.
pub fn undeclared_process_type(app: &AppName, process: &str, declared: Option<&[String]>) -> Option<String> {
    let declared = declared?;
    if process == DEFAULT_PROCESS_TYPE || declared.iter().any(|p| p == process) {
        return None;
    }
    Some(format!(
        "Process type \"{process}\" is not declared in the Procfile for {app}: its current release declares {}; recorded anyway",
        declared.join(", ")
    ))
}

/// Checks a process type name: letters, digits, `-` and `_`.
pub fn check_process_type(name: &str) -> Result<(), StorageError> {
    let valid = !name.is_empty()
        && name.len() <= 63
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if valid { Ok(()) } else { Err(StorageError::BadProcessType(name.to_string())) }
}

/// Mount options accepted after the second colon of the legacy form (Docker's `-v` options).
const MOUNT_OPTIONS: &[&str] = &[
    "ro",
    "rw",
    "z",
    "Z",
    "nocopy",
    "shared",
    "slave",
    "private",
    "rshared",
    "rslave",
    "rprivate",
    "delegated",
    "cached",
    "consistent",
    "noexec",
    "nosuid",
    "nodev",
];

/// The mount options that only take rights away. The engine's API has no way to set them on a
/// bind or volume mount; `nosuid` and `nodev` hold in every container berth makes anyway
/// (`no-new-privileges`, the engine's device cgroup and the dropped `MKNOD`), `noexec` does not.
pub const RESTRICTIVE_OPTIONS: [&str; 3] = ["noexec", "nosuid", "nodev"];

/// The warning for a restrictive option the engine cannot apply to a bind or volume mount:
/// `noexec` is recorded and shown but not enforced (`nosuid` and `nodev` hold anyway).
pub fn unenforced_option_warning(volume_options: Option<&str>) -> Option<String> {
    volume_options?.split(',').any(|o| o == "noexec").then(|| {
        "noexec is recorded, but the engine's API cannot make a mount noexec: files on it stay executable (nosuid and nodev hold in every berth container)".to_string()
    })
}

/// Splits `<opts>` of the legacy form into (readonly, other options), checking each.
pub fn parse_mount_options(options: &str) -> Result<(bool, Option<String>), StorageError> {
    let mut readonly = false;
    let mut rest = Vec::new();
    for option in options.split(',').filter(|o| !o.is_empty()) {
        if !MOUNT_OPTIONS.contains(&option) {
            return Err(StorageError::UnknownMountOption(option.to_string()));
        }
        match option {
            "ro" => readonly = true,
            "rw" => readonly = false,
            other => rest.push(other),
        }
    }
    Ok((readonly, (!rest.is_empty()).then(|| rest.join(","))))
}

/// Normalises and checks a container path: absolute, not `/`, no `..`, no `:` or `,`.
pub fn normalize_container_path(path: &str) -> Result<String, StorageError> {
    if !path.starts_with('/') {
        return Err(StorageError::RelativeContainerPath(path.to_string()));
    }
    check_no_separators("container path", path)?;
    let mut parts = Vec::new();
    for component in Path::new(path).components() {
        match component {
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir => return Err(StorageError::DotDotContainerPath(path.to_string())),
            Component::Normal(part) => parts.push(part.to_string_lossy().into_owned()),
            Component::Prefix(_) => return Err(StorageError::RelativeContainerPath(path.to_string())),
        }
    }
    if parts.is_empty() {
        return Err(StorageError::RootContainerPath(path.to_string()));
    }
    Ok(format!("/{}", parts.join("/")))
}

/// `:` and `,` would be read as separators by anything that renders `-v` or `--mount` strings.
pub fn check_no_separators(what: &'static str, value: &str) -> Result<(), StorageError> {
    match value.chars().find(|c| matches!(c, ':' | ',' | '\n' | '\0')) {
        Some(ch) => Err(StorageError::SeparatorInPath { what, value: value.to_string(), ch }),
        None => Ok(()),
    }
}

/// A relative path that stays below its base: no `..`, no root, not empty.
pub fn check_relative_subpath(subpath: &str) -> Result<PathBuf, StorageError> {
    let path = Path::new(subpath);
    let mut clean = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => clean.push(part),
            Component::CurDir => {}
            _ => return Err(StorageError::BadSubpath(subpath.to_string())),
        }
    }
    if clean.as_os_str().is_empty() || subpath.contains(['\0', ':', ',']) {
        return Err(StorageError::BadSubpath(subpath.to_string()));
    }
    Ok(clean)
}

/// The legacy `storage:mount <app> <host-dir|volume>:<container-dir>[:<opts>]` argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegacyMount {
    pub source: Source,
    pub container_path: String,
    pub readonly: bool,
    pub volume_options: Option<String>,
}

impl LegacyMount {
    /// Parses the colon form. Checks shape only; existence is the caller's business.
    pub fn parse(spec: &str) -> Result<Self, StorageError> {
        let mut parts = spec.splitn(3, ':');
        let (Some(host), Some(container)) = (parts.next(), parts.next()) else {
            return Err(StorageError::NotTwoPaths(spec.to_string()));
        };
        if host.is_empty() || container.is_empty() {
            return Err(StorageError::NotTwoPaths(spec.to_string()));
        }
        let source = if host.starts_with('/') {
            check_no_separators("host path", host)?;
            Source::HostPath(PathBuf::from(host))
        } else if is_docker_volume_name(host) {
            Source::Volume(host.to_string())
        } else {
            return Err(StorageError::RelativeHostPath(host.to_string()));
        };
        let container_path = normalize_container_path(container)?;
        let (readonly, volume_options) = parse_mount_options(parts.next().unwrap_or(""))?;
        Ok(LegacyMount { source, container_path, readonly, volume_options })
    }

    /// The admin attachment this mount is, for every process, in these phases.
    pub fn attachment(self, phases: BTreeSet<Phase>) -> Attachment {
        Attachment {
            source: self.source,
            container_path: self.container_path,
            phases,
            process_type: DEFAULT_PROCESS_TYPE.to_string(),
            subpath: None,
            readonly: self.readonly,
            volume_options: self.volume_options,
            volume_chown: None,
            made_by: Origin::Admin,
        }
    }
}

/// What happens to an entry's host directory when the entry is destroyed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum ReclaimPolicy {
    #[default]
    Retain,
    Delete,
}

impl FromStr for ReclaimPolicy {
    type Err = StorageError;
    fn from_str(s: &str) -> Result<Self, StorageError> {
        match s {
            "Retain" => Ok(ReclaimPolicy::Retain),
            "Delete" => Ok(ReclaimPolicy::Delete),
            other => Err(StorageError::BadReclaimPolicy(other.to_string())),
        }
    }
}

impl fmt::Display for ReclaimPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ReclaimPolicy::Retain => "Retain",
            ReclaimPolicy::Delete => "Delete",
        })
    }
}

/// A directory mode such as `0755`: 3 or 4 octal digits, stored with 4.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Mode(pub u32);

impl FromStr for Mode {
    type Err = StorageError;
    fn from_str(s: &str) -> Result<Self, StorageError> {
        let octal = (3..=4).contains(&s.len()) && s.bytes().all(|b| (b'0'..=b'7').contains(&b));
        match u32::from_str_radix(s, 8) {
            Ok(mode) if octal => Ok(Mode(mode)),
            _ => Err(StorageError::BadMode(s.to_string())),
        }
    }
}

impl TryFrom<String> for Mode {
    type Error = StorageError;
    fn try_from(s: String) -> Result<Self, StorageError> {
        s.parse()
    }
}

impl From<Mode> for String {
    fn from(mode: Mode) -> String {
        mode.to_string()
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04o}", self.0)
    }
}

/// Where an entry's data lives on docker-local: a host directory or a Docker volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum EntryBacking {
    Dir(PathBuf),
    Volume(String),
}

impl EntryBacking {
    pub fn parse(entry: &EntryName, value: &str) -> Result<Self, StorageError> {
        if value.starts_with('/') {
            check_no_separators("host path", value)?;
            // The same shape rules as a container path: absolute, not `/`, no `..`.
            let path = normalize_container_path(value)
                .map_err(|_| StorageError::BadEntryHostPath(entry.to_string(), value.to_string()))?;
            Ok(EntryBacking::Dir(PathBuf::from(path)))
        } else if is_docker_volume_name(value) {
            Ok(EntryBacking::Volume(value.to_string()))
        } else {
            Err(StorageError::BadEntryHostPath(entry.to_string(), value.to_string()))
        }
    }
}

impl TryFrom<String> for EntryBacking {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        if s.starts_with('/') {
            Ok(EntryBacking::Dir(PathBuf::from(s)))
        } else if is_docker_volume_name(&s) {
            Ok(EntryBacking::Volume(s))
        } else {
            Err(format!("host_path \"{s}\" is neither an absolute path nor a volume name"))
        }
    }
}

impl From<EntryBacking> for String {
    fn from(backing: EntryBacking) -> String {
        backing.to_string()
    }
}

impl fmt::Display for EntryBacking {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EntryBacking::Dir(path) => write!(f, "{}", path.display()),
            EntryBacking::Volume(name) => f.write_str(name),
        }
    }
}

/// A named storage entry, global across apps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub name: EntryName,
    pub scheduler: String,
    pub host_path: EntryBacking,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chown: Option<Chown>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<Mode>,
    #[serde(default)]
    pub reclaim_policy: ReclaimPolicy,
    /// Dokku's entry annotations: free metadata, shown by `storage:info`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Dokku's entry labels: also set as Docker labels on the volume berth makes for the entry.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

impl Entry {
    /// What re-creating the entry with `self`'s settings changes in `old`, one phrase each
    /// (`mode 0755 -> 0700`). A different host path is refused: it would move the data.
    pub fn changes_from(&self, old: &Entry) -> Result<Vec<String>, StorageError> {
        if self.host_path != old.host_path {
            return Err(StorageError::EntryPathChange {
                name: self.name.to_string(),
                old: old.host_path.to_string(),
                new: self.host_path.to_string(),
            });
        }
        let shown = |value: Option<String>| value.unwrap_or_else(|| "unset".to_string());
        let mut changes = Vec::new();
        let mut compare = |what: &str, before: String, after: String| {
            if before != after {
                changes.push(format!("{what} {before} -> {after}"));
            }
        };
        compare("chown", shown(old.chown.map(|c| c.to_string())), shown(self.chown.map(|c| c.to_string())));
        compare("mode", shown(old.mode.map(|m| m.to_string())), shown(self.mode.map(|m| m.to_string())));
        compare("reclaim-policy", old.reclaim_policy.to_string(), self.reclaim_policy.to_string());
        compare("annotations", format!("{:?}", old.annotations), format!("{:?}", self.annotations));
        compare("labels", format!("{:?}", old.labels), format!("{:?}", self.labels));
        Ok(changes)
    }
}

/// The scheduler berth runs on; entries record it as Dokku does.
pub const SCHEDULER: &str = "docker-local";

/// The volume driver a push may name without a grant.
pub const LOCAL_DRIVER: &str = "local";

/// A volume driver name: `[a-z0-9][a-z0-9._-]*`, at most 64 characters, without `..`. Never a
/// path: the engine looks an unknown driver up as a plugin socket or spec file named after it.
pub fn is_driver_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-'))
        && name.len() <= 64
        && !name.contains("..")
}

/// Names a Docker volume of an app: `<app>_<name>`.
pub fn app_volume_name(app: &AppName, name: &str) -> String {
    format!("{app}_{name}")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn chown_presets() {
        let cases = [
            ("herokuish", Some(32767)),
            ("heroku", Some(1000)),
            ("paketo", Some(2000)),
            ("packeto", Some(2000)),
            ("root", Some(0)),
            ("false", None),
            ("1234", Some(1234)),
            ("65535", Some(65535)),
        ];
        for (input, uid) in cases {
            assert_eq!(input.parse::<Chown>().unwrap().uid(), uid, "{input}");
        }
        for bad in ["", "65536", "-1", "bogus", "12a", "99999999999999"] {
            assert_eq!(bad.parse::<Chown>(), Err(StorageError::BadChown(bad.to_string())));
        }
    }

    #[test]
    fn phases() {
        let all = |v: &[&str]| parse_phases(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(all(&[]).unwrap(), BTreeSet::from([Phase::Deploy, Phase::Run]));
        assert_eq!(all(&["run,deploy", "run"]).unwrap(), BTreeSet::from([Phase::Deploy, Phase::Run]));
        assert_eq!(all(&["sometimes"]), Err(StorageError::UnknownPhase("sometimes".into())));
    }

    #[test]
    fn container_paths() {
        assert_eq!(normalize_container_path("/app//storage/./x/").unwrap(), "/app/storage/x");
        assert!(matches!(normalize_container_path("data"), Err(StorageError::RelativeContainerPath(_))));
        assert!(matches!(normalize_container_path("/"), Err(StorageError::RootContainerPath(_))));
        assert!(matches!(normalize_container_path("//./"), Err(StorageError::RootContainerPath(_))));
        assert!(matches!(normalize_container_path("/a/../etc"), Err(StorageError::DotDotContainerPath(_))));
        assert!(matches!(normalize_container_path("/a,ro"), Err(StorageError::SeparatorInPath { .. })));
    }

    #[test]
    fn legacy_form() {
        let mount = LegacyMount::parse("/srv/data:/app/storage:ro,Z").unwrap();
        assert_eq!(mount.source, Source::HostPath("/srv/data".into()));
        assert_eq!(mount.container_path, "/app/storage");
        assert!(mount.readonly);
        assert_eq!(mount.volume_options.as_deref(), Some("Z"));
        let volume = LegacyMount::parse("pgdata:/data").unwrap();
        assert_eq!(volume.source, Source::Volume("pgdata".into()));
        assert!(matches!(LegacyMount::parse("./data:/x"), Err(StorageError::RelativeHostPath(_))));
        assert!(matches!(LegacyMount::parse("/host"), Err(StorageError::NotTwoPaths(_))));
        assert!(matches!(LegacyMount::parse("/h::/x"), Err(StorageError::NotTwoPaths(_))));
        assert!(matches!(LegacyMount::parse("/h:x"), Err(StorageError::RelativeContainerPath(_))));
        assert!(matches!(LegacyMount::parse("/h:/x:bogus"), Err(StorageError::UnknownMountOption(_))));
    }

    #[test]
    fn source_round_trip() {
        for source in [
            Source::Entry(EntryName::new("data").unwrap()),
            Source::HostPath("/srv/x".into()),
            Source::Volume("pg".into()),
            Source::AppDir("uploads/a".into()),
            Source::AppVolume("cache".into()),
        ] {
            assert_eq!(Source::try_from(source.to_string()).unwrap(), source);
        }
    }

    #[test]
    fn entry_backings() {
        let name = EntryName::new("data").unwrap();
        assert_eq!(EntryBacking::parse(&name, "/srv//data/").unwrap(), EntryBacking::Dir("/srv/data".into()));
        assert_eq!(EntryBacking::parse(&name, "pgdata").unwrap(), EntryBacking::Volume("pgdata".into()));
        for bad in ["/", "/srv/../etc", "rel/path", "/a:b", "x"] {
            assert!(EntryBacking::parse(&name, bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn driver_names_are_never_paths() {
        for good in ["local", "sshfs", "rexray.ebs", "my_driver-2"] {
            assert!(is_driver_name(good), "{good}");
        }
        for bad in ["", "../../x", "/run/x", "a/b", "x..y", ".hidden", "Local", "vieux/sshfs:latest", "a b"] {
            assert!(!is_driver_name(bad), "{bad}");
        }
        assert!(!is_driver_name(&"a".repeat(65)));
    }

    #[test]
    fn modes() {
        assert_eq!("750".parse::<Mode>().unwrap().to_string(), "0750");
        for bad in ["0888", "7", "07777", "abc"] {
            assert!(bad.parse::<Mode>().is_err(), "{bad}");
        }
    }

    #[test]
    fn subpaths() {
        assert_eq!(check_relative_subpath("a/./b").unwrap(), PathBuf::from("a/b"));
        for bad in ["", "/a", "a/../..", "..", "./"] {
            assert!(check_relative_subpath(bad).is_err(), "{bad}");
        }
    }
}
