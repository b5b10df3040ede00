//! Safe deploys over HTTP, for administrators: a plugin's versions and
//! their figures, and rollback to a retained version.
//!
//! - `GET /api/plugins/{name}/versions`: the serving version and the
//!   retained ones, newest first, with calls, errors by code, p50 and p99.
//! - `POST /api/plugins/{name}/rollback`, body optional `{"to": REF}`
//!   (a version string or a hash prefix of 8+ hex digits): serve the
//!   previous (or named) version again, without compiling.
//! - `POST /api/plugins/{name}/canary?weight=5&sticky=client_id`, body the
//!   candidate `.wasm` (or JSON `{"version": REF, "weight", "sticky"}` for
//!   a retained one); `GET` its figures and state; `POST .../promote` and
//!   `.../rollback` end it by hand. Thresholds come from
//!   `[plugins.rollout.NAME]`.
//! - `POST /api/plugins/{name}/shadow?ignore=/data/time,/timestamp&cpu_budget=0.5`,
//!   body the candidate `.wasm` (or JSON `{"version": REF, "ignore": [...],
//!   "cpu_budget": SHARE}`): the candidate, contained, gets a copy of every
//!   live message and compares what its share of one core allows; `GET`
//!   the comparison (match rate, differing samples, latency side by side,
//!   recorded effects); `DELETE` stops it.

use super::{authenticate, body, no_plugin, registry_error, Access, ApiResult, Shared};
use crate::plugins::runtime::PluginVersion;
use crate::plugins::registry::{Candidate, RegistryError};
use crate::plugins::rollout::{CanaryState, Sticky};
use crate::plugins::versions::{figures, Role};
use crate::wire::{ErrorCode, Failure};
use super::super::{ApiError, Gateway};
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use std::sync::Arc;

pub(super) fn routes() -> Router<Arc<Gateway>> {
    Router::new()
        .route("/api/plugins/{name}/versions", get(versions))
        .route("/api/plugins/{name}/rollback", post(rollback))
        .route("/api/plugins/{name}/canary", get(canary).post(start_canary))
        .route("/api/plugins/{name}/canary/promote", post(promote_canary))
        .route("/api/plugins/{name}/canary/rollback", post(roll_back_canary))
        .route("/api/plugins/{name}/shadow", get(shadow).post(start_shadow).delete(stop_shadow))
}

/// One version in the versions list.
fn version_entry(version: &PluginVersion, role: Role) -> Value {
    let mut fields = figures(version);
    fields.insert("loaded_at".into(), json!(humantime::format_rfc3339_seconds(version.loaded_at).to_string()));
    fields.insert("role".into(), json!(role.as_str()));
    Value::Object(fields)
}

async fn versions(State(gateway): Shared, Path(name): Path<String>, headers: HeaderMap) -> ApiResult {
    authenticate(&gateway, &headers, Access::Admin)?;
    let path = gateway.registry.path_of(&name).ok_or_else(|| no_plugin(&name))?;
    let serving = gateway.registry.serving(&path).ok_or_else(|| no_plugin(&name))?;
    let mut list = vec![version_entry(&serving, Role::Serving)];
    if let Some(canary) = gateway.registry.canary(&name).filter(|c| c.state() == CanaryState::Running) {
        list.push(version_entry(&canary.candidate, Role::Canary));
    }
    if let Some(shadow) = gateway.registry.shadow(&name) {
        list.push(version_entry(&shadow.candidate, Role::Shadow));
    }
    list.extend(gateway.registry.retained(&name).iter().map(|v| version_entry(v, Role::Retained)));
    Ok(Json(json!({ "plugin": name, "versions": list })).into_response())
}

/// The body of a rollback: which version, if not the previous one.
#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RollbackRequest {
    to: Option<String>,
}

async fn rollback(State(gateway): Shared, Path(name): Path<String>, headers: HeaderMap, request: Request) -> ApiResult {
    authenticate(&gateway, &headers, Access::Admin)?;
    let bytes = body(&gateway, request, gateway.max_body_bytes).await?;
    let wanted: RollbackRequest = if bytes.iter().all(u8::is_ascii_whitespace) {
        RollbackRequest::default()
    } else {
        serde_json::from_slice(&bytes).map_err(|e| {
            let code = if e.is_syntax() || e.is_eof() { ErrorCode::InvalidJson } else { ErrorCode::InvalidMessage };
            ApiError::from(Failure::new(code, format!("expected {{\"to\": VERSION_REF}} or no body: {e}")))
        })?
    };
    let done = gateway.registry.rollback(&name, wanted.to.as_deref()).await.map_err(registry_error)?;
    Ok(Json(json!({
        "event": "plugin_rolled_back",
        "plugin": name,
        "from": { "version": done.from.version(), "hash": done.from.hash },
        "to": { "version": done.to.version(), "hash": done.to.hash },
        "restored_kv": done.restored_kv,
    }))
    .into_response())
}



/// `?weight=&sticky=` of a canary upload.
#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct CanaryQuery {
    weight: Option<u32>,
    sticky: Option<String>,
}

/// The JSON body of a canary of a retained version.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CanaryRequest {
    version: String,
    weight: Option<u32>,
    sticky: Option<String>,
}

fn bad_request(message: String) -> ApiError {
    ApiError::from(Failure::new(ErrorCode::InvalidMessage, message))
}

async fn start_canary(
    State(gateway): Shared,
    Path(name): Path<String>,
    Query(query): Query<CanaryQuery>,
    headers: HeaderMap,
    request: Request,
) -> ApiResult {
    authenticate(&gateway, &headers, Access::Admin)?;
    let is_json = headers.get("content-type").and_then(|v| v.to_str().ok()).is_some_and(|t| t.starts_with("application/json"));
    let bytes = body(&gateway, request, gateway.max_upload_bytes).await?;
    let mut config = gateway.registry.rollout_of(&name);
    let (weight, sticky, reference) = if is_json {
        let wanted: CanaryRequest = serde_json::from_slice(&bytes)
            .map_err(|e| bad_request(format!("expected {{\"version\": REF, \"weight\": N, \"sticky\": \"client_id\"}}: {e}")))?;
        (wanted.weight.or(query.weight), wanted.sticky.or(query.sticky), Some(wanted.version))
    } else {
        (query.weight, query.sticky, None)
    };
    if let Some(weight) = weight {
        config.weight = weight;
    }
    if let Some(sticky) = sticky {
        config.sticky = Some(Sticky::parse(&sticky).ok_or_else(|| bad_request(format!("sticky must be client_id or device_id, not {sticky:?}")))?);
    }
    let candidate = match &reference {
        Some(reference) => Candidate::Retained(reference),
        None => Candidate::Bytes(bytes.to_vec()),
    };
    let canary = gateway.registry.start_canary(&name, candidate, config).await.map_err(registry_error)?;
    let mut answer = canary.status();
    answer["event"] = json!("canary_started");
    Ok((StatusCode::CREATED, Json(answer)).into_response())
}

async fn canary(State(gateway): Shared, Path(name): Path<String>, headers: HeaderMap) -> ApiResult {
    authenticate(&gateway, &headers, Access::Admin)?;
    let canary = gateway.registry.canary(&name).ok_or_else(|| registry_error(RegistryError::NoCanary(name.clone())))?;
    Ok(Json(canary.status()).into_response())
}

async fn end_canary(gateway: &Gateway, name: &str, state: CanaryState, event: &str) -> ApiResult {
    let canary = gateway.registry.end_canary(name, state).await.map_err(registry_error)?;
    let mut answer = canary.status();
    answer["event"] = json!(event);
    Ok(Json(answer).into_response())
}

async fn promote_canary(State(gateway): Shared, Path(name): Path<String>, headers: HeaderMap) -> ApiResult {
    authenticate(&gateway, &headers, Access::Admin)?;
    end_canary(&gateway, &name, CanaryState::Promoted, "canary_promoted").await
}

async fn roll_back_canary(State(gateway): Shared, Path(name): Path<String>, headers: HeaderMap) -> ApiResult {
    authenticate(&gateway, &headers, Access::Admin)?;
    end_canary(&gateway, &name, CanaryState::RolledBack, "canary_rolled_back").await
}

/// The JSON body of a shadow of a retained version.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ShadowRequest {
    version: String,
    #[serde(default)]
    ignore: Vec<String>,
    cpu_budget: Option<f64>,
}

/// `?ignore=` values (repeated, or comma-separated in one) and
/// `?cpu_budget=`.
fn shadow_query(query: &[(String, String)]) -> Result<(Vec<String>, Option<f64>), ApiError> {
    let mut paths = Vec::new();
    let mut budget = None;
    for (key, value) in query {
        match key.as_str() {
            "ignore" => paths.extend(value.split(',').map(str::trim).filter(|p| !p.is_empty()).map(str::to_owned)),
            "cpu_budget" => {
                let share = value.parse().map_err(|_| bad_request(format!("cpu_budget {value:?} is not a number (a share of one core)")))?;
                budget = Some(share);
            }
            _ => return Err(bad_request(format!("unknown query parameter {key:?}; a shadow takes ignore=JSON_POINTER[,...] and cpu_budget=SHARE"))),
        }
    }
    Ok((paths, budget))
}

async fn start_shadow(
    State(gateway): Shared,
    Path(name): Path<String>,
    Query(query): Query<Vec<(String, String)>>,
    headers: HeaderMap,
    request: Request,
) -> ApiResult {
    authenticate(&gateway, &headers, Access::Admin)?;
    let is_json = headers.get("content-type").and_then(|v| v.to_str().ok()).is_some_and(|t| t.starts_with("application/json"));
    let (mut ignore, mut cpu_budget) = shadow_query(&query)?;
    let bytes = body(&gateway, request, gateway.max_upload_bytes).await?;
    let reference = if is_json {
        let wanted: ShadowRequest = serde_json::from_slice(&bytes)
            .map_err(|e| bad_request(format!("expected {{\"version\": REF, \"ignore\": [JSON_POINTER, ...], \"cpu_budget\": SHARE}}: {e}")))?;
        ignore.extend(wanted.ignore);
        cpu_budget = wanted.cpu_budget.or(cpu_budget);
        Some(wanted.version)
    } else {
        None
    };
    let candidate = match &reference {
        Some(reference) => Candidate::Retained(reference),
        None => Candidate::Bytes(bytes.to_vec()),
    };
    let shadow = gateway.registry.start_shadow(&name, candidate, ignore, cpu_budget).await.map_err(registry_error)?;
    let mut answer = shadow.status();
    answer["event"] = json!("shadow_started");
    Ok((StatusCode::CREATED, Json(answer)).into_response())
}

async fn shadow(State(gateway): Shared, Path(name): Path<String>, headers: HeaderMap) -> ApiResult {
    authenticate(&gateway, &headers, Access::Admin)?;
    let shadow = gateway.registry.shadow(&name).ok_or_else(|| registry_error(RegistryError::NoShadow(name.clone())))?;
    Ok(Json(shadow.status()).into_response())
}

async fn stop_shadow(State(gateway): Shared, Path(name): Path<String>, headers: HeaderMap) -> ApiResult {
    authenticate(&gateway, &headers, Access::Admin)?;
    let shadow = gateway.registry.stop_shadow(&name, "stopped by hand".into()).map_err(registry_error)?;
    let mut answer = shadow.status();
    answer["event"] = json!("shadow_stopped");
    Ok(Json(answer).into_response())
}
