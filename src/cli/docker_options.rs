//! `docker-options:*`: the admin's escape hatch for extra engine flags per phase.

use super::{CliError, Format, Result, existing_app};
use crate::docker_options::{OptionsKey, parse_options};
use crate::names::AppName;
use crate::output::{Report, Reporter};
use crate::state::Root;
use crate::storage::Phase;

#[derive(Debug, clap::Args)]
pub struct ChangeArgs {
    /// Process type(s) the options apply to (deploy phase only)
    #[arg(long = "process")]
    processes: Vec<String>,
    app: String,
    /// Comma list of phases: build, deploy, run
    phases: String,
    /// The docker options, as one quoted string or as separate words
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    option: Vec<String>,
}

#[derive(Debug, clap::Args)]
pub struct ClearArgs {
    #[arg(long = "process")]
    processes: Vec<String>,
    app: String,
    /// Comma list of phases (default: all)
    phases: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// Only this process type's options (deploy phase)
    #[arg(long = "process")]
    process: Option<String>,
    app: String,
    /// build, deploy or run
    #[arg(long)]
    phase: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// An app, and/or one info flag such as --docker-options-deploy
    #[arg(allow_hyphen_values = true)]
    args: Vec<String>,
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

fn parse_phase_list(phases: &str) -> Result<Vec<Phase>> {
    let mut parsed = Vec::new();
    for phase in phases.split(',').filter(|p| !p.is_empty()) {
        let phase = phase
            .parse::<Phase>()
            .map_err(|_| CliError::Usage("Phase(s) must be one of [build deploy run]".into()))?;
        if !parsed.contains(&phase) {
            parsed.push(phase);
        }
    }
    if parsed.is_empty() {
        return Err(CliError::Usage("Phase(s) must be one of [build deploy run]".into()));
    }
    Ok(parsed)
}

fn keys(processes: &[String], phases: &[Phase]) -> Result<Vec<OptionsKey>> {
    let mut keys = Vec::new();
    for phase in phases {
        if processes.is_empty() {
            keys.push(OptionsKey::new(None, *phase)?);
        }
        for process in processes {
            crate::storage::check_process_type(process)?;
            keys.push(OptionsKey::new(Some(process), *phase)?);
        }
    }
    Ok(keys)
}

pub fn add(root: &Root, args: ChangeArgs, out: &Reporter) -> Result<()> {
    change(root, args, "add", out)
}

pub fn remove(root: &Root, args: ChangeArgs, out: &Reporter) -> Result<()> {
    change(root, args, "remove from", out)
}

fn change(root: &Root, args: ChangeArgs, verb: &'static str, out: &Reporter) -> Result<()> {
    let app = AppName::new(&args.app)?;
    existing_app(root, &app)?;
    let (options, lifted) = crate::docker_options::lift_processes(parse_options(&args.option.join(" "))?)?;
    let processes: Vec<String> = args.processes.iter().cloned().chain(lifted).collect();
    let phases = parse_phase_list(&args.phases)?;
    let keys = keys(&processes, &phases)?;
    if options.is_empty() {
        let verb = if verb == "add" { "add to" } else { verb };
        return Err(crate::docker_options::OptionsError::Empty(verb).into());
    }
    if verb == "add" {
        // Refuse what berth cannot hand to the engine now, not at the next deploy.
        let parsed = crate::docker_options::RunOptions::parse(&options)?;
        phases.iter().filter_map(|phase| parsed.unapplied_warning(*phase)).for_each(|w| out.warn(w));
        super::storage::warn_undeclared(root, &app, &processes, out)?;
    }
    root.update_app(&app, |state| {
        for key in &keys {
            let stored = state.docker_options.entry(key.clone()).or_default();
            if verb == "add" {
                stored.extend(options.iter().cloned());
            } else {
                stored.retain(|o| !options.contains(o));
            }
        }
        state.docker_options.retain(|_, options| !options.is_empty());
        Ok::<_, CliError>(())
    })?;
    super::apply_or_hint(root, &app, false, out)
}

pub fn clear(root: &Root, args: ClearArgs, out: &Reporter) -> Result<()> {
    let app = AppName::new(&args.app)?;
    existing_app(root, &app)?;
    let phases = match args.phases.as_deref() {
        Some(phases) => parse_phase_list(phases)?,
        // Process-scoped options exist only for the deploy phase.
        None if !args.processes.is_empty() => vec![Phase::Deploy],
        None => Phase::ALL.to_vec(),
    };
    let keys = keys(&args.processes, &phases)?;
    match (&args.phases, args.processes.as_slice()) {
        (None, []) => out.step(format!("Clearing docker-options for {app} on all phases")),
        (_, []) => {
            for phase in &phases {
                out.step(format!("Clearing docker-options for {app} on phase {phase}"));
            }
        }
        (_, processes) => {
            for process in processes {
                out.step(format!("Clearing docker-options for {app} on phase deploy for process {process}"));
            }
        }
    }
    root.update_app(&app, |state| {
        // Clearing a phase without --process clears every process type's options for it.
        state.docker_options.retain(|key, _| {
            !keys.iter().any(|k| k == key || (args.processes.is_empty() && key.phase == k.phase))
        });
        Ok::<_, CliError>(())
    })?;
    super::apply_or_hint(root, &app, false, out)
}

/// Dokku's `docker-options:list`: the options of one process and phase pair, one per line.
pub fn list(root: &Root, args: ListArgs) -> Result<()> {
    let app = AppName::new(&args.app)?;
    let state = existing_app(root, &app)?;
    let processes: Vec<String> = args.process.into_iter().collect();
    let phase = args.phase.ok_or_else(|| CliError::Usage("--phase is required".into()))?;
    let keys = keys(&processes, &parse_phase_list(&phase)?)?;
    let [key] = keys.as_slice() else {
        return Err(CliError::Usage("--phase takes one phase: build, deploy or run".into()));
    };
    let mut text = String::new();
    for option in state.docker_options.get(key).into_iter().flatten() {
        text.push_str(option);
        text.push('\n');
    }
    super::write_stdout(text.as_bytes())
}

fn options_report(root: &Root, app: &AppName) -> Result<Report> {
    let state = existing_app(root, app)?;
    let mut report = Report::default();
    for phase in Phase::ALL {
        let options =
            state.docker_options.get(&OptionsKey::every_process(phase)).cloned().unwrap_or_default();
        report.row(format!("docker-options-{phase}"), options.join(" "));
        report.json_list(format!("{phase}-list"), options);
    }
    for (key, options) in &state.docker_options {
        if key.phase == Phase::Deploy && !key.is_every_process() {
            report.row(format!("docker-options-deploy.{}", key.process_type), options.join(" "));
            report.json_list(format!("deploy.{}-list", key.process_type), options.clone());
        }
    }
    Ok(report)
}

pub fn report(root: &Root, args: ReportArgs, out: &Reporter) -> Result<()> {
    let request = super::report::Request::parse(root, "docker-options:report", &args.args, args.format)?;
    request.print("docker-options", "docker-options", |app| options_report(root, app), out)
}
