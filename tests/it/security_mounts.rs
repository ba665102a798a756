//! Attacks through mount sources, performed for real: a container that plants a symlink where
//! a nested mount would be bound (the engine re-resolves bind sources at every restart of its
//! own), another app's writable mount above an entry subpath, volume drivers named as paths,
//! a rollback to a mount whose grant was withdrawn, escape sequences in a stored failure, and
//! one push moving two deploy branches. Each asserts the host is untouched.

use std::fs;

use crate::engine::docker;
use crate::push::{App, Repo, get};
use crate::test::Test;

/// The web sample's app.toml with one more mount appended (its `source` lands on line 14).
fn with_mount(repo: &Repo, source: &str, target: &str, extra: &str) -> String {
    format!(
        "{}\n[[storage.mounts]]\nsource = \"{source}\"\ntarget = \"{target}\"\n{extra}",
        repo.read("app.toml")
    )
}

#[test]
fn a_directory_below_a_writable_mount_is_refused_even_once_the_container_made_it_a_link() {
    let t = Test::new();
    let app = App::create(&t, "nested");
    let repo = Repo::from_template("web");
    repo.push(&app).success();
    let url = app.url();
    let containers = app.containers();
    // The container (as the app's user) turns uploads/b into a link to the host's root: a
    // mount of ./uploads/b would bind `/`, and the engine would re-bind it on every restart.
    let planted = docker(&["exec", &app.container("web"), "ln", "-s", "/", "/app/storage/b"]);
    assert_eq!(planted, "");
    assert!(fs::symlink_metadata(app.dir("uploads/b")).unwrap().file_type().is_symlink());

    repo.write("app.toml", &with_mount(&repo, "./uploads/b", "/b", "")).commit("nest");
    let out = repo.push(&app).rejected();
    assert!(
        out.has_line("app.toml:14:10: mount source \"./uploads/b\" lies below \"./uploads\", mounted read-write at line 9"),
        "{out}"
    );
    assert_eq!(app.containers(), containers, "nothing was started\n{out}");
    assert_eq!(get(&url, "/health").status, 200);
    let binds =
        docker(&["inspect", "--format", "{{range .Mounts}}{{.Source}} {{end}}", &app.container("web")]);
    assert_eq!(binds.trim(), app.dir("uploads").display().to_string());
}

#[test]
fn an_entry_subpath_below_another_apps_writable_mount_of_it_is_refused() {
    let t = Test::new();
    t.app("owner").app("other");
    t.ok(["storage:create", "shared"]);
    t.ok(["storage:mount", "owner", "shared", "--container-dir", "/data"]);
    let out = t
        .args(["storage:mount", "other", "shared", "--container-dir", "/sub", "--volume-subpath", "s"])
        .refuse();
    assert!(out.stderr.contains("lies below entry shared"), "{out}");
    assert!(out.stderr.contains("mounted read-write at /data by app owner"), "{out}");
    // Read-only everywhere, the same pair is fine: no container can swap the subpath.
    t.ok(["storage:unmount", "owner", "shared", "--container-dir", "/data"]);
    t.ok(["storage:mount", "owner", "shared", "--container-dir", "/data", "--volume-readonly"]);
    t.ok(["storage:mount", "other", "shared", "--container-dir", "/sub", "--volume-subpath", "s"]);
}

#[test]
fn drivers_are_plain_names_and_only_granted_ones_pass() {
    let t = Test::new();
    let app = App::create(&t, "driver");
    let repo = Repo::from_template("web");
    let original = repo.read("app.toml");
    for (driver, message) in [
        (
            "../../run/app/plugin",
            "app.toml:16:10: volume driver \"../../run/app/plugin\" is not a valid driver name",
        ),
        (
            "/run/docker/plugins/x",
            "app.toml:16:10: volume driver \"/run/docker/plugins/x\" is not a valid driver name",
        ),
        ("sshfs", "app.toml:16:10: volume driver \"sshfs\" is not allowed for this app"),
    ] {
        repo.write("app.toml", &original);
        let text = with_mount(&repo, "vol", "/vol", &format!("driver = \"{driver}\"\n"));
        repo.write("app.toml", &text).commit(driver);
        let out = repo.push(&app).rejected();
        assert!(out.has_line(message), "{driver}: {out}");
    }
    // Granted, the name passes validation; the engine then has no such plugin.
    t.ok(["storage:allow", &app.name, "driver:sshfs"]);
    let out = repo.push(&app).rejected();
    assert!(!out.stderr.contains("not allowed for this app"), "{out}");
    assert!(out.stderr.contains("sshfs"), "{out}");
    assert!(!out.stderr.contains("app.toml:"), "refused by the engine, not by the checks\n{out}");
}

#[test]
fn rollback_to_a_host_path_whose_grant_was_withdrawn_is_refused() {
    let t = Test::new();
    let app = App::create(&t, "regrant");
    let repo = Repo::from_template("web");
    let granted = tempfile::Builder::new().prefix("berth-it-granted-").tempdir().unwrap();
    let granted_path = granted.path().display().to_string();
    t.ok(["storage:allow", &app.name, &granted_path]);
    let original = repo.read("app.toml");
    repo.write("app.toml", &with_mount(&repo, &granted_path, "/granted", "")).commit("grant");
    repo.push(&app).success();
    repo.write("app.toml", &original).commit("without the grant");
    repo.push(&app).success();
    let url = app.url();
    let containers = app.containers();
    t.ok(["storage:disallow", &app.name, &granted_path]);

    let out = app.berth("rollback", &["1"]);
    assert_eq!(out.status, 1, "{out}");
    assert!(out.stderr.contains("which the admin no longer allows"), "{out}");
    assert!(out.stderr.contains(&format!("berth storage:allow {} {granted_path}", app.name)), "{out}");
    assert_eq!(app.ps("ps-current-release"), "2");
    assert_eq!(app.containers(), containers);
    assert_eq!(get(&url, "/health").status, 200);
}

#[test]
fn escape_sequences_of_a_failed_build_are_stored_and_printed_inert() {
    let t = Test::new();
    let app = App::create(&t, "escapes");
    let repo = Repo::from_template("web");
    let dockerfile = repo
        .read("Dockerfile")
        .replace("USER 1000\n", "RUN printf '\\033[2J\\033[31mred' >&2; exit 3\nUSER 1000\n");
    repo.write("Dockerfile", &dockerfile).commit("escapes");
    repo.push(&app).rejected();
    let releases = fs::read_to_string(t.path(format!("apps/{}/releases.toml", app.name))).unwrap();
    assert!(!releases.contains('\u{1b}'), "{releases}");
    let out = app.berth("releases", &[]).success();
    assert!(!out.stdout.contains('\u{1b}'), "{out}");
    assert!(out.stdout.contains("failed: "), "{out}");
}

#[test]
fn one_push_moving_two_deploy_branches_is_refused() {
    let t = Test::new();
    let app = App::create(&t, "twobranches");
    let repo = Repo::from_template("web");
    repo.git(&["branch", "master"]);
    let out = repo.push_refspec(&app, "refs/heads/*:refs/heads/*", &[]).rejected();
    assert!(out.stderr.contains("updates deploy branches more than once"), "{out}");
    assert_eq!(app.rev("refs/heads/main"), None);
    assert_eq!(app.rev("refs/heads/master"), None);
}
