//! `git push -o dry-run` and `berth ps:rebuild --dry-run`: the whole check and the plan, against
//! the serving release, and not one byte changed — `BERTH_ROOT`, the engine's containers,
//! volumes and images, and the app's refs are compared before and after.

use crate::engine::docker;
use crate::push::{App, Repo};
use crate::test::{Test, snapshot_state};

/// Everything a deploy could change, as text and bytes.
fn world(t: &Test, app: &App) -> (std::collections::BTreeMap<std::path::PathBuf, Vec<u8>>, String) {
    // Other tests share the engine: only this app's objects count.
    let label = format!("label=berth.app={}", app.name);
    let images = format!("reference=berth/{}", app.name);
    let engine = [
        docker(&["ps", "-a", "--no-trunc", "--filter", &label, "--format", "{{.Names}} {{.ID}} {{.Status}}"]),
        docker(&["volume", "ls", "--filter", &label, "--format", "{{.Name}}"]),
        docker(&[
            "images",
            "--no-trunc",
            "--filter",
            &images,
            "--format",
            "{{.Repository}}:{{.Tag}} {{.ID}}",
        ]),
        std::process::Command::new("git")
            .args(["--git-dir", &app.repo().display().to_string(), "for-each-ref"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap(),
    ];
    // `Up 3 seconds` becomes `Up 4 seconds`: keep the state, not the age.
    let engine =
        engine.join("\n").lines().map(|l| l.split(" Up ").next().unwrap_or(l).to_string() + "\n").collect();
    (snapshot_state(t.root()), engine)
}

#[test]
fn a_dry_run_push_prints_the_plan_against_the_serving_release_and_changes_nothing() {
    let t = Test::new();
    let app = App::create(&t, "dry");
    let repo = Repo::from_template("web");
    repo.push(&app).success();
    let app_toml = repo.read("app.toml");
    repo.write(
        "app.toml",
        &format!("{app_toml}\n[[storage.mounts]]\nsource = \"./cache\"\ntarget = \"/app/cache\"\n"),
    );
    repo.write("Procfile.txt", "changed\n");
    repo.commit("add a cache mount");
    let before = world(&t, &app);

    let out = repo.push_options(&app, &["dry-run"]).rejected();
    assert!(out.has_line("       Replaces release 1, serving now"), "{out}");
    assert!(out.has_line("       Mount   app-dir:cache -> /app/cache (deploy,run)"), "{out}");
    assert!(out.stderr.contains(", dry run"), "{out}");
    assert!(
        out.stderr.contains("Dry run: the push is rejected; nothing was built, started or changed"),
        "{out}"
    );
    assert!(!out.stderr.contains("Building"), "{out}");
    assert_eq!(world(&t, &app), before, "a dry run changed something\n{out}");

    let rebuild = app.berth("ps:rebuild", &["--dry-run"]).success();
    assert!(rebuild.stdout.contains("Plan for"), "{rebuild}");
    assert!(rebuild.stdout.contains("Dry run: nothing was built, started or changed"), "{rebuild}");
    assert_eq!(world(&t, &app), before, "ps:rebuild --dry-run changed something\n{rebuild}");

    // Without the option the same push deploys.
    repo.push(&app).success();
    assert_eq!(app.ps("ps-current-release"), "2");
}

#[test]
fn ps_rebuild_redeploys_the_serving_commit_as_a_new_release() {
    let t = Test::new();
    let app = App::create(&t, "rebuild");
    let repo = Repo::from_template("web");
    repo.push(&app).success();
    let out = app.berth("ps:rebuild", &[]).success();
    assert!(out.stdout.contains("Application deployed"), "{out}");
    assert_eq!(app.ps("ps-current-release"), "2");
    let releases = app.releases();
    assert_eq!(releases[0]["commit"], releases[1]["commit"]);
}
