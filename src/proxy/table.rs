//! The routing table as a value: for each app, the host names it answers at and where its
//! requests go. Built from berth's records ([`super::records`]), changed by the swap's steps,
//! rendered whole by a proxy implementation.

use std::collections::{BTreeMap, BTreeSet};
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
    /// The two addresses the proxy keeps configured for each web instance, in instance order:
    /// the two latest releases' (one address for an instance only one of them has). The next
    /// release's instance starts at the one not serving, so a rolling swap between the two
    /// sides, or an undo partway, only moves the app's marker and changes no proxy config.
    pub slots: Vec<[SocketAddr; 2]>,
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
        Route { hosts, target, draining: Vec::new(), slots: Vec::new(), hold: DEFAULT_HOLD }
    }

    /// Points new requests at `target`; upstreams that served until now and are not in it
    /// drain (a held address never served, so it does not). A target the slots do not lead to
    /// (a new address, a change of scale) re-pairs them: each instance that moves to an
    /// address outside its slot keeps the one it leaves as the slot's other side.
    pub fn switch_to(&mut self, target: Target) {
        let before = self.target.addresses();
        let next = target.addresses();
        let configured = self.sets().contains(&sorted(&next));
        if let Target::Up(previous) = &self.target {
            for address in previous {
                if !next.contains(address) && !self.draining.contains(address) {
                    self.draining.push(*address);
                }
            }
        }
        if !configured {
            self.slots = repaired(&self.slots, &before, &next);
        }
        self.draining.retain(|address| !next.contains(address));
        self.target = target;
    }

    /// A drained upstream gets no request any more (it stays configured while a slot has it).
    pub fn retire(&mut self, upstream: SocketAddr) {
        self.draining.retain(|address| *address != upstream);
    }

    /// The other address of the slot of the instance at `address`: where the instance's next
    /// container starts when it is free.
    pub fn standby_for(&self, address: SocketAddr) -> Option<SocketAddr> {
        let slot = self.slots.iter().find(|slot| slot.contains(&address))?;
        slot.iter().copied().find(|other| *other != address)
    }

    /// The upstream sets the proxy is configured for, in a fixed order: every set a rolling
    /// swap between the slots' two sides passes through, the target, and the draining
    /// upstreams no slot has (kept so their requests are counted until they finish). Which
    /// set serves does not change them.
    pub fn sets(&self) -> Vec<Vec<SocketAddr>> {
        let mut sets = ladders(&self.slots);
        sets.insert(sorted(&self.target.addresses()));
        let paired: Vec<SocketAddr> = self.slots.iter().flatten().copied().collect();
        sets.insert(sorted(
            &self.draining.iter().copied().filter(|a| !paired.contains(a)).collect::<Vec<_>>(),
        ));
        sets.into_iter().filter(|set| !set.is_empty()).collect()
    }

    /// Every address the proxy is configured for.
    pub fn configured(&self) -> Vec<SocketAddr> {
        let mut addresses: Vec<SocketAddr> = self.sets().into_iter().flatten().collect();
        addresses.sort();
        addresses.dedup();
        addresses
    }
}

/// The sets a rolling swap between the slots' sides passes through, either way: for each k,
/// the first k instances on one side and the others on the other (2n sets for n slots).
fn ladders(slots: &[[SocketAddr; 2]]) -> BTreeSet<Vec<SocketAddr>> {
    let side = |k: usize, first: usize| -> Vec<SocketAddr> {
        let addresses: Vec<SocketAddr> = slots
            .iter()
            .enumerate()
            .map(|(i, slot)| if i < k { slot[first] } else { slot[1 - first] })
            .collect();
        sorted(&addresses)
    };
    (0..=slots.len()).flat_map(|k| [side(k, 0), side(k, 1)]).filter(|set| !set.is_empty()).collect()
}

/// The slots for a move from `before` to `next` (both in instance order): an instance that
/// stays in its slot keeps it; one that moves elsewhere pairs its new address with the one it
/// leaves, on the side the slot had it; a new instance has one address.
fn repaired(slots: &[[SocketAddr; 2]], before: &[SocketAddr], next: &[SocketAddr]) -> Vec<[SocketAddr; 2]> {
    let slot_for = |i: usize, to: SocketAddr| -> [SocketAddr; 2] {
        let slot = slots.get(i).copied();
        match (slot, before.get(i).copied()) {
            (Some(slot), _) if slot.contains(&to) => slot,
            (Some([from, _]), Some(left)) if from == left => [left, to],
            (Some([_, from]), Some(left)) if from == left => [to, left],
            (_, Some(left)) => [left, to],
            (_, None) => [to, to],
        }
    };
    next.iter().enumerate().map(|(i, to)| slot_for(i, *to)).collect()
}

fn sorted(addresses: &[SocketAddr]) -> Vec<SocketAddr> {
    let mut addresses = addresses.to_vec();
    addresses.sort();
    addresses.dedup();
    addresses
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
    fn a_swap_between_a_slot_s_addresses_keeps_the_slot_and_the_sets() {
        let mut route = route(Target::Up(vec![address(1)]));
        route.slots = vec![[address(1), address(2)]];
        let sets = route.sets();
        assert_eq!(sets, vec![vec![address(1)], vec![address(2)]]);
        assert_eq!(route.standby_for(address(1)), Some(address(2)));
        route.switch_to(Target::Up(vec![address(2)]));
        route.retire(address(1));
        assert_eq!((route.slots.clone(), route.sets()), (vec![[address(1), address(2)]], sets));
        assert_eq!(route.standby_for(address(2)), Some(address(1)));
    }

    #[test]
    fn a_swap_to_an_address_outside_the_slot_pairs_it_with_the_one_it_leaves() {
        let mut route = route(Target::Up(vec![address(1)]));
        route.slots = vec![[address(1), address(2)]];
        route.switch_to(Target::Held(address(3)));
        assert_eq!(
            (route.draining.clone(), route.slots.clone()),
            (vec![address(1)], vec![[address(1), address(3)]])
        );
        let mut first = self::route(Target::Down);
        first.switch_to(Target::Up(vec![address(4)]));
        assert_eq!(first.slots, vec![[address(4), address(4)]], "a first instance has one address");
        assert_eq!(first.standby_for(address(4)), None);
    }

    /// Slots of three instances: `a` serves, `b` is on standby.
    fn three(a: u16, b: u16) -> Route {
        let (a, b) = ([a, a + 1, a + 2].map(address), [b, b + 1, b + 2].map(address));
        let mut route = route(Target::Up(a.to_vec()));
        route.slots = (0..3).map(|i| [a[i], b[i]]).collect();
        route
    }

    #[test]
    fn every_step_of_a_rolling_swap_and_of_its_undo_is_a_set_the_proxy_has() {
        let mut route = three(10, 20);
        let sets = route.sets();
        assert_eq!(sets.len(), 6, "2n sets for n instances: {sets:?}");
        let steps = [[20, 11, 12], [20, 21, 12], [20, 21, 22], [20, 11, 12], [10, 11, 12]];
        for step in steps {
            route.switch_to(Target::Up(step.map(address).to_vec()));
            route.draining.clone().into_iter().for_each(|old| route.retire(old));
            assert_eq!(route.sets(), sets, "at {step:?}");
        }
        // The next release goes back to the first side, through the other ladder.
        for step in [[20, 21, 22], [10, 21, 22], [10, 11, 22], [10, 11, 12]] {
            route.switch_to(Target::Up(step.map(address).to_vec()));
            assert_eq!(route.sets(), sets, "at {step:?}");
        }
        assert_eq!(three(20, 10).sets(), sets, "the records' slots (serving side first) give the same sets");
    }

    #[test]
    fn a_new_address_partway_re_pairs_its_slot_on_the_side_it_leaves() {
        let mut route = three(10, 20);
        for step in [[20, 11, 12], [20, 30, 12], [20, 30, 22]] {
            route.switch_to(Target::Up(step.map(address).to_vec()));
        }
        let [a, b, c, d, e, f] = [10, 20, 11, 30, 12, 22].map(address);
        assert_eq!(route.slots, vec![[a, b], [c, d], [e, f]]);
        let sets = route.sets();
        assert_eq!(three_slots_sets(&[[b, a], [d, c], [f, e]]), sets, "as the records will pair them");
    }

    fn three_slots_sets(slots: &[[SocketAddr; 2]]) -> Vec<Vec<SocketAddr>> {
        let mut route = route(Target::Up(slots.iter().map(|slot| slot[0]).collect()));
        route.slots = slots.to_vec();
        route.sets()
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
