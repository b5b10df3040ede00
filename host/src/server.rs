//! Assembles a running host from a [`Config`]: hub, key-value state,
//! runtime, registry, watcher and the listeners, and shuts it all down in
//! order. Used by `switchyard serve` and by the tests alike.
//!
//! Every task it starts is spawned through one [`Tasks`], so shutdown is
//! one signal and one wait.

use crate::cluster::{Cluster, SharedKv};
use crate::config::{ms, Config, EndpointFormat, EndpointRole};
use crate::routing::dispatch::Dispatcher;
use crate::routing::target::WorkerRules;
use crate::hub::{Hub, HubLimits};
use crate::lifecycle::Tasks;
use crate::admission::limits::{LiveLimits, Tunables};
use crate::observability::feed::Recorded;
use crate::observability::metrics::Metrics;
use crate::plugins::registry::Registry;
use crate::plugins::runtime::{PluginLimits, Runtime, Services};
use crate::admission::security::Keyring;
use crate::store::host_state::HostState;
use crate::store::db::{self, Database};
use crate::store::history::History;
use crate::store::queries::HistoryQueries;
use crate::store::kv::DurableKv;
use crate::store::memory::KvQuota;
use crate::observability::system::HostSystem;
use crate::transport::listener::Listener;
use crate::transport::proxy::Proxy;
use crate::transport::tls::Certificates;
use crate::transport::{self, Endpoint, Gateway, WsSettings};
use crate::workers::WorkerPool;
use anyhow::Context;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

pub struct Server {
    addr: SocketAddr,
    /// The `[[listeners]]`' addresses, in configuration order.
    extra_addrs: Vec<SocketAddr>,
    served: Vec<Served>,
    tasks: Tasks,
    grace: Duration,
    registry: Arc<Registry>,
    hub: Arc<Hub>,
    gateway: Arc<Gateway>,
    history: History,
    database: Database,
}

/// A URL the host serves, and what is there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Served {
    pub url: String,
    pub what: &'static str,
}

/// How often host system figures are sampled for the `system` capability.
const SYSTEM_SAMPLE_EVERY: Duration = Duration::from_secs(1);

impl Server {
    /// Load the plugin folder, start watching it, and listen. Returns once
    /// the host is serving.
    pub async fn start(config: Config) -> anyhow::Result<Server> {
        config.validate()?;
        let proxy = if config.proxy.is_empty() { None } else { Some(Proxy::new(config.proxy.clone())?) };
        let tasks = Tasks::new();
        let keyring = Arc::new(Keyring::from_config(&config.auth)?);
        let (state, remembered) = HostState::open(&config.data_dir)?;
        for name in &remembered.revoked_keys {
            if !keyring.revoke(name) {
                tracing::warn!(key = %name, file = %state.path().display(), "a key revoked at run time is no longer configured");
            }
        }
        let certificates = config.tls.as_ref().map(Certificates::load).transpose()?;
        let metrics = Arc::new(Metrics::new());
        let limits = Arc::new(LiveLimits::new(Tunables::from_config(&config), config.limits.max_frame_bytes));
        if !remembered.limits.is_empty() {
            let changed = serde_json::Value::Object(remembered.limits.clone());
            match limits.update(&changed) {
                Ok(_) => tracing::info!(file = %state.path().display(), limits = %changed, "limits set at run time override the configuration file's"),
                Err(failure) => {
                    tracing::warn!(file = %state.path().display(), limits = %changed, "limits set at run time no longer apply, the configuration file's stand: {failure}")
                }
            }
        }
        let storage = &config.storage;
        let url = storage.url.clone().unwrap_or_else(|| db::default_url(&config.data_dir));
        let database = Database::open(&url, storage.max_connections, ms(storage.timeout_ms)).await?;
        // Nodes of a cluster may share a server database: one node cannot
        // tell the others' open connections from its own earlier run's.
        if !(config.cluster.enabled() && database.backend() != db::Backend::Sqlite) {
            match crate::store::history::close_left_open(&database).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(connections = n, "history: connections left open by the last run closed (1006, host stopped)"),
                Err(error) => tracing::warn!("history: cannot close the connections the last run left open: {error}"),
            }
        }
        let history = History::start(database.clone(), &storage.history, metrics.history.clone());
        let (retention_db, retention) = (database.clone(), storage.retention.clone());
        tasks.spawn(|stop| crate::store::retention::run(retention_db, retention, stop));
        let hub_limits = HubLimits {
            outbox_frames: config.limits.outbox_frames,
            outbox_bytes: config.limits.outbox_bytes,
            max_client_calls: config.limits.max_client_calls,
        };
        let hub = Arc::new(Hub::with_history(hub_limits, metrics.hub.clone(), history.clone()));
        let p = &config.plugins;
        let quota = KvQuota { max_value_bytes: p.kv_max_value_bytes, max_keys: p.kv_max_keys };
        let cluster = if config.cluster.enabled() {
            let default_node = default_node_name(config.listen.port());
            Some(Cluster::join(&config.cluster, default_node, &hub, metrics.cluster.clone(), &tasks).await?)
        } else {
            None
        };
        let kv: Arc<dyn crate::services::KvStore> = match &cluster {
            Some(cluster) if config.cluster.shared_kv => {
                Arc::new(SharedKv::open(cluster.client().clone(), cluster.name(), quota, ms(storage.timeout_ms), &tasks).await?)
            }
            _ => Arc::new(DurableKv::load(database.clone(), quota, ms(storage.timeout_ms)).await?),
        };
        let plugin_limits = PluginLimits {
            deadline: limits.get().deadline(),
            memory_bytes: p.memory_mib << 20,
            max_instances: p.max_instances,
            breaker: p.breaker.clone(),
            cpu: p.cpu(),
        };
        let system = Arc::new(HostSystem::default());
        if p.grants.values().any(|grant| grant.system) {
            let system = Arc::clone(&system);
            tasks.spawn(|stop| system.sample_every(SYSTEM_SAMPLE_EVERY, stop));
        }
        // Status events (the registry's, the breakers') also go on the dashboard's timeline.
        let events: Arc<dyn crate::services::EventSink> = Arc::new(Recorded::new(hub.clone(), Arc::clone(metrics.feed.timeline())));
        let services = Services { events: Arc::clone(&events), kv, rooms: hub.clone(), calls: hub.clone(), system };
        let settings = p.settings_text().into_iter().map(|(name, values)| (name, Arc::new(values))).collect();
        let runtime = Runtime::new(plugin_limits, p.cache_dir.clone(), p.grants.clone(), settings, services)?;
        let worker_rules = Arc::new(WorkerRules::from_config(&config.workers).context("workers.types")?);
        let registry = Arc::new(Registry::new(runtime, events, metrics.plugins.clone(), worker_rules, tasks.clone()).with_history(config.plugins.history).with_rollout(config.plugins.rollout.clone()).with_shadow_budget(config.plugins.shadow_cpu_budget));

        std::fs::create_dir_all(&p.dir).with_context(|| format!("cannot create plugin folder {}", p.dir.display()))?;
        let loaded = registry.load_dir(&p.dir).await.with_context(|| format!("cannot read plugin folder {}", p.dir.display()))?;
        tracing::info!(dir = %p.dir.display(), loaded, "plugin folder loaded");
        if p.watch {
            crate::plugins::watcher::watch(&p.dir, ms(p.debounce_ms), Arc::clone(&registry), &tasks)
                .with_context(|| format!("cannot watch plugin folder {}", p.dir.display()))?;
        }

        if let Some(cluster) = cluster.as_ref().filter(|_| config.cluster.deploys) {
            cluster.serve_deploys(Arc::clone(&registry), p.dir.clone(), &tasks).await?;
        }

        let workers = Arc::new(WorkerPool::new(&config.workers)?);
        if let Some(cluster) = &cluster {
            cluster.serve_workers(Arc::clone(&workers), &tasks).await?;
        }
        let tcp = tokio::net::TcpListener::bind(config.listen).await.with_context(|| format!("cannot listen on {}", config.listen))?;
        let mut extra = Vec::new();
        for listener in &config.listeners {
            let bound = tokio::net::TcpListener::bind(listener.listen).await.with_context(|| format!("cannot listen on {}", listener.listen))?;
            extra.push((bound, Endpoint::from(listener)));
        }
        let addr = tcp.local_addr()?;
        let gateway = Arc::new(Gateway {
            dispatcher: Dispatcher::new(registry.routes(), Arc::clone(&workers), Arc::clone(&limits), Arc::clone(&metrics), Arc::clone(&hub)),
            endpoints: config.endpoints.iter().map(|e| (e.path.clone(), Endpoint::from(e))).collect(),
            hub: Arc::clone(&hub),
            registry: Arc::clone(&registry),
            workers,
            proxy: proxy.clone(),
            keyring,
            limits,
            metrics,
            ws: WsSettings {
                max_frame_bytes: config.limits.max_frame_bytes,
                heartbeat: ms(config.websocket.heartbeat_interval_ms),
                idle_timeout: ms(config.websocket.idle_timeout_ms),
                send_timeout: ms(config.limits.send_timeout_ms),
            },
            handshake_timeout: ms(config.limits.handshake_timeout_ms),
            plugin_dir: p.dir.clone(),
            max_body_bytes: config.limits.max_body_bytes,
            max_upload_bytes: config.limits.max_upload_bytes,
            body_timeout: ms(config.limits.body_timeout_ms),
            state: Arc::new(state),
            history: storage.history.enabled.then(|| HistoryQueries::new(database.clone())),
            serve_metrics: config.observability.metrics,
            started: Instant::now(),
            ready: AtomicBool::new(true),
            tasks: tasks.clone(),
        });
        if let Some(proxy) = &proxy {
            let proxy = Arc::clone(proxy);
            tasks.spawn(|stop| proxy.run_health_checks(stop));
        }
        if let Some(certificates) = &certificates {
            let certificates = Arc::clone(certificates);
            tasks.spawn(|stop| certificates.watch(stop));
        }
        let summary_every = ms(config.observability.summary_interval_ms);
        tasks.spawn(|stop| housekeeping(Arc::clone(&gateway), summary_every, stop));
        gateway.metrics.feed.set_privacy(&config.storage.history);
        tasks.spawn(|stop| crate::transport::api::dashboard::run_feed(Arc::clone(&gateway), stop));
        let grace = ms(config.websocket.shutdown_grace_ms);
        let listener = |tcp, app| Listener {
            tcp,
            app,
            tls: certificates.clone(),
            handshake_timeout: ms(config.limits.handshake_timeout_ms),
            max_http_connections: config.limits.max_http_connections,
            tasks: tasks.clone(),
        };
        let mut extra_addrs = Vec::new();
        for (tcp, endpoint) in extra {
            extra_addrs.push(tcp.local_addr()?);
            tracing::info!(addr = %tcp.local_addr()?, role = ?endpoint.role, "listening");
            let listener = listener(tcp, transport::ws::listener_routes(Arc::clone(&gateway), endpoint));
            tasks.spawn(|stop| listener.serve(stop, grace));
        }
        let main = listener(tcp, transport::routes(Arc::clone(&gateway)));
        tasks.spawn(|stop| main.serve(stop, grace));
        let scheme = if config.tls.is_some() { "https" } else { "http" };
        tracing::info!(%addr, scheme, "listening");
        let served = served(&config, addr, &extra_addrs);
        Ok(Server { addr, extra_addrs, served, tasks, grace, registry, hub, gateway, history, database })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The addresses of the `[[listeners]]`, in configuration order.
    pub fn listener_addrs(&self) -> &[SocketAddr] {
        &self.extra_addrs
    }

    /// Every URL served: the WebSocket endpoints and proxied paths, the
    /// HTTP API, `/metrics` if on, then the extra listeners.
    pub fn served(&self) -> &[Served] {
        &self.served
    }

    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    pub fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }

    /// Stop accepting, let in-flight requests finish (up to the grace
    /// period), close every connection with 1001, and stop every task.
    pub async fn shutdown(self) {
        tracing::info!("shutting down");
        self.gateway.ready.store(false, Ordering::Relaxed);
        self.tasks.shutdown_signal().cancel();
        if let Some(proxy) = &self.gateway.proxy {
            if !proxy.shutdown(self.grace).await {
                tracing::warn!("proxied sessions still open after the {:?} grace period", self.grace);
            }
        }
        // The listeners give open HTTP exchanges one grace period of their
        // own; connections close within another.
        if !self.tasks.shut_down(self.grace * 2).await {
            tracing::warn!("connections or tasks still running after the {:?} grace period", self.grace);
        }
        // Last: the connections' closes are in the queue by now.
        self.history.finish(self.grace).await;
        self.database.close().await;
    }

    /// The database behind kv and history.
    pub fn database(&self) -> &Database {
        &self.database
    }
}

/// What `config` serves, once listening on `addr` and `extra_addrs`.
fn served(config: &Config, addr: SocketAddr, extra_addrs: &[SocketAddr]) -> Vec<Served> {
    let (ws, http) = if config.tls.is_some() { ("wss", "https") } else { ("ws", "http") };
    let mut served: Vec<Served> = config
        .endpoints
        .iter()
        .map(|endpoint| Served {
            url: format!("{ws}://{addr}{}", endpoint.path),
            what: match (endpoint.role, endpoint.format) {
                (EndpointRole::Workers, _) => "WebSocket, workers",
                (EndpointRole::Clients, EndpointFormat::Envelope) => "WebSocket",
                (EndpointRole::Clients, EndpointFormat::Raw) => "WebSocket, raw",
                (EndpointRole::Clients, EndpointFormat::Opaque) => "WebSocket, opaque frames",
            },
        })
        .collect();
    for route in &config.proxy {
        let url = format!("{ws}://{addr}{}", route.path);
        // Routes for different hosts may share a path.
        if !served.iter().any(|s| s.url == url) {
            served.push(Served { url, what: "WebSocket, proxied" });
        }
    }
    served.push(Served { url: format!("{http}://{addr}/api"), what: "HTTP API" });
    if config.observability.metrics {
        served.push(Served { url: format!("{http}://{addr}/metrics"), what: "Prometheus metrics" });
    }
    for (listener, addr) in config.listeners.iter().zip(extra_addrs) {
        let what = match listener.role {
            EndpointRole::Clients => "WebSocket listener, any path",
            EndpointRole::Workers => "WebSocket listener, any path, workers",
        };
        served.push(Served { url: format!("{ws}://{addr}/"), what });
    }
    served
}

/// Periodic chores: the one-line status summary, and forgetting idle
/// rate-limit keys so the keyed buckets stay small.
async fn housekeeping(gateway: Arc<Gateway>, summary_every: Duration, stop: CancellationToken) {
    const FORGET_EVERY: Duration = Duration::from_secs(60);
    let every = if summary_every.is_zero() { FORGET_EVERY } else { summary_every.min(FORGET_EVERY) };
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut last = (Instant::now(), gateway.metrics.totals());
    let mut since_summary = Duration::ZERO;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = ticks.tick() => {}
        }
        gateway.limits.forget_idle();
        since_summary += every;
        if summary_every.is_zero() || since_summary < summary_every {
            continue;
        }
        since_summary = Duration::ZERO;
        let now = (Instant::now(), gateway.metrics.totals());
        let seconds = now.0.duration_since(last.0).as_secs_f64().max(0.001);
        tracing::info!(
            connections = gateway.hub.connection_count(),
            rooms = gateway.hub.room_sizes().len(),
            plugins = gateway.registry.plugins().len(),
            messages_per_second = format!("{:.1}", (now.1 .0 - last.1 .0) as f64 / seconds),
            errors = now.1 .1 - last.1 .1,
            "summary"
        );
        last = now;
    }
}

/// A cluster node's name when `cluster.node` is not set: the machine's
/// host name and the listening port (a random suffix on port 0).
fn default_node_name(port: u16) -> String {
    let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
    let host: String = host.trim().chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-').take(40).collect();
    let host = if host.is_empty() { "node".to_owned() } else { host };
    if port == 0 {
        format!("{host}-{:06x}", rand::random::<u32>() & 0xff_ffff)
    } else {
        format!("{host}-{port}")
    }
}
