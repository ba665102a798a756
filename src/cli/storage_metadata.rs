//! `storage:annotations:*` and `storage:labels:*`: one key of an entry's metadata at a time,
//! and Dokku's reports of them. Labels also go on the Docker volume berth makes for an entry.

use std::collections::{BTreeMap, HashMap};

use super::{CliError, Format, Result, print_json};
use crate::engine::Engine;
use crate::names::EntryName;
use crate::output::Reporter;
use crate::state::Root;
use crate::storage::metadata::{self, Kind};
use crate::storage::{Entry, EntryBacking};

/// Label berth puts on the volume it makes for an entry.
const ENTRY_LABEL: &str = "berth.entry";

#[derive(Debug, clap::Args)]
pub struct SetArgs {
    name: String,
    key: Option<String>,
    /// The value; empty or left out clears the key
    #[arg(allow_hyphen_values = true)]
    value: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// An entry, and/or one info flag such as --storage-annotations.<key>
    #[arg(allow_hyphen_values = true)]
    args: Vec<String>,
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

fn map_of(entry: &mut Entry, kind: Kind) -> &mut BTreeMap<String, String> {
    match kind {
        Kind::Annotation => &mut entry.annotations,
        Kind::Label => &mut entry.labels,
    }
}

/// The plural Dokku's command and flag names use: `annotations`, `labels`.
fn plural(kind: Kind) -> String {
    format!("{}s", kind.as_str())
}

pub fn set(root: &Root, kind: Kind, args: SetArgs, out: &Reporter) -> Result<()> {
    let name = EntryName::new(&args.name)?;
    let lock = root.lock_entries()?;
    let mut entry = root.read_entry(&name)?;
    let key = args.key.as_deref();
    let is_set = metadata::set(map_of(&mut entry, kind), kind, key, args.value.as_deref())?;
    let key = key.unwrap_or_default();
    if is_set {
        out.heading(format!(
            "Setting {} {key} to {}",
            kind.as_str(),
            args.value.as_deref().unwrap_or_default()
        ));
    } else {
        out.heading(format!("Unsetting {} {key}", kind.as_str()));
    }
    root.write_entry(&entry, &lock)?;
    if kind == Kind::Label
        && let EntryBacking::Volume(volume) = &entry.host_path
    {
        out.detail(format!(
            "The Docker volume {volume} keeps the labels it was made with (the engine cannot change them); new volumes get these"
        ));
    }
    Ok(())
}

pub fn report(root: &Root, kind: Kind, args: ReportArgs, out: &Reporter) -> Result<()> {
    let (words, format) = super::report::take_format(&args.args, args.format)?;
    let (flags, names): (Vec<&String>, Vec<&String>) = words.iter().partition(|w| w.starts_with("--"));
    let command = format!("storage:{}:report", plural(kind));
    let entries = match names.as_slice() {
        [] => root.list_entries()?,
        [name] => vec![root.read_entry(&EntryName::new(name)?)?],
        _ => return Err(CliError::Usage(format!("{command} takes one storage entry name"))),
    };
    let prefix = format!("--storage-{}.", plural(kind));
    match (flags.as_slice(), entries.as_slice()) {
        ([], _) => {}
        ([flag], [entry]) => {
            let mut entry = entry.clone();
            let map = map_of(&mut entry, kind);
            let value = flag.strip_prefix(&prefix).and_then(|key| map.get(key));
            return match value {
                Some(value) => {
                    out.text(format!("{value}\n"));
                    Ok(())
                }
                None => {
                    let valid: Vec<String> = map.keys().map(|k| format!("{prefix}{k}")).collect();
                    Err(CliError::Usage(format!("Invalid flag passed, valid flags: {}", valid.join(", "))))
                }
            };
        }
        ([_], _) => {
            return Err(CliError::Usage(format!(
                "{command} requires a storage entry name when an info flag is specified"
            )));
        }
        _ => return Err(CliError::Usage(format!("{command} command allows only a single flag"))),
    }
    if entries.is_empty() && format == Format::Text {
        out.step("No storage entries registered");
        return Ok(());
    }
    let mut rows: Vec<(EntryName, BTreeMap<String, String>)> = Vec::new();
    for mut entry in entries {
        let map = map_of(&mut entry, kind).clone();
        rows.push((entry.name, map));
    }
    match (format, rows.as_slice()) {
        (Format::Json, [(_, map)]) if names.len() == 1 => print_json(map, out),
        (Format::Json, _) => {
            print_json(&rows.into_iter().map(|(n, m)| (n.to_string(), m)).collect::<BTreeMap<_, _>>(), out)
        }
        (Format::Text, _) => {
            let label = match kind {
                Kind::Annotation => "Annotation",
                Kind::Label => "Label",
            };
            for (name, map) in rows {
                out.heading(format!("{name} {} information", plural(kind)));
                let width = map.keys().map(|k| k.len() + label.len() + 2).max().unwrap_or(0).max(31);
                for (key, value) in map {
                    out.detail(format!("{:<width$}{value}", format!("{label} {key}:")));
                }
            }
            Ok(())
        }
    }
}

/// Makes the Docker volume a volume-backed entry names, labelled with the entry and its labels,
/// unless it exists (an existing volume is the admin's and is used as it is).
pub fn ensure_entry_volume(entry: &Entry, out: &Reporter) -> Result<()> {
    let EntryBacking::Volume(volume) = &entry.host_path else { return Ok(()) };
    let mut labels: HashMap<String, String> = entry.labels.clone().into_iter().collect();
    labels.insert(ENTRY_LABEL.to_string(), entry.name.to_string());
    if Engine::connect()?.ensure_labelled_volume(volume, labels)? {
        out.detail(format!("Created Docker volume {volume}"));
    }
    Ok(())
}
