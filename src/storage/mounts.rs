//! The admin's changes to an app's mounts (`storage:mount`, `storage:unmount`,
//! `storage:migrate`) as rules on its state: one mount per container path and process type, the
//! same mount not twice, a mount `app.toml` made refused (the repo owns it), and a mount a push
//! detached forgotten by the host side it resolves to. Nothing here touches the server.

use std::collections::BTreeMap;
use std::path::Path;

use super::{Attachment, Entry, LegacyMount, MountSource, Origin, Source, StorageError};
use crate::names::{AppName, EntryName};
use crate::state::AppState;

/// What `storage:unmount` of the colon form did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unmounted {
    /// Admin mounts were removed: the containers need re-creating.
    Removed,
    /// A detached mount's record was forgotten; its data stays where it is.
    Forgot(Attachment),
}

/// Refuses `attachment` when another mount of the app holds its container path for the same
/// process type.
pub fn check_collisions(
    app: &AppName,
    state: &AppState,
    attachment: &Attachment,
) -> Result<(), StorageError> {
    let taken = state.mounts.iter().find(|m| !m.same_mount(attachment) && m.collides_with(attachment));
    match taken {
        Some(other) => Err(StorageError::PathTaken {
            app: app.clone(),
            container_path: attachment.container_path.clone(),
            holder: other.source.clone(),
            process_type: other.process_type.clone(),
        }),
        None => Ok(()),
    }
}

/// Adds a colon-form mount; the same mount twice is refused.
pub fn add(state: &mut AppState, app: &AppName, attachment: Attachment) -> Result<(), StorageError> {
    if state.mounts.iter().any(|m| m.same_mount(&attachment)) {
        return Err(StorageError::MountExists);
    }
    check_collisions(app, state, &attachment)?;
    state.mounts.push(attachment);
    Ok(())
}

/// Adds an entry mount, or replaces the same mount's settings; whether it replaced one.
pub fn put(state: &mut AppState, app: &AppName, attachment: Attachment) -> Result<bool, StorageError> {
    check_collisions(app, state, &attachment)?;
    match state.mounts.iter_mut().find(|m| m.same_mount(&attachment)) {
        Some(existing) => {
            *existing = attachment;
            Ok(true)
        }
        None => {
            state.mounts.push(attachment);
            Ok(false)
        }
    }
}

/// Removes the colon form's admin mounts, or else forgets the detached mount whose host side is
/// the one named.
pub fn unmount_legacy(
    state: &mut AppState,
    app: &AppName,
    app_dir: &Path,
    entries: &BTreeMap<EntryName, Entry>,
    legacy: &LegacyMount,
) -> Result<Unmounted, StorageError> {
    if remove_admin(state, |m| m.source == legacy.source && m.container_path == legacy.container_path)? {
        return Ok(Unmounted::Removed);
    }
    let host = named_host_side(&legacy.source);
    let position = state.detached.iter().position(|d| {
        d.container_path == legacy.container_path && d.resolve(app, app_dir, entries).ok() == host
    });
    match position {
        Some(index) => Ok(Unmounted::Forgot(state.detached.remove(index))),
        None => Err(StorageError::NoSuchMount),
    }
}

/// The host side a colon-form source names itself (a host path or a volume).
fn named_host_side(source: &Source) -> Option<MountSource> {
    match source {
        Source::HostPath(path) => Some(MountSource::Bind(path.clone())),
        Source::Volume(name) => Some(MountSource::Volume(name.clone())),
        Source::AppDir(_) | Source::AppVolume(_) | Source::Entry(_) => None,
    }
}

/// Removes an entry's mount: at `container_path`, or at the only path it is mounted at.
pub fn unmount_entry(
    state: &mut AppState,
    app: &AppName,
    name: &EntryName,
    container_path: Option<&str>,
) -> Result<(), StorageError> {
    let source = Source::Entry(name.clone());
    let mut paths: Vec<&str> =
        state.mounts.iter().filter(|m| m.source == source).map(|m| m.container_path.as_str()).collect();
    paths.sort_unstable();
    paths.dedup();
    let target = match (container_path, paths.as_slice()) {
        (_, []) => return Err(StorageError::EntryNotMounted { name: name.clone(), app: app.clone() }),
        (Some(path), _) => path.to_string(),
        (None, [only]) => (*only).to_string(),
        (None, many) => {
            let paths = many.join(", ");
            return Err(StorageError::EntryMountedAtMany { name: name.clone(), app: app.clone(), paths });
        }
    };
    if remove_admin(state, |m| m.source == source && m.container_path == target)? {
        Ok(())
    } else {
        Err(StorageError::EntryNotMountedAt { name: name.clone(), app: app.clone(), target })
    }
}

/// Removes the admin mounts that match; refuses repo-made ones, which `app.toml` owns.
fn remove_admin(state: &mut AppState, matches: impl Fn(&Attachment) -> bool) -> Result<bool, StorageError> {
    if let Some(repo_made) = state.mounts.iter().find(|m| matches(m) && m.made_by == Origin::Repo) {
        return Err(StorageError::RepoMade(repo_made.container_path.clone()));
    }
    let before = state.mounts.len();
    state.mounts.retain(|m| !matches(m));
    Ok(state.mounts.len() != before)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::Phase;

    fn app() -> AppName {
        AppName::new("demo").unwrap()
    }

    fn entry_mount(name: &str, path: &str, made_by: Origin) -> Attachment {
        Attachment {
            source: Source::Entry(EntryName::new(name).unwrap()),
            container_path: path.into(),
            phases: [Phase::Deploy, Phase::Run].into(),
            process_type: "_default_".into(),
            subpath: None,
            readonly: false,
            volume_options: None,
            volume_chown: None,
            made_by,
        }
    }

    #[test]
    fn a_container_path_holds_one_mount_and_the_same_mount_is_refused_twice() {
        let mut state = AppState::default();
        add(&mut state, &app(), entry_mount("a", "/data", Origin::Admin)).unwrap();
        assert_eq!(
            add(&mut state, &app(), entry_mount("a", "/data", Origin::Admin)),
            Err(StorageError::MountExists)
        );
        let taken = add(&mut state, &app(), entry_mount("b", "/data", Origin::Admin)).unwrap_err();
        assert_eq!(
            taken.to_string(),
            "Container path /data on app demo is already mounted by entry:a for process type _default_; unmount it first"
        );
        assert_eq!(put(&mut state, &app(), entry_mount("a", "/data", Origin::Admin)), Ok(true));
    }

    #[test]
    fn an_entry_unmount_needs_a_path_when_it_is_mounted_twice_and_never_removes_a_repo_mount() {
        let a = EntryName::new("a").unwrap();
        let mounts = vec![entry_mount("a", "/one", Origin::Admin), entry_mount("a", "/two", Origin::Repo)];
        let mut state = AppState { mounts, ..AppState::default() };
        let many = unmount_entry(&mut state, &app(), &a, None).unwrap_err();
        assert!(matches!(many, StorageError::EntryMountedAtMany { .. }), "{many}");
        assert_eq!(
            unmount_entry(&mut state, &app(), &a, Some("/two")),
            Err(StorageError::RepoMade("/two".into()))
        );
        unmount_entry(&mut state, &app(), &a, Some("/one")).unwrap();
        assert_eq!(state.mounts.len(), 1);
    }

    #[test]
    fn a_detached_mount_is_forgotten_by_the_host_side_it_resolves_to() {
        let detached =
            Attachment { source: Source::HostPath("/srv/x".into()), ..entry_mount("a", "/x", Origin::Repo) };
        let mut state = AppState { detached: vec![detached.clone()], ..AppState::default() };
        let legacy = LegacyMount::parse("/srv/x/:/x").unwrap();
        let forgot = unmount_legacy(&mut state, &app(), Path::new("/apps/demo"), &BTreeMap::new(), &legacy);
        assert_eq!(forgot, Ok(Unmounted::Forgot(detached)));
        assert_eq!(
            unmount_legacy(&mut state, &app(), Path::new("/apps/demo"), &BTreeMap::new(), &legacy),
            Err(StorageError::NoSuchMount)
        );
    }
}
