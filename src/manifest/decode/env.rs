//! `[env]`, `[build].env_keys` and `[scale]`: the app's environment defaults, the keys its
//! Docker build gets, and its instances per process type.

use std::collections::BTreeMap;

use toml::de::{DeTable, DeValue};

use super::{Decoder, Key, Value, integer};
use crate::config::key;
use crate::manifest::Scale;
use crate::manifest::text::{quoted, ticked};
use crate::scale::MAX_SCALE;

const KEY_HINT: &str = "keys look like DATABASE_URL: letters, digits and _, not starting with a digit; \
     BERTH_* and PORT are set by berth";

impl Decoder<'_> {
    /// Whether a config key is valid; a diagnostic at `at` otherwise.
    fn config_key(&mut self, name: &str, at: usize) -> bool {
        match key::check(name) {
            Ok(()) => true,
            Err(error) => {
                self.error(at, error.to_string(), KEY_HINT);
                false
            }
        }
    }

    pub(super) fn env(&mut self, table: &DeTable) -> BTreeMap<String, String> {
        let mut env = BTreeMap::new();
        for (key, value) in table.iter() {
            let name = key.get_ref().as_ref();
            let key_ok = self.config_key(name, key.span().start);
            let what = format!("[env] {}", ticked(name));
            let example = format!("{name} = \"value\" (quote numbers and booleans too)");
            let Some(text) = self.string(&what, value, &example) else { continue };
            if text.value.contains('\0') {
                self.error(
                    value.span().start,
                    format!("{what} holds a NUL character"),
                    "no process environment can hold one: remove it",
                );
            } else if key_ok {
                env.insert(name.to_string(), text.value.to_string());
            }
        }
        env
    }

    pub(super) fn env_keys(&mut self, value: &Value) -> Vec<String> {
        let example = "env_keys = [\"NPM_TOKEN\", \"ASSET_HOST\"]";
        let mut keys: Vec<String> = Vec::new();
        for item in self.strings("`build.env_keys`", value, example).unwrap_or_default() {
            if self.config_key(item.value, item.start) && !keys.iter().any(|k| k == item.value) {
                keys.push(item.value.to_string());
            }
        }
        keys
    }

    pub(super) fn scale(&mut self, table: &DeTable) -> BTreeMap<String, Scale> {
        let mut scale = BTreeMap::new();
        for (key, value) in table.iter() {
            if let Some(count) = self.count(key, value) {
                let at = self.pos(key.span().start);
                scale.insert(key.get_ref().to_string(), Scale { count, at });
            }
        }
        scale
    }

    fn count(&mut self, key: &Key, value: &Value) -> Option<u32> {
        let name = key.get_ref().as_ref();
        let what = format!("[scale] {}", ticked(name));
        match value.get_ref() {
            DeValue::Integer(i) => {
                let count = integer(i).and_then(|n| u32::try_from(n).ok()).filter(|n| *n <= MAX_SCALE);
                if count.is_none() {
                    let message = format!("{what} = {} is not a count of instances", quoted(&i.to_string()));
                    self.error(value.span().start, message, format!("counts go from 0 to {MAX_SCALE}"));
                }
                count
            }
            _ => {
                self.type_error(&what, "an integer", value, &format!("{name} = 2"));
                None
            }
        }
    }
}
