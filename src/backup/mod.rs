//! Backups of an app's storage: one tar stream holding a manifest, the data of each mount and
//! the checksums of its files (`manifest`), written from the mounted trees (`writer`), verified
//! into staging and swapped in (`restore`, `swap`), the trees reached through berth's helper
//! container (`helper`), and the sizes and kept restores `storage:report` lists (`inventory`).

pub mod hasher;
pub mod helper;
pub mod inventory;
pub mod manifest;
pub mod restore;
pub mod swap;
pub mod writer;

#[cfg(test)]
mod tests;

use std::io;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("refused the backup stream: {0}; nothing was restored and the live data is untouched")]
    Refused(String),
    #[error(
        "cannot read the backup stream ({0}): it is damaged or truncated; nothing was restored and the live data is untouched"
    )]
    Stream(#[source] io::Error),
    #[error("cannot write the backup stream: {0}")]
    Write(#[source] io::Error),
    #[error("unable to {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("bad backup metadata: {0}")]
    Format(String),
    #[error(transparent)]
    Engine(#[from] crate::engine::EngineError),
    #[error(transparent)]
    HelperImage(#[from] crate::helper_image::HelperImageError),
    /// The helper container's own error, as it printed it.
    #[error("{0}")]
    Helper(String),
}

impl BackupError {
    pub fn io(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> BackupError + use<> {
        let path = path.to_path_buf();
        move |source| BackupError::Io { action, path, source }
    }
}
