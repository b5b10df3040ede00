//! Transports: the one listener's HTTP routes and WebSocket endpoints.
//!
//! Transports do bytes, frames, heartbeats, limits and auth, then hand text
//! to the [`Dispatcher`]. They know nothing of wasm.
//!
//! - [`listener`]: the accept loop (TLS, handshake timeout, HTTP/1.1 and h2).
//! - [`ws`]: WebSocket endpoints.
//! - [`api`]: the HTTP API under `/api`.
//! - [`proxy`]: paths relayed to upstream WebSocket servers.
//! - [`worker`]: the remote-worker side of a WebSocket.
//! - here: `/healthz`, `/readyz`, `/metrics`, and the JSON error responses.

pub mod api;
pub mod listener;
pub mod proxy;
pub mod tls;
pub mod worker;
pub mod ws;

use crate::config::{EndpointConfig, EndpointFormat, EndpointRole, ListenerConfig};
use crate::dialect::Profile;
use crate::dispatch::Dispatcher;
use crate::envelope::{ErrorCode, Failure};
use crate::hub::Hub;
use crate::limits::LiveLimits;
use crate::metrics::Metrics;
use crate::registry::Registry;
use crate::security::Keyring;
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
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

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
    pub ack: bool,
    /// Callers must present an API key.
    pub auth: bool,
    pub role: EndpointRole,
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
    pub serve_metrics: bool,
    pub started: Instant,
    /// Set once the plugin folder is loaded; cleared on shutdown.
    pub ready: AtomicBool,
    /// Cancelled when the host begins to shut down.
    pub shutdown: CancellationToken,
    /// Connection tasks, awaited on shutdown.
    pub tracker: TaskTracker,
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
        router = router.route(path, get(ws::upgrade).layer(Extension(endpoint.clone())));
    }
    let proxy = gateway.proxy.as_ref().map(|proxy| proxy.router());
    let app = router
        .fallback(|| async { ApiError(Failure::new(ErrorCode::NotFound, "no such route")) })
        .method_not_allowed_fallback(|| async {
            ApiError::with_status(StatusCode::METHOD_NOT_ALLOWED, Failure::new(ErrorCode::InvalidMessage, "method not allowed on this route"))
        })
        .with_state(gateway);
    match proxy {
        Some(proxy) => app.merge(proxy),
        None => app,
    }
}

async fn readyz(axum::extract::State(gateway): axum::extract::State<Arc<Gateway>>) -> Response {
    let ready = gateway.ready.load(Ordering::Relaxed) && !gateway.shutdown.is_cancelled();
    let body = axum::Json(serde_json::json!({ "ready": ready, "plugins": gateway.registry.plugins().len() }));
    if ready {
        body.into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, body).into_response()
    }
}

async fn metrics(axum::extract::State(gateway): axum::extract::State<Arc<Gateway>>) -> Response {
    let content_type = HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8");
    ([(header::CONTENT_TYPE, content_type)], gateway.metrics.render()).into_response()
}

/// A failure as an HTTP response: the WebSocket protocol's error body
/// (`{"type":"error","data":{"code","message"}}`) with a fitting status.
#[derive(Debug)]
pub struct ApiError(pub Failure);

impl ApiError {
    fn with_status(status: StatusCode, failure: Failure) -> Response {
        let mut response = ApiError(failure).into_response();
        *response.status_mut() = status;
        response
    }
}

impl From<Failure> for ApiError {
    fn from(failure: Failure) -> Self {
        ApiError(failure)
    }
}

/// The HTTP status for an error code.
pub fn status_of(code: &str) -> StatusCode {
    match code {
        "AUTHENTICATION_FAILED" => StatusCode::UNAUTHORIZED,
        "FORBIDDEN" => StatusCode::FORBIDDEN,
        "RATE_LIMIT_EXCEEDED" => StatusCode::TOO_MANY_REQUESTS,
        "NOT_FOUND" | "UNKNOWN_TYPE" | "CONNECTION_NOT_FOUND" | "DEVICE_NOT_FOUND" => StatusCode::NOT_FOUND,
        "INVALID_JSON" | "INVALID_MESSAGE" => StatusCode::BAD_REQUEST,
        "PAYLOAD_TOO_LARGE" => StatusCode::PAYLOAD_TOO_LARGE,
        "PLUGIN_TIMEOUT" => StatusCode::GATEWAY_TIMEOUT,
        "PLUGIN_FAILED" => StatusCode::BAD_GATEWAY,
        "TOO_MANY_CONNECTIONS" | "UNAVAILABLE" => StatusCode::SERVICE_UNAVAILABLE,
        "CLAIM_CONFLICT" => StatusCode::CONFLICT,
        "INTERNAL_ERROR" | "PLUGIN_WRITE_FAILED" => StatusCode::INTERNAL_SERVER_ERROR,
        // Plugin codes and plugin load codes: the request was understood
        // and refused.
        _ => StatusCode::UNPROCESSABLE_ENTITY,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let failure = self.0;
        let status = status_of(&failure.code);
        let mut data = serde_json::json!({ "code": failure.code, "message": failure.message });
        if let Some(ms) = failure.retry_after_ms {
            data["retry_after"] = ms.into();
        }
        let mut response = (status, axum::Json(serde_json::json!({ "type": "error", "data": data }))).into_response();
        error_headers(&failure, response.headers_mut());
        response
    }
}

/// The headers an error response carries: `WWW-Authenticate` for a
/// refused key, `Retry-After` (whole seconds) for a rate limit.
pub fn error_headers(failure: &Failure, headers: &mut axum::http::HeaderMap) {
    if status_of(&failure.code) == StatusCode::UNAUTHORIZED {
        headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    if let Some(ms) = failure.retry_after_ms {
        headers.insert(header::RETRY_AFTER, HeaderValue::from(ms.div_ceil(1000).max(1)));
    }
}
