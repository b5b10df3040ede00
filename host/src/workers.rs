//! Remote workers: external processes that serve message types over a
//! WebSocket, load-balanced beside (or instead of) the WASM plugins.
//!
//! A worker registers the types it serves with a weight and a concurrency
//! limit (the protocol is the action server's, verbatim; see
//! `switchyard-client`'s `worker` module and `docs/protocol.md`). The
//! [`WorkerPool`] decides, per type, whether workers or a plugin serve a
//! message (`[[workers.types]]` in the configuration), picks a worker by the
//! type's strategy, and waits for its answer up to the worker deadline.
//!
//! - `least_loaded`: fewest requests in flight relative to weight, then the
//!   lowest latency (an exponentially weighted moving average).
//! - `round_robin`, `random`, `weighted_random` (by weight).
//!
//! A worker that sends nothing (no frame, no pong) for the heartbeat
//! timeout is taken out of rotation and closed. A worker that disconnects
//! mid-request fails that request with `WORKER_DISCONNECTED`, unless the
//! type is idempotent: then it is retried once on another worker. A worker
//! that refuses a request unexecuted (`WORKER_BUSY`, `WORKER_SHUTTING_DOWN`)
//! has it retried once in any case.

use crate::envelope::{self, Envelope, ErrorCode, Failure, Outcome, Reply, ServedBy};
use crate::router::Claim;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, Notify};
use tokio_util::sync::CancellationToken;

pub const NO_AVAILABLE_WORKERS: &str = "NO_AVAILABLE_WORKERS";
pub const WORKER_TIMEOUT: &str = "WORKER_TIMEOUT";
pub const WORKER_DISCONNECTED: &str = "WORKER_DISCONNECTED";

/// How a worker is picked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    #[default]
    LeastLoaded,
    RoundRobin,
    Random,
    WeightedRandom,
}

/// Who serves a type.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Serve {
    /// Workers only: `NO_AVAILABLE_WORKERS` when none is connected.
    #[default]
    Workers,
    /// The plugin that claims it, even if workers register it.
    Plugin,
    /// Workers while any is available, else the plugin.
    WorkersThenPlugin,
}

/// `[workers]` in the configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorkersConfig {
    /// The strategy of types without their own.
    pub strategy: Strategy,
    /// How long a worker may take to answer (`WORKER_TIMEOUT`).
    pub timeout_ms: u64,
    /// A worker silent this long is out of rotation and closed.
    pub heartbeat_timeout_ms: u64,
    /// Most workers connected at once.
    pub max_workers: usize,
    /// Per-type rules, first match wins. A type with no rule goes to the
    /// plugin that claims it, else to workers that registered it.
    pub types: Vec<TypeRule>,
}

impl Default for WorkersConfig {
    fn default() -> Self {
        WorkersConfig { strategy: Strategy::default(), timeout_ms: 30_000, heartbeat_timeout_ms: 30_000, max_workers: 1_000, types: Vec::new() }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TypeRule {
    /// A type, a `prefix.*` pattern, or `*` for every type.
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub serve: Serve,
    /// Safe to run twice: retried once on another worker if the first one
    /// disconnects before answering.
    #[serde(default)]
    pub idempotent: bool,
    #[serde(default)]
    pub strategy: Option<Strategy>,
}

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

fn one() -> f64 {
    1.0
}

fn one_slot() -> usize {
    1
}

/// Where a message goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Plugin,
    Workers { strategy: Strategy, idempotent: bool, fallback_to_plugin: bool },
}

/// How a call to one worker ended.
enum Attempt {
    Answered(Outcome),
    /// The worker went away before answering.
    Gone,
    /// The worker refused without running it; safe to try another.
    Refused(Failure),
    TimedOut,
}

/// One connected worker.
pub struct Worker {
    pub id: String,
    types: Vec<Claim>,
    weight: f64,
    concurrency: usize,
    pub remote: Option<String>,
    in_flight: AtomicUsize,
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
    fn serves(&self, kind: &str) -> bool {
        self.types.iter().any(|claim| claim.matches(kind))
    }

    fn load(&self) -> f64 {
        self.in_flight.load(Ordering::Relaxed) as f64 / self.weight
    }

    fn latency_us(&self) -> f64 {
        f64::from_bits(self.latency.load(Ordering::Relaxed))
    }

    /// Note that the worker is alive (any frame counts).
    pub fn seen(&self) {
        *self.last_seen.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
    }

    fn silent_for(&self) -> Duration {
        self.last_seen.lock().unwrap_or_else(|p| p.into_inner()).elapsed()
    }

    /// Hand a `response` frame to the request waiting for it.
    pub fn answer(&self, msg_id: &str, frame: Value) {
        let waiting = self.pending.lock().unwrap_or_else(|p| p.into_inner()).remove(msg_id);
        match waiting {
            Some(tx) => {
                let _ = tx.send(frame);
            }
            None => tracing::debug!(worker = %self.id, msg_id, "answer for no waiting request (late or unknown)"),
        }
    }

    /// Send one request and wait for its answer until `deadline`.
    async fn request(&self, envelope: &Envelope, deadline: tokio::time::Instant) -> Attempt {
        let msg_id = uuid::Uuid::new_v4().simple().to_string();
        let (tx, rx) = oneshot::channel();
        self.pending.lock().unwrap_or_else(|p| p.into_inner()).insert(msg_id.clone(), tx);
        let frame = serde_json::json!({
            "type": "request",
            "msg_id": msg_id,
            "timestamp": envelope::unix_millis() as f64 / 1000.0,
            "data": { "action": envelope.kind, "params": &*envelope.data },
            "meta": { "request_id": envelope.id },
        });
        let started = Instant::now();
        let sent = tokio::select! {
            sent = self.outbox.send(frame.to_string()) => sent.is_ok(),
            _ = tokio::time::sleep_until(deadline) => false,
        };
        let attempt = if !sent {
            if self.gone.is_cancelled() { Attempt::Gone } else { Attempt::TimedOut }
        } else {
            tokio::select! {
                answer = rx => match answer {
                    Ok(frame) => self.outcome(&frame),
                    Err(_) => Attempt::Gone,
                },
                _ = tokio::time::sleep_until(deadline) => Attempt::TimedOut,
            }
        };
        self.pending.lock().unwrap_or_else(|p| p.into_inner()).remove(&msg_id);
        if let Attempt::Answered(Ok(_)) = attempt {
            self.served.fetch_add(1, Ordering::Relaxed);
            let took = started.elapsed().as_micros() as f64;
            let old = self.latency_us();
            let ewma = if old == 0.0 { took } else { 0.8 * old + 0.2 * took };
            self.latency.store(ewma.to_bits(), Ordering::Relaxed);
        }
        attempt
    }

    /// Read a `response` frame: `data.success` with `data.result` (the
    /// worker SDK's shape), or top-level `success`, `data`/`result` and
    /// `error` (the action server's reply shape).
    fn outcome(&self, frame: &Value) -> Attempt {
        let data = &frame["data"];
        let nested = data.get("success").is_some();
        let success = frame["success"].as_bool().or(data["success"].as_bool()).unwrap_or(frame["error"].is_null());
        if success {
            let result = if nested {
                data.get("result").or(data.get("data")).cloned().unwrap_or(Value::Null)
            } else {
                frame.get("result").cloned().unwrap_or_else(|| data.clone())
            };
            let served_by = ServedBy { name: self.id.clone(), version: "worker".into() };
            return match serde_json::value::to_raw_value(&result) {
                Ok(data) => Attempt::Answered(Ok(Reply { data, served_by, reply_type: "reply" })),
                Err(e) => Attempt::Answered(Err(Failure::new(ErrorCode::Internal, e.to_string()))),
            };
        }
        let error = if nested { &data["error"] } else { &frame["error"] };
        let message = error.as_str().or(error["message"].as_str()).unwrap_or("the worker failed").to_owned();
        let code = frame["code"].as_str().or(data["code"].as_str()).or(error["code"].as_str()).unwrap_or("WORKER_FAILED");
        let failure = Failure::from_plugin(code.to_owned(), message);
        if matches!(code, "WORKER_BUSY" | "WORKER_SHUTTING_DOWN") {
            Attempt::Refused(failure)
        } else {
            Attempt::Answered(Err(failure))
        }
    }

    fn info(&self) -> WorkerInfo {
        WorkerInfo {
            id: self.id.clone(),
            types: self.types.iter().map(ToString::to_string).collect(),
            weight: self.weight,
            concurrency: self.concurrency,
            in_flight: self.in_flight.load(Ordering::Relaxed),
            served: self.served.load(Ordering::Relaxed),
            latency_ms: self.latency_us() / 1000.0,
            remote: self.remote.clone(),
        }
    }
}

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

struct Rule {
    /// `None` for `*`: every type.
    claim: Option<Claim>,
    serve: Serve,
    idempotent: bool,
    strategy: Option<Strategy>,
}

pub struct WorkerPool {
    workers: RwLock<HashMap<String, Arc<Worker>>>,
    rules: Vec<Rule>,
    strategy: Strategy,
    pub timeout: Duration,
    pub heartbeat_timeout: Duration,
    max_workers: usize,
    cursor: AtomicUsize,
    /// Signalled when a slot frees or a worker joins.
    freed: Notify,
}

impl WorkerPool {
    pub fn new(config: &WorkersConfig) -> anyhow::Result<WorkerPool> {
        let rules = config
            .types
            .iter()
            .map(|rule| {
                Ok(Rule {
                    claim: match rule.kind.as_str() {
                        "*" => None,
                        kind => Some(Claim::parse(kind).map_err(|e| anyhow::anyhow!("workers.types: {e}"))?),
                    },
                    serve: rule.serve,
                    idempotent: rule.idempotent,
                    strategy: rule.strategy,
                })
            })
            .collect::<anyhow::Result<_>>()?;
        anyhow::ensure!(config.timeout_ms > 0 && config.heartbeat_timeout_ms > 0, "workers: timeouts must be positive");
        Ok(WorkerPool {
            workers: RwLock::default(),
            rules,
            strategy: config.strategy,
            timeout: Duration::from_millis(config.timeout_ms),
            heartbeat_timeout: Duration::from_millis(config.heartbeat_timeout_ms),
            max_workers: config.max_workers,
            cursor: AtomicUsize::new(0),
            freed: Notify::new(),
        })
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Arc<Worker>>> {
        self.workers.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether workers or the plugin (if any) serve `kind`.
    pub fn decide(&self, kind: &str, plugin_claims: bool) -> Decision {
        if let Some(rule) = self.rules.iter().find(|r| r.claim.as_ref().is_none_or(|c| c.matches(kind))) {
            let strategy = rule.strategy.unwrap_or(self.strategy);
            return match rule.serve {
                Serve::Plugin => Decision::Plugin,
                Serve::Workers => Decision::Workers { strategy, idempotent: rule.idempotent, fallback_to_plugin: false },
                Serve::WorkersThenPlugin => Decision::Workers { strategy, idempotent: rule.idempotent, fallback_to_plugin: true },
            };
        }
        if !plugin_claims && self.read().values().any(|w| w.serves(kind)) {
            return Decision::Workers { strategy: self.strategy, idempotent: false, fallback_to_plugin: false };
        }
        Decision::Plugin
    }

    /// Whether a worker for `kind` is connected and in rotation.
    pub fn available(&self, kind: &str) -> bool {
        self.read().values().any(|w| w.serves(kind) && !w.gone.is_cancelled())
    }

    /// Add a worker; one that rejoins under its id replaces its old
    /// connection. The frames for it go to `outbox`.
    pub fn register(&self, registration: Registration, remote: Option<String>, outbox: mpsc::Sender<String>) -> Result<Arc<Worker>, Failure> {
        let invalid = |why: String| Failure::new(ErrorCode::InvalidMessage, why);
        if registration.types.is_empty() {
            return Err(invalid("a worker must register at least one type".into()));
        }
        let types = registration.types.iter().map(|t| Claim::parse(t).map_err(|e| invalid(e.to_string()))).collect::<Result<Vec<_>, _>>()?;
        if !(registration.weight > 0.0 && registration.weight <= 1000.0) {
            return Err(invalid("weight must be in (0, 1000]".into()));
        }
        if !(1..=10_000).contains(&registration.concurrency) {
            return Err(invalid("concurrency must be 1..=10000".into()));
        }
        let id = registration.worker_id.filter(|id| !id.is_empty() && id.len() <= 128).unwrap_or_else(|| format!("worker-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]));
        let worker = Arc::new(Worker {
            id: id.clone(),
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
        });
        let mut workers = self.workers.write().unwrap_or_else(|p| p.into_inner());
        if !workers.contains_key(&id) && workers.len() >= self.max_workers {
            return Err(Failure::new(ErrorCode::TooManyConnections, format!("the pool holds its maximum of {} workers", self.max_workers)));
        }
        if let Some(old) = workers.insert(id.clone(), Arc::clone(&worker)) {
            tracing::info!(worker = %id, "worker rejoined; its previous connection is replaced");
            old.gone.cancel();
        }
        drop(workers);
        tracing::info!(worker = %id, types = ?registration.types, weight = registration.weight, concurrency = registration.concurrency, "worker registered");
        self.freed.notify_waiters();
        Ok(worker)
    }

    /// Remove a worker (if it is still the one registered under its id);
    /// its waiting requests fail or are retried.
    pub fn unregister(&self, worker: &Arc<Worker>) {
        worker.gone.cancel();
        let mut workers = self.workers.write().unwrap_or_else(|p| p.into_inner());
        if workers.get(&worker.id).is_some_and(|w| Arc::ptr_eq(w, worker)) {
            workers.remove(&worker.id);
            tracing::info!(worker = %worker.id, "worker left");
        }
        drop(workers);
        // Dropping the senders wakes every waiting request with `Gone`.
        worker.pending.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// Take workers silent past the heartbeat timeout out of rotation.
    pub fn sweep(&self) {
        for worker in self.read().values().filter(|w| w.silent_for() > self.heartbeat_timeout) {
            tracing::warn!(worker = %worker.id, silent = ?worker.silent_for(), "worker missed its heartbeats; out of rotation");
            worker.gone.cancel();
        }
    }

    pub fn list(&self) -> Vec<WorkerInfo> {
        let mut list: Vec<_> = self.read().values().map(|w| w.info()).collect();
        list.sort_by(|a, b| a.id.cmp(&b.id));
        list
    }

    /// A worker for `kind` with a free slot, by `strategy`, not in `tried`;
    /// `Err(true)` if some are registered but all busy, `Err(false)` if none.
    fn pick(&self, kind: &str, strategy: Strategy, tried: &[String]) -> Result<Arc<Worker>, bool> {
        let workers = self.read();
        let mut candidates: Vec<&Arc<Worker>> =
            workers.values().filter(|w| w.serves(kind) && !w.gone.is_cancelled() && !tried.contains(&w.id)).collect();
        if candidates.is_empty() {
            return Err(false);
        }
        candidates.retain(|w| w.in_flight.load(Ordering::Relaxed) < w.concurrency);
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
                candidates.iter().find(|w| {
                    point -= w.weight;
                    point < 0.0
                }).or(candidates.last()).copied()
            }
        };
        // Chosen from a non-empty list.
        let chosen = Arc::clone(chosen.unwrap_or(candidates[0]));
        chosen.in_flight.fetch_add(1, Ordering::Relaxed);
        Ok(chosen)
    }

    /// Serve one message with a worker, under the worker deadline.
    pub async fn call(&self, envelope: &Envelope, strategy: Strategy, idempotent: bool) -> Outcome {
        let deadline = tokio::time::Instant::now() + self.timeout;
        let mut tried: Vec<String> = Vec::new();
        let timed_out = || Failure::from_plugin(WORKER_TIMEOUT.into(), "Worker response timeout".into());
        loop {
            let worker = loop {
                let freed = self.freed.notified();
                match self.pick(&envelope.kind, strategy, &tried) {
                    Ok(worker) => break worker,
                    Err(false) if tried.is_empty() => {
                        return Err(Failure::from_plugin(NO_AVAILABLE_WORKERS.into(), "No available workers".into()))
                    }
                    Err(false) => {
                        return Err(Failure::from_plugin(
                            WORKER_DISCONNECTED.into(),
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
                Attempt::Gone if idempotent && tried.is_empty() => {
                    tracing::info!(worker = %worker.id, r#type = %envelope.kind, "worker left mid-request; retrying an idempotent request elsewhere");
                    tried.push(worker.id.clone());
                }
                Attempt::Gone => {
                    return Err(Failure::from_plugin(
                        WORKER_DISCONNECTED.into(),
                        format!("worker {} disconnected before answering; {} is not marked idempotent, so it was not retried", worker.id, envelope.kind),
                    ))
                }
            }
        }
    }
}
