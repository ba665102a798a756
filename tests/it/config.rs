//! `config:*` and `ps:scale` through the real CLI and real pushes: config reaches the process
//! containers and `berth run` (not the Docker build, unless in `[build].env_keys`), secrets
//! stay out of push output and reports, bad input changes no byte of state.

use crate::engine::docker;
use crate::push::{App, Repo};
use crate::test::Test;

/// A secret that breaks naive quoting: spaces, quotes, `=`, a newline, UTF-8.
const SECRET: &str = "s3cr3t 'q' \"d\" a=b $HOME\nline2 ünï";

/// The environment of a container, from `docker inspect`.
fn env_of(container: &str) -> Vec<String> {
    serde_json::from_str(&docker(&["inspect", "-f", "{{json .Config.Env}}", container])).unwrap()
}

/// The web sample with `[env]`, `[build].env_keys` and a Dockerfile that records its build args.
fn repo_with_env() -> Repo {
    let repo = Repo::from_template("web");
    let toml = format!(
        "{}\n[env]\nDEFAULTED = \"from app.toml\"\nOVERRIDDEN = \"app.toml loses\"\n\n[build]\nenv_keys = [\"BUILD_TOKEN\"]\n",
        repo.read("app.toml")
    );
    let dockerfile = repo.read("Dockerfile").replacen(
        "COPY bin",
        "ARG BUILD_TOKEN\nARG SECRET\nRUN echo \"token=$BUILD_TOKEN secret=$SECRET\" > /build-args\nCOPY bin",
        1,
    );
    repo.write("app.toml", &toml).write("Dockerfile", &dockerfile).commit("env");
    repo
}

#[test]
fn config_reaches_the_processes_and_run_but_the_build_only_through_env_keys() {
    let t = Test::new();
    let app = App::create(&t, "cf-env");
    t.ok(["config:set", "--global", "GLOBAL_ONLY=g", "OVERRIDDEN=global loses"]);
    t.args(["config:set", &app.name, "SECRET", "--stdin", "--no-restart"])
        .stdin(format!("{SECRET}\n"))
        .run()
        .success();
    let set =
        app.berth("config:set", &["--no-restart", "BUILD_TOKEN=tok=1", "OVERRIDDEN=app wins"]).success();
    assert!(set.stdout.contains("is not deployed") && !set.stdout.contains("tok=1"), "{set}");

    let push = repo_with_env().push(&app).success();
    assert!(!push.to_string().contains("s3cr3t") && !push.to_string().contains("tok=1"), "{push}");

    let env = env_of(&app.container("web"));
    for wanted in [
        format!("SECRET={SECRET}"),
        "BUILD_TOKEN=tok=1".into(),
        "GLOBAL_ONLY=g".into(),
        "DEFAULTED=from app.toml".into(),
        "OVERRIDDEN=app wins".into(),
    ] {
        assert!(env.contains(&wanted), "{wanted:?} not in {env:?}");
    }
    let run = app.berth("run", &["sh", "-c", "printf '%s\\n' \"$SECRET\""]).success();
    assert_eq!(run.stdout, format!("{SECRET}\n"));
    let build = app.berth("run", &["cat", "/build-args"]).success();
    assert_eq!(build.stdout, "token=tok=1 secret=\n", "only env_keys reach the build");

    for report in ["ps:report", "storage:report", "apps:report"] {
        let out = app.berth(report, &[]).success();
        assert!(!out.to_string().contains("s3cr3t"), "{report} printed the secret\n{out}");
    }
    let exported = app.berth("config:export", &["--format", "json"]).success();
    let vars: std::collections::BTreeMap<String, String> = serde_json::from_str(&exported.stdout).unwrap();
    assert_eq!(vars["SECRET"], SECRET);

    let restarted = app.berth("config:set", &["ADDED=1"]).success();
    assert!(restarted.stdout.contains(&format!("Restarting app {}", app.name)), "{restarted}");
    assert!(env_of(&app.container("web")).contains(&"ADDED=1".to_string()));
    let kept = app.berth("config:unset", &["--no-restart", "ADDED"]).success();
    assert!(kept.stdout.contains("Not restarting"), "{kept}");
    assert!(
        env_of(&app.container("web")).contains(&"ADDED=1".to_string()),
        "--no-restart keeps the container"
    );
    t.ok(["config:clear", "--global"]);
}

#[test]
fn bad_config_input_gets_one_line_and_changes_nothing() {
    let t = Test::new();
    let app = App::create(&t, "cf-bad");
    app.berth("config:set", &["KEPT=hunter2"]).success();
    let name = app.name.as_str();
    for args in [
        vec!["config:set", name, "BAD-KEY=hunter2"],
        vec!["config:set", name, "9LIVES=x"],
        vec!["config:set", name, "NOVALUE"],
        vec!["config:set", name, "OK=1", "hunter2 with spaces"],
        vec!["config:set", name, "BERTH_APP=x"],
        vec!["config:set", name, "PORT=80"],
        vec!["config:set", name],
        vec!["config:set", "cf-no-such-app", "A=1"],
        vec!["config:set", "--global", "BAD KEY=1"],
        vec!["config:unset", name, "BAD-KEY"],
        vec!["config:unset", name],
        vec!["config:get", name, "MISSING"],
        vec!["config:get", "cf-no-such-app", "KEPT"],
        vec!["config:show", "cf-no-such-app"],
        vec!["config:export", "cf-no-such-app"],
        vec!["config:clear", "cf-no-such-app"],
        vec!["config:set", name, "A", "B", "--stdin"],
        vec!["ps:scale", name, "web=2"],
    ] {
        let out = t.args(args.clone()).refuse();
        assert!(!out.stderr.contains("hunter2"), "{args:?} printed a value\n{out}");
    }
    t.args(["config:set", name, "NUL", "--stdin"]).stdin("a\0b").refuse();
    t.args(["config:export", name, "--format", "yaml"]).usage_error();
    assert_eq!(app.berth("config:get", &["KEPT"]).success().stdout, "hunter2\n");
}

#[test]
fn ps_scale_stores_the_admins_counts_and_refuses_an_exclusive_process_above_one() {
    let t = Test::new();
    let app = App::create(&t, "cf-scale");
    let repo = Repo::from_template("web");
    repo.push(&app).success();
    app.berth("ps:scale", &["web=2"]).success();
    let toml = format!("{}exclusive = true\n", repo.read("app.toml"));
    let admin_scaled = repo.write("app.toml", &toml).commit("exclusive").push(&app).rejected();
    assert!(
        admin_scaled.remote().iter().any(|l| l.contains(
            "app.toml:9:1: mount is exclusive (single writer), but the admin scaled process web to 2"
        )),
        "{admin_scaled}"
    );
    app.berth("ps:scale", &["web=1"]).success();
    repo.write("app.toml", &format!("{toml}\n[scale]\nweb = 2\n")).commit("scaled");
    let rejected = repo.push(&app).rejected();
    assert!(
        rejected.remote().iter().any(|l| l.contains("cannot run 2 instances")
            && l.contains("app-dir:uploads -> /app/storage (app.toml line 9)")),
        "{rejected}"
    );
    repo.write("app.toml", &toml).commit("exclusive").push(&app).success();

    let name = app.name.as_str();
    let shown = app.berth("ps:scale", &[]).success();
    assert_eq!(shown.stdout, format!("-----> Scaling for {name}\nproctype: qty\n--------: ---\nweb:  1\n"));
    for bad in ["web=2", "web=-1", "web=x", "web", "worker=1", "web=1.5"] {
        let out = t.args(["ps:scale", name, bad]).refuse();
        if bad == "web=2" {
            assert!(
                out.stderr.contains("app-dir:uploads -> /app/storage (app.toml line 9) is exclusive"),
                "{out}"
            );
        }
    }
    app.berth("ps:scale", &["web=0"]).success();
    assert_eq!(app.berth("ps:scale", &["--format", "json"]).success().stdout, "{\"web\":0}\n");
    assert!(t.app_state(name).contains("[scale]\nweb = 0"), "{}", t.app_state(name));
}
