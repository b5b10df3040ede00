//! Transports: the one listener's HTTP routes and WebSocket endpoints.
//!
//! Transports do bytes, frames, heartbeats and limits, then hand text to the
//! [`Dispatcher`]. They know nothing of wasm.

pub mod ws;

use crate::config::{EndpointConfig, EndpointFormat};
use crate::dialect::Profile;
use crate::dispatch::Dispatcher;
use crate::hub::Hub;
use std::collections::HashMap;
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

/// One WebSocket path, as the transport applies it.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub path: String,
    pub profile: Profile,
    pub subscribe: Vec<String>,
    pub ack: bool,
}

impl From<&EndpointConfig> for Endpoint {
    fn from(config: &EndpointConfig) -> Self {
        Endpoint {
            path: config.path.clone(),
            profile: Profile {
                raw: config.format == EndpointFormat::Raw,
                namespace: config.namespace.clone(),
                default_type: config.default_type.clone(),
            },
            subscribe: config.subscribe.clone(),
            ack: config.ack,
        }
    }
}

/// What every transport handler shares.
pub struct Gateway {
    pub dispatcher: Dispatcher,
    /// By path.
    pub endpoints: HashMap<String, Endpoint>,
    pub hub: Arc<Hub>,
    pub ws: WsSettings,
    /// Cancelled when the host begins to shut down.
    pub shutdown: CancellationToken,
    /// Connection tasks, awaited on shutdown.
    pub tracker: TaskTracker,
}

/// The listener's routes.
pub fn routes(gateway: Arc<Gateway>) -> Router {
    let mut router = Router::new().route("/healthz", get(|| async { "ok" }));
    for path in gateway.endpoints.keys() {
        router = router.route(path, get(ws::upgrade));
    }
    router.with_state(gateway)
}
