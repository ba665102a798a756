//! Domain names an app answers at: DNS names, lower-cased, with an optional `*.` wildcard as
//! the first label. Only the admin assigns them (`domains:*`); nothing in `app.toml` can.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Longest DNS name (RFC 1035, without the root's trailing dot).
const MAX_NAME: usize = 253;
/// Longest DNS label.
const MAX_LABEL: usize = 63;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DomainError {
    #[error("\"{domain}\" is not a valid domain: {reason}")]
    Invalid { domain: String, reason: &'static str },
    #[error(
        "{domain} is already a domain of app {owner}; remove it there first (berth domains:remove {owner} {domain})"
    )]
    Taken { domain: Domain, owner: String },
    #[error("{domain} is where app {owner} answers under the global domain {global}; pick another domain")]
    TakenUnderGlobal { domain: Domain, owner: String, global: Domain },
    #[error("{domain} is given twice")]
    Repeated { domain: Domain },
    #[error("app {app} already has the domain {domain}")]
    AlreadyOfApp { app: String, domain: Domain },
    #[error("app {app} has no domain {domain}; its domains: {current}")]
    NotOfApp { app: String, domain: Domain, current: String },
    #[error("a global domain cannot be a wildcard (\"{0}\"): each app answers at <app>.<global domain>")]
    WildcardGlobal(Domain),
}

/// A validated domain name, lower-cased: `example.com`, `api.example.com`, `*.example.com`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Domain(String);

impl Domain {
    pub fn new(text: &str) -> Result<Domain, DomainError> {
        let name = text.to_ascii_lowercase();
        let invalid = |reason| DomainError::Invalid { domain: text.to_string(), reason };
        if name.is_empty() {
            return Err(invalid("it is empty"));
        }
        if name.len() > MAX_NAME {
            return Err(invalid("it is longer than 253 characters"));
        }
        let labels = name.strip_prefix("*.").unwrap_or(&name);
        for label in labels.split('.') {
            check_label(label).map_err(invalid)?;
        }
        Ok(Domain(name))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `*.example.com`: answers for every name one label below `example.com`.
    pub fn is_wildcard(&self) -> bool {
        self.0.starts_with("*.")
    }

    /// `<app>.<self>`: where an app answers under a global domain.
    pub fn below(&self, label: &str) -> Result<Domain, DomainError> {
        Domain::new(&format!("{label}.{}", self.0))
    }
}

fn check_label(label: &str) -> Result<(), &'static str> {
    if label.is_empty() {
        return Err("it has an empty label (\"..\", or a leading or trailing \".\")");
    }
    if label.len() > MAX_LABEL {
        return Err("a label is longer than 63 characters");
    }
    if label == "*" {
        return Err("\"*\" is only allowed as the first label (\"*.example.com\")");
    }
    if !label.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') {
        return Err("labels take letters, digits and \"-\" only");
    }
    if label.starts_with('-') || label.ends_with('-') {
        return Err("a label cannot start or end with \"-\"");
    }
    Ok(())
}

impl TryFrom<String> for Domain {
    type Error = DomainError;
    fn try_from(text: String) -> Result<Domain, DomainError> {
        Domain::new(&text)
    }
}

impl From<Domain> for String {
    fn from(domain: Domain) -> String {
        domain.0
    }
}

impl fmt::Display for Domain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Each domain once, or the first one given twice.
pub fn parse_all(texts: &[String]) -> Result<Vec<Domain>, DomainError> {
    let mut domains: Vec<Domain> = Vec::new();
    for text in texts {
        let domain = Domain::new(text)?;
        if domains.contains(&domain) {
            return Err(DomainError::Repeated { domain });
        }
        domains.push(domain);
    }
    Ok(domains)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(text: &str) -> &'static str {
        match Domain::new(text) {
            Err(DomainError::Invalid { reason, .. }) => reason,
            other => panic!("{text}: expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn valid_names_are_lower_cased() {
        assert_eq!(Domain::new("Example.COM").unwrap().as_str(), "example.com");
        assert_eq!(Domain::new("a-1.b2.example").unwrap().as_str(), "a-1.b2.example");
        assert_eq!(Domain::new("localhost").unwrap().as_str(), "localhost");
        let wildcard = Domain::new("*.Example.com").unwrap();
        assert!(wildcard.is_wildcard());
        assert_eq!(wildcard.as_str(), "*.example.com");
        let longest_label = format!("{}.com", "a".repeat(63));
        assert!(Domain::new(&longest_label).is_ok());
    }

    #[test]
    fn invalid_names_say_why() {
        assert_eq!(reason(""), "it is empty");
        assert_eq!(reason("a..b"), "it has an empty label (\"..\", or a leading or trailing \".\")");
        assert_eq!(reason(".a"), "it has an empty label (\"..\", or a leading or trailing \".\")");
        assert_eq!(reason("a.com."), "it has an empty label (\"..\", or a leading or trailing \".\")");
        assert_eq!(reason("-a.com"), "a label cannot start or end with \"-\"");
        assert_eq!(reason("a-.com"), "a label cannot start or end with \"-\"");
        assert_eq!(reason("a_b.com"), "labels take letters, digits and \"-\" only");
        assert_eq!(reason("é.com"), "labels take letters, digits and \"-\" only");
        assert_eq!(reason("a b.com"), "labels take letters, digits and \"-\" only");
        assert_eq!(reason("a.*.com"), "\"*\" is only allowed as the first label (\"*.example.com\")");
        assert_eq!(reason("*"), "\"*\" is only allowed as the first label (\"*.example.com\")");
        assert_eq!(reason("*.*.com"), "\"*\" is only allowed as the first label (\"*.example.com\")");
        assert_eq!(reason("*a.com"), "labels take letters, digits and \"-\" only");
        assert_eq!(reason(&format!("{}.com", "a".repeat(64))), "a label is longer than 63 characters");
        let long = vec!["a".repeat(63); 4].join(".");
        assert_eq!(long.len(), 255);
        assert_eq!(reason(&long), "it is longer than 253 characters");
    }

    #[test]
    fn a_domain_given_twice_is_refused_whatever_its_case() {
        let texts = ["a.com".to_string(), "B.com".to_string(), "A.COM".to_string()];
        assert_eq!(parse_all(&texts), Err(DomainError::Repeated { domain: Domain::new("a.com").unwrap() }));
        assert_eq!(parse_all(&texts[..2]).unwrap().len(), 2);
    }

    #[test]
    fn an_app_answers_below_a_global_domain() {
        let global = Domain::new("example.com").unwrap();
        assert_eq!(global.below("demo").unwrap().as_str(), "demo.example.com");
    }
}
