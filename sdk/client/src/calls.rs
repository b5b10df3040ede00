//! Calls from the host: requests the host sends this client (from a
//! plugin's `clients.call`, `POST /api/connections/{id}/call` or the
//! console's `call`), answered by handlers registered per action with
//! [`Client::answer`](crate::Client::answer).
//!
//! A call arrives as the canonical envelope `{"id":"call-…","type":action,
//! "data":params}`; the handler's `Ok` goes back as
//! `{"type":"reply","id","data"}`, its [`Failure`] as
//! `{"type":"error","id","data":{"code","message"}}`. A call for an action
//! with no handler (and no [`Client::on`](crate::Client::on) handler for
//! its type) is answered `UNKNOWN_ACTION`, so the host never waits in vain.
//!
//! Three example handlers: [`get_time`], [`get_system_info`], and
//! [`execute_command`], which refuses (`COMMAND_REFUSED`) unless built
//! with [`execute_command_allowing`] a list of programs.
//!
//! ```no_run
//! # async fn demo() -> Result<(), switchyard_client::ClientError> {
//! use switchyard_client::{calls, Client};
//!
//! let client = Client::connect("ws://127.0.0.1:8080/ws").await?;
//! client.answer("get_time", calls::get_time);
//! client.answer("get_system_info", calls::get_system_info);
//! client.answer("execute_command", calls::execute_command);
//! client.answer("add", |params| async move {
//!     let sum = params["a"].as_f64().unwrap_or(0.0) + params["b"].as_f64().unwrap_or(0.0);
//!     Ok(serde_json::json!({ "sum": sum }))
//! });
//! # Ok(()) }
//! ```

use crate::worker::Failure;
use serde_json::{json, Map, Value};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// Every call id the host makes starts with this.
pub const CALL_ID_PREFIX: &str = "call-";

type Answer = Pin<Box<dyn Future<Output = Result<Value, Failure>> + Send>>;

/// A registered handler: `params` in, the answer's data out.
pub(crate) type CallHandler = Arc<dyn Fn(Value) -> Answer + Send + Sync>;

pub(crate) fn handler<F, Fut>(f: F) -> CallHandler
where
    F: Fn(Value) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Value, Failure>> + Send + 'static,
{
    Arc::new(move |params| Box::pin(f(params)))
}

/// The frame answering call `id`.
pub(crate) fn answer_frame(id: &str, outcome: Result<Value, Failure>) -> String {
    match outcome {
        Ok(data) => json!({ "type": "reply", "id": id, "data": data }),
        Err(failure) => json!({ "type": "error", "id": id, "data": { "code": failure.code, "message": failure.message } }),
    }
    .to_string()
}

/// A call from the host: its id, action and params, if `frame` is one.
pub(crate) fn incoming(frame: &Value) -> Option<(&str, &str, Value)> {
    let id = frame.get("id")?.as_str().filter(|id| id.starts_with(CALL_ID_PREFIX))?;
    let action = frame.get("type")?.as_str().filter(|kind| !matches!(*kind, "reply" | "error" | "pong"))?;
    Some((id, action, frame.get("data").cloned().unwrap_or(Value::Null)))
}

/// `get_time`: the client's clock, `{"unix_ms", "timestamp"}` (seconds).
pub async fn get_time(_params: Value) -> Result<Value, Failure> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_err(|e| Failure::new("CLOCK_ERROR", e.to_string()))?;
    Ok(json!({ "unix_ms": now.as_millis() as u64, "timestamp": now.as_secs_f64() }))
}

/// `get_system_info`: what the client runs on, `{"os", "arch", "family",
/// "cpus", "pid", "hostname"}`.
pub async fn get_system_info(_params: Value) -> Result<Value, Failure> {
    let hostname = std::env::var("HOSTNAME").ok().or_else(|| std::fs::read_to_string("/etc/hostname").ok().map(|h| h.trim().to_owned()));
    Ok(json!({
        "os": std::env::consts::OS,
        "arch": std::env::consts::ARCH,
        "family": std::env::consts::FAMILY,
        "cpus": std::thread::available_parallelism().map_or(1, |n| n.get()),
        "pid": std::process::id(),
        "hostname": hostname,
    }))
}

/// `execute_command`, refusing: running what a server asks is a decision
/// for whoever deploys the client. Fails with `COMMAND_REFUSED`.
pub async fn execute_command(params: Value) -> Result<Value, Failure> {
    let command = params.get("command").and_then(Value::as_str).unwrap_or("?");
    Err(Failure::new(
        "COMMAND_REFUSED",
        format!("this client does not run commands ({command:?}); register calls::execute_command_allowing(...) to allow some"),
    ))
}

/// An `execute_command` handler that runs only the named programs:
/// `{"command": program, "args": [..]}`, without a shell, answered
/// `{"exit_code", "stdout", "stderr"}`. Anything else is `COMMAND_REFUSED`.
pub fn execute_command_allowing<I, S>(programs: I) -> impl Fn(Value) -> Answer + Send + Sync + 'static
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    let allowed: Arc<Vec<String>> = Arc::new(programs.into_iter().map(Into::into).collect());
    move |params: Value| {
        let allowed = Arc::clone(&allowed);
        Box::pin(async move {
            let command = params.get("command").and_then(Value::as_str).unwrap_or_default().to_owned();
            if !allowed.contains(&command) {
                return Err(Failure::new("COMMAND_REFUSED", format!("{command:?} is not among the programs this client runs")));
            }
            let args: Vec<String> = match params.get("args") {
                None | Some(Value::Null) => Vec::new(),
                Some(args) => serde_json::from_value(args.clone()).map_err(|e| Failure::invalid_data(format!("args: {e}")))?,
            };
            let output = tokio::process::Command::new(&command)
                .args(&args)
                .kill_on_drop(true)
                .output()
                .await
                .map_err(|e| Failure::new("COMMAND_FAILED", format!("cannot run {command:?}: {e}")))?;
            let mut answer = Map::new();
            answer.insert("exit_code".into(), json!(output.status.code()));
            answer.insert("stdout".into(), json!(String::from_utf8_lossy(&output.stdout)));
            answer.insert("stderr".into(), json!(String::from_utf8_lossy(&output.stderr)));
            Ok(Value::Object(answer))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_are_told_from_replies_and_answered_in_the_canonical_form() {
        let call = json!({"id": "call-1", "type": "get_time", "data": {"x": 1}});
        assert_eq!(incoming(&call), Some(("call-1", "get_time", json!({"x": 1}))));
        assert_eq!(incoming(&json!({"id": "abc-1", "type": "get_time"})), None, "not a host call id");
        assert_eq!(incoming(&json!({"id": "call-1", "type": "reply"})), None);
        let ok: Value = serde_json::from_str(&answer_frame("call-1", Ok(json!(2)))).unwrap();
        assert_eq!(ok, json!({"type": "reply", "id": "call-1", "data": 2}));
        let err: Value = serde_json::from_str(&answer_frame("call-1", Err(Failure::new("NO", "why")))).unwrap();
        assert_eq!(err, json!({"type": "error", "id": "call-1", "data": {"code": "NO", "message": "why"}}));
    }

    #[tokio::test]
    async fn the_examples_answer_and_execute_refuses_by_default() {
        assert!(get_time(Value::Null).await.unwrap()["unix_ms"].as_u64().unwrap() > 0);
        assert_eq!(get_system_info(Value::Null).await.unwrap()["os"], std::env::consts::OS);
        assert_eq!(execute_command(json!({"command": "rm"})).await.unwrap_err().code, "COMMAND_REFUSED");
        let allowing = execute_command_allowing(["echo"]);
        let ran = allowing(json!({"command": "echo", "args": ["hi"]})).await.unwrap();
        assert_eq!((ran["exit_code"].as_i64(), ran["stdout"].as_str()), (Some(0), Some("hi\n")));
        assert_eq!(allowing(json!({"command": "sh"})).await.unwrap_err().code, "COMMAND_REFUSED");
    }
}
