//! Help as Dokku prints it: `berth help` lists the namespaces, `berth <namespace>` and
//! `berth <namespace>:help` list that namespace's commands with one line each. The lines come
//! from the clap definitions, so a new command shows up without a second list to keep.

use clap::CommandFactory;

use super::Cli;

/// The namespaces, in Dokku's order, with Dokku's one-line descriptions where it has them.
const NAMESPACES: &[(&str, &str)] = &[
    ("apps", "Manage apps"),
    ("config", "Manage global and app-specific config vars"),
    ("docker-options", "Manage docker options for an app"),
    ("domains", "Manage vhost domains used by the proxy"),
    ("git", "Manage app deploys via git"),
    ("hooks", "Manage the git hooks of app repositories"),
    ("proxy", "Manage the proxy integration for an app"),
    ("ps", "List processes running in app container(s)"),
    ("scheduler", "Manage scheduler integration for an app"),
    ("ssh-keys", "Manage public ssh keys that are allowed to connect to berth"),
    ("storage", "Manage mounted volumes"),
];

/// The help text a command line asks for, when it is `help`, a bare namespace or
/// `<namespace>:help`; `None` for every other command line.
pub fn requested(args: &[String]) -> Option<String> {
    match args {
        [word] if word == "help" => Some(overview()),
        [word] => {
            let namespace = word.strip_suffix(":help").unwrap_or(word);
            NAMESPACES.iter().find(|(name, _)| *name == namespace).map(|&(name, about)| commands(name, about))
        }
        _ => None,
    }
}

fn overview() -> String {
    let mut text = String::from(
        "Usage: berth COMMAND <app> [command-specific-options]\n\n\
         Primary help options, type \"berth COMMAND:help\" for more details, or berth --help to see all commands.\n\n\
         Commands:\n\n",
    );
    for (name, about) in NAMESPACES {
        text.push_str(&format!("    {name:<24} {about}\n"));
    }
    let standalone: Vec<(String, String)> =
        all_commands().into_iter().filter(|(usage, _)| !usage.contains(':')).collect();
    for (usage, about) in standalone {
        let name = usage.split(' ').next().unwrap_or(&usage).to_string();
        text.push_str(&format!("    {name:<24} {about}\n"));
    }
    text
}

fn commands(namespace: &str, about: &str) -> String {
    let prefix = format!("{namespace}:");
    let rows: Vec<(String, String)> =
        all_commands().into_iter().filter(|(usage, _)| usage.starts_with(&prefix)).collect();
    let width = rows.iter().map(|(usage, _)| usage.len()).max().unwrap_or(0);
    let mut text = format!("Usage: berth {namespace}[:COMMAND]\n\n{about}\n\nAdditional commands:\n");
    for (usage, about) in rows {
        text.push_str(&format!("    {usage:<width$}  {about}\n"));
    }
    text
}

/// Every visible command as (`name <positional>...`, first line of its about).
fn all_commands() -> Vec<(String, String)> {
    Cli::command()
        .get_subcommands()
        .filter(|command| !command.is_hide_set() && command.get_name() != "help")
        .map(|command| {
            let mut usage = command.get_name().to_string();
            for arg in command.get_positionals() {
                let name = arg
                    .get_value_names()
                    .and_then(|names| names.first())
                    .map_or_else(|| arg.get_id().to_string(), ToString::to_string);
                let name = name.to_lowercase();
                let many = if arg.get_num_args().is_some_and(|n| n.max_values() > 1) { "..." } else { "" };
                if arg.is_required_set() {
                    usage.push_str(&format!(" <{name}>{many}"));
                } else {
                    usage.push_str(&format!(" [<{name}>{many}]"));
                }
            }
            let about = command.get_about().map(|about| about.to_string()).unwrap_or_default();
            (usage, about.lines().next().unwrap_or_default().to_string())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(words: &[&str]) -> Vec<String> {
        words.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn a_namespace_lists_its_commands() {
        let text = requested(&args(&["storage:help"])).unwrap();
        assert!(text.starts_with("Usage: berth storage[:COMMAND]\n\nManage mounted volumes\n"), "{text}");
        assert!(text.contains("    storage:list <app>"), "{text}");
        assert!(!text.contains("apps:create"), "{text}");
        assert_eq!(requested(&args(&["storage"])), Some(text));
    }

    #[test]
    fn help_lists_every_namespace_and_other_commands_are_not_help() {
        let text = requested(&args(&["help"])).unwrap();
        for (name, _) in NAMESPACES {
            assert!(text.contains(&format!("    {name} ")), "{name}: {text}");
        }
        assert!(text.contains("    rollback "), "{text}");
        assert_eq!(requested(&args(&["storage:list"])), None);
        assert_eq!(requested(&args(&["help", "storage"])), None);
        assert_eq!(requested(&args(&["nope"])), None);
    }

    #[test]
    fn every_namespaced_command_belongs_to_a_listed_namespace() {
        for (usage, _) in all_commands() {
            if let Some((namespace, _)) = usage.split_once(':') {
                assert!(NAMESPACES.iter().any(|(name, _)| *name == namespace), "{usage}");
            }
        }
    }
}
