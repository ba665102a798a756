//! Text-level helpers: checks on the raw bytes before parsing, byte offsets to line:column,
//! quoting user text for messages, and "did you mean" suggestions.

use super::{Diagnostic, MAX_BYTES, MAX_DEPTH, Pos};

const BOM: &str = "\u{feff}";

/// Turns the raw bytes into text the TOML parser may see: size cap, BOM, UTF-8, nesting depth.
pub(super) fn prepare(bytes: &[u8]) -> Result<&str, Diagnostic> {
    if bytes.len() > MAX_BYTES {
        return Err(super::too_large(bytes.len()));
    }
    let text = match std::str::from_utf8(bytes) {
        Ok(text) => text,
        Err(error) => {
            let valid = bytes.get(..error.valid_up_to()).unwrap_or_default();
            // The prefix is valid UTF-8 by construction; fall back to an empty prefix anyway.
            let prefix = std::str::from_utf8(valid).unwrap_or_default();
            let prefix = prefix.strip_prefix(BOM).unwrap_or(prefix);
            let byte = bytes.get(error.valid_up_to()).copied().unwrap_or_default();
            return Err(Diagnostic::new(
                Locator::new(prefix).pos(prefix.len()),
                format!("{} is not valid UTF-8 (byte 0x{byte:02X})", super::FILE_NAME),
                Some("save the file as UTF-8".to_string()),
            ));
        }
    };
    let text = text.strip_prefix(BOM).unwrap_or(text);
    if let Some(offset) = too_deep(text, MAX_DEPTH) {
        return Err(Diagnostic::new(
            Locator::new(text).pos(offset),
            format!(
                "{} nests tables, arrays and dotted keys more than {MAX_DEPTH} levels deep",
                super::FILE_NAME
            ),
            Some("app.toml never needs more than a few levels: flatten this value".to_string()),
        ));
    }
    Ok(text)
}

/// Converts byte offsets to line:column quickly, even on long lines: it keeps the position of
/// every few hundred bytes and counts characters from the nearest one.
pub(super) struct Locator<'s> {
    text: &'s str,
    /// (byte offset, line, column) at char boundaries, ascending.
    checkpoints: Vec<(usize, usize, usize)>,
}

const CHECKPOINT_EVERY: usize = 256;

impl<'s> Locator<'s> {
    pub(super) fn new(text: &'s str) -> Self {
        let mut checkpoints = vec![(0, 1, 1)];
        let (mut line, mut column, mut next) = (1, 1, CHECKPOINT_EVERY);
        for (offset, c) in text.char_indices() {
            if offset >= next {
                checkpoints.push((offset, line, column));
                next = offset + CHECKPOINT_EVERY;
            }
            if c == '\n' {
                line += 1;
                column = 1;
            } else {
                column += 1;
            }
        }
        Locator { text, checkpoints }
    }

    pub(super) fn pos(&self, offset: usize) -> Pos {
        let offset = offset.min(self.text.len());
        let index = self.checkpoints.partition_point(|&(at, _, _)| at <= offset).saturating_sub(1);
        let (start, mut line, mut column) = self.checkpoints.get(index).copied().unwrap_or((0, 1, 1));
        for (at, c) in self.text.get(start..).unwrap_or_default().char_indices() {
            if start + at >= offset {
                break;
            }
            if c == '\n' {
                line += 1;
                column = 1;
            } else {
                column += 1;
            }
        }
        Pos { line, column }
    }
}

/// Where the nesting first goes deeper than `limit`, counting arrays, inline tables, and the
/// segments of dotted words (keys and table headers). A cheap scan that understands strings and
/// comments. It counts every dotted word as if it were a key, wherever it is, so that no
/// spelling the parser might read as a key (even while recovering from an error) escapes it;
/// valid values add at most one level (the dot of a float).
pub(super) fn too_deep(text: &str, limit: usize) -> Option<usize> {
    let bytes = text.as_bytes();
    // Weight of each open array or inline table: itself plus the key it is the value of.
    let mut frames: Vec<usize> = Vec::new();
    let mut frames_depth = 0usize;
    // Depth of the current table header: [a.b] is 2, [[a.b]] is 3.
    let mut base = 0usize;
    // Segments of the dotted word being read; 0 between words.
    let mut run = 0usize;
    // Segments of the key whose value comes next.
    let mut pending = 0usize;
    // While reading a table header: whether it is an array of tables.
    let mut header: Option<bool> = None;
    let mut line_start = true;
    let mut i = 0usize;
    while let Some(&b) = bytes.get(i) {
        let at = i;
        i += 1;
        match b {
            b'#' => {
                while bytes.get(i).is_some_and(|&c| c != b'\n') {
                    i += 1;
                }
            }
            b'"' | b'\'' => {
                run = run.max(1);
                line_start = false;
                i = skip_string(bytes, at);
            }
            b'\n' if frames.is_empty() => {
                run = 0;
                pending = 0;
                header = None;
                line_start = true;
            }
            b'[' if frames.is_empty() && (line_start || (header == Some(false) && run == 0)) => {
                header = Some(header.is_some());
                base = 0;
                line_start = false;
            }
            b']' if header.is_some() => {
                base = run.max(1) + usize::from(header == Some(true));
                header = None;
                run = 0;
            }
            b'[' | b'{' => {
                let weight = 1 + pending;
                frames.push(weight);
                frames_depth += weight;
                pending = 0;
                run = 0;
                line_start = false;
            }
            b']' | b'}' => {
                frames_depth = frames_depth.saturating_sub(frames.pop().unwrap_or(0));
                pending = 0;
                run = 0;
            }
            b'=' => {
                pending = run;
                run = 0;
            }
            b',' => {
                pending = 0;
                run = 0;
            }
            b'.' => run = run.max(1) + 1,
            b' ' | b'\t' | b'\r' | b'\n' => {}
            _ => {
                run = run.max(1);
                line_start = false;
            }
        }
        if base + frames_depth + run > limit {
            return Some(at);
        }
    }
    None
}

/// The index just past the string starting at `start` (basic, literal, or multi-line).
fn skip_string(bytes: &[u8], start: usize) -> usize {
    let quote = bytes.get(start).copied().unwrap_or(b'"');
    let triple = bytes.get(start..start + 3).is_some_and(|s| s.iter().all(|&b| b == quote));
    let escapes = quote == b'"';
    let mut i = start + if triple { 3 } else { 1 };
    while let Some(&b) = bytes.get(i) {
        if escapes && b == b'\\' {
            i += 2;
            continue;
        }
        if !triple && b == b'\n' {
            // Unterminated: let the parser report it; resume at the line end.
            return i;
        }
        if b == quote {
            if !triple {
                return i + 1;
            }
            if bytes.get(i..i + 3).is_some_and(|s| s.iter().all(|&c| c == quote)) {
                // Up to two more quotes belong to the string's content.
                let mut end = i + 3;
                while end < i + 5 && bytes.get(end) == Some(&quote) {
                    end += 1;
                }
                return end;
            }
        }
        i += 1;
    }
    i
}

/// User text for a message: in double quotes, anything but printable ASCII escaped, long
/// values shortened, so a message can never carry terminal escapes or look-alike characters.
pub(super) fn quoted(value: &str) -> String {
    format!("\"{}\"", escaped(value))
}

/// A key for a message, in backticks, escaped like [`quoted`].
pub(super) fn ticked(key: &str) -> String {
    format!("`{}`", escaped(key))
}

/// User text escaped like [`quoted`], without the quotes.
pub(super) fn escaped(value: &str) -> String {
    const MAX_CHARS: usize = 80;
    let mut out = String::new();
    for (count, c) in value.chars().enumerate() {
        if count == MAX_CHARS {
            out.push_str("...");
            break;
        }
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '`' => out.push_str("\\`"),
            ' '..='~' => out.push(c),
            _ => out.extend(c.escape_default()),
        }
    }
    out
}

/// A character for a message: `U+2215` and, when printable ASCII, the character itself.
pub(super) fn describe_char(c: char) -> String {
    if c.is_ascii_graphic() { format!("`{c}`") } else { format!("U+{:04X}", u32::from(c)) }
}

/// The known word closest to `word` (aliases first), if close enough to be a likely typo.
pub(super) fn suggest<'k>(word: &str, known: &[&'k str], aliases: &[(&str, &'k str)]) -> Option<&'k str> {
    if word.len() > 64 {
        return None;
    }
    let folded = word.to_ascii_lowercase().replace('-', "_");
    if let Some((_, to)) = aliases.iter().find(|(from, _)| *from == folded) {
        return Some(to);
    }
    if let Some(k) = known.iter().find(|k| **k == folded) {
        return Some(k);
    }
    let allowed = if folded.chars().count() <= 3 { 1 } else { 2 };
    known
        .iter()
        .map(|k| (distance(&folded, k), *k))
        .filter(|(d, _)| *d <= allowed)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// Optimal string alignment distance: edits, with a swap of two neighbours counting as one.
fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let width = b.len() + 1;
    let mut d = vec![0usize; (a.len() + 1) * width];
    let at = |i: usize, j: usize| i * width + j;
    for i in 0..=a.len() {
        d[at(i, 0)] = i;
    }
    for j in 0..=b.len() {
        d[at(0, j)] = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[at(i - 1, j)] + 1).min(d[at(i, j - 1)] + 1).min(d[at(i - 1, j - 1)] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[at(i - 2, j - 2)] + 1);
            }
            d[at(i, j)] = best;
        }
    }
    d[at(a.len(), b.len())]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locator_counts_characters_and_lines() {
        let text = "ab\né\tx\n\nlast";
        let loc = Locator::new(text);
        assert_eq!(loc.pos(0), Pos { line: 1, column: 1 });
        assert_eq!(loc.pos(2), Pos { line: 1, column: 3 });
        assert_eq!(loc.pos(3), Pos { line: 2, column: 1 });
        // 'é' is two bytes, one column.
        assert_eq!(loc.pos(5), Pos { line: 2, column: 2 });
        assert_eq!(loc.pos(6), Pos { line: 2, column: 3 });
        assert_eq!(loc.pos(9), Pos { line: 4, column: 1 });
        assert_eq!(loc.pos(text.len() + 100), Pos { line: 4, column: 5 });
    }

    #[test]
    fn locator_agrees_with_a_naive_count_on_long_text() {
        let text: String = (0..5000)
            .map(|i| {
                if i % 97 == 0 {
                    '\n'
                } else if i % 7 == 0 {
                    'ü'
                } else {
                    'a'
                }
            })
            .collect();
        let loc = Locator::new(&text);
        let (mut line, mut column) = (1, 1);
        for (offset, c) in text.char_indices() {
            assert_eq!(loc.pos(offset), Pos { line, column }, "offset {offset}");
            if c == '\n' {
                line += 1;
                column = 1;
            } else {
                column += 1;
            }
        }
    }

    #[test]
    fn depth_scan() {
        let ok = [
            "[[storage.mounts]]\nsource = \"a\"\ndriver_opts = { type = \"nfs\", o = \"addr=1,rw\" }\n",
            "a = \"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\"\n",
            "a = '''{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{'''\n",
            "# [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\n",
            "x = 1.5\ny = [1.5, 2.5, 3.5, 4.5, 5.5, 6.5, 7.5, 8.5, 9.5, 1.1, 1.2, 1.3, 1.4, 1.5, 1.6, 1.7, 1.8]\n",
            "s = \"\"\"a\\\"\"\"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\"\"\"\"\"\n",
        ];
        for text in ok {
            assert_eq!(too_deep(text, 32), None, "{text}");
        }
        let deep = [
            format!("a = {}1{}", "[".repeat(40), "]".repeat(40)),
            format!("a = {}", "{b = ".repeat(40)),
            format!("{} = 1", vec!["a"; 40].join(".")),
            format!("[{}]", vec!["a"; 40].join(".")),
            format!("a = {{ {} = 1 }}", vec!["b"; 35].join(".")),
            format!("[a.b.c]\nd = {}", "[".repeat(30)),
            format!("a = {{ b = 1 {} = 2 }}", vec!["k"; 40].join(".")),
            format!("a = 1 {} = 2", vec!["k"; 40].join(".")),
        ];
        for text in &deep {
            assert!(too_deep(text, 32).is_some(), "{text}");
        }
    }

    #[test]
    fn quoting_escapes_everything_odd() {
        assert_eq!(quoted("a\"b"), "\"a\\\"b\"");
        assert_eq!(quoted("\u{1b}[31m"), "\"\\u{1b}[31m\"");
        assert_eq!(quoted("\u{2215}"), "\"\\u{2215}\"");
        assert!(quoted(&"x".repeat(500)).ends_with("...\""));
    }

    #[test]
    fn suggestions() {
        let known = ["source", "target", "phases", "read_only", "processes"];
        let aliases = [("readonly", "read_only"), ("ro", "read_only")];
        assert_eq!(suggest("tagret", &known, &aliases), Some("target"));
        assert_eq!(suggest("phase", &known, &aliases), Some("phases"));
        assert_eq!(suggest("read-only", &known, &aliases), Some("read_only"));
        assert_eq!(suggest("RO", &known, &aliases), Some("read_only"));
        assert_eq!(suggest("Source", &known, &aliases), Some("source"));
        assert_eq!(suggest("banana", &known, &aliases), None);
        assert_eq!(suggest(&"x".repeat(100), &known, &aliases), None);
    }
}
