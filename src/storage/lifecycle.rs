//! A storage entry's lifecycle rules (`storage:create`, `storage:set`, `storage:destroy`):
//! chown, mode and a `Delete` reclaim policy act on the entry's default directory only (a custom
//! path may be anything on the host), docker-local has no access modes, classes, namespaces or
//! sizes, and an entry an app mounts is not destroyed.

use std::path::{Path, PathBuf};

use super::{Entry, EntryBacking, ReclaimPolicy, SCHEDULER, StorageError};
use crate::names::{AppName, EntryName};

/// The entry's directory when it is `default` (the one berth made for it), else `None`.
pub fn default_dir(entry: &Entry, default: &Path) -> Option<PathBuf> {
    (entry.host_path == EntryBacking::Dir(default.to_path_buf())).then(|| default.to_path_buf())
}

/// Refuses `flag` for an entry whose host path is not its default directory `default`.
pub fn only_on_default_path(entry: &Entry, default: &Path, flag: &str) -> Result<(), StorageError> {
    if default_dir(entry, default).is_some() {
        return Ok(());
    }
    Err(StorageError::NotDefaultPath {
        flag: flag.to_string(),
        default: default.display().to_string(),
        backing: entry.host_path.to_string(),
    })
}

/// `--chown`, `--mode` and `--reclaim-policy Delete` act on the default directory only.
pub fn check_default_path_settings(entry: &Entry, default: &Path) -> Result<(), StorageError> {
    if entry.chown.is_some() {
        only_on_default_path(entry, default, "--chown")?;
    }
    if entry.mode.is_some() {
        only_on_default_path(entry, default, "--mode")?;
    }
    if entry.reclaim_policy == ReclaimPolicy::Delete {
        only_on_default_path(entry, default, "--reclaim-policy Delete")?;
    }
    Ok(())
}

/// `storage:create` makes docker-local entries only.
pub fn check_scheduler(name: &EntryName, scheduler: &str) -> Result<(), StorageError> {
    if scheduler == SCHEDULER {
        return Ok(());
    }
    Err(StorageError::UnsupportedScheduler { name: name.clone(), scheduler: scheduler.to_string() })
}

/// A new entry's directory is a directory, if it exists.
pub fn check_backing(backing: &EntryBacking) -> Result<(), StorageError> {
    match backing {
        EntryBacking::Dir(path) if path.exists() && !path.is_dir() => {
            Err(StorageError::EntryPathNotDir(path.display().to_string()))
        }
        _ => Ok(()),
    }
}

/// Sets (or, without a value, unsets) one property of `entry`, checked before anything is
/// saved; `default` is the entry's default directory.
pub fn set_property(
    entry: &mut Entry,
    default: &Path,
    property: &str,
    value: Option<&str>,
) -> Result<(), StorageError> {
    match property {
        "chown" => entry.chown = value.map(str::parse).transpose()?,
        "mode" => entry.mode = value.map(str::parse).transpose()?,
        "reclaim-policy" => entry.reclaim_policy = value.map(str::parse).transpose()?.unwrap_or_default(),
        "access-mode" | "storage-class-name" => {
            return Err(StorageError::NotInPlace(property.to_string()));
        }
        "namespace" | "size" => {
            return Err(StorageError::NotAccepted {
                name: entry.name.clone(),
                property: property.to_string(),
            });
        }
        other => return Err(StorageError::UnknownProperty(other.to_string())),
    }
    let set = match property {
        "chown" => entry.chown.is_some(),
        "mode" => entry.mode.is_some(),
        _ => entry.reclaim_policy == ReclaimPolicy::Delete,
    };
    if set {
        only_on_default_path(entry, default, &format!("--{property}"))?;
    }
    Ok(())
}

/// Refuses to destroy an entry while `apps` mount it.
pub fn check_unmounted(name: &EntryName, apps: &[AppName]) -> Result<(), StorageError> {
    if apps.is_empty() {
        return Ok(());
    }
    let names: Vec<&str> = apps.iter().map(AppName::as_str).collect();
    Err(StorageError::StillMounted { name: name.clone(), apps: names.join(", ") })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::Chown;
    use crate::user::Preset;

    fn entry(backing: &str) -> Entry {
        let name = EntryName::new("pg").unwrap();
        Entry {
            host_path: EntryBacking::parse(&name, backing).unwrap(),
            name,
            scheduler: SCHEDULER.into(),
            chown: None,
            mode: None,
            reclaim_policy: ReclaimPolicy::default(),
            annotations: Default::default(),
            labels: Default::default(),
        }
    }

    #[test]
    fn ownership_is_set_only_on_the_default_directory() {
        let default = Path::new("/var/lib/berth/storage/pg");
        let mut own = entry("/var/lib/berth/storage/pg");
        set_property(&mut own, default, "chown", Some("heroku")).unwrap();
        assert_eq!(own.chown, Some(Chown::Preset(Preset::Heroku)));
        let mut custom = entry("/srv/pg");
        let refused = set_property(&mut custom, default, "chown", Some("heroku")).unwrap_err();
        assert!(matches!(refused, StorageError::NotDefaultPath { .. }), "{refused}");
        assert_eq!(
            set_property(&mut custom, default, "size", Some("1G")),
            Err(StorageError::NotAccepted { name: custom.name.clone(), property: "size".into() })
        );
    }

    #[test]
    fn a_mounted_entry_is_not_destroyed() {
        let name = EntryName::new("pg").unwrap();
        assert_eq!(check_unmounted(&name, &[]), Ok(()));
        let refused = check_unmounted(&name, &[AppName::new("a").unwrap(), AppName::new("b").unwrap()]);
        assert_eq!(
            refused.unwrap_err().to_string(),
            "storage entry \"pg\" is still mounted by app(s): a, b; unmount it first (berth storage:unmount <app> pg)"
        );
    }
}
