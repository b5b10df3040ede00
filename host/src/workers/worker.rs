//! One connected worker: the types it serves, its load and latency, and the
//! requests waiting for its answers (correlated by `msg_id`).

use crate::routing::router::Claim;
use crate::sync::lock;
use crate::wire::worker::{self as protocol, Answer, Registration};
use crate::wire::{Envelope, Failure, Outcome};
use serde::Serialize;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

/// How a call to one worker ended.
pub(super) enum Attempt {
    Answered(Outcome),
    /// The worker went away before answering.
    Gone,
    /// The worker refused without running it; safe to try another.
    Refused(Failure),
    TimedOut,
}

pub struct Worker {
    pub id: String,
    /// What it registered; `None` for `*`, every type.
    types: Vec<Option<Claim>>,
    pub(super) weight: f64,
    concurrency: usize,
    pub remote: Option<String>,
    pub(super) in_flight: AtomicUsize,
    served: AtomicU64,
    /// Latency EWMA in microseconds (f64 bits).
    latency: AtomicU64,
    last_seen: Mutex<Instant>,
    outbox: mpsc::Sender<String>,
    pending: Mutex<HashMap<String, oneshot::Sender<Value>>>,
    /// Cancelled when the worker leaves or is taken out of rotation.
    pub gone: CancellationToken,
}

/// A worker as status shows it.
#[derive(Debug, Clone, Serialize)]
pub struct WorkerInfo {
    pub id: String,
    pub types: Vec<String>,
    pub weight: f64,
    pub concurrency: usize,
    pub in_flight: usize,
    pub served: u64,
    pub latency_ms: f64,
    pub remote: Option<String>,
}

impl Worker {
    pub(super) fn new(id: String, types: Vec<Option<Claim>>, registration: &Registration, remote: Option<String>, outbox: mpsc::Sender<String>) -> Worker {
        Worker {
            id,
            types,
            weight: registration.weight,
            concurrency: registration.concurrency,
            remote,
            in_flight: AtomicUsize::new(0),
            served: AtomicU64::new(0),
            latency: AtomicU64::new(0f64.to_bits()),
            last_seen: Mutex::new(Instant::now()),
            outbox,
            pending: Mutex::default(),
            gone: CancellationToken::new(),
        }
    }

    pub(super) fn serves(&self, kind: &str) -> bool {
        self.types.iter().any(|claim| claim.as_ref().is_none_or(|c| c.matches(kind)))
    }

    /// In rotation and serving `kind`.
    pub(super) fn available_for(&self, kind: &str) -> bool {
        self.serves(kind) && !self.gone.is_cancelled()
    }

    pub(super) fn has_free_slot(&self) -> bool {
        self.in_flight.load(Ordering::Relaxed) < self.concurrency
    }

    pub(super) fn load(&self) -> f64 {
        self.in_flight.load(Ordering::Relaxed) as f64 / self.weight
    }

    pub(super) fn latency_us(&self) -> f64 {
        f64::from_bits(self.latency.load(Ordering::Relaxed))
    }

    /// Note that the worker is alive (any frame counts).
    pub fn seen(&self) {
        *lock(&self.last_seen) = Instant::now();
    }

    pub(super) fn silent_for(&self) -> Duration {
        lock(&self.last_seen).elapsed()
    }

    /// Hand a `response` frame to the request waiting for it.
    pub fn answer(&self, msg_id: &str, frame: Value) {
        let waiting = lock(&self.pending).remove(msg_id);
        match waiting {
            Some(tx) => {
                let _ = tx.send(frame);
            }
            None => tracing::debug!(worker = %self.id, msg_id, "answer for no waiting request (late or unknown)"),
        }
    }

    /// Fail every waiting request: dropping the senders wakes each with `Gone`.
    pub(super) fn abandon_pending(&self) {
        lock(&self.pending).clear();
    }

    /// Send one request and wait for its answer until `deadline`.
    pub(super) async fn request(&self, envelope: &Envelope, deadline: tokio::time::Instant) -> Attempt {
        let msg_id = uuid::Uuid::new_v4().simple().to_string();
        let (tx, rx) = oneshot::channel();
        lock(&self.pending).insert(msg_id.clone(), tx);
        let frame = protocol::request(&msg_id, envelope);
        let started = Instant::now();
        let sent = tokio::select! {
            sent = self.outbox.send(frame) => sent.is_ok(),
            _ = tokio::time::sleep_until(deadline) => false,
        };
        let attempt = if !sent {
            if self.gone.is_cancelled() { Attempt::Gone } else { Attempt::TimedOut }
        } else {
            tokio::select! {
                answer = rx => match answer {
                    Ok(frame) => match protocol::answer(&frame, &self.id) {
                        Answer::Answered(outcome) => Attempt::Answered(outcome),
                        Answer::Refused(failure) => Attempt::Refused(failure),
                    },
                    Err(_) => Attempt::Gone,
                },
                _ = tokio::time::sleep_until(deadline) => Attempt::TimedOut,
            }
        };
        lock(&self.pending).remove(&msg_id);
        if let Attempt::Answered(Ok(_)) = attempt {
            self.served.fetch_add(1, Ordering::Relaxed);
            let took = started.elapsed().as_micros() as f64;
            let old = self.latency_us();
            let ewma = if old == 0.0 { took } else { 0.8 * old + 0.2 * took };
            self.latency.store(ewma.to_bits(), Ordering::Relaxed);
        }
        attempt
    }

    pub(super) fn info(&self) -> WorkerInfo {
        WorkerInfo {
            id: self.id.clone(),
            types: self.types.iter().map(|claim| claim.as_ref().map_or_else(|| "*".to_owned(), ToString::to_string)).collect(),
            weight: self.weight,
            concurrency: self.concurrency,
            in_flight: self.in_flight.load(Ordering::Relaxed),
            served: self.served.load(Ordering::Relaxed),
            latency_ms: self.latency_us() / 1000.0,
            remote: self.remote.clone(),
        }
    }
}
