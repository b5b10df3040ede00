//! The seam through which a cluster hears of plugins changed by hand on
//! this host — uploaded or removed through the HTTP API, or written in or
//! deleted from the plugin folder — so it can pass them on to the other
//! nodes.
//!
//! Only those changes are told: a component the cluster itself installs
//! (from its store) goes through [`Registry`](super::registry::Registry)
//! directly and is not told back, so a deploy never loops between nodes.

use super::runtime::PluginVersion;
use std::path::Path;
use std::sync::Arc;

/// Where a change by hand came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangedBy {
    /// `PUT/POST /api/plugins`, `DELETE /api/plugins/{name}`.
    Api,
    /// The plugin folder's watcher.
    Folder,
}

/// Told of every plugin changed by hand on this host, after the change
/// serves. Returns at once: whatever it does with it runs elsewhere.
pub trait DeployHook: Send + Sync + 'static {
    /// `version` now serves from `path` (its component's file).
    fn installed(&self, version: &Arc<PluginVersion>, path: &Path, changed_by: ChangedBy);
    /// The plugin named `name` no longer serves.
    fn removed(&self, name: &str, changed_by: ChangedBy);
}
