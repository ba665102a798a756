//! Stopping containers that may be writing: the stop signal (SIGTERM unless the image says
//! otherwise), the app's stop timeout, and only then SIGKILL, said out loud. Removal always
//! comes after the stop, never instead of it.

use std::time::Duration;

use super::{Result, Timing};
use crate::output::Reporter;
use crate::scheduler::{Scheduler, Stopped};
use crate::state::RunConfig;

/// How long a container of a release gets between the stop signal and SIGKILL:
/// `[app].stop_timeout`, else `BERTH_STOP_TIMEOUT`.
pub fn stop_timeout(run: &RunConfig, timing: Timing) -> Duration {
    run.stop_timeout.map_or(timing.stop_timeout, |seconds| Duration::from_secs(seconds.into()))
}

/// Stops a container within `timeout`; a container that had to be killed is reported.
pub fn stop(scheduler: &dyn Scheduler, name: &str, timeout: Duration, out: &Reporter) -> Result<Stopped> {
    let stopped = scheduler.stop(name, timeout)?;
    if stopped == Stopped::Killed {
        out.warn(format!(
            "{name} did not exit within {}s of SIGTERM; it was killed (SIGKILL)",
            timeout.as_secs()
        ));
    }
    Ok(stopped)
}

/// Stops a container within `timeout`, then removes it.
pub fn stop_and_remove(
    scheduler: &dyn Scheduler,
    name: &str,
    timeout: Duration,
    out: &Reporter,
) -> Result<()> {
    stop(scheduler, name, timeout, out)?;
    Ok(scheduler.remove_container(name)?)
}
