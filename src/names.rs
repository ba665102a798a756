//! Validated names: apps and storage entries are DNS labels, so they are safe in paths,
//! container names, volume names and labels without further escaping.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Longest name accepted: a DNS label.
const MAX_LABEL: usize = 63;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NameError {
    #[error("{kind} name is required")]
    Empty { kind: &'static str },
    #[error("{kind} name \"{name}\" is too long (max {MAX_LABEL} characters)")]
    TooLong { kind: &'static str, name: String },
    #[error(
        "{kind} name \"{name}\" must be a DNS label (lowercase letters, digits, and dashes; cannot start or end with a dash)"
    )]
    NotDnsLabel { kind: &'static str, name: String },
}

fn check_dns_label(kind: &'static str, name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty { kind });
    }
    if name.len() > MAX_LABEL {
        return Err(NameError::TooLong { kind, name: name.to_string() });
    }
    let valid_chars = name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !valid_chars || name.starts_with('-') || name.ends_with('-') {
        return Err(NameError::NotDnsLabel { kind, name: name.to_string() });
    }
    Ok(())
}

macro_rules! dns_label_name {
    ($(#[$doc:meta])* $type:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $type(String);

        impl $type {
            pub fn new(name: &str) -> Result<Self, NameError> {
                check_dns_label($kind, name)?;
                Ok(Self(name.to_string()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $type {
            type Error = NameError;
            fn try_from(name: String) -> Result<Self, NameError> {
                Self::new(&name)
            }
        }

        impl From<$type> for String {
            fn from(name: $type) -> String {
                name.0
            }
        }

        impl std::str::FromStr for $type {
            type Err = NameError;
            fn from_str(name: &str) -> Result<Self, NameError> {
                Self::new(name)
            }
        }

        impl fmt::Display for $type {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

dns_label_name!(
    /// The name of an app: its repo, state directory, containers and volumes derive from it.
    AppName,
    "app"
);
dns_label_name!(
    /// The name of a storage entry (a named, app-independent piece of storage).
    EntryName,
    "storage entry"
);

/// Docker's own rule for volume names (`[a-zA-Z0-9][a-zA-Z0-9_.-]+`).
pub fn is_docker_volume_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    let Some(first) = bytes.next() else { return false };
    name.len() >= 2
        && first.is_ascii_alphanumeric()
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_labels() {
        assert!(AppName::new("node-js-app").is_ok());
        assert!(AppName::new("a").is_ok());
        assert_eq!(AppName::new(""), Err(NameError::Empty { kind: "app" }));
        for bad in ["-a", "a-", "A", "a_b", "a.b", "a/b", "..", "a b", "é"] {
            assert!(matches!(AppName::new(bad), Err(NameError::NotDnsLabel { .. })), "{bad}");
        }
        assert!(matches!(EntryName::new(&"a".repeat(64)), Err(NameError::TooLong { .. })));
    }

    #[test]
    fn volume_names() {
        assert!(is_docker_volume_name("pgdata"));
        assert!(is_docker_volume_name("my_vol.1-x"));
        for bad in ["", "a", "-x", ".x", "a/b", "a:b", "a b"] {
            assert!(!is_docker_volume_name(bad), "{bad}");
        }
    }
}
