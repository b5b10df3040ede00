//! Switchyard: a WebAssembly-pluggable message-routing engine.
//!
//! The folders follow one message's path (see `ARCHITECTURE.md` at the
//! project root):
//!
//! - [`transport`]: listeners, WebSocket endpoints, the HTTP API, TLS, the
//!   remote-worker socket and the reverse [`transport::proxy`]. Bytes,
//!   frames, heartbeats; never wasm.
//! - [`admission`]: who may come in and how fast: API keys, scopes,
//!   origins, and the limits that can change while serving.
//! - [`wire`]: every client-facing format: the [`wire::Envelope`], the
//!   dialects that decode into it and encode replies back, the frames the
//!   host pushes (acks, events, errors), the worker protocol, and the
//!   stable [`wire::ErrorCode`]s and close codes.
//! - [`routing`]: the pure route table, its targets (plugins, worker pools,
//!   built-ins), and dispatch under limits.
//! - [`plugins`]: the wasm runtime and its capabilities, the registry's
//!   validate-then-swap path, and the folder watcher.
//! - [`hub`]: connections, rooms, topics, presence and fan-out into bounded
//!   outboxes.
//! - [`workers`]: remote worker processes and load balancing among them.
//! - [`store`]: plugin key-value state.
//! - [`observability`]: metrics and host system figures.
//! - [`services`]: the narrow traits through which plugin capabilities
//!   reach the hub and the store.
//! - [`config`] and [`server`]: configuration, and a running host assembled
//!   from it and shut down in order.

pub mod admission;
pub mod cluster;
pub mod config;
pub mod hub;
pub mod lifecycle;
pub mod observability;
pub mod plugins;
pub mod routing;
pub mod server;
pub mod services;
pub mod store;
pub mod sync;
pub mod transport;
pub mod wire;
pub mod workers;

pub use config::Config;
pub use server::Server;
