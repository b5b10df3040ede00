//! `/api/history/...`: what history recorded, read back (admin keys only).
//!
//! - `GET /api/history/messages`: messages by room, device, type, outcome,
//!   direction and time, a page at a time.
//! - `GET /api/history/connections`: connections open now (`active=true`)
//!   or in a time range.
//! - `GET /api/history/counts`: messages counted by type and outcome.
//! - `GET /api/history/rooms/{room}/activity`: one room's joins, messages
//!   and queries in the last `minutes`, and its members now.
//!
//! Parameters are checked here (an unknown or bad one is `INVALID_QUERY`);
//! the SQL is [`crate::store::queries`]'. Pages: `limit` (default 100,
//! over 1000 is clamped to 1000 and the answer says so) and the opaque
//! `next_cursor` of the previous page. With history off every route says
//! `HISTORY_DISABLED`; a database that does not answer, `HISTORY_UNAVAILABLE`.

use super::{authenticate, Access, ApiResult, Shared};
use crate::services::Rooms;
use crate::store::db::now_ms;
use crate::store::queries::{ConnectionFilter, Cursor, HistoryQueries, MessageFilter, Order, OutcomeFilter, RoomActivity, TypeFilter};
use crate::transport::{ApiError, Gateway};
use crate::wire::{ErrorCode, Failure};
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

/// Rows a page holds unless `limit` says otherwise.
pub const DEFAULT_LIMIT: u32 = 100;
/// Most rows a page holds; a larger `limit` is clamped to this.
pub const MAX_LIMIT: u32 = 1_000;
/// `minutes` of room activity unless given, and the most allowed (a week).
const DEFAULT_MINUTES: i64 = 60;
const MAX_MINUTES: i64 = 7 * 24 * 60;
/// Longest a history query may take before `HISTORY_UNAVAILABLE`.
const QUERY_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest text a filter value may be (the recorded columns' own limit).
const MAX_VALUE_CHARS: usize = 255;

pub(super) fn routes() -> Router<Arc<Gateway>> {
    Router::new()
        .route("/api/history/messages", get(messages))
        .route("/api/history/connections", get(connections))
        .route("/api/history/counts", get(counts))
        .route("/api/history/rooms/{room}/activity", get(room_activity))
}

type Params = Query<Vec<(String, String)>>;

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::from(Failure::new(ErrorCode::InvalidQuery, message))
}

/// The caller is an administrator and history is on.
fn history<'g>(gateway: &'g Gateway, headers: &HeaderMap) -> Result<&'g HistoryQueries, ApiError> {
    authenticate(gateway, headers, Access::Admin)?;
    gateway.history.as_ref().ok_or_else(|| {
        ApiError::from(Failure::new(ErrorCode::HistoryDisabled, "this host records no history (storage.history.enabled = false)"))
    })
}

/// A query's parameters, each allowed once, each taken once.
struct Parameters(Vec<(String, String)>);

impl Parameters {
    fn new(given: Vec<(String, String)>, allowed: &[&str]) -> Result<Parameters, ApiError> {
        for (i, (name, _)) in given.iter().enumerate() {
            if !allowed.contains(&name.as_str()) {
                return Err(invalid(format!("unknown parameter {name:?}; this route takes {}", allowed.join(", "))));
            }
            if given[..i].iter().any(|(other, _)| other == name) {
                return Err(invalid(format!("parameter {name:?} given twice")));
            }
        }
        Ok(Parameters(given))
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// A filter value: 1-255 characters.
    fn text(&self, name: &str) -> Result<Option<String>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(v) if v.is_empty() || v.chars().count() > MAX_VALUE_CHARS => {
                Err(invalid(format!("{name} must be 1-{MAX_VALUE_CHARS} characters")))
            }
            Some(v) => Ok(Some(v.to_owned())),
        }
    }

    /// A time: RFC 3339 UTC (`2026-12-01T20:00:00Z`), milliseconds since
    /// the epoch, or a duration ago (`15m`, `2h`, `1day`).
    fn time(&self, name: &str) -> Result<Option<i64>, ApiError> {
        let Some(v) = self.get(name) else { return Ok(None) };
        if let Ok(ms) = v.parse::<i64>() {
            if ms >= 0 {
                return Ok(Some(ms));
            }
        }
        if let Ok(time) = humantime::parse_rfc3339_weak(v) {
            if let Ok(since_epoch) = time.duration_since(std::time::UNIX_EPOCH) {
                return Ok(Some(since_epoch.as_millis() as i64));
            }
        }
        if let Ok(ago) = humantime::parse_duration(v) {
            return Ok(Some(now_ms().saturating_sub(ago.as_millis().min(i64::MAX as u128) as i64)));
        }
        Err(invalid(format!(
            "{name}={v:?}: expected an RFC 3339 UTC time (2026-12-01T20:00:00Z), milliseconds since the epoch, or a duration ago (15m, 2h)"
        )))
    }

    /// `since` and `until`, in order.
    fn range(&self) -> Result<(Option<i64>, Option<i64>), ApiError> {
        let (since, until) = (self.time("since")?, self.time("until")?);
        if let (Some(s), Some(u)) = (since, until) {
            if s > u {
                return Err(invalid("since is after until"));
            }
        }
        Ok((since, until))
    }

    fn limit(&self) -> Result<u32, ApiError> {
        match self.get("limit") {
            None => Ok(DEFAULT_LIMIT),
            Some(v) => match v.parse::<u64>() {
                Ok(n) if n >= 1 => Ok(n.min(u64::from(MAX_LIMIT)) as u32),
                _ => Err(invalid(format!("limit={v:?}: expected a whole number of rows, 1 or more (at most {MAX_LIMIT} are returned)"))),
            },
        }
    }

    fn boolean(&self, name: &str) -> Result<Option<bool>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some("true") => Ok(Some(true)),
            Some("false") => Ok(Some(false)),
            Some(v) => Err(invalid(format!("{name}={v:?}: expected true or false"))),
        }
    }

    fn order(&self) -> Result<Option<Order>, ApiError> {
        match self.get("order") {
            None => Ok(None),
            Some("desc") => Ok(Some(Order::NewestFirst)),
            Some("asc") => Ok(Some(Order::OldestFirst)),
            Some(v) => Err(invalid(format!("order={v:?}: expected desc (newest first, the default) or asc"))),
        }
    }

    /// The cursor, if any, and the order of the walk (the cursor's own;
    /// an `order` that contradicts it is refused).
    fn walk(&self) -> Result<(Option<Cursor>, Order), ApiError> {
        let order = self.order()?;
        let Some(text) = self.get("cursor") else { return Ok((None, order.unwrap_or(Order::NewestFirst))) };
        let cursor = Cursor::parse(text).map_err(|_| invalid("cursor: not a cursor this API returned (pass next_cursor as it came)"))?;
        if order.is_some_and(|o| o != cursor.order()) {
            return Err(invalid("order differs from the cursor's: keep the order a walk started with"));
        }
        let order = cursor.order();
        Ok((Some(cursor), order))
    }

    fn message_filter(&self) -> Result<MessageFilter, ApiError> {
        let kind = match self.text("type")? {
            None => None,
            Some(t) if t.contains('*') => match t.strip_suffix('*') {
                Some(prefix) if prefix.ends_with('.') && prefix.len() > 1 && !prefix.contains('*') => Some(TypeFilter::Prefix(prefix.to_owned())),
                _ => return Err(invalid(format!("type={t:?}: a type, or a prefix pattern such as video.*"))),
            },
            Some(t) => Some(TypeFilter::Exact(t)),
        };
        let outcome = match self.get("outcome") {
            None => None,
            Some("ok" | "OK") => Some(OutcomeFilter::Ok),
            Some("error") => Some(OutcomeFilter::Error),
            Some(code) if !code.is_empty() && code.len() <= 64 && code.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_') => {
                Some(OutcomeFilter::Code(code.to_owned()))
            }
            Some(v) => return Err(invalid(format!("outcome={v:?}: expected ok, error, or an error code such as UNKNOWN_TYPE"))),
        };
        let direction = match self.get("direction") {
            None => None,
            Some(d @ ("in" | "out")) => Some(d.to_owned()),
            Some(v) => return Err(invalid(format!("direction={v:?}: expected in or out"))),
        };
        let (since_ms, until_ms) = self.range()?;
        Ok(MessageFilter { room: self.text("room")?, device: self.text("device")?, kind, outcome, direction, since_ms, until_ms })
    }
}

/// Run one query under [`QUERY_TIMEOUT`]; a database that does not answer
/// is `HISTORY_UNAVAILABLE`, any other failure a host fault.
async fn run<T>(query: impl std::future::Future<Output = Result<T, sqlx::Error>>) -> Result<T, ApiError> {
    let unavailable = |why: String| ApiError::from(Failure::new(ErrorCode::HistoryUnavailable, format!("the history database did not answer: {why}")));
    match tokio::time::timeout(QUERY_TIMEOUT, query).await {
        Err(_) => Err(unavailable(format!("no answer within {} s", QUERY_TIMEOUT.as_secs()))),
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => {
            let outage = match &error {
                sqlx::Error::Database(e) => {
                    let code = e.code().unwrap_or_default();
                    code.starts_with("08") || code.starts_with("57P")
                }
                sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::Protocol(_) => true,
                _ => false,
            };
            if outage {
                tracing::warn!("history query failed: {error}");
                Err(unavailable(error.to_string()))
            } else {
                tracing::error!("history query failed: {error}");
                Err(ApiError::from(Failure::new(ErrorCode::Internal, "the history query failed; the host's log says why")))
            }
        }
    }
}

const PAGE: [&str; 3] = ["limit", "cursor", "order"];

async fn messages(State(gateway): Shared, Query(given): Params, headers: HeaderMap) -> ApiResult {
    let history = history(&gateway, &headers)?;
    let allowed = [&PAGE[..], &["room", "device", "type", "outcome", "direction", "since", "until"]].concat();
    let params = Parameters::new(given, &allowed)?;
    let filter = params.message_filter()?;
    let limit = params.limit()?;
    let (cursor, order) = params.walk()?;
    let after = match cursor {
        None => None,
        Some(Cursor::Messages { seq, .. }) => Some(seq),
        Some(_) => return Err(invalid("cursor: a connections cursor, not a messages one")),
    };
    let page = run(history.messages(&filter, order, after, limit)).await?;
    Ok(Json(json!({ "messages": page.rows, "limit": limit, "next_cursor": page.next.map(|c| c.to_string()) })).into_response())
}

async fn connections(State(gateway): Shared, Query(given): Params, headers: HeaderMap) -> ApiResult {
    let history = history(&gateway, &headers)?;
    let allowed = [&PAGE[..], &["active", "device", "client_id", "endpoint", "since", "until"]].concat();
    let params = Parameters::new(given, &allowed)?;
    let (since_ms, until_ms) = params.range()?;
    let filter = ConnectionFilter {
        active: params.boolean("active")?,
        device: params.text("device")?,
        client_id: params.text("client_id")?,
        endpoint: params.text("endpoint")?,
        since_ms,
        until_ms,
    };
    let limit = params.limit()?;
    let (cursor, order) = params.walk()?;
    let after = match cursor {
        None => None,
        Some(Cursor::Connections { connected_ms, id, .. }) => Some((connected_ms, id)),
        Some(_) => return Err(invalid("cursor: a messages cursor, not a connections one")),
    };
    let page = run(history.connections(&filter, order, after, limit)).await?;
    Ok(Json(json!({ "connections": page.rows, "limit": limit, "next_cursor": page.next.map(|c| c.to_string()) })).into_response())
}

async fn counts(State(gateway): Shared, Query(given): Params, headers: HeaderMap) -> ApiResult {
    let history = history(&gateway, &headers)?;
    let params = Parameters::new(given, &["room", "device", "type", "outcome", "direction", "since", "until"])?;
    let filter = params.message_filter()?;
    let counts = run(history.counts(&filter)).await?;
    let total: i64 = counts.groups.iter().map(|c| c.count).sum();
    Ok(Json(json!({ "counts": counts.groups, "total": total, "truncated": counts.truncated })).into_response())
}

async fn room_activity(State(gateway): Shared, Path(room): Path<String>, Query(given): Params, headers: HeaderMap) -> ApiResult {
    let history = history(&gateway, &headers)?;
    let params = Parameters::new(given, &["minutes"])?;
    let minutes = match params.get("minutes") {
        None => DEFAULT_MINUTES,
        Some(v) => match v.parse::<i64>() {
            Ok(n) if (1..=MAX_MINUTES).contains(&n) => n,
            _ => return Err(invalid(format!("minutes={v:?}: expected 1-{MAX_MINUTES}"))),
        },
    };
    if room.is_empty() || room.chars().count() > MAX_VALUE_CHARS {
        return Err(invalid(format!("a room name is 1-{MAX_VALUE_CHARS} characters")));
    }
    let since_ms = now_ms() - minutes * 60_000;
    let activity = run(history.room_activity(&room, since_ms)).await?;
    let members: Vec<_> = gateway
        .hub
        .members(&room)
        .into_iter()
        .map(|m| json!({ "connection_id": m.connection_id, "device_id": m.device_id, "identity": m.identity }))
        .collect();
    let activity = match activity {
        Some(activity) => activity,
        // Joined, but not yet written.
        None if !members.is_empty() => RoomActivity::default(),
        None => return Err(ApiError::from(Failure::new(ErrorCode::NotFound, format!("history has no room {room:?}")))),
    };
    let since = humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + Duration::from_millis(since_ms.max(0) as u64)).to_string();
    Ok(Json(json!({
        "room": room,
        "minutes": minutes,
        "since": since,
        "created_at": activity.created_at,
        "members": members,
        "joins": activity.joins,
        "devices_joined": activity.devices_joined,
        "messages": activity.messages,
        "sent": activity.sent,
        "queries": activity.queries,
    }))
    .into_response())
}
