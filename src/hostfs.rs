//! Host directories berth manages: create them, hand them to a uid, remove them when (and only
//! when) the admin asked. Walks never follow symlinks, so a link planted in a data directory
//! cannot redirect a chown or a removal outside it.

use std::fs;
use std::io;
use std::os::unix::fs::{PermissionsExt, lchown};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum HostFsError {
    #[error("unable to {action} {path}: {source}")]
    Io { action: &'static str, path: PathBuf, source: io::Error },
    #[error("{0} exists but is not a directory")]
    NotADirectory(PathBuf),
    #[error(
        "{0} is a symlink; berth does not follow symlinks in storage paths (remove the link, or mount its target explicitly)"
    )]
    Symlink(PathBuf),
    #[error("storage path {0} must be relative and stay inside its directory")]
    Escape(PathBuf),
}

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> HostFsError + use<> {
    let path = path.to_path_buf();
    move |source| HostFsError::Io { action, path, source }
}

/// Creates `path` and missing parents (mode 0755). Returns whether it was created.
pub fn ensure_dir(path: &Path) -> Result<bool, HostFsError> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => Ok(false),
        Ok(_) => Err(HostFsError::NotADirectory(path.to_path_buf())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::create_dir_all(path).map_err(io_error("create", path))?;
            Ok(true)
        }
        Err(e) => Err(io_error("inspect", path)(e)),
    }
}

/// Creates `base/rel` one component at a time, refusing to pass through a symlink or a
/// non-directory, so data directories cannot be redirected outside `base`. Returns the
/// directories to give to the data's owner: those it created, and the final one (existing
/// parents keep their owner). `base` itself must already be a real directory.
pub fn ensure_dir_beneath(base: &Path, rel: &Path) -> Result<Vec<PathBuf>, HostFsError> {
    let meta = fs::symlink_metadata(base).map_err(io_error("inspect", base))?;
    if meta.file_type().is_symlink() {
        return Err(HostFsError::Symlink(base.to_path_buf()));
    }
    if !meta.is_dir() {
        return Err(HostFsError::NotADirectory(base.to_path_buf()));
    }
    let mut path = base.to_path_buf();
    let mut to_own = Vec::new();
    let parts: Vec<_> = rel.components().collect();
    for (index, component) in parts.iter().enumerate() {
        let std::path::Component::Normal(part) = component else {
            return Err(HostFsError::Escape(rel.to_path_buf()));
        };
        path.push(part);
        let last = index + 1 == parts.len();
        match fs::symlink_metadata(&path) {
            Ok(meta) if meta.file_type().is_symlink() => return Err(HostFsError::Symlink(path)),
            Ok(meta) if !meta.is_dir() => return Err(HostFsError::NotADirectory(path)),
            Ok(_) => {
                if last {
                    to_own.push(path.clone());
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                match fs::create_dir(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(io_error("create", &path)(e)),
                }
                // Re-check: something may have raced a symlink in.
                if fs::symlink_metadata(&path).map_err(io_error("inspect", &path))?.file_type().is_symlink() {
                    return Err(HostFsError::Symlink(path));
                }
                to_own.push(path.clone());
            }
            Err(e) => return Err(io_error("inspect", &path)(e)),
        }
    }
    Ok(to_own)
}

/// Refuses a path with a symlink in any component: a repo-declared host path must be the real
/// directory the admin granted, not a link an app planted to reach elsewhere. Checked each time
/// containers are created, not only when the push was validated.
pub fn check_no_symlinks(path: &Path) -> Result<(), HostFsError> {
    let mut current = PathBuf::new();
    for component in path.components() {
        current.push(component);
        let meta = fs::symlink_metadata(&current).map_err(io_error("inspect", &current))?;
        if meta.file_type().is_symlink() {
            return Err(HostFsError::Symlink(current));
        }
    }
    Ok(())
}

/// `chown -R uid:gid path` without following symlinks.
pub fn chown_tree(path: &Path, uid: u32, gid: u32) -> Result<(), HostFsError> {
    lchown(path, Some(uid), Some(gid)).map_err(io_error("change the owner of", path))?;
    let meta = fs::symlink_metadata(path).map_err(io_error("inspect", path))?;
    if meta.is_dir() {
        for entry in fs::read_dir(path).map_err(io_error("read", path))? {
            let entry = entry.map_err(io_error("read", path))?;
            chown_tree(&entry.path(), uid, gid)?;
        }
    }
    Ok(())
}

pub fn set_mode(path: &Path, mode: u32) -> Result<(), HostFsError> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(io_error("change the mode of", path))
}

/// Removes a directory and everything below it; absent is fine. Only for explicit admin flags.
pub fn remove_tree(path: &Path) -> Result<bool, HostFsError> {
    match fs::remove_dir_all(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_error("remove", path)(e)),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn chown_does_not_follow_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside");
        fs::write(&outside, "x").unwrap();
        let data = dir.path().join("data");
        assert!(ensure_dir(&data.join("a/b")).unwrap());
        assert!(!ensure_dir(&data.join("a/b")).unwrap());
        std::os::unix::fs::symlink(&outside, data.join("a/link")).unwrap();
        let before = fs::metadata(&outside).unwrap().uid();
        chown_tree(&data, 4321, 4321).unwrap();
        assert_eq!(fs::symlink_metadata(data.join("a/b")).unwrap().uid(), 4321);
        assert_eq!(fs::metadata(&outside).unwrap().uid(), before);
    }

    #[test]
    fn ensure_dir_beneath_refuses_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("app");
        fs::create_dir(&base).unwrap();
        let made = ensure_dir_beneath(&base, Path::new("a/b")).unwrap();
        assert_eq!(made, vec![base.join("a"), base.join("a/b")]);
        assert!(base.join("a/b").is_dir());
        assert_eq!(ensure_dir_beneath(&base, Path::new("a/b")).unwrap(), vec![base.join("a/b")]);
        std::os::unix::fs::symlink("/etc", base.join("evil")).unwrap();
        assert!(matches!(ensure_dir_beneath(&base, Path::new("evil/x")), Err(HostFsError::Symlink(_))));
        assert!(matches!(ensure_dir_beneath(&base, Path::new("evil")), Err(HostFsError::Symlink(_))));
        assert!(matches!(ensure_dir_beneath(&base, Path::new("../x")), Err(HostFsError::Escape(_))));
        assert!(!Path::new("/etc/x").exists());
    }

    #[test]
    fn symlinks_in_host_paths_are_found() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real/sub");
        fs::create_dir_all(&real).unwrap();
        std::os::unix::fs::symlink(dir.path().join("real"), dir.path().join("link")).unwrap();
        check_no_symlinks(&real).unwrap();
        assert!(matches!(check_no_symlinks(&dir.path().join("link/sub")), Err(HostFsError::Symlink(_))));
    }

    #[test]
    fn ensure_dir_refuses_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        fs::write(&file, "x").unwrap();
        assert!(matches!(ensure_dir(&file), Err(HostFsError::NotADirectory(_))));
    }
}
