//! Host paths a mount names, checked against the server in one place: what a push's plan is
//! told about each (missing, through a symlink below its grant, below an unsafe parent), what
//! an admin mount needs (a directory or a file), and what is checked again when containers are
//! created with one. Grants and the mount-source rule are [`crate::manifest`]'s `Policy` and
//! [`super::binds`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::binds;
use super::{Origin, StorageError};
use crate::hostfs::{self, HostFsError};

/// What the server says about a host path a manifest mounts (gathered before planning).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPathFact {
    Usable,
    Missing,
    /// It goes through this symlink below the grant that allows it.
    ThroughSymlink(PathBuf),
    /// A parent of it may be changed by others than root and berth (the reason).
    UnsafeParent(String),
}

/// Why containers cannot be created with a host path now.
#[derive(Debug, thiserror::Error)]
pub enum HostPathError {
    #[error(transparent)]
    Symlink(#[from] HostFsError),
    #[error("host path {} does not exist; create it or unmount it", .0.display())]
    Missing(PathBuf),
}

/// The facts about each host path in `paths`, which the repo mounts under `grants`.
pub fn repo_facts<'a>(
    paths: impl IntoIterator<Item = &'a PathBuf>,
    grants: &[PathBuf],
) -> BTreeMap<PathBuf, HostPathFact> {
    paths.into_iter().map(|path| (path.clone(), repo_fact(path, grants))).collect()
}

fn repo_fact(path: &Path, grants: &[PathBuf]) -> HostPathFact {
    if let Some(link) = symlink_below_grant(path, grants) {
        HostPathFact::ThroughSymlink(link)
    } else if !path.exists() {
        HostPathFact::Missing
    } else {
        match binds::check_parents(path) {
            Ok(()) => HostPathFact::Usable,
            Err(unsafe_parent) => HostPathFact::UnsafeParent(unsafe_parent.to_string()),
        }
    }
}

/// The symlink a host path goes through below the grant that allows it (the first one, from
/// the grant down), when every grant that allows the path leads through one. A link planted
/// below an allowed directory (by the app itself, through a mount of it) must not redirect a
/// mount elsewhere on the server. The grant itself may be a link: the admin chose it.
fn symlink_below_grant(path: &Path, grants: &[PathBuf]) -> Option<PathBuf> {
    let mut found = None;
    for grant in grants {
        let Ok(below) = path.strip_prefix(grant) else { continue };
        let mut at = grant.clone();
        let link = below.components().find_map(|part| {
            at.push(part);
            std::fs::symlink_metadata(&at).is_ok_and(|m| m.file_type().is_symlink()).then(|| at.clone())
        });
        match link {
            None => return None,
            Some(link) => {
                found.get_or_insert(link);
            }
        }
    }
    found
}

/// An admin's mount of a host path: it must be there, as a directory or a file.
pub fn check_present(path: &Path) -> Result<(), StorageError> {
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_dir() || meta.is_file() => Ok(()),
        Ok(_) => Err(StorageError::OddHostPath(path.display().to_string())),
        Err(_) => Err(StorageError::MissingHostPath(path.display().to_string())),
    }
}

/// Checked each time containers are created with a host path: it exists, and a repo's has no
/// symlink in it (the admin's may: the admin chose it).
pub fn check_at_start(path: &Path, made_by: Origin) -> Result<(), HostPathError> {
    if made_by == Origin::Repo {
        hostfs::check_no_symlinks(path)?;
    }
    if !path.exists() {
        return Err(HostPathError::Missing(path.to_path_buf()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_below_the_grant_is_reported_and_a_missing_path_too() {
        let dir = tempfile::tempdir().unwrap();
        let grant = dir.path().join("shared");
        std::fs::create_dir(&grant).unwrap();
        std::os::unix::fs::symlink("/etc", grant.join("link")).unwrap();
        let through = grant.join("link/x");
        let missing = grant.join("missing");
        let facts = repo_facts([&through, &missing], std::slice::from_ref(&grant));
        assert_eq!(facts[&through], HostPathFact::ThroughSymlink(grant.join("link")));
        assert_eq!(facts[&missing], HostPathFact::Missing);
        assert!(matches!(check_at_start(&missing, Origin::Admin), Err(HostPathError::Missing(_))));
        assert_eq!(
            check_present(&missing),
            Err(StorageError::MissingHostPath(missing.display().to_string()))
        );
        assert_eq!(check_present(&grant), Ok(()));
    }
}
