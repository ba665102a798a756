//! Dokku's output conventions: `----->` and `=====>` headings, 7-space detail lines, ` !     `
//! warnings on stderr, and aligned `Key: value` reports with their JSON twin.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};

/// Dokku's `--quiet`: step and heading lines are left out, data lines stay.
static QUIET: AtomicBool = AtomicBool::new(false);

pub fn set_quiet(quiet: bool) {
    QUIET.store(quiet, Ordering::Relaxed);
}

pub fn is_quiet() -> bool {
    QUIET.load(Ordering::Relaxed)
}

/// A data line of a list: indented as a detail, or bare under `--quiet` (Dokku's
/// `--quiet storage:list` prints just the mounts).
pub fn item(message: impl AsRef<str>) {
    if is_quiet() {
        println!("{}", message.as_ref());
    } else {
        detail(message);
    }
}

/// A step (`-----> x`) on stdout.
pub fn step(message: impl AsRef<str>) {
    if !QUIET.load(Ordering::Relaxed) {
        println!("-----> {}", message.as_ref());
    }
}

/// A section heading (`=====> x`) on stdout.
pub fn heading(message: impl AsRef<str>) {
    if !QUIET.load(Ordering::Relaxed) {
        println!("=====> {}", message.as_ref());
    }
}

/// A detail line under a step, indented 7 spaces, on stdout.
pub fn detail(message: impl AsRef<str>) {
    println!("       {}", message.as_ref());
}

/// Text already laid out (a plan, a report), on stdout as it is.
pub fn text(text: impl AsRef<str>) {
    print!("{}", text.as_ref());
}

/// Text already laid out, on stderr as it is (one line).
pub fn error_text(text: impl AsRef<str>) {
    eprintln!("{}", text.as_ref());
}

/// A detail line on stderr, for commands whose stdout belongs to someone else (`berth run`).
pub fn note(message: impl AsRef<str>) {
    eprintln!("       {}", message.as_ref());
}

/// Relays a container's output chunk: its stderr to ours, its stdout to ours, flushed so a
/// slow command shows as it goes.
pub fn relay(is_err: bool, text: &str) {
    use std::io::Write;
    if is_err {
        eprint!("{text}");
    } else {
        print!("{text}");
        std::io::stdout().flush().ok();
    }
}

/// A warning (` !     x`) on stderr.
pub fn warn(message: impl AsRef<str>) {
    eprintln!(" !     {}", message.as_ref());
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
