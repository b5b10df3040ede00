//! Switchyard: a WebAssembly-pluggable message-routing engine.
//!
//! One message's path: [`transport`] (bytes, frames, limits) →
//! [`dialect`] (client format → [`envelope::Envelope`]) → [`router`]
//! (type → target, one snapshot per message) → [`dispatch`] (deadline,
//! caps) → [`runtime`] (warm plugin instances) → back through the dialect
//! to the connection's bounded outbox in the [`hub`]. The [`registry`] and
//! [`watcher`] replace plugins by atomic swaps of the route table.
//! [`security`] (keys, scopes, origins) and [`limits`] (what may change while
//! serving, token buckets) gate the way in; [`metrics`] counts what passes.
//! Off that path, for plugin authors: [`scaffold`] (`plugin new`, `plugin
//! build`) and [`componentize`] (C bindings, core module → component).

pub mod componentize;
pub mod config;
pub mod dialect;
pub mod dispatch;
pub mod envelope;
pub mod hub;
pub mod inspect;
pub mod limits;
pub mod metrics;
pub mod registry;
pub mod router;
pub mod runtime;
pub mod scaffold;
pub mod security;
pub mod server;
pub mod services;
pub mod state;
pub mod system;
pub mod transport;
pub mod watcher;
pub mod workers;

pub use config::Config;
pub use server::Server;
