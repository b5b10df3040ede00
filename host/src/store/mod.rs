//! State: the plugins' and the host's own, and history.
//!
//! - [`db`]: the database (SQLite by default, PostgreSQL, MySQL/MariaDB),
//!   its pool and its versioned schema.
//! - [`kv`]: the durable [`KvStore`](crate::services::KvStore) behind the
//!   WIT `kv` capability; [`memory`]: its in-memory cache and quotas, and
//!   an in-memory store.
//! - [`history`]: connection and message history, through a bounded queue,
//!   written in batches off the hot path; [`queries`]: reading it back,
//!   a page at a time, for the history API.
//! - [`retention`]: deletes old history in the background, in bounded
//!   batches.
//! - [`host_state`]: key revocations and limits changed at run time, kept
//!   in a file under the data folder so they survive a restart.

pub mod db;
pub mod history;
pub mod host_state;
pub mod kv;
pub mod memory;
pub mod queries;
pub mod retention;
