//! Watches the plugin folder and feeds the registry.
//!
//! notify's thread → bounded channel → debounce (a path must be quiet for
//! the debounce interval) → `Registry::load` if the file exists, else
//! `Registry::unload`. Half-written files are covered twice: the debounce
//! waits out a copy in progress, and a file that still fails to compile
//! leaves the previous version serving until the next write re-triggers a
//! load. The atomic-rename workflow (write `.name.wasm`, then `mv`) avoids
//! both.

use crate::lifecycle::Tasks;
use crate::plugins::registry::{is_plugin_file, Registry};
use notify::{RecursiveMode, Watcher};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Paths waiting to be debounced, at most.
const EVENT_QUEUE: usize = 1024;

/// Start watching `dir`; the task ends when the host shuts down.
pub fn watch(dir: &Path, debounce: Duration, registry: Arc<Registry>, tasks: &Tasks) -> notify::Result<()> {
    let (tx, rx) = mpsc::channel::<PathBuf>(EVENT_QUEUE);
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| match event {
        Ok(event) => {
            for path in event.paths.into_iter().filter(|p| is_plugin_file(p)) {
                // notify calls back on its own thread, outside the runtime.
                if tx.blocking_send(path).is_err() {
                    return;
                }
            }
        }
        Err(e) => tracing::warn!("plugin folder watch error: {e}"),
    })?;
    watcher.watch(dir, RecursiveMode::NonRecursive)?;
    tasks.spawn(|stop| debounce_loop(watcher, rx, debounce, registry, stop));
    Ok(())
}

async fn debounce_loop(
    _watcher: notify::RecommendedWatcher,
    mut rx: mpsc::Receiver<PathBuf>,
    debounce: Duration,
    registry: Arc<Registry>,
    shutdown: CancellationToken,
) {
    let mut pending: HashMap<PathBuf, Instant> = HashMap::new();
    loop {
        let next_due = pending.values().min().copied();
        tokio::select! {
            _ = shutdown.cancelled() => return,
            received = rx.recv() => match received {
                Some(path) => { pending.insert(path, Instant::now() + debounce); }
                None => return,
            },
            _ = sleep_until(next_due) => {
                let now = Instant::now();
                let due: Vec<PathBuf> = pending.iter().filter(|(_, at)| **at <= now).map(|(p, _)| p.clone()).collect();
                for path in due {
                    pending.remove(&path);
                    if path.is_file() {
                        // Failures are logged and published by the registry.
                        let _ = registry.load(&path).await;
                    } else {
                        registry.unload(&path);
                    }
                }
            }
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
