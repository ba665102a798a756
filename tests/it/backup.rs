//! `storage:backup` and `storage:restore` end to end: a round trip of an app directory, an app
//! volume and a storage entry compared by the test's own walk (owners, modes, mtimes, links,
//! sparse files, bytes), a migration with `--as`, and every hostile or broken stream refused
//! with the live data untouched. `BERTH_BIG=1` makes the round trip 1 GB.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::engine::docker;
use crate::push::{App, Repo};
use crate::test::Test;

/// An app named `bk-<tag>-<pid>`, destroyed with its storage when dropped.
fn bk_app<'t>(t: &'t Test, tag: &str) -> App<'t> {
    let app = App { t, name: format!("bk-{tag}-{}", std::process::id()) };
    t.app(&app.name);
    app
}

/// What the test's walk sees of one path.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    kind: &'static str,
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: i64,
    size: u64,
    sha256: String,
    link: Option<PathBuf>,
    /// The first path sharing this inode (hard links).
    same_as: Option<PathBuf>,
    sparse: bool,
}

/// Every path below `root` (not `root` itself) with what matters about it.
fn walk(root: &Path) -> BTreeMap<PathBuf, Seen> {
    let mut seen = BTreeMap::new();
    let mut inodes: BTreeMap<u64, PathBuf> = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let mut children: Vec<PathBuf> = fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
        children.sort();
        for path in children {
            let rel = path.strip_prefix(root).unwrap().to_path_buf();
            let meta = fs::symlink_metadata(&path).unwrap();
            let kind = if meta.is_dir() {
                stack.push(path.clone());
                "dir"
            } else if meta.file_type().is_symlink() {
                "symlink"
            } else {
                "file"
            };
            let sha256 = if kind == "file" { hex(&Sha256::digest(fs::read(&path).unwrap())) } else { String::new() };
            let same_as = if kind == "file" && meta.nlink() > 1 {
                let first = inodes.entry(meta.ino()).or_insert_with(|| rel.clone()).clone();
                (first != rel).then_some(first)
            } else {
                None
            };
            seen.insert(rel, Seen {
                kind,
                mode: meta.mode() & 0o7777,
                uid: meta.uid(),
                gid: meta.gid(),
                mtime: if kind == "dir" { 0 } else { meta.mtime() },
                size: if kind == "dir" { 0 } else { meta.len() },
                sha256,
                link: (kind == "symlink").then(|| fs::read_link(&path).unwrap()),
                same_as,
                sparse: kind == "file" && meta.len() > 1 << 20 && meta.blocks() * 512 < meta.len() / 2,
            });
        }
    }
    seen
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A tree with what a backup must keep: owners, modes, a hard link, a symlink, an empty
/// directory, a sparse file, and `bytes` of ordinary data over many files.
fn fill(dir: &Path, bytes: u64) {
    let sub = dir.join("sub/deeper");
    fs::create_dir_all(&sub).unwrap();
    fs::create_dir_all(dir.join("empty")).unwrap();
    fs::write(dir.join("hello.txt"), "hello-content\n").unwrap();
    fs::hard_link(dir.join("hello.txt"), dir.join("sub/hello-link.txt")).unwrap();
    std::os::unix::fs::symlink("../hello.txt", dir.join("sub/hello-symlink")).unwrap();
    std::os::unix::fs::symlink("/nowhere/at/all", dir.join("dangling")).unwrap();
    fs::write(dir.join("secret"), "s3cret").unwrap();
    fs::set_permissions(dir.join("secret"), fs::Permissions::from_mode(0o600)).unwrap();
    std::os::unix::fs::chown(dir.join("secret"), Some(1234), Some(5678)).unwrap();
    fs::write(sub.join("setgid-tool"), "#!/bin/sh\n").unwrap();
    std::os::unix::fs::chown(sub.join("setgid-tool"), Some(1000), Some(1000)).unwrap();
    fs::set_permissions(sub.join("setgid-tool"), fs::Permissions::from_mode(0o2755)).unwrap();
    fs::set_permissions(dir.join("empty"), fs::Permissions::from_mode(0o1777)).unwrap();
    let sparse = fs::File::create(dir.join("sparse.img")).unwrap();
    sparse.set_len(64 << 20).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&sparse, b"middle", 32 << 20).unwrap();
    let files = 100u64.max(bytes / (100 << 10)).min(10_000);
    let chunk = (bytes / files).max(1);
    let mut block = vec![0u8; chunk as usize];
    for i in 0..files {
        let d = dir.join(format!("data/{:03}", i % 100));
        fs::create_dir_all(&d).unwrap();
        for (j, b) in block.iter_mut().enumerate() {
            *b = (i as usize * 31 + j * 7) as u8 | 1;
        }
        fs::write(d.join(format!("f{i}")), &block).unwrap();
    }
}

/// Runs berth and returns its stdout as bytes (a stream, not text); it must succeed.
fn stdout_bytes(t: &Test, args: &[&str]) -> Vec<u8> {
    let out = std::process::Command::new(crate::test::BERTH).args(args).env("BERTH_ROOT", t.root()).output().unwrap();
    assert!(out.status.success(), "berth {args:?} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

fn volume_dir(volume: &str) -> PathBuf {
    PathBuf::from(docker(&["volume", "inspect", "-f", "{{.Mountpoint}}", volume]).trim())
}

/// The data size of the round trip: small in CI, 1 GB with `BERTH_BIG=1`.
fn round_trip_bytes() -> u64 {
    if std::env::var_os("BERTH_BIG").is_some() { 1 << 30 } else { 4 << 20 }
}

/// The web sample with an app volume too, pushed, and an entry mounted by the admin.
fn deployed<'t>(t: &'t Test, tag: &str, entry: &str) -> (App<'t>, Repo) {
    let app = bk_app(t, tag);
    let repo = Repo::from_template("web");
    repo.write("app.toml", &format!("{}\n[[storage.mounts]]\nsource = \"vol\"\ntarget = \"/app/vol\"\n", repo.read("app.toml")));
    repo.commit("an app volume");
    repo.push(&app).success();
    t.ok(["storage:create", entry]);
    t.ok(["storage:mount", &app.name, entry, "--container-dir", "/app/entry"]);
    t.ok(["ps:restart", &app.name]);
    (app, repo)
}

fn trees(t: &Test, app: &App, entry: &str) -> [PathBuf; 3] {
    [app.dir("uploads"), volume_dir(&format!("{}_vol", app.name)), t.path(format!("data/storage/{entry}"))]
}

#[test]
fn round_trip_restores_every_byte_owner_mode_and_link() {
    let t = Test::new();
    let entry = format!("bk-entry-{}", std::process::id());
    let (app, _repo) = deployed(&t, "trip", &entry);
    let dirs = trees(&t, &app, &entry);
    for dir in &dirs {
        fill(dir, round_trip_bytes() / 3);
    }
    let before: Vec<_> = dirs.iter().map(|d| walk(d)).collect();
    let scratch = tempfile::tempdir().unwrap();
    let archive = scratch.path().join("bk-trip.tar");
    let out = t.ok(["storage:backup", &app.name, "--stop", "-o", archive.to_str().unwrap()]);
    assert!(out.stdout.contains("Backed up 3 mount(s)"), "{out}");
    assert_eq!(app.ps("ps-running"), "true", "--stop starts the app again\n{out}");

    // A mistake: data deleted and changed.
    fs::remove_dir_all(dirs[0].join("sub")).unwrap();
    fs::write(dirs[1].join("hello.txt"), "changed").unwrap();
    fs::write(dirs[2].join("junk"), "junk").unwrap();

    let refused = t.args(["storage:restore", &app.name, "-i", archive.to_str().unwrap()]).run();
    assert!(refused.stderr.contains("is running; stop it first"), "{refused}");
    let out = t.ok(["storage:restore", &app.name, "--stop", "-i", archive.to_str().unwrap()]);
    assert!(out.stdout.contains("The data it replaced is kept at"), "{out}");
    let after: Vec<_> = dirs.iter().map(|d| walk(d)).collect();
    for (i, (before, after)) in before.iter().zip(&after).enumerate() {
        let after: BTreeMap<_, _> = after.iter().filter(|(p, _)| !p.starts_with(".berth-replaced-") && !p.to_string_lossy().starts_with(".berth-replaced-")).map(|(p, s)| (p.clone(), s.clone())).collect();
        assert_eq!(before, &after, "tree {i} ({}) differs after the round trip", dirs[i].display());
        assert!(after[Path::new("sparse.img")].sparse, "the sparse file stays sparse");
        assert_eq!(after[Path::new("sub/hello-link.txt")].same_as.as_deref(), Some(Path::new("hello.txt")));
    }
    let uploads = fs::metadata(&dirs[0]).unwrap();
    assert_eq!((uploads.uid(), uploads.gid()), (1000, 1000), "the top directory keeps its owner");

    // The replaced data is kept, listed, and pruned on request.
    let kept: Vec<_> = fs::read_dir(app.dir("")).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).filter(|n| n.starts_with("uploads.replaced-")).collect();
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert!(app.dir(&kept[0]).join("hello.txt").exists() && !app.dir(&kept[0]).join("sub").exists());
    let report = t.ok(["storage:report", &app.name]);
    assert!(report.stdout.contains(&kept[0]), "{report}");
    t.ok(["storage:prune-restores", &app.name, "--force"]);
    assert!(!app.dir(&kept[0]).exists());
    assert!(!walk(&dirs[1]).keys().any(|p| p.to_string_lossy().starts_with(".berth-replaced-")));
}

#[test]
fn restore_as_another_app_migrates_the_data() {
    let t = Test::new();
    let entry = format!("bk-mig-entry-{}", std::process::id());
    let (from, repo) = deployed(&t, "from", &entry);
    fill(&from.dir("uploads"), 1 << 20);
    fill(&volume_dir(&format!("{}_vol", from.name)), 1 << 20);
    let to = bk_app(&t, "to");
    repo.push(&to).success();
    let stream = stdout_bytes(&t, &["storage:backup", &from.name, "--mount", "/app/storage", "--mount", "/app/vol"]);
    // The stream went to stdout: berth's own lines went to stderr.
    assert!(stream.starts_with(b"berth-backup/manifest.json"), "{}", String::from_utf8_lossy(&stream[..64]));

    let wrong = t.args(["storage:restore", &to.name, "--stop"]).stdin(&stream).run();
    assert!(wrong.stderr.contains(&format!("this backup is of app {}", from.name)), "{wrong}");
    t.args(["storage:restore", &from.name, "--as", &to.name, "--stop"]).stdin(&stream).run().success();
    assert_eq!(walk(&from.dir("uploads")), walk(&to.dir("uploads")));
    assert_eq!(walk(&volume_dir(&format!("{}_vol", from.name))), walk(&volume_dir(&format!("{}_vol", to.name))));
    assert_eq!(to.ps("ps-running"), "true");
}
