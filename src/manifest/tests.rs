use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use super::*;
use crate::names::EntryName;
use crate::storage::{Attachment, DEFAULT_PROCESS_TYPE, Origin, Phase, Source};

/// The example of the `app.toml` reference, verbatim.
const SPEC_EXAMPLE: &str = r#"[app]
user = "1000:1000"            # uid[:gid] the processes run as; ensured dirs are chowned to it.
                              # Presets: "herokuish" (32767), "heroku" (1000), "paketo" (2000),
                              # "root" (0). Default: the image's USER, else root.

[build]
dockerfile = "Dockerfile"     # default
command = "bin/compile-assets"  # optional: runs in the built image with build-phase mounts;
                              # its filesystem changes are committed into the release image

[web]
port = 5000                   # container port the web process listens on
healthcheck = "/health"       # optional HTTP path that must answer 2xx before the swap

[processes]                   # optional, like a Procfile; default: one "web" process, image CMD
web = "bin/server"
worker = "bin/worker"

[[storage.mounts]]
source = "./uploads"          # app directory: <storage root>/<app>/uploads on the host
target = "/app/storage"

[[storage.mounts]]
source = "pgdata"             # app volume: the Docker volume "<app>_pgdata"
target = "/var/lib/postgresql/data"
processes = ["worker"]        # default: every process type

[[storage.mounts]]
source = "/srv/shared/assets" # host path: only where the admin allowed it
target = "/assets"
read_only = true
phases = ["deploy", "run"]

[[storage.mounts]]
source = "cache"
target = "/cache"
phases = ["build"]            # only for [build].command

# short form, as in `docker run -v` (may be mixed with tables in an inline array):
# storage.mounts = ["./uploads:/app/storage", "pgdata:/data", "/srv/shared/assets:/assets:ro"]
"#;

fn render(diagnostics: &[Diagnostic]) -> String {
    diagnostics.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n")
}

fn parse_ok(text: &str) -> Manifest {
    match parse(text.as_bytes()) {
        Ok(manifest) => manifest,
        Err(diagnostics) => panic!("expected {text:?} to parse, got:\n{}", render(&diagnostics)),
    }
}

fn errors(text: &str) -> Vec<Diagnostic> {
    match parse(text.as_bytes()) {
        Ok(manifest) => panic!("expected {text:?} to fail, got {manifest:#?}"),
        Err(diagnostics) => diagnostics,
    }
}

/// The only diagnostic of `text`, which must have exactly one.
fn error(text: &str) -> Diagnostic {
    let diagnostics = errors(text);
    assert_eq!(diagnostics.len(), 1, "expected one diagnostic for {text:?}, got:\n{}", render(&diagnostics));
    diagnostics.into_iter().next().unwrap()
}

fn at(diagnostic: &Diagnostic) -> (usize, usize) {
    (diagnostic.line, diagnostic.column)
}

/// 1-based line and column of the first `needle` in `text`.
fn find(text: &str, needle: &str) -> (usize, usize) {
    let offset = text.find(needle).unwrap_or_else(|| panic!("{needle:?} not in {text:?}"));
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().unwrap().chars().count() + 1;
    (line, column)
}

fn mount_error(table_body: &str) -> Diagnostic {
    error(&format!("[[storage.mounts]]\n{table_body}\n"))
}

fn mount_ok(table_body: &str) -> DeclaredMount {
    let mut manifest = parse_ok(&format!("[[storage.mounts]]\n{table_body}\n"));
    assert_eq!(manifest.mounts.len(), 1);
    manifest.mounts.remove(0)
}

fn short_source_error(source: &str) -> Diagnostic {
    mount_error(&format!("source = {}\ntarget = \"/data\"", toml_string(source)))
}

fn source_of(source: &str) -> Source {
    mount_ok(&format!("source = {}\ntarget = \"/data\"", toml_string(source))).source
}

/// A TOML basic string for any text.
fn toml_string(value: &str) -> String {
    let mut out = String::from("\"");
    for c in value.chars() {
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

fn phases(list: &[Phase]) -> BTreeSet<Phase> {
    list.iter().copied().collect()
}

fn without_positions(mut manifest: Manifest) -> Manifest {
    for mount in &mut manifest.mounts {
        mount.line = 0;
        mount.column = 0;
        mount.at = MountPositions::default();
    }
    manifest
}

fn mount(source: Source, target: &str) -> DeclaredMount {
    DeclaredMount {
        source,
        target: target.to_string(),
        phases: phases(&[Phase::Deploy, Phase::Run]),
        read_only: false,
        processes: Vec::new(),
        driver: None,
        driver_opts: BTreeMap::new(),
        exclusive: false,
        line: 0,
        column: 0,
        at: MountPositions::default(),
    }
}

fn admin(source: Source, target: &str, process_type: &str, phase_list: &[Phase]) -> Attachment {
    Attachment {
        source,
        container_path: target.to_string(),
        phases: phases(phase_list),
        process_type: process_type.to_string(),
        subpath: None,
        readonly: false,
        volume_options: None,
        volume_chown: None,
        made_by: Origin::Admin,
    }
}

const NO_POLICY: Policy<'static> = Policy { host_paths: &[], volumes: &[], drivers: &[], server: None };

// ---------------------------------------------------------------------------------------------
// The reference example and the overall shape.

#[test]
fn the_reference_example_parses_to_the_expected_manifest() {
    let manifest = parse_ok(SPEC_EXAMPLE);
    let expected = Manifest {
        user: Some(AppUser { uid: 1000, gid: Some(1000) }),
        stop_timeout: None,
        build: Build {
            dockerfile: "Dockerfile".into(),
            command: Some("bin/compile-assets".into()),
            env_keys: Vec::new(),
        },
        web: Some(Web { healthcheck: Some("/health".into()), ..Web::on_port(5000) }),
        processes: [("web".to_string(), "bin/server".to_string()), ("worker".into(), "bin/worker".into())]
            .into(),
        mounts: vec![
            mount(Source::AppDir("uploads".into()), "/app/storage"),
            DeclaredMount {
                processes: vec!["worker".into()],
                ..mount(Source::AppVolume("pgdata".into()), "/var/lib/postgresql/data")
            },
            DeclaredMount {
                read_only: true,
                ..mount(Source::HostPath("/srv/shared/assets".into()), "/assets")
            },
            DeclaredMount {
                phases: phases(&[Phase::Build]),
                ..mount(Source::AppVolume("cache".into()), "/cache")
            },
        ],
        ..Manifest::default()
    };
    assert_eq!(without_positions(manifest.clone()), expected);

    // Positions: the mount starts at its header; fields point at their values.
    let second = &manifest.mounts[1];
    assert_eq!((second.line, second.column), find(SPEC_EXAMPLE, "[[storage.mounts]]\nsource = \"pgdata\""));
    assert_eq!(second.at.source, Pos { line: 24, column: 10 });
    assert_eq!(second.at.target, Pos { line: 25, column: 10 });
    assert_eq!(second.at.processes, Pos { line: 26, column: 13 });
    assert_eq!(second.at.phases, second.pos(), "an absent field points at the mount");
    assert_eq!(manifest.process_types(), vec!["web".to_string(), "worker".to_string()]);
}

#[test]
fn the_reference_example_validates_when_the_host_path_is_allowed() {
    let manifest = parse_ok(SPEC_EXAMPLE);
    let granted = [PathBuf::from("/srv/shared")];
    let policy = Policy { host_paths: &granted, volumes: &[], drivers: &[], server: None };
    assert_eq!(validate(&manifest, &policy, &[]), vec![]);
    assert!(check(SPEC_EXAMPLE.as_bytes(), &policy, &[]).is_ok());

    let diagnostics = validate(&manifest, &NO_POLICY, &[]);
    assert_eq!(diagnostics.len(), 1, "{}", render(&diagnostics));
    assert_eq!(at(&diagnostics[0]), find(SPEC_EXAMPLE, "\"/srv/shared/assets\" #"));
    assert_eq!(
        diagnostics[0].message,
        "mount source \"/srv/shared/assets\" is a host path the admin has not allowed for this app"
    );
    let hint = diagnostics[0].hint.as_deref().unwrap();
    assert!(hint.contains("berth storage:allow <app> /srv/shared/assets"), "{hint}");
    assert_eq!(check(SPEC_EXAMPLE.as_bytes(), &NO_POLICY, &[]).unwrap_err(), diagnostics);
}

#[test]
fn the_short_form_of_the_reference_parses_like_the_tables() {
    let text =
        r#"storage.mounts = ["./uploads:/app/storage", "pgdata:/data", "/srv/shared/assets:/assets:ro"]"#;
    let manifest = without_positions(parse_ok(text));
    assert_eq!(
        manifest.mounts,
        vec![
            mount(Source::AppDir("uploads".into()), "/app/storage"),
            mount(Source::AppVolume("pgdata".into()), "/data"),
            DeclaredMount {
                read_only: true,
                ..mount(Source::HostPath("/srv/shared/assets".into()), "/assets")
            },
        ]
    );
}

#[test]
fn short_and_table_forms_mix_in_an_inline_array() {
    let text = "[storage]\nmounts = [\n  \"./a:/a\",\n  { source = \"vol\", target = \"/b\", phases = [\"run\"] },\n  \"./c:/c:rw\",\n]\n";
    let manifest = parse_ok(text);
    assert_eq!(manifest.mounts.len(), 3);
    assert_eq!(manifest.mounts[1].phases, phases(&[Phase::Run]));
    assert!(!manifest.mounts[2].read_only);
    assert_eq!(manifest.mounts[0].pos(), Pos { line: 3, column: 3 });
    assert_eq!(manifest.mounts[0].at.source, Pos { line: 3, column: 4 });
    assert_eq!(manifest.mounts[0].at.target, Pos { line: 3, column: 8 });
    assert_eq!(manifest.mounts[1].pos(), Pos { line: 4, column: 3 });
}

#[test]
fn empty_and_comment_only_files_declare_nothing() {
    for text in ["", "\n\n", "# nothing here\n", "   \t\n# x\n", "\u{feff}", "\u{feff}# bom\n"] {
        let manifest = parse_ok(text);
        assert_eq!(manifest, Manifest::default(), "{text:?}");
        assert_eq!(manifest.build.dockerfile, "Dockerfile");
        assert_eq!(manifest.process_types(), vec!["web".to_string()]);
        assert!(manifest.attachments().is_empty());
    }
}

#[test]
fn diagnostics_render_like_the_reference() {
    // The reference's example error: app.toml:14:10.
    let mut text = String::new();
    for line in 1..=12 {
        text.push_str(&format!("# line {line}\n"));
    }
    text.push_str("[[storage.mounts]]\nsource = \"../other-app\"\ntarget = \"/data\"\n");
    let diagnostic = error(&text);
    assert_eq!(
        diagnostic.to_string(),
        "app.toml:14:10: mount source \"../other-app\" leaves the app's storage directory\n  \
         hint: use \"./name\" for a directory of this app, or ask the admin to allow a host path"
    );
    let bare = Diagnostic::new(Pos { line: 1, column: 2 }, "x", None);
    assert_eq!(bare.to_string(), "app.toml:1:2: x");
}

#[test]
fn every_problem_is_reported_at_once_in_order() {
    let text = r#"
[app]
user = "www-data"

[web]
port = "5000"
helthcheck = "/h"

[[storage.mounts]]
source = "../x"
target = "relative"
phases = ["deploi"]

[[storage.mounts]]
source = "./ok"
tagret = "/x"
"#;
    let diagnostics = errors(text);
    let got: Vec<(usize, usize, &str)> =
        diagnostics.iter().map(|d| (d.line, d.column, d.message.as_str())).collect();
    assert_eq!(
        got,
        vec![
            (3, 8, "`app.user` \"www-data\" is neither \"uid[:gid]\" nor a preset"),
            (6, 8, "`web.port` must be an integer, not a string"),
            (7, 1, "unknown key `helthcheck` in [web]"),
            (10, 10, "mount source \"../x\" leaves the app's storage directory"),
            (11, 10, "mount target \"relative\" must be an absolute container path"),
            (12, 11, "unknown phase \"deploi\""),
            (14, 1, "mount has no `target`"),
            (16, 1, "unknown key `tagret` in a mount"),
        ],
        "{}",
        render(&diagnostics)
    );
    assert!(diagnostics.iter().all(|d| d.hint.is_some()), "every diagnostic has a hint");
    assert_eq!(diagnostics[1].hint.as_deref(), Some("for example: port = 5000 (no quotes)"));
    assert!(diagnostics[2].hint.as_deref().unwrap().starts_with("did you mean `healthcheck`?"));
    assert!(diagnostics[5].hint.as_deref().unwrap().starts_with("did you mean \"deploy\"?"));
    assert!(diagnostics[7].hint.as_deref().unwrap().starts_with("did you mean `target`?"));
}

// ---------------------------------------------------------------------------------------------
// Hostile input.

#[test]
fn files_over_one_mebibyte_are_refused_before_parsing() {
    let mut big = "# padding\n".repeat(MAX_BYTES / 10 + 1).into_bytes();
    big.truncate(MAX_BYTES + 1);
    let diagnostics = parse(&big).unwrap_err();
    assert_eq!(diagnostics.len(), 1);
    assert_eq!(at(&diagnostics[0]), (1, 1));
    assert!(diagnostics[0].message.contains("more than the limit of 1048576 bytes"), "{}", diagnostics[0]);
    // Exactly the limit is fine.
    big.truncate(MAX_BYTES);
    let last_newline = big.iter().rposition(|&b| b == b'\n').unwrap();
    big.truncate(last_newline + 1);
    big.resize(MAX_BYTES, b' ');
    assert!(parse(&big).is_ok());
}

#[test]
fn a_byte_order_mark_is_skipped_and_not_counted() {
    let text = "\u{feff}[[storage.mounts]]\nsource = \"../x\"\ntarget = \"/x\"\n";
    let diagnostic = error(text);
    assert_eq!(at(&diagnostic), (2, 10));
    let text = "\u{feff}x = 1\n";
    assert_eq!(at(&error(text)), (1, 1));
}

#[test]
fn bytes_that_are_not_utf8_are_refused_where_they_are() {
    let bytes = b"[app]\nuser = \"ab\xffcd\"\n";
    let diagnostics = parse(bytes).unwrap_err();
    assert_eq!(diagnostics.len(), 1);
    assert_eq!(at(&diagnostics[0]), (2, 11));
    assert_eq!(diagnostics[0].message, "app.toml is not valid UTF-8 (byte 0xFF)");
    // Columns count characters, so a multi-byte character before it is one column.
    let bytes = "# é\n\u{feff}".as_bytes().iter().chain(b"\xc3(").copied().collect::<Vec<_>>();
    let diagnostics = parse(&bytes).unwrap_err();
    assert_eq!(at(&diagnostics[0]), (2, 2));
    // A truncated sequence at the very end.
    let diagnostics = parse(b"a = 1\n\xe2\x82").unwrap_err();
    assert_eq!(at(&diagnostics[0]), (2, 1));
}

#[test]
fn deep_nesting_is_refused_before_the_parser_sees_it() {
    let cases = [
        format!("x = {}{}", "[".repeat(100_000), "]".repeat(100_000)),
        format!("x = {}", "{a=".repeat(100_000)),
        format!("{} = 1", vec!["a"; 50_000].join(".")),
        format!("[{}]\n", vec!["a"; 50_000].join(".")),
        format!("[[{}]]\n", vec!["a"; 40].join(".")),
        format!("x = {}1", "[{a.b.c = ".repeat(20)),
    ];
    for text in &cases {
        let diagnostics = parse(text.as_bytes()).unwrap_err();
        assert_eq!(diagnostics.len(), 1, "{}", render(&diagnostics));
        assert!(diagnostics[0].message.contains("more than 32 levels deep"), "{}", diagnostics[0]);
        assert_eq!(diagnostics[0].line, 1);
    }
    // Realistic nesting is far from the limit.
    parse_ok(
        "[[storage.mounts]]\nsource = \"v1\"\ntarget = \"/v\"\ndriver_opts = { type = \"tmpfs\", o = \"size=1m\" }\n",
    );
}

#[test]
fn nesting_cannot_overflow_a_small_stack() {
    // The toml parser limits arrays and inline tables to 80 levels and dotted keys to 80
    // segments, but not their product: 80 inline tables each with a 79-segment key take more
    // than 2 MiB of stack in a debug build. The depth pre-check refuses such input first.
    let run = || {
        let key = vec!["k"; 79].join(".");
        let refused = [
            format!("x = {}1", format!("{{{key} = ").repeat(200)),
            format!("x = {}1", format!("[{{{key} = ").repeat(200)),
            // Keys the parser might only see while recovering from an error count too.
            format!("x = {}", format!("{{a = 1 {key} = ").repeat(200)),
            format!("x = {}", "[".repeat(200_000)),
            format!("x = {}", "{a = ".repeat(200_000)),
        ];
        for input in &refused {
            let diagnostics = parse(input.as_bytes()).unwrap_err();
            assert!(diagnostics[0].message.contains("levels deep"), "{}", diagnostics[0]);
        }
        // At the limit, the parser runs, on a small stack too.
        let key = vec!["k"; 15].join(".");
        let near = [
            format!("x = {}1{}", "[".repeat(30), "]".repeat(30)),
            format!("x = {}1{}", "{a = ".repeat(15), "}".repeat(15)),
            format!("{key} = {{ {key} = 1 }}"),
        ];
        for input in &near {
            let outcome = parse(input.as_bytes());
            assert!(outcome.unwrap_err().iter().all(|d| !d.message.contains("levels deep")), "{input}");
        }
    };
    std::thread::Builder::new().stack_size(256 * 1024).spawn(run).unwrap().join().unwrap();
}

#[test]
fn duplicate_keys_are_syntax_errors_with_positions() {
    let text = "[web]\nport = 1\nport = 2\n[app]\n[app]\n";
    let diagnostics = errors(text);
    let positions: Vec<(usize, usize)> = diagnostics.iter().map(at).collect();
    assert_eq!(positions, vec![(3, 1), (5, 2)], "{}", render(&diagnostics));
    for diagnostic in &diagnostics {
        assert_eq!(diagnostic.message, "invalid TOML: duplicate key");
        assert!(diagnostic.hint.as_deref().unwrap().contains("only once"));
    }
}

#[test]
fn syntax_errors_are_all_reported_and_stop_the_check() {
    let text = "[app]\nuser = \n[web]\nport = [1, 2\n";
    let diagnostics = errors(text);
    assert!(diagnostics.len() >= 2, "{}", render(&diagnostics));
    assert!(diagnostics.iter().all(|d| d.message.starts_with("invalid TOML: ")));
    assert_eq!(diagnostics[0].line, 2);
    assert!(diagnostics.windows(2).all(|w| w[0].pos() <= w[1].pos()), "sorted");
}

#[test]
fn many_mounts_are_capped() {
    let mounts: Vec<String> = (0..MAX_MOUNTS + 5).map(|i| format!("\"v{i}:/m{i}\"")).collect();
    let text = format!("storage.mounts = [{}]", mounts.join(", "));
    let diagnostic = error(&text);
    assert!(diagnostic.message.contains("more than 128 mounts"));
    let exactly: Vec<String> = (0..MAX_MOUNTS).map(|i| format!("\"v{i}:/m{i}\"")).collect();
    assert_eq!(parse_ok(&format!("storage.mounts = [{}]", exactly.join(", "))).mounts.len(), MAX_MOUNTS);
}

#[test]
fn many_processes_are_capped() {
    let mut text = String::from("[processes]\n");
    for i in 0..MAX_PROCESSES + 1 {
        text.push_str(&format!("p{i:03} = \"run\"\n"));
    }
    assert!(error(&text).message.contains("more than 64 process types"));
}

#[test]
fn many_problems_are_capped_with_a_last_word() {
    let text: String = (0..500).map(|i| format!("unknown{i} = 1\n")).collect();
    let diagnostics = errors(&text);
    assert_eq!(diagnostics.len(), MAX_DIAGNOSTICS);
    let last = diagnostics.last().unwrap();
    assert_eq!(last.message, "401 more problems are not shown");
}

#[test]
fn messages_never_carry_raw_control_or_lookalike_characters() {
    let text = "[\"\\u001b[31mred\"]\nx = 1\n[[storage.mounts]]\nsource = \"./a\\u202Eb\"\ntarget = \"/x\"\n";
    let diagnostics = errors(text);
    for diagnostic in &diagnostics {
        let shown = diagnostic.to_string();
        assert!(shown.chars().all(|c| c == '\n' || (' '..='~').contains(&c)), "{shown:?}");
    }
    assert!(render(&diagnostics).contains("\\u{1b}[31mred"), "{}", render(&diagnostics));
    assert!(render(&diagnostics).contains("U+202E"), "{}", render(&diagnostics));
}

// ---------------------------------------------------------------------------------------------
// Keys and types.

#[test]
fn unknown_keys_suggest_the_closest_known_key() {
    let cases = [
        ("[web]\nprot = 1\n", "unknown key `prot` in [web]", Some("port")),
        ("[app]\nusr = \"root\"\n", "unknown key `usr` in [app]", Some("user")),
        ("[build]\ncmd = \"x\"\n", "unknown key `cmd` in [build]", Some("command")),
        (
            "[[mounts]]\nsource = \"a\"\n",
            "unknown key `mounts` in app.toml's top level",
            Some("[[storage.mounts]]"),
        ),
        ("[storage]\nvolumes = []\n", "unknown key `volumes` in [storage]", Some("mounts")),
        (
            "[[storage.mounts]]\nsource = \"a\"\ntarget = \"/a\"\nreadonly = true\n",
            "unknown key `readonly` in a mount",
            Some("read_only"),
        ),
        (
            "[[storage.mounts]]\nsource = \"a\"\ntarget = \"/a\"\nproccesses = [\"web\"]\n",
            "unknown key `proccesses` in a mount",
            Some("processes"),
        ),
        (
            "[[storage.mounts]]\nsource = \"a\"\ntarget = \"/a\"\ndestination = \"/b\"\n",
            "unknown key `destination` in a mount",
            Some("target"),
        ),
        ("zebra = 1\n", "unknown key `zebra` in app.toml's top level", None),
    ];
    for (text, message, guess) in cases {
        let diagnostic = error(text);
        assert_eq!(diagnostic.message, message, "{text}");
        let hint = diagnostic.hint.unwrap();
        match guess {
            Some(guess) => assert!(hint.starts_with(&format!("did you mean `{guess}`?")), "{hint}"),
            None => assert!(!hint.contains("did you mean"), "{hint}"),
        }
        assert!(hint.contains("accepts: "), "{hint}");
    }
    // The position is the key's.
    assert_eq!(at(&error("[web]\nport = 1\n  prot = 2\n")), (3, 3));
}

#[test]
fn wrong_types_say_what_was_expected() {
    let cases = [
        ("app = 1\n", "[app] must be a table, not an integer", (1, 7)),
        ("[app]\nuser = true\n", "`app.user` must be a string, not a boolean", (2, 8)),
        ("[build]\ncommand = [\"a\"]\n", "`build.command` must be a string, not an array", (2, 11)),
        ("[web]\nport = 80.5\n", "`web.port` must be an integer, not a float", (2, 8)),
        ("[processes]\nweb = 1979-05-27\n", "process `web` must be a string, not a date", (2, 7)),
        ("[processes.web]\ncommand = \"x\"\n", "process `web` must be a string, not a table", (1, 1)),
        ("storage = []\n", "[storage] must be a table, not an array", (1, 11)),
        ("storage.mounts = 3\n", "`storage.mounts` must be an array of mounts, not an integer", (1, 18)),
        (
            "storage.mounts = [3]\n",
            "each entry of `storage.mounts` must be a table or a string, not an integer",
            (1, 19),
        ),
        (
            "[storage.mounts]\nsource = \"a\"\n",
            "`storage.mounts` must be an array of mounts, not a single table",
            (1, 1),
        ),
        (
            "[[storage.mounts]]\nsource = 1\ntarget = \"/a\"\n",
            "mount `source` must be a string, not an integer",
            (2, 10),
        ),
        (
            "[[storage.mounts]]\nsource = \"a\"\ntarget = \"/a\"\nread_only = \"yes\"\n",
            "mount `read_only` must be true or false, not a string",
            (4, 13),
        ),
        (
            "[[storage.mounts]]\nsource = \"a\"\ntarget = \"/a\"\nphases = \"run\"\n",
            "mount `phases` must be an array of strings, not a string",
            (4, 10),
        ),
        (
            "[[storage.mounts]]\nsource = \"a\"\ntarget = \"/a\"\nphases = [\"run\", 2]\n",
            "each entry of mount `phases` must be a string, not an integer",
            (4, 18),
        ),
        (
            "[[storage.mounts]]\nsource = \"a\"\ntarget = \"/a\"\ndriver_opts = \"o=x\"\n",
            "mount `driver_opts` must be a table, not a string",
            (4, 15),
        ),
        (
            "[[storage.mounts]]\nsource = \"a\"\ntarget = \"/a\"\ndriver_opts = { size = 1 }\n",
            "driver option `size` must be a string, not an integer",
            (4, 24),
        ),
        (
            "[[storage.mounts]]\nsource = \"a\"\ntarget = \"/a\"\nexclusive = 1\n",
            "mount `exclusive` must be true or false, not an integer",
            (4, 13),
        ),
    ];
    for (text, message, position) in cases {
        let diagnostic = error(text);
        assert_eq!((diagnostic.message.as_str(), at(&diagnostic)), (message, position), "{text}");
        assert!(
            diagnostic.hint.as_deref().unwrap().starts_with("for example: ")
                || message.contains("single table")
        );
    }
    assert_eq!(
        error("[storage.mounts]\nsource = \"a\"\n").hint.as_deref(),
        Some("write [[storage.mounts]] (two brackets) before each mount")
    );
}

// ---------------------------------------------------------------------------------------------
// [app], [build], [web], [processes].

#[test]
fn app_user_forms() {
    let user = |value: &str| parse_ok(&format!("[app]\nuser = {value}\n")).user.unwrap();
    assert_eq!(user("\"1000:1000\""), AppUser { uid: 1000, gid: Some(1000) });
    assert_eq!(user("\"1000:50\""), AppUser { uid: 1000, gid: Some(50) });
    assert_eq!(user("\"1000\""), AppUser { uid: 1000, gid: None });
    assert_eq!(user("\"0\""), AppUser { uid: 0, gid: None });
    assert_eq!(user("\"65535:65535\"").chown_ids(), (65535, 65535));
    assert_eq!(user("1000"), AppUser { uid: 1000, gid: None });
    assert_eq!(user("\"herokuish\""), AppUser { uid: 32767, gid: Some(32767) });
    assert_eq!(user("\"heroku\""), AppUser { uid: 1000, gid: Some(1000) });
    assert_eq!(user("\"paketo\""), AppUser { uid: 2000, gid: Some(2000) });
    assert_eq!(user("\"root\""), AppUser { uid: 0, gid: Some(0) });
    assert_eq!(user("\"1000\"").chown_ids(), (1000, 1000));
    assert_eq!(user("\"1000\"").to_string(), "1000");
    assert_eq!(user("\"1:2\"").to_string(), "1:2");
    assert_eq!(parse_ok("").user, None);

    for bad in
        ["\"www-data\"", "\"1000:\"", "\":1000\"", "\"-1\"", "\"1:2:3\"", "\"\"", "\"Root\"", "\" 1000\""]
    {
        let diagnostic = error(&format!("[app]\nuser = {bad}\n"));
        assert!(diagnostic.message.contains("is neither \"uid[:gid]\" nor a preset"), "{bad}: {diagnostic}");
        assert_eq!(at(&diagnostic), (2, 8));
    }
    assert!(error("[app]\nuser = \"packeto\"\n").hint.unwrap().starts_with("did you mean \"paketo\"?"));
    for bad in ["\"65536\"", "\"1:70000\"", "\"99999999999999999999\"", "70000", "-1"] {
        let diagnostic = error(&format!("[app]\nuser = {bad}\n"));
        assert!(diagnostic.message.contains("out of range"), "{bad}: {diagnostic}");
        assert_eq!(diagnostic.hint.as_deref(), Some("ids go from 0 to 65535"));
    }
}

#[test]
fn build_rules() {
    let build = |body: &str| parse_ok(&format!("[build]\n{body}\n")).build;
    assert_eq!(build(""), Build::default());
    assert_eq!(build("dockerfile = \"./docker//Dockerfile.prod\"").dockerfile, "docker/Dockerfile.prod");
    assert_eq!(build("command = \"bin/x\\nbin/y\"").command.as_deref(), Some("bin/x\nbin/y"));
    let cases = [
        ("dockerfile = \"\"", "`build.dockerfile` is empty"),
        ("dockerfile = \"/etc/passwd\"", "`build.dockerfile` \"/etc/passwd\" is an absolute path"),
        ("dockerfile = \"../Dockerfile\"", "`build.dockerfile` \"../Dockerfile\" contains `..`"),
        ("dockerfile = \"a/../../Dockerfile\"", "`build.dockerfile` \"a/../../Dockerfile\" contains `..`"),
        ("dockerfile = \"docker/\"", "`build.dockerfile` \"docker/\" names a directory, not a file"),
        ("dockerfile = \"./\"", "`build.dockerfile` \"./\" names a directory, not a file"),
        ("dockerfile = \"a\\\\b\"", "`build.dockerfile` \"a\\\\b\" contains `\\`"),
        ("dockerfile = \"Docker\\u0000file\"", "`build.dockerfile` \"Docker\\u{0}file\" contains U+0000"),
        ("command = \"  \"", "`build.command` is empty"),
        ("command = \"a\\u0000b\"", "`build.command` contains the control character U+0000"),
    ];
    for (body, message) in cases {
        let diagnostic = error(&format!("[build]\n{body}\n"));
        assert_eq!(diagnostic.message, message, "{body}");
        assert_eq!(diagnostic.line, 2);
    }
    // The `..` is pointed at.
    assert_eq!(at(&error("[build]\ndockerfile = \"a/../../Dockerfile\"\n")), (2, 17));
}

#[test]
fn web_rules() {
    let web = |body: &str| parse_ok(&format!("[web]\n{body}\n")).web.unwrap();
    assert_eq!(web(""), Web::on_port(DEFAULT_WEB_PORT));
    assert_eq!(web("port = 1").port, 1);
    assert_eq!(web("port = 65535").port, 65535);
    assert_eq!(web("port = 0x1F90").port, 8080);
    assert_eq!(web("port = 8_080").port, 8080);
    assert_eq!(web("healthcheck = \"/health?full=1\"").healthcheck.as_deref(), Some("/health?full=1"));
    assert_eq!(parse_ok("").web, None);
    for port in ["0", "65536", "-80", "99999999999999999999999"] {
        let diagnostic = error(&format!("[web]\nport = {port}\n"));
        assert!(diagnostic.message.ends_with("is not a port number"), "{port}: {diagnostic}");
        assert_eq!(diagnostic.hint.as_deref(), Some("ports go from 1 to 65535"));
    }
    for (health, message) in [
        ("\"health\"", "`web.healthcheck` \"health\" must be a path starting with `/`"),
        ("\"http://x/health\"", "`web.healthcheck` \"http://x/health\" must be a path starting with `/`"),
        ("\"/a b\"", "`web.healthcheck` \"/a b\" contains U+0020"),
    ] {
        assert_eq!(error(&format!("[web]\nhealthcheck = {health}\n")).message, message);
    }
}

#[test]
fn stop_drain_and_hold_are_whole_seconds() {
    let manifest = parse_ok("[app]\nstop_timeout = 20\n[web]\ndrain_seconds = 0\nhold_seconds = 3600\n");
    assert_eq!(manifest.stop_timeout, Some(20));
    let web = manifest.web.unwrap();
    assert_eq!((web.drain_seconds, web.hold_seconds), (Some(0), Some(3600)));
    assert_eq!(parse_ok("[app]\nuser = \"1000\"\n").stop_timeout, None);
    let cases = [
        (
            "[app]\nstop_timeout = -1",
            "`app.stop_timeout` \"-1\" is out of range",
            "a number of seconds from 0 to 3600",
        ),
        (
            "[web]\ndrain_seconds = 3601",
            "`web.drain_seconds` \"3601\" is out of range",
            "a number of seconds from 0 to 3600",
        ),
        (
            "[web]\nhold_seconds = \"30\"",
            "`web.hold_seconds` must be an integer, not a string",
            "for example: hold_seconds = 30 (seconds)",
        ),
        (
            "[web]\nhold_seconds = 1.5",
            "`web.hold_seconds` must be an integer, not a float",
            "for example: hold_seconds = 30 (seconds)",
        ),
    ];
    for (text, message, hint) in cases {
        let diagnostic = error(&format!("{text}\n"));
        assert_eq!(
            (diagnostic.message.as_str(), diagnostic.hint.as_deref()),
            (message, Some(hint)),
            "{text}"
        );
        assert_eq!(diagnostic.line, 2);
    }
    assert!(error("[web]\ndrain = 5\n").hint.unwrap().starts_with("did you mean `drain_seconds`?"));
}

#[test]
fn web_needs_a_web_process_when_processes_are_declared() {
    parse_ok("[web]\nport = 3000\n");
    parse_ok("[web]\nport = 3000\n[processes]\nweb = \"x\"\n");
    let diagnostic = error("[web]\nport = 3000\n[processes]\nworker = \"x\"\n");
    assert_eq!(at(&diagnostic), (1, 1));
    assert_eq!(diagnostic.message, "[web] is set but [processes] declares no `web` process");
}

#[test]
fn process_rules() {
    let manifest =
        parse_ok("[processes]\nweb = \"bin/server\"\nworker-2 = \"bin/worker\"\nclock_x = \"c\"\n");
    assert_eq!(manifest.process_types(), vec!["clock_x", "web", "worker-2"]);
    assert_eq!(manifest.processes["web"], "bin/server");
    assert!(parse_ok("[processes]\n").processes.is_empty());
    let cases = [
        ("\"a b\" = \"x\"", "process name `a b` is not valid", (2, 1)),
        ("\"build\" = \"x\"", "process name `build` is reserved by berth", (2, 1)),
        ("\"_default_\" = \"x\"", "process name `_default_` is reserved by berth", (2, 1)),
        ("web = \"\"", "process `web` is empty", (2, 7)),
    ];
    for (body, message, position) in cases {
        let diagnostic = error(&format!("[processes]\n{body}\n"));
        assert_eq!((diagnostic.message.as_str(), at(&diagnostic)), (message, position));
    }
    let long = "p".repeat(64);
    assert!(error(&format!("[processes]\n{long} = \"x\"\n")).message.contains("is not valid"));
}

// ---------------------------------------------------------------------------------------------
// Mount sources.

#[test]
fn source_forms() {
    assert_eq!(source_of("./uploads"), Source::AppDir("uploads".into()));
    assert_eq!(source_of("./a//b/./c/"), Source::AppDir("a/b/c".into()));
    assert_eq!(source_of(".//a"), Source::AppDir("a".into()));
    assert_eq!(source_of("./..."), Source::AppDir("...".into()), "three dots is a name");
    assert_eq!(source_of("./.hidden"), Source::AppDir(".hidden".into()));
    assert_eq!(source_of("pgdata"), Source::AppVolume("pgdata".into()));
    assert_eq!(source_of("a"), Source::AppVolume("a".into()));
    assert_eq!(source_of("My_vol.1-x"), Source::AppVolume("My_vol.1-x".into()));
    assert_eq!(source_of("/srv//data/./x/"), Source::HostPath("/srv/data/x".into()));
    let external = mount_ok("source = \"shared\"\ntarget = \"/s\"\nexternal = true");
    assert_eq!(external.source, Source::Volume("shared".into()));
    let not_external = mount_ok("source = \"shared\"\ntarget = \"/s\"\nexternal = false");
    assert_eq!(not_external.source, Source::AppVolume("shared".into()));
    assert_eq!(
        mount_ok("source = \"./x\"\ntarget = \"/s\"\nexternal = false").source,
        Source::AppDir("x".into())
    );
}

#[test]
fn app_directories_never_leave_the_app_storage_directory() {
    let leaves =
        ["..", "../", "../other-app", "./..", "./../x", "./a/../..", "./a/../../b", "./a/..//..", ".././a"];
    for source in leaves {
        let diagnostic = short_source_error(source);
        assert_eq!(
            diagnostic.message,
            format!("mount source \"{source}\" leaves the app's storage directory"),
            "{source}"
        );
        assert_eq!(at(&diagnostic), (2, 10), "{source}");
        assert_eq!(diagnostic.hint.as_deref(), Some(decode_leaves_hint()));
    }
    // `..` that would stay inside is refused too, pointing at it.
    for (source, column, hint) in [
        ("./a/..", 15, "such as \"./data\""),
        ("./a/../b", 15, "such as \"./b\""),
        ("./a/b/..", 17, "such as \"./a\""),
    ] {
        let diagnostic = short_source_error(source);
        assert_eq!(diagnostic.message, format!("mount source \"{source}\" contains `..`"));
        assert_eq!(at(&diagnostic), (2, column), "{source}");
        assert!(diagnostic.hint.as_deref().unwrap().ends_with(hint), "{diagnostic}");
    }
    for source in [".", "./", ".//", "./.", "././"] {
        let diagnostic = short_source_error(source);
        assert!(
            diagnostic.message.ends_with("is the app's storage directory itself"),
            "{source}: {diagnostic}"
        );
    }
}

fn decode_leaves_hint() -> &'static str {
    "use \"./name\" for a directory of this app, or ask the admin to allow a host path"
}

#[test]
fn sources_that_are_neither_form_are_refused() {
    let cases = [
        ("", "mount source is empty"),
        ("uploads/x", "mount source \"uploads/x\" is a relative path without `./`"),
        ("~/data", "mount source \"~/data\" uses `~`, which berth does not expand"),
        ("_vol", "mount source \"_vol\" is not a valid volume name"),
        ("-vol", "mount source \"-vol\" is not a valid volume name"),
        (".vol", "mount source \".vol\" is not a valid volume name"),
        ("my vol", "mount source \"my vol\" is not a valid volume name"),
        ("/", "mount source \"/\" is the host's root directory"),
        ("//", "mount source \"//\" is the host's root directory"),
        ("/./", "mount source \"/./\" is the host's root directory"),
    ];
    for (source, message) in cases {
        assert_eq!(short_source_error(source).message, message, "{source}");
    }
    assert!(short_source_error("uploads/x").hint.unwrap().starts_with("write \"./uploads/x\""));
    assert!(short_source_error(&"v".repeat(129)).message.contains("is not a valid volume name"));
}

#[test]
fn host_paths_with_dotdot_are_refused() {
    for (source, column) in [("/srv/../etc", 16), ("/srv/data/..", 21), ("/..", 12), ("/srv/a/../../..", 18)]
    {
        let diagnostic = short_source_error(source);
        assert_eq!(diagnostic.message, format!("mount source \"{source}\" contains `..`"));
        assert_eq!(at(&diagnostic), (2, column), "{source}");
    }
}

#[test]
fn option_separators_control_characters_and_lookalikes_are_refused() {
    let cases: &[(&str, &str, usize)] = &[
        ("./a:b", "contains `:`, which would be read as a mount option separator", 14),
        ("./a,ro", "contains `,`, which would be read as a mount option separator", 14),
        ("/srv/a=b", "contains `=`, which would be read as a mount option separator", 17),
        ("./a\\..\\..", "contains a backslash", 0),
        ("./a\u{0}b", "contains the control character U+0000", 0),
        ("./a\nb", "contains the control character U+000A", 0),
        ("./a\tb", "contains the control character U+0009", 0),
        ("./a\u{7f}", "contains the control character U+007F", 0),
        ("./%2e%2e/x", "contains the percent-encoded sequence `%2e`", 13),
        ("/srv/%2F/x", "contains the percent-encoded sequence `%2F`", 16),
        ("./\u{2024}\u{2024}/x", "contains the non-ASCII character U+2024", 13),
        ("./a\u{2215}..", "contains the non-ASCII character U+2215", 14),
        ("\u{ff0e}\u{ff0e}/x", "contains the non-ASCII character U+FF0E", 11),
        ("./caf\u{e9}", "contains the non-ASCII character U+00E9", 16),
        ("./a\u{200b}", "contains the non-ASCII character U+200B", 14),
        (" ./a", "starts or ends with a space", 10),
        ("./a ", "starts or ends with a space", 10),
    ];
    for (source, message, column) in cases {
        let diagnostic = short_source_error(source);
        assert!(diagnostic.message.contains(message), "{source:?}: {diagnostic}");
        if *column != 0 {
            // Plainly written: the column is the offending character's.
            assert_eq!(at(&diagnostic), (2, *column), "{source:?}");
        } else {
            // Written with an escape: the column is the value's.
            assert_eq!(at(&diagnostic), (2, 10), "{source:?}");
        }
    }
    assert!(short_source_error("./%2e").hint.unwrap().contains("write `.` itself"));
    // A lone percent sign is just a character.
    assert_eq!(source_of("./100%"), Source::AppDir("100%".into()));
    assert_eq!(source_of("./a%zz"), Source::AppDir("a%zz".into()));
    // The same rules hold for targets.
    let diagnostic = mount_error("source = \"a\"\ntarget = \"/data:ro\"");
    assert!(diagnostic.message.starts_with("mount target \"/data:ro\" contains `:`"), "{diagnostic}");
    assert_eq!(at(&diagnostic), (3, 16));
    assert!(mount_error("source = \"a\"\ntarget = \"/d\u{0430}ta\"").message.contains("U+0430"));
}

#[test]
fn overlong_paths_are_refused() {
    let long = format!("./{}", "a/".repeat(2100));
    assert!(short_source_error(&long).message.contains("longer than 4096 bytes"));
    let component = format!("./{}", "a".repeat(256));
    assert!(short_source_error(&component).message.contains("a name longer than 255 bytes"));
}

#[test]
fn external_applies_only_to_volume_names() {
    for (source, kind) in [("./x", "a directory of this app"), ("/srv/x", "a host path")] {
        let diagnostic = mount_error(&format!("source = \"{source}\"\ntarget = \"/s\"\nexternal = true"));
        assert_eq!(
            diagnostic.message,
            format!("`external = true` only applies to a volume name, and \"{source}\" is {kind}")
        );
        assert_eq!(at(&diagnostic), (4, 12));
    }
    let diagnostic = mount_error("source = \"a\"\ntarget = \"/s\"\nexternal = true");
    assert_eq!(diagnostic.message, "external volume name \"a\" is not a valid Docker volume name");
}

#[test]
fn drivers_apply_only_to_app_volumes() {
    let mounted = mount_ok(
        "source = \"nfsdata\"\ntarget = \"/n\"\ndriver = \"local\"\ndriver_opts = { type = \"nfs\", o = \"addr=10.0.0.1,rw\", device = \":/export\" }",
    );
    assert_eq!(mounted.driver.as_deref(), Some("local"));
    assert_eq!(mounted.driver_opts["o"], "addr=10.0.0.1,rw");
    assert_eq!(mounted.driver_opts.len(), 3);
    assert_eq!(
        mount_ok("source = \"v\"\ntarget = \"/n\"\ndriver = \"sshfs\"").driver.as_deref(),
        Some("sshfs")
    );
    // A driver is a plain name, never a path: the engine would look a plugin socket up by it.
    for path in ["../../x", "/run/x", "vieux/sshfs:latest", "x..y", "Local"] {
        let diagnostic = mount_error(&format!("source = \"v\"\ntarget = \"/n\"\ndriver = \"{path}\""));
        assert_eq!(diagnostic.message, format!("volume driver \"{path}\" is not a valid driver name"));
        assert_eq!(at(&diagnostic), (4, 10));
    }

    let cases = [
        (
            "source = \"./x\"\ntarget = \"/n\"\ndriver = \"local\"",
            "`driver` only applies to volumes of this app, and this source is a directory of this app",
            (4, 10),
        ),
        (
            "source = \"/srv/x\"\ntarget = \"/n\"\ndriver_opts = { a = \"b\" }",
            "`driver_opts` only applies to volumes of this app, and this source is a host path",
            (4, 15),
        ),
        (
            "source = \"ext\"\ntarget = \"/n\"\nexternal = true\ndriver = \"local\"",
            "`driver` only applies to volumes of this app, and this source is an external volume",
            (5, 10),
        ),
        (
            "source = \"v\"\ntarget = \"/n\"\ndriver = \"bad driver\"",
            "volume driver \"bad driver\" is not a valid driver name",
            (4, 10),
        ),
        (
            "source = \"v\"\ntarget = \"/n\"\ndriver_opts = { \"a=b\" = \"c\" }",
            "driver option name `a=b` is not valid",
            (4, 17),
        ),
        (
            "source = \"v\"\ntarget = \"/n\"\ndriver_opts = { o = \"a\\u0000\" }",
            "driver option `o` contains the control character U+0000",
            (4, 21),
        ),
    ];
    for (body, message, position) in cases {
        let diagnostic = mount_error(body);
        assert_eq!((diagnostic.message.as_str(), at(&diagnostic)), (message, position), "{body}");
    }
}

// ---------------------------------------------------------------------------------------------
// Targets, phases, processes.

#[test]
fn target_rules() {
    let target = |t: &str| mount_ok(&format!("source = \"a\"\ntarget = {}", toml_string(t))).target;
    assert_eq!(target("/app/storage"), "/app/storage");
    assert_eq!(target("/app//storage/./"), "/app/storage");
    assert_eq!(target("/process"), "/process", "only the /proc directory is reserved");
    assert_eq!(target("/devices/x"), "/devices/x");
    let cases = [
        ("app", "mount target \"app\" must be an absolute container path", (3, 10)),
        ("./app", "mount target \"./app\" must be an absolute container path", (3, 10)),
        ("/", "mount target \"/\" would hide the container's whole filesystem", (3, 10)),
        ("/./", "mount target \"/./\" would hide the container's whole filesystem", (3, 10)),
        ("/app/../etc", "mount target \"/app/../etc\" contains `..`", (3, 16)),
        ("/proc", "mount target \"/proc\" is inside /proc, which the container runtime manages", (3, 10)),
        (
            "/sys/fs/cgroup",
            "mount target \"/sys/fs/cgroup\" is inside /sys, which the container runtime manages",
            (3, 10),
        ),
        (
            "//dev//shm",
            "mount target \"//dev//shm\" is inside /dev, which the container runtime manages",
            (3, 10),
        ),
        ("", "mount target is empty", (3, 10)),
    ];
    for (value, message, position) in cases {
        let diagnostic = mount_error(&format!("source = \"a\"\ntarget = {}", toml_string(value)));
        assert_eq!((diagnostic.message.as_str(), at(&diagnostic)), (message, position), "{value}");
    }
    assert_eq!(
        mount_error("source = \"a\"\ntarget = \"app\"").hint.as_deref(),
        Some("start it with `/`, such as \"/app\"")
    );
}

#[test]
fn missing_source_and_target_point_at_the_mount() {
    let diagnostics = errors("[[storage.mounts]]\nread_only = true\n");
    let got: Vec<_> = diagnostics.iter().map(|d| (at(d), d.message.as_str())).collect();
    assert_eq!(got, vec![((1, 1), "mount has no `source`"), ((1, 1), "mount has no `target`")]);
    let diagnostic = error("storage.mounts = [{ target = \"/x\" }]");
    assert_eq!((at(&diagnostic), diagnostic.message.as_str()), ((1, 19), "mount has no `source`"));
}

#[test]
fn phase_rules() {
    let phases_of = |list: &str| {
        mount_ok(&format!("source = \"a\"\ntarget = \"/a\"\nphases = {list}\n[build]\ncommand = \"c\""))
            .phases
    };
    // (mount_ok wraps in [[storage.mounts]]; [build] after it is a separate table.)
    assert_eq!(phases_of("[\"run\"]"), phases(&[Phase::Run]));
    assert_eq!(
        phases_of("[\"run\", \"build\", \"deploy\"]"),
        phases(&[Phase::Build, Phase::Deploy, Phase::Run])
    );
    assert_eq!(mount_ok("source = \"a\"\ntarget = \"/a\"").phases, phases(&[Phase::Deploy, Phase::Run]));
    let cases = [
        ("phases = []", "mount `phases` is empty", (4, 10)),
        ("phases = [\"run\", \"run\"]", "phase \"run\" is listed twice", (4, 18)),
        ("phases = [\"Run\"]", "unknown phase \"Run\"", (4, 11)),
        ("phases = [\"release\"]", "unknown phase \"release\"", (4, 11)),
    ];
    for (line, message, position) in cases {
        let diagnostic = mount_error(&format!("source = \"a\"\ntarget = \"/a\"\n{line}"));
        assert_eq!((diagnostic.message.as_str(), at(&diagnostic)), (message, position), "{line}");
    }
}

#[test]
fn build_phase_mounts_need_a_build_command() {
    let text = "[[storage.mounts]]\nsource = \"cache\"\ntarget = \"/cache\"\nphases = [\"build\"]\n";
    let diagnostic = error(text);
    assert_eq!(diagnostic.message, "mount has phase \"build\" but [build] has no `command`");
    assert_eq!(at(&diagnostic), (4, 10));
    parse_ok(&format!("{text}[build]\ncommand = \"make\"\n"));
    // A misspelt command is reported as such, without the follow-up error.
    let diagnostic = error(&format!("{text}[build]\ncomand = \"make\"\n"));
    assert_eq!(diagnostic.message, "unknown key `comand` in [build]");
    // A build-phase mount cannot name processes.
    let text = "[build]\ncommand = \"make\"\n[[storage.mounts]]\nsource = \"c\"\ntarget = \"/c\"\nphases = [\"build\", \"run\"]\nprocesses = [\"web\"]\n";
    let diagnostic = error(text);
    assert_eq!(diagnostic.message, "a mount with phase \"build\" cannot be limited to `processes`");
    assert_eq!(at(&diagnostic), (7, 13));
}

#[test]
fn mount_processes_must_be_declared() {
    let mounted = mount_ok("source = \"a\"\ntarget = \"/a\"\nprocesses = [\"web\"]");
    assert_eq!(mounted.processes, vec!["web"]);
    let diagnostic = mount_error("source = \"a\"\ntarget = \"/a\"\nprocesses = [\"worker\"]");
    assert_eq!(diagnostic.message, "mount names process \"worker\", which app.toml does not declare");
    assert_eq!(at(&diagnostic), (4, 13));
    assert!(diagnostic.hint.unwrap().contains("one process type, \"web\""));

    let declared = "[processes]\nweb = \"s\"\nworker = \"w\"\n";
    let manifest = parse_ok(&format!(
        "{declared}[[storage.mounts]]\nsource = \"a\"\ntarget = \"/a\"\nprocesses = [\"worker\", \"web\"]\n"
    ));
    assert_eq!(manifest.mounts[0].processes, vec!["worker", "web"]);
    let diagnostic = error(&format!(
        "{declared}[[storage.mounts]]\nsource = \"a\"\ntarget = \"/a\"\nprocesses = [\"clock\"]\n"
    ));
    assert!(diagnostic.hint.unwrap().starts_with("declared process types: web, worker;"));
    // A broken [processes] does not cause follow-up errors about undeclared processes.
    let diagnostics = errors(
        "[processes]\nworker = 1\n[[storage.mounts]]\nsource = \"a\"\ntarget = \"/a\"\nprocesses = [\"worker\"]\n",
    );
    assert_eq!(diagnostics.len(), 1, "{}", render(&diagnostics));

    for (list, message) in [
        ("[]", "mount `processes` is empty"),
        ("[\"web\", \"web\"]", "process \"web\" is listed twice"),
        ("[\"a b\"]", "process name \"a b\" is not valid"),
        ("[\"_default_\"]", "process name \"_default_\" is not valid"),
    ] {
        let diagnostic = mount_error(&format!("source = \"a\"\ntarget = \"/a\"\nprocesses = {list}"));
        assert_eq!(diagnostic.message, message, "{list}");
    }
}

#[test]
fn targets_are_unique_per_process_and_phase() {
    let head = "[processes]\nweb = \"s\"\nworker = \"w\"\n[build]\ncommand = \"b\"\n";
    let two = |a: &str, b: &str| {
        format!(
            "{head}[[storage.mounts]]\nsource = \"a\"\ntarget = \"/d\"\n{a}\n[[storage.mounts]]\nsource = \"b\"\ntarget = \"/d/\"\n{b}\n"
        )
    };
    // Apart in phases or processes: fine.
    parse_ok(&two("phases = [\"build\"]", "phases = [\"deploy\", \"run\"]"));
    parse_ok(&two("processes = [\"web\"]", "processes = [\"worker\"]"));
    parse_ok(&two(
        "phases = [\"run\"]\nprocesses = [\"web\"]",
        "phases = [\"deploy\"]\nprocesses = [\"web\"]",
    ));
    // Together somewhere: an error at the later target, naming the earlier mount's line.
    for (a, b, phase) in [
        ("", "", "deploy, run"),
        ("processes = [\"web\"]", "", "deploy, run"),
        ("processes = [\"web\", \"worker\"]", "processes = [\"worker\"]", "deploy, run"),
        ("phases = [\"run\"]", "phases = [\"run\", \"build\"]", "run"),
    ] {
        let text = two(a, b);
        let diagnostic = error(&text);
        let (line, column) = find(&text, "\"/d/\"");
        assert_eq!(at(&diagnostic), (line, column), "{a} / {b}");
        assert_eq!(
            diagnostic.message,
            format!("mount target \"/d\" is already used by the mount at line 6 (phase {phase})")
        );
    }
    // The short form collides like the table form.
    let diagnostic = error("storage.mounts = [\"a:/x\", \"./b:/x/\"]");
    assert_eq!(at(&diagnostic), (1, 32));
}

#[test]
fn short_form_rules() {
    let cases = [
        ("\"./a\"", "mount \"./a\" must be \"source:target\" or \"source:target:ro\"", (1, 19)),
        (
            "\"./a:/b:ro:x\"",
            "mount \"./a:/b:ro:x\" must be \"source:target\" or \"source:target:ro\"",
            (1, 19),
        ),
        ("\"./a:/b:z\"", "mount option \"z\" is not supported in app.toml", (1, 27)),
        ("\"./a:/b:ro,nocopy\"", "mount option \"nocopy\" is not supported in app.toml", (1, 30)),
        ("\"./a:/b:ro,rw\"", "mount options \"ro\" and \"rw\" contradict each other", (1, 30)),
        ("\"./a:/b:ro,ro\"", "mount option \"ro\" is repeated", (1, 30)),
        ("\"./a:/b:\"", "mount option \"\" is not supported in app.toml", (1, 27)),
        ("\":/b\"", "mount source is empty", (1, 20)),
        ("\"./a:\"", "mount target is empty", (1, 24)),
        ("\"./a:rel\"", "mount target \"rel\" must be an absolute container path", (1, 24)),
        ("\"../a:/b\"", "mount source \"../a\" leaves the app's storage directory", (1, 20)),
    ];
    for (item, message, position) in cases {
        let diagnostic = error(&format!("storage.mounts = [{item}]"));
        assert_eq!((diagnostic.message.as_str(), at(&diagnostic)), (message, position), "{item}");
    }
    // Escapes in the string: positions fall back to the string's start.
    let diagnostic = error("storage.mounts = [\"./a:\\u0072el\"]");
    assert_eq!(
        (diagnostic.message.as_str(), at(&diagnostic)),
        ("mount target \"rel\" must be an absolute container path", (1, 19))
    );
    // Literal strings are plain too.
    let diagnostic = error("storage.mounts = ['./a:rel']");
    assert_eq!(at(&diagnostic), (1, 24));
    let read_only = parse_ok("storage.mounts = [\"v:/v:ro\", \"w:/w:rw\"]");
    assert!(read_only.mounts[0].read_only);
    assert!(!read_only.mounts[1].read_only);
}

// ---------------------------------------------------------------------------------------------
// Attachments and the server side.

#[test]
fn attachments_one_per_process_or_one_for_all() {
    let all = mount(Source::AppVolume("v".into()), "/v");
    let attachments = all.attachments();
    assert_eq!(attachments.len(), 1);
    assert_eq!(attachments[0].process_type, DEFAULT_PROCESS_TYPE);
    assert_eq!(attachments[0].made_by, Origin::Repo);
    assert_eq!(attachments[0].container_path, "/v");
    assert_eq!(attachments[0].phases, phases(&[Phase::Deploy, Phase::Run]));
    assert!(!attachments[0].readonly);

    let some = DeclaredMount { processes: vec!["web".into(), "worker".into()], read_only: true, ..all };
    let attachments = some.attachments();
    let types: Vec<&str> = attachments.iter().map(|a| a.process_type.as_str()).collect();
    assert_eq!(types, vec!["web", "worker"]);
    assert!(attachments.iter().all(|a| a.readonly && a.made_by == Origin::Repo && a.subpath.is_none()));

    let manifest = parse_ok(SPEC_EXAMPLE);
    assert_eq!(manifest.attachments().len(), 4);
}

#[test]
fn host_path_grants_compare_whole_components() {
    let grants = [PathBuf::from("/srv/data"), PathBuf::from("/opt/shared/")];
    let policy = Policy { host_paths: &grants, volumes: &[], drivers: &[], server: None };
    let check_source = |source: &str| {
        let text = format!("[[storage.mounts]]\nsource = \"{source}\"\ntarget = \"/x\"\n");
        check(text.as_bytes(), &policy, &[])
    };
    for allowed in ["/srv/data", "/srv/data/", "/srv/data/sub/dir", "/opt/shared", "/opt//shared/./x"] {
        assert!(check_source(allowed).is_ok(), "{allowed}");
    }
    for refused in ["/srv/data2", "/srv/dat", "/srv", "/opt/sharedx", "/etc", "/srv/datax/y"] {
        let diagnostics = check_source(refused).unwrap_err();
        assert_eq!(diagnostics.len(), 1, "{refused}");
        assert!(diagnostics[0].message.ends_with("is a host path the admin has not allowed for this app"));
        assert_eq!(at(&diagnostics[0]), (2, 10));
        assert!(
            diagnostics[0]
                .hint
                .as_deref()
                .unwrap()
                .starts_with("allowed host paths: /srv/data, /opt/shared;")
        );
    }
    let hint = check_source("/etc").unwrap_err()[0].hint.clone();
    assert!(hint.is_some());
    let none = check("[[storage.mounts]]\nsource = \"/etc\"\ntarget = \"/x\"\n".as_bytes(), &NO_POLICY, &[]);
    assert!(none.unwrap_err()[0].hint.as_deref().unwrap().starts_with("the admin has allowed no host paths"));
}

#[test]
fn the_host_root_is_never_allowed() {
    let grants = [PathBuf::from("/")];
    let policy = Policy { host_paths: &grants, volumes: &[], drivers: &[], server: None };
    let diagnostics = check(b"storage.mounts = [\"/:/host\"]", &policy, &[]).unwrap_err();
    assert_eq!(diagnostics.len(), 1);
    assert_eq!(diagnostics[0].message, "mount source \"/\" is the host's root directory");
    // A hand-made manifest cannot sneak it past validate either.
    let manifest =
        Manifest { mounts: vec![mount(Source::HostPath("/".into()), "/host")], ..Manifest::default() };
    assert_eq!(validate(&manifest, &policy, &[]).len(), 1);
    // Below a `/` grant is the admin's business.
    assert!(check(b"storage.mounts = [\"/srv:/host\"]", &policy, &[]).is_ok());
}

#[test]
fn grants_that_are_relative_or_climb_grant_nothing() {
    for grant in ["srv/data", "/srv/data/../..", "", "../srv/data"] {
        let grants = [PathBuf::from(grant)];
        let policy = Policy { host_paths: &grants, volumes: &[], drivers: &[], server: None };
        assert!(check(b"storage.mounts = [\"/srv/data:/d\"]", &policy, &[]).is_err(), "{grant}");
        assert!(check(b"storage.mounts = [\"/etc:/d\"]", &policy, &[]).is_err(), "{grant}");
    }
}

#[test]
fn external_volumes_need_a_grant() {
    let text = b"[[storage.mounts]]\nsource = \"shared-assets\"\ntarget = \"/s\"\nexternal = true\n";
    let volumes = ["shared-assets".to_string()];
    assert!(
        check(text, &Policy { host_paths: &[], volumes: &volumes, drivers: &[], server: None }, &[]).is_ok()
    );
    let other = ["shared".to_string()];
    let diagnostics =
        check(text, &Policy { host_paths: &[], volumes: &other, drivers: &[], server: None }, &[])
            .unwrap_err();
    assert_eq!(diagnostics.len(), 1);
    assert_eq!(diagnostics[0].message, "external volume \"shared-assets\" is not allowed for this app");
    assert_eq!(at(&diagnostics[0]), (2, 10));
    // App volumes and app directories need no grant.
    assert!(check(b"storage.mounts = [\"shared:/s\", \"./d:/d\"]", &NO_POLICY, &[]).is_ok());
}

#[test]
fn drivers_other_than_local_need_a_grant() {
    let text = b"[[storage.mounts]]\nsource = \"v\"\ntarget = \"/v\"\ndriver = \"sshfs\"\n";
    let drivers = ["sshfs".to_string()];
    assert!(check(text, &Policy { drivers: &drivers, ..Policy::default() }, &[]).is_ok());
    let diagnostics = check(text, &NO_POLICY, &[]).unwrap_err();
    assert_eq!(diagnostics.len(), 1, "{}", render(&diagnostics));
    assert_eq!(diagnostics[0].message, "volume driver \"sshfs\" is not allowed for this app");
    assert_eq!(at(&diagnostics[0]), (4, 10));
    assert!(diagnostics[0].hint.as_deref().unwrap().contains("berth storage:allow <app> driver:sshfs"));
    let local = b"[[storage.mounts]]\nsource = \"v\"\ntarget = \"/v\"\ndriver = \"local\"\n";
    assert!(check(local, &NO_POLICY, &[]).is_ok());
}

/// A server for the mount-source rule: app `demo` in `/b/data/apps/demo`, with these binds.
fn server_binds(binds: &[Bind], check_text: &str, grants: &[PathBuf]) -> Result<Manifest, Vec<Diagnostic>> {
    let app = AppName::new("demo").unwrap();
    let app_dir = Path::new("/b/data/apps/demo");
    let policy = Policy {
        host_paths: grants,
        server: Some(Server { app: &app, app_dir, binds }),
        ..Policy::default()
    };
    check(check_text.as_bytes(), &policy, &[])
}

fn other_bind(path: &str, writable: bool) -> Bind {
    let attachment = Attachment {
        readonly: !writable,
        ..admin(Source::HostPath(path.into()), "/o", "_default_", &[Phase::Deploy])
    };
    Bind::of(&AppName::new("other").unwrap(), Path::new("/b/data/apps/other"), &attachment, &BTreeMap::new())
        .unwrap()
}

#[test]
fn nested_app_directories_are_refused_at_the_inner_one() {
    let text = "[[storage.mounts]]\nsource = \"./a\"\ntarget = \"/a\"\n\n[[storage.mounts]]\nsource = \"./a/b\"\ntarget = \"/b\"\n";
    let diagnostics = server_binds(&[], text, &[]).unwrap_err();
    assert_eq!(diagnostics.len(), 1, "{}", render(&diagnostics));
    assert_eq!(
        diagnostics[0].message,
        "mount source \"./a/b\" lies below \"./a\", mounted read-write at line 1"
    );
    assert_eq!(at(&diagnostics[0]), (6, 10));
    assert!(diagnostics[0].hint.as_deref().unwrap().contains("its own restarts included"));
    // Read-only everywhere, the outer one cannot be swapped from inside.
    let read_only = text.replace("target = \"/a\"\n", "target = \"/a\"\nread_only = true\n");
    assert!(server_binds(&[], &read_only, &[]).is_ok());
    // Without the server's facts the rule is not checked.
    assert!(check(text.as_bytes(), &NO_POLICY, &[]).is_ok());
}

#[test]
fn a_grant_and_a_path_below_it_are_refused() {
    let grants = [PathBuf::from("/srv/g")];
    let text = "storage.mounts = [\"/srv/g:/g\", \"/srv/g/sub:/sub:ro\"]";
    let diagnostics = server_binds(&[], text, &grants).unwrap_err();
    assert_eq!(diagnostics.len(), 1, "{}", render(&diagnostics));
    assert_eq!(
        diagnostics[0].message,
        "mount source \"/srv/g/sub\" lies below \"/srv/g\", mounted read-write at line 1"
    );
    assert_eq!(at(&diagnostics[0]), (1, 33));
}

#[test]
fn other_bind_sources_on_the_server_count() {
    let grants = [PathBuf::from("/srv")];
    // Below another container's writable mount.
    let below = server_binds(&[other_bind("/srv/e", true)], "storage.mounts = [\"/srv/e/x:/x\"]", &grants);
    let diagnostics = below.unwrap_err();
    assert_eq!(
        diagnostics[0].message,
        "mount source \"/srv/e/x\" lies below the host path /srv/e, mounted read-write at /o by app other, which a \
         container can write"
    );
    assert_eq!(at(&diagnostics[0]), (1, 20));
    // Writable above another container's bind source, even a read-only one.
    let above = server_binds(&[other_bind("/srv/e/x", false)], "storage.mounts = [\"/srv/e:/e\"]", &grants);
    assert_eq!(
        above.unwrap_err()[0].message,
        "mount source \"/srv/e\" would be writable above the bind source of the host path /srv/e/x, mounted \
         read-only at /o by app other"
    );
    assert!(
        server_binds(&[other_bind("/srv/e/x", false)], "storage.mounts = [\"/srv/e:/e:ro\"]", &grants)
            .is_ok()
    );
    assert!(
        server_binds(&[other_bind("/srv/e", false)], "storage.mounts = [\"/srv/e/x:/x\"]", &grants).is_ok()
    );
    // A path that is not granted gets that diagnostic alone.
    let ungranted =
        server_binds(&[other_bind("/opt/e", true)], "storage.mounts = [\"/opt/e/x:/x\"]", &grants);
    assert_eq!(ungranted.unwrap_err().len(), 1);
}

#[test]
fn repo_mounts_may_not_collide_with_admin_mounts() {
    let entry = Source::Entry(EntryName::new("db").unwrap());
    let text = b"[processes]\nweb = \"s\"\nworker = \"w\"\n[[storage.mounts]]\nsource = \"v\"\ntarget = \"/data\"\nprocesses = [\"worker\"]\n";
    let collide = |admin_mount: Attachment| check(text, &NO_POLICY, &[admin_mount]);

    let diagnostics =
        collide(admin(entry.clone(), "/data", DEFAULT_PROCESS_TYPE, &[Phase::Run])).unwrap_err();
    assert_eq!(diagnostics.len(), 1);
    assert_eq!(at(&diagnostics[0]), (6, 10));
    assert_eq!(
        diagnostics[0].message,
        "mount target \"/data\" collides with the admin's mount of \"entry:db\" (phase run)"
    );
    assert!(collide(admin(entry.clone(), "/data", "worker", &[Phase::Deploy, Phase::Run])).is_err());
    // Different process, phase or path: no collision.
    assert!(collide(admin(entry.clone(), "/data", "web", &[Phase::Deploy])).is_ok());
    assert!(collide(admin(entry.clone(), "/data", DEFAULT_PROCESS_TYPE, &[Phase::Build])).is_ok());
    assert!(collide(admin(entry.clone(), "/data2", DEFAULT_PROCESS_TYPE, &[Phase::Run])).is_ok());
    // The previous deploy's repo mounts are replaced, not collided with.
    let previous = Attachment { made_by: Origin::Repo, ..admin(entry, "/data", "worker", &[Phase::Run]) };
    assert!(collide(previous).is_ok());
}

#[test]
fn validate_rechecks_hand_made_manifests() {
    let at_line = |line| MountPositions {
        source: Pos { line, column: 1 },
        target: Pos { line, column: 2 },
        phases: Pos { line, column: 3 },
        processes: Pos { line, column: 4 },
        driver: Pos { line, column: 5 },
    };
    let manifest = Manifest {
        mounts: vec![
            DeclaredMount {
                line: 1,
                at: at_line(1),
                phases: phases(&[Phase::Build]),
                ..mount(Source::AppVolume("a".into()), "/a")
            },
            DeclaredMount {
                line: 2,
                at: at_line(2),
                processes: vec!["nope".into()],
                ..mount(Source::AppVolume("b".into()), "/a")
            },
        ],
        ..Manifest::default()
    };
    let diagnostics = validate(&manifest, &NO_POLICY, &[]);
    let got: Vec<(usize, usize)> = diagnostics.iter().map(at).collect();
    assert_eq!(got, vec![(1, 3), (2, 4)], "{}", render(&diagnostics));
    // Distinct phases: no collision between the two.
    assert!(diagnostics.iter().all(|d| !d.message.contains("already used")));
}

#[test]
fn check_reports_file_and_server_problems_together() {
    let text = b"[web]\nprot = 1\n[[storage.mounts]]\nsource = \"/etc\"\ntarget = \"/e\"\n";
    let diagnostics = check(text, &NO_POLICY, &[]).unwrap_err();
    let got: Vec<(usize, usize)> = diagnostics.iter().map(at).collect();
    assert_eq!(got, vec![(2, 1), (4, 10)], "{}", render(&diagnostics));
}

// ---------------------------------------------------------------------------------------------
// Robustness: thousands of mutated and generated inputs, none may panic.

struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0 >> 33
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 { 0 } else { (self.next() % n as u64) as usize }
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

const TOKENS: &[&str] = &[
    "[",
    "]",
    "[[",
    "]]",
    "{",
    "}",
    "\"",
    "'",
    "\"\"\"",
    "'''",
    "=",
    ",",
    ".",
    "\n",
    "#",
    "\\",
    "..",
    "/",
    ":",
    "%2e",
    "\u{feff}",
    "\u{2215}",
    "\u{0}",
    "\r\n",
    "\t",
    " ",
    "[[storage.mounts]]\n",
    "source = \"",
    "target = \"/",
    "phases = [",
    "processes = [",
    "external = true",
    "driver_opts = {",
    "1e999",
    "-0",
    "0x",
    "nan",
    "inf",
    "99999999999999999999999",
    "1979-05-27T07:32:00Z",
    "\"build\"",
    "\"web\"",
    "\\u0000",
    "\\uD800",
    "[app]\nuser = ",
    "[web]\nport = ",
    "[processes]\n",
    "a.b.c",
    "\"./x:/y:ro\"",
    "\"../..\"",
    "true",
    "\u{10FFFF}",
];

fn assert_well_formed(diagnostics: &[Diagnostic], input: &[u8]) {
    assert!(!diagnostics.is_empty(), "an error without diagnostics for {input:?}");
    assert!(diagnostics.len() <= MAX_DIAGNOSTICS);
    for diagnostic in diagnostics {
        assert!(diagnostic.line >= 1 && diagnostic.column >= 1, "{diagnostic:?} for {input:?}");
        assert!(!diagnostic.message.is_empty());
        let _ = diagnostic.to_string();
    }
}

fn exercise(input: &[u8]) {
    let grants = [PathBuf::from("/srv"), PathBuf::from("/")];
    let volumes = ["shared".to_string()];
    let policy = Policy { host_paths: &grants, volumes: &volumes, drivers: &[], server: None };
    let admin_mounts = [admin(Source::HostPath("/srv/a".into()), "/data", DEFAULT_PROCESS_TYPE, &Phase::ALL)];
    match parse(input) {
        Ok(manifest) => {
            let _ = validate(&manifest, &policy, &admin_mounts);
            let _ = manifest.attachments();
            let _ = manifest.process_types();
        }
        Err(diagnostics) => assert_well_formed(&diagnostics, input),
    }
    if let Err(diagnostics) = check(input, &policy, &admin_mounts) {
        assert_well_formed(&diagnostics, input);
    }
}

#[test]
fn mutated_inputs_never_panic() {
    let seeds: Vec<Vec<u8>> = vec![
        SPEC_EXAMPLE.as_bytes().to_vec(),
        b"storage.mounts = [\"./a:/b\", { source = \"v\", target = \"/v\", driver_opts = { o = \"x\" } }]\n"
            .to_vec(),
        b"[app]\nuser = \"1:2\"\n[web]\nport = 80\n[processes]\nweb = \"x\"\n".to_vec(),
        Vec::new(),
    ];
    let mut rng = Lcg(0x5eed_1234_abcd_0001);
    for round in 0..3000 {
        let mut input = rng.pick(&seeds).clone();
        for _ in 0..=rng.below(6) {
            match rng.below(6) {
                0 if !input.is_empty() => {
                    let i = rng.below(input.len());
                    input[i] = rng.next() as u8;
                }
                1 => {
                    let i = rng.below(input.len() + 1);
                    let token = rng.pick(TOKENS).as_bytes().to_vec();
                    input.splice(i..i, token);
                }
                2 if !input.is_empty() => {
                    let i = rng.below(input.len());
                    let j = (i + rng.below(40)).min(input.len());
                    input.drain(i..j);
                }
                3 if !input.is_empty() => {
                    let i = rng.below(input.len());
                    let j = (i + rng.below(60)).min(input.len());
                    let copy = input[i..j].to_vec();
                    let k = rng.below(input.len() + 1);
                    input.splice(k..k, copy);
                }
                4 => input.truncate(rng.below(input.len() + 1)),
                _ => {
                    let i = rng.below(input.len() + 1);
                    input.insert(i, *rng.pick(b"[]{}\"'=.,\n#\\:/%"));
                }
            }
        }
        let outcome = std::panic::catch_unwind(|| exercise(&input));
        assert!(outcome.is_ok(), "round {round} panicked on {:?}", String::from_utf8_lossy(&input));
    }
}

#[test]
fn generated_documents_never_panic() {
    let keys = [
        "source",
        "target",
        "phases",
        "read_only",
        "processes",
        "external",
        "driver",
        "driver_opts",
        "exclusive",
        "sorce",
        "user",
        "port",
        "command",
        "dockerfile",
        "healthcheck",
        "web",
        "worker",
        "mounts",
    ];
    let values = [
        "\"./a\"",
        "\"../a\"",
        "\"/srv/x\"",
        "\"/\"",
        "\"vol\"",
        "\"/data\"",
        "\"/proc\"",
        "[\"build\"]",
        "[\"deploy\", \"run\"]",
        "[]",
        "[\"web\"]",
        "[\"worker\", \"worker\"]",
        "true",
        "false",
        "1",
        "65536",
        "-1",
        "{ o = \"x\" }",
        "{}",
        "[[]]",
        "\"a:b\"",
        "\"%2e%2e\"",
        "\"\\u2215\"",
        "1.5",
        "2024-01-01",
        "\"1000:1000\"",
        "\"herokuish\"",
        "\"\"",
        "\"x\\u0000\"",
    ];
    let headers = [
        "[app]",
        "[build]",
        "[web]",
        "[processes]",
        "[storage]",
        "[[storage.mounts]]",
        "[[mounts]]",
        "[x.y]",
    ];
    let mut rng = Lcg(42);
    for round in 0..1500 {
        let mut text = String::new();
        for _ in 0..rng.below(8) {
            if rng.below(3) == 0 {
                text.push_str(rng.pick::<&str>(&headers));
                text.push('\n');
            }
            for _ in 0..rng.below(5) {
                text.push_str(&format!("{} = {}\n", rng.pick(&keys), rng.pick(&values)));
            }
        }
        if rng.below(4) == 0 {
            let items: Vec<String> = (0..rng.below(5))
                .map(|_| format!("\"{}:{}\"", rng.below(3), rng.pick(&["/a", "/b", "rel", "/a:ro"])))
                .collect();
            text.push_str(&format!("storage.mounts = [{}]\n", items.join(", ")));
        }
        let outcome = std::panic::catch_unwind(|| exercise(text.as_bytes()));
        assert!(outcome.is_ok(), "round {round} panicked on {text:?}");
    }
}

#[test]
fn large_hostile_inputs_are_handled_quickly() {
    let started = std::time::Instant::now();
    let inputs: Vec<Vec<u8>> = vec![
        // One long line of many mounts with problems.
        format!("storage.mounts = [{}]", vec!["\"../x:rel\""; 50_000].join(",")).into_bytes(),
        // Many unknown keys on one line each.
        (0..40_000).map(|i| format!("k{i} = 1\n")).collect::<String>().into_bytes(),
        // A long key.
        format!("{} = 1", "k".repeat(500_000)).into_bytes(),
        // Brackets inside strings do not count as nesting.
        format!("x = \"{}\"", "[".repeat(500_000)).into_bytes(),
        // Deep nesting after a lot of text.
        format!("{}x = {}", "# c\n".repeat(100_000), "[".repeat(100)).into_bytes(),
        vec![b'['; MAX_BYTES],
        vec![b'"'; MAX_BYTES],
        vec![0xff; MAX_BYTES],
    ];
    for input in &inputs {
        exercise(input);
    }
    assert!(started.elapsed().as_secs() < 60, "took {:?}", started.elapsed());
}

// ---------------------------------------------------------------------------------------------
// [env], [build].env_keys and [scale].

#[test]
fn env_env_keys_and_scale_parse() {
    let manifest = parse_ok(
        "[processes]\nweb = \"w\"\nworker = \"k\"\n[env]\nLOG_LEVEL = \"info\"\nEMPTY = \"\"\n\
         [build]\nenv_keys = [\"NPM_TOKEN\", \"NPM_TOKEN\", \"ASSET_HOST\"]\n[scale]\nweb = 2\nworker = 0\n",
    );
    assert_eq!(
        manifest.env,
        [("EMPTY".to_string(), String::new()), ("LOG_LEVEL".into(), "info".into())].into()
    );
    assert_eq!(manifest.build.env_keys, ["NPM_TOKEN", "ASSET_HOST"]);
    let counts: Vec<(&str, u32, usize)> =
        manifest.scale.iter().map(|(p, s)| (p.as_str(), s.count, s.at.line)).collect();
    assert_eq!(counts, [("web", 2, 10), ("worker", 0, 11)]);
}

#[test]
fn bad_env_keys_and_values_point_at_app_toml() {
    let rendered = render(&errors(
        "[env]\n\"BAD-KEY\" = \"x\"\nBERTH_APP = \"x\"\nPORT = \"1\"\nWORKERS = 4\nOK = \"a\\u0000b\"\n\
         [build]\nenv_keys = [\"9LIVES\", 3]\n",
    ));
    insta::assert_snapshot!(rendered, @r#"
    app.toml:2:1: Invalid key name: 'BAD-KEY': keys are letters, digits and _, not starting with a digit
      hint: keys look like DATABASE_URL: letters, digits and _, not starting with a digit; BERTH_* and PORT are set by berth
    app.toml:3:1: Invalid key name: 'BERTH_APP': the BERTH_ prefix is reserved for the variables berth sets
      hint: keys look like DATABASE_URL: letters, digits and _, not starting with a digit; BERTH_* and PORT are set by berth
    app.toml:4:1: Invalid key name: 'PORT': berth sets PORT in web containers from app.toml's [web] port
      hint: keys look like DATABASE_URL: letters, digits and _, not starting with a digit; BERTH_* and PORT are set by berth
    app.toml:5:11: [env] `WORKERS` must be a string, not an integer
      hint: for example: WORKERS = "value" (quote numbers and booleans too)
    app.toml:6:6: [env] `OK` holds a NUL character
      hint: no process environment can hold one: remove it
    app.toml:8:23: each entry of `build.env_keys` must be a string, not an integer
      hint: for example: env_keys = ["NPM_TOKEN", "ASSET_HOST"]
    "#);
}

#[test]
fn scale_counts_processes_and_exclusive_mounts_are_checked() {
    let rendered = render(&errors(
        "[processes]\nweb = \"w\"\ndb = \"d\"\n[[storage.mounts]]\nsource = \"./db\"\ntarget = \"/db\"\n\
         processes = [\"db\"]\nexclusive = true\n[scale]\nweb = -1\nworker = 1\ndb = 2\ncron = \"2\"\n",
    ));
    insta::assert_snapshot!(rendered, @r#"
    app.toml:10:7: [scale] `web` = "-1" is not a count of instances
      hint: counts go from 0 to 100
    app.toml:11:1: [scale] names process "worker", which app.toml does not declare
      hint: declared process types: db, web
    app.toml:12:1: process "db" cannot run 2 instances: its mount app-dir:db -> /db (app.toml line 4) is exclusive (single writer)
      hint: set [scale] db = 1, or remove `exclusive` from the mount
    app.toml:13:8: [scale] `cron` must be an integer, not a string
      hint: for example: cron = 2
    "#);
    assert!(
        parse(
            b"[[storage.mounts]]\nsource = \"./db\"\ntarget = \"/db\"\nexclusive = true\n[scale]\nweb = 1\n"
        )
        .is_ok()
    );
}
