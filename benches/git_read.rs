//! In-process costs of reading a pushed commit, on the synthetic repositories that
//! `scripts/bench.sh` prepares (it sets `BERTH_BENCH_REPOS` to their directory):
//!
//! - `validate/<repo>`: what pre-receive does first — open the repository, read `app.toml` from
//!   the commit, check it. It should not depend on the number of files or commits (it does on
//!   the size of the root tree, which has to be inflated and parsed: `files-100000-wide`).
//! - `tree_tar/<repo>`: the build context — `write_tree_tar` into a sink.
//!
//! Without `BERTH_BENCH_REPOS` (as `cargo test --all-targets` runs it) it does nothing.

use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use berth::git::PushedRepo;
use berth::manifest::{self, Policy};
use criterion::{BenchmarkId, Criterion, Throughput};

/// The repositories, in the order they are reported; missing ones are skipped.
const VALIDATE_REPOS: &[&str] =
    &["files-10", "files-10000", "files-100000", "history-10000", "files-100000-wide"];
const TAR_REPOS: &[&str] = &["files-10", "files-10000", "ctx-200mb"];

fn head(repo: &Path) -> Option<String> {
    let out = Command::new("git").arg("-C").arg(repo).args(["rev-parse", "main"]).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn validate(repo: &Path, commit: &str) -> usize {
    let repo = PushedRepo::open(repo).expect("open the repository");
    let bytes = repo
        .read_file(commit, manifest::FILE_NAME, manifest::MAX_BYTES)
        .expect("read app.toml")
        .expect("app.toml is in the commit");
    let policy = Policy { host_paths: &[], volumes: &[], drivers: &[], server: None };
    manifest::check(&bytes, &policy, &[]).expect("a valid app.toml").mounts.len()
}

/// Counts what it is given and drops it.
struct Counter(u64);

impl io::Write for Counter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn tree_tar(repo: &Path, commit: &str) -> u64 {
    let repo = PushedRepo::open(repo).expect("open the repository");
    let mut sink = Counter(0);
    repo.write_tree_tar(commit, &mut sink).expect("stream the tree");
    sink.0
}

fn main() {
    let Some(dir) = std::env::var_os("BERTH_BENCH_REPOS").map(PathBuf::from) else {
        eprintln!("git_read: BERTH_BENCH_REPOS is not set; run `bash scripts/bench.sh`");
        return;
    };
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    let present = |names: &[&'static str]| -> Vec<(&'static str, PathBuf, String)> {
        names
            .iter()
            .filter_map(|name| {
                let path = dir.join(format!("{name}.git"));
                head(&path).map(|commit| (*name, path, commit))
            })
            .collect()
    };

    let mut group = c.benchmark_group("validate");
    for (name, path, commit) in present(VALIDATE_REPOS) {
        group.bench_with_input(BenchmarkId::from_parameter(name), &(path, commit), |b, (path, commit)| {
            b.iter(|| validate(path, commit))
        });
    }
    group.finish();

    let mut group = c.benchmark_group("tree_tar");
    group.sample_size(10).measurement_time(Duration::from_secs(5));
    for (name, path, commit) in present(TAR_REPOS) {
        group.throughput(Throughput::Bytes(tree_tar(&path, &commit)));
        group.bench_with_input(BenchmarkId::from_parameter(name), &(path, commit), |b, (path, commit)| {
            b.iter(|| tree_tar(path, commit))
        });
    }
    group.finish();

    c.final_summary();
}
