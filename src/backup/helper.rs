//! Runs a backup job in a root container of berth's own helper image (never the app's), with
//! the trees it reads or restores mounted and a fifo from the host as its data channel: the
//! stream passes through it byte for byte, with no engine log framing in between, and the host
//! side moves it with `splice` (the kernel passes pages from pipe to file or pipe without
//! copying them through berth), with a 1 MiB pipe buffer.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, IsTerminal, Read, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::engine::{APP_LABEL, ContainerSpec, Engine, EngineMount, MountKind};
use crate::names::AppName;
use crate::output::Reporter;

use super::BackupError;

/// The hidden subcommands the helper runs.
pub const READ_COMMAND: &str = "internal:backup-read";
pub const RESTORE_COMMAND: &str = "internal:backup-restore";
pub const PRUNE_COMMAND: &str = "internal:backup-prune";

/// Where the data channel is inside the helper.
const PIPE_DIR: &str = "/berth-pipe";
const ROLE_LABEL: &str = "berth.role";

/// A helper job: the mounts it needs and its arguments after the subcommand.
pub struct Job<'a> {
    pub engine: &'a Engine,
    pub app: &'a AppName,
    pub command: &'static str,
    pub mounts: Vec<EngineMount>,
    pub args: Vec<String>,
}

/// Runs a `READ_COMMAND` job, copying the stream it writes to `sink`; returns the bytes copied.
pub fn read_into(job: Job, sink: &File, progress: bool, out: &Reporter) -> Result<u64, BackupError> {
    let pipe = Pipe::new()?;
    let opened = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let copier = scope.spawn(|| -> io::Result<u64> {
            let fifo = File::open(&pipe.fifo)?;
            opened.store(true, Ordering::SeqCst);
            widen(&fifo);
            pump(&fifo, sink, progress, out)
        });
        let run = run(&job, &pipe, out);
        // A helper that failed before opening the fifo leaves the copier waiting: open the
        // other end once so it sees the end of the stream.
        while !copier.is_finished() {
            if !opened.load(Ordering::SeqCst) {
                let _ = File::options().write(true).custom_flags_nonblock().open(&pipe.fifo);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let copied = copier.join().map_err(|_| BackupError::Helper("the stream copier failed".into()))?;
        run?;
        copied.map_err(BackupError::Write)
    })
}

/// Runs a `RESTORE_COMMAND` job feeding it `prefix` then `input`; returns the helper's stdout.
pub fn restore_from(job: Job, prefix: &[u8], input: &File, out: &Reporter) -> Result<String, BackupError> {
    let pipe = Pipe::new()?;
    std::thread::scope(|scope| {
        let feeder = scope.spawn(|| -> io::Result<u64> {
            let mut fifo = File::options().write(true).open(&pipe.fifo)?;
            widen(&fifo);
            fifo.write_all(prefix)?;
            pump(input, &fifo, false, out)
        });
        let run = run(&job, &pipe, out);
        while !feeder.is_finished() {
            // The helper is gone: a feeder still waiting for a reader must not wait forever
            // (its writes then fail, which is fine: the helper's verdict stands).
            let _ = File::options().read(true).custom_flags_nonblock().open(&pipe.fifo);
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = feeder.join();
        run
    })
}

/// Runs a job without a data channel; returns its stdout.
pub fn run_plain(job: Job, out: &Reporter) -> Result<String, BackupError> {
    run(&job, &Pipe::new()?, out)
}

trait NonBlock {
    fn custom_flags_nonblock(&mut self) -> &mut Self;
}

impl NonBlock for std::fs::OpenOptions {
    fn custom_flags_nonblock(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt;
        self.custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
    }
}

/// A private directory holding the fifo, removed with it.
struct Pipe {
    dir: tempfile::TempDir,
    fifo: PathBuf,
}

impl Pipe {
    fn new() -> Result<Pipe, BackupError> {
        let dir = tempfile::Builder::new()
            .prefix("berth-backup-")
            .tempdir()
            .map_err(BackupError::io("create a directory for", &std::env::temp_dir()))?;
        let fifo = dir.path().join("pipe");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .map_err(|e| BackupError::io("create the fifo", &fifo)(e.into()))?;
        Ok(Pipe { dir, fifo })
    }
}

/// The helper container's path of the fifo.
pub fn pipe_path() -> String {
    format!("{PIPE_DIR}/pipe")
}

fn run(job: &Job, pipe: &Pipe, out: &Reporter) -> Result<String, BackupError> {
    let image = crate::helper_image::ensure_exec(job.engine)?;
    let name = format!("{}.backup.{}", job.app, std::process::id());
    let mut mounts = job.mounts.clone();
    mounts.push(EngineMount {
        kind: MountKind::Bind,
        source: pipe.dir.path().display().to_string(),
        target: PIPE_DIR.into(),
        read_only: false,
        options: Vec::new(),
    });
    let mut cmd = vec![job.command.to_string()];
    cmd.extend(job.args.iter().cloned());
    let spec = ContainerSpec {
        name: name.clone(),
        image,
        cmd: Some(cmd),
        user: Some("0:0".into()),
        options: helper_options()?,
        labels: HashMap::from([
            (APP_LABEL.to_string(), job.app.to_string()),
            (ROLE_LABEL.to_string(), "backup".into()),
        ]),
        mounts,
        ..ContainerSpec::default()
    };
    job.engine.remove_container(&name)?;
    job.engine.create_container(&spec)?;
    let (mut stdout, mut stderr) = (String::new(), String::new());
    let status = job.engine.run_attached(&name, &mut |is_err, text| {
        if is_err { stderr.push_str(text) } else { stdout.push_str(text) }
    });
    job.engine.remove_container(&name)?;
    let errors: Vec<&str> = stderr.lines().collect();
    match status? {
        0 => {
            // Warnings (files a backup leaves out) reach the admin as they were printed.
            for line in errors {
                out.error_text(line);
            }
            Ok(stdout)
        }
        code => {
            let last = errors.iter().rev().find(|l| !l.trim().is_empty()).copied().unwrap_or("");
            let message = last.trim_start_matches(" !     ").trim();
            Err(BackupError::Helper(if message.is_empty() {
                format!("the backup helper container exited {code}")
            } else {
                message.to_string()
            }))
        }
    }
}

/// No network, and of root's powers only those reading and restoring owners, modes and times
/// take.
fn helper_options() -> Result<crate::docker_options::RunOptions, BackupError> {
    let options = [
        "--network none",
        "--cap-drop ALL",
        "--cap-add CHOWN",
        "--cap-add FOWNER",
        "--cap-add FSETID",
        "--cap-add DAC_OVERRIDE",
        "--cap-add DAC_READ_SEARCH",
    ];
    crate::docker_options::RunOptions::parse(&options.map(String::from))
        .map_err(|e| BackupError::Helper(e.to_string()))
}

/// The fifo's pipe buffer: 16 times the default, so each side moves more per system call.
const PIPE_BYTES: usize = 1 << 20;

/// Grows the pipe buffer; a smaller one (an unprivileged limit) only costs speed.
fn widen(fifo: &File) {
    let _ = rustix::pipe::fcntl_setpipe_size(fifo, PIPE_BYTES);
}

/// Bytes moved so far, shown with their rate on stderr once a second when it is a terminal.
struct Meter<'a> {
    show: bool,
    start: Instant,
    shown: Instant,
    total: u64,
    out: &'a Reporter,
}

impl Meter<'_> {
    fn new(progress: bool, out: &Reporter) -> Meter<'_> {
        let show = progress && io::stderr().is_terminal();
        Meter { show, start: Instant::now(), shown: Instant::now(), total: 0, out }
    }

    fn add(&mut self, bytes: usize) {
        self.total += bytes as u64;
        if self.show && self.shown.elapsed() >= Duration::from_secs(1) {
            self.shown = Instant::now();
            self.out.relay(true, &format!("\r       {}", rate(self.total, self.start.elapsed())));
        }
    }

    fn finish(&self) -> u64 {
        if self.show {
            self.out.relay(true, &format!("\r       {}\n", rate(self.total, self.start.elapsed())));
        }
        self.total
    }
}

/// A stream written by berth itself (a backup of host directories), with the progress a
/// helper's stream gets.
pub struct Progress<'a, W: Write> {
    inner: W,
    meter: Meter<'a>,
}

impl<'a, W: Write> Progress<'a, W> {
    pub fn new(inner: W, out: &'a Reporter) -> Self {
        Progress { inner, meter: Meter::new(true, out) }
    }

    /// The bytes written.
    pub fn finish(self) -> u64 {
        self.meter.finish()
    }
}

impl<W: Write> Write for Progress<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.meter.add(n);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Moves the stream from `from` to `to`, one of them the fifo, until `from` ends; on a
/// terminal, shows bytes and rate on stderr once a second.
fn pump(from: &File, to: &File, progress: bool, out: &Reporter) -> io::Result<u64> {
    let mut meter = Meter::new(progress, out);
    let mut buf = Vec::new();
    loop {
        let n = if buf.is_empty() {
            match rustix::pipe::splice(from, None, to, None, PIPE_BYTES, rustix::pipe::SpliceFlags::MOVE) {
                Ok(n) => n,
                Err(rustix::io::Errno::INTR) => continue,
                // These two cannot splice (the other side is a terminal, say): copy instead.
                Err(rustix::io::Errno::INVAL) => {
                    buf = vec![0u8; PIPE_BYTES];
                    continue;
                }
                Err(e) => return Err(e.into()),
            }
        } else {
            copy_some(from, to, &mut buf)?
        };
        if n == 0 {
            break;
        }
        meter.add(n);
    }
    Ok(meter.finish())
}

/// One read from `from` written whole to `to`; 0 at the end.
fn copy_some(mut from: &File, mut to: &File, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match from.read(buf) {
            Ok(n) => {
                to.write_all(&buf[..n])?;
                return Ok(n);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

fn rate(bytes: u64, elapsed: Duration) -> String {
    let mib = bytes as f64 / f64::from(1 << 20);
    format!("{mib:.1} MiB, {:.1} MiB/s   ", mib / elapsed.as_secs_f64().max(0.001))
}
