//! berth: `git push` deploys of Docker apps whose persistent storage is declared in the repo.
//!
//! Data flows one way: `app.toml` is parsed and validated into declared storage, planned against
//! the current state, then applied. `state` is the only writer of berth's records; `hostfs` and
//! `engine` are the only writers of host directories and containers.
#![cfg_attr(test, allow(clippy::unwrap_used))]
// Output goes through `output::Reporter`, whose writer alone may print.
#![deny(clippy::print_stdout, clippy::print_stderr)]

pub mod backup;
pub mod cli;
pub mod config;
pub mod deploy;
pub mod docker_options;
pub mod engine;
pub mod git;
pub mod helper_image;
pub mod hook;
pub mod hostfs;
pub mod manifest;
pub mod names;
pub mod network;
pub mod output;
pub mod proxy;
pub mod scale;
pub mod scheduler;
pub mod ssh;
pub mod state;
pub mod storage;
pub mod swarm;
pub mod user;
