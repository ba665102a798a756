//! The swarm client (`berth::swarm`) against a real multi-node swarm: the main engine as
//! manager and two dockerd nodes in their own network namespaces (scripts/ensure-swarm.sh),
//! pulling from Debian's docker-registry on loopback. The tests run one at a time: draining a
//! node moves every service's tasks.
//!
//! Run with `BERTH_SWARM=1` (the test bed needs root, network namespaces and ~10 s to come up;
//! the tests take about a minute together); without it each test returns at once.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::process::Command;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use berth::swarm::{
    ImageDigest, JobDef, NodeName, Registry, RestartCondition, RestartPolicy, ServiceDef, Swarm, SwarmError,
    SwarmMount, UpdateOrder, VolumeDriver,
};

use std::path::Path;

use crate::engine::{docker, unique_name};
use crate::proxy::RunningCaddy;
use crate::push::{App, Repo, get, get_host, post};
use crate::serve::Load;
use crate::test::Test;

const REGISTRY: &str = "127.0.0.1:5000";
const NODES: [&str; 2] = ["berth-sw1", "berth-sw2"];
const CONVERGE: Duration = Duration::from_secs(90);

fn enabled() -> bool {
    let on = std::env::var("BERTH_SWARM").is_ok_and(|v| v == "1");
    if !on {
        eprintln!("skipped: set BERTH_SWARM=1 to run the multi-node swarm tests");
    }
    on
}

/// Brings the test bed up once per test process, and holds the swarm for one test.
fn bed() -> MutexGuard<'static, ()> {
    static READY: OnceLock<Result<(), String>> = OnceLock::new();
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    let guard = ONE_AT_A_TIME.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let ready = READY.get_or_init(|| {
        let output = Command::new("bash")
            .arg("scripts/ensure-swarm.sh")
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .map_err(|e| format!("cannot run scripts/ensure-swarm.sh: {e}"))?;
        if output.status.success() {
            return Ok(());
        }
        Err(format!(
            "scripts/ensure-swarm.sh failed\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ))
    });
    if let Err(message) = ready {
        panic!("{message}");
    }
    guard
}

/// `docker` against a node's own engine.
fn on_node(node: &str, args: &[&str]) -> std::process::Output {
    let host = format!("unix:///run/berth-swarm/{node}/docker.sock");
    Command::new("docker").arg("-H").arg(host).args(args).output().unwrap()
}

fn node(name: &str) -> NodeName {
    NodeName::new(name).unwrap()
}

/// The base image pushed to the test registry under a repository of its own.
fn pushed(swarm: &Swarm, repository: &str) -> ImageDigest {
    swarm.push("berth-base:latest", &Registry::parse(REGISTRY).unwrap(), repository, "1").unwrap()
}

/// A one-replica service running `script` under `sh -c`, `NODE` set to its node's hostname.
fn service(name: &str, image: &ImageDigest, script: &str) -> ServiceDef {
    ServiceDef {
        name: name.to_string(),
        image: image.clone(),
        command: Some(vec!["sh".into(), "-c".into(), script.into()]),
        env: BTreeMap::from([("NODE".into(), "{{.Node.Hostname}}".into())]),
        labels: BTreeMap::from([("berth.app".into(), name.to_string())]),
        user: None,
        replicas: 1,
        mounts: Vec::new(),
        pinned_to: None,
        publish: None,
        publish_at: None,
        update_order: UpdateOrder::StartFirst,
        health: None,
        restart: RestartPolicy {
            condition: RestartCondition::Always,
            max_attempts: None,
            delay: Duration::from_secs(1),
        },
        stop_grace: Duration::from_secs(10),
        monitor: Duration::from_secs(1),
    }
}

fn bind(source: &str, target: &str) -> SwarmMount {
    SwarmMount::Bind { source: source.into(), target: target.into(), read_only: false }
}

/// What a test made in the swarm, undone when it ends, even on failure: drained nodes made
/// active again, services removed, their volumes removed from every engine.
struct Cleanup {
    services: Vec<String>,
    volumes: Vec<String>,
    drained: Vec<&'static str>,
}

impl Cleanup {
    fn new() -> Cleanup {
        Cleanup { services: Vec::new(), volumes: Vec::new(), drained: Vec::new() }
    }

    fn drain(&mut self, node: &'static str) {
        docker(&["node", "update", "--availability", "drain", node]);
        self.drained.push(node);
    }

    fn activate(&mut self, node: &'static str) {
        docker(&["node", "update", "--availability", "active", node]);
        self.drained.retain(|n| *n != node);
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for node in &self.drained {
            let _ =
                Command::new("docker").args(["node", "update", "--availability", "active", node]).output();
        }
        for service in &self.services {
            let _ = Command::new("docker").args(["service", "rm", service]).output();
        }
        // A volume is busy until the removed service's containers are gone.
        let deadline = Instant::now() + Duration::from_secs(30);
        for volume in &self.volumes {
            for engine in std::iter::once(None).chain(NODES.iter().map(Some)) {
                while Instant::now() < deadline {
                    let output = match engine {
                        None => Command::new("docker").args(["volume", "rm", "-f", volume]).output().unwrap(),
                        Some(node) => on_node(node, &["volume", "rm", "-f", volume]),
                    };
                    if output.status.success() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(500));
                }
            }
        }
    }
}

fn lines(path: &str) -> Vec<String> {
    fs::read_to_string(path).unwrap_or_default().lines().map(str::to_string).collect()
}

/// Nodes that ran the service's tasks that still run.
fn running_nodes(swarm: &Swarm, service: &str) -> BTreeSet<String> {
    let tasks = swarm.tasks(service).unwrap();
    tasks
        .into_iter()
        .filter(|t| {
            t.state == bollard::models::TaskState::RUNNING && t.desired == bollard::models::TaskState::RUNNING
        })
        .filter_map(|t| t.node)
        .collect()
}

#[test]
fn the_test_bed_is_a_manager_and_two_ready_workers() {
    if !enabled() {
        return;
    }
    let _swarm = bed();
    let swarm = Swarm::connect().unwrap();
    let this = swarm.this_node().unwrap();
    assert!(this.manager && this.schedulable(), "{this:?}");
    assert_eq!(this.address.as_deref(), Some("198.18.0.1"));
    for name in NODES {
        let facts = swarm.require_schedulable(&node(name)).unwrap();
        assert!(!facts.manager, "{facts:?}");
    }
    assert!(matches!(swarm.node(&node("no-such-node")), Err(SwarmError::NoSuchNode(_))));
    // The main engine stays usable for every other test.
    assert_eq!(docker(&["run", "--rm", "berth-base:latest", "echo", "plain"]).trim(), "plain");
}

/// The stand-in for NFS: a `local` volume whose options bind one directory of the machine,
/// which every node sees because they all share its filesystem, as every NFS client sees the
/// export. Each node creates the volume itself from the options inside the mount.
#[test]
fn two_replicas_on_two_nodes_share_a_driver_volume() {
    if !enabled() {
        return;
    }
    let _swarm = bed();
    let swarm = Swarm::connect().unwrap();
    let t = Test::new();
    let shared = t.mkdir("export");
    let name = unique_name("sw-shared");
    let mut cleanup = Cleanup::new();
    cleanup.services.push(name.clone());
    cleanup.volumes.push(name.clone());
    let image = pushed(&swarm, &name);
    let mut def = service(&name, &image, "echo $NODE > /media/$NODE; exec sleep 3600");
    def.replicas = 2;
    def.mounts = vec![SwarmMount::Volume {
        source: name.clone(),
        target: "/media".into(),
        read_only: false,
        no_copy: false,
        driver: Some(VolumeDriver {
            name: "local".into(),
            options: BTreeMap::from([
                ("type".into(), "none".into()),
                ("o".into(), "bind".into()),
                ("device".into(), shared.clone()),
            ]),
        }),
    }];
    swarm.deploy(&def).unwrap();
    swarm.wait_converged(&name, 2, CONVERGE).unwrap();

    let nodes = running_nodes(&swarm, &name);
    assert_eq!(nodes.len(), 2, "two replicas on two nodes: {nodes:?}");
    let written: BTreeSet<String> = fs::read_dir(&shared)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(written, nodes, "each node's task wrote into the one shared directory");
    for worker in nodes.iter().filter(|n| NODES.contains(&n.as_str())) {
        let device =
            on_node(worker, &["volume", "inspect", "--format", "{{index .Options \"device\"}}", &name]);
        assert_eq!(
            String::from_utf8_lossy(&device.stdout).trim(),
            shared,
            "{worker} made the volume from the mount"
        );
    }
}

#[test]
fn a_pinned_service_keeps_its_node_and_data_through_redeploys_and_a_drain_of_another_node() {
    if !enabled() {
        return;
    }
    let _swarm = bed();
    let swarm = Swarm::connect().unwrap();
    let t = Test::new();
    let data = t.mkdir("data");
    let name = unique_name("sw-pinned");
    let mut cleanup = Cleanup::new();
    cleanup.services.push(name.clone());
    let image = pushed(&swarm, &name);
    let mut def = service(&name, &image, "echo $NODE >> /data/starts; exec sleep 3600");
    def.mounts = vec![bind(&data, "/data")];
    def.pinned_to = Some(node("berth-sw1"));
    def.update_order = UpdateOrder::StopFirst;
    swarm.deploy(&def).unwrap();
    swarm.wait_converged(&name, 1, CONVERGE).unwrap();
    cleanup.drain("berth-sw2");
    for release in 2..=6 {
        def.env.insert("RELEASE".into(), release.to_string());
        swarm.deploy(&def).unwrap();
        swarm.wait_converged(&name, 1, CONVERGE).unwrap();
    }
    assert_eq!(lines(&format!("{data}/starts")), vec!["berth-sw1"; 6], "six starts, all on the pinned node");
    assert_eq!(running_nodes(&swarm, &name), BTreeSet::from(["berth-sw1".to_string()]));
}

#[test]
fn draining_the_pinned_node_fails_the_next_deploy_clearly_and_changes_nothing() {
    if !enabled() {
        return;
    }
    let _swarm = bed();
    let swarm = Swarm::connect().unwrap();
    let t = Test::new();
    let data = t.mkdir("data");
    fs::write(format!("{data}/keep"), "precious\n").unwrap();
    let name = unique_name("sw-drained");
    let mut cleanup = Cleanup::new();
    cleanup.services.push(name.clone());
    let image = pushed(&swarm, &name);
    let mut def = service(&name, &image, "echo $NODE >> /data/starts; exec sleep 3600");
    def.mounts = vec![bind(&data, "/data")];
    def.pinned_to = Some(node("berth-sw2"));
    swarm.deploy(&def).unwrap();
    swarm.wait_converged(&name, 1, CONVERGE).unwrap();
    let version = || docker(&["service", "inspect", "--format", "{{.Version.Index}}", &name]);
    let before = version();

    cleanup.drain("berth-sw2");
    def.env.insert("RELEASE".into(), "2".into());
    let error = swarm.deploy(&def).unwrap_err();
    assert!(
        matches!(&error, SwarmError::NodeUnavailable { hostname, availability, .. }
        if hostname == "berth-sw2" && availability == "drain"),
        "{error:?}"
    );
    assert!(error.to_string().contains("docker node update --availability active berth-sw2"), "{error}");
    assert_eq!(version(), before, "the service was not updated");
    assert_eq!(fs::read_to_string(format!("{data}/keep")).unwrap(), "precious\n");

    // The drain itself stopped the task (the engine's doing); none started anywhere else.
    let wait = swarm.wait_converged(&name, 1, Duration::from_secs(20)).unwrap_err();
    assert!(
        matches!(&wait, SwarmError::Unschedulable { reason, .. } if reason.contains("no suitable node")),
        "{wait:?}"
    );
    assert!(running_nodes(&swarm, &name).is_empty());

    cleanup.activate("berth-sw2");
    swarm.deploy(&def).unwrap();
    swarm.wait_converged(&name, 1, CONVERGE).unwrap();
    assert_eq!(running_nodes(&swarm, &name), BTreeSet::from(["berth-sw2".to_string()]));
    assert!(lines(&format!("{data}/starts")).iter().all(|n| n == "berth-sw2"));
}

/// The app takes a lock file in its storage when it starts and drops it when told to stop; a
/// start that finds the lock taken records a violation. Stop-first updates never do; the same
/// app updated start-first does, which shows the check can fail.
#[test]
fn stop_first_never_runs_two_tasks_at_once() {
    if !enabled() {
        return;
    }
    let _swarm = bed();
    let swarm = Swarm::connect().unwrap();
    let t = Test::new();
    let data = t.mkdir("data");
    let name = unique_name("sw-exclusive");
    let mut cleanup = Cleanup::new();
    cleanup.services.push(name.clone());
    let image = pushed(&swarm, &name);
    let script = "[ -e /data/lock ] && echo \"$RELEASE found $(cat /data/lock)\" >> /data/violations; \
                  echo $RELEASE > /data/lock; echo $RELEASE >> /data/starts; \
                  trap 'rm -f /data/lock; exit 0' TERM; while :; do sleep 0.2; done";
    let mut def = service(&name, &image, script);
    def.mounts = vec![bind(&data, "/data")];
    def.pinned_to = Some(node("berth-sw1"));
    def.update_order = UpdateOrder::StopFirst;
    def.env.insert("RELEASE".into(), "1".into());
    swarm.deploy(&def).unwrap();
    swarm.wait_converged(&name, 1, CONVERGE).unwrap();
    for release in 2..=4 {
        def.env.insert("RELEASE".into(), release.to_string());
        swarm.deploy(&def).unwrap();
        swarm.wait_converged(&name, 1, CONVERGE).unwrap();
    }
    assert_eq!(lines(&format!("{data}/starts")), ["1", "2", "3", "4"]);
    assert_eq!(lines(&format!("{data}/violations")), Vec::<String>::new());

    def.update_order = UpdateOrder::StartFirst;
    def.env.insert("RELEASE".into(), "5".into());
    swarm.deploy(&def).unwrap();
    swarm.wait_converged(&name, 1, CONVERGE).unwrap();
    assert_eq!(lines(&format!("{data}/violations")), ["5 found 4"], "start-first overlaps the two tasks");
}

#[test]
fn a_failing_update_is_rolled_back_by_the_engine_with_the_reason() {
    if !enabled() {
        return;
    }
    let _swarm = bed();
    let swarm = Swarm::connect().unwrap();
    let name = unique_name("sw-rollback");
    let mut cleanup = Cleanup::new();
    cleanup.services.push(name.clone());
    let image = pushed(&swarm, &name);
    let good = service(&name, &image, "exec sleep 3600");
    swarm.deploy(&good).unwrap();
    swarm.wait_converged(&name, 1, CONVERGE).unwrap();

    let bad = service(&name, &image, "echo broken release; exit 3");
    swarm.deploy(&bad).unwrap();
    let error = swarm.wait_converged(&name, 1, CONVERGE).unwrap_err();
    assert!(
        matches!(&error, SwarmError::RolledBack { reason, .. } if reason.contains("non-zero exit (3)")),
        "{error:?}"
    );
    let command = docker(&[
        "service",
        "inspect",
        "--format",
        "{{json .Spec.TaskTemplate.ContainerSpec.Command}}",
        &name,
    ]);
    assert_eq!(command.trim(), r#"["sh","-c","exec sleep 3600"]"#, "the engine restored the previous spec");
    // The old task stopped once the new one ran (start-first without a health check): the
    // rollback's task may still be starting when the engine reports the rollback completed.
    let deadline = Instant::now() + CONVERGE;
    while running_nodes(&swarm, &name).len() != 1 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(250));
    }
    assert_eq!(running_nodes(&swarm, &name).len(), 1);
}

#[test]
fn a_one_off_task_runs_on_the_named_node_and_reports_failure() {
    if !enabled() {
        return;
    }
    let _swarm = bed();
    let swarm = Swarm::connect().unwrap();
    let t = Test::new();
    let data = t.mkdir("data");
    fs::create_dir(format!("{data}/app")).unwrap();
    let name = unique_name("sw-job");
    let _cleanup = Cleanup { services: vec![name.clone()], volumes: Vec::new(), drained: Vec::new() };
    let job = JobDef {
        name: name.clone(),
        image: pushed(&swarm, &name).to_string(),
        command: vec!["sh".into(), "-c".into(), "chown 1234:1234 /data/app && hostname > /data/ran".into()],
        user: None,
        labels: BTreeMap::new(),
        mounts: vec![bind(&data, "/data")],
        node: node("berth-sw2"),
    };
    let outcome = swarm.run_job(&job, CONVERGE).unwrap();
    assert_eq!((outcome.node.as_str(), outcome.exit_code), ("berth-sw2", 0));
    use std::os::unix::fs::MetadataExt;
    assert_eq!(fs::metadata(format!("{data}/app")).unwrap().uid(), 1234);
    assert_eq!(
        docker(&["service", "ls", "-q", "--filter", &format!("name={name}")]).trim(),
        "",
        "the job is removed"
    );

    let failing = JobDef { command: vec!["sh".into(), "-c".into(), "exit 4".into()], ..job };
    let error = swarm.run_job(&failing, CONVERGE).unwrap_err();
    assert!(
        matches!(&error, SwarmError::JobFailed { node, reason, .. } if node == "berth-sw2" && reason.contains("non-zero exit (4)")),
        "{error:?}"
    );
}

// berth's `docker-swarm` scheduler: apps pushed with the real `git push`, deployed as
// services on the test bed.

/// An app on the swarm: berth.toml (kept as it is otherwise) names the test registry, the app
/// selects docker-swarm.
fn swarm_app<'t>(t: &'t Test, tag: &str) -> App<'t> {
    let settings = fs::read_to_string(t.path("berth.toml")).unwrap_or_default();
    fs::write(t.path("berth.toml"), format!("{settings}\n[swarm]\nregistry = \"{REGISTRY}\"\n")).unwrap();
    let app = App::create(t, tag);
    app.berth("scheduler:set", &["selected", "docker-swarm"]).success();
    app
}

/// The app's service that runs `process` now (a web swap alternates between two names).
fn service_of(app: &App, process: &str) -> String {
    let app_label = format!("label=berth.app={}", app.name);
    let process_label = format!("label=berth.process={process}");
    let names = docker(&[
        "service",
        "ls",
        "--filter",
        &app_label,
        "--filter",
        &process_label,
        "--format",
        "{{.Name}}",
    ]);
    let names: Vec<&str> = names.lines().collect();
    assert_eq!(names.len(), 1, "one service runs {process} of {}: {names:?}", app.name);
    names[0].to_string()
}

/// The nodes of the service's running tasks, one entry per task, sorted.
fn task_nodes(service: &str) -> Vec<String> {
    let out = docker(&[
        "service",
        "ps",
        service,
        "--filter",
        "desired-state=running",
        "--format",
        "{{.Node}} {{.CurrentState}}",
    ]);
    let mut nodes: Vec<String> = out
        .lines()
        .filter(|l| l.contains("Running"))
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect();
    nodes.sort();
    nodes
}

/// Where the proxy reaches the current release's first web task (`web_upstreams`), as a URL.
fn upstream_url(app: &App) -> String {
    let number = app.t.app_state_toml(&app.name)["current_release"].as_integer().expect("a current release");
    let releases = app.releases();
    let current = releases.iter().find(|r| r["number"] == number).expect("the current release's record");
    format!("http://{}", current["web_upstreams"][0].as_str().expect("the release records its upstreams"))
}

/// A swarm app the test's Caddy serves at `<app>.test`, its host name.
fn proxied_swarm_app<'t>(caddy: &'t RunningCaddy, tag: &str) -> (App<'t>, String) {
    let app = swarm_app(&caddy.t, tag);
    let host = format!("{}.test", app.name);
    app.berth("domains:add", &[&host]).success();
    (app, host)
}

/// Stops the load and fails unless it sent more than `at_least` requests and none failed.
fn no_failed_request(load: Load, at_least: u64) -> u64 {
    let (sent, failures) = load.finish();
    assert!(sent > at_least, "only {sent} requests were sent");
    assert!(failures.is_empty(), "{} of {sent} requests failed: {failures:?}", failures.len());
    sent
}

/// One value of `scheduler:report <app> --<flag>`.
fn scheduler_row(app: &App, flag: &str) -> String {
    app.berth("scheduler:report", &[&format!("--{flag}")]).success().stdout.trim().to_string()
}

#[test]
fn scheduler_set_and_report_in_dokkus_shape() {
    let t = Test::new();
    t.ok(["apps:create", "sw-sched"]);
    let out = t.ok(["scheduler:set", "sw-sched", "selected", "docker-swarm"]);
    assert!(
        out.stdout
            .contains("Setting scheduler for sw-sched to docker-swarm; it takes effect at the next deploy"),
        "{out}"
    );
    let report: serde_json::Value =
        serde_json::from_str(&t.ok(["scheduler:report", "sw-sched", "--format", "json"]).stdout).unwrap();
    assert_eq!(report["scheduler-computed-selected"], "docker-swarm");
    assert_eq!(report["computed-selected"], "docker-swarm");
    assert_eq!(report["scheduler-global-selected"], "");
    let refused = t.args(["scheduler:set", "sw-sched", "selected", "k8s"]).refuse();
    assert!(
        refused.stderr.contains("unknown scheduler \"k8s\"; use docker-local or docker-swarm"),
        "{refused}"
    );
    fs::write(t.path("berth.toml"), "[scheduler]\nselected = \"docker-swarm\"\n").unwrap();
    t.ok(["scheduler:set", "sw-sched", "selected"]);
    let text = t.ok(["scheduler:report", "sw-sched"]).stdout;
    assert!(text.starts_with("=====> sw-sched scheduler information\n"), "{text}");
    assert!(text.contains("Scheduler computed selected:   docker-swarm\n"), "{text}");
    assert!(text.contains("Scheduler global selected:     docker-swarm\n"), "{text}");
}

/// The stand-in for shared storage in an app: a tmpfs-driver app volume, which keeps nothing on
/// any node, so the tasks may go anywhere.
#[test]
fn an_app_with_two_replicas_runs_on_two_nodes_with_a_movable_volume() {
    if !enabled() {
        return;
    }
    let _swarm = bed();
    let t = Test::new();
    let app = swarm_app(&t, "sw-two");
    let repo = Repo::from_template("web");
    let toml = format!(
        "{}\n[scale]\nweb = 2\n\n[[storage.mounts]]\nsource = \"scratch\"\ntarget = \"/app/scratch\"\ndriver_opts = {{ type = \"tmpfs\", device = \"tmpfs\" }}\n",
        repo.read("app.toml")
            .replace("[[storage.mounts]]\nsource = \"./uploads\"\ntarget = \"/app/storage\"\n", "")
    );
    repo.write("app.toml", &toml).commit("two replicas, tmpfs volume");
    let out = repo.push(&app).success();
    assert!(
        out.to_string().contains(&format!("Services run {REGISTRY}/berth/{}@sha256:", app.name)),
        "{out}"
    );
    let web = service_of(&app, "web");
    let nodes = task_nodes(&web);
    assert_eq!(nodes.len(), 2, "{nodes:?}");
    assert_ne!(nodes[0], nodes[1], "the two replicas spread over two nodes");
    let image =
        docker(&["service", "inspect", "--format", "{{.Spec.TaskTemplate.ContainerSpec.Image}}", &web]);
    assert!(image.trim().contains("@sha256:"), "by digest: {image}");
    let mounts =
        docker(&["service", "inspect", "--format", "{{json .Spec.TaskTemplate.ContainerSpec.Mounts}}", &web]);
    assert!(
        mounts.contains(r#""DriverConfig":{"Name":"local","Options":{"device":"tmpfs","type":"tmpfs"}}"#),
        "{mounts}"
    );
    let placement =
        docker(&["service", "inspect", "--format", "{{json .Spec.TaskTemplate.Placement}}", &web]);
    assert!(!placement.contains("node.hostname"), "not pinned: {placement}");
    assert_eq!(get(&upstream_url(&app), "/health").status, 200);
    assert_eq!(scheduler_row(&app, "scheduler-computed-selected"), "docker-swarm");
    assert_eq!((app.ps("ps-processes").as_str(), app.ps("ps-running").as_str()), ("2", "true"));
    // Any node: the manager runs tasks too.
    assert!(app.ps(&format!("ps-status.{web}.1")).starts_with("running on "), "tasks in ps:report");

    app.berth("ps:stop", &[]).success();
    assert_eq!(
        docker(&["service", "ls", "-q", "--filter", &format!("name={web}")]).trim(),
        "",
        "ps:stop removes the service"
    );
    app.berth("ps:start", &[]).success();
    assert_eq!(task_nodes(&service_of(&app, "web")).len(), 2, "ps:start deploys it again");
    assert_eq!(get(&upstream_url(&app), "/health").status, 200);
}

#[test]
fn a_pinned_app_keeps_its_data_through_five_redeploys_and_a_drain_of_another_node() {
    if !enabled() {
        return;
    }
    let _swarm = bed();
    let t = Test::new();
    let app = swarm_app(&t, "sw-pin");
    app.berth("scheduler:set", &["node", "berth-sw1"]).success();
    let repo = Repo::from_template("web");
    let out = repo.push(&app).success();
    // A one-off task of berth's helper image on the node makes the directory there (here the
    // nodes share the machine's disk, so it is the one berth made too).
    assert!(out.to_string().contains("Preparing 1 app director(ies) on node berth-sw1"), "{out}");
    assert!(
        out.to_string()
            .contains(&format!("Directory {} ready on node berth-sw1", app.dir("uploads").display())),
        "{out}"
    );
    let web = service_of(&app, "web");
    assert_eq!(task_nodes(&web), ["berth-sw1"]);
    let payload = b"kept on berth-sw1\n".to_vec();
    assert_eq!(post(&upstream_url(&app), "/cgi-bin/upload?name=keep", &payload).status, 200);
    let mut cleanup = Cleanup::new();
    for release in 2..=6 {
        if release == 3 {
            cleanup.drain("berth-sw2");
        }
        repo.write("www/index.html", &format!("<p>release {release}</p>\n")).commit("again");
        repo.push(&app).success();
        let url = upstream_url(&app);
        assert_eq!(get(&url, "/").text(), format!("<p>release {release}</p>\n"));
        assert_eq!(get(&url, "/cgi-bin/file?name=keep").body, payload, "release {release}");
        assert_eq!(task_nodes(&service_of(&app, "web")), ["berth-sw1"], "release {release}");
    }
    assert_eq!(fs::read(app.dir("uploads/keep")).unwrap(), payload);
    let run = app.t.args(["run", app.name.as_str(), "cat", "/app/storage/keep"]).refuse();
    assert!(run.stderr.contains("is pinned to swarm node \"berth-sw1\", where its data is"), "{run}");
    let report = app.berth("storage:report", &["--storage-swarm-node"]).success();
    assert_eq!(report.stdout.trim(), "berth-sw1");
    assert_eq!(scheduler_row(&app, "scheduler-swarm-node"), "berth-sw1");
}

#[test]
fn draining_the_pinned_node_rejects_the_push_naming_node_and_data() {
    if !enabled() {
        return;
    }
    let _swarm = bed();
    let t = Test::new();
    let app = swarm_app(&t, "sw-drain");
    app.berth("scheduler:set", &["node", "berth-sw2"]).success();
    let repo = Repo::from_template("web");
    repo.push(&app).success();
    let web = service_of(&app, "web");
    let payload = b"precious\n".to_vec();
    assert_eq!(post(&upstream_url(&app), "/cgi-bin/upload?name=keep", &payload).status, 200);
    let version = || docker(&["service", "inspect", "--format", "{{.Version.Index}}", &web]);
    let before = version();
    let releases_before = app.releases().len();

    let mut cleanup = Cleanup::new();
    cleanup.drain("berth-sw2");
    repo.write("www/index.html", "<p>two</p>\n").commit("two");
    let out = repo.push(&app).rejected();
    let text = out.to_string();
    assert!(text.contains("data lives on swarm node \"berth-sw2\""), "{text}");
    assert!(text.contains(&format!("directory {}", app.dir("uploads").display())), "{text}");
    assert!(text.contains("its availability is drain"), "{text}");
    assert!(text.contains("docker node update --availability active berth-sw2"), "{text}");
    assert_eq!(version(), before, "the service was not updated");
    assert_eq!(fs::read(app.dir("uploads/keep")).unwrap(), payload);
    assert_eq!(task_nodes(&web), Vec::<String>::new(), "nothing started elsewhere");
    assert_eq!(app.releases().len(), releases_before + 1, "the failed release is recorded");

    cleanup.activate("berth-sw2");
    repo.push(&app).success();
    assert_eq!(task_nodes(&service_of(&app, "web")), ["berth-sw2"]);
    assert_eq!(get(&upstream_url(&app), "/cgi-bin/file?name=keep").body, payload);
}

/// A worker that takes a lock file in its exclusive storage when it starts and drops it when
/// told to stop; a start that finds the lock taken records a violation.
fn exclusive_repo() -> Repo {
    let repo = Repo::from_template("web");
    repo.write(
        "app.toml",
        "[app]\nuser = \"1000\"\n\n[processes]\nworker = \"sh /app/bin/locker\"\n\n[[storage.mounts]]\nsource = \"./state\"\ntarget = \"/state\"\nexclusive = true\n",
    );
    repo.write(
        "bin/locker",
        "[ -e /state/lock ] && echo \"$BERTH_RELEASE found $(cat /state/lock)\" >> /state/violations\n\
         echo $BERTH_RELEASE > /state/lock; echo $BERTH_RELEASE >> /state/starts\n\
         trap 'rm -f /state/lock; exit 0' TERM\nwhile :; do sleep 0.2; done\n",
    );
    repo.commit("exclusive worker");
    repo
}

#[test]
fn an_exclusive_app_never_runs_two_tasks_at_once() {
    if !enabled() {
        return;
    }
    let _swarm = bed();
    let t = Test::new();
    let app = swarm_app(&t, "sw-excl");
    let repo = exclusive_repo();
    for _ in 1..=4 {
        repo.commit("again");
        repo.push(&app).success();
    }
    let update = docker(&[
        "service",
        "inspect",
        "--format",
        "{{.Spec.UpdateConfig.Order}}",
        &service_of(&app, "worker"),
    ]);
    assert_eq!(update.trim(), "stop-first");
    let read = |file: &str| fs::read_to_string(app.dir(&format!("state/{file}"))).unwrap_or_default();
    assert_eq!(read("starts"), "1\n2\n3\n4\n");
    assert_eq!(read("violations"), "", "two tasks held the lock at once");
    // Pinned to this manager: `berth run` starts beside the data.
    assert_eq!(app.berth("run", &["cat", "/state/starts"]).success().stdout, "1\n2\n3\n4\n");
    let manager = docker(&["node", "inspect", "self", "--format", "{{.Description.Hostname}}"]);
    assert_eq!(
        scheduler_row(&app, "scheduler-swarm-node"),
        manager.trim(),
        "pinned to the manager by default"
    );
}

#[test]
fn a_failing_release_is_removed_and_the_push_rejected_with_the_reason() {
    if !enabled() {
        return;
    }
    let _swarm = bed();
    let t = Test::new();
    let app = swarm_app(&t, "sw-back");
    let repo = Repo::from_template("web");
    repo.push(&app).success();
    let web = service_of(&app, "web");
    let good =
        docker(&["service", "inspect", "--format", "{{.Spec.TaskTemplate.ContainerSpec.Image}}", &web]);

    repo.write("bin/web", "#!/bin/sh\necho broken release; exit 3\n").commit("broken");
    let out = repo.push(&app).rejected();
    let text = out.to_string();
    // Its service started beside the serving one, which the failure leaves untouched.
    assert!(text.contains("failed to start: task"), "{text}");
    assert!(text.contains("non-zero exit (3)"), "{text}");
    assert!(text.contains(&format!("its release failed, {web} keeps serving")), "{text}");
    let now = docker(&["service", "inspect", "--format", "{{.Spec.TaskTemplate.ContainerSpec.Image}}", &web]);
    assert_eq!(now, good, "the previous release serves on");
    assert_eq!(service_of(&app, "web"), web, "the failed release's service is gone");
    assert_eq!(get(&upstream_url(&app), "/health").status, 200);

    // berth's own rollback on the swarm: release 1 again, as a service update.
    repo.write(
        "bin/web",
        &fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("templates/web/bin/web")).unwrap(),
    )
    .write("www/index.html", "<p>three</p>\n")
    .commit("three");
    repo.push(&app).success();
    assert_eq!(get(&upstream_url(&app), "/").text(), "<p>three</p>\n");
    app.berth("rollback", &["1"]).success();
    let url = upstream_url(&app);
    assert_ne!(get(&url, "/").text(), "<p>three</p>\n", "release 1 serves again");
    assert_eq!(task_nodes(&service_of(&app, "web")).len(), 1);
    let logs = app.berth("logs", &["--tail", "50"]).success();
    assert!(
        format!("{}{}", logs.stdout, logs.stderr).contains("url:/health"),
        "the web tasks' httpd output, from the service: {logs}"
    );
}

#[test]
fn the_proxy_serves_a_web_app_running_on_a_worker_node() {
    if !enabled() {
        return;
    }
    let _swarm = bed();
    let caddy = RunningCaddy::start();
    let (app, host) = proxied_swarm_app(&caddy, "sw-proxy");
    app.berth("scheduler:set", &["node", "berth-sw2"]).success();
    let repo = Repo::from_template("web");
    repo.push(&app).success();
    assert!(upstream_url(&app).starts_with("http://198.18.0.12:"), "{}", upstream_url(&app));
    assert_eq!(get_host(&caddy.url, &host, "/health").status, 200);
    repo.write("www/index.html", "<p>two</p>\n").commit("two");
    repo.push(&app).success();
    assert_eq!(get_host(&caddy.url, &host, "/").text(), "<p>two</p>\n", "the route follows the new task");
}

#[test]
fn s3_a_redeploy_of_two_replicas_fails_no_proxied_request_and_both_replicas_serve() {
    if !enabled() {
        return;
    }
    let _swarm = bed();
    let caddy = RunningCaddy::start();
    let (app, host) = proxied_swarm_app(&caddy, "s3-swap");
    let repo = Repo::from_template("web");
    let toml = format!("{}\n[scale]\nweb = 2\n", repo.read("app.toml"));
    repo.write("app.toml", &toml)
        .write("www/cgi-bin/task", "#!/bin/sh\nprintf 'Status: 200 OK\\r\\n\\r\\n%s\\n' \"$(hostname)\"\n")
        .commit("two replicas that name their task");
    repo.push(&app).success();
    let first = service_of(&app, "web");
    // The first swaps go to addresses Caddy's config does not hold yet (and two replicas on
    // three nodes may land elsewhere later): the switch reloads Caddy, which closes idle
    // keep-alive connections (docs/swarm.md). A connection being opened must not be reset.
    let load = Load::start_per_request(&caddy.url, &host);
    for release in 2..=3 {
        repo.write("www/index.html", &format!("<p>release {release}</p>\n")).commit("again");
        let out = repo.push(&app).success().to_string();
        assert!(out.contains("Removing service"), "the old web service goes once the new one serves: {out}");
    }
    let sent = no_failed_request(load, 20);
    assert_eq!(service_of(&app, "web"), first, "two swaps: back to the first name");
    eprintln!("{sent} proxied requests during two redeploys, none failed");
    assert_eq!(task_nodes(&service_of(&app, "web")).len(), 2);
    let answered: BTreeSet<String> =
        (0..30).map(|_| get_host(&caddy.url, &host, "/cgi-bin/task").text().trim().to_string()).collect();
    assert_eq!(answered.len(), 2, "both replicas answer proxied requests: {answered:?}");
    assert_eq!(get_host(&caddy.url, &host, "/").text(), "<p>release 3</p>\n");
}

#[test]
fn s3_from_the_third_deploy_a_swap_loads_no_new_proxy_config_and_keeps_connections() {
    if !enabled() {
        return;
    }
    let _swarm = bed();
    let caddy = RunningCaddy::start();
    let (app, host) = proxied_swarm_app(&caddy, "s3-fixed");
    // Pinned to the manager (its app directory lives there): each service's task lands on it.
    let repo = Repo::from_template("web");
    repo.push(&app).success();
    let first = upstream_url(&app);
    repo.write("www/index.html", "<p>release 2</p>\n").commit("two");
    repo.push(&app).success();
    let second = upstream_url(&app);
    assert_ne!(first, second, "the second web service publishes at another port");
    let config = caddy.config();
    let load = Load::start(&caddy.url, &host);
    for release in 3..=5 {
        repo.write("www/index.html", &format!("<p>release {release}</p>\n")).commit("again");
        let out = repo.push(&app).success().to_string();
        assert!(out.contains("Removing service"), "{out}");
        assert_eq!(caddy.config(), config, "release {release}: berth loaded no new proxy config");
        let expected = if release % 2 == 1 { &first } else { &second };
        assert_eq!(&upstream_url(&app), expected, "release {release} publishes at its service's port");
    }
    let sent = no_failed_request(load, 20);
    eprintln!("{sent} proxied keep-alive requests during three swaps, none failed");
    assert_eq!(get_host(&caddy.url, &host, "/").text(), "<p>release 5</p>\n");
    // A process of the manager's own took the port release 6 would reuse: it goes elsewhere.
    let second_port: u16 = second.rsplit(':').next().and_then(|p| p.parse().ok()).unwrap();
    // (once release 4's task, removed by release 5's swap, stopped and freed it)
    let deadline = Instant::now() + Duration::from_secs(30);
    let _squatter = loop {
        match std::net::TcpListener::bind(("0.0.0.0", second_port)) {
            Ok(listener) => break listener,
            Err(e) if Instant::now() > deadline => panic!("port {second_port} stayed taken: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    };
    repo.write("www/index.html", "<p>release 6</p>\n").commit("six");
    repo.push(&app).success();
    assert_ne!(upstream_url(&app), second, "a port a host process holds is not reused");
    assert_eq!(get_host(&caddy.url, &host, "/").text(), "<p>release 6</p>\n");
}

#[test]
fn s3_an_exclusive_web_app_is_held_not_failed_through_its_stop_first_redeploy() {
    if !enabled() {
        return;
    }
    let _swarm = bed();
    let caddy = RunningCaddy::start();
    let (app, host) = proxied_swarm_app(&caddy, "s3-excl");
    let repo = Repo::from_template("web");
    let toml = repo
        .read("app.toml")
        .replace("target = \"/app/storage\"\n", "target = \"/app/storage\"\nexclusive = true\n");
    repo.write("app.toml", &toml).commit("exclusive uploads");
    repo.push(&app).success();
    let before = upstream_url(&app);
    let load = Load::start(&caddy.url, &host);
    repo.write("www/index.html", "<p>two</p>\n").commit("two");
    let out = repo.push(&app).success().to_string();
    no_failed_request(load, 10);
    assert!(out.contains("The proxy holds requests for"), "{out}");
    assert_eq!(upstream_url(&app), before, "the successor took its predecessor's port");
    assert_eq!(get_host(&caddy.url, &host, "/").text(), "<p>two</p>\n");
}
