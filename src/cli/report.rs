//! The shape every `*:report` command shares with Dokku's: `[<app>] [--<info-flag>]
//! [--format text|json]`, one block per app (all apps when none is named), one bare value for
//! an info flag, `{}`-shaped JSON even when there are no apps.

use super::{CliError, Format, Result, print_json};
use crate::names::AppName;
use crate::output::{Report, Reporter};
use crate::state::Root;

/// What a report command was asked for.
pub struct Request {
    apps: Vec<AppName>,
    /// One app was named: its JSON is printed bare, not keyed by app.
    single: bool,
    flag: Option<String>,
    format: Format,
}

/// Takes `--format` out of a report's free words. Clap hands every word after the first free
/// one to the free list (info flags start with `--`), so `report <app> --format json` lands there.
pub(super) fn take_format(words: &[String], mut format: Format) -> Result<(Vec<String>, Format)> {
    let parse = |value: &str| {
        <Format as clap::ValueEnum>::from_str(value, false).map_err(|_| {
            CliError::Usage(format!("Format must be \"stdout\", \"text\" or \"json\": \"{value}\""))
        })
    };
    let mut rest = Vec::new();
    let mut words = words.iter();
    while let Some(word) = words.next() {
        if word == "--format" {
            let value = words
                .next()
                .ok_or_else(|| CliError::Usage("--format requires a value: text or json".into()))?;
            format = parse(value)?;
        } else if let Some(value) = word.strip_prefix("--format=") {
            format = parse(value)?;
        } else {
            rest.push(word.clone());
        }
    }
    Ok((rest, format))
}

impl Request {
    /// Parses `[<app>] [--<info-flag>]` and the format for `command` (`storage:report`).
    pub fn parse(root: &Root, command: &str, words: &[String], format: Format) -> Result<Request> {
        let (words, format) = take_format(words, format)?;
        let (flags, names): (Vec<&String>, Vec<&String>) = words.iter().partition(|w| w.starts_with("--"));
        let flag = match flags.as_slice() {
            [] => None,
            [flag] => Some(flag.trim_start_matches('-').to_string()),
            _ => return Err(CliError::Usage(format!("{command} command allows only a single flag"))),
        };
        if flag.is_some() && format == Format::Json {
            return Err(CliError::Usage(
                "--format flag cannot be specified when specifying an info flag".into(),
            ));
        }
        let apps = match names.as_slice() {
            [] => root.list_apps()?,
            [app] => vec![AppName::new(app)?],
            _ => return Err(CliError::Usage(format!("{command} takes at most one app"))),
        };
        Ok(Request { apps, single: names.len() == 1, flag, format })
    }

    /// Prints each app's report, built on demand, as `=====> <app> <topic> information` blocks,
    /// a bare info-flag value, or JSON with both key forms (`prefix` is the flags' namespace).
    pub fn print(
        &self,
        topic: &str,
        prefix: &str,
        mut build: impl FnMut(&AppName) -> Result<Report>,
        out: &Reporter,
    ) -> Result<()> {
        // A JSON report of no apps is `{}`, so scripts always get JSON.
        if self.apps.is_empty() && (self.flag.is_some() || self.format == Format::Text) {
            out.warn("You haven't deployed any applications yet");
            return Ok(());
        }
        let mut json = serde_json::Map::new();
        for app in &self.apps {
            let report = build(app)?;
            if let Some(flag) = &self.flag {
                let value = report.get(flag).ok_or_else(|| {
                    let valid: Vec<String> = report.keys().map(|k| format!("--{k}")).collect();
                    CliError::Usage(format!("Invalid flag passed, valid flags: {}", valid.join(", ")))
                })?;
                out.text(format!("{value}\n"));
                continue;
            }
            match self.format {
                Format::Text => out.text(report.render_text(&format!("{app} {topic} information"))),
                Format::Json => {
                    json.insert(app.to_string(), report.to_json(prefix));
                }
            }
        }
        if self.flag.is_none() && self.format == Format::Json {
            if !self.single {
                return print_json(&json, out);
            }
            if let Some((_, value)) = json.into_iter().next() {
                print_json(&value, out)?;
            }
        }
        Ok(())
    }
}
