//! What berth asks of a swarm, typed: a long-running service (image by digest, replicas, env,
//! labels, restart policy, structured mounts, placement, update order, health check) and a
//! one-off job pinned to a node, each turned into the engine's `ServiceSpec` (API 1.41).
//! Pure: no engine here, so every rule is unit-tested.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::time::Duration;

use bollard::models::{
    EndpointPortConfig, EndpointPortConfigProtocolEnum, EndpointPortConfigPublishModeEnum, EndpointSpec,
    HealthConfig, Mount, MountTmpfsOptions, MountType, MountVolumeOptions, MountVolumeOptionsDriverConfig,
    ServiceSpec, ServiceSpecMode, ServiceSpecModeReplicated, ServiceSpecModeReplicatedJob,
    ServiceSpecRollbackConfig, ServiceSpecRollbackConfigFailureActionEnum,
    ServiceSpecRollbackConfigOrderEnum, ServiceSpecUpdateConfig, ServiceSpecUpdateConfigFailureActionEnum,
    ServiceSpecUpdateConfigOrderEnum, TaskSpec, TaskSpecContainerSpec, TaskSpecPlacement,
    TaskSpecRestartPolicy, TaskSpecRestartPolicyConditionEnum,
};

use super::SwarmError;

/// An image as every node pulls it: `<registry>/<repository>@sha256:<hex>`, never a tag, so
/// all tasks of a release run the same bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageDigest {
    repository: String,
    digest: String,
}

impl ImageDigest {
    /// Parses `<repository>@sha256:<64 lowercase hex>`.
    pub fn parse(reference: &str) -> Result<ImageDigest, SwarmError> {
        let bad = || SwarmError::BadDigest(reference.to_string());
        let (repository, digest) = reference.rsplit_once('@').ok_or_else(bad)?;
        let hex = digest.strip_prefix("sha256:").ok_or_else(bad)?;
        let hex_ok = hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if repository.is_empty() || repository.contains(char::is_whitespace) || !hex_ok {
            return Err(bad());
        }
        Ok(ImageDigest { repository: repository.to_string(), digest: digest.to_string() })
    }

    /// `sha256:<hex>`.
    pub fn digest(&self) -> &str {
        &self.digest
    }
}

impl fmt::Display for ImageDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.repository, self.digest)
    }
}

/// The registry every node pulls from, `<host>:<port>` (`[swarm] registry` in berth.toml).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registry(String);

impl Registry {
    pub fn parse(address: &str) -> Result<Registry, SwarmError> {
        let bad = || SwarmError::BadRegistry(address.to_string());
        let (host, port) = address.rsplit_once(':').ok_or_else(bad)?;
        let host_ok =
            !host.is_empty() && host.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
        if !host_ok || port.parse::<u16>().map_or(true, |p| p == 0) {
            return Err(bad());
        }
        Ok(Registry(address.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A swarm node's hostname, safe inside a `node.hostname==<name>` constraint.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeName(String);

impl NodeName {
    pub fn new(name: &str) -> Result<NodeName, SwarmError> {
        let ok = !name.is_empty()
            && name.len() <= 253
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_');
        if ok { Ok(NodeName(name.to_string())) } else { Err(SwarmError::BadNodeName(name.to_string())) }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NodeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One mount of a task, structured (`--mount` semantics): the engine on whichever node runs
/// the task makes it there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SwarmMount {
    /// A host path, which exists only on the node that has it: the service must be pinned.
    Bind { source: String, target: String, read_only: bool },
    /// A named volume. With a driver, every node creates the volume from these options the
    /// first time a task there mounts it (`volume-driver`, `volume-opt`).
    Volume { source: String, target: String, read_only: bool, no_copy: bool, driver: Option<VolumeDriver> },
    /// Memory-backed scratch space; nothing in it outlives the task.
    Tmpfs { target: String, size_bytes: Option<u64> },
}

/// A volume driver and its options (`driver_opts` in `app.toml`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeDriver {
    pub name: String,
    pub options: BTreeMap<String, String>,
}

/// How a rolling update replaces a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateOrder {
    /// The new task starts (and must become healthy) before the old one stops: no gap, but two
    /// tasks run at once for a moment.
    StartFirst,
    /// The old task stops before the new one starts: never two writers (`exclusive` mounts).
    StopFirst,
}

/// When the engine restarts a task that exited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartCondition {
    Never,
    OnFailure,
    Always,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestartPolicy {
    pub condition: RestartCondition,
    /// `None`: no limit.
    pub max_attempts: Option<u32>,
    pub delay: Duration,
}

/// A health check run inside the task, in exec form (`CMD`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    pub command: Vec<String>,
    pub interval: Duration,
    pub timeout: Duration,
    pub retries: u32,
    pub start_period: Duration,
}

/// A long-running process type of an app, as one replicated service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceDef {
    pub name: String,
    pub image: ImageDigest,
    /// Replaces the image's CMD when set.
    pub command: Option<Vec<String>>,
    pub env: BTreeMap<String, String>,
    /// On the service and on each task's container.
    pub labels: BTreeMap<String, String>,
    pub user: Option<String>,
    pub replicas: u32,
    pub mounts: Vec<SwarmMount>,
    /// The one node the tasks may run on (their data lives there).
    pub pinned_to: Option<NodeName>,
    /// A container port each task publishes on its node, at a port the engine picks per task
    /// (host mode: no routing mesh, so two tasks on one node never clash).
    pub publish: Option<u16>,
    /// The node port it is published at instead: an exclusive web task takes its
    /// predecessor's, so the proxy can hold requests for it across the stop-first update.
    pub publish_at: Option<u16>,
    pub update_order: UpdateOrder,
    pub health: Option<HealthCheck>,
    pub restart: RestartPolicy,
    /// Between SIGTERM and SIGKILL when a task stops.
    pub stop_grace: Duration,
    /// How long after each replaced task the engine watches it before the next one, counting
    /// its failure as the update's.
    pub monitor: Duration,
}

/// A one-off task: runs once to completion on one node (chowning an app directory there).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobDef {
    pub name: String,
    pub image: String,
    pub command: Vec<String>,
    pub user: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub mounts: Vec<SwarmMount>,
    pub node: NodeName,
}

/// Names the engine accepts for a service: it becomes part of task and container names.
fn check_service_name(name: &str) -> Result<(), SwarmError> {
    let mut bytes = name.bytes();
    let ok = name.len() <= 63
        && bytes.next().is_some_and(|b| b.is_ascii_alphanumeric())
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok { Ok(()) } else { Err(SwarmError::BadServiceName(name.to_string())) }
}

fn nanos(duration: Duration) -> i64 {
    i64::try_from(duration.as_nanos()).unwrap_or(i64::MAX)
}

fn hash_map(map: &BTreeMap<String, String>) -> HashMap<String, String> {
    map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

fn engine_mount(mount: &SwarmMount) -> Mount {
    match mount {
        SwarmMount::Bind { source, target, read_only } => Mount {
            typ: Some(MountType::BIND),
            source: Some(source.clone()),
            target: Some(target.clone()),
            read_only: Some(*read_only),
            ..Default::default()
        },
        SwarmMount::Volume { source, target, read_only, no_copy, driver } => Mount {
            typ: Some(MountType::VOLUME),
            source: Some(source.clone()),
            target: Some(target.clone()),
            read_only: Some(*read_only),
            volume_options: Some(MountVolumeOptions {
                no_copy: no_copy.then_some(true),
                driver_config: driver.as_ref().map(|d| MountVolumeOptionsDriverConfig {
                    name: Some(d.name.clone()),
                    options: Some(hash_map(&d.options)),
                }),
                ..Default::default()
            }),
            ..Default::default()
        },
        SwarmMount::Tmpfs { target, size_bytes } => Mount {
            typ: Some(MountType::TMPFS),
            target: Some(target.clone()),
            tmpfs_options: size_bytes.map(|size| MountTmpfsOptions {
                size_bytes: Some(i64::try_from(size).unwrap_or(i64::MAX)),
                ..Default::default()
            }),
            ..Default::default()
        },
    }
}

fn placement(node: Option<&NodeName>) -> Option<TaskSpecPlacement> {
    node.map(|node| TaskSpecPlacement {
        constraints: Some(vec![format!("node.hostname=={node}")]),
        ..Default::default()
    })
}

fn restart_policy(policy: &RestartPolicy) -> TaskSpecRestartPolicy {
    TaskSpecRestartPolicy {
        condition: Some(match policy.condition {
            RestartCondition::Never => TaskSpecRestartPolicyConditionEnum::NONE,
            RestartCondition::OnFailure => TaskSpecRestartPolicyConditionEnum::ON_FAILURE,
            RestartCondition::Always => TaskSpecRestartPolicyConditionEnum::ANY,
        }),
        max_attempts: Some(policy.max_attempts.map_or(0, i64::from)),
        delay: Some(nanos(policy.delay)),
        ..Default::default()
    }
}

fn health_config(check: &HealthCheck) -> HealthConfig {
    let mut test = vec!["CMD".to_string()];
    test.extend(check.command.iter().cloned());
    HealthConfig {
        test: Some(test),
        interval: Some(nanos(check.interval)),
        timeout: Some(nanos(check.timeout)),
        retries: Some(i64::from(check.retries)),
        start_period: Some(nanos(check.start_period)),
        ..Default::default()
    }
}

/// One task at a time, watched for `monitor`; a failure rolls the whole service back, and the
/// rollback replaces tasks in the same order (a stop-first app must not get two writers while
/// it is rolled back either).
fn update_configs(def: &ServiceDef) -> (ServiceSpecUpdateConfig, ServiceSpecRollbackConfig) {
    let (update_order, rollback_order) = match def.update_order {
        UpdateOrder::StartFirst => {
            (ServiceSpecUpdateConfigOrderEnum::START_FIRST, ServiceSpecRollbackConfigOrderEnum::START_FIRST)
        }
        UpdateOrder::StopFirst => {
            (ServiceSpecUpdateConfigOrderEnum::STOP_FIRST, ServiceSpecRollbackConfigOrderEnum::STOP_FIRST)
        }
    };
    let update = ServiceSpecUpdateConfig {
        parallelism: Some(1),
        delay: Some(0),
        failure_action: Some(ServiceSpecUpdateConfigFailureActionEnum::ROLLBACK),
        monitor: Some(nanos(def.monitor)),
        max_failure_ratio: Some(0.0),
        order: Some(update_order),
    };
    let rollback = ServiceSpecRollbackConfig {
        parallelism: Some(1),
        delay: Some(0),
        failure_action: Some(ServiceSpecRollbackConfigFailureActionEnum::PAUSE),
        monitor: Some(nanos(def.monitor)),
        max_failure_ratio: Some(0.0),
        order: Some(rollback_order),
    };
    (update, rollback)
}

fn env_list(env: &BTreeMap<String, String>) -> Vec<String> {
    env.iter().map(|(k, v)| format!("{k}={v}")).collect()
}

/// The engine's spec of a long-running service.
pub fn service_spec(def: &ServiceDef) -> Result<ServiceSpec, SwarmError> {
    check_service_name(&def.name)?;
    let (update, rollback) = update_configs(def);
    Ok(ServiceSpec {
        name: Some(def.name.clone()),
        labels: Some(hash_map(&def.labels)),
        task_template: Some(TaskSpec {
            container_spec: Some(TaskSpecContainerSpec {
                image: Some(def.image.to_string()),
                labels: Some(hash_map(&def.labels)),
                command: def.command.clone(),
                env: Some(env_list(&def.env)),
                user: def.user.clone(),
                mounts: Some(def.mounts.iter().map(engine_mount).collect()),
                stop_grace_period: Some(nanos(def.stop_grace)),
                health_check: def.health.as_ref().map(health_config),
                ..Default::default()
            }),
            restart_policy: Some(restart_policy(&def.restart)),
            placement: placement(def.pinned_to.as_ref()),
            ..Default::default()
        }),
        mode: Some(ServiceSpecMode {
            replicated: Some(ServiceSpecModeReplicated { replicas: Some(i64::from(def.replicas)) }),
            ..Default::default()
        }),
        update_config: Some(update),
        rollback_config: Some(rollback),
        endpoint_spec: def.publish.map(|port| host_port(port, def.publish_at)),
        ..Default::default()
    })
}

/// Publishes `port` of each task on its node, at `at` or else a port the engine chooses.
fn host_port(port: u16, at: Option<u16>) -> EndpointSpec {
    EndpointSpec {
        ports: Some(vec![EndpointPortConfig {
            protocol: Some(EndpointPortConfigProtocolEnum::TCP),
            target_port: Some(i64::from(port)),
            published_port: at.map(i64::from),
            publish_mode: Some(EndpointPortConfigPublishModeEnum::HOST),
            ..Default::default()
        }]),
        ..Default::default()
    }
}

/// The engine's spec of a one-off job (API 1.41 `ReplicatedJob`): one completion, never
/// restarted, on the named node only.
pub fn job_spec(def: &JobDef) -> Result<ServiceSpec, SwarmError> {
    check_service_name(&def.name)?;
    Ok(ServiceSpec {
        name: Some(def.name.clone()),
        labels: Some(hash_map(&def.labels)),
        task_template: Some(TaskSpec {
            container_spec: Some(TaskSpecContainerSpec {
                image: Some(def.image.clone()),
                labels: Some(hash_map(&def.labels)),
                command: Some(def.command.clone()),
                user: def.user.clone(),
                mounts: Some(def.mounts.iter().map(engine_mount).collect()),
                ..Default::default()
            }),
            restart_policy: Some(restart_policy(&RestartPolicy {
                condition: RestartCondition::Never,
                max_attempts: None,
                delay: Duration::ZERO,
            })),
            placement: placement(Some(&def.node)),
            ..Default::default()
        }),
        mode: Some(ServiceSpecMode {
            replicated_job: Some(ServiceSpecModeReplicatedJob {
                max_concurrent: Some(1),
                total_completions: Some(1),
            }),
            ..Default::default()
        }),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "sha256:272f767ea72d16fd252dc8fea2f56bc49470fff2705f7769f32cdc15811b0509";

    fn def() -> ServiceDef {
        ServiceDef {
            name: "shop-web".into(),
            image: ImageDigest::parse(&format!("127.0.0.1:5000/berth/shop@{DIGEST}")).unwrap(),
            command: Some(vec!["/app/serve".into()]),
            env: BTreeMap::from([("PORT".into(), "5000".into()), ("B".into(), "x=y".into())]),
            labels: BTreeMap::from([("berth.app".into(), "shop".into())]),
            user: Some("1000:1000".into()),
            replicas: 2,
            mounts: vec![SwarmMount::Volume {
                source: "shop-media".into(),
                target: "/app/media".into(),
                read_only: false,
                no_copy: false,
                driver: Some(VolumeDriver {
                    name: "local".into(),
                    options: BTreeMap::from([
                        ("type".into(), "nfs".into()),
                        ("o".into(), "addr=10.0.0.1,rw".into()),
                        ("device".into(), ":/export/media".into()),
                    ]),
                }),
            }],
            pinned_to: None,
            publish: Some(5000),
            publish_at: None,
            update_order: UpdateOrder::StartFirst,
            health: Some(HealthCheck {
                command: vec![
                    "wget".into(),
                    "-q".into(),
                    "-O-".into(),
                    "http://127.0.0.1:5000/health".into(),
                ],
                interval: Duration::from_secs(2),
                timeout: Duration::from_secs(1),
                retries: 3,
                start_period: Duration::from_secs(10),
            }),
            restart: RestartPolicy {
                condition: RestartCondition::Always,
                max_attempts: None,
                delay: Duration::from_secs(1),
            },
            stop_grace: Duration::from_secs(10),
            monitor: Duration::from_secs(5),
        }
    }

    fn json(spec: &ServiceSpec) -> String {
        // Through a Value: its maps are sorted, so the snapshot does not depend on hashing.
        serde_json::to_string_pretty(&serde_json::to_value(spec).unwrap()).unwrap()
    }

    #[test]
    fn a_start_first_service_with_a_shared_volume() {
        insta::assert_snapshot!(json(&service_spec(&def()).unwrap()), @r#"
        {
          "EndpointSpec": {
            "Ports": [
              {
                "Protocol": "tcp",
                "PublishMode": "host",
                "TargetPort": 5000
              }
            ]
          },
          "Labels": {
            "berth.app": "shop"
          },
          "Mode": {
            "Replicated": {
              "Replicas": 2
            }
          },
          "Name": "shop-web",
          "RollbackConfig": {
            "Delay": 0,
            "FailureAction": "pause",
            "MaxFailureRatio": 0.0,
            "Monitor": 5000000000,
            "Order": "start-first",
            "Parallelism": 1
          },
          "TaskTemplate": {
            "ContainerSpec": {
              "Command": [
                "/app/serve"
              ],
              "Env": [
                "B=x=y",
                "PORT=5000"
              ],
              "HealthCheck": {
                "Interval": 2000000000,
                "Retries": 3,
                "StartPeriod": 10000000000,
                "Test": [
                  "CMD",
                  "wget",
                  "-q",
                  "-O-",
                  "http://127.0.0.1:5000/health"
                ],
                "Timeout": 1000000000
              },
              "Image": "127.0.0.1:5000/berth/shop@sha256:272f767ea72d16fd252dc8fea2f56bc49470fff2705f7769f32cdc15811b0509",
              "Labels": {
                "berth.app": "shop"
              },
              "Mounts": [
                {
                  "ReadOnly": false,
                  "Source": "shop-media",
                  "Target": "/app/media",
                  "Type": "volume",
                  "VolumeOptions": {
                    "DriverConfig": {
                      "Name": "local",
                      "Options": {
                        "device": ":/export/media",
                        "o": "addr=10.0.0.1,rw",
                        "type": "nfs"
                      }
                    }
                  }
                }
              ],
              "StopGracePeriod": 10000000000,
              "User": "1000:1000"
            },
            "RestartPolicy": {
              "Condition": "any",
              "Delay": 1000000000,
              "MaxAttempts": 0
            }
          },
          "UpdateConfig": {
            "Delay": 0,
            "FailureAction": "rollback",
            "MaxFailureRatio": 0.0,
            "Monitor": 5000000000,
            "Order": "start-first",
            "Parallelism": 1
          }
        }
        "#);
    }

    #[test]
    fn a_pinned_stop_first_service_rolls_back_stop_first_too() {
        let mut def = def();
        def.pinned_to = Some(NodeName::new("berth-sw1").unwrap());
        def.update_order = UpdateOrder::StopFirst;
        def.mounts = vec![SwarmMount::Bind {
            source: "/var/lib/berth/apps/shop/data".into(),
            target: "/data".into(),
            read_only: true,
        }];
        let spec = service_spec(&def).unwrap();
        let task = spec.task_template.as_ref().unwrap();
        assert_eq!(
            task.placement.as_ref().unwrap().constraints,
            Some(vec!["node.hostname==berth-sw1".to_string()])
        );
        let update = spec.update_config.as_ref().unwrap();
        assert_eq!(update.order, Some(ServiceSpecUpdateConfigOrderEnum::STOP_FIRST));
        assert_eq!(update.failure_action, Some(ServiceSpecUpdateConfigFailureActionEnum::ROLLBACK));
        assert_eq!(
            spec.rollback_config.as_ref().unwrap().order,
            Some(ServiceSpecRollbackConfigOrderEnum::STOP_FIRST)
        );
        let mounts = serde_json::to_value(&task.container_spec.as_ref().unwrap().mounts).unwrap();
        insta::assert_snapshot!(mounts, @r#"[{"ReadOnly":true,"Source":"/var/lib/berth/apps/shop/data","Target":"/data","Type":"bind"}]"#);
    }

    #[test]
    fn a_job_runs_once_on_its_node_and_is_never_restarted() {
        let job = JobDef {
            name: "shop-chown-1".into(),
            image: "berth-base:latest".into(),
            command: vec!["chown".into(), "1000:1000".into(), "/data".into()],
            user: None,
            labels: BTreeMap::new(),
            mounts: vec![SwarmMount::Tmpfs { target: "/scratch".into(), size_bytes: Some(1 << 20) }],
            node: NodeName::new("berth-sw2").unwrap(),
        };
        let spec = serde_json::to_value(job_spec(&job).unwrap()).unwrap();
        insta::assert_snapshot!(spec["Mode"], @r#"{"ReplicatedJob":{"MaxConcurrent":1,"TotalCompletions":1}}"#);
        insta::assert_snapshot!(spec["TaskTemplate"]["RestartPolicy"], @r#"{"Condition":"none","Delay":0,"MaxAttempts":0}"#);
        insta::assert_snapshot!(spec["TaskTemplate"]["Placement"], @r#"{"Constraints":["node.hostname==berth-sw2"]}"#);
        insta::assert_snapshot!(spec["TaskTemplate"]["ContainerSpec"]["Mounts"], @r#"[{"Target":"/scratch","TmpfsOptions":{"SizeBytes":1048576},"Type":"tmpfs"}]"#);
    }

    #[test]
    fn image_references_must_carry_a_sha256_digest() {
        assert_eq!(
            ImageDigest::parse(&format!("127.0.0.1:5000/a@{DIGEST}")).unwrap().to_string(),
            format!("127.0.0.1:5000/a@{DIGEST}")
        );
        for bad in [
            "127.0.0.1:5000/a:latest",
            "127.0.0.1:5000/a@sha256:abc",
            &format!("@{DIGEST}"),
            &format!("a@{}", DIGEST.to_uppercase()),
            &format!("a b@{DIGEST}"),
        ] {
            assert!(matches!(ImageDigest::parse(bad), Err(SwarmError::BadDigest(_))), "{bad}");
        }
    }

    #[test]
    fn a_registry_is_host_and_port() {
        assert_eq!(Registry::parse("127.0.0.1:5000").unwrap().as_str(), "127.0.0.1:5000");
        assert!(Registry::parse("registry.internal:443").is_ok());
        for bad in ["127.0.0.1", ":5000", "host:0", "host:99999", "http://host:5000", "a/b:5000"] {
            assert!(matches!(Registry::parse(bad), Err(SwarmError::BadRegistry(_))), "{bad}");
        }
    }

    #[test]
    fn names_that_could_bend_a_constraint_or_a_task_name_are_refused() {
        for bad in ["", "a==b", "a,b", "node 1", "x!=y"] {
            assert!(matches!(NodeName::new(bad), Err(SwarmError::BadNodeName(_))), "{bad:?}");
        }
        let mut def = def();
        for bad in ["", "-web", "shop.web", "a/b", &"x".repeat(64)] {
            def.name = bad.to_string();
            assert!(matches!(service_spec(&def), Err(SwarmError::BadServiceName(_))), "{bad:?}");
        }
    }
}
