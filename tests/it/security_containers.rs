//! Container hardening, attacked for real: a root process in an app container plants a set-uid
//! root program and tries to make a device node in the app's storage; every container berth
//! creates runs with `no-new-privileges` and without `MKNOD`, and only the admin adds them back.

use std::path::Path;
use std::process::{Command, Output};

use crate::engine::{docker, inspect};
use crate::push::{App, Repo};
use crate::test::Test;

/// `CAP_MKNOD`'s bit in the capability sets of `/proc/<pid>/status`.
const CAP_MKNOD_BIT: u32 = 27;

/// The command reporting what the kernel enforces on the process running it.
const STATUS_COMMAND: &str = "grep -E '^(NoNewPrivs|CapBnd):' /proc/self/status";

/// `(no_new_privs, has CAP_MKNOD in its bounding set)` from [`STATUS_COMMAND`]'s lines.
fn kernel_view(text: &str) -> (bool, bool) {
    let field = |name: &str| {
        let prefix = format!("{name}:");
        let line = text.lines().find_map(|l| l.trim().strip_prefix(&prefix).map(str::trim));
        line.unwrap_or_else(|| panic!("no {name} line in {text:?}")).to_string()
    };
    let bounding = u64::from_str_radix(&field("CapBnd"), 16).unwrap();
    (field("NoNewPrivs") == "1", bounding & (1 << CAP_MKNOD_BIT) != 0)
}

/// A static program printing its effective uid: busybox drops a set-uid bit by itself, so it
/// cannot show what the kernel would grant.
fn euid_program(t: &Test) -> String {
    let source = t.path("euid.c");
    std::fs::write(&source, "#include <stdio.h>\n#include <unistd.h>\nint main(void) { printf(\"euid=%d\\n\", (int)geteuid()); return 0; }\n").unwrap();
    let binary = t.path_str("euid");
    let out = Command::new("cc").args(["-static", "-O2", "-o", &binary]).arg(&source).output().unwrap();
    assert!(out.status.success(), "cc failed: {}", String::from_utf8_lossy(&out.stderr));
    binary
}

fn docker_exec(user: &str, container: &str, command: &[&str]) -> Output {
    Command::new("docker").args(["exec", "-u", user, container]).args(command).output().unwrap()
}

/// `mknod <path> c 1 3` as root in the container.
fn mknod(container: &str, path: &str) -> Output {
    docker_exec("0", container, &["mknod", path, "c", "1", "3"])
}

/// Deploys the `web` sample (user 1000, `./uploads` at `/app/storage`) with a build command
/// reporting the kernel's view; returns that view.
fn deploy_web(app: &App) -> (bool, bool) {
    let repo = Repo::from_template("web");
    let toml = format!("{}\n[build]\ncommand = \"{STATUS_COMMAND}\"\n", repo.read("app.toml"));
    repo.write("app.toml", &toml).commit("build command reporting its privileges");
    let out = repo.push(app).success();
    kernel_view(&out.remote().join("\n"))
}

#[test]
fn a_planted_setuid_root_program_gives_no_root_and_device_nodes_are_refused() {
    let t = Test::new();
    let app = App::create(&t, "setuid");
    assert_eq!(deploy_web(&app), (true, false), "the build command container is not hardened");
    let web = app.container("web");
    assert_eq!(inspect(&web, "{{json .HostConfig.SecurityOpt}}"), r#"["no-new-privileges"]"#);
    assert_eq!(inspect(&web, "{{json .HostConfig.CapDrop}}"), r#"["MKNOD"]"#);
    let run = app.berth("run", &["sh", "-c", STATUS_COMMAND]).success();
    assert_eq!(kernel_view(&run.stdout), (true, false), "the run container is not hardened\n{run}");

    // Root in the app's container plants a set-uid root copy of a program in app storage.
    let program = euid_program(&t);
    docker(&["cp", &program, &format!("{web}:/app/storage/euid")]);
    let plant =
        docker_exec("0", &web, &["sh", "-c", "chown 0:0 /app/storage/euid && chmod 4755 /app/storage/euid"]);
    assert!(plant.status.success(), "{plant:?}");
    // Without berth's settings the planted file does give uid 0: the attack is real.
    let uploads = app.dir("uploads");
    let control = docker(&[
        "run",
        "--rm",
        "-u",
        "1000",
        "-v",
        &format!("{}:/x", uploads.display()),
        "berth-base:latest",
        "/x/euid",
    ]);
    assert_eq!(control, "euid=0\n");

    assert_eq!(app.berth("run", &["/app/storage/euid"]).success().stdout, "euid=1000\n");
    let exec = docker_exec("1000", &web, &["/app/storage/euid"]);
    assert_eq!(String::from_utf8_lossy(&exec.stdout), "euid=1000\n", "{exec:?}");

    let refused = mknod(&web, "/app/storage/null");
    assert!(!refused.status.success(), "mknod worked as root in the app container");
    let reason = String::from_utf8_lossy(&refused.stderr);
    assert!(reason.contains("not permitted") || reason.contains("Permission denied"), "{refused:?}");
    assert!(!Path::new(&uploads.join("null")).exists());
}

#[test]
fn only_the_admin_adds_mknod_and_new_privileges_back() {
    let t = Test::new();
    let app = App::create(&t, "capadd");
    let repo = Repo::from_template("web");
    let asks = repo.read("app.toml").replace("[app]\n", "[app]\ncap_add = [\"MKNOD\"]\n");
    repo.write("app.toml", &asks).commit("an app asking for a capability");
    repo.push(&app).rejected();
    assert_eq!(deploy_web(&app), (true, false));
    let web = app.container("web");
    assert!(!mknod(&web, "/app/storage/null").status.success());

    let options = "--cap-add MKNOD --security-opt no-new-privileges=false";
    t.ok(["docker-options:add", &app.name, "deploy", options]);
    app.berth("ps:restart", &[]).success();
    assert_eq!(inspect(&web, "{{json .HostConfig.CapDrop}}"), "[]");
    assert_eq!(inspect(&web, "{{json .HostConfig.SecurityOpt}}"), "null");
    let made = mknod(&web, "/app/storage/null");
    assert!(made.status.success(), "{made:?}");
    let status = docker_exec("0", &web, &["sh", "-c", STATUS_COMMAND]);
    assert_eq!(kernel_view(&String::from_utf8_lossy(&status.stdout)), (false, true));
    // The run phase keeps its defaults: the admin's options were for deploy only.
    let run = app.berth("run", &["sh", "-c", STATUS_COMMAND]).success();
    assert_eq!(kernel_view(&run.stdout), (true, false), "{run}");
}

#[test]
fn a_dockerfile_volume_is_kept_in_a_labelled_app_volume_until_purged() {
    let t = Test::new();
    let app = App::create(&t, "anonvol");
    let repo = Repo::from_template("web");
    let dockerfile = repo.read("Dockerfile").replace("USER 1000\n", "VOLUME /data\nUSER 1000\n");
    repo.write("Dockerfile", &dockerfile).commit("an image declaring VOLUME /data");
    let out = repo.push(&app).success();
    let volume = format!("{}_anon-data", app.name);
    let warning =
        format!(" !     Dockerfile VOLUME /data is kept in the app volume {volume}; declare it in app.toml:");
    assert!(out.has_line(&warning), "{out}");
    assert!(
        out.has_line(" !       source = \"anon-data\"") && out.has_line(" !       target = \"/data\""),
        "{out}"
    );
    assert_eq!(inspect(&volume, "{{index .Labels \"berth.anonymous\"}}"), "/data");
    assert_eq!(inspect(&volume, "{{index .Labels \"berth.app\"}}"), app.name);
    let listed = app.berth("storage:list", &[]).success().stdout;
    let line = format!("       {volume}:/data  (anonymous: Dockerfile VOLUME, not in app.toml)");
    assert!(listed.lines().any(|l| l == line), "{listed}");
    let web = app.container("web");
    let write = docker_exec("0", &web, &["sh", "-c", "echo kept >/data/note"]);
    assert!(write.status.success(), "{write:?}");

    repo.write("www/extra.txt", "second release\n").commit("second release");
    repo.push(&app).success();
    let note = docker_exec("0", &web, &["cat", "/data/note"]);
    assert_eq!(String::from_utf8_lossy(&note.stdout), "kept\n", "{note:?}");
    assert_eq!(app.berth("run", &["cat", "/data/note"]).success().stdout, "kept\n");

    t.ok(["apps:destroy", &app.name, "--force", "--purge-storage"]);
    let left = docker(&["volume", "ls", "-q", "--filter", &format!("name={volume}")]);
    assert_eq!(left.trim(), "", "the anonymous volume survived --purge-storage");
}

#[test]
fn a_mount_above_a_dockerfile_volume_is_refused_unless_app_toml_allows_it() {
    let t = Test::new();
    let app = App::create(&t, "bk-shadow");
    let repo = Repo::from_template("web");
    repo.push(&app).success();
    let serving = app.container("web");
    let id = inspect(&serving, "{{.Id}}");
    // The template mounts ./uploads at /app/storage; the image now declares a volume below it.
    let dockerfile = repo.read("Dockerfile").replace("USER 1000\n", "VOLUME /app/storage/db\nUSER 1000\n");
    repo.write("Dockerfile", &dockerfile).commit("VOLUME below the mount");
    let out = repo.push(&app).rejected();
    let text = out.remote().join("\n");
    for part in [
        "the image declares VOLUME /app/storage/db, and app.toml mounts app-dir:uploads at /app/storage, a parent of it",
        "target = \"/app/storage/db\"",
        "set allow_shadowed_volumes = true under [storage]",
    ] {
        assert!(text.contains(part), "expected {part:?}\n{out}");
    }
    assert_eq!(inspect(&serving, "{{.Id}}"), id, "the old release serves on, untouched");
    assert_eq!(app.ps("ps-running"), "true");

    let toml = format!("[storage]\nallow_shadowed_volumes = true\n\n{}", repo.read("app.toml"));
    repo.write("app.toml", &toml).commit("hiding it is intended");
    let out = repo.push(&app).success();
    // Allowed, the declared path still gets berth's kept volume, with the usual warning.
    let volume = format!("{}_anon-app-storage-db", app.name);
    assert!(out.has_line(&format!(" !     Dockerfile VOLUME /app/storage/db is kept in the app volume {volume}; declare it in app.toml:")), "{out}");
    assert_eq!(inspect(&volume, "{{index .Labels \"berth.anonymous\"}}"), "/app/storage/db");
    t.ok(["apps:destroy", &app.name, "--force", "--purge-storage"]);
}
