//! Connections, rooms, device identities, topic subscriptions and fan-out.
//!
//! The hub owns every connection's bounded outbox. A publish serializes its
//! event once and queues the same bytes for each matching connection;
//! delivery is at-most-once. A connection whose outbox is full is a slow
//! consumer: it is evicted (closed with [`crate::wire::close::SLOW_CONSUMER`]) rather
//! than let the host's memory grow. Room joins and leaves are published on
//! `presence.<room>`. Calls to clients wait for their answers in
//! [`Calls`] (`calls.rs`).

mod broker;
mod calls;
mod connection;
mod fanout;

pub use broker::{Broker, Change, Recipient};
pub use calls::Calls;
pub use connection::{Connection, ConnectionInfo, Filters, Outbox, MAX_SUBSCRIPTIONS};

use crate::observability::metrics::HubMetrics;
use crate::routing::router::Claim;
use crate::services::{ClientCalls, ClientRef, EventSink, Member, Rooms};
use crate::store::history::{Direction, History, MessageRecord, Presence, DEVICE_DIRECT, ROOM_BROADCAST};
use crate::sync::{lock, read, write};
use crate::wire::calls::ClientAnswer;
use crate::wire::{frames, ErrorCode, Failure};
use bytes::Bytes;
use connection::{LazyData, QueuedBytes};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant};
use crate::services::CallFuture;

/// Sizes the hub enforces.
#[derive(Debug, Clone, Copy)]
pub struct HubLimits {
    /// Frames queued per connection before it counts as a slow consumer.
    pub outbox_frames: usize,
    /// Bytes queued per connection before it counts as a slow consumer
    /// (one larger frame alone is let through).
    pub outbox_bytes: usize,
    /// Calls waiting for one client's answers at once.
    pub max_client_calls: usize,
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
    calls: Calls,
    history: History,
    /// The other nodes of a cluster; unset on a single host.
    broker: OnceLock<Arc<dyn Broker>>,
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
        Hub::with_history(limits, metrics, History::off())
    }

    /// A hub that records connections and what it delivers in `history`.
    pub fn with_history(limits: HubLimits, metrics: HubMetrics, history: History) -> Self {
        let admission = Arc::new(Admission { counts: Mutex::default(), gauge: metrics.connections.clone() });
        let calls = Calls::new(limits.max_client_calls, metrics.calls.clone());
        let (connections, rooms, devices) = (RwLock::default(), RwLock::default(), RwLock::default());
        Hub { limits, metrics, admission, connections, rooms, devices, calls, history, broker: OnceLock::new() }
    }

    /// Deliver to the other nodes of a cluster through `broker` from now
    /// on (set once, at start).
    pub fn set_broker(&self, broker: Arc<dyn Broker>) {
        let _ = self.broker.set(broker);
    }

    fn broker(&self) -> Option<&Arc<dyn Broker>> {
        self.broker.get()
    }

    fn changed(&self, change: Change<'_>) {
        if let Some(broker) = self.broker() {
            broker.changed(change);
        }
    }

    /// `connection`'s topic subscriptions changed: in a cluster, the other
    /// nodes forward it the topics it wants from when they hear of it.
    pub fn subscriptions_changed(&self, connection: &Connection) {
        self.changed(Change::Upsert(connection));
    }

    /// This node's name in a cluster.
    pub fn node(&self) -> Option<&str> {
        self.broker().map(|b| b.node())
    }

    /// The cluster, for `/api/status` (null on a single host).
    pub fn cluster_status(&self) -> serde_json::Value {
        self.broker().map_or(serde_json::Value::Null, |b| b.status())
    }

    /// Every connection in the cluster (this host's alone without one),
    /// each with its node.
    pub fn connection_infos(&self) -> Vec<ConnectionInfo> {
        let node = self.node().map(str::to_owned);
        let mut list: Vec<_> = self.read().values().map(|c| ConnectionInfo { node: node.clone(), ..c.info() }).collect();
        if let Some(broker) = self.broker() {
            list.extend(broker.connections());
        }
        list
    }

    /// Where connections and messages are recorded.
    pub fn history(&self) -> &History {
        &self.history
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
        let (tx, rx) = flume::bounded(self.limits.outbox_frames.max(1));
        let queued = QueuedBytes::new(self.limits.outbox_bytes);
        let connection = Arc::new(Connection::new(client_id, remote, endpoint, key, &self.metrics, tx, Arc::clone(&queued)));
        self.write().insert(connection.id.clone(), Arc::clone(&connection));
        self.changed(Change::Upsert(&connection));
        self.history.opened(&connection.id, endpoint, connection.client_id.as_deref(), remote.map(|r| r.to_string()));
        (connection, Outbox::new(rx, queued))
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
        self.changed(Change::Closed(id));
    }

    /// Room names and their sizes.
    pub fn room_sizes(&self) -> Vec<(String, usize)> {
        let mut sizes: HashMap<String, usize> = read(&self.rooms).iter().map(|(room, members)| (room.clone(), members.len())).collect();
        if let Some(broker) = self.broker() {
            for room in broker.connections().into_iter().filter_map(|c| c.room) {
                *sizes.entry(room).or_default() += 1;
            }
        }
        sizes.into_iter().collect()
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
        self.changed(Change::Upsert(connection));
        self.presence_event("leave", &room, &connection.member());
    }

    fn presence_event(&self, event: &str, room: &str, member: &Member) {
        let data = frames::presence(event, room, &member.connection_id, member.device_id.as_deref(), member.identity.as_deref());
        let _ = self.publish(&format!("presence.{room}"), &data, "hub");
    }

    /// A member of another node left `room` without saying so (its node is
    /// gone): the leave event, for this node's subscribers only (every
    /// node sends its own).
    pub fn remote_left(&self, room: &str, member: &Member) {
        let data = frames::presence("leave", room, &member.connection_id, member.device_id.as_deref(), member.identity.as_deref());
        let _ = self.fan_out(&format!("presence.{room}"), &data, "hub");
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
        if let Some(broker) = self.broker() {
            broker.broadcast(message, endpoint);
        }
        self.broadcast_here(message, endpoint, None)
    }

    /// [`broadcast_all`](Self::broadcast_all) on this node alone (a
    /// broadcast from another node).
    pub fn broadcast_here(&self, message: &RawValue, endpoint: Option<&str>, except: Option<&str>) -> usize {
        self.offer_where(message, |c| endpoint.is_none_or(|e| c.endpoint == e) && Some(c.id.as_str()) != except)
    }

    /// Queue one message for every connection `to` picks; how many took it.
    fn offer_where(&self, message: &RawValue, to: impl Fn(&Connection) -> bool) -> usize {
        let frame = Bytes::copy_from_slice(message.get().as_bytes());
        self.read().values().filter(|c| to(c)).filter(|c| c.offer(frame.clone())).count()
    }

    /// Queue one message for every connection but `except`.
    pub fn broadcast_except(&self, message: &RawValue, except: Option<&str>) -> usize {
        if let Some(broker) = self.broker() {
            broker.broadcast(message, None);
        }
        self.broadcast_here(message, None, except)
    }

    /// Queue one message for the connections with client id `to`, or the
    /// connection with id `to`, on any node.
    pub fn send_to_client(&self, to: &str, message: &RawValue) -> usize {
        let here = self.offer_where(message, |c| c.id == to || c.client_id.as_deref() == Some(to));
        match self.broker() {
            Some(broker) if here == 0 => {
                broker.direct(&Recipient::Connection(to.to_owned()), message) + broker.direct(&Recipient::Client(to.to_owned()), message)
            }
            Some(broker) => here + broker.direct(&Recipient::Client(to.to_owned()), message),
            None => here,
        }
    }

    /// A direct send from another node, to a recipient here: how many
    /// connections took it.
    pub fn direct_here(&self, to: &Recipient, message: &RawValue) -> usize {
        match to {
            Recipient::Connection(id) => usize::from(self.offer_to(id, message).is_ok()),
            Recipient::Device(device) => {
                let id = read(&self.devices).get(device).cloned();
                id.map_or(0, |id| usize::from(self.offer_to(&id, message).is_ok()))
            }
            Recipient::Client(client) => self.offer_where(message, |c| c.client_id.as_deref() == Some(client)),
        }
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

    /// Send `action` to a client (by connection or device id) and wait at
    /// most `timeout` for its answer's data.
    pub async fn call(&self, target: &ClientRef, action: &str, params: &RawValue, timeout: Duration) -> Result<Box<RawValue>, Failure> {
        let connection = match target {
            ClientRef::Connection(id) => self.connection(id),
            ClientRef::Device(device) => read(&self.devices).get(device).cloned().and_then(|id| self.connection(&id)),
        };
        let Some(connection) = connection else {
            return Err(Failure::new(ErrorCode::NotFound, format!("no connected client {target}")));
        };
        self.calls.call(&connection, action, params, timeout).await
    }

    /// Hand a client's answer to the call waiting for it; false if none of
    /// that connection's calls does (the answer is dropped and counted).
    pub fn answered(&self, connection_id: &str, answer: ClientAnswer) -> bool {
        self.calls.answered(connection_id, answer)
    }

    /// The client on `connection_id` has gone (its socket ended) while the
    /// connection still answers its last message: its calls fail now.
    pub fn client_gone(&self, connection_id: &str) {
        self.calls.abandon(connection_id);
    }

    /// Calls to clients waiting for an answer now.
    pub fn calls_waiting(&self) -> usize {
        self.calls.waiting()
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

fn not_found(connection_id: &str) -> Failure {
    Failure::new(ErrorCode::ConnectionNotFound, format!("no connection {connection_id}"))
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
        self.changed(Change::Upsert(&connection));
        let member = connection.member();
        self.presence_event("join", room, &member);
        if self.history.enabled() {
            self.history.joined(room, member.device_id.as_deref(), connection.remote.map(|r| r.ip().to_string()));
        }
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
        let mut members: Vec<Member> = ids.iter().filter_map(|id| self.connection(id)).map(|c| c.member()).collect();
        if let Some(broker) = self.broker() {
            members.extend(broker.members(room));
        }
        members
    }

    fn broadcast(&self, room: &str, message: &RawValue, exclude: Option<&str>) -> Result<u32, Failure> {
        if let Some(broker) = self.broker() {
            broker.room(room, message, exclude);
        }
        self.room_here(room, message, exclude)
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
            self.changed(Change::Upsert(&old));
        }
        let mut presence = lock(&connection.presence);
        let before = presence.device_id.replace(device_id.to_owned());
        let changed = before.as_deref() != Some(device_id);
        if let Some(old_device) = before.filter(|_| changed) {
            write(&self.devices).remove(&old_device);
        }
        presence.identity = identity;
        drop(presence);
        if changed {
            // History has the device as soon as it is known.
            self.history.identified(connection_id, device_id);
        }
        self.changed(Change::Upsert(&connection));
        Ok(())
    }

    fn identity(&self, connection_id: &str) -> Option<Member> {
        self.connection(connection_id).map(|c| c.member()).filter(|m| m.device_id.is_some())
    }

    fn send_to_device(&self, device_id: &str, message: &RawValue) -> Result<(), Failure> {
        let here = read(&self.devices).get(device_id).cloned();
        let Some(connection_id) = here else {
            let forwarded = self.broker().map_or(0, |b| b.direct(&Recipient::Device(device_id.to_owned()), message));
            if forwarded > 0 {
                return Ok(());
            }
            return Err(Failure::new(ErrorCode::DeviceNotFound, format!("no connected device {device_id}")));
        };
        self.offer_to(&connection_id, message)?;
        if self.history.enabled() {
            let target = self.connection(&connection_id).map(|c| c as Arc<dyn Presence>);
            self.delivered(DEVICE_DIRECT, None, &format!("device:{device_id}"), message, target);
        }
        Ok(())
    }
}

impl Hub {
    /// A room message to the room's members on this node.
    pub fn room_here(&self, room: &str, message: &RawValue, exclude: Option<&str>) -> Result<u32, Failure> {
        let started = Instant::now();
        let mut shared = None;
        let mut queued = 0;
        {
            // Each map is read once for the whole room (neither lock is
            // ever held while the other is written).
            let (rooms, connections) = (read(&self.rooms), self.read());
            let members = rooms.get(room).map(Vec::as_slice).unwrap_or_default();
            for connection in members.iter().filter(|id| Some(id.as_str()) != exclude).filter_map(|id| connections.get(id)) {
                let frame = shared.get_or_insert_with(|| {
                    fanout::timed(Bytes::copy_from_slice(message.get().as_bytes()), started, &self.metrics.fanout.0)
                });
                queued += u32::from(connection.offer(frame.clone()));
            }
        }
        drop(shared);
        if self.history.enabled() {
            let sender = exclude.and_then(|id| self.connection(id)).map(|c| c as Arc<dyn Presence>);
            self.delivered(ROOM_BROADCAST, exclude, &format!("room:{room}"), message, sender);
        }
        Ok(queued)
    }
}

impl ClientCalls for Hub {
    fn call<'a>(&'a self, target: &'a ClientRef, action: &'a str, params: &'a RawValue, timeout: Duration) -> CallFuture<'a> {
        Box::pin(Hub::call(self, target, action, params, timeout))
    }
}

impl EventSink for Hub {
    fn publish(&self, topic: &str, data: &RawValue, source: &str) -> Result<usize, Failure> {
        let queued = self.fan_out(topic, data, source)?;
        if let Some(broker) = self.broker() {
            broker.publish(topic, data, source);
        }
        self.delivered("event", Some(source), &format!("topic:{topic}"), data, None);
        Ok(queued)
    }

    fn send(&self, connection_id: &str, message: &RawValue) -> Result<(), Failure> {
        if self.connection(connection_id).is_none() {
            if let Some(broker) = self.broker() {
                if broker.direct(&Recipient::Connection(connection_id.to_owned()), message) > 0 {
                    return Ok(());
                }
            }
        }
        self.offer_to(connection_id, message)?;
        self.delivered("connection.send", None, &format!("connection:{connection_id}"), message, None);
        Ok(())
    }
}

impl Hub {
    /// An event to the matching subscribers on this node, not recorded in
    /// history: the local half of a publish, an event from another node
    /// (recorded where it was published), and the admin feed's snapshots,
    /// which describe traffic rather than being any.
    pub fn fan_out(&self, topic: &str, data: &RawValue, source: &str) -> Result<usize, Failure> {
        if Claim::parse(topic).ok().filter(|c| matches!(c, Claim::Exact(_))).is_none() {
            return Err(Failure::new(ErrorCode::InvalidMessage, format!("invalid topic {topic:?}")));
        }
        let started = Instant::now();
        let frame = frames::event(topic, data, source)?;
        // Timed from its first subscriber on: an event nobody wants is not a fan-out.
        let mut shared = None;
        let mut lazy = LazyData::new(data);
        let mut queued = 0;
        for connection in self.read().values() {
            if connection.wants(topic, &mut lazy) {
                let frame = shared.get_or_insert_with(|| fanout::timed(frame.clone(), started, &self.metrics.fanout.0));
                queued += usize::from(connection.offer(frame.clone()));
            }
        }
        drop(shared);
        Ok(queued)
    }

    /// Record one message the host sent out, to `target`.
    fn delivered(&self, kind: &str, sender: Option<&str>, target: &str, message: &RawValue, presence: Option<Arc<dyn Presence>>) {
        self.history.message(kind, message.get(), || MessageRecord {
            id: String::new(),
            kind: kind.to_owned(),
            sender: sender.map(str::to_owned),
            target: Some(target.to_owned()),
            direction: Some(Direction::Out),
            outcome: "OK".to_owned(),
            presence,
            ..MessageRecord::default()
        });
    }

    fn offer_to(&self, connection_id: &str, message: &RawValue) -> Result<(), Failure> {
        let connection = self.live(connection_id)?;
        if connection.offer(Bytes::copy_from_slice(message.get().as_bytes())) {
            Ok(())
        } else {
            Err(Failure::new(ErrorCode::ConnectionNotFound, format!("connection {connection_id} is closing")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn raw(v: Value) -> Box<RawValue> {
        serde_json::value::to_raw_value(&v).unwrap()
    }

    #[tokio::test]
    async fn patterns_and_filters_select_events() {
        let hub = Hub::new(HubLimits { outbox_frames: 16, outbox_bytes: 1 << 20, max_client_calls: 4 }, HubMetrics::default());
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
    async fn a_call_reaches_a_device_and_its_answer_comes_back_to_it_alone() {
        let hub = Arc::new(Hub::new(HubLimits { outbox_frames: 16, outbox_bytes: 1 << 20, max_client_calls: 1 }, HubMetrics::default()));
        let (device, mut outbox) = hub.connect(None, None, "/ws", None);
        let (other, _other_outbox) = hub.connect(None, None, "/ws", None);
        hub.set_identity(&device.id, "sensor-1", None).unwrap();
        let params = raw(json!({"unit": "C"}));
        let target = ClientRef::Device("sensor-1".into());
        let call = hub.call(&target, "read", &params, Duration::from_secs(5));
        let answer = async {
            let frame: Value = serde_json::from_slice(&outbox.recv().await.unwrap()).unwrap();
            assert_eq!((frame["type"].as_str(), &frame["data"]), (Some("read"), &json!({"unit": "C"})));
            let id = frame["id"].as_str().unwrap();
            // Busy while it waits; another connection cannot answer for it.
            let busy = hub.call(&target, "read", &params, Duration::from_secs(5)).await.unwrap_err();
            assert!(busy.is(ErrorCode::ClientBusy));
            let text = json!({"type": "reply", "id": id, "data": 21.5}).to_string();
            assert!(!hub.answered(&other.id, crate::wire::calls::answer(&text).unwrap()));
            assert!(hub.answered(&device.id, crate::wire::calls::answer(&text).unwrap()));
        };
        let (answered, ()) = tokio::join!(call, answer);
        assert_eq!(answered.unwrap().get(), "21.5");
        assert_eq!(hub.calls_waiting(), 0);
        let gone = hub.call(&ClientRef::Device("sensor-2".into()), "read", &params, Duration::from_secs(5)).await;
        assert!(gone.unwrap_err().is(ErrorCode::NotFound));
    }

    /// Records what the hub hands the other nodes.
    #[derive(Default)]
    struct Recorder {
        sent: Mutex<Vec<String>>,
    }

    impl Broker for Recorder {
        fn publish(&self, topic: &str, _: &RawValue, _: &str) {
            lock(&self.sent).push(format!("publish {topic}"));
        }
        fn room(&self, room: &str, _: &RawValue, exclude: Option<&str>) {
            lock(&self.sent).push(format!("room {room} {}", exclude.is_some()));
        }
        fn broadcast(&self, _: &RawValue, _: Option<&str>) {
            lock(&self.sent).push("broadcast".into());
        }
        fn direct(&self, to: &Recipient, _: &RawValue) -> usize {
            lock(&self.sent).push(format!("direct {to:?}"));
            usize::from(matches!(to, Recipient::Device(d) if d == "far"))
        }
        fn changed(&self, change: Change<'_>) {
            let what = match change {
                Change::Upsert(c) => format!("upsert {:?}", lock(&c.presence).room),
                Change::Closed(_) => "closed".into(),
            };
            lock(&self.sent).push(what);
        }
        fn members(&self, _: &str) -> Vec<Member> {
            vec![Member { connection_id: "remote-1".into(), device_id: Some("far".into()), identity: None }]
        }
        fn connections(&self) -> Vec<ConnectionInfo> {
            Vec::new()
        }
        fn node(&self) -> &str {
            "here"
        }
        fn status(&self) -> Value {
            json!({"node": "here"})
        }
    }

    #[tokio::test]
    async fn local_delivery_comes_first_and_each_message_goes_to_the_broker_once() {
        let hub = Hub::new(HubLimits { outbox_frames: 16, outbox_bytes: 1 << 20, max_client_calls: 4 }, HubMetrics::default());
        let broker = Arc::new(Recorder::default());
        hub.set_broker(broker.clone());
        let (a, mut a_rx) = hub.connect(None, None, "/ws", None);
        let (b, _b_rx) = hub.connect(None, None, "/ws", None);
        a.subscribe(&["news".into()], Filters::new()).unwrap();
        b.subscribe(&["news".into()], Filters::new()).unwrap();
        assert_eq!(hub.publish("news", &raw(json!(1)), "t").unwrap(), 2, "both local subscribers");
        assert!(a_rx.try_recv().is_ok());
        hub.join(&a.id, "R").unwrap();
        hub.broadcast("R", &raw(json!({"m": 1})), Some(&a.id)).unwrap();
        // Members of every node, this node's first.
        let members: Vec<String> = hub.members("R").into_iter().map(|m| m.connection_id).collect();
        assert_eq!(members, [a.id.clone(), "remote-1".into()]);
        // A device elsewhere is reached through the broker; one nowhere is not found.
        hub.send_to_device("far", &raw(json!({}))).unwrap();
        assert!(hub.send_to_device("nowhere", &raw(json!({}))).unwrap_err().is(ErrorCode::DeviceNotFound));
        hub.disconnect(&b.id);
        let sent = lock(&broker.sent).clone();
        assert_eq!(
            sent,
            [
                "upsert None",
                "upsert None",
                "publish news",
                "upsert Some(\"R\")",
                "publish presence.R",
                "room R true",
                "direct Device(\"far\")",
                "direct Device(\"nowhere\")",
                "closed",
            ]
        );
        assert_eq!(hub.connection_infos().iter().filter(|c| c.node.as_deref() == Some("here")).count(), 1);
    }

    #[tokio::test]
    async fn a_fan_out_is_timed_until_its_last_subscriber_has_taken_the_event() {
        let metrics = HubMetrics::default();
        let hub = Hub::new(HubLimits { outbox_frames: 16, outbox_bytes: 1 << 20, max_client_calls: 4 }, metrics.clone());
        let fanouts = || {
            let mut registry = prometheus_client::registry::Registry::default();
            registry.register("fanout_seconds", "", metrics.fanout.0.clone());
            let mut text = String::new();
            prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
            text.lines().find_map(|l| l.strip_prefix("fanout_seconds_count ")).unwrap().parse::<u64>().unwrap()
        };
        let (first, mut first_rx) = hub.connect(None, None, "/ws", None);
        let (second, mut second_rx) = hub.connect(None, None, "/ws", None);
        first.subscribe(&["tick".into()], Filters::new()).unwrap();
        second.subscribe(&["tick".into()], Filters::new()).unwrap();

        // Nobody subscribed: no fan-out to time.
        assert_eq!(hub.publish("tock", &raw(json!(0)), "t").unwrap(), 0);
        assert_eq!(fanouts(), 0);
        assert_eq!(hub.publish("tick", &raw(json!(1)), "t").unwrap(), 2);
        let taken = first_rx.recv().await.unwrap();
        drop(taken);
        assert_eq!(fanouts(), 0, "the second subscriber still has it queued");
        let taken = second_rx.recv().await.unwrap();
        assert_eq!(serde_json::from_slice::<Value>(&taken).unwrap()["data"], 1);
        drop(taken);
        assert_eq!(fanouts(), 1);
    }

    #[tokio::test]
    async fn a_full_outbox_evicts_the_slow_consumer() {
        let hub = Hub::new(HubLimits { outbox_frames: 2, outbox_bytes: 1 << 20, max_client_calls: 4 }, HubMetrics::default());
        let (slow, _rx) = hub.connect(None, None, "/ws", None);
        slow.subscribe(&["tick".into()], Filters::new()).unwrap();
        for _ in 0..3 {
            hub.publish("tick", &raw(json!(1)), "t").unwrap();
        }
        assert_eq!(slow.eviction().map(|(code, _)| code), Some(crate::wire::close::SLOW_CONSUMER));
    }

    #[tokio::test]
    async fn the_outbox_is_bounded_in_bytes_and_gives_them_back_as_the_writer_takes() {
        let hub = Hub::new(HubLimits { outbox_frames: 100, outbox_bytes: 1000, max_client_calls: 4 }, HubMetrics::default());
        let (connection, mut outbox) = hub.connect(None, None, "/ws", None);
        let patience = std::time::Duration::from_millis(50);
        // One frame over the bound goes out alone into an empty queue...
        assert!(connection.deliver(Bytes::from(vec![b'x'; 5000]), patience).await);
        // ...and nothing joins it until the writer takes it.
        assert!(!connection.offer(Bytes::from_static(b"tiny")));
        assert_eq!(connection.eviction().map(|(code, _)| code), Some(crate::wire::close::SLOW_CONSUMER));

        let (connection, mut outbox_2) = hub.connect(None, None, "/ws", None);
        for _ in 0..3 {
            assert!(connection.deliver(Bytes::from(vec![b'y'; 300]), patience).await);
        }
        // 900 of 1000 bytes queued: a 300-byte reply waits for room, and gets it when the writer takes one.
        let waiting = tokio::spawn({
            let connection = Arc::clone(&connection);
            async move { connection.deliver(Bytes::from(vec![b'z'; 300]), std::time::Duration::from_secs(5)).await }
        });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!waiting.is_finished());
        assert_eq!(outbox_2.recv().await.unwrap().len(), 300);
        assert!(waiting.await.unwrap(), "room was made");
        assert!(connection.eviction().is_none());
        // With no room made in time, the reply evicts the connection.
        assert!(!connection.deliver(Bytes::from(vec![b'w'; 300]), patience).await);
        assert_eq!(connection.eviction().map(|(code, _)| code), Some(crate::wire::close::SLOW_CONSUMER));
        drop(outbox.recv().await);
    }
}
