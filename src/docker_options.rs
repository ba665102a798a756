//! docker-options: extra `docker run`/`docker build` flags an admin sets per app, phase and
//! process type. Input is split into shell words without expansion and grouped at each flag,
//! as Dokku does, so `--memory 512m --cpus 1` is stored as two options.

use std::fmt;

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
}

/// Where a set of options applies: `<process type>.<phase>`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
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
            None => Ok(OptionsKey { process_type: DEFAULT_PROCESS_TYPE.to_string(), phase }),
        }
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

/// An option back as the words to hand to the engine.
pub fn option_words(option: &str) -> Result<Vec<String>, OptionsError> {
    shell_words(option)
}

/// The host:container spec of a `-v`/`--volume` option, for showing it in storage reports.
pub fn volume_flag(option: &str) -> Option<String> {
    let words = shell_words(option).ok()?;
    match words.as_slice() {
        [flag, spec] if flag == "-v" || flag == "--volume" => Some(format!("-v {spec}")),
        [flag, spec] if flag == "--mount" => Some(format!("--mount {spec}")),
        [flag] => flag
            .strip_prefix("--volume=")
            .map(|spec| format!("-v {spec}"))
            .or_else(|| flag.strip_prefix("--mount=").map(|spec| format!("--mount {spec}"))),
        _ => None,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
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
        assert_eq!(
            volume_flag("--mount type=bind,src=/h,dst=/c").as_deref(),
            Some("--mount type=bind,src=/h,dst=/c")
        );
        assert_eq!(volume_flag("--memory 1g"), None);
    }

    #[test]
    fn process_rules() {
        assert!(OptionsKey::new(Some("web"), Phase::Build).is_err());
        assert!(OptionsKey::new(Some("_default_"), Phase::Deploy).is_err());
        assert_eq!(OptionsKey::new(Some("web"), Phase::Deploy).unwrap().to_string(), "web.deploy");
    }
}
