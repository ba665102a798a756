//! The single black-box test binary: each module drives the built `berth` binaries.
#![allow(clippy::unwrap_used)]

mod apps;
mod docker_options;
mod engine;
mod storage;
mod storage_entries;
mod test;
