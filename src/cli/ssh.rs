//! `ssh-keys:*` and `git-shell`, the forced command every SSH key runs.

use std::io::Read;
use std::os::unix::process::CommandExt;

use super::{CliError, Format, Result, print_json};
use crate::output::Reporter;
use crate::ssh::{self, SshCommand, SshError};
use crate::state::Root;

fn berth_bin() -> Result<std::path::PathBuf> {
    std::env::current_exe().map_err(|e| CliError::io("cannot locate the berth binary", e))
}

pub fn add(root: &Root, name: &str, file: &str, admin: bool, out: &Reporter) -> Result<()> {
    let text = if file == "-" {
        let mut text = String::new();
        std::io::stdin()
            .take(64 * 1024)
            .read_to_string(&mut text)
            .map_err(|e| CliError::io("cannot read the key from stdin", e))?;
        text
    } else {
        std::fs::read_to_string(file).map_err(|e| CliError::io(format!("cannot read {file}"), e))?
    };
    ssh::add_key(root, name, &text, admin, &berth_bin()?)?;
    let role = if admin { "push and admin commands" } else { "push" };
    out.step(format!("Added SSH key {name} ({role})"));
    out.detail(format!("Written to {}", ssh::authorized_keys_path(root)?.display()));
    Ok(())
}

pub fn remove(root: &Root, name: &str, out: &Reporter) -> Result<()> {
    ssh::remove_key(root, name, &berth_bin()?)?;
    out.step(format!("Removed SSH key {name}"));
    Ok(())
}

pub fn list(root: &Root, format: Format, out: &Reporter) -> Result<()> {
    let keys = ssh::read_keys(root)?;
    match format {
        Format::Json => print_json(&keys.keys, out),
        Format::Text => {
            out.heading("SSH keys");
            for (name, record) in &keys.keys {
                let kind = record.key.split(' ').next().unwrap_or("");
                let tail = record.key.get(record.key.len().saturating_sub(12)..).unwrap_or("");
                let role = if record.admin { "admin" } else { "push" };
                out.detail(format!("{name}\t{kind} ...{tail}\t{role}"));
            }
            Ok(())
        }
    }
}

/// The SSH forced command: runs only what the key may run. Its stdout is git's protocol
/// channel, so everything berth says goes to stderr.
pub fn git_shell(root: &Root, key_name: &str, out: &Reporter) -> Result<()> {
    let keys = ssh::read_keys(root)?;
    let record = keys.keys.get(key_name).ok_or_else(|| SshError::NoSuchKey(key_name.to_string()))?;
    let original = std::env::var("SSH_ORIGINAL_COMMAND").unwrap_or_default();
    let command = ssh::parse_original_command(&original, key_name, record.admin)?;
    let error = match command {
        SshCommand::ReceivePack(app) => {
            if !root.app_exists(&app) {
                out.error_text(format!("-----> Creating {app}..."));
                match super::apps::create_quietly(root, &app) {
                    // Another first push (the same app from two clones) created it meanwhile.
                    Err(CliError::State(crate::state::StateError::AppExists(_))) => {}
                    result => result?,
                }
            }
            std::process::Command::new("git-receive-pack").arg(root.repo_dir(&app)).exec()
        }
        SshCommand::UploadPack(app) => {
            if !root.app_exists(&app) {
                return Err(crate::state::StateError::NoSuchApp(app).into());
            }
            std::process::Command::new("git-upload-pack").arg(root.repo_dir(&app)).exec()
        }
        SshCommand::Admin(words) => std::process::Command::new(berth_bin()?).args(words).exec(),
    };
    Err(CliError::io("cannot start the command", error))
}
