//! The worker side of a WebSocket: a remote worker registers, then answers
//! the requests the [`WorkerPool`](crate::workers::WorkerPool) sends it.
//!
//! The first frame must be `register` (within the handshake timeout);
//! the host answers `registered` with the worker id it is known by. After
//! that the worker sends `response`, `heartbeat`, `pong` (and may `ping`);
//! every frame counts as a sign of life. The host pings every heartbeat
//! interval, both as a WebSocket ping and as the protocol's `{"type":"ping"}`.
//! A worker may only register types its key's scope allows. The socket
//! closes as every host WebSocket does ([`closing`]); a refused
//! registration closes with 1008.

use super::closing::{self, Closing};
use super::Gateway;
use crate::admission::security::Principal;
use crate::wire::close::{self, GOING_AWAY, NORMAL, POLICY};
use crate::wire::worker::{self as protocol, Registration, WorkerFrame};
use crate::wire::{frames, ErrorCode, Failure};
use crate::workers::Worker;
use axum::extract::ws::{Message, WebSocket};
use futures_util::{SinkExt, StreamExt};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::mpsc;

/// Requests queued for one worker beyond those it is running.
const OUTBOX: usize = 1024;

pub async fn serve(gateway: Arc<Gateway>, mut socket: WebSocket, remote: SocketAddr, principal: Arc<Principal>) {
    let pool = Arc::clone(&gateway.workers);
    let registration = match first_frame(&gateway, &mut socket).await {
        Ok(Ok(registration)) => registration,
        Ok(Err(failure)) => return refuse(socket, &failure).await,
        Err(ending) => return closing::finish(socket, &ending).await,
    };
    if let Some(denied) = registration.types.iter().find_map(|t| principal.may_send(t).err()) {
        return refuse(socket, &denied).await;
    }
    let (outbox_tx, mut outbox) = mpsc::channel::<String>(OUTBOX);
    let worker = match pool.register(registration, Some(remote.to_string()), outbox_tx) {
        Ok(worker) => worker,
        Err(failure) => return refuse(socket, &failure).await,
    };
    if socket.send(Message::Text(protocol::registered(&worker.id).into())).await.is_err() {
        pool.unregister(&worker);
        return;
    }

    let mut heartbeat = tokio::time::interval_at(tokio::time::Instant::now() + gateway.ws.heartbeat, gateway.ws.heartbeat);
    let (mut sink, mut stream) = socket.split();
    let write_failed = || Closing::Gone("write failed".into());
    let ending = loop {
        tokio::select! {
            _ = gateway.tasks.shutdown_signal().cancelled() => break Closing::close(GOING_AWAY, "server shutting down"),
            _ = worker.gone.cancelled() => break Closing::close(close::IDLE_TIMEOUT, "out of rotation: missed heartbeats or replaced"),
            frame = outbox.recv() => match frame {
                Some(frame) => if sink.send(Message::Text(frame.into())).await.is_err() { break write_failed() },
                None => break Closing::close(NORMAL, ""),
            },
            _ = heartbeat.tick() => {
                pool.sweep();
                if sink.send(Message::Ping(Default::default())).await.is_err() || sink.send(Message::Text(protocol::ping().into())).await.is_err() {
                    break write_failed();
                }
            },
            read = stream.next() => match closing::next_message(read) {
                Ok(Message::Text(text)) => {
                    worker.seen();
                    if let Some(reply) = on_frame(&worker, text.as_str()) {
                        if sink.send(Message::Text(reply.into())).await.is_err() { break write_failed() }
                    }
                }
                Ok(_) => worker.seen(),
                Err(ending) => break ending,
            },
        }
    };
    pool.unregister(&worker);
    if let Ok(socket) = stream.reunite(sink) {
        closing::finish(socket, &ending).await;
    }
    tracing::debug!(worker = %worker.id, code = ending.code(), reason = ending.reason(), "worker connection closed");
}

/// The `register` frame, within the handshake timeout (pings and pongs
/// before it are fine): the registration or why it is refused, or how the
/// socket ended first.
async fn first_frame(gateway: &Gateway, socket: &mut WebSocket) -> Result<Result<Registration, Failure>, Closing> {
    let invalid = |why: &str| Failure::new(ErrorCode::InvalidMessage, why);
    let deadline = tokio::time::Instant::now() + gateway.handshake_timeout;
    loop {
        let Ok(read) = tokio::time::timeout_at(deadline, socket.recv()).await else {
            return Ok(Err(invalid("no register frame within the handshake timeout")));
        };
        match closing::next_message(read)? {
            Message::Text(text) => return Ok(protocol::registration(text.as_str())),
            Message::Ping(_) | Message::Pong(_) => continue,
            _ => return Ok(Err(invalid("expected a register frame"))),
        }
    }
}

/// Handle one frame from a registered worker; an answer to send back, if any.
fn on_frame(worker: &Worker, text: &str) -> Option<String> {
    match protocol::worker_frame(text) {
        WorkerFrame::Response { msg_id, frame } => worker.answer(&msg_id, frame),
        WorkerFrame::Uncorrelated => tracing::warn!(worker = %worker.id, "response without msg_id"),
        WorkerFrame::Ping => return Some(protocol::pong()),
        WorkerFrame::Alive => {}
        WorkerFrame::Unknown(what) => tracing::debug!(worker = %worker.id, "ignoring a frame the worker protocol does not have: {what}"),
    }
    None
}

async fn refuse(mut socket: WebSocket, failure: &Failure) {
    tracing::warn!("worker registration refused: {failure}");
    let _ = socket.send(Message::Text(frames::error_body(failure).into())).await;
    closing::finish(socket, &Closing::close(POLICY, "registration refused")).await;
}
