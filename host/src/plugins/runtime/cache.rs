//! On-disk cache of compiled components, keyed by the component's content
//! hash and the engine's compatibility hash, so a restart does not recompile.
//!
//! Files are written beside their final name and renamed into place, so a
//! crash never leaves a half-written entry. The cache folder must be private
//! to the host: its files are loaded as native code.

use sha2::{Digest, Sha256};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use wasmtime::component::Component;
use wasmtime::Engine;

/// Where a compiled component came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    Hit,
    Miss,
    Disabled,
}

pub struct CompileCache {
    dir: Option<PathBuf>,
    engine_key: String,
}

impl CompileCache {
    pub fn new(engine: &Engine, dir: Option<PathBuf>) -> Self {
        let mut hasher = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        CompileCache { dir, engine_key: format!("{:016x}", hasher.finish()) }
    }

    /// Compile `bytes` (whose sha256 is `hash`), or load it from the cache.
    /// Blocking: call it off the async workers.
    pub fn load_or_compile(&self, engine: &Engine, bytes: &[u8], hash: &str) -> wasmtime::Result<(Component, CacheOutcome)> {
        let Some(dir) = &self.dir else {
            return Ok((Component::new(engine, bytes)?, CacheOutcome::Disabled));
        };
        let path = self.entry(dir, hash);
        if path.is_file() {
            // SAFETY: the file is named by the component's content hash and
            // this engine's compatibility hash, and was written by
            // `store` below from `Component::serialize` of this engine
            // configuration; the cache folder is private to the host.
            match unsafe { Component::deserialize_file(engine, &path) } {
                Ok(component) => return Ok((component, CacheOutcome::Hit)),
                Err(e) => tracing::warn!(path = %path.display(), "dropping unreadable compile cache entry: {e}"),
            }
        }
        let component = Component::new(engine, bytes)?;
        if let Err(e) = store(dir, &path, &component) {
            tracing::warn!(path = %path.display(), "could not write compile cache entry: {e}");
        }
        Ok((component, CacheOutcome::Miss))
    }

    /// Whether the cache holds the component whose content hash is `hash`.
    pub fn holds(&self, hash: &str) -> bool {
        self.dir.as_ref().is_some_and(|dir| self.entry(dir, hash).is_file())
    }

    fn entry(&self, dir: &Path, hash: &str) -> PathBuf {
        dir.join(format!("{hash}-{}.cwasm", self.engine_key))
    }
}

fn store(dir: &Path, path: &Path, component: &Component) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, component.serialize().map_err(anyhow::Error::from)?)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// Hex sha256 of a component's bytes: its identity in the cache and the registry.
pub fn content_hash(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}
