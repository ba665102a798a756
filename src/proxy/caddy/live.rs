//! Which of an app's upstream sets Caddy sends its requests to, as a symlink berth replaces in
//! one step: `live/<app>` points at `.sets/<set>`, a directory holding one file named after the
//! set, and the route of each set in Caddy's config matches when `live/<app>/<set>` exists
//! (Caddy's `file` matcher, checked at every request). A swap between sets the config already
//! has changes this link only: Caddy reloads nothing, so it closes no client connection.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use super::super::{Route, Table};
use crate::names::AppName;
use crate::state::{StateError, replace_symlink, write_atomic};

/// Where the sets' marker directories are, under the live directory.
const SETS: &str = ".sets";

/// A set's name: its addresses, as a file name Caddy's matcher takes literally (no glob
/// characters); past [`LONGEST_NAME`], its first address and a hash of the others.
pub fn set_name(set: &[SocketAddr]) -> String {
    let mut sorted = set.to_vec();
    sorted.sort();
    let shown: Vec<String> = sorted.iter().map(ToString::to_string).collect();
    let mut name = shown.join("_");
    if name.len() > LONGEST_NAME {
        name = format!("{}_{:016x}", shown[0], fnv1a(name.as_bytes()));
    }
    name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '.' || c == '_' { c } else { '-' }).collect()
}

/// The longest set name spelled out in full (a file name has at most 255 bytes).
const LONGEST_NAME: usize = 200;

/// FNV-1a: a hash that stays the same across builds, as the names in a running config must.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(0xcbf2_9ce4_8422_2325, |hash, byte| (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3))
}

/// The file, relative to the live directory, that exists while `set` serves `app`.
pub fn marker(app: &AppName, set: &[SocketAddr]) -> String {
    format!("/{app}/{}", set_name(set))
}

/// The name of the set serving `route` now, if any.
fn serving_set(route: &Route) -> Option<String> {
    let mut serving = route.target.addresses();
    serving.sort();
    (!serving.is_empty()).then(|| set_name(&serving))
}

/// Points every app's link at the set its route serves (none: no link, Caddy answers 503), and
/// removes the links of apps the table no longer has.
pub fn apply(dir: &Path, table: &Table) -> Result<(), StateError> {
    for (app, route) in &table.apps {
        point(dir, app, serving_set(route).as_deref())?;
    }
    for name in linked_apps(dir)? {
        if !table.apps.keys().any(|app| app.as_str() == name) {
            remove(&dir.join(name))?;
        }
    }
    Ok(())
}

/// Whether every app's link points at the set its route serves.
pub fn in_sync(dir: &Path, table: &Table) -> bool {
    table.apps.iter().all(|(app, route)| current(dir, app) == serving_set(route))
}

fn point(dir: &Path, app: &AppName, set: Option<&str>) -> Result<(), StateError> {
    let link = dir.join(app.as_str());
    let Some(set) = set else { return remove(&link) };
    let marker = dir.join(SETS).join(set).join(set);
    if !marker.exists() {
        write_atomic(&marker, b"")?;
    }
    let target = PathBuf::from(SETS).join(set);
    if std::fs::read_link(&link).ok().as_ref() == Some(&target) {
        return Ok(());
    }
    replace_symlink(&link, &target)
}

/// The set `app`'s link points at.
fn current(dir: &Path, app: &AppName) -> Option<String> {
    let target = std::fs::read_link(dir.join(app.as_str())).ok()?;
    target.strip_prefix(SETS).ok()?.to_str().map(str::to_string)
}

fn linked_apps(dir: &Path) -> Result<Vec<String>, StateError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(StateError::io("read", dir)(e)),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(StateError::io("read", dir))?;
        let is_link = entry.file_type().is_ok_and(|t| t.is_symlink());
        if let Some(name) = entry.file_name().to_str().filter(|n| is_link && !n.starts_with('.')) {
            names.push(name.to_string());
        }
    }
    Ok(names)
}

fn remove(link: &Path) -> Result<(), StateError> {
    match std::fs::remove_file(link) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(StateError::io("remove", link)(e)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::{Domain, Target};

    fn address(port: u16) -> SocketAddr {
        SocketAddr::from(([172, 18, 0, 2], port))
    }

    fn app(name: &str) -> AppName {
        AppName::new(name).unwrap()
    }

    fn table(routes: &[(&str, Target)]) -> Table {
        let mut table = Table::default();
        for (name, target) in routes {
            let route = Route::new(vec![Domain::new(&format!("{name}.test")).unwrap()], target.clone());
            table.apps.insert(app(name), route);
        }
        table
    }

    /// Whether `app`'s link makes `set`'s marker exist, as Caddy's matcher sees it.
    fn serves(dir: &Path, name: &str, set: &[SocketAddr]) -> bool {
        dir.join(marker(&app(name), set).trim_start_matches('/')).is_file()
    }

    #[test]
    fn a_switch_repoints_the_link_and_only_the_serving_set_matches() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (vec![address(5000)], vec![address(5001)]);
        let mut table = table(&[("web", Target::Up(a.clone())), ("idle", Target::Down)]);
        apply(dir.path(), &table).unwrap();
        assert!(serves(dir.path(), "web", &a) && !serves(dir.path(), "web", &b));
        assert!(in_sync(dir.path(), &table));
        let route = table.apps.get_mut(&app("web")).unwrap();
        route.switch_to(Target::Up(b.clone()));
        assert!(!in_sync(dir.path(), &table));
        apply(dir.path(), &table).unwrap();
        assert!(serves(dir.path(), "web", &b) && !serves(dir.path(), "web", &a));
        assert!(in_sync(dir.path(), &table));
        assert!(!dir.path().join("idle").exists(), "an app with no release has no link");
        table.apps.remove(&app("web"));
        apply(dir.path(), &table).unwrap();
        assert!(std::fs::symlink_metadata(dir.path().join("web")).is_err(), "a removed app's link goes");
    }

    #[test]
    fn the_sets_do_not_depend_on_which_one_serves() {
        let (a, b) = (address(5000), address(5001));
        let mut route = Route::new(vec![], Target::Up(vec![b]));
        route.slots = vec![[b, a]];
        let before = route.sets();
        route.switch_to(Target::Up(vec![a]));
        assert_eq!(route.sets(), before);
        route.retire(b);
        assert_eq!(route.sets(), before);
        assert_eq!(before, vec![vec![a], vec![b]]);
        assert_eq!(set_name(&[b, a]), "172.18.0.2-5000_172.18.0.2-5001");
        let many: Vec<SocketAddr> = (0..20).map(|i| address(6000 + i)).collect();
        assert!(set_name(&many).len() < LONGEST_NAME, "{}", set_name(&many));
        assert_ne!(set_name(&many), set_name(&many[1..]));
    }
}
