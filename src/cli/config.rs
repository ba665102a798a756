//! `config:*` (an app's environment, or with `--global` the server-wide one) and `ps:scale`.
//! Values are the admin's secrets: `config:show`, `config:get` and `config:export` print them,
//! nothing else does (`config:set` names the keys it set).

use std::io::Read;

use clap::{Args, Subcommand};

use super::{CliError, Format, Result, app_name, existing_app, print_json};
use crate::config::{self, ExportFormat, Scope, Vars, store};
use crate::deploy::{self, Timing};
use crate::names::AppName;
use crate::output::Reporter;
use crate::state::Root;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Set config vars of an app (or --global); restarts the app unless --no-restart
    #[command(name = "config:set")]
    Set(SetArgs),
    /// Unset config vars of an app (or --global); restarts the app unless --no-restart
    #[command(name = "config:unset")]
    Unset(SetArgs),
    /// Clear every config var of an app (or --global); restarts the app unless --no-restart
    #[command(name = "config:clear")]
    Clear(SetArgs),
    /// Print one config value of an app (or --global)
    #[command(name = "config:get")]
    Get(ScopeArgs),
    /// Show the config of an app (or --global), values unmasked
    #[command(name = "config:show", visible_alias = "config")]
    Show(ScopeArgs),
    /// Export the config of an app (or --global) for a shell, an env file or JSON
    #[command(name = "config:export")]
    Export {
        #[command(flatten)]
        scope: ScopeArgs,
        #[arg(long, value_enum, default_value_t)]
        format: ExportFormat,
    },
    /// Show (no counts) or set the instances of an app's process types
    #[command(name = "ps:scale")]
    Scale {
        app: String,
        #[arg(value_name = "PROCESS=COUNT")]
        counts: Vec<String>,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
}

/// `[<app>] [<word>...]`, with `--global` instead of an app.
#[derive(Debug, Args)]
pub struct ScopeArgs {
    /// The server-wide config every app inherits (name no app)
    #[arg(long)]
    global: bool,
    /// Show the app's environment as its containers get it: global < app.toml [env] < app
    #[arg(long)]
    merged: bool,
    app: Option<String>,
    #[arg(value_name = "KEY")]
    words: Vec<String>,
}

#[derive(Debug, Args)]
pub struct SetArgs {
    #[command(flatten)]
    scope: ScopeArgs,
    /// Do not restart the app's containers (the change applies at the next restart or deploy)
    #[arg(long)]
    no_restart: bool,
    /// Read the value of the one KEY from stdin, so it stays out of shell history
    #[arg(long)]
    stdin: bool,
}

impl ScopeArgs {
    /// The scope and the words after it (with `--global`, the first positional is a word).
    fn split(&self) -> Result<(ScopeName, Vec<String>)> {
        if self.merged && self.global {
            return Err(CliError::Usage("--merged is for an app; --global has nothing to merge".into()));
        }
        match (&self.app, self.global) {
            (Some(first), true) => {
                Ok((ScopeName::Global, [vec![first.clone()], self.words.clone()].concat()))
            }
            (None, true) => Ok((ScopeName::Global, self.words.clone())),
            (Some(app), false) => Ok((ScopeName::App(app_name(app)?), self.words.clone())),
            (None, false) => Err(CliError::Usage("name an app, or pass --global".into())),
        }
    }
}

enum ScopeName {
    Global,
    App(AppName),
}

impl ScopeName {
    fn scope(&self) -> Scope<'_> {
        match self {
            ScopeName::Global => Scope::Global,
            ScopeName::App(app) => Scope::App(app),
        }
    }
}

pub fn dispatch(root: &Root, command: Command, out: &Reporter) -> Result<()> {
    match command {
        Command::Set(args) => set(root, &args, out),
        Command::Unset(args) => unset(root, &args, out),
        Command::Clear(args) => clear(root, &args, out),
        Command::Get(args) => get(root, &args, out),
        Command::Show(args) => show(root, &args, out),
        Command::Export { scope, format } => export(root, &scope, format),
        Command::Scale { app, counts, format } => scale(root, &app_name(&app)?, &counts, format, out),
    }
}

fn no_stdin(args: &SetArgs, command: &str) -> Result<()> {
    if args.stdin {
        return Err(CliError::Usage(format!("--stdin is for config:set, not {command}")));
    }
    Ok(())
}

fn set(root: &Root, args: &SetArgs, out: &Reporter) -> Result<()> {
    let (name, words) = args.scope.split()?;
    let pairs = if args.stdin { vec![stdin_pair(&words)?] } else { parse_pairs(&words)? };
    store::change(root, name.scope(), |vars| {
        vars.extend(pairs.iter().cloned());
        Ok(())
    })?;
    out.step("Setting config vars");
    for (key, _) in &pairs {
        out.detail(key);
    }
    apply(root, &name, args.no_restart, out)
}

fn parse_pairs(words: &[String]) -> Result<Vec<(String, String)>> {
    if words.is_empty() {
        return Err(CliError::Usage("At least one env pair must be given: KEY=VALUE".into()));
    }
    Ok(words
        .iter()
        .enumerate()
        .map(|(i, w)| config::parse_pair(w, i + 1))
        .collect::<std::result::Result<_, _>>()?)
}

/// `KEY --stdin`: the value is stdin, less one trailing newline (as `echo` adds).
fn stdin_pair(words: &[String]) -> Result<(String, String)> {
    let [key] = words else {
        return Err(CliError::Usage("--stdin takes exactly one KEY (and no KEY=VALUE)".into()));
    };
    config::key::check(key).map_err(config::ConfigError::from)?;
    let mut bytes = Vec::new();
    std::io::stdin().read_to_end(&mut bytes).map_err(|e| CliError::io("cannot read stdin", e))?;
    let mut value = String::from_utf8(bytes)
        .map_err(|_| CliError::Usage(format!("the value of {key} on stdin is not UTF-8")))?;
    if value.ends_with('\n') {
        value.pop();
    }
    config::check_value(key, &value)?;
    Ok((key.clone(), value))
}

fn unset(root: &Root, args: &SetArgs, out: &Reporter) -> Result<()> {
    no_stdin(args, "config:unset")?;
    let (name, keys) = args.scope.split()?;
    if keys.is_empty() {
        return Err(CliError::Usage("At least one key must be given".into()));
    }
    for key in &keys {
        config::key::check(key).map_err(config::ConfigError::from)?;
    }
    let before = store::change(root, name.scope(), |vars| {
        let before = vars.clone();
        vars.retain(|k, _| !keys.contains(k));
        Ok(before)
    })?;
    for key in &keys {
        if before.contains_key(key) {
            out.step(format!("Unsetting {key}"));
        } else {
            out.step(format!("Skipping {key}, it is not set in the environment"));
        }
    }
    apply(root, &name, args.no_restart, out)
}

fn clear(root: &Root, args: &SetArgs, out: &Reporter) -> Result<()> {
    no_stdin(args, "config:clear")?;
    let (name, words) = args.scope.split()?;
    if !words.is_empty() {
        return Err(CliError::Usage("config:clear takes no keys; use config:unset for some".into()));
    }
    let before = store::change(root, name.scope(), |vars| Ok(std::mem::take(vars)))?;
    for key in before.keys() {
        out.step(format!("Unsetting {key}"));
    }
    apply(root, &name, args.no_restart, out)
}

/// After a change: restart the app's containers, or say why not.
fn apply(root: &Root, name: &ScopeName, no_restart: bool, out: &Reporter) -> Result<()> {
    let ScopeName::App(app) = name else {
        out.step("Global config applies to each app at its next restart or deploy (no app was restarted)");
        return Ok(());
    };
    if existing_app(root, app)?.current_release.is_none() {
        out.step(format!("{app} is not deployed; the config applies at its first deploy (not restarted)"));
    } else if no_restart {
        out.step(format!("Not restarting {app} (--no-restart); run `berth ps:restart {app}` to apply"));
    } else {
        out.step(format!("Restarting app {app}"));
        deploy::restart(root, &crate::engine::Engine::connect()?, app, Timing::from_env(), out)?;
    }
    Ok(())
}

fn read(root: &Root, name: &ScopeName, merged: bool) -> Result<Vars> {
    match name {
        ScopeName::App(app) if merged => {
            let state = existing_app(root, app)?;
            let releases = root.read_releases(app)?;
            let run = state
                .current_release
                .and_then(|n| releases.get(n))
                .map(|r| r.run.clone())
                .unwrap_or_default();
            Ok(config::merged(root, app, &run)?)
        }
        _ => Ok(store::read(root, name.scope())?),
    }
}

fn get(root: &Root, args: &ScopeArgs, out: &Reporter) -> Result<()> {
    let (name, words) = args.split()?;
    let [key] = words.as_slice() else {
        return Err(CliError::Usage("config:get takes one KEY".into()));
    };
    config::key::check(key).map_err(config::ConfigError::from)?;
    let vars = read(root, &name, args.merged)?;
    let value = vars
        .get(key)
        .ok_or_else(|| config::ConfigError::NotSet { key: key.clone(), scope: name.scope().name() })?;
    out.text(format!("{value}\n"));
    Ok(())
}

fn show(root: &Root, args: &ScopeArgs, out: &Reporter) -> Result<()> {
    let (name, words) = args.split()?;
    if !words.is_empty() {
        return Err(CliError::Usage("config:show takes no keys; use config:get for one".into()));
    }
    let vars = read(root, &name, args.merged)?;
    out.heading(format!("{} env vars", name.scope().name()));
    let width = vars.keys().map(|k| k.len() + 1).max().unwrap_or(0);
    for (key, value) in &vars {
        out.text(format!("{:<width$}  {value}\n", format!("{key}:")));
    }
    Ok(())
}

fn export(root: &Root, args: &ScopeArgs, format: ExportFormat) -> Result<()> {
    let (name, words) = args.split()?;
    if !words.is_empty() {
        return Err(CliError::Usage("config:export takes no keys".into()));
    }
    super::write_stdout(config::export::render(&read(root, &name, args.merged)?, format).as_bytes())
}

/// `ps:scale <app> [<process>=<count>...]`: shows the scale, or stores the admin's counts
/// (they win over app.toml's `[scale]` and last across pushes).
fn scale(root: &Root, app: &AppName, counts: &[String], format: Format, out: &Reporter) -> Result<()> {
    let state = existing_app(root, app)?;
    let releases = root.read_releases(app)?;
    let Some(release) = state.current_release.and_then(|n| releases.get(n)) else {
        return Err(CliError::Usage(format!(
            "{app} has no release yet: its process types come from app.toml; push it first (or set [scale] in app.toml)"
        )));
    };
    if counts.is_empty() {
        let scale = crate::scale::scale_of(&state, &release.run);
        if format == Format::Json {
            return print_json(&scale, out);
        }
        out.step(format!("Scaling for {app}"));
        out.text(format!("{:<5} qty\n", "proctype:"));
        out.text(format!("{:<5} ---\n", "--------:"));
        for (process, count) in scale {
            out.text(format!("{:<5} {count}\n", format!("{process}:")));
        }
        return Ok(());
    }
    let wanted = crate::scale::parse(counts, &release.run)?;
    let set = |scale: std::collections::BTreeMap<String, u32>| {
        root.update_app(app, |state| {
            state.scale = scale;
            Ok::<_, CliError>(())
        })
    };
    let mut scale = state.scale.clone();
    scale.extend(wanted.iter().map(|(p, n)| (p.clone(), *n)));
    set(scale)?;
    out.step(format!("Scaling {app} processes: {}", crate::scale::describe(&wanted)));
    if state.stopped {
        out.step(format!("{app} is stopped; `berth ps:start {app}` starts it at this scale"));
        return Ok(());
    }
    if let Err(error) =
        deploy::rescale(root, &crate::engine::Engine::connect()?, app, Timing::from_env(), out)
    {
        // The instances run as before the command: so does the scale it stored.
        set(state.scale)?;
        return Err(error.into());
    }
    // A web process scaled to 0 leaves the route: it answers 503.
    super::proxy::republish(root, !crate::proxy::records::Records::read(root)?.hosts(app).is_empty(), out)
}
