//! Plugin key-value state shared by every node: a JetStream key-value
//! bucket (`<cluster>-kv`), with an in-memory copy on each node that serves
//! every read.
//!
//! Consistency: a write returns once JetStream has stored it (and on a
//! replicated stream, once a majority has); the writing node's copy
//! changes then, so it reads its own writes. The other nodes' copies
//! follow the bucket's watch, in the bucket's order, usually within a
//! millisecond or two on a LAN: reads elsewhere are eventually consistent,
//! and two nodes writing one key at once leave the later write standing
//! (last writer wins; no transactions across keys). Quotas are checked
//! against the local copy.

use crate::services::{KvError, KvStore, KvWrite};
use crate::store::memory::{Entries, KvQuota};
use async_nats::jetstream::kv::{Config, Operation, Store};
use futures_util::StreamExt;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// [`KvStore`] on a JetStream key-value bucket. Cheap to clone.
#[derive(Clone)]
pub struct SharedKv {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    entries: Entries,
    timeout: Duration,
}

/// NATS keys allow `[-/_=.a-zA-Z0-9]`: plugin names and keys go hex-encoded,
/// `<plugin>.<key>`.
fn bucket_key(plugin: &str, key: &str) -> String {
    format!("{}.{}", hex::encode(plugin), hex::encode(key))
}

fn plugin_and_key(bucket_key: &str) -> Option<(String, String)> {
    let (plugin, key) = bucket_key.split_once('.')?;
    let text = |h: &str| hex::decode(h).ok().and_then(|b| String::from_utf8(b).ok());
    Some((text(plugin)?, text(key)?))
}

impl SharedKv {
    /// Open (or create) the cluster's bucket, load it, and follow it.
    pub async fn open(client: async_nats::Client, cluster: &str, quota: KvQuota, timeout: Duration, tasks: &crate::lifecycle::Tasks) -> anyhow::Result<SharedKv> {
        let jetstream = async_nats::jetstream::new(client);
        let bucket = format!("{cluster}-kv");
        let store = match jetstream.get_key_value(&bucket).await {
            Ok(store) => store,
            Err(_) => jetstream
                .create_key_value(Config { bucket: bucket.clone(), history: 1, ..Default::default() })
                .await
                .map_err(|e| anyhow::anyhow!("cannot create the key-value bucket {bucket}: {e}"))?,
        };
        let entries = Entries::new(quota);
        let pending = store.status().await.map_err(|e| anyhow::anyhow!("key-value bucket {bucket}: {e}"))?.values();
        let mut watch = store.watch_with_history(">").await.map_err(|e| anyhow::anyhow!("cannot watch {bucket}: {e}"))?;
        let inner = Arc::new(Inner { store, entries, timeout });
        // Everything stored so far, before the first plugin call.
        let mut loaded = 0;
        while loaded < pending {
            let Ok(Some(Ok(entry))) = tokio::time::timeout(timeout, watch.next()).await else { break };
            loaded += 1;
            inner.apply(&entry);
            if entry.delta == 0 {
                break;
            }
        }
        tracing::info!(entries = loaded, bucket, "shared plugin key-value state loaded");
        let follower = Arc::clone(&inner);
        tasks.spawn(|stop: CancellationToken| async move {
            loop {
                let entry = tokio::select! {
                    entry = watch.next() => entry,
                    () = stop.cancelled() => None,
                };
                match entry {
                    Some(Ok(entry)) => follower.apply(&entry),
                    Some(Err(error)) => tracing::warn!(%error, "key-value watch"),
                    None => break,
                }
            }
        });
        Ok(SharedKv { inner })
    }
}

impl Inner {
    fn apply(&self, entry: &async_nats::jetstream::kv::Entry) {
        let Some((plugin, key)) = plugin_and_key(&entry.key) else { return };
        match entry.operation {
            Operation::Put => self.entries.put(&plugin, &key, String::from_utf8_lossy(&entry.value).into_owned()),
            Operation::Delete | Operation::Purge => self.entries.delete(&plugin, &key),
        }
    }
}

impl KvStore for SharedKv {
    fn get(&self, plugin: &str, key: &str) -> Option<String> {
        self.inner.entries.get(plugin, key)
    }

    fn set(&self, plugin: &str, key: &str, value: String) -> KvWrite {
        if let Err(refused) = self.inner.entries.check(plugin, key, value.len()) {
            return Box::pin(std::future::ready(Err(refused)));
        }
        let (inner, plugin, key) = (Arc::clone(&self.inner), plugin.to_owned(), key.to_owned());
        // Its own task: a plugin call cut off mid-write cannot leave the copy behind the bucket.
        let task = tokio::spawn(async move {
            let put = inner.store.put(bucket_key(&plugin, &key), value.clone().into());
            match tokio::time::timeout(inner.timeout, put).await {
                Ok(Ok(_)) => {
                    inner.entries.put(&plugin, &key, value);
                    Ok(())
                }
                Ok(Err(error)) => Err(KvError::Unavailable(error.to_string())),
                Err(_) => Err(KvError::Unavailable(format!("no commit within {} ms", inner.timeout.as_millis()))),
            }
        });
        Box::pin(async move { task.await.unwrap_or_else(|e| Err(KvError::Unavailable(format!("write task failed: {e}")))) })
    }

    fn delete(&self, plugin: &str, key: &str) -> KvWrite {
        let (inner, plugin, key) = (Arc::clone(&self.inner), plugin.to_owned(), key.to_owned());
        let task = tokio::spawn(async move {
            match tokio::time::timeout(inner.timeout, inner.store.delete(bucket_key(&plugin, &key))).await {
                Ok(Ok(())) => {
                    inner.entries.delete(&plugin, &key);
                    Ok(())
                }
                Ok(Err(error)) => Err(KvError::Unavailable(error.to_string())),
                Err(_) => Err(KvError::Unavailable(format!("no commit within {} ms", inner.timeout.as_millis()))),
            }
        });
        Box::pin(async move { task.await.unwrap_or_else(|e| Err(KvError::Unavailable(format!("write task failed: {e}")))) })
    }

    fn keys(&self, plugin: &str, prefix: &str) -> Vec<String> {
        self.inner.entries.keys(plugin, prefix)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn any_key_maps_to_a_valid_bucket_key_and_back() {
        let key = super::bucket_key("rooms", "room:AB 12/é");
        assert!(key.chars().all(|c| c.is_ascii_alphanumeric() || c == '.'));
        assert_eq!(super::plugin_and_key(&key), Some(("rooms".into(), "room:AB 12/é".into())));
    }
}
