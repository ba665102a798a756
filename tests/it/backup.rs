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
            let sha256 =
                if kind == "file" { hex(&Sha256::digest(fs::read(&path).unwrap())) } else { String::new() };
            let same_as = if kind == "file" && meta.nlink() > 1 {
                let first = inodes.entry(meta.ino()).or_insert_with(|| rel.clone()).clone();
                (first != rel).then_some(first)
            } else {
                None
            };
            seen.insert(
                rel,
                Seen {
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
                },
            );
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
    let out = std::process::Command::new(crate::test::BERTH)
        .args(args)
        .env("BERTH_ROOT", t.root())
        .output()
        .unwrap();
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
    repo.write(
        "app.toml",
        &format!("{}\n[[storage.mounts]]\nsource = \"vol\"\ntarget = \"/app/vol\"\n", repo.read("app.toml")),
    );
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
        let after: BTreeMap<_, _> = after
            .iter()
            .filter(|(p, _)| {
                !p.starts_with(".berth-replaced-") && !p.to_string_lossy().starts_with(".berth-replaced-")
            })
            .map(|(p, s)| (p.clone(), s.clone()))
            .collect();
        assert_eq!(before, &after, "tree {i} ({}) differs after the round trip", dirs[i].display());
        assert!(after[Path::new("sparse.img")].sparse, "the sparse file stays sparse");
        assert_eq!(after[Path::new("sub/hello-link.txt")].same_as.as_deref(), Some(Path::new("hello.txt")));
    }
    let uploads = fs::metadata(&dirs[0]).unwrap();
    assert_eq!((uploads.uid(), uploads.gid()), (1000, 1000), "the top directory keeps its owner");

    // The replaced data is kept, listed, and pruned on request.
    let kept: Vec<_> = fs::read_dir(app.dir(""))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("uploads.replaced-"))
        .collect();
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
    let stream =
        stdout_bytes(&t, &["storage:backup", &from.name, "--mount", "/app/storage", "--mount", "/app/vol"]);
    // The stream went to stdout: berth's own lines went to stderr.
    assert!(stream.starts_with(b"berth-backup/manifest.json"), "{}", String::from_utf8_lossy(&stream[..64]));

    let wrong = t.args(["storage:restore", &to.name, "--stop"]).stdin(&stream).run();
    assert!(wrong.stderr.contains(&format!("this backup is of app {}", from.name)), "{wrong}");
    t.args(["storage:restore", &from.name, "--as", &to.name, "--stop"]).stdin(&stream).run().success();
    assert_eq!(walk(&from.dir("uploads")), walk(&to.dir("uploads")));
    assert_eq!(
        walk(&volume_dir(&format!("{}_vol", from.name))),
        walk(&volume_dir(&format!("{}_vol", to.name)))
    );
    assert_eq!(to.ps("ps-running"), "true");
}

/// An app mounting one entry (no push needed) whose directory holds `live.txt`; returns the
/// app and the entry's source name.
fn entry_app<'t>(t: &'t Test, tag: &str) -> (App<'t>, String) {
    let app = bk_app(t, tag);
    let entry = format!("bk-h-{tag}-{}", std::process::id());
    t.ok(["storage:create", &entry]);
    t.ok(["storage:mount", &app.name, &entry, "--container-dir", "/data"]);
    fs::write(t.path(format!("data/storage/{entry}/live.txt")), "live-content\n").unwrap();
    (app, format!("entry:{entry}"))
}

/// A hand-made stream with one mount, member by member, with no checks on names.
struct Crafted {
    tar: tar::Builder<Vec<u8>>,
}

impl Crafted {
    fn new(app: &str, source: &str, target: &str, files: u64, bytes: u64) -> Crafted {
        let manifest = serde_json::json!({
            "format": 2, "app": app, "release": null, "created_at": 0, "berth_version": "test",
            "mounts": [{"id": "m0", "source": source, "target": target, "kind": "bind", "host": "/x",
                        "root": {"uid": 0, "gid": 0, "mode": 493, "mtime": 0}, "files": files, "bytes": bytes}],
        });
        let crafted = Crafted { tar: tar::Builder::new(Vec::new()) };
        crafted.raw(
            "berth-backup/manifest.json",
            tar::EntryType::Regular,
            manifest.to_string().as_bytes(),
            None,
        )
    }

    fn raw(mut self, name: &str, kind: tar::EntryType, data: &[u8], link: Option<&str>) -> Crafted {
        let mut header = tar::Header::new_gnu();
        let gnu = header.as_gnu_mut().unwrap();
        gnu.name[..name.len()].copy_from_slice(name.as_bytes());
        if let Some(link) = link {
            gnu.linkname[..link.len()].copy_from_slice(link.as_bytes());
        }
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        header.set_entry_type(kind);
        header.set_cksum();
        self.tar.append(&header, data).unwrap();
        self
    }

    fn file(self, name: &str, data: &[u8]) -> Crafted {
        self.raw(name, tar::EntryType::Regular, data, None)
    }

    /// The checksum list of mount m0, for these (path, data).
    fn sums(self, files: &[(&str, &[u8])]) -> Crafted {
        let lines: String = files
            .iter()
            .map(|(path, data)| {
                let sum = serde_json::json!({"path": path, "size": data.len(), "sha256": hex(&Sha256::digest(data))});
                format!("{sum}\n")
            })
            .collect();
        self.file("berth-backup/sums/m0", lines.as_bytes())
    }

    fn end(self, files: u64, bytes: u64) -> Vec<u8> {
        let end = serde_json::json!({"mounts": [{"id": "m0", "files": files, "bytes": bytes}]});
        self.file("berth-backup/end.json", end.to_string().as_bytes()).tar.into_inner().unwrap()
    }
}

/// Restores `stream` into the app: it must be refused with `reason`, nothing changed under the
/// root (the entry's live data included), no staging left.
fn refused(t: &Test, app: &App, stream: &[u8], reason: &str) {
    let out = t.args(["storage:restore", &app.name]).stdin(stream).refuse();
    assert!(out.stderr.contains(reason), "expected {reason:?}\n{out}");
}

/// A stream whose one data member is `name` (of `kind`, linking to `link`), otherwise whole.
fn one_member(app: &App, source: &str, name: &str, kind: tar::EntryType, link: Option<&str>) -> Vec<u8> {
    Crafted::new(&app.name, source, "/data", 1, 1).raw(name, kind, b"", link).sums(&[]).end(0, 0)
}

#[test]
fn hostile_dotdot_member_is_refused() {
    let t = Test::new();
    let (app, source) = entry_app(&t, "dotdot");
    let stream = Crafted::new(&app.name, &source, "/data", 1, 4)
        .file("data/m0/../../evil", b"evil")
        .sums(&[("evil", b"evil")])
        .end(1, 4);
    refused(&t, &app, &stream, "is not a plain relative path");
}

#[test]
fn hostile_absolute_member_is_refused() {
    let t = Test::new();
    let (app, source) = entry_app(&t, "absolute");
    let stream = Crafted::new(&app.name, &source, "/data", 1, 4)
        .file("/data/m0/evil", b"evil")
        .sums(&[("evil", b"evil")])
        .end(1, 4);
    refused(&t, &app, &stream, "is not a plain relative path");
}

#[test]
fn hostile_member_through_a_symlink_is_refused() {
    let t = Test::new();
    let (app, source) = entry_app(&t, "through");
    let stream = Crafted::new(&app.name, &source, "/data", 1, 4)
        .raw("data/m0/up", tar::EntryType::Symlink, b"", Some(".."))
        .file("data/m0/up/evil", b"evil")
        .sums(&[("up/evil", b"evil")])
        .end(1, 4);
    refused(&t, &app, &stream, "would be written through up, which is not a directory");
}

#[test]
fn hostile_device_file_is_refused() {
    let t = Test::new();
    let (app, source) = entry_app(&t, "device");
    let stream = one_member(&app, &source, "data/m0/sda", tar::EntryType::Block, None);
    refused(&t, &app, &stream, "sda is a device file: device files and fifos are never restored");
}

#[test]
fn hostile_fifo_is_refused() {
    let t = Test::new();
    let (app, source) = entry_app(&t, "fifo");
    let stream = one_member(&app, &source, "data/m0/pipe", tar::EntryType::Fifo, None);
    refused(&t, &app, &stream, "pipe is a fifo");
}

#[test]
fn hostile_hard_link_outside_is_refused() {
    let t = Test::new();
    let (app, source) = entry_app(&t, "hardlink");
    for target in ["/etc/shadow", "data/m0/../../../etc/shadow", "data/m1/x"] {
        let stream = one_member(&app, &source, "data/m0/pw", tar::EntryType::Link, Some(target));
        refused(&t, &app, &stream, "points outside its mount");
    }
}

#[test]
fn hostile_manifest_that_does_not_match_the_data_is_refused() {
    let t = Test::new();
    let (app, source) = entry_app(&t, "mismatch");
    // The checksum list names a file the stream does not hold.
    let stream = Crafted::new(&app.name, &source, "/data", 2, 8)
        .file("data/m0/a", b"aaaa")
        .sums(&[("a", b"aaaa"), ("b", b"bbbb")])
        .end(2, 8);
    refused(&t, &app, &stream, "the manifest does not match the data");
    // More data than the manifest declares.
    let stream = Crafted::new(&app.name, &source, "/data", 1, 4)
        .file("data/m0/a", b"aaaa")
        .file("data/m0/b", b"bbbb")
        .sums(&[])
        .end(2, 8);
    refused(&t, &app, &stream, "larger than its manifest says");
}

#[test]
fn hostile_mount_the_app_does_not_have_is_refused() {
    let t = Test::new();
    let (app, _) = entry_app(&t, "nomount");
    let stream = Crafted::new(&app.name, "entry:somebody-else", "/elsewhere", 0, 0).sums(&[]).end(0, 0);
    refused(&t, &app, &stream, "entry:somebody-else at /elsewhere, a mount app");
}

#[test]
fn hostile_size_beyond_free_space_is_refused_before_writing() {
    let t = Test::new();
    let (app, source) = entry_app(&t, "huge");
    let stream = Crafted::new(&app.name, &source, "/data", 1, 1 << 60)
        .file("data/m0/a", b"aaaa")
        .sums(&[("a", b"aaaa")])
        .end(1, 4);
    refused(&t, &app, &stream, "make room or restore it elsewhere");
}

/// A real backup of the entry app.
fn real_backup(t: &Test, app: &App) -> Vec<u8> {
    stdout_bytes(t, &["storage:backup", &app.name])
}

#[test]
fn broken_truncated_stream_is_refused() {
    let t = Test::new();
    let (app, _) = entry_app(&t, "truncated");
    let stream = real_backup(&t, &app);
    // Cut inside a member, and cut cleanly between members (the summary is missing).
    refused(&t, &app, &stream[..stream.len() / 2 + 100], "truncated");
    let end = find(&stream, b"berth-backup/end.json");
    refused(&t, &app, &stream[..end], "truncated");
}

#[test]
fn broken_checksum_is_refused() {
    let t = Test::new();
    let (app, _) = entry_app(&t, "checksum");
    let mut stream = real_backup(&t, &app);
    let at = find(&stream, b"live-content");
    stream[at] = b'L';
    refused(&t, &app, &stream, "checksum mismatch in mount m0: live.txt");
    // And the untouched stream restores.
    stream[at] = b'l';
    t.args(["storage:restore", &app.name]).stdin(&stream).run().success();
}

fn find(haystack: &[u8], needle: &[u8]) -> usize {
    haystack.windows(needle.len()).position(|w| w == needle).unwrap()
}

#[test]
fn restic_pipe_round_trip() {
    let t = Test::new();
    let (app, entry) = entry_app(&t, "restic");
    let entry_dir = t.path(format!("data/storage/{}", entry.trim_start_matches("entry:")));
    fill(&entry_dir, 1 << 20);
    let before = walk(&entry_dir);
    let repo = tempfile::tempdir().unwrap();
    let sh = |script: &str| {
        let out = std::process::Command::new("sh")
            .args(["-ec", script])
            .env("BERTH", crate::test::BERTH)
            .env("BERTH_ROOT", t.root())
            .env("APP", &app.name)
            .env("RESTIC_REPOSITORY", repo.path())
            .env("RESTIC_PASSWORD", "bk-test")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{script}\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    };
    sh("restic init -q");
    sh(r#""$BERTH" storage:backup "$APP" | restic backup -q --stdin --stdin-filename "$APP.tar""#);
    fs::remove_dir_all(entry_dir.join("data")).unwrap();
    sh(r#"restic dump -q latest "/$APP.tar" | "$BERTH" storage:restore "$APP""#);
    let after: BTreeMap<_, _> = walk(&entry_dir);
    assert_eq!(before, after);
}

/// MariaDB from Debian's packages on the local debootstrapped base
/// (`scripts/ensure-debian-image.sh`): rows survive backup, `apps:destroy --purge-storage`,
/// re-create, restore. Slow (it installs the packages): only with `BERTH_DB=1`.
#[test]
fn database_rows_survive_destroy_and_restore() {
    if std::env::var_os("BERTH_DB").is_none() {
        return;
    }
    let status = std::process::Command::new("bash")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/ensure-debian-image.sh"))
        .status()
        .unwrap();
    assert!(status.success(), "scripts/ensure-debian-image.sh failed");
    let t = Test::new();
    let app = bk_app(&t, "db");
    let repo = Repo::from_template("web");
    repo.write(
        "Dockerfile",
        "FROM berth-debian:bookworm\nRUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends mariadb-server >/dev/null && rm -rf /var/lib/apt/lists/*\n",
    );
    repo.write(
        "app.toml",
        "[app]\nuser = \"0\"\n\n[processes]\ndb = \"[ -d /var/lib/mysql/mysql ] || mariadb-install-db --user=root --datadir=/var/lib/mysql >/dev/null; mkdir -p /run/mysqld; exec mariadbd --user=root --datadir=/var/lib/mysql\"\n\n[[storage.mounts]]\nsource = \"db\"\ntarget = \"/var/lib/mysql\"\n",
    );
    repo.commit("mariadb");
    let sql = |query: &str| -> String {
        for _ in 0..120 {
            let out = std::process::Command::new("docker")
                .args(["exec", &app.container("db"), "mariadb", "-N", "-e", query])
                .output()
                .unwrap();
            if out.status.success() {
                return String::from_utf8_lossy(&out.stdout).trim().to_string();
            }
            std::thread::sleep(std::time::Duration::from_millis(500));
        }
        panic!("mariadb did not answer {query}");
    };
    repo.push(&app).success();
    sql("CREATE DATABASE keep; CREATE TABLE keep.rows (n INT); INSERT INTO keep.rows VALUES (1),(2),(3)");
    let scratch = tempfile::tempdir().unwrap();
    let archive = scratch.path().join("db.tar");
    t.ok(["storage:backup", &app.name, "--stop", "-o", archive.to_str().unwrap()]);
    t.ok(["apps:destroy", &app.name, "--force", "--purge-storage"]);
    t.app(&app.name);
    repo.push(&app).success();
    assert_eq!(sql("SELECT COUNT(*) FROM information_schema.schemata WHERE schema_name = 'keep'"), "0");
    t.ok(["storage:restore", &app.name, "--stop", "-i", archive.to_str().unwrap()]);
    assert_eq!(sql("SELECT GROUP_CONCAT(n ORDER BY n) FROM keep.rows"), "1,2,3");
}

#[test]
fn report_sizes_and_detached_storage() {
    let t = Test::new();
    let (app, source) = entry_app(&t, "inventory");
    let entry = source.trim_start_matches("entry:").to_string();
    fs::write(t.path(format!("data/storage/{entry}/big")), vec![7u8; 3 << 20]).unwrap();
    let size = t.ok(["storage:report", &app.name, "--size"]);
    assert!(size.stdout.contains("size:") && size.stdout.contains(" MiB"), "{size}");
    let detached = t.ok(["storage:report", "--detached"]);
    assert!(!detached.stdout.contains(&entry), "a mounted entry is not detached\n{detached}");
    t.ok(["storage:unmount", &app.name, &entry]);
    let detached = t.ok(["storage:report", "--detached", "--format", "json"]);
    let items: Vec<serde_json::Value> = serde_json::from_str(&detached.stdout).unwrap();
    let item = items
        .iter()
        .find(|i| i["source"].as_str().unwrap().ends_with(&entry))
        .unwrap_or_else(|| panic!("{detached}"));
    assert!(item["size"].as_str().unwrap().ends_with("MiB"), "{item}");
}
