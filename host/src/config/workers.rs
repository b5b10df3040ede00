//! `[workers]`: how remote workers are picked, and which types they serve.
//!
//! Plain data, read from the configuration; the route table compiles the
//! type rules ([`crate::routing::target::WorkerRules`]) and the worker pool
//! applies the timeouts.

use serde::{Deserialize, Serialize};

/// How a worker is picked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    #[default]
    LeastLoaded,
    RoundRobin,
    Random,
    WeightedRandom,
}

/// Who serves a type.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Serve {
    /// Workers only: `NO_AVAILABLE_WORKERS` when none is connected.
    #[default]
    Workers,
    /// The plugin that claims it, even if workers register it.
    Plugin,
    /// Workers while any is available, else the plugin.
    WorkersThenPlugin,
}

/// `[workers]` in the configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorkersConfig {
    /// The strategy of types without their own.
    pub strategy: Strategy,
    /// How long a worker may take to answer (`WORKER_TIMEOUT`).
    pub timeout_ms: u64,
    /// A worker silent this long is out of rotation and closed.
    pub heartbeat_timeout_ms: u64,
    /// Most workers connected at once.
    pub max_workers: usize,
    /// The types (names, `prefix.*`, or `*` for every type) a worker serves
    /// when it never sends `register` (the action server's workers are
    /// registered on connect): its first frame is
    /// something else, or it says nothing for `register_timeout_ms`. Empty:
    /// such a worker is refused (an `INVALID_MESSAGE` error frame, close 1008).
    pub default_types: Vec<String>,
    /// How long a new worker connection may stay silent before it is
    /// registered under `default_types` (when there are any).
    pub register_timeout_ms: u64,
    /// Per-type rules, first match wins. A type with no rule goes to the
    /// plugin that claims it, else to workers that registered it.
    pub types: Vec<TypeRule>,
}

impl Default for WorkersConfig {
    fn default() -> Self {
        WorkersConfig {
            strategy: Strategy::default(),
            timeout_ms: 30_000,
            heartbeat_timeout_ms: 30_000,
            max_workers: 1_000,
            default_types: Vec::new(),
            register_timeout_ms: 1_000,
            types: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TypeRule {
    /// A type, a `prefix.*` pattern, or `*` for every type.
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub serve: Serve,
    /// Safe to run twice: retried once on another worker if the first one
    /// disconnects before answering.
    #[serde(default)]
    pub idempotent: bool,
    #[serde(default)]
    pub strategy: Option<Strategy>,
}

