//! End to end: the sample apps pushed with the real `git push` to a test's `BERTH_ROOT`, deployed
//! on the real engine by the built hooks; what the containers mount is read back with
//! `docker inspect`, and what they serve over HTTP.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::engine::{docker, inspect, mounts_of};
use crate::push::{App, Repo, get, post};
use crate::test::{Test, snapshot_state};

type Mounts = BTreeSet<(String, String, bool)>;

/// A read-write bind of a host path.
fn bind(source: &Path, target: &str) -> (String, String, bool) {
    (source.display().to_string(), target.to_string(), true)
}

fn mounts<const N: usize>(list: [(String, String, bool); N]) -> Mounts {
    BTreeSet::from(list)
}

/// The work tree's app.toml with more mounts appended.
fn toml_with(repo: &Repo, extra: &str) -> String {
    format!("{}{extra}", repo.read("app.toml"))
}

/// Deploys the `web` sample and checks it answers; returns its URL.
fn deploy_web(app: &App, repo: &Repo) -> String {
    let out = repo.push(app).success();
    let url = app.url();
    assert_eq!(url, format!("http://127.0.0.1:{}", out.deployed_port()), "{out}");
    assert_eq!(get(&url, "/health").status, 200);
    url
}

/// The release numbers with their outcome, oldest first.
fn outcomes(app: &App) -> Vec<(u64, String)> {
    app.releases()
        .iter()
        .map(|r| (r["number"].as_u64().unwrap(), r["outcome"].as_str().unwrap().to_string()))
        .collect()
}

#[test]
fn the_first_push_deploys_with_the_declared_mount() {
    let t = Test::new();
    let app = App::create(&t, "first");
    let repo = Repo::from_template("web");

    let out = repo.push(&app).success();
    let port = out.deployed_port();
    assert!(out.has_line("       Mount   app-dir:uploads -> /app/storage (deploy,run)"), "{out}");
    let url = app.url();
    assert_eq!(url, format!("http://127.0.0.1:{port}"));
    let health = get(&url, "/health");
    assert_eq!((health.status, health.text().as_str()), (200, "ok\n"));

    let web = app.container("web");
    assert_eq!(mounts_of(&web), mounts([bind(&app.dir("uploads"), "/app/storage")]));
    assert_eq!(inspect(&web, "{{.Config.User}}"), "1000");
    assert_eq!(inspect(&web, "{{.Config.Image}}"), format!("berth/{}:1", app.name));
    let uploads = fs::metadata(app.dir("uploads")).unwrap();
    assert_eq!((uploads.uid(), uploads.gid()), (1000, 1000), "the app directory belongs to [app].user");
    assert!(uploads.is_dir());

    assert_eq!(app.containers().iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(), [web.as_str()]);
    assert_eq!(outcomes(&app), [(1, "deployed".to_string())]);
    assert_eq!(app.ps("ps-current-release"), "1");
    assert_eq!(app.rev("refs/heads/main"), Some(repo.head()));
}

#[test]
fn data_written_through_the_app_survives_a_push() {
    let t = Test::new();
    let app = App::create(&t, "survive");
    let repo = Repo::from_template("web");
    let url = deploy_web(&app, &repo);
    let first_id = inspect(&app.container("web"), "{{.Id}}");

    let payload: Vec<u8> = (0..200_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    let stored = post(&url, "/cgi-bin/upload?name=x", &payload);
    assert_eq!(stored.status, 200, "{}", stored.text());
    assert_eq!(stored.text(), format!("stored x ({} bytes)\n", payload.len()));
    assert_eq!(fs::read(app.dir("uploads/x")).unwrap(), payload, "the upload is on the host");

    repo.write("www/index.html", "<p>release two</p>\n").commit("release two");
    let out = repo.push(&app).success();
    let url = app.url();
    assert_eq!(url, format!("http://127.0.0.1:{}", out.deployed_port()));
    assert_ne!(inspect(&app.container("web"), "{{.Id}}"), first_id, "a new container serves");
    assert_eq!(get(&url, "/").text(), "<p>release two</p>\n");
    let fetched = get(&url, "/cgi-bin/file?name=x");
    assert_eq!(fetched.status, 200);
    assert_eq!(fetched.body.len(), payload.len());
    assert!(fetched.body == payload, "the file came back changed");
    assert_eq!(get(&url, "/cgi-bin/list").text(), "x\n");
    assert_eq!(mounts_of(&app.container("web")), mounts([bind(&app.dir("uploads"), "/app/storage")]));
}

#[test]
fn a_mount_removed_from_app_toml_is_unmounted_and_its_data_kept() {
    let t = Test::new();
    let app = App::create(&t, "unmount");
    let repo = Repo::from_template("web");
    let original = repo.read("app.toml");
    let second = "\n[[storage.mounts]]\nsource = \"./reports\"\ntarget = \"/app/reports\"\n";
    repo.write("app.toml", &toml_with(&repo, second)).commit("two mounts");
    deploy_web(&app, &repo);
    let web = app.container("web");
    assert_eq!(
        mounts_of(&web),
        mounts([bind(&app.dir("uploads"), "/app/storage"), bind(&app.dir("reports"), "/app/reports")])
    );
    // The app (uid 1000) writes into the second mount.
    docker(&["exec", &web, "sh", "-c", "echo kept > /app/reports/r.txt"]);
    assert!(app.berth("storage:list", &[]).success().stdout.contains(":/app/reports"));

    repo.write("app.toml", &original).commit("one mount");
    let out = repo.push(&app).success();
    assert!(out.has_line("       Unmount app-dir:reports -> /app/reports (deploy,run) (data kept)"), "{out}");
    assert!(out.has_line("       Unmounted app-dir:reports from /app/reports; its data is kept"), "{out}");
    assert_eq!(mounts_of(&web), mounts([bind(&app.dir("uploads"), "/app/storage")]));
    assert_eq!(fs::read_to_string(app.dir("reports/r.txt")).unwrap(), "kept\n");
    let list = app.berth("storage:list", &[]).success().stdout;
    assert!(!list.contains("/app/reports"), "{list}");
    assert!(list.contains(":/app/storage"), "{list}");
    // Listed as detached until the admin forgets it; forgetting keeps the data.
    let detached = format!("{}:/app/reports", app.dir("reports").display());
    let shown = detached.replace(&t.root().display().to_string(), "[ROOT]");
    assert_eq!(app.berth("storage:report", &["--storage-detached"]).success().stdout, format!("{shown}\n"));
    app.berth("storage:unmount", &[&detached]).success();
    assert_eq!(app.berth("storage:report", &["--storage-detached"]).success().stdout, "\n");
    assert_eq!(fs::read_to_string(app.dir("reports/r.txt")).unwrap(), "kept\n");
}

#[test]
fn a_bad_app_toml_is_rejected_with_its_positions_and_nothing_changes() {
    let t = Test::new();
    let app = App::create(&t, "badtoml");
    let repo = Repo::from_template("web");
    let url = deploy_web(&app, &repo);
    post(&url, "/cgi-bin/upload?name=before", b"data");
    let state = snapshot_state(t.root());
    let containers = app.containers();
    let head = app.rev("refs/heads/main");

    let bad = "[app]\n\
               user = \"1000\"\n\
               \n\
               [web]\n\
               port = 5000\n\
               healthcheck = \"/health\"\n\
               colour = \"blue\"\n\
               \n\
               [[storage.mounts]]\n\
               source = \"./uploads\"\n\
               target = \"/app/storage\"\n\
               \n\
               [[storage.mounts]]\n\
               source = \"./more\"\n\
               target = \"relative\"\n";
    repo.write("app.toml", bad).commit("bad app.toml");
    let out = repo.push(&app).rejected();
    let remote = out.remote();
    let problems: Vec<&String> = remote.iter().filter(|l| l.starts_with("app.toml:")).collect();
    assert_eq!(problems.len(), 2, "every problem, once each\n{out}");
    assert!(problems[0].starts_with("app.toml:7:1: ") && problems[0].contains("colour"), "{out}");
    assert!(problems[1].starts_with("app.toml:15:10: ") && problems[1].contains("relative"), "{out}");
    for problem in &problems {
        let next = remote.iter().position(|l| l == *problem).unwrap() + 1;
        assert!(remote[next].starts_with("  hint: "), "each problem has a hint\n{out}");
    }
    assert!(
        out.has_line(" !     app.toml has 2 problem(s); the push is rejected and nothing was changed"),
        "{out}"
    );

    assert_eq!(app.rev("refs/heads/main"), head, "the ref did not move");
    assert_eq!(app.containers(), containers, "the same containers");
    let after = snapshot_state(t.root());
    let changed: Vec<_> = after
        .keys()
        .chain(state.keys())
        .filter(|p| after.get(*p) != state.get(*p))
        .map(|p| p.display().to_string())
        .collect();
    assert!(changed.is_empty(), "files under BERTH_ROOT changed: {changed:?}");
    assert!(!app.dir("more").exists());
    assert_eq!(get(&url, "/cgi-bin/file?name=before").text(), "data");
}

#[test]
fn a_failing_build_keeps_the_old_release_serving() {
    let t = Test::new();
    let app = App::create(&t, "badbuild");
    let repo = Repo::from_template("web");
    let url = deploy_web(&app, &repo);
    let containers = app.containers();

    let dockerfile = repo.read("Dockerfile");
    repo.write("Dockerfile", &format!("{dockerfile}RUN false\n")).commit("a failing build");
    let out = repo.push(&app).rejected();
    assert!(out.has_line(" !     The push is rejected; the previous release keeps serving"), "{out}");

    assert_eq!(app.containers(), containers, "the old container serves on");
    assert_eq!(mounts_of(&app.container("web")), mounts([bind(&app.dir("uploads"), "/app/storage")]));
    assert_eq!(get(&url, "/health").status, 200);
    assert_eq!(app.url(), url);
    assert_eq!(outcomes(&app), [(1, "deployed".to_string()), (2, "failed".to_string())]);
    assert_eq!(app.ps("ps-current-release"), "1");
    let text = app.berth("releases", &[]).success().stdout;
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[1].starts_with("        v2 ") && lines[1].contains("failed: "), "{text}");
    assert!(lines[2].starts_with("       *v1 ") && lines[2].ends_with("deployed"), "{text}");
    assert_ne!(app.rev("refs/heads/main"), Some(repo.head()));
    assert!(docker(&["images", "-q", &format!("berth/{}:2", app.name)]).trim().is_empty());
}

#[test]
fn a_failing_start_keeps_the_old_release_serving_and_leaves_no_container() {
    let t = Test::new();
    let app = App::create(&t, "badstart");
    let repo = Repo::from_template("web");
    deploy_web(&app, &repo);
    let containers = app.containers();
    let original = repo.read("app.toml");
    let keeps_serving = |out: &crate::push::PushOutput| {
        assert_eq!(app.containers(), containers, "the old container serves on, no new one is left\n{out}");
        assert_eq!(mounts_of(&app.container("web")), mounts([bind(&app.dir("uploads"), "/app/storage")]));
        // The old instance stopped once its successor served, and started again (a new port).
        assert_eq!(get(&app.url(), "/health").status, 200);
        assert_eq!(app.ps("ps-current-release"), "1");
        assert_ne!(app.rev("refs/heads/main"), Some(repo.head()));
    };

    // A health check that never answers 2xx.
    repo.write("app.toml", &original.replace("healthcheck = \"/health\"", "healthcheck = \"/missing\""))
        .commit("a health check that fails");
    let out = repo.push_refspec(&app, "main", &[("BERTH_HEALTH_TIMEOUT", "2")]).rejected();
    assert!(
        out.has_line(
            " !     the web process is not healthy: no 2xx from /missing within 2s (/missing answered 404)"
        ),
        "{out}"
    );
    keeps_serving(&out);

    // A process that exits (its restart policy brings it back, which must not count as up).
    repo.write(
        "app.toml",
        &format!("{original}\n[processes]\nweb = \"/app/bin/web\"\nworker = \"exit 3\"\n"),
    )
    .commit("a worker that exits");
    let out = repo.push(&app).rejected();
    let reason =
        out.remote().into_iter().find(|l| l.starts_with(" !     the worker process is not healthy: "));
    assert!(reason.is_some_and(|r| r.contains("exited")), "{out}");
    keeps_serving(&out);
    assert_eq!(
        outcomes(&app),
        [(1, "deployed".to_string()), (2, "failed".to_string()), (3, "failed".to_string())]
    );
}

#[test]
fn run_sees_run_phase_mounts_only_and_passes_the_exit_status() {
    let t = Test::new();
    let app = App::create(&t, "run");
    let repo = Repo::from_template("web");
    let phased = r#"
[[storage.mounts]]
source = "./runonly"
target = "/runonly"
phases = ["run"]

[[storage.mounts]]
source = "./deployonly"
target = "/deployonly"
phases = ["deploy"]
"#;
    repo.write("app.toml", &toml_with(&repo, phased)).commit("phased mounts");
    deploy_web(&app, &repo);
    assert_eq!(
        mounts_of(&app.container("web")),
        mounts([bind(&app.dir("uploads"), "/app/storage"), bind(&app.dir("deployonly"), "/deployonly")])
    );
    fs::write(app.dir("runonly/marker"), "m").unwrap();

    let ls = app.berth("run", &["ls", "/runonly"]);
    // stdout is the command's alone: berth's own lines go to stderr.
    assert!(ls.status == 0 && ls.stdout == "marker\n", "{ls}");
    let mounts_seen = app.berth("run", &["cat", "/proc/mounts"]).success().stdout;
    assert!(mounts_seen.contains(" /app/storage ") && mounts_seen.contains(" /runonly "), "{mounts_seen}");
    assert!(!mounts_seen.contains(" /deployonly "), "{mounts_seen}");
    let missing = app.berth("run", &["ls", "/deployonly"]);
    assert_ne!(missing.status, 0, "{missing}");
    assert_eq!(app.berth("run", &["sh", "-c", "exit 7"]).status, 7);
    assert!(app.berth("run", &["id", "-u"]).success().stdout == "1000\n");
    let names: Vec<String> = app.containers().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, [app.container("web")], "one-off containers are removed");
}

#[test]
fn a_build_phase_mount_is_seen_by_the_build_command_only() {
    let t = Test::new();
    let app = App::create(&t, "buildcache");
    let repo = Repo::from_template("build-cache");
    repo.push(&app).success();
    let info = get(&app.url(), "/build-info.txt").text();
    assert!(info.contains("builds=1\ncache=miss\n") && info.contains("compile_uid=1000\n"), "{info}");

    repo.commit("rebuild");
    repo.push(&app).success();
    let url = app.url();
    let info = get(&url, "/build-info.txt").text();
    assert!(info.starts_with("builds=2\ncache=hit\n"), "{info}");
    let web = app.container("web");
    assert_eq!(mounts_of(&web), Mounts::new(), "no mount at runtime");
    let status = get(&url, "/cgi-bin/status").text();
    // (`cache_dir` is `present`: the build container's empty mount point is committed with it.)
    assert!(status.contains("\ncache_mounted=no\ncache_builds_file=absent\n"), "{status}");
    // The cache lives on in its app volume, labelled with the app (so --purge-storage finds it).
    let volume = format!("{}_cache", app.name);
    assert_eq!(inspect(&volume, "{{index .Labels \"berth.app\"}}"), app.name);
}

#[test]
fn other_branches_do_not_deploy_and_the_deploy_branch_cannot_be_deleted() {
    let t = Test::new();
    let app = App::create(&t, "branches");
    let repo = Repo::from_template("web");
    deploy_web(&app, &repo);
    let main = app.rev("refs/heads/main");
    let containers = app.containers();

    repo.git(&["checkout", "-q", "-b", "feature"]);
    repo.write("www/index.html", "feature\n").commit("feature work");
    let out = repo.push_refspec(&app, "feature", &[]).success();
    assert!(
        out.has_line("-----> Skipping deploy for refs/heads/feature: only main or master deploy"),
        "{out}"
    );
    assert_eq!(app.rev("refs/heads/feature"), Some(repo.head()));
    assert_eq!(outcomes(&app), [(1, "deployed".to_string())]);
    assert_eq!(app.containers(), containers);

    let out = repo.push_refspec(&app, ":main", &[]).rejected();
    assert!(
        out.remote()
            .iter()
            .any(|l| l.starts_with(" !     deleting the deploy branch refs/heads/main is refused")),
        "{out}"
    );
    assert_eq!(app.rev("refs/heads/main"), main);
    assert_eq!(app.containers(), containers);
    assert_eq!(get(&app.url(), "/health").status, 200);
}

#[test]
fn admin_mounts_apply_on_restart_and_rollback_serves_the_previous_release() {
    let t = Test::new();
    let app = App::create(&t, "rollback");
    let repo = Repo::from_template("web");
    deploy_web(&app, &repo);
    let web = app.container("web");
    let uploads = bind(&app.dir("uploads"), "/app/storage");

    let shared = t.mkdir("shared");
    fs::write(t.path("shared/note"), "from the admin\n").unwrap();
    app.berth("storage:mount", &[&format!("{shared}:/shared:ro")]).success();
    assert_eq!(mounts_of(&web), mounts([uploads.clone()]), "storage:mount alone does not touch containers");
    let out = app.berth("ps:restart", &[]).success();
    let with_admin = mounts([uploads.clone(), (shared.clone(), "/shared".to_string(), false)]);
    assert_eq!(mounts_of(&web), with_admin, "{out}");
    assert!(app.berth("run", &["cat", "/shared/note"]).success().stdout == "from the admin\n");
    assert_eq!(get(&app.url(), "/health").status, 200, "the URL follows the re-created container");

    repo.write("www/index.html", "release two\n").commit("release two");
    repo.push(&app).success();
    assert_eq!(inspect(&web, "{{.Config.Image}}"), format!("berth/{}:2", app.name));
    assert_eq!(mounts_of(&web), with_admin, "a push keeps admin mounts");
    assert_eq!(get(&app.url(), "/").text(), "release two\n");

    let out = app.berth("rollback", &[]).success();
    assert!(out.stdout.contains(&format!("-----> Rolled {} back to release 1\n", app.name)), "{out}");
    assert_eq!(inspect(&web, "{{.Config.Image}}"), format!("berth/{}:1", app.name));
    assert_eq!(app.ps("ps-current-release"), "1");
    assert_eq!(mounts_of(&web), with_admin);
    let url = app.url();
    assert_eq!(
        url,
        format!(
            "http://127.0.0.1:{}",
            inspect(&web, "{{(index (index .NetworkSettings.Ports \"5000/tcp\") 0).HostPort}}")
        )
    );
    assert_eq!(get(&url, "/health").status, 200);
    assert_ne!(get(&url, "/").text(), "release two\n", "release 1 serves again");
}
