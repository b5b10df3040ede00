//! Transports: the one listener's HTTP routes and WebSocket endpoints.
//!
//! Transports do bytes, frames, heartbeats, limits and auth, then hand text
//! to the [`Dispatcher`]. They know nothing of wasm.
//!
//! - [`listener`]: the accept loop (TLS, handshake timeout, HTTP/1.1 and h2).
//! - [`http_errors`]: the JSON error body on every HTTP error, axum's and
//!   hyper's own included.
//! - [`ws`]: WebSocket endpoints.
//! - [`closing`]: how every host WebSocket ends (close codes for failed
//!   reads, the closing handshake).
//! - [`api`]: the HTTP API under `/api`.
//! - [`proxy`]: paths relayed to upstream WebSocket servers.
//! - [`worker`]: the remote-worker side of a WebSocket.
//! - here: `/healthz`, `/readyz`, `/metrics`, and the JSON error responses.

pub mod api;
pub mod closing;
pub mod http_errors;
pub mod listener;
pub mod opaque;
pub mod proxy;
pub mod tls;
pub mod worker;
pub mod ws;

use crate::config::{EndpointConfig, EndpointEncoding, EndpointFormat, EndpointRole, ListenerConfig};
use crate::wire::msgpack::Encoding;
use crate::wire::dialect::Profile;
use crate::routing::dispatch::Dispatcher;
use crate::wire::frames::Ack;
use crate::wire::{codes, frames, ErrorCode, Failure};
use crate::hub::Hub;
use crate::lifecycle::Tasks;
use crate::admission::limits::LiveLimits;
use crate::observability::metrics::Metrics;
use crate::plugins::registry::Registry;
use crate::admission::security::Keyring;
use crate::store::host_state::HostState;
use crate::store::queries::HistoryQueries;
use crate::workers::WorkerPool;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Per-connection timers and the hard frame limit. (The limits that can
/// change while serving are in [`LiveLimits`].)
#[derive(Debug, Clone)]
pub struct WsSettings {
    pub max_frame_bytes: usize,
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
    /// The `connection` frame sent on connect.
    pub ack: Ack,
    /// Callers must present an API key.
    pub auth: bool,
    pub role: EndpointRole,
    /// Every connection's encoding, unless it asks for the `msgpack`
    /// subprotocol.
    pub encoding: Encoding,
    /// On an `opaque` endpoint, the type whose plugin gets every frame.
    pub opaque: Option<String>,
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
            auth: config.auth,
            role: config.role,
            encoding: match config.encoding {
                EndpointEncoding::Json => Encoding::Json,
                EndpointEncoding::Msgpack => Encoding::MessagePack,
            },
            opaque: (config.format == EndpointFormat::Opaque).then(|| config.default_type.clone()).flatten(),
        }
    }
}

impl From<&ListenerConfig> for Endpoint {
    fn from(config: &ListenerConfig) -> Self {
        Endpoint {
            path: format!("{}/", config.listen),
            profile: Profile::default(),
            subscribe: Vec::new(),
            ack: config.ack,
            auth: config.auth,
            role: config.role,
            encoding: Encoding::Json,
            opaque: None,
        }
    }
}

/// What every transport handler shares.
pub struct Gateway {
    pub dispatcher: Dispatcher,
    /// By path.
    pub endpoints: HashMap<String, Endpoint>,
    pub hub: Arc<Hub>,
    pub registry: Arc<Registry>,
    pub workers: Arc<WorkerPool>,
    pub proxy: Option<Arc<proxy::Proxy>>,
    pub keyring: Arc<Keyring>,
    pub limits: Arc<LiveLimits>,
    pub metrics: Arc<Metrics>,
    pub ws: WsSettings,
    /// For a TLS handshake, a request head, a worker's `register`.
    pub handshake_timeout: Duration,
    /// The plugin folder, where uploads are written.
    pub plugin_dir: PathBuf,
    pub max_body_bytes: usize,
    pub max_upload_bytes: usize,
    /// How long a whole request body may take to arrive.
    pub body_timeout: Duration,
    /// Revocations and limits changed at run time, kept across restarts.
    pub state: Arc<HostState>,
    /// Reads history back for `/api/history/...`; `None` when history is off.
    pub history: Option<HistoryQueries>,
    pub serve_metrics: bool,
    pub started: Instant,
    /// Set once the plugin folder is loaded; cleared on shutdown.
    pub ready: AtomicBool,
    /// Connection tasks, tracked; their shutdown signal.
    pub tasks: Tasks,
}

/// The listener's routes.
pub fn routes(gateway: Arc<Gateway>) -> Router {
    let mut router = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .merge(api::routes());
    if gateway.serve_metrics {
        router = router.route("/metrics", get(metrics));
    }
    for (path, endpoint) in &gateway.endpoints {
        router = router.route(path, get(ws::upgrade).layer(Extension(Arc::new(endpoint.clone()))));
    }
    let proxy = gateway.proxy.as_ref().map(|proxy| proxy.router());
    let app = router
        .fallback(|| async { ApiError::from(Failure::new(ErrorCode::NotFound, "no such route")) })
        .method_not_allowed_fallback(|| async {
            ApiError::from(Failure::new(ErrorCode::MethodNotAllowed, "method not allowed on this route"))
        })
        .with_state(gateway);
    match proxy {
        Some(proxy) => app.merge(proxy),
        None => app,
    }
}

async fn readyz(axum::extract::State(gateway): axum::extract::State<Arc<Gateway>>) -> Response {
    let ready = gateway.ready.load(Ordering::Relaxed) && !gateway.tasks.is_shutting_down();
    let body = axum::Json(serde_json::json!({ "ready": ready, "plugins": gateway.registry.plugins().len() }));
    if ready {
        body.into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, body).into_response()
    }
}

async fn metrics(axum::extract::State(gateway): axum::extract::State<Arc<Gateway>>) -> Response {
    let content_type = HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8");
    let mut text = gateway.metrics.render();
    // Per-version errors by code, read from the versions' own counters.
    let registry = &gateway.registry;
    let mut versions = Vec::new();
    for serving in registry.plugins() {
        let name = serving.name().to_owned();
        versions.extend(registry.retained(&name));
        versions.extend(registry.canary(&name).map(|c| Arc::clone(&c.candidate)));
        versions.extend(registry.shadow(&name).map(|s| Arc::clone(&s.candidate)));
        versions.push(serving);
    }
    let errors = crate::plugins::versions::errors_metric(&versions);
    match text.rfind("# EOF") {
        Some(end) => text.insert_str(end, &errors),
        None => text.push_str(&errors),
    }
    ([(header::CONTENT_TYPE, content_type)], text).into_response()
}

/// A failure as an HTTP response: the shared error body
/// ([`frames::error_body`]) with the code's HTTP status, or the one given.
#[derive(Debug)]
pub struct ApiError {
    pub failure: Failure,
    /// Overrides the code's own status (a proxy passes an upstream's on).
    pub status: Option<StatusCode>,
}

impl ApiError {
    pub fn with_status(status: StatusCode, failure: Failure) -> ApiError {
        ApiError { failure, status: Some(status) }
    }
}

impl From<Failure> for ApiError {
    fn from(failure: Failure) -> Self {
        ApiError { failure, status: None }
    }
}

/// The HTTP status for an error code on the wire.
pub fn status_of(code: &str) -> StatusCode {
    StatusCode::from_u16(codes::http_status_of(code)).unwrap_or(StatusCode::UNPROCESSABLE_ENTITY)
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status.unwrap_or_else(|| status_of(&self.failure.code));
        let mut response = (status, [(header::CONTENT_TYPE, "application/json")], frames::error_body(&self.failure)).into_response();
        error_headers(&self.failure, response.headers_mut());
        response
    }
}

/// The headers an error response carries: `WWW-Authenticate` for a
/// refused key, `Retry-After` (whole seconds) for a rate limit or an open
/// circuit breaker.
pub fn error_headers(failure: &Failure, headers: &mut axum::http::HeaderMap) {
    if failure.is(ErrorCode::AuthenticationFailed) {
        headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    if let Some(ms) = failure.retry_after_ms {
        headers.insert(header::RETRY_AFTER, HeaderValue::from(ms.div_ceil(1000).max(1)));
    }
}
