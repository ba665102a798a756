//! Fuzzing `app.toml` through parse, validate and the attachments a deploy plans, with proptest:
//! structured documents drawn from the real schema with hostile values (paths with `..`, `/`,
//! `:`, look-alike characters, wrong types, unknown keys), and byte mutations of valid files.
//!
//! Properties: nothing panics; each input is checked within 100 ms; a refusal has at most
//! `MAX_DIAGNOSTICS` diagnostics, sorted, at positions inside the file, without control
//! characters; `check` agrees with `parse` + `validate`; and whatever is accepted is safe to
//! deploy: container paths absolute and normalised, app directories relative without `..`, host
//! paths at or below a grant, external volumes granted, no local-driver option that reaches the
//! server.
//!
//! CI runs 2000 cases of each; the long run is `PROPTEST_CASES=200000 cargo test --test it fuzz`.

use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant};

use berth::manifest::{self, Manifest, Policy};
use berth::storage::{Attachment, Source};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

/// Longest a parse, check and validate of one input may take.
const BOUND: Duration = Duration::from_millis(100);

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(2000);
    ProptestConfig { cases, max_shrink_iters: 2000, ..ProptestConfig::default() }
}

fn grants() -> Vec<PathBuf> {
    vec![PathBuf::from("/srv/shared"), PathBuf::from("/data/app-files/"), PathBuf::from("relative/grant")]
}

fn granted_volumes() -> Vec<String> {
    vec!["shared-cache".to_string()]
}

/// Every property, for one input.
fn properties(bytes: &[u8]) -> Result<(), TestCaseError> {
    let (host_paths, volumes) = (grants(), granted_volumes());
    let policy = Policy { host_paths: &host_paths, volumes: &volumes, drivers: &[], server: None };
    let run = || {
        let started = Instant::now();
        let checked = manifest::check(bytes, &policy, &[]);
        let parsed = manifest::parse(bytes);
        let revalidated = parsed.as_ref().ok().map(|m| manifest::validate(m, &policy, &[]));
        (started.elapsed(), checked, parsed, revalidated)
    };
    let (mut took, checked, parsed, revalidated) = run();
    // A slow input is slow every time; a busy machine only now and then: measure again before
    // calling it slow.
    for _ in 0..2 {
        if took >= BOUND {
            took = took.min(run().0);
        }
    }
    prop_assert!(took < BOUND, "checking {} bytes took {took:?}", bytes.len());
    match checked {
        Ok(manifest) => {
            prop_assert_eq!(parsed.as_ref().ok(), Some(&manifest), "check accepted what parse did not");
            prop_assert_eq!(revalidated, Some(Vec::new()), "validate refuses what check accepted");
            accepted_is_safe(&manifest, &host_paths, &volumes)?;
        }
        Err(diagnostics) => {
            prop_assert!(!diagnostics.is_empty() && diagnostics.len() <= manifest::MAX_DIAGNOSTICS);
            if let Some(found) = revalidated {
                prop_assert!(!found.is_empty(), "check refused what parse and validate accept");
            }
            let lines = bytes.iter().filter(|b| **b == b'\n').count() + 1;
            let mut previous = (0, 0);
            for d in &diagnostics {
                prop_assert!(d.line >= 1 && d.column >= 1 && d.line <= lines, "{d} is outside the file");
                prop_assert!((d.line, d.column) >= previous, "diagnostics are not sorted: {d}");
                previous = (d.line, d.column);
                let text = format!("{}{}", d.message, d.hint.as_deref().unwrap_or_default());
                prop_assert!(!text.chars().any(char::is_control), "a control character in {d:?}");
            }
        }
    }
    Ok(())
}

/// Printable ASCII without the characters Docker reads as mount option separators.
fn plain_path(text: &str) -> bool {
    !text.is_empty()
        && text.bytes().all(|b| b.is_ascii_graphic() || b == b' ')
        && !text.contains([':', ',', '=', '\\'])
}

fn accepted_is_safe(
    manifest: &Manifest,
    grants: &[PathBuf],
    volumes: &[String],
) -> Result<(), TestCaseError> {
    let types = manifest.process_types();
    for attachment in manifest.attachments() {
        let Attachment { source, container_path: target, .. } = &attachment;
        prop_assert!(
            target.starts_with('/') && target != "/" && !target.ends_with('/') && !target.contains("//"),
            "target {target:?} is not absolute and normalised"
        );
        prop_assert!(plain_path(target), "target {target:?}");
        prop_assert!(
            target.split('/').skip(1).all(|part| part != "." && part != ".." && part.trim() == part),
            "target {target:?} has a dot or spaced component"
        );
        let top = target.split('/').nth(1).unwrap_or_default();
        prop_assert!(!["proc", "sys", "dev"].contains(&top), "target {target:?} is reserved");
        prop_assert!(
            attachment.process_type == "_default_" || types.contains(&attachment.process_type),
            "process {:?} is not declared",
            attachment.process_type
        );
        match source {
            Source::AppDir(rel) => {
                let text = rel.to_string_lossy();
                prop_assert!(!rel.is_absolute() && plain_path(&text), "app dir {rel:?}");
                prop_assert!(
                    rel.components().all(|c| matches!(c, Component::Normal(p) if p.to_string_lossy().trim() == p.to_string_lossy()))
                        && text.split('/').all(|p| p != ".." && p != "." && !p.is_empty()),
                    "app dir {rel:?} is not a clean relative path"
                );
            }
            Source::HostPath(path) => {
                let text = path.to_string_lossy();
                prop_assert!(
                    path.is_absolute() && path != Path::new("/") && plain_path(&text),
                    "host path {path:?}"
                );
                prop_assert!(
                    path.components().skip(1).all(|c| matches!(c, Component::Normal(_))),
                    "host path {path:?} is not clean"
                );
                let granted = grants.iter().filter(|g| g.is_absolute()).any(|g| path.starts_with(g));
                prop_assert!(granted, "host path {path:?} is not below a grant");
            }
            Source::Volume(name) => {
                prop_assert!(volumes.contains(name), "external volume {name:?} is not granted")
            }
            Source::AppVolume(name) => prop_assert!(
                name.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
                    && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-')),
                "app volume {name:?}"
            ),
            Source::Entry(name) => prop_assert!(false, "app.toml made a storage entry mount: {name}"),
        }
    }
    for mount in &manifest.mounts {
        if mount.driver.as_deref().is_none_or(|d| d == "local") {
            if let Some(kind) = mount.driver_opts.get("type") {
                prop_assert!(
                    ["tmpfs", "nfs", "nfs4", "cifs"].contains(&kind.as_str()),
                    "local driver type {kind:?}"
                );
            }
            if let Some(o) = mount.driver_opts.get("o") {
                let binds = o
                    .split(',')
                    .any(|opt| matches!(opt.trim().to_ascii_lowercase().as_str(), "bind" | "rbind"));
                prop_assert!(!binds, "local driver options {o:?} bind");
            }
        }
    }
    let dockerfile = &manifest.build.dockerfile;
    prop_assert!(
        !dockerfile.starts_with('/') && dockerfile.split('/').all(|p| p != ".." && p != "." && !p.is_empty()),
        "dockerfile {dockerfile:?}"
    );
    Ok(())
}

// ---- structured documents
//
// Each document draws a hostility `h` (in percent) and every field is hostile with that
// chance: h = 1 gives mostly valid files (so that what is accepted gets checked), h = 40 files
// that are wrong everywhere at once.

/// A TOML basic string holding `text`, escaping what must be.
fn basic(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// How a string is written: basic (`"..."`), or literal (`'...'`) when it can be.
#[derive(Debug, Clone, Copy)]
enum Quote {
    Basic,
    Literal,
}

impl Quote {
    fn quote(self, text: &str) -> String {
        let literal_ok = !text.contains(['\'', '\n', '\r']) && !text.chars().any(char::is_control);
        match self {
            Quote::Literal if literal_ok => format!("'{text}'"),
            _ => basic(text),
        }
    }
}

fn quoted(text: impl Strategy<Value = String>) -> impl Strategy<Value = String> {
    let quote = prop_oneof![3 => Just(Quote::Basic), 1 => Just(Quote::Literal)];
    (quote, text).prop_map(|(quote, text)| quote.quote(&text))
}

/// `benign` most of the time, `hostile` `h` percent of the time.
fn either<T: std::fmt::Debug>(
    h: u32,
    benign: impl Strategy<Value = T> + 'static,
    hostile: impl Strategy<Value = T> + 'static,
) -> BoxedStrategy<T> {
    prop_oneof![100 - h => benign, h => hostile].boxed()
}

fn pick(items: &[&'static str]) -> BoxedStrategy<String> {
    prop::sample::select(items.to_vec()).prop_map(String::from).boxed()
}

fn component(h: u32) -> BoxedStrategy<String> {
    let hostile = prop_oneof![
        6 => pick(&[
            "..", ".", "", ".. ", " ..", ". .", "...", "%2e%2e", "%2F", "%", "%zz", "\u{2024}\u{2024}", "\u{2025}",
            "\u{ff0e}\u{ff0e}", "\u{2215}", "\u{ff0f}", "a:b", "a,ro", "x=y", "\\", "~", "\u{0}", "\n", "\t",
            "\u{202e}", "\u{feff}", " ", "a b", "\u{e9}", "\u{1b}[31m", "shared2",
        ]),
        1 => any::<char>().prop_map(String::from),
        1 => "\\PC{0,4}",
        1 => Just("a".repeat(256)),
    ];
    either(
        h,
        prop_oneof![pick(&["uploads", "data", "etc", "shared", "assets", "x.y"]), "[a-z0-9][a-z0-9._-]{0,7}"],
        hostile,
    )
}

/// `/`-separated components: one to three, or (when hostile) none.
fn components(h: u32) -> BoxedStrategy<String> {
    let count = either(h, 1usize..4, Just(0usize));
    count
        .prop_flat_map(move |n| prop::collection::vec(component(h), n))
        .prop_map(|parts| parts.join("/"))
        .boxed()
}

fn ending(h: u32) -> BoxedStrategy<String> {
    either(h, pick(&["", "", "/"]), pick(&["/.", "/..", " ", "/ ", "//"]))
}

/// A mount source: an app directory, a host path (granted or not), an app volume, or worse.
fn source(h: u32) -> BoxedStrategy<String> {
    let prefix = either(
        h,
        pick(&["./", "./", "/srv/shared/", "/data/app-files/", "/srv/shared"]),
        pick(&[
            "",
            "/",
            "../",
            "//",
            "~/",
            "./a/../",
            "/./",
            "/srv/",
            "/srv/shared/../",
            "/data/",
            "/srv/shared2/",
            ".\\",
        ]),
    );
    let path = (prefix, components(h), ending(h)).prop_map(|(p, c, e)| format!("{p}{c}{e}"));
    let volume = either(
        h,
        "[a-z0-9][a-z0-9_.-]{0,10}",
        pick(&["-v", ".hidden", "x", "a b", "Shared-Cache", "other_pgdata", "..", "v:ro"]),
    );
    prop_oneof![3 => path, 1 => volume].boxed()
}

fn target(h: u32) -> BoxedStrategy<String> {
    let prefix = either(
        h,
        Just("/".to_string()),
        pick(&["", "./", "//", "/proc/", "/sys", "/dev/", "/../", "~/", "/./", "\\"]),
    );
    (prefix, components(h), ending(h)).prop_map(|(p, c, e)| format!("{p}{c}{e}")).boxed()
}

/// A value of any TOML type, as text.
fn any_value() -> BoxedStrategy<String> {
    prop_oneof![
        any::<i64>().prop_map(|i| i.to_string()),
        pick(&[
            "0x10000",
            "1.5",
            "nan",
            "true",
            "false",
            "1979-05-27T07:32:00Z",
            "[]",
            "[1, \"a\"]",
            "{}",
            "{ a = 1 }"
        ]),
        "\\PC{0,6}".prop_map(|s| basic(&s)),
    ]
    .boxed()
}

/// A well-typed value, or (`h` percent of the time) a value of any type.
fn typed(h: u32, value: impl Strategy<Value = String> + 'static) -> BoxedStrategy<String> {
    either(h, value, any_value())
}

/// An array of strings, as text.
fn strings(
    items: impl Strategy<Value = String> + 'static,
    size: std::ops::Range<usize>,
) -> BoxedStrategy<String> {
    prop::collection::vec(quoted(items), size).prop_map(|list| format!("[{}]", list.join(", "))).boxed()
}

/// An optional key: present with probability `p`.
fn maybe(p: f64, value: BoxedStrategy<String>) -> BoxedStrategy<Option<String>> {
    prop::option::weighted(p, value).boxed()
}

/// The `key = value` pairs of one mount.
fn mount_pairs(h: u32) -> BoxedStrategy<Vec<(String, String)>> {
    let phase = either(h, pick(&["deploy", "run"]), pick(&["build", "runn", "", "Deploy", "deploy "]));
    let process = either(
        h,
        Just("web".to_string()),
        pick(&["worker", "clock", "_default_", "web ", "../web", "", "Web"]),
    );
    let option = either(
        h,
        prop_oneof![
            Just(("type", "tmpfs")),
            Just(("o", "size=1m")),
            Just(("type", "nfs")),
            Just(("device", ":/export"))
        ],
        prop_oneof![
            Just(("type", "none")),
            Just(("type", "ext4")),
            Just(("type", "overlay")),
            Just(("o", "bind")),
            Just(("o", "rbind,ro")),
            Just(("o", "addr=10.0.0.1,bind")),
            Just(("o", "size=1m, BIND")),
            Just(("device", "/etc")),
            Just(("o=bind", "x")),
            Just(("", "x")),
            Just(("o", "\u{7}")),
        ],
    );
    let driver_opts = prop::collection::vec(option, 0..4).prop_map(|options| {
        let mut seen = Vec::new();
        let pairs: Vec<String> = options
            .into_iter()
            .filter(|(k, _)| {
                let fresh = !seen.contains(k);
                seen.push(*k);
                fresh
            })
            .map(|(k, v)| format!("{} = {}", basic(k), basic(v)))
            .collect();
        format!("{{ {} }}", pairs.join(", "))
    });
    let bool = || typed(h, any::<bool>().prop_map(|b| b.to_string()));
    let external = maybe(0.12, typed(h, Just("true".to_string())));
    let unknown = either(
        h,
        Just(None),
        (pick(&["src", "readonly", "type", "propagation", "Source", "s\u{43e}urce"]), any_value())
            .prop_map(Some),
    );
    let fields = (
        (quoted(source(h)), quoted(target(h))),
        (either(h, Just(true), Just(false)), either(h, Just(true), Just(false))),
        maybe(0.3, typed(h, strings(phase, 1..3))),
        maybe(0.2, bool()),
        maybe(0.15, typed(h, strings(process, 1..2))),
        external,
        maybe(0.1, typed(h, pick(&["\"local\"", "\"vieux/sshfs:latest\""]))),
        maybe(0.25, typed(h, driver_opts)),
        maybe(0.1, bool()),
        unknown,
    );
    fields
        .prop_map(
            |(
                (source, target),
                (keep_source, keep_target),
                phases,
                read_only,
                processes,
                external,
                driver,
                opts,
                exclusive,
                unknown,
            )| {
                let mut pairs = Vec::new();
                // The granted external volume, when this mount is external.
                let source =
                    if external.is_some() && source.len() % 4 != 0 { basic("shared-cache") } else { source };
                if keep_source {
                    pairs.push(("source".to_string(), source));
                }
                if keep_target {
                    pairs.push(("target".to_string(), target));
                }
                for (key, value) in [
                    ("phases", phases),
                    ("read_only", read_only),
                    ("processes", processes),
                    ("external", external),
                    ("driver", driver),
                    ("driver_opts", opts),
                    ("exclusive", exclusive),
                ] {
                    pairs.extend(value.map(|v| (key.to_string(), v)));
                }
                pairs.extend(unknown.map(|(k, v)| (basic(&k), v)));
                pairs
            },
        )
        .boxed()
}

/// One mount: a `[[storage.mounts]]` table, an inline table, or the short form.
#[derive(Debug, Clone)]
enum Mount {
    Table(Vec<(String, String)>),
    Inline(Vec<(String, String)>),
    Short(String),
}

fn mount(h: u32) -> BoxedStrategy<Mount> {
    let option =
        either(h, pick(&["", "", ":ro", ":rw"]), pick(&[":ro,rw", ":z", ":", ":ro:x", ":nocopy", ":ro,ro"]));
    let short =
        (source(h), target(h), option).prop_map(|(s, t, o)| Mount::Short(basic(&format!("{s}:{t}{o}"))));
    prop_oneof![
        4 => mount_pairs(h).prop_map(Mount::Table),
        2 => mount_pairs(h).prop_map(Mount::Inline),
        2 => short,
    ]
    .boxed()
}

fn section(header: &str, pairs: &[(String, String)]) -> String {
    let mut out = format!("{header}\n");
    for (key, value) in pairs {
        out.push_str(&format!("{key} = {value}\n"));
    }
    out
}

fn sections(h: u32) -> BoxedStrategy<Vec<Option<String>>> {
    let user = typed(
        h,
        either(
            h,
            pick(&["\"1000\"", "\"1000:1000\"", "\"herokuish\"", "\"root\"", "1000", "0"]),
            pick(&["\"www-data\"", "\"70000\"", "65536", "\"1:2:3\"", "\"-1\"", "\"1000:\"", "0x10000"]),
        ),
    );
    let app = user.prop_map(|u| section("[app]", &[("user".into(), u)])).boxed();
    let dockerfile = typed(h, quoted(either(h, pick(&["Dockerfile", "docker/Dockerfile"]), source(h))));
    let command = typed(
        h,
        quoted(either(h, pick(&["make", "bin/compile"]), pick(&["", "  ", "a\u{0}b", "\u{1b}[2J"]))),
    );
    let build = (maybe(0.5, dockerfile), maybe(0.7, command))
        .prop_map(|(dockerfile, command)| {
            let mut pairs = Vec::new();
            pairs.extend(dockerfile.map(|d| ("dockerfile".to_string(), d)));
            pairs.extend(command.map(|c| ("command".to_string(), c)));
            section("[build]", &pairs)
        })
        .boxed();
    let port = typed(
        h,
        either(h, pick(&["5000", "8080", "65535"]), pick(&["0", "70000", "-1", "\"5000\"", "0x10000"])),
    );
    let health = typed(
        h,
        quoted(either(
            h,
            pick(&["/health", "/"]),
            pick(&["health", "/a b", "http://x/", "/\u{0}", "/h\r\nX: y"]),
        )),
    );
    let web = (maybe(0.7, port), maybe(0.5, health))
        .prop_map(|(port, health)| {
            let mut pairs = Vec::new();
            pairs.extend(port.map(|p| ("port".to_string(), p)));
            pairs.extend(health.map(|h| ("healthcheck".to_string(), h)));
            section("[web]", &pairs)
        })
        .boxed();
    let name = either(h, pick(&["worker", "clock"]), pick(&["_default_", "bad name", "", "-x"]));
    let processes = (
        prop::collection::btree_set(name, 0..3),
        either(h, Just(true), Just(false)),
        typed(h, Just(basic("bin/run"))),
    )
        .prop_map(|(names, with_web, command)| {
            let mut pairs: Vec<(String, String)> =
                names.into_iter().map(|n| (basic(&n), command.clone())).collect();
            if with_web {
                pairs.push(("web".to_string(), basic("bin/web")));
            }
            section("[processes]", &pairs)
        })
        .boxed();
    let unknown = either(
        h,
        Just(None),
        pick(&["[stroage]\n", "[[mounts]]\nsource = \"/\"\n", "[app.extra]\n"]).prop_map(Some),
    )
    .boxed();
    (maybe(0.5, app), maybe(0.3, build), maybe(0.5, web), maybe(0.3, processes), unknown)
        .prop_map(|(app, build, web, processes, unknown)| vec![app, build, web, processes, unknown])
        .boxed()
}

/// A whole `app.toml` drawn from the schema.
fn document() -> impl Strategy<Value = String> {
    let hostility = prop::sample::select(vec![1u32, 1, 4, 15, 40]);
    hostility.prop_flat_map(|h| {
        let top_unknown =
            either(h, Just(String::new()), pick(&["privileged = true\n", "volumes = [\"/:/host\"]\n"]));
        (sections(h), prop::collection::vec(mount(h), 0..5), top_unknown).prop_map(
            |(sections, mounts, top_unknown)| {
                let mut top = top_unknown;
                let mut tables: Vec<String> = sections.into_iter().flatten().collect();
                let inline: Vec<String> = mounts
                    .iter()
                    .filter_map(|m| match m {
                        Mount::Inline(pairs) => Some(format!(
                            "{{ {} }}",
                            pairs.iter().map(|(k, v)| format!("{k} = {v}")).collect::<Vec<_>>().join(", ")
                        )),
                        Mount::Short(text) => Some(text.clone()),
                        Mount::Table(_) => None,
                    })
                    .collect();
                // A static array and an array of tables cannot both define `storage.mounts`: the
                // inline ones win when there are both.
                if !inline.is_empty() {
                    top.push_str(&format!("storage.mounts = [\n  {},\n]\n", inline.join(",\n  ")));
                } else {
                    for m in &mounts {
                        if let Mount::Table(pairs) = m {
                            tables.push(section("[[storage.mounts]]", pairs));
                        }
                    }
                }
                format!("{top}\n{}", tables.join("\n"))
            },
        )
    })
}

// ---- byte mutations of valid files

const RICH: &str = r#"[app]
user = "1000:1000"

[build]
dockerfile = "docker/Dockerfile"
command = "bin/compile"

[web]
port = 5000
healthcheck = "/health"

[processes]
web = "bin/web"
worker = "bin/worker"

[[storage.mounts]]
source = "./uploads"
target = "/app/storage"
phases = ["deploy", "run"]
processes = ["web"]

[[storage.mounts]]
source = "pgdata"
target = "/var/lib/postgresql/data"
driver = "local"
driver_opts = { type = "tmpfs", o = "size=64m" }
exclusive = true

[[storage.mounts]]
source = "/srv/shared/assets"
target = "/assets"
read_only = true

[[storage.mounts]]
source = "shared-cache"
external = true
target = "/cache"
phases = ["build"]
"#;

const SHORT: &str = "storage.mounts = [\"./a:/a\", \"v:/v:ro\", \"/srv/shared:/s:rw\", { source = \"./b\", target = \"/b\" }]\n";

fn seeds() -> Vec<&'static str> {
    vec![
        RICH,
        SHORT,
        include_str!("../../templates/web/app.toml"),
        include_str!("../../templates/build-cache/app.toml"),
    ]
}

/// Bytes worth inserting: syntax, path separators, dots, look-alikes, bad UTF-8, a BOM.
const SNIPPETS: &[&[u8]] = &[
    b"..",
    b"/",
    b"./",
    b"../",
    b":",
    b",",
    b"=",
    b"\"",
    b"'",
    b"[",
    b"]",
    b"[[",
    b"]]",
    b"{",
    b"}",
    b"\n",
    b"\r\n",
    b"#",
    b"\\",
    b"\\u002e",
    b"%2e",
    b"\x00",
    b"\x07",
    b"\x1b",
    b"\x7f",
    b"\xff",
    b"\xc0\xae",
    b"\xe2\x80",
    b"\xef\xbb\xbf",
    "\u{2024}".as_bytes(),
    "\u{ff0e}".as_bytes(),
    "\u{2215}".as_bytes(),
    b" ",
    b"\t",
    b"1e9",
    b"true",
    b"source",
    b"target",
    b"external = true",
    b"phases",
    b"processes",
    b"/etc",
    b"/srv/shared/..",
    b"driver_opts = { type = \"none\", o = \"bind\", device = \"/\" }",
    b"storage.mounts",
];

#[derive(Debug, Clone)]
enum Edit {
    Replace(usize, u8),
    Insert(usize, usize),
    Delete(usize, usize),
    Duplicate(usize, usize, usize),
    Truncate(usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        3 => (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Edit::Replace(at, byte)),
        4 => (any::<usize>(), 0..SNIPPETS.len()).prop_map(|(at, snippet)| Edit::Insert(at, snippet)),
        2 => (any::<usize>(), 1usize..16).prop_map(|(at, len)| Edit::Delete(at, len)),
        1 => (any::<usize>(), 1usize..64, any::<usize>()).prop_map(|(from, len, to)| Edit::Duplicate(from, len, to)),
        1 => any::<usize>().prop_map(Edit::Truncate),
    ]
}

fn mutate(seed: &str, edits: &[Edit]) -> Vec<u8> {
    let mut bytes = seed.as_bytes().to_vec();
    for edit in edits {
        let len = bytes.len().max(1);
        match *edit {
            Edit::Replace(at, byte) => {
                if let Some(b) = bytes.get_mut(at % len) {
                    *b = byte;
                }
            }
            Edit::Insert(at, snippet) => {
                let at = at % (bytes.len() + 1);
                bytes.splice(at..at, SNIPPETS[snippet].iter().copied());
            }
            Edit::Delete(at, n) => {
                let at = at % len;
                let end = (at + n).min(bytes.len());
                bytes.drain(at.min(end)..end);
            }
            Edit::Duplicate(from, n, to) => {
                let from = from % len;
                let slice: Vec<u8> = bytes.iter().skip(from).take(n).copied().collect();
                let to = to % (bytes.len() + 1);
                bytes.splice(to..to, slice);
            }
            Edit::Truncate(at) => bytes.truncate(at % (bytes.len() + 1)),
        }
    }
    bytes
}

#[test]
fn fuzz_seeds_are_valid_manifests() {
    let (host_paths, volumes) = (grants(), granted_volumes());
    let policy = Policy { host_paths: &host_paths, volumes: &volumes, drivers: &[], server: None };
    for seed in seeds() {
        let manifest =
            manifest::check(seed.as_bytes(), &policy, &[]).unwrap_or_else(|d| panic!("{d:?}\n{seed}"));
        accepted_is_safe(&manifest, &host_paths, &volumes).unwrap();
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn fuzz_structured_documents(text in document()) {
        properties(text.as_bytes())?;
    }

    #[test]
    fn fuzz_mutated_files(seed in prop::sample::select(seeds()), edits in prop::collection::vec(edit(), 1..8)) {
        properties(&mutate(seed, &edits))?;
    }
}
