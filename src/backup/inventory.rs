//! What `storage:report` adds about data: the size of a directory on disk, and the data
//! restores replaced and kept (`<root>/apps/<app>/restores.toml`) until pruned.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::manifest::Kind;
use crate::names::AppName;
use crate::state::{Lock, Root, StateError};

/// The replaced data an app's restores kept.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeptRestores {
    #[serde(default)]
    pub kept: Vec<Kept>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Kept {
    /// The attachment's source and container path it was restored for.
    pub source: String,
    pub target: String,
    pub kind: Kind,
    /// The directory holding it (a bind target's parent), or the volume.
    pub host: String,
    /// Its name there.
    pub name: String,
    pub created_at: u64,
}

impl Kept {
    /// `/srv/.../uploads.replaced-<stamp>` or `<volume>:/.berth-replaced-<stamp>`.
    pub fn show(kind: Kind, host: &str, name: &str) -> String {
        match kind {
            Kind::Bind => Path::new(host).join(name).display().to_string(),
            Kind::Volume => format!("{host}:/{name}"),
        }
    }
}

fn file(root: &Root, app: &AppName) -> PathBuf {
    root.app_dir(app).join("restores.toml")
}

impl KeptRestores {
    pub fn read(root: &Root, app: &AppName) -> Result<KeptRestores, StateError> {
        Ok(crate::state::read_toml(&file(root, app))?.unwrap_or_default())
    }

    pub fn write(&self, root: &Root, app: &AppName, _lock: &Lock) -> Result<(), StateError> {
        crate::state::write_toml(&file(root, app), self)
    }
}

/// Bytes allocated on disk below `path` (each inode once), or `None` when some of it cannot
/// be read.
pub fn disk_usage(path: &Path) -> Option<u64> {
    let mut seen = std::collections::HashSet::new();
    let mut total = 0u64;
    let mut stack = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let meta = std::fs::symlink_metadata(&dir).ok()?;
        if seen.insert((meta.dev(), meta.ino())) {
            total += meta.blocks() * 512;
        }
        if !meta.is_dir() {
            continue;
        }
        for entry in std::fs::read_dir(&dir).ok()? {
            stack.push(entry.ok()?.path());
        }
    }
    Some(total)
}

/// `1.5 MiB`-style sizes for reports.
pub fn human(bytes: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < units.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{bytes} B") } else { format!("{value:.1} {}", units[unit]) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(human(512), "512 B");
        assert_eq!(human(1536), "1.5 KiB");
        assert_eq!(human(3 << 30), "3.0 GiB");
    }
}
