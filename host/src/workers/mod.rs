//! Remote workers: external processes that serve message types over a
//! WebSocket, load-balanced beside (or instead of) the WASM plugins.
//!
//! A worker registers the types it serves with a weight and a concurrency
//! limit (the protocol is the action server's, verbatim; see
//! `switchyard-client`'s `worker` module and `docs/protocol.md`). The route
//! table decides, per type, whether workers or a plugin serve a message
//! (`[[workers.types]]`, see [`crate::routing::target`]); the
//! [`WorkerPool`] picks a worker by the type's strategy and waits for its
//! answer up to the worker deadline. Its worker list is a snapshot swapped
//! on every join and leave, so picking a worker takes no lock.
//!
//! - `least_loaded`: fewest requests in flight relative to weight, then the
//!   lowest latency (an exponentially weighted moving average).
//! - `round_robin`, `random`, `weighted_random` (by weight).
//!
//! A worker that never sends `register` (as the action server's workers
//! did not) is registered for `workers.default_types`, weight 1, one
//! request at a time, once its first frame is something else or it has
//! been silent for `workers.register_timeout_ms`.
//!
//! A worker that sends nothing (no frame, no pong) for the heartbeat
//! timeout is taken out of rotation and closed. A worker that disconnects
//! mid-request fails that request with `WORKER_DISCONNECTED`, unless the
//! type is idempotent: then it is retried once on another worker. A worker
//! that refuses a request unexecuted (`WORKER_BUSY`, `WORKER_SHUTTING_DOWN`)
//! has it retried once in any case.

mod worker;

pub use worker::{Worker, WorkerInfo};

use crate::config::workers::{Strategy, WorkersConfig};
use crate::routing::router::Claim;
use crate::routing::target::WorkerRoute;
use crate::sync::lock;
use crate::wire::worker::Registration;
use crate::wire::{Envelope, ErrorCode, Failure, Outcome};
use arc_swap::ArcSwap;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio::sync::{mpsc, Notify};
use worker::Attempt;

/// A type a worker serves: a name, `prefix.*`, or `*` (`None`) for every
/// type, as the action server's workers took every command.
fn worker_type(text: &str) -> Result<Option<Claim>, crate::routing::router::RouteError> {
    if text == "*" {
        Ok(None)
    } else {
        Claim::parse(text).map(Some)
    }
}

/// Workers connected to the other nodes of a cluster.
pub trait RemoteWorkers: Send + Sync + 'static {
    /// Whether a worker on another node serves `kind` (and is in rotation).
    fn serves(&self, kind: &str) -> bool;
    /// Serve one message with a worker on another node, by `route`, within `timeout`.
    fn call<'a>(&'a self, envelope: &'a Envelope, route: WorkerRoute, timeout: Duration) -> Pin<Box<dyn Future<Output = Outcome> + Send + 'a>>;
}

/// Connected workers by id.
type Roster = HashMap<String, Arc<Worker>>;

/// Holds a worker's in-flight slot for one request.
struct Slot<'a> {
    worker: &'a Worker,
    freed: &'a Notify,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.worker.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.freed.notify_waiters();
    }
}

pub struct WorkerPool {
    /// Read by every call without a lock; replaced whole on join and leave.
    roster: ArcSwap<Roster>,
    /// Serializes joins and leaves.
    roster_changes: Mutex<()>,
    pub timeout: Duration,
    pub heartbeat_timeout: Duration,
    /// The types of a worker that does not register (`workers.default_types`).
    pub default_types: Vec<String>,
    /// How long a worker may stay silent before it is registered for
    /// `default_types`.
    pub register_timeout: Duration,
    max_workers: usize,
    cursor: AtomicUsize,
    /// Signalled when a slot frees or a worker joins.
    freed: Notify,
    /// The other nodes' workers, in a cluster.
    remote: OnceLock<Arc<dyn RemoteWorkers>>,
}

impl WorkerPool {
    pub fn new(config: &WorkersConfig) -> anyhow::Result<WorkerPool> {
        anyhow::ensure!(
            config.timeout_ms > 0 && config.heartbeat_timeout_ms > 0 && config.register_timeout_ms > 0,
            "workers: timeouts must be positive"
        );
        for kind in &config.default_types {
            worker_type(kind).map_err(|e| anyhow::anyhow!("workers.default_types: {e}"))?;
        }
        Ok(WorkerPool {
            roster: ArcSwap::default(),
            roster_changes: Mutex::new(()),
            timeout: Duration::from_millis(config.timeout_ms),
            heartbeat_timeout: Duration::from_millis(config.heartbeat_timeout_ms),
            default_types: config.default_types.clone(),
            register_timeout: Duration::from_millis(config.register_timeout_ms),
            max_workers: config.max_workers,
            cursor: AtomicUsize::new(0),
            freed: Notify::new(),
            remote: OnceLock::new(),
        })
    }

    /// Serve with the other nodes' workers too (set once, in a cluster).
    pub fn set_remote(&self, remote: Arc<dyn RemoteWorkers>) {
        let _ = self.remote.set(remote);
    }

    fn served_elsewhere(&self, kind: &str) -> bool {
        self.remote.get().is_some_and(|r| r.serves(kind))
    }

    /// Whether any connected worker registered `kind` (in rotation or not),
    /// here or on another node of the cluster.
    pub fn serves(&self, kind: &str) -> bool {
        self.roster.load().values().any(|w| w.serves(kind)) || self.served_elsewhere(kind)
    }

    /// Whether a worker for `kind` is connected and in rotation, here or on
    /// another node.
    pub fn available(&self, kind: &str) -> bool {
        self.available_here(kind) || self.served_elsewhere(kind)
    }

    fn available_here(&self, kind: &str) -> bool {
        self.roster.load().values().any(|w| w.available_for(kind))
    }

    /// The types the workers connected here serve (for the other nodes).
    pub fn types_served(&self) -> Vec<String> {
        let mut types: Vec<String> = self.roster.load().values().filter(|w| !w.gone.is_cancelled()).flat_map(|w| w.info().types).collect();
        types.sort();
        types.dedup();
        types
    }

    /// Add a worker; one that rejoins under its id replaces its old
    /// connection. The frames for it go to `outbox`.
    pub fn register(&self, registration: Registration, remote: Option<String>, outbox: mpsc::Sender<String>) -> Result<Arc<Worker>, Failure> {
        let invalid = |why: String| Failure::new(ErrorCode::InvalidMessage, why);
        if registration.types.is_empty() {
            return Err(invalid("a worker must register at least one type".into()));
        }
        let types = registration.types.iter().map(|t| worker_type(t).map_err(|e| invalid(e.to_string()))).collect::<Result<Vec<_>, _>>()?;
        if !(registration.weight > 0.0 && registration.weight <= 1000.0) {
            return Err(invalid("weight must be in (0, 1000]".into()));
        }
        if !(1..=10_000).contains(&registration.concurrency) {
            return Err(invalid("concurrency must be 1..=10000".into()));
        }
        let id = registration
            .worker_id
            .clone()
            .filter(|id| !id.is_empty() && id.len() <= 128)
            .unwrap_or_else(|| format!("worker-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]));
        let worker = Arc::new(Worker::new(id.clone(), types, &registration, remote, outbox));
        let _one_at_a_time = lock(&self.roster_changes);
        let mut roster = Roster::clone(&self.roster.load());
        if !roster.contains_key(&id) && roster.len() >= self.max_workers {
            return Err(Failure::new(ErrorCode::TooManyConnections, format!("the pool holds its maximum of {} workers", self.max_workers)));
        }
        let replaced = roster.insert(id.clone(), Arc::clone(&worker));
        self.roster.store(Arc::new(roster));
        if let Some(old) = replaced {
            tracing::info!(worker = %id, "worker rejoined; its previous connection is replaced");
            old.gone.cancel();
        }
        tracing::info!(worker = %id, types = ?registration.types, weight = registration.weight, concurrency = registration.concurrency, "worker registered");
        self.freed.notify_waiters();
        Ok(worker)
    }

    /// Remove a worker (if it is still the one registered under its id);
    /// its waiting requests fail or are retried.
    pub fn unregister(&self, worker: &Arc<Worker>) {
        worker.gone.cancel();
        let one_at_a_time = lock(&self.roster_changes);
        if self.roster.load().get(&worker.id).is_some_and(|w| Arc::ptr_eq(w, worker)) {
            let mut roster = Roster::clone(&self.roster.load());
            roster.remove(&worker.id);
            self.roster.store(Arc::new(roster));
            tracing::info!(worker = %worker.id, "worker left");
        }
        drop(one_at_a_time);
        worker.abandon_pending();
    }

    /// Take workers silent past the heartbeat timeout out of rotation.
    pub fn sweep(&self) {
        for worker in self.roster.load().values().filter(|w| w.silent_for() > self.heartbeat_timeout) {
            tracing::warn!(worker = %worker.id, silent = ?worker.silent_for(), "worker missed its heartbeats; out of rotation");
            worker.gone.cancel();
        }
    }

    pub fn list(&self) -> Vec<WorkerInfo> {
        let mut list: Vec<_> = self.roster.load().values().map(|w| w.info()).collect();
        list.sort_by(|a, b| a.id.cmp(&b.id));
        list
    }

    /// A worker for `kind` with a free slot, by `strategy`, not in `tried`;
    /// `Err(true)` if some are registered but all busy, `Err(false)` if none.
    fn pick(&self, kind: &str, strategy: Strategy, tried: &[String]) -> Result<Arc<Worker>, bool> {
        let roster = self.roster.load();
        let mut candidates: Vec<&Arc<Worker>> = roster.values().filter(|w| w.available_for(kind) && !tried.contains(&w.id)).collect();
        if candidates.is_empty() {
            return Err(false);
        }
        candidates.retain(|w| w.has_free_slot());
        if candidates.is_empty() {
            return Err(true);
        }
        candidates.sort_by(|a, b| a.id.cmp(&b.id));
        let chosen = match strategy {
            Strategy::LeastLoaded => candidates
                .iter()
                .min_by(|a, b| a.load().total_cmp(&b.load()).then(a.latency_us().total_cmp(&b.latency_us())))
                .copied(),
            Strategy::RoundRobin => Some(candidates[self.cursor.fetch_add(1, Ordering::Relaxed) % candidates.len()]),
            Strategy::Random => Some(candidates[rand::random_range(0..candidates.len())]),
            Strategy::WeightedRandom => {
                let total: f64 = candidates.iter().map(|w| w.weight).sum();
                let mut point = rand::random::<f64>() * total;
                candidates
                    .iter()
                    .find(|w| {
                        point -= w.weight;
                        point < 0.0
                    })
                    .or(candidates.last())
                    .copied()
            }
        };
        // Chosen from a non-empty list.
        let chosen = Arc::clone(chosen.unwrap_or(candidates[0]));
        chosen.in_flight.fetch_add(1, Ordering::Relaxed);
        Ok(chosen)
    }

    /// Serve one message with a worker, under the worker deadline: one
    /// connected here if any is in rotation, else one on another node.
    pub async fn call(&self, envelope: &Envelope, route: WorkerRoute) -> Outcome {
        if let Some(remote) = self.remote.get() {
            if !self.available_here(&envelope.kind) && remote.serves(&envelope.kind) {
                return remote.call(envelope, route, self.timeout).await;
            }
        }
        self.call_here(envelope, route).await
    }

    /// Serve one message with a worker connected to this node.
    pub async fn call_here(&self, envelope: &Envelope, route: WorkerRoute) -> Outcome {
        let deadline = tokio::time::Instant::now() + self.timeout;
        let mut tried: Vec<String> = Vec::new();
        let timed_out = || Failure::new(ErrorCode::WorkerTimeout, "Worker response timeout");
        loop {
            let worker = loop {
                let freed = self.freed.notified();
                match self.pick(&envelope.kind, route.strategy, &tried) {
                    Ok(worker) => break worker,
                    Err(false) if tried.is_empty() => return Err(Failure::new(ErrorCode::NoAvailableWorkers, "No available workers")),
                    Err(false) => {
                        return Err(Failure::new(
                            ErrorCode::WorkerDisconnected,
                            format!("worker {} disconnected before answering, and no other worker is available", tried.join(", ")),
                        ))
                    }
                    // All busy: wait for a slot, within the deadline.
                    Err(true) => {
                        if tokio::time::timeout_at(deadline, freed).await.is_err() {
                            return Err(timed_out());
                        }
                    }
                }
            };
            let slot = Slot { worker: &worker, freed: &self.freed };
            let attempt = worker.request(envelope, deadline).await;
            drop(slot);
            match attempt {
                Attempt::Answered(outcome) => return outcome,
                Attempt::TimedOut => return Err(timed_out()),
                Attempt::Refused(failure) if !tried.is_empty() => return Err(failure),
                Attempt::Refused(_) => tried.push(worker.id.clone()),
                Attempt::Gone if route.idempotent && tried.is_empty() => {
                    tracing::info!(worker = %worker.id, r#type = %envelope.kind, "worker left mid-request; retrying an idempotent request elsewhere");
                    tried.push(worker.id.clone());
                }
                Attempt::Gone => {
                    return Err(Failure::new(
                        ErrorCode::WorkerDisconnected,
                        format!("worker {} disconnected before answering; {} is not marked idempotent, so it was not retried", worker.id, envelope.kind),
                    ))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worker_may_serve_every_type_and_default_types_are_checked() {
        let pool = WorkerPool::new(&WorkersConfig::default()).unwrap();
        let (outbox, _frames) = mpsc::channel(1);
        let every = pool.register(Registration::implicit(&["*".into()]), None, outbox.clone()).unwrap();
        assert!(pool.serves("get_time") && pool.serves("tasks.run"));
        assert_eq!(every.info().types, ["*"]);
        assert!(every.id.starts_with("worker-") && every.info().weight == 1.0 && every.info().concurrency == 1);
        let named = pool.register(Registration::implicit(&["jobs.*".into(), "get_time".into()]), None, outbox).unwrap();
        assert_eq!(named.info().types, ["jobs.*", "get_time"]);

        let config = |types: &[&str], register_timeout_ms| WorkersConfig {
            default_types: types.iter().map(|t| t.to_string()).collect(),
            register_timeout_ms,
            ..WorkersConfig::default()
        };
        assert!(WorkerPool::new(&config(&["*", "a.*", "b"], 100)).is_ok());
        assert!(WorkerPool::new(&config(&["a b"], 100)).is_err());
        assert!(WorkerPool::new(&config(&["a"], 0)).is_err());
    }
}
