//! Admission: who may come in, and how fast.
//!
//! - [`security`]: API keys (stored as digests, compared in constant
//!   time), their scopes, the anonymous principal, and browser origins.
//! - [`limits`]: the limits an operator may change while serving, and the
//!   token buckets that apply the rates.
//!
//! Transports call in here before anything is routed; nothing here knows a
//! socket or a plugin.

pub mod limits;
pub mod security;
