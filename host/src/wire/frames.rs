//! Frames the host sends on its own initiative, not as the answer to a
//! request: the connection acknowledgement, events, messages pushed on
//! someone's behalf, presence data, and the error body that HTTP errors,
//! proxy refusals and worker refusals share.
//!
//! Answers to requests are the dialects' job ([`super::dialect`]).

use super::dialect::ErrorData;
use super::envelope::{self, Failure};
use super::ErrorCode;
use bytes::Bytes;
use serde::Serialize;
use serde_json::value::{to_raw_value, RawValue};
use serde_json::json;

/// `{"type":"connection",...}`, sent first on endpoints with `ack = true`.
pub fn connection_ack(connection_id: &str, client_id: Option<&str>, endpoint: &str) -> Bytes {
    let ack = json!({
        "type": "connection",
        "status": "connected",
        "message": "Connected successfully",
        "connection_id": connection_id,
        "client_id": client_id,
        "endpoint": endpoint,
        "server_time": envelope::now_rfc3339(),
    });
    Bytes::from(ack.to_string())
}

/// An event as subscribers receive it.
#[derive(Serialize)]
struct Event<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    id: String,
    timestamp: String,
    data: &'a RawValue,
    meta: EventMeta<'a>,
}

#[derive(Serialize)]
struct EventMeta<'a> {
    topic: &'a str,
    source: &'a str,
}

/// One event frame for `topic`, serialized once for all its subscribers.
/// `alert.cpu` reaches clients as an event of type `alert`.
pub fn event(topic: &str, data: &RawValue, source: &str) -> Result<Bytes, Failure> {
    let kind = topic.split('.').next().unwrap_or(topic);
    let event = Event {
        kind,
        id: uuid::Uuid::new_v4().simple().to_string(),
        timestamp: envelope::now_rfc3339(),
        data,
        meta: EventMeta { topic, source },
    };
    serde_json::to_vec(&event).map(Bytes::from).map_err(|e| Failure::new(ErrorCode::Internal, e.to_string()))
}

/// The data of a `presence.<room>` event: a member joined or left.
pub fn presence(event: &str, room: &str, connection_id: &str, device_id: Option<&str>, identity: Option<&str>) -> Box<RawValue> {
    let data = json!({
        "event": event,
        "room": room,
        "connection_id": connection_id,
        "device_id": device_id,
        "identity": identity,
    });
    // Strings and nulls always serialize.
    to_raw_value(&data).unwrap_or_else(|_| envelope::null())
}

/// A message pushed to other connections on a sender's behalf
/// (`host.send`, `host.broadcast`), in the canonical envelope.
pub fn pushed(kind: &str, data: serde_json::Value, from: &str, from_client_id: Option<&str>) -> Result<Box<RawValue>, Failure> {
    let message = json!({
        "type": kind,
        "id": uuid::Uuid::new_v4().simple().to_string(),
        "timestamp": envelope::now_rfc3339(),
        "data": data,
        "meta": { "from": from, "from_client_id": from_client_id },
    });
    to_raw_value(&message).map_err(|e| Failure::new(ErrorCode::Internal, e.to_string()))
}

/// `{"type":"error","data":{"code","message"[,"retry_after"]}}`: the body
/// of every HTTP error, proxy refusal and refused worker registration.
pub fn error_body(failure: &Failure) -> String {
    #[derive(Serialize)]
    struct Body<'a> {
        #[serde(rename = "type")]
        kind: &'static str,
        data: ErrorData<'a>,
    }
    let body = Body { kind: "error", data: ErrorData::of(failure) };
    // Borrowed strings and a number always serialize.
    serde_json::to_string(&body).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn events_take_the_topics_first_segment_as_type() {
        let data = to_raw_value(&json!({"level": "critical"})).unwrap();
        let frame: Value = serde_json::from_slice(&event("alert.cpu", &data, "sysmon").unwrap()).unwrap();
        assert_eq!(frame["type"], "alert");
        assert_eq!(frame["meta"], json!({"topic": "alert.cpu", "source": "sysmon"}));
        assert_eq!(frame["data"]["level"], "critical");
    }

    #[test]
    fn the_error_body_carries_retry_after_only_when_set() {
        let plain: Value = serde_json::from_str(&error_body(&Failure::new(ErrorCode::NotFound, "no"))).unwrap();
        assert_eq!(plain, json!({"type": "error", "data": {"code": "NOT_FOUND", "message": "no"}}));
        let limited = Failure::rate_limited("message", std::time::Duration::from_millis(1500));
        let body: Value = serde_json::from_str(&error_body(&limited)).unwrap();
        assert_eq!(body["data"]["retry_after"], 1500);
    }
}
