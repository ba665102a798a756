//! Dokku's global flags, given before the command (`berth --force apps:destroy demo`,
//! `berth --quiet storage:list demo`, `berth --app demo ps:report`, `berth --trace ...`):
//! rewritten into the command's own arguments so every command parses one way.

use std::ffi::OsString;

use clap::CommandFactory;

use super::{Cli, CliError, Result};
use crate::output::Reporter;

/// The command line with leading global flags moved where the command takes them: `--app
/// <name>` becomes the first argument, `--force` the command's own flag (dropped for a
/// command without one, as Dokku ignores it there). `--quiet` silences step lines;
/// `--trace` is accepted and has no effect (berth has no shell to trace).
pub fn hoist(args: Vec<OsString>, out: &Reporter) -> Result<Vec<OsString>> {
    let mut words = args.into_iter();
    let program = words.next().unwrap_or_else(|| "berth".into());
    let (mut force, mut app) = (false, None);
    let mut rest: Vec<OsString> = words.collect();
    while let Some(first) = rest.first().and_then(|w| w.to_str()).map(str::to_string) {
        match first.as_str() {
            "--force" => force = true,
            "--quiet" => out.set_quiet(true),
            "--trace" => {}
            "--app" => {
                let name =
                    rest.get(1).cloned().ok_or_else(|| CliError::Usage("--app needs an app name".into()))?;
                app = Some(name);
                rest.remove(0);
            }
            flag if flag.starts_with("--app=") => app = Some(flag["--app=".len()..].into()),
            _ => break,
        }
        rest.remove(0);
    }
    let Some(command) = (!rest.is_empty()).then(|| rest.remove(0)) else {
        return Ok(std::iter::once(program).chain(app).collect());
    };
    let takes_force = command.to_str().and_then(|name| {
        Cli::command().find_subcommand(name).map(|c| c.get_arguments().any(|a| a.get_id() == "force"))
    });
    let mut line = vec![program, command];
    line.extend(app);
    line.extend(rest);
    if force && takes_force == Some(true) {
        line.push("--force".into());
    }
    Ok(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hoisted(line: &str) -> String {
        let out = &crate::output::Reporter::capture();
        let args = line.split(' ').map(OsString::from).collect();
        let out = hoist(args, out).unwrap();
        out.iter().map(|w| w.to_string_lossy().into_owned()).collect::<Vec<_>>().join(" ")
    }

    #[test]
    fn global_flags_move_into_the_command() {
        let out = &crate::output::Reporter::capture();
        assert_eq!(hoisted("berth --force apps:destroy demo"), "berth apps:destroy demo --force");
        assert_eq!(hoisted("berth --app demo ps:report --ps-web-url"), "berth ps:report demo --ps-web-url");
        assert_eq!(hoisted("berth --app=demo --trace storage:list"), "berth storage:list demo");
        // A command without --force ignores it, as Dokku does.
        assert_eq!(hoisted("berth --force storage:list demo"), "berth storage:list demo");
        // Flags after the command are the command's own.
        assert_eq!(hoisted("berth storage:list demo --format json"), "berth storage:list demo --format json");
        assert!(hoist(vec!["berth".into(), "--app".into()], out).is_err());
    }
}
