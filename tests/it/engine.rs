//! The real Docker engine, for tests that need one: `engine()` makes sure it answers (once per
//! test process), `Volume` is a uniquely named volume removed when dropped, and `docker` and
//! `mounts_of` ask the engine what berth did.

use std::collections::BTreeSet;
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Runs `scripts/ensure-engine.sh` once per test process; panics with its output if it fails.
pub fn engine() {
    static READY: OnceLock<Result<(), String>> = OnceLock::new();
    let ready = READY.get_or_init(|| {
        let output = Command::new("bash")
            .arg("scripts/ensure-engine.sh")
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .map_err(|e| format!("unable to run scripts/ensure-engine.sh: {e}"))?;
        if output.status.success() {
            Ok(())
        } else {
            Err(format!(
                "scripts/ensure-engine.sh failed ({})\n--- stdout\n{}--- stderr\n{}",
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ))
        }
    });
    if let Err(message) = ready {
        panic!("{message}");
    }
}

/// A name (of a volume, an app) no other test (or test process) uses; a DNS label when `tag` is.
pub fn unique_name(tag: &str) -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    format!("berth-it-{tag}-{}-{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// A volume name no other test (or test process) uses.
pub fn unique_volume_name(tag: &str) -> String {
    unique_name(tag)
}

/// A Docker volume created for a test and removed when dropped.
pub struct Volume {
    pub name: String,
}

impl Volume {
    pub fn create(tag: &str) -> Volume {
        engine();
        let name = unique_volume_name(tag);
        docker(&["volume", "create", &name]);
        Volume { name }
    }

    /// A volume with a given name and label (`key=value`).
    pub fn create_labelled(name: &str, label: &str) -> Volume {
        engine();
        docker(&["volume", "create", "--label", label, name]);
        Volume { name: name.to_string() }
    }

    pub fn exists(&self) -> bool {
        Command::new("docker").args(["volume", "inspect", &self.name]).output().unwrap().status.success()
    }
}

impl Drop for Volume {
    fn drop(&mut self) {
        let _ = Command::new("docker").args(["volume", "rm", "-f", &self.name]).output();
    }
}

/// Runs a docker command that must succeed; returns its stdout.
pub fn docker(args: &[&str]) -> String {
    let output = Command::new("docker").args(args).output().unwrap();
    assert!(
        output.status.success(),
        "docker {} failed\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// The mounts of a container as the engine reports them: (source, destination, read-write),
/// where the source is the host path of a bind and the name of a volume.
pub fn mounts_of(container: &str) -> BTreeSet<(String, String, bool)> {
    let json = docker(&["inspect", "--format", "{{json .Mounts}}", container]);
    let mounts: Vec<serde_json::Value> = serde_json::from_str(&json).unwrap();
    mounts
        .iter()
        .map(|m| {
            let field = |key: &str| m[key].as_str().unwrap_or_default().to_string();
            let source = if field("Type") == "volume" { field("Name") } else { field("Source") };
            (source, field("Destination"), m["RW"].as_bool().unwrap())
        })
        .collect()
}

/// One field of `docker inspect` of an object (a Go template such as `{{.Id}}`), trimmed.
pub fn inspect(object: &str, template: &str) -> String {
    docker(&["inspect", "--format", template, object]).trim().to_string()
}
