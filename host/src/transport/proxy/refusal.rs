//! What the proxy answers, instead of an upgrade, to a request it will not
//! relay: an HTTP status and the body
//! `{"type":"error","data":{"code":CODE,"message":...}}`.
//!
//! 404 `NOT_FOUND` (no route for this path and Host), 503
//! `TOO_MANY_CONNECTIONS` (route at `max_connections`), 503 `UNAVAILABLE`
//! (shutting down), the upstream's own 4xx as `UPSTREAM_REFUSED`, 400
//! `NO_SUBPROTOCOL` (the upstream accepted none of the client's
//! subprotocols), 400 `BAD_REQUEST` (headers that cannot be forwarded), and
//! the upgrade extractor's status as `UPGRADE_REQUIRED` (not a WebSocket
//! handshake).
//!
//! It owns the codes and statuses; it must not decide when to refuse (the
//! relay does).

use crate::transport::ApiError;
use crate::wire::{ErrorCode, Failure};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// A request the proxy answers with an HTTP error instead of an upgrade.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProxyRefusal {
    #[error("no proxy route for {path} on host {host:?}")]
    NotFound { path: String, host: Option<String> },
    #[error("{path} has its {max} connections open; try again later")]
    TooManyConnections { path: String, max: usize },
    #[error("the proxy is shutting down")]
    ShuttingDown,
    #[error("not a WebSocket handshake: {reason}")]
    NotWebSocket { status: StatusCode, reason: String },
    #[error("the upstream refused the handshake with HTTP {status}")]
    UpstreamRefused { status: StatusCode },
    #[error("the upstream accepted none of the offered subprotocols")]
    NoSubprotocol,
    #[error("the request cannot be forwarded: {0}")]
    BadRequest(String),
}

impl ProxyRefusal {
    /// The stable machine code.
    pub fn code(&self) -> ErrorCode {
        match self {
            ProxyRefusal::NotFound { .. } => ErrorCode::NotFound,
            ProxyRefusal::TooManyConnections { .. } => ErrorCode::TooManyConnections,
            ProxyRefusal::ShuttingDown => ErrorCode::Unavailable,
            ProxyRefusal::NotWebSocket { .. } => ErrorCode::UpgradeRequired,
            ProxyRefusal::UpstreamRefused { .. } => ErrorCode::UpstreamRefused,
            ProxyRefusal::NoSubprotocol => ErrorCode::NoSubprotocol,
            ProxyRefusal::BadRequest(_) => ErrorCode::BadRequest,
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ProxyRefusal::NotFound { .. } => StatusCode::NOT_FOUND,
            ProxyRefusal::TooManyConnections { .. } | ProxyRefusal::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
            ProxyRefusal::NotWebSocket { status, .. } | ProxyRefusal::UpstreamRefused { status } => *status,
            ProxyRefusal::NoSubprotocol | ProxyRefusal::BadRequest(_) => StatusCode::BAD_REQUEST,
        }
    }
}

impl IntoResponse for ProxyRefusal {
    fn into_response(self) -> Response {
        ApiError::with_status(self.status(), Failure::new(self.code(), self.to_string())).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusal_body_shape() {
        let refusal = ProxyRefusal::TooManyConnections { path: "/video".into(), max: 2 };
        assert_eq!(refusal.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(refusal.code(), ErrorCode::TooManyConnections);
    }
}
