//! The durable [`KvStore`] behind the WIT `kv` capability: every plugin's
//! entries in the database's `kv` table, with an in-memory copy loaded at
//! start that serves every read.
//!
//! A write is durable when it returns: it is committed (one statement, one
//! transaction) before the cache changes and before the plugin's call goes
//! on, so a reply that was sent never depends on state a crash can lose.
//! Writes of one plugin run one at a time, so the cache and the table
//! agree on the last value; each runs in its own task, so a plugin call
//! that is cut off (deadline) cannot leave the two apart. A write that
//! cannot be committed within the store's timeout fails with
//! `KV_UNAVAILABLE` and changes nothing. Quotas are checked before the
//! database is asked.

use super::db::{now_ms, text, Backend, Database};
use super::memory::{Entries, KvQuota};
use crate::services::{KvError, KvStore, KvWrite};
use crate::sync::lock;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// [`KvStore`] on a [`Database`]. Cheap to clone.
#[derive(Clone)]
pub struct DurableKv {
    inner: Arc<Inner>,
}

struct Inner {
    db: Database,
    entries: Entries,
    /// One writer per plugin at a time.
    writers: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    timeout: Duration,
}

impl DurableKv {
    /// Load every plugin's entries from `db`.
    pub async fn load(db: Database, quota: KvQuota, timeout: Duration) -> anyhow::Result<DurableKv> {
        let entries = Entries::new(quota);
        let rows = sqlx::query("SELECT plugin, kv_key, value FROM kv").fetch_all(db.pool()).await?;
        let count = rows.len();
        for row in rows {
            let (plugin, key) = (text(&row, 0)?.unwrap_or_default(), text(&row, 1)?.unwrap_or_default());
            entries.put(&plugin, &key, text(&row, 2)?.unwrap_or_default());
        }
        tracing::info!(entries = count, "plugin key-value state loaded");
        Ok(DurableKv { inner: Arc::new(Inner { db, entries, writers: Mutex::default(), timeout }) })
    }

    fn writer(&self, plugin: &str) -> Arc<tokio::sync::Mutex<()>> {
        Arc::clone(lock(&self.inner.writers).entry(plugin.to_owned()).or_default())
    }

    /// Run `write` as the plugin's one writer, in its own task, under the
    /// timeout.
    fn commit<F>(&self, plugin: &str, write: impl FnOnce(Arc<Inner>) -> F + Send + 'static) -> KvWrite
    where
        F: std::future::Future<Output = Result<(), KvError>> + Send + 'static,
    {
        let writer = self.writer(plugin);
        let inner = Arc::clone(&self.inner);
        let task = tokio::spawn(async move {
            let timeout = inner.timeout;
            let _turn = writer.lock_owned().await;
            match tokio::time::timeout(timeout, write(inner)).await {
                Ok(result) => result,
                Err(_) => Err(KvError::Unavailable(format!("no commit within {} ms", timeout.as_millis()))),
            }
        });
        Box::pin(async move { task.await.unwrap_or_else(|e| Err(KvError::Unavailable(format!("write task failed: {e}")))) })
    }
}

fn unavailable(error: sqlx::Error) -> KvError {
    tracing::warn!("key-value write failed: {error}");
    KvError::Unavailable(error.to_string())
}

impl KvStore for DurableKv {
    fn get(&self, plugin: &str, key: &str) -> Option<String> {
        self.inner.entries.get(plugin, key)
    }

    fn set(&self, plugin: &str, key: &str, value: String) -> KvWrite {
        if let Err(refused) = self.inner.entries.check(plugin, key, value.len()) {
            return Box::pin(std::future::ready(Err(refused)));
        }
        let (plugin, key) = (plugin.to_owned(), key.to_owned());
        self.commit(&plugin.clone(), move |inner| async move {
            // Checked again in turn: another write may have added a key.
            inner.entries.check(&plugin, &key, value.len())?;
            let upsert = match inner.db.backend() {
                Backend::Mysql => {
                    "INSERT INTO kv (plugin, kv_key, value, updated_ms) VALUES (?, ?, ?, ?) \
                     ON DUPLICATE KEY UPDATE value = VALUES(value), updated_ms = VALUES(updated_ms)"
                }
                Backend::Sqlite | Backend::Postgres => {
                    "INSERT INTO kv (plugin, kv_key, value, updated_ms) VALUES (?, ?, ?, ?) \
                     ON CONFLICT (plugin, kv_key) DO UPDATE SET value = excluded.value, updated_ms = excluded.updated_ms"
                }
            };
            sqlx::query(&inner.db.sql(upsert))
                .bind(&plugin)
                .bind(&key)
                .bind(&value)
                .bind(now_ms())
                .execute(inner.db.pool())
                .await
                .map_err(unavailable)?;
            inner.entries.put(&plugin, &key, value);
            Ok(())
        })
    }

    fn delete(&self, plugin: &str, key: &str) -> KvWrite {
        let (plugin, key) = (plugin.to_owned(), key.to_owned());
        self.commit(&plugin.clone(), move |inner| async move {
            sqlx::query(&inner.db.sql("DELETE FROM kv WHERE plugin = ? AND kv_key = ?"))
                .bind(&plugin)
                .bind(&key)
                .execute(inner.db.pool())
                .await
                .map_err(unavailable)?;
            inner.entries.delete(&plugin, &key);
            Ok(())
        })
    }

    fn keys(&self, plugin: &str, prefix: &str) -> Vec<String> {
        self.inner.entries.keys(plugin, prefix)
    }
}
