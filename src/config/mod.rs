//! App config: the environment variables an admin gives an app (`config:*`) or every app
//! (`--global`), and how they and app.toml's `[env]` make a container's environment: global
//! config < app.toml `[env]` < app config. Values are secrets: no error or report prints one.

pub mod export;
pub mod key;
pub mod store;

use std::collections::HashMap;

pub use export::ExportFormat;
pub use key::KeyError;
pub use store::{Scope, Vars};

use crate::names::AppName;
use crate::state::{Root, RunConfig, StateError};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error("Invalid env pair: {key} has no value; write {key}=VALUE, or pass {key} --stdin")]
    NoValue { key: String },
    #[error("Invalid env pair: argument {0} is not KEY=VALUE")]
    NotAPair(usize),
    #[error("The value of {0} holds a NUL byte, which no process environment can hold")]
    Nul(String),
    #[error("{key} is not set in the {scope} config")]
    NotSet { key: String, scope: String },
    #[error("{0}")]
    Usage(String),
}

/// Parses `KEY=VALUE` (the value may hold anything, `=` too); `index` counts from 1 for the
/// message. Nothing of the argument but a valid key is ever echoed.
pub fn parse_pair(arg: &str, index: usize) -> Result<(String, String), ConfigError> {
    let Some((key, value)) = arg.split_once('=') else {
        return Err(match key::check(arg) {
            Ok(()) => ConfigError::NoValue { key: arg.to_string() },
            Err(_) => ConfigError::NotAPair(index),
        });
    };
    key::check(key)?;
    check_value(key, value)?;
    Ok((key.to_string(), value.to_string()))
}

/// A value may be any text a process environment holds: anything but NUL.
pub fn check_value(key: &str, value: &str) -> Result<(), ConfigError> {
    if value.contains('\0') { Err(ConfigError::Nul(key.to_string())) } else { Ok(()) }
}

/// The app's variables as its containers get them: global config < app.toml `[env]` of the
/// release (`run`) < app config.
pub fn merged(root: &Root, app: &AppName, run: &RunConfig) -> Result<Vars, ConfigError> {
    let mut vars = store::read(root, Scope::Global)?;
    vars.extend(run.env.iter().map(|(k, v)| (k.clone(), v.clone())));
    vars.extend(store::read(root, Scope::App(app))?);
    Ok(vars)
}

/// The environment of the app's process, `run` and build-command containers, as `KEY=VALUE`
/// sorted by key (berth's own `BERTH_*` and `PORT` are never among them).
pub fn environment(root: &Root, app: &AppName, run: &RunConfig) -> Result<Vec<String>, ConfigError> {
    Ok(merged(root, app, run)?.into_iter().map(|(key, value)| format!("{key}={value}")).collect())
}

/// The Docker build's args: the keys of app.toml's `[build].env_keys` that have a value.
pub fn build_args(
    root: &Root,
    app: &AppName,
    run: &RunConfig,
) -> Result<HashMap<String, String>, ConfigError> {
    let vars = merged(root, app, run)?;
    Ok(run
        .build_env_keys
        .iter()
        .filter_map(|k| vars.get_key_value(k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_split_at_the_first_equals_and_never_echo_a_value() {
        assert_eq!(parse_pair("URL=a=b=c", 1).unwrap(), ("URL".into(), "a=b=c".into()));
        assert_eq!(parse_pair("EMPTY=", 1).unwrap(), ("EMPTY".into(), String::new()));
        let no_value = parse_pair("DATABASE_URL", 2).unwrap_err().to_string();
        assert!(no_value.contains("DATABASE_URL has no value"), "{no_value}");
        let secret = parse_pair("hunter2-secret", 3).unwrap_err().to_string();
        assert!(!secret.contains("hunter2"), "{secret}");
        let bad_key = parse_pair("BAD-KEY=hunter2", 1).unwrap_err().to_string();
        assert!(bad_key.contains("BAD-KEY") && !bad_key.contains("hunter2"), "{bad_key}");
        let nul = parse_pair("K=a\0b", 1).unwrap_err().to_string();
        assert!(!nul.contains('\0'), "{nul}");
        assert!(matches!(parse_pair("BERTH_APP=x", 1), Err(ConfigError::Key(KeyError::Reserved(_)))));
    }

    #[test]
    fn the_app_wins_over_app_toml_which_wins_over_global() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(dir.path());
        let app = AppName::new("demo").unwrap();
        root.create_app(&app, &root.lock_app(&app).unwrap()).unwrap();
        let set = |scope, pairs: &[(&str, &str)]| {
            store::change(&root, scope, |vars| {
                vars.extend(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())));
                Ok(())
            })
            .unwrap()
        };
        set(Scope::Global, &[("A", "global"), ("B", "global"), ("C", "global")]);
        set(Scope::App(&app), &[("A", "app"), ("SECRET", "s")]);
        let run = RunConfig {
            env: [("A".to_string(), "toml".to_string()), ("B".to_string(), "toml".to_string())].into(),
            build_env_keys: vec!["B".into(), "SECRET".into(), "UNSET".into()],
            ..RunConfig::default()
        };
        assert_eq!(environment(&root, &app, &run).unwrap(), ["A=app", "B=toml", "C=global", "SECRET=s"]);
        let args = build_args(&root, &app, &run).unwrap();
        assert_eq!(args, HashMap::from([("B".into(), "toml".into()), ("SECRET".into(), "s".into())]));
    }
}
