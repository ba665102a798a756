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

use crate::engine::{docker, unique_name};
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
