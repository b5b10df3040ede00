//! Calls to clients on the wire: the request the host sends a connected
//! client, in the dialect that client speaks, and the client's answer read
//! back, in either of the two forms.
//!
//! - **request form** (clients that send `{"type":"request","msg_id",...}`):
//!   `{"type":"request","msg_id","timestamp","data":{"action","params"}}`,
//!   answered `{"type":"response","msg_id","success","data"|"result","error","code"}`
//!   (the worker SDK's nested `data.success`/`data.result` shape too);
//! - **canonical** (everyone else): `{"id","type":action,"timestamp","data":params}`,
//!   answered `{"type":"reply","id","data"}` or
//!   `{"type":"error","id","data":{"code","message"}}`.
//!
//! The host's call ids start with [`CALL_ID_PREFIX`], so a canonical reply
//! to a call is told apart from a message without a lookup. Nothing here
//! does I/O.

use super::dialect::{Dialect, MAX_TYPE_LEN};
use super::envelope::{self, Failure};
use super::worker::{self, Answer};
use super::ErrorCode;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// Every call id the host makes starts with this.
pub const CALL_ID_PREFIX: &str = "call-";

/// A fresh call id.
pub fn call_id() -> String {
    format!("{CALL_ID_PREFIX}{}", uuid::Uuid::new_v4().simple())
}

/// Check a call's action as a message type is checked.
pub fn check_action(action: &str) -> Result<(), Failure> {
    let why = if action.is_empty() {
        "the action is empty"
    } else if action.len() > MAX_TYPE_LEN {
        "the action is longer than 128 bytes"
    } else if action.chars().any(char::is_control) {
        "the action contains control characters"
    } else {
        return Ok(());
    };
    Err(Failure::new(ErrorCode::InvalidMessage, why))
}

#[derive(Serialize)]
struct RequestForm<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    msg_id: &'a str,
    timestamp: f64,
    data: ActionData<'a>,
}

#[derive(Serialize)]
struct ActionData<'a> {
    action: &'a str,
    params: &'a RawValue,
}

#[derive(Serialize)]
struct Canonical<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    timestamp: String,
    data: &'a RawValue,
}

/// The request frame for call `id` in `dialect` (the request form for
/// [`Dialect::Action`] clients, the canonical envelope for the others).
pub fn request(dialect: Dialect, id: &str, action: &str, params: &RawValue) -> String {
    let encoded = match dialect {
        Dialect::Action => serde_json::to_string(&RequestForm {
            kind: "request",
            msg_id: id,
            timestamp: envelope::unix_millis() as f64 / 1000.0,
            data: ActionData { action, params },
        }),
        Dialect::Canonical | Dialect::Command | Dialect::Raw => {
            serde_json::to_string(&Canonical { id, kind: action, timestamp: envelope::now_rfc3339(), data: params })
        }
    };
    // Strings and checked JSON always serialize.
    encoded.unwrap_or_default()
}

/// A client's answer to a call: which call, and what it says.
#[derive(Debug)]
pub struct ClientAnswer {
    pub call_id: String,
    pub outcome: Result<Box<RawValue>, Failure>,
}

#[derive(Deserialize)]
struct Head<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Option<&'a str>,
    #[serde(borrow, default)]
    id: Option<&'a str>,
    #[serde(borrow, default)]
    msg_id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

/// Read a frame as an answer to a call, if it is one: any `response` with a
/// `msg_id` (no client sends that as a request), or a `reply` or `error`
/// whose `id` is one of the host's call ids. Anything else is a message,
/// for the dialects to decode. A quick look at the bytes spares the
/// messages that are not answers a parse.
pub fn answer(text: &str) -> Option<ClientAnswer> {
    if !(text.contains("\"response\"") || text.contains(CALL_ID_PREFIX)) {
        return None;
    }
    let head: Head = serde_json::from_str(text).ok()?;
    match head.kind? {
        "response" => {
            let call_id = head.msg_id.and_then(|raw| serde_json::from_str::<String>(raw.get()).ok().or_else(|| Some(raw.get().to_owned())))?;
            let frame: serde_json::Value = serde_json::from_str(text).ok()?;
            let outcome = match worker::answer(&frame, "client") {
                Answer::Answered(Ok(reply)) => Ok(reply.data),
                Answer::Answered(Err(failure)) | Answer::Refused(failure) => Err(client_failure(failure)),
            };
            Some(ClientAnswer { call_id, outcome })
        }
        kind @ ("reply" | "error") => {
            let call_id = head.id.filter(|id| id.starts_with(CALL_ID_PREFIX))?.to_owned();
            let data = head.data.map_or_else(envelope::null, RawValue::to_owned);
            let outcome = if kind == "reply" {
                Ok(data)
            } else {
                let body: ErrorBody = serde_json::from_str(data.get()).unwrap_or(ErrorBody { code: None, message: None });
                let message = body.message.unwrap_or_else(|| "the client answered with an error".into());
                Err(match body.code {
                    Some(code) => Failure::from_plugin(code, message),
                    None => Failure::new(ErrorCode::ClientFailed, message),
                })
            };
            Some(ClientAnswer { call_id, outcome })
        }
        _ => None,
    }
}

/// A worker-shaped failure read from a client: one that named no code is
/// the client's, not a worker's.
fn client_failure(failure: Failure) -> Failure {
    if failure.is(ErrorCode::WorkerFailed) {
        Failure::new(ErrorCode::ClientFailed, failure.message)
    } else {
        failure
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn raw(v: Value) -> Box<RawValue> {
        serde_json::value::to_raw_value(&v).unwrap()
    }

    #[test]
    fn requests_go_out_in_the_clients_dialect() {
        let params = raw(json!({"x": 1}));
        let action: Value = serde_json::from_str(&request(Dialect::Action, "call-1", "get_time", &params)).unwrap();
        assert_eq!(action["type"], "request");
        assert_eq!(action["msg_id"], "call-1");
        assert_eq!(action["data"], json!({"action": "get_time", "params": {"x": 1}}));
        assert!(action["timestamp"].is_f64());
        let canonical: Value = serde_json::from_str(&request(Dialect::Canonical, "call-2", "get_time", &params)).unwrap();
        assert_eq!((&canonical["id"], &canonical["type"], &canonical["data"]), (&json!("call-2"), &json!("get_time"), &json!({"x": 1})));
    }

    #[test]
    fn answers_are_read_in_both_forms() {
        let ok = answer(r#"{"type":"response","msg_id":"call-1","success":true,"data":{"t":1}}"#).unwrap();
        assert_eq!((ok.call_id.as_str(), ok.outcome.unwrap().get()), ("call-1", r#"{"t":1}"#));
        let nested = answer(r#"{"type":"response","msg_id":"call-1","data":{"success":true,"result":[1]}}"#).unwrap();
        assert_eq!(nested.outcome.unwrap().get(), "[1]");
        let coded = answer(r#"{"type":"response","msg_id":"call-1","success":false,"error":"no disk","code":"DISK_FULL"}"#).unwrap();
        let failure = coded.outcome.unwrap_err();
        assert_eq!((failure.code.as_ref(), failure.message.as_str()), ("DISK_FULL", "no disk"));
        let uncoded = answer(r#"{"type":"response","msg_id":"call-1","success":false,"error":"no"}"#).unwrap();
        assert!(uncoded.outcome.unwrap_err().is(ErrorCode::ClientFailed));

        let reply = answer(r#"{"type":"reply","id":"call-9","data":{"ok":true}}"#).unwrap();
        assert_eq!((reply.call_id.as_str(), reply.outcome.unwrap().get()), ("call-9", r#"{"ok":true}"#));
        let error = answer(r#"{"type":"error","id":"call-9","data":{"code":"REFUSED","message":"not here"}}"#).unwrap();
        assert_eq!(error.outcome.unwrap_err().code.as_ref(), "REFUSED");
    }

    #[test]
    fn messages_are_not_answers() {
        assert!(answer(r#"{"type":"get_time","id":"a1"}"#).is_none());
        assert!(answer(r#"{"type":"reply","id":"a1","data":{}}"#).is_none(), "not one of the host's call ids");
        assert!(answer(r#"{"type":"request","msg_id":"m1","data":{"action":"response"}}"#).is_none());
        assert!(answer("not json \"response\"").is_none());
        assert!(check_action("").is_err() && check_action("get_time").is_ok());
    }
}
