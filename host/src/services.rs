//! The narrow seams through which plugin capabilities reach the rest of the
//! host: delivering events to connections, and the plugin key-value store.
//!
//! The runtime implements the WIT capabilities on top of these traits and
//! never sees the hub, the transports or the storage behind them.

use crate::envelope::Failure;
use serde_json::value::RawValue;

/// Delivers messages to connected clients.
pub trait EventSink: Send + Sync + 'static {
    /// Publish `data` on `topic` to every matching subscription; returns how
    /// many connections it was queued for.
    fn publish(&self, topic: &str, data: &RawValue, source: &str) -> Result<usize, Failure>;

    /// Queue one whole message for one connection.
    fn send(&self, connection_id: &str, message: &RawValue) -> Result<(), Failure>;
}

/// Why a key-value write was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KvError {
    #[error("value of {len} bytes is over the {limit}-byte limit")]
    ValueTooLarge { len: usize, limit: usize },
    #[error("plugin already has {limit} keys")]
    TooManyKeys { limit: usize },
}

/// Key-value state scoped by plugin name, outliving any one plugin version.
pub trait KvStore: Send + Sync + 'static {
    fn get(&self, plugin: &str, key: &str) -> Option<String>;
    fn set(&self, plugin: &str, key: &str, value: String) -> Result<(), KvError>;
    fn delete(&self, plugin: &str, key: &str);
    fn keys(&self, plugin: &str, prefix: &str) -> Vec<String>;
}
