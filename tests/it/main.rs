//! The single black-box test binary: each module drives the built `berth` binaries.
#![allow(clippy::unwrap_used)]

mod apps;
mod backup;
mod bats;
mod compat;
mod concurrency;
mod config;
mod deploy;
mod docker_options;
mod dokku_docker_options;
mod dokku_storage;
mod domains;
mod dry_run;
mod engine;
mod faults;
mod fuzz;
mod hostile;
mod proxy;
mod push;
mod scale;
mod security_containers;
mod security_fs;
mod security_mounts;
mod serve;
mod ssh;
mod storage;
mod storage_entries;
mod survival;
mod swarm;
mod test;
