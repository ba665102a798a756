//! `tar_stream <repo> <commit> [<out>]`: streams the commit's tree as a build context (the tar
//! berth sends the engine) to `<out>` (default standard output), so `scripts/bench.sh` can time
//! it beside `git archive <commit>` and measure its peak memory with `/usr/bin/time -v`.
//!
//! The archive goes through a 64 KiB buffer, as git archive's output goes through its own
//! block buffer; in a deploy it goes to the engine through a bounded channel instead.
//!
//! With `BERTH_BENCH_RSS=<file>`, a thread samples `/proc/self/status` every millisecond and
//! writes the peaks `<VmHWM> <RssAnon> <RssFile>` (KiB) to `<file>`: the anonymous part is what
//! berth allocates, the file part is pack files libgit2 maps (page cache, shared).
//!
//! Without arguments (as `cargo bench` and `cargo test --all-targets` run it) it does nothing.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use berth::git::PushedRepo;

/// A field of `/proc/self/status`, in KiB.
fn status_kib(status: &str, field: &str) -> u64 {
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|value| value.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Samples the memory of this process until `done`; returns the peaks (VmHWM, RssAnon, RssFile).
fn sample_rss(done: Arc<AtomicBool>) -> std::thread::JoinHandle<[u64; 3]> {
    std::thread::spawn(move || {
        let mut peaks = [0; 3];
        loop {
            let finished = done.load(Ordering::Relaxed);
            if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
                for (peak, field) in peaks.iter_mut().zip(["VmHWM", "RssAnon", "RssFile"]) {
                    *peak = (*peak).max(status_kib(&status, field));
                }
            }
            if finished {
                return peaks;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    })
}

/// As the pre-receive hook does (hooks/pre_receive.rs), so the memory measured is the hook's.
#[allow(unsafe_code)]
fn limit_mapped_packs() {
    // SAFETY: first thing in `main`, before the sampling thread starts.
    unsafe {
        let _ = git2::opts::set_mwindow_size(berth::git::PACK_WINDOW);
        let _ = git2::opts::set_mwindow_mapped_limit(berth::git::MAPPED_PACK_LIMIT);
    }
}

fn main() -> ExitCode {
    limit_mapped_packs();
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let (repo, commit, out) = match args.as_slice() {
        [repo, commit] => (repo, commit, "/dev/stdout"),
        [repo, commit, out] => (repo, commit, out.as_str()),
        _ => {
            eprintln!("tar_stream: usage: tar_stream <repo> <commit> [<out>] (run by scripts/bench.sh)");
            return ExitCode::SUCCESS;
        }
    };
    let file = match File::create(out) {
        Ok(file) => file,
        Err(error) => {
            eprintln!("tar_stream: {out}: {error}");
            return ExitCode::FAILURE;
        }
    };
    let rss_report = std::env::var_os("BERTH_BENCH_RSS");
    let done = Arc::new(AtomicBool::new(false));
    let sampler = rss_report.is_some().then(|| sample_rss(done.clone()));
    let mut out = BufWriter::with_capacity(64 << 10, file);
    let result = PushedRepo::open(Path::new(repo)).and_then(|repo| repo.write_tree_tar(commit, &mut out));
    done.store(true, Ordering::Relaxed);
    if let (Some(path), Some(sampler)) = (rss_report, sampler) {
        let [hwm, anon, file] = sampler.join().unwrap_or_default();
        if let Err(error) = std::fs::write(&path, format!("{hwm} {anon} {file}\n")) {
            eprintln!("tar_stream: {}: {error}", Path::new(&path).display());
        }
    }
    match result.map_err(|e| e.to_string()).and_then(|()| out.flush().map_err(|e| e.to_string())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("tar_stream: {error}");
            ExitCode::FAILURE
        }
    }
}
