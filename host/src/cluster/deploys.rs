//! Plugin deploys across the cluster: components in one JetStream object
//! store bucket (`<cluster>-plugins`), one object per plugin name.
//!
//! A component uploaded to any node (or, with `deploy_from_folder`,
//! written in its plugin folder) is validated and served there first, as
//! on a single host; only then is it put in the bucket, with its content
//! hash and version as metadata. Every node follows the bucket: an object
//! whose hash is not what it serves is fetched and installed through the
//! registry's validate-then-swap path (written into its plugin folder, as
//! an upload is). A node that rejects it keeps serving what it served,
//! publishes a `deploy_rejected` status event and shows it in
//! `/api/status` until another version of that plugin loads there.
//!
//! Removing a plugin by hand (`DELETE /api/plugins/{name}`, or deleting
//! its file with `deploy_from_folder`) deletes its object; every node then
//! unloads the plugin and deletes its file.
//!
//! No loops: what a node installs from the bucket goes to the registry
//! directly, not through the [`DeployHook`] hand changes are told through,
//! and a hand change whose hash the bucket already holds is not put again.
//!
//! A node starting later installs the bucket's components before it
//! listens: the bucket wins over its folder for the plugins it holds.

use crate::plugins::deploys::{DeployHook, ChangedBy};
use crate::plugins::registry::Registry;
use crate::plugins::runtime::PluginVersion;
use crate::sync::lock;
use async_nats::jetstream::object_store::{Config, ObjectInfo, ObjectMetadata, ObjectStore};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio_util::sync::CancellationToken;

/// The object metadata key holding the component's content hash.
const HASH: &str = "hash";
/// How long one object store operation may take.
const TIMEOUT: Duration = Duration::from_secs(10);

/// A version a node serves, as `/api/status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Served {
    pub plugin: String,
    pub version: String,
    pub hash: String,
}

/// A deploy a node refused; it keeps serving its previous version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejected {
    pub plugin: String,
    /// The refused component's version and hash, as the bucket gave them.
    pub version: Option<String>,
    pub hash: String,
    pub code: String,
    pub message: String,
}

/// This node's side of the cluster's plugin deploys.
pub struct Deploys {
    store: ObjectStore,
    registry: Arc<Registry>,
    dir: PathBuf,
    node: String,
    from_folder: bool,
    /// Refused deploys, by plugin name.
    rejected: Mutex<HashMap<String, Rejected>>,
}

impl Deploys {
    /// Open (or create) the bucket, install what it holds, then follow it
    /// and pass on this node's hand changes.
    pub async fn start(
        client: async_nats::Client,
        cluster: &str,
        node: &str,
        from_folder: bool,
        registry: Arc<Registry>,
        dir: PathBuf,
        tasks: &crate::lifecycle::Tasks,
    ) -> anyhow::Result<Arc<Deploys>> {
        let jetstream = async_nats::jetstream::new(client);
        let bucket = format!("{cluster}-plugins");
        let store = match jetstream.get_object_store(&bucket).await {
            Ok(store) => store,
            Err(_) => jetstream
                .create_object_store(Config { bucket: bucket.clone(), description: Some("switchyard plugin components".into()), ..Default::default() })
                .await
                .map_err(|e| anyhow::anyhow!("cannot create the object store bucket {bucket}: {e}"))?,
        };
        let deploys = Arc::new(Deploys { store, registry, dir, node: node.to_owned(), from_folder, rejected: Mutex::default() });
        // Watch first, then list: a put in between is seen twice, never missed.
        let mut watch = deploys.store.watch().await.map_err(|e| anyhow::anyhow!("cannot watch {bucket}: {e}"))?;
        let stored = jetstream.get_stream(format!("OBJ_{bucket}")).await.map_err(|e| anyhow::anyhow!("bucket {bucket}: {e}"))?;
        let mut installed = 0;
        if stored.cached_info().state.messages > 0 {
            let mut list = deploys.store.list().await.map_err(|e| anyhow::anyhow!("cannot list {bucket}: {e}"))?;
            while let Ok(Some(Ok(info))) = tokio::time::timeout(TIMEOUT, list.next()).await {
                deploys.apply(&info).await;
                installed += 1;
            }
        }
        tracing::info!(bucket, components = installed, "cluster plugin deploys followed");
        let follower = Arc::clone(&deploys);
        tasks.spawn(|stop: CancellationToken| async move {
            loop {
                let next = tokio::select! {
                    next = watch.next() => next,
                    () = stop.cancelled() => return,
                };
                match next {
                    Some(Ok(info)) => follower.apply(&info).await,
                    Some(Err(error)) => tracing::warn!(%error, "plugin bucket watch"),
                    None => {
                        tracing::warn!("plugin bucket watch ended; deploys from other nodes are not followed until restart");
                        return;
                    }
                }
            }
        });
        deploys.registry.set_deploy_hook(Arc::clone(&deploys) as Arc<dyn DeployHook>);
        Ok(deploys)
    }

    /// What this node serves, by plugin name.
    pub fn served(&self) -> Vec<Served> {
        let mut served: Vec<Served> = self
            .registry
            .plugins()
            .iter()
            .map(|v| Served { plugin: v.name().to_owned(), version: v.version().to_owned(), hash: v.hash.clone() })
            .collect();
        served.sort_by(|a, b| a.plugin.cmp(&b.plugin));
        served
    }

    /// The deploys this node refused.
    pub fn rejected(&self) -> Vec<Rejected> {
        let mut rejected: Vec<Rejected> = lock(&self.rejected).values().cloned().collect();
        rejected.sort_by(|a, b| a.plugin.cmp(&b.plugin));
        rejected
    }

    /// Make this node serve what the bucket says of one plugin.
    async fn apply(&self, info: &ObjectInfo) {
        let name = info.name.as_str();
        if info.deleted {
            lock(&self.rejected).remove(name);
            if let Some(old) = self.registry.remove(name) {
                tracing::info!(plugin = name, version = old.version(), "plugin removed from the cluster: unloaded");
            }
            return;
        }
        let Some(hash) = info.metadata.get(HASH) else {
            tracing::warn!(plugin = name, "object without a content hash in the plugin bucket: ignored");
            return;
        };
        if self.serving_hash(name).as_ref() == Some(hash) {
            lock(&self.rejected).remove(name);
            return;
        }
        if lock(&self.rejected).get(name).is_some_and(|r| &r.hash == hash) {
            return;
        }
        let bytes = match self.fetch(name).await {
            Ok(bytes) => bytes,
            Err(error) => {
                tracing::warn!(plugin = name, %error, "cannot fetch a deployed component");
                return;
            }
        };
        match self.registry.install(&self.dir, bytes).await {
            Ok(_) => {
                lock(&self.rejected).remove(name);
                tracing::info!(plugin = name, hash, "deployed component installed from the cluster");
            }
            Err(error) => {
                let rejected = Rejected {
                    plugin: name.to_owned(),
                    version: info.metadata.get("version").cloned(),
                    hash: hash.clone(),
                    code: error.code().as_str().to_owned(),
                    message: error.to_string(),
                };
                tracing::warn!(plugin = name, code = rejected.code, "deployed component refused here; the previous version (if any) keeps serving: {error}");
                self.registry.publish(&serde_json::json!({
                    "event": "deploy_rejected",
                    "node": self.node,
                    "plugin": name,
                    "version": rejected.version,
                    "hash": hash,
                    "serving": self.serving_version(name),
                    "error": { "code": rejected.code, "message": rejected.message },
                }));
                lock(&self.rejected).insert(name.to_owned(), rejected);
            }
        }
    }

    async fn fetch(&self, name: &str) -> anyhow::Result<Vec<u8>> {
        let read = async {
            let mut object = self.store.get(name).await?;
            let mut bytes = Vec::with_capacity(object.info.size);
            object.read_to_end(&mut bytes).await?;
            anyhow::Ok(bytes)
        };
        tokio::time::timeout(TIMEOUT, read).await.map_err(|_| anyhow::anyhow!("no answer in {TIMEOUT:?}"))?
    }

    fn serving(&self, name: &str) -> Option<Arc<PluginVersion>> {
        self.registry.plugins().into_iter().find(|v| v.name() == name)
    }

    fn serving_hash(&self, name: &str) -> Option<String> {
        self.serving(name).map(|v| v.hash.clone())
    }

    fn serving_version(&self, name: &str) -> Option<String> {
        self.serving(name).map(|v| v.version().to_owned())
    }

    fn wanted(&self, changed_by: ChangedBy) -> bool {
        changed_by == ChangedBy::Api || self.from_folder
    }
}

/// Put `version`'s component (its file, `path`) in the bucket unless the
/// bucket holds it already.
async fn put(store: ObjectStore, node: String, version: Arc<PluginVersion>, path: PathBuf) -> anyhow::Result<()> {
        let name = version.name();
        if let Ok(info) = store.info(name).await {
            if !info.deleted && info.metadata.get(HASH) == Some(&version.hash) {
                return Ok(());
            }
        }
        let bytes = tokio::fs::read(&path).await?;
        // The file may have changed since it loaded: only what serves goes out.
        anyhow::ensure!(crate::plugins::runtime::cache::content_hash(&bytes) == version.hash, "{} changed since it loaded", path.display());
        let metadata = HashMap::from([
            (HASH.to_owned(), version.hash.clone()),
            ("version".to_owned(), version.version().to_owned()),
            ("node".to_owned(), node),
        ]);
        let meta = ObjectMetadata { name: name.to_owned(), description: Some(format!("{name} {}", version.version())), metadata, ..Default::default() };
        tokio::time::timeout(TIMEOUT, store.put(meta, &mut bytes.as_slice())).await.map_err(|_| anyhow::anyhow!("no answer in {TIMEOUT:?}"))??;
        tracing::info!(plugin = name, version = version.version(), "component deployed to the cluster");
        Ok(())
}

impl DeployHook for Deploys {
    fn installed(&self, version: &Arc<PluginVersion>, path: &Path, changed_by: ChangedBy) {
        if !self.wanted(changed_by) {
            return;
        }
        let (store, node, version, path) = (self.store.clone(), self.node.clone(), Arc::clone(version), path.to_path_buf());
        tokio::spawn(async move {
            let name = version.name().to_owned();
            if let Err(error) = put(store, node, version, path).await {
                tracing::error!(plugin = name, %error, "component serves here but could not be deployed to the cluster");
            }
        });
    }

    fn removed(&self, name: &str, changed_by: ChangedBy) {
        if !self.wanted(changed_by) {
            return;
        }
        let (store, name) = (self.store.clone(), name.to_owned());
        tokio::spawn(async move {
            match tokio::time::timeout(TIMEOUT, store.delete(&name)).await {
                Ok(Ok(())) => tracing::info!(plugin = name, "plugin removed from the cluster"),
                Ok(Err(error)) => tracing::debug!(plugin = name, %error, "plugin not removed from the cluster bucket"),
                Err(_) => tracing::error!(plugin = name, "plugin removal from the cluster bucket timed out"),
            }
        });
    }
}

