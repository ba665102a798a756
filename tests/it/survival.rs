//! Data survives: a checksummed data set in each kind of mount — an app directory, an app
//! volume, a granted host path and a named storage entry — is verified after every redeploy,
//! after the entry is unmounted and mounted again, after the repo mounts are removed from
//! `app.toml` and added back, after a rollback, and after `apps:destroy` (without
//! `--purge-storage`) and a fresh `apps:create` and push.
//!
//! CI runs 5 redeploys; the long run is
//! `BERTH_SURVIVAL_REDEPLOYS=200 cargo test --release --test it survival -- --nocapture`.

use std::collections::BTreeSet;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use crate::concurrency::PUSH_ENV;
use crate::engine::mounts_of;
use crate::push::{App, Repo, get, post};
use crate::test::Test;

/// `len` bytes from a 64-bit LCG (Knuth's MMIX constants) seeded with `seed`: the same bytes
/// on every run, and no two seeds alike.
pub fn lcg_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x2545_f491_4f6c_dd1d;
    (0..len)
        .map(|_| {
            state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            (state >> 56) as u8
        })
        .collect()
}

/// A checksum of the bytes (64-bit FNV-1a) with their length: `<len>:<hex>`.
pub fn digest(bytes: &[u8]) -> String {
    let hash = bytes
        .iter()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3));
    format!("{}:{hash:016x}", bytes.len())
}

/// The kinds of mount the data set lives in, with their paths in the container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    AppDir,
    AppVolume,
    HostPath,
    Entry,
}

const KINDS: [Kind; 4] = [Kind::AppDir, Kind::AppVolume, Kind::HostPath, Kind::Entry];
const FILES: usize = 3;
const FILE_BYTES: usize = 100 * 1024;

impl Kind {
    fn target(self) -> &'static str {
        match self {
            Kind::AppDir => "/app/storage",
            Kind::AppVolume => "/app/data",
            Kind::HostPath => "/app/granted",
            Kind::Entry => "/app/entry",
        }
    }
}

/// `docker <args>` that must succeed; returns its stdout as bytes.
fn docker_bytes(args: &[&str], stdin: Option<&[u8]>) -> Vec<u8> {
    let mut child = Command::new("docker")
        .args(args)
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(bytes) = stdin {
        child.stdin.take().unwrap().write_all(bytes).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "docker {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// The data set and where each part of it lives.
struct DataSet<'a> {
    app: &'a App<'a>,
    granted: PathBuf,
    entry_dir: PathBuf,
    files: Vec<(Kind, String, Vec<u8>)>,
    verified_bytes: u64,
    verifications: u64,
}

impl DataSet<'_> {
    fn volume(&self) -> String {
        format!("{}_data", self.app.name)
    }

    fn host_dir(&self, kind: Kind) -> Option<PathBuf> {
        match kind {
            Kind::AppDir => Some(self.app.dir("uploads")),
            Kind::AppVolume => None,
            Kind::HostPath => Some(self.granted.clone()),
            Kind::Entry => Some(self.entry_dir.clone()),
        }
    }

    /// Writes the data set: through the app's HTTP upload (app directory), with `docker exec`
    /// in its container as its user (volume, entry), and on the host (granted path).
    fn write(&self) {
        let web = self.app.container("web");
        let url = self.app.url();
        for (kind, name, bytes) in &self.files {
            match kind {
                Kind::AppDir => {
                    let stored = post(&url, &format!("/cgi-bin/upload?name={name}"), bytes);
                    assert_eq!(stored.status, 200, "{}", stored.text());
                }
                Kind::AppVolume | Kind::Entry => {
                    let write = format!("cat > {}/{name}", kind.target());
                    docker_bytes(&["exec", "-i", &web, "sh", "-c", &write], Some(bytes));
                }
                Kind::HostPath => fs::write(self.granted.join(name), bytes).unwrap(),
            }
        }
    }

    /// Checks every file's checksum where it lives: on the host for directories, through a
    /// throw-away container for the volume; and, for the kinds in `mounted`, inside the app's
    /// web container too.
    fn verify(&mut self, step: &str, mounted: &[Kind]) {
        let volume = self.volume();
        let names: Vec<String> = self
            .files
            .iter()
            .filter(|(k, _, _)| *k == Kind::AppVolume)
            .map(|(_, n, _)| format!("/v/{n}"))
            .collect();
        let mount = format!("{volume}:/v:ro");
        let mut cat = vec!["run", "--rm", "-v", &mount, "berth-base:latest", "cat"];
        cat.extend(names.iter().map(String::as_str));
        let from_volume = docker_bytes(&cat, None);
        let expected_volume: Vec<u8> = self
            .files
            .iter()
            .filter(|(k, _, _)| *k == Kind::AppVolume)
            .flat_map(|(_, _, b)| b.iter().copied())
            .collect();
        assert_eq!(digest(&from_volume), digest(&expected_volume), "{step}: volume {volume}");
        self.verified_bytes += from_volume.len() as u64;
        for (kind, name, bytes) in &self.files {
            if let Some(dir) = self.host_dir(*kind) {
                let on_host =
                    fs::read(dir.join(name)).unwrap_or_else(|e| panic!("{step}: {kind:?} {name}: {e}"));
                assert_eq!(digest(&on_host), digest(bytes), "{step}: {kind:?} {name} on the host");
                self.verified_bytes += on_host.len() as u64;
            }
        }
        if !mounted.is_empty() {
            let paths: Vec<String> = self
                .files
                .iter()
                .filter(|(k, _, _)| mounted.contains(k))
                .map(|(k, n, _)| format!("{}/{n}", k.target()))
                .collect();
            let expected: Vec<u8> = self
                .files
                .iter()
                .filter(|(k, _, _)| mounted.contains(k))
                .flat_map(|(_, _, b)| b.iter().copied())
                .collect();
            let web = self.app.container("web");
            let mut args = vec!["exec", web.as_str(), "cat"];
            args.extend(paths.iter().map(String::as_str));
            let seen = docker_bytes(&args, None);
            assert_eq!(digest(&seen), digest(&expected), "{step}: inside {web}");
            self.verified_bytes += seen.len() as u64;
        }
        self.verifications += 1;
    }
}

/// app.toml of the web sample with the repo mounts of `kinds` (the entry is the admin's).
fn app_toml(kinds: &[Kind], granted: &Path) -> String {
    let mut toml = "[app]\nuser = \"1000\"\n\n[web]\nport = 5000\nhealthcheck = \"/health\"\n".to_string();
    for kind in kinds {
        let source = match kind {
            Kind::AppDir => "./uploads".to_string(),
            Kind::AppVolume => "data".to_string(),
            Kind::HostPath => granted.display().to_string(),
            Kind::Entry => continue,
        };
        toml.push_str(&format!(
            "\n[[storage.mounts]]\nsource = \"{source}\"\ntarget = \"{}\"\n",
            kind.target()
        ));
    }
    toml
}

const REPO_KINDS: [Kind; 3] = [Kind::AppDir, Kind::AppVolume, Kind::HostPath];

fn redeploys() -> usize {
    std::env::var("BERTH_SURVIVAL_REDEPLOYS").ok().and_then(|v| v.parse().ok()).unwrap_or(5)
}

/// The targets the web container mounts.
fn targets(app: &App) -> BTreeSet<String> {
    mounts_of(&app.container("web")).into_iter().map(|(_, target, _)| target).collect()
}

fn expect_targets(app: &App, kinds: &[Kind]) {
    let expected: BTreeSet<String> = kinds.iter().map(|k| k.target().to_string()).collect();
    assert_eq!(targets(app), expected);
}

#[test]
fn data_in_every_kind_of_mount_survives_redeploys_remounts_rollback_and_recreation() {
    let started = Instant::now();
    let t = Test::new();
    let app = App::create(&t, "survival");
    let granted_dir = tempfile::Builder::new().prefix("berth-it-granted-").tempdir().unwrap();
    let granted = granted_dir.path().to_path_buf();
    let entry = format!("{}-entry", app.name);
    let admin = |app: &App| {
        app.berth("storage:allow", &[&granted.display().to_string()]).success();
        app.berth("storage:mount", &[&entry, "--container-dir", Kind::Entry.target()]).success();
    };
    t.ok(["storage:create", &entry, "--chown", "1000"]);
    admin(&app);
    let repo = Repo::from_template("web");
    let push = |text: &str| {
        repo.write("www/index.html", text).commit(text);
        let out = repo.push_refspec(&app, "main", &PUSH_ENV).success();
        assert_eq!(get(&app.url(), "/").text(), text, "{out}");
    };
    repo.write("app.toml", &app_toml(&REPO_KINDS, &granted));
    push("release 1\n");
    expect_targets(&app, &KINDS);

    let files = KINDS
        .iter()
        .enumerate()
        .flat_map(|(k, kind)| {
            (0..FILES)
                .map(move |f| (*kind, format!("f{f}.bin"), lcg_bytes((k * FILES + f) as u64 + 1, FILE_BYTES)))
        })
        .collect();
    let mut data = DataSet {
        app: &app,
        granted: granted.clone(),
        entry_dir: t.path(format!("data/storage/{entry}")),
        files,
        verified_bytes: 0,
        verifications: 0,
    };
    data.write();
    data.verify("written", &KINDS);

    // Redeploys.
    let n = redeploys();
    for i in 1..=n {
        push(&format!("redeploy {i}\n"));
        data.verify(&format!("redeploy {i}"), &KINDS);
    }

    // The admin's entry unmounted and mounted again.
    app.berth("storage:unmount", &[&entry]).success();
    app.berth("ps:restart", &[]).success();
    expect_targets(&app, &REPO_KINDS);
    data.verify("entry unmounted", &REPO_KINDS);
    app.berth("storage:mount", &[&entry, "--container-dir", Kind::Entry.target()]).success();
    app.berth("ps:restart", &[]).success();
    expect_targets(&app, &KINDS);
    data.verify("entry mounted again", &KINDS);

    // The repo mounts removed from app.toml, then added back.
    repo.write("app.toml", &app_toml(&[], &granted));
    push("no repo mounts\n");
    expect_targets(&app, &[Kind::Entry]);
    data.verify("repo mounts removed", &[Kind::Entry]);
    repo.write("app.toml", &app_toml(&REPO_KINDS, &granted));
    push("repo mounts back\n");
    expect_targets(&app, &KINDS);
    data.verify("repo mounts back", &KINDS);

    // A rollback (to the release with the mounts back).
    push("one more\n");
    let rolled = app.berth("rollback", &[]).success();
    assert_eq!(get(&app.url(), "/").text(), "repo mounts back\n", "{rolled}");
    expect_targets(&app, &KINDS);
    data.verify("rollback", &KINDS);

    // Destroyed without --purge-storage, created again, pushed again.
    let destroyed = app.berth("apps:destroy", &["--force"]).success();
    assert!(destroyed.stderr.contains("Preserving storage directory"), "{destroyed}");
    assert!(app.containers().is_empty());
    data.verify("app destroyed", &[]);
    t.app(&app.name);
    admin(&app);
    push("recreated\n");
    expect_targets(&app, &KINDS);
    data.verify("app recreated", &KINDS);

    println!(
        "survival: {n} redeploys survived; {} checksum rounds over {} files in 4 kinds of mount, {} bytes verified in {:.1}s",
        data.verifications,
        KINDS.len() * FILES,
        data.verified_bytes,
        started.elapsed().as_secs_f64()
    );
}
