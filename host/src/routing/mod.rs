//! Routing: which target serves a message, and running it there.
//!
//! - [`router`]: the pure route table: exact and `prefix.*` claims,
//!   conflicts, resolution. No wasm, no I/O.
//! - [`target`]: what a route leads to (a plugin version, a remote worker
//!   pool, a host built-in) and the table the registry swaps in whole.
//! - [`builtins`]: the message types the host answers itself.
//! - [`dispatch`]: one message's path from decoded frame to outcome, under
//!   the caller's scopes, the rate limit and the target's deadline.

pub mod builtins;
pub mod dispatch;
pub mod router;
pub mod target;

use crate::admission::security::Principal;
use crate::hub::Connection;
use crate::wire::Origin;
use std::sync::Arc;

/// Who is calling: the origin plugins see, what they may do, and the live
/// connection, if any. All borrowed: a connection's messages share its
/// origin, none copies it.
pub struct Caller<'a> {
    pub origin: &'a Origin,
    pub connection: Option<&'a Arc<Connection>>,
    pub principal: &'a Principal,
}
