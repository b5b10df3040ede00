//! How a host WebSocket ends, the same on every endpoint (client
//! endpoints, extra listeners, the worker socket): which Close the host owes
//! for what it read, and the closing handshake of RFC 6455 (7.1).
//!
//! tungstenite, under axum's `WebSocket`, does only half of the handshake:
//! - when it reads a Close it queues the answer (the peer's code echoed, or
//!   1002 for an invalid one) and writes it on the socket's *next* read or
//!   flush. A Close of one's own sent after that is refused ("sending after
//!   closing") before anything is flushed, so a transport that stops reading
//!   at the Close and then sends its own never answers: the peer sees 1006;
//! - a protocol violation, invalid UTF-8 or a frame over the limit is a read
//!   error, after which the stream is over and nothing has been sent: the
//!   Close with the right code is the caller's to send.
//!
//! So endpoints read through [`next_message`], which turns every read into a
//! message or a [`Closing`], and end every connection with [`finish`]. This
//! module decides how a connection closes, never when: that is the
//! endpoint's.

use crate::wire::close::{self, ABNORMAL, INTERNAL_ERROR, INVALID_PAYLOAD, NORMAL, PROTOCOL_ERROR, TOO_BIG};
use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures_util::stream::FusedStream;
use futures_util::{SinkExt, StreamExt};
use std::time::Duration;
use tokio_tungstenite::tungstenite::error::ProtocolError;
use tokio_tungstenite::tungstenite::Error as WsError;

/// How long closing a socket may take: flushing what the host owes, then
/// waiting for the peer's Close.
pub const CLOSING_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a socket whose read failed stays open after the host's Close:
/// it cannot be read any more, and closing it with the rest of the peer's
/// bad frame unread would reset it before the peer reads that Close.
const LINGER: Duration = Duration::from_millis(500);

/// How a socket ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Closing {
    /// The peer sent a Close (its code and reason, for the logs);
    /// tungstenite has queued the answer.
    Answer { code: Option<u16>, reason: String },
    /// The host closes with `code`: it sends its Close, then waits (bounded)
    /// for the peer's.
    Close { code: u16, reason: String },
    /// The connection is gone (reset, ended without a Close, a write
    /// failed): there is no one to send a Close to.
    Gone(String),
}

impl Closing {
    pub fn close(code: u16, reason: impl Into<String>) -> Closing {
        Closing::Close { code, reason: reason.into() }
    }

    /// The Close owed for a failed read.
    pub fn read_failed(error: axum::Error) -> Closing {
        match error.into_inner().downcast::<WsError>() {
            Ok(error) => Closing::for_error(&error),
            Err(other) => {
                tracing::warn!("WebSocket read failed outside tungstenite: {other}");
                Closing::close(INTERNAL_ERROR, "internal error")
            }
        }
    }

    fn for_error(error: &WsError) -> Closing {
        match error {
            WsError::Capacity(_) => Closing::close(TOO_BIG, "message too big"),
            WsError::Utf8(_) => Closing::close(INVALID_PAYLOAD, "invalid UTF-8"),
            WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => Closing::Gone(error.to_string()),
            WsError::Protocol(violation) => Closing::close(PROTOCOL_ERROR, violation.to_string()),
            WsError::ConnectionClosed | WsError::AlreadyClosed | WsError::Io(_) | WsError::Tls(_) => Closing::Gone(error.to_string()),
            // Only a client's handshake or a full write buffer fail otherwise:
            // the host's doing, not the peer's.
            _ => {
                tracing::warn!("WebSocket read failed: {error}");
                Closing::close(INTERNAL_ERROR, "internal error")
            }
        }
    }

    /// The connection's close code, for logs and evictions: the one sent or
    /// answered, or [`ABNORMAL`] when none could be.
    pub fn code(&self) -> u16 {
        match self {
            Closing::Answer { code, .. } => code.unwrap_or(NORMAL),
            Closing::Close { code, .. } => *code,
            Closing::Gone(_) => ABNORMAL,
        }
    }

    pub fn reason(&self) -> &str {
        match self {
            Closing::Answer { reason, .. } | Closing::Close { reason, .. } | Closing::Gone(reason) => reason,
        }
    }
}

/// A read as an endpoint acts on it: a data, ping or pong message, or how
/// the socket ends. (Pings are answered by tungstenite.)
pub fn next_message(read: Option<Result<Message, axum::Error>>) -> Result<Message, Closing> {
    match read {
        Some(Ok(Message::Close(frame))) => Err(Closing::Answer {
            code: frame.as_ref().map(|f| f.code),
            reason: frame.map(|f| f.reason.as_str().to_owned()).unwrap_or_default(),
        }),
        Some(Ok(message)) => Ok(message),
        Some(Err(error)) => Err(Closing::read_failed(error)),
        None => Err(Closing::Gone("ended without a close frame".into())),
    }
}

/// Complete the closing handshake within [`CLOSING_TIMEOUT`], then drop the
/// socket, which closes TCP: the server closes first, as RFC 6455 7.1.1 asks.
///
/// Whatever the endpoint still wanted to send must be sent before: after a
/// peer's Close, tungstenite sends nothing but the answer.
pub async fn finish(mut socket: WebSocket, closing: &Closing) {
    let handshake = async {
        match closing {
            Closing::Gone(_) => {}
            // Flushes the queued answer; tungstenite then reports the
            // connection closed.
            Closing::Answer { .. } => {
                let _ = socket.close().await;
            }
            Closing::Close { code, reason } => {
                let frame = CloseFrame { code: *code, reason: close::reason(reason).into() };
                if socket.send(Message::Close(Some(frame))).await.is_err() {
                    return;
                }
                if socket.is_terminated() {
                    tokio::time::sleep(LINGER).await;
                } else {
                    // What the peer sent before its Close is dropped unread.
                    while let Some(Ok(message)) = socket.next().await {
                        if matches!(message, Message::Close(_)) {
                            break;
                        }
                    }
                }
            }
        }
    };
    if tokio::time::timeout(CLOSING_TIMEOUT, handshake).await.is_err() {
        tracing::debug!(code = closing.code(), "closing handshake not completed in time");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_tungstenite::tungstenite::error::{CapacityError, UrlError};
    use tokio_tungstenite::tungstenite::protocol::frame::coding::Data;

    fn code_for(error: WsError) -> u16 {
        Closing::read_failed(axum::Error::new(error)).code()
    }

    #[test]
    fn read_errors_map_to_rfc_6455_close_codes() {
        let violations = [
            ProtocolError::NonZeroReservedBits,
            ProtocolError::InvalidOpcode(3),
            ProtocolError::UnknownControlFrameType(0xB),
            ProtocolError::UnknownDataFrameType(7),
            ProtocolError::ControlFrameTooBig,
            ProtocolError::FragmentedControlFrame,
            ProtocolError::UnexpectedContinueFrame,
            ProtocolError::ExpectedFragment(Data::Text),
            ProtocolError::UnmaskedFrameFromClient,
            ProtocolError::InvalidCloseSequence,
        ];
        for violation in violations {
            assert_eq!(code_for(WsError::Protocol(violation.clone())), PROTOCOL_ERROR, "{violation}");
        }
        assert_eq!(code_for(WsError::Utf8("invalid".into())), INVALID_PAYLOAD);
        let too_long = CapacityError::MessageTooLong { size: 2, max_size: 1 };
        assert_eq!(code_for(WsError::Capacity(too_long)), TOO_BIG);
        assert_eq!(code_for(WsError::Url(UrlError::NoHostName)), INTERNAL_ERROR);
        assert_eq!(code_for(WsError::AttackAttempt), INTERNAL_ERROR);
        let not_tungstenite = std::io::Error::other("something else");
        assert_eq!(Closing::read_failed(axum::Error::new(not_tungstenite)).code(), INTERNAL_ERROR);
    }

    #[test]
    fn a_connection_that_is_gone_is_sent_nothing() {
        let gone = [
            WsError::ConnectionClosed,
            WsError::AlreadyClosed,
            WsError::Io(std::io::ErrorKind::ConnectionReset.into()),
            WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake),
        ];
        for error in gone {
            let closing = Closing::read_failed(axum::Error::new(error));
            assert!(matches!(closing, Closing::Gone(_)), "{closing:?}");
            assert_eq!(closing.code(), ABNORMAL);
        }
        assert!(matches!(next_message(None), Err(Closing::Gone(_))));
    }

    #[test]
    fn a_peers_close_is_answered_and_other_messages_pass() {
        let close = CloseFrame { code: 4321, reason: "bye".into() };
        let answer = Closing::Answer { code: Some(4321), reason: "bye".into() };
        assert_eq!(next_message(Some(Ok(Message::Close(Some(close))))), Err(answer));
        assert_eq!(next_message(Some(Ok(Message::Close(None)))).map_err(|c| c.code()), Err(NORMAL));
        let ping = Message::Ping("p".into());
        assert_eq!(next_message(Some(Ok(ping.clone()))), Ok(ping));
    }
}
