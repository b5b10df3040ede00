//! State: the plugins' and the host's own.
//!
//! - [`memory`]: the [`KvStore`](crate::services::KvStore) behind the WIT
//!   `kv` capability, in host memory, scoped by plugin name, with quotas.
//! - [`host_state`]: key revocations and limits changed at run time, kept
//!   in a file under the data folder so they survive a restart.

pub mod host_state;
pub mod memory;
