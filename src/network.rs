//! berth's engine network, `berth`, where every web container listens at a fixed address the
//! proxy dials directly (its port is published on the host's loopback address only, for the
//! host's own use). Nothing of an app answers on another interface except through the proxy.
//! A fixed address stays the container's across engine
//! restarts and reboots, so the proxy's routes stay right, and it is known before the
//! container starts, so an exclusive swap can hold requests for it.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, Write};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

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
    #[error("cannot {action} the host's address reservations {} ({source})", path.display())]
    Reservations {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What an allocation prefers and avoids, besides the addresses containers have.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddressRequest {
    /// Taken when free, first one first: the app's standby address, which the proxy already
    /// routes to.
    pub prefer: Vec<Ipv4Addr>,
    /// Never taken: addresses the berth root's proxy keeps for other apps.
    pub avoid: Vec<Ipv4Addr>,
    /// Where the search for a free address starts (modulo the subnet): each berth root has its
    /// own, so that roots sharing an engine rarely take an address another keeps on standby
    /// (which costs that one's next swap a reload of the proxy, not a failure).
    pub start: u64,
}

/// A free address on berth's network (created when missing): a preferred one, else the first
/// free one from the request's start. Several berth roots may share one engine, and an
/// address is the container's only once the container is created: each allocation is made
/// under a host-wide lock and recorded for as long as the allocating process lives
/// ([`Reservations`]), so no other process on the host takes it meanwhile.
pub fn allocate(engine: &Engine, request: &AddressRequest) -> Result<NetworkAddress, NetworkError> {
    let labels = HashMap::from([("berth.network".to_string(), "web".to_string())]);
    let subnet = engine.ensure_network(NETWORK, &labels)?.ok_or(NetworkError::NoSubnet)?;
    let mut reservations = Reservations::lock(&Reservations::path())?;
    let mut taken = engine.network_addresses(NETWORK)?;
    taken.extend(reservations.held());
    taken.extend(&request.avoid);
    let ip = pick(subnet, &taken, request).ok_or(NetworkError::Full(subnet))?;
    reservations.hold(ip, std::process::id())?;
    Ok(NetworkAddress { network: NETWORK.to_string(), ip })
}

/// A preferred address that is usable and free, else the first free one from the request's
/// start.
fn pick(subnet: Subnet, taken: &[Ipv4Addr], request: &AddressRequest) -> Option<Ipv4Addr> {
    let free = |ip: &&Ipv4Addr| usable(subnet, **ip) && !taken.contains(ip);
    request.prefer.iter().find(free).copied().or_else(|| free_address(subnet, taken, request.start))
}

/// The addresses berth processes on this host allocated, one `<ip> <pid>` line each, in a
/// file locked while it is read and changed. A line counts while its process runs: by then
/// the container it was for holds the address in its config, or the deploy failed.
struct Reservations {
    file: File,
    path: PathBuf,
    lines: Vec<(Ipv4Addr, u32)>,
}

impl Reservations {
    /// Host-wide: under `/run/lock` (the temp dir where it is missing).
    fn path() -> PathBuf {
        let dir = Path::new("/run/lock");
        let dir = if dir.is_dir() { dir.to_path_buf() } else { std::env::temp_dir() };
        dir.join("berth-network-addresses")
    }

    fn lock(path: &Path) -> Result<Reservations, NetworkError> {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        let error =
            |action| move |source| NetworkError::Reservations { action, path: path.to_path_buf(), source };
        let mut file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o666)
            .open(path)
            .map_err(error("open"))?;
        file.lock().map_err(error("lock"))?;
        // Every user that runs berth shares it (umask would narrow the mode).
        if file.metadata().is_ok_and(|m| m.permissions().mode() & 0o777 != 0o666) {
            let _ = file.set_permissions(std::fs::Permissions::from_mode(0o666));
        }
        let mut text = String::new();
        file.read_to_string(&mut text).map_err(error("read"))?;
        let lines = parse_reservations(&text).into_iter().filter(|(_, pid)| process_runs(*pid)).collect();
        Ok(Reservations { file, path: path.to_path_buf(), lines })
    }

    fn held(&self) -> impl Iterator<Item = Ipv4Addr> + '_ {
        self.lines.iter().map(|(ip, _)| *ip)
    }

    /// Records `ip` for `pid` and rewrites the file without the lines of ended processes.
    fn hold(&mut self, ip: Ipv4Addr, pid: u32) -> Result<(), NetworkError> {
        self.lines.push((ip, pid));
        let text: String = self.lines.iter().map(|(ip, pid)| format!("{ip} {pid}\n")).collect();
        let path = &self.path;
        let error = |action| move |source| NetworkError::Reservations { action, path: path.clone(), source };
        self.file.set_len(0).map_err(error("truncate"))?;
        self.file.rewind().map_err(error("rewind"))?;
        self.file.write_all(text.as_bytes()).map_err(error("write"))
    }
}

/// The `<ip> <pid>` lines of a reservations file; a line that is not one (a write cut short)
/// is skipped: it only ever reserved an address for a deploy.
fn parse_reservations(text: &str) -> Vec<(Ipv4Addr, u32)> {
    text.lines()
        .filter_map(|line| {
            let (ip, pid) = line.split_once(' ')?;
            Some((ip.parse().ok()?, pid.trim().parse().ok()?))
        })
        .collect()
}

fn process_runs(pid: u32) -> bool {
    Path::new("/proc").join(pid.to_string()).exists()
}

/// The first address of `subnet` nobody uses, searching from `start` (modulo the usable range)
/// and wrapping around, leaving out the network's own address, its gateway (the first address,
/// the engine's choice) and the broadcast address.
fn free_address(subnet: Subnet, used: &[Ipv4Addr], start: u64) -> Option<Ipv4Addr> {
    let base = u32::from(subnet.base);
    let usable = size(subnet).saturating_sub(3);
    (0..usable)
        .map(|i| 2 + (start.wrapping_add(i) % usable.max(1)))
        .filter_map(|offset| u32::try_from(offset).ok())
        .map(|offset| Ipv4Addr::from(base.wrapping_add(offset)))
        .find(|ip| !used.contains(ip))
}

/// Whether a container may have `ip`: in `subnet`, and not the network's own address, its
/// gateway (the first address, the engine's choice) or the broadcast address.
fn usable(subnet: Subnet, ip: Ipv4Addr) -> bool {
    let offset = u64::from(u32::from(ip).wrapping_sub(u32::from(subnet.base)));
    (2..size(subnet).saturating_sub(1)).contains(&offset)
}

fn size(subnet: Subnet) -> u64 {
    1u64 << (32 - u32::from(subnet.prefix))
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
    fn a_free_preferred_address_is_taken_else_the_first_free_one_from_the_start() {
        let ip = |text: &str| text.parse::<Ipv4Addr>().unwrap();
        let net = subnet("172.18.0.0/16");
        let prefer =
            |text: &str| AddressRequest { prefer: vec![ip(text)], start: 10, ..AddressRequest::default() };
        assert_eq!(pick(net, &[], &prefer("172.18.0.9")), Some(ip("172.18.0.9")));
        assert_eq!(pick(net, &[ip("172.18.0.9")], &prefer("172.18.0.9")), Some(ip("172.18.0.12")));
        assert_eq!(pick(net, &[], &prefer("10.0.0.9")), Some(ip("172.18.0.12")), "outside the subnet");
        assert_eq!(pick(net, &[], &prefer("172.18.0.1")), Some(ip("172.18.0.12")), "the gateway");
        assert_eq!(pick(net, &[], &prefer("172.18.255.255")), Some(ip("172.18.0.12")), "the broadcast");
    }

    #[test]
    fn reservations_of_running_processes_hold_and_others_lapse() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("reservations");
        let ip = |text: &str| text.parse::<Ipv4Addr>().unwrap();
        // Pid 0 is never a process in /proc: its line lapses.
        std::fs::write(&path, "172.18.0.5 0\nnot a line\n").unwrap();
        let mut reservations = Reservations::lock(&path).unwrap();
        assert_eq!(reservations.held().count(), 0);
        reservations.hold(ip("172.18.0.6"), std::process::id()).unwrap();
        drop(reservations);
        let again = Reservations::lock(&path).unwrap();
        assert_eq!(again.held().collect::<Vec<_>>(), vec![ip("172.18.0.6")]);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), format!("172.18.0.6 {}\n", std::process::id()));
    }

    #[test]
    fn subnets_parse_and_print_as_the_engine_writes_them() {
        assert_eq!(subnet("172.18.0.0/16").to_string(), "172.18.0.0/16");
        assert_eq!(Subnet::parse("172.18.0.0"), None);
        assert_eq!(Subnet::parse("172.18.0.0/33"), None);
        assert_eq!(Subnet::parse("fd00::/64"), None);
    }
}
