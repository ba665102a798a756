//! Where a restore stages each mount and how it swaps the staged tree in by rename, keeping
//! what it replaces as a dated sibling. A directory target is staged beside itself and swapped
//! whole; a volume's top cannot be renamed, so it is staged inside and swapped entry by entry.

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::BackupError;

/// Prefix of a volume's staging directory, inside the volume.
pub const STAGING_PREFIX: &str = ".berth-restore-";
/// Name part of the data a restore replaced (`uploads.replaced-<stamp>`, or inside a volume
/// `.berth-replaced-<stamp>`).
pub const REPLACED_MARK: &str = "replaced-";

/// Where one mount is restored to, as the helper container sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Place {
    /// The directory `parent/name` (which may not exist yet).
    Sibling { parent: PathBuf, name: String },
    /// The top of a volume.
    Inside { root: PathBuf },
}

impl Place {
    pub fn staging(&self, stamp: &str) -> PathBuf {
        match self {
            Place::Sibling { parent, name } => parent.join(format!(".{name}.berth-restore-{stamp}")),
            Place::Inside { root } => root.join(format!("{STAGING_PREFIX}{stamp}")),
        }
    }

    /// Where the replaced data goes.
    pub fn replaced(&self, stamp: &str) -> PathBuf {
        match self {
            Place::Sibling { parent, name } => parent.join(format!("{name}.{REPLACED_MARK}{stamp}")),
            Place::Inside { root } => root.join(format!(".berth-{REPLACED_MARK}{stamp}")),
        }
    }

    /// The directory whose file system receives the data.
    pub fn file_system(&self) -> &Path {
        match self {
            Place::Sibling { parent, .. } => parent,
            Place::Inside { root } => root,
        }
    }

    /// Swaps the verified `staging` tree in; returns where the replaced data now is, if any.
    pub fn swap(&self, staging: &Path, stamp: &str) -> Result<Option<PathBuf>, BackupError> {
        let replaced = self.replaced(stamp);
        match self {
            Place::Sibling { parent, name } => {
                let live = parent.join(name);
                let kept = match fs::symlink_metadata(&live) {
                    Ok(_) => {
                        rename(&live, &replaced)?;
                        Some(replaced)
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                    Err(e) => return Err(BackupError::io("inspect", &live)(e)),
                };
                rename(staging, &live)?;
                Ok(kept)
            }
            Place::Inside { root } => {
                fs::create_dir(&replaced).map_err(BackupError::io("create", &replaced))?;
                let mut moved = false;
                for name in children(root)? {
                    let text = name.to_string_lossy();
                    if text.starts_with(STAGING_PREFIX)
                        || text.starts_with(&format!(".berth-{REPLACED_MARK}"))
                    {
                        continue;
                    }
                    rename(&root.join(&name), &replaced.join(&name))?;
                    moved = true;
                }
                for name in children(staging)? {
                    rename(&staging.join(&name), &root.join(&name))?;
                }
                fs::remove_dir(staging).map_err(BackupError::io("remove", staging))?;
                if moved {
                    Ok(Some(replaced))
                } else {
                    fs::remove_dir(&replaced).map_err(BackupError::io("remove", &replaced))?;
                    Ok(None)
                }
            }
        }
    }
}

fn children(dir: &Path) -> Result<Vec<std::ffi::OsString>, BackupError> {
    let mut names = Vec::new();
    for entry in fs::read_dir(dir).map_err(BackupError::io("list", dir))? {
        names.push(entry.map_err(BackupError::io("list", dir))?.file_name());
    }
    Ok(names)
}

fn rename(from: &Path, to: &Path) -> Result<(), BackupError> {
    fs::rename(from, to).map_err(BackupError::io("rename", from))
}

/// `YYYYMMDDTHHMMSSZ` for a Unix time: the dated part of staging and replaced names.
pub fn stamp(unix: u64) -> String {
    let days = (unix / 86_400) as i64;
    let secs = unix % 86_400;
    // Howard Hinnant's civil-from-days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z", secs / 3600, secs / 60 % 60, secs % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps() {
        assert_eq!(stamp(0), "19700101T000000Z");
        assert_eq!(stamp(1_796_223_600), "20261202T150000Z");
        assert_eq!(stamp(951_782_400), "20000229T000000Z");
    }

    #[test]
    fn volume_swap_keeps_the_old_entries() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::write(root.join("old"), "1").unwrap();
        let place = Place::Inside { root: root.to_path_buf() };
        let staging = place.staging("S");
        fs::create_dir(&staging).unwrap();
        fs::write(staging.join("new"), "2").unwrap();
        let kept = place.swap(&staging, "S").unwrap().unwrap();
        assert_eq!(fs::read_to_string(root.join("new")).unwrap(), "2");
        assert_eq!(fs::read_to_string(kept.join("old")).unwrap(), "1");
        assert!(!root.join("old").exists() && !staging.exists());
    }
}
