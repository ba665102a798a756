//! Rules between fields (processes named by mounts, build-phase mounts, unique targets) and
//! between `app.toml` and the server (the admin's grants and mounts, the other bind sources).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};

use super::text::{escaped, quoted};
use super::{DeclaredMount, Diagnostic, Manifest, Policy, Server};
use crate::storage::binds::{Bind, HOW_TO_FIX};
use crate::storage::{Attachment, Origin, Phase, Source};

/// Which parts of the manifest decoded cleanly, so rules that depend on them may run without
/// reporting follow-up errors of an earlier one.
#[derive(Debug, Clone, Copy)]
pub(super) struct Known {
    pub processes: bool,
    pub build: bool,
}

impl Known {
    pub const ALL: Known = Known { processes: true, build: true };
}

fn phase_list(phases: &BTreeSet<Phase>) -> String {
    phases.iter().map(|p| p.as_str()).collect::<Vec<_>>().join(", ")
}

/// The rules between a manifest's mounts and its other sections.
pub(super) fn mount_rules(manifest: &Manifest, known: Known) -> Vec<Diagnostic> {
    let mut diagnostics = Vec::new();
    let declared = manifest.process_types();
    for mount in &manifest.mounts {
        if known.processes {
            for process in mount.processes.iter().filter(|p| !declared.contains(p)) {
                let hint = if manifest.processes.is_empty() {
                    format!(
                        "without [processes] the app has one process type, \"web\"; declare {} under \
                         [processes], or remove it here",
                        quoted(process)
                    )
                } else {
                    format!(
                        "declared process types: {}; add {} to [processes], or remove it here",
                        declared.join(", "),
                        quoted(process)
                    )
                };
                diagnostics.push(Diagnostic::new(
                    mount.at.processes,
                    format!("mount names process {}, which app.toml does not declare", quoted(process)),
                    Some(hint),
                ));
            }
        }
        if mount.phases.contains(&Phase::Build) {
            if known.build && manifest.build.command.is_none() {
                diagnostics.push(Diagnostic::new(
                    mount.at.phases,
                    "mount has phase \"build\" but [build] has no `command`",
                    Some(
                        "build-phase mounts only apply to [build].command (docker build cannot mount volumes): \
                         add [build] command = \"...\", or remove \"build\" from `phases`"
                            .to_string(),
                    ),
                ));
            }
            if !mount.processes.is_empty() {
                diagnostics.push(Diagnostic::new(
                    mount.at.processes,
                    "a mount with phase \"build\" cannot be limited to `processes`",
                    Some(
                        "the build command is not a process: split it into a build-phase mount and a mount \
                         for the processes"
                            .to_string(),
                    ),
                ));
            }
        }
    }
    diagnostics.extend(unique_targets(&manifest.mounts));
    diagnostics.extend(scale_rules(manifest, known));
    diagnostics
}

/// `[scale]` names declared process types, and keeps a process with an exclusive mount at one.
fn scale_rules(manifest: &Manifest, known: Known) -> Vec<Diagnostic> {
    let declared = manifest.process_types();
    let mut diagnostics = Vec::new();
    for (process, scale) in &manifest.scale {
        if !declared.contains(process) {
            if known.processes {
                diagnostics.push(Diagnostic::new(
                    scale.at,
                    format!("[scale] names process {}, which app.toml does not declare", quoted(process)),
                    Some(format!("declared process types: {}", declared.join(", "))),
                ));
            }
            continue;
        }
        if let Some(mount) =
            manifest.mounts.iter().find(|m| m.is_exclusive_for(process)).filter(|_| scale.count > 1)
        {
            diagnostics.push(Diagnostic::new(
                scale.at,
                format!(
                    "process {} cannot run {} instances: its mount {} is exclusive (single writer)",
                    quoted(process),
                    scale.count,
                    mount.describe()
                ),
                Some(format!("set [scale] {process} = 1, or remove `exclusive` from the mount")),
            ));
        }
    }
    diagnostics
}

/// Two declared mounts may share a target only in different phases or process types.
fn unique_targets(mounts: &[DeclaredMount]) -> Vec<Diagnostic> {
    let mut by_target: BTreeMap<&str, Vec<&DeclaredMount>> = BTreeMap::new();
    for mount in mounts {
        by_target.entry(&mount.target).or_default().push(mount);
    }
    let mut diagnostics = Vec::new();
    for group in by_target.values() {
        for (index, later) in group.iter().enumerate() {
            let earlier = group.iter().take(index).find(|earlier| {
                !earlier.phases.is_disjoint(&later.phases)
                    && (earlier.processes.is_empty()
                        || later.processes.is_empty()
                        || earlier.processes.iter().any(|p| later.processes.contains(p)))
            });
            if let Some(earlier) = earlier {
                let common: BTreeSet<Phase> = earlier.phases.intersection(&later.phases).copied().collect();
                diagnostics.push(Diagnostic::new(
                    later.at.target,
                    format!(
                        "mount target {} is already used by the mount at line {} (phase {})",
                        quoted(&later.target),
                        earlier.line,
                        phase_list(&common)
                    ),
                    Some(
                        "give each mount its own target, or limit them to different `phases` or `processes`"
                            .to_string(),
                    ),
                ));
            }
        }
    }
    diagnostics
}

/// The admin's grants and mounts, and the server's other bind sources.
pub(super) fn policy_rules(
    manifest: &Manifest,
    policy: &Policy,
    admin_mounts: &[Attachment],
) -> Vec<Diagnostic> {
    let mut diagnostics = Vec::new();
    for mount in &manifest.mounts {
        if !policy.allows(&mount.source) {
            diagnostics.push(not_granted(mount, policy));
        }
        if let Some(driver) = mount.driver.as_deref().filter(|d| !policy.allows_driver(d)) {
            diagnostics.push(Diagnostic::new(
                mount.at.driver,
                format!("volume driver {} is not allowed for this app", quoted(driver)),
                Some(format!(
                    "app volumes may use the \"local\" driver; ask the admin to run `berth storage:allow <app> \
                     driver:{driver}`, or remove `driver`"
                )),
            ));
        }
        let attachments = mount.attachments();
        for admin in admin_mounts.iter().filter(|a| a.made_by == Origin::Admin) {
            if attachments.iter().any(|mine| mine.collides_with(admin)) {
                let common: BTreeSet<Phase> = mount.phases.intersection(&admin.phases).copied().collect();
                diagnostics.push(Diagnostic::new(
                    mount.at.target,
                    format!(
                        "mount target {} collides with the admin's mount of {} (phase {})",
                        quoted(&mount.target),
                        quoted(&admin.source.to_string()),
                        phase_list(&common)
                    ),
                    Some(
                        "choose another target: admin-made mounts (berth storage:list <app>) take precedence \
                         and only the admin changes them"
                            .to_string(),
                    ),
                ));
            }
        }
    }
    if let Some(server) = policy.server {
        diagnostics.extend(nesting_rules(manifest, policy, server));
    }
    diagnostics
}

fn not_granted(mount: &DeclaredMount, policy: &Policy) -> Diagnostic {
    match &mount.source {
        Source::Volume(name) => Diagnostic::new(
            mount.at.source,
            format!("external volume {} is not allowed for this app", quoted(name)),
            Some(format!(
                "ask the admin to run `berth storage:allow <app> {name}`, or remove `external = true` to use a \
                 volume of this app"
            )),
        ),
        source => {
            let shown = shown(source);
            let grants: Vec<PathBuf> = policy.host_paths.iter().filter_map(|p| clean_grant(p)).collect();
            let allowed = if grants.is_empty() {
                "the admin has allowed no host paths for this app".to_string()
            } else {
                let mut list: Vec<String> =
                    grants.iter().take(5).map(|g| escaped(&g.display().to_string())).collect();
                if grants.len() > 5 {
                    list.push("...".to_string());
                }
                format!("allowed host paths: {}", list.join(", "))
            };
            Diagnostic::new(
                mount.at.source,
                format!(
                    "mount source {} is a host path the admin has not allowed for this app",
                    quoted(&shown)
                ),
                Some(format!(
                    "{allowed}; ask the admin to run `berth storage:allow <app> {shown}`, or use \"./name\" for a \
                     directory of this app"
                )),
            )
        }
    }
}

/// A source as `app.toml` writes it.
fn shown(source: &Source) -> String {
    match source {
        Source::AppDir(rel) => format!("./{}", rel.display()),
        Source::HostPath(path) => path.display().to_string(),
        Source::Volume(name) | Source::AppVolume(name) => name.clone(),
        Source::Entry(name) => name.to_string(),
    }
}

/// The mount-source rule ([`crate::storage::binds`]) for the mounts of this file that are
/// otherwise allowed: none may lie below a writable bind source, nor be one above another.
fn nesting_rules(manifest: &Manifest, policy: &Policy, server: Server) -> Vec<Diagnostic> {
    let no_entries = BTreeMap::new();
    let own: Vec<(&DeclaredMount, Bind)> = manifest
        .mounts
        .iter()
        .filter(|mount| policy.allows(&mount.source))
        .filter_map(|mount| {
            let attachment = mount.attachments().into_iter().next()?;
            Some((mount, Bind::of(server.app, server.app_dir, &attachment, &no_entries)?))
        })
        .collect();
    let why = format!(
        "the engine resolves bind sources again at every start, its own restarts included, so a container \
         writing the outer directory could replace the inner one with a symlink to any host path; {HOW_TO_FIX}"
    );
    let mut diagnostics = Vec::new();
    for (mount, bind) in &own {
        let below_own = own.iter().find(|(_, outer)| bind.nests_in(outer));
        if let Some((outer, _)) = below_own {
            diagnostics.push(Diagnostic::new(
                mount.at.source,
                format!(
                    "mount source {} lies below {}, mounted read-write at line {}",
                    quoted(&shown(&mount.source)),
                    quoted(&shown(&outer.source)),
                    outer.line
                ),
                Some(why.clone()),
            ));
        } else if let Some(outer) = server.binds.iter().find(|outer| bind.nests_in(outer)) {
            diagnostics.push(Diagnostic::new(
                mount.at.source,
                format!(
                    "mount source {} lies below the {outer}, which a container can write",
                    quoted(&shown(&mount.source))
                ),
                Some(why.clone()),
            ));
        }
        if let Some(inner) = server.binds.iter().find(|inner| inner.nests_in(bind)) {
            diagnostics.push(Diagnostic::new(
                mount.at.source,
                format!(
                    "mount source {} would be writable above the bind source of the {inner}",
                    quoted(&shown(&mount.source))
                ),
                Some(why.clone()),
            ));
        }
    }
    diagnostics
}

/// A grant as a clean absolute path; `None` for grants that are relative or contain `..`,
/// which grant nothing.
pub(super) fn clean_grant(grant: &Path) -> Option<PathBuf> {
    let mut clean = PathBuf::from("/");
    if !grant.is_absolute() {
        return None;
    }
    for component in grant.components() {
        match component {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(part) => clean.push(part),
            Component::ParentDir | Component::Prefix(_) => return None,
        }
    }
    Some(clean)
}

/// At or below the grant, by whole components (`/srv/data2` is not below `/srv/data`); never
/// `/` itself.
pub(super) fn allowed_below(path: &Path, grant: &Path) -> bool {
    path != Path::new("/") && path.starts_with(grant)
}
