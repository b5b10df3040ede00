//! Shadow traffic: a candidate version receives a copy of every live
//! message of its plugin's claims, off the live path, and its replies are
//! compared with the serving version's, never sent to anyone.
//!
//! The route table carries the running [`Shadow`]. After the serving
//! version answered a message, [`Shadow::offer`] queues a copy (the
//! message and the serving reply) on a bounded queue without waiting or
//! waking anyone: when the queue is full the copy is dropped and counted,
//! so a slow candidate never delays a live reply. One thread per shadow
//! ([`Shadow::run`]), at the lowest scheduling priority so it yields to
//! the live path, and within a CPU budget (a share of one
//! core, [`Pacer`]) so that even idle cores it takes do not slow the live
//! path through the caches and cores they share, collects the copies every
//! millisecond,
//! calls the candidate with up to its CPU share of copies at once and
//! compares the two answers as JSON (`{"data": …}` or `{"error": {code,
//! message}}`), ignoring the configured JSON pointers and whatever lies
//! under them.
//!
//! The candidate is contained: its instances reach the host only through
//! [`Effects`], which keeps its kv writes in a scratch overlay (read
//! through to the plugin's real kv, discarded with the shadow), records
//! publishes, sends, room joins, leaves and broadcasts, identity changes,
//! device sends and client calls (counted, the first few kept) and
//! delivers none of them. It has no network and no writable directory.
//! Nothing here takes a lock on the live path: the offer is one count on
//! a line of its thread's own and, when the queue has room, one push on
//! a lock-free queue; the samples' and scratch kv's locks are
//! taken by the shadow's own task and the status reader.

use crate::plugins::runtime::{PluginVersion, Services};
use crate::plugins::versions::Histogram;
use crate::services::{CallFuture, ClientCalls, ClientRef, EventSink, KvError, KvStore, KvWrite, Member, Rooms};
use crate::sync::lock;
use crate::wire::{Envelope, ErrorCode, Failure, Origin};
use futures_util::stream::{FuturesUnordered, StreamExt};
use serde_json::value::RawValue;
use serde_json::{json, Map, Value};
use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use crossbeam_queue::ArrayQueue;
use tokio_util::sync::CancellationToken;

/// Copies waiting for the candidate; past this, copies are dropped.
pub const QUEUE: usize = 256;
/// How often the shadow's thread looks for copies when it has room for
/// more: the live path queues them without waking it.
const POLL: Duration = Duration::from_millis(1);
/// The span over which the shadow's thread keeps to its CPU budget.
const BUDGET_WINDOW: Duration = Duration::from_millis(20);
/// Differing samples kept (the first ones).
pub const MAX_SAMPLES: usize = 20;
/// Differing paths reported per sample.
pub const MAX_PATHS: usize = 32;
/// Recorded side effects kept as samples (the first ones).
pub const MAX_EFFECT_SAMPLES: usize = 20;
/// Keys the scratch kv holds at most.
pub const MAX_SCRATCH_KEYS: usize = 10_000;
/// The largest value the scratch kv holds.
pub const MAX_SCRATCH_VALUE: usize = 64 * 1024;

/// One live message and the serving version's answer to it.
struct Copy {
    envelope: Envelope,
    origin: Origin,
    serving: Result<Box<RawValue>, Failure>,
    serving_latency: Duration,
}

/// One message the two versions answered differently.
#[derive(Debug, Clone)]
struct Sample {
    kind: String,
    serving: Value,
    candidate: Value,
    differing_paths: Vec<String>,
}

pub struct Shadow {
    /// The version whose replies the candidate's are compared with.
    pub serving: Arc<PluginVersion>,
    pub candidate: Arc<PluginVersion>,
    /// JSON pointers left out of the comparison.
    pub ignore: Vec<String>,
    /// The share of one core the shadow's thread may use.
    pub cpu_budget: f64,
    copies: Arc<ArrayQueue<Copy>>,
    compared: AtomicU64,
    matched: AtomicU64,
    /// Messages offered, and copies the shadow's thread took: what was
    /// offered and is neither taken nor queued was dropped.
    offered: Offered,
    taken: AtomicU64,
    /// Copies whose candidate call ended in an error.
    candidate_errors: AtomicU64,
    serving_latency: Histogram,
    candidate_latency: Histogram,
    samples: Mutex<Vec<Sample>>,
    /// What the candidate tried to do outside itself.
    pub effects: Arc<Effects>,
    /// Set when the shadow stopped: why.
    stopped: std::sync::OnceLock<String>,
}

impl std::fmt::Debug for Shadow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shadow").field("serving", &self.serving).field("candidate", &self.candidate).finish()
    }
}

/// The copies a shadow's task reads.
pub struct Copies(Arc<ArrayQueue<Copy>>);

impl Shadow {
    /// A shadow of `serving` by `candidate` (prepared with `effects`'
    /// services) using at most `cpu_budget` of one core, and the queue its
    /// task reads.
    pub fn new(
        serving: Arc<PluginVersion>,
        candidate: Arc<PluginVersion>,
        ignore: Vec<String>,
        cpu_budget: f64,
        effects: Arc<Effects>,
    ) -> (Arc<Shadow>, Copies) {
        let copies = Arc::new(ArrayQueue::new(QUEUE));
        let queue = Arc::clone(&copies);
        let shadow = Shadow {
            serving,
            candidate,
            ignore,
            cpu_budget,
            copies,
            compared: AtomicU64::new(0),
            matched: AtomicU64::new(0),
            offered: Offered::default(),
            taken: AtomicU64::new(0),
            candidate_errors: AtomicU64::new(0),
            serving_latency: Histogram::default(),
            candidate_latency: Histogram::default(),
            samples: Mutex::new(Vec::new()),
            effects,
            stopped: std::sync::OnceLock::new(),
        };
        (Arc::new(shadow), Copies(queue))
    }

    /// Queue a copy of a message the serving version answered, without
    /// waiting: dropped and counted when the candidate is behind.
    pub fn offer(&self, envelope: &Envelope, origin: &Origin, serving: Result<&RawValue, &Failure>, serving_latency: Duration) {
        // Counted on this thread's own line. A full queue costs no copy,
        // and no write to a line another thread reads. Pushing wakes no
        // one: the shadow's thread looks for copies every `POLL`, so the
        // live path makes no system call for it.
        self.offered.add();
        if self.copies.is_full() {
            return;
        }
        let copy = Copy {
            envelope: envelope.clone(),
            origin: origin.clone(),
            serving: serving.map(ToOwned::to_owned).map_err(Clone::clone),
            serving_latency,
        };
        // A push that lost the race for the last place is a drop too.
        let _ = self.copies.push(copy);
    }

    /// Copies dropped so far: offered, but neither taken by the shadow's
    /// thread nor waiting in its queue.
    pub fn dropped(&self) -> u64 {
        let kept = self.taken.load(Ordering::Relaxed) + self.copies.len() as u64;
        self.offered.total().saturating_sub(kept)
    }

    /// Why the shadow stopped, once it has.
    pub fn stopped(&self) -> Option<&str> {
        self.stopped.get().map(String::as_str)
    }

    pub(crate) fn mark_stopped(&self, reason: String) {
        let _ = self.stopped.set(reason);
    }

    /// Call the candidate with each copy and compare, up to its CPU share
    /// of copies at once, until `stop`: on a thread of its own at the
    /// lowest scheduling priority and within its CPU budget, so the
    /// candidate yields to the live path; when it falls behind, the queue fills and copies
    /// are dropped and counted. Returns when that thread has ended.
    pub async fn run(self: Arc<Self>, copies: Copies, stop: CancellationToken) {
        let (ended, done) = tokio::sync::oneshot::channel::<()>();
        let shadow = Arc::clone(&self);
        let spawned = std::thread::Builder::new().name(format!("shadow-{}", self.serving.name())).spawn(move || {
            lowest_priority();
            match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(runtime) => runtime.block_on(shadow.compare_copies(copies, stop)),
                Err(e) => shadow.mark_stopped(format!("the shadow's thread could not start a runtime: {e}")),
            }
            drop(ended);
        });
        if let Err(e) = spawned {
            self.mark_stopped(format!("the shadow's thread could not start: {e}"));
            return;
        }
        let _ = done.await;
    }

    async fn compare_copies(&self, copies: Copies, stop: CancellationToken) {
        let Copies(queue) = copies;
        let at_once = self.candidate.cpu.size().max(1);
        let mut running = FuturesUnordered::new();
        let mut pacer = Pacer::new(self.cpu_budget);
        loop {
            // Over budget: no new copy until the window's rest is over.
            let rest = pacer.rest();
            if rest.is_none() {
                while running.len() < at_once {
                    match queue.pop() {
                        Some(copy) => {
                            self.taken.fetch_add(1, Ordering::Relaxed);
                            running.push(self.compare(copy));
                        }
                        None => break,
                    }
                }
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                Some(()) = running.next(), if !running.is_empty() => {}
                _ = tokio::time::sleep(rest.unwrap_or(POLL)), if rest.is_some() || running.len() < at_once => {}
            }
        }
    }

    async fn compare(&self, copy: Copy) {
        let started = Instant::now();
        let answer = self.candidate.call(&copy.envelope, &copy.origin).await;
        self.candidate_latency.record(started.elapsed());
        self.serving_latency.record(copy.serving_latency);
        if answer.is_err() {
            self.candidate_errors.fetch_add(1, Ordering::Relaxed);
        }
        let serving = document(copy.serving.as_deref());
        let candidate = document(answer.as_deref());
        let mut paths = Vec::new();
        diff(Some(&serving), Some(&candidate), &mut String::new(), &self.ignore, &mut paths);
        if paths.is_empty() {
            self.matched.fetch_add(1, Ordering::Relaxed);
        } else {
            let mut samples = lock(&self.samples);
            if samples.len() < MAX_SAMPLES {
                samples.push(Sample { kind: copy.envelope.kind.clone(), serving, candidate, differing_paths: paths });
            }
        }
        // Counted last: a reader that sees `compared` sees the sample.
        self.compared.fetch_add(1, Ordering::Release);
    }

    /// `GET /api/plugins/{name}/shadow`, and the `shadow_stopped` event.
    pub fn status(&self) -> Value {
        let compared = self.compared.load(Ordering::Acquire);
        let matched = self.matched.load(Ordering::Relaxed);
        let samples: Vec<Value> = lock(&self.samples)
            .iter()
            .map(|s| json!({ "type": s.kind, "serving": s.serving, "candidate": s.candidate, "differing_paths": s.differing_paths }))
            .collect();
        let latency = |h: &Histogram| {
            let figures = h.p50_p99();
            json!({
                "p50_ms": figures.map(|(p50, _)| f64::from(p50) / 1000.0),
                "p99_ms": figures.map(|(_, p99)| f64::from(p99) / 1000.0),
            })
        };
        json!({
            "plugin": self.serving.name(),
            "serving": { "version": self.serving.version(), "hash": self.serving.hash },
            "candidate": { "version": self.candidate.version(), "hash": self.candidate.hash },
            "ignore": self.ignore,
            "cpu_budget": self.cpu_budget,
            "state": if self.stopped().is_some() { "stopped" } else { "running" },
            "reason": self.stopped(),
            "compared": compared,
            "matched": matched,
            "match_rate": if compared == 0 { Value::Null } else { json!(matched as f64 / compared as f64) },
            "dropped": self.dropped(),
            "candidate_errors": self.candidate_errors.load(Ordering::Relaxed),
            "samples": samples,
            "latency": { "serving": latency(&self.serving_latency), "candidate": latency(&self.candidate_latency) },
            "effects": self.effects.status(),
        })
    }
}

/// Lower the calling thread's scheduling priority to the lowest (nice
/// 19): on Linux the nice value is per thread, so only the shadow's thread
/// yields to the rest of the host. Not the idle class (`SCHED_IDLE`): a
/// thread there that is preempted while it holds a lock the live path
/// needs (the allocator's, a store's) runs again only when a core is idle,
/// and measured, it slowed the live path more than nice 19 did. Elsewhere,
/// or if refused, it keeps its priority (the budget and the bounded queue
/// still hold it back).
fn lowest_priority() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: setpriority has no memory effects; `who` 0 is this thread.
        let refused = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 19) } != 0;
        if refused {
            tracing::debug!("the shadow thread keeps its priority: {}", std::io::Error::last_os_error());
        }
    }
}

/// A count of offered messages that the live path's threads add to
/// without sharing a cache line: one counter per slot, each on a line of
/// its own, a thread's slot picked once; read by summing.
#[derive(Default)]
struct Offered {
    slots: [Padded; OFFERED_SLOTS],
}

const OFFERED_SLOTS: usize = 16;

#[derive(Default)]
#[repr(align(128))]
struct Padded(AtomicU64);

impl Offered {
    fn add(&self) {
        thread_local! {
            static SLOT: usize = {
                static NEXT: AtomicU64 = AtomicU64::new(0);
                NEXT.fetch_add(1, Ordering::Relaxed) as usize % OFFERED_SLOTS
            };
        }
        let slot = SLOT.with(|slot| *slot);
        self.slots[slot].0.fetch_add(1, Ordering::Relaxed);
    }

    fn total(&self) -> u64 {
        self.slots.iter().map(|slot| slot.0.load(Ordering::Relaxed)).sum()
    }
}

/// Keeps a thread to a share of one core: over each [`BUDGET_WINDOW`], once
/// the thread has used `budget` of it in CPU time, it rests for the rest of
/// the window. Counts the thread's own CPU time where the platform gives it
/// (`CLOCK_THREAD_CPUTIME_ID`); elsewhere it does not hold the thread back.
struct Pacer {
    budget: f64,
    window_start: Instant,
    cpu_at_start: Option<Duration>,
}

impl Pacer {
    fn new(budget: f64) -> Pacer {
        Pacer { budget, window_start: Instant::now(), cpu_at_start: thread_cpu_time() }
    }

    /// How long to rest before taking more work, if the window's budget
    /// is spent; a window that has passed starts a new one.
    fn rest(&mut self) -> Option<Duration> {
        let elapsed = self.window_start.elapsed();
        let (Some(start), Some(now)) = (self.cpu_at_start, thread_cpu_time()) else { return None };
        if elapsed >= BUDGET_WINDOW {
            self.window_start = Instant::now();
            self.cpu_at_start = Some(now);
            return None;
        }
        (now.saturating_sub(start) >= BUDGET_WINDOW.mul_f64(self.budget)).then(|| BUDGET_WINDOW - elapsed)
    }
}

/// CPU time the calling thread has used.
fn thread_cpu_time() -> Option<Duration> {
    #[cfg(any(target_os = "linux", target_os = "macos", target_os = "freebsd"))]
    {
        let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: `now` is a valid timespec for the call to fill.
        let read = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) } == 0;
        read.then(|| Duration::new(now.tv_sec as u64, now.tv_nsec as u32))
    }
    #[cfg(not(any(target_os = "linux", target_os = "macos", target_os = "freebsd")))]
    {
        None
    }
}

/// Check the ignored paths: JSON pointers (`""` or starting with `/`).
pub fn check_ignore(paths: &[String]) -> Result<(), String> {
    match paths.iter().find(|p| !p.is_empty() && !p.starts_with('/')) {
        Some(bad) => Err(format!("ignored path {bad:?} is not a JSON pointer (like /data/time)")),
        None => Ok(()),
    }
}

/// What is compared of one answer.
fn document(answer: Result<&RawValue, &Failure>) -> Value {
    match answer {
        Ok(data) => json!({ "data": serde_json::from_str::<Value>(data.get()).unwrap_or(Value::Null) }),
        Err(failure) => json!({ "error": { "code": failure.code, "message": failure.message } }),
    }
}

fn ignored(path: &str, ignore: &[String]) -> bool {
    ignore.iter().any(|p| path == p || (path.starts_with(p.as_str()) && path[p.len()..].starts_with('/')))
}

/// The JSON pointers at which `a` and `b` differ (a key or element on one
/// side only is a difference at its path), leaving out `ignore`d paths,
/// at most [`MAX_PATHS`].
fn diff(a: Option<&Value>, b: Option<&Value>, path: &mut String, ignore: &[String], out: &mut Vec<String>) {
    if out.len() >= MAX_PATHS || ignored(path, ignore) {
        return;
    }
    let descend = |path: &mut String, step: &str, a: Option<&Value>, b: Option<&Value>, out: &mut Vec<String>| {
        let len = path.len();
        path.push('/');
        path.push_str(&step.replace('~', "~0").replace('/', "~1"));
        diff(a, b, path, ignore, out);
        path.truncate(len);
    };
    match (a, b) {
        (Some(Value::Object(x)), Some(Value::Object(y))) => {
            let keys: Vec<&String> = x.keys().chain(y.keys().filter(|k| !x.contains_key(*k))).collect();
            for key in keys {
                descend(path, key, x.get(key), y.get(key), out);
            }
        }
        (Some(Value::Array(x)), Some(Value::Array(y))) => {
            for i in 0..x.len().max(y.len()) {
                descend(path, &i.to_string(), x.get(i), y.get(i), out);
            }
        }
        (a, b) if a != b => out.push(path.clone()),
        _ => {}
    }
}

/// A shadow candidate's way out: kv in a scratch overlay, every other
/// effect recorded and not delivered. Reads (room members, identities,
/// host figures, the real kv under the overlay) pass through.
pub struct Effects {
    real: Services,
    /// Keys the candidate wrote: `None` for a delete.
    scratch: Mutex<HashMap<String, Option<String>>>,
    counts: [AtomicU64; Effect::ALL.len()],
    samples: Mutex<Vec<Value>>,
}

/// A side effect a shadow candidate attempted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    KvWrite,
    KvDelete,
    Publish,
    Send,
    RoomJoin,
    RoomLeave,
    RoomBroadcast,
    IdentitySet,
    DeviceSend,
    ClientCall,
}

impl Effect {
    const ALL: [Effect; 10] = [
        Effect::KvWrite,
        Effect::KvDelete,
        Effect::Publish,
        Effect::Send,
        Effect::RoomJoin,
        Effect::RoomLeave,
        Effect::RoomBroadcast,
        Effect::IdentitySet,
        Effect::DeviceSend,
        Effect::ClientCall,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Effect::KvWrite => "kv_set",
            Effect::KvDelete => "kv_delete",
            Effect::Publish => "publish",
            Effect::Send => "send",
            Effect::RoomJoin => "room_join",
            Effect::RoomLeave => "room_leave",
            Effect::RoomBroadcast => "room_broadcast",
            Effect::IdentitySet => "identity_set",
            Effect::DeviceSend => "send_to_device",
            Effect::ClientCall => "client_call",
        }
    }
}

impl Effects {
    /// Effects reading through `real`.
    pub fn new(real: Services) -> Arc<Effects> {
        Arc::new(Effects {
            real,
            scratch: Mutex::new(HashMap::new()),
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
            samples: Mutex::new(Vec::new()),
        })
    }

    /// The services a contained candidate is prepared with.
    pub fn services(self: &Arc<Self>) -> Services {
        Services {
            events: Arc::clone(self) as Arc<dyn EventSink>,
            kv: Arc::clone(self) as Arc<dyn KvStore>,
            rooms: Arc::clone(self) as Arc<dyn Rooms>,
            calls: Arc::clone(self) as Arc<dyn ClientCalls>,
            system: Arc::clone(&self.real.system),
        }
    }

    fn record(&self, effect: Effect, detail: impl FnOnce() -> Value) {
        let index = Effect::ALL.iter().position(|e| *e == effect).unwrap_or_default();
        self.counts[index].fetch_add(1, Ordering::Relaxed);
        let mut samples = lock(&self.samples);
        if samples.len() < MAX_EFFECT_SAMPLES {
            let mut sample = detail();
            if let Value::Object(fields) = &mut sample {
                fields.insert("effect".into(), json!(effect.as_str()));
            }
            samples.push(sample);
        }
    }

    /// Recorded effects by kind, and the first samples.
    pub fn status(&self) -> Value {
        let counts: Map<String, Value> =
            Effect::ALL.iter().zip(&self.counts).map(|(e, n)| (e.as_str().to_owned(), json!(n.load(Ordering::Relaxed)))).collect();
        json!({ "counts": counts, "samples": *lock(&self.samples), "scratch_keys": lock(&self.scratch).len() })
    }

    /// How many times the candidate attempted `effect`.
    pub fn count(&self, effect: Effect) -> u64 {
        Effect::ALL.iter().position(|e| *e == effect).map_or(0, |i| self.counts[i].load(Ordering::Relaxed))
    }
}

fn raw(value: &RawValue) -> Value {
    serde_json::from_str(value.get()).unwrap_or(Value::Null)
}

impl EventSink for Effects {
    fn publish(&self, topic: &str, data: &RawValue, _source: &str) -> Result<usize, Failure> {
        self.record(Effect::Publish, || json!({ "topic": topic, "data": raw(data) }));
        Ok(0)
    }

    fn send(&self, connection_id: &str, message: &RawValue) -> Result<(), Failure> {
        self.record(Effect::Send, || json!({ "connection_id": connection_id, "message": raw(message) }));
        Ok(())
    }
}

impl KvStore for Effects {
    fn get(&self, plugin: &str, key: &str) -> Option<String> {
        match lock(&self.scratch).get(key) {
            Some(written) => written.clone(),
            None => self.real.kv.get(plugin, key),
        }
    }

    fn set(&self, _plugin: &str, key: &str, value: String) -> KvWrite {
        let refused = if value.len() > MAX_SCRATCH_VALUE {
            Some(KvError::ValueTooLarge { len: value.len(), limit: MAX_SCRATCH_VALUE })
        } else {
            let mut scratch = lock(&self.scratch);
            if scratch.len() >= MAX_SCRATCH_KEYS && !scratch.contains_key(key) {
                Some(KvError::TooManyKeys { limit: MAX_SCRATCH_KEYS })
            } else {
                self.record(Effect::KvWrite, || json!({ "key": key, "value": value }));
                scratch.insert(key.to_owned(), Some(value));
                None
            }
        };
        Box::pin(async move { refused.map_or(Ok(()), Err) })
    }

    fn delete(&self, _plugin: &str, key: &str) -> KvWrite {
        self.record(Effect::KvDelete, || json!({ "key": key }));
        let mut scratch = lock(&self.scratch);
        if scratch.len() < MAX_SCRATCH_KEYS || scratch.contains_key(key) {
            scratch.insert(key.to_owned(), None);
        }
        Box::pin(async { Ok(()) })
    }

    fn keys(&self, plugin: &str, prefix: &str) -> Vec<String> {
        let scratch = lock(&self.scratch);
        let mut keys: BTreeSet<String> = self.real.kv.keys(plugin, prefix).into_iter().filter(|k| !scratch.contains_key(k)).collect();
        keys.extend(scratch.iter().filter(|(k, v)| v.is_some() && k.starts_with(prefix)).map(|(k, _)| k.clone()));
        keys.into_iter().collect()
    }
}

impl Rooms for Effects {
    fn join(&self, connection_id: &str, room: &str) -> Result<(), Failure> {
        self.record(Effect::RoomJoin, || json!({ "connection_id": connection_id, "room": room }));
        Ok(())
    }

    fn leave(&self, connection_id: &str) {
        self.record(Effect::RoomLeave, || json!({ "connection_id": connection_id }));
    }

    fn room_of(&self, connection_id: &str) -> Option<String> {
        self.real.rooms.room_of(connection_id)
    }

    fn members(&self, room: &str) -> Vec<Member> {
        self.real.rooms.members(room)
    }

    fn broadcast(&self, room: &str, message: &RawValue, exclude: Option<&str>) -> Result<u32, Failure> {
        self.record(Effect::RoomBroadcast, || json!({ "room": room, "message": raw(message), "exclude": exclude }));
        // What a delivered broadcast would have answered.
        let members = self.real.rooms.members(room);
        Ok(members.iter().filter(|m| Some(m.connection_id.as_str()) != exclude).count() as u32)
    }

    fn set_identity(&self, connection_id: &str, device_id: &str, identity: Option<String>) -> Result<(), Failure> {
        self.record(Effect::IdentitySet, || json!({ "connection_id": connection_id, "device_id": device_id, "identity": identity }));
        Ok(())
    }

    fn identity(&self, connection_id: &str) -> Option<Member> {
        self.real.rooms.identity(connection_id)
    }

    fn send_to_device(&self, device_id: &str, message: &RawValue) -> Result<(), Failure> {
        self.record(Effect::DeviceSend, || json!({ "device_id": device_id, "message": raw(message) }));
        Ok(())
    }
}

impl ClientCalls for Effects {
    fn call<'a>(&'a self, target: &'a ClientRef, action: &'a str, params: &'a RawValue, _timeout: Duration) -> CallFuture<'a> {
        self.record(Effect::ClientCall, || json!({ "target": target.to_string(), "action": action, "params": raw(params) }));
        Box::pin(async {
            Err(Failure::new(ErrorCode::CapabilityDenied, "a shadow candidate's calls to clients are recorded, not delivered"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(a: Value, b: Value, ignore: &[&str]) -> Vec<String> {
        let ignore: Vec<String> = ignore.iter().map(|s| s.to_string()).collect();
        let mut out = Vec::new();
        diff(Some(&a), Some(&b), &mut String::new(), &ignore, &mut out);
        out
    }

    #[test]
    fn differences_are_json_pointers_and_ignored_paths_cover_what_lies_under_them() {
        assert!(paths(json!({"a": 1, "b": [1, 2]}), json!({"b": [1, 2], "a": 1}), &[]).is_empty(), "key order is not a difference");
        assert_eq!(paths(json!({"data": {"sum": 3, "t": 1}}), json!({"data": {"sum": 4, "t": 2}}), &["/data/t"]), ["/data/sum"]);
        assert_eq!(paths(json!({"a": [1, 2]}), json!({"a": [1, 2, 3]}), &[]), ["/a/2"]);
        assert_eq!(paths(json!({"a": 1}), json!({"b": 1}), &[]), ["/a", "/b"], "a key on one side only");
        assert_eq!(paths(json!({"a/b": 1, "c~": 1}), json!({"a/b": 2, "c~": 2}), &[]), ["/a~1b", "/c~0"]);
        assert!(paths(json!({"data": {"x": {"y": 1}}}), json!({"data": {"x": {"y": 2}}}), &["/data/x"]).is_empty());
        assert_eq!(paths(json!({"data": {"xy": 1}}), json!({"data": {"xy": 2}}), &["/data/x"]), ["/data/xy"], "a pointer, not a prefix");
        assert_eq!(paths(json!(1), json!("1"), &[]), [""], "the root's pointer is empty");
        assert!(paths(json!(1), json!(2), &[""]).is_empty(), "ignoring the root ignores everything");
    }

    #[test]
    fn ignored_paths_must_be_pointers() {
        assert!(check_ignore(&["/data/time".into(), "".into()]).is_ok());
        assert!(check_ignore(&["data.time".into()]).is_err());
    }
}
