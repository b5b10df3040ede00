//! The HTTP API, on the same listener as the WebSockets. Documented in
//! `docs/openapi.json`, which a test checks against these routes.
//!
//! - `POST /api/v1/messages`: one envelope through the same dispatcher as
//!   a WebSocket frame; the reply in the request's format.
//! - `/api/control` (GET, POST, PUT, DELETE): the video-control proxy's API,
//!   verbatim, as a `video_command` message.
//! - `GET /api/status`, `GET /api/connections`.
//! - `/api/plugins`: list, upload, reload, delete: the registry's own
//!   validate-then-swap path, as the folder watcher uses.
//! - `/api/config`: the runtime-adjustable limits.
//! - `POST /api/broadcast`, `/api/publish/{topic}`,
//!   `/api/connections/{id}/send`, `/api/rooms/{room}/send`.
//! - `POST /api/connections/{id}/call`: a request to one client, answered
//!   with the client's answer (see [`crate::wire::calls`]).
//! - `DELETE /api/keys/{name}`: revoke a key and close its connections.
//! - `/api/history/...`: what history recorded ([`history`]).
//! - `/dashboard` and `GET /api/dashboard`: the operator console and its
//!   admin feed ([`dashboard`]).
//!
//! Errors are the WebSocket protocol's error body with an HTTP status (see
//! [`super::status_of`]). Plugin, config, key and send routes need an
//! `admin` key; the others follow `auth.require_key_for_api`.

mod history;
pub(crate) mod dashboard;

use super::{ApiError, Gateway};
use crate::wire::dialect::{self, Profile, ReplyTo};
use crate::routing::dispatch::Caller;
use crate::wire::{control, ErrorCode, Failure, Origin, Outcome, Transport};
use crate::wire::close;
use crate::plugins::deploys::ChangedBy;
use crate::plugins::registry::{Loaded, RegistryError, STATUS_TOPIC};
use crate::plugins::runtime::PluginVersion;
use crate::admission::security::{self, Principal};
use crate::services::{ClientRef, EventSink, Rooms};
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, Query, Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde_json::value::{to_raw_value, RawValue};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

mod deploys;

/// The topic of config changes.
pub const CONFIG_TOPIC: &str = "config";

type Shared = State<Arc<Gateway>>;
type ApiResult = Result<Response, ApiError>;

pub fn routes() -> Router<Arc<Gateway>> {
    Router::new()
        .route("/api/v1/messages", post(message))
        .route("/api/control", get(control).post(control).put(control).delete(control))
        .route("/api/status", get(status))
        .route("/api/connections", get(connections))
        .route("/api/plugins", get(plugins).post(upload))
        .route("/api/plugins/{name}/reload", post(reload))
        .route("/api/plugins/{name}", delete(remove))
        .route("/api/config", get(config).put(update_config))
        .route("/api/broadcast", post(broadcast))
        .route("/api/publish/{topic}", post(publish))
        .route("/api/connections/{id}/send", post(send_to_connection))
        .route("/api/connections/{id}/call", post(call_connection))
        .route("/api/rooms/{room}/send", post(send_to_room))
        .route("/api/keys/{name}", delete(revoke))
        .merge(history::routes())
        .merge(dashboard::routes())
        .merge(deploys::routes())
}

/// Which callers a route lets in.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Access {
    /// Anonymous callers too, unless `auth.require_key_for_api`.
    Api,
    /// Any valid key.
    Key,
    /// An `admin` key.
    Admin,
}

fn authenticate(gateway: &Gateway, headers: &HeaderMap, access: Access) -> Result<Arc<Principal>, ApiError> {
    let key = security::bearer(headers.get("authorization").and_then(|v| v.to_str().ok()))?;
    let client_id = client_id(headers);
    let principal = if access == Access::Api && !gateway.keyring.require_key_for_api {
        gateway.keyring.authenticate(key, client_id.as_deref())?
    } else {
        gateway.keyring.require(key, client_id.as_deref())?
    };
    if access == Access::Admin {
        principal.may_administer()?;
    }
    Ok(principal)
}

fn client_id(headers: &HeaderMap) -> Option<String> {
    headers.get("x-client-id").and_then(|v| v.to_str().ok()).filter(|id| !id.is_empty() && id.len() <= 128).map(str::to_owned)
}

/// The request body, up to `limit` bytes, if it arrives whole within
/// `limits.body_timeout_ms`: a body that trickles in, or a
/// `Content-Length` with nothing behind it, must not hold a connection.
async fn body(gateway: &Gateway, request: Request, limit: usize) -> Result<Bytes, ApiError> {
    let deadline = gateway.body_timeout;
    match tokio::time::timeout(deadline, axum::body::to_bytes(request.into_body(), limit)).await {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(_)) => Err(ApiError::from(Failure::new(ErrorCode::PayloadTooLarge, format!("request body over the {limit}-byte limit")))),
        Err(_) => Err(ApiError::from(Failure::new(
            ErrorCode::RequestTimeout,
            format!("the request body did not arrive within {} ms", deadline.as_millis()),
        ))),
    }
}

fn json_body(bytes: &[u8]) -> Result<Box<RawValue>, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| ApiError::from(Failure::new(ErrorCode::InvalidJson, format!("the body is not JSON: {e}"))))
}

/// Route one message from HTTP as a WebSocket frame would be.
async fn route(gateway: &Gateway, remote: SocketAddr, headers: &HeaderMap, text: &str, endpoint: &str) -> Result<(ReplyTo, Outcome), ApiError> {
    let principal = authenticate(gateway, headers, Access::Api)?;
    let who = principal.key.clone().unwrap_or_else(|| remote.ip().to_string());
    let origin = Origin {
        connection_id: format!("http-{}", uuid::Uuid::new_v4().simple()),
        client_id: client_id(headers),
        transport: Transport::Http,
        endpoint: endpoint.to_owned(),
    };
    let caller = Caller {
        origin: &origin,
        connection: None,
        principal: &principal,
    };
    let admit = || gateway.limits.admit_http_message(&who);
    Ok(gateway.dispatcher.handle(text, &Profile::default(), &caller, admit).await)
}

/// The answer in the request's own format, with the status of its outcome
/// (and an error's headers).
fn answered(reply_to: &ReplyTo, outcome: &Outcome) -> Response {
    let mut response = ([(header::CONTENT_TYPE, "application/json")], dialect::encode(reply_to, outcome)).into_response();
    if let Err(failure) = outcome {
        *response.status_mut() = super::status_of(&failure.code);
        super::error_headers(failure, response.headers_mut());
    }
    response
}

async fn message(State(gateway): Shared, ConnectInfo(remote): ConnectInfo<SocketAddr>, headers: HeaderMap, request: Request) -> ApiResult {
    let bytes = body(&gateway, request, gateway.max_body_bytes).await?;
    let text = std::str::from_utf8(&bytes).map_err(|_| ApiError::from(Failure::new(ErrorCode::InvalidJson, "the body is not UTF-8")))?;
    let (reply_to, outcome) = route(&gateway, remote, &headers, text, "/api/v1/messages").await?;
    Ok(answered(&reply_to, &outcome))
}

/// `/api/control`, verbatim (see [`control`]). The reply is the plugin's
/// data itself.
async fn control(
    State(gateway): Shared,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    method: Method,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    request: Request,
) -> ApiResult {
    let method = match method {
        Method::GET => control::Method::Get,
        Method::POST => control::Method::Post,
        Method::PUT => control::Method::Put,
        _ => control::Method::Delete,
    };
    let bytes = body(&gateway, request, gateway.max_body_bytes).await?;
    let text = control::message(method, query, &bytes)?;
    Ok(match route(&gateway, remote, &headers, &text, "/api/control").await? {
        (_, Ok(reply)) => ([(header::CONTENT_TYPE, "application/json")], reply.data.get().to_owned()).into_response(),
        (reply_to, outcome) => answered(&reply_to, &outcome),
    })
}

fn plugin_info(gateway: &Gateway, plugin: &PluginVersion) -> Value {
    let stats = &plugin.stats;
    let latency = stats.latencies.p50_p99();
    json!({
        "name": plugin.name(),
        "version": plugin.version(),
        "description": plugin.description,
        "contract": plugin.contract,
        "file": gateway.registry.path_of(plugin.name()).and_then(|p| p.file_name().map(|f| f.to_string_lossy().into_owned())),
        "hash": plugin.hash,
        "loaded_at": humantime::format_rfc3339_seconds(plugin.loaded_at).to_string(),
        "claims": plugin.claims.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "swap_count": gateway.registry.swaps_of(plugin.name()),
        "calls": stats.calls.load(std::sync::atomic::Ordering::Relaxed),
        "error_count": stats.errors(),
        "latency_us": { "p50": latency.map(|l| l.0), "p99": latency.map(|l| l.1) },
        "breaker": {
            "enabled": plugin.breaker.policy().is_some(),
            "state": plugin.breaker.state().as_str(),
            "times_opened": plugin.breaker.times_opened(),
            "retry_after": plugin.breaker.retry_after_ms(),
        },
        "cpu": { "slots": plugin.cpu.size(), "executing": plugin.cpu.executing() },
        "canary": gateway.registry.canary(plugin.name()).filter(|c| c.state() == crate::plugins::rollout::CanaryState::Running).map(|c| c.status()),
        "shadow": gateway.registry.shadow(plugin.name()).map(|s| s.status()),
    })
}

async fn status(State(gateway): Shared, headers: HeaderMap) -> ApiResult {
    let principal = authenticate(&gateway, &headers, Access::Api)?;
    let connections = gateway.hub.connections();
    let mut endpoints: Vec<Value> = gateway
        .endpoints
        .values()
        .map(|e| {
            let open = connections.iter().filter(|c| c.endpoint == e.path).count();
            json!({ "path": e.path, "format": if e.profile.raw { "raw" } else { "envelope" }, "auth": e.auth, "connections": open })
        })
        .collect();
    endpoints.sort_by(|a, b| a["path"].as_str().cmp(&b["path"].as_str()));
    let mut rooms = gateway.hub.room_sizes();
    rooms.sort();
    let (messages, errors) = gateway.metrics.totals();
    Ok(Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_seconds": gateway.started.elapsed().as_secs(),
        "connections": connections.len(),
        "cluster": gateway.hub.cluster_status(),
        "endpoints": endpoints,
        "rooms": rooms.into_iter().map(|(name, members)| json!({ "name": name, "members": members })).collect::<Vec<_>>(),
        "topics": gateway.hub.topics().into_iter().map(|(pattern, n)| json!({ "pattern": pattern, "subscribers": n })).collect::<Vec<_>>(),
        "plugins": gateway.registry.plugins().iter().map(|p| plugin_info(&gateway, p)).collect::<Vec<_>>(),
        "workers": gateway.workers.list(),
        "proxy": gateway.proxy.as_ref().map(|p| p.status()),
        "swaps": gateway.registry.swap_count(),
        "load_failures": gateway.registry.load_failure_count(),
        "compiles": gateway.registry.compile_count(),
        "messages": messages,
        "errors": errors,
        // Key names and revocations, for administrators only.
        "keys": principal.scopes.admin.then(|| gateway.keyring.keys()),
    }))
    .into_response())
}

async fn connections(State(gateway): Shared, headers: HeaderMap) -> ApiResult {
    authenticate(&gateway, &headers, Access::Admin)?;
    let list = gateway.hub.connection_infos();
    Ok(Json(json!({ "connections": list })).into_response())
}

async fn plugins(State(gateway): Shared, headers: HeaderMap) -> ApiResult {
    authenticate(&gateway, &headers, Access::Api)?;
    let list: Vec<_> = gateway.registry.plugins().iter().map(|p| plugin_info(&gateway, p)).collect();
    Ok(Json(json!({ "plugins": list })).into_response())
}

fn registry_error(error: RegistryError) -> ApiError {
    ApiError::from(Failure::new(error.code(), error.to_string()))
}

/// A load's outcome: its event and the version now serving from `path`.
fn loaded(gateway: &Gateway, status: StatusCode, path: &std::path::Path, loaded: &Loaded) -> Response {
    let event = match loaded {
        Loaded::New(_) => "plugin_loaded",
        Loaded::Swapped { .. } => "plugin_swapped",
        Loaded::Unchanged => "unchanged",
    };
    let plugin = gateway.registry.serving(path).map(|p| plugin_info(gateway, &p));
    (status, Json(json!({ "event": event, "plugin": plugin }))).into_response()
}

/// Upload a component (the body is the `.wasm`).
async fn upload(State(gateway): Shared, headers: HeaderMap, request: Request) -> ApiResult {
    authenticate(&gateway, &headers, Access::Admin)?;
    let bytes = body(&gateway, request, gateway.max_upload_bytes).await?;
    let (path, outcome) = gateway.registry.install(&gateway.plugin_dir, bytes.to_vec()).await.map_err(registry_error)?;
    if let (Loaded::New(new) | Loaded::Swapped { new, .. }, Some(hook)) = (&outcome, gateway.registry.deploy_hook()) {
        hook.installed(new, &path, ChangedBy::Api);
    }
    let status = if matches!(outcome, Loaded::Unchanged) { StatusCode::OK } else { StatusCode::CREATED };
    Ok(loaded(&gateway, status, &path, &outcome))
}

fn no_plugin(name: &str) -> ApiError {
    ApiError::from(Failure::new(ErrorCode::NotFound, format!("no plugin named {name:?}")))
}

async fn reload(State(gateway): Shared, Path(name): Path<String>, headers: HeaderMap) -> ApiResult {
    authenticate(&gateway, &headers, Access::Admin)?;
    let path = gateway.registry.path_of(&name).ok_or_else(|| no_plugin(&name))?;
    let outcome = gateway.registry.reload(&path).await.map_err(registry_error)?;
    Ok(loaded(&gateway, StatusCode::OK, &path, &outcome))
}

async fn remove(State(gateway): Shared, Path(name): Path<String>, headers: HeaderMap) -> ApiResult {
    authenticate(&gateway, &headers, Access::Admin)?;
    let old = gateway.registry.remove(&name).ok_or_else(|| no_plugin(&name))?;
    if let Some(hook) = gateway.registry.deploy_hook() {
        hook.removed(old.name(), ChangedBy::Api);
    }
    Ok(Json(json!({ "event": "plugin_unloaded", "plugin": old.name(), "version": old.version() })).into_response())
}

async fn config(State(gateway): Shared, headers: HeaderMap) -> ApiResult {
    authenticate(&gateway, &headers, Access::Admin)?;
    Ok(Json(json!({ "limits": *gateway.limits.get() })).into_response())
}

/// Change runtime limits; publishes a `config` event with old and new.
async fn update_config(State(gateway): Shared, headers: HeaderMap, request: Request) -> ApiResult {
    let principal = authenticate(&gateway, &headers, Access::Admin)?;
    let patch: Value = serde_json::from_str(json_body(&body(&gateway, request, gateway.max_body_bytes).await?)?.get()).unwrap_or_default();
    let patch = patch.get("limits").cloned().unwrap_or(patch);
    let (old, new) = gateway.limits.update(&patch)?;
    gateway.registry.runtime().set_deadline(new.deadline());
    let changed: Vec<String> = patch.as_object().map(|fields| fields.keys().cloned().collect()).unwrap_or_default();
    let current = || serde_json::to_value(&*gateway.limits.get()).ok().and_then(|v| v.as_object().cloned()).unwrap_or_default();
    gateway.state.set_limits(&changed, current).await.map_err(|e| not_saved("the limits changed", &e))?;
    tracing::info!(key = ?principal.key, old = ?*old, new = ?*new, "limits changed");
    let event = json!({ "old": *old, "new": *new, "by": principal.key });
    if let Ok(raw) = to_raw_value(&event) {
        gateway.metrics.feed.timeline().record(CONFIG_TOPIC, "api", &raw);
        let _ = gateway.hub.publish(CONFIG_TOPIC, &raw, "api");
    }
    Ok(Json(json!({ "old": *old, "new": *new })).into_response())
}

#[derive(serde::Deserialize)]
struct BroadcastQuery {
    endpoint: Option<String>,
}

fn delivered(n: usize) -> Response {
    Json(json!({ "delivered": n })).into_response()
}

/// Queue the body (a JSON message, sent as it is) to every connection, or
/// those on `?endpoint=`.
async fn broadcast(State(gateway): Shared, Query(query): Query<BroadcastQuery>, headers: HeaderMap, request: Request) -> ApiResult {
    authenticate(&gateway, &headers, Access::Admin)?;
    let message = json_body(&body(&gateway, request, gateway.max_body_bytes).await?)?;
    Ok(delivered(gateway.hub.broadcast_all(&message, query.endpoint.as_deref())))
}

/// Publish the body as an event's data on `topic` (a key with the topic in
/// scope).
async fn publish(State(gateway): Shared, Path(topic): Path<String>, headers: HeaderMap, request: Request) -> ApiResult {
    let principal = authenticate(&gateway, &headers, Access::Key)?;
    principal.may_use_topic(&topic)?;
    if topic == STATUS_TOPIC || topic == CONFIG_TOPIC {
        principal.may_administer()?;
    }
    let data = json_body(&body(&gateway, request, gateway.max_body_bytes).await?)?;
    let source = format!("http:{}", principal.key.as_deref().unwrap_or("-"));
    Ok(delivered(gateway.hub.publish(&topic, &data, &source)?))
}

async fn send_to_connection(State(gateway): Shared, Path(id): Path<String>, headers: HeaderMap, request: Request) -> ApiResult {
    authenticate(&gateway, &headers, Access::Admin)?;
    let message = json_body(&body(&gateway, request, gateway.max_body_bytes).await?)?;
    gateway.hub.send(&id, &message)?;
    Ok(delivered(1))
}

/// Longest a call from the API may wait for the client's answer.
const MAX_CALL_TIMEOUT_MS: u64 = 60_000;

/// The body of `POST /api/connections/{id}/call`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CallRequest {
    action: String,
    #[serde(default)]
    params: Option<Box<RawValue>>,
    #[serde(default = "default_call_timeout")]
    timeout_ms: u64,
}

fn default_call_timeout() -> u64 {
    5_000
}

/// Send the client on connection `id` a request and answer with its answer.
async fn call_connection(State(gateway): Shared, Path(id): Path<String>, headers: HeaderMap, request: Request) -> ApiResult {
    authenticate(&gateway, &headers, Access::Admin)?;
    let bytes = body(&gateway, request, gateway.max_body_bytes).await?;
    let call: CallRequest = serde_json::from_slice(&bytes).map_err(|e| {
        let code = if e.is_syntax() || e.is_eof() { ErrorCode::InvalidJson } else { ErrorCode::InvalidMessage };
        ApiError::from(Failure::new(code, format!("expected {{\"action\", \"params\", \"timeout_ms\"}}: {e}")))
    })?;
    if call.timeout_ms == 0 || call.timeout_ms > MAX_CALL_TIMEOUT_MS {
        return Err(ApiError::from(Failure::new(ErrorCode::InvalidMessage, format!("timeout_ms must be 1..={MAX_CALL_TIMEOUT_MS}"))));
    }
    let params = call.params.unwrap_or_else(crate::wire::envelope::empty_object);
    let timeout = std::time::Duration::from_millis(call.timeout_ms);
    let target = ClientRef::Connection(id.clone());
    let data = gateway.hub.call(&target, &call.action, &params, timeout).await?;
    Ok(Json(json!({ "connection_id": id, "action": call.action, "data": data })).into_response())
}

async fn send_to_room(State(gateway): Shared, Path(room): Path<String>, headers: HeaderMap, request: Request) -> ApiResult {
    authenticate(&gateway, &headers, Access::Admin)?;
    let message = json_body(&body(&gateway, request, gateway.max_body_bytes).await?)?;
    if !gateway.hub.room_sizes().iter().any(|(name, _)| *name == room) {
        return Err(ApiError::from(Failure::new(ErrorCode::NotFound, format!("no room {room:?} has members"))));
    }
    Ok(delivered(gateway.hub.broadcast(&room, &message, None)? as usize))
}

/// Revoke a key: it is refused from now on, and its connections close (4001).
async fn revoke(State(gateway): Shared, Path(name): Path<String>, headers: HeaderMap) -> ApiResult {
    authenticate(&gateway, &headers, Access::Admin)?;
    if !gateway.keyring.revoke(&name) {
        return Err(ApiError::from(Failure::new(ErrorCode::NotFound, format!("no key named {name:?}"))));
    }
    let closed = gateway.hub.evict_key(&name, close::AUTHENTICATION_FAILED, "API key revoked");
    gateway.state.revoke(&name).await.map_err(|e| not_saved(&format!("key {name:?} is revoked"), &e))?;
    Ok(Json(json!({ "revoked": name, "connections_closed": closed })).into_response())
}

/// A change applied but not written to the data folder: it holds only
/// until the host restarts.
fn not_saved(what: &str, error: &std::io::Error) -> ApiError {
    tracing::error!("{what} until the host restarts: cannot save the host state: {error}");
    ApiError::from(Failure::new(ErrorCode::Internal, format!("{what} until the host restarts: cannot save the host state: {error}")))
}
