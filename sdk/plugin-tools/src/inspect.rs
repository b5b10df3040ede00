//! `switchyard plugin inspect`: load a component the way the registry
//! would, and report its manifest or exactly why it is not a plugin.
//!
//! The only module of this crate that uses the engine (`switchyard`): when
//! the engine's paths move, this is the one file to re-point.

use switchyard::hub::{Hub, HubLimits};
use switchyard::observability::system::HostSystem;
use switchyard::plugins::runtime::{LoadError, PluginLimits, PluginVersion, Runtime, Services};
use switchyard::store::memory::MemoryKv;
use switchyard::wire::ErrorCode;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// The manifest of the component at `path`, as JSON, or why it is not a plugin.
pub async fn inspect(path: &Path) -> Result<Value, InspectError> {
    let bytes = std::fs::read(path).map_err(|e| InspectError { code: ErrorCode::PluginReadFailed, message: format!("cannot read {}: {e}", path.display()) })?;
    let limits = PluginLimits {
        deadline: Duration::from_secs(5),
        memory_bytes: 64 << 20,
        max_instances: 1,
        breaker: Default::default(),
        cpu: Default::default(),
    };
    // A hub with no connections: whatever the plugin publishes goes nowhere.
    let hub = Arc::new(Hub::new(HubLimits { outbox_frames: 1, outbox_bytes: 1 << 20, max_client_calls: 1 }, Default::default()));
    let services = Services { events: hub.clone(), kv: Arc::new(MemoryKv::default()), rooms: hub.clone(), calls: hub, system: Arc::new(HostSystem::default()) };
    let runtime = Runtime::new(limits, None, HashMap::new(), HashMap::new(), services)
        .map_err(|e| InspectError { code: ErrorCode::Internal, message: format!("{e:#}") })?;
    let hash = switchyard::plugins::runtime::cache::content_hash(&bytes);
    let compiled = runtime.compile(bytes, hash).await?;
    let version = runtime.prepare(compiled).await?;
    Ok(describe(&version))
}

fn describe(version: &PluginVersion) -> Value {
    json!({
        "name": version.name(),
        "version": version.version(),
        "description": version.description,
        "claims": version.claims.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "contract": format!("switchyard:plugin@{}", version.contract),
        "hooks": version.has_hooks(),
        "frames": version.has_frames(),
        "migration": version.has_migration(),
        "tick_interval_ms": version.tick_interval.map(|d| d.as_millis() as u64),
        "sha256": version.hash,
    })
}

#[derive(Debug)]
pub struct InspectError {
    pub code: ErrorCode,
    pub message: String,
}

impl From<LoadError> for InspectError {
    fn from(e: LoadError) -> Self {
        InspectError { code: e.code(), message: e.to_string() }
    }
}
