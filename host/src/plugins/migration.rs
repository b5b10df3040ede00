//! State migration between plugin versions (the 0.3 `migration` export).
//!
//! Before an incoming version that exports `migrate` takes traffic, the
//! registry snapshots the plugin's kv, calls `migrate(outgoing version)`,
//! and on a failure puts the snapshot back and refuses the swap. A
//! migration that changed the kv is remembered (the state before and
//! after); a rollback from the migrated version to the one it replaced
//! puts the state before back, if the kv is still exactly as the migration
//! left it; if it was written since, the rollback is refused
//! (`ROLLBACK_REFUSED`), because restoring would lose those writes.
//!
//! Writes the outgoing version makes while `migrate` runs land on the kv
//! `migrate` sees or after it: migrate data that the outgoing version
//! still writes with that in mind.

use crate::services::{KvError, KvStore};
use std::collections::BTreeMap;

/// A plugin's whole kv at one moment.
pub type Snapshot = BTreeMap<String, String>;

/// Every key and value of `plugin`.
pub fn snapshot(kv: &dyn KvStore, plugin: &str) -> Snapshot {
    kv.keys(plugin, "").into_iter().filter_map(|key| Some((key.clone(), kv.get(plugin, &key)?))).collect()
}

/// Put `plugin`'s kv back to `snapshot`: delete the keys it did not have,
/// write the values that differ.
pub async fn restore(kv: &dyn KvStore, plugin: &str, snapshot: &Snapshot) -> Result<(), KvError> {
    let now = self::snapshot(kv, plugin);
    for key in now.keys().filter(|key| !snapshot.contains_key(*key)) {
        kv.delete(plugin, key).await?;
    }
    for (key, value) in snapshot {
        if now.get(key) != Some(value) {
            kv.set(plugin, key, value.clone()).await?;
        }
    }
    Ok(())
}

/// A migration that changed the kv, kept to undo it on a rollback.
#[derive(Debug, Clone)]
pub struct Migrated {
    /// Content hash of the version migrated from.
    pub from: String,
    /// Content hash of the version that migrated.
    pub to: String,
    pub before: Snapshot,
    pub after: Snapshot,
}
