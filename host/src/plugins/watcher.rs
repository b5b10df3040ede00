//! Watches the plugin folder and feeds the registry.
//!
//! notify's thread → bounded channel → debounce → `Registry::load` if the
//! file exists, else `Registry::unload`.
//!
//! Only writes in place are debounced (a path must be quiet for the debounce
//! interval): the debounce waits out a copy in progress, and a file that
//! still fails to compile leaves the previous version serving until the next
//! write re-triggers a load. A rename or a removal is acted on at once: a
//! file renamed into the folder is whole (the atomic-rename workflow: write
//! `.name.wasm`, then `mv` it to `name.wasm`), and a removed one is gone, so
//! waiting would only delay the swap. Reads are not changes and are not
//! acted on: the registry reads a file to load it, so an open taken for a
//! write would have it reading its own reads back forever.

use crate::lifecycle::Tasks;
use crate::plugins::deploys::ChangedBy;
use crate::plugins::registry::{is_plugin_file, Loaded, Registry};
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
    let (tx, rx) = mpsc::channel::<(PathBuf, Settled)>(EVENT_QUEUE);
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| match event {
        Ok(event) => {
            let Some(settled) = Settled::by(&event.kind) else { return };
            for path in event.paths.into_iter().filter(|p| is_plugin_file(p)) {
                // notify calls back on its own thread, outside the runtime.
                if tx.blocking_send((path, settled)).is_err() {
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

/// Whether a file event leaves the file as it will stay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Settled {
    /// Renamed into place or removed: act now.
    Now,
    /// Created or written in place: wait for the writes to stop.
    AfterQuiet,
}

impl Settled {
    /// `None` for an event that changes nothing: a file opened, read, or
    /// closed without writing (the registry's own reads, a backup tool's).
    fn by(kind: &notify::EventKind) -> Option<Settled> {
        use notify::event::{AccessKind, AccessMode, EventKind, ModifyKind};
        match kind {
            EventKind::Modify(ModifyKind::Name(_)) | EventKind::Remove(_) => Some(Settled::Now),
            EventKind::Access(AccessKind::Close(AccessMode::Write)) => Some(Settled::AfterQuiet),
            EventKind::Access(_) => None,
            _ => Some(Settled::AfterQuiet),
        }
    }
}

async fn debounce_loop(
    _watcher: notify::RecommendedWatcher,
    mut rx: mpsc::Receiver<(PathBuf, Settled)>,
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
                Some((path, Settled::Now)) => { pending.insert(path, Instant::now()); }
                // A later write restarts the wait, even after a rename.
                Some((path, Settled::AfterQuiet)) => { pending.insert(path, Instant::now() + debounce); }
                None => return,
            },
            _ = sleep_until(next_due) => {
                let now = Instant::now();
                let due: Vec<PathBuf> = pending.iter().filter(|(_, at)| **at <= now).map(|(p, _)| p.clone()).collect();
                for path in due {
                    pending.remove(&path);
                    let hook = registry.deploy_hook();
                    if path.is_file() {
                        // Failures are logged and published by the registry.
                        let loaded = registry.arrived(&path).await;
                        if let (Ok(Loaded::New(new) | Loaded::Swapped { new, .. }), Some(hook)) = (loaded, hook) {
                            hook.installed(&new, &path, ChangedBy::Folder);
                        }
                    } else if let Some(old) = registry.unload(&path) {
                        if let Some(hook) = hook {
                            hook.removed(old.name(), ChangedBy::Folder);
                        }
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

#[cfg(test)]
mod tests {
    use super::Settled;
    use notify::event::{AccessKind, AccessMode, CreateKind, DataChange, EventKind, ModifyKind, RemoveKind, RenameMode};

    #[test]
    fn reads_are_not_changes_and_renames_are_acted_on_at_once() {
        let read = [AccessKind::Open(AccessMode::Any), AccessKind::Read, AccessKind::Close(AccessMode::Read)];
        for kind in read {
            assert_eq!(Settled::by(&EventKind::Access(kind)), None, "{kind:?}");
        }
        let written = [
            EventKind::Create(CreateKind::File),
            EventKind::Modify(ModifyKind::Data(DataChange::Any)),
            EventKind::Access(AccessKind::Close(AccessMode::Write)),
        ];
        for kind in written {
            assert_eq!(Settled::by(&kind), Some(Settled::AfterQuiet), "{kind:?}");
        }
        for kind in [EventKind::Modify(ModifyKind::Name(RenameMode::To)), EventKind::Remove(RemoveKind::File)] {
            assert_eq!(Settled::by(&kind), Some(Settled::Now), "{kind:?}");
        }
    }
}
