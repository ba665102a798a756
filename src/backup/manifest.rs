//! The backup format: member names, the manifest that opens the stream, the checksum lists
//! that follow each mount's files, and the closing summary. A stream is a plain tar:
//!
//! ```text
//! berth-backup/manifest.json     app, release, every mount: source, target, kind, root owner,
//!                                mode and mtime, file and byte count
//! data/m0/<path>...              the first mount's tree (owners, modes, mtimes, links)
//! berth-backup/sums/m0           one JSON line per regular file since the last list: path,
//!                                size, sha256 (at most SUMS_FILES lines)
//! data/m0/<path>... sums/m0 ...  the mount's next files and their list; a mount ends with one
//! data/m1/<path>... sums/m1 ...  the next mounts
//! berth-backup/end.json          the counts actually written, per mount
//! ```

use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::BackupError;

/// 2: checksum lists of at most SUMS_FILES files (1 had one list per mount, unbounded).
pub const FORMAT: u32 = 2;
pub const MANIFEST: &str = "berth-backup/manifest.json";
pub const END: &str = "berth-backup/end.json";
pub const SUMS_PREFIX: &str = "berth-backup/sums/";
pub const DATA_PREFIX: &str = "data/";
/// The most a manifest or a summary may take in memory.
pub const MAX_META_BYTES: u64 = 64 << 20;
/// The most files one checksum list covers: what a restore holds before it can compare.
pub const SUMS_FILES: usize = 1024;
/// A writer starts a new list once the paths waiting reach this size.
pub const SUMS_FLUSH_BYTES: usize = 256 << 10;
/// The most one checksum list may take (SUMS_FILES lines of the longest paths), and the most the
/// paths of the files waiting for a list may take in a restore.
pub const MAX_SUMS_BYTES: u64 = 8 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Bind,
    Volume,
}

/// The stream's first member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub app: String,
    pub release: Option<u32>,
    pub created_at: u64,
    pub berth_version: String,
    pub mounts: Vec<MountRecord>,
}

/// One mount of the app, as backed up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountRecord {
    /// `m0`, `m1`, ...: the directory of its data in the stream.
    pub id: String,
    /// The attachment's source as berth records it (`app-dir:uploads`, `app-volume:pgdata`).
    pub source: String,
    /// The container path it is mounted at.
    pub target: String,
    pub kind: Kind,
    /// The host directory or volume name it was read from.
    pub host: String,
    #[serde(default)]
    pub root: RootMeta,
    /// Regular files (hard links counted once) and their bytes, from a walk before the copy.
    #[serde(default)]
    pub files: u64,
    #[serde(default)]
    pub bytes: u64,
}

/// Owner, mode and mtime of a mount's top directory (it has no member of its own).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootMeta {
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
    pub mtime: i64,
}

/// One line of a mount's checksum list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sum {
    pub path: String,
    pub size: u64,
    pub sha256: String,
}

/// The last member: what was actually written.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct End {
    pub mounts: Vec<Counts>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub id: String,
    pub files: u64,
    pub bytes: u64,
}

/// What a member name stands for.
#[derive(Debug, PartialEq, Eq)]
pub enum Member {
    Manifest,
    End,
    Sums(String),
    Data { id: String, rel: PathBuf },
}

fn refused(message: String) -> BackupError {
    BackupError::Refused(message)
}

impl Member {
    /// Classifies a member name; anything else, and any path that is absolute, climbs with
    /// `..` or is not plain, is refused.
    pub fn parse(name: &Path) -> Result<Member, BackupError> {
        let shown = name.display();
        let parts: Vec<&std::ffi::OsStr> = name
            .components()
            .map(|c| match c {
                Component::Normal(part) => Ok(part),
                _ => Err(refused(format!("member {shown:?} is not a plain relative path"))),
            })
            .collect::<Result<_, _>>()?;
        let text: Vec<Option<&str>> = parts.iter().map(|p| p.to_str()).collect();
        match text.as_slice() {
            [Some("berth-backup"), Some("manifest.json")] => Ok(Member::Manifest),
            [Some("berth-backup"), Some("end.json")] => Ok(Member::End),
            [Some("berth-backup"), Some("sums"), Some(id)] if is_id(id) => Ok(Member::Sums(id.to_string())),
            [Some("data"), Some(id), _, ..] if is_id(id) => {
                Ok(Member::Data { id: id.to_string(), rel: parts[2..].iter().collect() })
            }
            _ => Err(refused(format!("member {shown:?} is not part of a berth backup"))),
        }
    }
}

/// `m` and digits.
pub fn is_id(id: &str) -> bool {
    id.len() > 1 && id.starts_with('m') && id[1..].bytes().all(|b| b.is_ascii_digit())
}

pub fn mount_id(index: usize) -> String {
    format!("m{index}")
}

/// A mount's data member for `rel` (a link target names one too).
pub fn data_name(id: &str, rel: &Path) -> PathBuf {
    Path::new(DATA_PREFIX).join(id).join(rel)
}

impl Manifest {
    pub fn check(&self) -> Result<(), BackupError> {
        if self.format != FORMAT {
            return Err(refused(format!(
                "backup format {} is not the one this berth reads ({FORMAT}); restore it with the berth version that wrote it",
                self.format
            )));
        }
        for (index, mount) in self.mounts.iter().enumerate() {
            if mount.id != mount_id(index) {
                return Err(refused(format!("manifest mount {} is out of order", mount.id)));
            }
        }
        Ok(())
    }

    pub fn mount(&self, id: &str) -> Option<&MountRecord> {
        self.mounts.iter().find(|m| m.id == id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_names() {
        assert_eq!(Member::parse(Path::new("berth-backup/manifest.json")).unwrap(), Member::Manifest);
        assert_eq!(
            Member::parse(Path::new("data/m3/a/b")).unwrap(),
            Member::Data { id: "m3".into(), rel: PathBuf::from("a/b") }
        );
        assert_eq!(Member::parse(Path::new("berth-backup/sums/m0")).unwrap(), Member::Sums("m0".into()));
        for bad in
            ["/data/m0/x", "data/m0/../x", "data/m0/a/../../x", "data/mx/a", "data/m0", "other/x", "./data"]
        {
            assert!(Member::parse(Path::new(bad)).is_err(), "{bad}");
        }
    }
}
