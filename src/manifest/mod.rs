//! `app.toml`: parse and validate what a pushed repo declares (user, build, web, processes and
//! storage mounts) into typed values, or into diagnostics that point at `app.toml:line:column`
//! with a hint. Pure: bytes in, values or diagnostics out; no filesystem, engine or git.
//!
//! The contract is the `app.toml` reference. Where it is silent, this module decides:
//!
//! - **Input.** Files over 1 MiB are refused before parsing. A UTF-8 byte order mark is accepted
//!   and skipped (Windows editors write one). Bytes that are not UTF-8 are refused at the first
//!   bad byte. Inputs that nest tables, arrays and dotted keys more than [`MAX_DEPTH`] levels are
//!   refused before the TOML parser sees them (the parser has its own limit too).
//! - **Positions.** Lines and columns are 1-based; a column counts characters (not bytes), so a
//!   tab or an `é` is one column. The byte order mark is not counted.
//! - **All at once.** Syntax errors stop the check (reported all together, since a recovered
//!   document would give misleading follow-up errors). Otherwise every problem is reported:
//!   types, unknown keys, value rules, cross-field rules and, in [`check`], the admin's grants.
//!   At most [`MAX_DIAGNOSTICS`] are returned, sorted by position; the last one then says how
//!   many were left out.
//! - **Limits.** At most [`MAX_MOUNTS`] mounts and [`MAX_PROCESSES`] process types.
//! - **`[env]` and `[build].env_keys`.** Keys follow the config rule ([`crate::config::key`]):
//!   `[A-Za-z_][A-Za-z0-9_]*`, not `BERTH_*`, not `PORT`. `[env]` values are strings (quote
//!   numbers: `WORKERS = "4"`) without NUL. `env_keys` repeated are kept once.
//! - **`[scale]`.** Process types `app.toml` declares (or `web`), counts from 0 to
//!   [`crate::scale::MAX_SCALE`]; a process with an `exclusive` mount may not be above 1.
//! - **`[app].user`.** A string `"uid"`, `"uid:gid"` or a preset, or an integer uid. Ids go from
//!   0 to 65535, like `storage:ensure-directory --chown`. Presets set the gid to the uid (Dokku
//!   chowns `32767:32767`). User names are refused: they mean nothing until the image runs.
//! - **`[web]`.** `port` defaults to 5000 (Dokku's `PORT`). `[web]` is an error when
//!   `[processes]` declares processes but no `web`.
//! - **Seconds.** `[app].stop_timeout`, `[web].drain_seconds` and `[web].hold_seconds` are
//!   integers from 0 to [`MAX_SECONDS`]; their defaults are the server's (see the deploy).
//! - **Mount paths** (sources and targets) must be printable ASCII without `:`, `,`, `=`, `\`,
//!   percent-encoded sequences (`%2e`), or spaces at the start or end of the path or of any of
//!   its names (`.. `); at most 4096 bytes, 255 per component. `..` is refused in every
//!   spelling, even when it would stay inside. App volume names may be one character long (the
//!   Docker volume is `<app>_<name>`); external volume names follow Docker's rule (two
//!   characters or more).
//! - **Volume drivers.** A driver is a plain name (`[a-z0-9][a-z0-9._-]*`, no `..`), never a
//!   path: the engine looks unknown drivers up as plugin sockets named after them. With the
//!   local driver (the default), `driver_opts` may not mount anything of the server: `type` must
//!   be `tmpfs`, `nfs`, `nfs4` or `cifs`, and `o` may not hold `bind` or `rbind` (with them
//!   `device` is a host path). Any other driver must be granted by the admin
//!   (`storage:allow <app> driver:<name>`), and its options are passed as written.
//! - **Phases and processes.** `phases = []` and `processes = []` are errors (omit the key for
//!   the default). A mount with the `build` phase cannot name processes: the build command is not
//!   a process. Targets under `/proc`, `/sys` and `/dev` are refused.
//! - **Short form.** `"source:target[:ro|rw]"`; only `ro` and `rw` are accepted as options.
//! - **Admin mounts.** [`validate`] and [`check`] ignore attachments in `admin_mounts` made by
//!   the repo (`Origin::Repo`): they are the previous deploy's, which this `app.toml` replaces.
//! - **Grants.** A host path is allowed at or below a granted path, compared by components.
//!   Grants that are not absolute or contain `..` grant nothing. `/` is never a valid source.
//! - **Nested bind sources.** With the server's facts ([`Server`]), a directory or host path
//!   that lies strictly below one that some container mounts writable (or one of this file's
//!   read-write mounts lying above another bind source) is refused: see
//!   [`crate::storage::binds`]. Compared as written; symlinks are resolved when containers are
//!   created.

mod decode;
mod rules;
mod text;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use crate::names::AppName;
use crate::storage::binds::Bind;
use crate::storage::{Attachment, DEFAULT_PROCESS_TYPE, LOCAL_DRIVER, Origin, Phase, Source};
pub use crate::user::AppUser;

/// The file name diagnostics are reported against.
pub const FILE_NAME: &str = "app.toml";
/// Largest `app.toml` accepted, in bytes.
pub const MAX_BYTES: usize = 1 << 20;
/// Deepest nesting of tables, arrays and dotted keys accepted.
pub const MAX_DEPTH: usize = 32;
/// Most mounts one `app.toml` may declare.
pub const MAX_MOUNTS: usize = 128;
/// Most process types one `app.toml` may declare.
pub const MAX_PROCESSES: usize = 64;
/// Most diagnostics returned at once.
pub const MAX_DIAGNOSTICS: usize = 100;
/// `[web].port` when `[web]` does not set one.
pub const DEFAULT_WEB_PORT: u16 = 5000;
/// Largest `[app].stop_timeout`, `[web].drain_seconds` and `[web].hold_seconds`.
pub const MAX_SECONDS: u32 = 3600;
/// `[build].dockerfile` when `app.toml` does not set one.
pub const DEFAULT_DOCKERFILE: &str = "Dockerfile";

/// A 1-based position in `app.toml`; the column counts characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Pos {
    pub line: usize,
    pub column: usize,
}

/// One problem in `app.toml`, with where it is and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub line: usize,
    pub column: usize,
    pub message: String,
    pub hint: Option<String>,
}

impl Diagnostic {
    pub fn new(at: Pos, message: impl Into<String>, hint: Option<String>) -> Self {
        Diagnostic { line: at.line, column: at.column, message: message.into(), hint }
    }

    pub fn pos(&self) -> Pos {
        Pos { line: self.line, column: self.column }
    }
}

impl fmt::Display for Diagnostic {
    /// `app.toml:14:10: message`, then `  hint: ...` on a second line when there is a hint.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{FILE_NAME}:{}:{}: {}", self.line, self.column, self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, "\n  hint: {hint}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostic {}

/// `[build]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Build {
    /// Path of the Dockerfile in the repo, relative and normalised (`docker/Dockerfile`).
    pub dockerfile: String,
    /// Runs in the built image with the build-phase mounts; its changes are committed.
    pub command: Option<String>,
    /// Config keys the Docker build gets as build args (`ARG KEY` in the Dockerfile).
    pub env_keys: Vec<String>,
}

impl Default for Build {
    fn default() -> Self {
        Build { dockerfile: DEFAULT_DOCKERFILE.to_string(), command: None, env_keys: Vec::new() }
    }
}

/// One entry of `[scale]`: how many instances of a process type the repo asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scale {
    pub count: u32,
    /// Where the entry's key is.
    pub at: Pos,
}

/// `[web]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Web {
    pub port: u16,
    /// An HTTP path starting with `/` that must answer 2xx before the swap.
    pub healthcheck: Option<String>,
    /// `drain_seconds`: how long the old instance may finish its requests after the switch.
    pub drain_seconds: Option<u32>,
    /// `hold_seconds`: how long the proxy holds a request while no instance answers.
    pub hold_seconds: Option<u32>,
}

impl Web {
    /// `[web]` with only its port set.
    pub fn on_port(port: u16) -> Web {
        Web { port, healthcheck: None, drain_seconds: None, hold_seconds: None }
    }
}

/// A parsed `app.toml`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Manifest {
    pub user: Option<AppUser>,
    /// `[app].stop_timeout`: seconds a container gets between SIGTERM and SIGKILL.
    pub stop_timeout: Option<u32>,
    pub build: Build,
    pub web: Option<Web>,
    /// `[processes]`: process type to command. Empty means one `web` process with the image CMD.
    pub processes: BTreeMap<String, String>,
    pub mounts: Vec<DeclaredMount>,
    /// `[storage].allow_shadowed_volumes`: a mount may sit above a path the image declares with
    /// `VOLUME` (which then stays an anonymous volume hidden under the mount).
    pub allow_shadowed_volumes: bool,
    /// `[env]`: non-secret defaults of the app's environment; the admin's config wins.
    pub env: BTreeMap<String, String>,
    /// `[scale]`: instances per process type; the admin's `ps:scale` wins.
    pub scale: BTreeMap<String, Scale>,
}

impl Manifest {
    /// The declared process types, or `["web"]` when `[processes]` declares none.
    pub fn process_types(&self) -> Vec<String> {
        if self.processes.is_empty() {
            vec!["web".to_string()]
        } else {
            self.processes.keys().cloned().collect()
        }
    }

    /// Every mount as attachments made by the repo.
    pub fn attachments(&self) -> Vec<Attachment> {
        self.mounts.iter().flat_map(DeclaredMount::attachments).collect()
    }
}

/// Where the fields of a mount are in `app.toml`. A field that is not written points at the
/// mount itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MountPositions {
    pub source: Pos,
    pub target: Pos,
    pub phases: Pos,
    pub processes: Pos,
    pub driver: Pos,
}

/// One mount declared in `[[storage.mounts]]` (or the short form).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeclaredMount {
    pub source: Source,
    /// Absolute and normalised.
    pub target: String,
    pub phases: BTreeSet<Phase>,
    pub read_only: bool,
    /// Process types it applies to; empty means every process type.
    pub processes: Vec<String>,
    /// Docker volume driver of an app volume; `None` means `local`.
    pub driver: Option<String>,
    pub driver_opts: BTreeMap<String, String>,
    /// Single-writer data: stop the old container before starting the new one.
    pub exclusive: bool,
    /// Where the mount starts: its `[[storage.mounts]]` header, inline table or string.
    pub line: usize,
    pub column: usize,
    pub at: MountPositions,
}

impl DeclaredMount {
    pub fn pos(&self) -> Pos {
        Pos { line: self.line, column: self.column }
    }

    /// `source -> target (app.toml line N)`, for messages about the mount.
    pub fn describe(&self) -> String {
        format!("{} -> {} ({FILE_NAME} line {})", self.source, self.target, self.line)
    }

    /// Whether the mount is single-writer data of `process`.
    pub fn is_exclusive_for(&self, process: &str) -> bool {
        self.exclusive && (self.processes.is_empty() || self.processes.iter().any(|p| p == process))
    }

    /// One attachment per process type named (or one for every process type).
    pub fn attachments(&self) -> Vec<Attachment> {
        let attachment = |process_type: &str| Attachment {
            source: self.source.clone(),
            container_path: self.target.clone(),
            phases: self.phases.clone(),
            process_type: process_type.to_string(),
            subpath: None,
            readonly: self.read_only,
            volume_options: None,
            volume_chown: None,
            made_by: Origin::Repo,
        };
        if self.processes.is_empty() {
            vec![attachment(DEFAULT_PROCESS_TYPE)]
        } else {
            self.processes.iter().map(|p| attachment(p)).collect()
        }
    }
}

/// What the admin allowed this app's `app.toml` to reach beyond its own directories and
/// volumes (the app's grants and the server-wide ones together), and what else the server
/// mounts.
#[derive(Debug, Clone, Copy, Default)]
pub struct Policy<'a> {
    /// A host path may be mounted at or below one of these.
    pub host_paths: &'a [PathBuf],
    /// External Docker volumes that may be mounted.
    pub volumes: &'a [String],
    /// Volume drivers other than `local` that app volumes may name.
    pub drivers: &'a [String],
    /// The server's bind sources, for the mount-source rule; `None` leaves it unchecked.
    pub server: Option<Server<'a>>,
}

/// Where this app's directories are and every other bind source on the server: other apps'
/// mounts, this app's admin mounts, and the mounts of the release serving now (its containers
/// run until the new ones are healthy).
#[derive(Debug, Clone, Copy)]
pub struct Server<'a> {
    pub app: &'a AppName,
    pub app_dir: &'a Path,
    pub binds: &'a [Bind],
}

impl Policy<'_> {
    /// Whether a source `app.toml` declares is within the grants: a host path at or below a
    /// granted one, an external volume granted by name; the app's own directories and volumes
    /// always.
    pub fn allows(&self, source: &Source) -> bool {
        match source {
            Source::HostPath(path) => self
                .host_paths
                .iter()
                .filter_map(|g| rules::clean_grant(g))
                .any(|grant| rules::allowed_below(path, &grant)),
            Source::Volume(name) => self.volumes.contains(name),
            Source::AppDir(_) | Source::AppVolume(_) => true,
            Source::Entry(_) => false,
        }
    }

    /// Whether app volumes may use this driver: `local`, or one the admin granted.
    pub fn allows_driver(&self, driver: &str) -> bool {
        driver == LOCAL_DRIVER || self.drivers.iter().any(|granted| granted == driver)
    }
}

/// Parses `app.toml`: syntax, types, unknown keys, value rules and the rules between fields of
/// the file. Grants and admin mounts are [`validate`]'s business (or use [`check`]).
pub fn parse(bytes: &[u8]) -> Result<Manifest, Vec<Diagnostic>> {
    let (manifest, diagnostics) = decode::parse_partial(bytes)?;
    if diagnostics.is_empty() { Ok(manifest) } else { Err(finish(diagnostics)) }
}

/// Checks a manifest against the admin's grants and mounts, and the rules between its mounts
/// (processes named, build phase with a build command, targets unique per process and phase).
/// Empty when all is well.
pub fn validate(manifest: &Manifest, policy: &Policy, admin_mounts: &[Attachment]) -> Vec<Diagnostic> {
    let mut diagnostics = rules::mount_rules(manifest, rules::Known::ALL);
    diagnostics.extend(rules::policy_rules(manifest, policy, admin_mounts));
    finish(diagnostics)
}

/// Parses and validates in one go, reporting every problem at once: what pre-receive calls.
pub fn check(
    bytes: &[u8],
    policy: &Policy,
    admin_mounts: &[Attachment],
) -> Result<Manifest, Vec<Diagnostic>> {
    let (manifest, mut diagnostics) = decode::parse_partial(bytes)?;
    diagnostics.extend(rules::policy_rules(&manifest, policy, admin_mounts));
    if diagnostics.is_empty() { Ok(manifest) } else { Err(finish(diagnostics)) }
}

/// The problem with an `app.toml` of `size` bytes, more than [`MAX_BYTES`]. pre-receive reports
/// it from the size git gives, without reading the file.
pub fn too_large(size: usize) -> Diagnostic {
    Diagnostic::new(
        Pos { line: 1, column: 1 },
        format!("{FILE_NAME} is {size} bytes, more than the limit of {MAX_BYTES} bytes (1 MiB)"),
        Some("app.toml declares settings, not data: keep it small".to_string()),
    )
}

/// Sorts by position, drops repeats and caps the count.
fn finish(mut diagnostics: Vec<Diagnostic>) -> Vec<Diagnostic> {
    diagnostics.sort_by(|a, b| {
        (a.line, a.column, &a.message, &a.hint).cmp(&(b.line, b.column, &b.message, &b.hint))
    });
    diagnostics.dedup();
    if diagnostics.len() > MAX_DIAGNOSTICS {
        let left_out = diagnostics.len() - (MAX_DIAGNOSTICS - 1);
        diagnostics.truncate(MAX_DIAGNOSTICS - 1);
        let at = diagnostics.last().map(Diagnostic::pos).unwrap_or(Pos { line: 1, column: 1 });
        diagnostics.push(Diagnostic::new(
            at,
            format!("{left_out} more problems are not shown"),
            Some("fix the ones above and push again".to_string()),
        ));
    }
    diagnostics
}
