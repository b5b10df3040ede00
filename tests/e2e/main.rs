//! The end-to-end suites, one module each, in one test binary: a real host
//! on loopback (in process, or as a `switchyard` process), real clients,
//! plugins built from source. Two suites have their own binary: `memory`
//! reads this process's resident memory, which tests beside it would move,
//! and `languages` runs six languages' toolchains, which would starve the
//! hosts of tests beside it.
//!
//! One suite: `cargo test --release --test e2e deploys::`.

mod actions;
mod calls;
mod client;
mod cluster;
mod conformance;
mod dashboard;
mod deploys;
mod hardening;
mod history_api;
mod hot_swap;
mod http_api;
mod hub;
mod isolation;
mod malformed;
mod msgpack;
mod opaque;
mod plugins;
mod protocol;
mod proxy;
mod sandbox;
mod security;
mod storage;
mod workers;
