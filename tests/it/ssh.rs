//! A real server: `install.sh` into a scratch prefix and root, two keys added with
//! `berth ssh-keys:add` (one push key, one admin key), and the real `sshd` on a loopback port
//! that lets only the berth user in, reading the `authorized_keys` berth writes. Pushes and
//! commands go through the OpenSSH client, as from a developer's machine.
//!
//! The server is made once per test process (`server()`), in `<tmp>/berth-it-ssh/<pid>/`:
//! `prefix/` and `root/` of the install, `keys/`, `ssh/authorized_keys` (owned by the berth
//! user, like its `~/.ssh`), and `sshd/` (config, host key, pid file, `sshd.log`).
//!
//! sshd's lifetime: a static is never dropped, so sshd is run in the foreground (`-D`) under a
//! small `sh` watchdog whose stdin is a pipe held by the fixture. When the test process ends
//! (even killed), the pipe closes, `read` returns and the watchdog kills sshd. As a second
//! line of defence, making the fixture sweeps `<tmp>/berth-it-ssh/` of earlier processes' dirs
//! (their process gone): it kills their sshd (from its pid file, if that process is still that
//! sshd), destroys apps a killed run left behind and removes the dir. The last run's dir stays
//! until the next run, for its `sshd/sshd.log`.
//!
//! Tests run in threads and share the server, so each uses apps of its own, and the tests that
//! look at the whole root (nothing created by refused commands; nothing changed by re-running
//! `install.sh`) take `GATE` exclusively while the others share it.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::net::TcpStream;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use crate::engine::{engine, inspect, unique_name};
use crate::proxy::free_port;
use crate::push::{Repo, get, post};
use crate::test::snapshot_state;

const SSHD: &str = "/usr/sbin/sshd";
const PUSH_KEY: &str = "alice";
const ADMIN_KEY: &str = "boss";

/// Shared by tests that only add apps of their own; taken exclusively by tests that compare
/// the whole root before and after.
static GATE: RwLock<()> = RwLock::new(());

fn shared() -> RwLockReadGuard<'static, ()> {
    GATE.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn exclusive() -> RwLockWriteGuard<'static, ()> {
    GATE.write().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The installed server, reachable over SSH on `127.0.0.1:<port>`.
struct Server {
    dir: PathBuf,
    prefix: PathBuf,
    root: PathBuf,
    port: u16,
    keys: PathBuf,
    sshd_log: PathBuf,
    /// The watchdog running sshd, and the pipe whose closing (at process exit) stops it.
    _watchdog: Mutex<(Child, ChildStdin)>,
}

/// The server of this test process, made on first use; panics (in every test) if that failed.
fn server() -> &'static Server {
    static SERVER: OnceLock<Result<Server, String>> = OnceLock::new();
    let server = SERVER.get_or_init(|| {
        std::panic::catch_unwind(Server::start).map_err(|panic| {
            panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "setting the SSH server up panicked".into())
        })
    });
    match server {
        Ok(server) => server,
        Err(message) => panic!("the SSH test server could not be set up: {message}"),
    }
}

impl Server {
    fn start() -> Server {
        engine();
        let base = std::env::temp_dir().join("berth-it-ssh");
        make_dir(&base);
        sweep_stale(&base);
        let dir = base.join(std::process::id().to_string());
        if dir.exists() {
            // A dead process with our pid left it (sweep_stale skips our own pid).
            clean_stale(&dir);
        }
        make_dir(&dir);
        fs::write(dir.join("owner"), process_start_time(std::process::id()).unwrap_or_default()).unwrap();
        let prefix = dir.join("prefix");
        let root = dir.join("root");

        install(&prefix, &root);
        let berth_owner = fs::metadata(&root).unwrap();
        assert_eq!(
            fs::metadata(root.join("apps")).unwrap().uid(),
            berth_owner.uid(),
            "install.sh gives the root to the berth user"
        );
        assert_ne!(berth_owner.uid(), 0, "install.sh gives the root to the berth user");

        // Keys: the berth user's authorized_keys is a scratch file in a directory of its own.
        let keys = dir.join("keys");
        make_dir(&keys);
        for (name, comment) in [(PUSH_KEY, "alice@laptop"), (ADMIN_KEY, "boss@desk")] {
            keygen(&keys.join(name), comment);
        }
        let ssh_dir = dir.join("ssh");
        make_dir(&ssh_dir);
        std::os::unix::fs::chown(&ssh_dir, Some(berth_owner.uid()), Some(berth_owner.gid())).unwrap();
        fs::set_permissions(&ssh_dir, fs::Permissions::from_mode(0o700)).unwrap();
        let authorized_keys = ssh_dir.join("authorized_keys");
        point_authorized_keys(&root.join("berth.toml"), &authorized_keys);

        let server = |port, watchdog| Server {
            dir: dir.clone(),
            prefix: prefix.clone(),
            root: root.clone(),
            port,
            keys: keys.clone(),
            sshd_log: dir.join("sshd/sshd.log"),
            _watchdog: Mutex::new(watchdog),
        };
        let berth = |args: &[&str]| {
            let out = run(berth_command(&prefix, &root, 60).args(args));
            assert_eq!(out.status, 0, "berth {} failed\n{out}", args.join(" "));
            out
        };
        let push_pub = keys.join(format!("{PUSH_KEY}.pub")).display().to_string();
        let admin_pub = keys.join(format!("{ADMIN_KEY}.pub")).display().to_string();
        berth(&["ssh-keys:add", PUSH_KEY, &push_pub]);
        berth(&["ssh-keys:add", ADMIN_KEY, &admin_pub, "--admin"]);
        let written = fs::read_to_string(&authorized_keys).unwrap();
        assert_eq!(written.lines().filter(|l| l.starts_with("command=")).count(), 2, "{written}");

        let (port, watchdog) = start_sshd(&dir.join("sshd"), &authorized_keys);
        server(port, watchdog)
    }

    /// `berth <args>` run locally, as root, on this server's root.
    fn berth(&self, args: &[&str]) -> Ran {
        run(berth_command(&self.prefix, &self.root, 120).args(args))
    }

    fn key(&self, name: &str) -> PathBuf {
        self.keys.join(name)
    }

    /// The OpenSSH client options every connection uses (after `extra`, which win: ssh takes
    /// the first value of an option).
    fn ssh_options(&self, key: &str, extra: &[&str]) -> Vec<String> {
        let mut options: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        options.extend(
            [
                "-F",
                "/dev/null",
                "-p",
                &self.port.to_string(),
                "-i",
                &self.key(key).display().to_string(),
                "-o",
                "IdentitiesOnly=yes",
                "-o",
                "IdentityAgent=none",
                "-o",
                "BatchMode=yes",
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
                "-o",
                "LogLevel=ERROR",
                "-o",
                "ConnectTimeout=10",
            ]
            .map(String::from),
        );
        options
    }

    /// `ssh [extra] berth@127.0.0.1 [command]` with a key.
    fn ssh(&self, key: &str, extra: &[&str], command: Option<&str>) -> Ran {
        let mut ssh = timed(60, "ssh");
        ssh.args(self.ssh_options(key, extra)).arg("berth@127.0.0.1");
        if let Some(command) = command {
            ssh.arg(command);
        }
        run(&mut ssh)
    }

    /// `git <args>` in a work tree, with git's ssh set to this server's port and a key.
    fn git(&self, repo: &Repo, key: &str, args: &[&str]) -> Ran {
        let mut git = timed(600, "git");
        git.current_dir(repo.path(""))
            .args(args)
            .env("GIT_SSH_COMMAND", format!("ssh {}", self.ssh_options(key, &[]).join(" ")))
            .env("GIT_SSH_VARIANT", "ssh")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_TERMINAL_PROMPT", "0")
            .env_remove("GIT_DIR")
            .env_remove("GIT_WORK_TREE");
        run(&mut git)
    }

    /// `git push berth@127.0.0.1:<app> main` with the push key.
    fn push(&self, repo: &Repo, app: &str) -> Ran {
        self.git(repo, PUSH_KEY, &["push", &format!("berth@127.0.0.1:{app}"), "main"])
    }

    fn sshd_log(&self) -> String {
        fs::read_to_string(&self.sshd_log).unwrap_or_default()
    }

    /// Waits (up to 10 s) for a line of sshd's log that contains every one of `parts`.
    fn wait_for_log_line(&self, parts: &[&str]) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let log = self.sshd_log();
            if let Some(line) = log.lines().find(|l| parts.iter().all(|p| l.contains(p))) {
                return line.to_string();
            }
            assert!(Instant::now() < deadline, "no sshd log line with {parts:?}\n--- sshd log\n{log}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Runs the real installer into `prefix` and `root`.
fn install(prefix: &Path, root: &Path) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("install.sh");
    let out = run(timed(1800, "bash").arg(&script).arg("--prefix").arg(prefix).arg("--root").arg(root));
    assert_eq!(out.status, 0, "install.sh failed\n{out}");
    for binary in ["berth", "berth-pre-receive", "berth-post-receive"] {
        assert!(prefix.join("bin").join(binary).is_file(), "install.sh did not install {binary}\n{out}");
    }
}

/// The installed `berth` with `BERTH_ROOT` set.
fn berth_command(prefix: &Path, root: &Path, seconds: u64) -> Command {
    let mut berth = timed(seconds, &prefix.join("bin/berth").display().to_string());
    berth.env("BERTH_ROOT", root).env_remove("RUST_BACKTRACE");
    berth
}

fn keygen(path: &Path, comment: &str) {
    let out =
        run(timed(30, "ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"]).arg(path));
    assert_eq!(out.status, 0, "ssh-keygen failed\n{out}");
}

/// Points berth.toml's `authorized_keys` (install.sh writes the berth user's) at `file`.
fn point_authorized_keys(settings: &Path, file: &Path) {
    let text = fs::read_to_string(settings).unwrap();
    let mut replaced = 0;
    let lines: Vec<String> = text
        .lines()
        .map(|line| {
            if line.starts_with("authorized_keys = ") {
                assert!(line.ends_with("/.ssh/authorized_keys\""), "install.sh wrote {line:?}");
                replaced += 1;
                format!("authorized_keys = \"{}\"", file.display())
            } else {
                line.to_string()
            }
        })
        .collect();
    assert_eq!(replaced, 1, "one authorized_keys line in berth.toml\n{text}");
    // Edited in place, so the file keeps the owner install.sh gave it.
    fs::write(settings, lines.join("\n") + "\n").unwrap();
}

/// Writes sshd's config and host key into `dir` and starts sshd under the watchdog; returns
/// once it accepts connections.
fn start_sshd(dir: &Path, authorized_keys: &Path) -> (u16, (Child, ChildStdin)) {
    make_dir(dir);
    make_dir(Path::new("/run/sshd"));
    let host_key = dir.join("host_key");
    keygen(&host_key, "berth-it host key");
    let port = free_port();
    let config = dir.join("sshd_config");
    let log = dir.join("sshd.log");
    fs::write(
        &config,
        format!(
            "Port {port}\n\
             ListenAddress 127.0.0.1\n\
             HostKey {}\n\
             PidFile {}\n\
             AuthorizedKeysFile {}\n\
             PasswordAuthentication no\n\
             KbdInteractiveAuthentication no\n\
             UsePAM no\n\
             StrictModes no\n\
             AllowUsers berth\n\
             LogLevel VERBOSE\n",
            host_key.display(),
            dir.join("sshd.pid").display(),
            authorized_keys.display()
        ),
    )
    .unwrap();
    let check = run(timed(30, SSHD).arg("-t").arg("-f").arg(&config));
    assert_eq!(check.status, 0, "sshd -t refused the config\n{check}");

    // sh: start sshd in the foreground, wait for stdin to close, stop sshd.
    let script = "\"$0\" -D -f \"$1\" -E \"$2\" & sshd=$!\n\
                  read -r _ignored || true\n\
                  kill \"$sshd\" 2>/dev/null\n\
                  wait \"$sshd\"\n";
    let mut child = Command::new("sh")
        .args(["-c", script, SSHD])
        .arg(&config)
        .arg(&log)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdin = child.stdin.take().unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "sshd exited ({status})\n--- {}\n{}",
                log.display(),
                fs::read_to_string(&log).unwrap_or_default()
            );
        }
        assert!(
            Instant::now() < deadline,
            "sshd does not listen on port {port} after 15 s\n--- {}\n{}",
            log.display(),
            fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    (port, (child, stdin))
}

/// `mkdir -p` with mode 0755: the berth user (sshd's forced command, the hooks) must get
/// through every directory above the prefix, the root and the keys file.
fn make_dir(dir: &Path) {
    fs::create_dir_all(dir).unwrap();
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).unwrap();
}

/// Field 22 of `/proc/<pid>/stat`: when the process started, which tells a live process from
/// a later one that got the same pid.
fn process_start_time(pid: u32) -> Option<String> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, fields) = stat.rsplit_once(')')?;
    fields.split_whitespace().nth(19).map(String::from)
}

/// Cleans up the dirs of test processes that are gone.
fn sweep_stale(base: &Path) {
    let Ok(entries) = fs::read_dir(base) else { return };
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        if pid == std::process::id() {
            continue;
        }
        // No owner file yet: a live process may be making its dir right now.
        let recorded = fs::read_to_string(entry.path().join("owner")).unwrap_or_default();
        let alive = process_start_time(pid).is_some_and(|started| recorded.is_empty() || started == recorded);
        if !alive {
            clean_stale(&entry.path());
        }
    }
}

/// Stops a dead run's sshd, destroys the apps it left and removes its dir.
fn clean_stale(dir: &Path) {
    let sshd_dir = dir.join("sshd");
    if let Some(pid) =
        fs::read_to_string(sshd_dir.join("sshd.pid")).ok().and_then(|p| p.trim().parse::<u32>().ok())
    {
        // Only if that pid is still the sshd of that config.
        let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let config = sshd_dir.join("sshd_config").display().to_string();
        if String::from_utf8_lossy(&cmdline).contains(&config) {
            let _ = Command::new("kill").arg(pid.to_string()).status();
        }
    }
    let (prefix, root) = (dir.join("prefix"), dir.join("root"));
    if prefix.join("bin/berth").is_file() {
        for app in fs::read_dir(root.join("apps")).into_iter().flatten().flatten() {
            if let Some(app) = app.file_name().to_str() {
                destroy_app(&prefix, &root, app);
            }
        }
    }
    let _ = fs::remove_dir_all(dir);
}

/// Destroys an app with its storage, whatever a failed deploy left, and its images.
fn destroy_app(prefix: &Path, root: &Path, app: &str) {
    if root.join("apps").join(app).exists() {
        let _ = berth_command(prefix, root, 120)
            .args(["apps:destroy", app, "--force", "--purge-storage"])
            .output();
    }
    let quiet = |args: &[&str]| Command::new("docker").args(args).output().ok();
    let list = |args: &[&str]| -> Vec<String> {
        quiet(args)
            .map(|o| String::from_utf8_lossy(&o.stdout).split_whitespace().map(String::from).collect())
            .unwrap_or_default()
    };
    let label = format!("label=berth.app={app}");
    for id in list(&["ps", "-aq", "--filter", &label]) {
        quiet(&["rm", "-f", &id]);
    }
    for volume in list(&["volume", "ls", "-q", "--filter", &label]) {
        quiet(&["volume", "rm", "-f", &volume]);
    }
    for image in list(&["images", &format!("berth/{app}"), "--format", "{{.Repository}}:{{.Tag}}"]) {
        quiet(&["rmi", "-f", &image]);
    }
}

/// An app name for one test, destroyed (with its storage, containers and images) when dropped.
struct App {
    server: &'static Server,
    name: String,
}

impl App {
    fn new(server: &'static Server, tag: &str) -> App {
        App { server, name: unique_name(tag) }
    }

    /// The web URL `berth ps:report <app> --ps-web-url` gives.
    fn url(&self) -> String {
        let out = self.server.berth(&["ps:report", &self.name, "--ps-web-url"]);
        assert_eq!(out.status, 0, "{out}");
        let url = out.stdout.trim().to_string();
        assert!(url.starts_with("http://127.0.0.1:"), "no web URL: {url:?}");
        url
    }

    fn web_container_id(&self) -> String {
        inspect(&format!("{}.web.1", self.name), "{{.Id}}")
    }
}

impl Drop for App {
    fn drop(&mut self) {
        destroy_app(&self.server.prefix, &self.server.root, &self.name);
    }
}

/// Pushes the `web` sample over SSH to a new app and checks it serves; returns the URL.
fn push_web(server: &Server, app: &App, repo: &Repo) -> String {
    assert!(!server.root.join("apps").join(&app.name).exists());
    let out = server.push(repo, &app.name);
    assert_eq!(out.status, 0, "the push over SSH failed\n{out}");
    assert!(out.stderr.lines().any(|l| l == format!("-----> Creating {}...", app.name)), "{out}");
    let url = app.url();
    let deployed = format!("remote: =====> Application deployed: {url}");
    assert!(out.stderr.lines().any(|l| l.trim_end() == deployed), "{out}");
    let health = get(&url, "/health");
    assert_eq!((health.status, health.text().as_str()), (200, "ok\n"), "GET {url}/health");
    url
}

/// What a command did.
struct Ran {
    status: i32,
    stdout: String,
    stderr: String,
}

impl std::fmt::Display for Ran {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit: {}\n--- stdout\n{}\n--- stderr\n{}", self.status, self.stdout, self.stderr)
    }
}

/// A command run under coreutils `timeout`, which kills it (and what it started: its process
/// group) after `seconds`.
fn timed(seconds: u64, program: &str) -> Command {
    let mut command = Command::new("timeout");
    command.args(["-k", "5", &seconds.to_string(), program]);
    command
}

/// Runs a [`timed`] command with no stdin; panics when it timed out.
fn run(command: &mut Command) -> Ran {
    let output = command.stdin(Stdio::null()).output().unwrap();
    let ran = Ran {
        status: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    };
    assert!(!matches!(ran.status, 124 | 137), "timed out: {command:?}\n{ran}");
    ran
}

/// The file tree under `dir` (see [`snapshot_state`]) with each file's owner and mode.
fn tree_with_owners(dir: &Path) -> BTreeMap<PathBuf, (Vec<u8>, u32, u32, u32)> {
    snapshot_state(dir)
        .into_iter()
        .map(|(rel, bytes)| {
            let meta = fs::symlink_metadata(dir.join(&rel)).unwrap();
            (rel, (bytes, meta.uid(), meta.gid(), meta.mode()))
        })
        .collect()
}

#[test]
fn a_push_over_ssh_creates_the_app_and_deploys_it() {
    let _gate = shared();
    let server = server();
    let app = App::new(server, "ssh-push");
    let repo = Repo::from_template("web");
    push_web(server, &app, &repo);

    // The push ran as the berth user: what it made belongs to it.
    let berth_uid = fs::metadata(&server.root).unwrap().uid();
    for made in [format!("apps/{}/state.toml", app.name), format!("repos/{}.git/HEAD", app.name)] {
        assert_eq!(fs::metadata(server.root.join(&made)).unwrap().uid(), berth_uid, "{made}");
    }
    // The push key may fetch too.
    let refs = server.git(&repo, PUSH_KEY, &["ls-remote", &format!("berth@127.0.0.1:{}", app.name)]);
    assert_eq!(refs.status, 0, "{refs}");
    assert!(refs.stdout.contains(&format!("{}\trefs/heads/main", repo.head())), "{refs}");
    // sshd ran berth's forced command for the key, whatever the client asked for.
    let forced = format!(
        "Starting session: forced-command (key-option) 'BERTH_ROOT={} {} git-shell {PUSH_KEY}'",
        server.root.display(),
        server.prefix.join("bin/berth").display()
    );
    server.wait_for_log_line(&[&forced]);
}

#[test]
fn the_push_key_only_pushes() {
    let _gate = exclusive();
    let server = server();
    let app = App::new(server, "ssh-gate");
    let created = server.ssh(ADMIN_KEY, &[], Some(&format!("apps:create {}", app.name)));
    assert_eq!(created.status, 0, "{created}");
    let before = snapshot_state(&server.root);

    let no_shell = " !     berth gives no shell: push with `git push berth@<host>:<app> main`";
    let not_admin =
        format!(" !     key \"{PUSH_KEY}\" may only push; admin commands need a key added with --admin");
    let not_a_name = |path: &str| {
        format!(" !     command refused: \"{path}\" is not an app name: push to berth@<host>:<app>")
    };
    let refusals: Vec<(Option<String>, String)> = vec![
        (None, no_shell.to_string()),
        (Some("sh -c id".into()), not_admin.clone()),
        (Some("cat /etc/passwd".into()), not_admin.clone()),
        (Some(format!("storage:list {}", app.name)), not_admin.clone()),
        (Some("git-receive-pack '../x'".into()), not_a_name("../x")),
        (Some("git-receive-pack 'a/../b'".into()), not_a_name("a/../b")),
        (Some("git-receive-pack '/etc/x.git'".into()), not_a_name("/etc/x.git")),
        (
            Some("git-receive-pack 'Bad_Name'".into()),
            " !     command refused: app name \"Bad_Name\" must be a DNS label (lowercase letters, digits, and dashes; cannot start or end with a dash)".into(),
        ),
    ];
    for (command, reason) in &refusals {
        let out = server.ssh(PUSH_KEY, &[], command.as_deref());
        assert_eq!(out.status, 1, "{command:?}\n{out}");
        assert_eq!(out.stderr, format!("{reason}\n"), "{command:?}\n{out}");
        assert_eq!(out.stdout, "", "{command:?}\n{out}");
    }

    // The same refusal reaches a real `git push`.
    let repo = Repo::from_template("web");
    let out = server.push(&repo, "../x");
    assert_ne!(out.status, 0, "{out}");
    assert!(out.stderr.lines().any(|l| l == not_a_name("../x")), "{out}");

    // No pty: sshd refuses the request, and as `-tt` insists on one the client gives up.
    let tty = server.ssh(PUSH_KEY, &["-tt", "-o", "LogLevel=INFO"], None);
    assert_ne!(tty.status, 0, "{tty}");
    assert!(tty.stderr.contains("PTY allocation request failed"), "{tty}");

    // No remote forwarding: sshd declines the request and the client gives up.
    let listen = free_port();
    let remote = server.ssh(
        PUSH_KEY,
        &["-N", "-o", "ExitOnForwardFailure=yes", "-R", &format!("{listen}:127.0.0.1:{}", server.port)],
        None,
    );
    assert_eq!(remote.status, 255, "{remote}");
    assert!(
        remote.stderr.contains(&format!("remote port forwarding failed for listen port {listen}")),
        "{remote}"
    );
    assert!(TcpStream::connect(("127.0.0.1", listen)).is_err(), "something listens on {listen}");

    // No local forwarding: the client listens, but sshd refuses to open the channel, so a
    // connection through it (to sshd itself, which would greet with its banner) gets nothing.
    let local = free_port();
    let mut forward = Forward(
        Command::new("ssh")
            .args(server.ssh_options(
                PUSH_KEY,
                &["-N", "-o", "LogLevel=INFO", "-L", &format!("{local}:127.0.0.1:{}", server.port)],
            ))
            .arg("berth@127.0.0.1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut stream = loop {
        if let Ok(stream) = TcpStream::connect(("127.0.0.1", local)) {
            break stream;
        }
        if let Some(status) = forward.0.try_wait().unwrap() {
            panic!("ssh -L exited early ({status})");
        }
        assert!(Instant::now() < deadline, "ssh -L does not listen on {local} after 15 s");
        std::thread::sleep(Duration::from_millis(50));
    };
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut got = Vec::new();
    let read = stream.read_to_end(&mut got);
    assert!(
        read.is_ok() && got.is_empty(),
        "the forward carried data: {read:?} {:?}",
        String::from_utf8_lossy(&got)
    );
    let originator = stream.local_addr().unwrap().port();
    let line = server.wait_for_log_line(&[
        "refused local port forward",
        &format!("originator 127.0.0.1 port {originator}"),
        &format!("target 127.0.0.1 port {}", server.port),
    ]);
    assert!(line.contains("refused local port forward"), "{line}");
    forward.0.kill().unwrap();
    let mut client_stderr = String::new();
    forward.0.stderr.take().unwrap().read_to_string(&mut client_stderr).unwrap();
    forward.0.wait().unwrap();
    assert!(client_stderr.contains("administratively prohibited"), "{client_stderr}");

    // Nothing was created for any of them.
    assert_eq!(snapshot_state(&server.root), before, "a refused command changed the root");
    for path in ["/etc/x.git", "/etc/x", "/home/x", "/home/x.git"] {
        assert!(!Path::new(path).exists(), "{path} was created");
    }
}

/// Kills an `ssh -L` left running when a test fails before it does.
struct Forward(Child);

impl Drop for Forward {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_admin_key_runs_admin_commands() {
    let _gate = shared();
    let server = server();
    let app = App::new(server, "ssh-admin");
    let created = server.ssh(ADMIN_KEY, &[], Some(&format!("apps:create {}", app.name)));
    assert_eq!(created.status, 0, "{created}");
    assert_eq!(created.stdout, format!("-----> Creating {}...\n", app.name), "{created}");

    let list = server.ssh(ADMIN_KEY, &[], Some("apps:list"));
    assert_eq!(list.status, 0, "{list}");
    assert!(list.stdout.starts_with("=====> My Apps\n"), "{list}");
    assert!(list.stdout.lines().any(|l| l == app.name), "{list}");

    let remote = server.ssh(ADMIN_KEY, &[], Some(&format!("storage:list {}", app.name)));
    assert_eq!(remote.status, 0, "{remote}");
    let local = server.berth(&["storage:list", &app.name]);
    assert_eq!(local.status, 0, "{local}");
    assert_eq!(
        (remote.stdout.as_str(), remote.stderr.as_str()),
        (local.stdout.as_str(), local.stderr.as_str())
    );

    // An admin command that fails says why, over SSH too.
    let missing = server.ssh(ADMIN_KEY, &[], Some("storage:list no-such-app-here"));
    assert_eq!(missing.status, 1, "{missing}");
    assert_eq!(missing.stderr, " !     App no-such-app-here does not exist\n", "{missing}");
}

#[test]
fn re_running_install_sh_changes_nothing() {
    let _gate = exclusive();
    let server = server();
    let app = App::new(server, "ssh-reinstall");
    let repo = Repo::from_template("web");
    let url = push_web(server, &app, &repo);
    let payload: Vec<u8> = (0..100_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    let stored = post(&url, "/cgi-bin/upload?name=x", &payload);
    assert_eq!(stored.status, 200, "{}", stored.text());
    let data_file = server.root.join(format!("data/apps/{}/uploads/x", app.name));
    assert_eq!(fs::read(&data_file).unwrap(), payload);

    let container = app.web_container_id();
    let state = |server: &Server| {
        let mut files = BTreeMap::new();
        for dir in ["apps", "entries"] {
            for (rel, value) in tree_with_owners(&server.root.join(dir)) {
                files.insert(Path::new(dir).join(rel), value);
            }
        }
        for file in ["berth.toml", "ssh-keys.toml"] {
            let meta = fs::metadata(server.root.join(file)).unwrap();
            files.insert(
                file.into(),
                (fs::read(server.root.join(file)).unwrap(), meta.uid(), meta.gid(), meta.mode()),
            );
        }
        files
    };
    let hooks = |server: &Server| {
        let mut hooks = BTreeMap::new();
        for repo in fs::read_dir(server.root.join("repos")).unwrap() {
            let repo = repo.unwrap().path();
            for hook in ["pre-receive", "post-receive"] {
                let path = repo.join("hooks").join(hook);
                let content = (fs::read_to_string(&path).unwrap(), fs::metadata(&path).unwrap().mode());
                hooks.insert(path, content);
            }
        }
        hooks
    };
    let (state_before, hooks_before) = (state(server), hooks(server));
    let keys_before = fs::read(server.dir.join("ssh/authorized_keys")).unwrap();
    assert!(state_before.contains_key(Path::new("apps").join(&app.name).join("state.toml").as_path()));

    install(&server.prefix, &server.root);

    assert_eq!(app.web_container_id(), container, "the same container serves");
    assert_eq!(app.url(), url);
    let health = get(&url, "/health");
    assert_eq!((health.status, health.text().as_str()), (200, "ok\n"));
    assert!(fs::read(&data_file).unwrap() == payload, "the data file changed");
    let fetched = get(&url, "/cgi-bin/file?name=x");
    assert_eq!(fetched.status, 200);
    assert!(fetched.body == payload, "the app serves the data file changed");

    let state_after = state(server);
    let changed: Vec<String> = state_after
        .keys()
        .chain(state_before.keys())
        .filter(|p| state_after.get(*p) != state_before.get(*p))
        .map(|p| p.display().to_string())
        .collect();
    assert!(changed.is_empty(), "re-running install.sh changed {changed:?}");
    assert_eq!(hooks(server), hooks_before, "the hooks' content changed");
    assert_eq!(fs::read(server.dir.join("ssh/authorized_keys")).unwrap(), keys_before);

    // And the server still takes pushes.
    repo.write("www/index.html", "<p>after install</p>\n").commit("after install");
    let out = server.push(&repo, &app.name);
    assert_eq!(out.status, 0, "{out}");
    let url = app.url();
    assert_eq!(get(&url, "/").text(), "<p>after install</p>\n");
    assert!(get(&url, "/cgi-bin/file?name=x").body == payload);
}

#[test]
fn concurrent_first_pushes_create_the_app_once() {
    let _gate = shared();
    let server = server();
    let app = App::new(server, "ssh-race");
    let repo = Repo::from_template("web");
    let url = format!("berth@127.0.0.1:{}", app.name);
    // `--dry-run` stops after receive-pack has advertised the (new) app's refs.
    let outs: Vec<Ran> = std::thread::scope(|scope| {
        let pushes: Vec<_> = (0..6)
            .map(|_| scope.spawn(|| server.git(&repo, PUSH_KEY, &["push", "--dry-run", &url, "main"])))
            .collect();
        pushes.into_iter().map(|push| push.join().unwrap()).collect()
    });
    for out in &outs {
        assert_eq!(out.status, 0, "each push reaches the app's repo\n{out}");
        assert!(!out.stderr.contains(" !     "), "{out}");
    }
    let list = server.berth(&["apps:list"]);
    assert_eq!(list.stdout.lines().filter(|l| *l == app.name).count(), 1, "{list}");
}

/// Dokku's docker-options.bats "(docker-options) docker-options:add (all phases over SSH)":
/// `ssh dokku@host docker-options:add $TEST_APP build,deploy,run "-v /tmp"` (ssh joins the
/// words, so the option arrives unquoted), then the report has `-v /tmp` three times. Literal.
#[test]
fn dokku_docker_options_add_over_ssh() {
    let _gate = shared();
    let server = server();
    let app = App { server, name: format!("dk-ssh-options-{}", std::process::id()) };
    assert_eq!(server.berth(&["apps:create", &app.name]).status, 0);
    let mut ssh = timed(60, "ssh");
    ssh.args(server.ssh_options(ADMIN_KEY, &[])).arg("berth@127.0.0.1").args([
        "docker-options:add",
        &app.name,
        "build,deploy,run",
        "-v /tmp",
    ]);
    let added = run(&mut ssh);
    assert_eq!(added.status, 0, "{added}");
    let report = server.berth(&["docker-options:report", &app.name]);
    assert_eq!(report.status, 0, "{report}");
    assert_eq!(report.stdout.matches("-v /tmp").count(), 3, "{report}");
}
