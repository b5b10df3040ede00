//! The operator console at `/dashboard`, and the admin feed it watches.
//!
//! - `GET /dashboard`, `GET /dashboard/{file}`: the page and its assets,
//!   embedded in the binary from `host/dashboard/` (no build step; uPlot is
//!   vendored there with its license). The page holds no secret: it asks
//!   for an admin key and makes ordinary authenticated API and WebSocket
//!   calls, so it can do nothing its key could not do with `curl`.
//! - `GET /api/dashboard`: the feed's latest snapshot (admin).
//! - `GET /api/dashboard/timeline`: the last status and config events
//!   (admin), for a page opened after them.
//! - [`run_feed`]: while anyone subscribes to the `dashboard` topic, a
//!   snapshot every [`FEED_INTERVAL`] built from the collector's counts
//!   ([`crate::observability::feed`]) and what the registry, hub, workers
//!   and proxy hold. While nobody does, it checks every few seconds for a
//!   subscriber and does nothing else.

use super::{authenticate, Access, ApiResult, Shared};
use crate::observability::feed::{Interval, DASHBOARD_TOPIC};
use crate::plugins::rollout::CanaryState;
use crate::plugins::runtime::PluginVersion;
use crate::plugins::versions::{Histogram, Role};
use crate::services::Rooms;
use crate::transport::Gateway;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// How often a watched feed publishes: a few updates a second at most,
/// whatever the traffic.
pub const FEED_INTERVAL: Duration = Duration::from_millis(500);
/// While nobody watches, intervals between looks for a subscriber that
/// came without a `subscribe` message (an endpoint's `subscribe` list).
const IDLE_LOOK_EVERY: u32 = 10;
/// Rooms listed with their members, and members listed per room.
const MAX_ROOMS: usize = 200;
const MAX_MEMBERS: usize = 50;

/// The page and its assets: name, content type, bytes.
const ASSETS: &[(&str, &str, &[u8])] = &[
    ("index.html", "text/html; charset=utf-8", include_bytes!("../../../dashboard/index.html")),
    ("app.js", "text/javascript; charset=utf-8", include_bytes!("../../../dashboard/app.js")),
    ("app.css", "text/css; charset=utf-8", include_bytes!("../../../dashboard/app.css")),
    ("uPlot.iife.min.js", "text/javascript; charset=utf-8", include_bytes!("../../../dashboard/vendor/uPlot.iife.min.js")),
    ("uPlot.min.css", "text/css; charset=utf-8", include_bytes!("../../../dashboard/vendor/uPlot.min.css")),
    ("uPlot.LICENSE", "text/plain; charset=utf-8", include_bytes!("../../../dashboard/vendor/uPlot.LICENSE")),
];

/// Scripts, styles and connections from this host only; never framed.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

pub(super) fn routes() -> Router<Arc<Gateway>> {
    Router::new()
        .route("/dashboard", get(page))
        .route("/dashboard/{file}", get(asset))
        .route("/api/dashboard", get(current))
        .route("/api/dashboard/timeline", get(timeline))
}

async fn page() -> Response {
    served("index.html")
}

async fn asset(Path(file): Path<String>) -> Response {
    served(&file)
}

fn served(file: &str) -> Response {
    let Some((_, content_type, bytes)) = ASSETS.iter().find(|(name, _, _)| *name == file) else {
        return super::ApiError::from(crate::wire::Failure::new(crate::wire::ErrorCode::NotFound, format!("no dashboard asset {file:?}")))
            .into_response();
    };
    let mut response = (StatusCode::OK, *bytes).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    response
}

/// The latest snapshot; built now (without message counts) when none was
/// published lately, which also wakes the feed.
async fn current(State(gateway): Shared, headers: HeaderMap) -> ApiResult {
    authenticate(&gateway, &headers, Access::Admin)?;
    let feed = &gateway.metrics.feed;
    if let Some(last) = feed.last(FEED_INTERVAL * 3) {
        return Ok(([(header::CONTENT_TYPE, "application/json")], last.to_string()).into_response());
    }
    feed.wake();
    let mut marks = VersionMarks::default();
    Ok(Json(snapshot(&gateway, Interval::default(), &mut marks, FEED_INTERVAL)).into_response())
}

/// The timeline's recent `status` and `config` events, oldest first: what
/// a page opened now missed.
async fn timeline(State(gateway): Shared, headers: HeaderMap) -> ApiResult {
    authenticate(&gateway, &headers, Access::Admin)?;
    Ok(Json(json!({ "events": gateway.metrics.feed.timeline().recent() })).into_response())
}

/// One version's cumulative counters at a snapshot.
struct Marks {
    calls: u64,
    errors: u64,
    codes: HashMap<String, u64>,
    latencies: Vec<u64>,
}

/// Each version's counters at the last snapshot, by content hash: the
/// next snapshot's figures are the differences.
#[derive(Default)]
struct VersionMarks {
    last: HashMap<String, Marks>,
}

/// Publish a snapshot every [`FEED_INTERVAL`] while anyone receives it.
pub(crate) async fn run_feed(gateway: Arc<Gateway>, stop: CancellationToken) {
    let feed = &gateway.metrics.feed;
    let Some(mut collector) = feed.collector() else { return };
    let mut ticks = tokio::time::interval(FEED_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut marks = VersionMarks::default();
    let mut idle = 0u32;
    let mut last = Instant::now();
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            // The collector drains its queue once per interval: waking a
            // task for every message would cost more than the counting.
            _ = ticks.tick() => {
                if !feed.watched() {
                    idle += 1;
                    if !idle.is_multiple_of(IDLE_LOOK_EVERY) || !gateway.hub.topics().iter().any(|(topic, _)| topic == DASHBOARD_TOPIC) {
                        continue;
                    }
                    feed.wake();
                }
                let interval = collector.interval(feed);
                let elapsed = std::mem::replace(&mut last, Instant::now()).elapsed();
                let snapshot = snapshot(&gateway, interval, &mut marks, elapsed);
                let Ok(raw) = serde_json::value::to_raw_value(&snapshot) else { continue };
                match gateway.hub.fan_out(DASHBOARD_TOPIC, &raw, "dashboard") {
                    Ok(0) | Err(_) => feed.sleep(),
                    Ok(_) => feed.published(Arc::from(raw.get())),
                }
            }
        }
    }
}

fn per_second(count: u64, elapsed: Duration) -> f64 {
    let secs = elapsed.as_secs_f64().max(0.001);
    (count as f64 / secs * 10.0).round() / 10.0
}

/// Every version the host holds for plugin `serving`'s name: the serving
/// one, a running canary's candidate (with its weight), then the retained
/// ones, newest first (the order of `GET /api/plugins/{name}/versions`).
fn held_versions(gateway: &Gateway, serving: &Arc<PluginVersion>) -> Vec<(Arc<PluginVersion>, Role, Option<u32>)> {
    let name = serving.name();
    let mut held = vec![(Arc::clone(serving), Role::Serving, None)];
    if let Some(canary) = gateway.registry.canary(name).filter(|c| c.state() == CanaryState::Running) {
        if canary.stable.hash == serving.hash {
            held.push((Arc::clone(&canary.candidate), Role::Canary, Some(canary.config.weight)));
        }
    }
    if let Some(shadow) = gateway.registry.shadow(name).filter(|s| s.serving.hash == serving.hash) {
        held.push((Arc::clone(&shadow.candidate), Role::Shadow, None));
    }
    for version in gateway.registry.retained(name) {
        if held.iter().all(|(v, _, _)| v.hash != version.hash) {
            held.push((version, Role::Retained, None));
        }
    }
    held
}

/// One version's figures over the interval since its last snapshot (on
/// its first, since it loaded): calls/s, errors/s, errors by code, p50/p99.
fn version_figures(version: &PluginVersion, role: Role, weight: Option<u32>, marks: &mut VersionMarks, seen: &mut HashMap<String, Marks>, elapsed: Duration) -> Value {
    let stats = &version.stats;
    let now = Marks {
        calls: stats.calls.load(Ordering::Relaxed),
        errors: stats.errors(),
        codes: stats.errors_by_code.counts().into_iter().collect(),
        latencies: stats.latencies.counts(),
    };
    let before = marks.last.get(&version.hash);
    let (calls_per_s, errors_per_s) = match before {
        Some(before) => (
            per_second(now.calls.saturating_sub(before.calls), elapsed),
            per_second(now.errors.saturating_sub(before.errors), elapsed),
        ),
        None => (0.0, 0.0),
    };
    let by_code: BTreeMap<&str, u64> = now
        .codes
        .iter()
        .map(|(code, n)| (code.as_str(), n.saturating_sub(before.and_then(|b| b.codes.get(code)).copied().unwrap_or(0))))
        .filter(|(_, n)| *n > 0)
        .collect();
    let latencies: Vec<u64> = match before {
        Some(before) => now.latencies.iter().zip(&before.latencies).map(|(n, b)| n.saturating_sub(*b)).collect(),
        None => now.latencies.clone(),
    };
    let quantile = |q| Histogram::quantile_of(&latencies, q).map(|us| (us / 10.0).round() / 100.0);
    let value = json!({
        "version": version.version(),
        "hash": version.hash,
        "role": role.as_str(),
        "weight": weight,
        "loaded_at": humantime::format_rfc3339_seconds(version.loaded_at).to_string(),
        "calls": now.calls,
        "calls_per_s": calls_per_s,
        "errors": now.errors,
        "errors_per_s": errors_per_s,
        "errors_by_code": by_code,
        "errors_by_code_total": stats.errors_by_code.to_json(),
        "p50_ms": quantile(0.50),
        "p99_ms": quantile(0.99),
        "breaker": version.breaker.state().as_str(),
    });
    seen.insert(version.hash.clone(), now);
    value
}

/// One snapshot: the `data` of a `dashboard` event.
fn snapshot(gateway: &Gateway, interval: Interval, marks: &mut VersionMarks, elapsed: Duration) -> Value {
    let mut seen = HashMap::new();
    let plugins: Vec<Value> = gateway
        .registry
        .plugins()
        .iter()
        .map(|serving| {
            let versions: Vec<Value> = held_versions(gateway, serving)
                .into_iter()
                .map(|(version, role, weight)| version_figures(&version, role, weight, marks, &mut seen, elapsed))
                .collect();
            // The serving version's figures, then every version's.
            let mut entry = versions.first().cloned().unwrap_or_default();
            if let Some(fields) = entry.as_object_mut() {
                fields.remove("weight");
                fields.insert("name".into(), json!(serving.name()));
                fields.insert("claims".into(), json!(serving.claims.iter().map(ToString::to_string).collect::<Vec<_>>()));
                fields.insert("versions".into(), Value::Array(versions));
            }
            entry
        })
        .collect();
    marks.last = seen;

    let mut by_endpoint: BTreeMap<String, usize> = gateway.endpoints.keys().map(|path| (path.clone(), 0)).collect();
    let connections = gateway.hub.connections();
    for connection in &connections {
        *by_endpoint.entry(connection.endpoint.clone()).or_default() += 1;
    }
    let mut rooms = gateway.hub.room_sizes();
    rooms.sort();
    let rooms: Vec<Value> = rooms
        .iter()
        .take(MAX_ROOMS)
        .map(|(name, size)| {
            let members: Vec<Value> = gateway
                .hub
                .members(name)
                .into_iter()
                .take(MAX_MEMBERS)
                .map(|m| json!({ "connection_id": m.connection_id, "device_id": m.device_id, "identity": m.identity }))
                .collect();
            json!({ "name": name, "size": size, "members": members })
        })
        .collect();
    let by_type: Vec<Value> = interval
        .by_type
        .iter()
        .map(|row| {
            let mut value = serde_json::to_value(row).unwrap_or_default();
            if let Some(fields) = value.as_object_mut() {
                fields.insert("per_s".into(), json!(per_second(row.interval, elapsed)));
            }
            value
        })
        .collect();
    let (messages, errors) = gateway.metrics.totals();
    let mut data = Map::new();
    data.insert("at".into(), json!(humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()));
    data.insert("interval_ms".into(), json!(elapsed.as_millis() as u64));
    data.insert("plugins".into(), Value::Array(plugins));
    data.insert(
        "connections".into(),
        json!({
            "total": connections.len(),
            "by_endpoint": by_endpoint.into_iter().map(|(endpoint, n)| json!({ "endpoint": endpoint, "connections": n })).collect::<Vec<_>>(),
        }),
    );
    data.insert(
        "messages".into(),
        json!({
            "per_s": per_second(interval.observed, elapsed),
            "total": messages,
            "errors": errors,
            "by_type": by_type,
        }),
    );
    data.insert("rooms".into(), Value::Array(rooms));
    data.insert(
        "topics".into(),
        json!(gateway.hub.topics().into_iter().map(|(pattern, n)| json!({ "pattern": pattern, "subscribers": n })).collect::<Vec<_>>()),
    );
    data.insert("workers".into(), json!(gateway.workers.list()));
    data.insert("proxy".into(), json!(gateway.proxy.as_ref().map(|p| p.status())));
    data.insert(
        "tail".into(),
        json!({ "entries": interval.tail, "not_in_tail": interval.not_in_tail, "unqueued": interval.unqueued }),
    );
    Value::Object(data)
}
