//! Calls to clients: the table of calls waiting for a client's answer.
//!
//! A call takes one of its connection's `limits.max_client_calls` places
//! (or fails `CLIENT_BUSY`), enters the table under a fresh id, goes out
//! through the connection's outbox in the dialect the client speaks, and
//! waits for the first of: the answer (which the transport hands to
//! [`Calls::answered`] before anything is routed), its timeout, or the end
//! of the connection. However it ends, a guard takes it out of the table
//! and gives the place back, so the table holds at most `max_client_calls`
//! calls per live connection. The table's lock is taken twice per call and
//! once per answer, never per message.

use super::Connection;
use crate::observability::metrics::CallMetrics;
use crate::sync::lock;
use crate::wire::calls::{self, ClientAnswer};
use crate::wire::{ErrorCode, Failure};
use bytes::Bytes;
use serde_json::value::RawValue;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::oneshot;

type Answer = Result<Box<RawValue>, Failure>;

/// Every call to a client that waits for an answer.
pub struct Calls {
    waiting: Mutex<HashMap<String, Waiting>>,
    max_per_connection: usize,
    metrics: CallMetrics,
}

struct Waiting {
    connection_id: String,
    answer: oneshot::Sender<Answer>,
}

/// A call's place in the table and on its connection, given back on drop.
struct Place<'a> {
    calls: &'a Calls,
    connection: &'a Connection,
    id: String,
}

impl Drop for Place<'_> {
    fn drop(&mut self) {
        lock(&self.calls.waiting).remove(&self.id);
        self.connection.calls_waiting.fetch_sub(1, Ordering::AcqRel);
        self.calls.metrics.waiting.dec();
    }
}

impl Calls {
    pub(super) fn new(max_per_connection: usize, metrics: CallMetrics) -> Calls {
        Calls { waiting: Mutex::default(), max_per_connection, metrics }
    }

    /// Send `action` with `params` to `connection` and wait at most
    /// `timeout` for its answer's data.
    pub(super) async fn call(&self, connection: &Connection, action: &str, params: &RawValue, timeout: Duration) -> Answer {
        calls::check_action(action)?;
        let max = self.max_per_connection;
        let taken = connection.calls_waiting.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < max).then_some(n + 1));
        if taken.is_err() {
            self.metrics.busy.inc();
            return Err(Failure::new(
                ErrorCode::ClientBusy,
                format!("connection {} already has {max} calls waiting for its answers", connection.id),
            ));
        }
        self.metrics.waiting.inc();
        let place = Place { calls: self, connection, id: calls::call_id() };
        let (tx, rx) = oneshot::channel();
        lock(&self.waiting).insert(place.id.clone(), Waiting { connection_id: connection.id.clone(), answer: tx });

        let frame = calls::request(connection.call_dialect(), &place.id, action, params);
        if !connection.offer(Bytes::from(frame)) {
            self.metrics.disconnected.inc();
            return Err(disconnected(connection));
        }
        self.metrics.sent.inc();
        tokio::select! {
            answer = rx => match answer {
                Ok(answer) => {
                    if answer.as_ref().is_err_and(|f| f.is(ErrorCode::ClientDisconnected)) {
                        self.metrics.disconnected.inc();
                    } else {
                        self.metrics.answered.inc();
                    }
                    answer
                }
                // The sender only goes with the table entry, which this call owns.
                Err(_) => Err(Failure::new(ErrorCode::Internal, "the call's answer was lost")),
            },
            _ = tokio::time::sleep(timeout) => {
                self.metrics.timed_out.inc();
                Err(Failure::new(
                    ErrorCode::ClientTimeout,
                    format!("connection {} did not answer {action:?} within {} ms", connection.id, timeout.as_millis()),
                ))
            }
            _ = connection.evicted() => {
                self.metrics.disconnected.inc();
                Err(disconnected(connection))
            }
        }
    }

    /// Hand a client's answer to its call; false if no call of that
    /// connection waits for it (it came late, or named another's call).
    pub(super) fn answered(&self, connection_id: &str, answer: ClientAnswer) -> bool {
        let waiting = {
            let mut table = lock(&self.waiting);
            match table.get(&answer.call_id) {
                Some(w) if w.connection_id == connection_id => table.remove(&answer.call_id),
                _ => None,
            }
        };
        let delivered = waiting.is_some_and(|w| w.answer.send(answer.outcome).is_ok());
        if !delivered {
            self.metrics.unmatched.inc();
        }
        delivered
    }

    /// Fail the calls waiting on a client that has gone while its
    /// connection is still answering its last message (so is not evicted
    /// yet): they end now, not at their timeout.
    pub(super) fn abandon(&self, connection_id: &str) {
        let gone: Vec<Waiting> = {
            let mut table = lock(&self.waiting);
            let ids: Vec<String> = table.iter().filter(|(_, w)| w.connection_id == connection_id).map(|(id, _)| id.clone()).collect();
            ids.iter().filter_map(|id| table.remove(id)).collect()
        };
        for waiting in gone {
            let failure = Failure::new(ErrorCode::ClientDisconnected, format!("connection {connection_id} closed before it answered"));
            let _ = waiting.answer.send(Err(failure));
        }
    }

    /// Calls waiting now, over every connection.
    pub fn waiting(&self) -> usize {
        lock(&self.waiting).len()
    }
}

fn disconnected(connection: &Connection) -> Failure {
    Failure::new(ErrorCode::ClientDisconnected, format!("connection {} closed before it answered", connection.id))
}
