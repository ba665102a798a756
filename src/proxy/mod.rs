//! Serving apps behind a reverse proxy: the routing table (each app's domains and the
//! addresses its requests go to), the [`Proxy`] trait the deploy's swap speaks, and its
//! implementations: Caddy driven through its admin API, and a fake for unit tests.
//!
//! berth owns the proxy's configuration: every change builds the whole [`Table`] as a value and
//! the proxy loads it whole, so what is served is always a function of berth's state. A table
//! the proxy refuses leaves the previous one serving. A swap between addresses the proxy is
//! already configured for (an app's slots: its serving and standby ones) reloads nothing in Caddy.

pub mod caddy;
pub mod domain;
#[cfg(test)]
pub mod fake;
pub mod records;
pub mod settings;
pub mod table;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

pub use domain::{Domain, DomainError};
pub use settings::{ProxySettings, TlsMode};
pub use table::{Route, Table, Target};

use crate::names::AppName;
use crate::state::StateError;

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("berth.toml [proxy]: {0}")]
    Settings(String),
    #[error(
        "the proxy does not answer at {endpoint} ({source}); start it with `bash scripts/ensure-proxy.sh`"
    )]
    Unreachable { endpoint: String, source: std::io::Error },
    #[error("the proxy refused the new routes and keeps serving the previous ones: {message}")]
    Refused { message: String },
    #[error("the proxy at {endpoint} answered {request} with {status}: {message}")]
    Answer { endpoint: String, request: String, status: u16, message: String },
    #[error("app {0} has no route in the proxy")]
    NoRoute(AppName),
    #[error(transparent)]
    State(#[from] StateError),
}

/// One upstream as the proxy sees it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamStatus {
    pub address: String,
    /// Requests being proxied to it right now.
    pub in_flight: u64,
    /// Recent failed requests (when the proxy counts them).
    pub fails: u64,
}

/// What the running proxy serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Served {
    /// The proxy serves exactly the table berth last gave it.
    pub in_sync: bool,
    pub upstreams: Vec<UpstreamStatus>,
}

/// How a drain ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drained {
    /// No request was in flight any more.
    Idle,
    /// The timeout passed with requests still in flight (they go on until the container stops).
    TimedOut { in_flight: u64 },
}

/// How often a drain asks the proxy for in-flight requests.
const DRAIN_POLL: Duration = Duration::from_millis(100);

/// A reverse proxy berth configures. Implementations load whole tables ([`Proxy::load`]) and
/// count in-flight requests; the swap's steps are provided on top, as table changes.
pub trait Proxy {
    /// The table berth last loaded (or started from).
    fn table(&self) -> &Table;

    /// Makes the proxy serve `table`. On refusal the previous table keeps serving (and stays
    /// [`Proxy::table`]).
    fn load(&mut self, table: Table) -> Result<(), ProxyError>;

    /// What the proxy serves now.
    fn served(&self) -> Result<Served, ProxyError>;

    /// Serves `app` at `route`, replacing its previous route; other apps are unchanged.
    fn set_route(&mut self, app: &AppName, route: Route) -> Result<(), ProxyError> {
        let mut table = self.table().clone();
        table.apps.insert(app.clone(), route);
        self.load(table)
    }

    /// Stops serving `app` (its domains answer 404); nothing to do when it has no route.
    fn remove_route(&mut self, app: &AppName) -> Result<(), ProxyError> {
        if !self.table().apps.contains_key(app) {
            return Ok(());
        }
        let mut table = self.table().clone();
        table.apps.remove(app);
        self.load(table)
    }

    /// New requests for `app` go to the upstreams `to` only; requests in flight to its other
    /// previous upstreams finish there, and those are kept [draining](Proxy::drain).
    fn switch_upstream(&mut self, app: &AppName, to: Vec<SocketAddr>) -> Result<(), ProxyError> {
        change(self, app, |route| route.switch_to(Target::Up(to)))
    }

    /// Requests for `app` wait (up to its route's hold) for `next` to answer, then go there:
    /// the gap of an exclusive swap, while the old container stops and the new one starts.
    /// Caddy ends held requests when any other table is loaded, so load nothing else until
    /// `next` answers.
    fn hold(&mut self, app: &AppName, next: SocketAddr) -> Result<(), ProxyError> {
        change(self, app, |route| route.switch_to(Target::Held(next)))
    }

    /// Waits until no request is in flight to the draining `upstream` of `app`, or `timeout`
    /// passes, then stops counting it as draining (it stays configured while a slot has it).
    fn drain(
        &mut self,
        app: &AppName,
        upstream: SocketAddr,
        timeout: Duration,
    ) -> Result<Drained, ProxyError> {
        let deadline = Instant::now() + timeout;
        let drained = loop {
            let in_flight = self.in_flight(upstream)?;
            if in_flight == 0 {
                break Drained::Idle;
            }
            if Instant::now() >= deadline {
                break Drained::TimedOut { in_flight };
            }
            std::thread::sleep(DRAIN_POLL.min(deadline.saturating_duration_since(Instant::now())));
        };
        change(self, app, |route| route.retire(upstream))?;
        Ok(drained)
    }

    /// Requests in flight to `upstream` now.
    fn in_flight(&self, upstream: SocketAddr) -> Result<u64, ProxyError> {
        let address = upstream.to_string();
        let served = self.served()?;
        Ok(served.upstreams.iter().filter(|u| u.address == address).map(|u| u.in_flight).sum())
    }
}

/// Loads `proxy`'s table with one change to `app`'s route (nothing when it changes nothing).
fn change<P: Proxy + ?Sized>(
    proxy: &mut P,
    app: &AppName,
    change: impl FnOnce(&mut Route),
) -> Result<(), ProxyError> {
    let mut table = proxy.table().clone();
    let route = table.apps.get_mut(app).ok_or_else(|| ProxyError::NoRoute(app.clone()))?;
    change(route);
    if table == *proxy.table() {
        return Ok(());
    }
    proxy.load(table)
}

#[cfg(test)]
mod tests {
    use super::fake::FakeProxy;
    use super::*;

    fn address(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn demo() -> AppName {
        AppName::new("demo").unwrap()
    }

    /// A proxy serving `demo` at demo.example.com from port 1.
    fn serving_demo() -> FakeProxy {
        let mut proxy = FakeProxy::default();
        let route = Route::new(vec![Domain::new("demo.example.com").unwrap()], Target::Up(vec![address(1)]));
        proxy.set_route(&demo(), route).unwrap();
        proxy
    }

    #[test]
    fn a_zero_downtime_swap_switches_then_drains_the_old_upstream() {
        let mut proxy = serving_demo();
        proxy.switch_upstream(&demo(), vec![address(2)]).unwrap();
        let route = &proxy.table().apps[&demo()];
        assert_eq!(route.target, Target::Up(vec![address(2)]));
        assert_eq!(route.draining, vec![address(1)]);
        proxy.set_in_flight(address(1), &[2, 1, 0]);
        assert_eq!(proxy.drain(&demo(), address(1), Duration::from_secs(5)).unwrap(), Drained::Idle);
        assert!(proxy.table().apps[&demo()].draining.is_empty());
        assert_eq!(proxy.table().apps[&demo()].slots, vec![[address(1), address(2)]]);
        assert_eq!(proxy.loads.len(), 3, "set, switch, forget the drained upstream's requests");
    }

    #[test]
    fn a_drain_that_times_out_says_how_many_requests_were_left() {
        let mut proxy = serving_demo();
        proxy.switch_upstream(&demo(), vec![address(2)]).unwrap();
        proxy.set_in_flight(address(1), &[3]);
        let drained = proxy.drain(&demo(), address(1), Duration::from_millis(150)).unwrap();
        assert_eq!(drained, Drained::TimedOut { in_flight: 3 });
        assert!(proxy.table().apps[&demo()].draining.is_empty());
    }

    #[test]
    fn an_exclusive_swap_holds_on_the_next_address_then_serves_it() {
        let mut proxy = serving_demo();
        proxy.hold(&demo(), address(1)).unwrap();
        assert_eq!(proxy.table().apps[&demo()].target, Target::Held(address(1)));
        proxy.switch_upstream(&demo(), vec![address(1)]).unwrap();
        let route = &proxy.table().apps[&demo()];
        assert_eq!(route.target, Target::Up(vec![address(1)]));
        assert!(route.draining.is_empty());
    }

    #[test]
    fn a_refused_load_keeps_the_previous_table() {
        let mut proxy = serving_demo();
        let before = proxy.table().clone();
        proxy.refuse_next = Some("listen tcp :80: bind: address already in use".into());
        let error = proxy.switch_upstream(&demo(), vec![address(2)]).unwrap_err();
        assert_eq!(
            error.to_string(),
            "the proxy refused the new routes and keeps serving the previous ones: listen tcp :80: bind: address already in use"
        );
        assert_eq!(*proxy.table(), before);
    }

    #[test]
    fn changes_to_an_unrouted_app_are_refused_and_removing_it_is_a_no_op() {
        let mut proxy = FakeProxy::default();
        let other = AppName::new("other").unwrap();
        assert!(matches!(proxy.hold(&other, address(1)), Err(ProxyError::NoRoute(_))));
        proxy.remove_route(&other).unwrap();
        assert!(proxy.loads.is_empty());
        let mut proxy = serving_demo();
        proxy.remove_route(&demo()).unwrap();
        assert!(proxy.table().apps.is_empty());
    }

    #[test]
    fn a_change_that_changes_nothing_loads_nothing() {
        let mut proxy = serving_demo();
        proxy.switch_upstream(&demo(), vec![address(1)]).unwrap();
        assert_eq!(proxy.loads.len(), 1);
    }
}
