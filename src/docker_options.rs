//! docker-options: extra `docker run`/`docker build` flags an admin sets per app, phase and
//! process type. Input is split into shell words without expansion and grouped at each flag,
//! as Dokku does, so `--memory 512m --cpus 1` is stored as two options.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::storage::{DEFAULT_PROCESS_TYPE, Phase};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OptionsError {
    #[error("unterminated quote in docker option \"{0}\"")]
    UnterminatedQuote(String),
    #[error("Please specify docker options to {0} the phase")]
    Empty(&'static str),
    #[error("--process is only supported for the deploy phase, got \"{0}\"")]
    ProcessOutsideDeploy(Phase),
    #[error("\"_default_\" is reserved and cannot be used as a --process value")]
    ReservedProcess,
    #[error("docker option \"{0}\" is not supported by berth (supported: {SUPPORTED})")]
    Unsupported(String),
    #[error("docker option \"{0}\" needs a value")]
    MissingValue(String),
    #[error("docker option \"{option}\" has a bad value: {reason}")]
    BadValue { option: String, reason: String },
    #[error("docker-options key \"{0}\" is not <process type>.<phase> (build, deploy or run)")]
    BadKey(String),
}

const SUPPORTED: &str = "-e/--env, -l/--label, -v/--volume, --mount, -m/--memory, --cpus, -u/--user, -w/--workdir, \
--hostname, --add-host, --link, --build-arg (build phase), --cap-add, --cap-drop, --security-opt no-new-privileges=false, --read-only, \
--tmpfs, --shm-size, --init, --network, --log-driver, --log-opt, --restart";

/// Capabilities every container berth creates goes without unless the admin adds them back
/// (`--cap-add`): a root process in an app container must not make device nodes on app storage.
pub const DEFAULT_CAP_DROP: &[&str] = &["MKNOD"];

/// Set on every container unless the admin passes `--security-opt no-new-privileges=false`: a
/// set-uid file an app planted in its storage gives no one more privileges.
pub const NO_NEW_PRIVILEGES: &str = "no-new-privileges";

/// The one `--security-opt` value berth accepts: the admin's way back from the default.
const NEW_PRIVILEGES_ALLOWED: &str = "no-new-privileges=false";

/// Where a set of options applies: a process type (`_default_`: every one) and a phase. Stored
/// as `<process type>.<phase>`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct OptionsKey {
    pub process_type: String,
    pub phase: Phase,
}

impl OptionsKey {
    pub fn new(process: Option<&str>, phase: Phase) -> Result<Self, OptionsError> {
        match process {
            Some(DEFAULT_PROCESS_TYPE) => Err(OptionsError::ReservedProcess),
            Some(_) if phase != Phase::Deploy => Err(OptionsError::ProcessOutsideDeploy(phase)),
            Some(process) => Ok(OptionsKey { process_type: process.to_string(), phase }),
            None => Ok(OptionsKey::every_process(phase)),
        }
    }

    /// The options of `phase` that apply to every process type.
    pub fn every_process(phase: Phase) -> Self {
        OptionsKey { process_type: DEFAULT_PROCESS_TYPE.to_string(), phase }
    }

    /// Whether these options apply to every process type.
    pub fn is_every_process(&self) -> bool {
        self.process_type == DEFAULT_PROCESS_TYPE
    }
}

impl TryFrom<String> for OptionsKey {
    type Error = OptionsError;
    /// The stored form: the phase after the last dot (process types have no dots).
    fn try_from(key: String) -> Result<Self, OptionsError> {
        let bad = || OptionsError::BadKey(key.clone());
        let (process, phase) = key.rsplit_once('.').ok_or_else(bad)?;
        let phase = phase.parse::<Phase>().map_err(|_| bad())?;
        Ok(OptionsKey { process_type: process.to_string(), phase })
    }
}

impl From<OptionsKey> for String {
    fn from(key: OptionsKey) -> String {
        key.to_string()
    }
}

impl fmt::Display for OptionsKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.process_type, self.phase)
    }
}

/// Splits text into shell words: single and double quotes and backslashes are honoured;
/// nothing is expanded.
pub fn shell_words(text: &str) -> Result<Vec<String>, OptionsError> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err(OptionsError::UnterminatedQuote(text.to_string())),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c) => word.push(c),
                            None => return Err(OptionsError::UnterminatedQuote(text.to_string())),
                        },
                        Some(c) => word.push(c),
                        None => return Err(OptionsError::UnterminatedQuote(text.to_string())),
                    }
                }
            }
            '\\' => {
                in_word = true;
                if let Some(c) = chars.next() {
                    word.push(c);
                }
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

fn quote_word(word: &str) -> String {
    let plain =
        !word.is_empty() && word.chars().all(|c| c.is_ascii_alphanumeric() || "-_./:=,@%+".contains(c));
    if plain { word.to_string() } else { format!("'{}'", word.replace('\'', r"'\''")) }
}

/// Groups words into options, a new one at each word that looks like a flag.
pub fn parse_options(text: &str) -> Result<Vec<String>, OptionsError> {
    let mut options: Vec<Vec<String>> = Vec::new();
    for word in shell_words(text)? {
        let is_flag = word.len() > 1 && word.starts_with('-');
        match options.last_mut() {
            Some(current) if !is_flag => current.push(quote_word(&word)),
            _ => options.push(vec![quote_word(&word)]),
        }
    }
    Ok(options.into_iter().map(|words| words.join(" ")).collect())
}

/// Takes `--process <type>` out of parsed options, as Dokku lifts one typed after the options
/// (`docker-options:add app deploy --link foo --process web`): (the options, the types).
pub fn lift_processes(options: Vec<String>) -> Result<(Vec<String>, Vec<String>), OptionsError> {
    let mut kept = Vec::new();
    let mut processes = Vec::new();
    for option in options {
        let words = shell_words(&option)?;
        match words.as_slice() {
            [flag, process] if flag == "--process" => processes.push(process.clone()),
            [flag] if flag.starts_with("--process=") => {
                processes.push(flag["--process=".len()..].to_string())
            }
            _ => kept.push(option),
        }
    }
    Ok((kept, processes))
}

/// An option back as the words to hand to the engine.
pub fn option_words(option: &str) -> Result<Vec<String>, OptionsError> {
    shell_words(option)
}

/// A `-v`/`--volume`/`--mount` option as the `-v` flag it amounts to, for storage reports
/// (a tmpfs `--mount` is not storage and shows nowhere).
pub fn volume_flag(option: &str) -> Option<String> {
    let words = shell_words(option).ok()?;
    let (flag, value) = match words.as_slice() {
        [flag, value] => (flag.as_str(), value.clone()),
        [flag] => flag.split_once('=').map(|(f, v)| (f, v.to_string()))?,
        _ => return None,
    };
    match flag {
        "-v" | "--volume" => Some(format!("-v {value}")),
        "--mount" => mount_as_volume_spec(&value).ok()?.0.map(|spec| format!("-v {spec}")),
        _ => None,
    }
}

/// docker-options translated into the engine's container settings. Only flags berth knows are
/// accepted, so a typo fails at `docker-options:add`, not at the next deploy.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunOptions {
    env: Vec<String>,
    labels: Vec<(String, String)>,
    binds: Vec<String>,
    /// Anonymous volumes (`-v /tmp`): a fresh engine volume at each path, as `docker run` does.
    volumes: Vec<String>,
    memory: Option<i64>,
    nano_cpus: Option<i64>,
    user: Option<String>,
    workdir: Option<String>,
    hostname: Option<String>,
    extra_hosts: Vec<String>,
    /// `--build-arg` values, handed to the image build when given for the build phase.
    build_args: Vec<(String, String)>,
    /// Legacy container links (`--link postgres[:alias]`).
    links: Vec<String>,
    cap_add: Vec<String>,
    cap_drop: Vec<String>,
    /// The admin turned off the default `no-new-privileges`.
    new_privileges: bool,
    read_only: bool,
    tmpfs: Vec<(String, String)>,
    shm_size: Option<i64>,
    init: bool,
    network: Option<String>,
    log_driver: Option<String>,
    log_opts: Vec<(String, String)>,
    restart: Option<String>,
}

/// The value of a `-v` option: `<host-dir|volume>:<container-dir>[:<options>]` checked as
/// `storage:mount` checks its colon form, or a container path alone (an anonymous volume).
#[derive(Debug, Clone, PartialEq, Eq)]
enum VolumeSpec {
    Bind(String),
    Anonymous(String),
}

fn volume_spec(flag: &str, spec: &str) -> Result<VolumeSpec, OptionsError> {
    let bad = |reason: String| OptionsError::BadValue { option: flag.to_string(), reason };
    if spec.starts_with('/') && !spec.contains(':') {
        let path = crate::storage::normalize_container_path(spec).map_err(|e| bad(e.to_string()))?;
        return Ok(VolumeSpec::Anonymous(path));
    }
    let mount = crate::storage::LegacyMount::parse(spec).map_err(|e| bad(e.to_string()))?;
    if let Some(option) = mount
        .volume_options
        .iter()
        .flat_map(|o| o.split(','))
        .find(|o| crate::storage::RESTRICTIVE_OPTIONS.contains(o))
    {
        return Err(bad(format!(
            "\"{option}\" is not a -v option the engine accepts; mount a storage entry with --volume-options {option} instead"
        )));
    }
    Ok(VolumeSpec::Bind(spec.to_string()))
}

/// `--mount type=bind,source=/h,target=/c,readonly` as the `-v` spec it means, so it is checked
/// exactly as `-v` is; `None` with the target for a tmpfs mount.
fn mount_as_volume_spec(value: &str) -> Result<(Option<String>, String), OptionsError> {
    let bad = |reason: String| OptionsError::BadValue { option: "--mount".to_string(), reason };
    let (mut typ, mut source, mut target, mut options) = ("volume", None, None, Vec::new());
    for field in value.split(',') {
        let (key, val) = field.split_once('=').map_or((field, None), |(k, v)| (k, Some(v)));
        match (key, val) {
            ("type", Some(t @ ("bind" | "volume" | "tmpfs"))) => typ = t,
            ("source" | "src", Some(v)) if !v.is_empty() => source = Some(v),
            ("target" | "destination" | "dst", Some(v)) if !v.is_empty() => target = Some(v),
            ("readonly" | "ro", None | Some("true" | "1")) => options.push("ro"),
            ("readonly" | "ro", Some("false" | "0")) => {}
            ("volume-nocopy", None | Some("true" | "1")) => options.push("nocopy"),
            ("bind-propagation", Some(p)) => options.push(p),
            _ => {
                return Err(bad(format!(
                    "\"{field}\" is not understood (type, source, target, readonly, volume-nocopy, bind-propagation are)"
                )));
            }
        }
    }
    let target = target.ok_or_else(|| bad("a target is required".into()))?;
    if typ == "tmpfs" {
        return match (source, options.is_empty()) {
            (None, true) => Ok((None, target.to_string())),
            _ => Err(bad("a tmpfs mount takes only a target".into())),
        };
    }
    let spec = match source {
        Some(source) if typ == "bind" && !source.starts_with('/') => {
            return Err(bad(format!("bind source \"{source}\" must be an absolute path")));
        }
        Some(source) if typ == "volume" && source.starts_with('/') => {
            return Err(bad(format!("volume source \"{source}\" must be a volume name (use type=bind)")));
        }
        Some(source) => format!("{source}:{target}"),
        None if typ == "volume" && options.is_empty() => target.to_string(),
        None => return Err(bad("a source is required".into())),
    };
    let spec = if options.is_empty() { spec } else { format!("{spec}:{}", options.join(",")) };
    Ok((Some(spec), target.to_string()))
}

/// `--link <container>[:<alias>]`, in the engine's `<container>:<alias>` form.
fn link(value: &str) -> Result<String, OptionsError> {
    let (container, alias) = value.split_once(':').unwrap_or((value, value));
    let name = |n: &str| {
        n.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
            && n.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
    };
    if name(container) && name(alias) {
        Ok(format!("{container}:{alias}"))
    } else {
        Err(OptionsError::BadValue {
            option: "--link".into(),
            reason: format!("\"{value}\" is not <container>[:<alias>]"),
        })
    }
}

/// `512m`, `1g`, `1024` (bytes) → bytes.
fn parse_size(option: &str, value: &str) -> Result<i64, OptionsError> {
    let bad = || OptionsError::BadValue {
        option: option.to_string(),
        reason: format!("\"{value}\" is not a size like 512m"),
    };
    let lower = value.to_ascii_lowercase();
    let (digits, unit) = match lower.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => lower.split_at(i),
        None => (lower.as_str(), ""),
    };
    let number: i64 = digits.parse().map_err(|_| bad())?;
    let factor: i64 = match unit.trim_end_matches('b') {
        "" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        _ => return Err(bad()),
    };
    number.checked_mul(factor).ok_or_else(bad)
}

fn split_pair(option: &str, value: &str, separator: char) -> Result<(String, String), OptionsError> {
    match value.split_once(separator) {
        Some((key, val)) if !key.is_empty() => Ok((key.to_string(), val.to_string())),
        None if !value.is_empty() => Ok((value.to_string(), String::new())),
        _ => Err(OptionsError::BadValue {
            option: option.to_string(),
            reason: format!("expected key{separator}value"),
        }),
    }
}

impl RunOptions {
    fn add_volume(&mut self, flag: &str, spec: &str) -> Result<(), OptionsError> {
        match volume_spec(flag, spec)? {
            VolumeSpec::Bind(spec) => self.binds.push(spec),
            VolumeSpec::Anonymous(path) => self.volumes.push(path),
        }
        Ok(())
    }

    fn add_mount(&mut self, value: &str) -> Result<(), OptionsError> {
        match mount_as_volume_spec(value)? {
            (Some(spec), _) => self.add_volume("--mount", &spec),
            (None, target) => {
                let path = crate::storage::normalize_container_path(&target).map_err(|e| {
                    OptionsError::BadValue { option: "--mount".into(), reason: e.to_string() }
                })?;
                self.tmpfs.push((path, String::new()));
                Ok(())
            }
        }
    }

    /// Parses stored options (each `flag [value]`, or `--flag=value`).
    pub fn parse(options: &[String]) -> Result<RunOptions, OptionsError> {
        let mut run = RunOptions::default();
        for option in options {
            let words = shell_words(option)?;
            let Some(first) = words.first() else { continue };
            let (flag, inline) = match first.split_once('=') {
                Some((flag, value)) if flag.starts_with("--") => (flag.to_string(), Some(value.to_string())),
                _ => (first.clone(), None),
            };
            let value = || -> Result<String, OptionsError> {
                inline
                    .clone()
                    .or_else(|| words.get(1).cloned())
                    .ok_or_else(|| OptionsError::MissingValue(flag.clone()))
            };
            match flag.as_str() {
                "-e" | "--env" => run.env.push(value()?),
                "-l" | "--label" => run.labels.push(split_pair(&flag, &value()?, '=')?),
                "-v" | "--volume" => run.add_volume(&flag, &value()?)?,
                "--mount" => run.add_mount(&value()?)?,
                "-m" | "--memory" => run.memory = Some(parse_size(&flag, &value()?)?),
                "--shm-size" => run.shm_size = Some(parse_size(&flag, &value()?)?),
                "--cpus" => {
                    let text = value()?;
                    let cpus: f64 = text.parse().map_err(|_| OptionsError::BadValue {
                        option: flag.clone(),
                        reason: format!("\"{text}\" is not a number"),
                    })?;
                    if !(cpus > 0.0 && cpus < 1024.0) {
                        return Err(OptionsError::BadValue {
                            option: flag,
                            reason: "must be between 0 and 1024".into(),
                        });
                    }
                    run.nano_cpus = Some((cpus * 1e9) as i64);
                }
                "-u" | "--user" => run.user = Some(value()?),
                "-w" | "--workdir" => run.workdir = Some(value()?),
                "--hostname" => run.hostname = Some(value()?),
                "--add-host" => run.extra_hosts.push(value()?),
                "--link" => run.links.push(link(&value()?)?),
                "--build-arg" => run.build_args.push(split_pair(&flag, &value()?, '=')?),
                "--cap-add" => run.cap_add.push(value()?),
                "--cap-drop" => run.cap_drop.push(value()?),
                "--security-opt" => match value()?.as_str() {
                    NEW_PRIVILEGES_ALLOWED => run.new_privileges = true,
                    other => {
                        return Err(OptionsError::BadValue {
                            option: flag,
                            reason: format!("\"{other}\" is not supported; only {NEW_PRIVILEGES_ALLOWED} is"),
                        });
                    }
                },
                "--read-only" => run.read_only = true,
                "--init" => run.init = true,
                "--tmpfs" => run.tmpfs.push(split_pair(&flag, &value()?, ':')?),
                "--network" | "--net" => run.network = Some(value()?),
                "--log-driver" => run.log_driver = Some(value()?),
                "--log-opt" => run.log_opts.push(split_pair(&flag, &value()?, '=')?),
                "--restart" => run.restart = Some(value()?),
                _ => return Err(OptionsError::Unsupported(flag)),
            }
        }
        Ok(run)
    }

    /// The `--build-arg` values, for the image build.
    pub fn build_args(&self) -> impl Iterator<Item = (String, String)> + '_ {
        self.build_args.iter().cloned()
    }

    /// What `docker-options:add` should say about options given for a phase that ignores them:
    /// only the image build takes `--build-arg`.
    pub fn unapplied_warning(&self, phase: Phase) -> Option<String> {
        (phase != Phase::Build && !self.build_args.is_empty()).then(|| {
            format!("--build-arg only reaches the image build from the build phase; it has no effect in the {} phase", phase.as_str())
        })
    }

    /// Applies the options on top of what berth set.
    pub fn apply(&self, body: &mut bollard::models::ContainerCreateBody) {
        use bollard::models::{HostConfig, HostConfigLogConfig, RestartPolicy, RestartPolicyNameEnum};
        body.env.get_or_insert_with(Vec::new).extend(self.env.iter().cloned());
        body.labels.get_or_insert_with(Default::default).extend(self.labels.iter().cloned());
        if self.user.is_some() {
            body.user.clone_from(&self.user);
        }
        if self.workdir.is_some() {
            body.working_dir.clone_from(&self.workdir);
        }
        if self.hostname.is_some() {
            body.hostname.clone_from(&self.hostname);
        }
        let host: &mut HostConfig = body.host_config.get_or_insert_with(Default::default);
        host.binds.get_or_insert_with(Vec::new).extend(self.binds.iter().cloned());
        if !self.volumes.is_empty() {
            body.volumes.get_or_insert_with(Vec::new).extend(self.volumes.iter().cloned());
        }
        host.memory = self.memory.or(host.memory);
        host.nano_cpus = self.nano_cpus.or(host.nano_cpus);
        host.shm_size = self.shm_size.or(host.shm_size);
        host.extra_hosts.get_or_insert_with(Vec::new).extend(self.extra_hosts.iter().cloned());
        if !self.links.is_empty() {
            host.links.get_or_insert_with(Vec::new).extend(self.links.iter().cloned());
        }
        self.apply_privileges(host);
        if self.read_only {
            host.readonly_rootfs = Some(true);
        }
        if self.init {
            host.init = Some(true);
        }
        if !self.tmpfs.is_empty() {
            host.tmpfs.get_or_insert_with(Default::default).extend(self.tmpfs.iter().cloned());
        }
        if self.network.is_some() {
            host.network_mode.clone_from(&self.network);
        }
        if self.log_driver.is_some() || !self.log_opts.is_empty() {
            host.log_config = Some(HostConfigLogConfig {
                typ: self.log_driver.clone(),
                config: Some(self.log_opts.iter().cloned().collect()),
            });
        }
        if let Some(restart) = &self.restart {
            let (name, count) = restart.split_once(':').unwrap_or((restart, ""));
            let name = match name {
                "no" => RestartPolicyNameEnum::NO,
                "always" => RestartPolicyNameEnum::ALWAYS,
                "on-failure" => RestartPolicyNameEnum::ON_FAILURE,
                _ => RestartPolicyNameEnum::UNLESS_STOPPED,
            };
            host.restart_policy =
                Some(RestartPolicy { name: Some(name), maximum_retry_count: count.parse().ok() });
        }
        if host.binds.as_ref().is_some_and(Vec::is_empty) {
            host.binds = None;
        }
    }

    /// Whether one of the admin's `-v` options mounts something at `path`.
    pub fn mounts_at(&self, path: &str) -> bool {
        self.binds.iter().any(|spec| spec.split(':').nth(1).is_some_and(|t| t.trim_end_matches('/') == path))
            || self.volumes.iter().any(|v| v == path)
    }

    /// berth's hardening defaults, minus what the admin added back: a `--cap-add` wins over the
    /// default drop of the same capability (`ALL` over every default drop).
    fn apply_privileges(&self, host: &mut bollard::models::HostConfig) {
        let added = |cap: &str| self.cap_add.iter().any(|a| same_cap(a, cap) || same_cap(a, "ALL"));
        let drops = host.cap_drop.get_or_insert_with(Vec::new);
        drops.extend(DEFAULT_CAP_DROP.iter().filter(|cap| !added(cap)).map(|cap| cap.to_string()));
        drops.extend(self.cap_drop.iter().cloned());
        host.cap_add.get_or_insert_with(Vec::new).extend(self.cap_add.iter().cloned());
        if !self.new_privileges {
            host.security_opt.get_or_insert_with(Vec::new).push(NO_NEW_PRIVILEGES.to_string());
        }
    }
}

/// Capability names compare without case or the `CAP_` prefix, as the engine reads them.
fn same_cap(a: &str, b: &str) -> bool {
    let bare = |name: &str| {
        let upper = name.to_ascii_uppercase();
        upper.strip_prefix("CAP_").map(str::to_string).unwrap_or(upper)
    };
    bare(a) == bare(b)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    #[test]
    fn run_options_translate() {
        let options: Vec<String> =
            ["--memory 512m", "-e A=1", "--cpus 1.5", "--label x=y", "--restart on-failure:3"]
                .map(String::from)
                .to_vec();
        let run = RunOptions::parse(&options).unwrap();
        let mut body = bollard::models::ContainerCreateBody::default();
        run.apply(&mut body);
        let host = body.host_config.unwrap();
        assert_eq!(host.memory, Some(512 << 20));
        assert_eq!(host.nano_cpus, Some(1_500_000_000));
        assert_eq!(body.env.unwrap(), vec!["A=1"]);
        assert_eq!(host.restart_policy.unwrap().maximum_retry_count, Some(3));
        assert!(matches!(RunOptions::parse(&["--privileged".into()]), Err(OptionsError::Unsupported(_))));
        assert!(matches!(RunOptions::parse(&["--memory lots".into()]), Err(OptionsError::BadValue { .. })));
    }

    use super::*;

    #[test]
    fn groups_at_flags() {
        assert_eq!(parse_options("--memory 512m --cpus 1").unwrap(), vec!["--memory 512m", "--cpus 1"]);
        assert_eq!(parse_options("--label 'a b' -v /h:/c").unwrap(), vec!["--label 'a b'", "-v /h:/c"]);
        assert_eq!(parse_options("--env X=$(id)").unwrap(), vec!["--env 'X=$(id)'"]);
        assert!(parse_options("--label 'open").is_err());
    }

    #[test]
    fn volume_flags() {
        assert_eq!(volume_flag("-v /h:/c").as_deref(), Some("-v /h:/c"));
        assert_eq!(volume_flag("--volume=/h:/c:ro").as_deref(), Some("-v /h:/c:ro"));
        assert_eq!(volume_flag("--mount type=bind,src=/h,dst=/c").as_deref(), Some("-v /h:/c"));
        assert_eq!(volume_flag("--mount=type=volume,dst=/c,readonly").as_deref(), None);
        assert_eq!(volume_flag("-v /tmp").as_deref(), Some("-v /tmp"));
        assert_eq!(volume_flag("--memory 1g"), None);
        let run = RunOptions::parse(&["-v /srv/x:/data/:ro".into()]).unwrap();
        assert!(run.mounts_at("/data") && !run.mounts_at("/srv/x"));
    }

    #[test]
    fn anonymous_volumes_and_mounts() {
        let options: Vec<String> =
            ["-v /tmp", "-v /var/tmp/", "--mount type=bind,source=/srv/x,target=/x,readonly"]
                .map(String::from)
                .to_vec();
        let run = RunOptions::parse(&options).unwrap();
        let mut body = bollard::models::ContainerCreateBody::default();
        run.apply(&mut body);
        assert_eq!(body.volumes.unwrap(), vec!["/tmp", "/var/tmp"]);
        assert_eq!(body.host_config.unwrap().binds.unwrap(), vec!["/srv/x:/x:ro"]);
        assert!(run.mounts_at("/tmp") && run.mounts_at("/x"));
        for refused in [
            "-v /",
            "-v ./rel:/x",
            "-v /h:/c:noexec",
            "-v /h:/c:bogus",
            "--mount type=bind,src=rel,dst=/x",
            "--mount type=volume,src=/h,dst=/x",
            "--mount type=bind,dst=/x",
            "--mount type=bind,src=/h",
            "--mount type=npipe,src=/h,dst=/x",
            "--mount type=bind,src=/h,dst=/x,bind-nonrecursive",
            "--mount type=tmpfs,src=/h,dst=/x",
        ] {
            assert!(
                matches!(RunOptions::parse(&[refused.into()]), Err(OptionsError::BadValue { .. })),
                "{refused}"
            );
        }
        let build = RunOptions::parse(&["--build-arg X=Y=Z".into()]).unwrap();
        assert_eq!(build.build_args().collect::<Vec<_>>(), [("X".to_string(), "Y=Z".to_string())]);
        assert!(build.unapplied_warning(Phase::Build).is_none());
        assert!(build.unapplied_warning(Phase::Deploy).unwrap().contains("deploy phase"));
        assert!(host_after(&["--build-arg X=Y"]).links.is_none());
        let linked = host_after(&["--link postgres", "--link db:pg"]);
        assert_eq!(linked.links.unwrap(), vec!["postgres:postgres", "db:pg"]);
        assert!(RunOptions::parse(&["--link ../x".into()]).is_err());
        let tmpfs = RunOptions::parse(&["--mount type=tmpfs,target=/scratch".into()]).unwrap();
        assert_eq!(tmpfs.tmpfs, vec![("/scratch".to_string(), String::new())]);
    }

    fn host_after(options: &[&str]) -> bollard::models::HostConfig {
        let options: Vec<String> = options.iter().map(|o| o.to_string()).collect();
        let mut body = bollard::models::ContainerCreateBody::default();
        RunOptions::parse(&options).unwrap().apply(&mut body);
        body.host_config.unwrap()
    }

    #[test]
    fn hardened_by_default() {
        let host = host_after(&[]);
        assert_eq!(host.cap_drop.unwrap(), vec!["MKNOD"]);
        assert_eq!(host.security_opt.unwrap(), vec!["no-new-privileges"]);
    }

    #[test]
    fn admin_adds_back() {
        let host = host_after(&["--cap-add cap_mknod", "--security-opt no-new-privileges=false"]);
        assert_eq!(host.cap_drop.unwrap(), Vec::<String>::new());
        assert_eq!(host.cap_add.unwrap(), vec!["cap_mknod"]);
        assert_eq!(host.security_opt.unwrap_or_default(), Vec::<String>::new());
        assert_eq!(host_after(&["--cap-add=ALL"]).cap_drop.unwrap(), Vec::<String>::new());
        assert_eq!(host_after(&["--cap-add NET_ADMIN"]).cap_drop.unwrap(), vec!["MKNOD"]);
        for refused in ["--security-opt seccomp=unconfined", "--security-opt no-new-privileges"] {
            assert!(matches!(RunOptions::parse(&[refused.into()]), Err(OptionsError::BadValue { .. })));
        }
    }

    #[test]
    fn lifts_process_flags() {
        let options = parse_options("--cpus 1 --process web --process=worker").unwrap();
        let (kept, processes) = lift_processes(options).unwrap();
        assert_eq!(kept, vec!["--cpus 1"]);
        assert_eq!(processes, vec!["web", "worker"]);
    }

    #[test]
    fn process_rules() {
        assert!(OptionsKey::new(Some("web"), Phase::Build).is_err());
        assert!(OptionsKey::new(Some("_default_"), Phase::Deploy).is_err());
        assert_eq!(OptionsKey::new(Some("web"), Phase::Deploy).unwrap().to_string(), "web.deploy");
    }

    #[test]
    fn keys_read_back_from_their_stored_form() {
        let key = OptionsKey::try_from("web.deploy".to_string()).unwrap();
        assert_eq!(key, OptionsKey::new(Some("web"), Phase::Deploy).unwrap());
        assert!(OptionsKey::try_from("_default_.run".to_string()).unwrap().is_every_process());
        for bad in ["web", "web.later", ""] {
            assert_eq!(OptionsKey::try_from(bad.to_string()), Err(OptionsError::BadKey(bad.into())));
        }
    }
}
