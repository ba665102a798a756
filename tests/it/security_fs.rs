//! Runtime attacks on berth's host filesystem work: a directory swapped for a symlink while an
//! admin's chown walks it, and the app's storage root an app must never be given.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::engine::docker;
use crate::push::{App, Repo};
use crate::test::Test;

/// Swaps `dir/sub` for a symlink to `host` and back, as fast as it can, until stopped.
fn swap_until(stop: Arc<AtomicBool>, dir: PathBuf, host: PathBuf) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut swaps = 0;
        while !stop.load(Ordering::Relaxed) {
            if fs::rename(dir.join("sub"), dir.join("real")).is_ok() {
                let _ = std::os::unix::fs::symlink(&host, dir.join("sub"));
                swaps += 1;
                // Each state lasts a moment, so a walk meets both.
                std::thread::sleep(Duration::from_micros(300));
                let _ = fs::remove_file(dir.join("sub"));
                let _ = fs::rename(dir.join("real"), dir.join("sub"));
                std::thread::sleep(Duration::from_micros(300));
            }
        }
        swaps
    })
}

/// Every file of `dir` with its owner.
fn owners(dir: &Path) -> Vec<(String, u32)> {
    let mut all: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.metadata().unwrap().uid()))
        .collect();
    all.sort();
    all
}

/// Against the path-based walk of main this re-owned the scratch files within a few rounds.
#[test]
fn an_admin_chown_never_follows_a_directory_swapped_mid_walk() {
    let t = Test::new();
    t.ok(["storage:create", "swapped"]);
    let entry = t.path("data/storage/swapped");
    fs::create_dir(entry.join("sub")).unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let host = scratch.path().join("host");
    fs::create_dir(&host).unwrap();
    for i in 0..300 {
        fs::write(entry.join("sub").join(i.to_string()), "x").unwrap();
        fs::write(host.join(i.to_string()), "x").unwrap();
    }
    let (before, host_uid) = (owners(&host), fs::metadata(&host).unwrap().uid());
    let stop = Arc::new(AtomicBool::new(false));
    let swapper = swap_until(stop.clone(), entry.clone(), host.clone());
    for round in 0..30 {
        let uid = (2000 + round).to_string();
        // A walk that meets a half-swapped tree may refuse; it must never reach the host.
        let _ = t.args(["storage:set", "swapped", "chown", &uid]).run();
    }
    stop.store(true, Ordering::Relaxed);
    assert!(swapper.join().unwrap() > 0, "the swap never happened");
    assert_eq!(owners(&host), before, "a host file changed owner");
    assert_eq!(fs::metadata(&host).unwrap().uid(), host_uid);
}

/// `[app].user` gets the mounted directories only: the app's storage root and the parents
/// of `./a/b` stay berth's, so a later push can add directories, and `BERTH_ROOT/data` is
/// closed to other host users.
#[test]
fn the_app_storage_root_stays_berths_and_a_later_push_adds_a_directory() {
    let t = Test::new();
    let app = App::create(&t, "keeproot");
    let repo = Repo::from_template("web");
    repo.push(&app).success();
    let berth_uid = fs::metadata(t.root()).unwrap().uid();
    let root_dir = fs::metadata(app.dir("")).unwrap();
    assert_eq!((root_dir.uid(), root_dir.mode() & 0o7777), (berth_uid, 0o755), "the app root was given away");
    assert_eq!(fs::metadata(app.dir("uploads")).unwrap().uid(), 1000);
    let data = fs::metadata(t.path("data")).unwrap();
    assert_eq!((data.uid(), data.permissions().mode() & 0o7777), (berth_uid, 0o700));

    let more = "\n[[storage.mounts]]\nsource = \"./new/deep\"\ntarget = \"/app/deep\"\n";
    repo.write("app.toml", &format!("{}{more}", repo.read("app.toml"))).commit("a new directory");
    repo.push(&app).success();
    assert_eq!(fs::metadata(app.dir("new")).unwrap().uid(), berth_uid, "an intermediate was given away");
    assert_eq!(fs::metadata(app.dir("new/deep")).unwrap().uid(), 1000);
}

/// A pushed image whose `chown` is hostile is never what gives a new volume to `[app].user`:
/// berth's own helper image does, so the script's marker never appears.
#[test]
fn the_pushed_images_chown_never_runs_for_storage() {
    let t = Test::new();
    let app = App::create(&t, "evilchown");
    let repo = Repo::from_template("web");
    let evil = "RUN rm /bin/chown && printf '#!/bin/sh\\nfor d; do touch \"$d/pwned\"; done\\n' >/bin/chown \
                && chmod 755 /bin/chown\nUSER 1000\n";
    repo.write("Dockerfile", &repo.read("Dockerfile").replace("USER 1000\n", evil));
    let more = "\n[[storage.mounts]]\nsource = \"data\"\ntarget = \"/app/data\"\n";
    repo.write("app.toml", &format!("{}{more}", repo.read("app.toml"))).commit("a hostile chown");
    repo.push(&app).success();

    let volume = format!("{}_data", app.name);
    let seen = docker(&[
        "run",
        "--rm",
        "-v",
        &format!("{volume}:/v"),
        "berth-base:latest",
        "sh",
        "-c",
        "stat -c %u /v; ls -A /v",
    ]);
    assert_eq!(seen.trim(), "1000", "the volume is given to [app].user and holds no marker");
    assert!(!app.dir("uploads/pwned").exists());
    assert!(docker(&["images", "--format", "{{.Repository}}"]).lines().any(|r| r == "berth-helper"));
}
