//! The worker side of a WebSocket: a remote worker registers, then answers
//! the requests the [`WorkerPool`](crate::workers::WorkerPool) sends it.
//!
//! A worker registers with a first frame `register`; the host answers
//! `registered` with the worker id it is known by. The action server
//! registered its workers on connect, and its workers never send
//! `register`: when `workers.default_types` is set, a connection whose first
//! frame is something else, or that says nothing for
//! `workers.register_timeout_ms`, is registered for those types under a
//! generated id (and told so with `registered`), and that first frame is
//! then handled as any other. Without default types such a worker is
//! refused. A later `register` registers the worker again with its own
//! types. After that the worker sends `response`, `heartbeat`, `pong` (and
//! may `ping`); every frame counts as a sign of life. The host pings every heartbeat
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
use crate::workers::{Worker, WorkerPool};
use axum::extract::ws::{Message, WebSocket};
use futures_util::{SinkExt, StreamExt};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::mpsc;

/// Requests queued for one worker beyond those it is running.
const OUTBOX: usize = 1024;

pub async fn serve(gateway: Arc<Gateway>, mut socket: WebSocket, remote: SocketAddr, principal: Arc<Principal>) {
    let pool = Arc::clone(&gateway.workers);
    let (registration, first) = match first_frame(&gateway, &mut socket).await {
        Ok(Ok(First::Register(registration))) => (registration, None),
        Ok(Ok(First::Implicit(first))) => (Registration::implicit(&pool.default_types), first),
        Ok(Err(failure)) => return refuse(socket, &failure).await,
        Err(ending) => return closing::finish(socket, &ending).await,
    };
    let (outbox_tx, mut outbox) = mpsc::channel::<String>(OUTBOX);
    let mut worker = match join(&pool, &principal, registration, remote, &outbox_tx) {
        Ok(worker) => worker,
        Err(failure) => return refuse(socket, &failure).await,
    };
    if socket.send(Message::Text(protocol::registered(&worker.id).into())).await.is_err() {
        pool.unregister(&worker);
        return;
    }
    // An implicitly registered worker's first frame is handled as any other.
    if let Some(reply) = first.and_then(|text| on_frame(&worker, &text)) {
        if socket.send(Message::Text(reply.into())).await.is_err() {
            pool.unregister(&worker);
            return;
        }
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
                    let reply = match protocol::worker_frame(text.as_str()) {
                        WorkerFrame::Register(registration) => match registration.and_then(|r| join(&pool, &principal, r, remote, &outbox_tx)) {
                            Ok(again) => {
                                // Out of the roster unless `again` took its id;
                                // what it was running fails or is retried.
                                pool.unregister(&worker);
                                worker = again;
                                Some(protocol::registered(&worker.id))
                            }
                            // The worker keeps its current registration.
                            Err(failure) => Some(frames::error_body(&failure)),
                        },
                        frame => on_frame_parsed(&worker, frame),
                    };
                    if let Some(reply) = reply {
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

/// How a worker connection begins.
enum First {
    /// With a `register` frame.
    Register(Registration),
    /// Without one: registered for the default types; the first frame, if
    /// it sent one, to handle once it is.
    Implicit(Option<String>),
}

/// Register a worker, if its key may serve every type it names.
fn join(
    pool: &WorkerPool,
    principal: &Principal,
    registration: Registration,
    remote: SocketAddr,
    outbox: &mpsc::Sender<String>,
) -> Result<Arc<Worker>, Failure> {
    if let Some(denied) = registration.types.iter().find_map(|t| principal.may_send(t).err()) {
        return Err(denied);
    }
    pool.register(registration, Some(remote.to_string()), outbox.clone())
}

/// The first frame (pings and pongs before it are fine): a registration,
/// explicit or implicit, or why the worker is refused, or how the socket
/// ended first. A worker that registers must do so within the handshake
/// timeout; one that does not is registered implicitly after
/// `workers.register_timeout_ms`, when there are default types.
async fn first_frame(gateway: &Gateway, socket: &mut WebSocket) -> Result<Result<First, Failure>, Closing> {
    let implicit = !gateway.workers.default_types.is_empty();
    let refused = |why: &str| {
        Failure::new(
            ErrorCode::InvalidMessage,
            format!("{why}; this host registers no worker without it (workers.default_types is empty)"),
        )
    };
    let patience = if implicit { gateway.workers.register_timeout } else { gateway.handshake_timeout };
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        let Ok(read) = tokio::time::timeout_at(deadline, socket.recv()).await else {
            return Ok(if implicit { Ok(First::Implicit(None)) } else { Err(refused("no register frame within the handshake timeout")) });
        };
        match closing::next_message(read)? {
            Message::Text(text) if protocol::is_register(text.as_str()) => {
                return Ok(protocol::registration(text.as_str()).map(First::Register))
            }
            Message::Text(text) if implicit => return Ok(Ok(First::Implicit(Some(text.as_str().to_owned())))),
            Message::Text(text) => {
                return Ok(Err(match serde_json::from_str::<serde::de::IgnoredAny>(text.as_str()) {
                    Err(e) => Failure::new(ErrorCode::InvalidJson, format!("the first frame is not JSON: {e}")),
                    Ok(_) => refused("the first frame must be {\"type\":\"register\",...}"),
                }))
            }
            Message::Ping(_) | Message::Pong(_) => continue,
            // A binary frame means nothing to the worker protocol (later
            // ones are ignored too).
            _ if implicit => return Ok(Ok(First::Implicit(None))),
            _ => return Ok(Err(refused("expected a register frame (text)"))),
        }
    }
}

/// Handle one frame from a registered worker; an answer to send back, if any.
fn on_frame(worker: &Worker, text: &str) -> Option<String> {
    on_frame_parsed(worker, protocol::worker_frame(text))
}

fn on_frame_parsed(worker: &Worker, frame: WorkerFrame) -> Option<String> {
    match frame {
        WorkerFrame::Response { msg_id, frame } => worker.answer(&msg_id, frame),
        WorkerFrame::Uncorrelated => tracing::warn!(worker = %worker.id, "response without msg_id"),
        WorkerFrame::Ping => return Some(protocol::pong()),
        WorkerFrame::Alive => {}
        WorkerFrame::Register(_) => tracing::debug!(worker = %worker.id, "a register frame is handled by the connection loop"),
        WorkerFrame::Unknown(what) => tracing::debug!(worker = %worker.id, "ignoring a frame the worker protocol does not have: {what}"),
    }
    None
}

async fn refuse(mut socket: WebSocket, failure: &Failure) {
    tracing::warn!("worker registration refused: {failure}");
    let _ = socket.send(Message::Text(frames::error_body(failure).into())).await;
    closing::finish(socket, &Closing::close(POLICY, "registration refused")).await;
}
