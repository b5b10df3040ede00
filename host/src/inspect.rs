//! `switchyard plugin inspect`: load a component the way the registry
//! would, and report its manifest or exactly why it is not a plugin.

use crate::envelope::Failure;
use crate::runtime::{LoadError, PluginLimits, PluginVersion, Runtime, Services};
use crate::services::EventSink;
use crate::state::MemoryKv;
use serde_json::{json, value::RawValue, Value};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Events from a plugin being inspected go nowhere.
struct Discard;

impl EventSink for Discard {
    fn publish(&self, _: &str, _: &RawValue, _: &str) -> Result<usize, Failure> {
        Ok(0)
    }

    fn send(&self, _: &str, _: &RawValue) -> Result<(), Failure> {
        Ok(())
    }
}

/// The manifest of the component at `path`, as JSON, or why it is not a plugin.
pub async fn inspect(path: &Path) -> Result<Value, InspectError> {
    let bytes = std::fs::read(path).map_err(|e| InspectError { code: "PLUGIN_READ_FAILED", message: format!("cannot read {}: {e}", path.display()) })?;
    let limits = PluginLimits { deadline: Duration::from_secs(5), memory_bytes: 64 << 20, max_instances: 1 };
    let services = Services { events: Arc::new(Discard), kv: Arc::new(MemoryKv::default()) };
    let runtime = Runtime::new(limits, None, HashMap::new(), services)
        .map_err(|e| InspectError { code: "INTERNAL_ERROR", message: format!("{e:#}") })?;
    let hash = crate::runtime::cache::content_hash(&bytes);
    let compiled = runtime.compile(bytes, hash).await?;
    let version = runtime.prepare(compiled, path.to_path_buf()).await?;
    Ok(describe(&version))
}

fn describe(version: &PluginVersion) -> Value {
    json!({
        "name": version.name(),
        "version": version.version(),
        "description": version.description,
        "claims": version.claims.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "world": "switchyard:plugin/plugin@0.1.0",
        "sha256": version.hash,
    })
}

#[derive(Debug)]
pub struct InspectError {
    pub code: &'static str,
    pub message: String,
}

impl From<LoadError> for InspectError {
    fn from(e: LoadError) -> Self {
        InspectError { code: e.code(), message: e.to_string() }
    }
}
