//! Assembles a running host from a [`Config`]: hub, key-value state,
//! runtime, registry, watcher and the listener, and shuts it all down in
//! order. Used by `switchyard serve` and by the tests alike.

use crate::config::{ms, Config};
use crate::dispatch::Dispatcher;
use crate::hub::{Hub, HubLimits};
use crate::registry::Registry;
use crate::runtime::{PluginLimits, Runtime, Services};
use crate::state::{KvQuota, MemoryKv};
use crate::system::HostSystem;
use crate::transport::{self, Endpoint, Gateway, WsSettings};
use anyhow::Context;
use std::future::IntoFuture;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub struct Server {
    addr: SocketAddr,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    grace: Duration,
    serve: JoinHandle<std::io::Result<()>>,
    watcher: Option<JoinHandle<()>>,
    registry: Arc<Registry>,
    hub: Arc<Hub>,
}

impl Server {
    /// Load the plugin folder, start watching it, and listen. Returns once
    /// the host is serving.
    pub async fn start(config: Config) -> anyhow::Result<Server> {
        config.validate()?;
        let hub = Arc::new(Hub::new(HubLimits { outbox_frames: config.limits.outbox_frames }));
        let p = &config.plugins;
        let kv = Arc::new(MemoryKv::new(KvQuota { max_value_bytes: p.kv_max_value_bytes, max_keys: p.kv_max_keys }));
        let limits = PluginLimits {
            deadline: ms(p.deadline_ms),
            memory_bytes: p.memory_mib << 20,
            max_instances: p.max_instances,
        };
        let services = Services { events: hub.clone(), kv, rooms: hub.clone(), system: Arc::new(HostSystem::default()) };
        let settings = p.settings_text().into_iter().map(|(name, values)| (name, Arc::new(values))).collect();
        let runtime = Runtime::new(limits, p.cache_dir.clone(), p.grants.clone(), settings, services)?;
        let registry = Arc::new(Registry::new(runtime, hub.clone()));

        std::fs::create_dir_all(&p.dir).with_context(|| format!("cannot create plugin folder {}", p.dir.display()))?;
        let loaded = registry.load_dir(&p.dir).await.with_context(|| format!("cannot read plugin folder {}", p.dir.display()))?;
        tracing::info!(dir = %p.dir.display(), loaded, "plugin folder loaded");

        let shutdown = CancellationToken::new();
        let watcher = if p.watch {
            let task = crate::watcher::watch(&p.dir, ms(p.debounce_ms), Arc::clone(&registry), shutdown.clone())
                .with_context(|| format!("cannot watch plugin folder {}", p.dir.display()))?;
            Some(task)
        } else {
            None
        };

        let listener = tokio::net::TcpListener::bind(config.listen).await.with_context(|| format!("cannot listen on {}", config.listen))?;
        let addr = listener.local_addr()?;
        let tracker = TaskTracker::new();
        let gateway = Arc::new(Gateway {
            dispatcher: Dispatcher::new(registry.routes()),
            endpoints: config.endpoints.iter().map(|e| (e.path.clone(), Endpoint::from(e))).collect(),
            hub: Arc::clone(&hub),
            ws: WsSettings {
                max_message_bytes: config.limits.max_message_bytes,
                max_frame_bytes: config.limits.max_frame_bytes,
                max_connections: config.limits.max_connections,
                heartbeat: ms(config.websocket.heartbeat_interval_ms),
                idle_timeout: ms(config.websocket.idle_timeout_ms),
                send_timeout: ms(config.limits.send_timeout_ms),
            },
            shutdown: shutdown.clone(),
            tracker: tracker.clone(),
        });
        let app = transport::routes(gateway).into_make_service_with_connect_info::<SocketAddr>();
        let serve = tokio::spawn(
            axum::serve(listener, app).with_graceful_shutdown(shutdown.clone().cancelled_owned()).into_future(),
        );
        tracing::info!(%addr, "listening");
        Ok(Server {
            addr,
            shutdown,
            tracker,
            grace: ms(config.websocket.shutdown_grace_ms),
            serve,
            watcher,
            registry,
            hub,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    pub fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }

    /// Stop accepting, let in-flight requests finish (up to the grace
    /// period), close every connection with 1001, and stop the watcher.
    pub async fn shutdown(self) {
        tracing::info!("shutting down");
        self.shutdown.cancel();
        self.registry.stop_all_ticks();
        self.tracker.close();
        if tokio::time::timeout(self.grace, self.tracker.wait()).await.is_err() {
            tracing::warn!("connections still open after the {:?} grace period", self.grace);
        }
        match tokio::time::timeout(self.grace, self.serve).await {
            Ok(Ok(Err(e))) => tracing::warn!("listener ended with an error: {e}"),
            Err(_) => tracing::warn!("listener did not stop within the grace period"),
            _ => {}
        }
        if let Some(watcher) = self.watcher {
            let _ = watcher.await;
        }
    }
}
