//! Socket plumbing shared by the client and the worker: dialing with a
//! deadline, writing with a deadline, closing politely, and the shutdown
//! signal. Knows nothing of envelopes or requests.

use crate::error::ClientError;
use futures_util::{SinkExt, StreamExt};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub(crate) type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How long a polite close waits for the server's answering close frame.
pub(crate) const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Reject what can never connect before any task starts.
pub(crate) fn check_url(url: &str) -> Result<(), ClientError> {
    let invalid = |reason: String| ClientError::InvalidUrl { url: url.to_owned(), reason };
    let request = url.into_client_request().map_err(|e| invalid(e.to_string()))?;
    match request.uri().scheme_str() {
        Some("ws") => Ok(()),
        Some("wss") => Err(invalid("wss:// needs TLS, which this build of the client does not include".into())),
        other => Err(invalid(format!("scheme {other:?} is not ws://"))),
    }
}

/// One connection attempt: TCP and the WebSocket handshake within `timeout`.
pub(crate) async fn open(url: &str, timeout: Duration) -> Result<Socket, String> {
    match tokio::time::timeout(timeout, tokio_tungstenite::connect_async(url)).await {
        Ok(Ok((socket, _response))) => Ok(socket),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no handshake within {timeout:?}")),
    }
}

/// Write one message; a peer that does not take it within `timeout` is dead.
pub(crate) async fn write(socket: &mut Socket, message: Message, timeout: Duration) -> Result<(), String> {
    match tokio::time::timeout(timeout, socket.send(message)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("write failed: {e}")),
        Err(_) => Err(format!("write stalled for {timeout:?}")),
    }
}

/// Send close 1000 and wait briefly for the server's close frame.
pub(crate) async fn close_normally(socket: &mut Socket, reason: &str) {
    let frame = CloseFrame { code: CloseCode::Normal, reason: reason.to_owned().into() };
    let polite = async {
        if socket.close(Some(frame)).await.is_err() {
            return;
        }
        while let Some(Ok(_)) = socket.next().await {}
    };
    let _ = tokio::time::timeout(CLOSE_GRACE, polite).await;
}

/// Let an answering close frame the library queued go out, briefly.
pub(crate) async fn flush(socket: &mut Socket) {
    let _ = tokio::time::timeout(CLOSE_GRACE, socket.flush()).await;
}

/// Resolves once shutdown is asked for, or once its sender is gone (the
/// owner was dropped).
pub(crate) async fn shutdown_requested(signal: &mut watch::Receiver<bool>) {
    loop {
        if *signal.borrow_and_update() {
            return;
        }
        if signal.changed().await.is_err() {
            return;
        }
    }
}

/// Human words for a close frame from the server.
pub(crate) fn describe_close(frame: Option<&CloseFrame>) -> String {
    match frame {
        Some(frame) if frame.reason.is_empty() => format!("closed by the server ({})", u16::from(frame.code)),
        Some(frame) => format!("closed by the server ({} {})", u16::from(frame.code), frame.reason),
        None => "closed by the server".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_ws_urls_pass() {
        assert_eq!(check_url("ws://127.0.0.1:8080/ws"), Ok(()));
        assert_eq!(check_url("wss://example.test/ws").unwrap_err().code(), "INVALID_URL");
        assert_eq!(check_url("http://127.0.0.1/").unwrap_err().code(), "INVALID_URL");
        assert_eq!(check_url("not a url").unwrap_err().code(), "INVALID_URL");
    }
}
