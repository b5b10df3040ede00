//! Client wire formats: each decodes into the one [`Envelope`] and encodes
//! its answer back in the shape that client expects.
//!
//! Compatibility with the servers Switchyard replaces lives here and nowhere
//! else. The accepted formats:
//!
//! - **canonical**: `{"type","id","timestamp","data","meta"}`, answered by
//!   `{"type":"reply"|"error"|"pong","id",...}`;
//! - **action** (the action server's workers and requesters):
//!   `{"type":"request","msg_id","data":{"action","params"}}`, answered by
//!   `{"type":"response","msg_id",...}`; and that server's system messages
//!   `{"type":"heartbeat"|"connect"|"disconnect"|"notification"|"custom",
//!   "msg_id","data"}`, routed by their `type` with `data` as it is, and
//!   answered the same way;
//! - **command** (the action server's requesters):
//!   `{"request_id","command","data"}`, answered by
//!   `{"request_id","success","data","error","processed_by"}`;
//! - **raw** (the room server, on endpoints configured `format = "raw"`):
//!   any object, its `type` optional; the whole object is the data, and the
//!   plugin's reply is sent as it is (an array as several frames, `null` as
//!   none); errors are `{"type":"error","message","code"}`.
//!
//! An endpoint may also give a default type for messages without one, and a
//! namespace prefixed to every type (`message` on `/rooms` routes as
//! `rooms.message`).
//!
//! Decoding borrows from the frame and never builds a JSON tree.

use crate::wire::{envelope, Envelope, ErrorCode, Failure, Outcome};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// Which client format a request came in, so the answer goes back in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Canonical,
    Action,
    Command,
    Raw,
}

/// How an endpoint reads messages.
#[derive(Debug, Clone, Default)]
pub struct Profile {
    /// The raw dialect instead of the envelope formats.
    pub raw: bool,
    /// Prefixed, with a dot, to every message type.
    pub namespace: Option<String>,
    /// The type of a message that has none.
    pub default_type: Option<String>,
}

/// Everything needed to answer a request in its client's format.
#[derive(Debug, Clone)]
pub struct ReplyTo {
    pub dialect: Dialect,
    /// The client's id (`id`, `msg_id` or `request_id`) exactly as sent.
    pub id: Option<Box<RawValue>>,
    /// The requested type, when known.
    pub kind: Option<String>,
}

/// A decoded request, ready to route.
#[derive(Debug)]
pub struct Request {
    pub envelope: Envelope,
    pub reply_to: ReplyTo,
}

/// A frame that could not be decoded, and how to say so to its sender.
#[derive(Debug)]
pub struct Rejection {
    pub reply_to: ReplyTo,
    pub failure: Failure,
}

#[derive(Deserialize)]
struct Wire<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Option<&'a RawValue>,
    #[serde(borrow, default)]
    id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    msg_id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    request_id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    command: Option<&'a RawValue>,
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
    #[serde(borrow, default)]
    meta: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct ActionData<'a> {
    action: String,
    #[serde(borrow, default)]
    params: Option<&'a RawValue>,
}

/// Longest accepted message type, in bytes.
pub const MAX_TYPE_LEN: usize = 128;

/// Decode one text frame of at most `max_bytes`, as `profile`'s endpoint reads it.
pub fn decode(text: &str, max_bytes: usize, profile: &Profile) -> Result<Request, Rejection> {
    let mut request = decode_frame(text, max_bytes, profile)?;
    if let Some(namespace) = &profile.namespace {
        request.envelope.kind = format!("{namespace}.{}", request.envelope.kind);
    }
    Ok(request)
}

fn decode_frame(text: &str, max_bytes: usize, profile: &Profile) -> Result<Request, Rejection> {
    let dialect = if profile.raw { Dialect::Raw } else { Dialect::Canonical };
    let unknown = ReplyTo { dialect, id: None, kind: None };
    if text.len() > max_bytes {
        let failure = Failure::new(
            ErrorCode::PayloadTooLarge,
            format!("message is {} bytes; the limit is {max_bytes}", text.len()),
        );
        return Err(Rejection { reply_to: unknown, failure });
    }
    let wire: Wire = serde_json::from_str(text).map_err(|e| {
        let code = if e.is_syntax() || e.is_eof() { ErrorCode::InvalidJson } else { ErrorCode::InvalidMessage };
        let message = if e.is_data() { format!("expected a JSON object with a \"type\": {e}") } else { e.to_string() };
        Rejection { reply_to: unknown.clone(), failure: Failure::new(code, message) }
    })?;
    // serde reads a struct from an array as well, its fields in order
    // (`["get_time","x"]` would be a `get_time` with id `x`): only an
    // object is a message.
    if !text.trim_start().starts_with('{') {
        return Err(reject(unknown, "a message is a JSON object, not an array"));
    }

    if profile.raw {
        decode_raw(text, wire, profile)
    } else if wire.command.is_some() || wire.request_id.is_some() {
        decode_command(wire)
    } else if wire.msg_id.is_some() && wire.kind.map(RawValue::get) == Some("\"request\"") {
        decode_action(wire)
    } else if let Some(kind) = wire.msg_id.and(wire.kind).and_then(action_system_type) {
        decode_action_system(kind, wire)
    } else {
        decode_canonical(text, wire, profile)
    }
}

fn decode_raw(text: &str, wire: Wire, profile: &Profile) -> Result<Request, Rejection> {
    let mut reply_to = ReplyTo { dialect: Dialect::Raw, id: None, kind: None };
    let kind = match (wire.kind.map(type_name), &profile.default_type) {
        (Some(Err(why)), _) => return Err(reject(reply_to, why)),
        (Some(Ok(kind)), _) => kind,
        (None, Some(default)) => default.clone(),
        (None, None) => return Err(reject(reply_to, "missing \"type\"")),
    };
    reply_to.kind = Some(kind.clone());
    let data = RawValue::from_string(text.to_owned()).map_err(|e| reject(reply_to.clone(), e.to_string()))?;
    let id = uuid::Uuid::new_v4().simple().to_string();
    Ok(Request { envelope: Envelope { id, kind, data, meta: envelope::empty_object() }, reply_to })
}

fn decode_canonical(text: &str, wire: Wire, profile: &Profile) -> Result<Request, Rejection> {
    let mut reply_to = ReplyTo { dialect: Dialect::Canonical, id: wire.id.map(RawValue::to_owned), kind: None };
    let id = match wire.id {
        None => uuid::Uuid::new_v4().simple().to_string(),
        Some(raw) => match scalar_id(raw) {
            Some(id) => id,
            None => return Err(reject(ReplyTo { id: echoable(reply_to.id), ..reply_to }, "\"id\" must be a string or a number")),
        },
    };
    if reply_to.id.is_none() {
        reply_to.id = serde_json::value::to_raw_value(&id).ok();
    }
    // A message without a type goes to the endpoint's default type, whole.
    let (kind, whole) = match (wire.kind.map(type_name), &profile.default_type) {
        (None, None) => return Err(reject(reply_to, "missing \"type\"")),
        (None, Some(default)) => (default.clone(), true),
        (Some(Err(why)), _) => return Err(reject(reply_to, why)),
        (Some(Ok(kind)), _) => (kind, false),
    };
    reply_to.kind = Some(kind.clone());
    if whole {
        let data = RawValue::from_string(text.to_owned()).map_err(|e| reject(reply_to.clone(), e.to_string()))?;
        return Ok(Request { envelope: Envelope { id, kind, data, meta: envelope::empty_object() }, reply_to });
    }
    let meta = match wire.meta {
        None => envelope::empty_object(),
        Some(raw) if raw.get().starts_with('{') => raw.to_owned(),
        Some(_) => return Err(reject(reply_to, "\"meta\" must be an object")),
    };
    let data = wire.data.map_or_else(envelope::null, RawValue::to_owned);
    Ok(Request { envelope: Envelope { id, kind, data, meta }, reply_to })
}

fn decode_action(wire: Wire) -> Result<Request, Rejection> {
    let raw_id = wire.msg_id.map(RawValue::to_owned);
    let mut reply_to = ReplyTo { dialect: Dialect::Action, id: raw_id, kind: None };
    let Some(id) = wire.msg_id.and_then(scalar_id) else {
        return Err(reject(ReplyTo { id: echoable(reply_to.id), ..reply_to }, "\"msg_id\" must be a string or a number"));
    };
    let Some(data) = wire.data else {
        return Err(reject(reply_to, "a request needs \"data\": {\"action\", \"params\"}"));
    };
    let action: ActionData = match serde_json::from_str(data.get()) {
        Ok(action) => action,
        Err(e) => return Err(reject(reply_to, format!("\"data\" must be {{\"action\": string, \"params\": ...}}: {e}"))),
    };
    if let Err(why) = check_type(&action.action) {
        return Err(reject(reply_to, why));
    }
    reply_to.kind = Some(action.action.clone());
    let data = action.params.map_or_else(envelope::empty_object, RawValue::to_owned);
    let meta = envelope::empty_object();
    Ok(Request { envelope: Envelope { id, kind: action.action, data, meta }, reply_to })
}

/// The action server's system message types, which its clients send in
/// the request form's envelope (`type`, `msg_id`, `data`) without an action.
const ACTION_SYSTEM_TYPES: [&str; 5] = ["heartbeat", "connect", "disconnect", "notification", "custom"];

fn action_system_type(kind: &RawValue) -> Option<&'static str> {
    ACTION_SYSTEM_TYPES.into_iter().find(|name| kind.get().strip_prefix('"').and_then(|k| k.strip_suffix('"')) == Some(*name))
}

fn decode_action_system(kind: &'static str, wire: Wire) -> Result<Request, Rejection> {
    let reply_to = ReplyTo { dialect: Dialect::Action, id: wire.msg_id.map(RawValue::to_owned), kind: Some(kind.to_owned()) };
    let Some(id) = wire.msg_id.and_then(scalar_id) else {
        return Err(reject(reply_to, "\"msg_id\" must be a string or a number"));
    };
    let data = wire.data.map_or_else(envelope::empty_object, RawValue::to_owned);
    let envelope = Envelope { id, kind: kind.to_owned(), data, meta: envelope::empty_object() };
    Ok(Request { envelope, reply_to })
}

fn decode_command(wire: Wire) -> Result<Request, Rejection> {
    let mut reply_to = ReplyTo { dialect: Dialect::Command, id: wire.request_id.map(RawValue::to_owned), kind: None };
    let id = match wire.request_id {
        None => uuid::Uuid::new_v4().simple().to_string(),
        Some(raw) => match scalar_id(raw) {
            Some(id) => id,
            None => return Err(reject(ReplyTo { id: echoable(reply_to.id), ..reply_to }, "\"request_id\" must be a string or a number")),
        },
    };
    let kind = match wire.command.map(type_name) {
        None => return Err(reject(reply_to, "missing \"command\"")),
        Some(Err(why)) => return Err(reject(reply_to, why)),
        Some(Ok(kind)) => kind,
    };
    reply_to.kind = Some(kind.clone());
    let data = wire.data.map_or_else(envelope::null, RawValue::to_owned);
    let meta = envelope::empty_object();
    Ok(Request { envelope: Envelope { id, kind, data, meta }, reply_to })
}

fn reject(reply_to: ReplyTo, message: impl Into<String>) -> Rejection {
    Rejection { reply_to, failure: Failure::new(ErrorCode::InvalidMessage, message) }
}

/// An id is a string or a number; anything else is not an id.
fn scalar_id(raw: &RawValue) -> Option<String> {
    let text = raw.get();
    if text.starts_with('"') {
        serde_json::from_str(text).ok()
    } else if text.starts_with(|c: char| c == '-' || c.is_ascii_digit()) {
        // Echoed as it came: only a number a JSON parser can read back (not 1e400).
        text.parse::<f64>().is_ok_and(f64::is_finite).then(|| text.to_owned())
    } else {
        None
    }
}

/// The id a rejection echoes: what the client sent if a strict JSON parser
/// can read it back, else `null` (a lone surrogate escape or an infinite
/// number would make the error reply itself unreadable).
fn echoable(raw: Option<Box<RawValue>>) -> Option<Box<RawValue>> {
    raw.filter(|raw| serde_json::from_str::<serde_json::Value>(raw.get()).is_ok())
}

fn type_name(raw: &RawValue) -> Result<String, String> {
    let kind: String = serde_json::from_str(raw.get()).map_err(|_| "\"type\" must be a string".to_owned())?;
    check_type(&kind)?;
    Ok(kind)
}

fn check_type(kind: &str) -> Result<(), String> {
    if kind.is_empty() {
        Err("the message type is empty".into())
    } else if kind.len() > MAX_TYPE_LEN {
        Err(format!("the message type is longer than {MAX_TYPE_LEN} bytes"))
    } else if kind.chars().any(char::is_control) {
        Err("the message type contains control characters".into())
    } else {
        Ok(())
    }
}

/// The frames answering a request in its client's format: one, except in
/// the raw dialect, where a reply may be several frames or none.
pub fn frames(reply_to: &ReplyTo, outcome: &Outcome) -> Vec<String> {
    match (reply_to.dialect, outcome) {
        (Dialect::Raw, Ok(reply)) => {
            let text = reply.data.get();
            if text == "null" {
                Vec::new()
            } else if text.starts_with('[') {
                let items: Vec<&RawValue> = serde_json::from_str(text).unwrap_or_default();
                items.into_iter().map(|item| item.get().to_owned()).collect()
            } else {
                vec![text.to_owned()]
            }
        }
        _ => vec![encode(reply_to, outcome)],
    }
}

/// An error not tied to any request, in the format an endpoint reads
/// (the raw dialect's, or the canonical envelope's without an id).
pub fn unsolicited_error(profile: &Profile, failure: &Failure) -> String {
    let dialect = if profile.raw { Dialect::Raw } else { Dialect::Canonical };
    encode(&ReplyTo { dialect, id: None, kind: None }, &Err(failure.clone()))
}

/// Encode the answer to a request in its client's format, as one frame.
pub fn encode(reply_to: &ReplyTo, outcome: &Outcome) -> String {
    let id = reply_to.id.as_deref();
    let encoded = match (reply_to.dialect, outcome) {
        (Dialect::Raw, Ok(reply)) => Ok(reply.data.get().to_owned()),
        (Dialect::Raw, Err(failure)) => serde_json::to_string(&RawError {
            kind: "error",
            message: &failure.message,
            code: &failure.code,
            retry_after: failure.retry_after_ms,
        }),
        (Dialect::Canonical, Ok(reply)) => serde_json::to_string(&CanonicalReply {
            kind: reply.reply_type,
            id,
            timestamp: envelope::now_rfc3339(),
            data: &reply.data,
            meta: ReplyMeta {
                request_type: reply_to.kind.as_deref(),
                plugin: Some(&reply.served_by.name),
                plugin_version: Some(&reply.served_by.version),
            },
        }),
        (Dialect::Canonical, Err(failure)) => serde_json::to_string(&CanonicalReply {
            kind: "error",
            id,
            timestamp: envelope::now_rfc3339(),
            data: &ErrorData::of(failure),
            meta: ReplyMeta { request_type: reply_to.kind.as_deref(), plugin: None, plugin_version: None },
        }),
        (Dialect::Action, outcome) => serde_json::to_string(&ActionReply {
            kind: "response",
            msg_id: id,
            timestamp: envelope::unix_millis() as f64 / 1000.0,
            success: outcome.is_ok(),
            data: outcome.as_ref().ok().map(|reply| &*reply.data),
            error: outcome.as_ref().err().map(ErrorData::of),
        }),
        (Dialect::Command, Ok(reply)) => serde_json::to_string(&CommandReply {
            request_id: id,
            success: true,
            data: Some(&reply.data),
            error: None,
            code: None,
            retry_after: None,
            processed_by: Some(&reply.served_by.name),
        }),
        (Dialect::Command, Err(failure)) => serde_json::to_string(&CommandReply {
            request_id: id,
            success: false,
            data: None,
            error: Some(&failure.message),
            code: Some(&failure.code),
            retry_after: failure.retry_after_ms,
            processed_by: None,
        }),
    };
    // Serializing borrowed strings and already-valid raw JSON cannot fail.
    encoded.unwrap_or_else(|e| format!(r#"{{"type":"error","data":{{"code":"INTERNAL_ERROR","message":"{e}"}}}}"#))
}

#[derive(Serialize)]
struct CanonicalReply<'a, D: Serialize + ?Sized> {
    #[serde(rename = "type")]
    kind: &'a str,
    id: Option<&'a RawValue>,
    timestamp: String,
    data: &'a D,
    meta: ReplyMeta<'a>,
}

#[derive(Serialize)]
struct ReplyMeta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    request_type: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    plugin: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    plugin_version: Option<&'a str>,
}

/// A failure's `{"code","message"[,"retry_after"]}`, in every error shape.
#[derive(Serialize)]
pub(super) struct ErrorData<'a> {
    code: &'a str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    retry_after: Option<u64>,
}

impl<'a> ErrorData<'a> {
    pub(super) fn of(failure: &'a Failure) -> Self {
        ErrorData { code: &failure.code, message: &failure.message, retry_after: failure.retry_after_ms }
    }
}

#[derive(Serialize)]
struct RawError<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    message: &'a str,
    code: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    retry_after: Option<u64>,
}

#[derive(Serialize)]
struct ActionReply<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    msg_id: Option<&'a RawValue>,
    timestamp: f64,
    success: bool,
    data: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<ErrorData<'a>>,
}

#[derive(Serialize)]
struct CommandReply<'a> {
    request_id: Option<&'a RawValue>,
    success: bool,
    data: Option<&'a RawValue>,
    error: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    retry_after: Option<u64>,
    processed_by: Option<&'a str>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{Reply, ServedBy};
    use serde_json::{json, Value};

    fn decoded(text: &str) -> Request {
        decode(text, 1 << 20, &Profile::default()).expect("decodes")
    }

    fn rejected(text: &str) -> Failure {
        decode(text, 1 << 20, &Profile::default()).expect_err("rejects").failure
    }

    fn reply(data: &str) -> Outcome {
        Ok(Reply {
            data: RawValue::from_string(data.into()).unwrap(),
            served_by: ServedBy { name: "echo".into(), version: "1.0.0".into() },
            reply_type: "reply",
        })
    }

    fn encoded(request: &Request, outcome: &Outcome) -> Value {
        serde_json::from_str(&encode(&request.reply_to, outcome)).unwrap()
    }

    #[test]
    fn canonical_envelope_keeps_id_data_and_meta() {
        let req = decoded(r#"{"type":"get_time","id":"a1","timestamp":1,"data":{"x":1},"meta":{"trace":"t"}}"#);
        assert_eq!(req.envelope.kind, "get_time");
        assert_eq!(req.envelope.id, "a1");
        assert_eq!(req.envelope.data.get(), r#"{"x":1}"#);
        assert_eq!(req.envelope.meta.get(), r#"{"trace":"t"}"#);
        let out = encoded(&req, &reply(r#""ok""#));
        assert_eq!(out["type"], "reply");
        assert_eq!(out["id"], "a1");
        assert_eq!(out["data"], "ok");
        assert_eq!(out["meta"]["plugin"], "echo");
    }

    #[test]
    fn canonical_without_id_gets_a_generated_one_echoed_back() {
        let req = decoded(r#"{"type":"video_command","data":{"action":"play"},"timestamp":"2025-04-25T13:51:00Z"}"#);
        assert_eq!(req.envelope.data.get(), r#"{"action":"play"}"#);
        assert_eq!(req.envelope.id.len(), 32);
        let out = encoded(&req, &reply("1"));
        assert_eq!(out["id"], Value::String(req.envelope.id.clone()));
    }

    #[test]
    fn numeric_ids_come_back_as_numbers() {
        let req = decoded(r#"{"type":"t","id":42}"#);
        assert_eq!(req.envelope.id, "42");
        assert_eq!(encoded(&req, &reply("null"))["id"], json!(42));
    }

    #[test]
    fn action_request_routes_by_action_and_answers_response() {
        let req = decoded(r#"{"type":"request","msg_id":"m1","timestamp":1714000000.1,"data":{"action":"get_time","params":{"tz":"UTC"}}}"#);
        assert_eq!(req.envelope.kind, "get_time");
        assert_eq!(req.envelope.data.get(), r#"{"tz":"UTC"}"#);
        let out = encoded(&req, &reply(r#"{"t":1}"#));
        assert_eq!(out["type"], "response");
        assert_eq!(out["msg_id"], "m1");
        assert_eq!(out["success"], true);
        assert_eq!(out["data"], json!({"t": 1}));
        let failed = encoded(&req, &Err(Failure::new(ErrorCode::UnknownType, "no")));
        assert_eq!(failed["success"], false);
        assert_eq!(failed["error"]["code"], "UNKNOWN_TYPE");
    }

    #[test]
    fn action_system_messages_route_by_type_and_answer_by_msg_id() {
        for kind in ACTION_SYSTEM_TYPES {
            let req = decoded(&format!(r#"{{"type":"{kind}","msg_id":"h1","timestamp":1714000000.1,"data":{{"n":1}}}}"#));
            assert_eq!((req.envelope.kind.as_str(), req.envelope.data.get()), (kind, r#"{"n":1}"#));
            let out = encoded(&req, &reply(r#"{"status":"alive"}"#));
            assert_eq!((&out["type"], &out["msg_id"], &out["success"]), (&json!("response"), &json!("h1"), &json!(true)));
        }
        assert_eq!(decoded(r#"{"type":"heartbeat","msg_id":7}"#).envelope.data.get(), "{}");
        // Without a msg_id they are canonical messages of that type.
        let canonical = decoded(r#"{"type":"heartbeat","id":"c"}"#);
        assert_eq!((canonical.reply_to.dialect, canonical.envelope.kind.as_str()), (Dialect::Canonical, "heartbeat"));
        // A client's `response` is not a system message.
        assert_eq!(decoded(r#"{"type":"response","msg_id":"m"}"#).reply_to.dialect, Dialect::Canonical);
        assert!(rejected(r#"{"type":"heartbeat","msg_id":[1]}"#).is(ErrorCode::InvalidMessage));
    }

    #[test]
    fn command_request_answers_in_the_requester_shape() {
        let req = decoded(r#"{"request_id":"r-9","command":"echo","data":{"message":"Hello World"}}"#);
        assert_eq!(req.envelope.kind, "echo");
        let out = encoded(&req, &reply(r#""Echo: Hello World""#));
        assert_eq!(
            out,
            json!({"request_id":"r-9","success":true,"data":"Echo: Hello World","error":null,"processed_by":"echo"})
        );
        let failed = encoded(&req, &Err(Failure::from_plugin("BAD".into(), "went wrong".into())));
        assert_eq!(failed["success"], false);
        assert_eq!(failed["data"], Value::Null);
        assert_eq!(failed["error"], "went wrong");
        assert_eq!(failed["code"], "BAD");
    }

    #[test]
    fn bad_input_gets_the_right_code() {
        let cases = [
            ("{not json", "INVALID_JSON"),
            ("", "INVALID_JSON"),
            ("[1,2]", "INVALID_MESSAGE"),
            (r#"["get_time","x"]"#, "INVALID_MESSAGE"),
            ("[]", "INVALID_MESSAGE"),
            ("\"text\"", "INVALID_MESSAGE"),
            (r#"{"data":{}}"#, "INVALID_MESSAGE"),
            (r#"{"type":7}"#, "INVALID_MESSAGE"),
            (r#"{"type":""}"#, "INVALID_MESSAGE"),
            (r#"{"type":"t","id":{"a":1}}"#, "INVALID_MESSAGE"),
            (r#"{"type":"t","meta":[1]}"#, "INVALID_MESSAGE"),
            (r#"{"type":"request","msg_id":"m","data":{"params":{}}}"#, "INVALID_MESSAGE"),
            (r#"{"request_id":"r"}"#, "INVALID_MESSAGE"),
            (r#"{"request_id":"r","command":3}"#, "INVALID_MESSAGE"),
        ];
        for (text, code) in cases {
            assert_eq!(rejected(text).code, code, "for {text:?}");
        }
    }

    #[test]
    fn rejection_keeps_the_clients_id_when_it_has_one() {
        let rejection = decode(r#"{"request_id":"r7","command":""}"#, 1024, &Profile::default()).unwrap_err();
        let out: Value = serde_json::from_str(&encode(&rejection.reply_to, &Err(rejection.failure))).unwrap();
        assert_eq!(out["request_id"], "r7");
        assert_eq!(out["success"], false);
    }

    #[test]
    fn raw_endpoints_namespace_types_and_send_replies_as_they_are() {
        let rooms = Profile { raw: true, namespace: Some("rooms".into()), default_type: Some("identify".into()) };
        let req = decode(r#"{"device_id":"d1","room_id":"ABC123"}"#, 1024, &rooms).unwrap();
        assert_eq!(req.envelope.kind, "rooms.identify");
        assert_eq!(req.envelope.data.get(), r#"{"device_id":"d1","room_id":"ABC123"}"#);
        let req = decode(r#"{"type":"query_room"}"#, 1024, &rooms).unwrap();
        assert_eq!(req.envelope.kind, "rooms.query_room");
        assert_eq!(frames(&req.reply_to, &reply(r#"[{"a":1},{"b":2}]"#)), [r#"{"a":1}"#, r#"{"b":2}"#]);
        assert!(frames(&req.reply_to, &reply("null")).is_empty());
        let error: Value = serde_json::from_str(&frames(&req.reply_to, &Err(Failure::from_plugin("X".into(), "no".into())))[0]).unwrap();
        assert_eq!(error, json!({"type": "error", "message": "no", "code": "X"}));
    }

    #[test]
    fn a_default_type_takes_untyped_canonical_messages_whole() {
        let profile = Profile { default_type: Some("fallback".into()), ..Profile::default() };
        let req = decode(r#"{"hello":"world"}"#, 1024, &profile).unwrap();
        assert_eq!(req.envelope.kind, "fallback");
        let raw = Profile { raw: true, ..profile.clone() };
        for not_an_object in ["[]", r#"["ping"]"#] {
            assert!(decode(not_an_object, 1024, &profile).unwrap_err().failure.is(ErrorCode::InvalidMessage));
            assert!(decode(not_an_object, 1024, &raw).unwrap_err().failure.is(ErrorCode::InvalidMessage));
        }
        assert_eq!(req.envelope.data.get(), r#"{"hello":"world"}"#);
    }

    #[test]
    fn oversize_text_is_rejected_before_parsing() {
        let failure = decode(&format!(r#"{{"type":"t","data":"{}"}}"#, "x".repeat(100)), 64, &Profile::default()).unwrap_err().failure;
        assert!(failure.is(ErrorCode::PayloadTooLarge));
    }
}
