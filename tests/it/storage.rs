//! `storage:ensure-directory`, `storage:mount`, `storage:unmount`, `storage:list`,
//! `storage:report` and `storage:allow`/`storage:disallow`.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::process::Command;

use crate::engine::{Volume, engine, unique_volume_name};
use crate::test::{BERTH, Test};

fn uid_of(t: &Test, rel: &str) -> u32 {
    fs::metadata(t.path(rel)).unwrap().uid()
}

// ---------------------------------------------------------------- storage:ensure-directory

#[test]
fn ensure_directory_herokuish_is_the_default() {
    let t = Test::new();
    let out = t.ok(["storage:ensure-directory", "node-js-app"]);
    insta::assert_snapshot!(out, @r"
    exit: 0
    --- stdout
    -----> Ensuring [ROOT]/data/storage/node-js-app exists
           Setting directory ownership to 32767:32767
           Directory ready for mounting
    --- stderr
     !     Deprecated: please use 'storage:create' instead of 'storage:ensure-directory'
    ");
    assert_eq!(uid_of(&t, "data/storage/node-js-app"), 32767);
    assert_eq!(fs::metadata(t.path("data/storage/node-js-app")).unwrap().gid(), 32767);
    // Idempotent, and it creates no storage entry.
    t.ok(["storage:ensure-directory", "node-js-app"]);
    assert!(!t.path("entries").exists());
}

#[test]
fn ensure_directory_chown_presets() {
    let t = Test::new();
    for (chown, uid) in
        [("herokuish", 32767), ("heroku", 1000), ("paketo", 2000), ("root", 0), ("4242", 4242)]
    {
        let dir = format!("dir-{chown}");
        let out = t.ok(["storage:ensure-directory", "--chown", chown, &dir]);
        assert!(
            out.stdout.contains(&format!("       Setting directory ownership to {uid}:{uid}\n")),
            "{out}"
        );
        assert_eq!(uid_of(&t, &format!("data/storage/{dir}")), uid, "{chown}");
    }
}

#[test]
fn ensure_directory_chown_false_leaves_the_owner() {
    let t = Test::new();
    t.mkdir("data/storage/mine/sub");
    std::os::unix::fs::chown(t.path("data/storage/mine"), Some(4321), Some(4321)).unwrap();
    let out = t.ok(["storage:ensure-directory", "--chown", "false", "mine"]);
    insta::assert_snapshot!(out, @r"
    exit: 0
    --- stdout
    -----> Ensuring [ROOT]/data/storage/mine exists
           Directory ready for mounting
    --- stderr
     !     Deprecated: please use 'storage:create' instead of 'storage:ensure-directory'
    ");
    assert_eq!(uid_of(&t, "data/storage/mine"), 4321);
    assert_eq!(uid_of(&t, "data/storage/mine/sub"), 0);
}

#[test]
fn ensure_directory_bad_chown() {
    let t = Test::new();
    for bad in ["bogus", "65536", "-1"] {
        let out = t.args(["storage:ensure-directory", &format!("--chown={bad}"), "dir"]).warnings(1).refuse();
        assert!(out.stderr.ends_with(&format!(" !     Unsupported chown permissions \"{bad}\". Use herokuish, heroku, paketo, root, false or a uid from 0 to 65535\n")), "{out}");
    }
    insta::assert_snapshot!(t.args(["storage:ensure-directory", "--chown", "bogus", "dir"]).warnings(1).refuse(), @r#"
    exit: 1
    --- stdout
    --- stderr
     !     Deprecated: please use 'storage:create' instead of 'storage:ensure-directory'
     !     Unsupported chown permissions "bogus". Use herokuish, heroku, paketo, root, false or a uid from 0 to 65535
    "#);
}

#[test]
fn ensure_directory_bad_name() {
    let t = Test::new();
    for bad in ["a/b", "../x", "a.b", "a b"] {
        let out = t.args(["storage:ensure-directory", bad]).warnings(1).refuse();
        assert!(
            out.stderr.ends_with(
                " !     Directory can only contain the following set of characters: [A-Za-z0-9_-]\n"
            ),
            "{out}"
        );
    }
    insta::assert_snapshot!(t.args(["storage:ensure-directory", "../x"]).warnings(1).refuse(), @r"
    exit: 1
    --- stdout
    --- stderr
     !     Deprecated: please use 'storage:create' instead of 'storage:ensure-directory'
     !     Directory can only contain the following set of characters: [A-Za-z0-9_-]
    ");
    insta::assert_snapshot!(t.args(["storage:ensure-directory", ""]).warnings(1).refuse(), @r"
    exit: 1
    --- stdout
    --- stderr
     !     Deprecated: please use 'storage:create' instead of 'storage:ensure-directory'
     !     Please specify a directory to create
    ");
}

// ---------------------------------------------------------------- storage:mount, colon form

#[test]
fn mount_host_path() {
    let t = Test::new();
    t.app("demo");
    let host = t.mkdir("host");
    let out = t.ok(["storage:mount", "demo", &format!("{host}:/app/storage")]);
    insta::assert_snapshot!(out, @r"
    exit: 0
    --- stdout
    --- stderr
    ");
    insta::assert_snapshot!(t.app_state_redacted("demo"), @r#"
    created_at = [CREATED_AT]

    [allowed]

    [[mounts]]
    source = "host:[ROOT]/host"
    container_path = "/app/storage"
    phases = [
        "deploy",
        "run",
    ]
    process_type = "_default_"
    made_by = "admin"
    "#);
}

#[test]
fn mount_host_path_with_options() {
    let t = Test::new();
    t.app("demo");
    let host = t.mkdir("host");
    t.ok(["storage:mount", "demo", &format!("{host}:/ro:ro")]);
    t.ok(["storage:mount", "demo", &format!("{host}:/z:Z")]);
    t.ok(["storage:mount", "demo", &format!("{host}:/both:ro,Z")]);
    t.ok(["storage:mount", "demo", &format!("{host}:/rw:rw")]);
    insta::assert_snapshot!(t.ok(["storage:list", "demo"]), @r"
    exit: 0
    --- stdout
    -----> demo volume bind-mounts:
           [ROOT]/host:/both:ro,Z
           [ROOT]/host:/ro:ro
           [ROOT]/host:/rw
           [ROOT]/host:/z:Z
    --- stderr
    ");
    insta::assert_snapshot!(t.ok(["storage:report", "demo", "--storage-deploy-mounts"]), @r"
    exit: 0
    --- stdout
    -v [ROOT]/host:/ro:ro -v [ROOT]/host:/z:Z -v [ROOT]/host:/both:ro,Z -v [ROOT]/host:/rw
    --- stderr
    ");
}

#[test]
fn mount_relative_host_path() {
    let t = Test::new();
    t.app("demo");
    insta::assert_snapshot!(t.args(["storage:mount", "demo", "./data:/data"]).refuse(), @r#"
    exit: 1
    --- stdout
    --- stderr
     !     host path "./data" is relative; use an absolute path (such as one made with `berth storage:ensure-directory`) or a Docker volume name
    "#);
    insta::assert_snapshot!(t.args(["storage:mount", "demo", "rel/dir:/data"]).refuse(), @r#"
    exit: 1
    --- stdout
    --- stderr
     !     host path "rel/dir" is relative; use an absolute path (such as one made with `berth storage:ensure-directory`) or a Docker volume name
    "#);
}

#[test]
fn mount_missing_host_path() {
    let t = Test::new();
    t.app("demo");
    let missing = t.path_str("nowhere");
    insta::assert_snapshot!(t.args(["storage:mount", "demo", &format!("{missing}:/data")]).refuse(), @r#"
    exit: 1
    --- stdout
    --- stderr
     !     host path "[ROOT]/nowhere" does not exist; add --create (and --chown <owner>) to make it, or mkdir it first (the engine would make it owned by root)
    "#);
    assert!(!t.path("nowhere").exists());
}

#[test]
fn mount_container_path_not_absolute() {
    let t = Test::new();
    t.app("demo");
    let host = t.mkdir("host");
    insta::assert_snapshot!(t.args(["storage:mount", "demo", &format!("{host}:data")]).refuse(), @r#"
    exit: 1
    --- stdout
    --- stderr
     !     attachment container path "data" must be absolute
    "#);
}

#[test]
fn mount_container_path_root() {
    let t = Test::new();
    t.app("demo");
    let host = t.mkdir("host");
    insta::assert_snapshot!(t.args(["storage:mount", "demo", &format!("{host}:/")]).refuse(), @r#"
    exit: 1
    --- stdout
    --- stderr
     !     attachment container path "/" must not be "/": mounting over the container's root hides the whole image
    "#);
    insta::assert_snapshot!(t.args(["storage:mount", "demo", &format!("{host}:/app/../etc")]).refuse(), @r#"
    exit: 1
    --- stdout
    --- stderr
     !     attachment container path "/app/../etc" must not contain ".."
    "#);
}

#[test]
fn mount_not_two_paths() {
    let t = Test::new();
    t.app("demo");
    let host = t.mkdir("host");
    insta::assert_snapshot!(t.args(["storage:mount", "demo", &host]).refuse(), @r#"
    exit: 1
    --- stdout
    --- stderr
     !     Storage path must be two valid paths divided by colon: "[ROOT]/host" (use <host-dir|volume>:<container-dir>[:<options>])
    "#);
    insta::assert_snapshot!(t.args(["storage:mount", "demo", &format!("{host}::/x")]).refuse(), @r#"
    exit: 1
    --- stdout
    --- stderr
     !     Storage path must be two valid paths divided by colon: "[ROOT]/host::/x" (use <host-dir|volume>:<container-dir>[:<options>])
    "#);
}

#[test]
fn mount_already_exists() {
    let t = Test::new();
    t.app("demo");
    let host = t.mkdir("host");
    t.ok(["storage:mount", "demo", &format!("{host}:/data")]);
    insta::assert_snapshot!(t.args(["storage:mount", "demo", &format!("{host}:/data")]).refuse(), @r"
    exit: 1
    --- stdout
    --- stderr
     !     Mount path already exists.
    ");
    // Other options make no other mount.
    insta::assert_snapshot!(t.args(["storage:mount", "demo", &format!("{host}:/data:ro")]).refuse(), @r"
    exit: 1
    --- stdout
    --- stderr
     !     Mount path already exists.
    ");
    // Another source at the same container path would hide one of them.
    let other = t.mkdir("other");
    insta::assert_snapshot!(t.args(["storage:mount", "demo", &format!("{other}:/data")]).refuse(), @r"
    exit: 1
    --- stdout
    --- stderr
     !     Container path /data on app demo is already mounted by host:[ROOT]/host for process type _default_; unmount it first
    ");
    assert_eq!(t.mount_count("demo"), 1);
}

#[test]
fn mount_unknown_option() {
    let t = Test::new();
    t.app("demo");
    let host = t.mkdir("host");
    insta::assert_snapshot!(t.args(["storage:mount", "demo", &format!("{host}:/data:ro,bogus")]).refuse(), @r#"
    exit: 1
    --- stdout
    --- stderr
     !     unsupported mount option "bogus" (supported: ro, rw, z, Z, nocopy, shared, slave, private, rshared, rslave, rprivate, delegated, cached, consistent, noexec, nosuid, nodev)
    "#);
}

#[test]
fn mount_colon_form_refuses_named_flags() {
    let t = Test::new();
    t.app("demo");
    let host = t.mkdir("host");
    insta::assert_snapshot!(t.args(["storage:mount", "demo", &format!("{host}:/data"), "--phase", "run"]).refuse(), @r"
    exit: 1
    --- stdout
    --- stderr
     !     --container-dir, --phase, --process-type and --volume-* apply to storage entry mounts (berth storage:mount <app> <entry> --container-dir <path>); the colon form takes its options after a second colon, as in [ROOT]/host:/data:ro
    ");
}

#[test]
fn mount_existing_docker_volume() {
    let t = Test::new();
    t.app("demo");
    let volume = Volume::create("mount");
    let out = t.ok(["storage:mount", "demo", &format!("{}:/data:nocopy", volume.name)]);
    insta::assert_snapshot!(out, @r"
    exit: 0
    --- stdout
    --- stderr
    ");
    let list = t.ok(["storage:list", "demo", "--format", "json"]).replace(&volume.name, "[VOLUME]");
    insta::assert_snapshot!(list, @r#"
    exit: 0
    --- stdout
    [{"container_path":"/data","entry_name":"","host_path":"[VOLUME]","made_by":"admin","phases":["deploy","run"],"process_type":"_default_","source":"volume:[VOLUME]","volume_options":"nocopy"}]
    --- stderr
    "#);
    // Unmounting needs no engine, and keeps the volume.
    t.ok(["storage:unmount", "demo", &format!("{}:/data", volume.name)]);
    assert_eq!(t.mount_count("demo"), 0);
    assert!(volume.exists(), "the volume must survive the unmount");
}

#[test]
fn mount_missing_docker_volume() {
    engine();
    let t = Test::new();
    t.app("demo");
    let name = unique_volume_name("missing");
    let out = t.args(["storage:mount", "demo", &format!("{name}:/data")]).refuse().replace(&name, "[VOLUME]");
    insta::assert_snapshot!(out, @r#"
    exit: 1
    --- stdout
    --- stderr
     !     Docker volume "[VOLUME]" does not exist; create it first with `docker volume create [VOLUME]`
    "#);
}

// ---------------------------------------------------------------- storage:mount, named form

#[test]
fn mount_entry() {
    let t = Test::new();
    t.app("demo");
    t.ok(["storage:create", "data"]);
    let out = t.ok(["storage:mount", "demo", "data", "--container-dir", "/app/storage"]);
    insta::assert_snapshot!(out, @r"
    exit: 0
    --- stdout
    -----> Storage entry data mounted at /app/storage on demo
    --- stderr
    ");
    insta::assert_snapshot!(t.ok(["storage:list", "demo"]), @r"
    exit: 0
    --- stdout
    -----> demo volume bind-mounts:
           [ROOT]/data/storage/data:/app/storage
    --- stderr
    ");
}

#[test]
fn mount_entry_with_every_flag() {
    let t = Test::new();
    t.app("demo");
    t.ok(["storage:create", "data"]);
    let out = t.ok([
        "storage:mount",
        "demo",
        "data",
        "--container-dir",
        "/app//uploads/",
        "--phase",
        "run",
        "--phase",
        "deploy,build",
        "--process-type",
        "web",
        "--volume-subpath",
        "uploads/./photos",
        "--volume-readonly",
        "--volume-options",
        "Z,nocopy",
        "--volume-chown",
        "heroku",
    ]);
    insta::assert_snapshot!(out, @r"
    exit: 0
    --- stdout
    -----> Storage entry data mounted at /app/uploads on demo
    --- stderr
    ");
    insta::assert_snapshot!(t.ok(["storage:report", "demo"]), @r"
    exit: 0
    --- stdout
    =====> demo storage information
           Storage allowed drivers:             
           Storage allowed host paths:          
           Storage allowed volumes:             
           Storage attachment 1 container path: /app/uploads
           Storage attachment 1 entry name:     data
           Storage attachment 1 host path:      [ROOT]/data/storage/data
           Storage attachment 1 made by:        admin
           Storage attachment 1 phases:         build,deploy,run
           Storage attachment 1 process type:   web
           Storage attachment 1 readonly:       true
           Storage attachment 1 source:         entry:data
           Storage attachment 1 subpath:        uploads/photos
           Storage attachment 1 volume chown:   heroku
           Storage attachment 1 volume options: Z,nocopy
           Storage build mounts:                -v [ROOT]/data/storage/data/uploads/photos:/app/uploads:ro,Z,nocopy
           Storage deploy mounts:               -v [ROOT]/data/storage/data/uploads/photos:/app/uploads:ro,Z,nocopy
           Storage detached:                    
           Storage run mounts:                  -v [ROOT]/data/storage/data/uploads/photos:/app/uploads:ro,Z,nocopy
    --- stderr
    ");
    insta::assert_snapshot!(t.ok(["storage:list", "demo"]), @r"
    exit: 0
    --- stdout
    -----> demo volume bind-mounts:
           [ROOT]/data/storage/data:/app/uploads:ro,Z,nocopy  (phases: build,deploy,run; process: web)
    --- stderr
    ");
}

#[test]
fn mount_entry_again_updates_in_place() {
    let t = Test::new();
    t.app("demo");
    t.ok(["storage:create", "data"]);
    t.ok(["storage:mount", "demo", "data", "--container-dir", "/app/storage", "--volume-readonly"]);
    let out =
        t.ok(["storage:mount", "demo", "data", "--container-dir", "/app/storage", "--volume-options", "Z"]);
    insta::assert_snapshot!(out, @r"
    exit: 0
    --- stdout
    -----> Storage entry data mount at /app/storage on demo updated
    --- stderr
    ");
    assert_eq!(t.mount_count("demo"), 1);
    // Omitted flags are cleared, as in Dokku: the mount is no longer read-only.
    insta::assert_snapshot!(t.ok(["storage:report", "demo", "--storage-run-mounts"]), @r"
    exit: 0
    --- stdout
    -v [ROOT]/data/storage/data:/app/storage:Z
    --- stderr
    ");
}

#[test]
fn mount_entry_without_container_dir() {
    let t = Test::new();
    t.app("demo");
    t.ok(["storage:create", "data"]);
    insta::assert_snapshot!(t.args(["storage:mount", "demo", "data"]).refuse(), @r"
    exit: 1
    --- stdout
    --- stderr
     !     --container-dir is required when mounting a named storage entry
    ");
}

#[test]
fn mount_unknown_entry() {
    let t = Test::new();
    t.app("demo");
    insta::assert_snapshot!(t.args(["storage:mount", "demo", "nope", "--container-dir", "/data"]).refuse(), @r#"
    exit: 1
    --- stdout
    --- stderr
     !     storage entry "nope" does not exist; create it first with `berth storage:create`
    "#);
    insta::assert_snapshot!(t.args(["storage:mount", "demo", "Not_An_Entry", "--container-dir", "/data"]).refuse(), @r#"
    exit: 1
    --- stdout
    --- stderr
     !     storage entry name "Not_An_Entry" must be a DNS label (lowercase letters, digits, and dashes; cannot start or end with a dash)
    "#);
}

#[test]
fn mount_entry_bad_phase() {
    let t = Test::new();
    t.app("demo");
    t.ok(["storage:create", "data"]);
    insta::assert_snapshot!(t.args(["storage:mount", "demo", "data", "--container-dir", "/data", "--phase", "deploy,sometimes"]).refuse(), @r#"
    exit: 1
    --- stdout
    --- stderr
     !     phase "sometimes" is not supported (must be one of build, deploy, run)
    "#);
}

#[test]
fn mount_entry_bad_volume_chown() {
    let t = Test::new();
    t.app("demo");
    t.ok(["storage:create", "data"]);
    insta::assert_snapshot!(t.args(["storage:mount", "demo", "data", "--container-dir", "/data", "--volume-chown", "nobody"]).refuse(), @r#"
    exit: 1
    --- stdout
    --- stderr
     !     Unsupported chown permissions "nobody". Use herokuish, heroku, paketo, root, false or a uid from 0 to 65535
    "#);
}

#[test]
fn mount_entry_bad_container_dir_subpath_and_options() {
    let t = Test::new();
    t.app("demo");
    t.ok(["storage:create", "data"]);
    insta::assert_snapshot!(t.args(["storage:mount", "demo", "data", "--container-dir", "data"]).refuse(), @r#"
    exit: 1
    --- stdout
    --- stderr
     !     attachment container path "data" must be absolute
    "#);
    insta::assert_snapshot!(t.args(["storage:mount", "demo", "data", "--container-dir", "/data", "--volume-subpath", "../etc"]).refuse(), @r#"
    exit: 1
    --- stdout
    --- stderr
     !     volume subpath "../etc" must be relative and must not contain ".."
    "#);
    insta::assert_snapshot!(t.args(["storage:mount", "demo", "data", "--container-dir", "/data", "--volume-options", "exec"]).refuse(), @r#"
    exit: 1
    --- stdout
    --- stderr
     !     unsupported mount option "exec" (supported: ro, rw, z, Z, nocopy, shared, slave, private, rshared, rslave, rprivate, delegated, cached, consistent, noexec, nosuid, nodev)
    "#);
    insta::assert_snapshot!(t.args(["storage:mount", "demo", "data", "--container-dir", "/data", "--process-type", "web.1"]).refuse(), @r#"
    exit: 1
    --- stdout
    --- stderr
     !     process type "web.1" is not valid (letters, digits, '-' and '_')
    "#);
}

#[test]
fn mount_volume_entry_with_subpath() {
    let t = Test::new();
    t.app("demo");
    t.ok(["storage:create", "pg", "pgdata"]);
    insta::assert_snapshot!(t.args(["storage:mount", "demo", "pg", "--container-dir", "/data", "--volume-subpath", "x"]).refuse(), @r#"
    exit: 1
    --- stdout
    --- stderr
     !     --volume-subpath needs a directory-backed entry; "pg" is the Docker volume pgdata (the engine's API has no volume subpaths)
    "#);
    t.ok(["storage:mount", "demo", "pg", "--container-dir", "/data"]);
    insta::assert_snapshot!(t.ok(["storage:report", "demo", "--storage-deploy-mounts"]), @r"
    exit: 0
    --- stdout
    -v pgdata:/data
    --- stderr
    ");
}

// ---------------------------------------------------------------- storage:unmount

#[test]
fn unmount_colon_form() {
    let t = Test::new();
    t.app("demo");
    let host = t.mkdir("host");
    fs::write(t.path("host/kept"), "data").unwrap();
    t.ok(["storage:mount", "demo", &format!("{host}:/data:ro")]);
    t.ok(["storage:mount", "demo", &format!("{host}:/other")]);
    // Options are ignored when matching, as in Dokku.
    let out = t.ok(["storage:unmount", "demo", &format!("{host}:/data")]);
    insta::assert_snapshot!(out, @r"
    exit: 0
    --- stdout
    --- stderr
    ");
    insta::assert_snapshot!(t.ok(["storage:list", "demo"]), @r"
    exit: 0
    --- stdout
    -----> demo volume bind-mounts:
           [ROOT]/host:/other
    --- stderr
    ");
    assert_eq!(fs::read_to_string(t.path("host/kept")).unwrap(), "data");
}

#[test]
fn unmount_entry() {
    let t = Test::new();
    t.app("demo");
    t.ok(["storage:create", "data"]);
    t.ok(["storage:mount", "demo", "data", "--container-dir", "/app/storage"]);
    let out = t.ok(["storage:unmount", "demo", "data"]);
    insta::assert_snapshot!(out, @r"
    exit: 0
    --- stdout
    --- stderr
    ");
    assert_eq!(t.mount_count("demo"), 0);
    // The entry and its directory stay.
    assert!(t.path("entries/data.toml").is_file());
    assert!(t.path("data/storage/data").is_dir());
    t.ok(["storage:mount", "demo", "data", "--container-dir", "/a"]);
    t.ok(["storage:mount", "demo", "data", "--container-dir", "/b"]);
    t.ok(["storage:unmount", "demo", "data", "--container-dir", "/b/"]);
    insta::assert_snapshot!(t.ok(["storage:list", "demo"]), @r"
    exit: 0
    --- stdout
    -----> demo volume bind-mounts:
           [ROOT]/data/storage/data:/a
    --- stderr
    ");
}

#[test]
fn unmount_what_is_not_mounted() {
    let t = Test::new();
    t.app("demo");
    let host = t.mkdir("host");
    t.ok(["storage:create", "data"]);
    insta::assert_snapshot!(t.args(["storage:unmount", "demo", &format!("{host}:/data")]).refuse(), @r"
    exit: 1
    --- stdout
    --- stderr
     !     Mount path does not exist.
    ");
    insta::assert_snapshot!(t.args(["storage:unmount", "demo", "data"]).refuse(), @r#"
    exit: 1
    --- stdout
    --- stderr
     !     storage entry "data" is not mounted on app "demo"
    "#);
    t.ok(["storage:mount", "demo", "data", "--container-dir", "/a"]);
    insta::assert_snapshot!(t.args(["storage:unmount", "demo", "data", "--container-dir", "/b"]).refuse(), @r#"
    exit: 1
    --- stdout
    --- stderr
     !     storage entry "data" is not mounted at "/b" on app "demo"
    "#);
    insta::assert_snapshot!(t.args(["storage:unmount", "demo", &host]).refuse(), @r#"
    exit: 1
    --- stdout
    --- stderr
     !     Storage path must be two valid paths divided by colon: "[ROOT]/host" (use <host-dir|volume>:<container-dir>[:<options>])
    "#);
    insta::assert_snapshot!(t.args(["storage:unmount", "demo", &format!("{host}:/data"), "--container-dir", "/data"]).refuse(), @r"
    exit: 1
    --- stdout
    --- stderr
     !     --container-dir applies to storage entry unmounts
    ");
}

#[test]
fn unmount_entry_mounted_at_several_paths() {
    let t = Test::new();
    t.app("demo");
    t.ok(["storage:create", "data"]);
    t.ok(["storage:mount", "demo", "data", "--container-dir", "/b"]);
    t.ok(["storage:mount", "demo", "data", "--container-dir", "/a"]);
    insta::assert_snapshot!(t.args(["storage:unmount", "demo", "data"]).refuse(), @r#"
    exit: 1
    --- stdout
    --- stderr
     !     storage entry "data" is mounted at multiple paths on app "demo" (/a, /b); pass --container-dir to disambiguate
    "#);
    assert_eq!(t.mount_count("demo"), 2);
}

#[test]
fn unmount_repo_made_mount_is_refused() {
    let t = Test::new();
    t.app("demo");
    let host = t.mkdir("host");
    // What a push of an app.toml records (no admin command makes one).
    let state = t.app_state("demo")
        + &format!(
            "\n[[mounts]]\nsource = \"host:{host}\"\ncontainer_path = \"/data\"\nphases = [\"deploy\", \"run\"]\nprocess_type = \"_default_\"\nmade_by = \"repo\"\n"
        );
    fs::write(t.path("apps/demo/state.toml"), state).unwrap();
    insta::assert_snapshot!(t.ok(["storage:list", "demo"]), @r"
    exit: 0
    --- stdout
    -----> demo volume bind-mounts:
           [ROOT]/host:/data  (from app.toml)
    --- stderr
    ");
    insta::assert_snapshot!(t.args(["storage:unmount", "demo", &format!("{host}:/data")]).refuse(), @r"
    exit: 1
    --- stdout
    --- stderr
     !     the mount at /data comes from the app's app.toml; remove it there and push, or it comes back on the next deploy
    ");
    assert_eq!(t.ok(["storage:report", "demo", "--storage-attachment.1.made-by"]).stdout, "repo\n");
}

// ---------------------------------------------------------------- storage:list

#[test]
fn list_text_and_json() {
    let t = Test::new();
    t.app("demo");
    insta::assert_snapshot!(t.ok(["storage:list", "demo"]), @r"
    exit: 0
    --- stdout
    -----> demo volume bind-mounts:
    --- stderr
    ");
    insta::assert_snapshot!(t.ok(["storage:list", "demo", "--format", "json"]), @r"
    exit: 0
    --- stdout
    []
    --- stderr
    ");
    let host = t.mkdir("host");
    t.ok(["storage:create", "data"]);
    t.ok(["storage:mount", "demo", &format!("{host}:/mnt/host:ro")]);
    t.ok([
        "storage:mount",
        "demo",
        "data",
        "--container-dir",
        "/app/storage",
        "--phase",
        "run",
        "--volume-options",
        "Z",
    ]);
    insta::assert_snapshot!(t.ok(["storage:list", "demo"]), @r"
    exit: 0
    --- stdout
    -----> demo volume bind-mounts:
           [ROOT]/data/storage/data:/app/storage:Z  (phases: run)
           [ROOT]/host:/mnt/host:ro
    --- stderr
    ");
    insta::assert_snapshot!(t.ok(["storage:list", "demo", "--format", "json"]), @r#"
    exit: 0
    --- stdout
    [{"container_path":"/app/storage","entry_name":"data","host_path":"[ROOT]/data/storage/data","made_by":"admin","phases":["run"],"process_type":"_default_","source":"entry:data","volume_options":"Z"},{"container_path":"/mnt/host","entry_name":"","host_path":"[ROOT]/host","made_by":"admin","phases":["deploy","run"],"process_type":"_default_","readonly":true,"source":"host:[ROOT]/host"}]
    --- stderr
    "#);
    t.args(["storage:list", "demo", "--format", "xml"]).usage_error();
}

// ---------------------------------------------------------------- storage:report

/// Two apps: `api` without mounts, `demo` with a host mount and an entry mount.
fn two_apps() -> Test {
    let t = Test::new();
    t.app("demo").app("api");
    let host = t.mkdir("host");
    t.ok(["storage:create", "data"]);
    t.ok(["storage:mount", "demo", &format!("{host}:/mnt:ro")]);
    t.ok(["storage:mount", "demo", "data", "--container-dir", "/app/storage", "--volume-options", "Z"]);
    t
}

#[test]
fn report_one_app() {
    let t = two_apps();
    insta::assert_snapshot!(t.ok(["storage:report", "demo"]), @"
    exit: 0
    --- stdout
    =====> demo storage information
           Storage allowed drivers:             
           Storage allowed host paths:          
           Storage allowed volumes:             
           Storage attachment 1 container path: /mnt
           Storage attachment 1 entry name:     
           Storage attachment 1 host path:      [ROOT]/host
           Storage attachment 1 made by:        admin
           Storage attachment 1 phases:         deploy,run
           Storage attachment 1 process type:   _default_
           Storage attachment 1 readonly:       true
           Storage attachment 1 source:         host:[ROOT]/host
           Storage attachment 1 subpath:        
           Storage attachment 1 volume chown:   
           Storage attachment 1 volume options: 
           Storage attachment 2 container path: /app/storage
           Storage attachment 2 entry name:     data
           Storage attachment 2 host path:      [ROOT]/data/storage/data
           Storage attachment 2 made by:        admin
           Storage attachment 2 phases:         deploy,run
           Storage attachment 2 process type:   _default_
           Storage attachment 2 readonly:       false
           Storage attachment 2 source:         entry:data
           Storage attachment 2 subpath:        
           Storage attachment 2 volume chown:   
           Storage attachment 2 volume options: Z
           Storage build mounts:                
           Storage deploy mounts:               -v [ROOT]/host:/mnt:ro -v [ROOT]/data/storage/data:/app/storage:Z
           Storage detached:                    
           Storage run mounts:                  -v [ROOT]/host:/mnt:ro -v [ROOT]/data/storage/data:/app/storage:Z
    --- stderr
    ");
}

#[test]
fn report_all_apps() {
    let t = two_apps();
    let out = t.ok(["storage:report"]);
    let api = "=====> api storage information\n       Storage allowed drivers:       \n       Storage allowed host paths:    \n       Storage allowed volumes:       \n       Storage build mounts:          \n       Storage deploy mounts:         \n       Storage detached:              \n       Storage run mounts:            \n";
    assert!(out.stdout.starts_with(api), "{out}");
    assert_eq!(out.stdout[api.len()..], t.ok(["storage:report", "demo"]).stdout);
    assert_eq!(out.stderr, "");
}

#[test]
fn report_without_apps() {
    let t = Test::new();
    insta::assert_snapshot!(t.ok(["storage:report"]), @r"
    exit: 0
    --- stdout
    --- stderr
     !     You haven't deployed any applications yet
    ");
}

#[test]
fn report_json_without_apps_is_an_empty_object() {
    let t = Test::new();
    insta::assert_snapshot!(t.ok(["storage:report", "--format", "json"]), @r"
    exit: 0
    --- stdout
    {}
    --- stderr
    ");
}

#[test]
fn report_info_flag() {
    let t = two_apps();
    insta::assert_snapshot!(t.ok(["storage:report", "demo", "--storage-deploy-mounts"]), @r"
    exit: 0
    --- stdout
    -v [ROOT]/host:/mnt:ro -v [ROOT]/data/storage/data:/app/storage:Z
    --- stderr
    ");
    insta::assert_snapshot!(t.ok(["storage:report", "demo", "--storage-attachment.2.volume-options"]), @r"
    exit: 0
    --- stdout
    Z
    --- stderr
    ");
    // The flag may come first, and without an app it is one line per app.
    insta::assert_snapshot!(t.ok(["storage:report", "--storage-build-mounts"]), @r"
    exit: 0
    --- stdout


    --- stderr
    ");
}

#[test]
fn report_invalid_flag() {
    let t = two_apps();
    insta::assert_snapshot!(t.args(["storage:report", "api", "--storage-bogus"]).refuse(), @"
    exit: 1
    --- stdout
    --- stderr
     !     Invalid flag passed, valid flags: --storage-allowed-drivers, --storage-allowed-host-paths, --storage-allowed-volumes, --storage-build-mounts, --storage-deploy-mounts, --storage-detached, --storage-run-mounts
    ");
    insta::assert_snapshot!(t.args(["storage:report", "api", "--storage-build-mounts", "--storage-run-mounts"]).refuse(), @r"
    exit: 1
    --- stdout
    --- stderr
     !     storage:report command allows only a single flag
    ");
    insta::assert_snapshot!(t.args(["storage:report", "api", "--storage-build-mounts", "--format", "json"]).refuse(), @r"
    exit: 1
    --- stdout
    --- stderr
     !     --format flag cannot be specified when specifying an info flag
    ");
    insta::assert_snapshot!(t.args(["storage:report", "api", "--format", "xml"]).refuse(), @r#"
    exit: 1
    --- stdout
    --- stderr
     !     Format must be "stdout", "text" or "json": "xml"
    "#);
    insta::assert_snapshot!(t.args(["storage:report", "api", "demo"]).refuse(), @r"
    exit: 1
    --- stdout
    --- stderr
     !     storage:report takes at most one app
    ");
    t.args(["storage:report", "--format", "xml"]).usage_error();
}

#[test]
fn report_json() {
    let t = two_apps();
    insta::assert_snapshot!(t.ok(["storage:report", "api", "--format", "json"]), @r#"
    exit: 0
    --- stdout
    {"allowed-drivers":"","allowed-host-paths":"","allowed-volumes":"","build-mounts":"","deploy-mounts":"","detached":"","run-mounts":"","storage-allowed-drivers":"","storage-allowed-host-paths":"","storage-allowed-volumes":"","storage-build-mounts":"","storage-deploy-mounts":"","storage-detached":"","storage-run-mounts":""}
    --- stderr
    "#);
    // `--format` before the app, after it, and as `--format=json` all work.
    let after = t.ok(["storage:report", "demo", "--format", "json"]);
    assert_eq!(t.ok(["storage:report", "--format", "json", "demo"]).stdout, after.stdout);
    assert_eq!(t.ok(["storage:report", "demo", "--format=json"]).stdout, after.stdout);
    let demo: serde_json::Value = serde_json::from_str(&after.stdout).unwrap();
    assert_eq!(demo["attachment.2.entry-name"], "data");
    assert_eq!(demo["storage-attachment.2.entry-name"], "data");
    assert_eq!(demo["attachment.1.readonly"], "true");
    assert_eq!(demo["deploy-mounts"], "-v [ROOT]/host:/mnt:ro -v [ROOT]/data/storage/data:/app/storage:Z");
    let all = t.ok(["storage:report", "--format", "json"]);
    let all: serde_json::Value = serde_json::from_str(&all.stdout).unwrap();
    assert_eq!(all["demo"], demo);
    assert_eq!(all.as_object().unwrap().keys().collect::<Vec<_>>(), ["api", "demo"]);
}

#[test]
fn report_global() {
    let t = Test::new();
    insta::assert_snapshot!(t.ok(["storage:report", "--global"]), @r"
    exit: 0
    --- stdout
    -----> No storage entries registered
    --- stderr
    ");
    insta::assert_snapshot!(t.ok(["storage:report", "--global", "--format", "json"]), @r"
    exit: 0
    --- stdout
    []
    --- stderr
    ");
    t.app("demo").app("api");
    t.ok(["storage:create", "data"]);
    t.ok(["storage:create", "cache", "--mode", "0700"]);
    t.ok(["storage:mount", "demo", "data", "--container-dir", "/data"]);
    t.ok(["storage:mount", "api", "data", "--container-dir", "/data"]);
    insta::assert_snapshot!(t.ok(["storage:report", "--global"]), @r"
    exit: 0
    --- stdout
    -----> Storage report (global):
           cache	docker-local	mounted by: —
           data	docker-local	mounted by: api, demo
    --- stderr
    ");
    insta::assert_snapshot!(t.ok(["storage:report", "--global", "--format", "json"]), @r#"
    exit: 0
    --- stdout
    [{"entry":{"host_path":"[ROOT]/data/storage/cache","mode":"0700","name":"cache","reclaim_policy":"Retain","scheduler":"docker-local"},"mounted_by":[]},{"entry":{"host_path":"[ROOT]/data/storage/data","name":"data","reclaim_policy":"Retain","scheduler":"docker-local"},"mounted_by":["api","demo"]}]
    --- stderr
    "#);
    assert_eq!(
        t.ok(["storage:report", "--format", "json", "--global"]).stdout,
        t.ok(["storage:report", "--global", "--format", "json"]).stdout
    );
    insta::assert_snapshot!(t.args(["storage:report", "--global", "demo"]).refuse(), @r"
    exit: 1
    --- stdout
    --- stderr
     !     --global takes no app and no info flag
    ");
    insta::assert_snapshot!(t.args(["storage:report", "demo", "--global"]).refuse(), @r"
    exit: 1
    --- stdout
    --- stderr
     !     --global takes no app and no info flag
    ");
}

// ---------------------------------------------------------------- storage:allow / disallow

#[test]
fn allow_and_disallow_host_path() {
    let t = Test::new();
    t.app("demo");
    insta::assert_snapshot!(t.ok(["storage:allow", "demo", "/srv/shared/"]), @r"
    exit: 0
    --- stdout
    -----> Allowed /srv/shared/ in app.toml of demo
    --- stderr
    ");
    insta::assert_snapshot!(t.ok(["storage:allow", "demo", "/srv//shared"]), @r"
    exit: 0
    --- stdout
    -----> /srv//shared is already allowed for demo
    --- stderr
    ");
    insta::assert_snapshot!(t.ok(["storage:report", "demo", "--storage-allowed-host-paths"]), @r"
    exit: 0
    --- stdout
    /srv/shared
    --- stderr
    ");
    insta::assert_snapshot!(t.ok(["storage:disallow", "demo", "/srv/shared"]), @"
    exit: 0
    --- stdout
    -----> Disallowed /srv/shared for demo; running containers keep what they mount, but ps:restart and rollback refuse releases that still use it until a push without it
    --- stderr
    ");
    insta::assert_snapshot!(t.args(["storage:disallow", "demo", "/srv/shared"]).refuse(), @r"
    exit: 1
    --- stdout
    --- stderr
     !     /srv/shared is not allowed for demo
    ");
    insta::assert_snapshot!(t.args(["storage:allow", "demo", "/"]).refuse(), @r#"
    exit: 1
    --- stdout
    --- stderr
     !     host path "/" must be absolute, not "/", and free of ".."
    "#);
    insta::assert_snapshot!(t.args(["storage:allow", "demo", "/srv/../etc"]).refuse(), @r#"
    exit: 1
    --- stdout
    --- stderr
     !     host path "/srv/../etc" must be absolute, not "/", and free of ".."
    "#);
    insta::assert_snapshot!(t.args(["storage:allow", "demo", "srv/data"]).refuse(), @r#"
    exit: 1
    --- stdout
    --- stderr
     !     host path "srv/data" is relative; use an absolute path (such as one made with `berth storage:ensure-directory`) or a Docker volume name
    "#);
}

#[test]
fn allow_and_disallow_volume() {
    let t = Test::new();
    t.app("demo");
    insta::assert_snapshot!(t.ok(["storage:allow", "demo", "pgdata"]), @r"
    exit: 0
    --- stdout
    -----> Allowed pgdata in app.toml of demo
    --- stderr
    ");
    insta::assert_snapshot!(t.ok(["storage:report", "demo", "--storage-allowed-volumes"]), @r"
    exit: 0
    --- stdout
    pgdata
    --- stderr
    ");
    assert!(t.app_state("demo").contains("volumes = [\"pgdata\"]"), "{}", t.app_state("demo"));
    insta::assert_snapshot!(t.ok(["storage:disallow", "demo", "pgdata"]), @"
    exit: 0
    --- stdout
    -----> Disallowed pgdata for demo; running containers keep what they mount, but ps:restart and rollback refuse releases that still use it until a push without it
    --- stderr
    ");
    insta::assert_snapshot!(t.args(["storage:disallow", "demo", "pgdata"]).refuse(), @r"
    exit: 1
    --- stdout
    --- stderr
     !     pgdata is not allowed for demo
    ");
}

// ---------------------------------------------------------------- concurrency

#[test]
fn parallel_mounts_are_all_recorded() {
    let t = Test::new();
    t.app("demo");
    let host = t.mkdir("host");
    let children: Vec<_> = (0..20)
        .map(|i| {
            let spec = format!("{host}:/mnt/{i}");
            let root = t.root().to_path_buf();
            std::thread::spawn(move || {
                Command::new(BERTH)
                    .args(["storage:mount", "demo", &spec])
                    .env("BERTH_ROOT", root)
                    .output()
                    .unwrap()
            })
        })
        .collect();
    for child in children {
        let output = child.join().unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    }
    let state = t.app_state_toml("demo");
    let mut paths: Vec<&str> =
        state["mounts"].as_array().unwrap().iter().map(|m| m["container_path"].as_str().unwrap()).collect();
    paths.sort_by_key(|p| p[5..].parse::<u32>().unwrap());
    let expected: Vec<String> = (0..20).map(|i| format!("/mnt/{i}")).collect();
    assert_eq!(paths, expected);
}
