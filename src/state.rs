//! Everything berth remembers, as plain TOML files under `BERTH_ROOT`: one state file per app
//! (mounts, docker-options, grants), one file per storage entry, and the admin's `berth.toml`.
//! Writes are atomic (temp file, fsync, rename, fsync dir) and made under a lock, so a crash
//! leaves the old or the new file, never a torn one, and concurrent commands never lose a write.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::docker_options::OptionsKey;
use crate::manifest::Policy;
use crate::names::{AppName, EntryName};
use crate::output::Reporter;
use crate::proxy::{Domain, ProxySettings};
use crate::scheduler::selection::{SchedulerKind, SchedulerSettings, SwarmSettings};
use crate::storage::binds::Bind;
use crate::storage::{Attachment, Entry};

pub const DEFAULT_ROOT: &str = "/var/lib/berth";

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("{action} {path}: {source}")]
    Io { action: &'static str, path: PathBuf, source: io::Error },
    #[error("{path} is not valid berth state: {message}; fix or restore the file")]
    Corrupt { path: PathBuf, message: String },
    #[error("App {0} does not exist")]
    NoSuchApp(AppName),
    #[error("Name is already taken: app {0} exists")]
    AppExists(AppName),
    #[error("storage entry \"{0}\" does not exist; create it first with `berth storage:create`")]
    NoSuchEntry(EntryName),
}

impl StateError {
    pub fn io(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> StateError + use<> {
        let path = path.to_path_buf();
        move |source| StateError::Io { action, path, source }
    }
}

/// Mode of `BERTH_ROOT/data`: see [`Root::make_data_root`].
const DATA_ROOT_MODE: u32 = 0o700;

/// The layout of `BERTH_ROOT`.
#[derive(Debug, Clone)]
pub struct Root {
    path: PathBuf,
}

impl Root {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Root { path: path.into() }
    }

    /// `BERTH_ROOT` from the environment, else the default.
    pub fn from_env() -> Self {
        Root::new(std::env::var_os("BERTH_ROOT").map_or_else(|| PathBuf::from(DEFAULT_ROOT), PathBuf::from))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn settings_file(&self) -> PathBuf {
        self.path.join("berth.toml")
    }

    pub fn apps_dir(&self) -> PathBuf {
        self.path.join("apps")
    }

    pub fn app_dir(&self, app: &AppName) -> PathBuf {
        self.apps_dir().join(app.as_str())
    }

    pub fn app_state_file(&self, app: &AppName) -> PathBuf {
        self.app_dir(app).join("state.toml")
    }

    /// The app's config (`config:set`): secrets, mode 0600. Goes with the app's state.
    pub fn app_config_file(&self, app: &AppName) -> PathBuf {
        self.app_dir(app).join("config.toml")
    }

    /// The server-wide config every app inherits (`config:set --global`), mode 0600.
    pub fn global_config_file(&self) -> PathBuf {
        self.path.join("config.toml")
    }

    /// The proxy's home: its config file, admin socket, certificates and log.
    pub fn proxy_dir(&self) -> PathBuf {
        self.path.join("proxy")
    }

    /// The proxy's whole config as berth last rendered it; the proxy is started with it.
    pub fn proxy_config_file(&self) -> PathBuf {
        self.proxy_dir().join("caddy.json")
    }

    /// The global domains (`domains:set-global`): every app answers at `<app>.<domain>`.
    pub fn global_domains_file(&self) -> PathBuf {
        self.path.join("global-domains.toml")
    }

    pub fn read_global_domains(&self) -> Result<GlobalDomains, StateError> {
        Ok(read_toml(&self.global_domains_file())?.unwrap_or_default())
    }

    /// Writes the global domains; the caller holds the proxy lock.
    pub fn write_global_domains(&self, domains: &GlobalDomains, _lock: &Lock) -> Result<(), StateError> {
        write_toml(&self.global_domains_file(), domains)
    }

    /// Takes the lock of the routing table: every app's domains and the proxy's config. Taken
    /// after an app's lock, never before.
    pub fn lock_proxy(&self) -> Result<Lock, StateError> {
        Lock::exclusive(&self.locks_dir().join("proxy.lock"), || {})
    }

    pub fn repos_dir(&self) -> PathBuf {
        self.path.join("repos")
    }

    pub fn repo_dir(&self, app: &AppName) -> PathBuf {
        self.repos_dir().join(format!("{app}.git"))
    }

    /// Makes `BERTH_ROOT/data` (or converges it) to mode 0700, owned as [`make_dir`] makes it:
    /// other host users cannot traverse into app data, so a set-uid file or device node an
    /// app plants there is out of their reach. The engine (root) still binds below it.
    pub fn make_data_root(&self) -> Result<(), StateError> {
        let data = self.path.join("data");
        make_dir(&data)?;
        let meta = fs::symlink_metadata(&data).map_err(StateError::io("inspect", &data))?;
        if meta.mode() & 0o7777 != DATA_ROOT_MODE {
            fs::set_permissions(&data, fs::Permissions::from_mode(DATA_ROOT_MODE))
                .map_err(StateError::io("change the mode of", &data))?;
        }
        Ok(())
    }

    /// Where app directories and entries' default directories live.
    pub fn storage_root(&self) -> PathBuf {
        self.path.join("data").join("storage")
    }

    /// Where an app's directories (`./name` in app.toml) live. Apart from the storage root,
    /// so that no entry or ensured directory can share a path with an app's data.
    pub fn app_storage_dir(&self, app: &AppName) -> PathBuf {
        self.path.join("data").join("apps").join(app.as_str())
    }

    pub fn entries_dir(&self) -> PathBuf {
        self.path.join("entries")
    }

    pub fn entry_file(&self, name: &EntryName) -> PathBuf {
        self.entries_dir().join(format!("{name}.toml"))
    }

    /// The default host directory of an entry.
    pub fn entry_default_dir(&self, name: &EntryName) -> PathBuf {
        self.storage_root().join(name.as_str())
    }

    fn locks_dir(&self) -> PathBuf {
        self.path.join("locks")
    }

    /// Takes the app's lock; it is held until the guard drops. Lock files live apart from the
    /// app's directory so that destroying and re-creating an app is serialised too.
    pub fn lock_app(&self, app: &AppName) -> Result<Lock, StateError> {
        Lock::exclusive(&self.locks_dir().join(format!("app-{app}.lock")), || {})
    }

    /// Takes the app's lock, calling `on_wait` first when someone else holds it (a deploy in
    /// progress), so the waiting user is told why nothing happens.
    pub fn lock_app_or_wait(&self, app: &AppName, on_wait: impl FnOnce()) -> Result<Lock, StateError> {
        Lock::exclusive(&self.locks_dir().join(format!("app-{app}.lock")), on_wait)
    }

    /// Takes a lock of its own for one named record (such as the SSH keys).
    pub fn lock_named(&self, name: &str) -> Result<Lock, StateError> {
        Lock::exclusive(&self.locks_dir().join(format!("{name}.lock")), || {})
    }

    /// Takes the lock of the entry registry (entries and who mounts them).
    pub fn lock_entries(&self) -> Result<Lock, StateError> {
        Lock::exclusive(&self.locks_dir().join("entries.lock"), || {})
    }

    pub fn app_exists(&self, app: &AppName) -> bool {
        self.app_state_file(app).is_file()
    }

    /// Every app, sorted by name. Directories whose names are not app names are ignored.
    pub fn list_apps(&self) -> Result<Vec<AppName>, StateError> {
        let mut apps: Vec<AppName> = list_dir_names(&self.apps_dir())?
            .into_iter()
            .filter_map(|name| AppName::new(&name).ok())
            .filter(|app| self.app_exists(app))
            .collect();
        apps.sort();
        Ok(apps)
    }

    pub fn read_app(&self, app: &AppName) -> Result<AppState, StateError> {
        let path = self.app_state_file(app);
        read_toml(&path)?.ok_or_else(|| StateError::NoSuchApp(app.clone()))
    }

    /// Creates the app's state; the caller holds the app's lock.
    pub fn create_app(&self, app: &AppName, _lock: &Lock) -> Result<AppState, StateError> {
        if self.app_exists(app) {
            return Err(StateError::AppExists(app.clone()));
        }
        let state = AppState { created_at: unix_now(), ..AppState::default() };
        write_toml(&self.app_state_file(app), &state)?;
        Ok(state)
    }

    /// Writes the app's state; the caller holds the app's lock.
    pub fn write_app(&self, app: &AppName, state: &AppState, _lock: &Lock) -> Result<(), StateError> {
        write_toml(&self.app_state_file(app), state)
    }

    /// Reads, changes and writes the app's state under its lock. Nothing is written when `change`
    /// fails or leaves the state as it was.
    pub fn update_app<T, E>(
        &self,
        app: &AppName,
        change: impl FnOnce(&mut AppState) -> Result<T, E>,
    ) -> Result<T, E>
    where
        E: From<StateError>,
    {
        let lock = self.lock_app(app)?;
        let before = self.read_app(app)?;
        let mut after = before.clone();
        let value = change(&mut after)?;
        if after != before {
            self.write_app(app, &after, &lock)?;
        }
        Ok(value)
    }

    pub fn read_entry(&self, name: &EntryName) -> Result<Entry, StateError> {
        read_toml(&self.entry_file(name))?.ok_or_else(|| StateError::NoSuchEntry(name.clone()))
    }

    pub fn entry_exists(&self, name: &EntryName) -> bool {
        self.entry_file(name).is_file()
    }

    /// Writes an entry; the caller holds the entries lock.
    pub fn write_entry(&self, entry: &Entry, _lock: &Lock) -> Result<(), StateError> {
        write_toml(&self.entry_file(&entry.name), entry)
    }

    /// Removes an entry's record; the caller holds the entries lock.
    pub fn remove_entry(&self, name: &EntryName, _lock: &Lock) -> Result<(), StateError> {
        let path = self.entry_file(name);
        fs::remove_file(&path).map_err(StateError::io("remove", &path))?;
        sync_parent(&path)
    }

    /// Every entry, sorted by name.
    pub fn list_entries(&self) -> Result<Vec<Entry>, StateError> {
        let mut names: Vec<EntryName> = list_dir_names(&self.entries_dir())?
            .into_iter()
            .filter_map(|file| file.strip_suffix(".toml").and_then(|n| EntryName::new(n).ok()))
            .collect();
        names.sort();
        names.iter().map(|name| self.read_entry(name)).collect()
    }

    /// Every entry by name, for resolving attachments.
    pub fn entries_by_name(&self) -> Result<BTreeMap<EntryName, Entry>, StateError> {
        Ok(self.list_entries()?.into_iter().map(|e| (e.name.clone(), e)).collect())
    }

    /// Takes the app's lock for a deploy-like change, telling the user when another holds it.
    pub fn lock_app_announced(&self, app: &AppName, out: &Reporter) -> Result<Lock, StateError> {
        self.lock_app_or_wait(app, || out.step(format!("Waiting for another deploy of {app} to finish")))
    }

    /// The apps that mount an entry, sorted.
    pub fn apps_mounting(&self, name: &EntryName) -> Result<Vec<AppName>, StateError> {
        let mut apps = Vec::new();
        for app in self.list_apps()? {
            let state = self.read_app(&app)?;
            if state.mounts.iter().any(|m| m.source == crate::storage::Source::Entry(name.clone())) {
                apps.push(app);
            }
        }
        Ok(apps)
    }

    /// An app's grants together with the server-wide ones: what its `app.toml` may reach today.
    pub fn grants_of(&self, app: &AppName) -> Result<Grants, StateError> {
        Ok(self.read_app(app)?.allowed.with(&self.read_settings()?.allowed))
    }

    /// The bind sources of every other app's containers (their recorded mounts), for the
    /// mount-source rule.
    pub fn other_apps_binds(
        &self,
        app: &AppName,
        entries: &BTreeMap<EntryName, Entry>,
    ) -> Result<Vec<Bind>, StateError> {
        let mut binds = Vec::new();
        for other in self.list_apps()?.iter().filter(|other| *other != app) {
            binds.extend(Bind::all(
                other,
                &self.app_storage_dir(other),
                &self.read_app(other)?.mounts,
                entries,
            ));
        }
        Ok(binds)
    }

    /// The admin's server settings; defaults when the file is absent.
    pub fn read_settings(&self) -> Result<Settings, StateError> {
        Ok(read_toml(&self.settings_file())?.unwrap_or_default())
    }

    /// Removes the app's state directory (not its storage). The caller holds the app's lock.
    pub fn remove_app_state(&self, app: &AppName, _lock: &Lock) -> Result<(), StateError> {
        let dir = self.app_dir(app);
        // The state file goes first, so an interrupted removal leaves no half-present app.
        let file = self.app_state_file(app);
        fs::remove_file(&file).map_err(StateError::io("remove", &file))?;
        sync_parent(&file)?;
        fs::remove_dir_all(&dir).map_err(StateError::io("remove", &dir))
    }
}

/// State of one app.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppState {
    /// Seconds since the Unix epoch.
    pub created_at: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deploy_branch: Option<String>,
    /// What the app's `app.toml` may reach beyond its own directories and volumes.
    #[serde(default)]
    pub allowed: Grants,
    /// docker-options per process type and phase (stored as `<process type>.<phase>`), in the
    /// order the admin added them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub docker_options: BTreeMap<OptionsKey, Vec<String>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mounts: Vec<Attachment>,
    /// The release serving now, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_release: Option<u32>,
    /// Mounts a push removed from `app.toml`: no longer mounted, their data kept, listed until
    /// the admin forgets them (`storage:unmount`) or `app.toml` declares them again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub detached: Vec<Attachment>,
    /// The domains the admin gave the app (`domains:*`), in the order given.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub domains: Vec<Domain>,
    /// Instances per process type the admin set (`ps:scale`); wins over app.toml's `[scale]`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub scale: BTreeMap<String, u32>,
    /// `ps:stop` stopped it: its route answers 503 until `ps:start`, `ps:restart` or a deploy.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stopped: bool,
    /// `scheduler:set <app> selected`: the scheduler of its next deploy (else the server's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduler: Option<SchedulerKind>,
    /// The swarm node the app's node-local data lives on: set by `scheduler:set <app> node`,
    /// or chosen at its first swarm deploy (the manager).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub swarm_node: Option<String>,
}

/// `global-domains.toml`: the domains every app answers under, as `<app>.<domain>`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GlobalDomains {
    #[serde(default)]
    pub domains: Vec<Domain>,
}

/// How a release runs: what ps:start/restart and rollback re-create.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunConfig {
    /// Process type → command (`None`: the image's CMD).
    #[serde(with = "image_cmd_as_empty")]
    pub processes: BTreeMap<String, Option<String>>,
    /// `[app].user`, stored as its `--user` text (`uid` or `uid:gid`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<crate::user::AppUser>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub web_port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<String>,
    /// Processes whose single-writer mounts need the old container stopped first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclusive: Vec<String>,
    /// Process type → its first exclusive mount, as app.toml wrote it, for messages.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub exclusive_mounts: BTreeMap<String, String>,
    /// app.toml's `[env]`: non-secret defaults, below the admin's config.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// app.toml's `[build].env_keys`: config keys the Docker build got as build args.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub build_env_keys: Vec<String>,
    /// app.toml's `[scale]`: instances per process type, below the admin's `ps:scale`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub scale: BTreeMap<String, u32>,
    /// `[app].stop_timeout`: seconds between the stop signal and SIGKILL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_timeout: Option<u32>,
    /// `[web].drain_seconds`, as declared (the server caps it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drain_seconds: Option<u32>,
    /// `[web].hold_seconds`, as declared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold_seconds: Option<u32>,
}

/// TOML has no null: a process that runs the image's CMD is written as `web = ""` (app.toml
/// refuses empty commands), where `None` would vanish and the release lose its process.
mod image_cmd_as_empty {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(
        processes: &BTreeMap<String, Option<String>>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        let commands: BTreeMap<&String, &str> =
            processes.iter().map(|(process, command)| (process, command.as_deref().unwrap_or(""))).collect();
        commands.serialize(serializer)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<BTreeMap<String, Option<String>>, D::Error> {
        let commands = BTreeMap::<String, Option<String>>::deserialize(deserializer)?;
        Ok(commands
            .into_iter()
            .map(|(process, command)| (process, command.filter(|c| !c.is_empty())))
            .collect())
    }
}

/// The outcome of a deploy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Deployed,
    Failed,
    /// Started serving, but the deploy stopped before it was recorded as done.
    Interrupted,
}

/// One deploy: what was pushed, what it built, which mounts it ran with, how it ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Release {
    pub number: u32,
    pub commit: String,
    pub image: String,
    pub created_at: u64,
    pub outcome: Outcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub run: RunConfig,
    /// The app's mounts (admin and repo) this release ran with.
    #[serde(default)]
    pub mounts: Vec<Attachment>,
    /// Host port of the web process, when published (releases before berth had a proxy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub web_host_port: Option<u16>,
    /// Where the proxy reaches each web instance, in instance order: their addresses on
    /// berth's engine network. Releases of one instance recorded it as `web_upstream`.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        alias = "web_upstream",
        deserialize_with = "one_or_many"
    )]
    pub web_upstreams: Vec<std::net::SocketAddr>,
}

/// An address, or a list of them (a release recorded before berth ran several instances).
fn one_or_many<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<std::net::SocketAddr>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(std::net::SocketAddr),
        Many(Vec<std::net::SocketAddr>),
    }
    Ok(match OneOrMany::deserialize(deserializer)? {
        OneOrMany::One(address) => vec![address],
        OneOrMany::Many(addresses) => addresses,
    })
}

/// `releases.toml` of an app: every release, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Releases {
    #[serde(default)]
    pub releases: Vec<Release>,
}

impl Releases {
    pub fn next_number(&self) -> u32 {
        self.releases.iter().map(|r| r.number).max().unwrap_or(0) + 1
    }

    pub fn get(&self, number: u32) -> Option<&Release> {
        self.releases.iter().find(|r| r.number == number)
    }
}

impl Root {
    pub fn releases_file(&self, app: &AppName) -> PathBuf {
        self.app_dir(app).join("releases.toml")
    }

    pub fn read_releases(&self, app: &AppName) -> Result<Releases, StateError> {
        Ok(read_toml(&self.releases_file(app))?.unwrap_or_default())
    }

    /// The process types the app's current release declares, sorted; `None` before its first
    /// deploy (nothing to check a `--process-type` against yet).
    pub fn declared_process_types(&self, app: &AppName) -> Result<Option<Vec<String>>, StateError> {
        let Some(number) = self.read_app(app)?.current_release else { return Ok(None) };
        let releases = self.read_releases(app)?;
        Ok(releases.get(number).map(|release| release.run.processes.keys().cloned().collect()))
    }

    /// Writes the release history; the caller holds the app's lock.
    pub fn write_releases(&self, app: &AppName, releases: &Releases, _lock: &Lock) -> Result<(), StateError> {
        write_toml(&self.releases_file(app), releases)
    }
}

/// Host paths, external volumes and volume drivers an admin allowed `app.toml` to use.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grants {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub host_paths: Vec<PathBuf>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<String>,
    /// Volume drivers other than `local`, by plain name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drivers: Vec<String>,
}

impl Grants {
    /// These grants and `more` together (an app's own and the server-wide ones).
    pub fn with(&self, more: &Grants) -> Grants {
        let join = |a: &[String], b: &[String]| a.iter().chain(b).cloned().collect();
        Grants {
            host_paths: self.host_paths.iter().chain(&more.host_paths).cloned().collect(),
            volumes: join(&self.volumes, &more.volumes),
            drivers: join(&self.drivers, &more.drivers),
        }
    }

    /// What `app.toml` may reach, as the manifest checks it.
    pub fn policy(&self) -> Policy<'_> {
        Policy { host_paths: &self.host_paths, volumes: &self.volumes, drivers: &self.drivers, server: None }
    }
}

/// `berth.toml`: the admin's settings for the whole server.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Grants for every app, on top of each app's own.
    #[serde(default)]
    pub allowed: Grants,
    /// Branch whose pushes deploy, unless an app sets its own. Default `main` or `master`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deploy_branch: Option<String>,
    /// The berth user's `authorized_keys`, which `berth ssh-keys:*` writes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorized_keys: Option<PathBuf>,
    /// The proxy in front of the apps' web processes.
    #[serde(default)]
    pub proxy: ProxySettings,
    /// The scheduler of apps that did not choose one.
    #[serde(default)]
    pub scheduler: SchedulerSettings,
    /// What the `docker-swarm` scheduler needs: the registry.
    #[serde(default)]
    pub swarm: SwarmSettings,
}

/// An exclusive advisory lock on a file, released when dropped.
#[derive(Debug)]
pub struct Lock {
    _file: File,
}

impl Lock {
    fn exclusive(path: &Path, on_wait: impl FnOnce()) -> Result<Lock, StateError> {
        if let Some(dir) = path.parent() {
            make_dir(dir)?;
        }
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(StateError::io("open lock", path))?;
        adopt(path)?;
        if file.try_lock().is_err() {
            on_wait();
            file.lock().map_err(StateError::io("lock", path))?;
        }
        Ok(Lock { _file: file })
    }
}

pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn list_dir_names(dir: &Path) -> Result<Vec<String>, StateError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(StateError::Io { action: "read", path: dir.to_path_buf(), source: e }),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(StateError::io("read", dir))?;
        if let Some(name) = entry.file_name().to_str() {
            names.push(name.to_string());
        }
    }
    Ok(names)
}

/// Reads a TOML state file; `None` when it does not exist.
pub fn read_toml<T: DeserializeOwned>(path: &Path) -> Result<Option<T>, StateError> {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StateError::Io { action: "read", path: path.to_path_buf(), source: e }),
    };
    toml::from_str(&text)
        .map(Some)
        .map_err(|e| StateError::Corrupt { path: path.to_path_buf(), message: e.message().to_string() })
}

/// Writes a TOML state file atomically.
pub fn write_toml<T: Serialize>(path: &Path, value: &T) -> Result<(), StateError> {
    write_atomic(path, toml_text(path, value)?.as_bytes())
}

/// Writes a TOML file of secrets atomically, readable only by its owner (mode 0600) from the
/// first byte on: the temporary file gets the mode before anything is written to it.
pub fn write_private_toml<T: Serialize>(path: &Path, value: &T) -> Result<(), StateError> {
    write_atomic_mode(path, toml_text(path, value)?.as_bytes(), Some(PRIVATE_MODE))
}

/// Mode of files holding secrets.
pub const PRIVATE_MODE: u32 = 0o600;

fn toml_text<T: Serialize>(path: &Path, value: &T) -> Result<String, StateError> {
    toml::to_string_pretty(value)
        .map_err(|e| StateError::Corrupt { path: path.to_path_buf(), message: e.to_string() })
}

/// Temp file in the same directory, fsync, rename over the target, fsync the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StateError> {
    write_atomic_mode(path, bytes, None)
}

/// Points the symlink `path` at `target` in one step (a temporary link renamed over it), so a
/// reader sees the old target or the new one, never none.
pub fn replace_symlink(path: &Path, target: &Path) -> Result<(), StateError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    make_dir(dir)?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let temp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let _ = fs::remove_file(&temp);
    std::os::unix::fs::symlink(target, &temp).map_err(StateError::io("create the symlink", &temp))?;
    adopt(&temp)?;
    fs::rename(&temp, path).map_err(StateError::io("replace", path))?;
    sync_parent(path)
}

fn write_atomic_mode(path: &Path, bytes: &[u8], mode: Option<u32>) -> Result<(), StateError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    make_dir(dir)?;
    let mut temp =
        tempfile::NamedTempFile::new_in(dir).map_err(StateError::io("create temp file in", dir))?;
    if let Some(mode) = mode {
        temp.as_file()
            .set_permissions(fs::Permissions::from_mode(mode))
            .map_err(StateError::io("change the mode of", path))?;
    }
    // The file's own error, named after the target: NamedTempFile's would name the temporary
    // file twice ("write .tmpX: No space left on device ... at path .tmpX").
    temp.as_file_mut().write_all(bytes).map_err(StateError::io("write", path))?;
    temp.as_file().sync_all().map_err(StateError::io("sync", path))?;
    adopt(temp.path())?;
    temp.persist(path).map_err(|e| StateError::Io {
        action: "replace",
        path: path.to_path_buf(),
        source: e.error,
    })?;
    sync_parent(path)
}

/// Whether this process runs as root (`/proc/self` belongs to the effective uid).
pub fn running_as_root() -> bool {
    fs::metadata("/proc/self").is_ok_and(|meta| meta.uid() == 0)
}

/// Gives a path berth just created to the owner of its directory when berth runs as root, so
/// that state an admin writes with `sudo berth` stays usable by the hooks, which run as the
/// berth user of an SSH push.
pub fn adopt(path: &Path) -> Result<(), StateError> {
    if !running_as_root() {
        return Ok(());
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    let owner = fs::metadata(dir).map_err(StateError::io("inspect", dir))?;
    let meta = fs::symlink_metadata(path).map_err(StateError::io("inspect", path))?;
    if (meta.uid(), meta.gid()) != (owner.uid(), owner.gid()) {
        std::os::unix::fs::lchown(path, Some(owner.uid()), Some(owner.gid()))
            .map_err(StateError::io("change the owner of", path))?;
    }
    Ok(())
}

/// `mkdir -p` whose new directories are adopted (see [`adopt`]).
pub fn make_dir(dir: &Path) -> Result<(), StateError> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        make_dir(parent)?;
    }
    match fs::create_dir(dir) {
        Ok(()) => adopt(dir),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(StateError::Io { action: "create", path: dir.to_path_buf(), source: e }),
    }
}

fn sync_parent(path: &Path) -> Result<(), StateError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    File::open(dir).and_then(|d| d.sync_all()).map_err(StateError::io("sync", dir))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {

    #[test]
    fn the_data_root_converges_to_mode_0700() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(dir.path());
        fs::create_dir(dir.path().join("data")).unwrap();
        fs::set_permissions(dir.path().join("data"), fs::Permissions::from_mode(0o755)).unwrap();
        root.make_data_root().unwrap();
        assert_eq!(fs::metadata(dir.path().join("data")).unwrap().mode() & 0o7777, 0o700);
    }
    use super::*;
    use crate::storage::{Origin, Phase, Source};

    #[test]
    fn app_state_round_trips_through_toml() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(dir.path());
        let app = AppName::new("demo").unwrap();
        let lock = root.lock_app(&app).unwrap();
        let mut state = root.create_app(&app, &lock).unwrap();
        state.mounts.push(Attachment {
            source: Source::HostPath("/srv/data".into()),
            container_path: "/data".into(),
            phases: [Phase::Deploy, Phase::Run].into(),
            process_type: "_default_".into(),
            subpath: None,
            readonly: true,
            volume_options: Some("Z".into()),
            volume_chown: None,
            made_by: Origin::Admin,
        });
        state.docker_options.insert(OptionsKey::every_process(Phase::Deploy), vec!["--memory 512m".into()]);
        root.write_app(&app, &state, &lock).unwrap();
        assert_eq!(root.read_app(&app).unwrap(), state);
        let text = fs::read_to_string(root.app_state_file(&app)).unwrap();
        assert!(text.contains("source = \"host:/srv/data\""), "{text}");
        // The stored form of docker-options keys is unchanged: `<process type>.<phase>`.
        assert!(text.contains("\"_default_.deploy\" = [\"--memory 512m\"]"), "{text}");
    }

    #[test]
    fn a_process_running_the_image_cmd_survives_the_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(dir.path());
        let app = AppName::new("demo").unwrap();
        let lock = root.lock_app(&app).unwrap();
        root.create_app(&app, &lock).unwrap();
        let run = RunConfig {
            processes: [("web".to_string(), None), ("worker".to_string(), Some("bin/work".to_string()))]
                .into(),
            ..RunConfig::default()
        };
        let release = Release {
            number: 1,
            commit: "c".into(),
            image: "berth/demo:1".into(),
            created_at: 0,
            outcome: Outcome::Deployed,
            reason: None,
            run,
            mounts: Vec::new(),
            web_host_port: None,
            web_upstreams: vec!["10.0.0.2:5000".parse().unwrap(), "10.0.0.3:5000".parse().unwrap()],
        };
        let releases = Releases { releases: vec![release] };
        root.write_releases(&app, &releases, &lock).unwrap();
        assert_eq!(root.read_releases(&app).unwrap(), releases);
    }

    #[test]
    fn a_release_of_one_instance_reads_as_a_list_of_one_upstream() {
        let old = "number = 1\ncommit = \"c\"\nimage = \"i\"\ncreated_at = 0\noutcome = \"deployed\"\n\
                   web_upstream = \"10.0.0.2:5000\"\n[run.processes]\n";
        let release: Release = toml::from_str(old).unwrap();
        assert_eq!(release.web_upstreams, vec!["10.0.0.2:5000".parse::<std::net::SocketAddr>().unwrap()]);
    }

    #[test]
    fn failed_update_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(dir.path());
        let app = AppName::new("demo").unwrap();
        root.create_app(&app, &root.lock_app(&app).unwrap()).unwrap();
        let before = fs::read(root.app_state_file(&app)).unwrap();
        let result: Result<(), StateError> = root.update_app(&app, |state| {
            state.deploy_branch = Some("x".into());
            Err(StateError::NoSuchApp(app.clone()))
        });
        assert!(result.is_err());
        assert_eq!(fs::read(root.app_state_file(&app)).unwrap(), before);
    }

    #[test]
    fn corrupt_file_is_reported_with_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(dir.path());
        let app = AppName::new("demo").unwrap();
        fs::create_dir_all(root.app_dir(&app)).unwrap();
        fs::write(root.app_state_file(&app), "mounts = 3").unwrap();
        let error = root.read_app(&app).unwrap_err().to_string();
        assert!(error.contains("state.toml is not valid berth state"), "{error}");
    }
}
