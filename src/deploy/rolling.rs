//! A rolling swap: the instances of a release replace the old ones one at a time — the new one
//! started beside the old one, healthy, routed, then the old one drained and stopped — so an
//! app of n instances never has fewer than n-1 healthy ones routed. A process with an
//! exclusive mount (one instance) stops its old container first, with the proxy holding
//! requests. A failure partway undoes the replaced instances in reverse: each old instance
//! starts again and is routed before its successor goes.

use std::net::SocketAddr;
use std::time::Duration;

use super::fault::fault_point;
use super::health::wait_healthy;
use super::route::Routing;
use super::specs::ProcessSpec;
use super::stop::{stop, stop_and_remove, stop_timeout};
use super::swap::Serving;
use super::{RELEASE_LABEL, RETIRING, Result, Timing};
use crate::engine::{ContainerFacts, ContainerSpec};
use crate::network::NETWORK;
use crate::output::Reporter;
use crate::scheduler::Scheduler;
use crate::state::Release;

/// Which instances a swap replaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replace {
    /// Every instance gets a new container (a push, `ps:restart`, a rollback).
    Every,
    /// An instance already running the release stays (`ps:scale`: only the count changes).
    Missing,
}

/// One instance mid-swap: its new container, and the old one set aside.
pub(super) struct Swap {
    pub name: String,
    process: String,
    pub had_old: bool,
    /// The old container was stopped (it is started again on undo).
    pub stopped_old: bool,
    exclusive: bool,
    /// Where the proxy reached the old instance.
    old_upstream: Option<SocketAddr>,
    /// Where the proxy reaches the new instance, once it is routed.
    routed: Option<SocketAddr>,
}

impl Swap {
    pub fn retiring(&self) -> String {
        format!("{}.{RETIRING}", self.name)
    }
}

/// The instances of one release replacing those of the previous one.
pub(super) struct Rolling<'a> {
    scheduler: &'a dyn Scheduler,
    routing: &'a mut Routing,
    release: &'a Release,
    /// The release serving before, whose instances an undo starts again.
    previous: Option<&'a Release>,
    timing: Timing,
    timeout: Duration,
    /// The route before the swap, and now.
    before: Vec<SocketAddr>,
    upstreams: Vec<SocketAddr>,
    swaps: Vec<Swap>,
    out: &'a Reporter,
}

impl<'a> Rolling<'a> {
    pub fn new(
        scheduler: &'a dyn Scheduler,
        routing: &'a mut Routing,
        release: &'a Release,
        previous: Option<&'a Release>,
        timing: Timing,
        out: &'a Reporter,
    ) -> Rolling<'a> {
        let before = routing.current();
        Rolling {
            scheduler,
            routing,
            release,
            previous,
            timing,
            timeout: stop_timeout(&release.run, timing),
            upstreams: before.clone(),
            before,
            swaps: Vec::new(),
            out,
        }
    }

    /// What was swapped so far, in order.
    pub fn swaps(&self) -> &[Swap] {
        &self.swaps
    }

    /// Replaces every instance in `specs` order, then routes only the release's web instances
    /// (those above the new scale leave the route). Returns where web serves.
    pub fn replace_all(&mut self, specs: &mut [ProcessSpec], replace: Replace) -> Result<Serving> {
        let mut serving = Serving::default();
        for ProcessSpec { process, spec } in specs.iter_mut() {
            let (port, upstream) = self.replace_one(process, spec, replace)?;
            if process == "web" {
                serving.host_port = serving.host_port.or(port);
                serving.upstreams.extend(upstream);
            }
        }
        if !serving.upstreams.is_empty() && serving.upstreams != self.upstreams {
            self.routing.switch(&serving.upstreams, self.out)?;
            self.upstreams.clone_from(&serving.upstreams);
        }
        Ok(serving)
    }

    /// Replaces one instance: returns its host port and upstream once it is healthy and routed.
    fn replace_one(
        &mut self,
        process: &str,
        spec: &mut ContainerSpec,
        replace: Replace,
    ) -> Result<(Option<u16>, Option<SocketAddr>)> {
        let old = self.scheduler.inspect_container(&spec.name)?;
        if let Some(facts) =
            old.as_ref().filter(|facts| replace == Replace::Missing && self.runs_release(facts))
        {
            self.out.detail(format!("{} already runs release {}", spec.name, self.release.number));
            let upstream = self.upstream_of(facts);
            if let Some(upstream) = upstream.filter(|u| !self.upstreams.contains(u)) {
                let next = [self.upstreams.as_slice(), &[upstream]].concat();
                self.routing.switch(&next, self.out)?;
                self.upstreams = next;
            }
            return Ok((facts.host_port, upstream));
        }
        let old_upstream = old.as_ref().and_then(|facts| self.upstream_of(facts));
        if self.release.run.web_port.is_some() && process == "web" {
            spec.address = Some(self.routing.next_address(self.scheduler, old_upstream)?);
        }
        let exclusive = self.release.run.exclusive.iter().any(|p| p == process);
        self.swaps.push(Swap {
            name: spec.name.clone(),
            process: process.to_string(),
            had_old: old.is_some(),
            stopped_old: false,
            exclusive,
            old_upstream,
            routed: None,
        });
        let upstream = upstream(spec, self.release);
        if old.is_some() {
            let retiring = format!("{}.{RETIRING}", spec.name);
            stop_and_remove(self.scheduler, &retiring, self.timeout, self.out)?;
            self.scheduler.rename_container(&spec.name, &retiring)?;
            if exclusive {
                self.stop_first(process, &retiring, upstream)?;
            }
        }
        start_new(self.scheduler, process, spec, self.out)?;
        fault_point("after-start", self.out);
        let port =
            wait_healthy(self.scheduler, process, &spec.name, upstream, self.release, self.timing, self.out)?;
        if let Some(to) = upstream {
            self.route_in(to)?;
        }
        fault_point("before-retire", self.out);
        if old.is_some() && !exclusive {
            let retiring = format!("{}.{RETIRING}", spec.name);
            self.out.step(format!("Stopping {retiring} (SIGTERM, up to {}s)", self.timeout.as_secs()));
            stop(self.scheduler, &retiring, self.timeout, self.out)?;
            self.mark_last(|swap| swap.stopped_old = true);
        }
        Ok((port, upstream))
    }

    /// Exclusive mounts: the proxy holds requests for the new address, the old container stops.
    fn stop_first(&mut self, process: &str, retiring: &str, next: Option<SocketAddr>) -> Result<()> {
        if let Some(next) = next {
            self.routing.hold(next, self.out)?;
        }
        self.out.detail(format!("Stopping the old {process} container first (exclusive mounts)"));
        // From here on a failure starts the old container again.
        self.mark_last(|swap| swap.stopped_old = true);
        stop(self.scheduler, retiring, self.timeout, self.out)?;
        Ok(())
    }

    /// The new instance at `to` takes its predecessor's place in the route (or joins it).
    fn route_in(&mut self, to: SocketAddr) -> Result<()> {
        let old = self.swaps.last().and_then(|swap| swap.old_upstream);
        let mut next = self.upstreams.clone();
        match old.and_then(|old| next.iter().position(|u| *u == old)) {
            Some(at) => next[at] = to,
            None => next.push(to),
        }
        // Only a route the proxy took is one an undo starts from.
        self.routing.switch(&next, self.out)?;
        self.upstreams = next;
        self.mark_last(|swap| swap.routed = Some(to));
        Ok(())
    }

    fn mark_last(&mut self, change: impl FnOnce(&mut Swap)) {
        if let Some(swap) = self.swaps.last_mut() {
            change(swap);
        }
    }

    fn runs_release(&self, facts: &ContainerFacts) -> bool {
        facts.running && facts.labels.get(RELEASE_LABEL) == Some(&self.release.number.to_string())
    }

    /// Where the proxy reaches a running container: the route's address with its IP.
    fn upstream_of(&self, facts: &ContainerFacts) -> Option<SocketAddr> {
        let ip = facts.addresses.get(NETWORK)?;
        let routed = self.upstreams.iter().find(|u| u.ip() == std::net::IpAddr::V4(*ip)).copied();
        routed.or_else(|| self.release.run.web_port.map(|port| SocketAddr::from((*ip, port))))
    }

    /// Puts the old instances back, the last replaced first, then the route as it was.
    pub fn undo(&mut self) {
        let swaps = std::mem::take(&mut self.swaps);
        for swap in swaps.iter().rev() {
            self.undo_one(swap);
        }
        if self.routing.current() != self.before {
            self.routing.restore(&self.before, self.out);
        }
    }

    fn undo_one(&mut self, swap: &Swap) {
        // A routed instance of a shared process leaves only once its old one serves again.
        let old_first = swap.routed.is_some() && swap.stopped_old && !swap.exclusive;
        if old_first {
            self.start_old(swap);
            self.route_back(swap);
        }
        if let Err(e) = stop_and_remove(self.scheduler, &swap.name, self.timeout, self.out) {
            self.out.warn(format!("could not remove {}: {e}", swap.name));
        }
        if !swap.had_old {
            return;
        }
        if let Err(e) = self.scheduler.rename_container(&swap.retiring(), &swap.name) {
            self.out.warn(format!("could not restore {}: {e}; run `berth ps:restart`", swap.name));
        } else if swap.stopped_old
            && !old_first
            && let Err(e) = self.scheduler.start_container(&swap.name)
        {
            self.out.warn(format!("could not start {} again: {e}; run `berth ps:restart`", swap.name));
        }
    }

    /// Starts a stopped old instance again and waits until it is healthy.
    fn start_old(&self, swap: &Swap) {
        let retiring = swap.retiring();
        self.out.step(format!("Starting {retiring} again"));
        let started = self.scheduler.start_container(&retiring).map_err(Into::into).and_then(|()| {
            let Some(previous) = self.previous else { return Ok(None) };
            wait_healthy(
                self.scheduler,
                &swap.process,
                &retiring,
                swap.old_upstream,
                previous,
                self.timing,
                self.out,
            )
        });
        if let Err(e) = started {
            self.out.warn(format!("{retiring} did not start again: {e}; run `berth ps:restart`"));
        }
    }

    /// The route sends the new instance's share back to its old one.
    fn route_back(&mut self, swap: &Swap) {
        let (Some(new), Some(old)) = (swap.routed, swap.old_upstream) else { return };
        if let Some(at) = self.upstreams.iter().position(|u| *u == new) {
            self.upstreams[at] = old;
        }
        if let Err(e) = self.routing.switch(&self.upstreams, self.out) {
            self.out.warn(format!("could not route {} back to {old}: {e}", swap.name));
        }
    }
}

fn start_new(scheduler: &dyn Scheduler, process: &str, spec: &ContainerSpec, out: &Reporter) -> Result<()> {
    out.step(format!("Starting {process} ({})", spec.name));
    scheduler.create_container(spec)?;
    Ok(scheduler.start_container(&spec.name)?)
}

/// Where the proxy reaches a web container: its fixed address and the app's port.
fn upstream(spec: &ContainerSpec, release: &Release) -> Option<SocketAddr> {
    let ip = spec.address.as_ref()?.ip;
    release.run.web_port.map(|port| SocketAddr::from((ip, port)))
}
