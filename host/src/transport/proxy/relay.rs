//! The relay: a client's upgrade, the upstream handshake behind it, and the
//! session that passes frames between the two sockets until either side
//! closes.
//!
//! It must not look inside frames: it never parses or rewrites a message
//! and holds at most the one in flight per direction. The upstream handshake
//! happens before the client's upgrade completes, so the client is answered
//! with the subprotocol the upstream chose. A client's handshake waits for
//! the upstream's: at most one `connect_timeout` per upstream in rotation. A
//! client turned away with 1013 does not hold a connection slot.
//!
//! Close codes sent by the proxy itself: 1013 no upstream in rotation (or
//! none would connect), 1014 the upstream went away without a close frame,
//! 1001 to the upstream when the client went away without one, 1001 to both
//! on shutdown, 1009 to the side that sent a message over
//! [`MAX_MESSAGE_BYTES`]. Close frames sent by either side are passed on
//! with their code and reason. tungstenite (0.29) clients read 1014 as a
//! protocol error and report 1002; browsers report 1014.
//!
//! Messages are relayed whole: tungstenite reassembles a fragmented message
//! (up to [`MAX_MESSAGE_BYTES`]) and the other side gets it as one frame,
//! in arrival order. RFC 6455 (section 5.4) lets an intermediary that
//! negotiated no extension change fragmentation, and this one negotiates
//! none.
//!
//! Pings and pongs do not cross the proxy: each hop answers its own. Each
//! of the proxy's sockets is an endpoint of its own connection, and
//! tungstenite answers a ping it reads with a pong carrying its payload,
//! written before its next read or write. That cannot be turned off, and
//! holding the pong until the far side's arrived would stall the relay
//! behind a round trip; relaying the ping as well gave the pinging side a
//! second pong (also for a ping between the fragments of a message). So a
//! ping is answered once, at once, by the proxy, and tells its sender that
//! its own hop is alive. An unsolicited pong is dropped.

use super::refusal::ProxyRefusal;
use super::routes::{request_host, rotation, upstream_url};
use super::dial::{dial, DialError, UpstreamSocket, BUFFER_BYTES, MAX_MESSAGE_BYTES};
use super::{Mount, Route, Upstream};
use crate::transport::closing::Closing;
use crate::wire::close::{self, BAD_GATEWAY, GOING_AWAY, INTERNAL_ERROR, INVALID_PAYLOAD, PROTOCOL_ERROR, TOO_BIG, TRY_AGAIN_LATER};
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{self, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, State};
use axum::http::header::{self, HeaderName};
use axum::http::{HeaderMap, HeaderValue, Uri};
use axum::response::{IntoResponse, Response};
use futures_util::future::join;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::client::Request as UpstreamRequest;
use tokio_tungstenite::tungstenite::{self as ts};
use tokio_util::sync::CancellationToken;

/// How long a closing session may take to finish both closing handshakes.
const FLUSH_ON_CLOSE: Duration = Duration::from_secs(2);

/// How long a session closed for an oversize frame keeps the client's
/// socket, so the client can read the close frame before the unread rest of
/// its frame resets the connection.
const LINGER: Duration = Duration::from_millis(500);


const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

// ------------------------------------------------------------- handshake --

/// Match the route, reserve a connection, connect upstream, then upgrade
/// with the upstream's subprotocol.
pub(super) async fn upgrade(
    State(Mount { proxy, path }): State<Mount>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    uri: Uri,
    headers: HeaderMap,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let host = headers.get(header::HOST).cloned().or_else(|| uri.authority().and_then(|a| HeaderValue::from_str(a.as_str()).ok()));
    let host_name = host.as_ref().and_then(|h| h.to_str().ok()).map(request_host);
    let Some(route) = proxy.find(&path, host_name.as_deref()) else {
        return ProxyRefusal::NotFound { path: path.to_string(), host: host_name }.into_response();
    };
    let ws = match ws {
        Ok(ws) => ws,
        Err(rejection) => {
            return ProxyRefusal::NotWebSocket { status: rejection.status(), reason: rejection.body_text() }.into_response()
        }
    };
    if proxy.shutdown.is_cancelled() {
        return ProxyRefusal::ShuttingDown.into_response();
    }
    let Some(admission) = Admission::reserve(route) else {
        return ProxyRefusal::TooManyConnections { path: path.to_string(), max: route.max_connections }.into_response();
    };
    let offer = ClientOffer { remote, host, query: uri.query().map(str::to_owned), headers };
    let link = match route.connect(&offer).await {
        Ok(link) => link,
        Err(DialError::Refused(refusal)) => return refusal.into_response(),
        Err(DialError::Fault(_) | DialError::NoUpstream) => {
            drop(admission);
            tracing::debug!(route = %route.label(), client = %remote, "no upstream in rotation");
            let reason = format!("no healthy upstream for {path}");
            return ws.on_upgrade(move |socket| proxy.sessions.track_future(turn_away(socket, TRY_AGAIN_LATER, reason)));
        }
    };
    let ws = ws
        .read_buffer_size(BUFFER_BYTES)
        .write_buffer_size(BUFFER_BYTES)
        .max_write_buffer_size(MAX_MESSAGE_BYTES.saturating_mul(2))
        .max_message_size(MAX_MESSAGE_BYTES)
        .max_frame_size(MAX_MESSAGE_BYTES);
    let protocol = link.protocol.as_ref().and_then(|p| p.to_str().ok()).map(str::to_owned);
    let ws = match &protocol {
        Some(protocol) => ws.protocols([protocol.clone()]),
        None => ws,
    };
    let session = Session {
        route: route.label(),
        upstream: link.upstream,
        remote,
        protocol,
        shutdown: proxy.shutdown.clone(),
        _admission: admission,
    };
    let sessions = proxy.sessions.clone();
    ws.on_upgrade(move |socket| sessions.track_future(relay(socket, link.socket, session)))
}

/// Upgrade only to say why there is no session, then close.
async fn turn_away(mut socket: WebSocket, code: u16, reason: String) {
    let frame = ws::CloseFrame { code, reason: close::reason(&reason).into() };
    if socket.send(ws::Message::Close(Some(frame))).await.is_ok() {
        let _ = tokio::time::timeout(FLUSH_ON_CLOSE, async { while let Some(Ok(_)) = socket.next().await {} }).await;
    }
}


/// Holds one of a route's `max_connections` until dropped.
struct Admission(Arc<Route>);

impl Admission {
    fn reserve(route: &Arc<Route>) -> Option<Admission> {
        route
            .open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |open| (open < route.max_connections).then_some(open + 1))
            .ok()
            .map(|_| Admission(Arc::clone(route)))
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What the client's handshake passes on to the upstream's.
struct ClientOffer {
    remote: SocketAddr,
    host: Option<HeaderValue>,
    query: Option<String>,
    headers: HeaderMap,
}

impl ClientOffer {
    fn request_for(&self, upstream: &Uri) -> Result<UpstreamRequest, String> {
        let mut request = upstream_url(upstream, self.query.as_deref()).into_client_request().map_err(|e| e.to_string())?;
        let headers = request.headers_mut();
        for name in [header::AUTHORIZATION, header::USER_AGENT, header::ORIGIN] {
            if let Some(value) = self.headers.get(&name) {
                headers.insert(name, value.clone());
            }
        }
        // HTTP/2 clients may split cookies; HTTP/1.1 wants one header.
        if let Some(cookies) = joined(&self.headers, &header::COOKIE, b"; ")? {
            headers.insert(header::COOKIE, cookies);
        }
        // One header: tungstenite only reads the first when it checks the
        // upstream's choice.
        if let Some(offer) = joined(&self.headers, &header::SEC_WEBSOCKET_PROTOCOL, b", ")? {
            headers.insert(header::SEC_WEBSOCKET_PROTOCOL, offer);
        }
        let mut chain = joined(&self.headers, &X_FORWARDED_FOR, b", ")?.map(|v| v.as_bytes().to_vec()).unwrap_or_default();
        if !chain.is_empty() {
            chain.extend_from_slice(b", ");
        }
        chain.extend_from_slice(self.remote.ip().to_string().as_bytes());
        headers.insert(X_FORWARDED_FOR, HeaderValue::from_bytes(&chain).map_err(|e| e.to_string())?);
        if let Some(host) = &self.host {
            headers.insert(X_FORWARDED_HOST, host.clone());
        }
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static("ws"));
        Ok(request)
    }
}

/// All values of a header (and comma-separated items within them), trimmed
/// and joined with `separator`.
fn joined(headers: &HeaderMap, name: &HeaderName, separator: &[u8]) -> Result<Option<HeaderValue>, String> {
    let split_on = if separator.starts_with(b";") { b';' } else { b',' };
    let items: Vec<&[u8]> = headers
        .get_all(name)
        .iter()
        .flat_map(|value| value.as_bytes().split(move |&b| b == split_on))
        .map(<[u8]>::trim_ascii)
        .filter(|item| !item.is_empty())
        .collect();
    if items.is_empty() {
        return Ok(None);
    }
    HeaderValue::from_bytes(&items.join(separator)).map(Some).map_err(|e| format!("{name}: {e}"))
}

/// A connected upstream.
struct Link {
    socket: UpstreamSocket,
    protocol: Option<HeaderValue>,
    upstream: String,
}

impl Route {
    /// Connect to the next upstream in rotation, trying each at most once.
    async fn connect(&self, client: &ClientOffer) -> Result<Link, DialError> {
        let in_rotation: Vec<bool> = self.upstreams.iter().map(Upstream::in_rotation).collect();
        let turn = self.turn.fetch_add(1, Ordering::Relaxed);
        for index in rotation(&in_rotation, turn) {
            let upstream = &self.upstreams[index];
            let request = client.request_for(&upstream.uri).map_err(|e| DialError::Refused(ProxyRefusal::BadRequest(e)))?;
            match dial(request, self.connect_timeout).await {
                Ok((socket, protocol)) => {
                    let _ = upstream.record_outcome(&self.label(), Ok(()));
                    return Ok(Link { socket, protocol, upstream: upstream.url.clone() });
                }
                Err(DialError::Fault(error)) => {
                    let _ = upstream.record_outcome(&self.label(), Err(error));
                }
                Err(refused) => return Err(refused),
            }
        }
        Err(DialError::NoUpstream)
    }
}

// ----------------------------------------------------------------- relay --

struct Session {
    route: String,
    upstream: String,
    remote: SocketAddr,
    protocol: Option<String>,
    shutdown: CancellationToken,
    _admission: Admission,
}

/// A close frame (code, reason) the proxy still has to send.
type Owed = Option<(u16, &'static str)>;

/// Why a session is ending, and so what each side still has to be told.
#[derive(Debug)]
enum Ending {
    /// The client sent a close frame; it went on to the upstream.
    ClientClosed(Option<u16>),
    /// The client's connection ended without a close frame.
    ClientGone(String),
    ClientTooBig,
    /// The client broke the protocol (1002) or sent invalid UTF-8 (1007):
    /// the proxy fails its connection with that code, as the host's own
    /// endpoints do.
    ClientBroke(u16),
    /// The upstream sent a close frame; it went on to the client.
    UpstreamClosed(Option<u16>),
    /// The upstream's connection ended without a close frame.
    UpstreamGone(String),
    UpstreamTooBig,
    ShuttingDown,
}

impl Ending {
    /// The close frames the proxy still owes (client, upstream).
    fn owed(&self) -> (Owed, Owed) {
        match self {
            Ending::ClientClosed(_) | Ending::UpstreamClosed(_) => (None, None),
            Ending::ClientGone(_) => (None, Some((GOING_AWAY, "client went away"))),
            Ending::ClientTooBig => (Some((TOO_BIG, "message too big")), Some((GOING_AWAY, "client went away"))),
            Ending::ClientBroke(code) => {
                let reason = match *code {
                    PROTOCOL_ERROR => "protocol error",
                    INVALID_PAYLOAD => "invalid UTF-8",
                    _ => "internal error",
                };
                (Some((*code, reason)), Some((GOING_AWAY, "client went away")))
            }
            Ending::UpstreamGone(_) => (Some((BAD_GATEWAY, "upstream closed")), None),
            Ending::UpstreamTooBig => (Some((BAD_GATEWAY, "upstream closed")), Some((TOO_BIG, "message too big"))),
            Ending::ShuttingDown => (Some((GOING_AWAY, "proxy shutting down")), Some((GOING_AWAY, "proxy shutting down"))),
        }
    }

    /// Who ended the session, for logs.
    fn closed_by(&self) -> &'static str {
        match self {
            Ending::ClientClosed(_) | Ending::ClientGone(_) | Ending::ClientTooBig | Ending::ClientBroke(_) => "client",
            Ending::UpstreamClosed(_) | Ending::UpstreamGone(_) | Ending::UpstreamTooBig => "upstream",
            Ending::ShuttingDown => "proxy",
        }
    }

    /// What went wrong, when a side went away without a close frame.
    fn detail(&self) -> Option<&str> {
        match self {
            Ending::ClientGone(detail) | Ending::UpstreamGone(detail) => Some(detail),
            _ => None,
        }
    }

    /// The close codes each side ended with (client, upstream), for logs.
    fn codes(&self) -> (Option<u16>, Option<u16>) {
        match self {
            Ending::ClientClosed(code) | Ending::UpstreamClosed(code) => (*code, *code),
            _ => {
                let (client, upstream) = self.owed();
                (client.map(|c| c.0), upstream.map(|c| c.0))
            }
        }
    }
}

async fn relay(client: WebSocket, upstream: UpstreamSocket, session: Session) {
    let Session { route, upstream: url, remote, protocol, shutdown, _admission } = session;
    tracing::debug!(route = %route, upstream = %url, client = %remote, protocol = ?protocol, "proxy session open");
    let (mut client_tx, mut client_rx) = client.split();
    let (mut upstream_tx, mut upstream_rx) = upstream.split();
    let ending = tokio::select! {
        ending = client_to_upstream(&mut client_rx, &mut upstream_tx) => ending,
        ending = upstream_to_client(&mut upstream_rx, &mut client_tx) => ending,
        () = shutdown.cancelled() => Ending::ShuttingDown,
    };
    // Finish both closing handshakes: send what is owed, then read each side
    // to its end (which also flushes tungstenite's automatic close replies).
    let (to_client, to_upstream) = ending.owed();
    let client_side = async {
        if let Some((code, reason)) = to_client {
            let frame = ws::CloseFrame { code, reason: reason.into() };
            let _ = client_tx.send(ws::Message::Close(Some(frame))).await;
        }
        while let Some(Ok(_)) = client_rx.next().await {}
    };
    let upstream_side = async {
        if let Some((code, reason)) = to_upstream {
            let _ = upstream_tx.send(ts::Message::Close(Some(upstream_close(code, reason)))).await;
        }
        while let Some(Ok(_)) = upstream_rx.next().await {}
    };
    let _ = tokio::time::timeout(FLUSH_ON_CLOSE, join(client_side, upstream_side)).await;
    // The rest of the client's bad frame is unread: closing now would reset
    // the connection before the client reads the Close. Linger.
    if matches!(ending, Ending::ClientTooBig | Ending::ClientBroke(_)) {
        tokio::time::sleep(LINGER).await;
    }
    let (client_code, upstream_code) = ending.codes();
    tracing::debug!(route = %route, upstream = %url, client = %remote, closed_by = ending.closed_by(), detail = ending.detail(), ?client_code, ?upstream_code, "proxy session closed");
}

async fn client_to_upstream(from: &mut SplitStream<WebSocket>, to: &mut SplitSink<UpstreamSocket, ts::Message>) -> Ending {
    loop {
        let message = match from.next().await {
            Some(Ok(message)) => message,
            Some(Err(error)) => {
                return match Closing::read_failed(error) {
                    Closing::Close { code: TOO_BIG, .. } => Ending::ClientTooBig,
                    Closing::Close { code: code @ (PROTOCOL_ERROR | INVALID_PAYLOAD | INTERNAL_ERROR), .. } => Ending::ClientBroke(code),
                    other => Ending::ClientGone(other.reason().to_owned()),
                };
            }
            None => return Ending::ClientGone("connection ended without a close frame".into()),
        };
        let message = match message {
            ws::Message::Close(frame) => {
                let code = frame.as_ref().map(|f| f.code);
                let frame = frame.map(|f| upstream_close(f.code, f.reason.as_str()));
                // If the upstream is already gone, the client has closed anyway.
                let _ = to.send(ts::Message::Close(frame)).await;
                return Ending::ClientClosed(code);
            }
            // Text is copied between axum's and tungstenite's `Utf8Bytes`:
            // axum keeps its conversion private, and the alternative is
            // `unsafe`.
            ws::Message::Text(text) => ts::Message::Text(text.as_str().into()),
            ws::Message::Binary(data) => ts::Message::Binary(data),
            // Answered by the proxy's own socket (see the module doc).
            ws::Message::Ping(_) | ws::Message::Pong(_) => continue,
        };
        if let Err(error) = to.send(message).await {
            return Ending::UpstreamGone(error.to_string());
        }
    }
}

async fn upstream_to_client(from: &mut SplitStream<UpstreamSocket>, to: &mut SplitSink<WebSocket, ws::Message>) -> Ending {
    loop {
        let message = match from.next().await {
            Some(Ok(message)) => message,
            Some(Err(ts::Error::Capacity(_))) => return Ending::UpstreamTooBig,
            Some(Err(error)) => return Ending::UpstreamGone(error.to_string()),
            None => return Ending::UpstreamGone("connection ended without a close frame".into()),
        };
        let message = match message {
            ts::Message::Close(frame) => {
                let code = frame.as_ref().map(|f| u16::from(f.code));
                let frame = frame.map(|f| ws::CloseFrame { code: f.code.into(), reason: f.reason.as_str().into() });
                let _ = to.send(ws::Message::Close(frame)).await;
                return Ending::UpstreamClosed(code);
            }
            ts::Message::Text(text) => ws::Message::Text(text.as_str().into()),
            ts::Message::Binary(data) => ws::Message::Binary(data),
            // Answered by the proxy's own socket (see the module doc).
            ts::Message::Ping(_) | ts::Message::Pong(_) => continue,
            // Only produced when writing raw frames, never when reading.
            ts::Message::Frame(_) => continue,
        };
        if let Err(error) = to.send(message).await {
            return Ending::ClientGone(error.to_string());
        }
    }
}

fn upstream_close(code: u16, reason: &str) -> ts::protocol::CloseFrame {
    ts::protocol::CloseFrame { code: code.into(), reason: reason.into() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_headers() {
        let mut headers = HeaderMap::new();
        headers.append(X_FORWARDED_FOR, HeaderValue::from_static("10.0.0.1"));
        headers.append(X_FORWARDED_FOR, HeaderValue::from_static("10.0.0.2"));
        headers.append(header::SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static("v2.video"));
        headers.append(header::SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static("v1.video, x"));
        headers.append(header::COOKIE, HeaderValue::from_static("a=1"));
        headers.append(header::COOKIE, HeaderValue::from_static("b=2"));
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer t"));
        headers.insert(header::CONNECTION, HeaderValue::from_static("keep-alive, Upgrade"));
        let offer = ClientOffer {
            remote: "[::1]:5000".parse().unwrap(),
            host: Some(HeaderValue::from_static("a.example.com:8080")),
            query: Some("q=1".into()),
            headers,
        };
        let request = offer.request_for(&"ws://up:9/s".parse().unwrap()).unwrap();
        assert_eq!(request.uri(), "ws://up:9/s?q=1");
        let h = request.headers();
        assert_eq!(h[X_FORWARDED_FOR], "10.0.0.1, 10.0.0.2, ::1");
        assert_eq!(h[X_FORWARDED_HOST], "a.example.com:8080");
        assert_eq!(h[X_FORWARDED_PROTO], "ws");
        assert_eq!(h[header::SEC_WEBSOCKET_PROTOCOL], "v2.video, v1.video, x");
        assert_eq!(h[header::COOKIE], "a=1; b=2");
        assert_eq!(h[header::AUTHORIZATION], "Bearer t");
        assert_eq!(h[header::HOST], "up:9");
        assert_eq!(h[header::CONNECTION], "Upgrade");
    }
}
