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
use crate::plugins::runtime::{LoadError, PluginVersion, Runtime};
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
}

impl RegistryError {
    pub fn code(&self) -> ErrorCode {
        match self {
            RegistryError::Read { .. } => ErrorCode::PluginReadFailed,
            RegistryError::Load { source, .. } => source.code(),
            RegistryError::DuplicateName { .. } => ErrorCode::ClaimConflict,
            RegistryError::Write { .. } => ErrorCode::PluginWriteFailed,
        }
    }
}

/// What a successful load did.
#[derive(Debug)]
pub enum Loaded {
    New(Arc<PluginVersion>),
    Swapped { old: Arc<PluginVersion>, new: Arc<PluginVersion> },
    /// The file's content is what is already serving, or what already
    /// failed to load: nothing to do, nothing to report.
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
    events: Arc<dyn EventSink>,
    /// Stops the tick task of each file's serving version.
    tickers: Mutex<HashMap<PathBuf, CancellationToken>>,
    /// Where tick tasks run, stopped with the host.
    tasks: Tasks,
    /// Swaps per plugin name, for status.
    swaps: Mutex<HashMap<String, u64>>,
    metrics: RegistryMetrics,
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
            events,
            tickers: Mutex::default(),
            tasks,
            swaps: Mutex::default(),
            metrics,
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
        let bytes = tokio::fs::read(path).await.map_err(|source| RegistryError::Read { path: path.into(), source })?;
        let hash = crate::plugins::runtime::cache::content_hash(&bytes);
        let serving = self.lock().get(path).is_some_and(|v| v.hash == hash);
        if !force && (serving || self.failed().get(path) == Some(&hash)) {
            return Ok(Loaded::Unchanged);
        }
        let result = self.load_new(path, bytes, &hash).await;
        let mut failed = self.failed();
        match &result {
            Err(RegistryError::Load { .. } | RegistryError::DuplicateName { .. }) => failed.insert(path.to_path_buf(), hash),
            _ => failed.remove(path),
        };
        result
    }

    async fn load_new(&self, path: &Path, bytes: Vec<u8>, hash: &str) -> Result<Loaded, RegistryError> {
        let version = self.validate(path, bytes, hash).await?;
        self.commit(path, version)
    }

    /// Compile (off-thread, through the cache), instantiate once and read the
    /// manifest; errors name `path`.
    async fn validate(&self, path: &Path, bytes: Vec<u8>, hash: &str) -> Result<Arc<PluginVersion>, RegistryError> {
        let load_err = |source| RegistryError::Load { path: path.into(), source };
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
        let mut slots = self.lock();
        let (next, table) = self.next_slots(&slots, path, &version)?;
        let old = slots.get(path).cloned();
        self.routes.store(Arc::new(table));
        *slots = next;
        drop(slots);
        tracing::info!(plugin = version.name(), version = version.version(), file = %path.display(), claims = ?version.claims.iter().map(ToString::to_string).collect::<Vec<_>>(), "plugin serving");
        self.start_ticks(path, &version);
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
        drop(slots);
        self.stop_ticks(path);
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
        Routes::build(slots.values(), Arc::clone(self.routes.load().worker_rules()))
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
        if let Ok(raw) = serde_json::value::to_raw_value(&data) {
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
