//! berth's own helper image, for the root work a berth that is not root must ask the engine
//! for (giving storage to its owner): the running berth binary and the shared libraries it
//! loads on an empty base, with a fixed entrypoint that works on directory handles. No pushed
//! image ever runs with host directories and root privileges.

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use crate::engine::{Engine, EngineError};

/// The hidden `berth` subcommand the helper image runs: `internal:chown <uid>:<gid> <dir>...`.
pub const CHOWN_COMMAND: &str = "internal:chown";

#[derive(Debug, thiserror::Error)]
pub enum HelperImageError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("unable to {action} for the helper image: {source}")]
    Io { action: &'static str, source: std::io::Error },
}

/// The helper image for the running binary, built on first use. Tagged with the version and
/// the binary's size and change time, so a replaced binary gets its own image.
pub fn ensure(engine: &Engine) -> Result<String, HelperImageError> {
    let berth = berth_binary()?;
    let exe = std::fs::metadata(&berth)
        .map_err(|source| HelperImageError::Io { action: "inspect berth", source })?;
    let name = format!("berth-helper:{}-{}-{}", env!("CARGO_PKG_VERSION"), exe.len(), exe.ctime());
    if engine.image_exists(&name)? {
        return Ok(name);
    }
    let libraries = shared_libraries(&berth)?;
    engine.build_image(
        &name,
        "Dockerfile",
        &HashMap::new(),
        &HashMap::new(),
        move |out| write_context(out, &berth, &libraries),
        &mut |_| {},
    )?;
    Ok(name)
}

/// The helper image with a bare `/berth` entrypoint, for the helper's other jobs
/// (`internal:backup-*`), built on [`ensure`]'s image.
pub fn ensure_exec(engine: &Engine) -> Result<String, HelperImageError> {
    let base = ensure(engine)?;
    let name = format!("{base}-exec");
    if engine.image_exists(&name)? {
        return Ok(name);
    }
    let dockerfile = format!("FROM {base}\nENTRYPOINT [\"/berth\"]\n");
    engine.build_image(
        &name,
        "Dockerfile",
        &HashMap::new(),
        &HashMap::new(),
        move |out| {
            let mut tar = tar::Builder::new(out);
            append(&mut tar, "Dockerfile", dockerfile.as_bytes())?;
            tar.finish()
        },
        &mut |_| {},
    )?;
    Ok(name)
}

/// The `berth` binary: this process's, or the one beside the hook binary that is running
/// (they are installed together), which has the helper's subcommand.
fn berth_binary() -> Result<PathBuf, HelperImageError> {
    let exe = std::env::current_exe()
        .map_err(|source| HelperImageError::Io { action: "locate the running binary", source })?;
    Ok(exe.with_file_name("berth"))
}

/// The files the dynamic loader needs for berth, from `ldd` (the interpreter included).
fn shared_libraries(berth: &std::path::Path) -> Result<Vec<PathBuf>, HelperImageError> {
    let listing = duct::cmd!("ldd", berth)
        .read()
        .map_err(|source| HelperImageError::Io { action: "list berth's shared libraries", source })?;
    Ok(listing
        .lines()
        .filter_map(|line| line.split_whitespace().find(|word| word.starts_with('/')))
        .map(PathBuf::from)
        .collect())
}

fn write_context(out: &mut dyn Write, berth: &std::path::Path, libraries: &[PathBuf]) -> std::io::Result<()> {
    let dockerfile = format!("FROM scratch\nCOPY . /\nENTRYPOINT [\"/berth\", \"{CHOWN_COMMAND}\"]\n");
    let mut tar = tar::Builder::new(out);
    append(&mut tar, "Dockerfile", dockerfile.as_bytes())?;
    append(&mut tar, "berth", &std::fs::read(berth)?)?;
    for library in libraries {
        append(&mut tar, library.strip_prefix("/").unwrap_or(library), &std::fs::read(library)?)?;
    }
    tar.finish()
}

/// A plain file entry: read whole, so the engine never meets a sparse or link header.
fn append(
    tar: &mut tar::Builder<&mut dyn Write>,
    path: impl AsRef<std::path::Path>,
    data: &[u8],
) -> std::io::Result<()> {
    let mut header = tar::Header::new_gnu();
    header.set_size(data.len() as u64);
    header.set_mode(0o755);
    tar.append_data(&mut header, path, data)
}
