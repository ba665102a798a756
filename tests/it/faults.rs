//! Deploys cut short at every step (`BERTH_FAULT=<point>` aborts the hook there, as `kill -9`
//! would; `<point>:pause` parks it until the test really kills it), an engine that does not
//! answer, and a full disk under `BERTH_ROOT`: the push is rejected or the command refused, and
//! the next push or `berth ps:restart` converges on one consistent release, with the app's data
//! intact and nothing left behind.

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::concurrency::PUSH_ENV;
use crate::engine::inspect;
use crate::push::{App, PushOutput, Repo, get, post};
use crate::survival::{digest, lcg_bytes};
use crate::test::Test;

/// Every fault point of the deploy pipeline, in pipeline order.
const POINTS: [&str; 7] = [
    "after-build",
    "after-storage",
    "after-build-command",
    "after-start",
    "before-retire",
    "after-retire",
    "after-release-write",
];

/// How a test brings the app back after the fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Converge {
    /// The next good push.
    Push,
    /// `berth ps:restart`.
    Restart,
}

/// An app with a good release serving and a file uploaded through it.
struct Served<'t> {
    app: App<'t>,
    repo: Repo,
    first_commit: String,
    payload: Vec<u8>,
}

const UPLOAD: &str = "precious.bin";

/// Deploys `templates/web` (with a build command when `build_command`), uploads a file.
fn serve<'t>(t: &'t Test, tag: &str, build_command: bool) -> Served<'t> {
    let app = App::create(t, tag);
    let repo = Repo::from_template("web");
    if build_command {
        let toml = repo.read("app.toml");
        repo.write("app.toml", &format!("{toml}\n[build]\ncommand = \"echo built >/tmp/built\"\n"))
            .commit("a build command");
    }
    repo.push_refspec(&app, "main", &PUSH_ENV).success();
    let payload = lcg_bytes(tag.len() as u64, 64 * 1024 + 7);
    let stored = post(&app.url(), &format!("/cgi-bin/upload?name={UPLOAD}"), &payload);
    assert_eq!(stored.status, 200, "{}", stored.text());
    let first_commit = repo.head();
    Served { app, repo, first_commit, payload }
}

impl Served<'_> {
    fn state_file(&self) -> PathBuf {
        self.app.t.path(format!("apps/{}/state.toml", self.app.name))
    }

    fn releases_file(&self) -> PathBuf {
        self.app.t.path(format!("apps/{}/releases.toml", self.app.name))
    }

    /// Commits a visible change, to be pushed with a fault.
    fn change(&self, text: &str) {
        self.repo.write("www/index.html", text).commit(text);
    }

    /// What must hold right after a deploy died: the push was rejected, the branch and the
    /// state did not move, every state file parses, the data is on the host.
    fn assert_untouched(&self, out: &PushOutput, state_before: &[u8]) {
        assert_ne!(out.status, 0, "the push is rejected\n{out}");
        assert!(out.stdout.contains("[remote rejected]"), "{out}");
        assert_eq!(
            self.app.rev("refs/heads/main"),
            Some(self.first_commit.clone()),
            "the branch did not move"
        );
        assert_eq!(fs::read(self.state_file()).unwrap(), state_before, "state.toml is written last");
        parse_toml(&self.releases_file());
        assert_eq!(
            digest(&fs::read(self.app.dir(&format!("uploads/{UPLOAD}"))).unwrap()),
            digest(&self.payload)
        );
    }

    /// Brings the app back the given way; returns what it printed.
    fn converge(&self, how: Converge, page: &str) -> String {
        match how {
            Converge::Push => {
                self.change(page);
                self.repo.push_refspec(&self.app, "main", &PUSH_ENV).success().to_string()
            }
            Converge::Restart => self.app.berth("ps:restart", &[]).success().to_string(),
        }
    }

    /// One consistent release serves: the state names a deployed release, exactly one container
    /// (`<app>.web.1`, of that release) exists and answers, and the upload is intact.
    fn assert_converged(&self, how: Converge, page: &str, log: &str) {
        let app = &self.app;
        let state = parse_toml(&self.state_file());
        let releases = parse_toml(&self.releases_file());
        let current =
            state["current_release"].as_integer().unwrap_or_else(|| panic!("no current release\n{log}"));
        let release = releases["releases"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["number"].as_integer() == Some(current))
            .unwrap_or_else(|| panic!("current release {current} is not in releases.toml\n{log}"));
        assert_eq!(release["outcome"].as_str(), Some("deployed"), "{log}");
        let web = app.container("web");
        let names: Vec<String> = app.containers().into_iter().map(|(n, _)| n).collect();
        assert_eq!(
            names,
            std::slice::from_ref(&web),
            "one container, no .retiring, no build or chown helper\n{log}"
        );
        assert_eq!(inspect(&web, "{{.State.Running}}"), "true");
        assert_eq!(inspect(&web, "{{index .Config.Labels \"berth.release\"}}"), current.to_string(), "{log}");
        assert_eq!(inspect(&web, "{{.Config.Image}}"), release["image"].as_str().unwrap(), "{log}");
        let url = app.url();
        assert_eq!(get(&url, "/health").status, 200, "{log}");
        let commit = release["commit"].as_str().unwrap();
        match how {
            Converge::Push => {
                assert_eq!(commit, self.repo.head(), "the new push serves\n{log}");
                assert_eq!(app.rev("refs/heads/main").as_deref(), Some(commit), "{log}");
                assert_eq!(get(&url, "/").text(), page);
            }
            Converge::Restart => {
                assert_eq!(current, 1, "ps:restart serves the recorded release\n{log}");
                assert_eq!(commit, self.first_commit);
                assert_eq!(app.rev("refs/heads/main"), Some(self.first_commit.clone()));
            }
        }
        let fetched = get(&url, &format!("/cgi-bin/file?name={UPLOAD}"));
        assert_eq!(fetched.status, 200, "{log}");
        assert_eq!(digest(&fetched.body), digest(&self.payload), "the upload is intact");
        assert_eq!(digest(&fs::read(app.dir(&format!("uploads/{UPLOAD}"))).unwrap()), digest(&self.payload));
    }
}

/// A TOML file that must parse.
fn parse_toml(path: &Path) -> toml::Table {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    text.parse().unwrap_or_else(|e| panic!("{} is torn: {e}\n{text}", path.display()))
}

/// The app's container names, as the fault left them.
fn left_behind(app: &App) -> Vec<String> {
    app.containers()
        .into_iter()
        .map(|(n, _)| n.trim_start_matches(&format!("{}.", app.name)).to_string())
        .collect()
}

/// Aborts a deploy at `point`, then converges `how`.
fn abort_at(point: &str, how: Converge) {
    let t = Test::new();
    let served = serve(&t, "fault", point == "after-build-command");
    let state_before = fs::read(served.state_file()).unwrap();
    served.change(&format!("faulted at {point}\n"));
    let out =
        served.repo.push_refspec(&served.app, "main", &[PUSH_ENV[0], PUSH_ENV[1], ("BERTH_FAULT", point)]);
    assert!(
        out.has_line(&format!(" !     BERTH_FAULT: stopping at {point} (abort)")),
        "the fault fired\n{out}"
    );
    served.assert_untouched(&out, &state_before);
    let left = left_behind(&served.app);
    let page = format!("converged after {point}\n");
    let log = served.converge(how, &page);
    served.assert_converged(how, &page, &format!("{out}\n{log}"));
    println!("fault {point}: aborted, left {left:?}; converged by {how:?}");
}

#[test]
fn abort_after_build_then_push_converges() {
    abort_at(POINTS[0], Converge::Push);
}

#[test]
fn abort_after_storage_then_restart_converges() {
    abort_at(POINTS[1], Converge::Restart);
}

#[test]
fn abort_after_build_command_then_push_converges() {
    abort_at(POINTS[2], Converge::Push);
}

#[test]
fn abort_after_start_then_restart_converges() {
    abort_at(POINTS[3], Converge::Restart);
}

#[test]
fn abort_before_retire_then_push_converges() {
    abort_at(POINTS[4], Converge::Push);
}

#[test]
fn abort_after_retire_then_restart_converges() {
    abort_at(POINTS[5], Converge::Restart);
}

#[test]
fn abort_after_release_write_then_push_converges() {
    abort_at(POINTS[6], Converge::Push);
}

/// The pid of the `berth-pre-receive` running for this test's `BERTH_ROOT`.
fn hook_pid(root: &Path) -> Option<u32> {
    let out = Command::new("pgrep").args(["-f", "berth-pre-receive"]).output().unwrap();
    let wanted = format!("BERTH_ROOT={}", root.display());
    let pids: Vec<u32> = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .filter(|pid| {
            fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|b| *b == 0).any(|var| var == wanted.as_bytes()))
        })
        .collect();
    assert!(pids.len() <= 1, "more than one hook runs for {}: {pids:?}", root.display());
    pids.first().copied()
}

/// Whether someone holds the app's lock.
fn lock_held(t: &Test, app: &App) -> bool {
    fs::File::open(t.path(format!("locks/app-{}.lock", app.name))).unwrap().try_lock().is_err()
}

/// A `git push` running in the background, its output read as it comes.
struct Background {
    child: std::process::Child,
    lines: mpsc::Receiver<String>,
    reader: std::thread::JoinHandle<String>,
}

impl Background {
    /// Starts `git push <app> main` with extra environment for the hook.
    fn push(served: &Served, env: &[(&str, &str)]) -> Background {
        Background::push_to(&served.repo, &served.app, env)
    }

    /// Starts `git push <app> main` from `repo`, with extra environment for the hook.
    fn push_to(repo: &Repo, app: &App, env: &[(&str, &str)]) -> Background {
        let mut child = Command::new("git")
            .current_dir(repo.path(""))
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env_remove("GIT_DIR")
            .env_remove("GIT_WORK_TREE")
            .envs(PUSH_ENV)
            .envs(env.iter().copied())
            .args(["push", "--porcelain"])
            .arg(app.repo())
            .arg("main")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (sender, lines) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            let mut all = String::new();
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                all.push_str(&line);
                all.push('\n');
                let _ = sender.send(line.strip_prefix("remote: ").unwrap_or(&line).trim_end().to_string());
            }
            all
        });
        Background { child, lines, reader }
    }

    /// Waits for a line of the hook's output (without `remote: `) that `wanted` accepts.
    fn wait_for(&mut self, what: &str, mut wanted: impl FnMut(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            match self.lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) if wanted(&line) => return line,
                Ok(_) => {}
                Err(e) => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    panic!("the hook never got to {what} ({e})");
                }
            }
        }
    }

    /// Waits for the push to end on its own; returns its output.
    fn finish(mut self) -> PushOutput {
        let status = self.child.wait().unwrap();
        let mut stdout = String::new();
        std::io::Read::read_to_string(&mut self.child.stdout.take().unwrap(), &mut stdout).unwrap();
        PushOutput { status: status.code().unwrap_or(-1), stdout, stderr: self.reader.join().unwrap() }
    }

    /// `kill -9`s the hook (found by its `BERTH_ROOT`), returns the push's output and the pid.
    fn kill_hook(mut self, root: &Path) -> (PushOutput, u32) {
        let pid = hook_pid(root).expect("the hook's process");
        let killed = Command::new("kill").args(["-KILL", &pid.to_string()]).status().unwrap();
        assert!(killed.success());
        let status = self.child.wait().unwrap();
        let mut stdout = String::new();
        std::io::Read::read_to_string(&mut self.child.stdout.take().unwrap(), &mut stdout).unwrap();
        let out =
            PushOutput { status: status.code().unwrap_or(-1), stdout, stderr: self.reader.join().unwrap() };
        assert_eq!(hook_pid(root), None, "the hook is gone\n{out}");
        (out, pid)
    }
}

/// Checks the killed push left the state untouched and the lock free, then converges.
fn after_kill(
    served: &Served,
    out: &PushOutput,
    state_before: &[u8],
    how: Converge,
    what: &str,
) -> Vec<String> {
    assert!(!lock_held(served.app.t, &served.app), "the lock died with the hook");
    served.assert_untouched(out, state_before);
    let left = left_behind(&served.app);
    let page = format!("converged after kill -9 {what}\n");
    let log = served.converge(how, &page);
    served.assert_converged(how, &page, &format!("{out}\n{log}"));
    left
}

/// Parks a deploy at `point`, checks the torn state is real, `kill -9`s the hook, converges.
fn kill_at(point: &str, how: Converge) {
    let t = Test::new();
    let served = serve(&t, "kill", false);
    let app = &served.app;
    let state_before = fs::read(served.state_file()).unwrap();
    served.change(&format!("killed at {point}\n"));
    let mut push = Background::push(&served, &[("BERTH_FAULT", &format!("{point}:pause"))]);
    let parked = format!(" !     BERTH_FAULT: stopping at {point} (pause)");
    push.wait_for(point, |line| line == parked);

    // Parked mid-swap: both containers run, the state is the old one, the lock is held.
    let web = app.container("web");
    let retiring = format!("{web}.retiring");
    let names: Vec<String> = app.containers().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, [web.clone(), retiring.clone()], "parked at {point}");
    for name in [&web, &retiring] {
        assert_eq!(inspect(name, "{{.State.Running}}"), "true", "{name}");
    }
    assert_eq!(fs::read(served.state_file()).unwrap(), state_before);
    assert!(lock_held(&t, app), "the parked hook holds the app's lock");

    let (out, pid) = push.kill_hook(t.root());
    let left = after_kill(&served, &out, &state_before, how, &format!("at {point}"));
    println!("fault {point}: kill -9 of pid {pid}, left {left:?}; converged by {how:?}");
}

#[test]
fn kill_9_after_start_then_push_converges() {
    kill_at("after-start", Converge::Push);
}

#[test]
fn kill_9_before_retire_then_restart_converges() {
    kill_at("before-retire", Converge::Restart);
}

#[test]
fn kill_9_during_the_image_build_then_push_converges() {
    let t = Test::new();
    let served = serve(&t, "killbuild", false);
    let state_before = fs::read(served.state_file()).unwrap();
    let dockerfile = served.repo.read("Dockerfile");
    let slow = format!("RUN echo {} && sleep 60", crate::engine::unique_name("nocache"));
    served.repo.write("Dockerfile", &format!("{dockerfile}{slow}\n"));
    served.change("killed while building\n");
    let mut push = Background::push(&served, &[]);
    push.wait_for("the slow build step", |line| line.ends_with(&slow));
    let running =
        push.wait_for("the build step's container", |line| line.trim_start().starts_with("---> Running in "));
    let builder = running.trim_start().trim_start_matches("---> Running in ").to_string();
    let (out, pid) = push.kill_hook(t.root());

    served.repo.write("Dockerfile", &dockerfile);
    let left = after_kill(&served, &out, &state_before, Converge::Push, "while building");
    // The engine cancels the build of a client that went away and removes its container.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !crate::engine::docker(&["ps", "-aq", "--filter", &format!("id={builder}")]).trim().is_empty() {
        assert!(Instant::now() < deadline, "the build container {builder} outlived the killed build");
        std::thread::sleep(Duration::from_millis(250));
    }
    println!("fault build: kill -9 of pid {pid} mid-build, left {left:?}; converged by Push");
}

#[test]
fn kill_9_during_the_build_command_then_restart_converges() {
    let t = Test::new();
    let served = serve(&t, "killcmd", false);
    let toml = served.repo.read("app.toml");
    served
        .repo
        .write("app.toml", &format!("{toml}\n[build]\ncommand = \"sleep 60\"\n"))
        .commit("a build command that takes a minute");
    let state_before = fs::read(served.state_file()).unwrap();
    served.change("killed in the build command\n");
    let mut push = Background::push(&served, &[]);
    push.wait_for("the build command", |line| line == "-----> Running build command: sleep 60");
    let helper = format!("{}.build.2", served.app.name);
    let deadline = Instant::now() + Duration::from_secs(30);
    while crate::engine::docker(&["ps", "-q", "--filter", &format!("name=^{helper}$")]).trim().is_empty() {
        assert!(Instant::now() < deadline, "{helper} never ran");
        std::thread::sleep(Duration::from_millis(100));
    }
    let (out, pid) = push.kill_hook(t.root());
    assert!(left_behind(&served.app).contains(&"build.2".to_string()), "the killed hook left its helper");
    let left = after_kill(&served, &out, &state_before, Converge::Restart, "in the build command");
    println!("fault build-command: kill -9 of pid {pid}, left {left:?}; converged by Restart");
}

#[test]
fn an_unreachable_engine_rejects_the_push_and_the_old_release_serves_on() {
    let t = Test::new();
    let served = serve(&t, "noengine", false);
    let app = &served.app;
    let state_before = fs::read(served.state_file()).unwrap();
    let releases_before = fs::read(served.releases_file()).unwrap();
    let containers = app.containers();
    let url = app.url();

    served.change("never deployed\n");
    let env = [PUSH_ENV[0], PUSH_ENV[1], ("DOCKER_HOST", "unix:///nonexistent.sock")];
    let out = served.repo.push_refspec(app, "main", &env).rejected();
    assert!(
        out.remote().iter().any(|l| l.starts_with(" !     the Docker engine is not reachable (")
            && l.ends_with("start it (dockerd, or systemctl start docker) and try again")),
        "{out}"
    );
    assert!(out.has_line(" !     The push is rejected; the previous release keeps serving"), "{out}");
    served.assert_untouched(&out, &state_before);
    // The engine is asked before anything else is written: not even a failed release is recorded.
    assert_eq!(fs::read(served.releases_file()).unwrap(), releases_before);
    assert_eq!(app.containers(), containers, "the same container serves on");
    assert_eq!(app.url(), url);
    assert_eq!(get(&url, "/health").status, 200);
    assert_eq!(digest(&get(&url, &format!("/cgi-bin/file?name={UPLOAD}")).body), digest(&served.payload));

    // Once the engine answers, the same commit deploys.
    let out = served.repo.push_refspec(app, "main", &PUSH_ENV).success();
    assert_eq!(get(&app.url(), "/").text(), "never deployed\n", "{out}");
    assert_eq!(app.ps("ps-current-release"), "2");
}

/// A second dockerd of the test's own: its socket, data root, exec root and pid file live in a
/// temp dir and its containers sit on a bridge made for it, so a test can stop and start an
/// engine without touching the one the other tests share. Dropping it stops the daemon (with
/// `SIGTERM`, then `SIGKILL` of what is left), unmounts what it left under its dir, removes
/// the bridge and the dir.
struct PrivateEngine {
    dir: tempfile::TempDir,
    bridge: String,
    daemon: std::cell::RefCell<Option<std::process::Child>>,
}

impl PrivateEngine {
    /// Makes the bridge and starts the daemon with the base image imported; `Err` with the
    /// reason when the bridge cannot be made (not root).
    fn start() -> Result<PrivateEngine, String> {
        crate::engine::engine();
        let dir = tempfile::Builder::new().prefix("berth-it-dockerd-").tempdir().unwrap();
        let pid = std::process::id();
        let engine = PrivateEngine {
            dir,
            bridge: format!("berth{}", pid % 10_000_000),
            daemon: std::cell::RefCell::new(None),
        };
        // A bridge of this name is a leftover of a killed run that had this pid.
        let _ = Command::new("ip").args(["link", "del", &engine.bridge]).output();
        let address = format!("10.213.{}.1/24", pid % 250 + 1);
        for args in [
            vec!["link", "add", &engine.bridge, "type", "bridge"],
            vec!["addr", "add", &address, "dev", &engine.bridge],
            vec!["link", "set", &engine.bridge, "up"],
        ] {
            let out = Command::new("ip").args(&args).output().map_err(|e| format!("cannot run ip: {e}"))?;
            if !out.status.success() {
                return Err(format!(
                    "ip {}: {}",
                    args.join(" "),
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
        }
        engine.launch();
        let ensure = Command::new("bash")
            .arg("scripts/ensure-engine.sh")
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("DOCKER_HOST", engine.host())
            .env("BERTH_DOCKERD_LOG", engine.path("ensure-engine-dockerd.log"))
            .output()
            .unwrap();
        assert!(
            ensure.status.success(),
            "importing the base image into the private engine failed\n{}{}",
            String::from_utf8_lossy(&ensure.stdout),
            String::from_utf8_lossy(&ensure.stderr)
        );
        Ok(engine)
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// The `DOCKER_HOST` of the private engine.
    fn host(&self) -> String {
        format!("unix://{}", self.path("docker.sock").display())
    }

    /// The same flags every time: the second start finds the first one's containers.
    fn args(&self) -> Vec<String> {
        let at = |rel: &str| self.path(rel).display().to_string();
        vec![
            "--host".into(),
            self.host(),
            "--data-root".into(),
            at("data"),
            "--exec-root".into(),
            at("exec"),
            "--pidfile".into(),
            at("docker.pid"),
            "--bridge".into(),
            self.bridge.clone(),
            "--iptables=false".into(),
            "--ip-masq=false".into(),
            // The driver an engine inside a container falls back to: it copies image layers
            // as they are, so the base image's own modes decide what a non-root user reaches.
            "--storage-driver".into(),
            "vfs".into(),
        ]
    }

    /// Whether the daemon answers on its socket.
    fn answers(&self) -> bool {
        Command::new("timeout")
            .args(["5", "docker", "version", "--format", "{{.Server.Version}}"])
            .env("DOCKER_HOST", self.host())
            .output()
            .is_ok_and(|o| o.status.success())
    }

    fn log_tail(&self) -> String {
        let log = fs::read_to_string(self.path("dockerd.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// Starts dockerd and waits until it answers.
    fn launch(&self) {
        let log = fs::OpenOptions::new().create(true).append(true).open(self.path("dockerd.log")).unwrap();
        let child = Command::new("dockerd")
            .args(self.args())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let pid = child.id();
        *self.daemon.borrow_mut() = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self.answers() {
            if let Ok(Some(status)) = self.daemon.borrow_mut().as_mut().unwrap().try_wait() {
                panic!("the private dockerd exited ({status})\n{}", self.log_tail());
            }
            assert!(Instant::now() < deadline, "the private dockerd never answered\n{}", self.log_tail());
            std::thread::sleep(Duration::from_millis(100));
        }
        let recorded = fs::read_to_string(self.path("docker.pid")).unwrap();
        assert_eq!(recorded.trim(), pid.to_string(), "the pid file names the daemon this test started");
    }

    /// Sends the daemon `SIGTERM` through its pid file and waits until its socket stops
    /// answering (the daemon itself may take longer to exit: see [`PrivateEngine::wait_exited`]).
    fn stop(&self) {
        let pid = fs::read_to_string(self.path("docker.pid")).unwrap();
        assert!(Command::new("kill").args(["-TERM", pid.trim()]).status().unwrap().success());
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.answers() {
            assert!(Instant::now() < deadline, "the private dockerd still answers after SIGTERM");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits for the stopped daemon to exit.
    fn wait_exited(&self) {
        let mut daemon = self.daemon.borrow_mut();
        let child = daemon.as_mut().expect("the private dockerd runs");
        let deadline = Instant::now() + Duration::from_secs(40);
        while child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "the private dockerd did not exit\n{}", self.log_tail());
            std::thread::sleep(Duration::from_millis(100));
        }
        *daemon = None;
    }

    /// Runs a docker command against the private engine; must succeed; returns its stdout.
    fn docker(&self, args: &[&str]) -> String {
        let out = Command::new("docker").args(args).env("DOCKER_HOST", self.host()).output().unwrap();
        assert!(
            out.status.success(),
            "DOCKER_HOST={} docker {} failed\n{}{}",
            self.host(),
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn inspect(&self, object: &str, template: &str) -> String {
        self.docker(&["inspect", "--format", template, object]).trim().to_string()
    }

    /// The names of the app's containers on the private engine, sorted.
    fn containers(&self, app: &App) -> Vec<String> {
        let label = format!("label=berth.app={}", app.name);
        let mut names: Vec<String> = self
            .docker(&["ps", "-a", "--filter", &label, "--format", "{{.Names}}"])
            .lines()
            .map(str::to_string)
            .collect();
        names.sort();
        names
    }

    /// `berth <args>` with the test's root and the private engine.
    fn berth(&self, t: &Test, args: &[&str]) -> crate::test::Output {
        let out = Command::new(crate::test::BERTH)
            .args(args)
            .env("BERTH_ROOT", t.root())
            .env("DOCKER_HOST", self.host())
            .env_remove("RUST_BACKTRACE")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        crate::test::Output {
            status: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

impl Drop for PrivateEngine {
    fn drop(&mut self) {
        let dir = self.dir.path().display().to_string();
        if let Some(mut child) = self.daemon.borrow_mut().take() {
            if child.try_wait().is_ok_and(|s| s.is_none()) {
                let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
                let deadline = Instant::now() + Duration::from_secs(40);
                while child.try_wait().is_ok_and(|s| s.is_none()) && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(100));
                }
                let _ = child.kill();
            }
            let _ = child.wait();
        }
        // What a killed daemon leaves running (its containerd, the shims) names the dir.
        for entry in fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|p| p.parse::<u32>().ok()) else { continue };
            let cmdline = fs::read(entry.path().join("cmdline")).unwrap_or_default();
            if pid != std::process::id() && String::from_utf8_lossy(&cmdline).contains(&dir) {
                let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
            }
        }
        // Mounts the daemon left under the dir, deepest first.
        let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mut mounts: Vec<&str> = mountinfo
            .lines()
            .filter_map(|l| l.split_whitespace().nth(4))
            .filter(|m| m.starts_with(&dir))
            .collect();
        mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for mount in mounts {
            let _ = Command::new("umount").args(["-l", mount]).status();
        }
        let _ = Command::new("ip").args(["link", "del", &self.bridge]).output();
    }
}

/// Destroys an app on the private engine (while it answers) before the `App` drops: the `App`
/// cleans up on the shared engine, where this app has nothing.
struct DestroyOn<'a> {
    engine: &'a PrivateEngine,
    t: &'a Test,
    app: String,
}

impl Drop for DestroyOn<'_> {
    fn drop(&mut self) {
        if self.t.path(format!("apps/{}", self.app)).exists() && self.engine.answers() {
            let _ = self.engine.berth(self.t, &["apps:destroy", &self.app, "--force", "--purge-storage"]);
        }
    }
}

/// The host port `docker port` gives for the web container's port 5000.
fn published_port(engine: &PrivateEngine, container: &str) -> u16 {
    let out = engine.docker(&["port", container, "5000/tcp"]);
    let first = out.lines().next().unwrap_or_else(|| panic!("{container} publishes no port"));
    first.rsplit(':').next().unwrap().parse().unwrap_or_else(|e| panic!("{first:?}: {e}"))
}

/// Waits until `GET /health` on a loopback port answers 200 (the proxy may accept before the
/// server in the container listens).
fn wait_health(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let answer = std::net::TcpStream::connect(("127.0.0.1", port)).and_then(|mut stream| {
            stream.set_read_timeout(Some(Duration::from_secs(5)))?;
            stream.write_all(b"GET /health HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
            let mut answer = Vec::new();
            std::io::Read::read_to_end(&mut stream, &mut answer)?;
            Ok(answer)
        });
        if answer.as_ref().is_ok_and(|a| a.starts_with(b"HTTP/1.0 200") || a.starts_with(b"HTTP/1.1 200")) {
            return;
        }
        assert!(Instant::now() < deadline, "port {port} never answered /health with 200: {answer:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn an_engine_stopped_mid_deploy_rejects_the_push_and_the_old_release_returns() {
    let started = Instant::now();
    let t = Test::new();
    let engine = match PrivateEngine::start() {
        Ok(engine) => engine,
        Err(reason) => {
            println!(
                "SKIPPED an_engine_stopped_mid_deploy_rejects_the_push_and_the_old_release_returns: \
                 cannot make a bridge for a private dockerd ({reason})"
            );
            return;
        }
    };
    let app = App::create(&t, "enginestop");
    let _destroy = DestroyOn { engine: &engine, t: &t, app: app.name.clone() };
    let host = engine.host();
    let env = [PUSH_ENV[0], PUSH_ENV[1], ("DOCKER_HOST", host.as_str())];
    let state_file = t.path(format!("apps/{}/state.toml", app.name));
    let releases_file = t.path(format!("apps/{}/releases.toml", app.name));
    let uploaded = app.dir(&format!("uploads/{UPLOAD}"));

    // 1. A good release serves, with a file uploaded through it.
    let repo = Repo::from_template("web");
    let out = repo.push_refspec(&app, "main", &env).success();
    let first_port = out.deployed_port();
    let first_commit = repo.head();
    let url = format!("http://127.0.0.1:{first_port}");
    let payload = lcg_bytes(7, 64 * 1024 + 7);
    let stored = post(&url, &format!("/cgi-bin/upload?name={UPLOAD}"), &payload);
    assert_eq!(stored.status, 200, "{}", stored.text());
    let web = app.container("web");
    let web_id = engine.inspect(&web, "{{.Id}}");
    let first_start = engine.inspect(&web, "{{.State.StartedAt}}");
    assert_eq!(engine.inspect(&web, "{{.HostConfig.RestartPolicy.Name}}"), "unless-stopped");
    let state_before = fs::read(&state_file).unwrap();
    let releases_before = fs::read(&releases_file).unwrap();

    // 2. The engine stops while the next release builds.
    let dockerfile = repo.read("Dockerfile");
    repo.write("Dockerfile", &format!("{dockerfile}RUN sleep 8\n"));
    repo.write("www/index.html", "never deployed\n").commit("a slow build");
    let mut push = Background::push_to(&repo, &app, &[("DOCKER_HOST", &host)]);
    push.wait_for("the slow build step", |line| line.ends_with(": RUN sleep 8"));
    push.wait_for("the build step's container", |line| line.trim_start().starts_with("---> Running in "));
    engine.stop();
    let out = push.finish();
    engine.wait_exited();
    assert_ne!(out.status, 0, "the push is rejected\n{out}");
    assert!(out.stdout.contains("[remote rejected]"), "{out}");
    let errors: Vec<String> = out.remote().into_iter().filter(|l| l.starts_with(" !     ")).collect();
    assert_eq!(errors.len(), 2, "one reason, then the verdict\n{out}");
    let reason = errors[0].trim_start_matches(" !     ").to_string();
    assert!(
        reason.starts_with("the Docker engine is not reachable (")
            && reason.ends_with("); start it (dockerd, or systemctl start docker) and try again"),
        "{out}"
    );
    assert_eq!(errors[1], " !     The push is rejected; the previous release keeps serving", "{out}");
    assert_eq!(app.rev("refs/heads/main"), Some(first_commit.clone()), "the branch did not move");
    assert_eq!(fs::read(&state_file).unwrap(), state_before, "state.toml is untouched");
    // releases.toml keeps every byte and gains one record: release 2 failed, for that reason.
    let releases_after = fs::read(&releases_file).unwrap();
    assert!(releases_after.starts_with(&releases_before), "earlier records are kept as they were");
    let before = String::from_utf8(releases_before.clone()).unwrap().parse::<toml::Table>().unwrap();
    let after = parse_toml(&releases_file);
    let (before, after) = (before["releases"].as_array().unwrap(), after["releases"].as_array().unwrap());
    assert_eq!(after.len(), before.len() + 1, "one failed release is recorded");
    assert_eq!(&after[..before.len()], &before[..]);
    let failed = &after[before.len()];
    assert_eq!(failed["number"].as_integer(), Some(2));
    assert_eq!(failed["outcome"].as_str(), Some("failed"));
    assert_eq!(failed["commit"].as_str(), Some(repo.head().as_str()));
    assert_eq!(failed["reason"].as_str(), Some(reason.as_str()));
    assert_eq!(digest(&fs::read(&uploaded).unwrap()), digest(&payload), "the upload is on the host");

    // 3. The engine starts again: the old container comes back by its restart policy.
    engine.launch();
    let deadline = Instant::now() + Duration::from_secs(20);
    while engine.inspect(&web, "{{.State.Running}}") != "true" {
        assert!(Instant::now() < deadline, "{web} did not come back\n{}", engine.log_tail());
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(engine.inspect(&web, "{{.Id}}"), web_id, "the old container itself returns");
    assert_ne!(engine.inspect(&web, "{{.State.StartedAt}}"), first_start, "it stopped with the engine");
    assert_eq!(engine.inspect(&web, "{{index .Config.Labels \"berth.release\"}}"), "1");
    let mounts: Vec<serde_json::Value> =
        serde_json::from_str(&engine.docker(&["inspect", "--format", "{{json .Mounts}}", &web])).unwrap();
    let mounts: Vec<(String, String, String, bool)> = mounts
        .iter()
        .map(|m| {
            let field = |key: &str| m[key].as_str().unwrap_or_default().to_string();
            (field("Type"), field("Source"), field("Destination"), m["RW"].as_bool().unwrap())
        })
        .collect();
    assert_eq!(
        mounts,
        [("bind".to_string(), app.dir("uploads").display().to_string(), "/app/storage".to_string(), true)]
    );
    let returned_port = published_port(&engine, &web);
    wait_health(returned_port);
    let returned = format!("http://127.0.0.1:{returned_port}");
    let fetched = get(&returned, &format!("/cgi-bin/file?name={UPLOAD}"));
    assert_eq!(fetched.status, 200, "{}", fetched.text());
    assert_eq!(digest(&fetched.body), digest(&payload), "the upload is intact");

    // ps:restart converges on one web container of the current release.
    let restart = engine.berth(&t, &["ps:restart", &app.name]).success();
    assert_eq!(engine.containers(&app), std::slice::from_ref(&web), "{restart}");
    assert_ne!(engine.inspect(&web, "{{.Id}}"), web_id, "ps:restart re-creates the container");
    assert_eq!(engine.inspect(&web, "{{.State.Running}}"), "true");
    assert_eq!(engine.inspect(&web, "{{index .Config.Labels \"berth.release\"}}"), "1", "{restart}");
    assert_eq!(fs::read(&state_file).unwrap(), state_before, "the same release is current");
    let report = engine.berth(&t, &["ps:report", &app.name, "--ps-web-url"]).success();
    let url = report.stdout.trim().to_string();
    assert_eq!(url, format!("http://127.0.0.1:{}", published_port(&engine, &web)), "{restart}");
    assert_eq!(get(&url, "/health").status, 200);
    assert_eq!(digest(&get(&url, &format!("/cgi-bin/file?name={UPLOAD}")).body), digest(&payload));

    // A normal push deploys.
    repo.write("Dockerfile", &dockerfile);
    repo.write("www/index.html", "deployed after the engine came back\n").commit("back");
    let out = repo.push_refspec(&app, "main", &env).success();
    let url = format!("http://127.0.0.1:{}", out.deployed_port());
    assert_eq!(get(&url, "/").text(), "deployed after the engine came back\n", "{out}");
    assert_eq!(app.rev("refs/heads/main"), Some(repo.head()));
    assert_eq!(parse_toml(&state_file)["current_release"].as_integer(), Some(3), "{out}");
    assert_eq!(engine.containers(&app), std::slice::from_ref(&web), "{out}");
    assert_eq!(engine.inspect(&web, "{{index .Config.Labels \"berth.release\"}}"), "3");
    assert_eq!(digest(&get(&url, &format!("/cgi-bin/file?name={UPLOAD}")).body), digest(&payload));
    println!(
        "engine stopped mid-build: push rejected ({reason}); the old container came back on port \
         {returned_port} (was {first_port}); ps:restart and a push converged in {:.1}s",
        started.elapsed().as_secs_f64()
    );
}

/// A tmpfs mounted over a directory, unmounted when dropped.
struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` over `path`; `Err` with the reason when not permitted.
    fn mount(path: &Path, size: &str) -> Result<Tmpfs, String> {
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if out.status.success() {
            Ok(Tmpfs { path: path.to_path_buf() })
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let unmounted = Command::new("umount").arg(&self.path).status().is_ok_and(|s| s.success());
        if !unmounted {
            let _ = Command::new("umount").arg("-l").arg(&self.path).status();
        }
    }
}

/// Every `.toml` file under `dir`, parsed (panics on a torn one).
fn parse_all_toml(dir: &Path, parsed: &mut BTreeMap<PathBuf, toml::Table>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            if path.extension().is_none_or(|e| e != "git") {
                parse_all_toml(&path, parsed);
            }
        } else if path.extension().is_some_and(|e| e == "toml") {
            parsed.insert(path.clone(), parse_toml(&path));
        }
    }
}

#[test]
fn a_full_disk_refuses_admin_changes_without_tearing_state() {
    let t = Test::new();
    // The tmpfs must go before the test's root does (locals drop in reverse order).
    let tmpfs = match Tmpfs::mount(t.root(), "2m") {
        Ok(tmpfs) => tmpfs,
        Err(reason) => {
            println!(
                "SKIPPED a_full_disk_refuses_admin_changes_without_tearing_state: cannot mount a tmpfs ({reason})"
            );
            return;
        }
    };
    let app = "fullapp";
    t.app(app);
    let hosts = tempfile::tempdir().unwrap();
    // Fill the disk but for three pages (tmpfs counts whole pages).
    fs::write(t.path("reserve"), vec![0u8; 3 * 4096]).unwrap();
    let mut filler = fs::File::create(t.path("filler")).unwrap();
    let chunk = vec![0xa5u8; 4096];
    while filler.write_all(&chunk).is_ok() {}
    let _ = filler.sync_all();
    drop(filler);
    fs::remove_file(t.path("reserve")).unwrap();

    let command = |i: usize| -> Vec<String> {
        let host = hosts.path().join(format!("h{i}"));
        fs::create_dir_all(&host).unwrap();
        if i.is_multiple_of(2) {
            vec!["storage:mount".into(), app.into(), format!("{}:/mnt/m{i}", host.display())]
        } else {
            let padding = "x".repeat(100);
            vec![
                "docker-options:add".into(),
                app.into(),
                "deploy".into(),
                "-e".into(),
                format!("V{i}={padding}"),
            ]
        }
    };
    let mut last_good = fs::read(t.path(format!("apps/{app}/state.toml"))).unwrap();
    let (mut succeeded, mut refused, mut mounts) = (0, 0, 0);
    let mut first_error = String::new();
    for i in 0..400 {
        if refused == 0 {
            let before = crate::test::snapshot_state(t.root());
            let out = t.args(command(i)).run();
            if out.status == 0 {
                succeeded += 1;
                mounts += usize::from(i.is_multiple_of(2));
                last_good = fs::read(t.path(format!("apps/{app}/state.toml"))).unwrap();
                continue;
            }
            // The first refusal: the state file is the last good one, nothing else changed.
            assert_eq!(out.status, 1, "{out}");
            assert!(out.stderr.starts_with(" !     ") && out.stderr.lines().count() == 1, "{out}");
            assert!(out.stderr.contains("/state.toml: No space left on device"), "{out}");
            assert!(
                crate::test::snapshot_state(t.root()) == before,
                "a refused command changed files\n{out}"
            );
            first_error = out.stderr.trim().replace(&t.root().display().to_string(), "[ROOT]");
            refused += 1;
        } else {
            // More commands on the full disk: each refused, not a byte changed.
            let out = t.args(command(i)).refuse();
            assert!(out.stderr.contains("/state.toml: No space left on device"), "{out}");
            refused += 1;
            if refused == 5 {
                break;
            }
        }
        assert_eq!(fs::read(t.path(format!("apps/{app}/state.toml"))).unwrap(), last_good);
        let mut parsed = BTreeMap::new();
        parse_all_toml(t.root(), &mut parsed);
        let state = &parsed[&t.path(format!("apps/{app}/state.toml"))];
        assert_eq!(state.get("mounts").and_then(|m| m.as_array()).map_or(0, Vec::len), mounts);
    }
    assert!(succeeded > 0 && refused == 5, "{succeeded} command(s) succeeded, {refused} refused");
    let leftovers: Vec<String> = fs::read_dir(t.path(format!("apps/{app}")))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "state.toml")
        .collect();
    assert!(leftovers.is_empty(), "temporary files left behind: {leftovers:?}");

    // With space again, the next change goes through on top of the last good state.
    fs::remove_file(t.path("filler")).unwrap();
    t.ok(command(1000));
    assert_eq!(t.mount_count(app), mounts + 1);
    println!(
        "full disk: {succeeded} change(s) written, then {refused} refused with ENOSPC, no torn file; \
         first refusal: {first_error}"
    );
    drop(tmpfs);
}
