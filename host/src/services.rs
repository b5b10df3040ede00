//! The narrow seams through which plugin capabilities reach the rest of the
//! host: delivering events to connections, calling clients, and the plugin
//! key-value store.
//!
//! The runtime implements the WIT capabilities on top of these traits and
//! never sees the hub, the transports or the storage behind them.

use crate::wire::Failure;
use serde_json::value::RawValue;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

/// Delivers messages to connected clients.
pub trait EventSink: Send + Sync + 'static {
    /// Publish `data` on `topic` to every matching subscription; returns how
    /// many connections it was queued for.
    fn publish(&self, topic: &str, data: &RawValue, source: &str) -> Result<usize, Failure>;

    /// Queue one whole message for one connection.
    fn send(&self, connection_id: &str, message: &RawValue) -> Result<(), Failure>;
}

/// A connected client, by connection id or by device id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientRef {
    Connection(String),
    Device(String),
}

impl fmt::Display for ClientRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientRef::Connection(id) => write!(f, "connection {id}"),
            ClientRef::Device(id) => write!(f, "device {id}"),
        }
    }
}

/// A call to a client, waiting for its answer's data.
pub type CallFuture<'a> = Pin<Box<dyn Future<Output = Result<Box<RawValue>, Failure>> + Send + 'a>>;

/// Requests to connected clients, answered by them.
pub trait ClientCalls: Send + Sync + 'static {
    /// Send `action` with `params` to `target`, in the dialect it speaks,
    /// and wait at most `timeout` for its answer: `NOT_FOUND`,
    /// `CLIENT_BUSY`, `CLIENT_TIMEOUT`, `CLIENT_DISCONNECTED`, or the
    /// client's own failure.
    fn call<'a>(&'a self, target: &'a ClientRef, action: &'a str, params: &'a RawValue, timeout: Duration) -> CallFuture<'a>;
}

/// Why a key-value write was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KvError {
    #[error("value of {len} bytes is over the {limit}-byte limit")]
    ValueTooLarge { len: usize, limit: usize },
    #[error("plugin already has {limit} keys")]
    TooManyKeys { limit: usize },
    /// The store could not commit the write; nothing changed.
    #[error("the key-value store is unavailable: {0}")]
    Unavailable(String),
}

/// A write in progress: done (and durable, for a durable store) when it
/// resolves. It runs to the end even if the caller stops waiting.
pub type KvWrite = Pin<Box<dyn Future<Output = Result<(), KvError>> + Send + 'static>>;

/// Key-value state scoped by plugin name, outliving any one plugin version.
/// Reads come from memory and never wait; writes may wait for a commit.
pub trait KvStore: Send + Sync + 'static {
    fn get(&self, plugin: &str, key: &str) -> Option<String>;
    fn set(&self, plugin: &str, key: &str, value: String) -> KvWrite;
    fn delete(&self, plugin: &str, key: &str) -> KvWrite;
    fn keys(&self, plugin: &str, prefix: &str) -> Vec<String>;
}

/// A connection as rooms and identities see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub connection_id: String,
    pub device_id: Option<String>,
    pub identity: Option<String>,
}

/// Rooms and device identities, kept by the hub.
pub trait Rooms: Send + Sync + 'static {
    fn join(&self, connection_id: &str, room: &str) -> Result<(), Failure>;
    fn leave(&self, connection_id: &str);
    fn room_of(&self, connection_id: &str) -> Option<String>;
    /// Members in the order they joined.
    fn members(&self, room: &str) -> Vec<Member>;
    fn broadcast(&self, room: &str, message: &RawValue, exclude: Option<&str>) -> Result<u32, Failure>;
    fn set_identity(&self, connection_id: &str, device_id: &str, identity: Option<String>) -> Result<(), Failure>;
    fn identity(&self, connection_id: &str) -> Option<Member>;
    fn send_to_device(&self, device_id: &str, message: &RawValue) -> Result<(), Failure>;
}

/// Host system figures, for monitoring plugins.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Figures {
    pub cpu_percent: f32,
    pub memory_percent: f32,
    pub disk_percent: f32,
    pub net_bytes_sent: u64,
    pub net_bytes_received: u64,
    pub process_count: u32,
}

pub trait SystemFigures: Send + Sync + 'static {
    fn figures(&self) -> Figures;
}
