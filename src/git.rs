//! Git: the bare repository each app is pushed to; reading a pushed commit; streaming its tree as
//! a build context; installing hooks.
//!
//! During `pre-receive` the pushed objects are still in git's quarantine directory, which git
//! names only in the hook's environment (`GIT_OBJECT_DIRECTORY`, with the repository's own objects
//! in `GIT_ALTERNATE_OBJECT_DIRECTORIES`), so a hook opens the repository with
//! [`PushedRepo::open_from_env`]; admin commands use [`PushedRepo::open`]. Nothing is ever checked
//! out: files are read from the commit's tree and the build context is written blob by blob.

use std::ffi::OsStr;
use std::fs::{self, File, Permissions};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use git2::{ErrorCode, ObjectType, Oid};

#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("unable to create the git repository {path}: {message}")]
    Init { path: PathBuf, message: String },
    #[error("unable to open the git repository {path}: {message}")]
    Open { path: PathBuf, message: String },
    #[error(
        "unable to open the pushed git repository from the environment git gives its hooks: \
         {message}"
    )]
    OpenFromEnv { message: String },
    #[error("{given:?} is not a commit id; give the full 40-digit hexadecimal id")]
    BadCommitId { given: String },
    #[error("commit {id} is not in the repository")]
    MissingObject { id: Oid },
    #[error("{} is a {kind}, not a commit", short(.id))]
    NotACommit { id: Oid, kind: &'static str },
    #[error(
        "{path} in commit {} is a {kind}; berth reads {path} only as a regular file",
        short(.commit)
    )]
    NotARegularFile { path: String, commit: Oid, kind: &'static str },
    #[error("{path} in commit {} is {size} bytes; the limit is {limit}", short(.commit))]
    TooLarge { path: String, commit: Oid, size: usize, limit: usize },
    #[error("unable to read {what} from the git repository: {message}")]
    Read { what: String, message: String },
    #[error("unable to stream the tree of commit {} as a build context: {source}", short(.commit))]
    Archive { commit: Oid, source: io::Error },
    #[error("unable to install the git hook {path}: {source}")]
    Hook { path: PathBuf, source: io::Error },
}

/// The abbreviated id used in messages.
fn short(id: &Oid) -> String {
    let mut hex = id.to_string();
    hex.truncate(7);
    hex
}

fn read_error(what: impl Into<String>) -> impl FnOnce(git2::Error) -> GitError {
    let what = what.into();
    move |e| GitError::Read { what, message: e.message().to_string() }
}

fn archive_error(commit: Oid) -> impl FnOnce(io::Error) -> GitError {
    move |source| GitError::Archive { commit, source }
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

/// Copies every ref (and the objects they reach) of one local repository into another, as
/// `git fetch <from> '+refs/*:refs/*'` does.
pub fn copy_refs(from: &Path, to: &Path) -> Result<(), GitError> {
    let open = |path: &Path| {
        git2::Repository::open_bare(path)
            .map_err(|e| GitError::Open { path: path.to_path_buf(), message: e.message().to_string() })
    };
    open(from)?;
    let target = open(to)?;
    let url = from.to_str().ok_or_else(|| GitError::Open {
        path: from.to_path_buf(),
        message: "the path is not UTF-8".to_string(),
    })?;
    let mut remote = target.remote_anonymous(url).map_err(read_error(format!("the refs of {url}")))?;
    remote.fetch(&["+refs/*:refs/*"], None, None).map_err(read_error(format!("the refs of {url}")))
}

/// An app's repository, opened to read pushed commits.
pub struct PushedRepo {
    repo: git2::Repository,
}

impl std::fmt::Debug for PushedRepo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PushedRepo").field("path", &self.repo.path()).finish()
    }
}

/// Git's normalised tree entry modes.
const MODE_FILE: i32 = 0o100644;
const MODE_EXECUTABLE: i32 = 0o100755;
const MODE_SYMLINK: i32 = 0o120000;
const MODE_TREE: i32 = 0o040000;
const MODE_SUBMODULE: i32 = 0o160000;

/// Longer symlink targets than this cannot be created on Linux (`PATH_MAX`).
const MAX_SYMLINK_TARGET: usize = 4096;
/// How much of its pack files libgit2 may keep mapped at once, in windows of `PACK_WINDOW`.
/// Its defaults (1 GiB windows, 8 GiB in all) let the resident memory of a hook streaming a
/// large repo grow with the repo; the hook sets these before starting any thread
/// (`git2::opts::set_mwindow_*` are not thread safe).
pub const MAPPED_PACK_LIMIT: usize = 32 << 20;
pub const PACK_WINDOW: usize = 8 << 20;

/// Loose blobs larger than this are streamed rather than loaded whole.
const STREAM_ABOVE: usize = 256 << 10;

/// libgit2 re-hashes every object it reads (SHA-1 with collision detection), which made
/// streaming a build context several times slower than `git archive`. Git does not re-hash on
/// read: an object's id was computed from its content when the push was received (index-pack,
/// unpack-objects), and zlib still checks every object it inflates. Process-wide in libgit2.
fn skip_rehashing_on_read() {
    git2::opts::strict_hash_verification(false);
}

impl PushedRepo {
    /// Opens the repository a git hook runs for, seeing the objects of the push being received
    /// (still in quarantine during `pre-receive`).
    pub fn open_from_env() -> Result<Self, GitError> {
        skip_rehashing_on_read();
        git2::Repository::open_from_env()
            .map(|repo| PushedRepo { repo })
            .map_err(|e| GitError::OpenFromEnv { message: e.message().to_string() })
    }

    /// Opens a repository by its path, outside a hook.
    pub fn open(path: &Path) -> Result<Self, GitError> {
        skip_rehashing_on_read();
        git2::Repository::open(path)
            .map(|repo| PushedRepo { repo })
            .map_err(|e| GitError::Open { path: path.to_path_buf(), message: e.message().to_string() })
    }

    /// The id of a commit's tree.
    pub fn commit_tree(&self, commit: &str) -> Result<Oid, GitError> {
        Ok(self.find_commit(commit)?.tree_id())
    }

    /// The content of the regular file at `path` (`/`-separated, relative to the root) in a
    /// commit; `None` when there is nothing at `path`. Anything else there (a symlink, a directory,
    /// a submodule), or a file larger than `max_bytes`, is an error; the size is checked before
    /// the blob is loaded.
    pub fn read_file(&self, commit: &str, path: &str, max_bytes: usize) -> Result<Option<Vec<u8>>, GitError> {
        let commit = self.find_commit(commit)?;
        let id = commit.id();
        let what = || format!("{path} in commit {}", short(&id));
        let tree = commit.tree().map_err(read_error(what()))?;
        let entry = match tree.get_path(Path::new(path)) {
            Ok(entry) => entry,
            Err(e) if e.code() == ErrorCode::NotFound => return Ok(None),
            Err(e) => return Err(read_error(what())(e)),
        };
        let kind = match entry.filemode() {
            MODE_FILE | MODE_EXECUTABLE => None,
            MODE_SYMLINK => Some("symlink"),
            MODE_TREE => Some("directory"),
            MODE_SUBMODULE => Some("submodule"),
            _ => Some("tree entry of an unknown kind"),
        };
        if let Some(kind) = kind {
            return Err(GitError::NotARegularFile { path: path.to_string(), commit: id, kind });
        }
        let odb = self.repo.odb().map_err(read_error(what()))?;
        let (size, _) = odb.read_header(entry.id()).map_err(read_error(what()))?;
        if size > max_bytes {
            return Err(GitError::TooLarge { path: path.to_string(), commit: id, size, limit: max_bytes });
        }
        let blob = self.repo.find_blob(entry.id()).map_err(read_error(what()))?;
        Ok(Some(blob.content().to_vec()))
    }

    /// Writes a tar archive of a commit's tree to `out`: directories, regular files with mode
    /// 0644 or 0755, symlinks as symlinks; submodules are left out. Every entry is owned by root
    /// and dated at the commit time, so the same commit always gives the same bytes. Blobs are
    /// written one at a time (large loose ones streamed), never the whole tree at once.
    ///
    /// On error, nothing more is written to `out` (in particular no end-of-archive marker), so a
    /// reader cannot take a truncated archive for a complete one.
    pub fn write_tree_tar(&self, commit: &str, out: &mut dyn Write) -> Result<(), GitError> {
        let commit = self.find_commit(commit)?;
        let id = commit.id();
        let tree = commit.tree().map_err(read_error(format!("the tree of commit {}", short(&id))))?;
        let mtime = u64::try_from(commit.time().seconds()).unwrap_or(0);
        let mut builder = tar::Builder::new(Fuse(Some(out)));
        let result = self
            .append_tree(&mut builder, tree, id, mtime)
            .and_then(|()| builder.finish().map_err(archive_error(id)))
            .and_then(|()| builder.get_mut().flush().map_err(archive_error(id)));
        if result.is_err() {
            // The builder's drop would otherwise end the archive.
            builder.get_mut().0 = None;
        }
        result
    }

    fn find_commit(&self, commit: &str) -> Result<git2::Commit<'_>, GitError> {
        let bad = || GitError::BadCommitId { given: commit.to_string() };
        if commit.len() != 40 || !commit.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad());
        }
        let id = Oid::from_str(commit).map_err(|_| bad())?;
        let what = || format!("commit {id}");
        let odb = self.repo.odb().map_err(read_error(what()))?;
        let kind = match odb.read_header(id) {
            Ok((_, kind)) => kind,
            Err(e) if e.code() == ErrorCode::NotFound => return Err(GitError::MissingObject { id }),
            Err(e) => return Err(read_error(what())(e)),
        };
        if kind != ObjectType::Commit {
            return Err(GitError::NotACommit { id, kind: kind.str() });
        }
        self.repo.find_commit(id).map_err(read_error(what()))
    }

    /// Appends every entry under `root`, depth first in tree order (as `git archive` does).
    fn append_tree(
        &self,
        builder: &mut tar::Builder<Fuse<'_>>,
        root: git2::Tree<'_>,
        commit: Oid,
        mtime: u64,
    ) -> Result<(), GitError> {
        struct Frame<'r> {
            prefix: Vec<u8>,
            tree: git2::Tree<'r>,
            next: usize,
        }
        let odb = self.repo.odb().map_err(read_error(format!("commit {}", short(&commit))))?;
        let mut stack = vec![Frame { prefix: Vec::new(), tree: root, next: 0 }];
        while let Some(frame) = stack.last_mut() {
            let (path, id, mode) = {
                let Some(entry) = frame.tree.get(frame.next) else {
                    stack.pop();
                    continue;
                };
                let mut path = frame.prefix.clone();
                path.extend_from_slice(entry.name_bytes());
                (path, entry.id(), entry.filemode())
            };
            frame.next += 1;
            // Built only for an error: formatting it for every entry was a tenth of the time.
            let what =
                |path: &[u8]| format!("{} in commit {}", String::from_utf8_lossy(path), short(&commit));
            match mode {
                MODE_TREE => {
                    let mut dir = path;
                    dir.push(b'/');
                    let mut header = new_header(tar::EntryType::Directory, 0o755, 0, mtime)
                        .map_err(archive_error(commit))?;
                    builder
                        .append_data(&mut header, as_path(&dir), io::empty())
                        .map_err(archive_error(commit))?;
                    let tree =
                        self.repo.find_tree(id).map_err(|e| read_error(what(&dir[..dir.len() - 1]))(e))?;
                    stack.push(Frame { prefix: dir, tree, next: 0 });
                }
                MODE_FILE | MODE_EXECUTABLE => {
                    let perm = if mode == MODE_EXECUTABLE { 0o755 } else { 0o644 };
                    let mut header =
                        new_header(tar::EntryType::Regular, perm, 0, mtime).map_err(archive_error(commit))?;
                    // Large loose objects are streamed; libgit2 loads packed ones whole. Small
                    // blobs are loaded whole too: asking for a stream first costs a failed
                    // lookup of a loose file per packed blob, a quarter of the time of a large tree.
                    let (size, _) = odb.read_header(id).map_err(|e| read_error(what(&path))(e))?;
                    let stream = if size > STREAM_ABOVE { odb.reader(id).ok() } else { None };
                    match stream {
                        Some((reader, size, ObjectType::Blob)) => {
                            header.set_size(size as u64);
                            let data = Exactly { inner: reader, left: size as u64 };
                            builder
                                .append_data(&mut header, as_path(&path), data)
                                .map_err(archive_error(commit))?;
                        }
                        _ => {
                            let blob = self.repo.find_blob(id).map_err(|e| read_error(what(&path))(e))?;
                            header.set_size(blob.size() as u64);
                            builder
                                .append_data(&mut header, as_path(&path), blob.content())
                                .map_err(archive_error(commit))?;
                        }
                    }
                }
                MODE_SYMLINK => {
                    let (size, _) = odb.read_header(id).map_err(|e| read_error(what(&path))(e))?;
                    if size > MAX_SYMLINK_TARGET {
                        return Err(GitError::TooLarge {
                            path: String::from_utf8_lossy(&path).into_owned(),
                            commit,
                            size,
                            limit: MAX_SYMLINK_TARGET,
                        });
                    }
                    let blob = self.repo.find_blob(id).map_err(|e| read_error(what(&path))(e))?;
                    let target = blob.content();
                    let mut header = new_header(tar::EntryType::Symlink, 0o777, 0, mtime)
                        .map_err(archive_error(commit))?;
                    if header.set_link_name_literal(target).is_ok() {
                        // Kept byte for byte (`append_link` would normalise short targets).
                        builder
                            .append_data(&mut header, as_path(&path), io::empty())
                            .map_err(archive_error(commit))?;
                    } else {
                        // Too long for the header: a GNU long-link entry carries it.
                        builder
                            .append_link(&mut header, as_path(&path), as_path(target))
                            .map_err(archive_error(commit))?;
                    }
                }
                // A submodule's content is not in this repository.
                MODE_SUBMODULE => {}
                other => {
                    return Err(GitError::Read {
                        what: what(&path),
                        message: format!("unknown tree entry mode {other:o}"),
                    });
                }
            }
        }
        Ok(())
    }
}

fn as_path(bytes: &[u8]) -> &Path {
    Path::new(OsStr::from_bytes(bytes))
}

fn new_header(kind: tar::EntryType, mode: u32, size: u64, mtime: u64) -> io::Result<tar::Header> {
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_size(size);
    header.set_mtime(mtime);
    header.set_uid(0);
    header.set_gid(0);
    header.set_username("root")?;
    header.set_groupname("root")?;
    Ok(header)
}

/// The archive's writer; `None` once the archive is abandoned, after which every write fails.
struct Fuse<'a>(Option<&'a mut dyn Write>);

impl Write for Fuse<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.0 {
            Some(out) => out.write(buf),
            None => Err(io::Error::other("the archive was abandoned")),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.0 {
            Some(out) => out.flush(),
            None => Err(io::Error::other("the archive was abandoned")),
        }
    }
}

/// Reads exactly `left` bytes from a blob stream (the size written in the tar header), failing
/// rather than writing a short entry.
struct Exactly<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Read for Exactly<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 || buf.is_empty() {
            return Ok(0);
        }
        let max = usize::try_from(self.left).map_or(buf.len(), |left| left.min(buf.len()));
        let n = self.inner.read(&mut buf[..max])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "a blob ended before its recorded size",
            ));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// The `PATH` berth's hooks run with, whatever the pusher's environment.
const HOOK_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Writes the repository's `pre-receive` and `post-receive` hooks: `sh` scripts that run
/// `berth-pre-receive` and `berth-post-receive` from `hook_dir` with `BERTH_ROOT` and `PATH` set
/// explicitly. Relative paths are made absolute (hooks run in the repository). Each hook is
/// replaced atomically, so installing again is harmless.
pub fn install_hooks(repo: &Path, hook_dir: &Path, berth_root: &Path) -> Result<(), GitError> {
    let opened = git2::Repository::open_bare(repo)
        .map_err(|e| GitError::Open { path: repo.to_path_buf(), message: e.message().to_string() })?;
    let hooks = opened.path().join("hooks");
    // `git push -o dry-run` reaches the hook only when the repository advertises push options.
    opened
        .config()
        .and_then(|mut config| config.set_bool("receive.advertisePushOptions", true))
        .map_err(|e| GitError::Open { path: repo.to_path_buf(), message: e.message().to_string() })?;
    let absolute = |path: &Path| {
        std::path::absolute(path).map_err(|source| GitError::Hook { path: hooks.clone(), source })
    };
    let hook_dir = absolute(hook_dir)?;
    let berth_root = absolute(berth_root)?;
    for (hook, binary) in [("pre-receive", "berth-pre-receive"), ("post-receive", "berth-post-receive")] {
        let script = hook_script(&berth_root, &hook_dir.join(binary));
        let path = hooks.join(hook);
        write_executable(&path, &script).map_err(|source| GitError::Hook { path, source })?;
    }
    Ok(())
}

fn hook_script(berth_root: &Path, binary: &Path) -> Vec<u8> {
    let mut script = Vec::new();
    script.extend_from_slice(b"#!/bin/sh\n# Installed by berth; re-install with `berth hooks:install`.\n");
    script.extend_from_slice(b"BERTH_ROOT=");
    script.extend_from_slice(&sh_quote(berth_root.as_os_str().as_bytes()));
    script.extend_from_slice(b"\nPATH=");
    script.extend_from_slice(&sh_quote(HOOK_PATH.as_bytes()));
    script.extend_from_slice(b"\nexport BERTH_ROOT PATH\nexec ");
    script.extend_from_slice(&sh_quote(binary.as_os_str().as_bytes()));
    script.extend_from_slice(b" \"$@\"\n");
    script
}

/// Quotes a word for `sh`: in single quotes, each embedded `'` written as `'\''`.
fn sh_quote(word: &[u8]) -> Vec<u8> {
    let mut quoted = vec![b'\''];
    for &byte in word {
        if byte == b'\'' {
            quoted.extend_from_slice(b"'\\''");
        } else {
            quoted.push(byte);
        }
    }
    quoted.push(b'\'');
    quoted
}

/// Temp file in the same directory, mode 0755, fsync, rename over the target, fsync the directory.
fn write_executable(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir)?;
    let mut temp = tempfile::NamedTempFile::new_in(dir)?;
    temp.write_all(bytes)?;
    temp.as_file().set_permissions(Permissions::from_mode(0o755))?;
    temp.as_file().sync_all()?;
    temp.persist(path).map_err(|e| e.error)?;
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::os::unix::fs::{MetadataExt, symlink};
    use std::process::{Command, Stdio};

    /// Committer and author date of every test commit.
    const COMMIT_TIME: u64 = 1_700_000_000;

    /// `git` isolated from the caller's configuration and from any repository named in the
    /// environment.
    fn git_command(dir: &Path) -> Command {
        let mut command = Command::new("git");
        command
            .current_dir(dir)
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_AUTHOR_NAME", "Test")
            .env("GIT_AUTHOR_EMAIL", "test@example.com")
            .env("GIT_COMMITTER_NAME", "Test")
            .env("GIT_COMMITTER_EMAIL", "test@example.com")
            .env("GIT_AUTHOR_DATE", format!("{COMMIT_TIME} +0000"))
            .env("GIT_COMMITTER_DATE", format!("{COMMIT_TIME} +0000"));
        for var in [
            "GIT_DIR",
            "GIT_WORK_TREE",
            "GIT_INDEX_FILE",
            "GIT_OBJECT_DIRECTORY",
            "GIT_ALTERNATE_OBJECT_DIRECTORIES",
            "GIT_QUARANTINE_PATH",
        ] {
            command.env_remove(var);
        }
        command
    }

    fn git(dir: &Path, args: &[&str]) -> String {
        let output = git_command(dir).args(args).output().unwrap();
        assert!(
            output.status.success(),
            "git {args:?} failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap().trim_end().to_string()
    }

    fn big_content() -> Vec<u8> {
        let mut state: u32 = 12345;
        (0..300_000)
            .map(|_| {
                state = state.wrapping_mul(1_103_515_245).wrapping_add(12345);
                (state >> 16) as u8
            })
            .collect()
    }

    const APP_TOML: &str = "[processes.web]\nmounts = []\n";
    const SUBMODULE_COMMIT: &str = "1234567890abcdef1234567890abcdef12345678";

    /// A bare repository (`app.git`) and a work repository (`work`) that pushes to it.
    struct Fixture {
        dir: tempfile::TempDir,
    }

    impl Fixture {
        fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            init_bare(&dir.path().join("app.git")).unwrap();
            let work = dir.path().join("work");
            fs::create_dir(&work).unwrap();
            git(&work, &["init", "-q", "-b", "main"]);
            Fixture { dir }
        }

        fn bare(&self) -> PathBuf {
            self.dir.path().join("app.git")
        }

        fn work(&self) -> PathBuf {
            self.dir.path().join("work")
        }

        /// Commits the work tree as it is and pushes it to `branch` of the bare repository.
        fn commit_and_push(&self, branch: &str) -> String {
            git(&self.work(), &["add", "-A"]);
            self.commit_index_and_push(branch)
        }

        /// Commits the index as it is and pushes it to `branch` of the bare repository.
        fn commit_index_and_push(&self, branch: &str) -> String {
            let work = self.work();
            git(&work, &["commit", "-q", "--allow-empty", "-m", branch]);
            let bare = self.bare();
            git(&work, &["push", "-q", bare.to_str().unwrap(), &format!("HEAD:refs/heads/{branch}")]);
            git(&work, &["rev-parse", "HEAD"])
        }

        /// A tree with every kind of entry, committed and pushed to `main`.
        fn push_everything(&self) -> String {
            let work = self.work();
            let write = |path: &str, content: &[u8]| {
                let path = work.join(path);
                fs::create_dir_all(path.parent().unwrap()).unwrap();
                fs::write(path, content).unwrap();
            };
            write("app.toml", APP_TOML.as_bytes());
            write("Dockerfile", b"FROM berth-base\nCOPY . /app\n");
            write("bin/run.sh", b"#!/bin/sh\necho hi\n");
            fs::set_permissions(work.join("bin/run.sh"), Permissions::from_mode(0o755)).unwrap();
            write("src/deep/er/file.txt", b"deep\n");
            write("empty.txt", b"");
            write("big.bin", &big_content());
            write("h\u{e9}llo w\u{f6}rld.txt", "unicode\n".as_bytes());
            write("it's \"quoted\".txt", b"quotes\n");
            let long = format!("{}/{}/{}.txt", "l".repeat(60), "m".repeat(90), "n".repeat(120));
            write(&long, b"long path\n");
            symlink("src/deep/er/file.txt", work.join("link-to-file")).unwrap();
            symlink("src", work.join("link-to-dir")).unwrap();
            symlink("/etc/hostname", work.join("absolute-link")).unwrap();
            symlink("../outside/./x", work.join("src/dangling")).unwrap();
            symlink("t".repeat(150), work.join("long-link")).unwrap();
            git(&work, &["add", "-A"]);
            git(&work, &["update-index", "--add", "--cacheinfo", &format!("160000,{SUBMODULE_COMMIT},sub")]);
            self.commit_index_and_push("main")
        }
    }

    #[derive(Debug, PartialEq)]
    enum Node {
        Dir { mode: u32, mtime: i64 },
        File { mode: u32, mtime: i64, content: Vec<u8> },
        Symlink { target: PathBuf },
    }

    fn untar(archive: &[u8], dir: &Path) {
        fs::create_dir_all(dir).unwrap();
        let mut child = Command::new("tar")
            .args(["-x", "-p", "--no-same-owner", "-f", "-", "-C"])
            .arg(dir)
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(archive).unwrap();
        assert!(child.wait().unwrap().success());
    }

    fn snapshot(root: &Path) -> BTreeMap<PathBuf, Node> {
        fn walk(root: &Path, dir: &Path, nodes: &mut BTreeMap<PathBuf, Node>) {
            for entry in fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                let meta = fs::symlink_metadata(&path).unwrap();
                let mode = meta.mode() & 0o7777;
                let node = if meta.file_type().is_symlink() {
                    Node::Symlink { target: fs::read_link(&path).unwrap() }
                } else if meta.is_dir() {
                    walk(root, &path, nodes);
                    Node::Dir { mode, mtime: meta.mtime() }
                } else {
                    Node::File { mode, mtime: meta.mtime(), content: fs::read(&path).unwrap() }
                };
                nodes.insert(path.strip_prefix(root).unwrap().to_path_buf(), node);
            }
        }
        let mut nodes = BTreeMap::new();
        walk(root, root, &mut nodes);
        nodes
    }

    /// Extracts `write_tree_tar` and `git archive` output of `sha` and compares the trees.
    fn assert_matches_git_archive(fixture: &Fixture, sha: &str, label: &str) {
        let bare = fixture.bare();
        let repo = PushedRepo::open(&bare).unwrap();
        let mut ours = Vec::new();
        repo.write_tree_tar(sha, &mut ours).unwrap();
        let theirs = git_command(&bare)
            .args(["-c", "tar.umask=022", "archive", "--format=tar", sha])
            .output()
            .unwrap();
        assert!(theirs.status.success());

        let ours_dir = fixture.dir.path().join(format!("ours-{label}"));
        let theirs_dir = fixture.dir.path().join(format!("theirs-{label}"));
        untar(&ours, &ours_dir);
        untar(&theirs.stdout, &theirs_dir);
        // `git archive` writes a submodule as an empty directory; berth leaves it out.
        fs::remove_dir(theirs_dir.join("sub")).unwrap();

        let ours = snapshot(&ours_dir);
        let theirs = snapshot(&theirs_dir);
        assert_eq!(ours.keys().collect::<Vec<_>>(), theirs.keys().collect::<Vec<_>>(), "{label}");
        for (path, node) in &ours {
            assert!(node == &theirs[path], "{label}: {} differs", path.display());
        }
        assert_eq!(
            ours[Path::new("bin/run.sh")],
            Node::File { mode: 0o755, mtime: COMMIT_TIME as i64, content: b"#!/bin/sh\necho hi\n".to_vec() }
        );
        assert!(matches!(ours[Path::new("app.toml")], Node::File { mode: 0o644, .. }));
        assert!(matches!(ours[Path::new("src")], Node::Dir { mode: 0o755, .. }));
        assert_eq!(ours[Path::new("src/dangling")], Node::Symlink { target: "../outside/./x".into() });
        assert_eq!(ours[Path::new("long-link")], Node::Symlink { target: "t".repeat(150).into() });
        assert!(!ours.contains_key(Path::new("sub")));
    }

    fn loose_object_count(bare: &Path) -> u64 {
        let counts = git(bare, &["count-objects", "-v"]);
        let line = counts.lines().find(|l| l.starts_with("count: ")).unwrap();
        line["count: ".len()..].parse().unwrap()
    }

    #[test]
    fn tree_tar_matches_git_archive_for_loose_and_packed_objects() {
        let fixture = Fixture::new();
        let sha = fixture.push_everything();
        // A small push is unpacked into loose objects; the large ones (big.bin) are streamed.
        assert!(loose_object_count(&fixture.bare()) > 0);
        assert_matches_git_archive(&fixture, &sha, "loose");
        // Packed objects are loaded one blob at a time instead.
        git(&fixture.bare(), &["gc", "-q", "--prune=now"]);
        assert_eq!(loose_object_count(&fixture.bare()), 0);
        assert_matches_git_archive(&fixture, &sha, "packed");
    }

    #[test]
    fn tree_tar_is_deterministic_and_dated_at_the_commit() {
        let fixture = Fixture::new();
        let sha = fixture.push_everything();
        let repo = PushedRepo::open(&fixture.bare()).unwrap();
        let mut first = Vec::new();
        repo.write_tree_tar(&sha, &mut first).unwrap();
        let mut second = Vec::new();
        repo.write_tree_tar(&sha, &mut second).unwrap();
        assert_eq!(first, second);

        let mut archive = tar::Archive::new(first.as_slice());
        let mut paths = Vec::new();
        for entry in archive.entries().unwrap() {
            let entry = entry.unwrap();
            let header = entry.header();
            assert_eq!(header.mtime().unwrap(), COMMIT_TIME);
            assert_eq!((header.uid().unwrap(), header.gid().unwrap()), (0, 0));
            paths.push(entry.path().unwrap().to_string_lossy().into_owned());
        }
        // Depth first, in tree order, directories before their content.
        let position = |p: &str| paths.iter().position(|q| q == p).unwrap();
        assert!(position("src/") < position("src/dangling"));
        assert!(position("src/dangling") < position("src/deep/"));
        assert!(position("src/deep/") < position("src/deep/er/file.txt"));
        assert!(position("bin/") < position("bin/run.sh"));
        assert!(!paths.iter().any(|p| p.starts_with("sub")));
    }

    #[test]
    fn failed_archive_is_not_terminated() {
        struct FailAfter(usize, Vec<u8>);
        impl Write for FailAfter {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                if self.1.len() + buf.len() > self.0 {
                    return Err(io::Error::other("disk full"));
                }
                self.1.extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let fixture = Fixture::new();
        let sha = fixture.push_everything();
        let repo = PushedRepo::open(&fixture.bare()).unwrap();
        let mut out = FailAfter(4096, Vec::new());
        let error = repo.write_tree_tar(&sha, &mut out).unwrap_err();
        assert!(
            error.to_string().starts_with(&format!(
                "unable to stream the tree of commit {} as a build context: disk full",
                &sha[..7]
            )),
            "{error}"
        );
        // Nothing was written after the failure: no end-of-archive blocks.
        assert!(out.1.len() <= 4096 && !out.1.ends_with(&[0; 1024]));
    }

    #[test]
    fn read_file_reads_regular_files_only() {
        let fixture = Fixture::new();
        let sha = fixture.push_everything();
        let repo = PushedRepo::open(&fixture.bare()).unwrap();
        let short = &sha[..7];

        let app = repo.read_file(&sha, "app.toml", 1 << 20).unwrap();
        assert_eq!(app.as_deref(), Some(APP_TOML.as_bytes()));
        // The limit is inclusive.
        assert!(repo.read_file(&sha, "app.toml", APP_TOML.len()).unwrap().is_some());
        assert_eq!(repo.read_file(&sha, "src/deep/er/file.txt", 100).unwrap().unwrap(), b"deep\n");
        assert_eq!(repo.read_file(&sha, "bin/run.sh", 100).unwrap().unwrap(), b"#!/bin/sh\necho hi\n");
        assert_eq!(repo.read_file(&sha, "missing.toml", 100).unwrap(), None);
        assert_eq!(repo.read_file(&sha, "app.toml/inside", 100).unwrap(), None);
        assert_eq!(repo.read_file(&sha, "src/missing/file", 100).unwrap(), None);

        let error = repo.read_file(&sha, "link-to-file", 100).unwrap_err();
        assert_eq!(
            error.to_string(),
            format!(
                "link-to-file in commit {short} is a symlink; berth reads link-to-file only as a regular file"
            )
        );
        let error = repo.read_file(&sha, "src", 100).unwrap_err().to_string();
        assert!(error.contains(&format!("src in commit {short} is a directory")), "{error}");
        let error = repo.read_file(&sha, "sub", 100).unwrap_err().to_string();
        assert!(error.contains(&format!("sub in commit {short} is a submodule")), "{error}");

        let error = repo.read_file(&sha, "big.bin", 1000).unwrap_err();
        assert!(matches!(error, GitError::TooLarge { size: 300_000, limit: 1000, .. }));
        assert_eq!(
            error.to_string(),
            format!("big.bin in commit {short} is 300000 bytes; the limit is 1000")
        );
        let error = repo.read_file(&sha, "app.toml", APP_TOML.len() - 1).unwrap_err();
        assert!(matches!(error, GitError::TooLarge { .. }), "{error}");
    }

    #[test]
    fn read_file_rejects_an_app_toml_symlink() {
        let fixture = Fixture::new();
        let work = fixture.work();
        fs::write(work.join("real.toml"), APP_TOML).unwrap();
        symlink("real.toml", work.join("app.toml")).unwrap();
        let sha = fixture.commit_and_push("main");
        let repo = PushedRepo::open(&fixture.bare()).unwrap();
        let error = repo.read_file(&sha, "app.toml", 1 << 20).unwrap_err();
        assert_eq!(
            error.to_string(),
            format!(
                "app.toml in commit {} is a symlink; berth reads app.toml only as a regular file",
                &sha[..7]
            )
        );
    }

    #[test]
    fn commit_ids_are_checked() {
        let fixture = Fixture::new();
        let sha = fixture.push_everything();
        let repo = PushedRepo::open(&fixture.bare()).unwrap();

        let tree = git(&fixture.bare(), &["rev-parse", &format!("{sha}^{{tree}}")]);
        assert_eq!(repo.commit_tree(&sha).unwrap().to_string(), tree);
        assert_eq!(repo.commit_tree(&sha.to_uppercase()).unwrap().to_string(), tree);

        let error = repo.commit_tree(&tree).unwrap_err();
        assert_eq!(error.to_string(), format!("{} is a tree, not a commit", &tree[..7]));
        let blob = git(&fixture.bare(), &["rev-parse", &format!("{sha}:app.toml")]);
        let error = repo.read_file(&blob, "app.toml", 100).unwrap_err();
        assert_eq!(error.to_string(), format!("{} is a blob, not a commit", &blob[..7]));

        let missing = "0123456789012345678901234567890123456789";
        let error = repo.write_tree_tar(missing, &mut Vec::new()).unwrap_err();
        assert_eq!(error.to_string(), format!("commit {missing} is not in the repository"));

        for bad in [&sha[..7], "main", "", &format!("{sha}0"), &format!("{}g", &sha[..39])] {
            let error = repo.commit_tree(bad).unwrap_err();
            assert!(matches!(error, GitError::BadCommitId { .. }), "{bad}: {error}");
        }
        assert_eq!(
            repo.commit_tree("main").unwrap_err().to_string(),
            "\"main\" is not a commit id; give the full 40-digit hexadecimal id"
        );
    }

    #[test]
    fn open_reports_a_missing_repository() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.git");
        let error = PushedRepo::open(&missing).err().unwrap().to_string();
        assert!(
            error.starts_with(&format!("unable to open the git repository {}", missing.display())),
            "{error}"
        );
    }

    /// Runs inside the `pre-receive` hook of `open_from_env_sees_quarantined_objects`, which
    /// starts this test binary with `--ignored --exact` for this test alone. Run any other way it
    /// has nothing to check and passes.
    #[test]
    #[ignore = "run inside a pre-receive hook by open_from_env_sees_quarantined_objects"]
    fn quarantine_hook_child() {
        let (Some(new), Some(out)) = (std::env::var_os("BERTH_TEST_NEW"), std::env::var_os("BERTH_TEST_OUT"))
        else {
            return;
        };
        let new = new.to_str().unwrap();
        assert!(std::env::var_os("GIT_QUARANTINE_PATH").is_some(), "git did not quarantine the push");

        // Without the hook's environment the pushed objects are invisible...
        let plain = PushedRepo::open(Path::new(".")).unwrap();
        let error = plain.commit_tree(new).unwrap_err();
        assert!(matches!(error, GitError::MissingObject { .. }), "{error}");

        // ...with it, they are there.
        let repo = PushedRepo::open_from_env().unwrap();
        let app = repo.read_file(new, "app.toml", 1 << 20).unwrap().unwrap();
        let mut archive = Vec::new();
        repo.write_tree_tar(new, &mut archive).unwrap();
        let mut paths = Vec::new();
        for entry in tar::Archive::new(archive.as_slice()).entries().unwrap() {
            paths.push(entry.unwrap().path().unwrap().to_string_lossy().into_owned());
        }
        let mut report = app;
        report.extend_from_slice(format!("--\n{}\n", paths.join("\n")).as_bytes());
        fs::write(out, report).unwrap();
    }

    #[test]
    fn open_from_env_sees_quarantined_objects() {
        let fixture = Fixture::new();
        let work = fixture.work();
        fs::write(work.join("app.toml"), APP_TOML).unwrap();
        fs::create_dir(work.join("web")).unwrap();
        fs::write(work.join("web/index.html"), "hi\n").unwrap();
        git(&work, &["add", "-A"]);
        git(&work, &["commit", "-q", "-m", "first"]);

        let out = fixture.dir.path().join("hook-report");
        let test_binary = std::env::current_exe().unwrap();
        let mut hook = b"#!/bin/sh\nread old new ref\nBERTH_TEST_NEW=\"$new\"\nBERTH_TEST_OUT=".to_vec();
        hook.extend_from_slice(&sh_quote(out.as_os_str().as_bytes()));
        hook.extend_from_slice(b"\nexport BERTH_TEST_NEW BERTH_TEST_OUT\nexec ");
        hook.extend_from_slice(&sh_quote(test_binary.as_os_str().as_bytes()));
        hook.extend_from_slice(
            b" --exact git::tests::quarantine_hook_child --ignored --test-threads=1 --nocapture\n",
        );
        write_executable(&fixture.bare().join("hooks/pre-receive"), &hook).unwrap();

        let bare = fixture.bare();
        git(&work, &["push", "-q", bare.to_str().unwrap(), "HEAD:refs/heads/main"]);
        // The child ran (a name filter matching nothing would pass silently) and saw the push.
        let report = fs::read_to_string(&out).unwrap();
        assert_eq!(report, format!("{APP_TOML}--\napp.toml\nweb/\nweb/index.html\n"));
    }

    #[test]
    fn hooks_are_scripts_that_pin_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("app.git");
        init_bare(&repo).unwrap();
        let hook_dir = dir.path().join("it's hooks");
        fs::create_dir(&hook_dir).unwrap();
        let root = Path::new("/var/lib/berth root");
        install_hooks(&repo, &hook_dir, root).unwrap();

        let pre = fs::read_to_string(repo.join("hooks/pre-receive")).unwrap();
        let hook_dir_quoted = hook_dir.display().to_string().replace('\'', "'\\''");
        assert_eq!(
            pre,
            format!(
                "#!/bin/sh\n# Installed by berth; re-install with `berth hooks:install`.\n\
                 BERTH_ROOT='/var/lib/berth root'\n\
                 PATH='/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'\n\
                 export BERTH_ROOT PATH\n\
                 exec '{hook_dir_quoted}/berth-pre-receive' \"$@\"\n"
            )
        );
        let post = fs::read_to_string(repo.join("hooks/post-receive")).unwrap();
        assert_eq!(post, pre.replace("berth-pre-receive", "berth-post-receive"));
        for hook in ["pre-receive", "post-receive"] {
            let mode = fs::metadata(repo.join("hooks").join(hook)).unwrap().mode() & 0o7777;
            assert_eq!(mode, 0o755, "{hook}");
        }

        // Idempotent: same content, no temp files left behind.
        let before: Vec<_> =
            fs::read_dir(repo.join("hooks")).unwrap().map(|e| e.unwrap().file_name()).collect();
        install_hooks(&repo, &hook_dir, root).unwrap();
        assert_eq!(fs::read_to_string(repo.join("hooks/pre-receive")).unwrap(), pre);
        let mut after: Vec<_> =
            fs::read_dir(repo.join("hooks")).unwrap().map(|e| e.unwrap().file_name()).collect();
        let mut before = before;
        before.sort();
        after.sort();
        assert_eq!(before, after);

        // Running the hook: the binary gets the arguments, berth's root and PATH, not the
        // caller's.
        let report = dir.path().join("report");
        let fake = format!(
            "#!/bin/sh\nprintf '%s\\n' \"$BERTH_ROOT\" \"$PATH\" \"$@\" > {}\n",
            String::from_utf8(sh_quote(report.as_os_str().as_bytes())).unwrap()
        );
        write_executable(&hook_dir.join("berth-pre-receive"), fake.as_bytes()).unwrap();
        let status = Command::new(repo.join("hooks/pre-receive"))
            .args(["one", "two words", "it's"])
            .env("BERTH_ROOT", "/somewhere/else")
            .env("PATH", "/nonexistent")
            .status()
            .unwrap();
        assert!(status.success());
        assert_eq!(
            fs::read_to_string(&report).unwrap(),
            format!("/var/lib/berth root\n{HOOK_PATH}\none\ntwo words\nit's\n")
        );
    }

    #[test]
    fn hooks_need_a_repository() {
        let dir = tempfile::tempdir().unwrap();
        let error = install_hooks(
            &dir.path().join("nope.git"),
            Path::new("/usr/lib/berth"),
            Path::new("/var/lib/berth"),
        )
        .unwrap_err()
        .to_string();
        assert!(error.starts_with("unable to open the git repository"), "{error}");
    }

    #[test]
    fn sh_quote_escapes_single_quotes() {
        assert_eq!(sh_quote(b"plain"), b"'plain'");
        assert_eq!(sh_quote(b"it's"), b"'it'\\''s'");
        assert_eq!(sh_quote(b"$HOME `x` \"y\""), b"'$HOME `x` \"y\"'");
    }
}
