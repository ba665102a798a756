//! The `berth` admin command line: clap definitions, dispatch, and the errors a user sees.
//! Commands take Dokku's names (`storage:mount`), arguments and output shapes.

mod apps;
mod apps_copy;
mod backup;
mod config;
mod docker_options;
mod domains;
mod global;
mod help;
mod inventory;
mod proxy;
mod ps;
mod refusal;
mod report;
mod scheduler;
mod ssh;
mod storage;
mod storage_exec;
mod storage_metadata;
mod storage_migrate;

use std::ffi::OsString;
use std::io::{BufRead, IsTerminal, Write};

use clap::{CommandFactory, Parser, Subcommand, ValueEnum};

use crate::docker_options::OptionsError;
use crate::engine::EngineError;
use crate::git::GitError;
use crate::hostfs::HostFsError;
use crate::names::{AppName, NameError};
use crate::output::Reporter;
use crate::state::{AppState, Root, StateError};
use crate::storage::{StorageError, metadata};
pub use refusal::Refusal;

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Name(#[from] NameError),
    #[error(transparent)]
    HostFs(#[from] HostFsError),
    #[error(transparent)]
    Options(#[from] OptionsError),
    #[error(transparent)]
    Git(#[from] GitError),
    #[error(transparent)]
    Deploy(#[from] crate::deploy::DeployError),
    #[error(transparent)]
    Hook(#[from] crate::hook::HookError),
    #[error(transparent)]
    Commit(#[from] crate::deploy::CommitError),
    #[error(transparent)]
    Ssh(#[from] crate::ssh::SshError),
    #[error(transparent)]
    Proxy(#[from] crate::proxy::ProxyError),
    #[error(transparent)]
    Backup(#[from] crate::backup::BackupError),
    #[error(transparent)]
    Domain(#[from] crate::proxy::DomainError),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Scale(#[from] crate::scale::ScaleError),
    #[error(transparent)]
    Swarm(Box<crate::swarm::SwarmError>),
    #[error(transparent)]
    User(#[from] crate::user::UserError),
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// The command line is malformed: flags that do not go together, a missing argument.
    #[error("{0}")]
    Usage(String),
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    #[error("Confirmation did not match {0}. Aborted.")]
    ConfirmationMismatch(String),
    #[error(
        "refusing to {action} without confirmation: nothing on stdin; pipe the name in (echo {name} | berth {command} {name}) or pass --force"
    )]
    NoConfirmation { action: String, command: &'static str, name: String },
}

impl From<crate::swarm::SwarmError> for CliError {
    fn from(error: crate::swarm::SwarmError) -> CliError {
        CliError::Swarm(Box::new(error))
    }
}

/// Exit status of a command berth refused: bad input, nothing changed.
const EXIT_REFUSED: i32 = 1;
/// Exit status of a command that failed on the server (engine, filesystem, proxy).
const EXIT_FAILED: i32 = 1;

impl CliError {
    /// Dokku exits 1 for refusals and failures alike (20 only for an unknown app, which berth
    /// does not copy), so both codes are 1; the match, without a catch-all, makes each new
    /// variant choose.
    pub fn exit_code(&self) -> i32 {
        match self {
            CliError::Usage(_)
            | CliError::ConfirmationMismatch(_)
            | CliError::NoConfirmation { .. }
            | CliError::Name(_)
            | CliError::Storage(_)
            | CliError::Options(_)
            | CliError::Domain(_)
            | CliError::Config(_)
            | CliError::Scale(_)
            | CliError::User(_)
            | CliError::Refused(_)
            | CliError::Commit(_) => EXIT_REFUSED,
            CliError::State(_)
            | CliError::Engine(_)
            | CliError::HostFs(_)
            | CliError::Git(_)
            | CliError::Deploy(_)
            | CliError::Hook(_)
            | CliError::Ssh(_)
            | CliError::Proxy(_)
            | CliError::Swarm(_)
            | CliError::Backup(_)
            | CliError::Io { .. }
            | CliError::Json(_) => EXIT_FAILED,
        }
    }

    fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        CliError::Io { what: what.into(), source }
    }
}

pub type Result<T> = std::result::Result<T, CliError>;

/// Output format of lists and reports. `stdout` is Dokku's name for text in reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum Format {
    #[default]
    #[value(alias = "stdout")]
    Text,
    Json,
}

#[derive(Debug, Parser)]
#[command(
    name = "berth",
    version = env!("BERTH_VERSION"),
    about = "git push deploys of Docker apps whose persistent storage is declared in the repo",
    long_about = "git push deploys of Docker apps whose persistent storage is declared in the repo.\n\nState lives under BERTH_ROOT (default /var/lib/berth)."
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create an app and its git repository
    #[command(name = "apps:create")]
    AppsCreate { app: String },
    /// List apps
    #[command(name = "apps:list")]
    AppsList {
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Destroy an app; its storage data is kept unless --purge-storage
    #[command(name = "apps:destroy")]
    AppsDestroy {
        app: String,
        /// Do not ask for confirmation
        #[arg(long)]
        force: bool,
        /// Also delete the app's storage directory and its app volumes (irreversible)
        #[arg(long)]
        purge_storage: bool,
    },
    /// Rename an app: its state, repo, directories, mounts, docker-options and domains
    #[command(name = "apps:rename")]
    AppsRename(apps_copy::RenameArgs),
    /// Create a new app with an app's mounts, docker-options and settings
    #[command(name = "apps:clone")]
    AppsClone(apps_copy::CloneArgs),
    /// Show an app's settings
    #[command(name = "apps:report")]
    AppsReport {
        /// An app, and/or one info flag such as --app-repo
        #[arg(allow_hyphen_values = true)]
        args: Vec<String>,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Create a directory under the storage root and chown it (deprecated: use storage:create)
    #[command(name = "storage:ensure-directory")]
    StorageEnsureDirectory {
        directory: String,
        /// herokuish (32767), heroku (1000), paketo (2000), root (0), false, or a uid
        #[arg(long, default_value = "herokuish", allow_hyphen_values = true)]
        chown: String,
    },
    /// Mount a host path, Docker volume or storage entry into an app's containers
    #[command(name = "storage:mount")]
    StorageMount(storage::MountArgs),
    /// Unmount a mount from an app (its data is kept)
    #[command(name = "storage:unmount")]
    StorageUnmount(storage::UnmountArgs),
    /// List an app's mounts
    #[command(name = "storage:list")]
    StorageList {
        app: String,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Report storage of one app, all apps, or (--global) every storage entry
    #[command(name = "storage:report")]
    StorageReport(storage::ReportArgs),
    /// Write a backup of an app's storage (a tar stream) to stdout or a file
    #[command(name = "storage:backup")]
    StorageBackup(backup::BackupArgs),
    /// Verify a backup and restore an app's storage from it, keeping the data it replaces
    #[command(name = "storage:restore")]
    StorageRestore(backup::RestoreArgs),
    /// Remove the data earlier restores of an app replaced and kept
    #[command(name = "storage:prune-restores")]
    StoragePruneRestores(backup::PruneArgs),
    /// Create a named storage entry
    #[command(name = "storage:create")]
    StorageCreate(storage::CreateArgs),
    /// Destroy a storage entry; its data is kept unless --destroy-host-dir
    #[command(name = "storage:destroy")]
    StorageDestroy {
        name: String,
        #[arg(long)]
        force: bool,
        /// Also delete the entry's default host directory (irreversible)
        #[arg(long)]
        destroy_host_dir: bool,
    },
    /// Show a storage entry
    #[command(name = "storage:info")]
    StorageInfo {
        name: String,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// List storage entries
    #[command(name = "storage:list-entries")]
    StorageListEntries {
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Set (or, without a value, unset) a property of a storage entry: chown, mode, reclaim-policy
    #[command(name = "storage:set")]
    StorageSet(storage::SetArgs),
    /// Set (or, without a value, clear) one annotation of a storage entry
    #[command(name = "storage:annotations:set")]
    StorageAnnotationsSet(storage_metadata::SetArgs),
    /// Show the annotations of one storage entry or every entry
    #[command(name = "storage:annotations:report")]
    StorageAnnotationsReport(storage_metadata::ReportArgs),
    /// Set (or, without a value, clear) one label of a storage entry
    #[command(name = "storage:labels:set")]
    StorageLabelsSet(storage_metadata::SetArgs),
    /// Show the labels of one storage entry or every entry
    #[command(name = "storage:labels:report")]
    StorageLabelsReport(storage_metadata::ReportArgs),
    /// Run a command (default: a shell) on a storage entry's data, mounted at /data in a helper container
    #[command(name = "storage:exec")]
    StorageExec(storage_exec::ExecArgs),
    /// Turn an app's -v docker-options into storage mounts (a second run does nothing)
    #[command(name = "storage:migrate")]
    StorageMigrate(storage_migrate::MigrateArgs),
    /// Allow an app's app.toml to mount a host path (and below) or an external Docker volume
    #[command(name = "storage:allow")]
    StorageAllow { app: String, source: String },
    /// Withdraw a grant made with storage:allow
    #[command(name = "storage:disallow")]
    StorageDisallow { app: String, source: String },
    /// Add docker options to phases of an app (build, deploy, run)
    #[command(name = "docker-options:add")]
    DockerOptionsAdd(docker_options::ChangeArgs),
    /// Remove docker options from phases of an app
    #[command(name = "docker-options:remove")]
    DockerOptionsRemove(docker_options::ChangeArgs),
    /// Clear docker options of an app, on all phases or the given ones
    #[command(name = "docker-options:clear")]
    DockerOptionsClear(docker_options::ClearArgs),
    /// Report docker options of one app or all apps
    #[command(name = "docker-options:report")]
    DockerOptionsReport(docker_options::ReportArgs),
    /// List the docker options of one process and phase, one per line
    #[command(name = "docker-options:list")]
    DockerOptionsList(docker_options::ListArgs),
    /// Add domains to an app
    #[command(name = "domains:add")]
    DomainsAdd {
        app: String,
        #[arg(required = true, value_name = "DOMAIN", allow_hyphen_values = true)]
        domains: Vec<String>,
    },
    /// Remove domains from an app
    #[command(name = "domains:remove")]
    DomainsRemove {
        app: String,
        #[arg(required = true, value_name = "DOMAIN", allow_hyphen_values = true)]
        domains: Vec<String>,
    },
    /// Set the domains of an app, replacing the ones it has
    #[command(name = "domains:set")]
    DomainsSet {
        app: String,
        #[arg(required = true, value_name = "DOMAIN", allow_hyphen_values = true)]
        domains: Vec<String>,
    },
    /// Clear all domains of an app
    #[command(name = "domains:clear")]
    DomainsClear { app: String },
    /// Set global domains: every app also answers at <app>.<domain>
    #[command(name = "domains:set-global")]
    DomainsSetGlobal {
        #[arg(required = true, value_name = "DOMAIN", allow_hyphen_values = true)]
        domains: Vec<String>,
    },
    /// Clear the global domains
    #[command(name = "domains:clear-global")]
    DomainsClearGlobal,
    /// Show the domains of one app or all apps
    #[command(name = "domains:report")]
    DomainsReport {
        /// An app, and/or one info flag such as --domains-app-vhosts
        #[arg(allow_hyphen_values = true)]
        args: Vec<String>,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Render the proxy's whole config from berth's records and load it
    #[command(name = "proxy:build-config")]
    ProxyBuildConfig {
        /// Wait up to this many seconds for the proxy to answer, and fail if it does not
        #[arg(long, value_name = "SECONDS")]
        wait: Option<u64>,
    },
    /// Show what the proxy serves for one app or all apps: hosts, upstreams, TLS
    #[command(name = "proxy:report")]
    ProxyReport {
        /// An app, and/or one info flag such as --proxy-urls
        #[arg(allow_hyphen_values = true)]
        args: Vec<String>,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    #[command(flatten)]
    Config(config::Command),
    /// Start the app's containers (current release, current mounts)
    #[command(name = "ps:start")]
    PsStart { app: String },
    /// Stop and remove the app's containers (data and images stay)
    #[command(name = "ps:stop")]
    PsStop { app: String },
    /// Re-create the app's containers with the current mounts and docker-options
    #[command(name = "ps:restart")]
    PsRestart { app: String },
    /// Deploy the current release's commit again (build, storage, swap), as a push would
    #[command(name = "ps:rebuild")]
    PsRebuild {
        app: String,
        /// Check and print the plan only: nothing is built, started or changed
        #[arg(long)]
        dry_run: bool,
    },
    /// Show the app's containers
    #[command(name = "ps:report")]
    PsReport {
        /// An app, and/or one info flag such as --ps-web-url
        #[arg(allow_hyphen_values = true)]
        args: Vec<String>,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Run a one-off command in a container of the current release, with run-phase mounts
    Run {
        app: String,
        /// The command and its arguments (default: the image's CMD)
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
    },
    /// Show the logs of the app's containers
    Logs {
        app: String,
        /// Keep streaming new output
        #[arg(short, long)]
        follow: bool,
        /// Only this process type
        #[arg(long)]
        process: Option<String>,
        /// Only the last N lines
        #[arg(long, short = 'n')]
        tail: Option<usize>,
    },
    /// List what each push deployed: commit, image, mounts, outcome
    Releases {
        app: String,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Serve an earlier release again (default: the one before the current)
    Rollback { app: String, release: Option<u32> },
    /// Re-install the git hooks of every app (after an upgrade)
    #[command(name = "hooks:install")]
    HooksInstall,
    /// Set (or, without a value, unset) an app's scheduler property: selected (docker-local or
    /// docker-swarm), node (the swarm node its node-local data lives on)
    #[command(name = "scheduler:set")]
    SchedulerSet { app: String, property: String, value: Option<String> },
    /// Show which scheduler deploys one app or all apps, its swarm node and where its data is
    #[command(name = "scheduler:report")]
    SchedulerReport {
        /// An app, and/or one info flag such as --scheduler-computed-selected
        #[arg(allow_hyphen_values = true)]
        args: Vec<String>,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Set (or, without a value, unset) an app's git property: deploy-branch
    #[command(name = "git:set")]
    GitSet { app: String, property: String, value: Option<String> },
    /// Allow an SSH key to push (and, with --admin, to run berth commands over SSH)
    #[command(name = "ssh-keys:add")]
    SshKeysAdd {
        name: String,
        /// Public key file, or - for stdin
        file: String,
        /// Also allow admin commands (`ssh berth@host storage:list app`)
        #[arg(long)]
        admin: bool,
    },
    /// Remove an SSH key
    #[command(name = "ssh-keys:remove")]
    SshKeysRemove { name: String },
    /// List SSH keys
    #[command(name = "ssh-keys:list")]
    SshKeysList {
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Print a shell completion script (bash, zsh, fish)
    Completions { shell: clap_complete::Shell },
    /// Print the man page (roff)
    #[command(name = "man", hide = true)]
    Man,
    /// The forced command of SSH keys (not for interactive use)
    #[command(name = "git-shell", hide = true)]
    GitShell { key: String },
    /// Gives directories to uid:gid through handles; the helper image's entrypoint. With
    /// --create, makes missing ones first (app directories on another swarm node)
    #[command(name = "internal:chown", hide = true)]
    InternalChown {
        #[arg(long)]
        create: bool,
        owner: String,
        dirs: Vec<std::path::PathBuf>,
    },
    /// Writes a backup stream of the mounted trees; run by the helper image
    #[command(name = "internal:backup-read", hide = true)]
    InternalBackupRead { pipe: std::path::PathBuf, plan: String },
    /// Verifies and restores a backup stream; run by the helper image
    #[command(name = "internal:backup-restore", hide = true)]
    InternalBackupRestore { pipe: std::path::PathBuf, plan: String },
    /// Removes data restores replaced; run by the helper image
    #[command(name = "internal:backup-prune", hide = true)]
    InternalBackupPrune { paths: Vec<std::path::PathBuf> },
}

/// `internal:chown <uid>:<gid> <dir>...`, run as root inside berth's helper image.
fn internal_chown(create: bool, owner: &str, dirs: &[std::path::PathBuf]) -> Result<()> {
    let (uid, gid) = owner.parse::<crate::user::AppUser>()?.chown_ids();
    for dir in dirs {
        if create {
            crate::hostfs::ensure_dir(dir)?;
        }
        crate::hostfs::chown_tree(dir, uid, gid)?;
    }
    Ok(())
}

/// Parses the arguments and runs the command; returns the exit status (a one-off `run` passes
/// its command's through). Usage errors exit here with clap's code 2.
pub fn run(args: impl IntoIterator<Item = OsString>, out: &Reporter) -> Result<i32> {
    let args = global::hoist(args.into_iter().collect(), out)?;
    let words: Vec<String> = args.iter().skip(1).map(|a| a.to_string_lossy().into_owned()).collect();
    if let Some(text) = help::requested(&words) {
        write_stdout(text.as_bytes())?;
        return Ok(0);
    }
    let cli = Cli::parse_from(args);
    let root = Root::from_env();
    match cli.command {
        Command::Run { app, command } => ps::run(&root, &app_name(&app)?, &command, out),
        Command::StorageExec(args) => storage_exec::exec(&root, args, out),
        command => dispatch(&root, command, out).map(|()| 0),
    }
}

fn dispatch(root: &Root, command: Command, out: &Reporter) -> Result<()> {
    match command {
        Command::AppsCreate { app } => apps::create(root, &app_name(&app)?, out),
        Command::AppsList { format } => apps::list(root, format, out),
        Command::AppsDestroy { app, force, purge_storage } => {
            apps::destroy(root, &app_name(&app)?, force, purge_storage, out)
        }
        Command::AppsReport { args, format } => apps::report(root, &args, format, out),
        Command::StorageEnsureDirectory { directory, chown } => {
            storage::ensure_directory(root, &directory, &chown, out)
        }
        Command::StorageMount(args) => storage::mount(root, args, out),
        Command::StorageUnmount(args) => storage::unmount(root, args, out),
        Command::StorageList { app, format } => storage::list(root, &app_name(&app)?, format, out),
        Command::StorageReport(args) => storage::report(root, args, out),
        Command::StorageCreate(args) => storage::create(root, args, out),
        Command::StorageBackup(args) => backup::backup(root, args, out),
        Command::StorageRestore(args) => backup::restore(root, args, out),
        Command::StoragePruneRestores(args) => backup::prune_restores(root, args, out),
        Command::StorageDestroy { name, force, destroy_host_dir } => {
            storage::destroy(root, &name, force, destroy_host_dir, out)
        }
        Command::StorageInfo { name, format } => storage::info(root, &name, format, out),
        Command::StorageListEntries { format } => storage::list_entries(root, format, out),
        Command::StorageSet(args) => storage::set(root, args, out),
        Command::StorageAnnotationsSet(args) => {
            storage_metadata::set(root, metadata::Kind::Annotation, args, out)
        }
        Command::StorageAnnotationsReport(args) => {
            storage_metadata::report(root, metadata::Kind::Annotation, args, out)
        }
        Command::StorageLabelsSet(args) => storage_metadata::set(root, metadata::Kind::Label, args, out),
        Command::StorageLabelsReport(args) => {
            storage_metadata::report(root, metadata::Kind::Label, args, out)
        }
        Command::StorageExec(args) => storage_exec::exec(root, args, out).map(drop),
        Command::StorageMigrate(args) => storage_migrate::migrate(root, args, out),
        Command::AppsRename(args) => apps_copy::rename(root, args, out),
        Command::AppsClone(args) => apps_copy::clone(root, args, out),
        Command::StorageAllow { app, source } => storage::allow(root, &app_name(&app)?, &source, true, out),
        Command::StorageDisallow { app, source } => {
            storage::allow(root, &app_name(&app)?, &source, false, out)
        }
        Command::DockerOptionsAdd(args) => docker_options::add(root, args, out),
        Command::DockerOptionsRemove(args) => docker_options::remove(root, args, out),
        Command::DockerOptionsClear(args) => docker_options::clear(root, args, out),
        Command::DockerOptionsReport(args) => docker_options::report(root, args, out),
        Command::DockerOptionsList(args) => docker_options::list(root, args),
        Command::DomainsAdd { app, domains } => {
            domains::change(root, &app_name(&app)?, domains::Change::Add, &domains, out)
        }
        Command::DomainsRemove { app, domains } => {
            domains::change(root, &app_name(&app)?, domains::Change::Remove, &domains, out)
        }
        Command::DomainsSet { app, domains } => {
            domains::change(root, &app_name(&app)?, domains::Change::Set, &domains, out)
        }
        Command::DomainsClear { app } => {
            domains::change(root, &app_name(&app)?, domains::Change::Clear, &[], out)
        }
        Command::DomainsSetGlobal { domains } => domains::set_global(root, &domains, out),
        Command::DomainsClearGlobal => domains::set_global(root, &[], out),
        Command::DomainsReport { args, format } => domains::report(root, &args, format, out),
        Command::ProxyBuildConfig { wait } => proxy::build_config(root, wait, out),
        Command::ProxyReport { args, format } => proxy::report(root, &args, format, out),
        Command::Config(command) => config::dispatch(root, command, out),
        Command::PsStart { app } => ps::start(root, &app_name(&app)?, out),
        Command::PsStop { app } => ps::stop(root, &app_name(&app)?, out),
        Command::PsRestart { app } => ps::restart(root, &app_name(&app)?, out),
        Command::PsRebuild { app, dry_run } => ps::rebuild(root, &app_name(&app)?, dry_run, out),
        Command::PsReport { args, format } => ps::report(root, &args, format, out),
        Command::Run { app, command } => ps::run(root, &app_name(&app)?, &command, out).map(drop),
        Command::Logs { app, follow, process, tail } => {
            ps::logs(root, &app_name(&app)?, follow, process.as_deref(), tail, out)
        }
        Command::Releases { app, format } => ps::releases(root, &app_name(&app)?, format, out),
        Command::Rollback { app, release } => ps::rollback(root, &app_name(&app)?, release, out),
        Command::HooksInstall => ps::install_hooks(root, out),
        Command::SchedulerSet { app, property, value } => {
            scheduler::set(root, &app_name(&app)?, &property, value.as_deref(), out)
        }
        Command::SchedulerReport { args, format } => scheduler::report(root, &args, format, out),
        Command::GitSet { app, property, value } => {
            apps::git_set(root, &app_name(&app)?, &property, value.as_deref(), out)
        }
        Command::SshKeysAdd { name, file, admin } => ssh::add(root, &name, &file, admin, out),
        Command::SshKeysRemove { name } => ssh::remove(root, &name, out),
        Command::SshKeysList { format } => ssh::list(root, format, out),
        Command::GitShell { key } => ssh::git_shell(root, &key, out),
        Command::InternalChown { create, owner, dirs } => internal_chown(create, &owner, &dirs),
        Command::InternalBackupRead { pipe, plan } => backup::internal_read(&pipe, &plan, out),
        Command::InternalBackupRestore { pipe, plan } => backup::internal_restore(&pipe, &plan, out),
        Command::InternalBackupPrune { paths } => backup::internal_prune(&paths),
        Command::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "berth", &mut script);
            write_stdout(&script)
        }
        Command::Man => {
            let mut page = Vec::new();
            clap_mangen::Man::new(Cli::command())
                .render(&mut page)
                .map_err(|e| CliError::io("cannot render the man page", e))?;
            write_stdout(&page)
        }
    }
}

/// After a change to an app's mounts or docker-options: running containers keep what they
/// started with, so apply it now (`--restart`) or say exactly how to.
fn apply_or_hint(root: &Root, app: &AppName, restart: bool, out: &Reporter) -> Result<()> {
    if root.read_app(app)?.current_release.is_none() {
        return Ok(());
    }
    if restart {
        return ps::restart(root, app, out);
    }
    out.step(format!("Run `berth ps:restart {app}` to apply the change to the running containers"));
    Ok(())
}

/// Where the hook binaries are: beside the `berth` binary (they are built and installed together).
fn hook_dir() -> Result<std::path::PathBuf> {
    let exe = std::env::current_exe().map_err(|e| CliError::io("cannot locate the berth binary", e))?;
    exe.parent()
        .map(std::path::Path::to_path_buf)
        .ok_or_else(|| CliError::Usage("cannot locate the directory of the berth binary".into()))
}

fn app_name(app: &str) -> Result<AppName> {
    Ok(AppName::new(app)?)
}

/// Reads the state of an app that must exist.
fn existing_app(root: &Root, app: &AppName) -> Result<AppState> {
    Ok(root.read_app(app)?)
}

/// Dokku's confirmation for destructive commands: the app's or entry's name, typed on a terminal
/// or piped in (`echo demo | berth apps:destroy demo`), after Dokku's warning (and `warning`,
/// what else will go). No input at all (closed stdin, CI) refuses unless forced, rather than
/// block or guess, and warns of nothing.
fn confirm_destructive(
    what: &str,
    command: &'static str,
    name: &str,
    force: bool,
    warning: Option<&str>,
    out: &Reporter,
) -> Result<()> {
    if force {
        return Ok(());
    }
    let stdin = std::io::stdin();
    let terminal = stdin.is_terminal();
    let warn_all = || {
        if let Some(warning) = warning {
            out.warn(warning);
        }
        out.warn("WARNING: Potentially Destructive Action");
        out.warn(format!("This command will destroy {what} {name}."));
        out.warn(format!("To proceed, type \"{name}\""));
    };
    if terminal {
        warn_all();
        out.relay(true, "> ");
        std::io::stderr().flush().ok();
    }
    let mut answer = String::new();
    let read = stdin
        .lock()
        .read_line(&mut answer)
        .map_err(|e| CliError::io("unable to read the confirmation", e))?;
    if read == 0 {
        return Err(CliError::NoConfirmation {
            action: format!("destroy {what} {name}"),
            command,
            name: name.to_string(),
        });
    }
    if !terminal {
        warn_all();
    }
    if answer.trim_end_matches(['\n', '\r']) == name {
        Ok(())
    } else {
        Err(CliError::ConfirmationMismatch(name.to_string()))
    }
}

/// Writes bytes to stdout; a reader that went away (`| head`) is not an error.
fn write_stdout(bytes: &[u8]) -> Result<()> {
    match std::io::stdout().lock().write_all(bytes) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(CliError::io("cannot write to stdout", e))
        }
        _ => Ok(()),
    }
}

fn print_json(value: &impl serde::Serialize, out: &Reporter) -> Result<()> {
    let text = serde_json::to_string(value)?;
    out.text(format!("{text}\n"));
    Ok(())
}
