//! The host's parsers, compiled on their own for fuzzing: `wire/` (the
//! client dialects, the `/api/control` translation, the worker protocol,
//! frames) and `config/` (the TOML loader and its checks) are the same
//! source files the engine builds (`#[path]`), without the engine. They
//! import nothing of the host but each other, so a fuzz build does not
//! compile wasmtime under coverage instrumentation, and a change to a
//! parser is fuzzed as it is.

#![allow(dead_code, unused_imports)]

#[path = "../../../host/src/wire/mod.rs"]
pub mod wire;

#[path = "../../../host/src/config/mod.rs"]
pub mod config;

pub use config::Config;
