//! The routing table as a value: for each app, the host names it answers at and where its
//! requests go. Built from berth's records ([`super::records`]), changed by the swap's steps,
//! rendered whole by a proxy implementation.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use super::Domain;
use crate::names::AppName;

/// How long a request waits for an upstream to answer, unless the app says otherwise.
pub const DEFAULT_HOLD: Duration = Duration::from_secs(30);

/// Every app's route.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Table {
    pub apps: BTreeMap<AppName, Route>,
}

/// Where one app's requests go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Every host name the app answers at: its own domains and `<app>.<global domain>`.
    pub hosts: Vec<Domain>,
    pub target: Target,
    /// Upstreams that get no new request but may still be answering some (after a switch).
    pub draining: Vec<SocketAddr>,
    /// Addresses the proxy is configured for that get no request: where the app's next
    /// instances start (the previous release's), so that a swap changes no proxy config.
    pub standby: Vec<SocketAddr>,
    /// How long a request waits for an upstream to answer before it fails (502).
    pub hold: Duration,
}

/// Where new requests for an app go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// No release serves the app: requests get a 503 at once.
    Down,
    /// The web instances of the serving release.
    Up(Vec<SocketAddr>),
    /// An address that does not answer yet: requests wait for it, up to the route's hold.
    Held(SocketAddr),
}

impl Target {
    /// The addresses requests may be sent to.
    pub fn addresses(&self) -> Vec<SocketAddr> {
        match self {
            Target::Down => Vec::new(),
            Target::Up(addresses) => addresses.clone(),
            Target::Held(address) => vec![*address],
        }
    }
}

impl Route {
    pub fn new(hosts: Vec<Domain>, target: Target) -> Route {
        Route { hosts, target, draining: Vec::new(), standby: Vec::new(), hold: DEFAULT_HOLD }
    }

    /// Points new requests at `target`; upstreams that served until now and are not in it
    /// drain (a held address never served, so it does not). A swap away from serving upstreams
    /// to addresses that were not on standby drops the standby ones (they were not free): the
    /// set serving until now keeps its name in the proxy's config, so it serves on until the
    /// marker moves.
    pub fn switch_to(&mut self, target: Target) {
        let next = target.addresses();
        if let Target::Up(previous) = &self.target {
            if !next.iter().all(|address| self.standby.contains(address)) {
                self.standby.clear();
            }
            for address in previous {
                if !next.contains(address) && !self.draining.contains(address) {
                    self.draining.push(*address);
                }
            }
        }
        self.draining.retain(|address| !next.contains(address));
        self.standby.retain(|address| !next.contains(address));
        self.target = target;
    }

    /// A drained upstream gets no request any more; it stays configured, on standby for the
    /// app's next instance.
    pub fn retire(&mut self, upstream: SocketAddr) {
        self.draining.retain(|address| *address != upstream);
        if !self.target.addresses().contains(&upstream) && !self.standby.contains(&upstream) {
            self.standby.push(upstream);
        }
    }

    /// Every address the proxy is configured for that gets no new request.
    pub fn spare(&self) -> Vec<SocketAddr> {
        let mut spare = self.draining.clone();
        spare.extend(self.standby.iter().filter(|a| !self.draining.contains(a)));
        spare
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn address(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn route(target: Target) -> Route {
        Route::new(vec![Domain::new("demo.example.com").unwrap()], target)
    }

    #[test]
    fn a_switch_drains_the_previous_upstreams() {
        let mut route = route(Target::Up(vec![address(1)]));
        route.switch_to(Target::Up(vec![address(2)]));
        assert_eq!(route.target, Target::Up(vec![address(2)]));
        assert_eq!(route.draining, vec![address(1)]);
        route.switch_to(Target::Up(vec![address(3)]));
        assert_eq!(route.draining, vec![address(1), address(2)]);
    }

    #[test]
    fn switching_back_to_a_draining_upstream_serves_it_again() {
        let mut route = route(Target::Up(vec![address(1)]));
        route.switch_to(Target::Up(vec![address(2)]));
        route.switch_to(Target::Up(vec![address(1)]));
        assert_eq!(route.draining, vec![address(2)]);
    }

    #[test]
    fn a_drained_upstream_goes_on_standby_and_serving_it_again_takes_it_off() {
        let mut route = route(Target::Up(vec![address(1)]));
        route.standby = vec![address(2)];
        route.switch_to(Target::Up(vec![address(2)]));
        assert!(route.standby.is_empty());
        assert_eq!(route.spare(), vec![address(1)]);
        route.retire(address(1));
        assert_eq!((route.draining.clone(), route.standby.clone()), (vec![], vec![address(1)]));
        assert_eq!(route.spare(), vec![address(1)], "the proxy keeps the same addresses");
        route.retire(address(2));
        assert_eq!(route.standby, vec![address(1)], "a serving upstream is not on standby");
    }

    #[test]
    fn a_swap_to_an_address_that_was_not_on_standby_drops_the_standby_ones() {
        let mut route = route(Target::Up(vec![address(1)]));
        route.standby = vec![address(2)];
        route.switch_to(Target::Held(address(3)));
        assert_eq!((route.draining.clone(), route.standby.clone()), (vec![address(1)], vec![]));
        let mut route = super::Route { standby: vec![address(2)], ..route };
        route.switch_to(Target::Up(vec![address(3)]));
        assert_eq!(route.standby, vec![address(2)], "from a hold, nothing served: the standby stays");
    }

    #[test]
    fn a_hold_follows_a_route_that_served_nothing() {
        let mut route = route(Target::Down);
        route.switch_to(Target::Held(address(1)));
        assert!(route.draining.is_empty());
        route.switch_to(Target::Up(vec![address(1)]));
        assert!(route.draining.is_empty(), "a held address that now serves does not drain");
    }
}
