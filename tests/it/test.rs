//! A fluent builder for running the built `berth` binary against a throw-away `BERTH_ROOT`,
//! modelled on casey/just's `Test`:
//!
//! ```ignore
//! let t = Test::new();
//! t.args(["apps:create", "demo"]).run().success();
//! let out = t.args(["storage:mount", "demo", "./rel:/x"]).refuse();
//! insta::assert_snapshot!(out, @"...");
//! ```
//!
//! Outputs have the root's path replaced with `[ROOT]`, so snapshots are stable.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use tempfile::TempDir;

/// The `berth` binary under test.
pub const BERTH: &str = env!("CARGO_BIN_EXE_berth");

/// One temp `BERTH_ROOT`; every command run from it shares that root.
pub struct Test {
    tempdir: TempDir,
}

impl Test {
    pub fn new() -> Test {
        Test { tempdir: tempfile::Builder::new().prefix("berth-it-").tempdir().unwrap() }
    }

    pub fn root(&self) -> &Path {
        self.tempdir.path()
    }

    /// `BERTH_ROOT/<rel>`.
    pub fn path(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.root().join(rel)
    }

    /// The path as a string, for command arguments.
    pub fn path_str(&self, rel: impl AsRef<Path>) -> String {
        self.path(rel).display().to_string()
    }

    /// Creates a directory (and parents) under the root and returns its path as a string.
    pub fn mkdir(&self, rel: impl AsRef<Path>) -> String {
        let path = self.path(rel);
        fs::create_dir_all(&path).unwrap();
        path.display().to_string()
    }

    /// Starts a command line.
    pub fn args<I, S>(&self, args: I) -> Run<'_>
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        Run { test: self, args: args.into_iter().map(Into::into).collect(), stdin: Vec::new(), warnings: 0 }
    }

    /// Runs a command that must succeed; returns its output.
    pub fn ok<I, S>(&self, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args(args).run().success()
    }

    /// Creates an app.
    pub fn app(&self, app: &str) -> &Test {
        self.ok(["apps:create", app]);
        self
    }

    /// The app's state file, as text.
    pub fn app_state(&self, app: &str) -> String {
        fs::read_to_string(self.path(format!("apps/{app}/state.toml"))).unwrap()
    }

    /// The app's state file with the root and the creation time redacted, for snapshots.
    pub fn app_state_redacted(&self, app: &str) -> String {
        let text = self.redact(&self.app_state(app));
        let lines: Vec<String> = text
            .lines()
            .map(|l| {
                if l.starts_with("created_at = ") {
                    "created_at = [CREATED_AT]".to_string()
                } else {
                    l.to_string()
                }
            })
            .collect();
        lines.join("\n") + "\n"
    }

    /// The app's state file, parsed.
    pub fn app_state_toml(&self, app: &str) -> toml::Table {
        self.app_state(app).parse().unwrap()
    }

    /// Number of attachments recorded for the app.
    pub fn mount_count(&self, app: &str) -> usize {
        self.app_state_toml(app).get("mounts").and_then(|m| m.as_array()).map_or(0, Vec::len)
    }

    pub fn redact(&self, text: &str) -> String {
        text.replace(&self.root().display().to_string(), "[ROOT]")
    }
}

/// Every file under `root` with its bytes, and every directory (with an empty marker), skipping
/// `locks/`, which commands create on the fly to serialise themselves.
pub fn snapshot_state(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, into: &mut BTreeMap<PathBuf, Vec<u8>>) {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let rel = path.strip_prefix(root).unwrap().to_path_buf();
            if rel == Path::new("locks") {
                continue;
            }
            let meta = fs::symlink_metadata(&path).unwrap();
            if meta.is_dir() {
                into.insert(rel.join(""), b"<dir>".to_vec());
                walk(root, &path, into);
            } else if meta.file_type().is_symlink() {
                into.insert(rel, fs::read_link(&path).unwrap().into_os_string().into_encoded_bytes());
            } else if !meta.is_file() {
                // A socket (the proxy's admin endpoint) or fifo: its presence, not its content.
                into.insert(rel, b"<special>".to_vec());
            } else {
                into.insert(rel, fs::read(&path).unwrap());
            }
        }
    }
    let mut files = BTreeMap::new();
    walk(root, root, &mut files);
    files
}

/// A command line being built.
pub struct Run<'a> {
    test: &'a Test,
    args: Vec<OsString>,
    stdin: Vec<u8>,
    warnings: usize,
}

impl Run<'_> {
    /// Bytes for the command's stdin (a pipe, never a terminal; empty by default).
    pub fn stdin(mut self, input: impl AsRef<[u8]>) -> Self {
        self.stdin = input.as_ref().to_vec();
        self
    }

    /// Warning lines a refusal prints on stderr before its error line.
    pub fn warnings(mut self, lines: usize) -> Self {
        self.warnings = lines;
        self
    }

    pub fn run(self) -> Output {
        let mut child = Command::new(BERTH)
            .args(&self.args)
            .env("BERTH_ROOT", self.test.root())
            .env_remove("RUST_BACKTRACE")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let input = self.stdin.clone();
        let writer = std::thread::spawn(move || {
            // The command may exit without reading: a broken pipe is fine.
            let _ = stdin.write_all(&input);
        });
        let output = child.wait_with_output().unwrap();
        writer.join().unwrap();
        Output {
            status: output.status.code().unwrap_or(-1),
            stdout: self.test.redact(&String::from_utf8_lossy(&output.stdout)),
            stderr: self.test.redact(&String::from_utf8_lossy(&output.stderr)),
        }
    }

    /// Runs the command on a pseudo-terminal (util-linux `script`) with the stdin bytes typed
    /// in. The terminal merges stdout and stderr: both are in `stdout`, with `\r` removed.
    pub fn run_on_terminal(self) -> Output {
        let quote = |arg: &OsString| format!("'{}'", arg.to_string_lossy().replace('\'', r"'\''"));
        let command: Vec<String> =
            std::iter::once(&OsString::from(BERTH)).chain(&self.args).map(quote).collect();
        let mut child = Command::new("script")
            .args(["-q", "-e", "-c", &command.join(" "), "/dev/null"])
            .env("BERTH_ROOT", self.test.root())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(&self.stdin).unwrap();
        let output = child.wait_with_output().unwrap();
        Output {
            status: output.status.code().unwrap_or(-1),
            stdout: self.test.redact(&String::from_utf8_lossy(&output.stdout).replace('\r', "")),
            stderr: self.test.redact(&String::from_utf8_lossy(&output.stderr)),
        }
    }

    /// Runs a command that must be refused: exit 1, one ` !     ` line on stderr (after the
    /// expected warnings), and not a byte changed under the root.
    pub fn refuse(self) -> Output {
        let test = self.test;
        let warnings = self.warnings;
        let before = snapshot_state(test.root());
        let out = self.run();
        assert_eq!(out.status, 1, "expected exit 1\n{out}");
        let lines: Vec<&str> = out.stderr.lines().collect();
        assert_eq!(lines.len(), warnings + 1, "expected {warnings} warning(s) and one error line\n{out}");
        assert!(
            lines.iter().all(|l| l.starts_with(" !     ")),
            "stderr lines must start with ` !     `\n{out}"
        );
        assert_unchanged(&before, &snapshot_state(test.root()), &out);
        out
    }

    /// Runs a command clap must reject: exit 2, clap's `error:` on stderr, nothing changed.
    pub fn usage_error(self) -> Output {
        let test = self.test;
        let before = snapshot_state(test.root());
        let out = self.run();
        assert_eq!(out.status, 2, "expected exit 2\n{out}");
        assert!(out.stderr.starts_with("error: "), "expected a clap error\n{out}");
        assert_unchanged(&before, &snapshot_state(test.root()), &out);
        out
    }
}

fn assert_unchanged(before: &BTreeMap<PathBuf, Vec<u8>>, after: &BTreeMap<PathBuf, Vec<u8>>, out: &Output) {
    if before == after {
        return;
    }
    let mut changes = Vec::new();
    for (path, bytes) in before {
        match after.get(path) {
            None => changes.push(format!("removed {}", path.display())),
            Some(now) if now != bytes => changes.push(format!("changed {}", path.display())),
            Some(_) => {}
        }
    }
    for path in after.keys().filter(|p| !before.contains_key(*p)) {
        changes.push(format!("added {}", path.display()));
    }
    panic!("a refused command changed the state:\n{}\n{out}", changes.join("\n"));
}

/// What a command did.
#[derive(Debug, Clone)]
pub struct Output {
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn success(self) -> Output {
        assert_eq!(self.status, 0, "expected success\n{self}");
        self
    }

    /// Replaces text (a generated name, a timestamp) so the output snapshots stably.
    pub fn replace(mut self, from: &str, to: &str) -> Output {
        self.stdout = self.stdout.replace(from, to);
        self.stderr = self.stderr.replace(from, to);
        self
    }
}

impl fmt::Display for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let newline = |text: &str| if text.is_empty() || text.ends_with('\n') { "" } else { "\n" };
        write!(
            f,
            "exit: {}\n--- stdout\n{}{}--- stderr\n{}",
            self.status,
            self.stdout,
            newline(&self.stdout),
            self.stderr
        )
    }
}
