//! `docker-options:*`, and their `-v` options in `storage:report`.

use crate::test::Test;

#[test]
fn add_and_report() {
    let t = Test::new();
    t.app("demo");
    let out = t.ok(["docker-options:add", "demo", "deploy", "--memory 512m --cpus 1"]);
    insta::assert_snapshot!(out, @r"
    exit: 0
    --- stdout
    --- stderr
    ");
    t.ok(["docker-options:add", "demo", "build,run", "--label 'a b'"]);
    t.ok(["docker-options:add", "--process", "web", "demo", "deploy", "--cpus 2"]);
    insta::assert_snapshot!(t.ok(["docker-options:report", "demo"]), @r"
    exit: 0
    --- stdout
    =====> demo docker-options information
           Docker options build:          --label 'a b'
           Docker options deploy:         --memory 512m --cpus 1
           Docker options deploy web:     --cpus 2
           Docker options run:            --label 'a b'
    --- stderr
    ");
    insta::assert_snapshot!(t.ok(["docker-options:report", "demo", "--docker-options-deploy"]), @r"
    exit: 0
    --- stdout
    --memory 512m --cpus 1
    --- stderr
    ");
    insta::assert_snapshot!(t.ok(["docker-options:report", "demo", "--format", "json"]), @r#"
    exit: 0
    --- stdout
    {"build":"--label 'a b'","build-list":["--label 'a b'"],"deploy":"--memory 512m --cpus 1","deploy-list":["--memory 512m","--cpus 1"],"deploy.web":"--cpus 2","deploy.web-list":["--cpus 2"],"docker-options-build":"--label 'a b'","docker-options-deploy":"--memory 512m --cpus 1","docker-options-deploy.web":"--cpus 2","docker-options-run":"--label 'a b'","run":"--label 'a b'","run-list":["--label 'a b'"]}
    --- stderr
    "#);
    let all = t.ok(["docker-options:report", "--format", "json"]);
    let json: serde_json::Value = serde_json::from_str(&all.stdout).unwrap();
    assert_eq!(json["demo"]["deploy"], "--memory 512m --cpus 1");
}

#[test]
fn add_errors() {
    let t = Test::new();
    t.app("demo");
    t.ok(["docker-options:add", "demo", "deploy", "--cpus 1"]);
    insta::assert_snapshot!(t.args(["docker-options:add", "demo", "sometimes", "--cpus 1"]).refuse(), @r"
    exit: 1
    --- stdout
    --- stderr
     !     Phase(s) must be one of [build deploy run]
    ");
    insta::assert_snapshot!(t.args(["docker-options:add", "demo", "deploy", ""]).refuse(), @r"
    exit: 1
    --- stdout
    --- stderr
     !     Please specify docker options to add to the phase
    ");
    insta::assert_snapshot!(t.args(["docker-options:remove", "demo", "deploy", " "]).refuse(), @r"
    exit: 1
    --- stdout
    --- stderr
     !     Please specify docker options to remove from the phase
    ");
    insta::assert_snapshot!(t.args(["docker-options:add", "--process", "web", "demo", "build", "--cpus 1"]).refuse(), @r#"
    exit: 1
    --- stdout
    --- stderr
     !     --process is only supported for the deploy phase, got "build"
    "#);
    insta::assert_snapshot!(t.args(["docker-options:add", "--process", "_default_", "demo", "deploy", "--cpus 1"]).refuse(), @r#"
    exit: 1
    --- stdout
    --- stderr
     !     "_default_" is reserved and cannot be used as a --process value
    "#);
    insta::assert_snapshot!(t.args(["docker-options:add", "demo", "deploy", "--label 'open"]).refuse(), @r#"
    exit: 1
    --- stdout
    --- stderr
     !     unterminated quote in docker option "--label 'open"
    "#);
    t.args(["docker-options:add", "demo", "deploy"]).usage_error();
}

#[test]
fn remove_and_clear() {
    let t = Test::new();
    t.app("demo");
    t.ok(["docker-options:add", "demo", "build,deploy,run", "--memory 512m --cpus 1"]);
    t.ok(["docker-options:add", "--process", "web", "demo", "deploy", "--cpus 2"]);
    insta::assert_snapshot!(t.ok(["docker-options:remove", "demo", "deploy", "--memory 512m"]), @r"
    exit: 0
    --- stdout
    --- stderr
    ");
    // Removing what is not there is a silent no-op, as in Dokku.
    t.ok(["docker-options:remove", "demo", "deploy", "--memory 512m"]);
    insta::assert_snapshot!(t.ok(["docker-options:report", "demo", "--docker-options-deploy"]), @r"
    exit: 0
    --- stdout
    --cpus 1
    --- stderr
    ");
    insta::assert_snapshot!(t.ok(["docker-options:clear", "--process", "web", "demo"]), @r"
    exit: 0
    --- stdout
    -----> Clearing docker-options for demo on phase deploy for process web
    --- stderr
    ");
    insta::assert_snapshot!(t.ok(["docker-options:clear", "demo", "build"]), @r"
    exit: 0
    --- stdout
    -----> Clearing docker-options for demo on phase build
    --- stderr
    ");
    insta::assert_snapshot!(t.ok(["docker-options:report", "demo"]), @r"
    exit: 0
    --- stdout
    =====> demo docker-options information
           Docker options build:          
           Docker options deploy:         --cpus 1
           Docker options run:            --memory 512m --cpus 1
    --- stderr
    ");
    insta::assert_snapshot!(t.ok(["docker-options:clear", "demo"]), @r"
    exit: 0
    --- stdout
    -----> Clearing docker-options for demo on all phases
    --- stderr
    ");
    assert!(!t.app_state("demo").contains("docker_options"), "{}", t.app_state("demo"));
    insta::assert_snapshot!(t.args(["docker-options:clear", "demo", "later"]).refuse(), @r"
    exit: 1
    --- stdout
    --- stderr
     !     Phase(s) must be one of [build deploy run]
    ");
}

#[test]
fn report_without_apps() {
    let t = Test::new();
    insta::assert_snapshot!(t.ok(["docker-options:report"]), @r"
    exit: 0
    --- stdout
    --- stderr
     !     You haven't deployed any applications yet
    ");
    insta::assert_snapshot!(t.ok(["docker-options:report", "--format", "json"]), @r"
    exit: 0
    --- stdout
    {}
    --- stderr
    ");
}

#[test]
fn report_errors() {
    let t = Test::new();
    t.app("demo");
    insta::assert_snapshot!(t.args(["docker-options:report", "demo", "--docker-options-bogus"]).refuse(), @r"
    exit: 1
    --- stdout
    --- stderr
     !     Invalid flag passed, valid flags: --docker-options-build, --docker-options-deploy, --docker-options-run
    ");
    insta::assert_snapshot!(t.args(["docker-options:report", "demo", "--docker-options-build", "--docker-options-run"]).refuse(), @r"
    exit: 1
    --- stdout
    --- stderr
     !     docker-options:report command allows only a single flag
    ");
    insta::assert_snapshot!(t.args(["docker-options:report", "demo", "--docker-options-build", "--format", "json"]).refuse(), @r"
    exit: 1
    --- stdout
    --- stderr
     !     --format flag cannot be specified when specifying an info flag
    ");
}

#[test]
fn volume_options_show_in_storage_report() {
    let t = Test::new();
    t.app("demo");
    t.ok(["docker-options:add", "demo", "deploy,run", "-v /srv/shared:/shared:ro --memory 1g"]);
    t.ok(["docker-options:add", "demo", "build", "--volume=/srv/cache:/cache"]);
    t.ok(["docker-options:add", "demo", "run", "--volume /srv/x:/x"]);
    insta::assert_snapshot!(t.ok(["storage:report", "demo"]), @"
    exit: 0
    --- stdout
    =====> demo storage information
           Storage allowed drivers:       
           Storage allowed host paths:    
           Storage allowed volumes:       
           Storage build mounts:          -v /srv/cache:/cache
           Storage deploy mounts:         -v /srv/shared:/shared:ro
           Storage detached:              
           Storage run mounts:            -v /srv/shared:/shared:ro -v /srv/x:/x
    --- stderr
    ");
    insta::assert_snapshot!(t.ok(["storage:report", "demo", "--storage-deploy-mounts"]), @r"
    exit: 0
    --- stdout
    -v /srv/shared:/shared:ro
    --- stderr
    ");
}

#[test]
fn list_shows_one_process_and_phase_one_option_a_line() {
    let t = Test::new();
    t.app("demo");
    t.ok(["docker-options:add", "demo", "deploy,run", "--memory 512m --init"]);
    t.ok(["docker-options:add", "--process", "worker", "demo", "deploy", "--cpus 2"]);
    insta::assert_snapshot!(t.ok(["docker-options:list", "demo", "--phase", "deploy"]), @r"
    exit: 0
    --- stdout
    --memory 512m
    --init
    --- stderr
    ");
    let out = t.ok(["docker-options:list", "demo", "--phase", "deploy", "--process", "worker"]);
    assert_eq!(out.stdout, "--cpus 2\n", "{out}");
    assert_eq!(t.ok(["docker-options:list", "demo", "--phase", "build"]).stdout, "");
    insta::assert_snapshot!(t.args(["docker-options:list", "demo", "--phase", "run", "--process", "worker"]).refuse(), @r#"
    exit: 1
    --- stdout
    --- stderr
     !     --process is only supported for the deploy phase, got "run"
    "#);
}
