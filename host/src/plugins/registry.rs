//! The plugin registry: which component file serves which claims, and the
//! validate-then-swap path every load, replace and unload goes through.
//!
//! A load compiles (off-thread, through the compile cache), instantiates
//! once, reads the manifest and checks its claims against every other
//! plugin's; only then is a new route table published by an atomic swap.
//! Any failure leaves the previous version serving. Every outcome is
//! published as a `status` event.

use crate::routing::target::{Routes, WorkerRules};
use crate::observability::metrics::RegistryMetrics;
use crate::lifecycle::Tasks;
use crate::plugins::deploys::DeployHook;
use crate::plugins::migration::{self, Migrated};
use crate::plugins::runtime::{LoadError, PluginVersion, Runtime};
use crate::plugins::rollout::{Canary, CanaryState, RolloutConfig};
use crate::plugins::shadow::{self, Effects, Shadow};
use crate::plugins::versions::{Lookup, Retained, DEFAULT_HISTORY};
use crate::routing::router::RouteError;
use crate::wire::ErrorCode;
use crate::services::EventSink;
use arc_swap::ArcSwap;
use serde_json::json;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use thiserror::Error;
use crate::sync::lock;

/// The topic registry status events go to.
pub const STATUS_TOPIC: &str = "status";

#[derive(Debug, Error)]
pub enum RegistryError {
    #[error("{path}: cannot read: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: {source}")]
    Load { path: PathBuf, source: LoadError },
    #[error("{path}: plugin name {name:?} is already served from {other}")]
    DuplicateName { path: PathBuf, name: String, other: PathBuf },
    #[error("{path}: cannot write: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("no plugin named {0:?}")]
    NoPlugin(String),
    #[error("plugin {name:?}: {}", .lookup.describe(.reference.as_deref()))]
    Version { name: String, reference: Option<String>, lookup: Lookup },
    #[error("{path}: migrate({from:?}) of version {to} failed, the swap is refused and {from} keeps serving with its kv as it was: {failure}")]
    Migration { path: PathBuf, from: String, to: String, failure: Box<crate::wire::Failure> },
    #[error("plugin {name:?}: {reason}")]
    RollbackRefused { name: String, reason: String },
    #[error("plugin {name:?}: {reason}")]
    CanaryRefused { name: String, reason: String },
    #[error("plugin {0:?} has no canary")]
    NoCanary(String),
    #[error("plugin {name:?}: {reason}")]
    ShadowRefused { name: String, reason: String },
    #[error("plugin {0:?} has no shadow running")]
    NoShadow(String),
}

impl RegistryError {
    pub fn code(&self) -> ErrorCode {
        match self {
            RegistryError::Read { .. } => ErrorCode::PluginReadFailed,
            RegistryError::Load { source, .. } => source.code(),
            RegistryError::DuplicateName { .. } => ErrorCode::ClaimConflict,
            RegistryError::Write { .. } => ErrorCode::PluginWriteFailed,
            RegistryError::NoPlugin(_) => ErrorCode::NotFound,
            RegistryError::Version { lookup: Lookup::Ambiguous, .. } => ErrorCode::VersionAmbiguous,
            RegistryError::Version { .. } => ErrorCode::VersionNotFound,
            RegistryError::Migration { .. } => ErrorCode::MigrationFailed,
            RegistryError::RollbackRefused { .. } => ErrorCode::RollbackRefused,
            RegistryError::CanaryRefused { .. } => ErrorCode::CanaryRefused,
            RegistryError::NoCanary(_) => ErrorCode::NotFound,
            RegistryError::ShadowRefused { .. } => ErrorCode::ShadowRefused,
            RegistryError::NoShadow(_) => ErrorCode::NotFound,
        }
    }
}

/// What a successful load did.
#[derive(Debug)]
pub enum Loaded {
    New(Arc<PluginVersion>),
    Swapped { old: Arc<PluginVersion>, new: Arc<PluginVersion> },
    /// The file's content is what is already serving, or what already
    /// failed to load, or the load was overtaken (the plugin's slot changed
    /// after the file was read: a rollback, an upload, a promotion or
    /// another load): nothing to do, nothing to report.
    Unchanged,
}

pub struct Registry {
    runtime: Arc<Runtime>,
    routes: Arc<ArcSwap<Routes>>,
    /// Loaded versions by source file.
    slots: Mutex<BTreeMap<PathBuf, Arc<PluginVersion>>>,
    /// Content hash of the last failed load per file, so the same bytes
    /// (a repeated file event) are not retried and reported again.
    failed: Mutex<HashMap<PathBuf, String>>,
    /// Changes of each file's slot so far (commits and unloads). A load
    /// from the folder notes this before it reads the file and commits
    /// only if nothing changed the slot meanwhile, so a file event that
    /// was compiling while a rollback committed cannot undo the rollback.
    changes: Mutex<HashMap<PathBuf, u64>>,
    events: Arc<dyn EventSink>,
    /// Stops the tick task of each file's serving version.
    tickers: Mutex<HashMap<PathBuf, CancellationToken>>,
    /// Where tick tasks run, stopped with the host.
    tasks: Tasks,
    /// Swaps per plugin name, for status.
    swaps: Mutex<HashMap<String, u64>>,
    metrics: RegistryMetrics,
    /// Versions replaced while serving, compiled, per plugin name.
    retained: Mutex<HashMap<String, Retained>>,
    /// How many versions `retained` keeps per plugin (`plugins.history`).
    history: usize,
    /// Migrations that changed a plugin's kv, newest last, per plugin name.
    migrations: Mutex<HashMap<String, Vec<Migrated>>>,
    /// Running canaries by plugin name; the route table carries them.
    canaries: Mutex<HashMap<String, Arc<Canary>>>,
    /// The last canary of each plugin, running or ended, for its status.
    last_canary: Mutex<HashMap<String, Arc<Canary>>>,
    /// `[plugins.rollout.NAME]`.
    rollout: HashMap<String, RolloutConfig>,
    /// `plugins.shadow_cpu_budget`: a shadow's share of one core, unless
    /// its start names one.
    shadow_budget: f64,
    /// Told of plugins changed by hand (a cluster's deploys); see [`DeployHook`].
    deploy_hook: std::sync::OnceLock<Arc<dyn DeployHook>>,
    /// Running shadows by plugin name, and what stops each one's task; the
    /// route table carries them.
    shadows: Mutex<HashMap<String, (Arc<Shadow>, CancellationToken)>>,
}

/// Where a canary's candidate comes from.
pub enum Candidate<'a> {
    /// A component's bytes, validated like an upload.
    Bytes(Vec<u8>),
    /// A retained version, by version ref.
    Retained(&'a str),
}

/// What a rollback did.
#[derive(Debug)]
pub struct RolledBack {
    pub from: Arc<PluginVersion>,
    pub to: Arc<PluginVersion>,
    /// The kv was put back as it was before `from` migrated it.
    pub restored_kv: bool,
}

impl Registry {
    /// A registry serving no plugin yet; its route tables carry `workers`'
    /// rules.
    pub fn new(runtime: Arc<Runtime>, events: Arc<dyn EventSink>, metrics: RegistryMetrics, workers: Arc<WorkerRules>, tasks: Tasks) -> Self {
        // The built-ins alone cannot conflict.
        let routes = Routes::build([], workers).unwrap_or_default();
        Registry {
            runtime,
            routes: Arc::new(ArcSwap::from_pointee(routes)),
            slots: Mutex::default(),
            failed: Mutex::default(),
            changes: Mutex::default(),
            events,
            tickers: Mutex::default(),
            tasks,
            swaps: Mutex::default(),
            metrics,
            retained: Mutex::default(),
            history: DEFAULT_HISTORY,
            migrations: Mutex::default(),
            canaries: Mutex::default(),
            last_canary: Mutex::default(),
            rollout: HashMap::new(),
            shadow_budget: crate::config::rollout::DEFAULT_SHADOW_CPU_BUDGET,
            deploy_hook: std::sync::OnceLock::new(),
            shadows: Mutex::default(),
        }
    }

    /// Tell `hook` of the plugins changed by hand from now on (once).
    pub fn set_deploy_hook(&self, hook: Arc<dyn DeployHook>) {
        let _ = self.deploy_hook.set(hook);
    }

    /// What to tell of a plugin changed by hand, if anything listens.
    pub fn deploy_hook(&self) -> Option<&Arc<dyn DeployHook>> {
        self.deploy_hook.get()
    }

    /// `[plugins.rollout.NAME]`: canary settings per plugin.
    pub fn with_rollout(mut self, rollout: HashMap<String, RolloutConfig>) -> Self {
        self.rollout = rollout;
        self
    }

    /// `plugins.shadow_cpu_budget`: a shadow's share of one core.
    pub fn with_shadow_budget(mut self, budget: f64) -> Self {
        self.shadow_budget = budget;
        self
    }

    /// The canary settings of plugin `name`: its `[plugins.rollout.NAME]`
    /// or the defaults.
    pub fn rollout_of(&self, name: &str) -> RolloutConfig {
        self.rollout.get(name).cloned().unwrap_or_default()
    }

    /// The last canary of plugin `name`, running or ended.
    pub fn canary(&self, name: &str) -> Option<Arc<Canary>> {
        lock(&self.last_canary).get(name).cloned()
    }

    /// Start a canary of plugin `name`: `candidate` serves `config.weight`
    /// percent of its messages beside the serving version until the
    /// thresholds roll it back or promote it (or an operator does).
    pub async fn start_canary(self: &Arc<Self>, name: &str, candidate: Candidate<'_>, config: RolloutConfig) -> Result<Arc<Canary>, RegistryError> {
        let refuse = |reason: String| RegistryError::CanaryRefused { name: name.to_owned(), reason };
        config.check().map_err(refuse)?;
        let path = self.path_of(name).ok_or_else(|| RegistryError::NoPlugin(name.to_owned()))?;
        let stable = self.serving(&path).ok_or_else(|| RegistryError::NoPlugin(name.to_owned()))?;
        if lock(&self.canaries).contains_key(name) {
            return Err(refuse("a canary is already running; promote or roll it back first".into()));
        }
        if lock(&self.shadows).contains_key(name) {
            return Err(refuse("a shadow is running; stop it first (one candidate at a time)".into()));
        }
        let candidate = match candidate {
            Candidate::Retained(reference) => self.find_retained(name, Some(reference))?,
            Candidate::Bytes(bytes) => {
                let hash = crate::plugins::runtime::cache::content_hash(&bytes);
                let version = self.validate(&path, bytes, &hash).await?;
                if version.name() != name {
                    return Err(refuse(format!("the candidate is plugin {:?}, not {name:?}", version.name())));
                }
                version
            }
        };
        if candidate.hash == stable.hash {
            return Err(refuse("the candidate is the serving version".into()));
        }
        // Judged against a warm stable, the candidate starts warm too: its
        // first calls' instantiation would otherwise read as its latency.
        // No more than its CPU share of calls run at once, so that many
        // instances serve every call.
        if let Err(failure) = candidate.warm(candidate.cpu.size()).await {
            return Err(refuse(format!("the candidate cannot be instantiated: {failure}")));
        }
        let canary = Arc::new(Canary::new(Arc::clone(&stable), Arc::clone(&candidate), config));
        {
            let slots = self.lock();
            let mut canaries = lock(&self.canaries);
            if canaries.contains_key(name) {
                return Err(refuse("a canary is already running; promote or roll it back first".into()));
            }
            canaries.insert(name.to_owned(), Arc::clone(&canary));
            drop(canaries);
            match self.build_routes(&slots) {
                Ok(table) => self.routes.store(Arc::new(table)),
                Err(e) => {
                    lock(&self.canaries).remove(name);
                    return Err(RegistryError::Load { path: path.clone(), source: e.into() });
                }
            }
        }
        lock(&self.last_canary).insert(name.to_owned(), Arc::clone(&canary));
        let registry = Arc::clone(self);
        let watched = Arc::clone(&canary);
        self.tasks.spawn(move |stop| async move {
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = watched.decided.notified() => registry.finish_canary(&watched).await,
            }
        });
        tracing::info!(plugin = name, stable = stable.version(), candidate = candidate.version(), weight = canary.config.weight, "canary started");
        self.publish(&json!({
            "event": "canary_started",
            "plugin": name,
            "weight": canary.config.weight,
            "sticky": canary.config.sticky.map(|s| s.as_str()),
            "stable": { "version": stable.version(), "hash": stable.hash },
            "candidate": { "version": candidate.version(), "hash": candidate.hash },
            "thresholds": canary.config.thresholds(),
        }));
        Ok(canary)
    }

    /// The running shadow of plugin `name`.
    pub fn shadow(&self, name: &str) -> Option<Arc<Shadow>> {
        lock(&self.shadows).get(name).map(|(s, _)| Arc::clone(s))
    }

    /// Start shadowing plugin `name`: `candidate`, contained (see
    /// [`shadow`]), gets a copy of each of its live messages and its
    /// replies are compared with the serving version's, leaving out the
    /// `ignore`d JSON pointers. Its thread uses at most `cpu_budget` of one
    /// core (`plugins.shadow_cpu_budget` when `None`). One candidate at a
    /// time: refused while a canary or another shadow runs.
    pub async fn start_shadow(
        self: &Arc<Self>,
        name: &str,
        candidate: Candidate<'_>,
        ignore: Vec<String>,
        cpu_budget: Option<f64>,
    ) -> Result<Arc<Shadow>, RegistryError> {
        let refuse = |reason: String| RegistryError::ShadowRefused { name: name.to_owned(), reason };
        shadow::check_ignore(&ignore).map_err(refuse)?;
        let cpu_budget = cpu_budget.unwrap_or(self.shadow_budget);
        crate::config::rollout::check_shadow_budget(cpu_budget).map_err(refuse)?;
        let path = self.path_of(name).ok_or_else(|| RegistryError::NoPlugin(name.to_owned()))?;
        let serving = self.serving(&path).ok_or_else(|| RegistryError::NoPlugin(name.to_owned()))?;
        let busy = || {
            if lock(&self.canaries).contains_key(name) {
                return Err(refuse("a canary is running; promote or roll it back first (one candidate at a time)".into()));
            }
            if lock(&self.shadows).contains_key(name) {
                return Err(refuse("a shadow is already running; stop it first".into()));
            }
            Ok(())
        };
        busy()?;
        // A retained version is prepared again, contained: its own
        // instances reach the real hub and kv.
        let (bytes, hash) = match candidate {
            Candidate::Retained(reference) => {
                let retained = self.find_retained(name, Some(reference))?;
                (retained.source.to_vec(), retained.hash.clone())
            }
            Candidate::Bytes(bytes) => {
                let hash = crate::plugins::runtime::cache::content_hash(&bytes);
                (bytes, hash)
            }
        };
        if hash == serving.hash {
            return Err(refuse("the candidate is the serving version".into()));
        }
        let effects = Effects::new(self.runtime.services().clone());
        let load_err = |source| RegistryError::Load { path: path.clone(), source };
        self.metrics.compiles.inc();
        let compiled = self.runtime.compile(bytes, hash).await.map_err(load_err)?;
        let candidate = self.runtime.prepare_contained(compiled, effects.services()).await.map_err(load_err)?;
        if candidate.name() != name {
            return Err(refuse(format!("the candidate is plugin {:?}, not {name:?}", candidate.name())));
        }
        if let Err(failure) = candidate.warm(candidate.cpu.size()).await {
            return Err(refuse(format!("the candidate cannot be instantiated: {failure}")));
        }
        let (shadow, copies) = Shadow::new(Arc::clone(&serving), Arc::clone(&candidate), ignore, cpu_budget, effects);
        {
            let slots = self.lock();
            if !slots.values().any(|v| Arc::ptr_eq(v, &serving)) {
                return Err(refuse("the serving version changed while the candidate was prepared; try again".into()));
            }
            busy()?;
            let task = Arc::clone(&shadow);
            let stop = self.tasks.spawn(move |stop| task.run(copies, stop));
            lock(&self.shadows).insert(name.to_owned(), (Arc::clone(&shadow), stop));
            match self.build_routes(&slots) {
                Ok(table) => self.routes.store(Arc::new(table)),
                Err(e) => {
                    if let Some((_, stop)) = lock(&self.shadows).remove(name) {
                        stop.cancel();
                    }
                    return Err(RegistryError::Load { path: path.clone(), source: e.into() });
                }
            }
        }
        tracing::info!(plugin = name, serving = serving.version(), candidate = candidate.version(), "shadow started");
        self.publish(&json!({
            "event": "shadow_started",
            "plugin": name,
            "serving": { "version": serving.version(), "hash": serving.hash },
            "candidate": { "version": candidate.version(), "hash": candidate.hash },
            "ignore": shadow.ignore,
            "cpu_budget": shadow.cpu_budget,
        }));
        Ok(shadow)
    }

    /// Stop plugin `name`'s shadow: no more copies, its task ends, its
    /// scratch kv is dropped with it. Publishes `shadow_stopped` with the
    /// final figures.
    pub fn stop_shadow(&self, name: &str, reason: String) -> Result<Arc<Shadow>, RegistryError> {
        let (shadow, stop) = lock(&self.shadows).remove(name).ok_or_else(|| RegistryError::NoShadow(name.to_owned()))?;
        {
            let slots = self.lock();
            match self.build_routes(&slots) {
                Ok(table) => self.routes.store(Arc::new(table)),
                Err(e) => tracing::error!("route table rebuild failed stopping a shadow: {e}"),
            }
        }
        stop.cancel();
        shadow.mark_stopped(reason);
        tracing::info!(plugin = name, candidate = shadow.candidate.version(), reason = shadow.stopped(), "shadow stopped");
        let mut event = shadow.status();
        event["event"] = json!("shadow_stopped");
        self.publish(&event);
        Ok(shadow)
    }

    /// Promote (or roll back) plugin `name`'s running canary by hand.
    pub async fn end_canary(&self, name: &str, state: CanaryState) -> Result<Arc<Canary>, RegistryError> {
        let canary = lock(&self.canaries).get(name).cloned().ok_or_else(|| RegistryError::NoCanary(name.to_owned()))?;
        let reason = if state == CanaryState::Promoted { "promoted by hand" } else { "rolled back by hand" };
        canary.decide(state, reason.to_owned());
        self.finish_canary(&canary).await;
        Ok(canary)
    }

    /// Carry out a canary's decision, once: a promotion serves the
    /// candidate (the stable one is retained, the file holds the
    /// candidate); a rollback drops the candidate from the table (it is
    /// retained). Publishes the event with the reason and the figures.
    async fn finish_canary(&self, canary: &Arc<Canary>) {
        let name = canary.stable.name().to_owned();
        {
            let mut canaries = lock(&self.canaries);
            match canaries.get(&name) {
                Some(running) if Arc::ptr_eq(running, canary) => canaries.remove(&name),
                _ => return,
            };
        }
        let path = self.path_of(&name);
        let state = canary.state();
        let event = match state {
            CanaryState::Promoted => "canary_promoted",
            _ => "canary_rolled_back",
        };
        match (state, &path) {
            (CanaryState::Promoted, Some(path)) => match self.commit(path, Arc::clone(&canary.candidate)) {
                Ok(_) => self.write_back(path, &canary.candidate).await,
                Err(e) => tracing::error!(plugin = %name, "canary decided to promote, but the swap failed: {e}"),
            },
            _ => {
                {
                    let slots = self.lock();
                    match self.build_routes(&slots) {
                        Ok(table) => self.routes.store(Arc::new(table)),
                        Err(e) => tracing::error!(plugin = %name, "route table rebuild failed ending a canary: {e}"),
                    }
                }
                lock(&self.retained).entry(name.clone()).or_default().push(Arc::clone(&canary.candidate), self.history);
                // A canary started by a file in the folder: the folder holds
                // what serves again.
                if let Some(path) = &path {
                    let on_disk = tokio::fs::read(path).await.ok().map(|b| crate::plugins::runtime::cache::content_hash(&b));
                    if on_disk.as_deref() == Some(canary.candidate.hash.as_str()) && self.serving(path).is_some_and(|v| Arc::ptr_eq(&v, &canary.stable)) {
                        self.write_back(path, &canary.stable).await;
                    }
                }
            }
        }
        tracing::info!(plugin = %name, reason = canary.reason(), "{event}");
        let figures = canary.figures();
        self.publish(&json!({
            "event": event,
            "plugin": name,
            "reason": canary.reason(),
            "stable": figures["stable"],
            "candidate": figures["candidate"],
        }));
    }

    /// Keep `versions` replaced versions per plugin for rollbacks.
    pub fn with_history(mut self, versions: usize) -> Self {
        self.history = versions;
        self
    }

    /// The retained (replaced, still compiled) versions of plugin `name`,
    /// newest first.
    pub fn retained(&self, name: &str) -> Vec<Arc<PluginVersion>> {
        lock(&self.retained).get(name).map(|r| r.list().to_vec()).unwrap_or_default()
    }

    /// The version `reference` names among `name`'s retained ones (the
    /// newest if `None`).
    pub fn find_retained(&self, name: &str, reference: Option<&str>) -> Result<Arc<PluginVersion>, RegistryError> {
        let retained = lock(&self.retained);
        let found = retained.get(name).map_or(Err(Lookup::NoneRetained), |r| r.find(reference).cloned());
        found.map_err(|lookup| RegistryError::Version { name: name.to_owned(), reference: reference.map(str::to_owned), lookup })
    }

    /// Components compiled (or loaded from the compile cache) since start.
    pub fn compile_count(&self) -> u64 {
        self.metrics.compiles.get()
    }

    /// Serve plugin `name`'s previous version again (or the retained one
    /// `reference` names), without compiling: the route table swaps to the
    /// retained version, then its bytes are written back to the plugin's
    /// file, so the folder holds what serves. Across a migration the kv is
    /// put back as it was, or the rollback is refused if it was written
    /// since (see [`migration`]).
    pub async fn rollback(&self, name: &str, reference: Option<&str>) -> Result<RolledBack, RegistryError> {
        let path = self.path_of(name).ok_or_else(|| RegistryError::NoPlugin(name.to_owned()))?;
        let from = self.serving(&path).ok_or_else(|| RegistryError::NoPlugin(name.to_owned()))?;
        let to = self.find_retained(name, reference)?;
        let kv = self.runtime.kv();
        let undo = self.migration_to_undo(name, &from, &to)?;
        let restored_kv = undo.is_some();
        if let Some(undo) = &undo {
            migration::restore(kv.as_ref(), name, &undo.before).await.map_err(|e| RegistryError::RollbackRefused {
                name: name.to_owned(),
                reason: format!("the kv could not be put back as it was before version {} migrated it: {e}", from.version()),
            })?;
        } else {
            self.migrate(&path, &from, &to).await?;
        }
        let committed = self.commit(&path, Arc::clone(&to));
        if let Err(error) = committed {
            if let Some(undo) = &undo {
                let _ = migration::restore(kv.as_ref(), name, &undo.after).await;
            }
            return Err(error);
        }
        if restored_kv {
            if let Some(list) = lock(&self.migrations).get_mut(name) {
                list.pop();
            }
        }
        self.failed().remove(&path);
        self.write_back(&path, &to).await;
        tracing::info!(plugin = name, from = from.version(), to = to.version(), restored_kv, "plugin rolled back");
        let data = json!({
            "event": "plugin_rolled_back",
            "plugin": name,
            "from": { "version": from.version(), "hash": from.hash },
            "to": { "version": to.version(), "hash": to.hash },
            "restored_kv": restored_kv,
        });
        self.publish(&data);
        Ok(RolledBack { from, to, restored_kv })
    }

    /// The migration a rollback from `from` to `to` must undo, if `from`
    /// migrated the kv; refused when it cannot be undone.
    fn migration_to_undo(&self, name: &str, from: &PluginVersion, to: &PluginVersion) -> Result<Option<Migrated>, RegistryError> {
        let Some(last) = lock(&self.migrations).get(name).and_then(|list| list.last().cloned()) else { return Ok(None) };
        if last.to != from.hash {
            return Ok(None);
        }
        let refuse = |reason: String| Err(RegistryError::RollbackRefused { name: name.to_owned(), reason });
        if last.from != to.hash {
            return refuse(format!(
                "version {} migrated the kv from another version than {}; roll back to the version it migrated from first",
                from.version(),
                to.version()
            ));
        }
        if migration::snapshot(self.runtime.kv().as_ref(), name) != last.after {
            return refuse(format!(
                "the kv was written since version {} migrated it; restoring the state of {} would lose those writes",
                from.version(),
                to.version()
            ));
        }
        Ok(Some(last))
    }

    /// Before `incoming` replaces `outgoing`: if it exports `migrate`,
    /// snapshot the kv and call it; on a failure put the snapshot back,
    /// publish `migration_failed` and refuse. A migration that changed the
    /// kv is remembered for a rollback.
    async fn migrate(&self, path: &Path, outgoing: &PluginVersion, incoming: &PluginVersion) -> Result<(), RegistryError> {
        if !incoming.has_migration() || outgoing.hash == incoming.hash {
            return Ok(());
        }
        let kv = self.runtime.kv();
        let name = incoming.name();
        let before = migration::snapshot(kv.as_ref(), name);
        if let Err(failure) = incoming.migrate(outgoing.version()).await {
            if let Err(e) = migration::restore(kv.as_ref(), name, &before).await {
                tracing::error!(plugin = name, "a failed migration's kv could not be put back: {e}");
            }
            tracing::warn!(plugin = name, from = outgoing.version(), to = incoming.version(), "migration failed: {failure}");
            self.publish(&json!({
                "event": "migration_failed",
                "plugin": name,
                "file": path.file_name().map(|f| f.to_string_lossy()),
                "from": { "version": outgoing.version(), "hash": outgoing.hash },
                "to": { "version": incoming.version(), "hash": incoming.hash },
                "error": { "code": failure.code, "message": failure.message },
            }));
            return Err(RegistryError::Migration {
                path: path.to_path_buf(),
                from: outgoing.version().to_owned(),
                to: incoming.version().to_owned(),
                failure: Box::new(failure),
            });
        }
        let after = migration::snapshot(kv.as_ref(), name);
        if after != before {
            let record = Migrated { from: outgoing.hash.clone(), to: incoming.hash.clone(), before, after };
            let mut migrations = lock(&self.migrations);
            let list = migrations.entry(name.to_owned()).or_default();
            list.push(record);
            // As many as there are versions to roll back to.
            let excess = list.len().saturating_sub(self.history.max(1));
            list.drain(..excess);
        }
        Ok(())
    }

    /// Write `version`'s bytes to `path` (beside it, then renamed), so the
    /// folder holds what serves; the watcher then finds it unchanged.
    async fn write_back(&self, path: &Path, version: &PluginVersion) {
        let Some(dir) = path.parent() else { return };
        let staging = dir.join(format!(".{}.rollback", version.hash));
        let written = async {
            tokio::fs::write(&staging, &*version.source).await?;
            tokio::fs::rename(&staging, path).await
        };
        if let Err(e) = written.await {
            let _ = tokio::fs::remove_file(&staging).await;
            tracing::error!(file = %path.display(), "rolled back, but the file could not be written; a restart serves what it holds: {e}");
        }
    }

    /// The live route table, for the dispatcher.
    pub fn routes(&self) -> Arc<ArcSwap<Routes>> {
        Arc::clone(&self.routes)
    }

    /// Every loaded plugin version, by file name.
    pub fn plugins(&self) -> Vec<Arc<PluginVersion>> {
        self.lock().values().cloned().collect()
    }

    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.runtime
    }

    pub fn swap_count(&self) -> u64 {
        self.metrics.swaps.get()
    }

    pub fn load_failure_count(&self) -> u64 {
        self.metrics.load_failures.get()
    }

    /// How many times the plugin named `name` was replaced while serving.
    pub fn swaps_of(&self, name: &str) -> u64 {
        lock(&self.swaps).get(name).copied().unwrap_or(0)
    }

    /// The version serving from `path`.
    pub fn serving(&self, path: &Path) -> Option<Arc<PluginVersion>> {
        self.lock().get(path).cloned()
    }

    /// The file the plugin named `name` is served from.
    pub fn path_of(&self, name: &str) -> Option<PathBuf> {
        self.lock().iter().find(|(_, v)| v.name() == name).map(|(path, _)| path.clone())
    }

    /// Load every `*.wasm` in `dir`, in name order. Failures are reported
    /// and skipped.
    pub async fn load_dir(&self, dir: &Path) -> std::io::Result<usize> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|path| is_plugin_file(path) && path.is_file())
            .collect();
        files.sort();
        let mut loaded = 0;
        for path in files {
            loaded += usize::from(self.load(&path).await.is_ok());
        }
        Ok(loaded)
    }

    /// A file event from the plugin folder: like [`load`](Self::load),
    /// except that new bytes for a serving plugin with a
    /// `[plugins.rollout.NAME]` section start a canary with that section's
    /// settings instead of swapping (a canary or shadow already running
    /// gets the plain load's behaviour). The file then holds the candidate;
    /// a rollback writes the serving version's bytes back.
    pub async fn arrived(self: &Arc<Self>, path: &Path) -> Result<Loaded, RegistryError> {
        // Noted first: an upload renames its file into place before it
        // commits, so this event may be reading the bytes that commit serves.
        let seen = self.change_of(path);
        let Some(serving) = self.serving(path).filter(|v| self.rollout.contains_key(v.name())) else {
            return self.load(path).await;
        };
        let name = serving.name().to_owned();
        if lock(&self.canaries).contains_key(&name) || lock(&self.shadows).contains_key(&name) {
            let running = lock(&self.canaries).get(&name).map(|c| c.candidate.hash.clone());
            let bytes = tokio::fs::read(path).await.map_err(|source| RegistryError::Read { path: path.into(), source })?;
            if running.as_deref() == Some(crate::plugins::runtime::cache::content_hash(&bytes).as_str()) {
                // A repeated event for the running candidate's bytes.
                return Ok(Loaded::Unchanged);
            }
            return self.load(path).await;
        }
        let bytes = tokio::fs::read(path).await.map_err(|source| RegistryError::Read { path: path.into(), source })?;
        let hash = crate::plugins::runtime::cache::content_hash(&bytes);
        if hash == serving.hash || self.failed().get(path) == Some(&hash) {
            return Ok(Loaded::Unchanged);
        }
        match self.start_canary(&name, Candidate::Bytes(bytes), self.rollout_of(&name)).await {
            Ok(_) => {
                self.failed().remove(path);
                Ok(Loaded::Unchanged)
            }
            // The plugin changed while this event read its file (an upload
            // committed those very bytes, or a rollback ran): not a failure.
            Err(_) if self.overtaken(path, seen, &name) => Ok(Loaded::Unchanged),
            Err(error) => {
                if matches!(error, RegistryError::Load { .. }) {
                    self.failed().insert(path.to_path_buf(), hash);
                }
                self.failed_load(path, &error);
                Err(error)
            }
        }
    }

    /// Load or replace the plugin served from `path`.
    pub async fn load(&self, path: &Path) -> Result<Loaded, RegistryError> {
        self.load_file(path, false).await
    }

    /// Load `path` again even if its content is what is serving: a fresh
    /// version with fresh instances.
    pub async fn reload(&self, path: &Path) -> Result<Loaded, RegistryError> {
        self.load_file(path, true).await
    }

    /// Validate an uploaded component, write it into `dir` (replacing the
    /// file of the plugin with the same name, if any) and serve it from
    /// there, as if it had been copied in: the watcher then finds the file's
    /// content already serving. Nothing lands in the folder unless it
    /// validates; bytes already serving are `Unchanged`.
    pub async fn install(&self, dir: &Path, bytes: Vec<u8>) -> Result<(PathBuf, Loaded), RegistryError> {
        let hash = crate::plugins::runtime::cache::content_hash(&bytes);
        if let Some(path) = self.lock().iter().find(|(_, v)| v.hash == hash).map(|(path, _)| path.clone()) {
            return Ok((path, Loaded::Unchanged));
        }
        let upload = dir.join("(upload)");
        // Hidden, so the watcher ignores it until it is renamed into place.
        let staging = dir.join(format!(".{hash}.upload"));
        let result = self.install_staged(dir, &upload, &staging, bytes, &hash).await;
        match &result {
            Ok((path, loaded)) => self.report_loaded(path, loaded),
            Err(error) => {
                let _ = tokio::fs::remove_file(&staging).await;
                self.failed_load(&upload, error);
            }
        }
        result
    }

    async fn install_staged(&self, dir: &Path, upload: &Path, staging: &Path, bytes: Vec<u8>, hash: &str) -> Result<(PathBuf, Loaded), RegistryError> {
        let write = |source| RegistryError::Write { path: staging.to_path_buf(), source };
        tokio::fs::write(staging, &bytes).await.map_err(write)?;
        let version = self.validate(upload, bytes, hash).await?;
        let path = self.path_of(version.name()).unwrap_or_else(|| dir.join(format!("{}.wasm", version.name())));
        // Check the claims before the file lands; `commit` checks again under the lock.
        self.next_slots(&self.lock(), &path, &version)?;
        if let Some(outgoing) = self.serving(&path) {
            self.migrate(&path, &outgoing, &version).await?;
        }
        tokio::fs::rename(staging, &path).await.map_err(write)?;
        let loaded = self.commit(&path, version).inspect_err(|_| {
            self.failed().insert(path.clone(), hash.to_owned());
        })?;
        self.failed().remove(&path);
        Ok((path, loaded))
    }

    /// Stop serving the plugin named `name` and delete its file.
    pub fn remove(&self, name: &str) -> Option<Arc<PluginVersion>> {
        let path = self.path_of(name)?;
        let old = self.unload(&path)?;
        if let Err(e) = std::fs::remove_file(&path) {
            tracing::error!(file = %path.display(), "plugin unloaded, but its file could not be deleted: {e}");
        }
        Some(old)
    }

    async fn load_file(&self, path: &Path, force: bool) -> Result<Loaded, RegistryError> {
        let result = self.try_load(path, force).await;
        match &result {
            Ok(loaded) => self.report_loaded(path, loaded),
            Err(error) => self.failed_load(path, error),
        }
        result
    }

    fn report_loaded(&self, path: &Path, loaded: &Loaded) {
        match loaded {
            Loaded::New(new) => self.report("plugin_loaded", path, Some(new), None, None),
            Loaded::Swapped { old, new } => self.report("plugin_swapped", path, Some(new), Some(old), None),
            Loaded::Unchanged => {}
        }
    }

    fn failed_load(&self, path: &Path, error: &RegistryError) {
        self.metrics.load_failures.inc();
        tracing::error!(code = error.code().as_str(), "plugin load failed; previous version (if any) keeps serving: {error}");
        let current = self.lock().get(path).cloned();
        self.report("plugin_failed", path, None, current.as_ref(), Some(error));
    }

    async fn try_load(&self, path: &Path, force: bool) -> Result<Loaded, RegistryError> {
        let seen = self.change_of(path);
        let bytes = tokio::fs::read(path).await.map_err(|source| RegistryError::Read { path: path.into(), source })?;
        let hash = crate::plugins::runtime::cache::content_hash(&bytes);
        let serving = self.lock().get(path).is_some_and(|v| v.hash == hash);
        if !force && (serving || self.failed().get(path) == Some(&hash)) {
            return Ok(Loaded::Unchanged);
        }
        let result = self.load_new(path, bytes, &hash, seen).await;
        let mut failed = self.failed();
        match &result {
            Err(RegistryError::Load { .. } | RegistryError::DuplicateName { .. }) => failed.insert(path.to_path_buf(), hash),
            _ => failed.remove(path),
        };
        result
    }

    /// Serve `bytes`, read from `path` when its slot had seen `seen`
    /// changes, unless the slot changed since.
    async fn load_new(&self, path: &Path, bytes: Vec<u8>, hash: &str, seen: u64) -> Result<Loaded, RegistryError> {
        let version = self.validate(path, bytes, hash).await?;
        if self.overtaken(path, seen, version.name()) {
            return Ok(Loaded::Unchanged);
        }
        if let Some(outgoing) = self.serving(path) {
            self.migrate(path, &outgoing, &version).await?;
        }
        self.commit_unless_changed(path, version, Some(seen))
    }

    /// How many times `path`'s slot has changed.
    fn change_of(&self, path: &Path) -> u64 {
        lock(&self.changes).get(path).copied().unwrap_or(0)
    }

    /// Whether `path`'s slot changed since it had seen `seen` changes: then
    /// what was read from the file before must not be served.
    fn overtaken(&self, path: &Path, seen: u64, plugin: &str) -> bool {
        let overtaken = self.change_of(path) != seen;
        if overtaken {
            tracing::info!(plugin, file = %path.display(), "file event overtaken: the plugin changed while its file was read and compiled; what serves now stays");
        }
        overtaken
    }

    /// Compile (off-thread, through the cache), instantiate once and read the
    /// manifest; errors name `path`.
    async fn validate(&self, path: &Path, bytes: Vec<u8>, hash: &str) -> Result<Arc<PluginVersion>, RegistryError> {
        let load_err = |source| RegistryError::Load { path: path.into(), source };
        self.metrics.compiles.inc();
        let compiled = self.runtime.compile(bytes, hash.to_owned()).await.map_err(load_err)?;
        tracing::debug!(path = %path.display(), cache = ?compiled.cache, "compiled");
        self.runtime.prepare(compiled).await.map_err(load_err)
    }

    /// The slots with `version` served from `path`, and their route table,
    /// if its name and claims fit beside every other plugin's.
    fn next_slots(
        &self,
        slots: &BTreeMap<PathBuf, Arc<PluginVersion>>,
        path: &Path,
        version: &Arc<PluginVersion>,
    ) -> Result<(BTreeMap<PathBuf, Arc<PluginVersion>>, Routes), RegistryError> {
        if let Some((other, _)) = slots.iter().find(|(p, v)| p.as_path() != path && v.name() == version.name()) {
            return Err(RegistryError::DuplicateName { path: path.into(), name: version.name().into(), other: other.clone() });
        }
        let mut next = slots.clone();
        next.insert(path.to_path_buf(), Arc::clone(version));
        let table = self.build_routes(&next).map_err(|e| RegistryError::Load { path: path.into(), source: e.into() })?;
        Ok((next, table))
    }

    /// Serve a validated version from `path`: swap the route table.
    fn commit(&self, path: &Path, version: Arc<PluginVersion>) -> Result<Loaded, RegistryError> {
        self.commit_unless_changed(path, version, None)
    }

    /// [`commit`](Self::commit), unless `path`'s slot has changed since it
    /// had seen `seen` changes (then `Unchanged`).
    fn commit_unless_changed(&self, path: &Path, version: Arc<PluginVersion>, seen: Option<u64>) -> Result<Loaded, RegistryError> {
        let mut slots = self.lock();
        if seen.is_some_and(|seen| self.overtaken(path, seen, version.name())) {
            return Ok(Loaded::Unchanged);
        }
        let (next, table) = self.next_slots(&slots, path, &version)?;
        let old = slots.get(path).cloned();
        self.routes.store(Arc::new(table));
        *slots = next;
        *lock(&self.changes).entry(path.to_path_buf()).or_default() += 1;
        drop(slots);
        tracing::info!(plugin = version.name(), version = version.version(), file = %path.display(), claims = ?version.claims.iter().map(ToString::to_string).collect::<Vec<_>>(), "plugin serving");
        self.start_ticks(path, &version);
        let mut retained = lock(&self.retained);
        let versions = retained.entry(version.name().to_owned()).or_default();
        versions.forget(&version.hash);
        if let Some(old) = &old {
            versions.push(Arc::clone(old), self.history);
        }
        drop(retained);
        if let Some(canary) = lock(&self.canaries).get(version.name()).filter(|c| !Arc::ptr_eq(&c.candidate, &version)) {
            // Its stable version is no longer serving.
            canary.decide(CanaryState::RolledBack, format!("version {} was loaded in its place", version.version()));
        }
        if old.is_some() {
            // The version it was compared with is no longer serving.
            let _ = self.stop_shadow(version.name(), format!("version {} was loaded in place of the serving one", version.version()));
        }
        Ok(match old {
            Some(old) => {
                self.metrics.swaps.inc();
                *lock(&self.swaps).entry(version.name().to_owned()).or_default() += 1;
                Loaded::Swapped { old, new: version }
            }
            None => Loaded::New(version),
        })
    }

    /// Stop serving the plugin loaded from `path`; its types become unknown.
    pub fn unload(&self, path: &Path) -> Option<Arc<PluginVersion>> {
        self.failed().remove(path);
        let mut slots = self.lock();
        let mut next = slots.clone();
        let old = next.remove(path)?;
        // Removing claims cannot create a conflict.
        match self.build_routes(&next) {
            Ok(table) => self.routes.store(Arc::new(table)),
            Err(e) => {
                tracing::error!("route table rebuild failed on unload: {e}");
                return None;
            }
        }
        *slots = next;
        *lock(&self.changes).entry(path.to_path_buf()).or_default() += 1;
        drop(slots);
        self.stop_ticks(path);
        let _ = self.stop_shadow(old.name(), "the plugin was unloaded".into());
        tracing::info!(plugin = old.name(), version = old.version(), file = %path.display(), "plugin unloaded");
        self.report("plugin_unloaded", path, None, Some(&old), None);
        Some(old)
    }

    /// Replace the tick task for `path` with one for `version`, if it ticks.
    fn start_ticks(&self, path: &Path, version: &Arc<PluginVersion>) {
        self.stop_ticks(path);
        let Some(every) = version.tick_interval else { return };
        let plugin = Arc::downgrade(version);
        let stop = self.tasks.spawn(|stop| tick_loop(plugin, every, stop));
        lock(&self.tickers).insert(path.to_path_buf(), stop);
    }

    fn stop_ticks(&self, path: &Path) {
        if let Some(stop) = lock(&self.tickers).remove(path) {
            stop.cancel();
        }
    }

    /// A table of `slots`' claims, with the current worker rules.
    fn build_routes(&self, slots: &BTreeMap<PathBuf, Arc<PluginVersion>>) -> Result<Routes, RouteError> {
        let canaries = lock(&self.canaries)
            .values()
            .filter(|c| c.state() == CanaryState::Running && slots.values().any(|v| Arc::ptr_eq(v, &c.stable)))
            .cloned()
            .collect();
        let shadows = lock(&self.shadows)
            .values()
            .filter(|(s, _)| slots.values().any(|v| Arc::ptr_eq(v, &s.serving)))
            .map(|(s, _)| Arc::clone(s))
            .collect();
        Ok(Routes::build(slots.values(), Arc::clone(self.routes.load().worker_rules()))?.with_canaries(canaries).with_shadows(shadows))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<PathBuf, Arc<PluginVersion>>> {
        lock(&self.slots)
    }

    fn failed(&self) -> std::sync::MutexGuard<'_, HashMap<PathBuf, String>> {
        lock(&self.failed)
    }

    fn report(
        &self,
        event: &str,
        path: &Path,
        new: Option<&Arc<PluginVersion>>,
        old: Option<&Arc<PluginVersion>>,
        error: Option<&RegistryError>,
    ) {
        let data = json!({
            "event": event,
            "file": path.file_name().map(|f| f.to_string_lossy()),
            "plugin": new.or(old).map(|v| v.name()),
            "version": new.map(|v| v.version()),
            "previous_version": old.map(|v| v.version()),
            "hash": new.map(|v| v.hash.as_str()),
            "claims": new.map(|v| v.claims.iter().map(ToString::to_string).collect::<Vec<_>>()),
            "error": error.map(|e| json!({ "code": e.code().as_str(), "message": e.to_string() })),
        });
        self.publish(&data);
    }

    /// Publish a `status` event.
    pub fn publish(&self, data: &serde_json::Value) {
        if let Ok(raw) = serde_json::value::to_raw_value(data) {
            let _ = self.events.publish(STATUS_TOPIC, &raw, "registry");
        }
    }
}

/// Call a version's `tick` hook every `every` until it is replaced.
async fn tick_loop(plugin: Weak<PluginVersion>, every: Duration, stop: CancellationToken) {
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let Some(plugin) = plugin.upgrade() else { return };
        tracing::trace!(plugin = plugin.name(), "tick");
        if let Err(failure) = plugin.tick().await {
            tracing::warn!(plugin = plugin.name(), version = plugin.version(), "tick failed: {failure}");
        }
    }
}

/// A file the registry serves: `*.wasm`, not hidden (editors and the
/// atomic-rename workflow write `.name.wasm` or `name.wasm.tmp` first).
pub fn is_plugin_file(path: &Path) -> bool {
    path.extension().is_some_and(|ext| ext == "wasm")
        && path.file_name().and_then(|n| n.to_str()).is_some_and(|n| !n.starts_with('.'))
}
