//! Storage before containers: every directory and volume a release mounts exists and belongs to
//! the user that writes it, and every mount is still allowed (grants, the mount-source rule)
//! at the moment containers are created with it.

use std::collections::{BTreeMap, HashMap};

use super::specs::labels;
use super::{DeployError, Result};
use crate::engine::{ContainerSpec, EngineMount, MountKind};
use crate::hostfs::{self, HostDir, HostFsError};
use crate::names::{AppName, EntryName};
use crate::output::Reporter;
use crate::scheduler::Scheduler;
use crate::state::Root;
use crate::storage::binds::{self, Bind};
use crate::storage::host_path;
use crate::storage::{Attachment, Chown, Entry, EntryBacking, Origin, Source, app_volume_name};

/// A volume's driver and options, by the app volume's name in `app.toml`.
pub type VolumeSpecs = HashMap<String, (Option<String>, HashMap<String, String>)>;

/// What berth creates for a release is made with, beyond its mounts: the owner of what has no
/// `--volume-chown` of its own (`[app].user`), and the drivers of app volumes (`None` for a
/// restart or a one-off run: a missing app volume is made with the local driver).
#[derive(Debug, Clone, Copy, Default)]
pub struct StorageSpec<'a> {
    pub owner: Option<(u32, u32)>,
    pub volumes: Option<&'a VolumeSpecs>,
}

impl StorageSpec<'_> {
    pub fn owned_by(owner: Option<(u32, u32)>) -> Self {
        StorageSpec { owner, volumes: None }
    }
}

/// What the helper container must give away: (kind, dir or volume, owner).
type ViaHelper = Vec<(MountKind, String, (u32, u32))>;

/// Makes sure every directory and volume the app's mounts need exists, owned by the user that
/// will write it, before any container starts, so the engine never creates a root-owned
/// directory on its own. Ownership is given directly when berth may (root), else through a
/// short-lived root container of berth's helper image.
pub fn ensure_storage(
    root: &Root,
    scheduler: &dyn Scheduler,
    app: &AppName,
    mounts: &[Attachment],
    entries: &BTreeMap<EntryName, Entry>,
    spec: StorageSpec<'_>,
    out: &Reporter,
) -> Result<()> {
    let StorageSpec { owner: app_owner, volumes } = spec;
    let mut via_helper = ViaHelper::new();
    for attachment in mounts {
        // A read-only attachment's data is never rewritten, whatever `--volume-chown` says.
        let chown = attachment
            .volume_chown
            .and_then(Chown::uid)
            .filter(|_| !attachment.readonly)
            .map(|uid| (uid, uid));
        match &attachment.source {
            Source::AppDir(rel) => {
                // The app's root and the parents of `./a/b` stay berth's, so a later push can
                // still add directories; only the mounted directory is given away.
                let app_dir = root.app_storage_dir(app);
                root.make_data_root()?;
                crate::state::make_dir(&app_dir)?;
                let dir = hostfs::ensure_dir_beneath(&app_dir, rel)?;
                give_to(&mut via_helper, &dir, chown.or(app_owner))?;
                out.note(format!("Directory {} ready", app_dir.join(rel).display()));
            }
            Source::AppVolume(name) => {
                let volume = app_volume_name(app, name);
                let (driver, options) =
                    volumes.and_then(|specs| specs.get(name)).cloned().unwrap_or_default();
                if scheduler.ensure_app_volume(&volume, app.as_str(), driver.as_deref(), &options)?
                    && let Some(owner) = chown.or(app_owner)
                {
                    via_helper.push((MountKind::Volume, volume.clone(), owner));
                }
                out.note(format!("Volume {volume} ready"));
            }
            Source::Entry(name) => {
                let entry = entries.get(name).ok_or_else(|| DeployError::MissingEntry(name.clone()))?;
                if let EntryBacking::Dir(base) = &entry.host_path {
                    hostfs::ensure_dir(base)?;
                    let dir = match &attachment.subpath {
                        Some(sub) => hostfs::ensure_dir_beneath(base, std::path::Path::new(sub))?,
                        None => HostDir::open(base)?,
                    };
                    give_to(&mut via_helper, &dir, chown)?;
                }
            }
            Source::HostPath(path) => host_path::check_at_start(path, attachment.made_by)?,
            Source::Volume(name) => scheduler.require_volume(name)?,
        }
    }
    chown_via_helper(scheduler, app, &via_helper)
}

/// Gives a directory to its owner, or queues it for the helper when berth may not.
fn give_to(via_helper: &mut ViaHelper, dir: &HostDir, owner: Option<(u32, u32)>) -> Result<()> {
    let Some((uid, gid)) = owner else { return Ok(()) };
    match dir.chown(uid, gid) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            via_helper.push((MountKind::Bind, dir.path.display().to_string(), (uid, gid)));
            Ok(())
        }
        Err(e) => {
            Err(HostFsError::Io { action: "change the owner of", path: dir.path.clone(), source: e }.into())
        }
    }
}

/// Gives directories and new volumes to their users from a root container of berth's own
/// helper image (never the pushed one): a fresh volume belongs to root, and a berth that is
/// not root cannot chown a directory. Each directory is mounted alone.
fn chown_via_helper(scheduler: &dyn Scheduler, app: &AppName, targets: &ViaHelper) -> Result<()> {
    if targets.is_empty() {
        return Ok(());
    }
    let image = scheduler.helper_image()?;
    let mut owners: Vec<(u32, u32)> = targets.iter().map(|t| t.2).collect();
    owners.sort_unstable();
    owners.dedup();
    for (uid, gid) in owners {
        let mounts: Vec<EngineMount> = targets
            .iter()
            .filter(|t| t.2 == (uid, gid))
            .enumerate()
            .map(|(i, (kind, source, _))| EngineMount {
                kind: *kind,
                source: source.clone(),
                target: format!("/berth-chown-{i}"),
                read_only: false,
                options: Vec::new(),
            })
            .collect();
        let mut cmd = vec![format!("{uid}:{gid}")];
        cmd.extend(mounts.iter().map(|m| m.target.clone()));
        let name = format!("{app}.chown.{}", std::process::id());
        let spec = ContainerSpec {
            name: name.clone(),
            image: image.clone(),
            cmd: Some(cmd),
            user: Some("0:0".into()),
            options: helper_options()?,
            labels: labels(app, "chown"),
            mounts,
            ..ContainerSpec::default()
        };
        scheduler.remove_container(&name)?;
        scheduler.create_container(&spec)?;
        let mut output = String::new();
        let status = scheduler.run_attached(&name, &mut |_, text| output.push_str(text));
        scheduler.remove_container(&name)?;
        match status? {
            0 => {}
            status => {
                let output = output.trim().to_string();
                return Err(DeployError::Chown { uid, gid, image, status, output });
            }
        }
    }
    Ok(())
}

/// The helper reaches nothing but its mounts: no network, and of root's powers only those
/// changing owners needs.
fn helper_options() -> Result<crate::docker_options::RunOptions> {
    let options =
        ["--network none", "--cap-drop ALL", "--cap-add CHOWN", "--cap-add FOWNER", "--cap-add DAC_OVERRIDE"];
    Ok(crate::docker_options::RunOptions::parse(&options.map(String::from))?)
}

/// Checks the mounts containers of `release` are about to be created with, since the admin may
/// have changed the server since they were checked: the repo's host paths and external volumes
/// against today's grants, and every bind source against the mount-source rule (with the app's
/// current mounts, whose containers may still run).
pub fn check_mounts(
    root: &Root,
    app: &AppName,
    release: u32,
    mounts: &[Attachment],
    entries: &BTreeMap<EntryName, Entry>,
) -> Result<()> {
    let grants = root.grants_of(app)?;
    let policy = grants.policy();
    if let Some(mount) = mounts.iter().find(|m| m.made_by == Origin::Repo && !policy.allows(&m.source)) {
        let (what, grant) = match &mount.source {
            Source::HostPath(path) => ("the host path", path.display().to_string()),
            Source::Volume(name) => ("the external volume", name.clone()),
            other => ("the source", other.to_string()),
        };
        return Err(DeployError::NoLongerAllowed {
            app: app.clone(),
            release,
            what: format!("{what} {grant}"),
            container_path: mount.container_path.clone(),
            grant,
        });
    }
    check_binds(root, app, mounts, entries)
}

/// The mount-source rule for an app about to mount `mounts`, with every other app's mounts and
/// the app's recorded ones (whose containers may still run).
pub fn check_binds(
    root: &Root,
    app: &AppName,
    mounts: &[Attachment],
    entries: &BTreeMap<EntryName, Entry>,
) -> Result<()> {
    let app_dir = root.app_storage_dir(app);
    let mut binds = root.other_apps_binds(app, entries)?;
    binds.extend(Bind::all(app, &app_dir, &root.read_app(app)?.mounts, entries));
    binds.extend(Bind::all(app, &app_dir, mounts, entries));
    Ok(binds::check(&binds, app)?)
}
