//! The routing table from berth's records: each app's domains (`domains:*`), the global
//! domains (`<app>.<global>` for every app), and the web port of each app's current release.
//! Also the one rule across apps: a host name belongs to one app only.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use super::{Domain, DomainError, ProxyError, Route, Table, Target};
use crate::names::AppName;
use crate::state::{AppState, Release, Releases, Root, StateError};

/// The domain records of every app, and the global domains.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Records {
    /// Each app's own domains.
    pub own: BTreeMap<AppName, Vec<Domain>>,
    pub globals: Vec<Domain>,
}

/// One host name an app answers at, and the global domain it comes from, if any.
struct Claim<'a> {
    app: &'a AppName,
    global: Option<&'a Domain>,
}

impl Records {
    pub fn read(root: &Root) -> Result<Records, StateError> {
        let mut own = BTreeMap::new();
        for app in root.list_apps()? {
            let state = root.read_app(&app)?;
            own.insert(app, state.domains);
        }
        Ok(Records { own, globals: root.read_global_domains()?.domains })
    }

    /// Every host name `app` answers at: its own domains, then `<app>.<global>` for each
    /// global domain. A name that would be longer than a DNS name allows is left out.
    pub fn hosts(&self, app: &AppName) -> Vec<Domain> {
        self.claims_of(app).into_iter().map(|(domain, _)| domain).collect()
    }

    fn claims_of<'a>(&'a self, app: &AppName) -> Vec<(Domain, Option<&'a Domain>)> {
        let mut claims: Vec<(Domain, Option<&Domain>)> =
            self.own.get(app).into_iter().flatten().map(|d| (d.clone(), None)).collect();
        for global in &self.globals {
            if let Ok(domain) = global.below(app.as_str())
                && !claims.iter().any(|(d, _)| *d == domain)
            {
                claims.push((domain, Some(global)));
            }
        }
        claims
    }

    /// Refuses a host name two apps would answer at, naming the app that has it; `changed` is
    /// the app being changed, which never "has it" when another app does.
    pub fn check_unique(&self, changed: Option<&AppName>) -> Result<(), DomainError> {
        let mut by_domain: BTreeMap<Domain, Vec<Claim>> = BTreeMap::new();
        for app in self.own.keys() {
            for (domain, global) in self.claims_of(app) {
                by_domain.entry(domain).or_default().push(Claim { app, global });
            }
        }
        for (domain, claims) in by_domain {
            if claims.iter().all(|c| c.app == claims[0].app) {
                continue;
            }
            // The owner: another app than the one changed, by its own domain rather than a
            // global one when both.
            let mut others: Vec<&Claim> = claims.iter().filter(|c| Some(c.app) != changed).collect();
            others.sort_by_key(|c| c.global.is_some());
            let owner = others.first().copied().unwrap_or(&claims[0]);
            return Err(match owner.global {
                None => DomainError::Taken { domain, owner: owner.app.to_string() },
                Some(global) => DomainError::TakenUnderGlobal {
                    domain,
                    owner: owner.app.to_string(),
                    global: global.clone(),
                },
            });
        }
        Ok(())
    }

    /// Gives every route of `table` the hosts these records say.
    pub fn apply_to(&self, table: &mut Table) {
        for (app, route) in &mut table.apps {
            route.hosts = self.hosts(app);
        }
    }
}

/// The URLs `app` answers at through the proxy: one per host name that is not a wildcard.
pub fn urls(root: &Root, app: &AppName) -> Result<Vec<String>, ProxyError> {
    let serving = root.read_settings()?.proxy.check(&root.proxy_dir())?;
    let records = Records::read(root)?;
    Ok(records.hosts(app).iter().filter(|h| !h.is_wildcard()).map(|h| serving.url(h)).collect())
}

/// Every app's route as berth's records have it: its hosts, and its current release's web
/// process (its address on berth's engine network), or nothing.
pub fn table(root: &Root) -> Result<Table, ProxyError> {
    let records = Records::read(root)?;
    let mut table = Table::default();
    for app in records.own.keys() {
        table.apps.insert(app.clone(), current_route(root, app, &root.read_app(app)?, records.hosts(app))?);
    }
    Ok(table)
}

fn current_route(
    root: &Root,
    app: &AppName,
    state: &AppState,
    hosts: Vec<Domain>,
) -> Result<Route, StateError> {
    let releases = root.read_releases(app)?;
    let Some(release) = state.current_release.filter(|_| !state.stopped).and_then(|n| releases.get(n)) else {
        return Ok(Route::new(hosts, Target::Down));
    };
    // Releases from before the proxy were published on a host port.
    let legacy = release.web_host_port.map(|port| SocketAddr::from((Ipv4Addr::LOCALHOST, port)));
    let upstreams = if release.web_upstreams.is_empty() {
        legacy.into_iter().collect()
    } else {
        release.web_upstreams.clone()
    };
    // Scaled to 0, the web process runs no instance: the route answers 503.
    let target = if upstreams.is_empty() { Target::Down } else { Target::Up(upstreams) };
    let mut route = Route::new(hosts, target);
    route.slots = slots(&releases, release);
    if let Some(seconds) = release.run.hold_seconds {
        route.hold = Duration::from_secs(seconds.into());
    }
    Ok(route)
}

/// Each web instance's slot (see [`Route::slots`]): its address in the current release and
/// in the latest other release that had other addresses (a rollback's included), in instance
/// order. The proxy keeps both configured; the next release's instance starts at the other.
fn slots(releases: &Releases, current: &Release) -> Vec<[SocketAddr; 2]> {
    let mut others: Vec<&Release> = releases.releases.iter().filter(|r| r.number != current.number).collect();
    others.sort_by_key(|r| std::cmp::Reverse(r.number));
    let previous = others
        .into_iter()
        .map(|r| r.web_upstreams.as_slice())
        .find(|upstreams| !upstreams.is_empty() && *upstreams != current.web_upstreams.as_slice())
        .unwrap_or_default();
    let slot = |(i, address): (usize, &SocketAddr)| [*address, previous.get(i).copied().unwrap_or(*address)];
    current.web_upstreams.iter().enumerate().map(slot).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(name: &str) -> AppName {
        AppName::new(name).unwrap()
    }

    fn domains(names: &[&str]) -> Vec<Domain> {
        names.iter().map(|n| Domain::new(n).unwrap()).collect()
    }

    fn records(own: &[(&str, &[&str])], globals: &[&str]) -> Records {
        Records { own: own.iter().map(|(a, d)| (app(a), domains(d))).collect(), globals: domains(globals) }
    }

    #[test]
    fn an_app_answers_at_its_domains_then_under_each_global_domain() {
        let records =
            records(&[("api", &["api.example.org", "api.example.com"])], &["example.com", "example.net"]);
        assert_eq!(
            records.hosts(&app("api")),
            domains(&["api.example.org", "api.example.com", "api.example.net"])
        );
        assert_eq!(records.hosts(&app("other")), domains(&["other.example.com", "other.example.net"]));
    }

    #[test]
    fn a_name_two_apps_would_answer_at_is_refused_with_its_owner() {
        let both = records(&[("api", &["shop.example.com"]), ("shop", &["shop.example.com"])], &[]);
        assert_eq!(
            both.check_unique(Some(&app("shop"))).unwrap_err().to_string(),
            "shop.example.com is already a domain of app api; remove it there first (berth domains:remove api shop.example.com)"
        );
        let under_global = records(&[("api", &["shop.example.com"]), ("shop", &[])], &["example.com"]);
        assert_eq!(
            under_global.check_unique(Some(&app("api"))).unwrap_err().to_string(),
            "shop.example.com is where app shop answers under the global domain example.com; pick another domain"
        );
        // Setting the global domain: the app that has the name as its own domain owns it.
        assert_eq!(
            under_global.check_unique(None).unwrap_err().to_string(),
            "shop.example.com is already a domain of app api; remove it there first (berth domains:remove api shop.example.com)"
        );
    }

    #[test]
    fn an_app_may_name_its_own_global_host_and_wildcards_overlap() {
        let records = records(
            &[("api", &["api.example.com", "*.example.com"]), ("web", &["web.example.com"])],
            &["example.com"],
        );
        assert_eq!(records.check_unique(None), Ok(()));
        assert_eq!(records.hosts(&app("api")), domains(&["api.example.com", "*.example.com"]));
    }

    #[test]
    fn the_table_of_a_fresh_root_is_empty_and_apps_without_a_release_are_down() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(dir.path());
        assert_eq!(table(&root).unwrap(), Table::default());
        let demo = app("demo");
        let lock = root.lock_app(&demo).unwrap();
        let mut state = root.create_app(&demo, &lock).unwrap();
        state.domains = domains(&["demo.example.org"]);
        root.write_app(&demo, &state, &lock).unwrap();
        let table = table(&root).unwrap();
        assert_eq!(table.apps[&demo], Route::new(domains(&["demo.example.org"]), Target::Down));
    }

    #[test]
    fn each_instance_s_slot_pairs_it_with_the_latest_other_release_s_instance() {
        let release = |number: u32, upstreams: &str| {
            format!(
                "[[releases]]\nnumber = {number}\ncommit = \"c\"\nimage = \"i\"\ncreated_at = 0\noutcome = \"deployed\"\n{upstreams}\n[releases.run]\nprocesses = {{}}\n"
            )
        };
        let text = [
            release(1, "web_upstream = \"172.18.0.2:5000\""),
            release(2, "web_upstreams = [\"172.18.0.3:5000\", \"172.18.0.4:5000\"]"),
            release(3, ""),
            release(4, "web_upstreams = [\"172.18.0.2:5000\", \"172.18.0.5:5000\", \"172.18.0.6:5000\"]"),
        ]
        .concat();
        let releases: Releases = toml::from_str(&text).unwrap();
        let address = |text: &str| text.parse::<SocketAddr>().unwrap();
        let (a, b, c) = (address("172.18.0.2:5000"), address("172.18.0.3:5000"), address("172.18.0.4:5000"));
        let (d, e) = (address("172.18.0.5:5000"), address("172.18.0.6:5000"));
        let current = releases.get(4).unwrap();
        assert_eq!(
            slots(&releases, current),
            vec![[a, b], [d, c], [e, e]],
            "a third instance has one address"
        );
        // A rollback to release 2: its slots pair it with release 4.
        assert_eq!(slots(&releases, releases.get(2).unwrap()), vec![[b, a], [c, d]]);
        assert_eq!(slots(&releases, releases.get(1).unwrap()), vec![[a, a]], "release 4's first is the same");
        assert_eq!(
            slots(&Releases { releases: vec![current.clone()] }, current),
            vec![[a, a], [d, d], [e, e]]
        );
    }
}
