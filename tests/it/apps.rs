//! `apps:*`.

use std::fs;

use crate::engine::{Volume, engine};
use crate::test::{Test, snapshot_state};

/// The app's `created_at`, to redact from reports.
fn created_at(t: &Test, app: &str) -> String {
    t.app_state_toml(app)["created_at"].as_integer().unwrap().to_string()
}

#[test]
fn create_makes_a_bare_repo_and_state() {
    let t = Test::new();
    let out = t.ok(["apps:create", "demo"]);
    insta::assert_snapshot!(out, @r"
    exit: 0
    --- stdout
    -----> Creating demo...
    --- stderr
    ");
    let repo = t.path("repos/demo.git");
    assert!(repo.join("HEAD").is_file(), "no bare repo at {}", repo.display());
    assert!(repo.join("objects").is_dir());
    assert!(!repo.join(".git").exists(), "the repo must be bare");
    let config = fs::read_to_string(repo.join("config")).unwrap();
    assert!(config.contains("bare = true"), "{config}");
    assert!(t.path("apps/demo/state.toml").is_file());
}

#[test]
fn create_refuses_a_duplicate() {
    let t = Test::new();
    t.app("demo");
    let out = t.args(["apps:create", "demo"]).refuse();
    insta::assert_snapshot!(out, @r"
    exit: 1
    --- stdout
    --- stderr
     !     Name is already taken: app demo exists
    ");
}

#[test]
fn create_refuses_names_that_are_not_dns_labels() {
    let t = Test::new();
    t.app("demo");
    let mut outs = String::new();
    for name in ["Bad_Name", "-x", "a..b", "../x"] {
        // `--` so that clap hands `-x` over rather than reading it as a flag.
        let out = t.args(["apps:create", "--", name]).refuse();
        outs.push_str(&out.to_string());
    }
    insta::assert_snapshot!(outs, @r#"
    exit: 1
    --- stdout
    --- stderr
     !     app name "Bad_Name" must be a DNS label (lowercase letters, digits, and dashes; cannot start or end with a dash)
    exit: 1
    --- stdout
    --- stderr
     !     app name "-x" must be a DNS label (lowercase letters, digits, and dashes; cannot start or end with a dash)
    exit: 1
    --- stdout
    --- stderr
     !     app name "a..b" must be a DNS label (lowercase letters, digits, and dashes; cannot start or end with a dash)
    exit: 1
    --- stdout
    --- stderr
     !     app name "../x" must be a DNS label (lowercase letters, digits, and dashes; cannot start or end with a dash)
    "#);
    assert!(!t.path("x").exists() && !t.path("repos/../x.git").exists());
}

#[test]
fn create_with_a_dash_name_without_separator_is_a_usage_error() {
    let t = Test::new();
    let out = t.args(["apps:create", "-x"]).usage_error();
    assert!(out.stderr.contains("unexpected argument '-x'"), "{out}");
}

#[test]
fn list_text_and_json() {
    let t = Test::new();
    insta::assert_snapshot!(t.ok(["apps:list"]), @r"
    exit: 0
    --- stdout
    =====> My Apps
    --- stderr
    ");
    insta::assert_snapshot!(t.ok(["apps:list", "--format", "json"]), @r"
    exit: 0
    --- stdout
    []
    --- stderr
    ");
    t.app("web").app("api");
    insta::assert_snapshot!(t.ok(["apps:list"]), @r"
    exit: 0
    --- stdout
    =====> My Apps
    api
    web
    --- stderr
    ");
    insta::assert_snapshot!(t.ok(["apps:list", "--format", "json"]), @r#"
    exit: 0
    --- stdout
    ["api","web"]
    --- stderr
    "#);
}

#[test]
fn report_text() {
    let t = Test::new();
    t.app("demo");
    let out = t.ok(["apps:report", "demo"]).replace(&created_at(&t, "demo"), "[CREATED_AT]");
    insta::assert_snapshot!(out, @"
    exit: 0
    --- stdout
    =====> demo app information
           App created at:                [CREATED_AT]
           App deploy branch:             main or master
           App dir:                       [ROOT]/apps/demo
           App repo:                      [ROOT]/repos/demo.git
           App scale:                     
           App storage dir:               [ROOT]/data/apps/demo
    --- stderr
    ");
}

#[test]
fn report_json_one_app_and_all_apps() {
    let t = Test::new();
    t.app("demo");
    let stamp = created_at(&t, "demo");
    let out = t.ok(["apps:report", "demo", "--format", "json"]).replace(&stamp, "[CREATED_AT]");
    insta::assert_snapshot!(out, @r#"
    exit: 0
    --- stdout
    {"app-created-at":"[CREATED_AT]","app-deploy-branch":"main or master","app-dir":"[ROOT]/apps/demo","app-repo":"[ROOT]/repos/demo.git","app-scale":"","app-storage-dir":"[ROOT]/data/apps/demo","created-at":"[CREATED_AT]","deploy-branch":"main or master","dir":"[ROOT]/apps/demo","repo":"[ROOT]/repos/demo.git","scale":"","storage-dir":"[ROOT]/data/apps/demo"}
    --- stderr
    "#);
    let all = t.ok(["apps:report", "--format", "json"]);
    let json: serde_json::Value = serde_json::from_str(&all.stdout).unwrap();
    assert_eq!(json["demo"]["app-repo"], "[ROOT]/repos/demo.git");
    assert_eq!(json.as_object().unwrap().len(), 1);
}

#[test]
fn report_without_apps_warns() {
    let t = Test::new();
    insta::assert_snapshot!(t.ok(["apps:report"]), @r"
    exit: 0
    --- stdout
    --- stderr
     !     You haven't deployed any applications yet
    ");
}

#[test]
fn destroy_reads_the_confirmation_from_a_pipe_and_refuses_without_one() {
    let t = Test::new();
    t.app("demo");
    let before = snapshot_state(t.root());
    // Nothing on stdin (a script, CI): refused, nothing changed.
    let out = t.args(["apps:destroy", "demo"]).refuse();
    insta::assert_snapshot!(out, @r"
    exit: 1
    --- stdout
    --- stderr
     !     refusing to destroy app demo without confirmation: nothing on stdin; pipe the name in (echo demo | berth apps:destroy demo) or pass --force
    ");
    // The wrong name piped in: refused.
    // Dokku's warning comes first, for a piped name too.
    let out = t.args(["apps:destroy", "demo"]).stdin("deom\n").warnings(3).refuse();
    insta::assert_snapshot!(out, @r#"
    exit: 1
    --- stdout
    --- stderr
     !     WARNING: Potentially Destructive Action
     !     This command will destroy app demo.
     !     To proceed, type "demo"
     !     Confirmation did not match demo. Aborted.
    "#);
    assert_eq!(snapshot_state(t.root()), before);
    // Dokku's `echo demo | dokku apps:destroy demo`.
    let out = t.args(["apps:destroy", "demo"]).stdin("demo\n").run().success();
    assert!(out.stdout.contains("-----> Destroying demo\n"), "{out}");
    assert!(!t.path("repos/demo.git").exists());
}

#[test]
fn destroy_on_a_terminal_asks_for_the_name() {
    let t = Test::new();
    t.app("demo");
    let before = snapshot_state(t.root());
    let out = t.args(["apps:destroy", "demo"]).stdin("deom\n").run_on_terminal();
    assert_eq!(out.status, 1, "{out}");
    assert!(
        out.stdout
            .contains(" !     This command will destroy app demo.\n !     To proceed, type \"demo\"\n> "),
        "{out}"
    );
    assert!(out.stdout.ends_with(" !     Confirmation did not match demo. Aborted.\n"), "{out}");
    assert_eq!(snapshot_state(t.root()), before, "a mismatched confirmation changed the state");
    let out = t.args(["apps:destroy", "demo"]).stdin("demo\n").run_on_terminal();
    assert_eq!(out.status, 0, "{out}");
    assert!(out.stdout.contains("-----> Destroying demo\n"), "{out}");
    assert!(!t.path("apps/demo").exists());
}

#[test]
fn destroy_purge_storage_removes_app_volumes_and_dir() {
    engine();
    // Volumes are found by their app label, engine-wide: the app's name must be unique.
    let app = format!("purge-{}", std::process::id());
    let t = Test::new();
    t.app(&app);
    t.mkdir(format!("data/apps/{app}/uploads"));
    let volume = Volume::create_labelled(&format!("{app}_cache"), &format!("berth.app={app}"));
    let unrelated = Volume::create("unrelated");
    let out = t.ok(["apps:destroy", &app, "--force", "--purge-storage"]).replace(&app, "[APP]");
    insta::assert_snapshot!(out, @r"
    exit: 0
    --- stdout
    -----> Destroying [APP]
           Removed volume [APP]_cache
           Removed [ROOT]/data/apps/[APP]
    --- stderr
    ");
    assert!(!volume.exists());
    assert!(unrelated.exists());
    assert!(!t.path(format!("data/apps/{app}")).exists());
}

#[test]
fn destroy_force_keeps_storage_data() {
    let t = Test::new();
    t.app("demo");
    t.mkdir("data/apps/demo/uploads");
    fs::write(t.path("data/apps/demo/uploads/photo.jpg"), "precious").unwrap();
    let out = t.ok(["apps:destroy", "demo", "--force"]);
    insta::assert_snapshot!(out, @r"
    exit: 0
    --- stdout
    -----> Destroying demo
    --- stderr
     !     Preserving storage directory [ROOT]/data/apps/demo
     !     App volumes (demo_*) are kept too; `berth apps:destroy demo --purge-storage` removes them
    ");
    assert_eq!(fs::read_to_string(t.path("data/apps/demo/uploads/photo.jpg")).unwrap(), "precious");
    assert!(!t.path("repos/demo.git").exists());
    assert!(!t.path("apps/demo").exists());
    insta::assert_snapshot!(t.ok(["apps:list", "--format", "json"]), @r"
    exit: 0
    --- stdout
    []
    --- stderr
    ");
    // The name is free again.
    t.app("demo");
}

#[test]
fn unknown_app_errors() {
    let t = Test::new();
    t.app("demo");
    for args in [
        &["apps:report", "nope"][..],
        &["apps:destroy", "nope", "--force"],
        &["storage:list", "nope"],
        &["storage:report", "nope"],
        &["storage:mount", "nope", "/tmp:/data"],
        &["storage:unmount", "nope", "/tmp:/data"],
        &["storage:allow", "nope", "/srv"],
        &["docker-options:add", "nope", "deploy", "--cpus 1"],
        &["docker-options:report", "nope"],
    ] {
        let out = t.args(args).refuse();
        assert_eq!(out.stderr, " !     App nope does not exist\n", "{args:?}\n{out}");
        assert_eq!(out.stdout, "", "{args:?}\n{out}");
    }
    insta::assert_snapshot!(t.args(["apps:report", "nope"]).refuse(), @r"
    exit: 1
    --- stdout
    --- stderr
     !     App nope does not exist
    ");
}

#[test]
fn namespace_help_lists_its_commands_as_dokku_does() {
    let t = Test::new();
    let out = t.args(["docker-options:help"]).run().success();
    assert!(out.stdout.starts_with("Usage: berth docker-options[:COMMAND]\n"), "{out}");
    assert!(out.stdout.contains("Manage docker options for an app"), "{out}");
    assert!(out.stdout.contains("    docker-options:add "), "{out}");
    assert_eq!(t.args(["docker-options"]).run().success().stdout, out.stdout);
    let out = t.args(["help"]).run().success();
    assert!(out.stdout.contains("    storage                  Manage mounted volumes\n"), "{out}");
}

#[test]
fn global_flags_before_the_command_work_as_in_dokku() {
    let t = Test::new();
    t.app("demo");
    let out = t.args(["--app", "demo", "--trace", "apps:report", "--app-dir"]).run().success();
    assert_eq!(out.stdout.trim(), "[ROOT]/apps/demo", "{out}");
    let out = t.args(["--quiet", "apps:list"]).run().success();
    assert_eq!(out.stdout, "demo\n", "{out}");
    let out = t.args(["--force", "apps:destroy", "demo"]).run().success();
    assert!(out.stdout.contains("-----> Destroying demo\n"), "{out}");
    assert!(!t.path("apps/demo").exists());
}
