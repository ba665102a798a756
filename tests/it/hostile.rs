//! Hostile `app.toml` files, pushed with the real `git push` to one app that serves a good
//! release. The corpus is `tests/hostile/` (its README says how to add a case): each case must be
//! refused by pre-receive with exactly its expected `app.toml:L:C:` lines, and nothing on the
//! host may change: the files under `BERTH_ROOT` (state, repos and storage), the app's
//! containers, the engine's volumes, and the old release keeps answering `/health`.
//!
//! Symlinks planted in the app's storage directory are refused later, when the push applies its
//! storage: `symlinks_in_app_storage_are_refused_at_apply_time`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use crate::engine::{docker, mounts_of};
use crate::push::{App, Repo, get};
use crate::test::{Test, snapshot_state};

const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/hostile");

/// What a case puts at `app.toml` in the pushed commit.
enum Content {
    /// A regular file with these bytes.
    File(Vec<u8>),
    /// A symlink to this target.
    Symlink(String),
    /// A directory.
    Directory,
    /// A gitlink (a submodule).
    Submodule,
}

struct Case {
    name: String,
    content: Content,
    /// The `.expect` file, placeholders still in.
    expect: String,
}

/// Every case of the corpus, sorted by name, with the problems of the corpus itself (a case
/// without its `.expect`, an `.expect` without its case, a `.gen` that does not parse).
fn corpus() -> (Vec<Case>, Vec<String>) {
    let mut cases = Vec::new();
    let mut problems = Vec::new();
    let mut names: Vec<PathBuf> = fs::read_dir(CORPUS).unwrap().map(|e| e.unwrap().path()).collect();
    names.sort();
    for path in &names {
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        let content = match path.extension().and_then(|e| e.to_str()) {
            Some("toml") => Content::File(fs::read(path).unwrap()),
            Some("gen") => match generate(&fs::read_to_string(path).unwrap()) {
                Ok(content) => content,
                Err(e) => {
                    problems.push(format!("{name}.gen: {e}"));
                    continue;
                }
            },
            Some("expect") => {
                let has_case = ["toml", "gen"].iter().any(|ext| path.with_extension(ext).exists());
                if !has_case {
                    problems.push(format!("{name}.expect has no {name}.toml or {name}.gen"));
                }
                continue;
            }
            _ => continue,
        };
        match fs::read_to_string(path.with_extension("expect")) {
            Ok(expect) if expect.lines().any(|l| !l.trim().is_empty()) => {
                cases.push(Case { name, content, expect })
            }
            _ => problems.push(format!("{name} has no (or an empty) {name}.expect")),
        }
    }
    (cases, problems)
}

/// The content a `.gen` file describes: `prefix`, then `repeat` `count` times (with `{i}` the
/// repetition's number, from 1), then `suffix`; or a tree entry of another `kind`.
fn generate(spec: &str) -> Result<Content, String> {
    let spec: toml::Table = spec.parse().map_err(|e| format!("{e}"))?;
    let text = |key: &str| {
        spec.get(key).map_or(Some(""), toml::Value::as_str).ok_or(format!("`{key}` must be a string"))
    };
    for key in spec.keys() {
        if !["prefix", "repeat", "count", "suffix", "kind", "target"].contains(&key.as_str()) {
            return Err(format!("unknown key `{key}`"));
        }
    }
    if let Some(kind) = spec.get("kind") {
        return match kind.as_str() {
            Some("symlink") => Ok(Content::Symlink(text("target")?.to_string())),
            Some("directory") => Ok(Content::Directory),
            Some("submodule") => Ok(Content::Submodule),
            _ => Err(format!("unknown kind {kind}")),
        };
    }
    let count = spec.get("count").and_then(toml::Value::as_integer).ok_or("`count` must be an integer")?;
    let repeat = text("repeat")?;
    let mut out = text("prefix")?.to_string();
    if repeat.contains("{i}") {
        for i in 1..=count {
            out.push_str(&repeat.replace("{i}", &i.to_string()));
        }
    } else {
        out.push_str(&repeat.repeat(usize::try_from(count).map_err(|e| e.to_string())?));
    }
    out.push_str(text("suffix")?);
    Ok(Content::File(out.into_bytes()))
}

fn replace_bytes(haystack: &[u8], needle: &[u8], with: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(haystack.len());
    let mut rest = haystack;
    while let Some(at) = rest.windows(needle.len()).position(|w| w == needle) {
        out.extend_from_slice(&rest[..at]);
        out.extend_from_slice(with);
        rest = &rest[at + needle.len()..];
    }
    out.extend_from_slice(rest);
    out
}

/// The placeholders of the corpus: `@ROOT@` (the test's `BERTH_ROOT`), `@APP@` (the app's
/// name), `@COMMIT@` (the pushed commit, abbreviated) and, in `.expect` files only, `@COL:n@`
/// (column `n` of the file as written, moved by the longer `@ROOT@` before it on its line).
struct Placeholders {
    root: String,
    app: String,
}

impl Placeholders {
    fn content(&self, bytes: &[u8]) -> Vec<u8> {
        let bytes = replace_bytes(bytes, b"@ROOT@", self.root.as_bytes());
        replace_bytes(&bytes, b"@APP@", self.app.as_bytes())
    }

    fn expect(&self, text: &str, commit: &str) -> Vec<String> {
        let mut text = text.to_string();
        while let Some(start) = text.find("@COL:") {
            let end = start + text[start + 1..].find('@').unwrap() + 1;
            let column: usize = text[start + 5..end].parse().unwrap();
            text.replace_range(start..=end, &(column + self.root.len() - "@ROOT@".len()).to_string());
        }
        let text =
            text.replace("@ROOT@", &self.root).replace("@APP@", &self.app).replace("@COMMIT@", &commit[..7]);
        text.lines().map(|l| l.trim_end().to_string()).filter(|l| !l.is_empty()).collect()
    }
}

/// git in a work tree, isolated from the user's configuration, with bytes on stdin.
fn git(dir: &Path, args: &[&str], input: &[u8]) -> String {
    let mut child = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "berth tests")
        .env("GIT_AUTHOR_EMAIL", "tests@berth.invalid")
        .env("GIT_COMMITTER_NAME", "berth tests")
        .env("GIT_COMMITTER_EMAIL", "tests@berth.invalid")
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(out.status.success(), "git {} failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// A commit on top of `parent` whose `app.toml` is `content` (everything else as in `parent`),
/// made with plumbing so that every case is a child of the deployed commit: a push carries one
/// case's objects, never the rejected cases before it.
fn commit_case(dir: &Path, parent: &str, name: &str, content: &Content) -> String {
    let blob = |bytes: &[u8]| git(dir, &["hash-object", "-w", "--no-filters", "--stdin"], bytes);
    let entry = match content {
        Content::File(bytes) => format!("100644 blob {}\tapp.toml", blob(bytes)),
        Content::Symlink(target) => format!("120000 blob {}\tapp.toml", blob(target.as_bytes())),
        Content::Directory => {
            let inside = format!("100644 blob {}\tapp.toml\n", blob(b"[app]\nuser = \"0\"\n"));
            format!("040000 tree {}\tapp.toml", git(dir, &["mktree"], inside.as_bytes()))
        }
        Content::Submodule => format!("160000 commit {parent}\tapp.toml"),
    };
    let mut entries: Vec<String> = git(dir, &["ls-tree", parent], b"")
        .lines()
        .filter(|l| !l.ends_with("\tapp.toml"))
        .map(str::to_string)
        .collect();
    entries.push(entry);
    let tree = git(dir, &["mktree"], (entries.join("\n") + "\n").as_bytes());
    git(dir, &["commit-tree", &tree, "-p", parent, "-m", &format!("hostile: {name}")], b"")
}

/// What must not change on the host while cases are refused.
struct HostState {
    files: BTreeMap<PathBuf, Vec<u8>>,
    containers: Vec<String>,
    volumes: Vec<String>,
}

impl HostState {
    fn take(app: &App) -> HostState {
        let label = format!("label=berth.app={}", app.name);
        let format = "{{.ID}} {{.Names}} {{.State}}";
        let mut containers: Vec<String> =
            docker(&["ps", "-a", "--no-trunc", "--filter", &label, "--format", format])
                .lines()
                .map(String::from)
                .collect();
        containers.sort();
        // Other tests of this process create and remove volumes named berth-it-*, and
        // anonymous ones (64 hex digits) of their one-off containers: only this app's and the
        // engine's other named volumes count. berth names every volume it makes for an app.
        let mine = format!("{}_", app.name);
        let anonymous = |v: &str| v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit());
        let mut volumes: Vec<String> = docker(&["volume", "ls", "--format", "{{.Name}}"])
            .lines()
            .filter(|v| (!v.starts_with("berth-it-") || v.starts_with(&mine)) && !anonymous(v))
            .map(String::from)
            .collect();
        volumes.sort();
        HostState { files: snapshot_state(app.t.root()), containers, volumes }
    }

    /// What changed since `self`, one line per change.
    fn changes(&self, now: &HostState) -> Vec<String> {
        let mut changes = Vec::new();
        for (path, bytes) in &self.files {
            match now.files.get(path) {
                None => changes.push(format!("removed {}", path.display())),
                Some(b) if b != bytes => changes.push(format!("changed {}", path.display())),
                Some(_) => {}
            }
        }
        for path in now.files.keys().filter(|p| !self.files.contains_key(*p)) {
            changes.push(format!("added {}", path.display()));
        }
        if now.containers != self.containers {
            changes.push(format!("containers were {:?}, now {:?}", self.containers, now.containers));
        }
        if now.volumes != self.volumes {
            let added: Vec<&String> = now.volumes.iter().filter(|v| !self.volumes.contains(v)).collect();
            let removed: Vec<&String> = self.volumes.iter().filter(|v| !now.volumes.contains(v)).collect();
            changes.push(format!("volumes added {added:?}, removed {removed:?}"));
        }
        changes
    }
}

fn health(url: &str) -> Result<u16, String> {
    std::panic::catch_unwind(|| get(url, "/health").status)
        .map_err(|_| format!("{url}/health did not answer"))
}

#[test]
fn every_hostile_app_toml_is_refused_and_changes_nothing() {
    let started = Instant::now();
    let (cases, mut failures) = corpus();
    assert!(cases.len() >= 150, "the corpus has {} cases, fewer than 150", cases.len());

    let t = Test::new();
    let app = App::create(&t, "hostile");
    let repo = Repo::from_template("web");
    repo.push(&app).success();
    let mut url = app.url();
    let good = repo.head();
    let work = repo.path("");
    let placeholders = Placeholders { root: t.root().display().to_string(), app: app.name.clone() };

    // What some cases reach for: a granted directory with a link to /etc planted in it, a
    // granted volume, an admin mount, another app's data.
    let granted = t.mkdir("granted");
    symlink("/etc", t.path("granted/link")).unwrap();
    app.berth("storage:allow", &[&granted]).success();
    app.berth("storage:allow", &["shared-assets"]).success();
    let shared = t.mkdir("shared");
    app.berth("storage:mount", &[&format!("{shared}:/admin:ro")]).success();
    t.mkdir("data/apps/other/uploads");
    fs::write(t.path("data/apps/other/uploads/secret"), "another app's data\n").unwrap();
    // A first refused push settles whatever the successful one left for the next push.
    let warm_up = commit_case(&work, &good, "warm-up", &Content::File(b"bogus = 1\n".to_vec()));
    repo.push_refspec(&app, &format!("{warm_up}:refs/heads/main"), &[]).rejected();

    let mut before = HostState::take(&app);
    assert_eq!(health(&url), Ok(200));
    let (mut refused, mut panics) = (0, 0);
    for case in &cases {
        let content = match &case.content {
            Content::File(bytes) => Content::File(placeholders.content(bytes)),
            Content::Symlink(target) => Content::Symlink(target.clone()),
            Content::Directory => Content::Directory,
            Content::Submodule => Content::Submodule,
        };
        let commit = commit_case(&work, &good, &case.name, &content);
        let case_started = Instant::now();
        let out = repo.push_refspec(&app, &format!("{commit}:refs/heads/main"), &[]);
        let took = case_started.elapsed();
        let remote = out.remote();
        let mut problems = Vec::new();
        // --porcelain: git reports the rejection on stdout, the hook's lines on stderr.
        let declined =
            out.status != 0 && out.stdout.contains("[remote rejected] (pre-receive hook declined)");
        if declined {
            refused += 1;
        } else {
            problems.push("the push was not declined by pre-receive".to_string());
        }
        if out.stderr.contains("panicked") {
            panics += 1;
            problems.push("the hook panicked".to_string());
        }
        let expected = placeholders.expect(&case.expect, &commit);
        let diagnostics = |lines: &[String]| -> Vec<String> {
            lines.iter().filter(|l| l.starts_with("app.toml:")).cloned().collect()
        };
        if diagnostics(&expected) != diagnostics(&remote) {
            problems.push(format!(
                "expected exactly these app.toml lines:\n{}\n  got:\n{}",
                diagnostics(&expected).join("\n"),
                diagnostics(&remote).join("\n")
            ));
        }
        for line in expected.iter().filter(|l| !l.starts_with("app.toml:")) {
            if !remote.contains(line) {
                problems.push(format!("missing line: {line}"));
            }
        }
        if app.rev("refs/heads/main").as_deref() != Some(good.as_str()) {
            // A case was deployed: serve the good release again, so the next cases are pushed
            // (and compared) as before.
            let back = repo.push_refspec(&app, &format!("+{good}:refs/heads/main"), &[]);
            problems
                .push(format!("refs/heads/main moved; pushing the good release back: exit {}", back.status));
            url = app.url();
        }
        let now = HostState::take(&app);
        let changes = before.changes(&now);
        if !changes.is_empty() {
            problems.push(format!("the host changed:\n{}", changes.join("\n")));
            // Compare the next cases with what is there now, so one change is reported once.
            before = now;
        }
        match health(&url) {
            Ok(200) => {}
            Ok(status) => problems.push(format!("/health answered {status}")),
            Err(e) => problems.push(e),
        }
        if !problems.is_empty() {
            let mut report =
                format!("--- {} ({} ms)\n{}\n", case.name, took.as_millis(), problems.join("\n"));
            let said: String = format!("{}{}", out.stdout, out.stderr).chars().take(4000).collect();
            let _ = write!(report, "--- git push said:\n{said}");
            failures.push(report);
        }
    }
    let summary = format!(
        "{} cases tried / {refused} refused / {panics} panics, in {:.1}s",
        cases.len(),
        started.elapsed().as_secs_f64()
    );
    println!("{summary}");
    assert!(failures.is_empty(), "{} failure(s); {summary}\n{}", failures.len(), failures.join("\n"));
}

/// Symlinks planted in the app's storage directory, where the app (or anyone who can write its
/// data) may put them, are refused when the push creates its directories: nothing is created
/// through them, and the old release keeps serving.
#[test]
fn symlinks_in_app_storage_are_refused_at_apply_time() {
    let t = Test::new();
    let app = App::create(&t, "hostile-link");
    let repo = Repo::from_template("web");
    repo.push(&app).success();
    let url = app.url();
    let web = app.container("web");
    let containers = app.containers();
    let mounts = mounts_of(&web);
    let good = app.rev("refs/heads/main");
    let original = repo.read("app.toml");
    let probe = format!("berth-hostile-probe-{}", std::process::id());

    // uploads/evil -> /etc, then mounts through it.
    symlink("/etc", app.dir("uploads/evil")).unwrap();
    for source in ["./uploads/evil", &format!("./uploads/evil/{probe}")] {
        let extra = format!("\n[[storage.mounts]]\nsource = \"{source}\"\ntarget = \"/evil\"\n");
        repo.write("app.toml", &format!("{original}{extra}")).commit(&format!("mount {source}"));
        let out = repo.push(&app).rejected();
        // Refused before any path is resolved: a directory below a writable mount can be
        // swapped by its container at any time, link or not.
        let message = format!(
            "app.toml:14:10: mount source \"{source}\" lies below \"./uploads\", mounted read-write at line 9"
        );
        assert!(out.has_line(&message), "{out}");
        assert!(!out.stderr.contains("panicked"), "{out}");
        assert!(!Path::new("/etc").join(&probe).exists(), "a directory was created through the link");
        assert_eq!(app.containers(), containers, "the containers are unchanged\n{out}");
        assert_eq!(mounts_of(&web), mounts);
        assert_eq!(get(&url, "/health").status, 200);
        assert_eq!(app.rev("refs/heads/main"), good);
    }
    fs::remove_file(app.dir("uploads/evil")).unwrap();

    // uploads itself replaced by a link to a directory elsewhere.
    let elsewhere = tempfile::Builder::new().prefix("berth-it-elsewhere-").tempdir().unwrap();
    fs::rename(app.dir("uploads"), app.dir("uploads.real")).unwrap();
    symlink(elsewhere.path(), app.dir("uploads")).unwrap();
    for (source, target) in [("./uploads", "/app/storage"), ("./uploads/sub", "/sub")] {
        let text = if source == "./uploads" {
            format!("{original}\n# release {target}\n")
        } else {
            format!("{original}\n[[storage.mounts]]\nsource = \"{source}\"\ntarget = \"{target}\"\n")
        };
        repo.write("app.toml", &text).commit(&format!("mount {source}"));
        let out = repo.push(&app).rejected();
        let link = app.dir("uploads").display().to_string();
        let message = if source == "./uploads" {
            format!(
                " !     {link} is a symlink; berth does not follow symlinks in storage paths (remove the link, or mount its target explicitly)"
            )
        } else {
            // A directory below a writable mount is refused before any path is resolved.
            format!(
                "app.toml:14:10: mount source \"{source}\" lies below \"./uploads\", mounted read-write at line 9"
            )
        };
        assert!(out.has_line(&message), "{out}");
        assert!(!out.stderr.contains("panicked"), "{out}");
        assert_eq!(
            fs::read_dir(elsewhere.path()).unwrap().count(),
            0,
            "something was created through the link"
        );
        assert_eq!(app.containers(), containers, "the containers are unchanged\n{out}");
        assert_eq!(mounts_of(&web), mounts);
        assert_eq!(get(&url, "/health").status, 200);
        assert_eq!(app.rev("refs/heads/main"), good);
    }
    fs::remove_file(app.dir("uploads")).unwrap();
    fs::rename(app.dir("uploads.real"), app.dir("uploads")).unwrap();
}

/// What the corpus leaves out because it is valid: an `app.toml` with a UTF-8 byte order mark
/// deploys like the same file without one, and an empty `app.toml` deploys with the defaults.
#[test]
fn a_bom_or_an_empty_app_toml_deploys() {
    let policy = berth::manifest::Policy::default();
    let template = fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/templates/web/app.toml")).unwrap();
    let with_bom = [b"\xef\xbb\xbf".as_slice(), &template].concat();
    let plain = berth::manifest::check(&template, &policy, &[]).unwrap();
    assert_eq!(berth::manifest::check(&with_bom, &policy, &[]).unwrap(), plain);
    assert_eq!(berth::manifest::check(b"", &policy, &[]).unwrap(), berth::manifest::Manifest::default());
    assert_eq!(
        berth::manifest::check(b"\xef\xbb\xbf", &policy, &[]).unwrap(),
        berth::manifest::Manifest::default()
    );

    let t = Test::new();
    let app = App::create(&t, "hostile-valid");
    let repo = Repo::from_template("web");
    fs::write(repo.path("app.toml"), &with_bom).unwrap();
    repo.commit("app.toml with a byte order mark");
    repo.push(&app).success();
    let web = app.container("web");
    let uploads = (app.dir("uploads").display().to_string(), "/app/storage".to_string(), true);
    assert_eq!(mounts_of(&web), [uploads].into());
    assert_eq!(get(&app.url(), "/health").status, 200);

    fs::write(repo.path("app.toml"), b"").unwrap();
    repo.commit("an empty app.toml");
    repo.push(&app).success();
    assert!(mounts_of(&web).is_empty(), "no mount without [[storage.mounts]]");
    // Without [web] nothing is published: the process runs, with the image's user and command.
    assert_eq!(crate::engine::inspect(&web, "{{.State.Running}}"), "true");
    assert_eq!(app.ps("ps-current-release"), "2");
}
