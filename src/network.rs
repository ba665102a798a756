//! berth's engine network, `berth`, where every web container listens at a fixed address the
//! proxy dials directly (its port is published on the host's loopback address only, for the
//! host's own use). Nothing of an app answers on another interface except through the proxy. A fixed address stays the container's across engine
//! restarts and reboots, so the proxy's routes stay right, and it is known before the
//! container starts, so an exclusive swap can hold requests for it.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use crate::engine::{Engine, EngineError, NetworkAddress, Subnet};

/// The engine network web containers join.
pub const NETWORK: &str = "berth";

#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(
        "the engine network {NETWORK} has no IPv4 subnet; remove it (docker network rm {NETWORK}) and deploy again"
    )]
    NoSubnet,
    #[error("every address of the engine network {NETWORK} ({0}) is taken")]
    Full(Subnet),
}

/// A free address on berth's network (created when missing). Within one berth root the deploy
/// calls it with the proxy's lock held, which every swap takes. Several roots may share one
/// engine (the tests do) and do not share that lock: the search starts at an offset drawn from
/// the process and the clock, so two of them rarely look at the same address first.
pub fn allocate(engine: &Engine) -> Result<NetworkAddress, NetworkError> {
    let labels = HashMap::from([("berth.network".to_string(), "web".to_string())]);
    let subnet = engine.ensure_network(NETWORK, &labels)?.ok_or(NetworkError::NoSubnet)?;
    let used = engine.network_addresses(NETWORK)?;
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    let start = u64::from(std::process::id()).wrapping_mul(2_654_435_761) ^ u64::from(nanos);
    let ip = free_address(subnet, &used, start).ok_or(NetworkError::Full(subnet))?;
    Ok(NetworkAddress { network: NETWORK.to_string(), ip })
}

/// The first address of `subnet` nobody uses, searching from `start` (modulo the usable range)
/// and wrapping around, leaving out the network's own address, its gateway (the first address,
/// the engine's choice) and the broadcast address.
fn free_address(subnet: Subnet, used: &[Ipv4Addr], start: u64) -> Option<Ipv4Addr> {
    let base = u32::from(subnet.base);
    let size = 1u64 << (32 - u32::from(subnet.prefix));
    let usable = size.saturating_sub(3);
    (0..usable)
        .map(|i| 2 + (start.wrapping_add(i) % usable.max(1)))
        .filter_map(|offset| u32::try_from(offset).ok())
        .map(|offset| Ipv4Addr::from(base.wrapping_add(offset)))
        .find(|ip| !used.contains(ip))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subnet(text: &str) -> Subnet {
        Subnet::parse(text).unwrap()
    }

    #[test]
    fn the_first_free_address_skips_the_gateway_and_taken_ones() {
        let ip = |text: &str| text.parse::<Ipv4Addr>().unwrap();
        let first_free = |subnet, used: &[Ipv4Addr]| free_address(subnet, used, 0);
        assert_eq!(first_free(subnet("172.18.0.0/16"), &[]), Some(ip("172.18.0.2")));
        assert_eq!(
            first_free(subnet("172.18.0.0/16"), &[ip("172.18.0.2"), ip("172.18.0.3")]),
            Some(ip("172.18.0.4"))
        );
        assert_eq!(first_free(subnet("10.0.0.0/30"), &[]), Some(ip("10.0.0.2")));
        assert_eq!(first_free(subnet("10.0.0.0/30"), &[ip("10.0.0.2")]), None, "only the gateway is left");
        assert_eq!(first_free(subnet("10.0.0.0/29"), &[ip("10.0.0.2")]), Some(ip("10.0.0.3")));
        let all: Vec<Ipv4Addr> = (2..7).map(|i| Ipv4Addr::new(10, 0, 0, i)).collect();
        assert_eq!(first_free(subnet("10.0.0.0/29"), &all), None);
    }

    #[test]
    fn the_search_starts_anywhere_and_wraps_around() {
        let ip = |text: &str| text.parse::<Ipv4Addr>().unwrap();
        assert_eq!(free_address(subnet("172.18.0.0/16"), &[], 100), Some(ip("172.18.0.102")));
        // A /29 has 5 usable addresses (.2 to .6): from the last one, the search wraps to .2.
        assert_eq!(free_address(subnet("10.0.0.0/29"), &[ip("10.0.0.6")], 4), Some(ip("10.0.0.2")));
        assert_eq!(free_address(subnet("10.0.0.0/29"), &[], 7), Some(ip("10.0.0.4")));
    }

    #[test]
    fn subnets_parse_and_print_as_the_engine_writes_them() {
        assert_eq!(subnet("172.18.0.0/16").to_string(), "172.18.0.0/16");
        assert_eq!(Subnet::parse("172.18.0.0"), None);
        assert_eq!(Subnet::parse("172.18.0.0/33"), None);
        assert_eq!(Subnet::parse("fd00::/64"), None);
    }
}
