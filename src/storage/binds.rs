//! The mount-source rule. The engine resolves a bind source path again at every start of a
//! container, its own `unless-stopped` restarts included, long after berth checked it. So no
//! bind source of any container berth manages may lie strictly below a directory that some
//! container can write: that container could replace the path below with a symlink to any host
//! directory and exit, and the engine's restart would mount it. Read-only mounts of an ancestor
//! are fine only while no container mounts it writable. And a host path a repo declares must lie
//! in directories that only root (or berth) can change, so no host user swaps them either.
//!
//! [`nested`] is the rule, over every bind source on the server ([`Bind`]); push checks,
//! `storage:mount` and every container creation call it.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

use super::{Attachment, Entry, MountSource, Origin, Source};
use crate::names::{AppName, EntryName};

#[derive(Debug, thiserror::Error)]
pub enum BindError {
    #[error(
        "the {inner} lies below the {outer}, which a container can write: the engine resolves bind sources again at \
         every start, its own restarts included, so that container could replace {} with a symlink to any host \
         path; {HOW_TO_FIX}",
        inner.path.display()
    )]
    Nested { inner: Box<Bind>, outer: Box<Bind> },
    #[error(
        "{} (above the host path {}) {why}: a bind source must lie in directories only root or berth can \
         change; ask the admin to fix the directory's owner and mode, or to grant a path elsewhere",
        dir.display(),
        host_path.display()
    )]
    UnsafeParent { dir: PathBuf, host_path: PathBuf, why: String },
    #[error("unable to inspect {path}: {source}")]
    Inspect { path: PathBuf, source: io::Error },
}

/// How to fix a nesting, shared by every place that reports one.
pub const HOW_TO_FIX: &str = "mount the outer directory read-only in every container, or give the inner mount a \
     directory of its own outside it";

/// One bind source of a container: whose mount it is and where it is on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    pub app: AppName,
    pub source: Source,
    pub subpath: Option<String>,
    pub container_path: String,
    pub made_by: Origin,
    pub writable: bool,
    /// The host path, normalised (`.` dropped, `..` applied).
    pub path: PathBuf,
    /// The host path with its symlinks resolved, when it exists and was asked for.
    pub real: Option<PathBuf>,
}

impl Bind {
    /// The bind source of an attachment; `None` for volumes and entries that no longer exist.
    /// Pure: no symlink is resolved (see [`Bind::with_real_path`]).
    pub fn of(
        app: &AppName,
        app_dir: &Path,
        attachment: &Attachment,
        entries: &BTreeMap<EntryName, Entry>,
    ) -> Option<Bind> {
        let MountSource::Bind(path) = attachment.resolve(app, app_dir, entries).ok()? else { return None };
        Some(Bind {
            app: app.clone(),
            source: attachment.source.clone(),
            subpath: attachment.subpath.clone(),
            container_path: attachment.container_path.clone(),
            made_by: attachment.made_by,
            writable: !attachment.readonly,
            path: normalize(&path),
            real: None,
        })
    }

    /// Every bind source of an app's mounts, with their symlinks resolved.
    pub fn all(
        app: &AppName,
        app_dir: &Path,
        mounts: &[Attachment],
        entries: &BTreeMap<EntryName, Entry>,
    ) -> Vec<Bind> {
        mounts.iter().filter_map(|m| Bind::of(app, app_dir, m, entries)).map(Bind::with_real_path).collect()
    }

    /// Adds the path with its symlinks resolved, so a link (an admin's, or a grant that is one)
    /// cannot hide a nesting.
    pub fn with_real_path(mut self) -> Bind {
        self.real = fs::canonicalize(&self.path).ok().filter(|real| *real != self.path);
        self
    }

    fn forms(&self) -> impl Iterator<Item = &Path> {
        std::iter::once(self.path.as_path()).chain(self.real.as_deref())
    }

    /// Strictly below `outer`, as written or with symlinks resolved.
    pub fn is_below(&self, outer: &Bind) -> bool {
        self.forms().any(|inner| outer.forms().any(|outer| inner != outer && inner.starts_with(outer)))
    }

    /// The rule, for one pair: this source lies strictly below `outer`, which its container
    /// can write.
    pub fn nests_in(&self, outer: &Bind) -> bool {
        outer.writable && self.is_below(outer)
    }
}

impl fmt::Display for Bind {
    /// `directory ./a (/var/lib/berth/data/apps/demo/a), mounted read-write at /a by app demo`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = self.path.display();
        match (&self.source, &self.subpath) {
            (Source::AppDir(rel), _) => write!(f, "directory ./{} ({path})", rel.display())?,
            (Source::Entry(name), Some(sub)) => write!(f, "subpath {sub} of entry {name} ({path})")?,
            (Source::Entry(name), None) => write!(f, "entry {name} ({path})")?,
            _ => write!(f, "host path {path}")?,
        }
        let access = if self.writable { "read-write" } else { "read-only" };
        write!(f, ", mounted {access} at {} by app {}", self.container_path, self.app)
    }
}

/// A bind source strictly below one that a container can write.
#[derive(Debug, Clone, Copy)]
pub struct Nested<'b> {
    pub inner: &'b Bind,
    pub outer: &'b Bind,
}

impl Nested<'_> {
    pub fn error(&self) -> BindError {
        BindError::Nested { inner: Box::new(self.inner.clone()), outer: Box::new(self.outer.clone()) }
    }
}

/// The rule: every bind source that lies strictly below a writable one, each with the first
/// writable one it lies below.
pub fn nested(binds: &[Bind]) -> Vec<Nested<'_>> {
    binds
        .iter()
        .filter_map(|inner| {
            binds.iter().find(|outer| inner.nests_in(outer)).map(|outer| Nested { inner, outer })
        })
        .collect()
}

/// The checks a container creation makes for `app`: the rule, between any bind of the app and
/// any other, and safe parents for the host paths its repo declared.
pub fn check(binds: &[Bind], app: &AppName) -> Result<(), BindError> {
    let mine = |bind: &Bind| &bind.app == app;
    if let Some(nesting) = nested(binds).into_iter().find(|n| mine(n.inner) || mine(n.outer)) {
        return Err(nesting.error());
    }
    for bind in binds.iter().filter(|b| mine(b) && b.made_by == Origin::Repo) {
        if let Source::HostPath(path) = &bind.source {
            check_parents(path)?;
        }
    }
    Ok(())
}

/// Refuses a host path with a parent directory that someone other than root or berth owns, or
/// that group or others may write (a sticky `/tmp` too: its owners may still swap their own
/// entries). Checked as written and with symlinks resolved; a parent that does not exist is
/// left to the existence check.
pub fn check_parents(path: &Path) -> Result<(), BindError> {
    let own = fs::metadata("/proc/self").map(|meta| meta.uid()).ok();
    let written = normalize(path);
    let real = fs::canonicalize(&written).ok();
    for form in std::iter::once(&written).chain(real.as_ref()) {
        for dir in form.ancestors().skip(1) {
            check_parent(dir, path, own)?;
        }
    }
    Ok(())
}

fn check_parent(dir: &Path, host_path: &Path, own: Option<u32>) -> Result<(), BindError> {
    let meta = match fs::symlink_metadata(dir) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(BindError::Inspect { path: dir.to_path_buf(), source: e }),
    };
    let why = if meta.uid() != 0 && Some(meta.uid()) != own {
        format!("belongs to uid {}", meta.uid())
    } else if !meta.file_type().is_symlink() && meta.mode() & 0o022 != 0 {
        format!("is writable by its group or others (mode {:04o})", meta.mode() & 0o7777)
    } else {
        return Ok(());
    };
    Err(BindError::UnsafeParent { dir: dir.to_path_buf(), host_path: host_path.to_path_buf(), why })
}

/// A path without `.` components, with `..` applied, by its text alone.
fn normalize(path: &Path) -> PathBuf {
    let mut clean = PathBuf::new();
    for component in path.components() {
        match component {
            Component::ParentDir => {
                clean.pop();
            }
            Component::CurDir => {}
            other => clean.push(other),
        }
    }
    clean
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn bind(app: &str, path: &str, writable: bool) -> Bind {
        Bind {
            app: AppName::new(app).unwrap(),
            source: Source::HostPath(path.into()),
            subpath: None,
            container_path: "/c".into(),
            made_by: Origin::Admin,
            writable,
            path: normalize(Path::new(path)),
            real: None,
        }
    }

    #[test]
    fn a_source_below_a_writable_one_is_nested() {
        let binds = [bind("x", "/srv/a", true), bind("y", "/srv/a/b", false), bind("y", "/srv/ab", true)];
        let found = nested(&binds);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].inner.path, Path::new("/srv/a/b"));
        assert_eq!(found[0].outer.path, Path::new("/srv/a"));
        assert!(check(&binds, &AppName::new("x").unwrap()).is_err());
        assert!(check(&binds[..1], &AppName::new("x").unwrap()).is_ok());
    }

    #[test]
    fn read_only_ancestors_and_equal_sources_are_fine() {
        let binds = [bind("x", "/srv/a", false), bind("y", "/srv/a/b", true), bind("z", "/srv/a/b/", true)];
        assert!(nested(&binds).is_empty());
        let mut writable = binds.to_vec();
        writable.push(bind("w", "/srv/./a", true));
        assert_eq!(nested(&writable).len(), 2);
    }

    #[test]
    fn nestings_of_other_apps_do_not_stop_this_one() {
        let binds = [bind("x", "/srv/a", true), bind("y", "/srv/a/b", true), bind("z", "/srv/c", true)];
        assert!(check(&binds, &AppName::new("z").unwrap()).is_ok());
        assert!(check(&binds, &AppName::new("y").unwrap()).is_err());
    }

    #[test]
    fn a_symlink_cannot_hide_a_nesting() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        fs::create_dir_all(real.join("sub")).unwrap();
        std::os::unix::fs::symlink(real.join("sub"), dir.path().join("link")).unwrap();
        let outer = bind("x", &real.display().to_string(), true).with_real_path();
        let inner = bind("y", &dir.path().join("link").display().to_string(), true).with_real_path();
        assert!(inner.is_below(&outer));
        assert!(!outer.is_below(&inner));
    }

    #[test]
    fn parents_must_be_safe() {
        let dir = tempfile::tempdir().unwrap();
        let granted = dir.path().join("granted/sub");
        fs::create_dir_all(&granted).unwrap();
        fs::set_permissions(dir.path().join("granted"), fs::Permissions::from_mode(0o777)).unwrap();
        let error = check_parents(&granted).unwrap_err().to_string();
        assert!(error.contains("granted (above the host path"), "{error}");
        assert!(error.contains("writable by its group or others (mode 0777)"), "{error}");
        // The temporary directory itself is below /tmp (sticky, 1777): never safe.
        fs::set_permissions(dir.path().join("granted"), fs::Permissions::from_mode(0o755)).unwrap();
        if std::env::temp_dir() == Path::new("/tmp") {
            let error = check_parents(&granted).unwrap_err().to_string();
            assert!(error.starts_with("/tmp (above the host path"), "{error}");
            assert!(error.contains("mode 1777"), "{error}");
        }
        assert!(check_parents(Path::new("/usr/bin")).is_ok());
    }

    #[test]
    fn paths_are_compared_normalised() {
        assert_eq!(normalize(Path::new("/a/./b/../c/")), Path::new("/a/c"));
    }
}
