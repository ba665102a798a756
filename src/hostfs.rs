//! Host directories berth manages: create them, hand them to a uid, remove them when (and only
//! when) the admin asked. Walks never follow symlinks, so a link planted in a data directory
//! cannot redirect a chown or a removal outside it.

use rustix::fs::{self as rfs, AtFlags, Dir, FileType, Gid, Mode, OFlags, ResolveFlags, Uid};
use rustix::io::Errno;
use std::fs;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

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

/// A directory opened by handle: working on it through `fd` cannot be redirected by a
/// symlink swapped in at `path` afterwards. `path` is for messages and engine mounts.
#[derive(Debug)]
pub struct HostDir {
    pub path: PathBuf,
    fd: OwnedFd,
}

impl HostDir {
    /// Opens `path` itself as a directory, refusing a symlink or a non-directory there.
    pub fn open(path: &Path) -> Result<HostDir, HostFsError> {
        let fd = rfs::open(path, DIR_FLAGS, Mode::empty()).map_err(open_error(path))?;
        Ok(HostDir { path: path.to_path_buf(), fd })
    }

    /// `chown uid:gid` on the directory the handle holds, never on what `path` names now.
    pub fn chown(&self, uid: u32, gid: u32) -> io::Result<()> {
        rfs::fchown(&self.fd, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid))).map_err(io::Error::from)
    }
}

/// Directories only, never through a symlink in the last component, not inherited by children.
const DIR_FLAGS: OFlags =
    OFlags::RDONLY.union(OFlags::DIRECTORY).union(OFlags::NOFOLLOW).union(OFlags::CLOEXEC);

/// Maps the errors of opening a directory without following links to what the user must fix.
fn open_error(path: &Path) -> impl FnOnce(Errno) -> HostFsError + use<> {
    let path = path.to_path_buf();
    move |errno| match errno {
        Errno::LOOP => HostFsError::Symlink(path),
        // O_DIRECTORY reports a final symlink as "not a directory"; say which one it is (for
        // the message only: nothing was opened).
        Errno::NOTDIR if fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink()) => {
            HostFsError::Symlink(path)
        }
        Errno::NOTDIR => HostFsError::NotADirectory(path),
        Errno::XDEV => HostFsError::Escape(path),
        errno => HostFsError::Io { action: "open", path, source: errno.into() },
    }
}

/// Creates `base/rel` one component at a time (mode 0755) through directory handles: each
/// step is created with `mkdirat` and opened with `openat2(RESOLVE_BENEATH |
/// RESOLVE_NO_SYMLINKS)` relative to its parent's handle, so no symlink or `..` can lead it
/// outside `base`, whenever it is swapped in. Returns the handle of the final directory: only
/// that one is given to the data's owner; the parents berth creates stay berth's.
pub fn ensure_dir_beneath(base: &Path, rel: &Path) -> Result<HostDir, HostFsError> {
    let mut dir = HostDir::open(base)?;
    for component in rel.components() {
        let Component::Normal(part) = component else {
            return Err(HostFsError::Escape(rel.to_path_buf()));
        };
        let path = dir.path.join(part);
        match rfs::mkdirat(&dir.fd, part, Mode::from_raw_mode(0o755)) {
            Ok(()) | Err(Errno::EXIST) => {}
            Err(errno) => return Err(io_error("create", &path)(errno.into())),
        }
        let fd = rfs::openat2(&dir.fd, part, DIR_FLAGS, Mode::empty(), BENEATH).map_err(open_error(&path))?;
        dir = HostDir { path, fd };
    }
    Ok(dir)
}

const BENEATH: ResolveFlags = ResolveFlags::BENEATH.union(ResolveFlags::NO_SYMLINKS);

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

/// `chown -R uid:gid path` through directory handles, as std's `remove_dir_all` walks: each
/// child directory is opened relative to its parent's handle with `O_NOFOLLOW`, everything
/// else is changed with `fchownat(AT_SYMLINK_NOFOLLOW)`. A directory swapped for a symlink
/// mid-walk is then only a link whose own owner changes; its target is never reached.
pub fn chown_tree(path: &Path, uid: u32, gid: u32) -> Result<(), HostFsError> {
    let dir = HostDir::open(path)?;
    dir.chown(uid, gid).map_err(io_error("change the owner of", path))?;
    chown_below(&dir, Uid::from_raw(uid), Gid::from_raw(gid))
}

fn chown_below(dir: &HostDir, uid: Uid, gid: Gid) -> Result<(), HostFsError> {
    let entries = Dir::read_from(&dir.fd).map_err(|e| io_error("read", &dir.path)(e.into()))?;
    for entry in entries {
        let entry = entry.map_err(|e| io_error("read", &dir.path)(e.into()))?;
        let name = entry.file_name();
        if name == c"." || name == c".." {
            continue;
        }
        let path = dir.path.join(std::ffi::OsStr::from_bytes(name.to_bytes()));
        let child = match entry.file_type() {
            FileType::Directory | FileType::Unknown => {
                rfs::openat(&dir.fd, name, DIR_FLAGS, Mode::empty()).ok()
            }
            _ => None,
        };
        match child {
            Some(fd) => {
                let child = HostDir { path, fd };
                child
                    .chown(uid.as_raw(), gid.as_raw())
                    .map_err(io_error("change the owner of", &child.path))?;
                chown_below(&child, uid, gid)?;
            }
            // Not a directory (or no longer one): change the entry itself, never its target.
            None => match rfs::chownat(&dir.fd, name, Some(uid), Some(gid), AtFlags::SYMLINK_NOFOLLOW) {
                // Removed since it was listed (the app is live): nothing left to own.
                Ok(()) | Err(Errno::NOENT) => {}
                Err(errno) => return Err(io_error("change the owner of", &path)(errno.into())),
            },
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

/// Copies the tree at `from` to `to` (which must not exist): directories, regular files and
/// symlinks (as links, never followed), with their modes and owners. Anything else (a device
/// node, a socket, a fifo) is refused rather than copied or skipped silently.
pub fn copy_tree(from: &Path, to: &Path) -> Result<(), HostFsError> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let meta = fs::symlink_metadata(from).map_err(io_error("inspect", from))?;
    let kind = meta.file_type();
    if kind.is_symlink() {
        let target = fs::read_link(from).map_err(io_error("read the link", from))?;
        std::os::unix::fs::symlink(&target, to).map_err(io_error("create the link", to))?;
    } else if kind.is_dir() {
        fs::create_dir(to).map_err(io_error("create", to))?;
        for child in fs::read_dir(from).map_err(io_error("list", from))? {
            let child = child.map_err(io_error("list", from))?;
            copy_tree(&child.path(), &to.join(child.file_name()))?;
        }
        fs::set_permissions(to, fs::Permissions::from_mode(meta.mode() & 0o7777))
            .map_err(io_error("change the mode of", to))?;
    } else if kind.is_file() {
        fs::copy(from, to).map_err(io_error("copy", from))?;
    } else {
        return Err(HostFsError::Io {
            action: "copy",
            path: from.to_path_buf(),
            source: io::Error::other("not a directory, regular file or symlink"),
        });
    }
    if crate::state::running_as_root() {
        std::os::unix::fs::lchown(to, Some(meta.uid()), Some(meta.gid())).map_err(io_error("chown", to))?;
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn copy_tree_keeps_links_and_modes() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let from = dir.path().join("from");
        fs::create_dir_all(from.join("sub")).unwrap();
        fs::write(from.join("sub/file"), "data").unwrap();
        fs::set_permissions(from.join("sub"), fs::Permissions::from_mode(0o750)).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", from.join("link")).unwrap();
        let to = dir.path().join("to");
        copy_tree(&from, &to).unwrap();
        assert_eq!(fs::read_to_string(to.join("sub/file")).unwrap(), "data");
        assert_eq!(fs::metadata(to.join("sub")).unwrap().mode() & 0o777, 0o750);
        assert_eq!(fs::read_link(to.join("link")).unwrap(), Path::new("/etc/passwd"));
        assert!(copy_tree(&from, &to).is_err(), "an existing target is not overwritten");
    }

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
        assert_eq!(made.path, base.join("a/b"));
        assert!(base.join("a/b").is_dir());
        assert_eq!(ensure_dir_beneath(&base, Path::new("a/b")).unwrap().path, base.join("a/b"));
        std::os::unix::fs::symlink("/etc", base.join("evil")).unwrap();
        let got = ensure_dir_beneath(&base, Path::new("evil/x"));
        assert!(matches!(got, Err(HostFsError::Symlink(_))), "{got:?}");
        assert!(matches!(ensure_dir_beneath(&base, Path::new("evil")), Err(HostFsError::Symlink(_))));
        assert!(matches!(ensure_dir_beneath(&base, Path::new("../x")), Err(HostFsError::Escape(_))));
        assert!(matches!(ensure_dir_beneath(&base, Path::new("a/../../x")), Err(HostFsError::Escape(_))));
        assert!(!Path::new("/etc/x").exists());
        fs::write(base.join("file"), "x").unwrap();
        assert!(matches!(ensure_dir_beneath(&base, Path::new("file/x")), Err(HostFsError::NotADirectory(_))));
        std::os::unix::fs::symlink(&base, dir.path().join("link")).unwrap();
        assert!(matches!(
            ensure_dir_beneath(&dir.path().join("link"), Path::new("a")),
            Err(HostFsError::Symlink(_))
        ));
    }

    /// The handle, not the path, is what gets the owner: a directory swapped for a symlink
    /// after it was opened leaves the link's target untouched.
    #[test]
    fn a_swap_after_opening_does_not_redirect_the_chown() {
        let dir = tempfile::tempdir().unwrap();
        let (base, host) = (dir.path().join("app"), dir.path().join("host"));
        fs::create_dir_all(&host).unwrap();
        fs::create_dir(&base).unwrap();
        let opened = ensure_dir_beneath(&base, Path::new("data")).unwrap();
        fs::rename(base.join("data"), dir.path().join("moved")).unwrap();
        std::os::unix::fs::symlink(&host, base.join("data")).unwrap();
        let before = fs::metadata(&host).unwrap().uid();
        opened.chown(4321, 4321).unwrap();
        assert_eq!(fs::metadata(&host).unwrap().uid(), before);
        assert_eq!(fs::metadata(dir.path().join("moved")).unwrap().uid(), 4321);
    }

    /// A thread keeps swapping a subdirectory for a symlink to a "host" directory while the
    /// walk runs: the host files never change owner.
    #[test]
    fn chown_tree_survives_a_directory_swapped_mid_walk() {
        let dir = tempfile::tempdir().unwrap();
        let (data, host) = (dir.path().join("data"), dir.path().join("host"));
        fs::create_dir_all(data.join("sub")).unwrap();
        fs::create_dir(&host).unwrap();
        for i in 0..200 {
            fs::write(data.join("sub").join(i.to_string()), "x").unwrap();
            fs::write(host.join(i.to_string()), "x").unwrap();
        }
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let swapper = {
            let (data, host, stop) = (data.clone(), host.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let _ = fs::rename(data.join("sub"), data.join("real"));
                    let _ = std::os::unix::fs::symlink(&host, data.join("sub"));
                    let _ = fs::remove_file(data.join("sub"));
                    let _ = fs::rename(data.join("real"), data.join("sub"));
                }
            })
        };
        for round in 0..200 {
            chown_tree(&data, 5000 + round, 5000 + round).unwrap();
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        swapper.join().unwrap();
        let before = fs::metadata(dir.path()).unwrap().uid();
        for entry in fs::read_dir(&host).unwrap() {
            assert_eq!(entry.unwrap().metadata().unwrap().uid(), before);
        }
        assert_eq!(fs::metadata(&host).unwrap().uid(), before);
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
