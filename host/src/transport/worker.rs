//! The worker side of a WebSocket: a remote worker registers, then answers
//! the requests the [`WorkerPool`](crate::workers::WorkerPool) sends it.
//!
//! The first frame must be `register` (within the handshake timeout);
//! the host answers `registered` with the worker id it is known by. After
//! that the worker sends `response`, `heartbeat`, `pong` (and may `ping`);
//! every frame counts as a sign of life. The host pings every heartbeat
//! interval, both as a WebSocket ping and as the protocol's `{"type":"ping"}`.
//! A worker may only register types its key's scope allows.

use super::Gateway;
use crate::envelope::{self, ErrorCode, Failure};
use crate::security::Principal;
use crate::workers::{Registration, Worker};
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::mpsc;

/// Requests queued for one worker beyond those it is running.
const OUTBOX: usize = 1024;

/// Close codes: 1000 normal, 1001 shutting down, 1008 bad registration,
/// 4000 missed heartbeats or replaced by a rejoin under the same id.
const POLICY: u16 = 1008;

pub async fn serve(gateway: Arc<Gateway>, mut socket: WebSocket, remote: SocketAddr, principal: Arc<Principal>) {
    let pool = Arc::clone(&gateway.workers);
    let registration = match first_frame(&gateway, &mut socket).await {
        Ok(registration) => registration,
        Err(failure) => return refuse(socket, &failure).await,
    };
    if let Some(denied) = registration.types.iter().find_map(|t| principal.may_send(t).err()) {
        return refuse(socket, &denied).await;
    }
    let (outbox_tx, mut outbox) = mpsc::channel::<String>(OUTBOX);
    let worker = match pool.register(registration, Some(remote.to_string()), outbox_tx) {
        Ok(worker) => worker,
        Err(failure) => return refuse(socket, &failure).await,
    };
    let registered = json!({ "type": "registered", "data": { "worker_id": worker.id, "timestamp": envelope::now_rfc3339() } });
    if socket.send(Message::Text(registered.to_string().into())).await.is_err() {
        pool.unregister(&worker);
        return;
    }

    let mut heartbeat = tokio::time::interval_at(tokio::time::Instant::now() + gateway.ws.heartbeat, gateway.ws.heartbeat);
    let (mut sink, mut stream) = socket.split();
    let (code, reason) = loop {
        tokio::select! {
            _ = gateway.shutdown.cancelled() => break (1001, "server shutting down"),
            _ = worker.gone.cancelled() => break (crate::hub::close::IDLE_TIMEOUT, "out of rotation: missed heartbeats or replaced"),
            frame = outbox.recv() => match frame {
                Some(frame) => if sink.send(Message::Text(frame.into())).await.is_err() { break (1000, "") },
                None => break (1000, ""),
            },
            _ = heartbeat.tick() => {
                pool.sweep();
                let ping = json!({ "type": "ping", "timestamp": envelope::unix_millis() as f64 / 1000.0 }).to_string();
                if sink.send(Message::Ping(Default::default())).await.is_err() || sink.send(Message::Text(ping.into())).await.is_err() {
                    break (1000, "");
                }
            },
            message = stream.next() => match message {
                Some(Ok(Message::Text(text))) => {
                    worker.seen();
                    if let Some(reply) = on_frame(&worker, text.as_str()) {
                        if sink.send(Message::Text(reply.into())).await.is_err() { break (1000, "") }
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break (1000, ""),
                Some(Ok(_)) => worker.seen(),
            },
        }
    };
    pool.unregister(&worker);
    let _ = sink.send(Message::Close(Some(CloseFrame { code, reason: Utf8Bytes::from(reason) }))).await;
    tracing::debug!(worker = %worker.id, code, reason, "worker connection closed");
}

/// The `register` frame, within the handshake timeout.
async fn first_frame(gateway: &Gateway, socket: &mut WebSocket) -> Result<Registration, Failure> {
    let invalid = |why: String| Failure::new(ErrorCode::InvalidMessage, why);
    let first = tokio::time::timeout(gateway.handshake_timeout, socket.recv()).await;
    let text = match first {
        Ok(Some(Ok(Message::Text(text)))) => text,
        Ok(_) => return Err(invalid("expected a register frame".into())),
        Err(_) => return Err(invalid("no register frame within the handshake timeout".into())),
    };
    let frame: Value = serde_json::from_str(text.as_str()).map_err(|e| Failure::new(ErrorCode::InvalidJson, e.to_string()))?;
    if frame["type"] != "register" {
        return Err(invalid(format!("the first frame must be {{\"type\":\"register\",...}}, not type {}", frame["type"])));
    }
    serde_json::from_value(frame["data"].clone())
        .map_err(|e| invalid(format!("register data must be {{\"worker_id\",\"types\":[...],\"weight\",\"concurrency\"}}: {e}")))
}

/// Handle one frame from a registered worker; an answer to send back, if any.
fn on_frame(worker: &Worker, text: &str) -> Option<String> {
    let frame: Value = match serde_json::from_str(text) {
        Ok(frame) => frame,
        Err(e) => {
            tracing::warn!(worker = %worker.id, "worker sent invalid JSON: {e}");
            return None;
        }
    };
    match frame["type"].as_str() {
        Some("response") => {
            let msg_id = match &frame["msg_id"] {
                Value::String(id) => id.clone(),
                Value::Number(n) => n.to_string(),
                _ => {
                    tracing::warn!(worker = %worker.id, "response without msg_id");
                    return None;
                }
            };
            worker.answer(&msg_id, frame);
            None
        }
        Some("ping") => Some(json!({ "type": "pong", "timestamp": envelope::unix_millis() as f64 / 1000.0 }).to_string()),
        Some("heartbeat" | "pong") => None,
        other => {
            tracing::debug!(worker = %worker.id, r#type = ?other, "ignoring a frame the worker protocol does not have");
            None
        }
    }
}

async fn refuse(mut socket: WebSocket, failure: &Failure) {
    tracing::warn!("worker registration refused: {failure}");
    let error = json!({ "type": "error", "data": { "code": failure.code, "message": failure.message } });
    let _ = socket.send(Message::Text(error.to_string().into())).await;
    let _ = socket.send(Message::Close(Some(CloseFrame { code: POLICY, reason: Utf8Bytes::from_static("registration refused") }))).await;
}
