//! The single black-box test binary: each module drives the built `berth` binaries.
#![allow(clippy::unwrap_used)]

mod apps;
mod concurrency;
mod deploy;
mod docker_options;
mod domains;
mod engine;
mod faults;
mod fuzz;
mod hostile;
mod proxy;
mod push;
mod security_containers;
mod security_fs;
mod security_mounts;
mod serve;
mod ssh;
mod storage;
mod storage_entries;
mod survival;
mod test;
