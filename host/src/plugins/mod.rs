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
//!
//! Nothing here touches a socket: capabilities reach connections through
//! the traits in [`crate::services`].

pub mod breaker;
pub mod registry;
pub mod runtime;
pub mod share;
pub mod watcher;
