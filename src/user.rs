//! Who containers run as and who owns the directories berth creates: numeric ids (0 to 65535)
//! and Dokku's named presets. The one parser of `uid[:gid]` and the one preset table.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The largest uid or gid berth accepts, as `storage:ensure-directory --chown` does.
pub const MAX_ID: u32 = 65535;

/// Dokku's ownership presets: a name for a well-known uid (the gid is the same).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preset {
    Herokuish,
    Heroku,
    Paketo,
    Root,
}

impl Preset {
    /// Every preset with its name and uid: the one table.
    pub const ALL: [(Preset, &'static str, u32); 4] = [
        (Preset::Herokuish, "herokuish", 32767),
        (Preset::Heroku, "heroku", 1000),
        (Preset::Paketo, "paketo", 2000),
        (Preset::Root, "root", 0),
    ];

    /// The preset's row: `ALL` lists the presets in declaration order.
    fn row(self) -> (Preset, &'static str, u32) {
        Self::ALL[self as usize]
    }

    pub fn named(name: &str) -> Option<Preset> {
        Self::ALL.into_iter().find(|(_, n, _)| *n == name).map(|(preset, _, _)| preset)
    }

    pub fn name(self) -> &'static str {
        self.row().1
    }

    pub fn uid(self) -> u32 {
        self.row().2
    }

    /// `herokuish (32767), heroku (1000), ...`, for hints.
    pub fn listed() -> String {
        let rows: Vec<String> = Self::ALL.iter().map(|(_, name, uid)| format!("{name} ({uid})")).collect();
        rows.join(", ")
    }
}

/// Why a `uid[:gid]` text is not a user.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserError {
    #[error("{0:?} is neither \"uid[:gid]\" nor a preset")]
    Form(String),
    #[error("id {0:?} is out of range (ids go from 0 to {MAX_ID})")]
    Range(String),
}

/// A numeric id from 0 to [`MAX_ID`].
pub fn parse_id(part: &str) -> Result<u32, UserError> {
    if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
        return Err(UserError::Form(part.to_string()));
    }
    part.parse::<u32>().ok().filter(|id| *id <= MAX_ID).ok_or_else(|| UserError::Range(part.to_string()))
}

/// `[app].user`: who the app's processes run as, and who owns the directories berth creates.
/// Stored as its `--user` text (`uid` or `uid:gid`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AppUser {
    pub uid: u32,
    /// `None` when only a uid was given: Docker then takes the group from the image.
    pub gid: Option<u32>,
}

impl AppUser {
    /// The (uid, gid) to chown created directories to; the gid defaults to the uid.
    pub fn chown_ids(&self) -> (u32, u32) {
        (self.uid, self.gid.unwrap_or(self.uid))
    }
}

impl FromStr for AppUser {
    type Err = UserError;
    /// A preset (its uid as the gid too), `uid` or `uid:gid`.
    fn from_str(s: &str) -> Result<Self, UserError> {
        if let Some(preset) = Preset::named(s) {
            return Ok(AppUser { uid: preset.uid(), gid: Some(preset.uid()) });
        }
        let whole = |error| keep_range(error, s);
        match s.split_once(':') {
            Some((uid, gid)) => {
                Ok(AppUser { uid: parse_id(uid).map_err(whole)?, gid: Some(parse_id(gid).map_err(whole)?) })
            }
            None => Ok(AppUser { uid: parse_id(s).map_err(whole)?, gid: None }),
        }
    }
}

/// A lone part that is not digits makes the whole text malformed; a range error stays one.
fn keep_range(error: UserError, whole: &str) -> UserError {
    match error {
        UserError::Form(_) => UserError::Form(whole.to_string()),
        range => range,
    }
}

impl TryFrom<String> for AppUser {
    type Error = UserError;
    fn try_from(s: String) -> Result<Self, UserError> {
        s.parse()
    }
}

impl From<AppUser> for String {
    fn from(user: AppUser) -> String {
        user.to_string()
    }
}

impl fmt::Display for AppUser {
    /// The `--user` form: `uid` or `uid:gid`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.gid {
            Some(gid) => write!(f, "{}:{gid}", self.uid),
            None => write!(f, "{}", self.uid),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_parse_and_print_their_stored_form() {
        for (text, user) in [
            ("1000", AppUser { uid: 1000, gid: None }),
            ("1000:50", AppUser { uid: 1000, gid: Some(50) }),
            ("herokuish", AppUser { uid: 32767, gid: Some(32767) }),
        ] {
            assert_eq!(text.parse::<AppUser>(), Ok(user));
        }
        assert_eq!("1000:50".parse::<AppUser>().unwrap().to_string(), "1000:50");
        assert_eq!("65536".parse::<AppUser>(), Err(UserError::Range("65536".into())));
        assert_eq!("1:65536".parse::<AppUser>(), Err(UserError::Range("65536".into())));
        assert_eq!("app".parse::<AppUser>(), Err(UserError::Form("app".into())));
        assert_eq!("1:x".parse::<AppUser>(), Err(UserError::Form("1:x".into())));
    }

    #[test]
    fn presets_come_from_one_table() {
        assert_eq!(Preset::named("paketo").map(Preset::uid), Some(2000));
        assert_eq!(Preset::Root.name(), "root");
        assert_eq!(Preset::listed(), "herokuish (32767), heroku (1000), paketo (2000), root (0)");
    }
}
