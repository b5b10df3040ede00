//! Frames the host sends on its own initiative, not as the answer to a
//! request: the connection acknowledgement (in the style its endpoint's
//! clients read) and its refusal form, events, messages pushed on
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

/// Which `connection` frame an endpoint sends first, in the form its
/// clients read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ack {
    /// The monitoring API's envelope, `{"type":"connection","id",
    /// "timestamp","data":{"status":"connected","client_id",
    /// "server_time",...}}`, with the fields Switchyard's own clients read
    /// at the top level too; and, when a key is refused, the same envelope
    /// with `data.status = "error"`.
    Monitoring,
    /// The room server's `{"type":"connection","message":"Connected successfully"}`.
    Flat,
    /// No frame: the clients' first frame is an answer (the action server's
    /// requesters, the room protocol) or an event (the video proxy's).
    None,
}

/// A `connection` frame in the monitoring API's envelope.
#[derive(Serialize)]
struct MonitoringFrame<'a, D> {
    #[serde(rename = "type")]
    kind: &'static str,
    id: String,
    timestamp: &'a str,
    data: D,
    #[serde(flatten)]
    top_level: Option<TopLevel<'a>>,
}

#[derive(Serialize)]
struct Connected<'a> {
    status: &'static str,
    /// The client's own id, or the connection's when it gave none: the
    /// monitoring clients expect a string.
    client_id: &'a str,
    server_time: &'a str,
    connection_id: &'a str,
    endpoint: &'a str,
}

/// The acknowledgement as Switchyard sent it before the monitoring
/// envelope; its own clients (the SDKs, the console) read these.
#[derive(Serialize)]
struct TopLevel<'a> {
    status: &'static str,
    message: &'static str,
    connection_id: &'a str,
    client_id: Option<&'a str>,
    endpoint: &'a str,
    server_time: &'a str,
}

#[derive(Serialize)]
struct Refused<'a> {
    status: &'static str,
    error_code: &'a str,
    message: &'a str,
}

fn monitoring_frame<D: Serialize>(data: D, timestamp: &str, top_level: Option<TopLevel<'_>>) -> String {
    let frame = MonitoringFrame { kind: "connection", id: uuid::Uuid::new_v4().simple().to_string(), timestamp, data, top_level };
    // Strings only: they always serialize.
    serde_json::to_string(&frame).unwrap_or_default()
}

/// The frame an endpoint with `ack` sends first, if any.
pub fn connection_ack(ack: Ack, connection_id: &str, client_id: Option<&str>, endpoint: &str) -> Option<Bytes> {
    match ack {
        Ack::None => None,
        Ack::Flat => Some(Bytes::from_static(br#"{"type":"connection","message":"Connected successfully"}"#)),
        Ack::Monitoring => {
            let now = envelope::now_rfc3339();
            let data = Connected {
                status: "connected",
                client_id: client_id.unwrap_or(connection_id),
                server_time: &now,
                connection_id,
                endpoint,
            };
            let message = "Connected successfully";
            let top_level = TopLevel { status: "connected", message, connection_id, client_id, endpoint, server_time: &now };
            Some(Bytes::from(monitoring_frame(data, &now, Some(top_level))))
        }
    }
}

/// On an endpoint with the monitoring acknowledgement, the `connection`
/// frame that says why a client is refused (`data.status = "error"`,
/// `data.error_code`, `data.message`). It goes before the error frame
/// every endpoint sends, and the close.
pub fn connection_refused(ack: Ack, failure: &Failure) -> Option<String> {
    if ack != Ack::Monitoring {
        return None;
    }
    let data = Refused { status: "error", error_code: &failure.code, message: &failure.message };
    Some(monitoring_frame(data, &envelope::now_rfc3339(), None))
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

    fn frame(bytes: Option<impl AsRef<[u8]>>) -> Value {
        serde_json::from_slice(bytes.expect("a frame").as_ref()).unwrap()
    }

    #[test]
    fn each_ack_style_in_the_form_its_clients_read() {
        let ack = frame(connection_ack(Ack::Monitoring, "c1", None, "/ws"));
        assert_eq!((ack["type"].as_str(), ack["id"].as_str().map(str::len)), (Some("connection"), Some(32)));
        let data = &ack["data"];
        assert_eq!(
            (data["status"].as_str(), data["client_id"].as_str(), data["connection_id"].as_str(), data["endpoint"].as_str()),
            (Some("connected"), Some("c1"), Some("c1"), Some("/ws")),
            "without an id of its own, a client is known by its connection's"
        );
        assert_eq!((&data["server_time"], &ack["server_time"]), (&ack["timestamp"], &ack["timestamp"]));
        assert_eq!((&ack["status"], &ack["client_id"], &ack["connection_id"]), (&json!("connected"), &Value::Null, &json!("c1")));
        let named = frame(connection_ack(Ack::Monitoring, "c1", Some("cam-7"), "/ws"));
        assert_eq!((&named["data"]["client_id"], &named["client_id"]), (&json!("cam-7"), &json!("cam-7")));

        let flat = frame(connection_ack(Ack::Flat, "c1", Some("cam-7"), "/rooms"));
        assert_eq!(flat, json!({"type": "connection", "message": "Connected successfully"}));
        assert!(connection_ack(Ack::None, "c1", None, "/api/websocket").is_none());
    }

    #[test]
    fn only_the_monitoring_style_has_a_refusal_frame() {
        let failure = Failure::new(ErrorCode::AuthenticationFailed, "invalid or revoked API key");
        let refused = frame(connection_refused(Ack::Monitoring, &failure));
        assert_eq!(refused["type"], "connection");
        assert_eq!(refused["data"], json!({"status": "error", "error_code": "AUTHENTICATION_FAILED", "message": "invalid or revoked API key"}));
        assert!(refused.get("status").is_none(), "{refused}");
        assert!(connection_refused(Ack::Flat, &failure).is_none() && connection_refused(Ack::None, &failure).is_none());
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
