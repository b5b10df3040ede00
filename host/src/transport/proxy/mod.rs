//! The WebSocket reverse proxy: configured paths whose connections are
//! relayed, message for message, to a pool of upstream WebSocket servers
//! (each hop answers its own pings: see `relay`).
//!
//! It owns route matching (exact path, optional Host pattern), round-robin
//! over the upstreams that pass health checks, the per-route connection
//! limit and the relay itself. It must not look inside frames: it never
//! parses or rewrites a message, holds at most the one in flight per
//! direction, and knows nothing of the router, plugins or the hub.
//!
//! Each job has its module: [`ProxyRouteConfig`] is the route as configured
//! (`crate::config::proxy`); `routes` checks and compiles it and picks the route and
//! upstream for a request; [`ProxyRefusal`] is what a request is refused
//! with (`refusal`); `health` keeps each upstream in or out of rotation;
//! `relay` upgrades the client, dials the upstream and passes frames.

mod dial;
mod health;
mod refusal;
mod relay;
mod routes;

pub use crate::config::proxy::ProxyRouteConfig;
pub use health::{Health, ProxyStatus, RouteStatus, UpstreamStatus, HEALTH_CHECK_AGENT};
pub use refusal::ProxyRefusal;
pub use dial::MAX_MESSAGE_BYTES;
pub use routes::{validate, ProxyConfigError};

use axum::http::Uri;
use axum::routing::any;
use axum::Router;
use health::HealthRecord;
use relay::upgrade;
use routes::{best_route, compile, HostPattern};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The proxy's routes, their upstreams' health and their open sessions.
pub struct Proxy {
    routes: Vec<Arc<Route>>,
    shutdown: CancellationToken,
    sessions: TaskTracker,
}

/// One compiled route: its match, its upstreams and its open sessions.
struct Route {
    path: String,
    host: Option<HostPattern>,
    /// As configured, for status and logs.
    host_text: Option<String>,
    upstreams: Vec<Upstream>,
    /// The round-robin counter.
    turn: AtomicUsize,
    open: AtomicUsize,
    max_connections: usize,
    health_interval: Duration,
    connect_timeout: Duration,
}

/// One of a route's upstreams and what the proxy knows of its health.
struct Upstream {
    url: String,
    uri: Uri,
    record: Mutex<HealthRecord>,
}

/// What the handler for one mounted path needs.
#[derive(Clone)]
struct Mount {
    proxy: Arc<Proxy>,
    path: Arc<str>,
}

impl Proxy {
    pub fn new(routes: Vec<ProxyRouteConfig>) -> anyhow::Result<Arc<Proxy>> {
        Ok(Arc::new(Proxy { routes: compile(&routes)?, shutdown: CancellationToken::new(), sessions: TaskTracker::new() }))
    }

    /// The distinct paths to mount, in configuration order.
    pub fn paths(&self) -> Vec<String> {
        let mut paths: Vec<String> = Vec::new();
        for route in &self.routes {
            if !paths.contains(&route.path) {
                paths.push(route.path.clone());
            }
        }
        paths
    }

    /// A router with every proxied path, state applied, for the host to
    /// `merge`. Its handlers need `ConnectInfo<SocketAddr>`.
    pub fn router(self: &Arc<Self>) -> Router {
        let mut router = Router::new();
        for path in self.paths() {
            let mount = Mount { proxy: Arc::clone(self), path: Arc::from(path.as_str()) };
            router = router.route(&path, any(upgrade).with_state(mount));
        }
        router
    }

    pub fn status(&self) -> ProxyStatus {
        let routes = self
            .routes
            .iter()
            .map(|route| RouteStatus {
                path: route.path.clone(),
                host: route.host_text.clone(),
                connections_open: route.open.load(Ordering::Acquire),
                max_connections: route.max_connections,
                upstreams: route.upstreams.iter().map(Upstream::status).collect(),
            })
            .collect();
        ProxyStatus { routes }
    }

    /// Refuse new sessions, close open ones with 1001 on both sides, and
    /// wait up to `grace` for them to finish. True if they all did.
    pub async fn shutdown(&self, grace: Duration) -> bool {
        self.shutdown.cancel();
        self.sessions.close();
        tokio::time::timeout(grace, self.sessions.wait()).await.is_ok()
    }

    fn find(&self, path: &str, host: Option<&str>) -> Option<&Arc<Route>> {
        let candidates = self
            .routes
            .iter()
            .enumerate()
            .filter(|(_, route)| route.path == path)
            .map(|(index, route)| (index, route.host.as_ref()));
        best_route(candidates, host).map(|index| &self.routes[index])
    }
}

impl Route {
    fn label(&self) -> String {
        match &self.host_text {
            Some(host) => format!("{} (host {host})", self.path),
            None => self.path.clone(),
        }
    }
}
