//! Push over SSH: the keys that may reach the `berth` user, rendered into its
//! `authorized_keys` with a forced command, and that command's gatekeeping of what a key may
//! run (`git-receive-pack` / `git-upload-pack` for an app; admin commands for admin keys only).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::docker_options::shell_words;
use crate::names::AppName;
use crate::state::{Root, StateError, read_toml, write_atomic, write_toml};

/// Key types OpenSSH accepts in `authorized_keys`.
const KEY_TYPES: &[&str] = &[
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
];

#[derive(Debug, thiserror::Error)]
pub enum SshError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error("key name \"{0}\" is not valid: use letters, digits, '.', '_' and '-' (at most 64)")]
    BadName(String),
    #[error("not an SSH public key{0}: expected one line \"<type> <base64> [comment]\", type one of {types}", types = KEY_TYPES.join(", "))]
    BadKey(String),
    #[error("a key named \"{0}\" exists; remove it first (berth ssh-keys:remove {0})")]
    NameTaken(String),
    #[error("this key is already added as \"{0}\"")]
    KeyTaken(String),
    #[error("no key named \"{0}\"; see berth ssh-keys:list")]
    NoSuchKey(String),
    #[error("{0} cannot be used in a forced command: it contains a quote, a backslash or whitespace")]
    UnsafePath(PathBuf),
    #[error("berth gives no shell: push with `git push berth@<host>:<app> main`")]
    NoShell,
    #[error("command refused: {0}")]
    Refused(String),
    #[error("key \"{0}\" may only push; admin commands need a key added with --admin")]
    NotAdmin(String),
}

/// One key allowed to reach the berth user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRecord {
    /// `<type> <base64>`, without the comment.
    pub key: String,
    #[serde(default)]
    pub admin: bool,
    pub added_at: u64,
}

/// `ssh-keys.toml`: the keys by name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Keys {
    #[serde(default)]
    pub keys: BTreeMap<String, KeyRecord>,
}

pub fn check_key_name(name: &str) -> Result<(), SshError> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with(['-', '.'])
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if valid { Ok(()) } else { Err(SshError::BadName(name.to_string())) }
}

/// Checks a public key line and returns its `<type> <base64>` part.
pub fn parse_public_key(text: &str) -> Result<String, SshError> {
    let lines: Vec<&str> =
        text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).collect();
    let [line] = lines.as_slice() else {
        return Err(SshError::BadKey(format!(" (found {} key lines)", lines.len())));
    };
    let mut parts = line.split_whitespace();
    let (Some(kind), Some(blob)) = (parts.next(), parts.next()) else {
        return Err(SshError::BadKey(String::new()));
    };
    if !KEY_TYPES.contains(&kind) {
        return Err(SshError::BadKey(format!(
            " (type \"{}\"; options before the key are not accepted)",
            kind.escape_default()
        )));
    }
    let base64 = blob.len() >= 16
        && blob.len() % 4 == 0
        && blob.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='));
    if !base64 {
        return Err(SshError::BadKey(" (the key data is not base64)".into()));
    }
    Ok(format!("{kind} {blob}"))
}

fn keys_file(root: &Root) -> PathBuf {
    root.path().join("ssh-keys.toml")
}

pub fn read_keys(root: &Root) -> Result<Keys, SshError> {
    Ok(read_toml(&keys_file(root))?.unwrap_or_default())
}

/// Adds a key and rewrites `authorized_keys`.
pub fn add_key(
    root: &Root,
    name: &str,
    key_text: &str,
    admin: bool,
    berth_bin: &Path,
) -> Result<(), SshError> {
    check_key_name(name)?;
    let key = parse_public_key(key_text)?;
    let _lock = root.lock_named("ssh-keys")?;
    let mut keys = read_keys(root)?;
    if keys.keys.contains_key(name) {
        return Err(SshError::NameTaken(name.to_string()));
    }
    if let Some((other, _)) = keys.keys.iter().find(|(_, record)| record.key == key) {
        return Err(SshError::KeyTaken(other.clone()));
    }
    keys.keys.insert(name.to_string(), KeyRecord { key, admin, added_at: crate::state::unix_now() });
    write_toml(&keys_file(root), &keys)?;
    write_authorized_keys(root, &keys, berth_bin)
}

pub fn remove_key(root: &Root, name: &str, berth_bin: &Path) -> Result<(), SshError> {
    let _lock = root.lock_named("ssh-keys")?;
    let mut keys = read_keys(root)?;
    if keys.keys.remove(name).is_none() {
        return Err(SshError::NoSuchKey(name.to_string()));
    }
    write_toml(&keys_file(root), &keys)?;
    write_authorized_keys(root, &keys, berth_bin)
}

/// Where the berth user's `authorized_keys` is: `berth.toml`'s `authorized_keys`, else the
/// berth user's default.
pub fn authorized_keys_path(root: &Root) -> Result<PathBuf, SshError> {
    Ok(root
        .read_settings()?
        .authorized_keys
        .unwrap_or_else(|| PathBuf::from("/home/berth/.ssh/authorized_keys")))
}

fn safe_for_command(path: &Path) -> Result<String, SshError> {
    let text = path.display().to_string();
    if text.chars().any(|c| c.is_whitespace() || matches!(c, '"' | '\'' | '\\')) {
        return Err(SshError::UnsafePath(path.to_path_buf()));
    }
    Ok(text)
}

/// One `authorized_keys` line: the forced command names the key; `restrict` turns off pty,
/// port, agent and X11 forwarding and user rc (the explicit options repeat it for old sshd).
pub fn authorized_line(
    root: &Root,
    name: &str,
    record: &KeyRecord,
    berth_bin: &Path,
) -> Result<String, SshError> {
    let bin = safe_for_command(berth_bin)?;
    let root_path = safe_for_command(root.path())?;
    Ok(format!(
        "command=\"BERTH_ROOT={root_path} {bin} git-shell {name}\",restrict,no-pty,no-port-forwarding,no-agent-forwarding,no-X11-forwarding,no-user-rc {}",
        record.key
    ))
}

fn write_authorized_keys(root: &Root, keys: &Keys, berth_bin: &Path) -> Result<(), SshError> {
    let path = authorized_keys_path(root)?;
    let mut text =
        String::from("# Written by berth (berth ssh-keys:add|remove); edits here are overwritten.\n");
    for (name, record) in &keys.keys {
        text.push_str(&authorized_line(root, name, record, berth_bin)?);
        text.push('\n');
    }
    write_atomic(&path, text.as_bytes())?;
    Ok(())
}

/// What an SSH session asked for, once checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SshCommand {
    ReceivePack(AppName),
    UploadPack(AppName),
    Admin(Vec<String>),
}

/// Checks `SSH_ORIGINAL_COMMAND` for a key.
pub fn parse_original_command(command: &str, key_name: &str, is_admin: bool) -> Result<SshCommand, SshError> {
    let words = shell_words(command).map_err(|e| SshError::Refused(e.to_string()))?;
    let Some((program, args)) = words.split_first() else { return Err(SshError::NoShell) };
    let git = match program.as_str() {
        "git-receive-pack" | "git-upload-pack" => true,
        "git" if args.first().is_some_and(|a| a == "receive-pack" || a == "upload-pack") => true,
        _ => false,
    };
    if git {
        let (program, args) =
            if program == "git" { (format!("git-{}", args[0]), &args[1..]) } else { (program.clone(), args) };
        let [path] = args else {
            return Err(SshError::Refused(format!("{program} takes one repository, got {}", args.len())));
        };
        let app = app_of_path(path)?;
        return Ok(if program == "git-receive-pack" {
            SshCommand::ReceivePack(app)
        } else {
            SshCommand::UploadPack(app)
        });
    }
    if !is_admin {
        return Err(SshError::NotAdmin(key_name.to_string()));
    }
    if program == "git-shell" {
        return Err(SshError::Refused("git-shell cannot be nested".into()));
    }
    Ok(SshCommand::Admin(words))
}

/// `myapp`, `/myapp`, `myapp.git`, `~/myapp.git` → the app; anything with a path in it is refused.
fn app_of_path(path: &str) -> Result<AppName, SshError> {
    let name = path.trim_start_matches("~/").trim_start_matches('/');
    let name = name.strip_suffix('/').unwrap_or(name);
    let name = name.strip_suffix(".git").unwrap_or(name);
    if name.contains('/') || name.contains("..") {
        return Err(SshError::Refused(format!(
            "\"{}\" is not an app name: push to berth@<host>:<app>",
            path.escape_default()
        )));
    }
    AppName::new(name).map_err(|e| SshError::Refused(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGm6m4hJ3bP4cD2QkqkXcdp3M2U2y7q9pG0b7mJ9cQ2x me@laptop";

    #[test]
    fn keys_are_checked() {
        assert_eq!(
            parse_public_key(KEY).unwrap(),
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGm6m4hJ3bP4cD2QkqkXcdp3M2U2y7q9pG0b7mJ9cQ2x"
        );
        for bad in [
            "",
            "ssh-dss AAAA",
            "command=\"sh\" ssh-ed25519 AAAAC3Nza",
            "ssh-ed25519 not*base64*at*all!!",
            "x\ny",
        ] {
            assert!(parse_public_key(bad).is_err(), "{bad}");
        }
        assert!(check_key_name("alice.laptop").is_ok());
        for bad in ["", "-x", "a b", "a/b", "a\"b"] {
            assert!(check_key_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn forced_command_gates() {
        let app = AppName::new("myapp").unwrap();
        for ok in [
            "git-receive-pack 'myapp'",
            "git-receive-pack '/myapp.git'",
            "git receive-pack myapp",
            "git-receive-pack '~/myapp.git'",
        ] {
            assert_eq!(
                parse_original_command(ok, "k", false).unwrap(),
                SshCommand::ReceivePack(app.clone()),
                "{ok}"
            );
        }
        assert_eq!(
            parse_original_command("git-upload-pack 'myapp'", "k", false).unwrap(),
            SshCommand::UploadPack(app)
        );
        for refused in [
            "git-receive-pack '../etc'",
            "git-receive-pack 'a/../b'",
            "git-receive-pack '/var/lib/berth/repos/x.git'",
            "git-receive-pack",
            "git-receive-pack a b",
            "git-receive-pack 'Bad_Name'",
        ] {
            assert!(
                matches!(parse_original_command(refused, "k", true), Err(SshError::Refused(_))),
                "{refused}"
            );
        }
        assert!(matches!(parse_original_command("", "k", true), Err(SshError::NoShell)));
        assert!(matches!(parse_original_command("sh -c id", "k", false), Err(SshError::NotAdmin(_))));
        assert!(matches!(
            parse_original_command("storage:list myapp", "k", false),
            Err(SshError::NotAdmin(_))
        ));
        assert_eq!(
            parse_original_command("storage:list myapp", "k", true).unwrap(),
            SshCommand::Admin(vec!["storage:list".into(), "myapp".into()])
        );
    }

    #[test]
    fn authorized_line_forces_the_command() {
        let root = Root::new("/var/lib/berth");
        let record = KeyRecord { key: parse_public_key(KEY).unwrap(), admin: false, added_at: 0 };
        let line = authorized_line(&root, "alice", &record, Path::new("/usr/local/bin/berth")).unwrap();
        assert_eq!(
            line,
            "command=\"BERTH_ROOT=/var/lib/berth /usr/local/bin/berth git-shell alice\",restrict,no-pty,no-port-forwarding,no-agent-forwarding,no-X11-forwarding,no-user-rc ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGm6m4hJ3bP4cD2QkqkXcdp3M2U2y7q9pG0b7mJ9cQ2x"
        );
        assert!(authorized_line(&Root::new("/tmp/a b"), "alice", &record, Path::new("/b")).is_err());
    }
}
