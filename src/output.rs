//! Dokku's output conventions: `----->` and `=====>` headings, 7-space detail lines, ` !     `
//! warnings on stderr, and aligned `Key: value` reports with their JSON twin. Everything the
//! library prints goes through a [`Reporter`] the binaries create and pass down, so tests can
//! capture it; only its writers print (clippy's `print_stdout`/`print_stderr` deny the rest).

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

/// Where berth's messages go, created by a binary and passed down, as cargo's `Shell` is: the
/// process's stdout and stderr, or (for tests) a capture. The method names are the lines
/// Dokku's output is made of.
#[derive(Debug, Default)]
pub struct Reporter {
    /// Dokku's `--quiet`: step and heading lines are left out, data lines stay.
    quiet: AtomicBool,
    /// `None`: the process's stdout and stderr.
    captured: Option<Mutex<Captured>>,
}

/// What a capturing [`Reporter`] was given, per stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Captured {
    pub stdout: String,
    pub stderr: String,
}

impl Reporter {
    /// Writes to the process's stdout and stderr.
    pub fn stdio() -> Self {
        Reporter::default()
    }

    /// Keeps everything, for a test to read back with [`Reporter::captured`].
    pub fn capture() -> Self {
        Reporter { captured: Some(Mutex::new(Captured::default())), ..Reporter::default() }
    }

    /// What a capturing reporter was given so far (nothing for one on stdio).
    pub fn captured(&self) -> Captured {
        self.captured.as_ref().map(|c| c.lock().map(|c| c.clone()).unwrap_or_default()).unwrap_or_default()
    }

    pub fn set_quiet(&self, quiet: bool) {
        self.quiet.store(quiet, Ordering::Relaxed);
    }

    pub fn is_quiet(&self) -> bool {
        self.quiet.load(Ordering::Relaxed)
    }

    /// A data line of a list: indented as a detail, or bare under `--quiet` (Dokku's
    /// `--quiet storage:list` prints just the mounts).
    pub fn item(&self, message: impl AsRef<str>) {
        if self.is_quiet() {
            self.stdout(&format!("{}\n", message.as_ref()));
        } else {
            self.detail(message);
        }
    }

    /// A step (`-----> x`) on stdout.
    pub fn step(&self, message: impl AsRef<str>) {
        if !self.is_quiet() {
            self.stdout(&format!("-----> {}\n", message.as_ref()));
        }
    }

    /// A section heading (`=====> x`) on stdout.
    pub fn heading(&self, message: impl AsRef<str>) {
        if !self.is_quiet() {
            self.stdout(&format!("=====> {}\n", message.as_ref()));
        }
    }

    /// A detail line under a step, indented 7 spaces, on stdout.
    pub fn detail(&self, message: impl AsRef<str>) {
        self.stdout(&format!("       {}\n", message.as_ref()));
    }

    /// Text already laid out (a plan, a report), on stdout as it is.
    pub fn text(&self, text: impl AsRef<str>) {
        self.stdout(text.as_ref());
    }

    /// Text already laid out, on stderr as it is (one line).
    pub fn error_text(&self, text: impl AsRef<str>) {
        self.stderr(&format!("{}\n", text.as_ref()));
    }

    /// A detail line on stderr, for commands whose stdout belongs to someone else (`berth run`).
    pub fn note(&self, message: impl AsRef<str>) {
        self.stderr(&format!("       {}\n", message.as_ref()));
    }

    /// Relays a container's output chunk: its stderr to ours, its stdout to ours, flushed so a
    /// slow command shows as it goes.
    pub fn relay(&self, is_err: bool, text: &str) {
        if is_err {
            self.stderr(text);
        } else {
            self.stdout(text);
            if self.captured.is_none() {
                std::io::stdout().flush().ok();
            }
        }
    }

    /// A warning (` !     x`) on stderr.
    pub fn warn(&self, message: impl AsRef<str>) {
        self.stderr(&format!(" !     {}\n", message.as_ref()));
    }

    /// The one writer of stdout. A reader that went away (`| head`) makes `print!` panic, which
    /// the binary turns into a quiet exit.
    #[allow(clippy::print_stdout)]
    fn stdout(&self, text: &str) {
        if !self.keep(text, |captured| &mut captured.stdout) {
            print!("{text}");
        }
    }

    /// The one writer of stderr.
    #[allow(clippy::print_stderr)]
    fn stderr(&self, text: &str) {
        if !self.keep(text, |captured| &mut captured.stderr) {
            eprint!("{text}");
        }
    }

    /// Appends `text` to the stream `pick` chooses, when capturing; whether it did.
    fn keep(&self, text: &str, pick: impl FnOnce(&mut Captured) -> &mut String) -> bool {
        let Some(captured) = &self.captured else { return false };
        if let Ok(mut captured) = captured.lock() {
            pick(&mut captured).push_str(text);
        }
        true
    }
}

/// Text from elsewhere (an engine message, a build's failure reason) made safe to store and
/// print on one line: control characters (escape sequences, `\r`, `\n`, ...), and the Unicode
/// marks that reorder or hide text, become `\u{..}` escapes. Printable text is unchanged, so the
/// result is its own result.
pub fn printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        let hidden = matches!(c, '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{feff}');
        if c.is_control() || hidden {
            out.push_str(&format!("\\u{{{:x}}}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    out
}

/// A Dokku-style report: rows keyed by their info flag without `--` (`storage-deploy-mounts`).
#[derive(Debug, Default)]
pub struct Report {
    rows: BTreeMap<String, String>,
    /// JSON-only arrays under their short key (`deploy-list`), as Dokku's JSON adds them.
    lists: BTreeMap<String, Vec<String>>,
}

impl Report {
    pub fn row(&mut self, key: impl Into<String>, value: impl Into<String>) {
        self.rows.insert(key.into(), value.into());
    }

    /// A JSON-only array, `key` as written (no namespace prefix is added or stripped).
    pub fn json_list(&mut self, key: impl Into<String>, items: Vec<String>) {
        self.lists.insert(key.into(), items);
    }

    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.rows.keys().map(String::as_str)
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.rows.get(key).map(String::as_str)
    }

    /// Rows sorted by flag, labels aligned at max(31, longest flag) as Dokku does.
    pub fn render_text(&self, title: &str) -> String {
        let width = self.rows.keys().map(|k| k.len() + 2).max().unwrap_or(0).max(31);
        let mut text = format!("=====> {title}\n");
        for (key, value) in &self.rows {
            let label = format!("{}:", label_of(key));
            text.push_str(&format!("       {label:<width$}{value}\n"));
        }
        text
    }

    /// Each key twice, as Dokku's JSON has it: without the namespace prefix and with it.
    pub fn to_json(&self, prefix: &str) -> serde_json::Value {
        let mut object = serde_json::Map::new();
        for (key, value) in &self.rows {
            let stripped = key.strip_prefix(prefix).and_then(|k| k.strip_prefix('-')).unwrap_or(key);
            object.insert(stripped.to_string(), value.clone().into());
            object.insert(key.clone(), value.clone().into());
        }
        for (key, items) in &self.lists {
            object.insert(key.clone(), items.clone().into());
        }
        serde_json::Value::Object(object)
    }
}

/// `storage-attachment.1.entry-name` → `Storage attachment 1 entry name`.
fn label_of(key: &str) -> String {
    let spaced: String = key.chars().map(|c| if c == '-' || c == '.' { ' ' } else { c }).collect();
    let mut chars = spaced.chars();
    chars.next().map(|first| first.to_uppercase().chain(chars).collect()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_capturing_reporter_keeps_each_stream_and_quiet_leaves_out_steps() {
        let out = Reporter::capture();
        out.step("Deploying");
        out.detail("done");
        out.warn("careful");
        out.set_quiet(true);
        out.heading("hidden");
        out.item("/data");
        let captured = out.captured();
        assert_eq!(captured.stdout, "-----> Deploying\n       done\n/data\n");
        assert_eq!(captured.stderr, " !     careful\n");
    }

    #[test]
    fn report_aligns_like_dokku() {
        let mut report = Report::default();
        report.row("storage-deploy-mounts", "-v /tmp/m:/mount");
        report.row("storage-build-mounts", "");
        assert_eq!(
            report.render_text("demo storage information"),
            "=====> demo storage information\n       Storage build mounts:          \n       Storage deploy mounts:         -v /tmp/m:/mount\n"
        );
        report.row("storage-attachment.1.container-path", "/app/storage");
        let text = report.render_text("demo storage information");
        assert!(text.contains("       Storage attachment 1 container path: /app/storage\n"), "{text}");
        assert!(text.contains("       Storage build mounts:                \n"), "{text}");
    }

    #[test]
    fn printable_escapes_control_characters_once() {
        let raw = "step 2: \u{1b}[31mred\u{1b}[0m\r\nnext\tcol \u{202e}txt é";
        let safe = printable(raw);
        assert_eq!(safe, "step 2: \\u{1b}[31mred\\u{1b}[0m\\u{d}\\u{a}next\\u{9}col \\u{202e}txt é");
        assert!(!safe.chars().any(char::is_control));
        assert_eq!(printable(&safe), safe);
    }

    #[test]
    fn json_has_both_key_forms() {
        let mut report = Report::default();
        report.row("storage-build-mounts", "x");
        let json = report.to_json("storage");
        assert_eq!(json["build-mounts"], "x");
        assert_eq!(json["storage-build-mounts"], "x");
    }
}
