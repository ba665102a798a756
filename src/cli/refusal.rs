//! The refusals admin commands make themselves (the library's domains have their own errors):
//! one variant each, so a caller can tell them apart and the message is written once.

use std::path::PathBuf;

use crate::names::{AppName, EntryName};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Refusal {
    #[error("{0} has no containers; deploy it with git push")]
    NoContainers(AppName),
    #[error("--follow needs one process; pass --process (one of: {0})")]
    FollowNeedsOneProcess(String),
    #[error(
        "storage:exec runs one command without a terminal; pass it after --, as in berth storage:exec {name} -- ls -la {data_path}"
    )]
    NoCommand { name: EntryName, data_path: &'static str },
    #[error("host path {} does not exist", .0.display())]
    MissingEntryDir(PathBuf),
    #[error("image {0} is not on this engine; pull it (docker pull {0}) or pass --image <an image it has>")]
    ImageNotOnEngine(String),
    #[error(
        "app {app} has Docker volumes ({volumes}); Docker cannot rename a volume or change its labels, and {command} does not copy data on its own: copy them into new volumes yourself, or destroy them first if they hold nothing you need"
    )]
    HasVolumes { app: AppName, volumes: String, command: &'static str },
    #[error(
        "{} exists (data kept from an earlier app {app}); move it away or remove it first, berth does not mix two apps' data",
        .dir.display()
    )]
    LeftoverDir { dir: PathBuf, app: AppName },
    #[error("{0} was started again while renaming; stop it and try again")]
    StartedWhileRenaming(AppName),
    #[error(
        "app {old} has data in {}; apps:clone copies it with --copy-storage, or gives {new} empty storage with --empty-storage",
        .data.display()
    )]
    HasData { old: AppName, data: PathBuf, new: AppName },
    #[error(
        "--volume-subpath needs a directory-backed entry; \"{name}\" is the Docker volume {volume} (the engine's API has no volume subpaths)"
    )]
    SubpathOfVolume { name: EntryName, volume: String },
    #[error("{grant} is not allowed for {app}")]
    NotAllowed { grant: String, app: AppName },
    #[error(
        "volume driver \"{0}\" is not a plain name: lowercase letters, digits, '.', '_' and '-', without '/' or '..' (install a plugin under such a name with `docker plugin install --alias <name>`)"
    )]
    BadDriverName(String),
    #[error("host path \"{0}\" must be absolute, not \"/\", and free of \"..\"")]
    BadGrantPath(String),
    #[error("\"{0}\" is not a valid branch name")]
    BadBranchName(String),
    /// The directory name is kept for callers; Dokku's message does not repeat it.
    #[error("Directory can only contain the following set of characters: [A-Za-z0-9_-]")]
    BadDirectoryName(String),
}
