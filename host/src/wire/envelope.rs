//! The one message type every dialect decodes into, and what comes back.
//!
//! An [`Envelope`] is what the router and the plugins see, whatever the
//! client's wire format. A call ends in a [`Reply`] or a [`Failure`] with a
//! stable code; the dialect that decoded the request encodes the answer.
//! Nothing here does I/O.

use super::codes::ErrorCode;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::fmt;

/// A decoded request: routed by `kind`, answered under `id`.
#[derive(Debug, Clone)]
pub struct Envelope {
    /// The request's id as a string, for the plugin and the logs.
    pub id: String,
    /// The message type the router resolves (`get_time`, `video.play`...).
    pub kind: String,
    /// JSON text of `data`; `null` when the client sent none.
    pub data: Box<RawValue>,
    /// JSON text of the `meta` object; `{}` when the client sent none.
    pub meta: Box<RawValue>,
}

/// How a request arrived, as plugins see it.
#[derive(Debug, Clone)]
pub struct Origin {
    pub connection_id: String,
    pub client_id: Option<String>,
    pub transport: Transport,
    /// The endpoint path (`/ws`, `/rooms`...).
    pub endpoint: String,
}

/// One WebSocket frame's bytes on an `opaque` endpoint, the variant its
/// opcode: what the plugin's `frames` export reads and answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    Text(String),
    Binary(Vec<u8>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Ws,
    Http,
    Worker,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Ws => "ws",
            Transport::Http => "http",
            Transport::Worker => "worker",
        }
    }
}

/// A successful answer: the reply's `data`, and who produced it.
#[derive(Debug)]
pub struct Reply {
    pub data: Box<RawValue>,
    pub served_by: ServedBy,
    /// The canonical dialect's reply `type`: `reply`, or `pong` for a ping.
    pub reply_type: &'static str,
}

/// What answered a request: a plugin version or the host itself.
#[derive(Debug, Clone)]
pub struct ServedBy {
    pub name: String,
    pub version: String,
}

impl ServedBy {
    pub fn host() -> Self {
        ServedBy { name: "switchyard".into(), version: env!("CARGO_PKG_VERSION").into() }
    }
}

/// A failed call: a stable machine code and a human message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub code: Cow<'static, str>,
    pub message: String,
    /// For `RATE_LIMIT_EXCEEDED`: how long to wait before trying again.
    pub retry_after_ms: Option<u64>,
}

impl Failure {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Failure { code: Cow::Borrowed(code.as_str()), message: message.into(), retry_after_ms: None }
    }

    /// A failure a plugin (or a worker) returned, its code passed through
    /// as it is.
    pub fn from_plugin(code: String, message: String) -> Self {
        Failure { code: Cow::Owned(code), message, retry_after_ms: None }
    }

    /// `RATE_LIMIT_EXCEEDED`, to retry after `wait`.
    pub fn rate_limited(what: &str, wait: std::time::Duration) -> Self {
        let ms = (wait.as_millis() as u64).max(1);
        Failure {
            retry_after_ms: Some(ms),
            ..Failure::new(ErrorCode::RateLimitExceeded, format!("{what} rate limit exceeded; retry after {ms} ms"))
        }
    }

    pub fn is(&self, code: ErrorCode) -> bool {
        self.code == code.as_str()
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for Failure {}

/// The outcome of one routed call.
pub type Outcome = Result<Reply, Failure>;

/// JSON `null`, as raw text.
pub fn null() -> Box<RawValue> {
    raw("null")
}

/// JSON `{}`, as raw text.
pub fn empty_object() -> Box<RawValue> {
    raw("{}")
}

fn raw(text: &'static str) -> Box<RawValue> {
    // Both callers pass literal, valid JSON.
    RawValue::from_string(text.to_owned()).expect("literal JSON")
}

/// Milliseconds since the Unix epoch.
pub fn unix_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The current time as RFC 3339 UTC with milliseconds.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
}
