//! `storage:migrate <app>|--all`: an app's `-v` docker-options become storage mounts
//! ([`crate::storage::migrate`]); a second run finds nothing to do.

use super::{CliError, Result, existing_app};
use crate::deploy;
use crate::names::AppName;
use crate::output::Reporter;
use crate::state::Root;
use crate::storage::Source;
use crate::storage::migrate::{self, Move};

#[derive(Debug, clap::Args)]
pub struct MigrateArgs {
    app: Option<String>,
    /// Every app
    #[arg(long)]
    all: bool,
}

pub fn migrate(root: &Root, args: MigrateArgs, out: &Reporter) -> Result<()> {
    match (args.app, args.all) {
        (Some(_), true) => {
            Err(CliError::Usage("storage:migrate accepts either an app name or --all, not both".into()))
        }
        (None, false) => Err(CliError::Usage("storage:migrate requires an app name (or --all)".into())),
        (Some(app), false) => {
            migrate_app(root, &AppName::new(&app)?, out)?;
            out.step(format!("Re-migrated {app}"));
            Ok(())
        }
        (None, true) => {
            let apps = root.list_apps()?;
            for app in &apps {
                migrate_app(root, app, out)?;
            }
            out.step(format!("Re-migrated {} app(s)", apps.len()));
            Ok(())
        }
    }
}

/// Moves what can move; an option whose host path is missing or whose container path another
/// mount holds stays in docker-options, with the reason.
fn migrate_app(root: &Root, app: &AppName, out: &Reporter) -> Result<()> {
    existing_app(root, app)?;
    let entries = root.entries_by_name()?;
    let moved = root.update_app(app, |state| {
        let mut moved = Vec::new();
        for planned in migrate::plan(&state.docker_options)? {
            if let Err(reason) = movable(app, state, &planned) {
                out.warn(format!("Leaving docker-option \"{}\" in place: {reason}", planned.option));
                continue;
            }
            if !state.mounts.iter().any(|m| m.same_mount(&planned.attachment)) {
                state.mounts.push(planned.attachment.clone());
            }
            migrate::remove_option(&mut state.docker_options, &planned);
            moved.push(planned);
        }
        deploy::check_binds(root, app, &state.mounts, &entries)?;
        Ok::<_, CliError>(moved)
    })?;
    for planned in &moved {
        let phases: Vec<&str> = planned.attachment.phases.iter().map(|p| p.as_str()).collect();
        out.detail(format!(
            "Moved docker-option \"{}\" to a storage mount ({})",
            planned.option,
            phases.join(",")
        ));
    }
    if !moved.is_empty() {
        super::apply_or_hint(root, app, false, out)?;
    }
    Ok(())
}

fn movable(app: &AppName, state: &crate::state::AppState, planned: &Move) -> Result<()> {
    match &planned.attachment.source {
        Source::HostPath(path) => crate::storage::host_path::check_present(path)?,
        Source::Volume(name) => crate::engine::Engine::connect()?.require_volume(name)?,
        _ => {}
    }
    Ok(crate::storage::mounts::check_collisions(app, state, &planned.attachment)?)
}
