//! An in-memory [`Proxy`] for unit tests: it keeps every table it loaded, can be told to refuse
//! the next load, and reports in-flight counts it was given.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Mutex;

use super::{Proxy, ProxyError, Served, Table, UpstreamStatus};

#[derive(Debug, Default)]
pub struct FakeProxy {
    table: Table,
    /// Every table loaded, in order.
    pub loads: Vec<Table>,
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
