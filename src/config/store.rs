//! Where config lives: `apps/<app>/config.toml` for an app, `config.toml` at the root for the
//! server-wide values. Both mode 0600, written atomically under the app's (or the global
//! config's) lock; a change that fails, or changes nothing, writes nothing.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{ConfigError, key};
use crate::names::AppName;
use crate::state::{self, Lock, Root, StateError};

/// Key → value, sorted by key.
pub type Vars = BTreeMap<String, String>;

/// Whose config: one app's, or the server-wide one every app inherits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope<'a> {
    Global,
    App(&'a AppName),
}

impl Scope<'_> {
    fn file(&self, root: &Root) -> PathBuf {
        match self {
            Scope::Global => root.global_config_file(),
            Scope::App(app) => root.app_config_file(app),
        }
    }

    fn lock(&self, root: &Root) -> Result<Lock, StateError> {
        match self {
            Scope::Global => root.lock_named("config-global"),
            Scope::App(app) => root.lock_app(app),
        }
    }

    /// `global` or the app's name, as Dokku's headings say it.
    pub fn name(&self) -> String {
        match self {
            Scope::Global => "global".to_string(),
            Scope::App(app) => app.to_string(),
        }
    }
}

/// The file's shape.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    #[serde(default)]
    vars: Vars,
}

/// The config of a scope; an app's must exist.
pub fn read(root: &Root, scope: Scope) -> Result<Vars, ConfigError> {
    if let Scope::App(app) = scope {
        root.read_app(app)?;
    }
    let path = scope.file(root);
    let file: ConfigFile = state::read_toml(&path)?.unwrap_or_default();
    if let Some(bad) = file.vars.keys().find(|k| key::check(k).is_err()) {
        let message = format!("key {} is not a valid config key", crate::output::printable(bad));
        return Err(StateError::Corrupt { path, message }.into());
    }
    Ok(file.vars)
}

/// Reads, changes and writes a scope's config under its lock; returns what `change` returns.
pub fn change<T>(
    root: &Root,
    scope: Scope,
    change: impl FnOnce(&mut Vars) -> Result<T, ConfigError>,
) -> Result<T, ConfigError> {
    let _lock = scope.lock(root)?;
    let before = read(root, scope)?;
    let mut after = before.clone();
    let value = change(&mut after)?;
    if after != before {
        state::write_private_toml(&scope.file(root), &ConfigFile { vars: after })?;
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn hostile_values_round_trip_through_the_file_which_only_its_owner_reads() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(dir.path());
        let app = AppName::new("demo").unwrap();
        root.create_app(&app, &root.lock_app(&app).unwrap()).unwrap();
        let values =
            ["", "a = \"b\"\n[vars]\nX = 'y'", "\u{0}x", "\u{1b}\u{7f}\r\n", "é🚢", "'''\"\"\"", "\\u0041"];
        let vars: Vars = values.iter().enumerate().map(|(i, v)| (format!("K{i}"), v.to_string())).collect();
        change(&root, Scope::App(&app), |v| {
            v.clone_from(&vars);
            Ok(())
        })
        .unwrap();
        assert_eq!(read(&root, Scope::App(&app)).unwrap(), vars);
        let mode = fs::metadata(root.app_config_file(&app)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn an_unknown_app_has_no_config_and_a_failed_change_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(dir.path());
        let app = AppName::new("ghost").unwrap();
        assert!(matches!(read(&root, Scope::App(&app)), Err(ConfigError::State(StateError::NoSuchApp(_)))));
        let failed: Result<(), _> = change(&root, Scope::Global, |v| {
            v.insert("A".into(), "b".into());
            Err(ConfigError::Usage("no".into()))
        });
        assert!(failed.is_err());
        assert!(!root.global_config_file().exists());
    }
}
