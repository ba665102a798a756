//! Serving through a real Caddy (started by `scripts/ensure-proxy.sh` on loopback ports) in
//! front of real deploys: redeploys under load fail no request, an exclusive app's requests are
//! held rather than failed, old containers get SIGTERM (and one that ignores it is killed after
//! its timeout, with a line), a push is refused cleanly when the proxy is down or refuses the
//! route, a release that never becomes healthy keeps the old route, and nothing of an app
//! answers on the machine's non-loopback address.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::Duration;

use crate::engine::docker;
use crate::proxy::{KeepAlive, RunningCaddy};
use crate::push::{App, Repo};

/// An app of the `serve` template with a domain, deployed once behind the test's Caddy.
fn served<'t>(caddy: &'t RunningCaddy, tag: &str, app_toml: Option<&str>) -> (App<'t>, Repo, String) {
    let app = App::create(&caddy.t, tag);
    let host = format!("{}.test", app.name);
    app.berth("domains:add", &[&host]).success();
    let repo = Repo::from_template("serve");
    if let Some(text) = app_toml {
        repo.write("app.toml", text).commit("app.toml for the test");
    }
    let out = repo.push(&app).success();
    let port = caddy.url.rsplit(':').next().unwrap();
    assert!(out.has_line(&format!("=====> Application deployed: http://{host}:{port}")), "{out}");
    assert_eq!(answer(&caddy.url, &host).unwrap(), 200);
    (app, repo, host)
}

/// The status of `GET /health` through the proxy for `host`, or the connection error.
fn answer(url: &str, host: &str) -> std::io::Result<u16> {
    let mut stream = TcpStream::connect(url.trim_start_matches("http://"))?;
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    write!(stream, "GET /health HTTP/1.0\r\nHost: {host}\r\n\r\n")?;
    let mut text = String::new();
    stream.read_to_string(&mut text)?;
    text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).ok_or_else(|| std::io::Error::other(text))
}

/// Requests sent from a thread until stopped, on one keep-alive connection (a new one after
/// a failure): how many, and which failed.
pub struct Load {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    thread: thread::JoinHandle<Vec<String>>,
}

impl Load {
    pub fn start(url: &str, host: &str) -> Load {
        Load::start_with(url, host, true, 200)
    }

    /// A new connection for every request: what a client sees when its idle keep-alive
    /// connections may be closed by a proxy reload, which HTTP clients retry.
    pub fn start_per_request(url: &str, host: &str) -> Load {
        Load::start_with(url, host, false, 200)
    }

    /// A new connection for every request, each expected to get `status` (an app with no
    /// release gets Caddy's own 503).
    pub fn start_per_request_answered(url: &str, host: &str, status: u16) -> Load {
        Load::start_with(url, host, false, status)
    }

    fn start_with(url: &str, host: &str, keep_alive: bool, status: u16) -> Load {
        let (stop, sent) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)));
        let (url, host, flag, count) = (url.to_string(), host.to_string(), stop.clone(), sent.clone());
        let thread = thread::spawn(move || {
            let mut failures = Vec::new();
            let mut client = KeepAlive::connect(&url, &host);
            while !flag.load(Ordering::Relaxed) {
                if !keep_alive {
                    client = KeepAlive::connect(&url, &host);
                }
                match client.get("/health") {
                    Ok((answered, _)) if answered == status => {}
                    Ok(other) => failures.push(format!("{other:?}")),
                    Err(e) => {
                        failures.push(e.to_string());
                        client = KeepAlive::connect(&url, &host);
                    }
                }
                count.fetch_add(1, Ordering::Relaxed);
            }
            failures
        });
        Load { stop, sent, thread }
    }

    /// Stops; returns (requests sent, failures).
    pub fn finish(self) -> (u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        let failures = self.thread.join().unwrap();
        (self.sent.load(Ordering::Relaxed), failures)
    }
}

/// Pushes a change to `www/index.html` and expects the deploy to succeed.
fn redeploy(app: &App, repo: &Repo, n: usize) -> crate::push::PushOutput {
    repo.write("www/index.html", &format!("release {n}\n")).commit(&format!("change {n}"));
    repo.push(app).success()
}

fn sigterm_records(app: &App) -> Vec<String> {
    std::fs::read_to_string(app.dir("state/sigterm.log"))
        .unwrap_or_default()
        .lines()
        .map(String::from)
        .collect()
}

/// The machine's first IPv4 address that is not loopback.
fn outside_address() -> Option<String> {
    let out = std::process::Command::new("hostname").arg("-I").output().ok()?;
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .find(|a| a.parse::<std::net::Ipv4Addr>().is_ok_and(|ip| !ip.is_loopback() && !a.starts_with("172.")))
        .map(String::from)
}

#[test]
fn sv_redeploys_under_load_fail_no_request_and_the_old_containers_get_sigterm() {
    let caddy = RunningCaddy::start();
    let (app, repo, host) = served(&caddy, "sv-normal", None);
    // From the second release on, the proxy has the address of the next instance on standby.
    redeploy(&app, &repo, 2);
    let load = Load::start(&caddy.url, &host);
    for n in 3..=5 {
        let out = redeploy(&app, &repo, n);
        assert!(out.remote().iter().any(|l| l.contains("The proxy sends")), "{out}");
    }
    let (sent, failures) = load.finish();
    assert!(sent > 20, "only {sent} requests were sent");
    assert!(failures.is_empty(), "{} of {sent} requests failed: {failures:?}", failures.len());
    let records = sigterm_records(&app);
    for release in 1..=4 {
        let line = format!("release {release} stopped by SIGTERM");
        assert!(
            records.iter().any(|r| r.starts_with(&line)),
            "no SIGTERM record of release {release}: {records:?}"
        );
    }
    // Loopback only: the web port is bound on 127.0.0.1, and nothing answers outside.
    let bindings = docker(&["port", &app.container("web")]);
    assert!(bindings.lines().all(|l| l.contains("127.0.0.1:")), "{bindings}");
    let host_port: u16 = bindings.lines().next().unwrap().rsplit(':').next().unwrap().trim().parse().unwrap();
    if let Some(outside) = outside_address() {
        assert!(
            TcpStream::connect((outside.as_str(), host_port)).is_err(),
            "the app answers on {outside}:{host_port}"
        );
        assert!(TcpStream::connect((outside.as_str(), 5000)).is_err(), "the app answers on {outside}:5000");
    }
}

#[test]
fn sv_an_exclusive_app_is_held_not_errored_during_its_swap() {
    let caddy = RunningCaddy::start();
    let toml = "[app]\nuser = \"1000\"\nstop_timeout = 10\n[web]\nport = 5000\nhealthcheck = \"/health\"\n\
                [[storage.mounts]]\nsource = \"./state\"\ntarget = \"/app/storage\"\nexclusive = true\n";
    let (app, repo, host) = served(&caddy, "sv-exclusive", Some(toml));
    redeploy(&app, &repo, 2);
    let load = Load::start(&caddy.url, &host);
    for n in 3..=4 {
        let out = redeploy(&app, &repo, n);
        assert!(out.remote().iter().any(|l| l.contains("The proxy holds requests")), "{out}");
    }
    let (sent, failures) = load.finish();
    assert!(sent > 5, "only {sent} requests were sent");
    assert!(failures.is_empty(), "{} of {sent} requests failed: {failures:?}", failures.len());
    assert_eq!(sigterm_records(&app).len(), 3, "{:?}", sigterm_records(&app));
}

#[test]
fn sv_a_push_is_refused_cleanly_while_the_proxy_is_down() {
    let caddy = RunningCaddy::start();
    let (app, repo, _host) = served(&caddy, "sv-down", None);
    let before = app.releases().len();
    caddy.stop();
    repo.write("www/index.html", "never served\n").commit("while the proxy is down");
    let out = repo.push(&app).rejected();
    assert!(
        out.remote()
            .iter()
            .any(|l| l.contains("the proxy does not answer at") && l.contains("ensure-proxy.sh")),
        "{out}"
    );
    assert!(!out.remote().iter().any(|l| l.contains("Building")), "nothing is built: {out}");
    assert_eq!(app.releases().len(), before, "no release is recorded");
    assert!(docker(&["inspect", "-f", "{{.State.Running}}", &app.container("web")]).trim() == "true");
}

#[test]
fn sv_a_release_that_never_becomes_healthy_keeps_the_old_route() {
    let caddy = RunningCaddy::start();
    let (app, repo, host) = served(&caddy, "sv-unhealthy", None);
    let text = repo.read("app.toml").replace("healthcheck = \"/health\"", "healthcheck = \"/nope\"");
    repo.write("app.toml", &text).commit("a health check that never answers 2xx");
    let out = repo.push_refspec(&app, "main", &[("BERTH_HEALTH_TIMEOUT", "2")]).rejected();
    assert!(out.remote().iter().any(|l| l.contains("the web process is not healthy")), "{out}");
    assert!(!out.remote().iter().any(|l| l.contains("The proxy sends")), "{out}");
    assert_eq!(answer(&caddy.url, &host).unwrap(), 200, "the old release serves on");
}

#[test]
fn sv_a_route_update_the_proxy_refuses_fails_the_push_and_the_old_release_serves() {
    let caddy = RunningCaddy::start();
    let (app, repo, host) = served(&caddy, "sv-refused", None);
    // The next config would listen on a port something else has: Caddy refuses it.
    let settings = std::fs::read_to_string(caddy.t.path("berth.toml")).unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy = taken.local_addr().unwrap().port();
    let http_port = caddy.url.rsplit(':').next().unwrap().to_string();
    std::fs::write(
        caddy.t.path("berth.toml"),
        settings.replace(&format!("http_port = {http_port}"), &format!("http_port = {busy}")),
    )
    .unwrap();
    let out = redeploy_rejected(&app, &repo);
    std::fs::write(caddy.t.path("berth.toml"), settings).unwrap();
    assert!(
        out.remote()
            .iter()
            .any(|l| l.contains("the proxy refused the new routes and keeps serving the previous ones")),
        "{out}"
    );
    assert_eq!(answer(&caddy.url, &host).unwrap(), 200, "the old release serves on");
    let current = app.releases().iter().filter(|r| r["outcome"] == "deployed").count();
    assert_eq!(current, 1, "{:?}", app.releases());
    drop(taken);
    // The next push goes through.
    redeploy(&app, &repo, 3);
    assert_eq!(answer(&caddy.url, &host).unwrap(), 200);
}

fn redeploy_rejected(app: &App, repo: &Repo) -> crate::push::PushOutput {
    repo.write("www/index.html", "refused\n").commit("refused by the proxy");
    repo.push(app).rejected()
}

#[test]
fn sv_a_container_that_ignores_sigterm_is_killed_after_its_timeout_with_a_line() {
    let caddy = RunningCaddy::start();
    let toml = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/templates/serve/app.toml"))
        .unwrap()
        .replace("stop_timeout = 10", "stop_timeout = 2");
    let (app, repo, host) = served(&caddy, "sv-ignore", Some(&toml));
    // Releases started from now on ignore SIGTERM (the file is in their storage).
    docker(&["exec", &app.container("web"), "touch", "/app/storage/ignore-sigterm"]);
    assert!(app.dir("state/ignore-sigterm").exists());
    let line = format!(
        "{}.retiring did not exit within 2s of SIGTERM; it was killed (SIGKILL)",
        app.container("web")
    );
    let out = redeploy(&app, &repo, 2);
    assert!(!out.remote().iter().any(|l| l.ends_with(&line)), "release 1 exits on SIGTERM: {out}");
    let out = redeploy(&app, &repo, 3);
    assert!(out.remote().iter().any(|l| l.ends_with(&line)), "{out}");
    let records = sigterm_records(&app);
    assert_eq!(records.len(), 1, "only release 1 recorded its SIGTERM: {records:?}");
    assert_eq!(answer(&caddy.url, &host).unwrap(), 200);
}
