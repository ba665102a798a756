//! `scheduler:*`: which scheduler deploys an app (Dokku's `scheduler:set <app> selected`,
//! `scheduler:report`) and, on `docker-swarm`, the node its node-local data lives on. Both
//! take effect at the next deploy and move nothing: the output says where the data is.

use super::{CliError, Format, Result, existing_app};
use crate::names::AppName;
use crate::output::{Report, Reporter};
use crate::scheduler::docker_swarm::data_locations;
use crate::scheduler::selection::{SchedulerKind, selected};
use crate::state::{AppState, Root};
use crate::swarm::{NodeName, Swarm};

/// `scheduler:set <app> selected|node [<value>]`; without a value the property is unset.
pub fn set(root: &Root, app: &AppName, property: &str, value: Option<&str>, out: &Reporter) -> Result<()> {
    existing_app(root, app)?;
    match property {
        "selected" => set_selected(root, app, value, out),
        "node" => set_node(root, app, value, out),
        other => Err(CliError::Usage(format!(
            "Invalid property specified \"{}\", valid properties include: selected, node",
            crate::output::printable(other)
        ))),
    }
}

fn set_selected(root: &Root, app: &AppName, value: Option<&str>, out: &Reporter) -> Result<()> {
    let kind =
        value.map(str::parse::<SchedulerKind>).transpose().map_err(|e| CliError::Usage(e.to_string()))?;
    let state = root.update_app(app, |state| {
        state.scheduler = kind;
        Ok::<_, CliError>(state.clone())
    })?;
    let now = selected(&root.read_settings()?, &state);
    out.step(format!("Setting scheduler for {app} to {now}; it takes effect at the next deploy"));
    show_data(&state, now, out);
    Ok(())
}

fn set_node(root: &Root, app: &AppName, value: Option<&str>, out: &Reporter) -> Result<()> {
    let node = value.map(NodeName::new).transpose()?;
    if let Some(node) = &node {
        // A typo would pin the app to a node that never runs it.
        Swarm::connect()?.node(node)?;
    }
    let before = existing_app(root, app)?.swarm_node;
    let state = root.update_app(app, |state| {
        state.swarm_node = node.as_ref().map(NodeName::to_string);
        Ok::<_, CliError>(state.clone())
    })?;
    match (&before, &state.swarm_node) {
        (Some(old), Some(new)) if old != new && !state.mounts.is_empty() => {
            out.warn(format!(
                "{app}'s node-local data stays on {old}: berth moves nothing; the next deploy starts {app} on {new} with the storage {new} has (empty unless you copy it there)"
            ));
        }
        _ => {}
    }
    match &state.swarm_node {
        Some(node) => {
            out.step(format!("Pinning {app} to swarm node {node}; it takes effect at the next deploy"))
        }
        None => out.step(format!("Unset the node of {app}; its next swarm deploy pins it to the manager")),
    }
    Ok(())
}

/// Where the app's data is, line by line.
fn show_data(state: &AppState, scheduler: SchedulerKind, out: &Reporter) {
    let locations = data_locations(state, scheduler);
    if locations.is_empty() {
        out.detail("The app mounts no storage");
        return;
    }
    out.detail("Nothing was moved; its data is:");
    for location in locations {
        out.detail(format!("  {location}"));
    }
}

/// `scheduler:report [<app>] [--<flag>] [--format json]`.
pub fn report(root: &Root, args: &[String], format: Format, out: &Reporter) -> Result<()> {
    let request = super::report::Request::parse(root, "scheduler:report", args, format)?;
    let settings = root.read_settings()?;
    request.print(
        "scheduler",
        "scheduler",
        |app| {
            let state = existing_app(root, app)?;
            let computed = selected(&settings, &state);
            let mut report = Report::default();
            report.row("scheduler-computed-selected", computed.to_string());
            report.row(
                "scheduler-global-selected",
                settings.scheduler.selected.map(|k| k.to_string()).unwrap_or_default(),
            );
            report.row("scheduler-selected", state.scheduler.map(|k| k.to_string()).unwrap_or_default());
            report.row("scheduler-swarm-node", state.swarm_node.clone().unwrap_or_default());
            report.row("scheduler-swarm-registry", settings.swarm.registry.clone().unwrap_or_default());
            report.row("scheduler-data", data_locations(&state, computed).join("; "));
            Ok(report)
        },
        out,
    )
}
