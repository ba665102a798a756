//! Attacks through mount sources, performed for real: the engine's own restart re-resolving a
//! bind source a container swapped for a symlink, a container that plants a symlink where a
//! nested mount would be bound, a grant and a path below it (and a grant below a directory
//! others may write), an entry mounted whole and in part by two apps, volume drivers named as
//! paths or not granted, restart and rollback after a grant was withdrawn, escape sequences in a
//! stored failure, and one push moving two deploy branches. Each asserts the refusal and that
//! the host (a scratch directory standing for `/`, the containers, the release serving) is
//! untouched.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::engine::{docker, engine, unique_name};
use crate::push::{App, Repo, get};
use crate::test::Test;

/// The web sample's app.toml with one more mount appended (its `source` lands on line 14).
fn with_mount(repo: &Repo, source: &str, target: &str, extra: &str) -> String {
    format!(
        "{}\n[[storage.mounts]]\nsource = \"{source}\"\ntarget = \"{target}\"\n{extra}",
        repo.read("app.toml")
    )
}

/// A container that, mounting `a` at `/a` and `a/b` at `/b`, replaces `a/b` with a symlink to
/// `SCRATCH` and exits; started again (by the engine), it writes through `/b`.
const ATTACK: &str =
    "if [ -L /a/b ]; then touch /b/pwned; sleep 600; else rm -rf /a/b; ln -s SCRATCH /a/b; exit 1; fi";

/// The attack as an `app.toml`: two app directories, one inside the other.
fn nested_toml(scratch: &str) -> String {
    format!(
        "# two app directories, one inside the other\n[web]\nport = 5000\n\n[processes]\nweb = \"{}\"\n\n\
         [[storage.mounts]]\nsource = \"./a\"\ntarget = \"/a\"\n\n[[storage.mounts]]\nsource = \"./a/b\"\ntarget = \"/b\"\n",
        ATTACK.replace("SCRATCH", scratch)
    )
}

/// The web sample with this `app.toml`, committed.
fn repo_with(app_toml: &str) -> Repo {
    let repo = Repo::from_template("web");
    repo.write("app.toml", app_toml).commit("app.toml under test");
    repo
}

/// The app's containers and the release it serves, which a refusal must leave alone.
fn serving(app: &App) -> (Vec<(String, String)>, String) {
    (app.containers(), app.ps("ps-current-release"))
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

/// What berth used to allow, done with the engine alone: a container mounting `a` and `a/b`
/// replaces `a/b` with a symlink and exits; the engine's `unless-stopped` restart mounts the
/// link's target at `/b`, and the container writes there. The scratch directory stands for `/`.
#[test]
fn the_engine_restart_attack_works_on_the_engine_and_berth_refuses_it() {
    engine();
    let t = Test::new();
    let scratch = t.mkdir("scratch");
    let data = t.mkdir("nested/a/b");
    let a = Path::new(&data).parent().unwrap().display().to_string();
    let name = unique_name("restart-attack");
    docker(&[
        "run",
        "-d",
        "--name",
        &name,
        "--restart",
        "unless-stopped",
        "-v",
        &format!("{a}:/a"),
        "-v",
        &format!("{data}:/b"),
        "berth-base:latest",
        "sh",
        "-c",
        &ATTACK.replace("SCRATCH", &scratch),
    ]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !Path::new(&scratch).join("pwned").exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = Command::new("docker").args(["rm", "-f", &name]).output();
    assert!(
        Path::new(&scratch).join("pwned").exists(),
        "the engine's restart should have mounted the swapped link's target"
    );
    fs::remove_file(Path::new(&scratch).join("pwned")).unwrap();

    // The same layout pushed to berth is refused before anything runs.
    let app = App::create(&t, "restart-attack");
    let out = repo_with(&nested_toml(&scratch)).push(&app).rejected();
    assert!(
        out.has_line(
            "app.toml:13:10: mount source \"./a/b\" lies below \"./a\", mounted read-write at line 8"
        ),
        "{out}"
    );
    assert!(out.remote().iter().any(|l| l.contains("its own restarts included")), "{out}");
    assert!(app.containers().is_empty(), "nothing ran");
    assert!(!app.dir("a").exists(), "no directory was created");
    assert_eq!(fs::read_dir(&scratch).unwrap().count(), 0, "the scratch directory is untouched");
    assert_eq!(app.rev("refs/heads/main"), None);
}

#[test]
fn a_grant_and_a_path_below_it_are_refused_and_so_are_unsafe_parents() {
    let t = Test::new();
    let app = App::create(&t, "grant-nest");
    let granted = t.mkdir("granted/sub");
    let granted = Path::new(&granted).parent().unwrap().display().to_string();
    app.berth("storage:allow", &[&granted]).success();
    let text = format!("storage.mounts = [\"{granted}:/g\", \"{granted}/sub:/s:ro\"]\n");
    let out = repo_with(&text).push(&app).rejected();
    let column = "storage.mounts = [\"".len() + granted.len() + ":/g\", \"".len() + 1;
    let line = format!(
        "app.toml:1:{column}: mount source \"{granted}/sub\" lies below \"{granted}\", mounted read-write at line 1"
    );
    assert!(out.has_line(&line), "{out}");

    // A granted path whose parent anyone may write: a host user could swap it for a link.
    let open = t.mkdir("open/inner");
    fs::set_permissions(t.path("open"), fs::Permissions::from_mode(0o777)).unwrap();
    app.berth("storage:allow", &[&open]).success();
    let out = repo_with(&format!("storage.mounts = [\"{open}:/o\"]\n")).push(&app).rejected();
    let line = format!(
        "app.toml:1:20: {} (above the host path {open}) is writable by its group or others (mode 0777): a bind \
         source must lie in directories only root or berth can change; ask the admin to fix the directory's owner \
         and mode, or to grant a path elsewhere",
        t.path_str("open")
    );
    assert!(out.has_line(&line), "{out}");
    assert!(app.containers().is_empty());
}

#[test]
fn an_entry_subpath_below_another_apps_writable_mount_of_it_is_refused() {
    let t = Test::new();
    t.app("whole").app("part").app("reader");
    let entry = unique_name("nest-entry");
    t.ok(["storage:create", &entry]);
    t.ok(["storage:mount", "whole", &entry, "--container-dir", "/data"]);
    let out = t
        .args(["storage:mount", "part", &entry, "--container-dir", "/sub", "--volume-subpath", "sub"])
        .refuse();
    let dir = format!("[ROOT]/data/storage/{entry}");
    assert!(
        out.stderr.starts_with(&format!(
            " !     the subpath sub of entry {entry} ({dir}/sub), mounted read-write at /sub by app part lies below \
             the entry {entry} ({dir}), mounted read-write at /data by app whole, which a container can write"
        )),
        "{out}"
    );
    // Read-only in every container, the whole entry may be mounted beside a part of it.
    t.ok(["storage:unmount", "whole", &entry]);
    t.ok(["storage:mount", "reader", &entry, "--container-dir", "/data", "--volume-readonly"]);
    t.ok(["storage:mount", "part", &entry, "--container-dir", "/sub", "--volume-subpath", "sub"]);
    // ...until an app asks for it writable, which is refused in turn.
    let out = t.args(["storage:mount", "whole", &entry, "--container-dir", "/data"]).refuse();
    assert!(
        out.stderr.contains(&format!("mounted read-write at /sub by app part lies below the entry {entry}"))
    );
    // A host path of an admin mount inside another app's writable directory, too.
    let inside = t.mkdir("data/apps/whole/uploads/inner");
    t.ok(["storage:mount", "whole", &format!("{}:/up", t.path_str("data/apps/whole/uploads"))]);
    let out = t.args(["storage:mount", "part", &format!("{inside}:/in:ro")]).refuse();
    assert!(out.stderr.contains("lies below the host path [ROOT]/data/apps/whole/uploads"), "{out}");
}

#[test]
fn drivers_are_plain_names_and_only_granted_ones_pass() {
    let t = Test::new();
    let app = App::create(&t, "drivers");
    // A fresh volume each time: the driver applies only when the volume is created.
    let volume = |source: &str, driver: &str| {
        format!(
            "[app]\nuser = \"1000\"\n[web]\nport = 5000\nhealthcheck = \"/health\"\n[[storage.mounts]]\nsource = \
             \"{source}\"\ntarget = \"/app/storage\"\ndriver = \"{driver}\"\ndriver_opts = {{ type = \"tmpfs\", \
             device = \"tmpfs\" }}\n"
        )
    };
    let repo = repo_with(&volume("cache", "local"));
    repo.push(&app).success();
    let before = serving(&app);
    assert_eq!(get(&app.url(), "/health").status, 200);

    for path in ["../../x", "/run/x"] {
        repo.write("app.toml", &volume("plugged", path)).commit(path);
        let out = repo.push(&app).rejected();
        let line = format!("app.toml:9:10: volume driver \"{path}\" is not a valid driver name");
        assert!(out.has_line(&line), "{out}");
    }
    repo.write("app.toml", &volume("plugged", "berthtestplugin")).commit("a plugin");
    let out = repo.push(&app).rejected();
    assert!(
        out.has_line("app.toml:9:10: volume driver \"berthtestplugin\" is not allowed for this app"),
        "{out}"
    );
    assert!(
        out.remote().iter().any(|l| l.contains("berth storage:allow <app> driver:berthtestplugin")),
        "{out}"
    );

    // The admin's grant: a plain name only, listed with the app's grants.
    let refused = app.t.args(["storage:allow", &app.name, "driver:../x"]).refuse();
    assert!(refused.stderr.contains("volume driver \"../x\" is not a plain name"), "{refused}");
    app.berth("storage:allow", &["driver:berthtestplugin"]).success();
    assert_eq!(
        app.berth("storage:report", &["--storage-allowed-drivers"]).success().stdout,
        "berthtestplugin\n"
    );
    // Granted, the name passes the checks; no such plugin is installed, so the engine refuses it.
    let out = repo.push(&app).rejected();
    assert!(!out.remote().iter().any(|l| l.starts_with("app.toml:")), "{out}");
    assert!(out.remote().iter().any(|l| l.contains("berthtestplugin") && l.contains("not found")), "{out}");
    assert_eq!(serving(&app), before, "the release serving is untouched");
    assert_eq!(get(&app.url(), "/health").status, 200);
    app.berth("storage:disallow", &["driver:berthtestplugin"]).success();
    assert_eq!(app.berth("storage:report", &["--storage-allowed-drivers"]).success().stdout, "\n");
}

#[test]
fn rollback_to_a_host_path_whose_grant_was_withdrawn_is_refused() {
    let t = Test::new();
    let app = App::create(&t, "withdrawn");
    let granted = t.mkdir("granted");
    app.berth("storage:allow", &[&granted]).success();
    let template = Repo::from_template("web").read("app.toml");
    let repo =
        repo_with(&format!("{template}\n[[storage.mounts]]\nsource = \"{granted}\"\ntarget = \"/g\"\n"));
    repo.push(&app).success();
    app.berth("storage:disallow", &[&granted]).success();
    let before = serving(&app);

    let out = app.berth("ps:restart", &[]);
    let refused = format!(
        " !     release 1 of {0} mounts the host path {1} at /g, which the admin no longer allows for {0}; nothing \
         was changed and the running containers stay: allow it again (berth storage:allow {0} {1}), or push a \
         release without it\n",
        app.name,
        granted.replace(&t.root().display().to_string(), "[ROOT]")
    );
    assert_eq!((out.status, out.stderr.as_str()), (1, refused.as_str()), "{out}");
    assert_eq!(serving(&app), before);

    repo.write("app.toml", &template).commit("without the host path");
    repo.push(&app).success();
    let before = serving(&app);
    let out = app.berth("rollback", &[]);
    assert_eq!((out.status, out.stderr.as_str()), (1, refused.as_str()), "{out}");
    assert_eq!(serving(&app), before, "release 2 keeps serving");
    assert_eq!(get(&app.url(), "/health").status, 200);
}

#[test]
fn escape_sequences_of_a_failed_build_are_stored_and_printed_inert() {
    let t = Test::new();
    let app = App::create(&t, "escapes");
    let repo = Repo::from_template("web");
    let dockerfile = repo.read("Dockerfile");
    repo.write("Dockerfile", &format!("{dockerfile}RUN echo \"\x1b[31mred\x1b]0;title\x07\r\"; exit 3\n"))
        .commit("a failing RUN with escapes");
    let out = repo.push(&app).rejected();
    let verdict: Vec<String> = out.remote().into_iter().filter(|l| l.starts_with(" !     ")).collect();
    assert!(verdict.iter().any(|l| l.contains("\\u{1b}[31mred\\u{1b}]0;title\\u{7}\\u{d}")), "{out}");
    assert!(!verdict.iter().any(|l| l.contains('\x1b')), "{out}");
    let releases = app.berth("releases", &[]).success();
    assert!(!releases.stdout.chars().any(|c| c.is_control() && c != '\n'), "{releases}");
    assert!(releases.stdout.contains("\\u{1b}[31mred"), "{releases}");
    let stored = app.releases()[0]["reason"].as_str().unwrap().to_string();
    assert!(!stored.chars().any(char::is_control), "stored escaped: {stored:?}");
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
