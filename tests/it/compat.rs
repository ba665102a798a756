//! berth's side of issue 14 (Dokku compatibility) beyond Dokku's own cases: what berth does
//! where Dokku's cases do not look (ownership of `--create`, renames and clones that would
//! lose or share data, `--mount` agreeing with `storage:report`, labelled entry volumes).

use std::os::unix::fs::MetadataExt;

use crate::bats::Bats;
use crate::engine::{docker, unique_volume_name};

/// `storage:mount <app> /srv/x:/data --create --chown 1000` makes the missing directory owned
/// by 1000; without `--create` the refusal names the fix; on an entry mount `--create` is refused.
#[test]
fn mount_create_makes_the_host_dir_owned() {
    let b = Bats::new("create");
    b.run("berth storage:mount $TEST_APP $SCRATCH/new/x:/data")
        .assert_failure()
        .assert_output_contains("add --create (and --chown <owner>) to make it, or mkdir it first");
    b.run("berth storage:mount $TEST_APP $SCRATCH/new/x:/data --create --chown heroku")
        .assert_success()
        .assert_output_contains("Setting directory ownership to 1000:1000");
    let meta = std::fs::metadata(b.scratch().join("new/x")).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (1000, 1000));
    b.run("berth storage:create data").assert_success();
    b.run("berth storage:mount $TEST_APP data --container-dir /d --create")
        .assert_failure()
        .assert_output_contains("colon form");
}

/// A process type the current release does not declare warns, naming the declared ones, and
/// the mount is recorded; before a first deploy nothing is known and nothing is said.
#[test]
fn undeclared_process_type_warns_after_a_deploy() {
    let b = Bats::new("proc");
    b.run("berth storage:create data").assert_success();
    b.run("berth storage:mount $TEST_APP data --container-dir /a --process-type wrker")
        .assert_success()
        .assert_output_not_contains("wrker");
    let app = crate::push::App { t: &b.t, name: b.app.clone() };
    crate::push::Repo::from_template("web").push(&app).success();
    b.run("berth storage:mount $TEST_APP data --container-dir /b --process-type wrker")
        .assert_success()
        .assert_output_contains("Process type \"wrker\" is not declared in the Procfile for")
        .assert_output_contains("its current release declares web; recorded anyway");
    b.run("berth storage:list $TEST_APP --format json | jq -r '[.[] | select(.process_type == \"wrker\")] | length'").assert_output("2");
}

/// `--mount` is checked as strictly as `-v` and shows in `storage:report` as the `-v` it means.
#[test]
fn mount_docker_option_agrees_with_storage_report() {
    let b = Bats::new("mountopt");
    b.run("berth docker-options:add $TEST_APP deploy '--mount type=bind,source=/srv/shared,target=/shared,readonly'")
        .assert_success();
    b.run("berth storage:report $TEST_APP --storage-deploy-mounts")
        .assert_output("-v /srv/shared:/shared:ro");
    b.run("berth docker-options:add $TEST_APP deploy '--mount type=bind,source=rel,target=/x'")
        .assert_failure()
        .assert_output_contains("bind source \"rel\" must be an absolute path");
    b.run("berth docker-options:add $TEST_APP deploy '-v /h:/c:noexec'")
        .assert_failure()
        .assert_output_contains("--volume-options noexec");
}

/// A rename moves the app's directory (no copy) and refuses an app with Docker volumes; a
/// clone refuses to start on data it would not copy, and copies it when asked. Both carry the
/// app's config.
#[test]
fn rename_and_clone_never_lose_or_share_data() {
    let b = Bats::new("rename");
    b.run("mkdir -p $DOKKU_LIB_ROOT/data/apps/$TEST_APP/uploads && echo kept > $DOKKU_LIB_ROOT/data/apps/$TEST_APP/uploads/f").assert_success();
    b.run("berth apps:clone $TEST_APP $TEST_APP-c").assert_failure().assert_output_contains("--copy-storage");
    b.run("test ! -d $DOKKU_LIB_ROOT/apps/$TEST_APP-c").assert_success();
    b.run("berth config:set $TEST_APP --no-restart SECRET='a b=c'").assert_success();
    b.run("berth apps:clone $TEST_APP $TEST_APP-c --copy-storage").assert_success();
    b.run("cat $DOKKU_LIB_ROOT/data/apps/$TEST_APP-c/uploads/f").assert_output("kept");
    b.run("berth config:get $TEST_APP-c SECRET").assert_output("a b=c");
    b.run("berth apps:rename $TEST_APP $TEST_APP-r").assert_success();
    b.run("cat $DOKKU_LIB_ROOT/data/apps/$TEST_APP-r/uploads/f && test ! -e $DOKKU_LIB_ROOT/data/apps/$TEST_APP").assert_output("kept");
    b.run("berth config:get $TEST_APP-r SECRET").assert_output("a b=c");
    b.run("berth apps:rename $TEST_APP-r $TEST_APP-c")
        .assert_failure()
        .assert_output_contains("Name is already taken");
    let volume = format!("{}-r_data", b.app);
    docker(&["volume", "create", "--label", &format!("berth.app={}-r", b.app), &volume]);
    let refused = b.run("berth apps:rename $TEST_APP-r $TEST_APP-x");
    docker(&["volume", "rm", &volume]);
    refused.assert_failure().assert_output_contains("Docker cannot rename a volume");
    b.run("berth apps:destroy $TEST_APP-r --force --purge-storage && berth apps:destroy $TEST_APP-c --force --purge-storage").assert_success();
}

/// A volume-backed entry gets its Docker volume made, labelled with the entry and its labels.
#[test]
fn entry_volume_carries_the_labels() {
    let b = Bats::new("entryvol");
    let volume = unique_volume_name("dk-entry");
    let created = b.run(&format!("berth storage:create vol {volume} --label tier=cache"));
    let labels = docker(&[
        "volume",
        "inspect",
        "-f",
        "{{ index .Labels \"tier\" }} {{ index .Labels \"berth.entry\" }}",
        &volume,
    ]);
    docker(&["volume", "rm", &volume]);
    created.assert_success().assert_output_contains(&format!("Created Docker volume {volume}"));
    assert_eq!(labels.trim(), "cache vol");
}

/// A running app is stopped (SIGTERM first), renamed with its data, and started again under the
/// new name from the same release.
#[test]
fn rename_restarts_a_running_app() {
    let b = Bats::new("rename-live");
    let app = crate::push::App { t: &b.t, name: b.app.clone() };
    crate::push::Repo::from_template("web").push(&app).success();
    b.run("berth apps:rename $TEST_APP $TEST_APP-n")
        .assert_success()
        .assert_output_contains(&format!("Stopping {} to rename it", b.app))
        .assert_output_contains(&format!("Renamed {} to {}-n", b.app, b.app));
    let renamed = crate::push::App { t: &b.t, name: format!("{}-n", b.app) };
    assert!(renamed.url().starts_with("http://127.0.0.1:"));
    assert_eq!(renamed.containers().len(), 1, "{:?}", renamed.containers());
    assert!(app.containers().is_empty(), "{:?}", app.containers());
}
