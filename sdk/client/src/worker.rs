//! Worker mode: a process that serves request types for the host's
//! remote-worker pool, speaking the protocol of the system Switchyard
//! replaces, verbatim.
//!
//! # The protocol (the host side must match it)
//!
//! All frames are JSON text frames; `timestamp` is Unix time in seconds
//! (a float) and is not interpreted.
//!
//! 1. After every (re)connect the worker registers:
//!    `{"type":"register","data":{"worker_id":"w1","types":["get_time"],"weight":1.0,"concurrency":4}}`
//!    (`types` sorted). The host may answer anything or nothing: the worker
//!    logs frames it does not know and carries on.
//! 2. The host sends requests:
//!    `{"type":"request","msg_id":"m1","timestamp":1714000000.1,"data":{"action":"get_time","params":{}}}`
//!    (`msg_id` a string or a number; `params` may be absent: the handler
//!    gets `null`).
//! 3. The worker answers each request exactly once, on the connection it
//!    came in on, with the same `msg_id`:
//!    `{"type":"response","msg_id":"m1","timestamp":…,"data":{"success":true,"result":{…}}}` or
//!    `{"type":"response","msg_id":"m1","timestamp":…,"data":{"success":false,"error":"message","code":"CODE"}}`.
//!    Answers may come in any order. Codes are the handler's own
//!    (`INVALID_DATA` when its `params` do not deserialize) or the worker's:
//!    `UNKNOWN_TYPE` (no handler for the action), `WORKER_BUSY` (already
//!    `concurrency` requests in flight: the host should not send more and
//!    may retry elsewhere), `WORKER_FAILED` (the handler panicked),
//!    `WORKER_SHUTTING_DOWN` (the worker is draining), `INVALID_MESSAGE` (a
//!    `request` without `msg_id` or `data.action`; `msg_id` is then `null`
//!    if there was none).
//! 4. The host's `{"type":"ping"}` is answered `{"type":"pong"}`.
//! 5. Every heartbeat interval the worker sends
//!    `{"type":"heartbeat","data":{"in_flight":2}}` and a WebSocket ping.
//!    If nothing at all arrives for the receive timeout, the worker drops
//!    the connection and reconnects (with the client's backoff).
//! 6. A request whose connection drops before the answer is lost: the
//!    handler runs to completion but its answer is discarded (the host
//!    fails or retries it). On shutdown the worker answers new requests
//!    with `WORKER_SHUTTING_DOWN`, waits up to the grace period for those
//!    in flight, then closes with 1000.
//!
//! This module owns the worker's connection and its handler tasks; it
//! shares only the backoff and socket plumbing with [`crate::Client`].

use crate::backoff::ReconnectPolicy;
use crate::error::ClientError;
use crate::transport::{self, Socket};
use futures_util::future::BoxFuture;
use futures_util::{FutureExt, StreamExt};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_tungstenite::tungstenite::Message;

/// A handler's failure: reaches the host as `"success":false` with this
/// code and message.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct Failure {
    pub code: String,
    pub message: String,
}

impl Failure {
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Failure { code: code.into(), message: message.into() }
    }

    /// `INVALID_DATA`: the request's `params` have the wrong shape.
    pub fn invalid_data(message: impl Into<String>) -> Self {
        Failure::new("INVALID_DATA", message)
    }
}

impl From<serde_json::Error> for Failure {
    fn from(error: serde_json::Error) -> Self {
        Failure::invalid_data(error.to_string())
    }
}

/// Settings for a [`Worker`]; the defaults match the client's.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerConfig {
    pub reconnect: ReconnectPolicy,
    pub connect_timeout: Duration,
    /// How often to send the `heartbeat` frame and a WebSocket ping.
    pub heartbeat_interval: Duration,
    /// Silence after which the connection counts as dead.
    pub receive_timeout: Duration,
    /// How long shutdown waits for requests in flight.
    pub shutdown_grace: Duration,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            reconnect: ReconnectPolicy::default(),
            connect_timeout: Duration::from_secs(10),
            heartbeat_interval: Duration::from_secs(15),
            receive_timeout: Duration::from_secs(45),
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

type ActionHandler = Arc<dyn Fn(Value) -> BoxFuture<'static, Result<Value, Failure>> + Send + Sync>;

/// A worker being set up: name it, give it handlers, then
/// [`Worker::spawn`] or [`Worker::run`] it. Nothing connects before that.
///
/// ```no_run
/// use switchyard_client::{json, Worker};
///
/// # async fn demo() -> Result<(), switchyard_client::ClientError> {
/// let worker = Worker::connect("ws://127.0.0.1:8080/workers")
///     .concurrency(4)
///     .handle("get_time", |_params| async { Ok(json!({"unix_ms": 0})) })
///     .spawn()?;
/// // ...
/// worker.shutdown().await
/// # }
/// ```
pub struct Worker {
    url: String,
    config: WorkerConfig,
    worker_id: String,
    weight: f64,
    concurrency: usize,
    handlers: HashMap<String, ActionHandler>,
}

impl Worker {
    /// A worker for the host at `url`, with a random id, weight 1.0 and
    /// concurrency 1. The connection is made by `run` or `spawn`.
    pub fn connect(url: impl Into<String>) -> Worker {
        Worker {
            url: url.into(),
            config: WorkerConfig::default(),
            worker_id: format!("worker-{:08x}", rand::random::<u32>()),
            weight: 1.0,
            concurrency: 1,
            handlers: HashMap::new(),
        }
    }

    pub fn worker_id(mut self, id: impl Into<String>) -> Self {
        self.worker_id = id.into();
        self
    }

    /// The share of traffic the host should give this worker.
    pub fn weight(mut self, weight: f64) -> Self {
        self.weight = weight;
        self
    }

    /// Requests handled at once (at least 1); more get `WORKER_BUSY`.
    pub fn concurrency(mut self, limit: usize) -> Self {
        self.concurrency = limit.max(1);
        self
    }

    pub fn config(mut self, config: WorkerConfig) -> Self {
        self.config = config;
        self
    }

    /// Serve `action`: the handler gets the request's `params` and returns
    /// the `result` or a [`Failure`].
    pub fn handle<F, Fut>(mut self, action: impl Into<String>, handler: F) -> Self
    where
        F: Fn(Value) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Value, Failure>> + Send + 'static,
    {
        let handler: ActionHandler = Arc::new(move |params| handler(params).boxed());
        self.handlers.insert(action.into(), handler);
        self
    }

    pub fn id(&self) -> &str {
        &self.worker_id
    }

    /// The types it registers for, sorted.
    pub fn types(&self) -> Vec<String> {
        let mut types: Vec<String> = self.handlers.keys().cloned().collect();
        types.sort();
        types
    }

    /// Serve until reconnection attempts run out
    /// ([`ClientError::Disconnected`]); fails at once on a bad URL or
    /// without handlers.
    pub async fn run(self) -> Result<(), ClientError> {
        self.run_until(std::future::pending()).await
    }

    /// Serve until `stop` resolves, then shut down gracefully; `Ok` then.
    pub async fn run_until(self, stop: impl Future<Output = ()>) -> Result<(), ClientError> {
        let (signal, shutdown) = watch::channel(false);
        let drive = self.drive(shutdown);
        tokio::pin!(drive, stop);
        tokio::select! {
            ended = &mut drive => return ended,
            () = &mut stop => { signal.send_replace(true); }
        }
        drive.await
    }

    /// Serve in a background task until [`RunningWorker::shutdown`] or until
    /// it is dropped.
    pub fn spawn(self) -> Result<RunningWorker, ClientError> {
        transport::check_url(&self.url)?;
        self.check_handlers()?;
        let worker_id = self.worker_id.clone();
        let (signal, shutdown) = watch::channel(false);
        let task = tokio::spawn(self.drive(shutdown));
        Ok(RunningWorker { worker_id, signal, task: Some(task) })
    }

    fn check_handlers(&self) -> Result<(), ClientError> {
        if self.handlers.is_empty() {
            return Err(ClientError::InvalidInput("a worker needs at least one handler".into()));
        }
        Ok(())
    }

    async fn drive(self, mut shutdown: watch::Receiver<bool>) -> Result<(), ClientError> {
        transport::check_url(&self.url)?;
        self.check_handlers()?;
        let serving = Serving {
            register: protocol::register(&self.worker_id, &self.types(), self.weight, self.concurrency),
            handlers: self.handlers,
            permits: Arc::new(Semaphore::new(self.concurrency)),
            concurrency: self.concurrency,
            config: self.config,
        };
        let (done_tx, mut done_rx) = mpsc::channel::<Answered>(serving.concurrency * 2);
        let mut tasks = JoinSet::new();
        let mut backoff = serving.config.reconnect.backoff();
        let mut last_error: String;
        let mut epoch = 0u64;
        let ended = loop {
            tokio::select! {
                opened = transport::open(&self.url, serving.config.connect_timeout) => match opened {
                    Ok(mut socket) => {
                        epoch += 1;
                        backoff.reset();
                        let mut connection = Connection { serving: &serving, epoch, done_tx: &done_tx, tasks: &mut tasks };
                        match connection.serve(&mut socket, &mut done_rx, &mut shutdown).await {
                            ConnectionEnd::Shutdown => break Ok(()),
                            ConnectionEnd::Lost(reason) => {
                                tracing::info!(worker = %self.worker_id, %reason, "worker connection lost");
                                last_error = reason;
                            }
                        }
                    }
                    Err(e) => last_error = e,
                },
                () = transport::shutdown_requested(&mut shutdown) => break Ok(()),
            }
            let Some(delay) = backoff.next_delay() else {
                break Err(ClientError::Disconnected { attempts: backoff.attempts(), last_error });
            };
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = transport::shutdown_requested(&mut shutdown) => break Ok(()),
            }
        };
        // Handlers of a lost connection cannot answer; give them the grace
        // period to finish their side effects, then stop them.
        let _ =
            tokio::time::timeout(serving.config.shutdown_grace, async { while tasks.join_next().await.is_some() {} })
                .await;
        tasks.shutdown().await;
        ended
    }
}

/// A worker serving in the background. Dropping it stops the worker
/// (without waiting); [`RunningWorker::shutdown`] drains it first.
pub struct RunningWorker {
    worker_id: String,
    signal: watch::Sender<bool>,
    task: Option<JoinHandle<Result<(), ClientError>>>,
}

impl RunningWorker {
    pub fn worker_id(&self) -> &str {
        &self.worker_id
    }

    /// Whether the worker has stopped by itself (out of attempts).
    pub fn is_finished(&self) -> bool {
        self.task.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// Stop: answer what is in flight (up to the grace period), close with
    /// 1000; the worker's result (`Err` if it had already given up).
    pub async fn shutdown(mut self) -> Result<(), ClientError> {
        self.signal.send_replace(true);
        match self.task.take() {
            Some(task) => task.await.unwrap_or(Err(ClientError::Closed)),
            None => Ok(()),
        }
    }
}

impl Drop for RunningWorker {
    fn drop(&mut self) {
        self.signal.send_replace(true);
    }
}

struct Serving {
    register: String,
    handlers: HashMap<String, ActionHandler>,
    permits: Arc<Semaphore>,
    concurrency: usize,
    config: WorkerConfig,
}

impl Serving {
    fn in_flight(&self) -> usize {
        self.concurrency.saturating_sub(self.permits.available_permits())
    }
}

/// A handler's answer, for the connection it came in on.
struct Answered {
    epoch: u64,
    frame: String,
}

enum ConnectionEnd {
    Shutdown,
    Lost(String),
}

struct Connection<'a> {
    serving: &'a Serving,
    epoch: u64,
    done_tx: &'a mpsc::Sender<Answered>,
    tasks: &'a mut JoinSet<()>,
}

impl Connection<'_> {
    async fn serve(
        &mut self,
        socket: &mut Socket,
        done_rx: &mut mpsc::Receiver<Answered>,
        shutdown: &mut watch::Receiver<bool>,
    ) -> ConnectionEnd {
        let config = &self.serving.config;
        let limit = config.receive_timeout;
        // Answers of an earlier connection have nowhere to go.
        while done_rx.try_recv().is_ok() {}
        if let Err(e) = transport::write(socket, Message::text(self.serving.register.clone()), limit).await {
            return ConnectionEnd::Lost(e);
        }
        let every = config.heartbeat_interval.max(Duration::from_millis(1));
        let mut heartbeat = tokio::time::interval_at(Instant::now() + every, every);
        heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let silence = tokio::time::sleep(config.receive_timeout);
        let grace = tokio::time::sleep(Duration::MAX / 4);
        tokio::pin!(silence, grace);
        let mut draining = false;
        loop {
            tokio::select! {
                () = transport::shutdown_requested(shutdown), if !draining => {
                    draining = true;
                    grace.as_mut().reset(Instant::now() + config.shutdown_grace);
                    if self.tasks.is_empty() {
                        // Tasks that ended before the shutdown was seen may
                        // have answers still queued: they go out first.
                        self.write_finished(socket, done_rx).await;
                        transport::close_normally(socket, "worker shutting down").await;
                        return ConnectionEnd::Shutdown;
                    }
                }
                incoming = socket.next() => {
                    silence.as_mut().reset(Instant::now() + config.receive_timeout);
                    let reply = match incoming {
                        Some(Ok(Message::Text(text))) => self.receive(&text, draining),
                        Some(Ok(Message::Close(frame))) => {
                            transport::flush(socket).await;
                            return ConnectionEnd::Lost(transport::describe_close(frame.as_ref()));
                        }
                        Some(Ok(_)) => None,
                        Some(Err(e)) => return ConnectionEnd::Lost(e.to_string()),
                        None => return ConnectionEnd::Lost("the connection closed".into()),
                    };
                    if let Some(reply) = reply {
                        if let Err(e) = transport::write(socket, Message::text(reply), limit).await {
                            return ConnectionEnd::Lost(e);
                        }
                    }
                }
                Some(answered) = done_rx.recv() => {
                    if answered.epoch == self.epoch {
                        if let Err(e) = transport::write(socket, Message::text(answered.frame), limit).await {
                            return ConnectionEnd::Lost(e);
                        }
                    }
                }
                Some(_) = self.tasks.join_next(), if !self.tasks.is_empty() => {
                    if draining && self.tasks.is_empty() {
                        self.write_finished(socket, done_rx).await;
                        transport::close_normally(socket, "worker shutting down").await;
                        return ConnectionEnd::Shutdown;
                    }
                }
                _ = heartbeat.tick() => {
                    let beat = protocol::heartbeat(self.serving.in_flight());
                    for message in [Message::text(beat), Message::Ping(Default::default())] {
                        if let Err(e) = transport::write(socket, message, limit).await {
                            return ConnectionEnd::Lost(e);
                        }
                    }
                }
                () = &mut silence => {
                    return ConnectionEnd::Lost(format!("nothing received for {:?}", config.receive_timeout));
                }
                () = &mut grace, if draining => {
                    tracing::warn!(in_flight = self.serving.in_flight(), "shutdown grace period over; abandoning requests in flight");
                    self.write_finished(socket, done_rx).await;
                    transport::close_normally(socket, "worker shutting down").await;
                    return ConnectionEnd::Shutdown;
                }
            }
        }
    }

    /// Write the answers of the tasks that have ended and not been written
    /// yet (each task sends its answer before it ends), before a close.
    async fn write_finished(&self, socket: &mut Socket, done_rx: &mut mpsc::Receiver<Answered>) {
        while let Ok(answered) = done_rx.try_recv() {
            if answered.epoch == self.epoch {
                let _ = transport::write(socket, Message::text(answered.frame), self.serving.config.receive_timeout).await;
            }
        }
    }

    /// Act on one frame from the host; the frame to answer at once, if any.
    fn receive(&mut self, text: &str, draining: bool) -> Option<String> {
        let frame: Value = match serde_json::from_str(text) {
            Ok(frame) => frame,
            Err(e) => {
                tracing::warn!(error = %e, "worker: dropping a frame that is not JSON");
                return None;
            }
        };
        match protocol::parse(&frame) {
            protocol::HostFrame::Ping => Some(protocol::pong()),
            protocol::HostFrame::Invalid { msg_id, reason } => {
                Some(protocol::failure(&msg_id, &Failure::new("INVALID_MESSAGE", reason)))
            }
            protocol::HostFrame::Other(kind) => {
                tracing::debug!(%kind, "worker: ignoring a frame it does not know");
                None
            }
            protocol::HostFrame::Request { msg_id, action, params } => {
                if draining {
                    return Some(protocol::failure(
                        &msg_id,
                        &Failure::new("WORKER_SHUTTING_DOWN", "the worker is shutting down"),
                    ));
                }
                let Some(handler) = self.serving.handlers.get(&action) else {
                    let failure = Failure::new("UNKNOWN_TYPE", format!("this worker does not serve {action:?}"));
                    return Some(protocol::failure(&msg_id, &failure));
                };
                let Ok(permit) = Arc::clone(&self.serving.permits).try_acquire_owned() else {
                    let failure = Failure::new(
                        "WORKER_BUSY",
                        format!("the worker already has {} requests in flight", self.serving.concurrency),
                    );
                    return Some(protocol::failure(&msg_id, &failure));
                };
                let handler = Arc::clone(handler);
                let done = self.done_tx.clone();
                let epoch = self.epoch;
                self.tasks.spawn(async move {
                    let outcome = AssertUnwindSafe(async move { handler(params).await }).catch_unwind().await;
                    let frame = match outcome {
                        Ok(Ok(result)) => protocol::success(&msg_id, result),
                        Ok(Err(failure)) => protocol::failure(&msg_id, &failure),
                        Err(_) => {
                            tracing::error!(%action, "worker handler panicked");
                            protocol::failure(
                                &msg_id,
                                &Failure::new("WORKER_FAILED", format!("the {action} handler panicked")),
                            )
                        }
                    };
                    let _ = done.send(Answered { epoch, frame }).await;
                    drop(permit);
                });
                None
            }
        }
    }
}

/// The worker protocol's frames, built and read. Pure.
mod protocol {
    use super::*;

    #[derive(Debug, PartialEq)]
    pub(super) enum HostFrame {
        Request { msg_id: Value, action: String, params: Value },
        Ping,
        Invalid { msg_id: Value, reason: String },
        Other(String),
    }

    pub(super) fn parse(frame: &Value) -> HostFrame {
        match frame.get("type").and_then(Value::as_str) {
            Some("ping") => HostFrame::Ping,
            Some("request") => {
                let msg_id = frame.get("msg_id").cloned().unwrap_or(Value::Null);
                if !(msg_id.is_string() || msg_id.is_number()) {
                    return HostFrame::Invalid { msg_id: Value::Null, reason: "a request needs a msg_id".into() };
                }
                let data = frame.get("data");
                let Some(action) = data.and_then(|d| d.get("action")).and_then(Value::as_str) else {
                    return HostFrame::Invalid { msg_id, reason: "a request needs data.action".into() };
                };
                let params = data.and_then(|d| d.get("params")).cloned().unwrap_or(Value::Null);
                HostFrame::Request { msg_id, action: action.to_owned(), params }
            }
            Some(other) => HostFrame::Other(other.to_owned()),
            None => HostFrame::Other(String::new()),
        }
    }

    pub(super) fn register(worker_id: &str, types: &[String], weight: f64, concurrency: usize) -> String {
        json!({
            "type": "register",
            "data": {"worker_id": worker_id, "types": types, "weight": weight, "concurrency": concurrency},
        })
        .to_string()
    }

    pub(super) fn success(msg_id: &Value, result: Value) -> String {
        json!({
            "type": "response", "msg_id": msg_id, "timestamp": now(),
            "data": {"success": true, "result": result},
        })
        .to_string()
    }

    pub(super) fn failure(msg_id: &Value, failure: &Failure) -> String {
        json!({
            "type": "response", "msg_id": msg_id, "timestamp": now(),
            "data": {"success": false, "error": failure.message, "code": failure.code},
        })
        .to_string()
    }

    pub(super) fn heartbeat(in_flight: usize) -> String {
        json!({"type": "heartbeat", "data": {"in_flight": in_flight}}).to_string()
    }

    pub(super) fn pong() -> String {
        json!({"type": "pong"}).to_string()
    }

    fn now() -> f64 {
        SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        fn parsed(text: &str) -> Value {
            serde_json::from_str(text).unwrap()
        }

        #[test]
        fn frames_are_the_old_protocol_verbatim() {
            assert_eq!(
                parsed(&register("w1", &["a".into(), "b".into()], 1.0, 4)),
                json!({"type": "register", "data": {"worker_id": "w1", "types": ["a", "b"], "weight": 1.0, "concurrency": 4}})
            );
            let ok = parsed(&success(&json!("m1"), json!({"x": 1})));
            assert_eq!(ok["type"], "response");
            assert_eq!(ok["msg_id"], "m1");
            assert!(ok["timestamp"].as_f64().unwrap() > 1.6e9);
            assert_eq!(ok["data"], json!({"success": true, "result": {"x": 1}}));
            let failed = parsed(&failure(&json!(7), &Failure::new("NOPE", "no")));
            assert_eq!(failed["msg_id"], 7);
            assert_eq!(failed["data"], json!({"success": false, "error": "no", "code": "NOPE"}));
            assert_eq!(parsed(&heartbeat(2)), json!({"type": "heartbeat", "data": {"in_flight": 2}}));
            assert_eq!(parsed(&pong()), json!({"type": "pong"}));
        }

        #[test]
        fn host_frames_are_read_strictly() {
            let request = json!({"type": "request", "msg_id": "m1", "timestamp": 1.0, "data": {"action": "get_time", "params": {"tz": "UTC"}}});
            assert_eq!(
                parse(&request),
                HostFrame::Request { msg_id: json!("m1"), action: "get_time".into(), params: json!({"tz": "UTC"}) }
            );
            assert_eq!(
                parse(&json!({"type": "request", "msg_id": 3, "data": {"action": "a"}})),
                HostFrame::Request { msg_id: json!(3), action: "a".into(), params: Value::Null }
            );
            assert!(matches!(
                parse(&json!({"type": "request", "data": {"action": "a"}})),
                HostFrame::Invalid { msg_id: Value::Null, .. }
            ));
            assert!(matches!(parse(&json!({"type": "request", "msg_id": "m"})), HostFrame::Invalid { .. }));
            assert_eq!(parse(&json!({"type": "ping"})), HostFrame::Ping);
            assert_eq!(parse(&json!({"type": "registered"})), HostFrame::Other("registered".into()));
        }
    }
}
