//! Tearing an app down (`apps:destroy`): its containers stopped (SIGTERM, the serving release's
//! timeout) and removed, its images removed, then its storage — kept unless the admin asked
//! with `--purge-storage` — and last its repo and state, so a failure part way leaves an app
//! that `apps:destroy` can finish.

use super::stop::{stop_and_remove, stop_timeout};
use super::{Result, Timing};
use crate::engine::Engine;
use crate::hostfs;
use crate::names::AppName;
use crate::output::Reporter;
use crate::state::{AppState, Lock, Root};

/// Destroys `app`, whose state is `state`, read under `lock`. The engine is asked before
/// anything is removed, so a purge or a deployed app's teardown never stops half done.
pub fn destroy_app(
    root: &Root,
    app: &AppName,
    state: &AppState,
    purge_storage: bool,
    lock: &Lock,
    out: &Reporter,
) -> Result<()> {
    let engine =
        if purge_storage || state.current_release.is_some() { Some(Engine::connect()?) } else { None };
    out.step(format!("Destroying {app}"));
    if let Some(engine) = &engine {
        // Services first: the swarm would otherwise start their tasks again.
        crate::scheduler::docker_swarm::remove_services(state, app, out)?;
        remove_containers_and_images(root, engine, app, state, out)?;
    }
    match engine.as_ref().filter(|_| purge_storage) {
        Some(engine) => purge(root, engine, app, out)?,
        None => keep_storage(root, app, out),
    }
    hostfs::remove_tree(&root.repo_dir(app))?;
    root.remove_app_state(app, lock)?;
    Ok(())
}

fn remove_containers_and_images(
    root: &Root,
    engine: &Engine,
    app: &AppName,
    state: &AppState,
    out: &Reporter,
) -> Result<()> {
    let releases = root.read_releases(app)?;
    let run = state.current_release.and_then(|n| releases.get(n)).map(|r| r.run.clone()).unwrap_or_default();
    let timeout = stop_timeout(&run, Timing::from_env());
    for container in engine.app_containers(app.as_str())? {
        stop_and_remove(engine, &container, timeout, out)?;
        out.detail(format!("Removed container {container}"));
    }
    for release in releases.releases {
        engine.remove_image(&release.image)?;
    }
    Ok(())
}

/// `--purge-storage`: the app's volumes and storage directory go.
fn purge(root: &Root, engine: &Engine, app: &AppName, out: &Reporter) -> Result<()> {
    for volume in engine.app_volumes(app.as_str())? {
        engine.remove_volume(&volume)?;
        out.detail(format!("Removed volume {volume}"));
    }
    let storage_dir = root.app_storage_dir(app);
    if hostfs::remove_tree(&storage_dir)? {
        out.detail(format!("Removed {}", storage_dir.display()));
    }
    Ok(())
}

fn keep_storage(root: &Root, app: &AppName, out: &Reporter) {
    let storage_dir = root.app_storage_dir(app);
    if storage_dir.exists() {
        out.warn(format!("Preserving storage directory {}", storage_dir.display()));
    }
    out.warn(format!(
        "App volumes ({app}_*) are kept too; `berth apps:destroy {app} --purge-storage` removes them"
    ));
}
