//! The one error type the client hands back, each case with a stable code.
//!
//! Callers match on the variants; tools print [`ClientError::code`]. A
//! server's error reply keeps the server's own code in
//! [`ClientError::Remote`]; every other code here is the client's and is
//! listed in the crate README.

use std::time::Duration;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The URL is not a `ws://` URL the client can dial.
    #[error("invalid WebSocket URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    /// The first connection attempt of [`crate::Client::connect`] failed.
    #[error("could not connect: {0}")]
    Connect(String),
    /// Terminal: the reconnection attempts ran out.
    #[error("disconnected: gave up after {attempts} reconnection attempts (last error: {last_error})")]
    Disconnected { attempts: u32, last_error: String },
    /// Terminal: the client was closed (by `close()` or by dropping it).
    #[error("the client is closed")]
    Closed,
    /// The request was written, then the connection dropped before its reply.
    #[error("the connection was lost before the reply arrived")]
    ConnectionLost,
    /// No reply within the request's deadline. A reply that arrives later is dropped.
    #[error("no reply within {0:?}")]
    Timeout(Duration),
    /// The server answered with an error frame; `code` is the server's.
    #[error("{code}: {message}")]
    Remote { code: String, message: String },
    /// The request waited in the full offline queue and was dropped as the oldest.
    #[error("dropped from the full offline queue")]
    OfflineQueueOverflow,
    /// The caller's input could not be turned into a frame (bad JSON, no events...).
    #[error("invalid input: {0}")]
    InvalidInput(String),
}

impl ClientError {
    /// The stable machine code: the server's for [`ClientError::Remote`].
    pub fn code(&self) -> &str {
        match self {
            ClientError::InvalidUrl { .. } => "INVALID_URL",
            ClientError::Connect(_) => "CONNECT_FAILED",
            ClientError::Disconnected { .. } => "DISCONNECTED",
            ClientError::Closed => "CLOSED",
            ClientError::ConnectionLost => "CONNECTION_LOST",
            ClientError::Timeout(_) => "TIMEOUT",
            ClientError::Remote { code, .. } => code,
            ClientError::OfflineQueueOverflow => "OFFLINE_QUEUE_OVERFLOW",
            ClientError::InvalidInput(_) => "INVALID_INPUT",
        }
    }

    /// True for the two errors after which the client does nothing more.
    pub fn is_terminal(&self) -> bool {
        matches!(self, ClientError::Disconnected { .. } | ClientError::Closed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_errors_keep_the_server_code() {
        let error = ClientError::Remote { code: "DIVISION_BY_ZERO".into(), message: "6 / 0".into() };
        assert_eq!(error.code(), "DIVISION_BY_ZERO");
        assert_eq!(error.to_string(), "DIVISION_BY_ZERO: 6 / 0");
        assert_eq!(ClientError::Timeout(Duration::from_secs(1)).code(), "TIMEOUT");
        assert!(ClientError::Closed.is_terminal());
        assert!(!ClientError::ConnectionLost.is_terminal());
    }
}
