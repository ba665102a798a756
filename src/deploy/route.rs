//! The proxy's side of a swap. A swap runs with the proxy's lock held from before the new web
//! container gets its address until the release is recorded, so no other change (another
//! app's swap, `domains:*`) loads a table in between: Caddy ends the requests it holds at any
//! load, and a table built from the records must already name the new upstream.
//!
//! An app the proxy serves (a web process, and at least one host name) needs the proxy
//! running: otherwise the swap is refused before anything changes. Its route changes in the
//! order of the swap: a normal swap switches to the healthy new instance, then lets the old
//! one drain; an exclusive one holds requests for the new address before the old instance
//! stops, and they are served once the new one answers. Each new instance starts at the other
//! address of its slot (its predecessor's predecessor's) when it is free, so that each step
//! of a rolling swap only moves the app's marker and Caddy reloads nothing.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use super::Result;
use crate::engine::NetworkAddress;
use crate::names::AppName;
use crate::output::Reporter;
use crate::proxy::caddy::Caddy;
use crate::proxy::records::{self, Records};
use crate::proxy::{Drained, Proxy, Route, Table};
use crate::scheduler::{AddressRequest, Scheduler};
use crate::state::{Lock, Root, RunConfig};

/// How long the old instance drains unless the app says (`[web].drain_seconds`).
const DEFAULT_DRAIN: Duration = Duration::from_secs(30);
/// How long after a switch the old instance is first asked whether it is idle: Caddy reads
/// the marker when it matches a request and counts the request in flight as it sends it, so
/// one matched just before the switch is counted a moment later.
const SETTLE: Duration = Duration::from_millis(100);

/// The proxy during one swap of one app.
pub struct Routing {
    _lock: Option<Lock>,
    app: AppName,
    /// `None` when the proxy does not serve the app (no web process, or no host name).
    proxy: Option<Box<dyn Proxy>>,
    drain: Duration,
    /// Addresses the proxy keeps for other apps: a new instance never takes one.
    others: Vec<Ipv4Addr>,
    /// Where this root's search for a new address starts (see [`AddressRequest::start`]).
    search_start: u64,
}

impl Routing {
    /// Takes the proxy's lock and, when the proxy serves the app, checks that it answers.
    pub fn open(root: &Root, app: &AppName, run: &RunConfig) -> Result<Routing> {
        let lock = root.lock_proxy()?;
        let mut routing = Routing {
            _lock: Some(lock),
            app: app.clone(),
            proxy: None,
            drain: DEFAULT_DRAIN,
            others: Vec::new(),
            search_start: search_start(root),
        };
        if let Some(caddy) = serving_proxy(root, app, run)? {
            let declared = run.drain_seconds.map_or(DEFAULT_DRAIN, |s| Duration::from_secs(s.into()));
            routing.drain = declared.min(caddy.serving().max_drain);
            routing.others = kept_for_others(caddy.table(), app);
            routing.proxy = Some(Box::new(caddy));
        } else {
            routing.others = kept_for_others(&records::table(root)?, app);
        }
        Ok(routing)
    }

    /// With `proxy`, for unit tests.
    #[cfg(test)]
    pub fn with(app: &AppName, proxy: Box<dyn Proxy>, drain: Duration) -> Routing {
        let others = kept_for_others(proxy.table(), app);
        Routing { _lock: None, app: app.clone(), proxy: Some(proxy), drain, others, search_start: 0 }
    }

    /// The app whose route this is.
    pub fn app(&self) -> &AppName {
        &self.app
    }

    /// The proxy, for tests to look at.
    #[cfg(test)]
    pub fn proxy(&self) -> Option<&dyn Proxy> {
        self.proxy.as_deref()
    }

    /// Exclusive swap, before the old instance stops: requests wait for `next`, and the old
    /// instance finishes the ones it has (up to the drain time), with no other load.
    pub fn hold(&mut self, next: SocketAddr, out: &Reporter) -> Result<()> {
        let Some(proxy) = &mut self.proxy else { return Ok(()) };
        proxy.hold(&self.app, next)?;
        out.detail(format!("The proxy holds requests for {} until {next} answers", self.app));
        for old in draining(proxy.as_ref(), &self.app) {
            proxy.drain(&self.app, old, self.drain)?;
        }
        Ok(())
    }

    /// New requests go to the instances at `to` (a new one is healthy). Those left out then
    /// drain (normal swap); after a hold, the route already pointed at the one new instance
    /// and nothing is loaded.
    pub fn switch(&mut self, to: &[SocketAddr], out: &Reporter) -> Result<()> {
        let Some(proxy) = &mut self.proxy else { return Ok(()) };
        let held = proxy.table().apps.get(&self.app).is_some_and(|r| match r.target {
            crate::proxy::Target::Held(next) => to == [next],
            _ => false,
        });
        proxy.switch_upstream(&self.app, to.to_vec())?;
        let shown: Vec<String> = to.iter().map(ToString::to_string).collect();
        out.detail(format!("The proxy sends {}'s requests to {}", self.app, shown.join(", ")));
        if held {
            return Ok(());
        }
        // Requests the proxy accepted before the switch may not be counted yet: a moment
        // passes before the old instance can count as idle.
        std::thread::sleep(SETTLE.min(self.drain));
        for old in draining(proxy.as_ref(), &self.app) {
            // The new instance serves: a drain the proxy cannot finish is not the deploy's failure.
            // The drained upstream stays configured, in its slot, for the next release.
            match proxy.drain(&self.app, old, self.drain) {
                Ok(Drained::Idle) => out.detail(format!("{old} finished its requests")),
                Ok(Drained::TimedOut { in_flight }) => out.warn(format!(
                    "{old} still had {in_flight} request(s) after {}s of draining; stopping it anyway",
                    self.drain.as_secs()
                )),
                Err(e) => out.warn(format!("could not drain {old}: {e}")),
            }
        }
        Ok(())
    }

    /// A failed swap put the instances at `previous` back: the route points at them again.
    pub fn restore(&mut self, previous: &[SocketAddr], out: &Reporter) {
        let Some(proxy) = &mut self.proxy else { return };
        if previous.is_empty() {
            return;
        }
        if let Err(e) = proxy.switch_upstream(&self.app, previous.to_vec()) {
            out.warn(format!("could not point the proxy back at the previous instances: {e}"));
        }
    }

    /// Where a new web instance listens: when it replaces the one at `replacing`, the other
    /// address of that instance's slot if it is free (the proxy is configured for it), else
    /// one that no other app's route has.
    pub fn next_address(
        &self,
        scheduler: &dyn Scheduler,
        replacing: Option<SocketAddr>,
    ) -> Result<NetworkAddress> {
        let standby = self.route().zip(replacing).and_then(|(route, old)| route.standby_for(old));
        let request =
            AddressRequest { prefer: ipv4(standby), avoid: self.others.clone(), start: self.search_start };
        Ok(scheduler.allocate_address(&request)?)
    }

    /// The addresses the proxy sends the app's requests to now.
    pub fn current(&self) -> Vec<SocketAddr> {
        self.route().map(|route| route.target.addresses()).unwrap_or_default()
    }

    /// The port that the other addresses of the serving instances' slots share, when they
    /// share one that no serving instance has: where a swarm web service's tasks publish so
    /// that the proxy is configured for them (on the nodes the slots name).
    pub fn standby_port(&self) -> Option<u16> {
        let route = self.route()?;
        let current = route.target.addresses();
        let standbys: Option<BTreeSet<u16>> =
            current.iter().map(|address| route.standby_for(*address).map(|s| s.port())).collect();
        match Vec::from_iter(standbys?)[..] {
            [port] if !current.iter().any(|address| address.port() == port) => Some(port),
            _ => None,
        }
    }

    fn route(&self) -> Option<&Route> {
        self.proxy.as_ref().and_then(|proxy| proxy.table().apps.get(&self.app))
    }
}

/// Prints where the app serves: its URLs through the proxy, else (no host name) the port of
/// its first web instance on the loopback address.
pub fn announce(root: &Root, app: &AppName, host_port: Option<u16>, out: &Reporter) {
    let urls = crate::proxy::records::urls(root, app).unwrap_or_default();
    if urls.is_empty() {
        if let Some(port) = host_port {
            out.heading(format!("Application deployed: http://127.0.0.1:{port}"));
        }
        return;
    }
    for url in urls {
        out.heading(format!("Application deployed: {url}"));
    }
}

/// Fails unless the proxy answers when it serves the app: a push checks this before it builds,
/// so a proxy that is down changes nothing.
pub fn check(root: &Root, app: &AppName, run: &RunConfig) -> Result<()> {
    serving_proxy(root, app, run).map(drop)
}

/// The proxy, checked to answer, when it serves the app with this run config.
fn serving_proxy(root: &Root, app: &AppName, run: &RunConfig) -> Result<Option<Caddy>> {
    if run.web_port.is_none() || Records::read(root)?.hosts(app).is_empty() {
        return Ok(None);
    }
    let caddy = Caddy::open(root)?;
    caddy.served()?;
    Ok(Some(caddy))
}

/// A start for the root's address searches that stays the same across its deploys (a hash of
/// its path; `DefaultHasher::new` has fixed keys).
fn search_start(root: &Root) -> u64 {
    use std::hash::{DefaultHasher, Hash, Hasher};
    let mut hasher = DefaultHasher::new();
    root.path().hash(&mut hasher);
    hasher.finish()
}

/// The upstreams of `app` that drain now.
fn draining(proxy: &dyn Proxy, app: &AppName) -> Vec<SocketAddr> {
    proxy.table().apps.get(app).map(|r| r.draining.clone()).unwrap_or_default()
}

/// The IPv4 addresses `table` routes or keeps for apps other than `app`.
fn kept_for_others(table: &Table, app: &AppName) -> Vec<Ipv4Addr> {
    let others = table.apps.iter().filter(|(other, _)| *other != app);
    ipv4(others.flat_map(|(_, route)| route.configured()))
}

fn ipv4(addresses: impl IntoIterator<Item = SocketAddr>) -> Vec<Ipv4Addr> {
    let v4 = |address: SocketAddr| match address.ip() {
        IpAddr::V4(ip) => Some(ip),
        IpAddr::V6(_) => None,
    };
    addresses.into_iter().filter_map(v4).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::fake::FakeProxy;
    use crate::proxy::{Domain, Target};

    fn at(node: u8, port: u16) -> SocketAddr {
        SocketAddr::from(([198, 18, 0, node], port))
    }

    /// Routing for an app whose releases served at `releases`, in order.
    fn after(releases: &[Vec<SocketAddr>]) -> Routing {
        let app = AppName::new("shop").unwrap();
        let mut proxy = FakeProxy::default();
        let route = Route::new(vec![Domain::new("shop.test").unwrap()], Target::Down);
        proxy.set_route(&app, route).unwrap();
        for addresses in releases {
            proxy.switch_upstream(&app, addresses.clone()).unwrap();
        }
        Routing::with(&app, Box::new(proxy), Duration::ZERO)
    }

    #[test]
    fn a_swarm_web_service_starts_at_the_one_port_its_slots_keep() {
        assert_eq!(after(&[vec![at(1, 30001), at(2, 30002)]]).standby_port(), None, "a first release");
        let picked_then_fixed = [vec![at(1, 30001), at(2, 30002)], vec![at(1, 40000), at(3, 40000)]];
        assert_eq!(after(&picked_then_fixed).standby_port(), None, "the engine picked a port per task");
        let fixed = [vec![at(1, 40000), at(2, 40000)], vec![at(1, 40001), at(3, 40001)]];
        assert_eq!(after(&fixed).standby_port(), Some(40000));
        let moved = [vec![at(1, 40000)], vec![at(2, 40000)]];
        assert_eq!(after(&moved).standby_port(), None, "the port the serving task has");
    }
}
