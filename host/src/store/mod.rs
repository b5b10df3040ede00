//! Plugin state: the [`KvStore`](crate::services::KvStore) behind the WIT
//! `kv` capability.
//!
//! [`memory`] keeps it in host memory, scoped by plugin name, with quotas.

pub mod memory;
