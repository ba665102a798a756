//! The single black-box test binary: each module drives the built `berth` binaries.
#![allow(clippy::unwrap_used)]
