//! `storage:exec <entry> [--image i] [--as-user u] -- <cmd>...`: a command on an entry's data,
//! mounted at `/data` in a short-lived helper container; its exit status is berth's.

use std::collections::HashMap;

use super::Result;
use super::refusal::Refusal;
use crate::engine::{ContainerSpec, Engine, EngineMount, MountKind};
use crate::names::EntryName;
use crate::output::Reporter;
use crate::state::Root;
use crate::storage::{Chown, EntryBacking};

/// Dokku's default helper image.
const DEFAULT_IMAGE: &str = "alpine:3";

/// Where the entry's data is in the helper container, as in Dokku.
const DATA_PATH: &str = "/data";

#[derive(Debug, clap::Args)]
pub struct ExecArgs {
    name: String,
    /// Image to run the command in (it must be on the engine already)
    #[arg(long, default_value = DEFAULT_IMAGE)]
    image: String,
    /// User to run as (uid, or a chown preset); default: the entry's chown, else the image's user
    #[arg(long)]
    as_user: Option<String>,
    /// The command and its arguments, after `--`
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

pub fn exec(root: &Root, args: ExecArgs, out: &Reporter) -> Result<i32> {
    let name = EntryName::new(&args.name)?;
    let entry = root.read_entry(&name)?;
    let command: Vec<String> = args.command.into_iter().skip_while(|w| w == "--").collect();
    if command.is_empty() {
        return Err(Refusal::NoCommand { name, data_path: DATA_PATH }.into());
    }
    let engine = Engine::connect()?;
    let (kind, source) = match &entry.host_path {
        EntryBacking::Dir(path) if !path.is_dir() => {
            return Err(Refusal::MissingEntryDir(path.clone()).into());
        }
        EntryBacking::Dir(path) => (MountKind::Bind, path.display().to_string()),
        EntryBacking::Volume(volume) => {
            engine.require_volume(volume)?;
            (MountKind::Volume, volume.clone())
        }
    };
    if !engine.image_exists(&args.image)? {
        return Err(Refusal::ImageNotOnEngine(args.image).into());
    }
    let user = match args.as_user.as_deref() {
        Some(user) => user.parse::<Chown>()?.uid(),
        None => entry.chown.and_then(Chown::uid),
    };
    let container = format!("berth-storage-exec.{name}.{}", std::process::id());
    let spec = ContainerSpec {
        name: container.clone(),
        image: args.image,
        cmd: Some(command),
        user: user.map(|uid| format!("{uid}:{uid}")),
        labels: HashMap::from([("berth.storage-exec".to_string(), name.to_string())]),
        mounts: vec![EngineMount {
            kind,
            source,
            target: DATA_PATH.into(),
            read_only: false,
            options: Vec::new(),
        }],
        ..ContainerSpec::default()
    };
    engine.create_container(&spec)?;
    let status = engine.run_attached(&container, &mut |is_err, text| out.relay(is_err, text));
    engine.remove_container(&container)?;
    Ok(i32::try_from(status?).unwrap_or(1))
}
