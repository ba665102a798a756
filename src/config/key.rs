//! The rule for config keys, shared by `config:*` and app.toml's `[env]` and
//! `[build].env_keys`: `[A-Za-z_][A-Za-z0-9_]*`, and not a name berth sets itself.

use crate::output::printable;

/// Keys with this prefix are berth's own (`BERTH_APP`, `BERTH_RELEASE`).
pub const RESERVED_PREFIX: &str = "BERTH_";
/// Set by berth in web containers from app.toml's `[web] port`.
pub const PORT: &str = "PORT";
/// Longest key accepted.
pub const MAX_KEY: usize = 256;

/// Why a key was refused. The messages name the key (never a value).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("Invalid key name: '{}': keys are letters, digits and _, not starting with a digit", printable(.0))]
    Form(String),
    #[error("Invalid key name: longer than {MAX_KEY} characters")]
    TooLong,
    #[error("Invalid key name: '{0}': the {RESERVED_PREFIX} prefix is reserved for the variables berth sets")]
    Reserved(String),
    #[error("Invalid key name: '{PORT}': berth sets PORT in web containers from app.toml's [web] port")]
    Port,
}

/// Checks a config key.
pub fn check(key: &str) -> Result<(), KeyError> {
    if key.len() > MAX_KEY {
        return Err(KeyError::TooLong);
    }
    let mut chars = key.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if !first_ok || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(KeyError::Form(key.to_string()));
    }
    if key.starts_with(RESERVED_PREFIX) {
        return Err(KeyError::Reserved(key.to_string()));
    }
    if key == PORT {
        return Err(KeyError::Port);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_the_shell_rule() {
        for good in ["A", "_", "DATABASE_URL", "a1", "_9", "secret_key_base", "BERTH", "BERTHX"] {
            assert_eq!(check(good), Ok(()), "{good}");
        }
        for bad in ["", "1A", "A-B", "A B", "A=B", "É", "A.B", "$A", "A\n", " A", "-A"] {
            assert!(matches!(check(bad), Err(KeyError::Form(_))), "{bad:?}");
        }
    }

    #[test]
    fn berth_names_are_reserved() {
        assert_eq!(check("BERTH_APP"), Err(KeyError::Reserved("BERTH_APP".into())));
        assert_eq!(check("BERTH_"), Err(KeyError::Reserved("BERTH_".into())));
        assert_eq!(check("PORT"), Err(KeyError::Port));
        assert_eq!(check("port"), Ok(()));
        assert!(matches!(check(&"K".repeat(MAX_KEY + 1)), Err(KeyError::TooLong)));
    }

    #[test]
    fn messages_are_one_line_even_for_hostile_keys() {
        let message = check("A\nB\u{1b}[31m").unwrap_err().to_string();
        assert!(!message.contains('\n') && !message.contains('\u{1b}'), "{message}");
        insta::assert_snapshot!(check("9LIVES").unwrap_err(), @"Invalid key name: '9LIVES': keys are letters, digits and _, not starting with a digit");
    }
}
