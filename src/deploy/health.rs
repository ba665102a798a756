//! When a started container counts as healthy: its HTTP health check answers 2xx, or, without
//! one, it stays up for the settle time without exiting or being restarted.

use std::net::SocketAddr;
use std::time::Instant;

use super::{DeployError, Result, Timing};
use crate::engine::ContainerFacts;
use crate::output::Reporter;
use crate::scheduler::Scheduler;
use crate::state::Release;

/// Waits until a started container counts as healthy (its health check asked at `upstream`,
/// the address the proxy will dial); returns its host port on the loopback address.
pub(super) fn wait_healthy(
    scheduler: &dyn Scheduler,
    process: &str,
    name: &str,
    upstream: Option<SocketAddr>,
    release: &Release,
    timing: Timing,
    out: &Reporter,
) -> Result<Option<u16>> {
    let port = inspect(scheduler, process, name)?.host_port;
    match ((process == "web").then_some(release.run.healthcheck.as_deref()).flatten(), upstream) {
        (Some(path), Some(upstream)) => wait_http(scheduler, process, name, path, upstream, timing, out),
        _ => wait_settled(scheduler, process, name, timing, out),
    }
    .map(|()| port)
}

fn unhealthy(process: &str, reason: String) -> DeployError {
    DeployError::Unhealthy { process: process.to_string(), reason }
}

fn inspect(scheduler: &dyn Scheduler, process: &str, name: &str) -> Result<ContainerFacts> {
    scheduler.inspect_container(name)?.ok_or_else(|| unhealthy(process, "the container vanished".into()))
}

/// Polls `GET path` until it answers 2xx, the container exits, or the health timeout passes.
fn wait_http(
    scheduler: &dyn Scheduler,
    process: &str,
    name: &str,
    path: &str,
    upstream: SocketAddr,
    timing: Timing,
    out: &Reporter,
) -> Result<()> {
    let started = Instant::now();
    out.detail(format!("Waiting for http://{upstream}{path} to answer 2xx"));
    loop {
        let facts = inspect(scheduler, process, name)?;
        if let Some(reason) = exited(&facts) {
            return Err(unhealthy(process, reason));
        }
        let last = match scheduler.http_status(upstream, path) {
            Ok(status) if (200..300).contains(&status) => {
                out.detail(format!("Healthy: {path} answered {status}"));
                return Ok(());
            }
            Ok(status) => format!("{path} answered {status}"),
            Err(e) => e.to_string(),
        };
        if started.elapsed() > timing.health_timeout {
            let limit = timing.health_timeout.as_secs();
            return Err(unhealthy(process, format!("no 2xx from {path} within {limit}s ({last})")));
        }
        std::thread::sleep(timing.poll);
    }
}

/// Waits the settle time, then checks that the container is still up.
fn wait_settled(
    scheduler: &dyn Scheduler,
    process: &str,
    name: &str,
    timing: Timing,
    out: &Reporter,
) -> Result<()> {
    out.detail(format!("Waiting {}s to check that {name} stays up", timing.settle.as_secs()));
    std::thread::sleep(timing.settle);
    match exited(&inspect(scheduler, process, name)?) {
        None => {
            out.detail("Default container check successful");
            Ok(())
        }
        Some(reason) => Err(unhealthy(process, reason)),
    }
}

/// Why a started container does not count as up: it is stopped, or it exited and its restart
/// policy brought it back (a crash loop can look running between two restarts).
fn exited(facts: &ContainerFacts) -> Option<String> {
    let status = facts.exit_code.unwrap_or(-1);
    if facts.restart_count > 0 {
        Some(format!(
            "the container exited and was restarted {} time(s) (status {status})",
            facts.restart_count
        ))
    } else if !facts.running {
        Some(format!("the container exited with status {status}"))
    } else {
        None
    }
}
