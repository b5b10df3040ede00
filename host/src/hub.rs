//! Connections, rooms, device identities, topic subscriptions and fan-out.
//!
//! The hub owns every connection's bounded outbox. A publish serializes its
//! event once and queues the same bytes for each matching connection;
//! delivery is at-most-once. A connection whose outbox is full is a slow
//! consumer: it is evicted (closed with [`close::SLOW_CONSUMER`]) rather
//! than let the host's memory grow. Room joins and leaves are published on
//! `presence.<room>`.

use crate::envelope::{self, ErrorCode, Failure};
use crate::metrics::HubMetrics;
use crate::router::Claim;
use crate::services::{EventSink, Member, Rooms};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, SystemTime};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// WebSocket close codes the host sends, besides the standard ones
/// (1000 normal, 1001 shutting down, 1009 frame too big).
pub mod close {
    /// No frame, not even a pong, within the idle timeout.
    pub const IDLE_TIMEOUT: u16 = 4000;
    /// Authentication failed, or the key was revoked.
    pub const AUTHENTICATION_FAILED: u16 = 4001;
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
    /// The endpoint path it connected to.
    pub endpoint: String,
    /// The name of the API key it authenticated with.
    pub key: Option<String>,
    pub connected_at: SystemTime,
    outbox_drops: prometheus_client::metrics::counter::Counter,
    presence: Mutex<Presence>,
    /// Plugins this connection has sent messages to, for their
    /// `connection-closed` hook.
    touched: Mutex<Vec<String>>,
    outbox: mpsc::Sender<Bytes>,
    evicted: CancellationToken,
    eviction: OnceLock<(u16, String)>,
    subscriptions: Mutex<Vec<Subscription>>,
}

/// Who is on a connection and where.
#[derive(Debug, Default, Clone)]
struct Presence {
    device_id: Option<String>,
    identity: Option<String>,
    room: Option<String>,
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
                self.outbox_drops.inc();
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
                self.outbox_drops.inc();
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
        let mut subs = lock(&self.subscriptions);
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
        let mut subs = lock(&self.subscriptions);
        subs.retain(|s| !patterns.iter().any(|p| *p == s.pattern.to_string()));
        subs.iter().map(|s| s.pattern.to_string()).collect()
    }

    /// Note that this connection sends a message to `plugin`; true the first time.
    pub fn touch(&self, plugin: &str) -> bool {
        let mut touched = lock(&self.touched);
        let first = !touched.iter().any(|p| p == plugin);
        if first {
            touched.push(plugin.to_owned());
        }
        first
    }

    /// The plugins this connection sent messages to.
    pub fn touched(&self) -> Vec<String> {
        lock(&self.touched).clone()
    }

    /// The topic patterns this connection is subscribed to.
    pub fn subscriptions(&self) -> Vec<String> {
        lock(&self.subscriptions).iter().map(|s| s.pattern.to_string()).collect()
    }

    /// What `GET /api/status` and the console's `list` show.
    pub fn info(&self) -> ConnectionInfo {
        let presence = lock(&self.presence).clone();
        ConnectionInfo {
            id: self.id.clone(),
            client_id: self.client_id.clone(),
            remote: self.remote.map(|r| r.to_string()),
            endpoint: self.endpoint.clone(),
            key: self.key.clone(),
            connected_at: humantime::format_rfc3339_seconds(self.connected_at).to_string(),
            room: presence.room,
            device_id: presence.device_id,
            subscriptions: self.subscriptions(),
        }
    }

    fn member(&self) -> Member {
        let presence = lock(&self.presence);
        Member { connection_id: self.id.clone(), device_id: presence.device_id.clone(), identity: presence.identity.clone() }
    }

    fn wants(&self, topic: &str, data: &mut LazyData) -> bool {
        let subs = lock(&self.subscriptions);
        subs.iter().any(|s| s.pattern.matches(topic) && (s.filters.is_empty() || passes(&s.filters, data.get())))
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Every critical section here is a single collection operation.
    mutex.lock().unwrap_or_else(|p| p.into_inner())
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

/// A connection as the HTTP API lists it.
#[derive(Debug, Clone, Serialize)]
pub struct ConnectionInfo {
    pub id: String,
    pub client_id: Option<String>,
    pub remote: Option<String>,
    pub endpoint: String,
    pub key: Option<String>,
    pub connected_at: String,
    pub room: Option<String>,
    pub device_id: Option<String>,
    pub subscriptions: Vec<String>,
}

/// Sizes the hub enforces.
#[derive(Debug, Clone, Copy)]
pub struct HubLimits {
    /// Frames queued per connection before it counts as a slow consumer.
    pub outbox_frames: usize,
}

/// A place among the admitted connections, held for the connection's
/// life; dropping it frees the place.
pub struct Ticket {
    admission: Arc<Admission>,
    client_id: Option<String>,
}

#[derive(Default)]
struct Admission {
    counts: Mutex<AdmissionCounts>,
    gauge: prometheus_client::metrics::gauge::Gauge,
}

#[derive(Default)]
struct AdmissionCounts {
    total: usize,
    per_client: HashMap<String, usize>,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut counts = lock(&self.admission.counts);
        counts.total -= 1;
        if let Some(id) = &self.client_id {
            if let Some(n) = counts.per_client.get_mut(id) {
                *n -= 1;
                if *n == 0 {
                    counts.per_client.remove(id);
                }
            }
        }
        self.admission.gauge.set(counts.total as i64);
    }
}

/// Every live connection, by id.
pub struct Hub {
    limits: HubLimits,
    metrics: HubMetrics,
    admission: Arc<Admission>,
    connections: RwLock<HashMap<String, Arc<Connection>>>,
    /// Room name to member connection ids, in join order.
    rooms: RwLock<HashMap<String, Vec<String>>>,
    /// Device id to the connection it is on.
    devices: RwLock<HashMap<String, String>>,
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
    pub fn new(limits: HubLimits, metrics: HubMetrics) -> Self {
        let admission = Arc::new(Admission { counts: Mutex::default(), gauge: metrics.connections.clone() });
        Hub { limits, metrics, admission, connections: RwLock::default(), rooms: RwLock::default(), devices: RwLock::default() }
    }

    /// Reserve a place for one more connection, within `max` in all and
    /// `max_per_client` for its client id. Check and reservation are one
    /// step, so concurrent upgrades cannot overshoot.
    pub fn admit(&self, client_id: Option<&str>, max: usize, max_per_client: usize) -> Result<Ticket, Failure> {
        let mut counts = lock(&self.admission.counts);
        if counts.total >= max {
            return Err(Failure::new(ErrorCode::TooManyConnections, format!("the host holds its maximum of {max} connections")));
        }
        if let Some(id) = client_id {
            let n = counts.per_client.entry(id.to_owned()).or_default();
            if *n >= max_per_client {
                return Err(Failure::new(
                    ErrorCode::TooManyConnections,
                    format!("client {id:?} already holds its maximum of {max_per_client} connections"),
                ));
            }
            *n += 1;
        }
        counts.total += 1;
        self.admission.gauge.set(counts.total as i64);
        Ok(Ticket { admission: Arc::clone(&self.admission), client_id: client_id.map(str::to_owned) })
    }

    /// Register a new connection; the outbox is for its writer.
    pub fn connect(
        &self,
        client_id: Option<String>,
        remote: Option<SocketAddr>,
        endpoint: &str,
        key: Option<String>,
    ) -> (Arc<Connection>, Outbox) {
        let (tx, rx) = mpsc::channel(self.limits.outbox_frames.max(1));
        let connection = Arc::new(Connection {
            id: uuid::Uuid::new_v4().simple().to_string(),
            client_id,
            remote,
            endpoint: endpoint.to_owned(),
            key,
            connected_at: SystemTime::now(),
            outbox_drops: self.metrics.outbox_drops.clone(),
            presence: Mutex::default(),
            touched: Mutex::default(),
            outbox: tx,
            evicted: CancellationToken::new(),
            eviction: OnceLock::new(),
            subscriptions: Mutex::default(),
        });
        self.write().insert(connection.id.clone(), Arc::clone(&connection));
        (connection, rx)
    }

    /// Forget a connection: it leaves its room and releases its device id.
    pub fn disconnect(&self, id: &str) {
        let Some(connection) = write(&self.connections).remove(id) else { return };
        self.leave_room(&connection);
        let device = lock(&connection.presence).device_id.take();
        if let Some(device) = device {
            let mut devices = write(&self.devices);
            if devices.get(&device).is_some_and(|c| c == id) {
                devices.remove(&device);
            }
        }
    }

    /// Room names and their sizes.
    pub fn room_sizes(&self) -> Vec<(String, usize)> {
        read(&self.rooms).iter().map(|(room, members)| (room.clone(), members.len())).collect()
    }

    fn leave_room(&self, connection: &Connection) {
        let Some(room) = lock(&connection.presence).room.take() else { return };
        let mut rooms = write(&self.rooms);
        if let Some(members) = rooms.get_mut(&room) {
            members.retain(|m| *m != connection.id);
            if members.is_empty() {
                rooms.remove(&room);
            }
        }
        drop(rooms);
        self.presence_event("leave", &room, &connection.member());
    }

    fn presence_event(&self, event: &str, room: &str, member: &Member) {
        let data = serde_json::json!({
            "event": event,
            "room": room,
            "connection_id": member.connection_id,
            "device_id": member.device_id,
            "identity": member.identity,
        });
        if let Ok(raw) = serde_json::value::to_raw_value(&data) {
            let _ = self.publish(&format!("presence.{room}"), &raw, "hub");
        }
    }

    pub fn connection(&self, id: &str) -> Option<Arc<Connection>> {
        self.read().get(id).cloned()
    }

    pub fn connection_count(&self) -> usize {
        self.read().len()
    }

    /// Every live connection.
    pub fn connections(&self) -> Vec<Arc<Connection>> {
        self.read().values().cloned().collect()
    }

    /// Topic patterns held by any connection, and how many hold each.
    pub fn topics(&self) -> Vec<(String, usize)> {
        let mut counts: HashMap<String, usize> = HashMap::new();
        for connection in self.read().values() {
            for pattern in connection.subscriptions() {
                *counts.entry(pattern).or_default() += 1;
            }
        }
        let mut topics: Vec<_> = counts.into_iter().collect();
        topics.sort();
        topics
    }

    /// Queue one message for every connection (on `endpoint`, if given);
    /// returns how many it was queued for.
    pub fn broadcast_all(&self, message: &RawValue, endpoint: Option<&str>) -> usize {
        self.offer_where(message, |c| endpoint.is_none_or(|e| c.endpoint == e))
    }

    /// Queue one message for every connection `to` picks; how many took it.
    fn offer_where(&self, message: &RawValue, to: impl Fn(&Connection) -> bool) -> usize {
        let frame = Bytes::copy_from_slice(message.get().as_bytes());
        self.read().values().filter(|c| to(c)).filter(|c| c.offer(frame.clone())).count()
    }

    /// Queue one message for every connection but `except`.
    pub fn broadcast_except(&self, message: &RawValue, except: Option<&str>) -> usize {
        self.offer_where(message, |c| Some(c.id.as_str()) != except)
    }

    /// Queue one message for the connections with client id `to`, or the
    /// connection with id `to`.
    pub fn send_to_client(&self, to: &str, message: &RawValue) -> usize {
        self.offer_where(message, |c| c.id == to || c.client_id.as_deref() == Some(to))
    }

    /// Close every connection that authenticated with the key `name`.
    pub fn evict_key(&self, name: &str, code: u16, reason: &str) -> usize {
        let connections = self.read();
        let holders: Vec<_> = connections.values().filter(|c| c.key.as_deref() == Some(name)).collect();
        for connection in &holders {
            connection.evict(code, reason);
        }
        holders.len()
    }

    /// Evict every connection (on shutdown).
    pub fn evict_all(&self, code: u16, reason: &str) {
        for connection in self.read().values() {
            connection.evict(code, reason);
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Arc<Connection>>> {
        read(&self.connections)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Arc<Connection>>> {
        write(&self.connections)
    }

    fn live(&self, connection_id: &str) -> Result<Arc<Connection>, Failure> {
        self.connection(connection_id).ok_or_else(|| not_found(connection_id))
    }
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|p| p.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|p| p.into_inner())
}

fn not_found(connection_id: &str) -> Failure {
    Failure::from_plugin("CONNECTION_NOT_FOUND".into(), format!("no connection {connection_id}"))
}

/// Room names are topic segments: letters, digits, `_ - :`, at most 64.
fn check_room(room: &str) -> Result<(), Failure> {
    let ok = !room.is_empty() && room.len() <= 64 && room.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | ':'));
    if ok {
        Ok(())
    } else {
        Err(Failure::new(ErrorCode::InvalidMessage, format!("invalid room name {room:?}: 1-64 of A-Z a-z 0-9 _ - :")))
    }
}

impl Rooms for Hub {
    fn join(&self, connection_id: &str, room: &str) -> Result<(), Failure> {
        check_room(room)?;
        let connection = self.live(connection_id)?;
        if lock(&connection.presence).room.as_deref() == Some(room) {
            return Ok(());
        }
        self.leave_room(&connection);
        write(&self.rooms).entry(room.to_owned()).or_default().push(connection_id.to_owned());
        lock(&connection.presence).room = Some(room.to_owned());
        self.presence_event("join", room, &connection.member());
        Ok(())
    }

    fn leave(&self, connection_id: &str) {
        if let Some(connection) = self.connection(connection_id) {
            self.leave_room(&connection);
        }
    }

    fn room_of(&self, connection_id: &str) -> Option<String> {
        self.connection(connection_id).and_then(|c| lock(&c.presence).room.clone())
    }

    fn members(&self, room: &str) -> Vec<Member> {
        let ids = read(&self.rooms).get(room).cloned().unwrap_or_default();
        ids.iter().filter_map(|id| self.connection(id)).map(|c| c.member()).collect()
    }

    fn broadcast(&self, room: &str, message: &RawValue, exclude: Option<&str>) -> Result<u32, Failure> {
        let frame = Bytes::copy_from_slice(message.get().as_bytes());
        let ids = read(&self.rooms).get(room).cloned().unwrap_or_default();
        let mut queued = 0;
        for connection in ids.iter().filter(|id| Some(id.as_str()) != exclude).filter_map(|id| self.connection(id)) {
            queued += u32::from(connection.offer(frame.clone()));
        }
        Ok(queued)
    }

    fn set_identity(&self, connection_id: &str, device_id: &str, identity: Option<String>) -> Result<(), Failure> {
        if device_id.is_empty() || device_id.len() > 128 {
            return Err(Failure::new(ErrorCode::InvalidMessage, "a device id is 1-128 bytes"));
        }
        let connection = self.live(connection_id)?;
        let previous = write(&self.devices).insert(device_id.to_owned(), connection_id.to_owned());
        // A device that reconnected takes its id over from its old connection.
        if let Some(old) = previous.filter(|old| old != connection_id).and_then(|old| self.connection(&old)) {
            lock(&old.presence).device_id = None;
        }
        let mut presence = lock(&connection.presence);
        if let Some(old_device) = presence.device_id.replace(device_id.to_owned()).filter(|d| d != device_id) {
            write(&self.devices).remove(&old_device);
        }
        presence.identity = identity;
        Ok(())
    }

    fn identity(&self, connection_id: &str) -> Option<Member> {
        self.connection(connection_id).map(|c| c.member()).filter(|m| m.device_id.is_some())
    }

    fn send_to_device(&self, device_id: &str, message: &RawValue) -> Result<(), Failure> {
        let connection_id = read(&self.devices).get(device_id).cloned().ok_or_else(|| {
            Failure::from_plugin("DEVICE_NOT_FOUND".into(), format!("no connected device {device_id}"))
        })?;
        self.send(&connection_id, message)
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
        let connection = self.live(connection_id)?;
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
        let hub = Hub::new(HubLimits { outbox_frames: 16 }, HubMetrics::default());
        let (all_alerts, mut all_rx) = hub.connect(None, None, "/ws", None);
        let (critical, mut crit_rx) = hub.connect(None, None, "/ws", None);
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
        let hub = Hub::new(HubLimits { outbox_frames: 2 }, HubMetrics::default());
        let (slow, _rx) = hub.connect(None, None, "/ws", None);
        slow.subscribe(&["tick".into()], Filters::new()).unwrap();
        for _ in 0..3 {
            hub.publish("tick", &raw(json!(1)), "t").unwrap();
        }
        assert_eq!(slow.eviction().map(|(code, _)| code), Some(close::SLOW_CONSUMER));
    }
}
