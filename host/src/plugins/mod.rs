//! Plugins: everything that knows about WebAssembly.
//!
//! - [`runtime`]: the wasmtime engine, compile cache, warm instance pools
//!   per plugin version, and the WIT host capabilities.
//! - [`registry`]: which file serves which claims; every load, replace and
//!   unload goes validate-then-swap through it.
//! - [`breaker`]: fails a plugin's calls fast while it keeps timing out
//!   or trapping, then probes it.
//! - [`share`]: how many of a plugin's calls may execute at once.
//! - [`watcher`]: the plugin folder's file events, debounced, into the
//!   registry.
//! - [`deploys`]: the hook a cluster hears plugins changed by hand through.
//! - [`versions`]: per-version figures (lock-free), the retained versions
//!   a rollback picks from, version refs.
//! - [`rollout`]: weighted canaries, their thresholds and decisions.
//! - [`shadow`]: shadow traffic: a contained candidate gets copies of
//!   live messages, its replies compared with the serving version's.
//! - [`migration`]: kv snapshots around the 0.3 `migrate` export, and
//!   their undoing on a rollback.
//!
//! Nothing here touches a socket: capabilities reach connections through
//! the traits in [`crate::services`].

pub mod breaker;
pub mod deploys;
pub mod migration;
pub mod registry;
pub mod rollout;
pub mod runtime;
pub mod shadow;
pub mod share;
pub mod versions;
pub mod watcher;
