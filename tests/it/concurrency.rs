//! Pushes and admin commands racing each other on the real engine: deploys of one app are
//! serialised by its lock (a push that has to wait says so), deploys of different apps are not,
//! and an admin change made while a deploy runs is neither lost nor half applied.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Barrier, Mutex};
use std::time::{Duration, Instant};

use crate::engine::{docker, mounts_of, unique_name};
use crate::push::{App, PushOutput, Repo, get};
use crate::test::Test;

/// The environment every push of these tests runs its hooks with.
pub const PUSH_ENV: [(&str, &str); 2] = [("BERTH_CHECK_SECONDS", "1"), ("BERTH_HEALTH_TIMEOUT", "20")];

/// The line a push prints when another deploy of the app holds its lock.
pub fn waiting_line(app: &App) -> String {
    format!("-----> Waiting for another deploy of {} to finish", app.name)
}

/// `git push --force <app> main`: replaces the branch whatever its history.
fn force_push(repo: &Repo, app: &App) -> PushOutput {
    repo.push_refspec(app, "+main:main", &PUSH_ENV)
}

/// A Dockerfile line that makes the build take `seconds` and misses the build cache.
fn slow_build_line(seconds: u32) -> String {
    format!("RUN echo {} && sleep {seconds}\n", unique_name("nocache"))
}

/// Samples the app's containers until stopped; returns every set of names seen at once.
fn watch_containers<'s>(
    scope: &'s std::thread::Scope<'s, '_>,
    app: &'s App,
    stop: &'s AtomicBool,
) -> std::thread::ScopedJoinHandle<'s, Vec<Vec<String>>> {
    let label = format!("label=berth.app={}", app.name);
    scope.spawn(move || {
        let mut seen = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            let out = docker(&["ps", "-a", "--filter", &label, "--format", "{{.Names}}"]);
            let mut names: Vec<String> = out.lines().map(str::to_string).collect();
            names.sort();
            seen.push(names);
            std::thread::sleep(Duration::from_millis(150));
        }
        seen
    })
}

/// One `git push` of the race.
struct Attempt {
    pusher: usize,
    commit: String,
    out: PushOutput,
}

#[test]
fn eight_simultaneous_pushes_to_one_app_are_serialised() {
    const PUSHERS: usize = 8;
    const MAX_ATTEMPTS: usize = 30;
    let t = Test::new();
    let app = App::create(&t, "race8");
    let base = Repo::from_template("web");
    force_push(&base, &app).success();
    let url = app.url();
    let payload = b"written before the race".to_vec();
    assert_eq!(crate::push::post(&url, "/cgi-bin/upload?name=before", &payload).status, 200);

    // Eight independent work trees, each with its own history (its own root commit).
    let repos: Vec<Repo> = (0..PUSHERS)
        .map(|i| {
            let repo = Repo::from_template("web");
            repo.write("www/index.html", &format!("pusher {i}\n")).commit(&format!("pusher {i}"));
            repo
        })
        .collect();
    let pages: BTreeMap<String, String> =
        repos.iter().enumerate().map(|(i, r)| (r.head(), format!("pusher {i}\n"))).collect();

    let attempts = Mutex::new(Vec::<Attempt>::new());
    let barrier = Barrier::new(PUSHERS);
    let stop = AtomicBool::new(false);
    let started = Instant::now();
    let seen = std::thread::scope(|scope| {
        let watcher = watch_containers(scope, &app, &stop);
        let pushers: Vec<_> = repos
            .iter()
            .enumerate()
            .map(|(pusher, repo)| {
                let (app, attempts, barrier) = (&app, &attempts, &barrier);
                scope.spawn(move || {
                    barrier.wait();
                    // A push whose branch moved while it waited is rejected; push again, as a
                    // user would, until it deploys.
                    for _ in 0..MAX_ATTEMPTS {
                        let out = force_push(repo, app);
                        let accepted = out.status == 0;
                        attempts.lock().unwrap().push(Attempt { pusher, commit: repo.head(), out });
                        if accepted {
                            return;
                        }
                    }
                    panic!("pusher {pusher} was not accepted in {MAX_ATTEMPTS} attempts");
                })
            })
            .collect();
        for pusher in pushers {
            pusher.join().unwrap();
        }
        stop.store(true, Ordering::Relaxed);
        watcher.join().unwrap()
    });
    let elapsed = started.elapsed();
    let attempts = attempts.into_inner().unwrap();

    // Each attempt either deployed or was rejected with a reason; some had to wait.
    let waiting = waiting_line(&app);
    let mut accepted = Vec::new();
    for attempt in &attempts {
        let out = &attempt.out;
        if out.status == 0 {
            assert!(out.remote().iter().any(|l| l.starts_with("=====> Application deployed: ")), "{out}");
            accepted.push(attempt.commit.clone());
        } else {
            assert!(out.stdout.contains("[remote rejected]"), "{out}");
            let pusher = attempt.pusher;
            assert!(
                out.remote().iter().any(|l| l.starts_with(" !     refs/heads/main moved to ")),
                "a rejected push (of pusher {pusher}) says why\n{out}"
            );
            assert!(
                !out.remote().iter().any(|l| l.starts_with("=====> Application deployed: ")),
                "a rejected push deployed nothing\n{out}"
            );
        }
    }
    let waited = attempts.iter().filter(|a| a.out.has_line(&waiting)).count();
    assert!(waited > 0, "eight simultaneous pushes and none waited for the lock?");
    assert_eq!(accepted.len(), PUSHERS, "each pusher was accepted once");

    // Never two deploys at once: at most the serving container and its successor. (The
    // classic builder's intermediate containers carry the image's labels too; berth names its
    // own containers after the app.)
    let allowed = [app.container("web"), format!("{}.retiring", app.container("web"))];
    for names in &seen {
        let berths = names.iter().filter(|n| n.starts_with(&format!("{}.", app.name)));
        assert!(berths.clone().all(|n| allowed.contains(n)), "unexpected containers: {names:?}");
    }

    // The end: one container, serving the commit the branch names, and every accepted push once.
    let head = app.rev("refs/heads/main").unwrap();
    assert!(accepted.contains(&head), "the branch is an accepted push");
    let names: Vec<String> = app.containers().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, [app.container("web")]);
    assert_eq!(crate::engine::inspect(&app.container("web"), "{{.State.Running}}"), "true");
    let state = t.app_state_toml(&app.name);
    let current = state["current_release"].as_integer().unwrap();
    let releases = app.releases();
    let release = |n: i64| releases.iter().find(|r| r["number"].as_i64() == Some(n)).unwrap();
    assert_eq!(release(current)["commit"].as_str(), Some(head.as_str()), "the current release is the branch");
    assert_eq!(release(current)["outcome"].as_str(), Some("deployed"));
    let deployed: Vec<String> = releases
        .iter()
        .filter(|r| r["outcome"] == "deployed" && r["number"] != 1)
        .map(|r| r["commit"].as_str().unwrap().to_string())
        .collect();
    let mut sorted_accepted = accepted.clone();
    sorted_accepted.sort();
    let mut sorted_deployed = deployed.clone();
    sorted_deployed.sort();
    assert_eq!(sorted_deployed, sorted_accepted, "`berth releases` lists each accepted push once");
    assert_eq!(deployed.iter().collect::<BTreeSet<_>>().len(), PUSHERS);
    assert_eq!(releases.len(), PUSHERS + 1, "a push refused for a moved branch records nothing");
    assert_eq!(deployed.last(), Some(&head), "the newest release is the branch");
    let url = app.url();
    assert_eq!(get(&url, "/").text(), pages[&head]);
    assert_eq!(get(&url, "/cgi-bin/file?name=before").body, payload);
    println!(
        "{PUSHERS} pushers: {} attempts, {waited} waited, {} rejected, {} deployed in {:.1}s",
        attempts.len(),
        attempts.len() - accepted.len(),
        accepted.len(),
        elapsed.as_secs_f64()
    );
}

#[test]
fn pushes_to_two_apps_deploy_in_parallel() {
    let t = Test::new();
    let apps = [App::create(&t, "para-a"), App::create(&t, "para-b")];
    let repos = [Repo::from_template("web"), Repo::from_template("web")];
    for (app, repo) in apps.iter().zip(&repos) {
        force_push(repo, app).success();
    }
    let dockerfile = repos[0].read("Dockerfile");
    let slow = |repo: &Repo| {
        repo.write("Dockerfile", &format!("{dockerfile}{}", slow_build_line(3))).commit("a slow build");
    };

    // Alone, one after the other.
    let mut solo = Vec::new();
    for (app, repo) in apps.iter().zip(&repos) {
        slow(repo);
        let started = Instant::now();
        force_push(repo, app).success();
        solo.push(started.elapsed());
    }
    // Together.
    for repo in &repos {
        slow(repo);
    }
    let barrier = Barrier::new(2);
    let started = Instant::now();
    let outs: Vec<PushOutput> = std::thread::scope(|scope| {
        let handles: Vec<_> = apps
            .iter()
            .zip(&repos)
            .map(|(app, repo)| {
                let barrier = &barrier;
                scope.spawn(move || {
                    barrier.wait();
                    force_push(repo, app)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let together = started.elapsed();
    for (app, out) in apps.iter().zip(outs) {
        let out = out.success();
        assert!(!out.has_line(&waiting_line(app)), "a push waited for another app's deploy\n{out}");
        assert_eq!(get(&app.url(), "/health").status, 200);
    }
    let one = solo.iter().max().unwrap();
    println!(
        "solo pushes: {:.1}s and {:.1}s; both at once: {:.1}s",
        solo[0].as_secs_f64(),
        solo[1].as_secs_f64(),
        together.as_secs_f64()
    );
    assert!(
        together.as_secs_f64() < 1.6 * one.as_secs_f64(),
        "two apps' pushes took {together:?} together, one alone {one:?}: they were serialised"
    );
}

#[test]
fn an_admin_mount_during_a_deploy_is_neither_lost_nor_half_applied() {
    let t = Test::new();
    let app = App::create(&t, "adminrace");
    let repo = Repo::from_template("web");
    force_push(&repo, &app).success();
    let shared = t.mkdir("shared");
    std::fs::write(t.path("shared/note"), "admin data\n").unwrap();

    let dockerfile = repo.read("Dockerfile");
    repo.write("Dockerfile", &format!("{dockerfile}{}", slow_build_line(3))).commit("a slow build");
    let lock_file = t.path(format!("locks/app-{}.lock", app.name));
    let (out, mount, mount_took) = std::thread::scope(|scope| {
        let push = scope.spawn(|| force_push(&repo, &app));
        // Wait until the push's hook holds the app's lock (it builds for 3 s with it).
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            assert!(Instant::now() < deadline, "the push never took the app's lock");
            if let Ok(file) = std::fs::File::open(&lock_file)
                && file.try_lock().is_err()
            {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let started = Instant::now();
        let mount = app.berth("storage:mount", &[&format!("{shared}:/shared:ro")]);
        let took = started.elapsed();
        (push.join().unwrap(), mount, took)
    });
    let out = out.success();
    let mount = mount.success();
    assert!(
        mount_took > Duration::from_millis(500),
        "storage:mount took {mount_took:?}: it did not wait for the deploy\n{mount}"
    );

    // The state has both: the push's repo mount and the admin's.
    let state = t.app_state_toml(&app.name);
    let sources: BTreeSet<String> = state["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["source"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        sources,
        BTreeSet::from(["app-dir:uploads".to_string(), format!("host:{shared}")]),
        "{}\n{out}",
        t.app_state(&app.name)
    );
    let web = app.container("web");
    let uploads = (app.dir("uploads").display().to_string(), "/app/storage".to_string(), true);
    let admin = (shared.clone(), "/shared".to_string(), false);
    assert_eq!(
        mounts_of(&web),
        BTreeSet::from([uploads.clone()]),
        "the deploy ran with the mounts it planned"
    );

    let restart = app.berth("ps:restart", &[]).success();
    assert_eq!(mounts_of(&web), BTreeSet::from([uploads, admin]), "{restart}");
    assert_eq!(app.berth("run", &["cat", "/shared/note"]).success().stdout, "admin data\n");
    assert_eq!(get(&app.url(), "/health").status, 200);
}
