//! A test-only switch to prove crash safety: with the `fault-injection` feature (enabled for
//! berth's own tests only), `BERTH_FAULT=<point>` aborts the process at that step of a deploy
//! (as `kill -9` would) and `BERTH_FAULT=<point>:pause` stops there until killed. Points:
//! after-build, after-storage, after-build-command, after-start, before-retire, after-retire,
//! after-release-write. Release builds compile it to nothing.

use crate::output::Reporter;

#[cfg(feature = "fault-injection")]
pub fn fault_point(point: &str, out: &Reporter) {
    let Ok(wanted) = std::env::var("BERTH_FAULT") else { return };
    let (name, mode) = wanted.split_once(':').unwrap_or((wanted.as_str(), "abort"));
    if name != point {
        return;
    }
    out.warn(format!("BERTH_FAULT: stopping at {point} ({mode})"));
    if mode == "pause" {
        loop {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        }
    }
    std::process::abort();
}

#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub fn fault_point(_point: &str, _out: &Reporter) {}
