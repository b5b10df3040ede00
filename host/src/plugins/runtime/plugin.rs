//! One loaded plugin version: its manifest, its `InstancePre`, and a pool of
//! warm instances that calls borrow one at a time.
//!
//! A wasmtime `Store` is single-threaded, so concurrency is instances: a
//! call takes an idle instance (or instantiates one, up to the cap), runs,
//! and gives it back unless it trapped. A Python guest costs ~0.5 ms to
//! instantiate; a warm call a few microseconds.

use super::cache::CacheOutcome;
use super::world::{handle, v0_1, v0_2, v0_3};
use super::{parse_claims, Compiled, LoadError, PluginIdentity, PluginState, Runtime, Sandbox};
use crate::wire::{Envelope, ErrorCode, Failure, Origin, Payload};
use crate::routing::router::Claim;
use crate::plugins::breaker::Breaker;
use crate::plugins::share::CpuShare;
use crossbeam_queue::ArrayQueue;
use serde_json::value::RawValue;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::Semaphore;
use wasmtime::component::{ComponentType, Func, Instance as Component, InstancePre, Lower, TypedFunc};
use wasmtime::{Store, Trap};
use crate::plugins::versions::{CodeCounts, Histogram};

/// Counters a plugin version keeps; read by status, metrics and the
/// versions list. Nothing here takes a lock.
#[derive(Debug, Default)]
pub struct PluginStats {
    pub calls: AtomicU64,
    pub instantiations: AtomicU64,
    /// Calls that ended in a plugin failure (the plugin's own code).
    pub failures: AtomicU64,
    pub traps: AtomicU64,
    pub timeouts: AtomicU64,
    /// Latencies of every `handle` call.
    pub latencies: Histogram,
    /// Calls that did not end in a reply, by code.
    pub errors_by_code: CodeCounts,
}

impl PluginStats {
    /// Calls that did not end in a reply.
    pub fn errors(&self) -> u64 {
        [&self.failures, &self.traps, &self.timeouts].iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }
}

/// Which contract a component was built against, and where its exports
/// are; each optional export is found (or not) on its own.
enum Contract {
    V0_1(v0_1::handler::GuestIndices),
    V0_2 { handler: v0_2::handler::GuestIndices, lifecycle: Option<v0_2::lifecycle::GuestIndices> },
    V0_3 {
        handler: v0_3::handler::GuestIndices,
        lifecycle: Option<v0_3::lifecycle::GuestIndices>,
        frames: Option<v0_3::frames::GuestIndices>,
        migration: Option<v0_3::migration::GuestIndices>,
    },
}

impl Contract {
    /// The newest contract the component implements: 0.3, then 0.2, then 0.1.
    fn detect(pre: &InstancePre<PluginState>) -> Result<Contract, LoadError> {
        if let Ok(handler) = v0_3::handler::GuestIndices::new(pre) {
            return Ok(Contract::V0_3 {
                handler,
                lifecycle: v0_3::lifecycle::GuestIndices::new(pre).ok(),
                frames: v0_3::frames::GuestIndices::new(pre).ok(),
                migration: v0_3::migration::GuestIndices::new(pre).ok(),
            });
        }
        if let Ok(handler) = v0_2::handler::GuestIndices::new(pre) {
            return Ok(Contract::V0_2 { handler, lifecycle: v0_2::lifecycle::GuestIndices::new(pre).ok() });
        }
        let handler = v0_1::handler::GuestIndices::new(pre).map_err(|e| LoadError::WrongWorld(format!("{e:#}")))?;
        Ok(Contract::V0_1(handler))
    }

    fn version(&self) -> &'static str {
        match self {
            Contract::V0_1(_) => "0.1.0",
            Contract::V0_2 { .. } => "0.2.0",
            Contract::V0_3 { .. } => "0.3.0",
        }
    }

    fn has_hooks(&self) -> bool {
        matches!(self, Contract::V0_2 { lifecycle: Some(_), .. } | Contract::V0_3 { lifecycle: Some(_), .. })
    }

    /// `component`'s `handle`, its type checked here, once an instance,
    /// against the borrowed records it is called with ([`handle`]).
    fn load_handle(&self, store: &mut Store<PluginState>, component: &Component) -> wasmtime::Result<Func> {
        let interface = format!("switchyard:plugin/handler@{}", self.version());
        let index = component
            .get_export_index(&mut *store, None, &interface)
            .and_then(|interface| component.get_export_index(&mut *store, Some(&interface), "handle"))
            .ok_or_else(|| wasmtime::format_err!("no `handle` export in {interface}"))?;
        let checked = match self {
            Contract::V0_1(_) => *component.get_typed_func::<(handle::MessageV1<'static>,), handle::Answer>(&mut *store, &index)?.func(),
            _ => *component.get_typed_func::<(handle::Message<'static>,), handle::Answer>(&mut *store, &index)?.func(),
        };
        Ok(checked)
    }
}

/// A live instance's exports, per contract.
enum Exports {
    V0_1(v0_1::handler::Guest),
    V0_2 { handler: v0_2::handler::Guest, lifecycle: Option<v0_2::lifecycle::Guest> },
    V0_3 {
        handler: v0_3::handler::Guest,
        lifecycle: Option<v0_3::lifecycle::Guest>,
        frames: Option<v0_3::frames::Guest>,
        migration: Option<v0_3::migration::Guest>,
    },
}

struct Instance {
    store: Store<PluginState>,
    exports: Exports,
    /// `handle`, typed when the instance was made (see [`Contract::load_handle`]).
    handle: Func,
}

/// One operation on an instance.
enum Call<'a> {
    Manifest,
    Handle(&'a Envelope, &'a Origin),
    Tick,
    ConnectionOpened(&'a str),
    ConnectionClosed(&'a str),
    /// One frame of an `opaque` endpoint (0.3's `frames`).
    Frame(&'a Origin, Payload),
    /// 0.3's `migrate`, with the outgoing version's version string.
    Migrate(&'a str),
}

/// What an operation returned, before faults are sorted out.
enum Answer {
    Manifest(Manifest),
    Handled(Result<String, (String, String)>),
    Ticked(Result<(), (String, String)>),
    Framed(Result<Option<Payload>, (String, String)>),
    Migrated(Result<(), (String, String)>),
    Done,
}

/// A manifest, whatever the contract version.
struct Manifest {
    name: String,
    version: String,
    description: String,
    claims: Vec<String>,
    tick_interval_ms: Option<u32>,
}

pub struct PluginVersion {
    identity: Arc<PluginIdentity>,
    pub description: String,
    pub claims: Vec<Claim>,
    /// How often `lifecycle.tick` runs, when the plugin has the hook.
    pub tick_interval: Option<Duration>,
    /// `0.1.0`, `0.2.0` or `0.3.0`.
    pub contract: &'static str,
    /// sha256 of the component's bytes.
    pub hash: String,
    /// The component's bytes, written back to the plugin folder when a
    /// rollback brings this version back.
    pub source: Arc<[u8]>,
    pub loaded_at: SystemTime,
    /// Whether the code was compiled for this load or taken from the cache.
    pub compiled: CacheOutcome,
    pub stats: PluginStats,
    /// Fails calls fast while the plugin keeps timing out or trapping.
    pub breaker: Breaker,
    /// How many calls may execute guest code at once.
    pub cpu: CpuShare,
    pre: InstancePre<PluginState>,
    exports: Contract,
    idle: ArrayQueue<Instance>,
    permits: Semaphore,
    runtime: Arc<Runtime>,
    /// What its instances reach the host through.
    sandbox: Sandbox,
}

impl std::fmt::Debug for PluginVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginVersion").field("name", &self.name()).field("version", &self.version()).field("hash", &self.hash).finish()
    }
}

impl PluginVersion {
    pub(super) async fn prepare(runtime: Arc<Runtime>, compiled: Compiled, sandbox: Sandbox) -> Result<Arc<Self>, LoadError> {
        let pre = runtime.linker.instantiate_pre(&compiled.component).map_err(|e| LoadError::WrongWorld(format!("{e:#}")))?;
        let exports = Contract::detect(&pre)?;
        let loading = Arc::new(PluginIdentity { name: String::new(), version: String::new() });
        let deadline = Instant::now() + runtime.deadline();
        let mut instance = instantiate(&runtime, &sandbox, &pre, &exports, loading, deadline).await.map_err(|e| LoadError::Instantiate(format!("{e:#}")))?;
        let manifest = match instance.invoke(Call::Manifest).await {
            Ok(Answer::Manifest(manifest)) => manifest,
            Ok(_) => return Err(LoadError::Manifest("unexpected answer".into())),
            Err(e) => return Err(LoadError::Manifest(format!("{e:#}"))),
        };
        check_name(&manifest.name)?;
        if manifest.version.trim().is_empty() {
            return Err(LoadError::InvalidManifest(format!("plugin {} has an empty version", manifest.name)));
        }
        let claims = parse_claims(&manifest.claims)?;
        let has_hooks = exports.has_hooks();
        let tick_interval = manifest.tick_interval_ms.filter(|ms| *ms > 0 && has_hooks).map(|ms| Duration::from_millis(ms.into()));

        let identity = Arc::new(PluginIdentity { name: manifest.name, version: manifest.version });
        let max = runtime.limits.max_instances.max(1);
        let breaker_policy = runtime.limits.breaker.policy_for(&identity.name);
        let version = PluginVersion {
            breaker: Breaker::new(breaker_policy, &identity.name, &identity.version, Arc::clone(&runtime.services.events)),
            cpu: CpuShare::new(runtime.limits.cpu.share_of(&identity.name), runtime.workers, max),
            identity: Arc::clone(&identity),
            description: manifest.description,
            claims,
            tick_interval,
            contract: exports.version(),
            hash: compiled.hash,
            source: compiled.source,
            loaded_at: SystemTime::now(),
            compiled: compiled.cache,
            stats: PluginStats::default(),
            pre,
            exports,
            idle: ArrayQueue::new(max),
            permits: Semaphore::new(max),
            runtime,
            sandbox,
        };
        version.stats.instantiations.fetch_add(1, Ordering::Relaxed);
        // The loading instance had no grants or settings; keep it warm only if none are due.
        let runtime = &version.runtime;
        if !runtime.grants.contains_key(version.name()) && !runtime.settings.contains_key(version.name()) {
            instance.store.data_mut().set_identity(identity);
            let _ = version.idle.push(instance);
        }
        Ok(Arc::new(version))
    }

    pub fn name(&self) -> &str {
        &self.identity.name
    }

    pub fn version(&self) -> &str {
        &self.identity.version
    }

    /// Warm instances ready for a call.
    pub fn idle_instances(&self) -> usize {
        self.idle.len()
    }

    /// Whether the plugin exports the lifecycle hooks.
    pub fn has_hooks(&self) -> bool {
        self.exports.has_hooks()
    }

    /// Whether the plugin exports `frames` (0.3), for opaque endpoints.
    pub fn has_frames(&self) -> bool {
        matches!(self.exports, Contract::V0_3 { frames: Some(_), .. })
    }

    /// Whether the plugin exports `migration` (0.3).
    pub fn has_migration(&self) -> bool {
        matches!(self.exports, Contract::V0_3 { migration: Some(_), .. })
    }

    /// Run `handle` on one instance under the deadline; the reply's data as JSON.
    pub async fn call(&self, envelope: &Envelope, origin: &Origin) -> Result<Box<RawValue>, Failure> {
        self.stats.calls.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        let answer = self.run(Call::Handle(envelope, origin), Some(&envelope.id)).await;
        self.stats.latencies.record(started.elapsed());
        let outcome = match answer {
            Err(failure) => Err(failure),
            Ok(Answer::Handled(Ok(json))) => RawValue::from_string(json).map_err(|e| {
                self.stats.failures.fetch_add(1, Ordering::Relaxed);
                Failure::new(ErrorCode::PluginFailed, format!("plugin {} replied with invalid JSON: {e}", self.name()))
            }),
            Ok(Answer::Handled(Err((code, message)))) => {
                self.stats.failures.fetch_add(1, Ordering::Relaxed);
                Err(Failure::from_plugin(code, message))
            }
            Ok(_) => Err(Failure::new(ErrorCode::Internal, "unexpected answer from handle")),
        };
        if let Err(failure) = &outcome {
            self.stats.errors_by_code.record(&failure.code);
        }
        outcome
    }

    /// Run the `migrate` export (0.3), if the plugin has it, with the
    /// version string of the version it replaces. `Ok(false)`: no export.
    pub async fn migrate(&self, from_version: &str) -> Result<bool, Failure> {
        if !self.has_migration() {
            return Ok(false);
        }
        match self.run(Call::Migrate(from_version), None).await? {
            Answer::Migrated(Err((code, message))) => Err(Failure::from_plugin(code, message)),
            _ => Ok(true),
        }
    }

    /// Drop the warm instances (a retained version keeps only its compiled
    /// code; a call instantiates again).
    pub fn release_instances(&self) {
        while self.idle.pop().is_some() {}
    }

    /// Answer one frame of an `opaque` endpoint through the plugin's
    /// `frames` export: the frame to send back, if any.
    pub async fn handle_frame(&self, origin: &Origin, frame: Payload) -> Result<Option<Payload>, Failure> {
        if !self.has_frames() {
            return Err(Failure::new(
                ErrorCode::UnknownType,
                format!("plugin {} {} does not export frames (switchyard:plugin@0.3.0)", self.name(), self.version()),
            ));
        }
        self.stats.calls.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        let answer = self.run(Call::Frame(origin, frame), None).await;
        self.stats.latencies.record(started.elapsed());
        match answer? {
            Answer::Framed(Ok(frame)) => Ok(frame),
            Answer::Framed(Err((code, message))) => {
                self.stats.failures.fetch_add(1, Ordering::Relaxed);
                Err(Failure::from_plugin(code, message))
            }
            _ => Err(Failure::new(ErrorCode::Internal, "unexpected answer from handle-frame")),
        }
    }

    /// Run the `tick` hook, if the plugin has it.
    pub async fn tick(&self) -> Result<(), Failure> {
        if !self.has_hooks() {
            return Ok(());
        }
        match self.run(Call::Tick, None).await? {
            Answer::Ticked(Err((code, message))) => Err(Failure::from_plugin(code, message)),
            _ => Ok(()),
        }
    }

    /// Tell the plugin a connection is about to send it its first message.
    pub async fn connection_opened(&self, connection_id: &str) -> Result<(), Failure> {
        if self.has_hooks() {
            self.run(Call::ConnectionOpened(connection_id), None).await?;
        }
        Ok(())
    }

    /// Tell the plugin a connection it served has closed, if it has the hook.
    pub async fn connection_closed(&self, connection_id: &str) -> Result<(), Failure> {
        if self.has_hooks() {
            self.run(Call::ConnectionClosed(connection_id), None).await?;
        }
        Ok(())
    }

    /// Borrow an instance under the concurrency cap and the deadline, run
    /// one operation (for message `message_id`, if it is one), and return
    /// the instance to the pool unless it trapped.
    async fn run(&self, call: Call<'_>, message_id: Option<&str>) -> Result<Answer, Failure> {
        let limits = &self.runtime.limits;
        let deadline = Instant::now() + self.runtime.deadline();
        // A free instance slot is taken without arming a timer.
        let waited = match self.permits.try_acquire() {
            Ok(permit) => Ok(Ok(permit)),
            Err(_) => tokio::time::timeout_at(deadline.into(), self.permits.acquire()).await,
        };
        let _permit = match waited {
            Ok(Ok(permit)) => permit,
            Ok(Err(_)) => return Err(Failure::new(ErrorCode::Internal, "plugin instance pool closed")),
            Err(_) => {
                self.stats.timeouts.fetch_add(1, Ordering::Relaxed);
                return Err(Failure::new(
                    ErrorCode::PluginTimeout,
                    format!("all {} instances of plugin {} stayed busy past the deadline", limits.max_instances, self.name()),
                ));
            }
        };
        let Some(executing) = self.cpu.enter(deadline).await else {
            self.stats.timeouts.fetch_add(1, Ordering::Relaxed);
            return Err(Failure::new(
                ErrorCode::PluginTimeout,
                format!("plugin {} waited past the deadline for its CPU share ({} calls at once)", self.name(), self.cpu.size()),
            ));
        };
        let mut instance = match self.idle.pop() {
            Some(instance) => instance,
            None => {
                self.stats.instantiations.fetch_add(1, Ordering::Relaxed);
                instantiate(&self.runtime, &self.sandbox, &self.pre, &self.exports, Arc::clone(&self.identity), deadline)
                    .await
                    .map_err(|e| self.fault(e, message_id))?
            }
        };
        instance.store.data_mut().deadline = deadline;
        instance.store.data_mut().cpu = Some(executing);
        instance.store.set_epoch_deadline(1);
        match instance.invoke(call).await {
            Ok(answer) => {
                // A finished call leaves the instance sound: keep it warm,
                // its CPU slot given back.
                instance.store.data_mut().cpu = None;
                let _ = self.idle.push(instance);
                Ok(answer)
            }
            Err(error) => Err(self.fault(error, message_id)),
        }
    }

    /// Fill the idle pool up to `count` warm instances (at most the pool's
    /// size), so the first calls routed here do not pay for instantiation:
    /// a canary's candidate starts as warm as the version it is judged
    /// against. Stops at the first instance that cannot be made.
    pub async fn warm(&self, count: usize) -> Result<(), Failure> {
        let deadline = Instant::now() + self.runtime.deadline();
        while self.idle.len() < count.min(self.idle.capacity()) {
            self.stats.instantiations.fetch_add(1, Ordering::Relaxed);
            let instance = instantiate(&self.runtime, &self.sandbox, &self.pre, &self.exports, Arc::clone(&self.identity), deadline)
                .await
                .map_err(|e| self.fault(e, None))?;
            if self.idle.push(instance).is_err() {
                break;
            }
        }
        Ok(())
    }

    /// A warm instance outside the pool, to measure the bare typed call
    /// beside the whole dispatch path. Not for serving.
    #[doc(hidden)]
    pub async fn bare_instance(&self) -> Result<BareInstance, Failure> {
        let deadline = Instant::now() + Duration::from_secs(3600);
        let instance = instantiate(&self.runtime, &self.sandbox, &self.pre, &self.exports, Arc::clone(&self.identity), deadline)
            .await
            .map_err(|e| self.fault(e, None))?;
        Ok(BareInstance { instance })
    }

    /// A trap or host error: the instance is already dropped; say why.
    /// The full error, with the wasm backtrace (the plugin's function names
    /// and offsets), goes to the log under the message id; the client gets
    /// the code and the trap's one-line reason.
    fn fault(&self, error: wasmtime::Error, message_id: Option<&str>) -> Failure {
        if matches!(error.downcast_ref::<Trap>(), Some(Trap::Interrupt)) {
            self.stats.timeouts.fetch_add(1, Ordering::Relaxed);
            let ms = self.runtime.deadline().as_millis();
            return Failure::new(ErrorCode::PluginTimeout, format!("plugin {} ran past its {ms} ms deadline", self.name()));
        }
        self.stats.traps.fetch_add(1, Ordering::Relaxed);
        if let Some(failure) = error.downcast_ref::<Failure>() {
            // A capability ended the call with its own code (a 0.1/0.2 `kv.delete` that could not commit).
            tracing::warn!(plugin = self.name(), version = self.version(), message_id, "call ended by the host: {failure}");
            return failure.clone();
        }
        tracing::warn!(plugin = self.name(), version = self.version(), message_id, "plugin trapped: {error:?}");
        Failure::new(ErrorCode::PluginFailed, format!("plugin {} failed: {}", self.name(), reason(&error)))
    }
}

/// One lifecycle hook on `hooks` (any contract version's `lifecycle`
/// exports, which have the same functions).
macro_rules! lifecycle_call {
    ($hooks:expr, $store:expr, $call:expr) => {
        match $call {
            Call::Tick => Answer::Ticked($hooks.call_tick($store).await?.map_err(|f| (f.code, f.message))),
            Call::ConnectionOpened(id) => {
                $hooks.call_connection_opened($store, id).await?;
                Answer::Done
            }
            Call::ConnectionClosed(id) => {
                $hooks.call_connection_closed($store, id).await?;
                Answer::Done
            }
            _ => unreachable!("only lifecycle calls are passed"),
        }
    };
}

async fn instantiate(
    runtime: &Runtime,
    sandbox: &Sandbox,
    pre: &InstancePre<PluginState>,
    contract: &Contract,
    identity: Arc<PluginIdentity>,
    deadline: Instant,
) -> wasmtime::Result<Instance> {
    let mut store = runtime.new_store(identity, sandbox).map_err(|e| wasmtime::format_err!("cannot set up an instance: {e:#}"))?;
    store.data_mut().deadline = deadline;
    let component: Component = pre.instantiate_async(&mut store).await?;
    let exports = match contract {
        Contract::V0_1(handler) => Exports::V0_1(handler.load(&mut store, &component)?),
        Contract::V0_2 { handler, lifecycle } => Exports::V0_2 {
            handler: handler.load(&mut store, &component)?,
            lifecycle: lifecycle.as_ref().map(|l| l.load(&mut store, &component)).transpose()?,
        },
        Contract::V0_3 { handler, lifecycle, frames, migration } => Exports::V0_3 {
            handler: handler.load(&mut store, &component)?,
            lifecycle: lifecycle.as_ref().map(|l| l.load(&mut store, &component)).transpose()?,
            frames: frames.as_ref().map(|f| f.load(&mut store, &component)).transpose()?,
            migration: migration.as_ref().map(|m| m.load(&mut store, &component)).transpose()?,
        },
    };
    let handle = contract.load_handle(&mut store, &component)?;
    Ok(Instance { store, exports, handle })
}

impl Instance {
    async fn invoke(&mut self, call: Call<'_>) -> wasmtime::Result<Answer> {
        let store = &mut self.store;
        Ok(match (&self.exports, call) {
            (Exports::V0_1(handler), Call::Manifest) => {
                let m = handler.call_manifest(store).await?;
                Answer::Manifest(Manifest { name: m.name, version: m.version, description: m.description, claims: m.claims, tick_interval_ms: None })
            }
            (Exports::V0_2 { handler, .. }, Call::Manifest) => {
                let m = handler.call_manifest(store).await?;
                Answer::Manifest(Manifest {
                    name: m.name,
                    version: m.version,
                    description: m.description,
                    claims: m.claims,
                    tick_interval_ms: m.tick_interval_ms,
                })
            }
            (Exports::V0_3 { handler, .. }, Call::Manifest) => {
                let m = handler.call_manifest(store).await?;
                Answer::Manifest(Manifest {
                    name: m.name,
                    version: m.version,
                    description: m.description,
                    claims: m.claims,
                    tick_interval_ms: m.tick_interval_ms,
                })
            }
            (exports, Call::Handle(envelope, origin)) => {
                let answer = match exports {
                    Exports::V0_1(_) => {
                        let origin = handle::OriginV1 {
                            connection_id: &origin.connection_id,
                            client_id: origin.client_id.as_deref(),
                            transport: origin.transport.as_str(),
                        };
                        // SAFETY: a 0.1 instance's `handle` was checked against `MessageV1` (`load_handle`).
                        unsafe { call_handle(store, self.handle, message_record(envelope, origin)) }.await?
                    }
                    _ => {
                        let origin = handle::Origin {
                            connection_id: &origin.connection_id,
                            client_id: origin.client_id.as_deref(),
                            transport: origin.transport.as_str(),
                            endpoint: &origin.endpoint,
                        };
                        // SAFETY: a 0.2 or 0.3 instance's `handle` was checked against `Message` (`load_handle`).
                        unsafe { call_handle(store, self.handle, message_record(envelope, origin)) }.await?
                    }
                };
                Answer::Handled(answer.map_err(|f| (f.code, f.message)))
            }
            (Exports::V0_2 { lifecycle: Some(hooks), .. }, call @ (Call::Tick | Call::ConnectionOpened(_) | Call::ConnectionClosed(_))) => {
                lifecycle_call!(hooks, store, call)
            }
            (Exports::V0_3 { lifecycle: Some(hooks), .. }, call @ (Call::Tick | Call::ConnectionOpened(_) | Call::ConnectionClosed(_))) => {
                lifecycle_call!(hooks, store, call)
            }
            (Exports::V0_3 { frames: Some(frames), .. }, Call::Frame(origin, frame)) => {
                let origin = v0_3::types::Origin {
                    connection_id: origin.connection_id.clone(),
                    client_id: origin.client_id.clone(),
                    transport: origin.transport.as_str().to_owned(),
                    endpoint: origin.endpoint.clone(),
                };
                let frame = match frame {
                    Payload::Text(text) => v0_3::types::Payload::Text(text),
                    Payload::Binary(bytes) => v0_3::types::Payload::Binary(bytes),
                };
                let answer = frames.call_handle_frame(store, &origin, &frame).await?;
                Answer::Framed(answer.map(|frame| frame.map(|payload| match payload {
                    v0_3::types::Payload::Text(text) => Payload::Text(text),
                    v0_3::types::Payload::Binary(bytes) => Payload::Binary(bytes),
                })).map_err(|f| (f.code, f.message)))
            }
            (Exports::V0_3 { migration: Some(migration), .. }, Call::Migrate(from)) => {
                Answer::Migrated(migration.call_migrate(store, from).await?.map_err(|f| (f.code, f.message)))
            }
            (_, Call::Migrate(_)) => Answer::Done,
            (_, Call::Frame(..)) => Answer::Framed(Err(("UNSUPPORTED_FRAME".into(), "the plugin does not export frames".into()))),
            (_, Call::Tick | Call::ConnectionOpened(_) | Call::ConnectionClosed(_)) => Answer::Done,
        })
    }
}

/// `envelope` as `handle`'s `message` record, borrowing its strings, with
/// `origin` in the contract's shape.
fn message_record<O>(envelope: &Envelope, origin: O) -> handle::Message<'_, O> {
    handle::Message { id: &envelope.id, kind: &envelope.kind, data: envelope.data.get(), meta: envelope.meta.get(), origin }
}

/// Call `handle` with a `message` record lowered from borrowed strings.
///
/// # Safety
/// `func` must have been type-checked against `(M,)` → [`handle::Answer`]
/// (wasmtime's own bindings call their exports the same way).
async unsafe fn call_handle<M>(store: &mut Store<PluginState>, func: Func, message: M) -> wasmtime::Result<Result<String, handle::Failure>>
where
    M: ComponentType + Lower + Send + Sync,
{
    // SAFETY: the caller's promise above.
    let typed = unsafe { TypedFunc::<(M,), handle::Answer>::new_unchecked(func) };
    Ok(typed.call_async(store, (message,)).await?.0)
}

/// One instance, its `handle` called directly.
#[doc(hidden)]
pub struct BareInstance {
    instance: Instance,
}

impl BareInstance {
    /// One `handle` call, as the dispatch path makes it (0.2 and 0.3 plugins).
    pub async fn handle(&mut self, message: handle::Message<'_>) -> wasmtime::Result<Result<String, handle::Failure>> {
        if matches!(self.instance.exports, Exports::V0_1(_)) {
            wasmtime::bail!("the bare call measures 0.2.0 and 0.3.0 plugins");
        }
        self.instance.store.set_epoch_deadline(1);
        // SAFETY: a 0.2 or 0.3 instance's `handle` was checked against `Message` (`load_handle`).
        unsafe { call_handle(&mut self.instance.store, self.instance.handle, message) }.await
    }
}

/// What a client is told of a fault: the trap's kind, or the first line of
/// the innermost error (the outer ones carry the wasm backtrace), short.
fn reason(error: &wasmtime::Error) -> String {
    const MAX: usize = 120;
    let text = match error.downcast_ref::<Trap>() {
        Some(trap) => trap.to_string(),
        None => error.root_cause().to_string(),
    };
    let line = text.lines().next().unwrap_or_default();
    let mut end = line.len().min(MAX);
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    line[..end].to_owned()
}

/// Plugin names become KV scopes, log fields and file-system-safe labels.
fn check_name(name: &str) -> Result<(), LoadError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(LoadError::InvalidManifest(format!(
            "plugin name {name:?} must be 1-64 characters of a-z, 0-9, - and _, starting with a letter or digit"
        )))
    }
}
