//! `proxy:*`: what the proxy serves for each app, and rebuilding its config from berth's
//! records.

use std::time::{Duration, Instant};

use super::{Format, Result, existing_app};
use crate::output::{Report, Reporter};
use crate::proxy::caddy::Caddy;
use crate::proxy::settings::Serving;
use crate::proxy::{Proxy, ProxyError, Route, Served, Table, Target, TlsMode};
use crate::state::Root;

/// How often `proxy:build-config --wait` asks again.
const WAIT_POLL: Duration = Duration::from_millis(200);

/// `proxy:build-config [--wait <seconds>]`: renders the whole config from the records and
/// loads it. Without `--wait`, a proxy that does not run gets it saved for its start; with
/// it, the proxy must answer within that time (the file is saved either way).
pub fn build_config(root: &Root, wait: Option<u64>, out: &Reporter) -> Result<()> {
    let _lock = root.lock_proxy()?;
    let mut proxy = Caddy::open(root)?;
    let table = proxy.table().clone();
    out.step(format!("Building the proxy config for {} apps", table.apps.len()));
    load(&mut proxy, table, wait.map(Duration::from_secs), out)
}

/// Loads the table of berth's records (after an app stopped or went), or saves it for the
/// proxy's next start when it does not answer.
/// Nothing to do when the app had no host name (`served` false): the proxy never served it.
pub(super) fn republish(root: &Root, served: bool, out: &Reporter) -> Result<()> {
    if !served {
        return Ok(());
    }
    let _lock = root.lock_proxy()?;
    let mut proxy = Caddy::open(root)?;
    let table = proxy.table().clone();
    load_or_save(&mut proxy, table, out)
}

/// Loads `table`, or, when the proxy does not answer, saves it for the proxy's next start.
pub(super) fn load_or_save(proxy: &mut Caddy, table: Table, out: &Reporter) -> Result<()> {
    load(proxy, table, None, out)
}

/// Loads `table`. A proxy that does not answer (within `wait`, when given) gets it saved for
/// its start: a warning without `wait`, an error with it.
fn load(proxy: &mut Caddy, table: Table, wait: Option<Duration>, out: &Reporter) -> Result<()> {
    let deadline = wait.map(|wait| Instant::now() + wait);
    loop {
        match proxy.load(table.clone()) {
            Ok(()) => {
                out.detail("The proxy serves the new routes");
                return Ok(());
            }
            Err(ProxyError::Unreachable { .. }) if deadline.is_some_and(|d| Instant::now() < d) => {
                std::thread::sleep(WAIT_POLL);
            }
            Err(ProxyError::Unreachable { endpoint, source }) => {
                proxy.save(table)?;
                if wait.is_some() {
                    return Err(ProxyError::Unreachable { endpoint, source }.into());
                }
                out.warn(format!(
                    "The proxy is not running ({endpoint}: {source}); the routes are saved in {} and served when it starts (bash scripts/ensure-proxy.sh)",
                    proxy.config_file().display()
                ));
                return Ok(());
            }
            Err(error) => return Err(error.into()),
        }
    }
}

/// `proxy:report [<app>] [--<flag>] [--format json]`.
pub fn report(root: &Root, args: &[String], format: Format, out: &Reporter) -> Result<()> {
    let request = super::report::Request::parse(root, "proxy:report", args, format)?;
    let proxy = Caddy::open(root)?;
    let served = match proxy.served() {
        Ok(served) => Some(served),
        Err(ProxyError::Unreachable { .. }) => None,
        Err(error) => return Err(error.into()),
    };
    request.print(
        "proxy",
        "proxy",
        |app| {
            existing_app(root, app)?;
            let mut report = Report::default();
            report.row("proxy-type", "caddy");
            report.row("proxy-admin", proxy.serving().admin.to_string());
            report.row("proxy-running", served.is_some().to_string());
            report.row("proxy-in-sync", served.as_ref().map(|s| s.in_sync.to_string()).unwrap_or_default());
            report.row("proxy-tls", proxy.serving().tls.mode().to_string());
            report.row("proxy-http-port", proxy.serving().http_port.to_string());
            report.row("proxy-https-port", proxy.serving().https_port.to_string());
            if let Some(route) = proxy.table().apps.get(app) {
                route_rows(&mut report, proxy.serving(), route, served.as_ref());
            }
            Ok(report)
        },
        out,
    )
}

fn route_rows(report: &mut Report, serving: &Serving, route: &Route, served: Option<&Served>) {
    let hosts: Vec<&str> = route.hosts.iter().map(|h| h.as_str()).collect();
    report.row("proxy-hosts", hosts.join(" "));
    let state = match route.target {
        Target::Down => "down",
        Target::Up(_) => "serving",
        Target::Held(_) => "held",
    };
    report.row("proxy-state", state);
    let upstreams: Vec<String> = route.target.addresses().iter().map(|a| upstream(a, served)).collect();
    report.row("proxy-upstreams", upstreams.join(" "));
    let draining: Vec<String> = route.draining.iter().map(|a| upstream(a, served)).collect();
    report.row("proxy-draining", draining.join(" "));
    let urls: Vec<String> =
        route.hosts.iter().filter(|h| !h.is_wildcard()).map(|h| url(serving, h.as_str())).collect();
    report.row("proxy-urls", urls.join(" "));
}

/// `127.0.0.1:32768`, with the requests in flight when the proxy says.
fn upstream(address: &std::net::SocketAddr, served: Option<&Served>) -> String {
    let live = served.and_then(|s| s.upstreams.iter().find(|u| u.address == address.to_string()));
    match live {
        Some(live) => format!("{address} ({} in flight)", live.in_flight),
        None => address.to_string(),
    }
}

/// Where a browser reaches `host`: `https://host` with TLS, the port when not the default.
fn url(serving: &Serving, host: &str) -> String {
    let (scheme, port, default) = match serving.tls.mode() {
        TlsMode::Off => ("http", serving.http_port, 80),
        TlsMode::Internal | TlsMode::Acme => ("https", serving.https_port, 443),
    };
    if port == default { format!("{scheme}://{host}") } else { format!("{scheme}://{host}:{port}") }
}
