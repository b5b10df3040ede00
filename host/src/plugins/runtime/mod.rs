//! The plugin runtime: one wasmtime engine, the compile cache, and per
//! plugin version an `InstancePre` with a pool of warm instances.
//!
//! Every call runs under a deadline (epoch interruption), a memory cap and
//! a concurrency cap, and every fault becomes a [`Failure`] with a stable
//! code; a trapped instance is discarded, never reused. Plugins see only
//! the WIT capabilities and a WASI with no files, network or environment
//! unless their [`Grant`] says so; what they print goes to the host's log
//! (`output`). Nothing here knows about sockets.
//!
//! [`Failure`]: crate::wire::Failure

pub mod cache;
mod capabilities;
mod output;
mod plugin;
pub mod world;

pub use plugin::{BareInstance, PluginStats, PluginVersion};

use crate::routing::router::{Claim, RouteError};
use crate::config::{BreakerConfig, CpuShareConfig, Grant};
use crate::services::{ClientCalls, EventSink, KvStore, Rooms, SystemFigures};
use crate::wire::ErrorCode;
use arc_swap::ArcSwap;
use cache::{CacheOutcome, CompileCache};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use thiserror::Error;
use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{Config, Engine, Store, StoreLimits, StoreLimitsBuilder, UpdateDeadline};
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

/// How often the epoch advances: the granularity of deadlines and of
/// yielding a long-running call back to the async executor.
const EPOCH_TICK: Duration = Duration::from_millis(5);

/// Limits every plugin call runs under.
#[derive(Debug, Clone)]
pub struct PluginLimits {
    /// The initial deadline; [`Runtime::set_deadline`] changes it live.
    pub deadline: Duration,
    pub memory_bytes: usize,
    /// Warm instances, and so concurrent calls, per plugin version.
    pub max_instances: usize,
    /// The circuit breaker of each plugin version, by plugin name.
    pub breaker: BreakerConfig,
    /// How many of its calls each plugin may execute at once, as a share
    /// of the worker threads.
    pub cpu: CpuShareConfig,
}

/// Why a component could not become a plugin version. Every variant keeps
/// the previous version serving.
#[derive(Debug, Error)]
pub enum LoadError {
    #[error("not a valid component: {0}")]
    Compile(String),
    #[error("not a switchyard:plugin component (0.1.0, 0.2.0 or 0.3.0): {0}")]
    WrongWorld(String),
    #[error("failed to instantiate: {0}")]
    Instantiate(String),
    #[error("manifest() failed: {0}")]
    Manifest(String),
    #[error("invalid manifest: {0}")]
    InvalidManifest(String),
    #[error(transparent)]
    Claim(#[from] RouteError),
}

impl LoadError {
    /// Stable code for status events and the API.
    pub fn code(&self) -> ErrorCode {
        match self {
            LoadError::Compile(_) => ErrorCode::PluginCompileFailed,
            LoadError::WrongWorld(_) | LoadError::InvalidManifest(_) | LoadError::Claim(RouteError::InvalidClaim { .. }) => {
                ErrorCode::PluginInvalid
            }
            LoadError::Instantiate(_) | LoadError::Manifest(_) => ErrorCode::PluginInstantiateFailed,
            LoadError::Claim(_) => ErrorCode::ClaimConflict,
        }
    }
}

/// The capabilities' view of the host.
#[derive(Clone)]
pub struct Services {
    pub events: Arc<dyn EventSink>,
    pub kv: Arc<dyn KvStore>,
    pub rooms: Arc<dyn Rooms>,
    pub calls: Arc<dyn ClientCalls>,
    pub system: Arc<dyn SystemFigures>,
}

/// What a version's instances reach the host through.
#[derive(Clone)]
pub enum Sandbox {
    /// The host's own services: a version that serves (or may serve).
    Serving(Services),
    /// Sinks that keep every effect inside (a shadow's): no network, no
    /// writable directory.
    Contained(Services),
}

impl Sandbox {
    fn services(&self) -> &Services {
        match self {
            Sandbox::Serving(services) | Sandbox::Contained(services) => services,
        }
    }
}

/// Plugin settings (`[plugins.settings.<name>]`), by plugin name.
pub type Settings = HashMap<String, Arc<HashMap<String, String>>>;

/// Which plugin a store belongs to.
#[derive(Debug)]
pub struct PluginIdentity {
    pub name: String,
    pub version: String,
}

/// The data of every plugin `Store`.
pub struct PluginState {
    wasi: WasiCtx,
    table: ResourceTable,
    limits: StoreLimits,
    /// When the current call must end.
    deadline: Instant,
    identity: Arc<PluginIdentity>,
    /// The name the guest's output is logged under.
    output_name: Arc<ArcSwap<String>>,
    services: Services,
    settings: Option<Arc<HashMap<String, String>>>,
    system_granted: bool,
    /// The `log` capability's lines, limited like the guest's output.
    log_budget: output::LineBudget,
    /// The current call's place in its plugin's CPU share, given back while
    /// the call waits on a client.
    cpu: Option<crate::plugins::share::CpuSlot>,
}

impl PluginState {
    /// Name the store's plugin: a loading instance learns its name from
    /// its own manifest.
    fn set_identity(&mut self, identity: Arc<PluginIdentity>) {
        self.output_name.store(Arc::new(identity.name.clone()));
        self.identity = identity;
    }
}

impl WasiView for PluginState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

/// A compiled, not yet validated component.
pub struct Compiled {
    pub component: Component,
    pub hash: String,
    pub cache: CacheOutcome,
    /// The component's bytes.
    pub source: Arc<[u8]>,
}

pub struct Runtime {
    engine: Engine,
    linker: Linker<PluginState>,
    cache: CompileCache,
    limits: PluginLimits,
    /// The async worker threads calls run on, which CPU shares divide.
    workers: usize,
    /// The per-call deadline in milliseconds, adjustable while serving.
    deadline_ms: AtomicU64,
    grants: HashMap<String, Grant>,
    settings: Settings,
    services: Services,
}

impl Runtime {
    pub fn new(
        limits: PluginLimits,
        cache_dir: Option<PathBuf>,
        grants: HashMap<String, Grant>,
        settings: Settings,
        services: Services,
    ) -> anyhow::Result<Arc<Runtime>> {
        let engine = Engine::new(&engine_config())?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        world::v0_1::Plugin::add_to_linker::<_, HasSelf<PluginState>>(&mut linker, |state| state)?;
        world::v0_2::PluginWithHooks::add_to_linker::<_, HasSelf<PluginState>>(&mut linker, |state| state)?;
        world::v0_3::PluginFull::add_to_linker::<_, HasSelf<PluginState>>(&mut linker, |state| state)?;
        spawn_epoch_ticker(&engine);
        let cache = CompileCache::new(&engine, cache_dir);
        let deadline_ms = AtomicU64::new(limits.deadline.as_millis() as u64);
        let workers = crate::plugins::share::worker_threads();
        Ok(Arc::new(Runtime { engine, linker, cache, limits, workers, deadline_ms, grants, settings, services }))
    }

    /// The kv store plugins write through, for migrations.
    pub fn kv(&self) -> Arc<dyn KvStore> {
        Arc::clone(&self.services.kv)
    }

    /// The host's services, which a shadow's recording sinks read through.
    pub fn services(&self) -> &Services {
        &self.services
    }

    pub fn limits(&self) -> &PluginLimits {
        &self.limits
    }

    /// The per-call deadline now.
    pub fn deadline(&self) -> Duration {
        Duration::from_millis(self.deadline_ms.load(Ordering::Relaxed))
    }

    /// Change the per-call deadline for calls that start from now on.
    pub fn set_deadline(&self, deadline: Duration) {
        self.deadline_ms.store(deadline.as_millis() as u64, Ordering::Relaxed);
    }

    /// Compile a component whose [`cache::content_hash`] is `hash` (or load
    /// it from the compile cache) on a blocking thread, never on the async
    /// workers.
    pub async fn compile(self: &Arc<Self>, bytes: Vec<u8>, hash: String) -> Result<Compiled, LoadError> {
        let runtime = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            let (component, cache) =
                runtime.cache.load_or_compile(&runtime.engine, &bytes, &hash).map_err(|e| LoadError::Compile(format!("{e:#}")))?;
            Ok(Compiled { component, hash, cache, source: bytes.into() })
        })
        .await
        .map_err(|e| LoadError::Compile(format!("compiler task failed: {e}")))?
    }

    /// Instantiate once, read and check the manifest, and return a version
    /// ready to serve (not yet routed to).
    pub async fn prepare(self: &Arc<Self>, compiled: Compiled) -> Result<Arc<PluginVersion>, LoadError> {
        PluginVersion::prepare(Arc::clone(self), compiled, Sandbox::Serving(self.services.clone())).await
    }

    /// [`prepare`](Self::prepare) a version whose instances, the loading
    /// one included, reach the host only through `services` (a shadow's
    /// recording sinks), with no network and read-only directories.
    pub async fn prepare_contained(self: &Arc<Self>, compiled: Compiled, services: Services) -> Result<Arc<PluginVersion>, LoadError> {
        PluginVersion::prepare(Arc::clone(self), compiled, Sandbox::Contained(services)).await
    }

    /// A store for plugin `identity`, with its grant and settings, if any,
    /// reaching the host through `sandbox`'s services.
    fn new_store(&self, identity: Arc<PluginIdentity>, sandbox: &Sandbox) -> anyhow::Result<Store<PluginState>> {
        let grant = self.grants.get(&identity.name);
        let contained = matches!(sandbox, Sandbox::Contained(_));
        let mut wasi = WasiCtxBuilder::new();
        let output_name = Arc::new(ArcSwap::from_pointee(identity.name.clone()));
        wasi.stdout(output::GuestOutput::stdout(Arc::clone(&output_name)));
        wasi.stderr(output::GuestOutput::stderr(Arc::clone(&output_name)));
        if let Some(grant) = grant {
            for dir in &grant.dirs {
                let perms = if dir.read_only || contained { FsPerms::ReadOnly } else { FsPerms::ReadWrite };
                wasi.preopened_dir(&dir.host, &dir.guest, perms)?;
            }
            for name in &grant.env {
                if let Ok(value) = std::env::var(name) {
                    wasi.env(name, value);
                }
            }
            if grant.network && !contained {
                wasi.inherit_network().allow_ip_name_lookup(true);
            }
        }
        let limits = StoreLimitsBuilder::new().memory_size(self.limits.memory_bytes).trap_on_grow_failure(true).build();
        let state = PluginState {
            wasi: wasi.build(),
            table: ResourceTable::new(),
            limits,
            deadline: Instant::now() + self.deadline(),
            settings: self.settings.get(&identity.name).cloned(),
            system_granted: grant.is_some_and(|g| g.system),
            identity,
            output_name,
            services: sandbox.services().clone(),
            log_budget: output::LineBudget::default(),
            cpu: None,
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| &mut state.limits);
        // Past the deadline: trap. Otherwise yield every tick, through tokio's
        // own yield so the I/O driver runs before the guest resumes: a busy
        // guest must not starve the sockets on its worker thread.
        store.epoch_deadline_callback(|ctx| {
            Ok(if Instant::now() >= ctx.data().deadline {
                UpdateDeadline::Interrupt
            } else {
                UpdateDeadline::YieldCustom(1, Box::pin(tokio::task::yield_now()))
            })
        });
        store.set_epoch_deadline(1);
        Ok(store)
    }
}

/// The engine settings every host of this build uses. The compile cache
/// is keyed by them (their compatibility hash), so [`precompile`] must make
/// its engine from the same settings as [`Runtime::new`].
fn engine_config() -> Config {
    let mut config = Config::new();
    config.wasm_component_model(true).epoch_interruption(true);
    config
}

/// Compile a component into the compile cache in `dir`, as a host of this
/// build would when the file lands in its plugin folder: a deploy that
/// compiles ahead (`switchyard plugin compile`) makes the host's load a
/// cache hit, served milliseconds after the rename instead of after the
/// compile. `Hit` if the cache held it already, `Miss` if it was compiled
/// now; an error if it is not a component or its entry was not written.
/// Blocking.
pub fn precompile(bytes: &[u8], dir: PathBuf) -> anyhow::Result<CacheOutcome> {
    let engine = Engine::new(&engine_config())?;
    let cache = CompileCache::new(&engine, Some(dir.clone()));
    let hash = cache::content_hash(bytes);
    let (_, outcome) = cache.load_or_compile(&engine, bytes, &hash).map_err(|e| anyhow::anyhow!("{e:#}"))?;
    anyhow::ensure!(cache.holds(&hash), "the compiled component could not be written to {}", dir.display());
    Ok(outcome)
}

/// Advance the engine's epoch until the engine is dropped.
fn spawn_epoch_ticker(engine: &Engine) {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("switchyard-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })
        .map(drop)
        .unwrap_or_else(|e| tracing::error!("could not start the epoch thread; deadlines will not fire: {e}"));
}

/// Parse and check a manifest's claims.
fn parse_claims(claims: &[String]) -> Result<Vec<Claim>, LoadError> {
    if claims.is_empty() {
        return Err(LoadError::InvalidManifest("claims no message types".into()));
    }
    claims.iter().map(|c| Claim::parse(c).map_err(LoadError::from)).collect()
}
