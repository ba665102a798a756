//! Verifies a backup stream into staging directories and swaps them in (inside berth's helper
//! container). Nothing outside staging is written until the whole stream has been read and
//! every member, size and checksum checked; a refused stream leaves no staging behind. What it
//! holds is bounded whatever the stream's size: the checksums of one list's files and the
//! directories above the current member.

use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, CWD, Gid, Mode, Timespec, Timestamps, Uid};
use serde::{Deserialize, Serialize};

use super::BackupError;
use super::hasher::Hasher;
use super::manifest::{self, End, Manifest, Member, MountRecord, RootMeta, Sum};
use super::swap::Place;

/// One mount to restore, and where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    pub id: String,
    pub place: Place,
}

/// What the host asks the helper to restore.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub targets: Vec<Target>,
    /// The dated part of staging and replaced names.
    pub stamp: String,
}

/// What one mount's restore did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Restored {
    pub id: String,
    pub files: u64,
    pub bytes: u64,
    pub replaced: Option<PathBuf>,
}

fn refused(message: impl Into<String>) -> BackupError {
    BackupError::Refused(message.into())
}

/// Reads, verifies and (when every check passed) swaps in the mounts of `plan`.
pub fn restore(input: impl Read, plan: &Plan) -> Result<Vec<Restored>, BackupError> {
    let mut archive = tar::Archive::new(input);
    let mut entries = archive.entries().map_err(BackupError::Stream)?;
    let manifest: Manifest = match entries.next() {
        Some(entry) => {
            let mut entry = entry.map_err(BackupError::Stream)?;
            if Member::parse(&entry.path().map_err(BackupError::Stream)?)? != Member::Manifest {
                return Err(refused("the stream does not start with berth-backup/manifest.json"));
            }
            read_json(&mut entry, "the manifest")?
        }
        None => return Err(refused("the stream is empty")),
    };
    manifest.check()?;
    let mut mounts = Mounts::new(&manifest, plan)?;
    let mut end_seen = false;
    for entry in entries {
        let mut entry = entry.map_err(BackupError::Stream)?;
        let member = Member::parse(&entry.path().map_err(BackupError::Stream)?)?;
        if end_seen {
            return Err(refused("members follow berth-backup/end.json"));
        }
        match member {
            Member::Manifest => return Err(refused("a second manifest")),
            Member::Data { id, rel } => mounts.get(&id)?.member(&mut entry, &rel)?,
            Member::Sums(id) => mounts.get(&id)?.verify(&mut entry)?,
            Member::End => {
                mounts.finish(read_json(&mut entry, "the summary")?)?;
                end_seen = true;
            }
        }
    }
    if !end_seen {
        return Err(refused("the stream ends before berth-backup/end.json: it is truncated"));
    }
    mounts.swap(&plan.stamp)
}

/// A member must be read to its end: the tar reader reports a stream cut inside one only as a
/// short member.
fn whole(read: u64, size: u64, shown: &str) -> Result<(), BackupError> {
    if read == size {
        return Ok(());
    }
    Err(BackupError::Stream(io::Error::new(
        io::ErrorKind::UnexpectedEof,
        format!("it ends inside {shown}, after {read} of its {size} bytes"),
    )))
}

/// A metadata member, whole and within the memory bound `max`.
fn read_meta(entry: &mut tar::Entry<impl Read>, what: &str, max: u64) -> Result<Vec<u8>, BackupError> {
    let size = entry.size();
    if size > max {
        return Err(refused(format!("{what} is larger than {} MiB", max >> 20)));
    }
    let mut bytes = Vec::new();
    entry.read_to_end(&mut bytes).map_err(BackupError::Stream)?;
    whole(bytes.len() as u64, size, what)?;
    Ok(bytes)
}

fn read_json<T: serde::de::DeserializeOwned>(
    entry: &mut tar::Entry<impl Read>,
    what: &str,
) -> Result<T, BackupError> {
    let bytes = read_meta(entry, what, manifest::MAX_META_BYTES)?;
    serde_json::from_slice(&bytes).map_err(|e| refused(format!("{what} is not valid: {e}")))
}

/// Every mount of the stream: staged when restored, only checked otherwise.
struct Mounts<'m> {
    mounts: Vec<Mount<'m>>,
}

impl<'m> Mounts<'m> {
    fn new(manifest: &'m Manifest, plan: &Plan) -> Result<Mounts<'m>, BackupError> {
        for target in &plan.targets {
            let record = manifest
                .mount(&target.id)
                .ok_or_else(|| refused(format!("mount {} is not in the backup", target.id)))?;
            check_space(record, &target.place)?;
        }
        let mut mounts = Mounts { mounts: Vec::new() };
        for record in &manifest.mounts {
            let place = plan.targets.iter().find(|t| t.id == record.id).map(|t| t.place.clone());
            let staging = match &place {
                Some(place) => {
                    let staging = place.staging(&plan.stamp);
                    fs::create_dir(&staging).map_err(BackupError::io("create", &staging))?;
                    Some(staging)
                }
                None => None,
            };
            mounts.mounts.push(Mount {
                record,
                place,
                staging,
                pending: Pending::default(),
                files: 0,
                bytes: 0,
                lists: 0,
                dirs: Vec::new(),
                hasher: None,
            });
        }
        Ok(mounts)
    }

    fn get(&mut self, id: &str) -> Result<&mut Mount<'m>, BackupError> {
        self.mounts
            .iter_mut()
            .find(|m| m.record.id == id)
            .ok_or_else(|| refused(format!("data of mount {id}, which the manifest does not list")))
    }

    fn finish(&self, end: End) -> Result<(), BackupError> {
        let counts: Vec<(String, u64, u64)> =
            self.mounts.iter().map(|m| (m.record.id.clone(), m.files, m.bytes)).collect();
        let summary: Vec<(String, u64, u64)> =
            end.mounts.into_iter().map(|c| (c.id, c.files, c.bytes)).collect();
        if let Some(mount) = self.mounts.iter().find(|m| m.lists == 0 || !m.pending.files.is_empty()) {
            return Err(refused(format!(
                "mount {} has files no checksum list covers: the stream is truncated",
                mount.record.id
            )));
        }
        if counts != summary {
            return Err(refused(format!(
                "the summary does not match the data: it counts {summary:?} (mount, files, bytes), the stream holds {counts:?}"
            )));
        }
        Ok(())
    }

    /// Everything verified: give the staged trees their metadata and swap them in.
    fn swap(mut self, stamp: &str) -> Result<Vec<Restored>, BackupError> {
        let mut done = Vec::new();
        for mount in &mut self.mounts {
            let (Some(place), Some(staging)) = (mount.place.clone(), mount.staging.clone()) else { continue };
            mount.leave_dirs(None)?;
            set_meta(&staging, &mount.record.root)?;
            let replaced = place.swap(&staging, stamp)?;
            mount.staging = None;
            done.push(Restored {
                id: mount.record.id.clone(),
                files: mount.files,
                bytes: mount.bytes,
                replaced,
            });
        }
        Ok(done)
    }
}

impl Drop for Mounts<'_> {
    /// A refused or failed restore takes its staging away; the live data was never touched.
    fn drop(&mut self) {
        for staging in self.mounts.iter().filter_map(|m| m.staging.as_ref()) {
            let _ = fs::remove_dir_all(staging);
        }
    }
}

/// Free space for the mount's bytes and a block per file, before anything is written.
fn check_space(record: &MountRecord, place: &Place) -> Result<(), BackupError> {
    let dir = place.file_system();
    let stat =
        rustix::fs::statvfs(dir).map_err(|e| BackupError::io("measure free space on", dir)(e.into()))?;
    let free = stat.f_bavail.saturating_mul(stat.f_frsize);
    let need = record.bytes.saturating_add(record.files.saturating_mul(4096)).saturating_add(1 << 20);
    if need > free {
        return Err(refused(format!(
            "mount {} ({}) needs {need} bytes and {} has {free} free; make room or restore it elsewhere",
            record.id,
            record.target,
            dir.display()
        )));
    }
    Ok(())
}

/// One mount while its members stream by.
struct Mount<'m> {
    record: &'m MountRecord,
    place: Option<Place>,
    staging: Option<PathBuf>,
    /// The checksums computed since the last list, in stream order.
    pending: Pending,
    files: u64,
    bytes: u64,
    /// Checksum lists verified.
    lists: u64,
    /// The staged directories above the current member, outermost first: a directory gets its
    /// owner, mode and mtime once the stream has left it (all its children are in).
    dirs: Vec<(PathBuf, RootMeta)>,
    /// Hashes file data beside the copy, started at the first file.
    hasher: Option<Hasher>,
}

/// Files (path and size) waiting for the list that covers them; the hasher has their digests.
#[derive(Default)]
struct Pending {
    files: Vec<(String, u64)>,
    path_bytes: u64,
}

impl Mount<'_> {
    fn member(&mut self, entry: &mut tar::Entry<impl Read>, rel: &Path) -> Result<(), BackupError> {
        let shown = rel.display().to_string();
        let header = entry.header();
        let meta = header_meta(header).map_err(BackupError::Stream)?;
        let kind = header.entry_type();
        let path = match &self.staging {
            Some(staging) => Some(staged_path(staging, rel)?),
            None => None,
        };
        if let Some(path) = &path {
            self.leave_dirs(Some(path))?;
        }
        match kind {
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                self.file(entry, path.as_deref(), &meta, shown)
            }
            tar::EntryType::Directory => {
                if let Some(path) = path {
                    fs::create_dir(&path).map_err(|e| collision(&shown, e))?;
                    self.dirs.push((path, meta));
                }
                Ok(())
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name()
                    .map_err(BackupError::Stream)?
                    .ok_or_else(|| refused(format!("symlink {shown} has no target")))?;
                if let Some(path) = path {
                    std::os::unix::fs::symlink(&target, &path).map_err(|e| collision(&shown, e))?;
                    let (uid, gid) = ids(&meta);
                    rustix::fs::chownat(CWD, &path, Some(uid), Some(gid), AtFlags::SYMLINK_NOFOLLOW)
                        .map_err(|e| BackupError::io("change the owner of", &path)(e.into()))?;
                    rustix::fs::utimensat(CWD, &path, &times(meta.mtime), AtFlags::SYMLINK_NOFOLLOW)
                        .map_err(|e| BackupError::io("set the time of", &path)(e.into()))?;
                }
                Ok(())
            }
            tar::EntryType::Link => {
                let target = entry
                    .link_name()
                    .map_err(BackupError::Stream)?
                    .ok_or_else(|| refused(format!("hard link {shown} has no target")))?;
                let first = match Member::parse(&target) {
                    Ok(Member::Data { id, rel }) if id == self.record.id => rel,
                    _ => {
                        return Err(refused(format!(
                            "hard link {shown} points outside its mount, to {}",
                            target.display()
                        )));
                    }
                };
                if let (Some(path), Some(staging)) = (path, &self.staging) {
                    let first = staged_path(staging, &first)?;
                    match fs::symlink_metadata(&first) {
                        Ok(m) if m.file_type().is_file() => {}
                        _ => {
                            return Err(refused(format!(
                                "hard link {shown} points to {}, which is no file of the backup",
                                first.display()
                            )));
                        }
                    }
                    fs::hard_link(&first, &path).map_err(|e| collision(&shown, e))?;
                }
                Ok(())
            }
            other => Err(refused(format!(
                "{shown} is a {}: device files and fifos are never restored",
                match other {
                    tar::EntryType::Fifo => "fifo",
                    tar::EntryType::Char | tar::EntryType::Block => "device file",
                    _ => "member of an unknown kind",
                }
            ))),
        }
    }

    fn file(
        &mut self,
        entry: &mut tar::Entry<impl Read>,
        path: Option<&Path>,
        meta: &RootMeta,
        shown: String,
    ) -> Result<(), BackupError> {
        let size = entry.size();
        let total = self.bytes.saturating_add(size);
        if total > self.record.bytes || self.files >= self.record.files {
            return Err(refused(format!(
                "the data of mount {} is larger than its manifest says ({} files, {} bytes)",
                self.record.id, self.record.files, self.record.bytes
            )));
        }
        self.pending.path_bytes = self.pending.path_bytes.saturating_add(shown.len() as u64);
        if self.pending.files.len() >= manifest::SUMS_FILES
            || self.pending.path_bytes > manifest::MAX_SUMS_BYTES
        {
            return Err(refused(format!(
                "mount {} has more than {} files (or {} MiB of names) without a checksum list",
                self.record.id,
                manifest::SUMS_FILES,
                manifest::MAX_SUMS_BYTES >> 20
            )));
        }
        let hasher = self.hasher.get_or_insert_with(|| Hasher::start(COPY_BUFFER));
        match path {
            Some(path) => {
                let file = File::options()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
                    .open(path)
                    .map_err(|e| collision(&shown, e))?;
                let written = write_sparse(&file, entry, hasher).map_err(BackupError::Stream)?;
                whole(written, size, &shown)?;
                set_file_meta(&file, path, meta)?;
            }
            None => {
                let read = copy_through(entry, hasher, |_, _| Ok(())).map_err(BackupError::Stream)?;
                whole(read, size, &shown)?;
            }
        }
        self.bytes = total;
        self.files += 1;
        self.pending.files.push((shown, size));
        Ok(())
    }

    /// Gives the staged directories the stream has left (all of them for `None`) their
    /// metadata: those that are not above `next`.
    fn leave_dirs(&mut self, next: Option<&Path>) -> Result<(), BackupError> {
        while let Some((dir, meta)) = self.dirs.last() {
            if next.is_some_and(|next| next.starts_with(dir)) {
                break;
            }
            set_meta(dir, meta)?;
            self.dirs.pop();
        }
        Ok(())
    }

    /// The checksums of the files read since the last list, as the hasher computed them.
    fn read_sums(&mut self) -> Result<Vec<Sum>, BackupError> {
        let files = std::mem::take(&mut self.pending.files);
        let Some(hasher) = &self.hasher else { return Ok(Vec::new()) };
        let sum =
            |(path, size)| Ok(Sum { path, size, sha256: hasher.digest().map_err(BackupError::Stream)? });
        files.into_iter().map(sum).collect()
    }

    /// Compares a checksum list of the stream with the files read since the last one.
    fn verify(&mut self, entry: &mut tar::Entry<impl Read>) -> Result<(), BackupError> {
        let id = &self.record.id;
        let bytes = read_meta(entry, &format!("a checksum list of mount {id}"), manifest::MAX_SUMS_BYTES)?;
        let text = String::from_utf8(bytes)
            .map_err(|e| refused(format!("the checksum list of mount {id} is not text: {e}")))?;
        let listed: Vec<Sum> = text
            .lines()
            .map(serde_json::from_str)
            .collect::<Result<_, _>>()
            .map_err(|e| refused(format!("the checksum list of mount {id} is not valid: {e}")))?;
        let read = self.read_sums()?;
        if listed.len() != read.len() {
            return Err(refused(format!(
                "a checksum list of mount {id} has {} files, the stream {} before it: the manifest does not match the data",
                listed.len(),
                read.len()
            )));
        }
        if let Some((want, got)) = listed.iter().zip(&read).find(|(want, got)| want != got) {
            return Err(refused(format!(
                "checksum mismatch in mount {id}: {} should be {} bytes with sha256 {}, the stream has {} bytes with sha256 {} ({})",
                want.path, want.size, want.sha256, got.size, got.sha256, got.path
            )));
        }
        self.pending = Pending::default();
        self.lists += 1;
        Ok(())
    }
}

/// `staging/rel`, once every directory above it is checked to be a real directory of the
/// staging tree: a member can never be written through a symlink an earlier one made.
fn staged_path(staging: &Path, rel: &Path) -> Result<PathBuf, BackupError> {
    let mut dir = staging.to_path_buf();
    let parts: Vec<_> = rel.components().collect();
    for part in &parts[..parts.len().saturating_sub(1)] {
        dir.push(part);
        match fs::symlink_metadata(&dir) {
            Ok(meta) if meta.file_type().is_dir() => {}
            Ok(_) => {
                return Err(refused(format!(
                    "{} would be written through {}, which is not a directory (a symlink?)",
                    rel.display(),
                    dir.strip_prefix(staging).unwrap_or(&dir).display()
                )));
            }
            Err(_) => return Err(refused(format!("{} comes before its directory", rel.display()))),
        }
    }
    Ok(staging.join(rel))
}

fn collision(shown: &str, error: io::Error) -> BackupError {
    if error.kind() == io::ErrorKind::AlreadyExists {
        refused(format!("{shown} appears twice in the stream"))
    } else {
        BackupError::Io { action: "restore", path: PathBuf::from(shown), source: error }
    }
}

fn header_meta(header: &tar::Header) -> io::Result<RootMeta> {
    let small = |value: u64| u32::try_from(value).map_err(|_| io::Error::other("an owner id beyond 32 bits"));
    Ok(RootMeta {
        uid: small(header.uid()?)?,
        gid: small(header.gid()?)?,
        mode: header.mode()? & 0o7777,
        mtime: i64::try_from(header.mtime()?).unwrap_or(i64::MAX),
    })
}

fn ids(meta: &RootMeta) -> (Uid, Gid) {
    (Uid::from_raw(meta.uid), Gid::from_raw(meta.gid))
}

fn times(mtime: i64) -> Timestamps {
    let at = Timespec { tv_sec: mtime, tv_nsec: 0 };
    Timestamps { last_access: at, last_modification: at }
}

fn set_file_meta(file: &File, path: &Path, meta: &RootMeta) -> Result<(), BackupError> {
    let (uid, gid) = ids(meta);
    let io = |action| move |e: rustix::io::Errno| BackupError::io(action, path)(e.into());
    // The owner first: chown clears set-id bits the mode then puts back.
    rustix::fs::fchown(file, Some(uid), Some(gid)).map_err(io("change the owner of"))?;
    rustix::fs::fchmod(file, Mode::from_raw_mode(meta.mode)).map_err(io("change the mode of"))?;
    rustix::fs::futimens(file, &times(meta.mtime)).map_err(io("set the time of"))
}

/// Owner, mode and mtime of a directory, by path (it is in the staging tree, checked).
fn set_meta(path: &Path, meta: &RootMeta) -> Result<(), BackupError> {
    let dir = File::options()
        .read(true)
        .custom_flags((rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::DIRECTORY).bits() as i32)
        .open(path)
        .map_err(BackupError::io("open", path))?;
    set_file_meta(&dir, path, meta)
}

const BLOCK: usize = 4096;
static ZEROS: [u8; BLOCK] = [0; BLOCK];
/// Bytes of a file read (and written) at a time.
const COPY_BUFFER: usize = 256 << 10;

/// Copies `data` into `file`, leaving holes for the all-zero blocks: a sparse file comes back
/// sparse. Returns the bytes copied.
fn write_sparse(file: &File, data: &mut impl Read, hasher: &Hasher) -> io::Result<u64> {
    let size = copy_through(data, hasher, |buf, pos| {
        let mut start = 0;
        while start < buf.len() {
            let zero = is_zero(&buf[start..(start + BLOCK).min(buf.len())]);
            let mut end = (start + BLOCK).min(buf.len());
            while end < buf.len() && is_zero(&buf[end..(end + BLOCK).min(buf.len())]) == zero {
                end = (end + BLOCK).min(buf.len());
            }
            if !zero {
                file.write_all_at(&buf[start..end], pos + start as u64)?;
            }
            start = end;
        }
        Ok(())
    })?;
    file.set_len(size)?;
    Ok(size)
}

/// Reads `data` to its end through the hasher's buffers, giving each to `write` with its offset
/// before the hasher takes it as the file's next data; returns the bytes read.
fn copy_through(
    data: &mut impl Read,
    hasher: &Hasher,
    mut write: impl FnMut(&[u8], u64) -> io::Result<()>,
) -> io::Result<u64> {
    let mut pos = 0u64;
    loop {
        let mut buf = hasher.buffer()?;
        let n = read_full(data, &mut buf)?;
        if n > 0 {
            write(&buf[..n], pos)?;
        }
        hasher.hash(buf, n)?;
        if n == 0 {
            break;
        }
        pos += n as u64;
    }
    hasher.end_file()?;
    Ok(pos)
}

fn is_zero(block: &[u8]) -> bool {
    block == &ZEROS[..block.len()]
}

fn read_full(data: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match data.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}
