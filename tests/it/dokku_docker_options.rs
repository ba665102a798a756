//! Dokku's `tests/unit/docker-options.bats` and `docker-options-2.bats` (v0.38.27), ported
//! case by case: Dokku's command lines with `dokku` → `berth`, and Dokku's assertions. Dokku's
//! `deploy_app [dockerfile]` is a real `git push` of berth's `web` sample (a Dockerfile app);
//! `$DOKKU_ROOT/$TEST_APP/CONTAINER.web.1` is the container `$TEST_APP.web.1`. Each case says
//! whether it is literal or what had to change, and why.

use crate::bats::Bats;
use crate::push::{App, Repo};

/// Dokku's `deploy_app dockerfile`: pushes the `web` sample to `$TEST_APP`.
fn deploy_app(b: &Bats) -> App<'_> {
    let app = App { t: &b.t, name: b.app.clone() };
    Repo::from_template("web").push(&app).success();
    app
}

const ALL_PHASES: [&str; 3] = ["build", "deploy", "run"];

/// docker-options "(docker-options) docker-options:help": literal.
#[test]
fn docker_options_help() {
    let b = Bats::new("do-help");
    let help = b.run("berth docker-options");
    help.assert_output_contains("Manage docker options for an app");
    b.run("berth docker-options:help")
        .assert_output_contains("Manage docker options for an app")
        .assert_output(&help.output);
}

/// docker-options "(docker-options) docker-options:add (all phases)": literal.
#[test]
fn docker_options_add_all_phases() {
    let b = Bats::new("do-add");
    b.run("berth docker-options:add $TEST_APP build,deploy,run \"-v /tmp\"").assert_success();
    for phase in ALL_PHASES {
        b.run(&format!("berth docker-options:report $TEST_APP --docker-options-{phase}"))
            .assert_success()
            .assert_output_contains("-v /tmp");
    }
}

/// docker-options "(docker-options) docker-options:clear": literal.
#[test]
fn docker_options_clear() {
    let b = Bats::new("do-clear");
    let counts = |expected: [i32; 3]| {
        for (phase, count) in ALL_PHASES.iter().zip(expected) {
            b.run(&format!("berth docker-options:report $TEST_APP --docker-options-{phase}"))
                .assert_success()
                .assert_output_contains_n("-v /tmp", count);
        }
    };
    b.run("berth docker-options:add $TEST_APP build,deploy,run \"-v /tmp\"").assert_success();
    b.run("berth docker-options:clear $TEST_APP").assert_success();
    counts([0, 0, 0]);
    b.run("berth docker-options:add $TEST_APP build,deploy,run \"-v /tmp\"").assert_success();
    b.run("berth docker-options:clear $TEST_APP build").assert_success();
    counts([0, 1, 1]);
    b.run("berth docker-options:clear $TEST_APP deploy").assert_success();
    counts([0, 0, 1]);
    b.run("berth docker-options:clear $TEST_APP run").assert_success();
    counts([0, 0, 0]);
}

/// docker-options "docker-options:add (build phase)", "(deploy phase)", "(run phase)": literal.
#[test]
fn docker_options_add_one_phase() {
    for phase in ALL_PHASES {
        let b = Bats::new(&format!("do-add-{phase}"));
        b.run(&format!("berth docker-options:add $TEST_APP {phase} \"-v /tmp\"")).assert_success();
        b.run(&format!("berth docker-options:report $TEST_APP  --docker-options-{phase}"))
            .assert_success()
            .assert_output_contains("-v /tmp");
    }
}

/// docker-options "docker-options:remove (all phases)", "(build phase)", "(deploy phase)",
/// "(run phase)": literal.
#[test]
fn docker_options_remove() {
    for (phases, left) in [("build,deploy,run", 0), ("build", 2), ("deploy", 2), ("run", 2)] {
        let b = Bats::new(&format!("do-remove-{}", phases.replace(',', "-")));
        b.run("berth docker-options:add $TEST_APP build,deploy,run \"-v /tmp\"").assert_success();
        b.run("berth docker-options:report $TEST_APP")
            .assert_success()
            .assert_output_contains_n("-v /tmp", 3);
        b.run(&format!("berth docker-options:remove $TEST_APP {phases} \"-v /tmp\"")).assert_success();
        b.run("berth docker-options:report $TEST_APP")
            .assert_success()
            .assert_output_contains_n("-v /tmp", left);
    }
}

/// docker-options "(docker-options) deploy does not expand command substitution in option
/// values [buildpacks]". Adapted: deployed as a Dockerfile app (berth has no buildpacks); the
/// option handling under test does not depend on the builder.
#[test]
fn docker_options_no_command_substitution() {
    let b = Bats::new("do-subst");
    b.run("berth docker-options:add $TEST_APP deploy '--label=com.dokku.test=$(id)'").assert_success();
    let _app = deploy_app(&b);
    let out =
        b.run("docker inspect $TEST_APP.web.1 --format '{{ index .Config.Labels \"com.dokku.test\" }}'");
    out.assert_output("$(id)");
    assert!(!out.output.contains("uid="), "id command output leaked - option value was expanded");
}

/// docker-options "(docker-options) deploy with options [dockerfile]": literal.
#[test]
fn docker_options_deploy_with_options() {
    let b = Bats::new("do-deploy");
    b.run("berth docker-options:add $TEST_APP deploy \"-v /var/tmp\"").assert_success();
    b.run("berth docker-options:add $TEST_APP deploy \"-v /tmp\"").assert_success();
    b.run("berth docker-options:report $TEST_APP").assert_success().assert_output_contains_n("-v /tmp", 1);
    b.run("berth docker-options:add $TEST_APP build --build-arg PAYPAL_CLIENT_ID=abc-v123").assert_success();
    b.run("berth docker-options:add $TEST_APP build --build-arg PAYPAL_CLIENT_MODE=sandbox").assert_success();
    let _app = deploy_app(&b);
    b.run("docker inspect -f '{{ .Config.Volumes }}' $TEST_APP.web.1 | sed -e 's:map::g' | tr -d '[]' | tr ' ' $'\\n' | sort | xargs")
        .assert_output("/tmp:{} /var/tmp:{}");
}

/// docker-options "(docker-options) dockerfile deploy with link": literal.
#[test]
fn docker_options_deploy_with_link() {
    let b = Bats::new("do-link");
    b.run("berth docker-options:add $TEST_APP deploy \"-v /var/tmp\"").assert_success();
    b.run("berth docker-options:add $TEST_APP build \"--link postgres\"").assert_success();
    let _app = deploy_app(&b);
}

/// docker-options "(docker-options) build arguments". Changed: Dokku's sample Dockerfile echoes
/// `TOKEN is: $GITHUB_TOKEN` in two steps; berth's `web` sample gets one such step (naming the
/// app), so the line is counted once. The option reaches the image build's `ARG`, as in Dokku.
#[test]
fn docker_options_build_arguments() {
    let b = Bats::new("do-buildarg");
    b.run("berth docker-options:add $TEST_APP build '--build-arg GITHUB_TOKEN=\"hello\"'").assert_success();
    let app = App { t: &b.t, name: b.app.clone() };
    let repo = Repo::from_template("web");
    // The app's name in the step keeps the engine's build cache from skipping its output.
    let step = format!("ARG GITHUB_TOKEN\nRUN echo \"TOKEN is: $GITHUB_TOKEN\" for {}\nCOPY bin", b.app);
    let dockerfile = repo.read("Dockerfile").replacen("COPY bin", &step, 1);
    repo.write("Dockerfile", &dockerfile).commit("build arg");
    let push = repo.push(&app).success();
    assert_eq!(push.to_string().matches("TOKEN is: hello").count(), 1, "{push}");
    b.run("berth docker-options:list $TEST_APP --phase build")
        .assert_output("--build-arg GITHUB_TOKEN=hello");
}

/// A `--build-arg` for a phase other than build has no effect; berth says so when it is added.
#[test]
fn build_arg_outside_the_build_phase_warns() {
    let b = Bats::new("do-buildarg-run");
    b.run("berth docker-options:add $TEST_APP deploy,build --build-arg X=Y")
        .assert_success()
        .assert_output_contains("--build-arg only reaches the image build from the build phase")
        .assert_output_contains_n("no effect in the deploy phase", 1)
        .assert_output_contains_n("no effect in the build phase", 0);
}

/// docker-options "(docker-options:add) splits multi-flag input into separate options": literal.
#[test]
fn docker_options_split_multi_flag() {
    let b = Bats::new("do-split");
    b.run("berth docker-options:add $TEST_APP build --build-arg X=Y --link foo --link bar").assert_success();
    for line in [
        "berth docker-options:list $TEST_APP --phase build",
        "berth docker-options:report $TEST_APP --docker-options-build",
    ] {
        b.run(line)
            .assert_success()
            .assert_output_contains("--build-arg X=Y")
            .assert_output_contains("--link foo")
            .assert_output_contains("--link bar");
    }
}

/// docker-options "(docker-options:remove) symmetrically removes multi-flag input": literal.
#[test]
fn docker_options_remove_multi_flag() {
    let b = Bats::new("do-unsplit");
    b.run("berth docker-options:add $TEST_APP build --build-arg X=Y --link foo --link bar").assert_success();
    b.run("berth docker-options:remove $TEST_APP build --build-arg X=Y --link foo --link bar")
        .assert_success();
    b.run("berth docker-options:list $TEST_APP --phase build").assert_success().assert_output("");
}

/// docker-options "(docker-options:add) lifts misplaced --process out of option content":
/// literal.
#[test]
fn docker_options_lift_process() {
    let b = Bats::new("do-lift");
    b.run("berth docker-options:add $TEST_APP deploy --link foo --process web").assert_success();
    b.run("berth docker-options:list $TEST_APP --process web --phase deploy")
        .assert_success()
        .assert_output("--link foo");
    b.run("berth docker-options:list $TEST_APP --phase deploy")
        .assert_success()
        .assert_output_contains_n("--link foo", 0);
}

/// docker-options "(docker-options) dockerfile build skips unsupported flags from multi-flag
/// input": literal.
#[test]
fn docker_options_build_skips_unsupported() {
    let b = Bats::new("do-skip");
    b.run("berth docker-options:add $TEST_APP build --build-arg PAYPAL_CLIENT_ID=abc --link postgres")
        .assert_success();
    let _app = deploy_app(&b);
}

/// docker-options-2 "(docker-options:add) --process scopes option to one process type".
/// Refused on purpose: `-p 8080:5000` pins a host port, and berth starts a release's new
/// container before it retires the old one, so a fixed port would fail every second deploy;
/// the web process is published on an engine-chosen port behind the proxy instead.
#[test]
fn docker_options_publish_refused() {
    let b = Bats::new("do-publish");
    b.run("berth docker-options:add --process web $TEST_APP deploy '-p 8080:5000'")
        .assert_failure()
        .assert_output_contains("docker option \"-p\" is not supported by berth");
}

/// docker-options-2 "(docker-options:add) multiple --process flags add to each process": literal.
#[test]
fn docker_options_multiple_processes() {
    let b = Bats::new("do-multi");
    b.run("berth docker-options:add --process web --process worker $TEST_APP deploy '-v /shared:/shared'")
        .assert_success();
    b.run("berth docker-options:list $TEST_APP --process web --phase deploy")
        .assert_output("-v /shared:/shared");
    b.run("berth docker-options:list $TEST_APP --process worker --phase deploy")
        .assert_output("-v /shared:/shared");
}

/// docker-options-2 "(docker-options:add) without --process keeps default-scope behaviour":
/// literal.
#[test]
fn docker_options_default_scope() {
    let b = Bats::new("do-default");
    b.run("berth docker-options:add $TEST_APP deploy '-v /tmp/shared:/shared'").assert_success();
    b.run("berth docker-options:list $TEST_APP --phase deploy")
        .assert_output_contains("-v /tmp/shared:/shared");
    b.run("berth docker-options:report $TEST_APP --docker-options-deploy")
        .assert_output_contains("-v /tmp/shared:/shared");
}

/// docker-options-2 "(docker-options:add) rejects --process for non-deploy phases": literal.
#[test]
fn docker_options_process_outside_deploy() {
    let b = Bats::new("do-nondeploy");
    b.run("berth docker-options:add --process web $TEST_APP build '--shm-size 256m'")
        .assert_failure()
        .assert_output_contains("deploy phase");
    b.run("berth docker-options:add --process web $TEST_APP run '--shm-size 256m'").assert_failure();
    b.run("berth docker-options:add --process web $TEST_APP build,deploy '--shm-size 256m'").assert_failure();
}

/// docker-options-2 "(docker-options:add) rejects reserved _default_ process name": literal.
#[test]
fn docker_options_reserved_process() {
    let b = Bats::new("do-reserved");
    b.run("berth docker-options:add --process _default_ $TEST_APP deploy '-v /tmp:/tmp'")
        .assert_failure()
        .assert_output_contains("_default_");
}

/// docker-options-2 "(docker-options:add) warns on process types missing from Procfile".
/// Adapted: deployed as a Dockerfile app (Dokku deploys its python buildpack sample); berth's
/// processes come from app.toml.
#[test]
fn docker_options_warns_on_undeclared_process() {
    let b = Bats::new("do-warn");
    let _app = deploy_app(&b);
    b.run("berth docker-options:add --process nonexistent $TEST_APP deploy '-v /tmp:/tmp'")
        .assert_success()
        .assert_output_contains("nonexistent");
}

/// docker-options-2 "(docker-options:list) --phase is required": literal.
#[test]
fn docker_options_list_needs_phase() {
    let b = Bats::new("do-list");
    b.run("berth docker-options:list $TEST_APP").assert_failure().assert_output_contains("phase");
}

/// docker-options-2 "(docker-options) clone copies default and per-process options". Adapted:
/// `--cpus 1` stands for `-p 8080:5000`, which berth refuses (see `docker_options_publish_refused`).
#[test]
fn docker_options_clone() {
    let b = Bats::new("do-clone");
    b.run("berth docker-options:add --process web $TEST_APP deploy '--cpus 1'").assert_success();
    b.run("berth docker-options:add $TEST_APP deploy '-v /logs:/logs'").assert_success();
    b.run("berth apps:clone --skip-deploy $TEST_APP $TEST_APP-clone").assert_success();
    b.run("berth docker-options:list $TEST_APP-clone --process web --phase deploy").assert_output("--cpus 1");
    b.run("berth docker-options:list $TEST_APP-clone --phase deploy")
        .assert_output_contains("-v /logs:/logs");
    b.run("berth --force apps:destroy \"$TEST_APP-clone\" || true");
}

/// docker-options-2 "(docker-options) rename moves default and per-process options". Adapted:
/// `--cpus 1` for `-p 8080:5000`, and berth's app state is `$BERTH_ROOT/apps/<app>` (Dokku's
/// `config/docker-options/<app>`).
#[test]
fn docker_options_rename() {
    let b = Bats::new("do-rename");
    b.run("berth docker-options:add --process web $TEST_APP deploy '--cpus 1'").assert_success();
    b.run("berth docker-options:add $TEST_APP deploy '-v /logs:/logs'").assert_success();
    b.run("berth apps:rename $TEST_APP $TEST_APP-renamed").assert_success();
    b.run("berth docker-options:list $TEST_APP-renamed --process web --phase deploy")
        .assert_output("--cpus 1");
    b.run("berth docker-options:list $TEST_APP-renamed --phase deploy")
        .assert_output_contains("-v /logs:/logs");
    b.run("test ! -d $DOKKU_LIB_ROOT/apps/$TEST_APP").assert_success();
}

/// docker-options-2 "(docker-options:remove) --process removes from a single process".
/// Adapted: `--cpus 1` / `--cpus 2` stand for `-p 8080:5000` / `-p 9000:9000`.
#[test]
fn docker_options_remove_one_process() {
    let b = Bats::new("do-rm-proc");
    b.run("berth docker-options:add --process web $TEST_APP deploy '--cpus 1'").assert_success();
    b.run("berth docker-options:add --process worker $TEST_APP deploy '--cpus 2'").assert_success();
    b.run("berth docker-options:remove --process web $TEST_APP deploy '--cpus 1'").assert_success();
    b.run("berth docker-options:list $TEST_APP --process web --phase deploy").assert_output("");
    b.run("berth docker-options:list $TEST_APP --process worker --phase deploy").assert_output("--cpus 2");
}

/// docker-options-2 "(docker-options:clear) --process clears only that process". Adapted as
/// the case above.
#[test]
fn docker_options_clear_one_process() {
    let b = Bats::new("do-clear-proc");
    b.run("berth docker-options:add --process web $TEST_APP deploy '--cpus 1'").assert_success();
    b.run("berth docker-options:add --process worker $TEST_APP deploy '--cpus 2'").assert_success();
    b.run("berth docker-options:clear --process web $TEST_APP deploy").assert_success();
    b.run("berth docker-options:list $TEST_APP --process web --phase deploy").assert_output("");
    b.run("berth docker-options:list $TEST_APP --process worker --phase deploy").assert_output("--cpus 2");
}

/// docker-options-2 "(docker-options:report) exposes dynamic per-process keys". Adapted:
/// `--cpus 1` for `-p 8080:5000`.
#[test]
fn docker_options_report_per_process() {
    let b = Bats::new("do-rpt-proc");
    b.run("berth docker-options:add --process web $TEST_APP deploy '--cpus 1'").assert_success();
    b.run("berth docker-options:report $TEST_APP --docker-options-deploy.web")
        .assert_success()
        .assert_output_contains("--cpus 1");
    b.run("berth docker-options:report $TEST_APP")
        .assert_success()
        .assert_output_contains("Docker options deploy web")
        .assert_output_contains("--cpus 1");
}

/// docker-options-2 "(docker-options:report) --format json carries process-scoped options".
/// Adapted: `--cpus 1` for `-p 8080:5000`.
#[test]
fn docker_options_report_json_per_process() {
    let b = Bats::new("do-json-proc");
    b.run("berth docker-options:add --process web $TEST_APP deploy '--cpus 1'").assert_success();
    b.run("berth docker-options:add $TEST_APP deploy '-v /logs:/logs'").assert_success();
    b.run("berth docker-options:report $TEST_APP --format json")
        .assert_success()
        .assert_output_contains("\"docker-options-deploy.web\"")
        .assert_output_contains("\"deploy.web\"")
        .assert_output_contains("\"deploy.web-list\"")
        .assert_output_contains_n("--cpus 1", 3)
        .assert_output_contains("\"docker-options-deploy\"")
        .assert_output_contains("\"deploy\"")
        .assert_output_contains("\"deploy-list\"")
        .assert_output_contains_n("-v /logs:/logs", 3);
}

/// docker-options-2 "(docker-options:report) --format json exposes structured -list keys".
/// Adapted: `--cpus 1` for `-p 8080:5000`.
#[test]
fn docker_options_report_json_lists() {
    let b = Bats::new("do-json-list");
    b.run("berth docker-options:add $TEST_APP build --build-arg X=Y --link foo --link bar").assert_success();
    b.run("berth docker-options:add --process web $TEST_APP deploy '--cpus 1'").assert_success();
    b.run("berth docker-options:add $TEST_APP deploy '-v /logs:/logs' '--memory=512m'").assert_success();
    b.run("berth docker-options:add $TEST_APP deploy --label 'com.example.description=my app'")
        .assert_success();
    let report = "berth docker-options:report $TEST_APP --format json | jq -e";
    b.run(&format!("{report} '.\"build-list\" | length == 3'")).assert_success();
    b.run(&format!("{report} '.\"deploy-list\" | length == 3'")).assert_success();
    b.run(&format!("{report} '.\"deploy-list\" | index(\"--memory=512m\") != null'")).assert_success();
    b.run(&format!("{report} '.\"deploy-list\"[] | select(test(\"my app\"))'")).assert_success();
    b.run(&format!("{report} '.\"deploy.web-list\"[]'")).assert_success().assert_output_contains("--cpus 1");
    b.run(&format!("{report} 'has(\"docker-options-deploy-list\") | not'")).assert_success();
}

/// docker-options-2 "(docker-options:report) --format json emits empty -list arrays for unset
/// phases": literal.
#[test]
fn docker_options_report_json_empty_lists() {
    let b = Bats::new("do-json-empty");
    b.run("berth docker-options:report $TEST_APP --format json | jq -e '.\"build-list\" == [] and .\"deploy-list\" == [] and .\"run-list\" == []'")
        .assert_success();
}
