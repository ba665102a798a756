//! `ps:*`, `run`, `logs`, `releases`, `rollback` and `hooks:install`: the app's processes and
//! its release history.

use super::refusal::Refusal;
use super::{Format, Result, existing_app, print_json};
use crate::deploy::{self, Commit, CommitError, Mode, Repo, Timing};
use crate::engine::Engine;
use crate::names::AppName;
use crate::output::{Report, Reporter};
use crate::proxy::records::Records;
use crate::scheduler::docker_swarm::InstanceStatus;
use crate::state::{Outcome, Root};

pub fn start(root: &Root, app: &AppName, out: &Reporter) -> Result<()> {
    existing_app(root, app)?;
    out.step(format!("Starting {app}"));
    deploy::announce(
        root,
        app,
        deploy::restart(root, &Engine::connect()?, app, Timing::from_env(), out)?.host_port,
        out,
    );
    Ok(())
}

pub fn restart(root: &Root, app: &AppName, out: &Reporter) -> Result<()> {
    existing_app(root, app)?;
    out.step(format!("Restarting {app} with its current mounts"));
    deploy::announce(
        root,
        app,
        deploy::restart(root, &Engine::connect()?, app, Timing::from_env(), out)?.host_port,
        out,
    );
    Ok(())
}

/// `ps:rebuild <app> [--dry-run]`: the pipeline of a push, for the commit the app serves.
pub fn rebuild(root: &Root, app: &AppName, dry_run: bool, out: &Reporter) -> Result<()> {
    let state = existing_app(root, app)?;
    let releases = root.read_releases(app)?;
    let commit = state
        .current_release
        .and_then(|n| releases.get(n))
        .map(|release| release.commit.clone())
        .ok_or_else(|| deploy::DeployError::NoRelease(app.clone()))?;
    let repo = || Repo::At(root.repo_dir(app));
    let mode = if dry_run { Mode::DryRun } else { Mode::Apply };
    out.step(format!(
        "Rebuilding {app} ({}){}",
        deploy::short(&commit),
        if dry_run { ", dry run" } else { "" }
    ));
    let bytes = deploy::read_manifest(&repo(), &commit)?;
    let lock = root.lock_app_announced(app, out)?;
    let engine = Engine::connect()?;
    let source = Commit { repo: repo(), app, commit: &commit, manifest: bytes.as_deref() };
    match deploy::deploy_commit(root, &engine, source, &lock, mode, out) {
        Ok((_, release)) => {
            crate::hook::announce(root, app, &release, out);
            Ok(())
        }
        Err(CommitError::DryRun) => {
            out.step("Dry run: nothing was built, started or changed");
            Ok(())
        }
        Err(error) => {
            if let CommitError::Manifest(problems) = &error {
                deploy::print_problems(problems, out);
            }
            Err(error.into())
        }
    }
}

/// Stops the app's containers, then has the proxy answer 503 for it.
pub fn stop(root: &Root, app: &AppName, out: &Reporter) -> Result<()> {
    existing_app(root, app)?;
    deploy::stop(root, &Engine::connect()?, app, Timing::from_env(), out)?;
    super::proxy::republish(root, !Records::read(root)?.hosts(app).is_empty(), out)
}

/// `ps:report [<app>] [--<flag>] [--format json]`: one info flag prints just its value, as
/// `storage:report` does.
pub fn report(root: &Root, args: &[String], format: Format, out: &Reporter) -> Result<()> {
    let request = super::report::Request::parse(root, "ps:report", args, format)?;
    // Connected on the first app, so a server without apps needs no engine for the report.
    let mut engine: Option<Engine> = None;
    request.print(
        "ps",
        "ps",
        |app| {
            let engine = match &mut engine {
                Some(engine) => engine,
                slot => slot.insert(Engine::connect()?),
            };
            ps_report(root, engine, app)
        },
        out,
    )
}

fn ps_report(root: &Root, engine: &Engine, app: &AppName) -> Result<Report> {
    let state = existing_app(root, app)?;
    let releases = root.read_releases(app)?;
    let current = state.current_release.and_then(|n| releases.get(n));
    let mut report = Report::default();
    report.row("ps-deployed", current.is_some().to_string());
    report.row("ps-current-release", state.current_release.map(|n| n.to_string()).unwrap_or_default());
    let statuses = match crate::scheduler::docker_swarm::task_statuses(&state, app)? {
        Some(tasks) => tasks,
        None => container_statuses(engine, app)?,
    };
    let running = statuses.iter().filter(|s| s.running).count();
    for status in &statuses {
        report.row(format!("ps-status.{}", status.name), status.text.clone());
    }
    report.row("ps-processes", statuses.len().to_string());
    report.row("ps-scale", crate::scale::describe(&crate::scale::of_app(root, app, &state)?));
    report.row("ps-running", (running > 0 && running == statuses.len()).to_string());
    let first_web = deploy::container_name(app, "web", 1);
    let web_port = engine.inspect_container(&first_web)?.and_then(|facts| facts.host_port);
    // Through the proxy when the app has a host name, else its port on the loopback address.
    // The engine's port: an instance a failed deploy started again has a new one.
    let port = current.and_then(|r| r.web_host_port).map(|recorded| web_port.unwrap_or(recorded));
    let loopback = port.map(|p| format!("http://127.0.0.1:{p}"));
    let urls = crate::proxy::records::urls(root, app).unwrap_or_default();
    let proxied = loopback.as_ref().and(urls.into_iter().next());
    report.row("ps-web-url", proxied.or(loopback).unwrap_or_default());
    Ok(report)
}

/// Each of the app's containers: running or stopped, and its id.
fn container_statuses(engine: &Engine, app: &AppName) -> Result<Vec<InstanceStatus>> {
    let mut statuses = Vec::new();
    for name in engine.app_containers(app.as_str())? {
        if let Some(facts) = engine.inspect_container(&name)? {
            let status = if facts.running { "running" } else { "stopped" };
            let id = facts.id.get(..12).unwrap_or(&facts.id);
            statuses.push(InstanceStatus {
                text: format!("{status} (CID: {id})"),
                running: facts.running,
                name,
            });
        }
    }
    Ok(statuses)
}

/// Runs a one-off command; returns its exit status for the binary to pass through.
pub fn run(root: &Root, app: &AppName, command: &[String], out: &Reporter) -> Result<i32> {
    let state = existing_app(root, app)?;
    crate::scheduler::docker_swarm::require_local_run(root, &state, app)?;
    let status = deploy::run_oneoff(
        root,
        &Engine::connect()?,
        app,
        command,
        &mut |is_err, text| out.relay(is_err, text),
        out,
    )?;
    Ok(i32::try_from(status).unwrap_or(1))
}

pub fn logs(
    root: &Root,
    app: &AppName,
    follow: bool,
    process: Option<&str>,
    tail: Option<usize>,
    out: &Reporter,
) -> Result<()> {
    let state = existing_app(root, app)?;
    if crate::scheduler::docker_swarm::logs(&state, app, process, follow, tail, &mut |is_err, text| {
        out.relay(is_err, text)
    })? {
        return Ok(());
    }
    let engine = Engine::connect()?;
    let containers: Vec<String> = engine
        .app_containers(app.as_str())?
        .into_iter()
        .filter(|name| process.is_none_or(|p| name.split('.').nth(1) == Some(p)))
        .collect();
    if containers.is_empty() {
        return Err(Refusal::NoContainers(app.clone()).into());
    }
    if follow && containers.len() > 1 {
        let processes: Vec<&str> = containers.iter().filter_map(|n| n.split('.').nth(1)).collect();
        return Err(Refusal::FollowNeedsOneProcess(processes.join(", ")).into());
    }
    for name in containers {
        engine.logs(&name, follow, tail, &mut |is_err, text| out.relay(is_err, text))?;
    }
    Ok(())
}

pub fn releases(root: &Root, app: &AppName, format: Format, out: &Reporter) -> Result<()> {
    let state = existing_app(root, app)?;
    let releases = root.read_releases(app)?;
    match format {
        Format::Json => print_json(&releases.releases, out),
        Format::Text => {
            out.heading(format!("{app} releases"));
            for release in releases.releases.iter().rev() {
                let current = if state.current_release == Some(release.number) { "*" } else { " " };
                let outcome = match release.outcome {
                    Outcome::Deployed => "deployed".to_string(),
                    Outcome::Failed => format!(
                        "failed: {}",
                        crate::output::printable(release.reason.as_deref().unwrap_or(""))
                    ),
                    Outcome::Interrupted => "interrupted (not recorded as deployed)".to_string(),
                };
                out.detail(format!(
                    "{current}v{:<4} {}  {}  {} mounts  {outcome}",
                    release.number,
                    deploy::short(&release.commit),
                    release.image,
                    release.mounts.len()
                ));
            }
            Ok(())
        }
    }
}

pub fn rollback(root: &Root, app: &AppName, release: Option<u32>, out: &Reporter) -> Result<()> {
    existing_app(root, app)?;
    let number = deploy::rollback(root, &Engine::connect()?, app, release, Timing::from_env(), out)?;
    out.step(format!("Rolled {app} back to release {number}"));
    Ok(())
}

pub fn install_hooks(root: &Root, out: &Reporter) -> Result<()> {
    let hook_dir = super::hook_dir()?;
    for app in root.list_apps()? {
        crate::git::install_hooks(&root.repo_dir(&app), &hook_dir, root.path())?;
        out.detail(format!("Installed hooks for {app}"));
    }
    out.step("Hooks installed");
    Ok(())
}
