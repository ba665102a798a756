//! Caddy (Debian's `caddy` 2.6) as berth's proxy: every table is rendered to Caddy's whole
//! JSON config and, when that differs from the one Caddy runs, `POST /load`ed through the
//! admin API. Caddy checks and provisions a new config before it stops the old one, so a
//! refused config leaves the previous one serving. Only then berth writes the config
//! atomically to `BERTH_ROOT/proxy/caddy.json`, the file Caddy is started with (`caddy run
//! --config`), so the routes survive a restart, and points each app's marker at the upstream
//! set that serves it ([`live`]).
//!
//! Every change through Caddy 2.6's admin API (`/load`, and `PATCH`/`PUT` of any path alike)
//! replaces the whole running config: new servers start and the old ones shut down, closing
//! their idle keep-alive connections, so a client's next request on one races the close. A
//! swap therefore changes only the marker, never the config.

mod admin;
pub mod config;
pub mod live;

use std::path::PathBuf;

use serde::Deserialize;

use super::settings::Serving;
use super::{Proxy, ProxyError, Served, Table, UpstreamStatus};
use crate::state::{Root, write_atomic};
pub use admin::Admin;

/// Caddy, reached through its admin endpoint.
#[derive(Debug)]
pub struct Caddy {
    serving: Serving,
    admin: Admin,
    config_file: PathBuf,
    table: Table,
    /// The config Caddy runs, once known: loading it again would change nothing but close
    /// idle connections and end the requests Caddy holds, so it is not sent again.
    loaded: Option<serde_json::Value>,
}

impl Caddy {
    /// Caddy as `serving` describes it, currently serving `table` (as recorded by berth).
    pub fn new(serving: Serving, config_file: PathBuf, table: Table) -> Caddy {
        Caddy { admin: Admin::new(serving.admin.clone()), serving, config_file, table, loaded: None }
    }

    /// The proxy of `root`: its `[proxy]` settings, checked, and the table of its records.
    pub fn open(root: &Root) -> Result<Caddy, ProxyError> {
        let serving = root.read_settings()?.proxy.check(&root.proxy_dir())?;
        Ok(Caddy::new(serving, root.proxy_config_file(), super::records::table(root)?))
    }

    pub fn serving(&self) -> &Serving {
        &self.serving
    }

    /// The file Caddy is started with.
    pub fn config_file(&self) -> &std::path::Path {
        &self.config_file
    }

    /// Records `table` as the config Caddy starts with, without loading it: for when Caddy
    /// is not running ([`ProxyError::Unreachable`]).
    pub fn save(&mut self, table: Table) -> Result<(), ProxyError> {
        self.write(&table)?;
        self.table = table;
        Ok(())
    }

    fn write(&self, table: &Table) -> Result<(), ProxyError> {
        let text = pretty(&config::render(&self.serving, table));
        write_atomic(&self.config_file, text.as_bytes())?;
        Ok(live::apply(&self.serving.live_dir, table)?)
    }

    /// Whether Caddy runs `config` already (asked once, then remembered).
    fn runs(&mut self, config: &serde_json::Value) -> Result<bool, ProxyError> {
        if self.loaded.is_none() {
            self.loaded = Some(self.admin.get_json("/config/")?);
        }
        Ok(self.loaded.as_ref() == Some(config))
    }
}

/// The config file's text: pretty, for the admin who reads it.
fn pretty(config: &serde_json::Value) -> String {
    let mut text = serde_json::to_string_pretty(config).unwrap_or_default();
    text.push('\n');
    text
}

/// One entry of `GET /reverse_proxy/upstreams`.
#[derive(Deserialize)]
struct UpstreamEntry {
    address: String,
    num_requests: u64,
    fails: u64,
}

impl Proxy for Caddy {
    fn table(&self) -> &Table {
        &self.table
    }

    fn load(&mut self, table: Table) -> Result<(), ProxyError> {
        let config = config::render(&self.serving, &table);
        if self.runs(&config)? {
            // A swap between sets Caddy has: only the markers change.
            live::apply(&self.serving.live_dir, &table)?;
            self.table = table;
            return Ok(());
        }
        let answer = self.admin.request("POST", "/load", Some(pretty(&config).as_bytes()))?;
        match answer.status {
            200 => {}
            400 => return Err(ProxyError::Refused { message: answer.message() }),
            _ => return Err(self.admin.unexpected("POST /load", &answer)),
        }
        self.loaded = Some(config);
        self.write(&table)?;
        self.table = table;
        Ok(())
    }

    fn served(&self) -> Result<Served, ProxyError> {
        let running: serde_json::Value = self.admin.get_json("/config/")?;
        // `null` when no config proxies anything.
        let upstreams: Option<Vec<UpstreamEntry>> = self.admin.get_json("/reverse_proxy/upstreams")?;
        Ok(Served {
            in_sync: running == config::render(&self.serving, &self.table)
                && live::in_sync(&self.serving.live_dir, &self.table),
            upstreams: upstreams
                .unwrap_or_default()
                .into_iter()
                .map(|u| UpstreamStatus { address: u.address, in_flight: u.num_requests, fails: u.fails })
                .collect(),
        })
    }
}
