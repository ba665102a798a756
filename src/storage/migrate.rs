//! Dokku's `storage:migrate`: an app's `-v <host>:<container>[:<opts>]` docker-options (default
//! process, deploy and run phases) become storage mounts of the colon form, one per distinct
//! option with the phases it was in, and leave docker-options. Anonymous volumes (`-v /tmp`) and
//! process-scoped or build options stay, as in Dokku.

use std::collections::{BTreeMap, BTreeSet};

use super::{Attachment, LegacyMount, Phase, StorageError};
use crate::docker_options::OptionsKey;

/// One `-v` option and the mount it becomes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Move {
    /// The stored option text (`-v /srv/x:/x`).
    pub option: String,
    pub attachment: Attachment,
}

/// The `-v` options of the default process's deploy and run phases, as mounts.
pub fn plan(docker_options: &BTreeMap<OptionsKey, Vec<String>>) -> Result<Vec<Move>, StorageError> {
    let mut phases_of: BTreeMap<&str, BTreeSet<Phase>> = BTreeMap::new();
    for phase in [Phase::Deploy, Phase::Run] {
        for option in docker_options.get(&OptionsKey::every_process(phase)).into_iter().flatten() {
            if volume_spec(option).is_some() {
                phases_of.entry(option.as_str()).or_default().insert(phase);
            }
        }
    }
    let mut moves = Vec::new();
    for (option, phases) in phases_of {
        let Some(spec) = volume_spec(option) else { continue };
        let attachment = LegacyMount::parse(spec)?.attachment(phases);
        moves.push(Move { option: option.to_string(), attachment });
    }
    Ok(moves)
}

/// The spec of a `-v <host>:<container>...` option; `None` for anything else (an anonymous
/// volume included: it has no host side to keep).
fn volume_spec(option: &str) -> Option<&str> {
    option.strip_prefix("-v ").map(str::trim).filter(|spec| spec.contains(':') && !spec.contains(' '))
}

/// Removes a moved option from the phases it became a mount for.
pub fn remove_option(docker_options: &mut BTreeMap<OptionsKey, Vec<String>>, moved: &Move) {
    for phase in &moved.attachment.phases {
        if let Some(options) = docker_options.get_mut(&OptionsKey::every_process(*phase)) {
            options.retain(|o| *o != moved.option);
        }
    }
    docker_options.retain(|_, options| !options.is_empty());
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::storage::Source;

    fn key(stored: &str) -> OptionsKey {
        OptionsKey::try_from(stored.to_string()).unwrap()
    }

    #[test]
    fn moves_volume_options_with_their_phases() {
        let mut options = BTreeMap::from([
            (
                key("_default_.deploy"),
                vec!["-v /srv/a:/a".to_string(), "-v /tmp".to_string(), "--memory 1g".to_string()],
            ),
            (key("_default_.run"), vec!["-v /srv/a:/a".to_string(), "-v pg:/pg:ro".to_string()]),
            (key("_default_.build"), vec!["-v /srv/b:/b".to_string()]),
            (key("web.deploy"), vec!["-v /srv/c:/c".to_string()]),
        ]);
        let moves = plan(&options).unwrap();
        assert_eq!(moves.len(), 2);
        assert_eq!(moves[0].attachment.source, Source::HostPath("/srv/a".into()));
        assert_eq!(moves[0].attachment.phases, BTreeSet::from([Phase::Deploy, Phase::Run]));
        assert_eq!(moves[1].attachment.source, Source::Volume("pg".into()));
        assert!(moves[1].attachment.readonly);
        for moved in &moves {
            remove_option(&mut options, moved);
        }
        assert_eq!(options[&key("_default_.deploy")], vec!["-v /tmp", "--memory 1g"]);
        assert!(!options.contains_key(&key("_default_.run")));
        assert_eq!(options[&key("_default_.build")], vec!["-v /srv/b:/b"]);
        assert!(plan(&options).unwrap().is_empty());
    }
}
