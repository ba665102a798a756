//! Reading a service's rollout: from the engine's update status and the service's tasks, is
//! the service serving what was asked, still on its way, rolled back (and why), or unable to
//! place its tasks anywhere. Pure, so each verdict is unit-tested.

use bollard::models::{ServiceUpdateStatusStateEnum, TaskSpec, TaskState};

/// One task of a service, as berth reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskFacts {
    pub id: String,
    pub slot: Option<i64>,
    pub node_id: Option<String>,
    /// The node's hostname, when the task was assigned to one.
    pub node: Option<String>,
    pub state: TaskState,
    pub desired: TaskState,
    /// Why the task failed or waits (`no suitable node ...`, `task: non-zero exit (1)`).
    pub error: Option<String>,
    pub message: Option<String>,
    pub container_id: Option<String>,
    pub exit_code: Option<i64>,
    /// The ports the task's node publishes for it (host mode).
    pub published: Vec<u16>,
    /// The engine's version of the task object: later changes have higher ones.
    pub version: u64,
    /// Runs the service's current spec (a task of the spec before an update does not).
    pub current: bool,
}

/// Where a service's rollout stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// As many tasks as asked run the current spec.
    Converged,
    /// Still on its way: what it waits for.
    Waiting(String),
    /// The engine rolled the update back: why.
    RolledBack(String),
    /// The update (or its rollback) is paused by the engine: why.
    Paused(String),
    /// A task the service wants running fits no node.
    Unschedulable(String),
    /// A task of a service never updated (a new one) failed: which, and why. Nothing runs
    /// that could be rolled back to.
    Failed(String),
}

/// Whether a task runs the service's task template: what the engine replaces a task for is a
/// change of its spec, but it reports a task's spec without the stop grace period, the
/// restart policy and the runtime, so the container and its placement are compared.
pub fn runs_template(task: Option<&TaskSpec>, template: Option<&TaskSpec>) -> bool {
    let container = |spec: Option<&TaskSpec>| {
        spec.and_then(|s| s.container_spec.clone()).map(|mut c| {
            c.stop_grace_period = None;
            c
        })
    };
    let placement = |spec: Option<&TaskSpec>| spec.and_then(|s| s.placement.clone());
    container(task) == container(template) && placement(task) == placement(template)
}

/// Whether a task in `state` may still run a container: it has not reached an end state.
pub fn is_alive(state: TaskState) -> bool {
    !matches!(
        state,
        TaskState::COMPLETE
            | TaskState::SHUTDOWN
            | TaskState::FAILED
            | TaskState::REJECTED
            | TaskState::REMOVE
            | TaskState::ORPHANED
    )
}

fn wants_running(task: &TaskFacts) -> bool {
    task.desired == TaskState::RUNNING
}

/// The most recent task that failed, as "task <slot> on <node>: <error>".
fn last_failure(tasks: &[TaskFacts]) -> Option<String> {
    tasks
        .iter()
        .filter(|t| matches!(t.state, TaskState::FAILED | TaskState::REJECTED))
        .max_by_key(|t| t.version)
        .map(|t| {
            let slot = t.slot.map_or_else(String::new, |s| format!(" {s}"));
            let node = t.node.as_deref().map_or_else(String::new, |n| format!(" on {n}"));
            let error = t.error.as_deref().or(t.message.as_deref()).unwrap_or("no reason given");
            format!("task{slot}{node}: {error}")
        })
}

fn with_failure(message: Option<&str>, tasks: &[TaskFacts]) -> String {
    let message = message.unwrap_or("no message from the engine");
    match last_failure(tasks) {
        Some(failure) => format!("{message} (last failure: {failure})"),
        None => message.to_string(),
    }
}

/// The verdict on a service that should run `replicas` tasks, given its update status
/// (`None` before its first update) and every task the engine lists for it.
pub fn judge(
    update: Option<ServiceUpdateStatusStateEnum>,
    message: Option<&str>,
    replicas: u32,
    tasks: &[TaskFacts],
) -> Progress {
    use ServiceUpdateStatusStateEnum as S;
    match update {
        Some(S::ROLLBACK_COMPLETED) => return Progress::RolledBack(with_failure(message, tasks)),
        Some(S::PAUSED | S::ROLLBACK_PAUSED) => return Progress::Paused(with_failure(message, tasks)),
        None => {
            if let Some(failure) = last_failure(tasks) {
                return Progress::Failed(failure);
            }
        }
        _ => {}
    }
    let unplaced = tasks
        .iter()
        .filter(|t| wants_running(t) && t.state == TaskState::PENDING)
        .find_map(|t| t.error.as_deref().filter(|e| e.contains("no suitable node")).map(str::to_string));
    if let Some(error) = unplaced {
        return Progress::Unschedulable(error);
    }
    let running =
        tasks.iter().filter(|t| wants_running(t) && t.current && t.state == TaskState::RUNNING).count();
    // Start-first: while an old task still runs beside its replacement, more than `replicas` do.
    let wanted = tasks.iter().filter(|t| wants_running(t)).count();
    let updating = matches!(update, Some(S::UPDATING | S::ROLLBACK_STARTED));
    if !updating && running == replicas as usize && wanted == replicas as usize {
        return Progress::Converged;
    }
    Progress::Waiting(format!(
        "{running} of {replicas} tasks running{}",
        if updating { ", update in progress" } else { "" }
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ServiceUpdateStatusStateEnum as S;

    fn task(slot: i64, state: TaskState, desired: TaskState, version: u64) -> TaskFacts {
        TaskFacts {
            id: format!("t{slot}-{version}"),
            slot: Some(slot),
            node_id: Some("n1".into()),
            node: Some("berth-sw1".into()),
            state,
            desired,
            error: None,
            message: None,
            container_id: None,
            exit_code: None,
            published: Vec::new(),
            version,
            current: true,
        }
    }

    #[test]
    fn a_new_service_converges_when_all_replicas_run() {
        let starting = [
            task(1, TaskState::RUNNING, TaskState::RUNNING, 5),
            task(2, TaskState::STARTING, TaskState::RUNNING, 6),
        ];
        assert_eq!(judge(None, None, 2, &starting), Progress::Waiting("1 of 2 tasks running".into()));
        let up = [
            task(1, TaskState::RUNNING, TaskState::RUNNING, 5),
            task(2, TaskState::RUNNING, TaskState::RUNNING, 7),
        ];
        assert_eq!(judge(None, None, 2, &up), Progress::Converged);
    }

    #[test]
    fn a_task_runs_its_template_whatever_the_engine_leaves_out_of_its_spec() {
        // As engine 20.10 reports one service's template and one of its tasks.
        let template: TaskSpec = serde_json::from_str(
            r#"{"ContainerSpec":{"Image":"r/a@sha256:1","Args":["sleep","100"],"Env":["A=1"],"Init":false,
            "StopGracePeriod":10000000000,"DNSConfig":{},"Isolation":"default"},"Resources":{"Limits":{},"Reservations":{}},
            "RestartPolicy":{"Condition":"any","Delay":5000000000,"MaxAttempts":0},
            "Placement":{"Platforms":[{"Architecture":"amd64","OS":"linux"}]},"ForceUpdate":0,"Runtime":"container"}"#,
        )
        .unwrap();
        let task: TaskSpec = serde_json::from_str(
            r#"{"ContainerSpec":{"Image":"r/a@sha256:1","Args":["sleep","100"],"Env":["A=1"],"Init":false,
            "DNSConfig":{},"Isolation":"default"},"Resources":{"Limits":{},"Reservations":{}},
            "Placement":{"Platforms":[{"Architecture":"amd64","OS":"linux"}]},"ForceUpdate":0}"#,
        )
        .unwrap();
        assert!(runs_template(Some(&task), Some(&template)));
        let mut changed = template.clone();
        changed.container_spec.as_mut().unwrap().env = Some(vec!["A=2".into()]);
        assert!(!runs_template(Some(&task), Some(&changed)));
    }

    #[test]
    fn tasks_of_the_previous_spec_do_not_count() {
        // Right after an update call the engine has no update status yet, and the old tasks
        // still run.
        let mut old = task(1, TaskState::RUNNING, TaskState::RUNNING, 5);
        old.current = false;
        assert_eq!(judge(None, None, 1, &[old]), Progress::Waiting("0 of 1 tasks running".into()));
    }

    #[test]
    fn a_completed_update_waits_for_old_tasks_to_leave_and_new_ones_to_run() {
        let old_shutting_down = task(1, TaskState::RUNNING, TaskState::SHUTDOWN, 4);
        let new = task(1, TaskState::RUNNING, TaskState::RUNNING, 9);
        assert_eq!(
            judge(Some(S::COMPLETED), None, 1, &[old_shutting_down.clone(), new.clone()]),
            Progress::Converged
        );
        let still_updating = judge(Some(S::UPDATING), None, 1, &[old_shutting_down, new]);
        assert_eq!(still_updating, Progress::Waiting("1 of 1 tasks running, update in progress".into()));
    }

    #[test]
    fn a_rollback_names_the_last_failed_task_and_its_error() {
        let mut older = task(1, TaskState::FAILED, TaskState::SHUTDOWN, 3);
        older.error = Some("older".into());
        let mut failed = task(1, TaskState::FAILED, TaskState::SHUTDOWN, 8);
        failed.error = Some("task: non-zero exit (3)".into());
        let running = task(1, TaskState::RUNNING, TaskState::RUNNING, 9);
        let verdict =
            judge(Some(S::ROLLBACK_COMPLETED), Some("update rolled back"), 1, &[older, failed, running]);
        assert_eq!(
            verdict,
            Progress::RolledBack(
                "update rolled back (last failure: task 1 on berth-sw1: task: non-zero exit (3))".into()
            )
        );
        assert_eq!(
            judge(Some(S::PAUSED), None, 1, &[]),
            Progress::Paused("no message from the engine".into())
        );
    }

    #[test]
    fn a_failed_task_of_a_new_service_fails_it_at_once() {
        let mut failed = task(1, TaskState::FAILED, TaskState::SHUTDOWN, 4);
        failed.error = Some("task: non-zero exit (3)".into());
        let retry = task(1, TaskState::STARTING, TaskState::RUNNING, 5);
        assert_eq!(
            judge(None, None, 1, &[failed.clone(), retry.clone()]),
            Progress::Failed("task 1 on berth-sw1: task: non-zero exit (3)".into())
        );
        assert_eq!(
            judge(Some(S::UPDATING), None, 1, &[failed, retry]),
            Progress::Waiting("0 of 1 tasks running, update in progress".into()),
            "an update's failure is the engine's to roll back"
        );
    }

    #[test]
    fn a_task_that_fits_no_node_is_unschedulable() {
        let mut pending = task(1, TaskState::PENDING, TaskState::RUNNING, 4);
        pending.node = None;
        assert_eq!(
            judge(None, None, 1, &[pending.clone()]),
            Progress::Waiting("0 of 1 tasks running".into())
        );
        pending.error = Some("no suitable node (scheduling constraints not satisfied on 3 nodes)".into());
        assert_eq!(
            judge(Some(S::UPDATING), None, 1, &[pending]),
            Progress::Unschedulable(
                "no suitable node (scheduling constraints not satisfied on 3 nodes)".into()
            )
        );
    }
}
