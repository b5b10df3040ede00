//! One loaded plugin version: its manifest, its `InstancePre`, and a pool of
//! warm instances that calls borrow one at a time.
//!
//! A wasmtime `Store` is single-threaded, so concurrency is instances: a
//! call takes an idle instance (or instantiates one, up to the cap), runs,
//! and gives it back unless it trapped. A Python guest costs ~0.5 ms to
//! instantiate; a warm call a few microseconds.

use super::world::v0_1::{self, handler, types};
use super::cache::CacheOutcome;
use super::{parse_claims, Compiled, LoadError, PluginIdentity, PluginState, Runtime};
use crate::envelope::{Envelope, ErrorCode, Failure, Origin};
use crate::router::Claim;
use crossbeam_queue::ArrayQueue;
use serde_json::value::RawValue;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime};
use tokio::sync::Semaphore;
use wasmtime::{Store, Trap};

/// Counters a plugin version keeps; read by status and metrics.
#[derive(Debug, Default)]
pub struct PluginStats {
    pub calls: AtomicU64,
    pub instantiations: AtomicU64,
    /// Calls that ended in a plugin failure (the plugin's own code).
    pub failures: AtomicU64,
    pub traps: AtomicU64,
    pub timeouts: AtomicU64,
}

struct Instance {
    store: Store<PluginState>,
    bindings: v0_1::Plugin,
}

pub struct PluginVersion {
    identity: Arc<PluginIdentity>,
    pub description: String,
    pub claims: Vec<Claim>,
    /// sha256 of the component's bytes.
    pub hash: String,
    pub source: PathBuf,
    pub loaded_at: SystemTime,
    /// Whether the code was compiled for this load or taken from the cache.
    pub compiled: CacheOutcome,
    pub stats: PluginStats,
    pre: v0_1::PluginPre<PluginState>,
    idle: ArrayQueue<Instance>,
    permits: Semaphore,
    runtime: Arc<Runtime>,
}

impl std::fmt::Debug for PluginVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginVersion").field("name", &self.name()).field("version", &self.version()).field("hash", &self.hash).finish()
    }
}

impl PluginVersion {
    pub(super) async fn prepare(runtime: Arc<Runtime>, compiled: Compiled, source: PathBuf) -> Result<Arc<Self>, LoadError> {
        let instance_pre = runtime.linker.instantiate_pre(&compiled.component).map_err(|e| LoadError::WrongWorld(format!("{e:#}")))?;
        let pre = v0_1::PluginPre::new(instance_pre).map_err(|e| LoadError::WrongWorld(format!("{e:#}")))?;

        let loading = Arc::new(PluginIdentity { name: "(loading)".into(), version: String::new() });
        let mut store = runtime.new_store(loading, None).map_err(|e| LoadError::Instantiate(format!("{e:#}")))?;
        let bindings = pre.instantiate_async(&mut store).await.map_err(|e| LoadError::Instantiate(format!("{e:#}")))?;
        let manifest = bindings.switchyard_plugin_handler().call_manifest(&mut store).await.map_err(|e| LoadError::Manifest(format!("{e:#}")))?;
        check_name(&manifest.name)?;
        if manifest.version.trim().is_empty() {
            return Err(LoadError::InvalidManifest(format!("plugin {} has an empty version", manifest.name)));
        }
        let claims = parse_claims(&manifest.claims)?;

        let identity = Arc::new(PluginIdentity { name: manifest.name, version: manifest.version });
        let max = runtime.limits.max_instances.max(1);
        let version = PluginVersion {
            identity: Arc::clone(&identity),
            description: manifest.description,
            claims,
            hash: compiled.hash,
            source,
            loaded_at: SystemTime::now(),
            compiled: compiled.cache,
            stats: PluginStats::default(),
            pre,
            idle: ArrayQueue::new(max),
            permits: Semaphore::new(max),
            runtime,
        };
        version.stats.instantiations.fetch_add(1, Ordering::Relaxed);
        // The loading instance has no grants; keep it warm only if none are due.
        if !version.runtime.grants.contains_key(version.name()) {
            store.data_mut().identity = identity;
            let _ = version.idle.push(Instance { store, bindings });
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

    /// Run `handle` on one instance under the deadline; the reply's data as JSON.
    pub async fn call(&self, envelope: &Envelope, origin: &Origin) -> Result<Box<RawValue>, Failure> {
        let limits = &self.runtime.limits;
        let deadline = Instant::now() + limits.deadline;
        let _permit = match tokio::time::timeout_at(deadline.into(), self.permits.acquire()).await {
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
        self.stats.calls.fetch_add(1, Ordering::Relaxed);
        let mut instance = match self.idle.pop() {
            Some(instance) => instance,
            None => self.instantiate(deadline).await?,
        };
        instance.store.data_mut().deadline = deadline;
        instance.store.set_epoch_deadline(1);
        let message = types::Message {
            id: envelope.id.clone(),
            type_: envelope.kind.clone(),
            data: envelope.data.get().to_owned(),
            meta: envelope.meta.get().to_owned(),
            origin: types::Origin {
                connection_id: origin.connection_id.clone(),
                client_id: origin.client_id.clone(),
                transport: origin.transport.as_str().to_owned(),
            },
        };
        let handler: &handler::Guest = instance.bindings.switchyard_plugin_handler();
        let result = handler.call_handle(&mut instance.store, &message).await;
        match result {
            Ok(answer) => {
                // A finished call leaves the instance sound: keep it warm.
                let _ = self.idle.push(instance);
                match answer {
                    Ok(json) => RawValue::from_string(json).map_err(|e| {
                        self.stats.failures.fetch_add(1, Ordering::Relaxed);
                        Failure::new(ErrorCode::PluginFailed, format!("plugin {} replied with invalid JSON: {e}", self.name()))
                    }),
                    Err(failure) => {
                        self.stats.failures.fetch_add(1, Ordering::Relaxed);
                        Err(Failure::from_plugin(failure.code, failure.message))
                    }
                }
            }
            Err(error) => Err(self.fault(error)),
        }
    }

    async fn instantiate(&self, deadline: Instant) -> Result<Instance, Failure> {
        let grant = self.runtime.grants.get(self.name());
        let mut store = self
            .runtime
            .new_store(Arc::clone(&self.identity), grant)
            .map_err(|e| Failure::new(ErrorCode::PluginFailed, format!("plugin {}: cannot set up an instance: {e:#}", self.name())))?;
        store.data_mut().deadline = deadline;
        self.stats.instantiations.fetch_add(1, Ordering::Relaxed);
        match self.pre.instantiate_async(&mut store).await {
            Ok(bindings) => Ok(Instance { store, bindings }),
            Err(error) => Err(self.fault(error)),
        }
    }

    /// A warm instance outside the pool, to measure the bare typed call
    /// beside the whole dispatch path. Not for serving.
    #[doc(hidden)]
    pub async fn bare_instance(&self) -> Result<BareInstance, Failure> {
        let deadline = Instant::now() + std::time::Duration::from_secs(3600);
        let mut instance = self.instantiate(deadline).await?;
        instance.store.data_mut().deadline = deadline;
        Ok(BareInstance { instance })
    }

    /// A trap or host error: the instance is already dropped; say why.
    fn fault(&self, error: wasmtime::Error) -> Failure {
        if matches!(error.downcast_ref::<Trap>(), Some(Trap::Interrupt)) {
            self.stats.timeouts.fetch_add(1, Ordering::Relaxed);
            let ms = self.runtime.limits.deadline.as_millis();
            return Failure::new(ErrorCode::PluginTimeout, format!("plugin {} ran past its {ms} ms deadline", self.name()));
        }
        self.stats.traps.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(plugin = self.name(), version = self.version(), "plugin trapped: {error:#}");
        Failure::new(ErrorCode::PluginFailed, format!("plugin {} failed: {}", self.name(), root_cause(&error)))
    }
}

/// One instance, called directly through the generated bindings.
#[doc(hidden)]
pub struct BareInstance {
    instance: Instance,
}

impl BareInstance {
    pub async fn handle(&mut self, message: &types::Message) -> wasmtime::Result<Result<String, types::Failure>> {
        self.instance.store.set_epoch_deadline(1);
        let Instance { store, bindings } = &mut self.instance;
        bindings.switchyard_plugin_handler().call_handle(store, message).await
    }
}

fn root_cause(error: &wasmtime::Error) -> String {
    match error.downcast_ref::<Trap>() {
        Some(trap) => trap.to_string(),
        None => format!("{error:#}"),
    }
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
