//! Connections, topic subscriptions and fan-out.
//!
//! The hub owns every connection's bounded outbox. A publish serializes its
//! event once and queues the same bytes for each matching connection;
//! delivery is at-most-once. A connection whose outbox is full is a slow
//! consumer: it is evicted (closed with [`close::SLOW_CONSUMER`]) rather
//! than let the host's memory grow.

use crate::envelope::{self, ErrorCode, Failure};
use crate::router::Claim;
use crate::services::EventSink;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// WebSocket close codes the host sends, besides the standard ones
/// (1000 normal, 1001 shutting down, 1009 frame too big).
pub mod close {
    /// No frame, not even a pong, within the idle timeout.
    pub const IDLE_TIMEOUT: u16 = 4000;
    /// The connection's send queue overflowed: it was not reading.
    pub const SLOW_CONSUMER: u16 = 4008;
}

/// Most subscriptions one connection may hold.
pub const MAX_SUBSCRIPTIONS: usize = 256;

/// One connected client, as the rest of the host sees it.
pub struct Connection {
    pub id: String,
    pub client_id: Option<String>,
    pub remote: Option<SocketAddr>,
    outbox: mpsc::Sender<Bytes>,
    evicted: CancellationToken,
    eviction: OnceLock<(u16, String)>,
    subscriptions: Mutex<Vec<Subscription>>,
}

/// A topic pattern (exact or `prefix.*`) and its data filters.
#[derive(Debug, Clone)]
struct Subscription {
    pattern: Claim,
    filters: Arc<Filters>,
}

/// Field name to accepted values: an event passes if every named field of
/// its data holds one of that field's values.
pub type Filters = HashMap<String, Vec<Value>>;

impl Connection {
    /// Queue a frame, waiting at most `patience` for room; a client that
    /// does not make room in time is evicted as a slow consumer.
    pub async fn deliver(&self, frame: Bytes, patience: Duration) -> bool {
        match tokio::time::timeout(patience, self.outbox.send(frame)).await {
            Ok(Ok(())) => true,
            Ok(Err(_)) => false,
            Err(_) => {
                self.evict(close::SLOW_CONSUMER, "send queue full: the client is not reading");
                false
            }
        }
    }

    /// Queue a frame now or evict the connection.
    fn offer(&self, frame: Bytes) -> bool {
        match self.outbox.try_send(frame) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.evict(close::SLOW_CONSUMER, "send queue full: the client is not reading");
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    /// Close this connection with `code`; the first eviction wins.
    pub fn evict(&self, code: u16, reason: &str) {
        if self.eviction.set((code, reason.to_owned())).is_ok() {
            tracing::info!(connection = %self.id, code, reason, "evicting connection");
        }
        self.evicted.cancel();
    }

    /// Resolves once the connection has been evicted.
    pub async fn evicted(&self) {
        self.evicted.cancelled().await
    }

    /// Why the connection was evicted, if it was.
    pub fn eviction(&self) -> Option<(u16, &str)> {
        self.eviction.get().map(|(code, reason)| (*code, reason.as_str()))
    }

    /// Add subscriptions; returns the patterns now held.
    pub fn subscribe(&self, patterns: &[String], filters: Filters) -> Result<Vec<String>, Failure> {
        let parsed = patterns
            .iter()
            .map(|p| Claim::parse(p).map_err(|e| Failure::new(ErrorCode::InvalidMessage, e.to_string())))
            .collect::<Result<Vec<_>, _>>()?;
        let filters = Arc::new(filters);
        let mut subs = self.subscriptions.lock().unwrap_or_else(|p| p.into_inner());
        for pattern in parsed {
            subs.retain(|s| s.pattern != pattern);
            subs.push(Subscription { pattern, filters: Arc::clone(&filters) });
        }
        if subs.len() > MAX_SUBSCRIPTIONS {
            subs.truncate(MAX_SUBSCRIPTIONS);
            return Err(Failure::new(
                ErrorCode::InvalidMessage,
                format!("a connection may hold at most {MAX_SUBSCRIPTIONS} subscriptions"),
            ));
        }
        Ok(subs.iter().map(|s| s.pattern.to_string()).collect())
    }

    /// Drop subscriptions by pattern; returns the patterns still held.
    pub fn unsubscribe(&self, patterns: &[String]) -> Vec<String> {
        let mut subs = self.subscriptions.lock().unwrap_or_else(|p| p.into_inner());
        subs.retain(|s| !patterns.iter().any(|p| *p == s.pattern.to_string()));
        subs.iter().map(|s| s.pattern.to_string()).collect()
    }

    fn wants(&self, topic: &str, data: &mut LazyData) -> bool {
        let subs = self.subscriptions.lock().unwrap_or_else(|p| p.into_inner());
        subs.iter().any(|s| s.pattern.matches(topic) && (s.filters.is_empty() || passes(&s.filters, data.get())))
    }
}

/// An event's data, parsed only if some subscription filters on it.
struct LazyData<'a> {
    raw: &'a RawValue,
    parsed: Option<Map<String, Value>>,
}

impl LazyData<'_> {
    fn get(&mut self) -> &Map<String, Value> {
        let raw = self.raw;
        self.parsed.get_or_insert_with(|| serde_json::from_str(raw.get()).unwrap_or_default())
    }
}

fn passes(filters: &Filters, data: &Map<String, Value>) -> bool {
    filters.iter().all(|(field, allowed)| data.get(field).is_some_and(|v| allowed.contains(v)))
}

/// The outbox's receiving end, held by the connection's writer.
pub type Outbox = mpsc::Receiver<Bytes>;

/// Sizes the hub enforces.
#[derive(Debug, Clone, Copy)]
pub struct HubLimits {
    /// Frames queued per connection before it counts as a slow consumer.
    pub outbox_frames: usize,
}

/// Every live connection, by id.
pub struct Hub {
    limits: HubLimits,
    connections: RwLock<HashMap<String, Arc<Connection>>>,
}

/// An event as clients receive it.
#[derive(Serialize)]
struct Event<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    id: String,
    timestamp: String,
    data: &'a RawValue,
    meta: EventMeta<'a>,
}

#[derive(Serialize)]
struct EventMeta<'a> {
    topic: &'a str,
    source: &'a str,
}

/// The `data` of a `subscribe` request (the monitoring feed's format).
#[derive(Debug, Deserialize)]
pub struct SubscribeRequest {
    pub events: Vec<String>,
    #[serde(default)]
    pub filters: Filters,
}

impl Hub {
    pub fn new(limits: HubLimits) -> Self {
        Hub { limits, connections: RwLock::default() }
    }

    /// Register a new connection; the outbox is for its writer.
    pub fn connect(&self, client_id: Option<String>, remote: Option<SocketAddr>) -> (Arc<Connection>, Outbox) {
        let (tx, rx) = mpsc::channel(self.limits.outbox_frames.max(1));
        let connection = Arc::new(Connection {
            id: uuid::Uuid::new_v4().simple().to_string(),
            client_id,
            remote,
            outbox: tx,
            evicted: CancellationToken::new(),
            eviction: OnceLock::new(),
            subscriptions: Mutex::default(),
        });
        self.write().insert(connection.id.clone(), Arc::clone(&connection));
        (connection, rx)
    }

    pub fn disconnect(&self, id: &str) {
        self.write().remove(id);
    }

    pub fn connection(&self, id: &str) -> Option<Arc<Connection>> {
        self.read().get(id).cloned()
    }

    pub fn connection_count(&self) -> usize {
        self.read().len()
    }

    /// Evict every connection (on shutdown).
    pub fn evict_all(&self, code: u16, reason: &str) {
        for connection in self.read().values() {
            connection.evict(code, reason);
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Arc<Connection>>> {
        self.connections.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Arc<Connection>>> {
        self.connections.write().unwrap_or_else(|p| p.into_inner())
    }
}

impl EventSink for Hub {
    fn publish(&self, topic: &str, data: &RawValue, source: &str) -> Result<usize, Failure> {
        if Claim::parse(topic).ok().filter(|c| matches!(c, Claim::Exact(_))).is_none() {
            return Err(Failure::new(ErrorCode::InvalidMessage, format!("invalid topic {topic:?}")));
        }
        // `alert.cpu` reaches clients as an event of type `alert`.
        let kind = topic.split('.').next().unwrap_or(topic);
        let event = Event {
            kind,
            id: uuid::Uuid::new_v4().simple().to_string(),
            timestamp: envelope::now_rfc3339(),
            data,
            meta: EventMeta { topic, source },
        };
        let frame = Bytes::from(serde_json::to_vec(&event).map_err(|e| Failure::new(ErrorCode::Internal, e.to_string()))?);
        let mut lazy = LazyData { raw: data, parsed: None };
        let mut queued = 0;
        for connection in self.read().values() {
            if connection.wants(topic, &mut lazy) && connection.offer(frame.clone()) {
                queued += 1;
            }
        }
        Ok(queued)
    }

    fn send(&self, connection_id: &str, message: &RawValue) -> Result<(), Failure> {
        let connection = self.connection(connection_id).ok_or_else(|| {
            Failure::from_plugin("CONNECTION_NOT_FOUND".into(), format!("no connection {connection_id}"))
        })?;
        if connection.offer(Bytes::copy_from_slice(message.get().as_bytes())) {
            Ok(())
        } else {
            Err(Failure::from_plugin("CONNECTION_NOT_FOUND".into(), format!("connection {connection_id} is closing")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn raw(v: Value) -> Box<RawValue> {
        serde_json::value::to_raw_value(&v).unwrap()
    }

    #[tokio::test]
    async fn patterns_and_filters_select_events() {
        let hub = Hub::new(HubLimits { outbox_frames: 16 });
        let (all_alerts, mut all_rx) = hub.connect(None, None);
        let (critical, mut crit_rx) = hub.connect(None, None);
        all_alerts.subscribe(&["alert.*".into()], Filters::new()).unwrap();
        let filters: Filters = serde_json::from_value(json!({"level": ["critical"]})).unwrap();
        critical.subscribe(&["alert.cpu".into()], filters).unwrap();

        assert_eq!(hub.publish("alert.cpu", &raw(json!({"level": "warning"})), "t").unwrap(), 1);
        assert_eq!(hub.publish("alert.cpu", &raw(json!({"level": "critical"})), "t").unwrap(), 2);
        assert_eq!(hub.publish("performance", &raw(json!({})), "t").unwrap(), 0);

        let first: Value = serde_json::from_slice(&all_rx.recv().await.unwrap()).unwrap();
        assert_eq!(first["type"], "alert");
        assert_eq!(first["meta"]["topic"], "alert.cpu");
        assert_eq!(first["data"]["level"], "warning");
        let only: Value = serde_json::from_slice(&crit_rx.recv().await.unwrap()).unwrap();
        assert_eq!(only["data"]["level"], "critical");
        assert!(crit_rx.try_recv().is_err());

        assert!(all_alerts.unsubscribe(&["alert.*".into()]).is_empty());
        assert_eq!(hub.publish("alert.cpu", &raw(json!({"level": "critical"})), "t").unwrap(), 1);
    }

    #[tokio::test]
    async fn a_full_outbox_evicts_the_slow_consumer() {
        let hub = Hub::new(HubLimits { outbox_frames: 2 });
        let (slow, _rx) = hub.connect(None, None);
        slow.subscribe(&["tick".into()], Filters::new()).unwrap();
        for _ in 0..3 {
            hub.publish("tick", &raw(json!(1)), "t").unwrap();
        }
        assert_eq!(slow.eviction().map(|(code, _)| code), Some(close::SLOW_CONSUMER));
    }
}
