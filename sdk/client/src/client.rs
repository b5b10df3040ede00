//! The client: one logical connection that survives reconnects.
//!
//! A [`Client`] is a cheap handle; one background task (the supervisor)
//! owns the socket, dials and redials it on the [`ReconnectPolicy`]
//! schedule, writes outgoing frames, sends heartbeats, and routes incoming
//! frames: replies to their waiting request, pushed frames to handlers or
//! the unhandled channel. The task ends on `close()`, when the last handle
//! is dropped, or when reconnection attempts run out; it never outlives
//! the client by more than the one-second close handshake.
//!
//! A client given several URLs (the nodes of a cluster) dials them in
//! turn: it starts with the first that answers, and when its connection
//! drops or a dial fails it moves on to the next, so it lands on a live
//! node and restores its subscriptions and rooms there.
//!
//! Delivery is at-most-once: a request written to a connection that then
//! drops fails with [`ClientError::ConnectionLost`] and is not re-sent (the
//! server may or may not have acted on it); frames that never reached the
//! socket wait in the offline queue and go out, in order, after the
//! subscriptions and remembered requests are restored.

use crate::backoff::ReconnectPolicy;
use crate::calls::{self, CallHandler};
use crate::config::ClientConfig;
use crate::envelope::{self, Incoming};
use crate::error::ClientError;
use crate::outbox::{Link, Outbox, Outgoing};
use crate::restore::RestoreSet;
use crate::transport::{self, Socket};
use futures_util::StreamExt;
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, Weak};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_tungstenite::tungstenite::Message;

/// Frames waiting between the callers and the socket writer; a full channel
/// makes `send` and `request` wait (their deadline still runs).
const OUTGOING_FRAMES: usize = 64;

/// A connection to a Switchyard host that reconnects by itself.
///
/// Clones share the connection. Dropping the last clone closes it, like
/// [`Client::close`] without waiting. A handler that needs the client
/// should capture a [`WeakClient`], or the client keeps itself alive until
/// `close()`.
#[derive(Clone)]
pub struct Client {
    handle: Arc<Handle>,
}

/// A [`Client`] that does not keep the connection open.
#[derive(Clone)]
pub struct WeakClient {
    handle: Weak<Handle>,
}

impl WeakClient {
    pub fn upgrade(&self) -> Option<Client> {
        self.handle.upgrade().map(|handle| Client { handle })
    }
}

struct Handle {
    shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
    supervisor: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.shutdown.send_replace(true);
    }
}

/// Where the connection stands; watch it with [`Client::watch_state`].
#[derive(Debug, Clone, PartialEq)]
pub enum ConnectionState {
    /// The first connection attempt is under way.
    Connecting,
    /// Connected; `connection_id` once the host's acknowledgement arrived.
    Connected { connection_id: Option<String> },
    /// Waiting `delay` before reconnection attempt `attempt`.
    Reconnecting { attempt: u32, delay: Duration, last_error: String },
    /// Terminal: [`ClientError::Closed`] or [`ClientError::Disconnected`].
    Closed(ClientError),
}

/// Counters for monitoring and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientStats {
    /// Requests waiting for a reply.
    pub pending_requests: usize,
    /// Frames in the offline queue.
    pub offline_queued: usize,
    /// Frames the full offline queue dropped.
    pub offline_dropped: u64,
    /// Replies that arrived after their request had timed out, dropped.
    pub late_replies: u64,
    /// Pushed frames dropped because the unhandled channel was full.
    pub unhandled_dropped: u64,
    /// Successful reconnections.
    pub reconnects: u64,
}

type Handler = Arc<dyn Fn(&Value) + Send + Sync>;

/// State the handles and the supervisor share. No lock is held across an
/// await.
struct Shared {
    /// The URLs to dial, in turn; `current` is the one in use.
    urls: Vec<String>,
    current: AtomicUsize,
    config: ClientConfig,
    outbox: Mutex<Outbox>,
    pending: Mutex<HashMap<String, Pending>>,
    restore: Mutex<RestoreSet>,
    handlers: RwLock<HashMap<String, Handler>>,
    /// Handlers for the host's calls, by action.
    answers: RwLock<HashMap<String, CallHandler>>,
    unhandled_tx: mpsc::Sender<Value>,
    unhandled_rx: Mutex<Option<mpsc::Receiver<Value>>>,
    state: watch::Sender<ConnectionState>,
    id_prefix: String,
    next_id: AtomicU64,
    late_replies: AtomicU64,
    unhandled_dropped: AtomicU64,
    reconnects: AtomicU64,
}

struct Pending {
    waiter: Waiter,
    /// The connection (epoch) the request was written to, once it was.
    written_on: Option<u64>,
}

enum Waiter {
    Caller(oneshot::Sender<Result<Value, ClientError>>),
    /// A frame re-sent on reconnect; its reply is only logged.
    Restore(String),
}

impl Client {
    /// Connect with the default [`ClientConfig`]. Fails fast if the first
    /// attempt fails; after that the client reconnects by itself.
    pub async fn connect(url: &str) -> Result<Client, ClientError> {
        Self::connect_with(url, ClientConfig::default()).await
    }

    /// Connect once (returning that attempt's error), then keep the
    /// connection up according to `config`.
    pub async fn connect_with(url: &str, config: ClientConfig) -> Result<Client, ClientError> {
        Self::connect_any(&[url], config).await
    }

    /// Connect to the first of `urls` (the nodes of a cluster) that
    /// answers, in order; after that, a lost connection is redialled on
    /// the next URL in turn. The error is the last URL's if none answers.
    pub async fn connect_any(urls: &[&str], config: ClientConfig) -> Result<Client, ClientError> {
        let Some(first) = urls.first() else {
            return Err(ClientError::InvalidUrl { url: String::new(), reason: "no URL given".into() });
        };
        for url in urls {
            transport::check_url(url)?;
        }
        let mut last = String::new();
        for (i, url) in urls.iter().enumerate() {
            match transport::open(url, config.connect_timeout).await {
                Ok(socket) => {
                    let client = Self::start(urls, config, Some(socket));
                    client.shared().current.store(i, Ordering::Relaxed);
                    return Ok(client);
                }
                Err(e) => last = e,
            }
        }
        tracing::debug!(first = %first, "no URL answered");
        Err(ClientError::Connect(last))
    }

    /// Start without waiting: the first attempt is made in the background
    /// and retried on the reconnect schedule; sends meanwhile go to the
    /// offline queue. Must be called within a tokio runtime.
    pub fn spawn(url: &str, config: ClientConfig) -> Result<Client, ClientError> {
        transport::check_url(url)?;
        Ok(Self::start(&[url], config, None))
    }

    fn start(urls: &[&str], config: ClientConfig, socket: Option<Socket>) -> Client {
        let (unhandled_tx, unhandled_rx) = mpsc::channel(config.unhandled_queue.max(1));
        let initial = if socket.is_some() {
            ConnectionState::Connected { connection_id: None }
        } else {
            ConnectionState::Connecting
        };
        let shared = Arc::new(Shared {
            urls: urls.iter().map(|u| (*u).to_owned()).collect(),
            current: AtomicUsize::new(0),
            outbox: Mutex::new(Outbox::new(config.offline_queue)),
            config,
            pending: Mutex::default(),
            restore: Mutex::default(),
            handlers: RwLock::default(),
            answers: RwLock::default(),
            unhandled_tx,
            unhandled_rx: Mutex::new(Some(unhandled_rx)),
            state: watch::channel(initial).0,
            id_prefix: format!("{:08x}", rand::random::<u32>()),
            next_id: AtomicU64::new(1),
            late_replies: AtomicU64::new(0),
            unhandled_dropped: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
        });
        let (shutdown, signal) = watch::channel(false);
        let supervisor = tokio::spawn(supervise(Arc::clone(&shared), signal, socket));
        Client { handle: Arc::new(Handle { shared, shutdown, supervisor: Mutex::new(Some(supervisor)) }) }
    }

    fn shared(&self) -> &Shared {
        &self.handle.shared
    }

    /// The URL in use (or being dialled).
    pub fn url(&self) -> &str {
        self.shared().url()
    }

    pub fn config(&self) -> &ClientConfig {
        &self.shared().config
    }

    /// Send a request and wait for its reply's `data`, within the
    /// configured `request_timeout`. An error reply is
    /// [`ClientError::Remote`] with the server's code.
    pub async fn request(&self, kind: &str, data: impl Serialize) -> Result<Value, ClientError> {
        self.request_with_timeout(kind, data, self.shared().config.request_timeout).await
    }

    /// As [`Client::request`] with its own deadline.
    pub async fn request_with_timeout(
        &self,
        kind: &str,
        data: impl Serialize,
        timeout: Duration,
    ) -> Result<Value, ClientError> {
        envelope::reply_data(self.request_frame(kind, data, timeout).await?)
    }

    /// Send a request and return the whole reply frame, error frames
    /// included (as `Ok`): what a command-line tool prints.
    pub async fn request_frame(
        &self,
        kind: &str,
        data: impl Serialize,
        timeout: Duration,
    ) -> Result<Value, ClientError> {
        self.exchange(kind, to_value(data)?, timeout, |_| {}).await
    }

    /// One request/reply exchange; `before_send` sees the request's id
    /// once its reply has somewhere to go.
    async fn exchange(
        &self,
        kind: &str,
        data: Value,
        timeout: Duration,
        before_send: impl FnOnce(&str),
    ) -> Result<Value, ClientError> {
        let shared = self.shared();
        let id = shared.next_id();
        let (tx, rx) = oneshot::channel();
        lock(&shared.pending).insert(id.clone(), Pending { waiter: Waiter::Caller(tx), written_on: None });
        // Removes the entry however this future ends: reply, timeout, or the
        // caller dropping it. A reply arriving after that is counted late.
        let _guard = PendingGuard { shared, id: &id };
        before_send(&id);
        let outgoing = Outgoing { text: envelope::request(kind, Some(&id), &data), request_id: Some(id.clone()) };
        let exchange = async {
            shared.enqueue(outgoing).await?;
            rx.await.unwrap_or(Err(ClientError::Closed))
        };
        tokio::time::timeout(timeout, exchange).await.unwrap_or(Err(ClientError::Timeout(timeout)))
    }

    /// Fire and forget. While disconnected the frame waits in the offline
    /// queue (whose oldest frame is dropped when it is full); fails only
    /// once the client has ended, or if the queue has no room at all.
    pub async fn send(&self, kind: &str, data: impl Serialize) -> Result<(), ClientError> {
        let data = to_value(data)?;
        self.shared().enqueue(Outgoing { text: envelope::request(kind, None, &data), request_id: None }).await
    }

    /// Handle pushed frames whose `meta.topic` or, failing that, whose
    /// `type` is `key` (a topic handler wins over a type handler). One
    /// handler per key; a new one replaces the old. Handlers run on the
    /// connection's task: keep them quick and hand heavy work to a channel.
    /// A panicking handler is logged and the frame dropped.
    pub fn on(&self, key: impl Into<String>, handler: impl Fn(&Value) + Send + Sync + 'static) {
        write_lock(&self.shared().handlers).insert(key.into(), Arc::new(handler));
    }

    /// Answer the host's calls of `action` (see [`calls`](crate::calls)):
    /// `handler` gets the call's `params` and its `Ok` is the answer's
    /// data, its [`Failure`](crate::Failure) the error the caller sees. It
    /// runs on its own task, so a slow answer holds nothing else up. One
    /// handler per action; a new one replaces the old.
    pub fn answer<F, Fut>(&self, action: impl Into<String>, handler: F)
    where
        F: Fn(Value) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<Value, crate::Failure>> + Send + 'static,
    {
        write_lock(&self.shared().answers).insert(action.into(), calls::handler(handler));
    }

    /// Remove the handler for `key`; whether there was one.
    pub fn off(&self, key: &str) -> bool {
        write_lock(&self.shared().handlers).remove(key).is_some()
    }

    /// The pushed frames no handler took (first call only). The channel
    /// holds `unhandled_queue` frames; more are dropped and counted.
    pub fn take_unhandled(&self) -> Option<mpsc::Receiver<Value>> {
        lock(&self.shared().unhandled_rx).take()
    }

    /// Subscribe to event patterns (`status`, `alert.*`) with optional
    /// filters (`{"level": ["critical"]}` or `Value::Null`); the reply's
    /// `data`. The subscription is re-sent after every reconnect, unless the
    /// server refused it.
    pub async fn subscribe<I, S>(&self, events: I, filters: Value) -> Result<Value, ClientError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let events: Vec<String> = events.into_iter().map(Into::into).collect();
        if events.is_empty() {
            return Err(ClientError::InvalidInput("subscribe needs at least one event pattern".into()));
        }
        let data = envelope::subscribe_data(&events, &filters);
        let restore = &self.shared().restore;
        let mut request_id = String::new();
        let timeout = self.shared().config.request_timeout;
        let sent = self.exchange("subscribe", data, timeout, |id| {
            lock(restore).subscribe(&events, &filters, Some(id));
            request_id = id.to_owned();
        });
        let result = sent.await.and_then(envelope::reply_data);
        if let Err(ClientError::Remote { .. }) = &result {
            lock(restore).refused(&request_id);
        }
        result
    }

    /// Drop subscriptions, here and on the server; the reply's `data`.
    pub async fn unsubscribe<I, S>(&self, events: I) -> Result<Value, ClientError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let events: Vec<String> = events.into_iter().map(Into::into).collect();
        lock(&self.shared().restore).unsubscribe(&events);
        self.request("unsubscribe", json!({ "events": events })).await
    }

    /// The patterns re-sent on reconnect.
    pub fn subscriptions(&self) -> Vec<String> {
        lock(&self.shared().restore).patterns()
    }

    /// Send a request now and again after every reconnect, until
    /// [`Client::forget`]`(key)`. A later call with the same key replaces
    /// it. Around a reconnect it may arrive twice, so it should be
    /// idempotent (joining a room is). Not remembered if the server
    /// answers with an error.
    pub async fn remember(&self, key: &str, kind: &str, data: impl Serialize) -> Result<Value, ClientError> {
        let data = to_value(data)?;
        let restore = &self.shared().restore;
        let mut request_id = String::new();
        let timeout = self.shared().config.request_timeout;
        let sent = self.exchange(kind, data.clone(), timeout, |id| {
            lock(restore).remember(key, kind, &data, Some(id));
            request_id = id.to_owned();
        });
        let result = sent.await.and_then(envelope::reply_data);
        if let Err(ClientError::Remote { .. }) = &result {
            lock(restore).refused(&request_id);
        }
        result
    }

    /// Stop re-sending the request remembered under `key`; whether it was.
    pub fn forget(&self, key: &str) -> bool {
        lock(&self.shared().restore).forget(key)
    }

    /// The keys of the remembered requests, in the order they are re-sent.
    pub fn remembered(&self) -> Vec<String> {
        lock(&self.shared().restore).keys()
    }

    /// Join a room and rejoin it after every reconnect (remembered under
    /// `room:<room>`). The message is [`crate::RoomMessages`]' (provisional).
    pub async fn join_room(&self, room: &str) -> Result<Value, ClientError> {
        let rooms = &self.shared().config.rooms;
        self.remember(&format!("room:{room}"), &rooms.join_type, json!({ rooms.room_field.as_str(): room })).await
    }

    /// Leave a room and stop rejoining it.
    pub async fn leave_room(&self, room: &str) -> Result<Value, ClientError> {
        self.forget(&format!("room:{room}"));
        let rooms = &self.shared().config.rooms;
        self.request(&rooms.leave_type, json!({ rooms.room_field.as_str(): room })).await
    }

    pub fn state(&self) -> ConnectionState {
        self.shared().state.borrow().clone()
    }

    pub fn watch_state(&self) -> watch::Receiver<ConnectionState> {
        self.shared().state.subscribe()
    }

    /// Wait until connected; the terminal error if the client ends first.
    pub async fn connected(&self) -> Result<(), ClientError> {
        let mut state = self.watch_state();
        let seen = state
            .wait_for(|s| matches!(s, ConnectionState::Connected { .. } | ConnectionState::Closed(_)))
            .await
            .map(|s| s.clone());
        match seen {
            Ok(ConnectionState::Connected { .. }) => Ok(()),
            Ok(ConnectionState::Closed(error)) => Err(error),
            _ => Err(ClientError::Closed),
        }
    }

    /// Resolves with the terminal error once the client has ended:
    /// [`ClientError::Closed`] or [`ClientError::Disconnected`].
    pub async fn closed(&self) -> ClientError {
        let mut state = self.watch_state();
        match state.wait_for(|s| matches!(s, ConnectionState::Closed(_))).await.map(|s| s.clone()) {
            Ok(ConnectionState::Closed(error)) => error,
            _ => ClientError::Closed,
        }
    }

    /// Close with code 1000 and stop reconnecting; waits (at most about a
    /// second) for the server's close and for the background task to end.
    /// Waiting requests fail with [`ClientError::Closed`].
    pub async fn close(&self) {
        self.handle.shutdown.send_replace(true);
        let supervisor = lock(&self.handle.supervisor).take();
        match supervisor {
            Some(task) => {
                let _ = task.await;
            }
            None => {
                self.closed().await;
            }
        }
    }

    pub fn stats(&self) -> ClientStats {
        let shared = self.shared();
        let (offline_queued, offline_dropped) = {
            let outbox = lock(&shared.outbox);
            (outbox.len(), outbox.dropped)
        };
        ClientStats {
            pending_requests: lock(&shared.pending).len(),
            offline_queued,
            offline_dropped,
            late_replies: shared.late_replies.load(Ordering::Relaxed),
            unhandled_dropped: shared.unhandled_dropped.load(Ordering::Relaxed),
            reconnects: shared.reconnects.load(Ordering::Relaxed),
        }
    }

    pub fn downgrade(&self) -> WeakClient {
        WeakClient { handle: Arc::downgrade(&self.handle) }
    }
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("url", &self.url()).field("state", &self.state()).finish()
    }
}

struct PendingGuard<'a> {
    shared: &'a Shared,
    id: &'a str,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        lock(&self.shared.pending).remove(self.id);
    }
}

fn to_value(data: impl Serialize) -> Result<Value, ClientError> {
    serde_json::to_value(data).map_err(|e| ClientError::InvalidInput(format!("data is not JSON: {e}")))
}

impl Shared {
    fn url(&self) -> &str {
        &self.urls[self.current.load(Ordering::Relaxed) % self.urls.len()]
    }

    /// Dial the next URL from now on (a single URL stays itself).
    fn next_url(&self) {
        if self.urls.len() > 1 {
            self.current.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn next_id(&self) -> String {
        format!("{}-{}", self.id_prefix, self.next_id.fetch_add(1, Ordering::Relaxed))
    }

    fn set_state(&self, state: ConnectionState) {
        self.state.send_replace(state);
    }

    /// Hand a frame to the live connection, or queue it while there is none.
    async fn enqueue(&self, mut out: Outgoing) -> Result<(), ClientError> {
        loop {
            let channel = {
                let mut outbox = lock(&self.outbox);
                match &outbox.link {
                    Link::Online(channel) => channel.clone(),
                    Link::Ended(error) => return Err(error.clone()),
                    Link::Offline => {
                        let evicted = match outbox.push(out) {
                            Ok(evicted) => evicted,
                            Err(_refused) => return Err(ClientError::OfflineQueueOverflow),
                        };
                        drop(outbox);
                        self.fail_evicted(evicted);
                        return Ok(());
                    }
                }
            };
            match channel.send(out).await {
                Ok(()) => return Ok(()),
                // The connection went away while we waited: look again.
                Err(mpsc::error::SendError(back)) => {
                    out = back;
                    let mut outbox = lock(&self.outbox);
                    if matches!(&outbox.link, Link::Online(current) if current.same_channel(&channel)) {
                        outbox.link = Link::Offline;
                    }
                }
            }
        }
    }

    fn fail_evicted(&self, evicted: impl IntoIterator<Item = Outgoing>) {
        for out in evicted {
            tracing::debug!("offline queue full: dropped its oldest frame");
            if let Some(id) = out.request_id {
                self.fail_request(&id, ClientError::OfflineQueueOverflow);
            }
        }
    }

    fn fail_request(&self, id: &str, error: ClientError) {
        let pending = lock(&self.pending).remove(id);
        if let Some(Pending { waiter: Waiter::Caller(tx), .. }) = pending {
            let _ = tx.send(Err(error));
        }
    }

    /// Note a request as written to connection `epoch`; false if its caller
    /// has given up, or if it already went out on this connection as a
    /// restored frame (then it is not sent again).
    fn mark_written(&self, id: &str, epoch: u64) -> bool {
        match lock(&self.pending).get_mut(id) {
            Some(pending) if pending.written_on != Some(epoch) => {
                pending.written_on = Some(epoch);
                true
            }
            _ => false,
        }
    }

    /// Fail the requests written to a connection that is gone.
    fn fail_written(&self, epoch: u64) {
        let lost: Vec<Pending> = {
            let mut pending = lock(&self.pending);
            let ids: Vec<String> =
                pending.iter().filter(|(_, p)| p.written_on == Some(epoch)).map(|(id, _)| id.clone()).collect();
            ids.iter().filter_map(|id| pending.remove(id)).collect()
        };
        for pending in lost {
            if let Waiter::Caller(tx) = pending.waiter {
                let _ = tx.send(Err(ClientError::ConnectionLost));
            }
        }
    }

    /// The end: every send fails with `error` from now on.
    fn finish(&self, error: ClientError) {
        let queued = {
            let mut outbox = lock(&self.outbox);
            outbox.link = Link::Ended(error.clone());
            outbox.take_queue()
        };
        drop(queued);
        let pending = std::mem::take(&mut *lock(&self.pending));
        for (_, pending) in pending {
            if let Waiter::Caller(tx) = pending.waiter {
                let _ = tx.send(Err(error.clone()));
            }
        }
        // Handlers may hold clients; dropping them breaks such cycles.
        write_lock(&self.handlers).clear();
        write_lock(&self.answers).clear();
        self.set_state(ConnectionState::Closed(error));
    }

    /// Route one incoming text frame.
    fn receive(&self, text: &str, first: bool) {
        let frame: Value = match serde_json::from_str(text) {
            Ok(frame) => frame,
            Err(e) => {
                tracing::warn!(error = %e, "dropping a frame that is not JSON");
                return;
            }
        };
        match envelope::classify(&frame, first) {
            Incoming::Ack { connection_id } => {
                self.set_state(ConnectionState::Connected { connection_id });
            }
            Incoming::Reply { id, is_reply_type } => {
                let pending = lock(&self.pending).remove(&id);
                match pending {
                    Some(Pending { waiter: Waiter::Caller(tx), .. }) => {
                        let _ = tx.send(Ok(frame));
                    }
                    Some(Pending { waiter: Waiter::Restore(kind), .. }) => {
                        if let Some(error) = envelope::remote_error(&frame) {
                            tracing::warn!(request = %kind, %error, "the server refused a request restored after reconnecting");
                        }
                    }
                    None if is_reply_type => {
                        self.late_replies.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(%id, "dropping a reply nobody waits for (timed out or cancelled)");
                    }
                    None if self.answer_call(&frame) => {}
                    None => self.dispatch(frame),
                }
            }
            Incoming::Push => self.dispatch(frame),
        }
    }

    /// Answer a call from the host, on its own task; false if `frame` is
    /// not one, or an `on` handler takes its type instead.
    fn answer_call(&self, frame: &Value) -> bool {
        let Some((id, action, params)) = calls::incoming(frame) else { return false };
        let handler = read_lock(&self.answers).get(action).cloned();
        if handler.is_none() && read_lock(&self.handlers).contains_key(action) {
            return false;
        }
        // Off line, the call has already failed on the host's side.
        let channel = match &lock(&self.outbox).link {
            Link::Online(channel) => channel.clone(),
            _ => return true,
        };
        let (id, action) = (id.to_owned(), action.to_owned());
        tokio::spawn(async move {
            let outcome = match handler {
                Some(handler) => handler(params).await,
                None => Err(crate::Failure::new("UNKNOWN_ACTION", format!("this client answers no {action:?}"))),
            };
            let _ = channel.send(Outgoing { text: calls::answer_frame(&id, outcome), request_id: None }).await;
        });
        true
    }

    fn dispatch(&self, frame: Value) {
        let handler = {
            let handlers = read_lock(&self.handlers);
            let by_topic = envelope::topic(&frame).and_then(|topic| handlers.get(topic));
            let by_type = || frame.get("type").and_then(Value::as_str).and_then(|kind| handlers.get(kind));
            by_topic.or_else(by_type).cloned()
        };
        match handler {
            Some(handler) => {
                if std::panic::catch_unwind(AssertUnwindSafe(|| handler(&frame))).is_err() {
                    tracing::error!("an event handler panicked; the frame was dropped");
                }
            }
            None => {
                if self.unhandled_tx.try_send(frame).is_err() {
                    self.unhandled_dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}

/// Why one connection ended.
enum ConnectionEnd {
    Shutdown,
    Lost(String),
}

/// The background task: connect, serve, reconnect, until closed or out of attempts.
async fn supervise(shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>, mut socket: Option<Socket>) {
    let policy: &ReconnectPolicy = &shared.config.reconnect;
    let mut backoff = policy.backoff();
    let mut last_error = String::new();
    let mut epoch = 0u64;
    let ending = loop {
        if socket.is_none() {
            tokio::select! {
                opened = transport::open(shared.url(), shared.config.connect_timeout) => match opened {
                    Ok(opened) => socket = Some(opened),
                    Err(e) => {
                        tracing::debug!(url = %shared.url(), error = %e, "connection attempt failed");
                        last_error = e;
                        shared.next_url();
                    }
                },
                () = transport::shutdown_requested(&mut shutdown) => break ClientError::Closed,
            }
        }
        if let Some(connected) = socket.take() {
            epoch += 1;
            if epoch > 1 {
                shared.reconnects.fetch_add(1, Ordering::Relaxed);
                tracing::info!(url = %shared.url(), "reconnected");
            }
            backoff.reset();
            match serve(&shared, connected, epoch, &mut shutdown).await {
                ConnectionEnd::Shutdown => break ClientError::Closed,
                ConnectionEnd::Lost(reason) => {
                    tracing::info!(url = %shared.url(), %reason, "connection lost");
                    last_error = reason;
                    shared.next_url();
                }
            }
        }
        let Some(delay) = backoff.next_delay() else {
            tracing::warn!(url = %shared.url(), attempts = backoff.attempts(), %last_error, "giving up reconnecting");
            break ClientError::Disconnected { attempts: backoff.attempts(), last_error };
        };
        shared.set_state(ConnectionState::Reconnecting {
            attempt: backoff.attempts(),
            delay,
            last_error: last_error.clone(),
        });
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = transport::shutdown_requested(&mut shutdown) => break ClientError::Closed,
        }
    };
    shared.finish(ending);
}

/// One connection, from restoring state to its end.
async fn serve(shared: &Shared, mut socket: Socket, epoch: u64, shutdown: &mut watch::Receiver<bool>) -> ConnectionEnd {
    let (tx, mut rx) = mpsc::channel::<Outgoing>(OUTGOING_FRAMES);
    // One lock for both: no frame can slip into the offline queue after the
    // backlog was taken, and new frames wait in `rx` behind the backlog.
    let (backlog, restore) = {
        let mut outbox = lock(&shared.outbox);
        outbox.link = Link::Online(tx);
        (outbox.take_queue(), lock(&shared.restore).frames())
    };
    shared.set_state(ConnectionState::Connected { connection_id: None });

    let end = run(shared, &mut socket, epoch, &mut rx, backlog, restore, shutdown).await;

    // Frames still in the channel never reached the socket: back to the
    // front of the offline queue, ahead of anything sent from now on.
    {
        let mut outbox = lock(&shared.outbox);
        if matches!(outbox.link, Link::Online(_)) {
            outbox.link = Link::Offline;
        }
    }
    rx.close();
    let mut unsent = Vec::new();
    while let Ok(out) = rx.try_recv() {
        unsent.push(out);
    }
    let evicted = lock(&shared.outbox).push_front(unsent);
    shared.fail_evicted(evicted);
    shared.fail_written(epoch);
    end
}

async fn run(
    shared: &Shared,
    socket: &mut Socket,
    epoch: u64,
    rx: &mut mpsc::Receiver<Outgoing>,
    backlog: std::collections::VecDeque<Outgoing>,
    restore: Vec<crate::restore::RestoreFrame>,
    shutdown: &mut watch::Receiver<bool>,
) -> ConnectionEnd {
    let config = &shared.config;
    let write_limit = config.receive_timeout;

    for frame in restore {
        // A caller still waiting for the first answer to this entry gets it
        // from this frame (its own copy, queued, is then skipped).
        let id = match frame.request_id.filter(|id| shared.mark_written(id, epoch)) {
            Some(id) => id,
            None => {
                let id = shared.next_id();
                let pending = Pending { waiter: Waiter::Restore(frame.kind.clone()), written_on: Some(epoch) };
                lock(&shared.pending).insert(id.clone(), pending);
                id
            }
        };
        let text = envelope::request(&frame.kind, Some(&id), &frame.data);
        if let Err(e) = transport::write(socket, Message::text(text), write_limit).await {
            return ConnectionEnd::Lost(e);
        }
    }
    for out in backlog {
        if let Some(id) = &out.request_id {
            if !shared.mark_written(id, epoch) {
                continue;
            }
        }
        if let Err(e) = transport::write(socket, Message::text(out.text), write_limit).await {
            return ConnectionEnd::Lost(e);
        }
    }

    let heartbeat_every = config.heartbeat_interval.max(Duration::from_millis(1));
    let mut heartbeat = tokio::time::interval_at(Instant::now() + heartbeat_every, heartbeat_every);
    heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let silence = tokio::time::sleep(config.receive_timeout);
    tokio::pin!(silence);
    let mut first = true;
    loop {
        tokio::select! {
            () = transport::shutdown_requested(shutdown) => {
                transport::close_normally(socket, "client closed").await;
                return ConnectionEnd::Shutdown;
            }
            incoming = socket.next() => {
                silence.as_mut().reset(Instant::now() + config.receive_timeout);
                match incoming {
                    Some(Ok(Message::Text(text))) => {
                        shared.receive(&text, first);
                        first = false;
                    }
                    Some(Ok(Message::Close(frame))) => {
                        transport::flush(socket).await;
                        return ConnectionEnd::Lost(transport::describe_close(frame.as_ref()));
                    }
                    Some(Ok(Message::Binary(_))) => tracing::debug!("ignoring a binary frame"),
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return ConnectionEnd::Lost(e.to_string()),
                    None => return ConnectionEnd::Lost("the connection closed".into()),
                }
            }
            outgoing = rx.recv() => {
                let Some(out) = outgoing else { return ConnectionEnd::Lost("outgoing channel closed".into()) };
                if let Some(id) = &out.request_id {
                    if !shared.mark_written(id, epoch) {
                        continue;
                    }
                }
                if let Err(e) = transport::write(socket, Message::text(out.text), write_limit).await {
                    return ConnectionEnd::Lost(e);
                }
            }
            _ = heartbeat.tick() => {
                if let Err(e) = transport::write(socket, Message::Ping(Default::default()), write_limit).await {
                    return ConnectionEnd::Lost(e);
                }
            }
            () = &mut silence => {
                return ConnectionEnd::Lost(format!("nothing received for {:?}", config.receive_timeout));
            }
        }
    }
}

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn read_lock<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn write_lock<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|poisoned| poisoned.into_inner())
}
