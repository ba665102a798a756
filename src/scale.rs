//! How many instances of each process type an app runs: the admin's `ps:scale` wins over
//! app.toml's `[scale]`, and a process neither names runs one. A process with an exclusive
//! (single-writer) mount runs at most one.

use std::collections::BTreeMap;

use crate::manifest::{Diagnostic, Manifest};
use crate::names::AppName;
use crate::output::printable;
use crate::state::{AppState, Root, RunConfig, StateError};

/// Most instances of one process type.
pub const MAX_SCALE: u32 = 100;
/// Instances of a process type nothing scales.
pub const DEFAULT_SCALE: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScaleError {
    #[error("Missing count for process type {}: write <process>=<count>", printable(.0))]
    MissingCount(String),
    #[error("Invalid count for process type {}: a count is a whole number from 0 to {MAX_SCALE}", printable(.0))]
    BadCount(String),
    #[error("Process type {} is not in the current release (its process types: {known}); scale one of those", printable(.process))]
    UnknownProcess { process: String, known: String },
    #[error(
        "Process type {process} cannot run {count} instances: its mount {mount} is exclusive (single writer); scale it to 0 or 1, or remove `exclusive` from the mount"
    )]
    Exclusive { process: String, count: u32, mount: String },
}

/// Instances per process type of the release `run` describes.
pub fn scale_of(state: &AppState, run: &RunConfig) -> BTreeMap<String, u32> {
    run.processes
        .keys()
        .map(|process| {
            let count = state.scale.get(process).or_else(|| run.scale.get(process)).copied();
            (process.clone(), count.unwrap_or(DEFAULT_SCALE))
        })
        .collect()
}

/// `web=3 worker=1`: counts as `ps:scale` takes them.
pub fn describe(scale: &BTreeMap<String, u32>) -> String {
    scale.iter().map(|(process, count)| format!("{process}={count}")).collect::<Vec<_>>().join(" ")
}

/// The scale of an app's current release, or the admin's counts when it has none yet.
pub fn of_app(root: &Root, app: &AppName, state: &AppState) -> Result<BTreeMap<String, u32>, StateError> {
    let releases = root.read_releases(app)?;
    Ok(match state.current_release.and_then(|n| releases.get(n)) {
        Some(release) => scale_of(state, &release.run),
        None => state.scale.clone(),
    })
}

/// Parses `ps:scale` arguments (`web=2 worker=0`) against the release: known process types,
/// counts from 0 to [`MAX_SCALE`], at most one instance of an exclusive process. A process
/// given twice takes the last count.
pub fn parse(args: &[String], run: &RunConfig) -> Result<BTreeMap<String, u32>, ScaleError> {
    let mut scale = BTreeMap::new();
    for arg in args {
        let (process, count) = arg.split_once('=').ok_or_else(|| ScaleError::MissingCount(arg.clone()))?;
        if !run.processes.contains_key(process) {
            let known = run.processes.keys().cloned().collect::<Vec<_>>().join(", ");
            return Err(ScaleError::UnknownProcess { process: process.to_string(), known });
        }
        let count = count
            .parse::<u32>()
            .ok()
            .filter(|n| *n <= MAX_SCALE && !count.starts_with('+'))
            .ok_or_else(|| ScaleError::BadCount(process.to_string()))?;
        check_exclusive(process, count, run)?;
        scale.insert(process.to_string(), count);
    }
    Ok(scale)
}

fn check_exclusive(process: &str, count: u32, run: &RunConfig) -> Result<(), ScaleError> {
    if count <= 1 || !run.exclusive.iter().any(|p| p == process) {
        return Ok(());
    }
    let mount = run.exclusive_mounts.get(process).cloned().unwrap_or_else(|| "(see app.toml)".to_string());
    Err(ScaleError::Exclusive { process: process.to_string(), count, mount })
}

/// A pushed app.toml's exclusive mounts against the admin's `ps:scale` (which wins over
/// `[scale]`): one diagnostic at each exclusive mount of a process the admin scaled above 1.
pub fn admin_conflicts(app: &str, admin: &BTreeMap<String, u32>, manifest: &Manifest) -> Vec<Diagnostic> {
    let mut diagnostics = Vec::new();
    for (process, count) in admin.iter().filter(|(_, count)| **count > 1) {
        for mount in manifest.mounts.iter().filter(|m| m.is_exclusive_for(process)) {
            diagnostics.push(Diagnostic::new(
                mount.pos(),
                format!(
                    "mount is exclusive (single writer), but the admin scaled process {process} to {count}"
                ),
                Some(format!(
                    "ask the admin to run `berth ps:scale {app} {process}=1`, or remove `exclusive`"
                )),
            ));
        }
    }
    diagnostics
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run() -> RunConfig {
        RunConfig {
            processes: [
                ("web".to_string(), None),
                ("worker".to_string(), Some("w".to_string())),
                ("db".to_string(), Some("d".to_string())),
            ]
            .into(),
            exclusive: vec!["db".into()],
            exclusive_mounts: [("db".to_string(), "./db -> /var/lib/db (app.toml line 9)".to_string())]
                .into(),
            scale: [("web".to_string(), 2), ("worker".to_string(), 3)].into(),
            ..RunConfig::default()
        }
    }

    fn args(words: &[&str]) -> Vec<String> {
        words.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn the_admin_wins_over_app_toml_and_the_default_is_one() {
        let state = AppState { scale: [("worker".to_string(), 0)].into(), ..AppState::default() };
        let scale = scale_of(&state, &run());
        assert_eq!(scale, [("db".to_string(), 1), ("web".to_string(), 2), ("worker".to_string(), 0)].into());
    }

    #[test]
    fn counts_are_whole_numbers_of_known_processes() {
        assert_eq!(
            parse(&args(&["web=3", "worker=0", "web=4"]), &run()).unwrap(),
            [("web".to_string(), 4), ("worker".to_string(), 0)].into()
        );
        for bad in ["web=-1", "web=x", "web=", "web=1.5", "web=+2", "web=101", "web= 2"] {
            assert_eq!(parse(&args(&[bad]), &run()), Err(ScaleError::BadCount("web".into())), "{bad}");
        }
        assert_eq!(parse(&args(&["web"]), &run()), Err(ScaleError::MissingCount("web".into())));
        insta::assert_snapshot!(parse(&args(&["cron=1"]), &run()).unwrap_err(), @"Process type cron is not in the current release (its process types: db, web, worker); scale one of those");
    }

    #[test]
    fn a_push_may_not_make_a_process_the_admin_scaled_exclusive() {
        let manifest = crate::manifest::parse(
            b"[[storage.mounts]]\nsource = \"./db\"\ntarget = \"/db\"\nexclusive = true\n",
        )
        .unwrap();
        let admin = [("web".to_string(), 3)].into();
        let problems = admin_conflicts("demo", &admin, &manifest);
        insta::assert_snapshot!(problems[0], @r"
        app.toml:1:1: mount is exclusive (single writer), but the admin scaled process web to 3
          hint: ask the admin to run `berth ps:scale demo web=1`, or remove `exclusive`
        ");
        assert!(admin_conflicts("demo", &[("web".to_string(), 1)].into(), &manifest).is_empty());
    }

    #[test]
    fn an_exclusive_process_runs_at_most_one_instance() {
        assert!(parse(&args(&["db=1"]), &run()).is_ok());
        assert!(parse(&args(&["db=0"]), &run()).is_ok());
        insta::assert_snapshot!(parse(&args(&["db=2"]), &run()).unwrap_err(), @"Process type db cannot run 2 instances: its mount ./db -> /var/lib/db (app.toml line 9) is exclusive (single writer); scale it to 0 or 1, or remove `exclusive` from the mount");
    }
}
