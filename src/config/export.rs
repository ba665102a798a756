//! `config:export` formats. Each one gives back every value exactly: `exports` and `shell` for
//! `eval` in a POSIX shell (single quotes, a `'` written `'\''`), `envfile` in the dotenv form
//! Dokku writes (double quotes; `\`, `"`, `$`, `` ` ``, `!` escaped, newlines as `\n`, carriage
//! returns as `\r`), `json` as one object.

use std::collections::BTreeMap;

/// How `config:export` writes the variables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ExportFormat {
    /// `export KEY='value'`, one a line (Dokku's default)
    #[default]
    Exports,
    /// `KEY='value' KEY2='value'` on one line, for `env` or a command's prefix
    Shell,
    /// `KEY="value"`, one a line, dotenv style
    Envfile,
    /// `{"KEY":"value"}`
    Json,
}

/// The variables in `format`, ending with a newline.
pub fn render(vars: &BTreeMap<String, String>, format: ExportFormat) -> String {
    let pairs = || vars.iter().map(|(key, value)| format!("{key}={}", shell_quote(value)));
    let text = match format {
        ExportFormat::Exports => pairs().map(|pair| format!("export {pair}")).collect::<Vec<_>>().join("\n"),
        ExportFormat::Shell => pairs().collect::<Vec<_>>().join(" "),
        ExportFormat::Envfile => vars
            .iter()
            .map(|(key, value)| format!("{key}=\"{}\"", envfile_escape(value)))
            .collect::<Vec<_>>()
            .join("\n"),
        // A map of strings always serialises.
        ExportFormat::Json => serde_json::to_string(vars).unwrap_or_default(),
    };
    format!("{text}\n")
}

/// A POSIX shell word that is exactly `value`: single quotes, each `'` as `'\''`.
pub fn shell_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', "'\\''"))
}

fn envfile_escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\\' | '"' | '$' | '`' | '!' => {
                out.push('\\');
                out.push(c);
            }
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use super::*;

    /// Values that break naive quoting.
    const HOSTILE: &[&str] = &[
        "",
        "plain",
        "two words",
        "it's",
        "'",
        "''",
        "\"quoted\"",
        "a=b=c",
        "line one\nline two\n",
        "\r\n",
        "$HOME `id` $(id) ${X:-y} \\$ \\",
        "!event",
        "ünïcødé ✓ 🚢",
        "tab\there",
        "-n",
        "--",
        "*",
        "~",
        "#comment",
        "a;b|c&d>e<f",
        "\\'\\\"",
        "trailing backslash\\",
        "\u{1b}[31mred\u{7f}",
    ];

    fn hostile() -> BTreeMap<String, String> {
        HOSTILE.iter().enumerate().map(|(i, v)| (format!("K{i}"), v.to_string())).collect()
    }

    /// Runs `script` in `sh`, then prints each key's value NUL-terminated.
    fn values_in_sh(script: &str, keys: &[String]) -> Vec<String> {
        let print: String = keys.iter().map(|k| format!("printf '%s\\0' \"${k}\"\n")).collect();
        let output = Command::new("sh").arg("-c").arg(format!("{script}\n{print}")).output().unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        let text = String::from_utf8(output.stdout).unwrap();
        text.split_terminator('\0').map(String::from).collect()
    }

    #[test]
    fn exports_round_trip_through_a_real_shell() {
        let vars = hostile();
        let keys: Vec<String> = vars.keys().cloned().collect();
        let got = values_in_sh(&render(&vars, ExportFormat::Exports), &keys);
        assert_eq!(got, vars.values().cloned().collect::<Vec<_>>());
    }

    #[test]
    fn shell_format_round_trips_through_env() {
        let vars = hostile();
        let keys: Vec<String> = vars.keys().cloned().collect();
        let line = render(&vars, ExportFormat::Shell);
        assert_eq!(
            line.matches('\n').count(),
            vars.values().map(|v| v.matches('\n').count()).sum::<usize>() + 1
        );
        // One line of assignments: `eval` sets every variable.
        let got = values_in_sh(&format!("set -a\neval {}", shell_quote(line.trim_end())), &keys);
        assert_eq!(got, vars.values().cloned().collect::<Vec<_>>());
    }

    /// Decodes the envfile form as Dokku's dotenv parser (godotenv) reads a double-quoted value.
    fn decode_envfile(text: &str) -> BTreeMap<String, String> {
        let mut vars = BTreeMap::new();
        for line in text.lines() {
            let (key, quoted) = line.split_once('=').unwrap();
            let inner = quoted.strip_prefix('"').and_then(|q| q.strip_suffix('"')).unwrap();
            let mut value = String::new();
            let mut chars = inner.chars();
            while let Some(c) = chars.next() {
                if c != '\\' {
                    value.push(c);
                    continue;
                }
                match chars.next().unwrap() {
                    'n' => value.push('\n'),
                    'r' => value.push('\r'),
                    other => value.push(other),
                }
            }
            vars.insert(key.to_string(), value);
        }
        vars
    }

    #[test]
    fn envfile_and_json_round_trip() {
        let vars = hostile();
        let envfile = render(&vars, ExportFormat::Envfile);
        assert_eq!(envfile.lines().count(), vars.len(), "one line per variable:\n{envfile}");
        assert_eq!(decode_envfile(&envfile), vars);
        let json: BTreeMap<String, String> =
            serde_json::from_str(&render(&vars, ExportFormat::Json)).unwrap();
        assert_eq!(json, vars);
    }

    #[test]
    fn formats_have_dokkus_shapes() {
        let vars: BTreeMap<String, String> = [("APP_ENV", "prod"), ("MSG", "it's \"$x\"\n")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(
            render(&vars, ExportFormat::Exports),
            "export APP_ENV='prod'\nexport MSG='it'\\''s \"$x\"\n'\n"
        );
        assert_eq!(render(&vars, ExportFormat::Shell), "APP_ENV='prod' MSG='it'\\''s \"$x\"\n'\n");
        assert_eq!(render(&vars, ExportFormat::Envfile), "APP_ENV=\"prod\"\nMSG=\"it's \\\"\\$x\\\"\\n\"\n");
        assert_eq!(
            render(&vars, ExportFormat::Json),
            "{\"APP_ENV\":\"prod\",\"MSG\":\"it's \\\"$x\\\"\\n\"}\n"
        );
        assert_eq!(render(&BTreeMap::new(), ExportFormat::Json), "{}\n");
    }
}
