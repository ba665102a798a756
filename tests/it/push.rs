//! Deploying for real: `App` is an app created in a test's `BERTH_ROOT` and torn down (containers,
//! volumes, directories, images) when dropped; `Repo` is a work tree copied from `templates/`
//! and pushed to the app's bare repo with the real `git push`, which runs the built hooks;
//! `get` and `post` are a tiny HTTP/1.0 client for what the app serves.

use std::fmt;
use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use tempfile::TempDir;

use crate::engine::{docker, engine, unique_name};
use crate::test::{BERTH, Output, Test};

/// An app with a unique name; dropping it destroys it with its storage, containers and images,
/// so the engine is left clean even when the test fails.
pub struct App<'t> {
    pub t: &'t Test,
    pub name: String,
}

impl<'t> App<'t> {
    /// Creates `berth-it-<tag>-<pid>-<n>` (its hooks run the hook binaries beside `berth`).
    pub fn create(t: &'t Test, tag: &str) -> App<'t> {
        engine();
        let bin_dir = Path::new(BERTH).parent().unwrap();
        for hook in ["berth-pre-receive", "berth-post-receive"] {
            assert!(bin_dir.join(hook).is_file(), "cargo did not build {hook} beside {BERTH}");
        }
        let app = App { t, name: unique_name(tag) };
        t.app(&app.name);
        app
    }

    /// Runs `berth <args>` with the app name inserted after the command.
    pub fn berth(&self, command: &str, args: &[&str]) -> Output {
        let mut all = vec![command, self.name.as_str()];
        all.extend_from_slice(args);
        self.t.args(all).run()
    }

    /// One value of `berth ps:report <app> --<flag>`.
    pub fn ps(&self, flag: &str) -> String {
        self.berth("ps:report", &[&format!("--{flag}")]).success().stdout.trim().to_string()
    }

    /// The web URL `ps:report` gives.
    pub fn url(&self) -> String {
        let url = self.ps("ps-web-url");
        assert!(url.starts_with("http://127.0.0.1:"), "no web URL: {url:?}");
        url
    }

    /// `<app>.<process>.1`.
    pub fn container(&self, process: &str) -> String {
        format!("{}.{process}.1", self.name)
    }

    /// Every container labelled with the app (running or not), as (name, id), sorted.
    pub fn containers(&self) -> Vec<(String, String)> {
        let label = format!("label=berth.app={}", self.name);
        let out = docker(&["ps", "-a", "--no-trunc", "--filter", &label, "--format", "{{.Names}} {{.ID}}"]);
        let mut containers: Vec<(String, String)> = out
            .lines()
            .map(|l| {
                let (name, id) = l.split_once(' ').unwrap();
                (name.to_string(), id.to_string())
            })
            .collect();
        containers.sort();
        containers
    }

    /// `$BERTH_ROOT/data/apps/<app>/<rel>`: an app directory on the host.
    pub fn dir(&self, rel: &str) -> PathBuf {
        self.t.path(format!("data/apps/{}/{rel}", self.name))
    }

    /// The bare repo pushes go to.
    pub fn repo(&self) -> PathBuf {
        self.t.path(format!("repos/{}.git", self.name))
    }

    /// `git rev-parse <rev>` in the bare repo, or `None` when it does not resolve.
    pub fn rev(&self, rev: &str) -> Option<String> {
        let out = Command::new("git")
            .args(["rev-parse", "--verify", "--quiet", rev])
            .current_dir(self.repo())
            .output()
            .unwrap();
        out.status.success().then(|| String::from_utf8(out.stdout).unwrap().trim().to_string())
    }

    /// The release history, parsed from `berth releases <app> --format json`.
    pub fn releases(&self) -> Vec<serde_json::Value> {
        serde_json::from_str(&self.berth("releases", &["--format", "json"]).success().stdout).unwrap()
    }
}

impl Drop for App<'_> {
    fn drop(&mut self) {
        let name = &self.name;
        if self.t.path(format!("apps/{name}")).exists() {
            let _ = self.t.args(["apps:destroy", name, "--force", "--purge-storage"]).run();
        }
        // Whatever an interrupted deploy left behind, and the release images.
        let label = format!("label=berth.app={name}");
        let quiet = |args: &[&str]| Command::new("docker").args(args).output().ok();
        let list = |args: &[&str]| {
            quiet(args)
                .map(|o| String::from_utf8_lossy(&o.stdout).split_whitespace().map(String::from).collect())
        };
        let containers: Vec<String> = list(&["ps", "-aq", "--filter", &label]).unwrap_or_default();
        for id in containers {
            quiet(&["rm", "-f", &id]);
        }
        let volumes: Vec<String> = list(&["volume", "ls", "-q", "--filter", &label]).unwrap_or_default();
        for volume in volumes {
            quiet(&["volume", "rm", "-f", &volume]);
        }
        let images: Vec<String> =
            list(&["images", &format!("berth/{name}"), "--format", "{{.Repository}}:{{.Tag}}"])
                .unwrap_or_default();
        for image in images {
            quiet(&["rmi", "-f", &image]);
        }
    }
}

/// A work tree with its own git repository, pushed to apps with the real `git push`.
pub struct Repo {
    dir: TempDir,
}

impl Repo {
    /// Copies `templates/<name>` into a temp dir, `git init -b main`, and commits it.
    pub fn from_template(name: &str) -> Repo {
        let repo = Repo { dir: tempfile::Builder::new().prefix("berth-it-work-").tempdir().unwrap() };
        copy_tree(&Path::new(env!("CARGO_MANIFEST_DIR")).join("templates").join(name), repo.dir.path());
        repo.git(&["init", "-q", "-b", "main"]);
        repo.commit(&format!("sample app {name}"));
        repo
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Writes a file (making its directory); commit it with [`Repo::commit`].
    pub fn write(&self, rel: &str, text: &str) -> &Repo {
        let path = self.path(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
        self
    }

    /// The text of a file of the work tree.
    pub fn read(&self, rel: &str) -> String {
        fs::read_to_string(self.path(rel)).unwrap()
    }

    /// Commits everything (an empty commit when nothing changed).
    pub fn commit(&self, message: &str) -> &Repo {
        self.git(&["add", "-A"]);
        self.git(&["commit", "-q", "--allow-empty", "-m", message]);
        self
    }

    /// `git <args>` in the work tree; must succeed; returns stdout.
    pub fn git(&self, args: &[&str]) -> String {
        let out = git(self.dir.path()).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "git {} failed\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// The commit id of `HEAD`.
    pub fn head(&self) -> String {
        self.git(&["rev-parse", "HEAD"]).trim().to_string()
    }

    /// `git push <app repo> main`.
    pub fn push(&self, app: &App) -> PushOutput {
        self.push_refspec(app, "main", &[])
    }

    /// `git push <app repo> <refspec>`, with extra environment for the hooks.
    pub fn push_refspec(&self, app: &App, refspec: &str, env: &[(&str, &str)]) -> PushOutput {
        self.push_with(app, &[], refspec, env)
    }

    /// `git push -o <option>... <app repo> main`.
    pub fn push_options(&self, app: &App, options: &[&str]) -> PushOutput {
        let args: Vec<&str> = options.iter().flat_map(|o| ["-o", o]).collect();
        self.push_with(app, &args, "main", &[])
    }

    fn push_with(&self, app: &App, args: &[&str], refspec: &str, env: &[(&str, &str)]) -> PushOutput {
        let mut command = git(self.dir.path());
        command
            .args(["push", "--porcelain"])
            .args(args)
            .arg(app.repo())
            .arg(refspec)
            // git hands its environment to the hooks: keep the checks short.
            .env("BERTH_CHECK_SECONDS", "1")
            .env("BERTH_HEALTH_TIMEOUT", "10")
            .env("BERTH_STOP_TIMEOUT", "5");
        for (key, value) in env {
            command.env(key, value);
        }
        let out = command.output().unwrap();
        PushOutput {
            status: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

/// git, isolated from the user's and the system's configuration.
fn git(dir: &Path) -> Command {
    let mut command = Command::new("git");
    command
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "berth tests")
        .env("GIT_AUTHOR_EMAIL", "tests@berth.invalid")
        .env("GIT_COMMITTER_NAME", "berth tests")
        .env("GIT_COMMITTER_EMAIL", "tests@berth.invalid")
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE");
    command
}

fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            // fs::copy keeps the mode, so scripts stay executable.
            fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// What `git push` did; the hooks' output is in `stderr`, as `remote: ` lines.
pub struct PushOutput {
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

impl PushOutput {
    pub fn success(self) -> PushOutput {
        assert_eq!(self.status, 0, "expected the push to succeed\n{self}");
        self
    }

    /// A push the pre-receive hook declined.
    pub fn rejected(self) -> PushOutput {
        assert_ne!(self.status, 0, "expected the push to be rejected\n{self}");
        assert!(self.stdout.contains("[remote rejected]"), "expected a remote rejection\n{self}");
        self
    }

    /// The hooks' lines, without git's `remote: ` prefix and its trailing padding.
    pub fn remote(&self) -> Vec<String> {
        self.stderr
            .lines()
            .filter_map(|l| l.strip_prefix("remote: "))
            .map(|l| l.trim_end().to_string())
            .collect()
    }

    /// Whether one of the hooks' lines is exactly `line`.
    pub fn has_line(&self, line: &str) -> bool {
        self.remote().iter().any(|l| l == line)
    }

    /// The port of `=====> Application deployed: http://127.0.0.1:<port>`.
    pub fn deployed_port(&self) -> u16 {
        let prefix = "=====> Application deployed: http://127.0.0.1:";
        let ports: Vec<u16> =
            self.remote().iter().filter_map(|l| l.strip_prefix(prefix)).map(|p| p.parse().unwrap()).collect();
        assert_eq!(ports.len(), 1, "expected one deployed URL\n{self}");
        ports[0]
    }
}

impl fmt::Display for PushOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "git push exit: {}\n--- stdout\n{}--- stderr\n{}", self.status, self.stdout, self.stderr)
    }
}

/// An HTTP answer.
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Response {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// `GET <url><path>`, where `url` is `http://127.0.0.1:<port>`.
pub fn get(url: &str, path: &str) -> Response {
    request("GET", url, "localhost", path, None)
}

/// `GET <url><path>` for the host name `host` (as a proxy routes it).
pub fn get_host(url: &str, host: &str, path: &str) -> Response {
    request("GET", url, host, path, None)
}

/// `POST <url><path>` with a body.
pub fn post(url: &str, path: &str, body: &[u8]) -> Response {
    request("POST", url, "localhost", path, Some(body))
}

/// One HTTP/1.0 request (the server closes the connection after the answer).
fn request(method: &str, url: &str, host: &str, path: &str, body: Option<&[u8]>) -> Response {
    let address = url.strip_prefix("http://").unwrap_or(url).trim_end_matches('/');
    let mut stream = TcpStream::connect(address).unwrap_or_else(|e| panic!("connect to {url}: {e}"));
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut head = format!("{method} {path} HTTP/1.0\r\nHost: {host}\r\n");
    if let Some(body) = body {
        head.push_str(&format!(
            "Content-Length: {}\r\nContent-Type: application/octet-stream\r\n",
            body.len()
        ));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body.unwrap_or_default()).unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).unwrap_or_else(|e| panic!("{method} {url}{path}: {e}"));
    let split = answer.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or_else(|| {
        panic!("{method} {url}{path}: not an HTTP answer: {:?}", String::from_utf8_lossy(&answer))
    });
    let status_line =
        String::from_utf8_lossy(&answer[..split]).lines().next().unwrap_or_default().to_string();
    let status = status_line.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        panic!("{method} {url}{path}: bad status line {status_line:?}");
    });
    Response { status, body: answer[split + 4..].to_vec() }
}
