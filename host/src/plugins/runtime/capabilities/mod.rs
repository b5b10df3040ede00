//! Host capabilities a plugin imports, one module each. Every module
//! implements its generated `Host` trait, for each contract version that
//! has it, on the store's [`PluginState`].
//!
//! [`PluginState`]: super::PluginState

mod clients;
mod events;
mod identity;
mod kv;
mod log;
mod rooms;
mod settings;
mod system;

use super::world::{v0_1, v0_2, v0_3};
use super::PluginState;
use crate::wire::{ErrorCode, Failure};

impl v0_1::types::Host for PluginState {}
impl v0_2::types::Host for PluginState {}
impl v0_3::types::Host for PluginState {}

/// A host-side failure as each contract version's WIT `failure`.
macro_rules! wit_failure {
    ($($v:ident),*) => {$(
        impl From<Failure> for $v::types::Failure {
            fn from(f: Failure) -> Self {
                $v::types::Failure { code: f.code.into_owned(), message: f.message }
            }
        }
    )*};
}
wit_failure!(v0_1, v0_2, v0_3);

/// A failure with a capability's own code.
fn failure(code: ErrorCode, message: impl ToString) -> Failure {
    Failure::new(code, message.to_string())
}
