//! Writes a backup stream from mounted trees (on the host, or inside berth's helper container
//! for volumes): a metadata walk for the manifest's counts, then each tree in name order with
//! its checksum lists. A file's bytes are read once into one of a few fixed buffers, written
//! from there and hashed there by the [`Hasher`] thread meanwhile; checksums go out in lists of
//! at most [`manifest::SUMS_FILES`] files, so memory does not grow with the size of the files or
//! their number. Both walks go through directory handles (see [`TreeDir`]), never through
//! paths, so a tree a live app rearranges cannot lead the walk outside it.

use std::collections::HashMap;
use std::ffi::{CStr, CString, OsStr};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags, Stat};
use rustix::io::Errno;

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
        let root = TreeDir::open(dir)?;
        mount.root = root_meta(&root.stat()?);
        let (files, bytes) = count(root)?;
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
        tree.walk(&TreeDir::open(dir)?, Path::new(""), out)?;
        // Every mount ends with a list, an empty one too: a restore knows its data is whole.
        tree.flush_sums()?;
        end.mounts.push(Counts { id: mount.id.clone(), files: tree.files, bytes: tree.bytes });
    }
    append_json(&mut tar, manifest::END, &end)?;
    tar.into_inner().and_then(|mut out| out.flush()).map_err(BackupError::Write)
}

pub fn root_meta(stat: &Stat) -> RootMeta {
    RootMeta { uid: stat.st_uid, gid: stat.st_gid, mode: stat.st_mode & 0o7777, mtime: stat.st_mtime }
}

/// Regular files (each inode once) and their bytes under `root`.
fn count(root: TreeDir) -> Result<(u64, u64), BackupError> {
    let (mut files, mut bytes) = (0, 0);
    let mut links = Links::default();
    let mut stack = vec![root];
    while let Some(dir) = stack.pop() {
        for name in dir.names()? {
            let Some(stat) = dir.stat_of(&name)? else { continue };
            match FileType::from_raw_mode(stat.st_mode) {
                FileType::Directory => stack.extend(dir.child(&name)?),
                FileType::RegularFile if links.first(&stat, || ()).is_none() => {
                    files += 1;
                    bytes += u64::try_from(stat.st_size).unwrap_or(0);
                }
                _ => {}
            }
        }
    }
    Ok((files, bytes))
}

/// A directory of a tree, held open: what is below it is listed, inspected and opened relative
/// to this handle, never through a path, and never through a symlink (`O_NOFOLLOW`,
/// `AT_SYMLINK_NOFOLLOW`). A directory a live app swaps for a symlink mid-walk is then the
/// link it now is, or left out; the link's target is never read. That is what lets the host
/// read an app's directories itself: no link an app planted reaches the host's files.
struct TreeDir {
    fd: OwnedFd,
    /// For messages only.
    path: PathBuf,
}

/// Directories only, never through a symlink, not inherited by children.
const DIR_FLAGS: OFlags =
    OFlags::RDONLY.union(OFlags::DIRECTORY).union(OFlags::NOFOLLOW).union(OFlags::CLOEXEC);

/// An entry that went away (or changed kind) since it was listed: a live copy leaves it out.
fn gone(errno: Errno) -> bool {
    matches!(errno, Errno::NOENT | Errno::NOTDIR | Errno::LOOP)
}

impl TreeDir {
    /// The root of a mount, which must be a directory, not a link to one.
    fn open(path: &Path) -> Result<TreeDir, BackupError> {
        let fd =
            rfs::open(path, DIR_FLAGS, Mode::empty()).map_err(|e| BackupError::io("open", path)(e.into()))?;
        Ok(TreeDir { fd, path: path.to_path_buf() })
    }

    fn path_of(&self, name: &CStr) -> PathBuf {
        self.path.join(OsStr::from_bytes(name.to_bytes()))
    }

    fn stat(&self) -> Result<Stat, BackupError> {
        rfs::fstat(&self.fd).map_err(|e| BackupError::io("read", &self.path)(e.into()))
    }

    /// The names in the directory, sorted: only names are held, one directory's at a time per
    /// level.
    fn names(&self) -> Result<Vec<CString>, BackupError> {
        let list = |e: Errno| BackupError::io("list", &self.path)(e.into());
        let mut names = Vec::new();
        for entry in rfs::Dir::read_from(&self.fd).map_err(list)? {
            let name = entry.map_err(list)?.file_name().to_owned();
            if name.as_bytes() != b"." && name.as_bytes() != b".." {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }

    /// The entry itself (a link, not its target); `None` once it is gone.
    fn stat_of(&self, name: &CStr) -> Result<Option<Stat>, BackupError> {
        match rfs::statat(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat) => Ok(Some(stat)),
            Err(e) if gone(e) => Ok(None),
            Err(e) => Err(BackupError::io("read", &self.path_of(name))(e.into())),
        }
    }

    fn child(&self, name: &CStr) -> Result<Option<TreeDir>, BackupError> {
        match rfs::openat(&self.fd, name, DIR_FLAGS, Mode::empty()) {
            Ok(fd) => Ok(Some(TreeDir { fd, path: self.path_of(name) })),
            Err(e) if gone(e) => Ok(None),
            Err(e) => Err(BackupError::io("open", &self.path_of(name))(e.into())),
        }
    }

    fn file(&self, name: &CStr) -> Result<Option<File>, BackupError> {
        let flags = OFlags::RDONLY.union(OFlags::NOFOLLOW).union(OFlags::CLOEXEC);
        match rfs::openat(&self.fd, name, flags, Mode::empty()) {
            Ok(fd) => Ok(Some(File::from(fd))),
            Err(e) if gone(e) => Ok(None),
            Err(e) => Err(BackupError::io("open", &self.path_of(name))(e.into())),
        }
    }

    fn link(&self, name: &CStr) -> Result<Option<PathBuf>, BackupError> {
        match rfs::readlinkat(&self.fd, name, Vec::new()) {
            Ok(target) => Ok(Some(PathBuf::from(OsStr::from_bytes(target.as_bytes())))),
            Err(e) if gone(e) || e == Errno::INVAL => Ok(None),
            Err(e) => Err(BackupError::io("read the link", &self.path_of(name))(e.into())),
        }
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
    fn first(&mut self, stat: &Stat, first: impl FnOnce() -> T) -> Option<T> {
        if stat.st_nlink < 2 {
            return None;
        }
        let key = (stat.st_dev, stat.st_ino);
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
                self.seen.insert(key, (first(), stat.st_nlink - 1));
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
    fn walk(&mut self, dir: &TreeDir, rel: &Path, out: &Reporter) -> Result<(), BackupError> {
        for name in dir.names()? {
            let Some(stat) = dir.stat_of(&name)? else { continue };
            let rel = rel.join(OsStr::from_bytes(name.to_bytes()));
            let member = manifest::data_name(self.id, &rel);
            let mut header = header_for(&stat);
            match FileType::from_raw_mode(stat.st_mode) {
                FileType::Directory => {
                    let Some(child) = dir.child(&name)? else { continue };
                    header.set_entry_type(tar::EntryType::Directory);
                    self.tar.append_data(&mut header, &member, io::empty()).map_err(BackupError::Write)?;
                    self.walk(&child, &rel, out)?;
                }
                FileType::Symlink => {
                    let Some(target) = dir.link(&name)? else { continue };
                    header.set_entry_type(tar::EntryType::Symlink);
                    self.tar.append_link(&mut header, &member, &target).map_err(BackupError::Write)?;
                }
                FileType::RegularFile => self.file(dir, &name, &stat, &member, &rel, header)?,
                kind => {
                    let what = if matches!(kind, FileType::Fifo | FileType::Socket) {
                        "fifo or socket"
                    } else {
                        "device"
                    };
                    out.warn(format!(
                        "left out {} ({what}): only files, directories and links are backed up",
                        dir.path_of(&name).display()
                    ));
                }
            }
        }
        Ok(())
    }

    fn file(
        &mut self,
        dir: &TreeDir,
        name: &CStr,
        stat: &Stat,
        member: &Path,
        rel: &Path,
        mut header: tar::Header,
    ) -> Result<(), BackupError> {
        if let Some(first) = self.links.first(stat, || member.to_path_buf()) {
            header.set_entry_type(tar::EntryType::Link);
            header.set_size(0);
            return self.tar.append_link(&mut header, member, first).map_err(BackupError::Write);
        }
        let Some(mut file) = dir.file(name)? else { return Ok(()) };
        let size = u64::try_from(stat.st_size).unwrap_or(0);
        header.set_entry_type(tar::EntryType::Regular);
        header.set_size(size);
        write_header(self.tar, &mut header, member).map_err(BackupError::Write)?;
        copy_hashed(&mut file, size, self.hasher, self.tar.get_mut())
            .map_err(BackupError::io("copy", &dir.path_of(name)))?;
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

fn header_for(stat: &Stat) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_mode(stat.st_mode & 0o7777);
    header.set_uid(stat.st_uid.into());
    header.set_gid(stat.st_gid.into());
    header.set_mtime(stat.st_mtime.max(0) as u64);
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
