//! A real Caddy, started by `scripts/ensure-proxy.sh` on loopback ports with a private admin
//! socket in the test's root, in front of tiny upstreams (std listeners in the test): routes
//! by host, a refused config leaves the previous routes serving, requests are held while no
//! upstream answers, and a switch lets in-flight requests finish on the old upstream.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use berth::engine::Engine;
use berth::names::AppName;
use berth::network::AddressRequest;
use berth::proxy::caddy::Caddy;
use berth::proxy::{Domain, Drained, Proxy, ProxyError, Route, Target};
use berth::state::Root;

use crate::push::get_host;
use crate::serve::Load;
use crate::test::{BERTH, Test};

/// Caddy running for one test root; stopped (SIGTERM) when dropped.
pub struct RunningCaddy {
    pub t: Test,
    /// `http://127.0.0.1:<http port>`.
    pub url: String,
    pid: String,
}

impl RunningCaddy {
    pub fn start() -> RunningCaddy {
        let t = Test::new();
        let [http_port, https_port] = free_ports();
        let settings =
            format!("[proxy]\nhttp_port = {http_port}\nhttps_port = {https_port}\nbind = \"127.0.0.1\"\n");
        std::fs::write(t.path("berth.toml"), settings).unwrap();
        let out = ensure_proxy(&t);
        assert!(out.contains("Starting caddy in the background"), "{out}");
        let pid = std::fs::read_to_string(t.path("proxy/caddy.pid")).unwrap().trim().to_string();
        RunningCaddy { url: format!("http://127.0.0.1:{http_port}"), t, pid }
    }

    fn root(&self) -> Root {
        Root::new(self.t.root())
    }

    /// The config berth last loaded into Caddy (written after each load only).
    pub fn config(&self) -> String {
        std::fs::read_to_string(self.root().proxy_config_file()).unwrap()
    }
}

impl RunningCaddy {
    /// Stops Caddy (SIGTERM) and waits until it no longer answers.
    pub fn stop(&self) {
        let _ = Command::new("kill").arg(&self.pid).status();
        let address = self.url.trim_start_matches("http://").to_string();
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(&address).is_ok() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for RunningCaddy {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg(&self.pid).status();
    }
}

/// Runs `scripts/ensure-proxy.sh --background` for the test's root; returns its output. One at
/// a time: the first may install caddy, and apt takes one install at a time.
fn ensure_proxy(t: &Test) -> String {
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let out = Command::new("bash")
        .args(["scripts/ensure-proxy.sh", "--background", "--root"])
        .arg(t.root())
        .env("BERTH_BIN", BERTH)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "ensure-proxy.sh failed:\n{text}");
    text
}

pub fn free_port() -> u16 {
    let [port] = free_ports();
    port
}

/// `N` distinct free loopback ports: each is held until all are chosen, since the kernel may
/// hand a just-closed port out again (two ports picked one after the other were once equal).
pub fn free_ports<const N: usize>() -> [u16; N] {
    let listeners: [TcpListener; N] = std::array::from_fn(|_| TcpListener::bind("127.0.0.1:0").unwrap());
    listeners.map(|listener| listener.local_addr().unwrap().port())
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Serves `name` on `listener` for ever (`/slow` after 2 s), one thread per connection.
fn serve(listener: TcpListener, name: &'static str) {
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            thread::spawn(move || answer(stream, name));
        }
    });
}

/// An upstream answering `name` on a new loopback port.
fn upstream(name: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    serve(listener, name);
    address
}

fn answer(mut stream: TcpStream, name: &str) {
    let mut request_line = String::new();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    reader.read_line(&mut request_line).unwrap_or_default();
    let mut line = String::new();
    while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
        line.clear();
    }
    if request_line.contains(" /slow ") {
        thread::sleep(Duration::from_secs(2));
    }
    let _ = write!(
        stream,
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{name}",
        name.len()
    );
}

/// One HTTP/1.1 connection to the proxy, reused for every request, as browsers and wrk keep
/// theirs.
pub struct KeepAlive {
    reader: BufReader<TcpStream>,
    host: String,
}

impl KeepAlive {
    pub fn connect(url: &str, host: &str) -> KeepAlive {
        let stream = TcpStream::connect(url.trim_start_matches("http://")).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        KeepAlive { reader: BufReader::new(stream), host: host.to_string() }
    }

    /// `GET path` on this connection: the status and body, or why the exchange failed (the
    /// proxy closed the connection).
    pub fn get(&mut self, path: &str) -> std::io::Result<(u16, String)> {
        let request = format!("GET {path} HTTP/1.1\r\nHost: {}\r\n\r\n", self.host);
        self.reader.get_mut().write_all(request.as_bytes())?;
        let mut status_line = String::new();
        if self.reader.read_line(&mut status_line)? == 0 {
            return Err(std::io::Error::other("the proxy closed the connection"));
        }
        let status = status_line.split_whitespace().nth(1).and_then(|s| s.parse().ok());
        let mut length = None;
        let mut line = String::new();
        while {
            line.clear();
            self.reader.read_line(&mut line)? > 2
        } {
            if let Some((name, value)) = line.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse::<usize>().ok();
            }
        }
        let (Some(status), Some(length)) = (status, length) else {
            return Err(std::io::Error::other(format!("not an answer with a length: {status_line:?}")));
        };
        let mut body = vec![0; length];
        self.reader.read_exact(&mut body)?;
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    }
}

fn route(host: &str, target: Target, hold: Duration) -> Route {
    Route { hold, ..Route::new(vec![Domain::new(host).unwrap()], target) }
}

#[test]
fn domains_commands_reload_a_running_caddy() {
    let caddy = RunningCaddy::start();
    let t = &caddy.t;
    t.app("shop");
    let out = t.ok(["domains:add", "shop", "shop.test"]);
    assert_eq!(out.stderr, "", "a running proxy takes the change without a warning\n{out}");
    assert!(out.stdout.contains("       The proxy serves the new routes\n"), "{out}");
    let answer = get_host(&caddy.url, "shop.test", "/");
    assert_eq!((answer.status, answer.text()), (503, "shop has no running release\n".to_string()));
    assert_eq!(get_host(&caddy.url, "other.test", "/").status, 404);
    assert_eq!(t.ok(["proxy:report", "shop", "--proxy-in-sync"]).stdout, "true\n");
    assert_eq!(t.ok(["proxy:report", "shop", "--proxy-running"]).stdout, "true\n");
    // Idempotent: a second run finds it serving and starts nothing.
    let again = ensure_proxy(t);
    assert!(again.contains("Proxy running"), "{again}");
    assert!(!again.contains("Starting"), "{again}");
}

#[test]
fn reloads_under_load_reset_no_connection_being_opened() {
    let caddy = RunningCaddy::start();
    let t = &caddy.t;
    t.app("quiet").ok(["domains:add", "quiet", "quiet.test"]);
    t.app("busy");
    // Caddy answers for an app with no release itself: the load needs no container.
    let load = Load::start_per_request_answered(&caddy.url, "quiet.test", 503);
    thread::sleep(Duration::from_millis(200));
    for i in 0..30 {
        let out = t.ok(["domains:add", "busy", &format!("busy-{i}.test")]);
        assert!(out.stdout.contains("The proxy serves the new routes"), "each one reloads Caddy: {out}");
    }
    let (sent, failures) = load.finish();
    assert!(sent > 300, "only {sent} requests were sent");
    // Caddy listens on a new socket after each reload; the kernel hands the old one's queued
    // connections over (net.ipv4.tcp_migrate_req, set by ensure-proxy.sh) instead of resetting them.
    let first: Vec<&String> = failures.iter().take(3).collect();
    assert!(
        failures.is_empty(),
        "{} of {sent} new connections failed over 30 reloads: {first:?}",
        failures.len()
    );
}

#[test]
fn caddy_routes_holds_swaps_and_keeps_serving_after_a_refused_config() {
    let caddy = RunningCaddy::start();
    let root = caddy.root();
    let app = AppName::new("web").unwrap();
    let mut proxy = Caddy::open(&root).unwrap();
    let hold = Duration::from_secs(5);

    let a = upstream("A");
    proxy.set_route(&app, route("web.test", Target::Up(vec![a]), hold)).unwrap();
    assert_eq!(get_host(&caddy.url, "web.test", "/").text(), "A");

    refused_config_keeps_the_previous_routes(&root, &proxy);
    assert_eq!(get_host(&caddy.url, "web.test", "/").text(), "A", "still served after the refusal");

    // Held: the next instance is not listening yet; the request waits for it, then is served.
    let next = free_port();
    proxy.hold(&app, loopback(next)).unwrap();
    let url = caddy.url.clone();
    let started = Instant::now();
    let held = thread::spawn(move || get_host(&url, "web.test", "/"));
    thread::sleep(Duration::from_millis(1500));
    serve(TcpListener::bind(loopback(next)).unwrap(), "B");
    let answer = held.join().unwrap();
    assert_eq!((answer.status, answer.text()), (200, "B".to_string()), "the held request is served");
    assert!(started.elapsed() >= Duration::from_millis(1400), "it waited: {:?}", started.elapsed());
    proxy.switch_upstream(&app, vec![loopback(next)]).unwrap();

    // Switched: a request in flight to B finishes there while new requests go to C.
    let url = caddy.url.clone();
    let slow = thread::spawn(move || get_host(&url, "web.test", "/slow"));
    thread::sleep(Duration::from_millis(500));
    proxy.switch_upstream(&app, vec![upstream("C")]).unwrap();
    assert_eq!(get_host(&caddy.url, "web.test", "/").text(), "C");
    assert_eq!(proxy.in_flight(loopback(next)).unwrap(), 1, "B still answers the slow request");
    assert_eq!(proxy.drain(&app, loopback(next), Duration::from_secs(10)).unwrap(), Drained::Idle);
    let answer = slow.join().unwrap();
    assert_eq!((answer.status, answer.text()), (200, "B".to_string()), "the in-flight request finished");
    assert!(proxy.served().unwrap().in_sync);

    // No upstream ever answers: the request fails once the hold is over, not before.
    let short = Duration::from_secs(1);
    proxy.set_route(&app, route("web.test", Target::Held(loopback(free_port())), short)).unwrap();
    let started = Instant::now();
    assert_eq!(get_host(&caddy.url, "web.test", "/").status, 502);
    assert!(started.elapsed() >= short, "held for the whole hold: {:?}", started.elapsed());
}

#[test]
fn a_swap_to_the_standby_upstream_reloads_nothing_and_keeps_client_connections() {
    let caddy = RunningCaddy::start();
    let app = AppName::new("px-keep").unwrap();
    let mut proxy = Caddy::open(&caddy.root()).unwrap();
    let (a, b) = (upstream("A"), upstream("B"));
    let mut first = route("keep.test", Target::Up(vec![a]), Duration::from_secs(5));
    first.slots = vec![[a, b]];
    proxy.set_route(&app, first).unwrap();
    let mut client = KeepAlive::connect(&caddy.url, "keep.test");
    assert_eq!(client.get("/").unwrap(), (200, "A".to_string()));
    let config = std::fs::read(caddy.root().proxy_config_file()).unwrap();

    proxy.switch_upstream(&app, vec![b]).unwrap();
    assert_eq!(client.get("/").unwrap(), (200, "B".to_string()), "the same connection, served by B");
    assert_eq!(proxy.drain(&app, a, Duration::from_secs(5)).unwrap(), Drained::Idle);
    assert_eq!(proxy.table().apps[&app].slots, vec![[a, b]]);
    proxy.switch_upstream(&app, vec![a]).unwrap();
    assert_eq!(client.get("/").unwrap(), (200, "A".to_string()));
    assert_eq!(std::fs::read(caddy.root().proxy_config_file()).unwrap(), config, "no new config");
    assert!(proxy.served().unwrap().in_sync);
    // A fresh Caddy value (the next push) finds the config running and loads nothing either.
    let mut next = Caddy::open(&caddy.root()).unwrap();
    let mut table = proxy.table().clone();
    table.apps.get_mut(&app).unwrap().switch_to(Target::Up(vec![b]));
    next.load(table).unwrap();
    assert_eq!(client.get("/").unwrap(), (200, "B".to_string()));

    // An address Caddy has no route for needs a new config: Caddy restarts its servers and
    // closes idle connections (why swaps go between the configured ones).
    next.switch_upstream(&app, vec![upstream("C")]).unwrap();
    assert!(client.get("/").is_err(), "Caddy closed the idle connection at its reload");
    assert_eq!(get_host(&caddy.url, "keep.test", "/").text(), "C");
}

#[test]
fn concurrent_address_allocations_on_one_engine_never_pick_the_same_address() {
    // Threads stand for deploys of berth roots sharing the engine: none holds another's lock,
    // and no container takes its address before all have picked.
    let picks: Vec<_> = (0..4)
        .map(|_| {
            thread::spawn(|| {
                let engine = Engine::connect().unwrap();
                berth::network::allocate(&engine, &AddressRequest::default()).unwrap().ip
            })
        })
        .collect();
    let addresses: BTreeSet<_> = picks.into_iter().map(|t| t.join().unwrap()).collect();
    assert_eq!(addresses.len(), 4, "{addresses:?}");
}

/// A config Caddy refuses (its HTTP port is taken) is reported with Caddy's reason; the running
/// routes and berth's config file stay as they were.
fn refused_config_keeps_the_previous_routes(root: &Root, proxy: &Caddy) {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut serving = proxy.serving().clone();
    serving.http_port = taken.local_addr().unwrap().port();
    let file = root.proxy_config_file();
    let before = std::fs::read(&file).unwrap();
    let mut elsewhere = Caddy::new(serving, file.clone(), proxy.table().clone());
    let mut table = proxy.table().clone();
    table.apps.clear();
    match elsewhere.load(table) {
        Err(ProxyError::Refused { message }) => {
            assert!(message.contains("address already in use"), "{message}")
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(std::fs::read(&file).unwrap(), before, "{} is unchanged", file.display());
    assert!(proxy.served().unwrap().in_sync, "Caddy still serves the previous config");
}
