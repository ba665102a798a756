//! Named storage entries: `storage:create`, `storage:destroy`, `storage:info`,
//! `storage:list-entries` and `storage:set`.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

use crate::test::{Test, snapshot_state};

fn uid_of(t: &Test, rel: &str) -> u32 {
    fs::metadata(t.path(rel)).unwrap().uid()
}

fn mode_of(t: &Test, rel: &str) -> u32 {
    fs::metadata(t.path(rel)).unwrap().permissions().mode() & 0o7777
}

fn entry_file(t: &Test, name: &str) -> String {
    t.redact(&fs::read_to_string(t.path(format!("entries/{name}.toml"))).unwrap())
}

// ---------------------------------------------------------------- storage:create

#[test]
fn create_default_path() {
    let t = Test::new();
    let out = t.ok(["storage:create", "data"]);
    insta::assert_snapshot!(out, @r"
    exit: 0
    --- stdout
           Created [ROOT]/data/storage/data
    -----> Storage entry data created
    --- stderr
    ");
    assert!(t.path("data/storage/data").is_dir());
    assert_eq!(mode_of(&t, "data/storage/data"), 0o755);
    insta::assert_snapshot!(entry_file(&t, "data"), @r#"
    name = "data"
    scheduler = "docker-local"
    host_path = "[ROOT]/data/storage/data"
    reclaim_policy = "Retain"
    "#);
}

#[test]
fn create_again() {
    let t = Test::new();
    t.ok(["storage:create", "data", "--mode", "0750"]);
    insta::assert_snapshot!(t.ok(["storage:create", "data", "--mode", "750"]), @r"
    exit: 0
    --- stdout
    -----> Storage entry data already exists, leaving in place
           Setting directory mode to 0750
    --- stderr
    ");
    // Other settings converge the entry, as Dokku's re-run does, and say what changed.
    std::fs::set_permissions(
        t.path("data/storage/data"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    insta::assert_snapshot!(t.ok(["storage:create", "data", "--mode", "0700", "--chown", "heroku"]), @r"
    exit: 0
    --- stdout
    -----> Storage entry data already exists, updating chown unset -> heroku, mode 0750 -> 0700
           Setting directory mode to 0700
           Setting directory ownership to 1000:1000
    -----> Storage entry data updated
    --- stderr
    ");
    assert_eq!(mode_of(&t, "data/storage/data"), 0o700);
    assert_eq!(uid_of(&t, "data/storage/data"), 1000);
    // Only a different host path is refused: it would move the data.
    let elsewhere = t.mkdir("elsewhere");
    insta::assert_snapshot!(t.args(["storage:create", "data", &elsewhere]).refuse(), @r#"
    exit: 1
    --- stdout
    --- stderr
     !     storage entry "data" already exists at [ROOT]/data/storage/data; re-creating it at [ROOT]/elsewhere would move its data (destroy it and create it again, or omit the path)
    "#);
}

#[test]
fn create_with_chown() {
    let t = Test::new();
    let out = t.ok(["storage:create", "data", "--chown", "heroku"]);
    insta::assert_snapshot!(out, @r"
    exit: 0
    --- stdout
           Created [ROOT]/data/storage/data
           Setting directory ownership to 1000:1000
    -----> Storage entry data created
    --- stderr
    ");
    assert_eq!(uid_of(&t, "data/storage/data"), 1000);
    t.ok(["storage:create", "numeric", "--chown", "4242"]);
    assert_eq!(uid_of(&t, "data/storage/numeric"), 4242);
    t.ok(["storage:create", "skip", "--chown", "false"]);
    assert_eq!(uid_of(&t, "data/storage/skip"), 0);
}

#[test]
fn create_with_mode() {
    let t = Test::new();
    let out = t.ok(["storage:create", "data", "--mode", "750", "--chown", "paketo"]);
    insta::assert_snapshot!(out, @r"
    exit: 0
    --- stdout
           Created [ROOT]/data/storage/data
           Setting directory mode to 0750
           Setting directory ownership to 2000:2000
    -----> Storage entry data created
    --- stderr
    ");
    assert_eq!(mode_of(&t, "data/storage/data"), 0o750);
    assert_eq!(uid_of(&t, "data/storage/data"), 2000);
    insta::assert_snapshot!(entry_file(&t, "data"), @r#"
    name = "data"
    scheduler = "docker-local"
    host_path = "[ROOT]/data/storage/data"
    chown = "paketo"
    mode = "0750"
    reclaim_policy = "Retain"
    "#);
}

#[test]
fn create_custom_path_and_volume() {
    let t = Test::new();
    let custom = t.path_str("srv/custom");
    let out = t.ok(["storage:create", "custom", &custom]);
    insta::assert_snapshot!(out, @r"
    exit: 0
    --- stdout
           Created [ROOT]/srv/custom
    -----> Storage entry custom created
    --- stderr
    ");
    assert!(t.path("srv/custom").is_dir());
    assert!(!t.path("data/storage/custom").exists());
    let out = t.ok(["storage:create", "pg", "pgdata"]);
    insta::assert_snapshot!(out, @r"
    exit: 0
    --- stdout
    -----> Storage entry pg created
    --- stderr
    ");
    assert!(!t.path("data/storage/pg").exists());
    assert!(!t.path("data/storage/pgdata").exists());
}

#[test]
fn create_bad_names() {
    let t = Test::new();
    let long = "a".repeat(64);
    for name in ["Bad_Name", "-bad", "a.b", "../x", long.as_str()] {
        let out = t.args(["storage:create", "--", name]).refuse();
        assert!(out.stderr.starts_with(&format!(" !     storage entry name \"{name}\" ")), "{out}");
    }
    insta::assert_snapshot!(t.args(["storage:create", "--", "../x"]).refuse(), @r#"
    exit: 1
    --- stdout
    --- stderr
     !     storage entry name "../x" must be a DNS label (lowercase letters, digits, and dashes; cannot start or end with a dash)
    "#);
    insta::assert_snapshot!(t.args(["storage:create", &long]).refuse(), @r#"
    exit: 1
    --- stdout
    --- stderr
     !     storage entry name "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" is too long (max 63 characters)
    "#);
    insta::assert_snapshot!(t.args(["storage:create", ""]).refuse(), @r"
    exit: 1
    --- stdout
    --- stderr
     !     storage entry name is required
    ");
}

#[test]
fn create_bad_settings() {
    let t = Test::new();
    insta::assert_snapshot!(t.args(["storage:create", "data", "--chown", "70000"]).refuse(), @r#"
    exit: 1
    --- stdout
    --- stderr
     !     Unsupported chown permissions "70000". Use herokuish, heroku, paketo, root, false or a uid from 0 to 65535
    "#);
    insta::assert_snapshot!(t.args(["storage:create", "data", "--mode", "0888"]).refuse(), @r#"
    exit: 1
    --- stdout
    --- stderr
     !     Unsupported directory mode "0888". Value must be a 3 or 4 digit octal mode, such as 0755
    "#);
    insta::assert_snapshot!(t.args(["storage:create", "data", "--reclaim-policy", "Recycle"]).refuse(), @r#"
    exit: 1
    --- stdout
    --- stderr
     !     unsupported reclaim policy "Recycle" (supported: Retain, Delete)
    "#);
    insta::assert_snapshot!(t.args(["storage:create", "data", "--scheduler", "k3s"]).refuse(), @r#"
    exit: 1
    --- stdout
    --- stderr
     !     storage entry "data" has unsupported scheduler "k3s" (supported: docker-local)
    "#);
    insta::assert_snapshot!(t.args(["storage:create", "data", "rel/path"]).refuse(), @r#"
    exit: 1
    --- stdout
    --- stderr
     !     storage entry "data" host path must be an absolute path (not "/", without "..") or a docker named volume token, got "rel/path"
    "#);
    let custom = t.path_str("srv");
    insta::assert_snapshot!(t.args(["storage:create", "data", &custom, "--chown", "root"]).refuse(), @r"
    exit: 1
    --- stdout
    --- stderr
     !     --chown is only supported when the storage entry uses the default host path ([ROOT]/data/storage/data); omit --chown and manage [ROOT]/srv manually
    ");
    insta::assert_snapshot!(t.args(["storage:create", "data", "pgdata", "--mode", "0700"]).refuse(), @r"
    exit: 1
    --- stdout
    --- stderr
     !     --mode is only supported when the storage entry uses the default host path ([ROOT]/data/storage/data); omit --mode and manage pgdata manually
    ");
    t.mkdir("data/storage");
    fs::write(t.path("data/storage/file"), "not a directory").unwrap();
    insta::assert_snapshot!(t.args(["storage:create", "file"]).refuse(), @r"
    exit: 1
    --- stdout
    --- stderr
     !     storage entry path [ROOT]/data/storage/file exists but is not a directory
    ");
}

// ---------------------------------------------------------------- storage:destroy

#[test]
fn destroy_refused_while_mounted() {
    let t = Test::new();
    t.app("demo").app("api");
    t.ok(["storage:create", "data"]);
    t.ok(["storage:mount", "demo", "data", "--container-dir", "/data"]);
    t.ok(["storage:mount", "api", "data", "--container-dir", "/data"]);
    insta::assert_snapshot!(t.args(["storage:destroy", "data", "--force", "--destroy-host-dir"]).refuse(), @r#"
    exit: 1
    --- stdout
    --- stderr
     !     storage entry "data" is still mounted by app(s): api, demo; unmount it first (berth storage:unmount <app> data)
    "#);
}

#[test]
fn destroy_keeps_the_host_dir() {
    let t = Test::new();
    t.ok(["storage:create", "data"]);
    fs::write(t.path("data/storage/data/db.sqlite"), "rows").unwrap();
    let out = t.ok(["storage:destroy", "data", "--force"]);
    insta::assert_snapshot!(out, @r"
    exit: 0
    --- stdout
    -----> Storage entry data destroyed
    --- stderr
    ");
    assert!(!t.path("entries/data.toml").exists());
    assert_eq!(fs::read_to_string(t.path("data/storage/data/db.sqlite")).unwrap(), "rows");
}

#[test]
fn destroy_host_dir_with_force() {
    let t = Test::new();
    t.ok(["storage:create", "data"]);
    fs::write(t.path("data/storage/data/db.sqlite"), "rows").unwrap();
    let out = t.ok(["storage:destroy", "data", "--destroy-host-dir", "--force"]);
    insta::assert_snapshot!(out, @r"
    exit: 0
    --- stdout
           Removed [ROOT]/data/storage/data
    -----> Storage entry data destroyed
    --- stderr
    ");
    assert!(!t.path("data/storage/data").exists());
    assert!(!t.path("entries/data.toml").exists());
}

#[test]
fn destroy_with_reclaim_policy_delete_removes_the_dir() {
    let t = Test::new();
    t.ok(["storage:create", "data", "--reclaim-policy", "Delete"]);
    let out = t.ok(["storage:destroy", "data", "--force"]);
    insta::assert_snapshot!(out, @r"
    exit: 0
    --- stdout
           Removed [ROOT]/data/storage/data
    -----> Storage entry data destroyed
    --- stderr
    ");
    assert!(!t.path("data/storage/data").exists());
}

#[test]
fn destroy_reads_the_confirmation_from_a_pipe_and_refuses_without_one() {
    let t = Test::new();
    t.ok(["storage:create", "data"]);
    insta::assert_snapshot!(t.args(["storage:destroy", "data", "--destroy-host-dir"]).refuse(), @r"
    exit: 1
    --- stdout
    --- stderr
     !     refusing to destroy storage entry data without confirmation: nothing on stdin; pipe the name in (echo data | berth storage:destroy data) or pass --force
    ");
    insta::assert_snapshot!(t.args(["storage:destroy", "data"]).stdin("date\n").warnings(3).refuse(), @r#"
    exit: 1
    --- stdout
    --- stderr
     !     WARNING: Potentially Destructive Action
     !     This command will destroy storage entry data.
     !     To proceed, type "data"
     !     Confirmation did not match data. Aborted.
    "#);
    let out = t.args(["storage:destroy", "data"]).stdin("data\n").run().success();
    assert!(out.stdout.ends_with("-----> Storage entry data destroyed\n"), "{out}");
    assert!(!t.path("entries/data.toml").exists());
}

#[test]
fn destroy_on_a_terminal_asks_for_the_name() {
    let t = Test::new();
    t.ok(["storage:create", "data"]);
    let before = snapshot_state(t.root());
    let out = t.args(["storage:destroy", "data", "--destroy-host-dir"]).stdin("date\n").run_on_terminal();
    assert_eq!(out.status, 1, "{out}");
    assert!(out.stdout.contains(" !     Storage entry data is backed by [ROOT]/data/storage/data, which will be removed along with its contents.\n"), "{out}");
    assert!(out.stdout.contains(" !     WARNING: Potentially Destructive Action\n !     This command will destroy storage entry data.\n !     To proceed, type \"data\"\n> "), "{out}");
    assert!(out.stdout.ends_with(" !     Confirmation did not match data. Aborted.\n"), "{out}");
    assert_eq!(snapshot_state(t.root()), before, "a mismatched confirmation changed the state");
    let out = t.args(["storage:destroy", "data", "--destroy-host-dir"]).stdin("data\n").run_on_terminal();
    assert_eq!(out.status, 0, "{out}");
    assert!(
        out.stdout
            .ends_with("       Removed [ROOT]/data/storage/data\n-----> Storage entry data destroyed\n"),
        "{out}"
    );
    assert!(!t.path("data/storage/data").exists());
    assert!(!t.path("entries/data.toml").exists());
}

#[test]
fn destroy_errors() {
    let t = Test::new();
    insta::assert_snapshot!(t.args(["storage:destroy", "nope", "--force"]).refuse(), @r#"
    exit: 1
    --- stdout
    --- stderr
     !     storage entry "nope" does not exist; create it first with `berth storage:create`
    "#);
    let custom = t.mkdir("srv/custom");
    t.ok(["storage:create", "custom", &custom]);
    insta::assert_snapshot!(t.args(["storage:destroy", "custom", "--force", "--destroy-host-dir"]).refuse(), @r"
    exit: 1
    --- stdout
    --- stderr
     !     --destroy-host-dir is only supported when the storage entry uses the default host path ([ROOT]/data/storage/custom); omit --destroy-host-dir and manage [ROOT]/srv/custom manually
    ");
}

// ---------------------------------------------------------------- storage:info, storage:list-entries

#[test]
fn info_text_and_json() {
    let t = Test::new();
    t.ok(["storage:create", "data", "--chown", "heroku", "--mode", "0750"]);
    insta::assert_snapshot!(t.ok(["storage:info", "data"]), @r"
    exit: 0
    --- stdout
    -----> Storage entry data
           Scheduler:        docker-local
           Host path:        [ROOT]/data/storage/data
           Chown:            heroku
           Mode:             0750
           Reclaim policy:   Retain
    --- stderr
    ");
    insta::assert_snapshot!(t.ok(["storage:info", "data", "--format", "json"]), @r#"
    exit: 0
    --- stdout
    {
      "name": "data",
      "scheduler": "docker-local",
      "host_path": "[ROOT]/data/storage/data",
      "chown": "heroku",
      "mode": "0750",
      "reclaim_policy": "Retain"
    }
    --- stderr
    "#);
    insta::assert_snapshot!(t.args(["storage:info", "nope"]).refuse(), @r#"
    exit: 1
    --- stdout
    --- stderr
     !     storage entry "nope" does not exist; create it first with `berth storage:create`
    "#);
}

#[test]
fn list_entries_text_and_json() {
    let t = Test::new();
    insta::assert_snapshot!(t.ok(["storage:list-entries"]), @r"
    exit: 0
    --- stdout
    -----> No storage entries registered
    --- stderr
    ");
    insta::assert_snapshot!(t.ok(["storage:list-entries", "--format", "json"]), @r"
    exit: 0
    --- stdout
    []
    --- stderr
    ");
    t.ok(["storage:create", "data"]);
    t.ok(["storage:create", "pg", "pgdata"]);
    insta::assert_snapshot!(t.ok(["storage:list-entries"]), @r"
    exit: 0
    --- stdout
    -----> Storage entries:
           data	docker-local	[ROOT]/data/storage/data
           pg	docker-local	pgdata
    --- stderr
    ");
    insta::assert_snapshot!(t.ok(["storage:list-entries", "--format", "json"]), @r#"
    exit: 0
    --- stdout
    [
      {
        "name": "data",
        "scheduler": "docker-local",
        "host_path": "[ROOT]/data/storage/data",
        "reclaim_policy": "Retain"
      },
      {
        "name": "pg",
        "scheduler": "docker-local",
        "host_path": "pgdata",
        "reclaim_policy": "Retain"
      }
    ]
    --- stderr
    "#);
}

// ---------------------------------------------------------------- storage:set

#[test]
fn set_chown() {
    let t = Test::new();
    t.ok(["storage:create", "data"]);
    fs::create_dir(t.path("data/storage/data/sub")).unwrap();
    let out = t.ok(["storage:set", "data", "chown", "herokuish"]);
    insta::assert_snapshot!(out, @r"
    exit: 0
    --- stdout
           Setting directory ownership to 32767:32767
    -----> Storage entry data updated
    --- stderr
    ");
    assert_eq!(uid_of(&t, "data/storage/data"), 32767);
    assert_eq!(uid_of(&t, "data/storage/data/sub"), 32767);
    // Unsetting leaves the owner as it is.
    insta::assert_snapshot!(t.ok(["storage:set", "data", "chown"]), @r"
    exit: 0
    --- stdout
    -----> Storage entry data updated
    --- stderr
    ");
    assert_eq!(uid_of(&t, "data/storage/data"), 32767);
    assert!(!entry_file(&t, "data").contains("chown"));
}

#[test]
fn set_mode() {
    let t = Test::new();
    t.ok(["storage:create", "data"]);
    let out = t.ok(["storage:set", "data", "mode", "0700"]);
    insta::assert_snapshot!(out, @r"
    exit: 0
    --- stdout
           Setting directory mode to 0700
    -----> Storage entry data updated
    --- stderr
    ");
    assert_eq!(mode_of(&t, "data/storage/data"), 0o700);
    assert!(entry_file(&t, "data").contains("mode = \"0700\""));
}

#[test]
fn set_reclaim_policy() {
    let t = Test::new();
    t.ok(["storage:create", "data"]);
    insta::assert_snapshot!(t.ok(["storage:set", "data", "reclaim-policy", "Delete"]), @r"
    exit: 0
    --- stdout
    -----> Storage entry data updated
    --- stderr
    ");
    assert!(entry_file(&t, "data").contains("reclaim_policy = \"Delete\""));
    t.ok(["storage:set", "data", "reclaim-policy"]);
    assert!(entry_file(&t, "data").contains("reclaim_policy = \"Retain\""));
    let custom = t.mkdir("srv");
    t.ok(["storage:create", "custom", &custom]);
    insta::assert_snapshot!(t.args(["storage:set", "custom", "reclaim-policy", "Delete"]).refuse(), @r"
    exit: 1
    --- stdout
    --- stderr
     !     --reclaim-policy is only supported when the storage entry uses the default host path ([ROOT]/data/storage/custom); omit --reclaim-policy and manage [ROOT]/srv manually
    ");
}

#[test]
fn set_errors() {
    let t = Test::new();
    t.ok(["storage:create", "data"]);
    insta::assert_snapshot!(t.args(["storage:set", "data", "colour", "blue"]).refuse(), @r#"
    exit: 1
    --- stdout
    --- stderr
     !     Invalid property specified, valid properties include: chown, mode, reclaim-policy (not "colour")
    "#);
    insta::assert_snapshot!(t.args(["storage:set", "data"]).refuse(), @r"
    exit: 1
    --- stdout
    --- stderr
     !     No property specified
    ");
    // A negative number reaches berth's own check, not the argument parser's tip.
    insta::assert_snapshot!(t.args(["storage:set", "data", "chown", "-1"]).refuse(), @r#"
    exit: 1
    --- stdout
    --- stderr
     !     Unsupported chown permissions "-1". Use herokuish, heroku, paketo, root, false or a uid from 0 to 65535
    "#);
    insta::assert_snapshot!(t.args(["storage:create", "other", "--chown", "-1"]).refuse(), @r#"
    exit: 1
    --- stdout
    --- stderr
     !     Unsupported chown permissions "-1". Use herokuish, heroku, paketo, root, false or a uid from 0 to 65535
    "#);
    insta::assert_snapshot!(t.args(["storage:set", "data", "size", "10Gi"]).refuse(), @r#"
    exit: 1
    --- stdout
    --- stderr
     !     storage entry "data" (docker-local) does not accept size
    "#);
    insta::assert_snapshot!(t.args(["storage:set", "data", "chown", "nobody"]).refuse(), @r#"
    exit: 1
    --- stdout
    --- stderr
     !     Unsupported chown permissions "nobody". Use herokuish, heroku, paketo, root, false or a uid from 0 to 65535
    "#);
    insta::assert_snapshot!(t.args(["storage:set", "data", "mode", "rwx"]).refuse(), @r#"
    exit: 1
    --- stdout
    --- stderr
     !     Unsupported directory mode "rwx". Value must be a 3 or 4 digit octal mode, such as 0755
    "#);
    insta::assert_snapshot!(t.args(["storage:set", "data", "reclaim-policy", "Recycle"]).refuse(), @r#"
    exit: 1
    --- stdout
    --- stderr
     !     unsupported reclaim policy "Recycle" (supported: Retain, Delete)
    "#);
    insta::assert_snapshot!(t.args(["storage:set", "nope", "mode", "0700"]).refuse(), @r#"
    exit: 1
    --- stdout
    --- stderr
     !     storage entry "nope" does not exist; create it first with `berth storage:create`
    "#);
}
