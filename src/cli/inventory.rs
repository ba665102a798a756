//! What `storage:report` shows about data: each mount's size on disk (`--size`), the data
//! restores replaced and kept, and (`--detached`) every app directory, entry directory and
//! app-labelled volume no app mounts any more.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::json;

use super::{Format, Result, print_json};
use crate::backup::inventory::{Kept, KeptRestores, disk_usage, human};
use crate::engine::Engine;
use crate::names::{AppName, EntryName};
use crate::output::{Report, Reporter};
use crate::state::Root;
use crate::storage::{Entry, MountSource};

/// Rows for one app's report: the kept restores, and with `size` each attachment's size.
pub fn app_rows(
    root: &Root,
    app: &AppName,
    entries: &BTreeMap<EntryName, Entry>,
    size: bool,
    report: &mut Report,
) -> Result<()> {
    let kept = KeptRestores::read(root, app)?;
    let shown: Vec<String> = kept.kept.iter().map(|k| Kept::show(k.kind, &k.host, &k.name)).collect();
    // Only when there is some: reports of apps never restored keep their shape.
    if !shown.is_empty() {
        report.row("storage-restores-kept", shown.join(" "));
    }
    if !size {
        return Ok(());
    }
    let engine = Engine::connect()?;
    let state = root.read_app(app)?;
    for (index, m) in state.mounts.iter().enumerate() {
        let Ok(source) = m.resolve(app, &root.app_storage_dir(app), entries) else { continue };
        report.row(format!("storage-attachment.{}.size", index + 1), size_of(&engine, &source)?);
    }
    Ok(())
}

/// A directory's or volume's size on disk, or `unknown` when berth cannot read all of it.
fn size_of(engine: &Engine, source: &MountSource) -> Result<String> {
    let path = match source {
        MountSource::Bind(path) => Some(path.clone()),
        MountSource::Volume(name) => engine.volume_mountpoint(name)?.map(PathBuf::from),
    };
    Ok(path.and_then(|p| disk_usage(&p)).map_or_else(|| "unknown".to_string(), human))
}

/// One piece of storage no app mounts.
struct Detached {
    source: MountSource,
    size: String,
    last_used: Option<(AppName, u32)>,
}

/// `storage:report --detached`: across all apps.
pub fn report_detached(root: &Root, format: Format, out: &Reporter) -> Result<()> {
    let engine = Engine::connect()?;
    let entries = root.entries_by_name()?;
    let apps = root.list_apps()?;
    let mut mounted = Vec::new();
    let mut used_by: Vec<(MountSource, AppName, u32)> = Vec::new();
    for app in &apps {
        let state = root.read_app(app)?;
        let dir = root.app_storage_dir(app);
        mounted.extend(state.mounts.iter().filter_map(|m| m.resolve(app, &dir, &entries).ok()));
        for release in root.read_releases(app)?.releases {
            for m in &release.mounts {
                if let Ok(source) = m.resolve(app, &dir, &entries) {
                    used_by.push((source, app.clone(), release.number));
                }
            }
        }
    }
    let is_mounted = |candidate: &MountSource| {
        mounted.iter().any(|m| match (m, candidate) {
            (MountSource::Bind(m), MountSource::Bind(c)) => m.starts_with(c) || c.starts_with(m),
            (m, c) => m == c,
        })
    };
    let mut candidates: Vec<MountSource> = Vec::new();
    for parent in std::fs::read_dir(root.path().join("data").join("apps")).into_iter().flatten().flatten() {
        candidates.extend(children(&parent.path()).into_iter().map(MountSource::Bind));
    }
    candidates.extend(children(&root.storage_root()).into_iter().map(MountSource::Bind));
    candidates.extend(engine.labelled_volumes()?.into_iter().map(|(name, _)| MountSource::Volume(name)));
    let mut found = Vec::new();
    for source in candidates.into_iter().filter(|c| !is_mounted(c)) {
        let last_used = used_by
            .iter()
            .filter(|(s, _, _)| s == &source)
            .max_by_key(|(_, _, n)| *n)
            .map(|(_, app, n)| (app.clone(), *n));
        found.push(Detached { size: size_of(&engine, &source)?, source, last_used });
    }
    print_detached(&found, format, out)
}

/// The directories in `dir`, except a restore's staging.
fn children(dir: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir() && !p.to_string_lossy().contains(".berth-restore-"))
        .collect();
    dirs.sort();
    dirs
}

fn print_detached(found: &[Detached], format: Format, out: &Reporter) -> Result<()> {
    let last = |d: &Detached| d.last_used.as_ref().map(|(app, n)| format!("{app} release {n}"));
    match format {
        Format::Json => {
            let items: Vec<_> = found
                .iter()
                .map(|d| json!({"source": d.source.to_string(), "size": d.size, "last_used_by": last(d)}))
                .collect();
            print_json(&items, out)
        }
        Format::Text if found.is_empty() => {
            out.step("No detached storage: every directory and app volume is mounted");
            Ok(())
        }
        Format::Text => {
            out.step("Detached storage (mounted by no app):");
            for d in found {
                let used = last(d).unwrap_or_else(|| "—".into());
                out.detail(format!("{}\t{}\tlast used by: {used}", d.source, d.size));
            }
            Ok(())
        }
    }
}
