//! The message types the host answers itself: `ping`, `subscribe`,
//! `unsubscribe`, for administrators `host.connections`, `host.send`,
//! `host.broadcast` and `host.call`, and the action server's own: `get_client_info`,
//! `heartbeat`, `connect`, `disconnect`. Plugins cannot claim them. The
//! action server's `notification` is answered here too when no plugin
//! claims it.
//!
//! `get_client_info` lists what the caller's key may see: an `admin` key
//! every connection, any other key (whose scope covers the type) the
//! connections opened with that same key, and an anonymous caller (when
//! `auth.anonymous` covers it) the anonymous connections: on a host
//! without keys, as on the action server, everyone.

use super::Caller;
use super::target::Builtin;
use crate::hub::{Connection, Hub, SubscribeRequest};
use crate::services::ClientRef;
use crate::wire::{close, envelope, frames, ErrorCode, Failure, Outcome, Reply, ServedBy};
use crate::wire::Envelope;
use serde::Deserialize;
use serde_json::value::{to_raw_value, RawValue};
use serde_json::json;
use std::sync::Arc;

/// Answer one built-in message.
pub async fn run(builtin: Builtin, envelope: &Envelope, caller: &Caller<'_>, hub: &Hub) -> Outcome {
    let (data, reply_type) = match builtin {
        Builtin::Ping => (to_json(&json!({ "server_time": envelope::now_rfc3339() }))?, "pong"),
        Builtin::Subscribe => {
            let connection = live(caller)?;
            let request: SubscribeRequest = parse_data(&envelope.data, r#"{"events": [...], "filters": {...}}"#)?;
            for topic in &request.events {
                caller.principal.may_use_topic(topic)?;
            }
            let held = connection.subscribe(&request.events, request.filters)?;
            hub.subscriptions_changed(connection);
            (to_json(&json!({ "subscribed": request.events, "subscriptions": held }))?, "reply")
        }
        Builtin::Unsubscribe => {
            let connection = live(caller)?;
            #[derive(Deserialize)]
            struct Unsubscribe {
                events: Vec<String>,
            }
            let request: Unsubscribe = parse_data(&envelope.data, r#"{"events": [...]}"#)?;
            let held = connection.unsubscribe(&request.events);
            hub.subscriptions_changed(connection);
            (to_json(&json!({ "unsubscribed": request.events, "subscriptions": held }))?, "reply")
        }
        Builtin::Connections => {
            caller.principal.may_administer()?;
            let list = hub.connection_infos();
            (to_json(&json!({ "connections": list }))?, "reply")
        }
        Builtin::Send => {
            caller.principal.may_administer()?;
            #[derive(Deserialize)]
            struct Direct {
                to: String,
                #[serde(rename = "type")]
                kind: String,
                #[serde(default)]
                data: serde_json::Value,
            }
            let direct: Direct = parse_data(&envelope.data, r#"{"to": "<client or connection id>", "type": "...", "data": ...}"#)?;
            let message = pushed(&direct.kind, direct.data, caller)?;
            let delivered = hub.send_to_client(&direct.to, &message);
            if delivered == 0 {
                return Err(Failure::new(ErrorCode::ConnectionNotFound, format!("no connection with client id or id {:?}", direct.to)));
            }
            (to_json(&json!({ "delivered": delivered }))?, "reply")
        }
        Builtin::Broadcast => {
            caller.principal.may_administer()?;
            #[derive(Deserialize)]
            struct Broadcast {
                message: serde_json::Value,
            }
            let broadcast: Broadcast = parse_data(&envelope.data, r#"{"message": ...}"#)?;
            let message = pushed("broadcast", json!({ "message": broadcast.message }), caller)?;
            let except = caller.connection.map(|c| c.id.as_str());
            (to_json(&json!({ "delivered": hub.broadcast_except(&message, except) }))?, "reply")
        }
        Builtin::ClientInfo => {
            let principal = caller.principal;
            if !principal.scopes.admin {
                principal.may_send("get_client_info")?;
            }
            let clients: Vec<_> = hub
                .connections()
                .iter()
                .filter(|c| principal.scopes.admin || c.key == principal.key)
                .map(|c| {
                    let info = c.info();
                    json!({ "id": info.id, "client_id": info.client_id, "endpoint": info.endpoint, "connected_at": info.connected_at })
                })
                .collect();
            (to_json(&json!({ "count": clients.len(), "clients": clients }))?, "reply")
        }
        // Any frame already counts as a sign of life (the idle timeout
        // restarts with each); the answer tells the client the host is there.
        Builtin::Heartbeat => (to_json(&json!({ "status": "alive", "server_time": envelope::now_rfc3339() }))?, "reply"),
        Builtin::Connect => {
            let connection = caller.connection.map(|c| c.id.as_str());
            let client_id = caller.origin.client_id.as_deref().or(connection);
            let answer = json!({ "status": "connected", "connection_id": connection, "client_id": client_id, "server_time": envelope::now_rfc3339() });
            (to_json(&answer)?, "reply")
        }
        Builtin::Disconnect => {
            // The answer is queued before the host's Close (see transport/ws.rs).
            if let Some(connection) = caller.connection {
                connection.evict(close::NORMAL, "the client said disconnect");
            }
            (to_json(&json!({ "status": "disconnected" }))?, "reply")
        }
        Builtin::Notification => {
            tracing::debug!(connection = %caller.origin.connection_id, data = %envelope.data.get(), "notification taken (no plugin claims it)");
            (to_json(&json!({ "status": "received" }))?, "reply")
        }
        Builtin::Call => {
            caller.principal.may_administer()?;
            #[derive(Deserialize)]
            struct Call {
                to: String,
                action: String,
                #[serde(default)]
                params: Option<Box<RawValue>>,
                #[serde(default = "call_timeout_ms")]
                timeout_ms: u64,
            }
            let call: Call = parse_data(&envelope.data, r#"{"to": "<connection or client id>", "action": "...", "params": ..., "timeout_ms": 1..=60000}"#)?;
            if call.timeout_ms == 0 || call.timeout_ms > MAX_CALL_TIMEOUT_MS {
                return Err(Failure::new(ErrorCode::InvalidMessage, format!("timeout_ms must be 1..={MAX_CALL_TIMEOUT_MS}")));
            }
            // A connection id, or else the client id of a connection.
            let to = match hub.connection(&call.to) {
                Some(connection) => connection.id.clone(),
                None => hub.connections().into_iter().find(|c| c.client_id.as_deref() == Some(&call.to)).map_or(call.to, |c| c.id.clone()),
            };
            let params = call.params.unwrap_or_else(envelope::empty_object);
            let timeout = std::time::Duration::from_millis(call.timeout_ms);
            let data = hub.call(&ClientRef::Connection(to.clone()), &call.action, &params, timeout).await?;
            (to_json(&json!({ "connection_id": to, "action": call.action, "data": data }))?, "reply")
        }
    };
    Ok(Reply { data, served_by: ServedBy::host(), reply_type })
}

/// Longest `host.call` may wait for the client's answer.
const MAX_CALL_TIMEOUT_MS: u64 = 60_000;

fn call_timeout_ms() -> u64 {
    10_000
}

fn pushed(kind: &str, data: serde_json::Value, caller: &Caller<'_>) -> Result<Box<RawValue>, Failure> {
    frames::pushed(kind, data, &caller.origin.connection_id, caller.origin.client_id.as_deref())
}

fn live<'a>(caller: &Caller<'a>) -> Result<&'a Arc<Connection>, Failure> {
    caller.connection.ok_or_else(|| Failure::new(ErrorCode::InvalidMessage, "subscriptions need a live connection"))
}

fn parse_data<T: serde::de::DeserializeOwned>(data: &RawValue, shape: &str) -> Result<T, Failure> {
    serde_json::from_str(data.get()).map_err(|e| Failure::new(ErrorCode::InvalidMessage, format!("data must be {shape}: {e}")))
}

fn to_json(value: &serde_json::Value) -> Result<Box<RawValue>, Failure> {
    to_raw_value(value).map_err(|e| Failure::new(ErrorCode::Internal, e.to_string()))
}
