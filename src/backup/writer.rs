//! Writes a backup stream from mounted trees (inside berth's helper container): a metadata walk
//! for the manifest's counts, then each tree in name order with its checksum list. Files are
//! streamed through a fixed buffer, so memory does not grow with their size.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::BackupError;
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
    for (mount, dir) in manifest.mounts.iter().zip(dirs) {
        let mut tree =
            Tree { tar: &mut tar, id: &mount.id, sums: Vec::new(), links: HashMap::new(), bytes: 0 };
        tree.walk(dir, Path::new(""), out)?;
        let (sums, bytes) = (tree.sums, tree.bytes);
        let mut lines = Vec::new();
        for sum in &sums {
            serde_json::to_writer(&mut lines, sum).map_err(|e| BackupError::Format(e.to_string()))?;
            lines.push(b'\n');
        }
        append_bytes(&mut tar, &format!("{}{}", manifest::SUMS_PREFIX, mount.id), &lines)?;
        end.mounts.push(Counts { id: mount.id.clone(), files: sums.len() as u64, bytes });
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
    let mut seen = std::collections::HashSet::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for (path, meta) in sorted_children(&dir)? {
            if meta.is_dir() {
                stack.push(path);
            } else if meta.is_file() && (meta.nlink() == 1 || seen.insert((meta.dev(), meta.ino()))) {
                files += 1;
                bytes += meta.len();
            }
        }
    }
    Ok((files, bytes))
}

fn sorted_children(dir: &Path) -> Result<Vec<(PathBuf, fs::Metadata)>, BackupError> {
    let mut children = Vec::new();
    for entry in fs::read_dir(dir).map_err(BackupError::io("list", dir))? {
        let entry = entry.map_err(BackupError::io("list", dir))?;
        let path = entry.path();
        match fs::symlink_metadata(&path) {
            Ok(meta) => children.push((path, meta)),
            // Removed while a live copy walks: it is simply not in the backup.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(BackupError::io("read", &path)(e)),
        }
    }
    children.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(children)
}

/// One mount being written.
struct Tree<'a, W: Write> {
    tar: &'a mut tar::Builder<W>,
    id: &'a str,
    sums: Vec<Sum>,
    /// The first member of each inode with several links, for the later ones.
    links: HashMap<(u64, u64), PathBuf>,
    bytes: u64,
}

impl<W: Write> Tree<'_, W> {
    fn walk(&mut self, dir: &Path, rel: &Path, out: &Reporter) -> Result<(), BackupError> {
        for (path, meta) in sorted_children(dir)? {
            let Some(name) = path.file_name() else { continue };
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
        if meta.nlink() > 1 {
            let key = (meta.dev(), meta.ino());
            if let Some(first) = self.links.get(&key) {
                header.set_entry_type(tar::EntryType::Link);
                header.set_size(0);
                let first = first.clone();
                return self.tar.append_link(&mut header, member, first).map_err(BackupError::Write);
            }
            self.links.insert(key, member.to_path_buf());
        }
        let file = File::options()
            .read(true)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
            .open(path)
            .map_err(BackupError::io("open", path))?;
        let size = meta.len();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_size(size);
        // A file that shrinks during a live copy is padded, one that grows is cut, so the
        // header's size always holds; the checksum is of what was written.
        let data = file.take(size).chain(io::repeat(0)).take(size);
        let mut hashing = Hashing { inner: data, hasher: Sha256::new() };
        self.tar.append_data(&mut header, member, &mut hashing).map_err(BackupError::Write)?;
        self.bytes += size;
        self.sums.push(Sum {
            path: rel.to_string_lossy().into_owned(),
            size,
            sha256: hex(&hashing.hasher.finalize()),
        });
        Ok(())
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

/// A reader that hashes what passes through it.
pub struct Hashing<R> {
    pub inner: R,
    pub hasher: Sha256,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
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
