//! The canonical envelope as the client writes and reads it: building
//! request frames and sorting incoming frames into acknowledgements,
//! replies and pushed frames. Pure functions over JSON, no I/O.

use crate::error::ClientError;
use serde_json::{Map, Value};

/// `{"type", "id", "data"}`; `data` is left out when it is null (the host
/// treats a missing `data` as null).
pub(crate) fn request(kind: &str, id: Option<&str>, data: &Value) -> String {
    let mut frame = Map::new();
    frame.insert("type".into(), Value::String(kind.to_owned()));
    if let Some(id) = id {
        frame.insert("id".into(), Value::String(id.to_owned()));
    }
    if !data.is_null() {
        frame.insert("data".into(), data.clone());
    }
    Value::Object(frame).to_string()
}

/// The `data` of a `subscribe` request; empty or null filters are left out.
pub(crate) fn subscribe_data(events: &[String], filters: &Value) -> Value {
    let mut data = Map::new();
    data.insert("events".into(), Value::from(events.to_vec()));
    if has_filters(filters) {
        data.insert("filters".into(), filters.clone());
    }
    Value::Object(data)
}

pub(crate) fn has_filters(filters: &Value) -> bool {
    match filters {
        Value::Null => false,
        Value::Object(map) => !map.is_empty(),
        _ => true,
    }
}

/// What an incoming frame is to the client.
#[derive(Debug, PartialEq)]
pub(crate) enum Incoming {
    /// The host's `connection` acknowledgement (only as the first frame,
    /// and not its refusal form, `data.status = "error"`).
    Ack { connection_id: Option<String> },
    /// Has an id and is not an event: the answer to a request, if one is waiting.
    Reply { id: String, is_reply_type: bool },
    /// An event (`meta.topic`) or any other frame the server pushed.
    Push,
}

pub(crate) fn classify(frame: &Value, first: bool) -> Incoming {
    let kind = frame.get("type").and_then(Value::as_str);
    let refused = frame.pointer("/data/status").and_then(Value::as_str) == Some("error");
    if first && kind == Some("connection") && !refused {
        let connection_id = frame.get("connection_id").and_then(Value::as_str).map(str::to_owned);
        return Incoming::Ack { connection_id };
    }
    if topic(frame).is_some() {
        return Incoming::Push;
    }
    let id = match frame.get("id") {
        Some(Value::String(id)) => id.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => return Incoming::Push,
    };
    Incoming::Reply { id, is_reply_type: matches!(kind, Some("reply" | "error" | "pong")) }
}

/// An event's topic (`meta.topic`).
pub(crate) fn topic(frame: &Value) -> Option<&str> {
    frame.get("meta").and_then(|meta| meta.get("topic")).and_then(Value::as_str)
}

/// The server's error in an error frame: canonical (`data.code`,
/// `data.message`) or raw (`code`, `message`/`error` at the top).
pub(crate) fn remote_error(frame: &Value) -> Option<ClientError> {
    if frame.get("type").and_then(Value::as_str) != Some("error") {
        return None;
    }
    let field = |name: &str| {
        frame
            .get("data")
            .and_then(|data| data.get(name))
            .or_else(|| frame.get(name))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    Some(ClientError::Remote {
        code: field("code").unwrap_or_else(|| "UNKNOWN_ERROR".into()),
        message: field("message").or_else(|| field("error")).unwrap_or_default(),
    })
}

/// A reply frame as the result of `request`: its `data`, or the error.
pub(crate) fn reply_data(mut frame: Value) -> Result<Value, ClientError> {
    if let Some(error) = remote_error(&frame) {
        return Err(error);
    }
    Ok(frame.get_mut("data").map(Value::take).unwrap_or(Value::Null))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn requests_are_canonical_envelopes() {
        let frame: Value = serde_json::from_str(&request("calculate", Some("c1"), &json!({"a": 6}))).unwrap();
        assert_eq!(frame, json!({"type": "calculate", "id": "c1", "data": {"a": 6}}));
        let frame: Value = serde_json::from_str(&request("ping", None, &Value::Null)).unwrap();
        assert_eq!(frame, json!({"type": "ping"}));
        assert_eq!(subscribe_data(&["status".into()], &json!({})), json!({"events": ["status"]}));
        assert_eq!(
            subscribe_data(&["alert.*".into()], &json!({"level": ["critical"]})),
            json!({"events": ["alert.*"], "filters": {"level": ["critical"]}})
        );
    }

    #[test]
    fn frames_are_sorted_by_what_they_are() {
        let ack = json!({"type": "connection", "status": "connected", "connection_id": "c-1"});
        assert_eq!(classify(&ack, true), Incoming::Ack { connection_id: Some("c-1".into()) });
        assert_eq!(classify(&ack, false), Incoming::Push, "only the first frame is the acknowledgement");
        let refusal = json!({"type": "connection", "id": "n1", "data": {"status": "error", "error_code": "AUTHENTICATION_FAILED"}});
        assert!(!matches!(classify(&refusal, true), Incoming::Ack { .. }), "a refusal is no acknowledgement");
        let event = json!({"type": "alert", "id": "e1", "data": {}, "meta": {"topic": "alert.cpu"}});
        assert_eq!(classify(&event, false), Incoming::Push, "events carry ids too, but are never replies");
        assert_eq!(
            classify(&json!({"type": "reply", "id": "r1", "data": 1}), true),
            Incoming::Reply { id: "r1".into(), is_reply_type: true }
        );
        assert_eq!(
            classify(&json!({"type": "error", "id": 7}), false),
            Incoming::Reply { id: "7".into(), is_reply_type: true }
        );
        assert_eq!(
            classify(&json!({"type": "direct", "id": "x"}), false),
            Incoming::Reply { id: "x".into(), is_reply_type: false }
        );
        assert_eq!(classify(&json!({"type": "error", "id": null}), false), Incoming::Push);
    }

    #[test]
    fn error_frames_keep_the_server_code() {
        let canonical =
            json!({"type": "error", "id": "c1", "data": {"code": "DIVISION_BY_ZERO", "message": "6 / 0 is undefined"}});
        assert_eq!(
            reply_data(canonical),
            Err(ClientError::Remote { code: "DIVISION_BY_ZERO".into(), message: "6 / 0 is undefined".into() })
        );
        let raw = json!({"type": "error", "message": "identify first", "code": "ROOM_ERROR"});
        assert_eq!(
            remote_error(&raw),
            Some(ClientError::Remote { code: "ROOM_ERROR".into(), message: "identify first".into() })
        );
        assert_eq!(reply_data(json!({"type": "reply", "id": "1", "data": {"x": 1}})), Ok(json!({"x": 1})));
        assert_eq!(reply_data(json!({"type": "pong", "id": "1"})), Ok(Value::Null));
    }
}
