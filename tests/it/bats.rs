//! Dokku's bats tests, run against berth: `Bats::new` is Dokku's `setup` (a fresh root with
//! `$TEST_APP` created), `run` is bats' `run /bin/bash -c "..."` (stdout and stderr together in
//! `output`, trailing newlines cut as `$(...)` does), and the assertions are Dokku's
//! `test_helper.bash` ones, with its meaning of `assert_output_contains <text> [<count>]`
//! (exactly `count` occurrences, default 1; -1 for at least one).
//!
//! Command lines keep Dokku's text with `dokku` written `berth`. `$TEST_APP`, `$DOKKU_LIB_ROOT`
//! (berth's root: its `data/storage` is Dokku's) and `$SCRATCH` (a per-test directory where a
//! Dokku test uses `/tmp/...`) are set in the environment.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::test::{BERTH, Test};

pub struct Bats {
    pub t: Test,
    pub app: String,
    scratch: tempfile::TempDir,
}

/// What `run` saw.
pub struct Ran {
    pub status: i32,
    pub output: String,
    line: String,
}

impl Bats {
    /// A root with the app `dk-<tag>` created, as Dokku's `setup` does.
    pub fn new(tag: &str) -> Bats {
        let t = Test::new();
        let app = format!("dk-{tag}-{}", std::process::id());
        t.app(&app);
        Bats { t, app, scratch: tempfile::Builder::new().prefix("berth-dk-").tempdir().unwrap() }
    }

    /// The per-test stand-in for Dokku's `/tmp`.
    pub fn scratch(&self) -> &Path {
        self.scratch.path()
    }

    pub fn run(&self, line: &str) -> Ran {
        let bin = Path::new(BERTH).parent().unwrap();
        let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
        let out = Command::new("bash")
            .args(["-c", &format!("( {line} ) 2>&1")])
            .env("PATH", path)
            .env("BERTH_ROOT", self.t.root())
            .env("DOKKU_LIB_ROOT", self.t.root())
            .env("TEST_APP", &self.app)
            .env("SCRATCH", self.scratch.path())
            .env_remove("RUST_BACKTRACE")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let output = String::from_utf8_lossy(&out.stdout).trim_end_matches('\n').to_string();
        Ran { status: out.status.code().unwrap_or(-1), output, line: line.to_string() }
    }

    /// `$DOKKU_LIB_ROOT/<rel>`.
    pub fn lib_path(&self, rel: &str) -> PathBuf {
        self.t.path(rel)
    }
}

impl Ran {
    fn show(&self) -> String {
        format!("command: {}\nstatus: {}\noutput:\n{}", self.line, self.status, self.output)
    }

    pub fn assert_success(&self) -> &Ran {
        assert_eq!(self.status, 0, "command failed\n{}", self.show());
        self
    }

    pub fn assert_failure(&self) -> &Ran {
        assert_ne!(self.status, 0, "expected failed exit status\n{}", self.show());
        self
    }

    pub fn assert_status(&self, status: i32) -> &Ran {
        assert_eq!(self.status, status, "unexpected status\n{}", self.show());
        self
    }

    pub fn assert_output(&self, expected: &str) -> &Ran {
        assert_eq!(self.output, expected, "\n{}", self.show());
        self
    }

    pub fn assert_output_not_exists(&self) -> &Ran {
        self.assert_output("")
    }

    /// Exactly one occurrence (Dokku's default count).
    pub fn assert_output_contains(&self, text: &str) -> &Ran {
        self.assert_output_contains_n(text, 1)
    }

    /// Exactly `count` occurrences; -1 for at least one.
    pub fn assert_output_contains_n(&self, text: &str, count: i32) -> &Ran {
        let found = i32::try_from(self.output.matches(text).count()).unwrap();
        if count == -1 {
            assert!(found > 0, "expected at least 1 occurrence of {text:?}\n{}", self.show());
        } else {
            assert_eq!(found, count, "expected {count} occurrences of {text:?}\n{}", self.show());
        }
        self
    }

    pub fn assert_output_not_contains(&self, text: &str) -> &Ran {
        self.assert_output_contains_n(text, 0)
    }
}
