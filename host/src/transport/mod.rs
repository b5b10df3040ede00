//! Transports: the one listener's HTTP routes and WebSocket endpoints.
//!
//! Transports do bytes, frames, heartbeats and limits, then hand text to the
//! [`Dispatcher`]. They know nothing of wasm.

pub mod ws;

use crate::dispatch::Dispatcher;
use crate::hub::Hub;
use axum::routing::get;
use axum::Router;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Per-connection limits and timers.
#[derive(Debug, Clone)]
pub struct WsSettings {
    pub max_message_bytes: usize,
    pub max_frame_bytes: usize,
    pub max_connections: usize,
    pub heartbeat: Duration,
    pub idle_timeout: Duration,
    pub send_timeout: Duration,
}

/// What every transport handler shares.
pub struct Gateway {
    pub dispatcher: Dispatcher,
    pub hub: Arc<Hub>,
    pub ws: WsSettings,
    /// Cancelled when the host begins to shut down.
    pub shutdown: CancellationToken,
    /// Connection tasks, awaited on shutdown.
    pub tracker: TaskTracker,
}

/// The listener's routes.
pub fn routes(gateway: Arc<Gateway>) -> Router {
    Router::new()
        // `/` as well: the servers Switchyard replaces accepted any path.
        .route("/", get(ws::upgrade))
        .route("/ws", get(ws::upgrade))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(gateway)
}
