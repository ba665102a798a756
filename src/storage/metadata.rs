//! Labels and annotations of storage entries (Dokku's `storage:labels:*` and
//! `storage:annotations:*`): one key at a time, an empty value clears it, keys kept verbatim
//! (`backup.velero.io/backup-volumes` included).

use std::collections::BTreeMap;

use super::StorageError;

/// Which of an entry's two maps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Annotation,
    Label,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Annotation => "annotation",
            Kind::Label => "label",
        }
    }
}

/// A key: not empty, no `=`, whitespace or control characters (they would not survive
/// `key=value` forms or a Docker label).
pub fn check_key(kind: Kind, key: &str) -> Result<(), StorageError> {
    let bad = key.is_empty() || key.chars().any(|c| c == '=' || c.is_whitespace() || c.is_control());
    if bad { Err(StorageError::BadMetadataKey { kind: kind.as_str(), key: key.to_string() }) } else { Ok(()) }
}

/// Sets `key` to `value`, or removes it when the value is absent or empty; whether it was set.
pub fn set(
    map: &mut BTreeMap<String, String>,
    kind: Kind,
    key: Option<&str>,
    value: Option<&str>,
) -> Result<bool, StorageError> {
    let key = key.ok_or(StorageError::NoMetadataKey(kind.as_str()))?;
    check_key(kind, key)?;
    match value.filter(|v| !v.is_empty()) {
        Some(value) => {
            if value.chars().any(char::is_control) {
                return Err(StorageError::BadMetadataKey {
                    kind: kind.as_str(),
                    key: format!("{key}={value}"),
                });
            }
            map.insert(key.to_string(), value.to_string());
            Ok(true)
        }
        None => {
            map.remove(key);
            Ok(false)
        }
    }
}

/// Parses repeated `key=value` flags (`--label tier=cache`) into a map.
pub fn parse_pairs(kind: Kind, pairs: &[String]) -> Result<BTreeMap<String, String>, StorageError> {
    let mut map = BTreeMap::new();
    for pair in pairs {
        let (key, value) = pair.split_once('=').ok_or_else(|| StorageError::NotKeyValue(pair.clone()))?;
        if key.is_empty() {
            return Err(StorageError::NotKeyValue(pair.clone()));
        }
        set(&mut map, kind, Some(key), Some(value))?;
    }
    Ok(map)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn set_and_clear_one_key() {
        let mut map = BTreeMap::new();
        assert!(set(&mut map, Kind::Label, Some("app.kubernetes.io/part-of"), Some("billing")).unwrap());
        assert!(set(&mut map, Kind::Label, Some("tier"), Some("cache")).unwrap());
        assert!(!set(&mut map, Kind::Label, Some("tier"), Some("")).unwrap());
        assert_eq!(map.keys().collect::<Vec<_>>(), ["app.kubernetes.io/part-of"]);
        assert_eq!(
            set(&mut map, Kind::Annotation, None, None),
            Err(StorageError::NoMetadataKey("annotation"))
        );
        for bad in ["", "a=b", "a b", "a\nb"] {
            assert!(set(&mut map, Kind::Label, Some(bad), Some("x")).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn pairs() {
        let map = parse_pairs(Kind::Annotation, &["team=billing".into(), "x=".into()]).unwrap();
        assert_eq!(map.into_iter().collect::<Vec<_>>(), [("team".to_string(), "billing".to_string())]);
        assert_eq!(parse_pairs(Kind::Label, &["x".into()]), Err(StorageError::NotKeyValue("x".into())));
        assert_eq!(parse_pairs(Kind::Label, &["=v".into()]), Err(StorageError::NotKeyValue("=v".into())));
    }
}
