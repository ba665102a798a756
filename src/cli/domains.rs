//! `domains:*`: the host names an app answers at through the proxy. Each change is checked
//! (valid names, one app per name), loaded into the proxy, and only then recorded, all under
//! the app's lock and the proxy lock, so a refused change leaves the records and the routes
//! as they were.

use super::{Format, Result, existing_app};
use crate::names::AppName;
use crate::output::{Report, Reporter};
use crate::proxy::caddy::Caddy;
use crate::proxy::domain::{self, Domain, DomainError};
use crate::proxy::records::Records;
use crate::proxy::{Proxy, Table};
use crate::state::{GlobalDomains, Root};

/// What a `domains:*` command does to an app's domains.
#[derive(Debug, Clone, Copy)]
pub enum Change {
    Add,
    Remove,
    Set,
    Clear,
}

impl Change {
    /// The app's domains after the change, or why the change is refused.
    fn apply(self, app: &AppName, current: &[Domain], given: Vec<Domain>) -> Result<Vec<Domain>> {
        match self {
            Change::Add => {
                if let Some(domain) = given.iter().find(|d| current.contains(d)) {
                    return Err(
                        DomainError::AlreadyOfApp { app: app.to_string(), domain: domain.clone() }.into()
                    );
                }
                Ok(current.iter().cloned().chain(given).collect())
            }
            Change::Remove => {
                if let Some(domain) = given.iter().find(|d| !current.contains(d)) {
                    let current = if current.is_empty() { "none".to_string() } else { joined(current) };
                    let domain = domain.clone();
                    return Err(DomainError::NotOfApp { app: app.to_string(), domain, current }.into());
                }
                Ok(current.iter().filter(|d| !given.contains(d)).cloned().collect())
            }
            Change::Set => Ok(given),
            Change::Clear => Ok(Vec::new()),
        }
    }

    fn doing(self, app: &AppName, given: &[Domain]) -> String {
        match self {
            Change::Add => format!("Adding {} to {app}", joined(given)),
            Change::Remove => format!("Removing {} from {app}", joined(given)),
            Change::Set => format!("Setting {} for {app}", joined(given)),
            Change::Clear => format!("Clearing domains in {app}"),
        }
    }
}

/// `domains:add|remove|set|clear <app> [<domain>...]`.
pub fn change(root: &Root, app: &AppName, change: Change, texts: &[String], out: &Reporter) -> Result<()> {
    existing_app(root, app)?;
    let given = domain::parse_all(texts)?;
    let app_lock = root.lock_app_announced(app, out)?;
    let _proxy_lock = root.lock_proxy()?;
    let mut proxy = Caddy::open(root)?;
    let mut state = existing_app(root, app)?;
    let mut records = Records::read(root)?;
    let domains = change.apply(app, &state.domains, given.clone())?;
    records.own.insert(app.clone(), domains.clone());
    records.check_unique(Some(app))?;
    out.step(change.doing(app, &given));
    publish(&mut proxy, &records, out)?;
    // Recorded once the proxy took it: a refusal changes nothing. A crash in between leaves
    // the proxy ahead of the records until the next change or `proxy:build-config`.
    state.domains = domains;
    root.write_app(app, &state, &app_lock)?;
    Ok(())
}

/// `domains:set-global <domain>...` (with domains) and `domains:clear-global` (without).
pub fn set_global(root: &Root, texts: &[String], out: &Reporter) -> Result<()> {
    let globals = domain::parse_all(texts)?;
    if let Some(wildcard) = globals.iter().find(|d| d.is_wildcard()) {
        return Err(DomainError::WildcardGlobal(wildcard.clone()).into());
    }
    let lock = root.lock_proxy()?;
    let mut proxy = Caddy::open(root)?;
    let mut records = Records::read(root)?;
    records.globals = globals.clone();
    records.check_unique(None)?;
    check_every_app_fits(&records)?;
    if globals.is_empty() {
        out.step("Clearing global domains");
    } else {
        out.step(format!("Setting global domains: {}", joined(&globals)));
    }
    publish(&mut proxy, &records, out)?;
    root.write_global_domains(&GlobalDomains { domains: globals }, &lock)?;
    Ok(())
}

/// `<app>.<global>` must be a DNS name for every app, or the app would not answer there.
fn check_every_app_fits(records: &Records) -> Result<()> {
    for app in records.own.keys() {
        for global in &records.globals {
            global.below(app.as_str())?;
        }
    }
    Ok(())
}

/// Loads the table with `records`' hosts into the proxy. A proxy that is not running gets it
/// in its config file, served when it starts.
fn publish(proxy: &mut Caddy, records: &Records, out: &Reporter) -> Result<()> {
    let mut table: Table = proxy.table().clone();
    records.apply_to(&mut table);
    super::proxy::load_or_save(proxy, table, out)
}

/// `domains:report [<app>] [--<flag>] [--format json]`, as Dokku prints it.
pub fn report(root: &Root, args: &[String], format: Format, out: &Reporter) -> Result<()> {
    let request = super::report::Request::parse(root, "domains:report", args, format)?;
    let records = Records::read(root)?;
    request.print(
        "domains",
        "domains",
        |app| {
            existing_app(root, app)?;
            let mut report = Report::default();
            report.row("domains-app-enabled", "true");
            report.row("domains-app-vhosts", joined(&records.hosts(app)));
            report.row("domains-global-enabled", (!records.globals.is_empty()).to_string());
            report.row("domains-global-vhosts", joined(&records.globals));
            Ok(report)
        },
        out,
    )
}

fn joined(domains: &[Domain]) -> String {
    domains.iter().map(Domain::as_str).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn domains(names: &[&str]) -> Vec<Domain> {
        names.iter().map(|n| Domain::new(n).unwrap()).collect()
    }

    fn apply(change: Change, current: &[&str], given: &[&str]) -> std::result::Result<Vec<Domain>, String> {
        let app = AppName::new("demo").unwrap();
        change.apply(&app, &domains(current), domains(given)).map_err(|e| e.to_string())
    }

    #[test]
    fn changes_keep_the_order_given() {
        assert_eq!(
            apply(Change::Add, &["a.com"], &["c.com", "b.com"]),
            Ok(domains(&["a.com", "c.com", "b.com"]))
        );
        assert_eq!(
            apply(Change::Remove, &["a.com", "b.com", "c.com"], &["b.com"]),
            Ok(domains(&["a.com", "c.com"]))
        );
        assert_eq!(apply(Change::Set, &["a.com"], &["x.com"]), Ok(domains(&["x.com"])));
        assert_eq!(apply(Change::Clear, &["a.com"], &[]), Ok(vec![]));
    }

    #[test]
    fn adding_a_domain_twice_or_removing_one_the_app_lacks_is_refused() {
        assert_eq!(
            apply(Change::Add, &["a.com"], &["a.com"]),
            Err("app demo already has the domain a.com".into())
        );
        assert_eq!(
            apply(Change::Remove, &["a.com"], &["b.com"]),
            Err("app demo has no domain b.com; its domains: a.com".into())
        );
        assert_eq!(
            apply(Change::Remove, &[], &["b.com"]),
            Err("app demo has no domain b.com; its domains: none".into())
        );
    }
}
