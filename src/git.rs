//! Git: the bare repository each app is pushed to.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("unable to create the git repository {path}: {message}")]
    Init { path: PathBuf, message: String },
}

/// Creates a bare repository (idempotent: an existing one is kept as is).
pub fn init_bare(path: &Path) -> Result<(), GitError> {
    if git2::Repository::open_bare(path).is_ok() {
        return Ok(());
    }
    git2::Repository::init_bare(path)
        .map(drop)
        .map_err(|e| GitError::Init { path: path.to_path_buf(), message: e.message().to_string() })
}
