//! Writes a backup stream from mounted trees (inside berth's helper container): a metadata walk
//! for the manifest's counts, then each tree in name order with its checksum lists. A file's
//! bytes are read once into one of a few fixed buffers, written from there and hashed there by
//! the [`Hasher`] thread meanwhile; checksums go out in lists of at most
//! [`manifest::SUMS_FILES`] files, so memory does not grow with the size of the files or their
//! number.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::BackupError;
use super::hasher::Hasher;
use super::manifest::{self, Counts, End, Manifest, RootMeta, Sum};
use crate::output::Reporter;

/// Writes the whole stream for `manifest` (its mounts' counts are filled in here); `dirs[i]` is
/// where mount `i` is readable.
pub fn write(
    mut manifest: Manifest,
    dirs: &[PathBuf],
    stream: impl Write,
    out: &Reporter,
) -> Result<(), BackupError> {
    for (mount, dir) in manifest.mounts.iter_mut().zip(dirs) {
        let meta = fs::symlink_metadata(dir).map_err(BackupError::io("read", dir))?;
        mount.root = root_meta(&meta);
        let (files, bytes) = count(dir)?;
        (mount.files, mount.bytes) = (files, bytes);
    }
    let mut tar = tar::Builder::new(stream);
    append_json(&mut tar, manifest::MANIFEST, &manifest)?;
    let mut end = End::default();
    let hasher = Hasher::start(COPY_BUFFER);
    for (mount, dir) in manifest.mounts.iter().zip(dirs) {
        let mut tree = Tree {
            tar: &mut tar,
            id: &mount.id,
            hasher: &hasher,
            sums: Sums::default(),
            links: Links::default(),
            files: 0,
            bytes: 0,
        };
        tree.walk(dir, Path::new(""), out)?;
        // Every mount ends with a list, an empty one too: a restore knows its data is whole.
        tree.flush_sums()?;
        end.mounts.push(Counts { id: mount.id.clone(), files: tree.files, bytes: tree.bytes });
    }
    append_json(&mut tar, manifest::END, &end)?;
    tar.into_inner().and_then(|mut out| out.flush()).map_err(BackupError::Write)
}

pub fn root_meta(meta: &fs::Metadata) -> RootMeta {
    RootMeta { uid: meta.uid(), gid: meta.gid(), mode: meta.mode() & 0o7777, mtime: meta.mtime() }
}

/// Regular files (each inode once) and their bytes under `dir`.
fn count(dir: &Path) -> Result<(u64, u64), BackupError> {
    let (mut files, mut bytes) = (0, 0);
    let mut links = Links::default();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for name in sorted_names(&dir)? {
            let path = dir.join(name);
            let Some(meta) = metadata(&path)? else { continue };
            if meta.is_dir() {
                stack.push(path);
            } else if meta.is_file() && links.first(&meta, || ()).is_none() {
                files += 1;
                bytes += meta.len();
            }
        }
    }
    Ok((files, bytes))
}

/// The names in `dir`, sorted: only names are held, one directory's at a time per level.
fn sorted_names(dir: &Path) -> Result<Vec<std::ffi::OsString>, BackupError> {
    let mut names = Vec::new();
    for entry in fs::read_dir(dir).map_err(BackupError::io("list", dir))? {
        names.push(entry.map_err(BackupError::io("list", dir))?.file_name());
    }
    names.sort();
    Ok(names)
}

/// `None` for a path removed while a live copy walks: it is simply not in the backup.
fn metadata(path: &Path) -> Result<Option<fs::Metadata>, BackupError> {
    match fs::symlink_metadata(path) {
        Ok(meta) => Ok(Some(meta)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(BackupError::io("read", path)(e)),
    }
}

/// Inodes with several links seen so far, each with what its first name left and the links
/// still to come; an inode is forgotten once its last link went by.
struct Links<T> {
    seen: HashMap<(u64, u64), (T, u64)>,
}

impl<T> Default for Links<T> {
    fn default() -> Self {
        Links { seen: HashMap::new() }
    }
}

impl<T: Clone> Links<T> {
    /// What the first name of `meta`'s inode left (`None` for the first name, which leaves
    /// `first()`).
    fn first(&mut self, meta: &fs::Metadata, first: impl FnOnce() -> T) -> Option<T> {
        if meta.nlink() < 2 {
            return None;
        }
        let key = (meta.dev(), meta.ino());
        match self.seen.get_mut(&key) {
            Some((value, left)) => {
                let value = value.clone();
                *left = left.saturating_sub(1);
                if *left == 0 {
                    self.seen.remove(&key);
                }
                Some(value)
            }
            None => {
                self.seen.insert(key, (first(), meta.nlink() - 1));
                None
            }
        }
    }
}

/// Bytes read from a file at a time: large enough for few system calls, small enough that the
/// hash reads it while it is still in the CPU's cache.
const COPY_BUFFER: usize = 256 << 10;

/// One mount being written.
struct Tree<'a, W: Write> {
    tar: &'a mut tar::Builder<W>,
    id: &'a str,
    hasher: &'a Hasher,
    /// The checksum lines not written yet.
    sums: Sums,
    /// The first member of each inode with several links, for the later ones.
    links: Links<PathBuf>,
    files: u64,
    bytes: u64,
}

/// Files (path and size) whose checksums wait for the next list; the hasher has their digests.
#[derive(Default)]
struct Sums {
    files: Vec<(String, u64)>,
    path_bytes: usize,
}

impl<W: Write> Tree<'_, W> {
    fn walk(&mut self, dir: &Path, rel: &Path, out: &Reporter) -> Result<(), BackupError> {
        for name in sorted_names(dir)? {
            let path = dir.join(&name);
            let Some(meta) = metadata(&path)? else { continue };
            let rel = rel.join(name);
            let member = manifest::data_name(self.id, &rel);
            let mut header = header_for(&meta);
            let kind = meta.file_type();
            if kind.is_dir() {
                header.set_entry_type(tar::EntryType::Directory);
                self.tar.append_data(&mut header, &member, io::empty()).map_err(BackupError::Write)?;
                self.walk(&path, &rel, out)?;
            } else if kind.is_symlink() {
                let target = fs::read_link(&path).map_err(BackupError::io("read the link", &path))?;
                header.set_entry_type(tar::EntryType::Symlink);
                self.tar.append_link(&mut header, &member, &target).map_err(BackupError::Write)?;
            } else if kind.is_file() {
                self.file(&path, &meta, &member, &rel, header)?;
            } else {
                let what = if kind.is_fifo() || kind.is_socket() { "fifo or socket" } else { "device" };
                out.warn(format!(
                    "left out {} ({what}): only files, directories and links are backed up",
                    path.display()
                ));
            }
        }
        Ok(())
    }

    fn file(
        &mut self,
        path: &Path,
        meta: &fs::Metadata,
        member: &Path,
        rel: &Path,
        mut header: tar::Header,
    ) -> Result<(), BackupError> {
        if let Some(first) = self.links.first(meta, || member.to_path_buf()) {
            header.set_entry_type(tar::EntryType::Link);
            header.set_size(0);
            return self.tar.append_link(&mut header, member, first).map_err(BackupError::Write);
        }
        let mut file = File::options()
            .read(true)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
            .open(path)
            .map_err(BackupError::io("open", path))?;
        let size = meta.len();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_size(size);
        write_header(self.tar, &mut header, member).map_err(BackupError::Write)?;
        copy_hashed(&mut file, size, self.hasher, self.tar.get_mut())
            .map_err(BackupError::io("copy", path))?;
        self.files += 1;
        self.bytes += size;
        let shown = rel.to_string_lossy().into_owned();
        self.sums.path_bytes += shown.len();
        self.sums.files.push((shown, size));
        if self.sums.files.len() >= manifest::SUMS_FILES || self.sums.path_bytes >= manifest::SUMS_FLUSH_BYTES
        {
            self.flush_sums()?;
        }
        Ok(())
    }

    /// Writes the checksums of the files since the last list.
    fn flush_sums(&mut self) -> Result<(), BackupError> {
        let mut lines = Vec::new();
        for (path, size) in std::mem::take(&mut self.sums).files {
            let sha256 = self.hasher.digest().map_err(BackupError::Write)?;
            let sum = Sum { path, size, sha256 };
            serde_json::to_writer(&mut lines, &sum).map_err(|e| BackupError::Format(e.to_string()))?;
            lines.push(b'\n');
        }
        append_bytes(self.tar, &format!("{}{}", manifest::SUMS_PREFIX, self.id), &lines)
    }
}

/// Writes `header` for `member` straight to the output, after a GNU long-name member when the
/// name does not fit (as `tar::Builder` does), so the file's data can follow it unbuffered.
fn write_header<W: Write>(
    tar: &mut tar::Builder<W>,
    header: &mut tar::Header,
    member: &Path,
) -> io::Result<()> {
    if header.set_path(member).is_err() {
        let name = member.as_os_str().as_encoded_bytes();
        let mut long = tar::Header::new_gnu();
        long.set_path("././@LongLink")?;
        long.set_mode(0o644);
        long.set_mtime(0);
        long.set_size(name.len() as u64 + 1);
        long.set_entry_type(tar::EntryType::GNULongName);
        long.set_cksum();
        tar.append(&long, name.chain(&[0u8][..]))?;
        if let Some(gnu) = header.as_gnu_mut() {
            let short = name.len().min(gnu.name.len());
            gnu.name[..short].copy_from_slice(&name[..short]);
        }
    }
    header.set_cksum();
    tar.get_mut().write_all(header.as_bytes())
}

/// Copies `size` bytes of `file` to `out` through the hasher's buffers, which it hashes as the
/// file's data, then the tar padding. A file that shrinks during a live copy is padded with
/// zeros, one that grows is cut, so the header's size always holds; the checksum is of what was
/// written.
fn copy_hashed(file: &mut File, size: u64, hasher: &Hasher, out: &mut impl Write) -> io::Result<()> {
    let mut left = size;
    let mut ended = false;
    while left > 0 {
        let mut buf = hasher.buffer()?;
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = if ended { 0 } else { read_some(file, &mut buf[..want])? };
        let n = if n == 0 {
            ended = true;
            buf[..want].fill(0);
            want
        } else {
            n
        };
        out.write_all(&buf[..n])?;
        hasher.hash(buf, n)?;
        left -= n as u64;
    }
    hasher.end_file()?;
    let padding = (512 - size % 512) % 512;
    out.write_all(&[0u8; 512][..padding as usize])
}

fn read_some(file: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match file.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

fn header_for(meta: &fs::Metadata) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_mode(meta.mode() & 0o7777);
    header.set_uid(meta.uid().into());
    header.set_gid(meta.gid().into());
    header.set_mtime(meta.mtime().max(0) as u64);
    header.set_size(0);
    header
}

pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        text.push(char::from(DIGITS[usize::from(b >> 4)]));
        text.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    text
}

fn append_json<W: Write>(
    tar: &mut tar::Builder<W>,
    name: &str,
    value: &impl serde::Serialize,
) -> Result<(), BackupError> {
    let bytes = serde_json::to_vec_pretty(value).map_err(|e| BackupError::Format(e.to_string()))?;
    append_bytes(tar, name, &bytes)
}

fn append_bytes<W: Write>(tar: &mut tar::Builder<W>, name: &str, bytes: &[u8]) -> Result<(), BackupError> {
    let mut header = tar::Header::new_gnu();
    header.set_mode(0o600);
    header.set_size(bytes.len() as u64);
    header.set_mtime(crate::state::unix_now());
    tar.append_data(&mut header, name, bytes).map_err(BackupError::Write)
}
