//! The WebSocket transport: one reader and one writer task per connection.
//!
//! The reader answers messages in arrival order, one at a time, so a
//! client's commands take effect in the order it sent them. Answers to the
//! host's own calls to the client ([`wire::calls`](crate::wire::calls)) are
//! taken before anything is routed, even while a message is being answered
//! (a plugin may call the very client whose message it handles); a message
//! that arrives meanwhile waits its turn. Replies and
//! events go through the connection's bounded outbox to the writer, which
//! also sends heartbeat pings. A client that stops reading fills its outbox
//! and is evicted; one that goes silent past the idle timeout is closed.
//!
//! Every connection ends through [`closing`]: a client's Close is echoed,
//! and the host's own closes (1001 host shutting down, 1002 protocol error,
//! 1007 invalid UTF-8, 1009 frame over `limits.max_frame_bytes`, 4000 idle
//! timeout, 4001 authentication failed or key revoked, 4008 slow consumer)
//! wait, bounded, for the client's answer.

use super::closing::{self, Closing};
use super::{ApiError, Endpoint, Gateway};
use crate::wire::dialect::{self, Profile};
use crate::routing::dispatch::Caller;
use crate::wire::close::{self, ABNORMAL, GOING_AWAY, NORMAL, SLOW_CONSUMER, TOO_BIG};
use crate::wire::msgpack::{self, Encoding};
use crate::wire::{calls, frames, ErrorCode, Failure, Origin, Transport};
use crate::config::EndpointRole;
use crate::hub::{Connection, Outbox, Ticket};
use crate::admission::security::{self, Principal};
use axum::extract::ws::{Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, Query, State};
use axum::routing::get;
use axum::Extension;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::future::join;
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// Read buffer per connection, and the most read from the socket at once.
/// tungstenite fills (zeroes) the whole buffer on every read, so this is
/// resident memory in every idle connection (the README's idle-connection
/// figures); the price is one read per KiB of a large frame.
pub const READ_BUFFER: usize = 1024;
/// Frames are written out once this much is queued (or on flush).
const WRITE_BUFFER: usize = 8 * 1024;

/// Most frames one write takes from the outbox: a client with a deep queue
/// still sees its heartbeat and eviction checked between writes.
const WRITE_BATCH: usize = 32;

/// How long a closing connection may take to flush what it has queued.
const FLUSH_ON_CLOSE: Duration = Duration::from_secs(2);

#[derive(Debug, Deserialize)]
pub struct ConnectQuery {
    client_id: Option<String>,
    /// The API key, for browsers, which cannot set `Authorization` on a
    /// WebSocket.
    access_token: Option<String>,
}

/// Check the upgrade request in order (origin, rate, key, room), then hand
/// the socket to a connection task. A refused key still upgrades, so the
/// client reads `AUTHENTICATION_FAILED` and close code 4001 rather than a
/// bare HTTP status its WebSocket library may hide.
pub async fn upgrade(
    State(gateway): State<Arc<Gateway>>,
    Extension(endpoint): Extension<Arc<Endpoint>>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    Query(query): Query<ConnectQuery>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    // A client endpoint speaks MessagePack to clients that ask for it.
    let (ws, encoding) = match endpoint.role {
        EndpointRole::Clients => {
            let ws = ws.protocols([msgpack::SUBPROTOCOL]);
            let encoding = if ws.selected_protocol().is_some() { Encoding::MessagePack } else { endpoint.encoding };
            (ws, encoding)
        }
        EndpointRole::Workers => (ws, Encoding::Json),
    };
    if gateway.tasks.is_shutting_down() {
        return ApiError::from(Failure::new(ErrorCode::Unavailable, "the host is shutting down")).into_response();
    }
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if !gateway.keyring.origin_allowed(header("origin"), header("host")) {
        gateway.metrics.refused("origin");
        return ApiError::from(Failure::new(ErrorCode::Forbidden, "this Origin may not open WebSockets here")).into_response();
    }
    if let Err(wait) = gateway.limits.admit_connection(remote.ip()) {
        gateway.metrics.refused("rate");
        gateway.metrics.limited("connections");
        return ApiError::from(Failure::rate_limited("connection", wait)).into_response();
    }
    let client_id = query
        .client_id
        .or_else(|| header("x-client-id").map(str::to_owned))
        .filter(|id| !id.is_empty() && id.len() <= 128);
    let key = match security::bearer(header("authorization")) {
        Ok(key) => key.or(query.access_token.as_deref()),
        Err(failure) => return refuse(gateway, endpoint, ws, failure, encoding),
    };
    let authenticated = if endpoint.auth {
        gateway.keyring.require(key, client_id.as_deref())
    } else {
        gateway.keyring.authenticate(key, client_id.as_deref())
    };
    let principal = match authenticated {
        Ok(principal) => principal,
        Err(failure) => return refuse(gateway, endpoint, ws, failure, encoding),
    };
    let limits = gateway.limits.get();
    let ticket = match gateway.hub.admit(client_id.as_deref(), limits.max_connections, limits.max_connections_per_client) {
        Ok(ticket) => ticket,
        Err(failure) => {
            gateway.metrics.refused(if client_id.is_some() { "client_limit" } else { "limit" });
            return ApiError::from(failure).into_response();
        }
    };
    gateway.metrics.connections_accepted.inc();
    let max = gateway.ws.max_frame_bytes;
    // Small initial buffers: they grow for large frames, and 10,000 idle
    // connections should not hold 2.5 GiB of them.
    let ws = ws.read_buffer_size(READ_BUFFER).write_buffer_size(WRITE_BUFFER).max_write_buffer_size(max.saturating_mul(2));
    if endpoint.role == EndpointRole::Workers {
        return ws.max_message_size(max).max_frame_size(max).on_upgrade(move |socket| {
            let tasks = gateway.tasks.clone();
            tasks.track(async move {
                let _ticket = ticket;
                super::worker::serve(gateway, socket, remote, principal).await
            })
        });
    }
    ws.max_message_size(max).max_frame_size(max).on_upgrade(move |socket| {
        let tasks = gateway.tasks.clone();
        let peer = Peer { remote, client_id, principal, encoding, _ticket: ticket };
        // Split here, not in `serve`: an argument stays in its task for the
        // connection's life, and the whole socket is 368 bytes of it.
        tasks.track(serve(gateway, endpoint, socket.split(), peer))
    })
}

/// An extra listener's routes: its one endpoint on every path.
pub fn listener_routes(gateway: Arc<Gateway>, endpoint: Endpoint) -> axum::Router {
    axum::Router::new()
        .route("/", get(upgrade))
        .route("/{*path}", get(upgrade))
        .layer(Extension(Arc::new(endpoint)))
        .with_state(gateway)
}

/// Who is on the other end of a connection, and their admission ticket.
struct Peer {
    remote: SocketAddr,
    client_id: Option<String>,
    principal: Arc<Principal>,
    encoding: Encoding,
    _ticket: Ticket,
}

/// Upgrade only to say why the caller is refused (first in the connection
/// frame's error form where the endpoint acknowledges that way), and
/// close (4001).
fn refuse(gateway: Arc<Gateway>, endpoint: Arc<Endpoint>, ws: WebSocketUpgrade, failure: Failure, encoding: Encoding) -> Response {
    gateway.metrics.refused("auth");
    ws.on_upgrade(move |mut socket| async move {
        if let Some(refused) = frames::connection_refused(endpoint.ack, &failure) {
            let _ = send(&mut socket, Bytes::from(refused), encoding).await;
        }
        let frame = dialect::unsolicited_error(&endpoint.profile, &failure);
        let _ = send(&mut socket, Bytes::from(frame), encoding).await;
        closing::finish(socket, &Closing::close(close::AUTHENTICATION_FAILED, "authentication failed")).await;
    })
}

async fn serve(gateway: Arc<Gateway>, endpoint: Arc<Endpoint>, (sink, mut stream): (SplitSink<WebSocket, Message>, SplitStream<WebSocket>), peer: Peer) {
    let key = peer.principal.key.clone();
    let (connection, outbox) = gateway.hub.connect(peer.client_id.clone(), Some(peer.remote), &endpoint.path, key);
    tracing::debug!(connection = %connection.id, remote = %peer.remote, endpoint = %endpoint.path, key = ?connection.key, "connected");
    if endpoint.opaque.is_none() {
        let refused = subscribe_to_endpoint(&endpoint, &connection, &peer.principal);
        if !endpoint.subscribe.is_empty() {
            gateway.hub.subscriptions_changed(&connection);
        }
        if let Some(ack) = frames::connection_ack(endpoint.ack, &connection.id, connection.client_id.as_deref(), &endpoint.path) {
            connection.deliver(ack, gateway.ws.send_timeout).await;
        }
        if let Some(failure) = refused {
            let frame = Bytes::from(dialect::unsolicited_error(&endpoint.profile, &failure));
            connection.deliver(frame, gateway.ws.send_timeout).await;
        }
    }
    let writer = tokio::spawn(write_loop(sink, outbox, Arc::clone(&connection), gateway.ws.heartbeat, peer.encoding));

    let closing = match &endpoint.opaque {
        Some(kind) => {
            let origin = origin(&connection, &endpoint);
            super::opaque::read_loop(&gateway, kind, origin, &mut stream, &connection, &peer.principal).await
        }
        None => read_loop(&gateway, &endpoint, &mut stream, &connection, &peer).await,
    };
    // Stops the writer (an earlier eviction keeps its own code).
    connection.evict(closing.code(), closing.reason());
    let device = connection.device_id();
    gateway.hub.disconnect(&connection.id);
    gateway.hub.history().closed(&connection.id, device.as_deref(), closing.code(), closing.reason());
    let close = async {
        // A writer that panicked took the socket with it.
        let Ok((sink, mut outbox)) = writer.await else { return };
        let Ok(mut socket) = stream.reunite(sink) else { return };
        // What is queued goes before the host's Close, unless the client was
        // too slow to read it. (After a client's Close, nothing can.)
        if matches!(closing, Closing::Close { code, .. } if code != SLOW_CONSUMER) {
            let flush = async {
                while let Ok(frame) = outbox.try_recv() {
                    if send(&mut socket, frame, peer.encoding).await.is_err() {
                        break;
                    }
                }
            };
            let _ = tokio::time::timeout(FLUSH_ON_CLOSE, flush).await;
        }
        closing::finish(socket, &closing).await;
    };
    // Boxed for the reason the answer is (see `read_loop`): the socket
    // and the hooks' calls, held only while closing.
    join(Box::pin(close), Box::pin(gateway.dispatcher.connection_closed(&connection))).await;
    tracing::debug!(connection = %connection.id, code = closing.code(), reason = closing.reason(), "disconnected");
}

/// Subscribe a new connection to its endpoint's topics, those the caller's
/// key covers, as a `subscribe` message would be; the `FORBIDDEN` failure
/// naming the others, for the client to read.
fn subscribe_to_endpoint(endpoint: &Endpoint, connection: &Connection, principal: &Principal) -> Option<Failure> {
    let (allowed, refused) = principal.topics_in_scope(&endpoint.subscribe);
    if !allowed.is_empty() {
        if let Err(e) = connection.subscribe(&allowed, Default::default()) {
            tracing::error!(endpoint = %endpoint.path, "endpoint subscriptions rejected: {e}");
        }
    }
    refused.map(|failure| Failure::new(ErrorCode::Forbidden, format!("not subscribed to all of this endpoint's topics: {}", failure.message)))
}

/// Answer frames until the connection ends; returns how it ends.
async fn read_loop(
    gateway: &Gateway,
    endpoint: &Endpoint,
    stream: &mut SplitStream<WebSocket>,
    connection: &Arc<Connection>,
    peer: &Peer,
) -> Closing {
    let principal = &*peer.principal;
    let settings = &gateway.ws;
    let origin = origin(connection, endpoint);
    let mut bucket = gateway.limits.message_bucket();
    // A frame read while the previous message was being answered.
    let mut held = None;
    // One idle timer, one shutdown and one eviction future for the
    // connection's life, not one of each per message: a frame only notes
    // when the wait for the next began, and the timer, when it fires,
    // checks that and sets itself again.
    let mut waiting_since = Instant::now();
    let idle = tokio::time::sleep_until(waiting_since + settings.idle_timeout);
    let shutting_down = gateway.tasks.shutdown_signal().cancelled();
    let evicted_now = connection.evicted();
    tokio::pin!(idle, shutting_down, evicted_now);
    loop {
        let next = match held.take() {
            Some(frame) => frame,
            None => tokio::select! {
                _ = &mut shutting_down => return Closing::close(GOING_AWAY, "server shutting down"),
                _ = &mut evicted_now => return evicted(connection),
                _ = &mut idle => {
                    let due = waiting_since + settings.idle_timeout;
                    if due <= Instant::now() {
                        return Closing::close(close::IDLE_TIMEOUT, "idle timeout: no frames or pongs");
                    }
                    idle.as_mut().reset(due);
                    continue;
                }
                next = stream.next() => next,
            },
        };
        waiting_since = Instant::now();
        let message = match closing::next_message(next) {
            Ok(message) => message,
            Err(closing) => {
                if matches!(closing, Closing::Close { code: TOO_BIG, .. }) {
                    Box::pin(too_big(gateway, &endpoint.profile, connection)).await;
                }
                return closing;
            }
        };
        let Some(text) = incoming(&message, peer.encoding) else { continue };
        let frames = match text {
            Ok(text) => {
                if let Some(answer) = calls::answer(&text) {
                    gateway.hub.answered(&connection.id, answer);
                    continue;
                }
                let caller = Caller { origin: &origin, connection: Some(connection), principal };
                let admit = || bucket.admit(&gateway.limits);
                // Boxed: the call's state (a plugin call's is several KiB)
                // lives only while a message is answered, not in every idle
                // connection's task.
                let mut answering = Box::pin(gateway.dispatcher.answer(&text, &endpoint.profile, &caller, admit));
                // Meanwhile, answers to the host's calls to this client are
                // taken as they come (a plugin may be calling the client
                // whose message it answers); any other frame waits.
                loop {
                    tokio::select! {
                        frames = &mut answering => break frames,
                        next = stream.next(), if held.is_none() => {
                            let answer = match &next {
                                Some(Ok(message)) => incoming(message, peer.encoding).and_then(Result::ok).and_then(|text| calls::answer(&text)),
                                _ => None,
                            };
                            match answer {
                                Some(answer) => {
                                    gateway.hub.answered(&connection.id, answer);
                                }
                                None => {
                                    // A call to this client must not wait out its timeout for a client that is gone.
                                    if matches!(next, None | Some(Err(_)) | Some(Ok(Message::Close(_)))) {
                                        gateway.hub.client_gone(&connection.id);
                                    }
                                    held = Some(next);
                                }
                            }
                        }
                    }
                }
            }
            Err(failure) => vec![dialect::unsolicited_error(&endpoint.profile, &failure)],
        };
        for frame in frames {
            // Queued at once when there is room; the wait for room (and its
            // timers) is boxed, so that it is not part of every idle
            // connection's task.
            let queued = match connection.try_deliver(Bytes::from(frame)) {
                Ok(queued) => queued,
                Err(frame) => Box::pin(connection.deliver(frame, settings.send_timeout)).await,
            };
            if !queued {
                return evicted(connection);
            }
        }
        waiting_since = Instant::now();
    }
}

/// Where a connection's messages come from, as plugins see it.
fn origin(connection: &Connection, endpoint: &Endpoint) -> Origin {
    Origin {
        connection_id: connection.id.clone(),
        client_id: connection.client_id.clone(),
        transport: Transport::Ws,
        endpoint: endpoint.path.clone(),
    }
}

/// A data frame as JSON text in the connection's encoding, or why it
/// cannot be read; `None` for control frames (tungstenite answers pings; a
/// Close never gets here, see `next_message`).
fn incoming(message: &Message, encoding: Encoding) -> Option<Result<Cow<'_, str>, Failure>> {
    Some(match (message, encoding) {
        (Message::Text(text), _) => Ok(Cow::Borrowed(text.as_str())),
        (Message::Binary(frame), Encoding::MessagePack) => msgpack::to_json(frame).map(Cow::Owned),
        (Message::Binary(_), Encoding::Json) => Err(Failure::new(
            ErrorCode::InvalidMessage,
            "binary frames are not accepted here: send JSON in text frames, or MessagePack on a connection that asked for the `msgpack` subprotocol",
        )),
        (Message::Ping(_) | Message::Pong(_) | Message::Close(_), _) => return None,
    })
}

/// How an evicted connection closes: with the eviction's code, or not at
/// all if its socket already failed.
pub(super) fn evicted(connection: &Connection) -> Closing {
    match connection.eviction() {
        Some((ABNORMAL, reason)) => Closing::Gone(reason.to_owned()),
        Some((code, reason)) => Closing::close(code, reason),
        None => Closing::close(NORMAL, ""),
    }
}

/// A frame over the hard limit: the client is told why before the 1009.
async fn too_big(gateway: &Gateway, profile: &Profile, connection: &Connection) {
    let limit = gateway.ws.max_frame_bytes;
    let failure = Failure::new(ErrorCode::PayloadTooLarge, format!("frame over the {limit}-byte limit; closing"));
    connection.deliver(Bytes::from(dialect::unsolicited_error(profile, &failure)), gateway.ws.send_timeout).await;
}

/// Send queued frames and heartbeats until the connection is evicted; hand
/// back the sink, and the outbox with what it still holds, for the close.
///
/// Every frame queued by the time one is taken goes out in one write: they
/// are fed to the sink (at most [`WRITE_BATCH`]) and flushed once, so a
/// burst of replies or events costs one system call, not one each. The
/// frame taken first is held until the flush, so a fan-out's
/// `fanout_seconds` ends when its bytes are written, not when they are
/// buffered.
async fn write_loop(
    mut sink: SplitSink<WebSocket, Message>,
    mut outbox: Outbox,
    connection: Arc<Connection>,
    heartbeat: Duration,
    encoding: Encoding,
) -> (SplitSink<WebSocket, Message>, Outbox) {
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + heartbeat, heartbeat);
    // One eviction future for the connection's life, not one per frame.
    let evicted = connection.evicted();
    tokio::pin!(evicted);
    loop {
        // An eviction is seen before the next frame is taken; the cheap
        // check first, so a busy writer does not lock the token's state per
        // frame (the future below waits for it while the outbox is empty).
        if connection.eviction().is_some() {
            break;
        }
        let (message, taken) = tokio::select! {
            biased;
            frame = outbox.recv() => match frame {
                Some(frame) => match outgoing(frame.clone(), encoding) {
                    Some(message) => (message, Some(frame)),
                    None => continue,
                },
                None => break,
            },
            _ = &mut evicted => break,
            _ = ticker.tick() => (Message::Ping(Bytes::new()), None),
        };
        let write = async {
            sink.feed(message).await?;
            for _ in 1..WRITE_BATCH {
                let Ok(frame) = outbox.try_recv() else { break };
                if let Some(message) = outgoing(frame, encoding) {
                    sink.feed(message).await?;
                }
            }
            sink.flush().await
        };
        // A write blocked by a client that does not read must not outlive
        // its eviction.
        let written = tokio::select! {
            biased;
            written = write => written,
            _ = &mut evicted => break,
        };
        drop(taken);
        if written.is_err() {
            connection.evict(ABNORMAL, "write failed");
            break;
        }
        forget_socket_waker(&mut sink);
    }
    (sink, outbox)
}

/// Leave a no-op waker in the socket's write slot, once a write is done.
///
/// tokio-tungstenite wakes the task that last wrote, as well as the one
/// reading, whenever the socket turns readable. A writer waiting on its
/// outbox would then be polled for nothing on every incoming frame, and two
/// tasks woken at once make tokio wake a second worker thread to steal one
/// (a futex wake and a cross-thread hand-off per message, seen with
/// `strace -f` at one request in flight). The writer needs the socket's
/// wake only while a write is pending, and then it polls again with its
/// own waker.
fn forget_socket_waker(sink: &mut SplitSink<WebSocket, Message>) {
    let mut idle = std::task::Context::from_waker(futures_util::task::noop_waker_ref());
    // Nothing is buffered after a completed flush, so this returns at once
    // (or Pending while the reader holds the socket, which is as good).
    let _ = sink.poll_flush_unpin(&mut idle);
}

async fn send(socket: &mut WebSocket, frame: Bytes, encoding: Encoding) -> Result<(), axum::Error> {
    match outgoing(frame, encoding) {
        Some(message) => socket.send(message).await,
        None => Ok(()),
    }
}

/// A queued frame as it is sent: an opaque endpoint's answer with its own
/// opcode, JSON in the connection's encoding. Anything else is logged and
/// skipped.
fn outgoing(frame: Bytes, encoding: Encoding) -> Option<Message> {
    if let Some(message) = super::opaque::untagged(&frame) {
        return Some(message);
    }
    let encoded = match encoding {
        Encoding::Json => Utf8Bytes::try_from(frame).map(Message::Text).map_err(|e| e.to_string()),
        Encoding::MessagePack => msgpack::from_json(&frame).map(|packed| Message::Binary(packed.into())).map_err(|f| f.message),
    };
    encoded.map_err(|why| tracing::error!("a queued frame cannot be sent: {why}")).ok()
}
