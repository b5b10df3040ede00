//! The remote-worker protocol (the action server's, verbatim), both ways.
//!
//! A worker's first frame is `{"type":"register","data":{"worker_id",
//! "types","weight","concurrency"}}`, answered `{"type":"registered",
//! "data":{"worker_id","timestamp"}}`. The host then sends `request` frames
//! and `ping`s; the worker sends `response`, `heartbeat`, `pong` and may
//! `ping`. A `response` comes in either of two shapes: the worker SDK's
//! `data.success` with `data.result`, or the action server's top-level
//! `success`, `data`/`result` and `error`.
//!
//! The action server registered its workers on connect, so a worker that
//! never sends `register` is registered implicitly, for the configured
//! default types (see [`Registration::implicit`] and `transport/worker.rs`).

use super::envelope::{self, Envelope, Failure, Outcome, Reply, ServedBy};
use super::ErrorCode;
use serde::Deserialize;
use serde_json::{json, Value};

/// What a worker sends to register.
#[derive(Debug, Clone, Deserialize)]
pub struct Registration {
    #[serde(default)]
    pub worker_id: Option<String>,
    pub types: Vec<String>,
    #[serde(default = "one")]
    pub weight: f64,
    #[serde(default = "one_slot")]
    pub concurrency: usize,
}

impl Registration {
    /// How a worker that never sent `register` is registered: under a
    /// generated id, for `types`, with weight 1 and one request at a time.
    pub fn implicit(types: &[String]) -> Registration {
        Registration { worker_id: None, types: types.to_vec(), weight: 1.0, concurrency: 1 }
    }
}

fn one() -> f64 {
    1.0
}

fn one_slot() -> usize {
    1
}

/// Whether `text` is a `register` frame (well formed or not).
pub fn is_register(text: &str) -> bool {
    #[derive(Deserialize)]
    struct Kind<'a> {
        #[serde(rename = "type", borrow, default)]
        kind: Option<&'a str>,
    }
    serde_json::from_str::<Kind>(text).is_ok_and(|frame| frame.kind == Some("register"))
}

/// Read a `register` frame.
pub fn registration(text: &str) -> Result<Registration, Failure> {
    let invalid = |why: String| Failure::new(ErrorCode::InvalidMessage, why);
    let frame: Value = serde_json::from_str(text).map_err(|e| Failure::new(ErrorCode::InvalidJson, e.to_string()))?;
    if frame["type"] != "register" {
        return Err(invalid(format!("the first frame must be {{\"type\":\"register\",...}}, not type {}", frame["type"])));
    }
    serde_json::from_value(frame["data"].clone())
        .map_err(|e| invalid(format!("register data must be {{\"worker_id\",\"types\":[...],\"weight\",\"concurrency\"}}: {e}")))
}

/// The answer to a successful registration.
pub fn registered(worker_id: &str) -> String {
    json!({ "type": "registered", "data": { "worker_id": worker_id, "timestamp": envelope::now_rfc3339() } }).to_string()
}

/// The protocol's own ping (sent beside the WebSocket ping).
pub fn ping() -> String {
    json!({ "type": "ping", "timestamp": unix_seconds() }).to_string()
}

/// The answer to a worker's `ping`.
pub fn pong() -> String {
    json!({ "type": "pong", "timestamp": unix_seconds() }).to_string()
}

fn unix_seconds() -> f64 {
    envelope::unix_millis() as f64 / 1000.0
}

/// A request for a worker, correlated by `msg_id`.
pub fn request(msg_id: &str, envelope: &Envelope) -> String {
    json!({
        "type": "request",
        "msg_id": msg_id,
        "timestamp": unix_seconds(),
        "data": { "action": envelope.kind, "params": &*envelope.data },
        "meta": { "request_id": envelope.id },
    })
    .to_string()
}

/// One frame from a registered worker.
#[derive(Debug)]
pub enum WorkerFrame {
    /// The answer to the request with this `msg_id`.
    Response { msg_id: String, frame: Value },
    /// A `response` without a usable `msg_id`.
    Uncorrelated,
    Ping,
    /// `register` after the worker was registered (implicitly, or before):
    /// it registers again, with these types.
    Register(Result<Registration, Failure>),
    /// `heartbeat` or `pong`: a sign of life and nothing else.
    Alive,
    /// Not JSON, or a type the protocol does not have.
    Unknown(String),
}

/// Read one frame from a registered worker.
pub fn worker_frame(text: &str) -> WorkerFrame {
    let frame: Value = match serde_json::from_str(text) {
        Ok(frame) => frame,
        Err(e) => return WorkerFrame::Unknown(format!("invalid JSON: {e}")),
    };
    match frame["type"].as_str() {
        Some("response") => match &frame["msg_id"] {
            Value::String(id) => WorkerFrame::Response { msg_id: id.clone(), frame },
            Value::Number(n) => WorkerFrame::Response { msg_id: n.to_string(), frame },
            _ => WorkerFrame::Uncorrelated,
        },
        Some("ping") => WorkerFrame::Ping,
        Some("register") => WorkerFrame::Register(registration(text)),
        Some("heartbeat" | "pong") => WorkerFrame::Alive,
        other => WorkerFrame::Unknown(format!("type {other:?}")),
    }
}

/// What a worker's `response` says.
#[derive(Debug)]
pub enum Answer {
    /// A result or a failure the worker ran into.
    Answered(Outcome),
    /// The worker refused without running it (`WORKER_BUSY`,
    /// `WORKER_SHUTTING_DOWN`): safe to try another.
    Refused(Failure),
}

/// Read a `response` frame from the worker `worker_id`, in either shape.
pub fn answer(frame: &Value, worker_id: &str) -> Answer {
    let data = &frame["data"];
    let nested = data.get("success").is_some();
    let success = frame["success"].as_bool().or(data["success"].as_bool()).unwrap_or(frame["error"].is_null());
    if success {
        let result = if nested {
            data.get("result").or(data.get("data")).cloned().unwrap_or(Value::Null)
        } else {
            frame.get("result").cloned().unwrap_or_else(|| data.clone())
        };
        let served_by = ServedBy { name: worker_id.to_owned(), version: "worker".into() };
        return match serde_json::value::to_raw_value(&result) {
            Ok(data) => Answer::Answered(Ok(Reply { data, served_by, reply_type: "reply" })),
            Err(e) => Answer::Answered(Err(Failure::new(ErrorCode::Internal, e.to_string()))),
        };
    }
    let error = if nested { &data["error"] } else { &frame["error"] };
    let message = error.as_str().or(error["message"].as_str()).unwrap_or("the worker failed").to_owned();
    let code = frame["code"].as_str().or(data["code"].as_str()).or(error["code"].as_str());
    let failure = match code {
        Some(code) => Failure::from_plugin(code.to_owned(), message),
        None => Failure::new(ErrorCode::WorkerFailed, message),
    };
    if failure.is(ErrorCode::WorkerBusy) || failure.is(ErrorCode::WorkerShuttingDown) {
        Answer::Refused(failure)
    } else {
        Answer::Answered(Err(failure))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answered(frame: Value) -> Outcome {
        match answer(&frame, "w1") {
            Answer::Answered(outcome) => outcome,
            Answer::Refused(failure) => panic!("refused: {failure}"),
        }
    }

    #[test]
    fn both_response_shapes_are_read() {
        let sdk = answered(json!({"type": "response", "msg_id": "m", "data": {"success": true, "result": {"t": 1}}})).unwrap();
        assert_eq!(sdk.data.get(), r#"{"t":1}"#);
        let legacy = answered(json!({"type": "response", "msg_id": "m", "success": true, "data": [1, 2]})).unwrap();
        assert_eq!(legacy.data.get(), "[1,2]");
        let failed = answered(json!({"type": "response", "success": false, "error": "disk full", "code": "DISK_FULL"})).unwrap_err();
        assert_eq!((failed.code.as_ref(), failed.message.as_str()), ("DISK_FULL", "disk full"));
        let uncoded = answered(json!({"type": "response", "data": {"success": false, "error": {"message": "no"}}})).unwrap_err();
        assert!(uncoded.is(ErrorCode::WorkerFailed));
        assert!(matches!(answer(&json!({"success": false, "code": "WORKER_BUSY"}), "w"), Answer::Refused(_)));
    }

    #[test]
    fn frames_are_told_apart() {
        assert!(matches!(worker_frame(r#"{"type":"response","msg_id":7}"#), WorkerFrame::Response { msg_id, .. } if msg_id == "7"));
        assert!(matches!(worker_frame(r#"{"type":"response"}"#), WorkerFrame::Uncorrelated));
        assert!(matches!(worker_frame(r#"{"type":"ping"}"#), WorkerFrame::Ping));
        assert!(matches!(worker_frame(r#"{"type":"heartbeat","data":{}}"#), WorkerFrame::Alive));
        assert!(matches!(worker_frame("nope"), WorkerFrame::Unknown(_)));
        assert!(matches!(worker_frame(r#"{"type":"register","data":{"types":["x"]}}"#), WorkerFrame::Register(Ok(_))));
        assert!(is_register(r#"{"type":"register","data":7}"#));
        assert!(!is_register(r#"{"type":"heartbeat"}"#) && !is_register("[1]") && !is_register("nope"));
        assert!(registration(r#"{"type":"hello"}"#).unwrap_err().is(ErrorCode::InvalidMessage));
        assert!(registration("{").unwrap_err().is(ErrorCode::InvalidJson));
        let registration = registration(r#"{"type":"register","data":{"types":["get_time"]}}"#).unwrap();
        assert_eq!((registration.weight, registration.concurrency), (1.0, 1));
    }
}
