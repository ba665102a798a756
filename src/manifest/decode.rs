//! Walks the parsed TOML document into a [`Manifest`], checking types, keys and the rules of
//! each value, and collecting a diagnostic for every problem instead of stopping at the first.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::path::PathBuf;

use toml::Spanned;
use toml::de::{DeInteger, DeString, DeTable, DeValue};

use super::rules::{self, Known};
use super::text::{self, Locator, describe_char, quoted, suggest, ticked};
use super::{
    AppUser, Build, DEFAULT_WEB_PORT, DeclaredMount, Diagnostic, MAX_MOUNTS, MAX_PROCESSES, MAX_SECONDS,
    Manifest, MountPositions, Pos, Web,
};
use crate::names::is_docker_volume_name;
use crate::storage::{
    Phase, RESERVED_PROCESS_TYPES, Source, StorageError, check_process_type, is_driver_name,
    normalize_container_path,
};
use crate::user::{MAX_ID, Preset, UserError};

type Value<'i> = Spanned<DeValue<'i>>;
type Key<'i> = Spanned<DeString<'i>>;

mod env;

const TOP_KEYS: &[&str] = &["app", "build", "web", "processes", "storage", "env", "scale"];
const TOP_ALIASES: &[(&str, &str)] = &[
    ("mounts", "[[storage.mounts]]"),
    ("mount", "[[storage.mounts]]"),
    ("volumes", "[[storage.mounts]]"),
    ("storage_mounts", "[[storage.mounts]]"),
    ("procfile", "processes"),
    ("process", "processes"),
    ("user", "[app] user"),
    ("dockerfile", "[build] dockerfile"),
    ("command", "[build] command"),
    ("port", "[web] port"),
    ("healthcheck", "[web] healthcheck"),
    ("environment", "env"),
    ("vars", "env"),
    ("config", "env"),
    ("formation", "scale"),
    ("instances", "scale"),
    ("env_keys", "[build] env_keys"),
];
const APP_KEYS: &[&str] = &["user", "stop_timeout"];
const APP_ALIASES: &[(&str, &str)] = &[
    ("uid", "user"),
    ("gid", "user"),
    ("owner", "user"),
    ("chown", "user"),
    ("stop_grace_period", "stop_timeout"),
];
const BUILD_KEYS: &[&str] = &["dockerfile", "command", "env_keys"];
const BUILD_ALIASES: &[(&str, &str)] = &[
    ("cmd", "command"),
    ("run", "command"),
    ("file", "dockerfile"),
    ("args", "env_keys"),
    ("build_args", "env_keys"),
    ("env", "env_keys"),
];
const WEB_KEYS: &[&str] = &["port", "healthcheck", "drain_seconds", "hold_seconds"];
const WEB_ALIASES: &[(&str, &str)] = &[
    ("health", "healthcheck"),
    ("health_check", "healthcheck"),
    ("healthcheck_path", "healthcheck"),
    ("path", "healthcheck"),
    ("container_port", "port"),
    ("drain", "drain_seconds"),
    ("drain_timeout", "drain_seconds"),
    ("hold", "hold_seconds"),
    ("hold_timeout", "hold_seconds"),
];
const STORAGE_KEYS: &[&str] = &["mounts", "allow_shadowed_volumes"];
const STORAGE_ALIASES: &[(&str, &str)] = &[("volumes", "mounts"), ("mount", "mounts"), ("binds", "mounts")];
const MOUNT_KEYS: &[&str] = &[
    "source",
    "target",
    "phases",
    "read_only",
    "processes",
    "external",
    "driver",
    "driver_opts",
    "exclusive",
];
const MOUNT_ALIASES: &[(&str, &str)] = &[
    ("src", "source"),
    ("from", "source"),
    ("host", "source"),
    ("host_path", "source"),
    ("name", "source"),
    ("volume", "source"),
    ("dest", "target"),
    ("dst", "target"),
    ("destination", "target"),
    ("to", "target"),
    ("path", "target"),
    ("container_path", "target"),
    ("container_dir", "target"),
    ("phase", "phases"),
    ("readonly", "read_only"),
    ("ro", "read_only"),
    ("process", "processes"),
    ("process_type", "processes"),
    ("process_types", "processes"),
    ("opts", "driver_opts"),
    ("options", "driver_opts"),
    ("driver_options", "driver_opts"),
];
/// Container paths the runtime manages; mounting over them breaks the container.
const RESERVED_TARGETS: &[&str] = &["proc", "sys", "dev"];
const MAX_PATH: usize = 4096;
const MAX_COMPONENT: usize = 255;
const MAX_COMMAND: usize = 32 * 1024;
const MAX_DRIVER_OPTS: usize = 64;

const LEAVES_HINT: &str = "use \"./name\" for a directory of this app, or ask the admin to allow a host path";
const SOURCE_FORMS: &str = "a source is \"./dir\" (a directory of this app), \"name\" (a volume of this app) \
     or \"/host/path\" (a host path the admin allowed)";

/// Parses the text and decodes it as far as it goes: `Err` for problems that stop everything
/// (size, encoding, nesting, syntax), otherwise the manifest of everything that decoded and the
/// problems found, including the rules between fields.
pub(super) fn parse_partial(bytes: &[u8]) -> Result<(Manifest, Vec<Diagnostic>), Vec<Diagnostic>> {
    let text = text::prepare(bytes).map_err(|d| vec![d])?;
    let locator = Locator::new(text);
    let (document, errors) = DeTable::parse_recoverable(text);
    if !errors.is_empty() {
        // Recovery after one mistake often reports more on the same line: keep the first.
        let mut diagnostics: Vec<Diagnostic> = errors.iter().map(|e| syntax_error(&locator, e)).collect();
        diagnostics.sort_by_key(Diagnostic::pos);
        diagnostics.dedup_by_key(|d| d.line);
        return Err(super::finish(diagnostics));
    }
    let mut decoder = Decoder { text, locator, diagnostics: Vec::new() };
    let (manifest, known) = decoder.document(document.get_ref());
    let mut diagnostics = decoder.diagnostics;
    diagnostics.extend(rules::mount_rules(&manifest, known));
    Ok((manifest, diagnostics))
}

fn syntax_error(locator: &Locator, error: &toml::de::Error) -> Diagnostic {
    let at = locator.pos(error.span().map_or(0, |span| span.start));
    let message = error.message().split_whitespace().collect::<Vec<_>>().join(" ");
    let hint = if message.contains("duplicate key") {
        "a key (or table) may appear only once: remove or merge the repeated one"
    } else if message.contains("recursion") {
        "app.toml never needs more than a few levels: flatten this value"
    } else {
        "check the TOML syntax here: strings need quotes, arrays and inline tables their closing \
         bracket (see https://toml.io)"
    };
    Diagnostic::new(at, format!("invalid TOML: {message}"), Some(hint.to_string()))
}

/// A problem found by a check that knows byte offsets but not line:column.
struct Problem {
    at: usize,
    message: String,
    hint: String,
}

impl Problem {
    fn new(at: usize, message: impl Into<String>, hint: impl Into<String>) -> Self {
        Problem { at, message: message.into(), hint: hint.into() }
    }
}

/// A string value with where it is: `content` is the offset of its first character when the
/// source text spells it plainly (quotes around the value, no escapes), so a problem inside it
/// can point at the exact character; otherwise problems point at the value.
#[derive(Clone, Copy)]
struct Located<'v> {
    value: &'v str,
    start: usize,
    content: Option<usize>,
}

impl<'v> Located<'v> {
    fn new(text: &str, span: Range<usize>, value: &'v str) -> Self {
        let raw = text.get(span.clone()).unwrap_or_default();
        let plain = raw.len() == value.len() + 2
            && matches!(raw.as_bytes().first(), Some(b'"' | b'\''))
            && raw.get(1..raw.len().saturating_sub(1)) == Some(value);
        Located { value, start: span.start, content: plain.then_some(span.start + 1) }
    }

    /// The offset of the character at `index` of the value.
    fn at(&self, index: usize) -> usize {
        self.content.map_or(self.start, |content| content + index)
    }

    fn part(&self, range: Range<usize>) -> Located<'v> {
        let start = self.at(range.start);
        Located {
            value: self.value.get(range.clone()).unwrap_or_default(),
            start,
            content: self.content.map(|_| start),
        }
    }
}

struct Decoder<'s> {
    text: &'s str,
    locator: Locator<'s>,
    diagnostics: Vec<Diagnostic>,
}

fn a_type(value: &DeValue) -> &'static str {
    match value {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a date",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

fn integer(value: &DeInteger) -> Option<i64> {
    i64::from_str_radix(value.as_str(), value.radix()).ok()
}

impl<'s> Decoder<'s> {
    fn pos(&self, offset: usize) -> Pos {
        self.locator.pos(offset)
    }

    fn error(&mut self, at: usize, message: impl Into<String>, hint: impl Into<String>) {
        let at = self.pos(at);
        self.diagnostics.push(Diagnostic::new(at, message, Some(hint.into())));
    }

    fn problem(&mut self, problem: Problem) {
        self.error(problem.at, problem.message, problem.hint);
    }

    fn type_error(&mut self, what: &str, expected: &str, value: &Value, example: &str) {
        let message = format!("{what} must be {expected}, not {}", a_type(value.get_ref()));
        self.error(value.span().start, message, format!("for example: {example}"));
    }

    fn unknown_key(&mut self, key: &Key, place: &str, known: &[&str], aliases: &[(&str, &str)]) {
        let name = key.get_ref().as_ref();
        let allowed = known.join(", ");
        let hint = match suggest(name, known, aliases) {
            Some(guess) => format!("did you mean `{guess}`? {place} accepts: {allowed}"),
            None => format!("{place} accepts: {allowed}"),
        };
        self.error(key.span().start, format!("unknown key {} in {place}", ticked(name)), hint);
    }

    fn table<'v, 'i>(&mut self, what: &str, value: &'v Value<'i>, example: &str) -> Option<&'v DeTable<'i>> {
        match value.get_ref() {
            DeValue::Table(table) => Some(table),
            _ => {
                self.type_error(what, "a table", value, example);
                None
            }
        }
    }

    fn string<'v>(&mut self, what: &str, value: &'v Value<'_>, example: &str) -> Option<Located<'v>> {
        match value.get_ref() {
            DeValue::String(s) => Some(Located::new(self.text, value.span(), s)),
            _ => {
                self.type_error(what, "a string", value, example);
                None
            }
        }
    }

    fn boolean(&mut self, what: &str, value: &Value, example: &str) -> Option<bool> {
        match value.get_ref() {
            DeValue::Boolean(b) => Some(*b),
            _ => {
                self.type_error(what, "true or false", value, example);
                None
            }
        }
    }

    /// An array of strings, each with where it is; `None` (and diagnostics) otherwise.
    fn strings<'v>(&mut self, what: &str, value: &'v Value<'_>, example: &str) -> Option<Vec<Located<'v>>> {
        let DeValue::Array(items) = value.get_ref() else {
            self.type_error(what, "an array of strings", value, example);
            return None;
        };
        let mut out = Vec::new();
        let mut ok = true;
        for item in items.iter() {
            match item.get_ref() {
                DeValue::String(s) => out.push(Located::new(self.text, item.span(), s)),
                _ => {
                    self.type_error(&format!("each entry of {what}"), "a string", item, example);
                    ok = false;
                }
            }
        }
        ok.then_some(out)
    }

    fn document(&mut self, document: &DeTable) -> (Manifest, Known) {
        let mut manifest = Manifest::default();
        let mut known = Known::ALL;
        let mut web_at = None;
        for (key, value) in document.iter() {
            match key.get_ref().as_ref() {
                "app" => {
                    if let Some(table) = self.table("[app]", value, "[app] user = \"1000:1000\"") {
                        self.app(table, &mut manifest);
                    }
                }
                "build" => {
                    let before = self.diagnostics.len();
                    if let Some(table) = self.table("[build]", value, "[build] command = \"bin/compile\"") {
                        manifest.build = self.build(table);
                    }
                    known.build = self.diagnostics.len() == before;
                }
                "web" => {
                    web_at = Some(value.span().start);
                    if let Some(table) = self.table("[web]", value, "[web] port = 5000") {
                        manifest.web = Some(self.web(table));
                    }
                }
                "processes" => {
                    let before = self.diagnostics.len();
                    if let Some(table) = self.table("[processes]", value, "[processes] web = \"bin/server\"")
                    {
                        manifest.processes = self.processes(table);
                    }
                    known.processes = self.diagnostics.len() == before;
                }
                "storage" => {
                    let example = "[[storage.mounts]] source = \"./uploads\" target = \"/app/storage\"";
                    if let Some(table) = self.table("[storage]", value, example) {
                        (manifest.mounts, manifest.allow_shadowed_volumes) = self.storage(table);
                    }
                }
                "env" => {
                    if let Some(table) = self.table("[env]", value, "[env] LOG_LEVEL = \"info\"") {
                        manifest.env = self.env(table);
                    }
                }
                "scale" => {
                    if let Some(table) = self.table("[scale]", value, "[scale] web = 2") {
                        manifest.scale = self.scale(table);
                    }
                }
                _ => self.unknown_key(key, "app.toml's top level", TOP_KEYS, TOP_ALIASES),
            }
        }
        if let Some(at) = web_at
            && known.processes
            && !manifest.processes.is_empty()
            && !manifest.processes.contains_key("web")
        {
            self.error(
                at,
                "[web] is set but [processes] declares no `web` process",
                "add a `web` entry to [processes], or remove [web]",
            );
        }
        (manifest, known)
    }

    fn app(&mut self, table: &DeTable, manifest: &mut Manifest) {
        for (key, value) in table.iter() {
            match key.get_ref().as_ref() {
                "user" => manifest.user = self.user(value),
                "stop_timeout" => manifest.stop_timeout = self.seconds("app", "stop_timeout", value),
                _ => self.unknown_key(key, "[app]", APP_KEYS, APP_ALIASES),
            }
        }
    }

    /// A whole number of seconds from 0 to [`MAX_SECONDS`].
    fn seconds(&mut self, table: &str, key: &str, value: &Value) -> Option<u32> {
        let what = &format!("`{table}.{key}`");
        match value.get_ref() {
            DeValue::Integer(i) => {
                let seconds = integer(i).and_then(|n| u32::try_from(n).ok()).filter(|n| *n <= MAX_SECONDS);
                if seconds.is_none() {
                    self.error(
                        value.span().start,
                        format!("{what} {} is out of range", quoted(&i.to_string())),
                        format!("a number of seconds from 0 to {MAX_SECONDS}"),
                    );
                }
                seconds
            }
            _ => {
                self.type_error(what, "an integer", value, &format!("{key} = 30 (seconds)"));
                None
            }
        }
    }

    fn user(&mut self, value: &Value) -> Option<AppUser> {
        let presets = Preset::listed();
        match value.get_ref() {
            DeValue::String(s) => match s.parse::<AppUser>() {
                Ok(user) => Some(user),
                Err(UserError::Range(id)) => {
                    let message = format!("`app.user` id {} is out of range", quoted(&id));
                    self.error(value.span().start, message, format!("ids go from 0 to {MAX_ID}"));
                    None
                }
                Err(UserError::Form(_)) => {
                    let names: Vec<&str> = Preset::ALL.iter().map(|(_, name, _)| *name).collect();
                    let guess = suggest(s, &names, &[("packeto", "paketo")])
                        .map(|guess| format!("did you mean \"{guess}\"? "))
                        .unwrap_or_default();
                    self.error(
                        value.span().start,
                        format!("`app.user` {} is neither \"uid[:gid]\" nor a preset", quoted(s)),
                        format!(
                            "{guess}use numeric ids such as \"1000:1000\" (user names mean nothing until the \
                             image runs), or a preset: {presets}"
                        ),
                    );
                    None
                }
            },
            DeValue::Integer(i) => {
                match integer(i).and_then(|n| u32::try_from(n).ok()).filter(|n| *n <= MAX_ID) {
                    Some(uid) => Some(AppUser { uid, gid: None }),
                    None => {
                        let message = format!("`app.user` {} is out of range", quoted(&i.to_string()));
                        self.error(value.span().start, message, format!("ids go from 0 to {MAX_ID}"));
                        None
                    }
                }
            }
            _ => {
                let example = format!("user = \"1000:1000\", or a preset: {presets}");
                self.type_error("`app.user`", "a string", value, &example);
                None
            }
        }
    }

    fn build(&mut self, table: &DeTable) -> Build {
        let mut build = Build::default();
        for (key, value) in table.iter() {
            match key.get_ref().as_ref() {
                "dockerfile" => {
                    let example = "dockerfile = \"docker/Dockerfile\"";
                    if let Some(s) = self.string("`build.dockerfile`", value, example) {
                        match dockerfile(s) {
                            Ok(path) => build.dockerfile = path,
                            Err(problem) => self.problem(problem),
                        }
                    }
                }
                "command" => {
                    let example = "command = \"bin/compile-assets\"";
                    if let Some(s) = self.string("`build.command`", value, example) {
                        match command("`build.command`", s) {
                            Ok(()) => build.command = Some(s.value.to_string()),
                            Err(problem) => self.problem(problem),
                        }
                    }
                }
                "env_keys" => build.env_keys = self.env_keys(value),
                _ => self.unknown_key(key, "[build]", BUILD_KEYS, BUILD_ALIASES),
            }
        }
        build
    }

    fn web(&mut self, table: &DeTable) -> Web {
        let mut web = Web::on_port(DEFAULT_WEB_PORT);
        for (key, value) in table.iter() {
            match key.get_ref().as_ref() {
                "port" => match value.get_ref() {
                    DeValue::Integer(i) => {
                        match integer(i).and_then(|n| u16::try_from(n).ok()).filter(|n| *n > 0) {
                            Some(port) => web.port = port,
                            None => self.error(
                                value.span().start,
                                format!("`web.port` {} is not a port number", quoted(&i.to_string())),
                                "ports go from 1 to 65535",
                            ),
                        }
                    }
                    DeValue::String(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
                        self.type_error(
                            "`web.port`",
                            "an integer",
                            value,
                            &format!("port = {s} (no quotes)"),
                        );
                    }
                    _ => self.type_error("`web.port`", "an integer", value, "port = 5000"),
                },
                "healthcheck" => {
                    if let Some(s) = self.string("`web.healthcheck`", value, "healthcheck = \"/health\"") {
                        match healthcheck(s) {
                            Ok(()) => web.healthcheck = Some(s.value.to_string()),
                            Err(problem) => self.problem(problem),
                        }
                    }
                }
                "drain_seconds" => web.drain_seconds = self.seconds("web", "drain_seconds", value),
                "hold_seconds" => web.hold_seconds = self.seconds("web", "hold_seconds", value),
                _ => self.unknown_key(key, "[web]", WEB_KEYS, WEB_ALIASES),
            }
        }
        web
    }

    fn processes(&mut self, table: &DeTable) -> BTreeMap<String, String> {
        let mut processes = BTreeMap::new();
        for (index, (key, value)) in table.iter().enumerate() {
            let name = key.get_ref().as_ref();
            if index == MAX_PROCESSES {
                self.error(
                    key.span().start,
                    format!("[processes] declares more than {MAX_PROCESSES} process types"),
                    "run fewer process types, or combine some of them",
                );
                break;
            }
            let mut ok = true;
            if RESERVED_PROCESS_TYPES.contains(&name) {
                self.error(
                    key.span().start,
                    format!("process name {} is reserved by berth", ticked(name)),
                    "choose another name, such as `worker`",
                );
                ok = false;
            } else if check_process_type(name).is_err() {
                self.error(
                    key.span().start,
                    format!("process name {} is not valid", ticked(name)),
                    "use letters, digits, `-` and `_` (at most 63), such as `web` or `worker`",
                );
                ok = false;
            }
            let what = format!("process {}", ticked(name));
            if let Some(s) = self.string(&what, value, "worker = \"bin/worker\"") {
                match command(&what, s) {
                    Ok(()) if ok => {
                        processes.insert(name.to_string(), s.value.to_string());
                    }
                    Ok(()) => {}
                    Err(problem) => self.problem(problem),
                }
            }
        }
        processes
    }

    /// The mounts and `allow_shadowed_volumes`.
    fn storage(&mut self, table: &DeTable) -> (Vec<DeclaredMount>, bool) {
        let mut mounts = Vec::new();
        let mut allow_shadowed = false;
        for (key, value) in table.iter() {
            match key.get_ref().as_ref() {
                "mounts" => match value.get_ref() {
                    DeValue::Array(items) => {
                        for (index, item) in items.iter().enumerate() {
                            if index == MAX_MOUNTS {
                                self.error(
                                    item.span().start,
                                    format!("app.toml declares more than {MAX_MOUNTS} mounts"),
                                    "mount a few parent directories instead of many small ones",
                                );
                                break;
                            }
                            let mount = match item.get_ref() {
                                DeValue::Table(table) => self.mount_table(table, item.span().start),
                                DeValue::String(s) => {
                                    self.mount_short(Located::new(self.text, item.span(), s))
                                }
                                _ => {
                                    self.type_error(
                                        "each entry of `storage.mounts`",
                                        "a table or a string",
                                        item,
                                        "{ source = \"./uploads\", target = \"/app/storage\" } or \
                                         \"./uploads:/app/storage\"",
                                    );
                                    None
                                }
                            };
                            mounts.extend(mount);
                        }
                    }
                    DeValue::Table(_) => self.error(
                        value.span().start,
                        "`storage.mounts` must be an array of mounts, not a single table",
                        "write [[storage.mounts]] (two brackets) before each mount",
                    ),
                    _ => self.type_error(
                        "`storage.mounts`",
                        "an array of mounts",
                        value,
                        "[[storage.mounts]] tables, or mounts = [\"./uploads:/app/storage\"]",
                    ),
                },
                "allow_shadowed_volumes" => {
                    let example = "allow_shadowed_volumes = true";
                    allow_shadowed =
                        self.boolean("`storage.allow_shadowed_volumes`", value, example).unwrap_or(false);
                }
                _ => self.unknown_key(key, "[storage]", STORAGE_KEYS, STORAGE_ALIASES),
            }
        }
        (mounts, allow_shadowed)
    }

    fn mount_table(&mut self, table: &DeTable, start: usize) -> Option<DeclaredMount> {
        let before = self.diagnostics.len();
        let mut source = None;
        let mut target = None;
        let mut phases = None;
        let mut read_only = false;
        let mut processes = None;
        let mut external = None;
        let mut driver = None;
        let mut driver_opts = None;
        let mut exclusive = false;
        for (key, value) in table.iter() {
            let at = value.span().start;
            match key.get_ref().as_ref() {
                "source" => source = self.string("mount `source`", value, "source = \"./uploads\""),
                "target" => target = self.string("mount `target`", value, "target = \"/app/storage\""),
                "phases" => {
                    phases = self
                        .strings("mount `phases`", value, "phases = [\"deploy\", \"run\"]")
                        .map(|list| (list, at))
                }
                "read_only" => {
                    read_only = self.boolean("mount `read_only`", value, "read_only = true").unwrap_or(false)
                }
                "processes" => {
                    processes = self
                        .strings("mount `processes`", value, "processes = [\"worker\"]")
                        .map(|list| (list, at))
                }
                "external" => {
                    external = self.boolean("mount `external`", value, "external = true").map(|b| (b, at))
                }
                "driver" => driver = self.string("mount `driver`", value, "driver = \"local\""),
                "driver_opts" => {
                    let example =
                        "driver_opts = { type = \"nfs\", o = \"addr=10.0.0.1,rw\", device = \":/export\" }";
                    if let Some(table) = self.table("mount `driver_opts`", value, example) {
                        driver_opts = Some((self.driver_opts(table), at));
                    }
                }
                "exclusive" => {
                    exclusive = self.boolean("mount `exclusive`", value, "exclusive = true").unwrap_or(false)
                }
                _ => self.unknown_key(key, "a mount", MOUNT_KEYS, MOUNT_ALIASES),
            }
        }
        let source = source.and_then(|text| self.source(text, external).map(|source| (source, text)));
        let target = target.and_then(|text| self.target(text).map(|target| (target, text)));
        let phase_set = self.phases(phases.as_ref());
        let process_list = self.mount_processes(processes.as_ref());
        if !table.contains_key("source") {
            let hint = format!("add source = \"./uploads\" ({SOURCE_FORMS})");
            self.error(start, "mount has no `source`", hint);
        }
        if !table.contains_key("target") {
            self.error(
                start,
                "mount has no `target`",
                "add target = \"/app/storage\" (the path inside the container)",
            );
        }
        let (Some((source, source_text)), Some((target, target_text)), Some(phase_set), Some(process_list)) =
            (source, target, phase_set, process_list)
        else {
            return None;
        };
        let is_app_volume = matches!(source, Source::AppVolume(_));
        let mut driver_name = None;
        if let Some(name) = driver {
            if !is_app_volume {
                self.problem(not_app_volume("driver", name.start, &source));
            } else if let Err(problem) = driver_text(name) {
                self.problem(problem);
            } else {
                driver_name = Some(name.value.to_string());
            }
        }
        let mut options = BTreeMap::new();
        if let Some((opts, at)) = driver_opts {
            if !is_app_volume {
                self.problem(not_app_volume("driver_opts", at, &source));
            } else if driver.is_none_or(|name| name.value == "local") {
                for problem in local_driver_opts(&opts) {
                    self.problem(problem);
                }
            }
            options = opts.into_iter().map(|(name, value)| (name, value.value.to_string())).collect();
        }
        if self.diagnostics.len() != before {
            return None;
        }
        let start_pos = self.pos(start);
        Some(DeclaredMount {
            source,
            target,
            phases: phase_set,
            read_only,
            processes: process_list,
            driver: driver_name,
            driver_opts: options,
            exclusive,
            line: start_pos.line,
            column: start_pos.column,
            at: MountPositions {
                source: self.pos(source_text.start),
                target: self.pos(target_text.start),
                phases: phases.as_ref().map_or(start_pos, |(_, at)| self.pos(*at)),
                processes: processes.as_ref().map_or(start_pos, |(_, at)| self.pos(*at)),
                driver: driver.map_or(start_pos, |name| self.pos(name.start)),
            },
        })
    }

    /// `"source:target"` or `"source:target:ro|rw"`.
    fn mount_short(&mut self, spec: Located) -> Option<DeclaredMount> {
        let example = "\"./uploads:/app/storage\", \"pgdata:/data\" or \"/srv/shared/assets:/assets:ro\"";
        let colons: Vec<usize> = spec.value.match_indices(':').map(|(i, _)| i).collect();
        let (first, second) = match colons.as_slice() {
            [first] => (*first, spec.value.len()),
            [first, second] => (*first, *second),
            _ => {
                self.error(
                    spec.start,
                    format!("mount {} must be \"source:target\" or \"source:target:ro\"", quoted(spec.value)),
                    format!("for example: {example}; use a [[storage.mounts]] table for more options"),
                );
                return None;
            }
        };
        let source_text = spec.part(0..first);
        let target_text = spec.part(first + 1..second);
        let source = self.source(source_text, None);
        let target = self.target(target_text);
        let mut read_only = false;
        let mut options_ok = true;
        if second < spec.value.len() {
            let options = spec.part(second + 1..spec.value.len());
            let mut seen = BTreeSet::new();
            let mut offset = 0;
            for option in options.value.split(',') {
                let at = options.at(offset);
                offset += option.len() + 1;
                let problem = match option {
                    "ro" | "rw" if !seen.insert(option) => {
                        Some(format!("mount option {} is repeated", quoted(option)))
                    }
                    "ro" | "rw" if seen.len() > 1 => {
                        Some("mount options \"ro\" and \"rw\" contradict each other".into())
                    }
                    "ro" => {
                        read_only = true;
                        None
                    }
                    "rw" => None,
                    _ => Some(format!("mount option {} is not supported in app.toml", quoted(option))),
                };
                if let Some(message) = problem {
                    self.error(at, message, "the short form accepts one option, \"ro\" or \"rw\"; use a [[storage.mounts]] table for more");
                    options_ok = false;
                }
            }
        }
        let (source, target) = (source?, target?);
        if !options_ok {
            return None;
        }
        let start = self.pos(spec.start);
        Some(DeclaredMount {
            source,
            target,
            phases: default_phases(),
            read_only,
            processes: Vec::new(),
            driver: None,
            driver_opts: BTreeMap::new(),
            exclusive: false,
            line: start.line,
            column: start.column,
            at: MountPositions {
                source: self.pos(source_text.start),
                target: self.pos(target_text.start),
                phases: start,
                processes: start,
                driver: start,
            },
        })
    }

    fn source(&mut self, text: Located, external: Option<(bool, usize)>) -> Option<Source> {
        let source = match mount_source(text) {
            Ok(source) => source,
            Err(problem) => {
                self.problem(problem);
                return None;
            }
        };
        match (external, source) {
            (Some((true, _)), Source::AppVolume(name)) if is_docker_volume_name(&name) => {
                Some(Source::Volume(name))
            }
            (Some((true, _)), Source::AppVolume(name)) => {
                self.error(
                    text.start,
                    format!("external volume name {} is not a valid Docker volume name", quoted(&name)),
                    "Docker volume names have two characters or more: letters, digits, `_`, `.` and `-`",
                );
                None
            }
            (Some((true, at)), other) => {
                self.error(
                    at,
                    format!("`external = true` only applies to a volume name, and {} is {}", quoted(text.value), kind(&other)),
                    "remove `external`, or set source to the name of an existing Docker volume the admin allowed",
                );
                None
            }
            (_, source) => Some(source),
        }
    }

    fn target(&mut self, text: Located) -> Option<String> {
        match mount_target(text) {
            Ok(target) => Some(target),
            Err(problem) => {
                self.problem(problem);
                None
            }
        }
    }

    fn phases(&mut self, list: Option<&(Vec<Located>, usize)>) -> Option<BTreeSet<Phase>> {
        let Some((items, at)) = list else { return Some(default_phases()) };
        if items.is_empty() {
            self.error(
                *at,
                "mount `phases` is empty",
                "omit `phases` for the default [\"deploy\", \"run\"], or list some of build, deploy, run",
            );
            return None;
        }
        let mut phases = BTreeSet::new();
        let mut ok = true;
        for item in items {
            match item.value.parse::<Phase>() {
                Ok(phase) if phases.insert(phase) => {}
                Ok(_) => {
                    self.error(
                        item.start,
                        format!("phase {} is listed twice", quoted(item.value)),
                        "list each phase once",
                    );
                    ok = false;
                }
                Err(_) => {
                    let guess = suggest(item.value, &["build", "deploy", "run"], &[])
                        .map(|guess| format!("did you mean \"{guess}\"? "))
                        .unwrap_or_default();
                    self.error(
                        item.start,
                        format!("unknown phase {}", quoted(item.value)),
                        format!("{guess}phases are \"build\", \"deploy\" and \"run\""),
                    );
                    ok = false;
                }
            }
        }
        ok.then_some(phases)
    }

    fn mount_processes(&mut self, list: Option<&(Vec<Located>, usize)>) -> Option<Vec<String>> {
        let Some((items, at)) = list else { return Some(Vec::new()) };
        if items.is_empty() {
            self.error(
                *at,
                "mount `processes` is empty",
                "omit `processes` to mount in every process type, or name some",
            );
            return None;
        }
        let mut processes = Vec::new();
        let mut ok = true;
        for item in items {
            if check_process_type(item.value).is_err() || RESERVED_PROCESS_TYPES.contains(&item.value) {
                self.error(
                    item.start,
                    format!("process name {} is not valid", quoted(item.value)),
                    "name a process type of [processes] (letters, digits, `-` and `_`), such as \"web\"",
                );
                ok = false;
            } else if processes.iter().any(|p| p == item.value) {
                self.error(
                    item.start,
                    format!("process {} is listed twice", quoted(item.value)),
                    "list each process type once",
                );
                ok = false;
            } else {
                processes.push(item.value.to_string());
            }
        }
        ok.then_some(processes)
    }

    fn driver_opts<'v>(&mut self, table: &'v DeTable) -> BTreeMap<String, Located<'v>> {
        let mut options = BTreeMap::new();
        for (index, (key, value)) in table.iter().enumerate() {
            let name = key.get_ref().as_ref();
            if index == MAX_DRIVER_OPTS {
                self.error(
                    key.span().start,
                    format!("mount `driver_opts` has more than {MAX_DRIVER_OPTS} options"),
                    "keep the driver options to what the driver needs",
                );
                break;
            }
            let key_ok = !name.is_empty()
                && name.len() <= 255
                && name.bytes().all(|b| b.is_ascii_graphic() && !matches!(b, b'=' | b','));
            if !key_ok {
                self.error(
                    key.span().start,
                    format!("driver option name {} is not valid", ticked(name)),
                    "option names are printable ASCII without spaces, `=` or `,`, such as `type`, `o` or `device`",
                );
            }
            let what = format!("driver option {}", ticked(name));
            if let Some(s) = self.string(&what, value, "o = \"addr=10.0.0.1,rw\"") {
                let bad = s.value.char_indices().find(|(_, c)| c.is_control());
                if let Some((index, c)) = bad {
                    self.error(
                        s.at(index),
                        format!("{what} contains the control character {}", describe_char(c)),
                        "remove it",
                    );
                } else if s.value.len() > MAX_PATH {
                    self.error(s.start, format!("{what} is longer than {MAX_PATH} bytes"), "shorten it");
                } else if key_ok {
                    options.insert(name.to_string(), s);
                }
            }
        }
        options
    }
}

fn default_phases() -> BTreeSet<Phase> {
    [Phase::Deploy, Phase::Run].into()
}

fn kind(source: &Source) -> &'static str {
    match source {
        Source::AppDir(_) => "a directory of this app",
        Source::HostPath(_) => "a host path",
        Source::AppVolume(_) => "a volume of this app",
        Source::Volume(_) => "an external volume",
        Source::Entry(_) => "a storage entry",
    }
}

fn not_app_volume(field: &str, at: usize, source: &Source) -> Problem {
    let hint = if matches!(source, Source::Volume(_)) {
        format!(
            "an external volume keeps the driver it was created with: remove `{field}`, or `external = true`"
        )
    } else {
        format!("remove `{field}`, or use a volume name as the source")
    };
    Problem::new(
        at,
        format!("`{field}` only applies to volumes of this app, and this source is {}", kind(source)),
        hint,
    )
}

/// The first character a mount path may not contain, as a problem.
fn path_characters(what: &str, text: Located) -> Result<(), Problem> {
    let value = text.value;
    if value.is_empty() {
        return Err(Problem::new(
            text.start,
            format!("{what} is empty"),
            SOURCE_FORMS.replace("a source", "a mount source"),
        ));
    }
    let bytes = value.as_bytes();
    for (index, c) in value.char_indices() {
        let found = match c {
            ':' | ',' | '=' => Some((
                format!(
                    "{what} {} contains {}, which would be read as a mount option separator",
                    quoted(value),
                    describe_char(c)
                ),
                "rename the directory so that its path has no `:`, `,` or `=`".to_string(),
            )),
            '\\' => Some((
                format!("{what} {} contains a backslash", quoted(value)),
                "separate directories with `/`".to_string(),
            )),
            '%' if bytes.get(index + 1..index + 3).is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) => {
                let hex = value.get(index + 1..index + 3).unwrap_or_default();
                let meaning =
                    u8::from_str_radix(hex, 16).map(char::from).map(describe_char).unwrap_or_default();
                Some((
                    format!("{what} {} contains the percent-encoded sequence `%{hex}`", quoted(value)),
                    format!("berth takes paths literally and refuses %XX sequences: write {meaning} itself"),
                ))
            }
            c if c.is_control() => Some((
                format!("{what} {} contains the control character {}", quoted(value), describe_char(c)),
                "remove it: paths are printable ASCII".to_string(),
            )),
            c if !c.is_ascii() => Some((
                format!("{what} {} contains the non-ASCII character {}", quoted(value), describe_char(c)),
                "write paths in plain ASCII: characters that look like `/`, `.` or `:` are refused"
                    .to_string(),
            )),
            _ => None,
        };
        if let Some((message, hint)) = found {
            return Err(Problem::new(text.at(index), message, hint));
        }
    }
    if value.starts_with(' ') || value.ends_with(' ') {
        return Err(Problem::new(
            text.start,
            format!("{what} {} starts or ends with a space", quoted(value)),
            "remove the spaces around the path",
        ));
    }
    // `.. ` is `..` to some filesystems and to anyone reading the file.
    if let Some((index, _)) =
        components(value).into_iter().find(|(_, part)| part.starts_with(' ') || part.ends_with(' '))
    {
        return Err(Problem::new(
            text.at(index),
            format!("{what} {} has a directory name that starts or ends with a space", quoted(value)),
            "remove the spaces around the name",
        ));
    }
    if value.len() > MAX_PATH {
        return Err(Problem::new(
            text.start,
            format!("{what} is longer than {MAX_PATH} bytes"),
            "use a shorter path",
        ));
    }
    if value.split('/').any(|part| part.len() > MAX_COMPONENT) {
        return Err(Problem::new(
            text.start,
            format!("{what} has a name longer than {MAX_COMPONENT} bytes"),
            "use shorter directory names",
        ));
    }
    Ok(())
}

/// The components of a `/`-separated path, with the index of each in the value; empty and `.`
/// components are dropped.
fn components(value: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut offset = 0;
    for part in value.split('/') {
        if !part.is_empty() && part != "." {
            out.push((offset, part));
        }
        offset += part.len() + 1;
    }
    out
}

fn mount_source(text: Located) -> Result<Source, Problem> {
    path_characters("mount source", text)?;
    let value = text.value;
    if value.starts_with('/') {
        let parts = components(value);
        if let Some((index, _)) = parts.iter().find(|(_, part)| *part == "..") {
            return Err(Problem::new(
                text.at(*index),
                format!("mount source {} contains `..`", quoted(value)),
                "write the absolute path without `..`: grants are checked on the path as written",
            ));
        }
        if parts.is_empty() {
            return Err(Problem::new(
                text.start,
                format!("mount source {} is the host's root directory", quoted(value)),
                "mount a directory the admin allowed, never the whole host",
            ));
        }
        let path: Vec<&str> = parts.iter().map(|(_, part)| *part).collect();
        return Ok(Source::HostPath(PathBuf::from(format!("/{}", path.join("/")))));
    }
    if value == "." || value == ".." || value.starts_with("./") || value.starts_with("../") {
        return app_dir(text);
    }
    if value.starts_with('~') {
        return Err(Problem::new(
            text.start,
            format!("mount source {} uses `~`, which berth does not expand", quoted(value)),
            LEAVES_HINT,
        ));
    }
    if value.contains('/') {
        return Err(Problem::new(
            text.start,
            format!("mount source {} is a relative path without `./`", quoted(value)),
            format!("write \"./{value}\" for a directory of this app; {SOURCE_FORMS}"),
        ));
    }
    let first_ok = value.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric());
    let rest_ok = value.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if !first_ok || !rest_ok || value.len() > 128 {
        return Err(Problem::new(
            text.start,
            format!("mount source {} is not a valid volume name", quoted(value)),
            "volume names start with a letter or digit and have at most 128 letters, digits, `_`, `.` \
             and `-`; write \"./name\" for a directory of this app",
        ));
    }
    Ok(Source::AppVolume(value.to_string()))
}

/// `./rel/path`, normalised; `..` is refused in any spelling.
fn app_dir(text: Located) -> Result<Source, Problem> {
    let value = text.value;
    let mut kept: Vec<&str> = Vec::new();
    let mut first_dotdot = None;
    let mut leaves = false;
    for (index, part) in components(value) {
        if part == ".." {
            first_dotdot.get_or_insert(index);
            leaves |= kept.pop().is_none();
        } else {
            kept.push(part);
        }
    }
    if leaves {
        return Err(Problem::new(
            text.start,
            format!("mount source {} leaves the app's storage directory", quoted(value)),
            LEAVES_HINT,
        ));
    }
    if let Some(index) = first_dotdot {
        let clean = if kept.is_empty() { "./data".to_string() } else { format!("./{}", kept.join("/")) };
        return Err(Problem::new(
            text.at(index),
            format!("mount source {} contains `..`", quoted(value)),
            format!("write the path without `..`, such as {}", quoted(&clean)),
        ));
    }
    if kept.is_empty() {
        return Err(Problem::new(
            text.start,
            format!("mount source {} is the app's storage directory itself", quoted(value)),
            "name a directory inside it, such as \"./data\"",
        ));
    }
    Ok(Source::AppDir(PathBuf::from(kept.join("/"))))
}

fn mount_target(text: Located) -> Result<String, Problem> {
    path_characters("mount target", text)?;
    let value = text.value;
    if !value.starts_with('/') {
        return Err(Problem::new(
            text.start,
            format!("mount target {} must be an absolute container path", quoted(value)),
            format!("start it with `/`, such as {}", quoted(&format!("/{}", value.trim_start_matches("./")))),
        ));
    }
    if let Some((index, _)) = components(value).iter().find(|(_, part)| *part == "..") {
        return Err(Problem::new(
            text.at(*index),
            format!("mount target {} contains `..`", quoted(value)),
            "write the absolute path without `..`",
        ));
    }
    let target = normalize_container_path(value).map_err(|error| match error {
        StorageError::RootContainerPath(_) => Problem::new(
            text.start,
            format!("mount target {} would hide the container's whole filesystem", quoted(value)),
            "mount at a directory, such as \"/data\"",
        ),
        other => Problem::new(
            text.start,
            format!("mount target: {other}"),
            "write a plain absolute path, such as \"/data\"",
        ),
    })?;
    let top = target.split('/').nth(1).unwrap_or_default();
    if RESERVED_TARGETS.contains(&top) {
        return Err(Problem::new(
            text.start,
            format!("mount target {} is inside /{top}, which the container runtime manages", quoted(value)),
            "choose a directory of the app, such as \"/data\"",
        ));
    }
    Ok(target)
}

fn dockerfile(text: Located) -> Result<String, Problem> {
    let value = text.value;
    let what = "`build.dockerfile`";
    if value.is_empty() {
        return Err(Problem::new(
            text.start,
            format!("{what} is empty"),
            "omit it for \"Dockerfile\", or name the file",
        ));
    }
    if let Some((index, c)) =
        value.char_indices().find(|(_, c)| !(c.is_ascii_graphic() || *c == ' ') || *c == '\\')
    {
        return Err(Problem::new(
            text.at(index),
            format!("{what} {} contains {}", quoted(value), describe_char(c)),
            "write the path in printable ASCII, with `/` between directories",
        ));
    }
    if value.starts_with('/') {
        return Err(Problem::new(
            text.start,
            format!("{what} {} is an absolute path", quoted(value)),
            "write it relative to the repo's root, such as \"docker/Dockerfile\"",
        ));
    }
    let parts = components(value);
    if let Some((index, _)) = parts.iter().find(|(_, part)| *part == "..") {
        return Err(Problem::new(
            text.at(*index),
            format!("{what} {} contains `..`", quoted(value)),
            "the Dockerfile must be inside the repo: write its path from the repo's root",
        ));
    }
    if parts.is_empty() || value.ends_with('/') {
        return Err(Problem::new(
            text.start,
            format!("{what} {} names a directory, not a file", quoted(value)),
            "name the file, such as \"docker/Dockerfile\"",
        ));
    }
    if value.len() > MAX_PATH {
        return Err(Problem::new(
            text.start,
            format!("{what} is longer than {MAX_PATH} bytes"),
            "use a shorter path",
        ));
    }
    Ok(parts.iter().map(|(_, part)| *part).collect::<Vec<_>>().join("/"))
}

fn command(what: &str, text: Located) -> Result<(), Problem> {
    if text.value.trim().is_empty() {
        return Err(Problem::new(
            text.start,
            format!("{what} is empty"),
            "write the command, or remove the key",
        ));
    }
    if let Some((index, c)) =
        text.value.char_indices().find(|(_, c)| c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
    {
        return Err(Problem::new(
            text.at(index),
            format!("{what} contains the control character {}", describe_char(c)),
            "remove it",
        ));
    }
    if text.value.len() > MAX_COMMAND {
        return Err(Problem::new(
            text.start,
            format!("{what} is longer than {MAX_COMMAND} bytes"),
            "put the commands in a script in the repo and run that",
        ));
    }
    Ok(())
}

fn healthcheck(text: Located) -> Result<(), Problem> {
    let value = text.value;
    if !value.starts_with('/') {
        return Err(Problem::new(
            text.start,
            format!("`web.healthcheck` {} must be a path starting with `/`", quoted(value)),
            "write the HTTP path only, such as \"/health\"",
        ));
    }
    if let Some((index, c)) = value.char_indices().find(|(_, c)| !c.is_ascii_graphic()) {
        return Err(Problem::new(
            text.at(index),
            format!("`web.healthcheck` {} contains {}", quoted(value), describe_char(c)),
            "write the path in printable ASCII without spaces, percent-encoding what needs it",
        ));
    }
    if value.len() > 2048 {
        return Err(Problem::new(
            text.start,
            "`web.healthcheck` is longer than 2048 bytes",
            "use a shorter path",
        ));
    }
    Ok(())
}

/// Mount types the local volume driver may use from `app.toml`: memory and network
/// filesystems. Any other type (`none`, `ext4`, `overlay`, ...) mounts a device or a directory
/// of the server, which only the admin's grants may reach.
const LOCAL_DRIVER_TYPES: &[&str] = &["tmpfs", "nfs", "nfs4", "cifs"];

/// The options of the local driver that would mount something of the server: a `type` that is
/// not a memory or network filesystem, and `bind` or `rbind` in `o` (the kernel then ignores the
/// type and binds `device`, a host path).
fn local_driver_opts(options: &BTreeMap<String, Located>) -> Vec<Problem> {
    let mut problems = Vec::new();
    if let Some(kind) = options.get("type")
        && !LOCAL_DRIVER_TYPES.contains(&kind.value)
    {
        problems.push(Problem::new(
            kind.start,
            format!(
                "driver option `type` {} would mount a device or directory of the server",
                quoted(kind.value)
            ),
            format!(
                "the local driver takes type {} in app.toml; to mount a directory of the server, \
                 ask the admin to allow it (berth storage:allow) and use its path as the source",
                LOCAL_DRIVER_TYPES.iter().map(|t| quoted(t)).collect::<Vec<_>>().join(", ")
            ),
        ));
    }
    if let Some(o) = options.get("o") {
        let mut offset = 0;
        for option in o.value.split(',') {
            if matches!(option.trim().to_ascii_lowercase().as_str(), "bind" | "rbind") {
                problems.push(Problem::new(
                    o.at(offset),
                    format!(
                        "driver option `o` {} would bind-mount a directory of the server",
                        quoted(o.value)
                    ),
                    "remove the bind option; to mount a directory of the server, ask the admin to allow it \
                     (berth storage:allow) and use its path as the source",
                ));
                break;
            }
            offset += option.len() + 1;
        }
    }
    problems
}

/// A driver is a plain name, never a path (see [`is_driver_name`]).
fn driver_text(text: Located) -> Result<(), Problem> {
    if is_driver_name(text.value) {
        Ok(())
    } else {
        Err(Problem::new(
            text.start,
            format!("volume driver {} is not a valid driver name", quoted(text.value)),
            "a driver is a plain name such as \"local\": lowercase letters, digits, `.`, `_` and `-`, without \
             `/` or `..` (the engine would read a path as a plugin socket); the admin installs other drivers \
             under such a name (docker plugin install --alias <name>) and allows them with `berth storage:allow \
             <app> driver:<name>`",
        ))
    }
}
