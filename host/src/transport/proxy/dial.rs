//! Dialing an upstream: the WebSocket handshake under the route's connect
//! timeout, with the proxy's socket limits, and what a failure means (the
//! upstream's fault, or this client's refusal). Used by the relay for
//! clients and by health checks alike.

use super::refusal::ProxyRefusal;
use axum::http::header;
use axum::http::HeaderValue;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::error::{ProtocolError, SubProtocolError};
use tokio_tungstenite::tungstenite::handshake::client::Request as UpstreamRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self as ts};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// The largest message (and frame) relayed in either direction.
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

/// Initial read and write buffer per socket; two sockets per session, and
/// the buffers grow for large frames.
pub(super) const BUFFER_BYTES: usize = 32 * 1024;

pub(super) type UpstreamSocket = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub(super) enum DialError {
    /// The upstream failed: out of rotation, try the next.
    Fault(String),
    /// The upstream (or the request) said no to this client: tell it.
    Refused(ProxyRefusal),
    NoUpstream,
}

fn upstream_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(BUFFER_BYTES)
        .write_buffer_size(BUFFER_BYTES)
        .max_write_buffer_size(MAX_MESSAGE_BYTES.saturating_mul(2))
        .max_message_size(Some(MAX_MESSAGE_BYTES))
        .max_frame_size(Some(MAX_MESSAGE_BYTES))
}

pub(super) async fn dial(request: UpstreamRequest, timeout: Duration) -> Result<(UpstreamSocket, Option<HeaderValue>), DialError> {
    let handshake = tokio_tungstenite::connect_async_with_config(request, Some(upstream_config()), true);
    match tokio::time::timeout(timeout, handshake).await {
        Err(_) => Err(DialError::Fault(format!("no handshake within {} ms", timeout.as_millis()))),
        Ok(Ok((socket, response))) => Ok((socket, response.headers().get(header::SEC_WEBSOCKET_PROTOCOL).cloned())),
        Ok(Err(ts::Error::Http(response))) if response.status().is_client_error() => {
            Err(DialError::Refused(ProxyRefusal::UpstreamRefused { status: response.status() }))
        }
        Ok(Err(ts::Error::Protocol(ProtocolError::SecWebSocketSubProtocolError(SubProtocolError::NoSubProtocol)))) => {
            Err(DialError::Refused(ProxyRefusal::NoSubprotocol))
        }
        Ok(Err(error)) => Err(DialError::Fault(error.to_string())),
    }
}
