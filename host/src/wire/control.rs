//! The video-control proxy's HTTP API, verbatim: `/api/control` with GET,
//! POST, PUT or DELETE becomes one `video_command` message.
//!
//! The fields come from a JSON body, and the query string fills in those
//! the body lacks (`position=12.5` is a number, `video_path=/a.mp4` a
//! string). Without an `action`, DELETE stops and GET asks for the status.
//! The old proxy answered with the plugin's result itself, not an envelope.

use super::envelope::Failure;
use super::ErrorCode;
use serde_json::{json, Map, Value};

/// The message type `/api/control` sends.
pub const CONTROL_TYPE: &str = "video_command";

/// The HTTP methods `/api/control` answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
    Put,
    Delete,
}

/// The canonical message for one `/api/control` request.
pub fn message(method: Method, query: impl IntoIterator<Item = (String, String)>, body: &[u8]) -> Result<String, Failure> {
    let mut fields: Map<String, Value> = if body.iter().all(u8::is_ascii_whitespace) {
        Map::new()
    } else {
        serde_json::from_slice(body)
            .map_err(|e| Failure::new(ErrorCode::InvalidJson, format!("the body must be a JSON object: {e}")))?
    };
    for (name, value) in query {
        let value = serde_json::from_str::<Value>(&value).ok().filter(|v| v.is_number() || v.is_boolean()).unwrap_or(Value::String(value));
        fields.entry(name).or_insert(value);
    }
    if !fields.contains_key("action") {
        let default = match method {
            Method::Delete => "stop",
            Method::Get => "status",
            Method::Post | Method::Put => {
                return Err(Failure::new(ErrorCode::InvalidMessage, "an action is required: {\"action\":\"play\",...}"))
            }
        };
        fields.insert("action".into(), default.into());
    }
    Ok(json!({ "type": CONTROL_TYPE, "data": fields }).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(method: Method, query: &[(&str, &str)], body: &str) -> Result<Value, Failure> {
        let query = query.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        let text = message(method, query, body.as_bytes())?;
        let message: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(message["type"], CONTROL_TYPE);
        Ok(message["data"].clone())
    }

    #[test]
    fn query_fills_in_the_body_and_methods_give_defaults() {
        let play = data(Method::Get, &[("action", "play"), ("video_path", "/a.mp4"), ("position", "12.5")], "").unwrap();
        assert_eq!(play, json!({"action": "play", "video_path": "/a.mp4", "position": 12.5}));
        let body_wins = data(Method::Post, &[("action", "stop")], r#"{"action":"pause"}"#).unwrap();
        assert_eq!(body_wins["action"], "pause");
        assert_eq!(data(Method::Delete, &[], "").unwrap()["action"], "stop");
        assert_eq!(data(Method::Get, &[], " ").unwrap()["action"], "status");
        assert!(data(Method::Put, &[], "").unwrap_err().is(ErrorCode::InvalidMessage));
        assert!(data(Method::Post, &[], "[1]").unwrap_err().is(ErrorCode::InvalidJson));
    }
}
