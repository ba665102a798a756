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
        let mut child = Command::new("git")
            .current_dir(served.repo.path(""))
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env_remove("GIT_DIR")
            .env_remove("GIT_WORK_TREE")
            .envs(PUSH_ENV)
            .envs(env.iter().copied())
            .args(["push", "--porcelain"])
            .arg(served.app.repo())
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
