//! Several instances of a process through the real CLI, real pushes, a real engine and a real
//! Caddy: every instance gets the app's mounts (a file written through instance 1 is read
//! through instance 3), the proxy balances over every instance, `ps:scale` starts and stops
//! instances at once (0 keeps the process), a rolling redeploy under load fails no request
//! (from the third release on, without a new proxy config), and a release failing partway
//! leaves the old one on every instance.

use crate::engine::inspect;
use crate::proxy::RunningCaddy;
use crate::push::{App, Repo, get, get_host, post};

/// An app of the `web` template with a domain, `[scale] web = <scale>`, pushed once.
fn scaled<'t>(caddy: &'t RunningCaddy, tag: &str, scale: u32) -> (App<'t>, Repo, String) {
    let app = App::create(&caddy.t, tag);
    let host = format!("{}.test", app.name);
    app.berth("domains:add", &[&host]).success();
    let repo = Repo::from_template("web");
    let toml = repo.read("app.toml");
    repo.write("app.toml", &format!("{toml}\n[scale]\nweb = {scale}\n")).commit("scaled");
    repo.push(&app).success();
    (app, repo, host)
}

/// `http://<address on berth's network>:5000` of an instance.
fn instance_url(app: &App, n: u32) -> String {
    let ip = inspect(
        &format!("{}.web.{n}", app.name),
        "{{(index .NetworkSettings.Networks \"berth\").IPAddress}}",
    );
    format!("http://{ip}:5000")
}

/// The release each web instance runs, by container name (running ones only).
fn instances(app: &App) -> Vec<(String, String)> {
    app.containers()
        .into_iter()
        .filter(|(name, _)| inspect(name, "{{.State.Running}}") == "true")
        .map(|(name, _)| {
            let release = inspect(&name, "{{index .Config.Labels \"berth.release\"}}");
            (name, release)
        })
        .collect()
}

fn web_names(app: &App, count: u32) -> Vec<String> {
    (1..=count).map(|n| format!("{}.web.{n}", app.name)).collect()
}

#[test]
fn sc_every_instance_shares_the_mounts_and_the_proxy_balances_over_all_of_them() {
    let caddy = RunningCaddy::start();
    let (app, _repo, host) = scaled(&caddy, "sc-share", 3);
    let names: Vec<String> = instances(&app).into_iter().map(|(name, _)| name).collect();
    assert_eq!(names, web_names(&app, 3));
    let payload = b"written through instance 1\n";
    assert_eq!(post(&instance_url(&app, 1), "/cgi-bin/upload?name=shared", payload).status, 200);
    let read = get(&instance_url(&app, 3), "/cgi-bin/file?name=shared");
    assert_eq!((read.status, read.body.as_slice()), (200, payload.as_slice()));
    for _ in 0..30 {
        assert_eq!(get_host(&caddy.url, &host, "/index.html").status, 200);
    }
    for name in &names {
        // busybox httpd logs each request on its stderr.
        let out = std::process::Command::new("docker").args(["logs", name]).output().unwrap();
        let logs = String::from_utf8_lossy(&out.stderr);
        assert!(logs.contains("/index.html"), "{name} served no proxied request:\n{logs}");
    }
}

#[test]
fn sc_ps_scale_applies_at_once_and_a_rolling_redeploy_under_load_fails_no_request() {
    let caddy = RunningCaddy::start();
    let (app, repo, host) = scaled(&caddy, "sc-roll", 1);
    let first = app.containers();
    app.berth("ps:scale", &["web=3"]).success();
    assert_eq!(app.containers()[0], first[0], "the instance running the release stays");
    assert_eq!(instances(&app).iter().map(|(n, _)| n.clone()).collect::<Vec<_>>(), web_names(&app, 3));
    assert_eq!(app.ps("ps-scale"), "web=3");
    let report = app.berth("apps:report", &["--format", "json"]).success();
    assert!(report.stdout.contains("\"app-scale\":\"web=3\""), "{report}");
    // Bad input: one line, no byte of state changed (`refuse` checks), no instance touched.
    let running = app.containers();
    let name = app.name.as_str();
    for args in [
        vec!["ps:scale", name, "web"],
        vec!["ps:scale", name, "=2"],
        vec!["ps:scale", name, "we-b=2"],
        vec!["ps:scale", name, "worker=1"],
        vec!["ps:scale", name, "web=-1"],
        vec!["ps:scale", name, "web=three"],
        vec!["ps:scale", name, "web=2", "web"],
        vec!["ps:scale", "sc-no-such-app", "web=2"],
    ] {
        caddy.t.args(args).refuse();
    }
    assert_eq!(app.containers(), running);

    // From the third release on, each instance has a standby address the proxy is configured
    // for, so the keep-alive connections of the load see no reload.
    repo.write("www/index.html", "release 2\n").commit("change");
    repo.push(&app).success();
    let load = crate::serve::Load::start(&caddy.url, &host);
    repo.write("www/index.html", "release 3\n").commit("change");
    let out = repo.push(&app).success();
    let (sent, failures) = load.finish();
    assert!(sent > 20, "only {sent} requests were sent");
    assert!(failures.is_empty(), "{} of {sent} requests failed: {failures:?}", failures.len());
    let order: Vec<usize> = (1..=3)
        .map(|n| {
            let line = format!("Stopping {}.web.{n}.retiring", app.name);
            out.remote().iter().position(|l| l.contains(&line)).unwrap_or_else(|| panic!("{line}\n{out}"))
        })
        .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "one instance at a time: {order:?}\n{out}");
    let releases: Vec<String> = instances(&app).into_iter().map(|(_, release)| release).collect();
    assert_eq!(releases, ["3", "3", "3"], "the admin's scale is kept across the pushes");

    app.berth("ps:scale", &["web=0"]).success();
    assert!(instances(&app).is_empty());
    assert_eq!(get_host(&caddy.url, &host, "/health").status, 503);
    assert_eq!(app.berth("ps:scale", &["--format", "json"]).success().stdout, "{\"web\":0}\n");
    app.berth("ps:scale", &["web=1"]).success();
    assert_eq!(instances(&app), [(format!("{}.web.1", app.name), "3".to_string())]);
    assert_eq!(get_host(&caddy.url, &host, "/health").status, 200);
}

#[test]
fn sc_a_release_failing_partway_leaves_the_old_one_serving_on_every_instance() {
    let caddy = RunningCaddy::start();
    let (app, repo, host) = scaled(&caddy, "sc-fail", 3);
    // The new release's instances count their starts in the shared storage; the third one
    // answers its health check with 500, after two were replaced.
    let web =
        repo.read("bin/web").replacen("#!/bin/sh\n", "#!/bin/sh\necho started >>/app/storage/starts\n", 1);
    let check = "#!/bin/sh\n[ \"$(wc -l </app/storage/starts)\" -lt 3 ] && s=200 || s=500\n\
                 printf 'Status: %s\\r\\n\\r\\n' \"$s\"\n";
    let toml =
        repo.read("app.toml").replace("healthcheck = \"/health\"", "healthcheck = \"/cgi-bin/starts\"");
    repo.write("bin/web", &web)
        .write("www/cgi-bin/starts", check)
        .write("app.toml", &toml)
        .commit("third fails");
    let out = repo.push(&app).rejected();
    assert!(out.remote().iter().any(|l| l.contains("the web process is not healthy")), "{out}");
    assert!(
        out.remote().iter().any(|l| l.contains(&format!("Starting {}.web.1.retiring again", app.name))),
        "{out}"
    );
    let running = instances(&app);
    assert_eq!(running.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>(), web_names(&app, 3));
    assert!(running.iter().all(|(_, release)| release == "1"), "{running:?}");
    assert_eq!(app.ps("ps-current-release"), "1");
    for _ in 0..10 {
        assert_eq!(get_host(&caddy.url, &host, "/health").status, 200);
    }
}

#[test]
fn ig_from_the_third_release_a_rolling_redeploy_loads_no_new_proxy_config() {
    let caddy = RunningCaddy::start();
    let (app, repo, host) = scaled(&caddy, "ig-ladder", 3);
    repo.write("www/index.html", "release 2\n").commit("change");
    repo.push(&app).success();
    let config = caddy.config();
    let load = crate::serve::Load::start(&caddy.url, &host);
    for n in 3..=4 {
        repo.write("www/index.html", &format!("release {n}\n")).commit("change");
        repo.push(&app).success();
        assert_eq!(caddy.config(), config, "release {n}: berth loaded no new config");
    }
    let (sent, failures) = load.finish();
    assert!(sent > 20, "only {sent} requests were sent");
    assert!(failures.is_empty(), "{} of {sent} keep-alive requests failed: {failures:?}", failures.len());
    let releases: Vec<String> = instances(&app).into_iter().map(|(_, release)| release).collect();
    assert_eq!(releases, ["4", "4", "4"]);
}
