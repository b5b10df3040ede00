//! Host capabilities a plugin imports, one module each, every one
//! implementing its generated `Host` trait on the store's [`PluginState`].
//!
//! [`PluginState`]: super::PluginState

mod events;
mod kv;
mod log;

use super::world::v0_1::types;
use super::PluginState;

impl types::Host for PluginState {}

/// Fold a host-side domain error into the WIT failure a plugin sees.
fn failure(code: &str, message: impl ToString) -> types::Failure {
    types::Failure { code: code.to_owned(), message: message.to_string() }
}
