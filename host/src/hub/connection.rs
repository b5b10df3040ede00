//! One connection as the rest of the host sees it: its identity and
//! presence, its topic subscriptions with their filters, and its bounded
//! outbox.
//!
//! The outbox is bounded twice: in frames (`limits.outbox_frames`) and in
//! bytes (`limits.outbox_bytes`), so a client that sends large requests and
//! never reads cannot pin a frame bound's worth of large replies. Bytes are
//! counted when a frame is queued and given back when the writer takes it;
//! a frame larger than the byte bound still goes out alone, into an empty
//! queue. Delivery never blocks the hub: a frame is queued now or the
//! connection is evicted as a slow consumer ([`close::SLOW_CONSUMER`]).

use crate::observability::metrics::HubMetrics;
use crate::routing::router::Claim;
use crate::services::Member;
use crate::sync::lock;
use crate::wire::dialect::Dialect;
use crate::wire::{close, ErrorCode, Failure};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

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
    pub(super) presence: Mutex<Presence>,
    /// Plugins this connection has sent messages to, for their
    /// `connection-closed` hook.
    touched: Mutex<Vec<String>>,
    outbox: flume::Sender<Bytes>,
    queued: Arc<QueuedBytes>,
    evicted: CancellationToken,
    eviction: OnceLock<(u16, String)>,
    subscriptions: Mutex<Vec<Subscription>>,
    /// Whether the client's last request was in the request form
    /// (`msg_id`), so calls to it go out in that form.
    speaks_requests: AtomicBool,
    /// Calls to this client waiting for its answers.
    pub(super) calls_waiting: AtomicUsize,
}

/// Who is on a connection and where.
#[derive(Debug, Default, Clone)]
pub(super) struct Presence {
    pub(super) device_id: Option<String>,
    pub(super) identity: Option<String>,
    pub(super) room: Option<String>,
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
    pub(super) fn new(
        client_id: Option<String>,
        remote: Option<SocketAddr>,
        endpoint: &str,
        key: Option<String>,
        metrics: &HubMetrics,
        outbox: flume::Sender<Bytes>,
        queued: Arc<QueuedBytes>,
    ) -> Connection {
        Connection {
            id: uuid::Uuid::new_v4().simple().to_string(),
            client_id,
            remote,
            endpoint: endpoint.to_owned(),
            key,
            connected_at: SystemTime::now(),
            outbox_drops: metrics.outbox_drops.clone(),
            presence: Mutex::default(),
            touched: Mutex::default(),
            outbox,
            queued,
            evicted: CancellationToken::new(),
            eviction: OnceLock::new(),
            subscriptions: Mutex::default(),
            speaks_requests: AtomicBool::new(false),
            calls_waiting: AtomicUsize::new(0),
        }
    }

    /// Queue a frame, waiting at most `patience` for room (in frames and in
    /// bytes); a client that does not make room in time is evicted as a
    /// slow consumer.
    pub async fn deliver(&self, frame: Bytes, patience: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + patience;
        let len = frame.len();
        while !self.queued.reserve(len) {
            // The writer's next take wakes us (or left a permit if it came first).
            if tokio::time::timeout_at(deadline, self.queued.room.notified()).await.is_err() {
                return self.overflowed();
            }
        }
        match tokio::time::timeout_at(deadline, self.outbox.send_async(frame)).await {
            Ok(Ok(())) => true,
            Ok(Err(_)) => {
                self.queued.release(len);
                false
            }
            Err(_) => {
                self.queued.release(len);
                self.overflowed()
            }
        }
    }

    /// Queue a frame if there is room now (in frames and in bytes), without
    /// waiting and without evicting: `Ok(false)` if the connection is
    /// closing, the frame back if there is no room (then
    /// [`deliver`](Self::deliver) waits for it).
    pub fn try_deliver(&self, frame: Bytes) -> Result<bool, Bytes> {
        let len = frame.len();
        if !self.queued.reserve(len) {
            return Err(frame);
        }
        self.outbox.try_send(frame).map(|()| true).or_else(|error| {
            self.queued.release(len);
            match error {
                flume::TrySendError::Full(frame) => Err(frame),
                flume::TrySendError::Disconnected(_) => Ok(false),
            }
        })
    }

    /// Queue a frame now or evict the connection.
    pub(super) fn offer(&self, frame: Bytes) -> bool {
        let len = frame.len();
        if !self.queued.reserve(len) {
            return self.overflowed();
        }
        match self.outbox.try_send(frame) {
            Ok(()) => true,
            Err(error) => {
                self.queued.release(len);
                match error {
                    flume::TrySendError::Full(_) => self.overflowed(),
                    flume::TrySendError::Disconnected(_) => false,
                }
            }
        }
    }

    /// The outbox is full: evict the slow consumer. Always false (not queued).
    fn overflowed(&self) -> bool {
        self.outbox_drops.inc();
        self.evict(close::SLOW_CONSUMER, "send queue full: the client is not reading");
        false
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

    /// Note the dialect of a request this client sent: calls to it go out
    /// in the request form once its last request was in that form.
    pub fn note_dialect(&self, dialect: Dialect) {
        let requests = dialect == Dialect::Action;
        if self.speaks_requests.load(Ordering::Relaxed) != requests {
            self.speaks_requests.store(requests, Ordering::Relaxed);
        }
    }

    /// The dialect calls to this client go out in.
    pub fn call_dialect(&self) -> Dialect {
        if self.speaks_requests.load(Ordering::Relaxed) {
            Dialect::Action
        } else {
            Dialect::Canonical
        }
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
            node: None,
        }
    }

    /// The device id it identified as, if any.
    pub fn device_id(&self) -> Option<String> {
        lock(&self.presence).device_id.clone()
    }

    /// Who it is, as room members are listed.
    pub fn member(&self) -> Member {
        let presence = lock(&self.presence);
        Member { connection_id: self.id.clone(), device_id: presence.device_id.clone(), identity: presence.identity.clone() }
    }

    pub(super) fn wants(&self, topic: &str, data: &mut LazyData) -> bool {
        let subs = lock(&self.subscriptions);
        subs.iter().any(|s| s.pattern.matches(topic) && (s.filters.is_empty() || passes(&s.filters, data.get())))
    }
}

/// An event's data, parsed only if some subscription filters on it.
pub(super) struct LazyData<'a> {
    raw: &'a RawValue,
    parsed: Option<Map<String, Value>>,
}

impl<'a> LazyData<'a> {
    pub(super) fn new(raw: &'a RawValue) -> Self {
        LazyData { raw, parsed: None }
    }
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

/// The bytes in one outbox: added by the connection as it queues a frame,
/// given back by the writer as it takes one.
pub(super) struct QueuedBytes {
    bytes: AtomicUsize,
    limit: usize,
    /// Signalled at every take, for a reply waiting for room.
    room: Notify,
}

impl QueuedBytes {
    pub(super) fn new(limit: usize) -> Arc<QueuedBytes> {
        Arc::new(QueuedBytes { bytes: AtomicUsize::new(0), limit, room: Notify::new() })
    }

    /// Count `len` more bytes in, if they fit: within the limit, or alone
    /// in an empty queue (one large reply is never refused).
    fn reserve(&self, len: usize) -> bool {
        self.bytes
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |queued| {
                (queued == 0 || queued.saturating_add(len) <= self.limit).then(|| queued.saturating_add(len))
            })
            .is_ok()
    }

    fn release(&self, len: usize) {
        self.bytes.fetch_sub(len, Ordering::AcqRel);
        self.room.notify_one();
    }
}

/// The outbox's receiving end, held by the connection's writer.
pub struct Outbox {
    frames: flume::Receiver<Bytes>,
    queued: Arc<QueuedBytes>,
}

impl Outbox {
    pub(super) fn new(frames: flume::Receiver<Bytes>, queued: Arc<QueuedBytes>) -> Outbox {
        Outbox { frames, queued }
    }

    /// The next frame to send; its bytes leave the queue's count.
    pub async fn recv(&mut self) -> Option<Bytes> {
        let frame = self.frames.recv_async().await.ok()?;
        self.queued.release(frame.len());
        Some(frame)
    }

    /// The next frame if one is queued now.
    pub fn try_recv(&mut self) -> Result<Bytes, flume::TryRecvError> {
        let frame = self.frames.try_recv()?;
        self.queued.release(frame.len());
        Ok(frame)
    }
}

/// A connection as the HTTP API lists it.
#[derive(Debug, Clone, Serialize, Deserialize)]
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
    /// The cluster node it is connected to (in a cluster only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

impl crate::store::history::Presence for Connection {
    fn device_and_room(&self) -> (Option<String>, Option<String>) {
        let presence = lock(&self.presence);
        (presence.device_id.clone(), presence.room.clone())
    }
}
