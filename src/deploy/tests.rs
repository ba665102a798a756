//! The deploy against the in-memory scheduler: first deploy, swap, exclusive stop-first,
//! failed health and its undo, crash recovery, rollback, removed process types.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use super::swap::{Replace, start_release};
use super::*;
use crate::output::Reporter;
use crate::scheduler::Scheduler;
use crate::scheduler::fake::Fake;
use crate::state::{AppState, Outcome, Release, Root, RunConfig};

struct Bed {
    _dir: tempfile::TempDir,
    root: Root,
    app: AppName,
    fake: Fake,
    /// What the deploys of this bed reported.
    out: Reporter,
}

const TIMING: Timing = Timing {
    settle: Duration::ZERO,
    health_timeout: Duration::from_millis(30),
    stop_timeout: Duration::from_secs(7),
    poll: Duration::from_millis(1),
};

fn bed() -> Bed {
    let dir = tempfile::tempdir().unwrap();
    let root = Root::new(dir.path());
    let app: AppName = "demo".parse().unwrap();
    let lock = root.lock_app(&app).unwrap();
    root.create_app(&app, &lock).unwrap();
    Bed { _dir: dir, root, app, fake: Fake::new(), out: Reporter::capture() }
}

fn run(processes: &[&str]) -> RunConfig {
    RunConfig {
        processes: processes
            .iter()
            .map(|p| (p.to_string(), Some(format!("run-{p}"))))
            .collect::<BTreeMap<_, _>>(),
        web_port: Some(5000),
        healthcheck: Some("/health".into()),
        ..RunConfig::default()
    }
}

impl Bed {
    fn plan(&self, release: u32, run: RunConfig) -> Plan {
        Plan {
            app: self.app.clone(),
            release,
            commit: format!("{release:040}"),
            image: format!("berth/demo:{release}"),
            dockerfile: "Dockerfile".into(),
            build_command: None,
            run,
            mounts_added: Vec::new(),
            mounts_removed: Vec::new(),
            mounts_kept: Vec::new(),
            mounts: Vec::new(),
            volume_specs: Default::default(),
            allow_shadowed_volumes: false,
            serving: None,
        }
    }

    fn deploy(&self, plan: &Plan) -> Result<Release> {
        let lock = self.root.lock_app(&self.app).unwrap();
        apply(&self.root, &self.fake, plan, Box::new(|_| Ok(())), &lock, TIMING, &self.out)
    }

    fn current(&self) -> Option<u32> {
        self.root.read_app(&self.app).unwrap().current_release
    }
}

#[test]
fn a_deploy_reports_its_steps_to_the_reporter_it_is_given() {
    let bed = bed();
    bed.deploy(&bed.plan(1, run(&["web"]))).unwrap();
    let captured = bed.out.captured();
    let steps: Vec<&str> = captured.stdout.lines().filter(|l| l.starts_with("-----> ")).collect();
    assert_eq!(
        steps,
        ["-----> Building berth/demo:1", "-----> Ensuring storage", "-----> Starting web (demo.web.1)"]
    );
    assert_eq!(captured.stderr, "");
}

#[test]
fn a_first_deploy_starts_every_process_and_records_the_release() {
    let bed = bed();
    let release = bed.deploy(&bed.plan(1, run(&["web", "worker"]))).unwrap();
    assert_eq!(release.outcome, Outcome::Deployed);
    assert_eq!(release.web_host_port, Some(5000));
    assert_eq!(bed.fake.running(), ["demo.web.1", "demo.worker.1"]);
    assert_eq!(bed.current(), Some(1));
    assert_eq!(
        bed.fake.events(),
        [
            "build berth/demo:1",
            "create demo.web.1",
            "start demo.web.1",
            "create demo.worker.1",
            "start demo.worker.1"
        ]
    );
}

#[test]
fn a_redeploy_starts_the_new_container_beside_the_old_one_then_retires_it() {
    let bed = bed();
    bed.deploy(&bed.plan(1, run(&["web"]))).unwrap();
    bed.fake.clear_events();
    bed.deploy(&bed.plan(2, run(&["web"]))).unwrap();
    assert_eq!(
        bed.fake.events(),
        [
            "build berth/demo:2",
            "rename demo.web.1 -> demo.web.1.retiring",
            "create demo.web.1",
            "start demo.web.1",
            "stop demo.web.1.retiring (7s)",
            "remove demo.web.1.retiring",
        ]
    );
    assert_eq!(bed.fake.image_of("demo.web.1").as_deref(), Some("berth/demo:2"));
    assert_eq!(bed.current(), Some(2));
}

#[test]
fn an_exclusive_process_is_stopped_with_its_timeout_before_its_successor_starts() {
    let bed = bed();
    let exclusive = RunConfig { exclusive: vec!["web".into()], ..run(&["web"]) };
    bed.deploy(&bed.plan(1, exclusive.clone())).unwrap();
    bed.fake.clear_events();
    bed.deploy(&bed.plan(2, exclusive)).unwrap();
    let events = bed.fake.events();
    let stop = events.iter().position(|e| e == "stop demo.web.1.retiring (7s)").unwrap();
    let create = events.iter().position(|e| e == "create demo.web.1").unwrap();
    assert!(stop < create, "{events:?}");
}

#[test]
fn an_unhealthy_release_is_undone_and_the_old_one_serves_on() {
    let bed = bed();
    bed.deploy(&bed.plan(1, run(&["web", "worker"]))).unwrap();
    bed.fake.state.borrow_mut().unhealthy.insert("berth/demo:2".into());
    let error = bed.deploy(&bed.plan(2, run(&["web", "worker"]))).unwrap_err();
    assert!(error.to_string().contains("the web process is not healthy: no 2xx from /health"), "{error}");
    assert_eq!(bed.fake.running(), ["demo.web.1", "demo.worker.1"]);
    assert_eq!(bed.fake.image_of("demo.web.1").as_deref(), Some("berth/demo:1"));
    assert_eq!(bed.fake.image_of("demo.worker.1").as_deref(), Some("berth/demo:1"));
    assert_eq!(bed.current(), Some(1));
    assert_eq!(bed.root.read_releases(&bed.app).unwrap().releases.len(), 1);
}

#[test]
fn an_exclusive_process_that_fails_is_started_again() {
    let bed = bed();
    let exclusive = RunConfig { exclusive: vec!["web".into()], ..run(&["web"]) };
    bed.deploy(&bed.plan(1, exclusive.clone())).unwrap();
    bed.fake.state.borrow_mut().crashing.insert("berth/demo:2".into());
    bed.deploy(&bed.plan(2, exclusive)).unwrap_err();
    assert_eq!(bed.fake.running(), ["demo.web.1"]);
    assert_eq!(bed.fake.image_of("demo.web.1").as_deref(), Some("berth/demo:1"));
}

#[test]
fn recover_puts_the_recorded_release_back_after_a_crash_mid_swap() {
    let out = &Reporter::capture();
    let bed = bed();
    bed.deploy(&bed.plan(1, run(&["web"]))).unwrap();
    // A crash after the new container started: the old one is set aside, the new one runs.
    let release = new_release_record(&bed, 2);
    bed.fake.rename_container("demo.web.1", "demo.web.1.retiring").unwrap();
    let state = bed.root.read_app(&bed.app).unwrap();
    let specs = specs(&bed, &state, &release);
    bed.fake.create_container(&specs[0].spec).unwrap();
    bed.fake.start_container("demo.web.1").unwrap();
    recover(&bed.fake, &bed.app, Some(1), TIMING.stop_timeout, out).unwrap();
    assert_eq!(bed.fake.running(), ["demo.web.1"]);
    assert_eq!(bed.fake.image_of("demo.web.1").as_deref(), Some("berth/demo:1"));
}

/// The release's containers, as a start makes them (no storage entries).
fn specs(bed: &Bed, state: &AppState, release: &Release) -> Vec<super::specs::ProcessSpec> {
    super::specs::process_specs(&bed.root, &bed.app, state, release, &BTreeMap::new()).unwrap()
}

/// Starts `release` beside what runs, with the app's recorded state.
fn start(bed: &Bed, routing: &mut route::Routing, release: &Release) -> Serving {
    let out = &Reporter::capture();
    let state = bed.root.read_app(&bed.app).unwrap();
    let specs = specs(bed, &state, release);
    start_release(&bed.root, &bed.fake, routing, &state, release, specs, TIMING, Replace::Every, out).unwrap()
}

fn new_release_record(bed: &Bed, number: u32) -> Release {
    let plan = bed.plan(number, run(&["web"]));
    Release {
        number,
        commit: plan.commit,
        image: plan.image,
        created_at: 0,
        outcome: Outcome::Interrupted,
        reason: None,
        run: plan.run,
        mounts: Vec::new(),
        web_host_port: None,
        web_upstreams: Vec::new(),
    }
}

#[test]
fn recover_removes_build_and_chown_helpers_left_by_a_killed_deploy() {
    let out = &Reporter::capture();
    let bed = bed();
    for (name, role) in [("demo.build.2", "build"), ("demo.chown.9", "chown")] {
        let spec = crate::engine::ContainerSpec {
            name: name.into(),
            labels: super::specs::labels(&bed.app, role),
            ..Default::default()
        };
        bed.fake.create_container(&spec).unwrap();
    }
    recover(&bed.fake, &bed.app, None, TIMING.stop_timeout, out).unwrap();
    assert!(bed.fake.state.borrow().containers.is_empty());
}

#[test]
fn rollback_serves_the_previous_release_again() {
    let out = &Reporter::capture();
    let bed = bed();
    bed.deploy(&bed.plan(1, run(&["web"]))).unwrap();
    bed.deploy(&bed.plan(2, run(&["web"]))).unwrap();
    assert_eq!(rollback(&bed.root, &bed.fake, &bed.app, None, TIMING, out).unwrap(), 1);
    assert_eq!(bed.fake.image_of("demo.web.1").as_deref(), Some("berth/demo:1"));
    assert_eq!(bed.current(), Some(1));
    bed.fake.state.borrow_mut().images.remove("berth/demo:2");
    let error = rollback(&bed.root, &bed.fake, &bed.app, Some(2), TIMING, out).unwrap_err();
    assert!(matches!(error, DeployError::ImagePruned { release: 2, .. }), "{error}");
}

#[test]
fn a_process_the_release_no_longer_declares_is_removed() {
    let bed = bed();
    bed.deploy(&bed.plan(1, run(&["web", "worker"]))).unwrap();
    bed.deploy(&bed.plan(2, run(&["web"]))).unwrap();
    assert_eq!(bed.fake.running(), ["demo.web.1"]);
}

#[test]
fn a_failing_build_command_starts_nothing_and_changes_no_state() {
    let bed = bed();
    bed.deploy(&bed.plan(1, run(&["web"]))).unwrap();
    bed.fake.state.borrow_mut().crashing.insert("berth/demo:2".into());
    let plan = Plan { build_command: Some("make assets".into()), ..bed.plan(2, run(&["web"])) };
    let error = bed.deploy(&plan).unwrap_err();
    assert!(matches!(error, DeployError::BuildCommand(1)), "{error}");
    assert_eq!(bed.fake.image_of("demo.web.1").as_deref(), Some("berth/demo:1"));
    assert_eq!(bed.current(), Some(1));
}

#[test]
fn ps_stop_stops_every_container_with_its_timeout_before_removing_it() {
    let out = &Reporter::capture();
    let bed = bed();
    bed.deploy(&bed.plan(1, run(&["web"]))).unwrap();
    bed.fake.clear_events();
    stop(&bed.root, &bed.fake, &bed.app, TIMING, out).unwrap();
    assert_eq!(bed.fake.events(), ["stop demo.web.1 (7s)", "remove demo.web.1"]);
}

#[test]
fn the_proxy_switches_to_the_healthy_new_instance_and_the_old_one_drains_before_its_sigterm() {
    use crate::proxy::fake::FakeProxy;
    use crate::proxy::{Domain, Proxy, Route, Target};
    let bed = bed();
    let first = bed.deploy(&bed.plan(1, run(&["web"]))).unwrap();
    let old = first.web_upstreams[0];
    let mut proxy = FakeProxy::default();
    let hosts = vec![Domain::new("demo.example.com").unwrap()];
    proxy.set_route(&bed.app, Route::new(hosts, Target::Up(vec![old]))).unwrap();
    proxy.set_in_flight(old, &[1, 0]);
    let mut routing = route::Routing::with(&bed.app, Box::new(proxy), Duration::from_secs(5));
    let second = Release { number: 2, image: "berth/demo:2".into(), ..first.clone() };
    bed.fake.state.borrow_mut().images.insert(second.image.clone());
    bed.fake.state.borrow_mut().ignoring_term.insert(first.image.clone());
    let serving = start(&bed, &mut routing, &second);
    let new = serving.upstreams[0];
    assert_ne!(new, old, "the new instance has an address of its own");
    let route = &routing.proxy().unwrap().table().apps[&bed.app];
    assert_eq!(route.target, Target::Up(vec![new]));
    assert!(route.draining.is_empty(), "{route:?}");
    assert_eq!(route.slots, vec![[old, new]], "the drained upstream stays configured, for the next release");
    let events = bed.fake.events();
    let stop = events.iter().position(|e| e == "stop demo.web.1.retiring (7s)").unwrap();
    let remove = events.iter().position(|e| e == "remove demo.web.1.retiring").unwrap();
    assert!(stop < remove, "{events:?}");
}

#[test]
fn the_new_instance_starts_at_the_address_the_proxy_keeps_on_standby_and_nothing_reloads() {
    use crate::proxy::{Route, Target};
    let bed = bed();
    let first = bed.deploy(&bed.plan(1, run(&["web"]))).unwrap();
    let old = first.web_upstreams[0];
    let standby = SocketAddr::from(([10, 0, 0, 9], old.port()));
    let mut route = Route::new(demo_hosts(), Target::Up(vec![old]));
    route.slots = vec![[old, standby]];
    let (serving, route, reloads) = bed.swap_through(route, &first, 2);
    assert_eq!(serving.unwrap().upstreams, vec![standby]);
    assert_eq!((route.target, route.slots, reloads), (Target::Up(vec![standby]), vec![[old, standby]], 0));
}

#[test]
fn an_exclusive_web_swap_holds_requests_for_the_new_address_before_the_old_one_stops() {
    use crate::proxy::fake::FakeProxy;
    use crate::proxy::{Domain, Proxy, Route, Target};
    let bed = bed();
    let exclusive = RunConfig { exclusive: vec!["web".into()], ..run(&["web"]) };
    let first = bed.deploy(&bed.plan(1, exclusive)).unwrap();
    let old = first.web_upstreams[0];
    let mut proxy = FakeProxy::default();
    let hosts = vec![Domain::new("demo.example.com").unwrap()];
    proxy.set_route(&bed.app, Route::new(hosts, Target::Up(vec![old]))).unwrap();
    let mut routing = route::Routing::with(&bed.app, Box::new(proxy), Duration::from_secs(5));
    let second = Release { number: 2, image: "berth/demo:2".into(), ..first.clone() };
    bed.fake.state.borrow_mut().images.insert(second.image.clone());
    let serving = start(&bed, &mut routing, &second);
    let table = routing.proxy().unwrap().table();
    assert_eq!(table.apps[&bed.app].target, Target::Up(vec![serving.upstreams[0]]));
}

impl Bed {
    fn scale(&self, process: &str, count: u32) {
        let lock = self.root.lock_app(&self.app).unwrap();
        let mut state = self.root.read_app(&self.app).unwrap();
        state.scale.insert(process.to_string(), count);
        self.root.write_app(&self.app, &state, &lock).unwrap();
    }

    fn images(&self) -> Vec<String> {
        self.fake.running().iter().filter_map(|name| self.fake.image_of(name)).collect()
    }

    /// Swaps to `number` (a copy of `from` with its own image) with a fake proxy routing
    /// `from`'s web instances; returns the outcome and the proxy's route after it.
    fn swap_routed(&self, from: &Release, number: u32) -> (Result<Serving>, crate::proxy::Route) {
        let route =
            crate::proxy::Route::new(demo_hosts(), crate::proxy::Target::Up(from.web_upstreams.clone()));
        let (outcome, route, _) = self.swap_through(route, from, number);
        (outcome, route)
    }

    /// Swaps from `from` to `number` with a fake proxy serving the app at `route`; returns the
    /// outcome, the route after it and how many times the proxy reloaded its config.
    fn swap_through(
        &self,
        route: crate::proxy::Route,
        from: &Release,
        number: u32,
    ) -> (Result<Serving>, crate::proxy::Route, usize) {
        use crate::proxy::Proxy;
        use crate::proxy::fake::FakeProxy;
        let mut proxy = FakeProxy::default();
        proxy.set_route(&self.app, route).unwrap();
        let reloads = proxy.reloads.clone();
        reloads.set(0);
        let mut routing = route::Routing::with(&self.app, Box::new(proxy), Duration::ZERO);
        let next = Release { number, image: format!("berth/demo:{number}"), ..from.clone() };
        self.fake.state.borrow_mut().images.insert(next.image.clone());
        let state = self.root.read_app(&self.app).unwrap();
        let specs = specs(self, &state, &next);
        let out = &Reporter::capture();
        let outcome = start_release(
            &self.root,
            &self.fake,
            &mut routing,
            &state,
            &next,
            specs,
            TIMING,
            Replace::Every,
            out,
        );
        let route = routing.proxy().unwrap().table().apps[&self.app].clone();
        (outcome, route, reloads.get())
    }
}

fn demo_hosts() -> Vec<crate::proxy::Domain> {
    vec![crate::proxy::Domain::new("demo.example.com").unwrap()]
}

/// The route the records give once `current` replaced `previous`: its instances serve, each
/// slot pairing one with the previous release's instance.
fn recorded_route(current: &Release, previous: &Release) -> crate::proxy::Route {
    use crate::proxy::{Route, Target};
    let mut route = Route::new(demo_hosts(), Target::Up(current.web_upstreams.clone()));
    route.slots = current.web_upstreams.iter().zip(&previous.web_upstreams).map(|(c, p)| [*c, *p]).collect();
    route
}

const THREE_WEB: [&str; 3] = ["demo.web.1", "demo.web.2", "demo.web.3"];

#[test]
fn a_scaled_redeploy_replaces_one_instance_at_a_time_and_routes_every_new_one() {
    let bed = bed();
    bed.scale("web", 3);
    let first = bed.deploy(&bed.plan(1, run(&["web"]))).unwrap();
    assert_eq!(bed.fake.running(), THREE_WEB);
    assert_eq!(first.web_upstreams.len(), 3, "every instance is an upstream: {first:?}");
    bed.fake.clear_events();
    let (serving, route) = bed.swap_routed(&first, 2);
    let serving = serving.unwrap();
    assert_eq!(route.target, crate::proxy::Target::Up(serving.upstreams.clone()));
    assert_eq!(serving.upstreams.len(), 3);
    assert!(serving.upstreams.iter().all(|new| !first.web_upstreams.contains(new)), "{serving:?}");
    let mut expected = Vec::new();
    for n in 1..=3 {
        expected.extend([
            format!("rename demo.web.{n} -> demo.web.{n}.retiring"),
            format!("create demo.web.{n}"),
            format!("start demo.web.{n}"),
            format!("stop demo.web.{n}.retiring (7s)"),
        ]);
    }
    expected.extend((1..=3).map(|n| format!("remove demo.web.{n}.retiring")));
    assert_eq!(bed.fake.events(), expected);
    assert_eq!(bed.images(), ["berth/demo:2"; 3]);
}

#[test]
fn a_failure_partway_starts_the_old_instances_again_and_routes_them_as_before() {
    let bed = bed();
    bed.scale("web", 3);
    let first = bed.deploy(&bed.plan(1, run(&["web"]))).unwrap();
    bed.fake.state.borrow_mut().unhealthy_names.insert("demo.web.3".into());
    let (outcome, route) = bed.swap_routed(&first, 2);
    let error = outcome.unwrap_err();
    assert!(error.to_string().contains("the web process is not healthy"), "{error}");
    assert_eq!(bed.fake.running(), THREE_WEB);
    assert_eq!(bed.images(), ["berth/demo:1"; 3]);
    assert_eq!(route.target, crate::proxy::Target::Up(first.web_upstreams.clone()));
    let events = bed.fake.events();
    // The replaced instances come back last replaced first, each before its successor goes.
    let at =
        |event: &str| events.iter().position(|e| e == event).unwrap_or_else(|| panic!("{event}: {events:?}"));
    assert!(at("start demo.web.2.retiring") < at("remove demo.web.2"));
    assert!(at("remove demo.web.2") < at("start demo.web.1.retiring"));
    assert!(at("start demo.web.1.retiring") < at("remove demo.web.1"));
    assert!(bed.fake.state.borrow().containers.keys().all(|name| !name.ends_with("retiring")));
}

#[test]
fn recover_puts_every_instance_of_the_recorded_release_back() {
    let bed = bed();
    bed.scale("web", 3);
    bed.deploy(&bed.plan(1, run(&["web"]))).unwrap();
    // A crash mid-rolling: instance 1 replaced (its old one stopped), 2 starting, 3 untouched.
    let release = new_release_record(&bed, 2);
    let state = bed.root.read_app(&bed.app).unwrap();
    let specs = super::specs::process_specs(&bed.root, &bed.app, &state, &release, &BTreeMap::new()).unwrap();
    for spec in &specs[..2] {
        let name = &spec.spec.name;
        bed.fake.rename_container(name, &format!("{name}.retiring")).unwrap();
        bed.fake.create_container(&spec.spec).unwrap();
        bed.fake.start_container(name).unwrap();
    }
    bed.fake.stop("demo.web.1.retiring", TIMING.stop_timeout).unwrap();
    recover(&bed.fake, &bed.app, Some(1), TIMING.stop_timeout, &Reporter::capture()).unwrap();
    assert_eq!(bed.fake.running(), THREE_WEB);
    assert_eq!(bed.images(), ["berth/demo:1"; 3]);
    assert_eq!(bed.fake.state.borrow().containers.len(), 3);
}

#[test]
fn ps_scale_starts_and_stops_only_the_instances_the_count_changes_and_zero_keeps_the_process() {
    let bed = bed();
    bed.deploy(&bed.plan(1, run(&["web", "worker"]))).unwrap();
    bed.scale("web", 3);
    bed.fake.clear_events();
    let serving = rescale(&bed.root, &bed.fake, &bed.app, TIMING, &Reporter::capture()).unwrap();
    assert_eq!(bed.fake.running(), ["demo.web.1", "demo.web.2", "demo.web.3", "demo.worker.1"]);
    assert_eq!(serving.upstreams.len(), 3);
    let events = bed.fake.events();
    assert!(!events.iter().any(|e| e.contains("demo.web.1") || e.contains("worker")), "kept: {events:?}");
    let releases = bed.root.read_releases(&bed.app).unwrap();
    assert_eq!(releases.get(1).unwrap().web_upstreams, serving.upstreams, "the route reads them");

    bed.scale("web", 1);
    bed.scale("worker", 0);
    bed.fake.clear_events();
    rescale(&bed.root, &bed.fake, &bed.app, TIMING, &Reporter::capture()).unwrap();
    assert_eq!(bed.fake.running(), ["demo.web.1"]);
    assert_eq!(
        bed.fake.events(),
        [
            "stop demo.web.2 (7s)",
            "remove demo.web.2",
            "stop demo.web.3 (7s)",
            "remove demo.web.3",
            "stop demo.worker.1 (7s)",
            "remove demo.worker.1"
        ]
    );
    // Scaled to 0, the worker is still a process of the release and comes back at its count.
    bed.scale("worker", 2);
    rescale(&bed.root, &bed.fake, &bed.app, TIMING, &Reporter::capture()).unwrap();
    assert_eq!(bed.fake.running(), ["demo.web.1", "demo.worker.1", "demo.worker.2"]);
}

#[test]
fn a_push_keeps_the_admins_scale_over_app_toml() {
    let bed = bed();
    bed.scale("web", 2);
    let declared = RunConfig { scale: [("web".to_string(), 3)].into(), ..run(&["web"]) };
    bed.deploy(&bed.plan(1, declared.clone())).unwrap();
    assert_eq!(bed.fake.running(), ["demo.web.1", "demo.web.2"]);
    bed.deploy(&bed.plan(2, declared)).unwrap();
    assert_eq!(bed.images(), ["berth/demo:2"; 2]);
}

#[test]
fn a_scaled_rolling_redeploy_between_the_slots_reloads_nothing_nor_does_its_undo() {
    let bed = bed();
    bed.scale("web", 3);
    let first = bed.deploy(&bed.plan(1, run(&["web"]))).unwrap();
    let (serving, _, reloads) = bed.swap_through(recorded_route(&first, &first), &first, 2);
    assert_eq!(reloads, 3, "new addresses: one reload per instance");
    let second = Release { number: 2, web_upstreams: serving.unwrap().upstreams, ..first.clone() };
    let (serving, route, reloads) = bed.swap_through(recorded_route(&second, &first), &second, 3);
    assert_eq!(reloads, 0, "{route:?}");
    let third = Release { number: 3, web_upstreams: serving.unwrap().upstreams, ..first.clone() };
    assert_eq!(third.web_upstreams, first.web_upstreams, "each instance starts at its slot's other address");
    assert_eq!(route.sets().len(), 6, "{route:?}");
    bed.fake.state.borrow_mut().unhealthy_names.insert("demo.web.3".into());
    let (outcome, route, reloads) = bed.swap_through(recorded_route(&third, &second), &third, 4);
    assert!(outcome.is_err());
    assert_eq!(reloads, 0, "an undo partway walks the ladder back: {route:?}");
    assert_eq!(route.target, crate::proxy::Target::Up(third.web_upstreams.clone()));
}
