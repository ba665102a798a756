//! An in-memory [`Proxy`] for unit tests: it keeps every table it loaded, counts the loads a
//! real proxy would reload its config for, can be told to refuse the next load, and reports
//! in-flight counts it was given.

use std::cell::Cell;
use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Mutex;
use std::time::Duration;

use super::{Domain, Proxy, ProxyError, Served, Table, UpstreamStatus};
use crate::names::AppName;

#[derive(Debug, Default)]
pub struct FakeProxy {
    table: Table,
    /// Every table loaded, in order.
    pub loads: Vec<Table>,
    /// How many loads changed the config (an app's hosts, hold or upstream sets), not only
    /// which set serves: each one a reload of Caddy. Shared, so a test keeps a handle once
    /// the proxy is boxed.
    pub reloads: Rc<Cell<usize>>,
    /// The message the next load is refused with.
    pub refuse_next: Option<String>,
    /// In-flight counts each upstream reports, one per question; the last one repeats.
    in_flight: Mutex<BTreeMap<SocketAddr, VecDeque<u64>>>,
}

impl FakeProxy {
    pub fn serving(table: Table) -> FakeProxy {
        FakeProxy { table, ..FakeProxy::default() }
    }

    /// `upstream` reports these in-flight counts, one per question.
    pub fn set_in_flight(&self, upstream: SocketAddr, counts: &[u64]) {
        self.in_flight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(upstream, counts.iter().copied().collect());
    }
}

impl Proxy for FakeProxy {
    fn table(&self) -> &Table {
        &self.table
    }

    fn load(&mut self, table: Table) -> Result<(), ProxyError> {
        if let Some(message) = self.refuse_next.take() {
            return Err(ProxyError::Refused { message });
        }
        if config(&table) != config(&self.table) {
            self.reloads.set(self.reloads.get() + 1);
        }
        self.loads.push(table.clone());
        self.table = table;
        Ok(())
    }

    fn served(&self) -> Result<Served, ProxyError> {
        let mut in_flight = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        let upstreams = in_flight
            .iter_mut()
            .map(|(address, counts)| {
                let count = if counts.len() > 1 { counts.pop_front() } else { counts.front().copied() };
                UpstreamStatus { address: address.to_string(), in_flight: count.unwrap_or(0), fails: 0 }
            })
            .collect();
        Ok(Served { in_sync: true, upstreams })
    }
}

/// One app's part of a proxy's config: its hosts, hold and upstream sets.
type AppConfig<'a> = (&'a AppName, &'a [Domain], Duration, Vec<Vec<SocketAddr>>);

/// What a proxy's config is made of.
fn config(table: &Table) -> Vec<AppConfig<'_>> {
    table.apps.iter().map(|(app, route)| (app, route.hosts.as_slice(), route.hold, route.sets())).collect()
}
