//! Plugin key-value state kept in host memory, scoped by plugin name.
//!
//! It survives hot swaps (it belongs to the plugin's name, not to a loaded
//! version) but not a host restart. Every plugin has a value-size and a
//! key-count quota, so no plugin can grow the host without bound.
//! [`Entries`] is also the read cache of the durable store
//! ([`super::kv::DurableKv`]).

use crate::services::{KvError, KvStore, KvWrite};
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use crate::sync::lock;

/// Quotas per plugin.
#[derive(Debug, Clone, Copy)]
pub struct KvQuota {
    pub max_value_bytes: usize,
    pub max_keys: usize,
}

impl Default for KvQuota {
    fn default() -> Self {
        KvQuota { max_value_bytes: 1 << 20, max_keys: 10_000 }
    }
}

/// Every plugin's entries, in memory, with the quota checks.
#[derive(Default)]
pub struct Entries {
    quota: KvQuota,
    plugins: Mutex<HashMap<String, BTreeMap<String, String>>>,
}

impl Entries {
    pub fn new(quota: KvQuota) -> Self {
        Entries { quota, plugins: Mutex::default() }
    }

    fn with<R>(&self, f: impl FnOnce(&mut HashMap<String, BTreeMap<String, String>>) -> R) -> R {
        // A panic while holding the lock cannot leave a map half-updated
        // (each operation is one map call), so a poisoned lock is still sound.
        let mut guard = lock(&self.plugins);
        f(&mut guard)
    }

    pub fn get(&self, plugin: &str, key: &str) -> Option<String> {
        self.with(|plugins| plugins.get(plugin)?.get(key).cloned())
    }

    /// Whether `plugin` may set `key` to a value of `len` bytes.
    pub fn check(&self, plugin: &str, key: &str, len: usize) -> Result<(), KvError> {
        let KvQuota { max_value_bytes, max_keys } = self.quota;
        if len + key.len() > max_value_bytes {
            return Err(KvError::ValueTooLarge { len: len + key.len(), limit: max_value_bytes });
        }
        self.with(|plugins| match plugins.get(plugin) {
            Some(entries) if entries.len() >= max_keys && !entries.contains_key(key) => Err(KvError::TooManyKeys { limit: max_keys }),
            _ => Ok(()),
        })
    }

    /// Set without a quota check (the caller checked, or is loading).
    pub fn put(&self, plugin: &str, key: &str, value: String) {
        self.with(|plugins| plugins.entry(plugin.to_owned()).or_default().insert(key.to_owned(), value));
    }

    pub fn set(&self, plugin: &str, key: &str, value: String) -> Result<(), KvError> {
        let KvQuota { max_value_bytes, max_keys } = self.quota;
        if value.len() + key.len() > max_value_bytes {
            return Err(KvError::ValueTooLarge { len: value.len() + key.len(), limit: max_value_bytes });
        }
        self.with(|plugins| {
            let entries = plugins.entry(plugin.to_owned()).or_default();
            if entries.len() >= max_keys && !entries.contains_key(key) {
                return Err(KvError::TooManyKeys { limit: max_keys });
            }
            entries.insert(key.to_owned(), value);
            Ok(())
        })
    }

    pub fn delete(&self, plugin: &str, key: &str) {
        self.with(|plugins| plugins.get_mut(plugin).map(|entries| entries.remove(key)));
    }

    pub fn keys(&self, plugin: &str, prefix: &str) -> Vec<String> {
        self.with(|plugins| {
            plugins.get(plugin).map_or_else(Vec::new, |entries| {
                entries.range(prefix.to_owned()..).map(|(k, _)| k).take_while(|k| k.starts_with(prefix)).cloned().collect()
            })
        })
    }
}

/// In-memory [`KvStore`]: lost at exit.
#[derive(Default)]
pub struct MemoryKv {
    entries: Entries,
}

impl MemoryKv {
    pub fn new(quota: KvQuota) -> Self {
        MemoryKv { entries: Entries::new(quota) }
    }
}

impl KvStore for MemoryKv {
    fn get(&self, plugin: &str, key: &str) -> Option<String> {
        self.entries.get(plugin, key)
    }

    fn set(&self, plugin: &str, key: &str, value: String) -> KvWrite {
        Box::pin(std::future::ready(self.entries.set(plugin, key, value)))
    }

    fn delete(&self, plugin: &str, key: &str) -> KvWrite {
        self.entries.delete(plugin, key);
        Box::pin(std::future::ready(Ok(())))
    }

    fn keys(&self, plugin: &str, prefix: &str) -> Vec<String> {
        self.entries.keys(plugin, prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scoped_by_plugin_with_quotas() {
        let kv = Entries::new(KvQuota { max_value_bytes: 16, max_keys: 2 });
        kv.set("a", "k1", "v".into()).unwrap();
        kv.set("a", "k2", "v".into()).unwrap();
        assert_eq!(kv.get("b", "k1"), None);
        assert_eq!(kv.set("a", "k3", "v".into()), Err(KvError::TooManyKeys { limit: 2 }));
        kv.set("a", "k1", "w".into()).unwrap();
        assert!(matches!(kv.set("b", "k", "x".repeat(20)), Err(KvError::ValueTooLarge { .. })));
        assert_eq!(kv.keys("a", "k"), ["k1", "k2"]);
        kv.delete("a", "k1");
        assert_eq!(kv.keys("a", ""), ["k2"]);
        assert_eq!(kv.get("a", "k1"), None);
    }
}
