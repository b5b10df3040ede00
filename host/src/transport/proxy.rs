//! The WebSocket reverse proxy: configured paths whose connections are
//! relayed, frame for frame, to a pool of upstream WebSocket servers.
//!
//! It owns route matching (exact path, optional Host pattern), round-robin
//! over the upstreams that pass health checks, the per-route connection
//! limit and the relay itself. It must not look inside frames: it never
//! parses or rewrites a message, holds at most the one in flight per
//! direction, and knows nothing of the router, plugins or the hub.
//!
//! The upstream handshake happens before the client's upgrade completes, so
//! the client is answered with the subprotocol the upstream chose.
//!
//! Refusals before the upgrade are HTTP errors with the body
//! `{"type":"error","data":{"code":CODE,"message":...}}` (see [`ProxyRefusal`]):
//! 404 `NOT_FOUND` (no route for this path and Host), 503
//! `TOO_MANY_CONNECTIONS` (route at `max_connections`), 503 `UNAVAILABLE`
//! (shutting down), the upstream's own 4xx as `UPSTREAM_REFUSED`, 400
//! `NO_SUBPROTOCOL` (the upstream accepted none of the client's
//! subprotocols), 400 `BAD_REQUEST` (headers that cannot be forwarded), and
//! the upgrade extractor's status as `UPGRADE_REQUIRED` (not a WebSocket
//! handshake).
//!
//! Close codes sent by the proxy itself: 1013 no upstream in rotation (or
//! none would connect), 1014 the upstream went away without a close frame,
//! 1001 to the upstream when the client went away without one, 1001 to both
//! on shutdown, 1009 to the side that sent a message over
//! [`MAX_MESSAGE_BYTES`]. Close frames sent by either side are passed on
//! with their code and reason. tungstenite (0.29) clients read 1014 as a
//! protocol error and report 1002; browsers report 1014.
//!
//! Pings and pongs are relayed like data, but both of the proxy's sockets
//! also answer pings themselves (tungstenite cannot be told not to), so a
//! pinging side gets two pongs.
//!
//! A client's handshake waits for the upstream's: at most one
//! `connect_timeout` per upstream in rotation. A client turned away with
//! 1013 does not hold a connection slot.
//!
//! Health: every upstream starts `unchecked`, which counts as in rotation:
//! the only window where that matters is before the first check completes,
//! since [`Proxy::run_health_checks`] checks everything once before it
//! starts its interval loop. A failed check, or a failed connection attempt
//! for a client, takes an upstream out of rotation; only a passing check
//! puts it back (out of rotation, it is not dialed for clients). An HTTP 4xx from an upstream is this client's refusal, not
//! the upstream's fault, so it is passed on and does not count against the
//! upstream (otherwise any unauthenticated client could empty the pool).

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{self, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, State};
use axum::http::header::{self, HeaderName};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::{Json, Router};
use futures_util::future::{join, join_all};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::error::{ProtocolError, SubProtocolError};
use tokio_tungstenite::tungstenite::handshake::client::Request as UpstreamRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self as ts};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The largest message (and frame) relayed in either direction.
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

/// Initial read and write buffer per socket; two sockets per session, and
/// the buffers grow for large frames.
const BUFFER_BYTES: usize = 32 * 1024;

/// How long a closing session may take to finish both closing handshakes.
const FLUSH_ON_CLOSE: Duration = Duration::from_secs(2);

/// How long a session closed for an oversize frame keeps the client's
/// socket, so the client can read the close frame before the unread rest of
/// its frame resets the connection.
const LINGER: Duration = Duration::from_millis(500);

/// A close frame's reason is at most 123 bytes.
const MAX_CLOSE_REASON: usize = 123;

const GOING_AWAY: u16 = 1001;
const TOO_BIG: u16 = 1009;
const TRY_AGAIN_LATER: u16 = 1013;
const BAD_GATEWAY: u16 = 1014;

/// The `User-Agent` of health checks, so upstreams can leave them out of
/// their logs.
pub const HEALTH_CHECK_AGENT: &str = "switchyard-proxy-health-check";

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

type UpstreamSocket = WebSocketStream<MaybeTlsStream<TcpStream>>;

// ---------------------------------------------------------------- config --

/// One proxied path, as configured.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyRouteConfig {
    /// Exact request path, e.g. `/video`.
    pub path: String,
    /// Host pattern: `a.example.com` or `*.example.com` (any subdomain, not
    /// the bare domain). The port in the `Host` header is ignored.
    #[serde(default)]
    pub host: Option<String>,
    /// `ws://` URLs; their path and query are used as-is and the client's
    /// query string is appended.
    pub upstreams: Vec<String>,
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    #[serde(default = "default_health_interval_ms")]
    pub health_interval_ms: u64,
    /// Limit on the upstream handshake, for clients and health checks alike.
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
}

fn default_max_connections() -> usize {
    1000
}

fn default_health_interval_ms() -> u64 {
    5000
}

fn default_connect_timeout_ms() -> u64 {
    5000
}

impl ProxyRouteConfig {
    /// A route with the default limits and no Host pattern.
    pub fn new<U: Into<String>>(path: impl Into<String>, upstreams: impl IntoIterator<Item = U>) -> Self {
        ProxyRouteConfig {
            path: path.into(),
            host: None,
            upstreams: upstreams.into_iter().map(Into::into).collect(),
            max_connections: default_max_connections(),
            health_interval_ms: default_health_interval_ms(),
            connect_timeout_ms: default_connect_timeout_ms(),
        }
    }
}

/// Why a proxy configuration was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProxyConfigError {
    #[error("proxy route {path:?}: the path must start with '/'")]
    PathNotAbsolute { path: String },
    #[error("proxy route {path:?}: {problem}")]
    BadPath { path: String, problem: &'static str },
    #[error("proxy route {path:?}: no upstreams")]
    NoUpstreams { path: String },
    #[error("proxy route {path:?}: upstream {url:?}: {problem}")]
    BadUpstream { path: String, url: String, problem: String },
    #[error("proxy route {path:?}: host pattern {host:?}: {problem}")]
    BadHostPattern { path: String, host: String, problem: &'static str },
    #[error("proxy route {path:?}{}: declared twice", .host.as_deref().map(|h| format!(" on host {h:?}")).unwrap_or_default())]
    DuplicateRoute { path: String, host: Option<String> },
    #[error("proxy route {path:?}: {field} must be greater than 0")]
    Zero { path: String, field: &'static str },
}

/// Check a proxy configuration without building anything.
pub fn validate(routes: &[ProxyRouteConfig]) -> Result<(), ProxyConfigError> {
    compile(routes).map(drop)
}

fn compile(configs: &[ProxyRouteConfig]) -> Result<Vec<Arc<Route>>, ProxyConfigError> {
    let mut routes: Vec<Arc<Route>> = Vec::with_capacity(configs.len());
    for config in configs {
        let path = config.path.clone();
        check_path(&path)?;
        let host = match &config.host {
            Some(text) => Some(HostPattern::parse(text).map_err(|problem| ProxyConfigError::BadHostPattern {
                path: path.clone(),
                host: text.clone(),
                problem,
            })?),
            None => None,
        };
        if config.upstreams.is_empty() {
            return Err(ProxyConfigError::NoUpstreams { path });
        }
        let mut upstreams = Vec::with_capacity(config.upstreams.len());
        for url in &config.upstreams {
            let uri = parse_upstream(url).map_err(|problem| ProxyConfigError::BadUpstream {
                path: path.clone(),
                url: url.clone(),
                problem,
            })?;
            upstreams.push(Upstream { url: url.clone(), uri, record: Mutex::new(HealthRecord::default()) });
        }
        for (field, value) in [
            ("max_connections", config.max_connections as u64),
            ("health_interval_ms", config.health_interval_ms),
            ("connect_timeout_ms", config.connect_timeout_ms),
        ] {
            if value == 0 {
                return Err(ProxyConfigError::Zero { path, field });
            }
        }
        if routes.iter().any(|route| route.path == path && route.host == host) {
            return Err(ProxyConfigError::DuplicateRoute { path, host: config.host.clone() });
        }
        routes.push(Arc::new(Route {
            path,
            host,
            host_text: config.host.clone(),
            upstreams,
            turn: AtomicUsize::new(0),
            open: AtomicUsize::new(0),
            max_connections: config.max_connections,
            health_interval: Duration::from_millis(config.health_interval_ms),
            connect_timeout: Duration::from_millis(config.connect_timeout_ms),
        }));
    }
    Ok(routes)
}

fn check_path(path: &str) -> Result<(), ProxyConfigError> {
    let bad = |problem| Err(ProxyConfigError::BadPath { path: path.to_owned(), problem });
    if !path.starts_with('/') {
        return Err(ProxyConfigError::PathNotAbsolute { path: path.to_owned() });
    }
    // The router would read these as captures or wildcards; routes are exact.
    if path.contains(['{', '}', '*']) || path.split('/').any(|segment| segment.starts_with(':')) {
        return bad("the path must be exact: no '{', '}', '*' or segments starting with ':'");
    }
    if path.contains(['?', '#']) || path.parse::<Uri>().is_err() {
        return bad("not a valid URL path");
    }
    Ok(())
}

fn parse_upstream(url: &str) -> Result<Uri, String> {
    let uri: Uri = url.parse().map_err(|e| format!("not a URL: {e}"))?;
    match uri.scheme_str() {
        Some("ws") => {}
        Some("wss") => return Err("wss:// is not supported (the proxy has no TLS client); use ws://".into()),
        Some(other) => return Err(format!("the scheme must be ws://, not {other}://")),
        None => return Err("the URL must start with ws://".into()),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err("no host".into());
    }
    Ok(uri)
}

/// A route's Host pattern, lowercased.
#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    Exact(String),
    /// `*.example.com`, kept as `.example.com`.
    Subdomains(String),
}

impl HostPattern {
    fn parse(pattern: &str) -> Result<Self, &'static str> {
        let lower = pattern.to_ascii_lowercase();
        let lower = lower.strip_suffix('.').unwrap_or(&lower);
        let (wildcard, name) = match lower.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, lower),
        };
        if name.is_empty() {
            return Err("no host name");
        }
        if name.contains('*') {
            return Err("'*' may only stand for the leading labels, as in \"*.example.com\"");
        }
        if name.contains(':') {
            return Err("a host pattern has no port (the port in the Host header is ignored)");
        }
        if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.') {
            return Err("a host name has only letters, digits, '-' and '.'");
        }
        if name.starts_with('.') || name.contains("..") {
            return Err("empty label");
        }
        Ok(if wildcard { HostPattern::Subdomains(format!(".{name}")) } else { HostPattern::Exact(name.to_owned()) })
    }

    /// `host` as [`request_host`] returns it.
    fn matches(&self, host: &str) -> bool {
        match self {
            HostPattern::Exact(name) => host == name,
            HostPattern::Subdomains(suffix) => host.len() > suffix.len() && host.ends_with(suffix.as_str()),
        }
    }

    /// Exact names beat wildcards, longer wildcards beat shorter ones, and
    /// any pattern beats a route without one.
    fn rank(pattern: Option<&HostPattern>) -> (u8, usize) {
        match pattern {
            Some(HostPattern::Exact(name)) => (2, name.len()),
            Some(HostPattern::Subdomains(suffix)) => (1, suffix.len()),
            None => (0, 0),
        }
    }
}

/// The host name of a `Host` header or `:authority`: no port, no trailing
/// dot, lowercase.
fn request_host(authority: &str) -> String {
    let authority = authority.trim();
    let host = if authority.starts_with('[') {
        authority.find(']').map_or(authority, |end| &authority[..=end])
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
            _ => authority,
        }
    };
    host.trim_end_matches('.').to_ascii_lowercase()
}

/// The index of the best route for a request's host among those on its path.
fn best_route<'a>(candidates: impl IntoIterator<Item = (usize, Option<&'a HostPattern>)>, host: Option<&str>) -> Option<usize> {
    candidates
        .into_iter()
        .filter(|(_, pattern)| match pattern {
            None => true,
            Some(pattern) => host.is_some_and(|host| pattern.matches(host)),
        })
        .max_by_key(|(_, pattern)| HostPattern::rank(*pattern))
        .map(|(index, _)| index)
}

/// The order to try upstreams in: those in rotation, starting at `turn`.
fn rotation(in_rotation: &[bool], turn: usize) -> Vec<usize> {
    let mut order: Vec<usize> = in_rotation.iter().enumerate().filter(|(_, &up)| up).map(|(i, _)| i).collect();
    if !order.is_empty() {
        let start = turn % order.len();
        order.rotate_left(start);
    }
    order
}

/// The upstream URL for one client: the configured URL with the client's
/// query string appended.
fn upstream_url(upstream: &Uri, client_query: Option<&str>) -> String {
    let authority = upstream.authority().map_or("", |a| a.as_str());
    let path = match upstream.path() {
        "" => "/",
        path => path,
    };
    let query = match (upstream.query().filter(|q| !q.is_empty()), client_query.filter(|q| !q.is_empty())) {
        (Some(own), Some(client)) => format!("?{own}&{client}"),
        (Some(only), None) | (None, Some(only)) => format!("?{only}"),
        (None, None) => String::new(),
    };
    format!("ws://{authority}{path}{query}")
}

fn close_reason(reason: &str) -> &str {
    let mut end = reason.len().min(MAX_CLOSE_REASON);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    &reason[..end]
}

// ---------------------------------------------------------------- errors --

/// A request the proxy answers with an HTTP error instead of an upgrade.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProxyRefusal {
    #[error("no proxy route for {path} on host {host:?}")]
    NotFound { path: String, host: Option<String> },
    #[error("{path} has its {max} connections open; try again later")]
    TooManyConnections { path: String, max: usize },
    #[error("the proxy is shutting down")]
    ShuttingDown,
    #[error("not a WebSocket handshake: {reason}")]
    NotWebSocket { status: StatusCode, reason: String },
    #[error("the upstream refused the handshake with HTTP {status}")]
    UpstreamRefused { status: StatusCode },
    #[error("the upstream accepted none of the offered subprotocols")]
    NoSubprotocol,
    #[error("the request cannot be forwarded: {0}")]
    BadRequest(String),
}

impl ProxyRefusal {
    /// The stable machine code.
    pub fn code(&self) -> &'static str {
        match self {
            ProxyRefusal::NotFound { .. } => "NOT_FOUND",
            ProxyRefusal::TooManyConnections { .. } => "TOO_MANY_CONNECTIONS",
            ProxyRefusal::ShuttingDown => "UNAVAILABLE",
            ProxyRefusal::NotWebSocket { .. } => "UPGRADE_REQUIRED",
            ProxyRefusal::UpstreamRefused { .. } => "UPSTREAM_REFUSED",
            ProxyRefusal::NoSubprotocol => "NO_SUBPROTOCOL",
            ProxyRefusal::BadRequest(_) => "BAD_REQUEST",
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ProxyRefusal::NotFound { .. } => StatusCode::NOT_FOUND,
            ProxyRefusal::TooManyConnections { .. } | ProxyRefusal::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
            ProxyRefusal::NotWebSocket { status, .. } | ProxyRefusal::UpstreamRefused { status } => *status,
            ProxyRefusal::NoSubprotocol | ProxyRefusal::BadRequest(_) => StatusCode::BAD_REQUEST,
        }
    }
}

impl IntoResponse for ProxyRefusal {
    fn into_response(self) -> Response {
        let body = serde_json::json!({
            "type": "error",
            "data": { "code": self.code(), "message": self.to_string() },
        });
        (self.status(), Json(body)).into_response()
    }
}

// ---------------------------------------------------------------- status --

/// Whether an upstream is in rotation, as far as the proxy knows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    /// No check has completed yet; in rotation.
    #[default]
    Unchecked,
    Healthy,
    /// Out of rotation until a health check passes.
    Unhealthy,
}

#[derive(Debug, Clone, Serialize)]
pub struct ProxyStatus {
    pub routes: Vec<RouteStatus>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RouteStatus {
    pub path: String,
    pub host: Option<String>,
    pub connections_open: usize,
    pub max_connections: usize,
    pub upstreams: Vec<UpstreamStatus>,
}

#[derive(Debug, Clone, Serialize)]
pub struct UpstreamStatus {
    pub url: String,
    /// In rotation (healthy or not yet checked).
    pub healthy: bool,
    pub health: Health,
    /// The most recent failure, kept after a recovery.
    pub last_error: Option<String>,
}

// ----------------------------------------------------------------- proxy --

/// The proxy's routes, their upstreams' health and their open sessions.
pub struct Proxy {
    routes: Vec<Arc<Route>>,
    shutdown: CancellationToken,
    sessions: TaskTracker,
}

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

struct Upstream {
    url: String,
    uri: Uri,
    record: Mutex<HealthRecord>,
}

#[derive(Debug, Clone, Default)]
struct HealthRecord {
    health: Health,
    last_error: Option<String>,
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
                upstreams: route
                    .upstreams
                    .iter()
                    .map(|upstream| {
                        let record = upstream.record();
                        UpstreamStatus {
                            url: upstream.url.clone(),
                            healthy: record.health != Health::Unhealthy,
                            health: record.health,
                            last_error: record.last_error,
                        }
                    })
                    .collect(),
            })
            .collect();
        ProxyStatus { routes }
    }

    /// Check every upstream once, then each route's upstreams every
    /// `health_interval`, until `stop`. Each check is a handshake within
    /// `connect_timeout` and a clean close.
    pub async fn run_health_checks(self: Arc<Self>, stop: CancellationToken) {
        let first = join_all(self.routes.iter().map(|route| route.check()));
        tokio::select! {
            () = stop.cancelled() => return,
            _ = first => {}
        }
        let loops = self.routes.iter().map(|route| {
            let stop = &stop;
            async move {
                loop {
                    tokio::select! {
                        () = stop.cancelled() => return,
                        () = tokio::time::sleep(route.health_interval) => {}
                    }
                    tokio::select! {
                        () = stop.cancelled() => return,
                        () = route.check() => {}
                    }
                }
            }
        });
        join_all(loops).await;
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

    /// Connect to the next upstream in rotation, trying each at most once.
    async fn connect(&self, client: &ClientOffer) -> Result<Link, DialError> {
        let in_rotation: Vec<bool> = self.upstreams.iter().map(Upstream::in_rotation).collect();
        let turn = self.turn.fetch_add(1, Ordering::Relaxed);
        for index in rotation(&in_rotation, turn) {
            let upstream = &self.upstreams[index];
            let request = client.request_for(&upstream.uri).map_err(|e| DialError::Refused(ProxyRefusal::BadRequest(e)))?;
            match dial(request, self.connect_timeout).await {
                Ok((socket, protocol)) => {
                    let _ = upstream.record_outcome(&self.label(), Ok(()));
                    return Ok(Link { socket, protocol, upstream: upstream.url.clone() });
                }
                Err(DialError::Fault(error)) => {
                    let _ = upstream.record_outcome(&self.label(), Err(error));
                }
                Err(refused) => return Err(refused),
            }
        }
        Err(DialError::NoUpstream)
    }

    async fn check(&self) {
        let label = self.label();
        join_all(self.upstreams.iter().map(|upstream| {
            let label = &label;
            async move {
                let outcome = probe(&upstream.url, self.connect_timeout).await;
                let _ = upstream.record_outcome(label, outcome);
            }
        }))
        .await;
    }
}

impl Upstream {
    fn record(&self) -> HealthRecord {
        self.record.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    fn in_rotation(&self) -> bool {
        self.record().health != Health::Unhealthy
    }

    /// Record a check's or a connection's outcome; log a change of health
    /// once, when it happens.
    fn record_outcome(&self, route: &str, outcome: Result<(), String>) -> Option<Change> {
        let (before, after) = {
            let mut record = self.record.lock().unwrap_or_else(PoisonError::into_inner);
            let before = record.health;
            match &outcome {
                Ok(()) => record.health = Health::Healthy,
                Err(error) => {
                    record.health = Health::Unhealthy;
                    record.last_error = Some(error.clone());
                }
            }
            (before, record.health)
        };
        let change = match (before, after) {
            (before, after) if before == after => return None,
            (Health::Unchecked, Health::Healthy) => Change::FirstHealthy,
            (_, Health::Healthy) => Change::BackInRotation,
            _ => Change::OutOfRotation,
        };
        match (change, outcome) {
            (Change::FirstHealthy, _) => tracing::debug!(route, upstream = %self.url, "upstream healthy"),
            (Change::BackInRotation, _) => tracing::warn!(route, upstream = %self.url, "upstream back in rotation"),
            (Change::OutOfRotation, Err(error)) => tracing::warn!(route, upstream = %self.url, %error, "upstream out of rotation"),
            (Change::OutOfRotation, Ok(())) => {}
        }
        Some(change)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    FirstHealthy,
    BackInRotation,
    OutOfRotation,
}

/// Holds one of a route's `max_connections` until dropped.
struct Admission(Arc<Route>);

impl Admission {
    fn reserve(route: &Arc<Route>) -> Option<Admission> {
        route
            .open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |open| (open < route.max_connections).then_some(open + 1))
            .ok()
            .map(|_| Admission(Arc::clone(route)))
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
    }
}

// ------------------------------------------------------------- handshake --

/// What the handler for one mounted path needs.
#[derive(Clone)]
struct Mount {
    proxy: Arc<Proxy>,
    path: Arc<str>,
}

/// What the client's handshake passes on to the upstream's.
struct ClientOffer {
    remote: SocketAddr,
    host: Option<HeaderValue>,
    query: Option<String>,
    headers: HeaderMap,
}

impl ClientOffer {
    fn request_for(&self, upstream: &Uri) -> Result<UpstreamRequest, String> {
        let mut request = upstream_url(upstream, self.query.as_deref()).into_client_request().map_err(|e| e.to_string())?;
        let headers = request.headers_mut();
        for name in [header::AUTHORIZATION, header::USER_AGENT, header::ORIGIN] {
            if let Some(value) = self.headers.get(&name) {
                headers.insert(name, value.clone());
            }
        }
        // HTTP/2 clients may split cookies; HTTP/1.1 wants one header.
        if let Some(cookies) = joined(&self.headers, &header::COOKIE, b"; ")? {
            headers.insert(header::COOKIE, cookies);
        }
        // One header: tungstenite only reads the first when it checks the
        // upstream's choice.
        if let Some(offer) = joined(&self.headers, &header::SEC_WEBSOCKET_PROTOCOL, b", ")? {
            headers.insert(header::SEC_WEBSOCKET_PROTOCOL, offer);
        }
        let mut chain = joined(&self.headers, &X_FORWARDED_FOR, b", ")?.map(|v| v.as_bytes().to_vec()).unwrap_or_default();
        if !chain.is_empty() {
            chain.extend_from_slice(b", ");
        }
        chain.extend_from_slice(self.remote.ip().to_string().as_bytes());
        headers.insert(X_FORWARDED_FOR, HeaderValue::from_bytes(&chain).map_err(|e| e.to_string())?);
        if let Some(host) = &self.host {
            headers.insert(X_FORWARDED_HOST, host.clone());
        }
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static("ws"));
        Ok(request)
    }
}

/// All values of a header (and comma-separated items within them), trimmed
/// and joined with `separator`.
fn joined(headers: &HeaderMap, name: &HeaderName, separator: &[u8]) -> Result<Option<HeaderValue>, String> {
    let split_on = if separator.starts_with(b";") { b';' } else { b',' };
    let items: Vec<&[u8]> = headers
        .get_all(name)
        .iter()
        .flat_map(|value| value.as_bytes().split(move |&b| b == split_on))
        .map(<[u8]>::trim_ascii)
        .filter(|item| !item.is_empty())
        .collect();
    if items.is_empty() {
        return Ok(None);
    }
    HeaderValue::from_bytes(&items.join(separator)).map(Some).map_err(|e| format!("{name}: {e}"))
}

/// A connected upstream.
struct Link {
    socket: UpstreamSocket,
    protocol: Option<HeaderValue>,
    upstream: String,
}

enum DialError {
    /// The upstream failed: out of rotation, try the next.
    Fault(String),
    /// The upstream (or the request) said no to this client: tell it.
    Refused(ProxyRefusal),
    NoUpstream,
}

fn upstream_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(BUFFER_BYTES)
        .write_buffer_size(BUFFER_BYTES)
        .max_write_buffer_size(MAX_MESSAGE_BYTES.saturating_mul(2))
        .max_message_size(Some(MAX_MESSAGE_BYTES))
        .max_frame_size(Some(MAX_MESSAGE_BYTES))
}

async fn dial(request: UpstreamRequest, timeout: Duration) -> Result<(UpstreamSocket, Option<HeaderValue>), DialError> {
    let handshake = tokio_tungstenite::connect_async_with_config(request, Some(upstream_config()), true);
    match tokio::time::timeout(timeout, handshake).await {
        Err(_) => Err(DialError::Fault(format!("no handshake within {} ms", timeout.as_millis()))),
        Ok(Ok((socket, response))) => Ok((socket, response.headers().get(header::SEC_WEBSOCKET_PROTOCOL).cloned())),
        Ok(Err(ts::Error::Http(response))) if response.status().is_client_error() => {
            Err(DialError::Refused(ProxyRefusal::UpstreamRefused { status: response.status() }))
        }
        Ok(Err(ts::Error::Protocol(ProtocolError::SecWebSocketSubProtocolError(SubProtocolError::NoSubProtocol)))) => {
            Err(DialError::Refused(ProxyRefusal::NoSubprotocol))
        }
        Ok(Err(error)) => Err(DialError::Fault(error.to_string())),
    }
}

/// One health check: a handshake, then a clean close. Only the handshake
/// decides health; the close is a courtesy, bounded by the same timeout.
async fn probe(url: &str, timeout: Duration) -> Result<(), String> {
    let mut request = url.into_client_request().map_err(|e| e.to_string())?;
    request.headers_mut().insert(header::USER_AGENT, HeaderValue::from_static(HEALTH_CHECK_AGENT));
    let (mut socket, _) = match dial(request, timeout).await {
        Ok(connected) => connected,
        Err(DialError::Fault(error)) => return Err(error),
        Err(DialError::Refused(refusal)) => return Err(refusal.to_string()),
        Err(DialError::NoUpstream) => return Err("no upstream".into()),
    };
    let close = ts::protocol::CloseFrame { code: ts::protocol::frame::coding::CloseCode::Normal, reason: "health check".into() };
    let closing = async {
        if socket.close(Some(close)).await.is_ok() {
            while let Some(Ok(_)) = socket.next().await {}
        }
    };
    let _ = tokio::time::timeout(timeout, closing).await;
    Ok(())
}

/// Match the route, reserve a connection, connect upstream, then upgrade
/// with the upstream's subprotocol.
async fn upgrade(
    State(Mount { proxy, path }): State<Mount>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    uri: Uri,
    headers: HeaderMap,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let host = headers.get(header::HOST).cloned().or_else(|| uri.authority().and_then(|a| HeaderValue::from_str(a.as_str()).ok()));
    let host_name = host.as_ref().and_then(|h| h.to_str().ok()).map(request_host);
    let Some(route) = proxy.find(&path, host_name.as_deref()) else {
        return ProxyRefusal::NotFound { path: path.to_string(), host: host_name }.into_response();
    };
    let ws = match ws {
        Ok(ws) => ws,
        Err(rejection) => {
            return ProxyRefusal::NotWebSocket { status: rejection.status(), reason: rejection.body_text() }.into_response()
        }
    };
    if proxy.shutdown.is_cancelled() {
        return ProxyRefusal::ShuttingDown.into_response();
    }
    let Some(admission) = Admission::reserve(route) else {
        return ProxyRefusal::TooManyConnections { path: path.to_string(), max: route.max_connections }.into_response();
    };
    let offer = ClientOffer { remote, host, query: uri.query().map(str::to_owned), headers };
    let link = match route.connect(&offer).await {
        Ok(link) => link,
        Err(DialError::Refused(refusal)) => return refusal.into_response(),
        Err(DialError::Fault(_) | DialError::NoUpstream) => {
            drop(admission);
            tracing::debug!(route = %route.label(), client = %remote, "no upstream in rotation");
            let reason = format!("no healthy upstream for {path}");
            return ws.on_upgrade(move |socket| proxy.sessions.track_future(turn_away(socket, TRY_AGAIN_LATER, reason)));
        }
    };
    let ws = ws
        .read_buffer_size(BUFFER_BYTES)
        .write_buffer_size(BUFFER_BYTES)
        .max_write_buffer_size(MAX_MESSAGE_BYTES.saturating_mul(2))
        .max_message_size(MAX_MESSAGE_BYTES)
        .max_frame_size(MAX_MESSAGE_BYTES);
    let protocol = link.protocol.as_ref().and_then(|p| p.to_str().ok()).map(str::to_owned);
    let ws = match &protocol {
        Some(protocol) => ws.protocols([protocol.clone()]),
        None => ws,
    };
    let session = Session {
        route: route.label(),
        upstream: link.upstream,
        remote,
        protocol,
        shutdown: proxy.shutdown.clone(),
        _admission: admission,
    };
    let sessions = proxy.sessions.clone();
    ws.on_upgrade(move |socket| sessions.track_future(relay(socket, link.socket, session)))
}

/// Upgrade only to say why there is no session, then close.
async fn turn_away(mut socket: WebSocket, code: u16, reason: String) {
    let frame = ws::CloseFrame { code, reason: close_reason(&reason).into() };
    if socket.send(ws::Message::Close(Some(frame))).await.is_ok() {
        let _ = tokio::time::timeout(FLUSH_ON_CLOSE, async { while let Some(Ok(_)) = socket.next().await {} }).await;
    }
}

// ----------------------------------------------------------------- relay --

struct Session {
    route: String,
    upstream: String,
    remote: SocketAddr,
    protocol: Option<String>,
    shutdown: CancellationToken,
    _admission: Admission,
}

/// A close frame (code, reason) the proxy still has to send.
type Owed = Option<(u16, &'static str)>;

/// Why a session is ending, and so what each side still has to be told.
#[derive(Debug)]
enum Ending {
    /// The client sent a close frame; it went on to the upstream.
    ClientClosed(Option<u16>),
    /// The client's connection ended without a close frame.
    ClientGone(String),
    ClientTooBig,
    /// The upstream sent a close frame; it went on to the client.
    UpstreamClosed(Option<u16>),
    /// The upstream's connection ended without a close frame.
    UpstreamGone(String),
    UpstreamTooBig,
    ShuttingDown,
}

impl Ending {
    /// The close frames the proxy still owes (client, upstream).
    fn owed(&self) -> (Owed, Owed) {
        match self {
            Ending::ClientClosed(_) | Ending::UpstreamClosed(_) => (None, None),
            Ending::ClientGone(_) => (None, Some((GOING_AWAY, "client went away"))),
            Ending::ClientTooBig => (Some((TOO_BIG, "message too big")), Some((GOING_AWAY, "client went away"))),
            Ending::UpstreamGone(_) => (Some((BAD_GATEWAY, "upstream closed")), None),
            Ending::UpstreamTooBig => (Some((BAD_GATEWAY, "upstream closed")), Some((TOO_BIG, "message too big"))),
            Ending::ShuttingDown => (Some((GOING_AWAY, "proxy shutting down")), Some((GOING_AWAY, "proxy shutting down"))),
        }
    }

    /// Who ended the session, for logs.
    fn closed_by(&self) -> &'static str {
        match self {
            Ending::ClientClosed(_) | Ending::ClientGone(_) | Ending::ClientTooBig => "client",
            Ending::UpstreamClosed(_) | Ending::UpstreamGone(_) | Ending::UpstreamTooBig => "upstream",
            Ending::ShuttingDown => "proxy",
        }
    }

    /// What went wrong, when a side went away without a close frame.
    fn detail(&self) -> Option<&str> {
        match self {
            Ending::ClientGone(detail) | Ending::UpstreamGone(detail) => Some(detail),
            _ => None,
        }
    }

    /// The close codes each side ended with (client, upstream), for logs.
    fn codes(&self) -> (Option<u16>, Option<u16>) {
        match self {
            Ending::ClientClosed(code) | Ending::UpstreamClosed(code) => (*code, *code),
            _ => {
                let (client, upstream) = self.owed();
                (client.map(|c| c.0), upstream.map(|c| c.0))
            }
        }
    }
}

async fn relay(client: WebSocket, upstream: UpstreamSocket, session: Session) {
    let Session { route, upstream: url, remote, protocol, shutdown, _admission } = session;
    tracing::debug!(route = %route, upstream = %url, client = %remote, protocol = ?protocol, "proxy session open");
    let (mut client_tx, mut client_rx) = client.split();
    let (mut upstream_tx, mut upstream_rx) = upstream.split();
    let ending = tokio::select! {
        ending = client_to_upstream(&mut client_rx, &mut upstream_tx) => ending,
        ending = upstream_to_client(&mut upstream_rx, &mut client_tx) => ending,
        () = shutdown.cancelled() => Ending::ShuttingDown,
    };
    // Finish both closing handshakes: send what is owed, then read each side
    // to its end (which also flushes tungstenite's automatic close replies).
    let (to_client, to_upstream) = ending.owed();
    let client_side = async {
        if let Some((code, reason)) = to_client {
            let frame = ws::CloseFrame { code, reason: reason.into() };
            let _ = client_tx.send(ws::Message::Close(Some(frame))).await;
        }
        while let Some(Ok(_)) = client_rx.next().await {}
    };
    let upstream_side = async {
        if let Some((code, reason)) = to_upstream {
            let _ = upstream_tx.send(ts::Message::Close(Some(upstream_close(code, reason)))).await;
        }
        while let Some(Ok(_)) = upstream_rx.next().await {}
    };
    let _ = tokio::time::timeout(FLUSH_ON_CLOSE, join(client_side, upstream_side)).await;
    if matches!(ending, Ending::ClientTooBig) {
        tokio::time::sleep(LINGER).await;
    }
    let (client_code, upstream_code) = ending.codes();
    tracing::debug!(route = %route, upstream = %url, client = %remote, closed_by = ending.closed_by(), detail = ending.detail(), ?client_code, ?upstream_code, "proxy session closed");
}

async fn client_to_upstream(from: &mut SplitStream<WebSocket>, to: &mut SplitSink<UpstreamSocket, ts::Message>) -> Ending {
    loop {
        let message = match from.next().await {
            Some(Ok(message)) => message,
            Some(Err(error)) => {
                let error = error.into_inner();
                return match error.downcast_ref::<ts::Error>() {
                    Some(ts::Error::Capacity(_)) => Ending::ClientTooBig,
                    _ => Ending::ClientGone(error.to_string()),
                };
            }
            None => return Ending::ClientGone("connection ended without a close frame".into()),
        };
        if let ws::Message::Close(frame) = message {
            let code = frame.as_ref().map(|f| f.code);
            let frame = frame.map(|f| upstream_close(f.code, f.reason.as_str()));
            // If the upstream is already gone, the client has closed anyway.
            let _ = to.send(ts::Message::Close(frame)).await;
            return Ending::ClientClosed(code);
        }
        if let Err(error) = to.send(to_upstream(message)).await {
            return Ending::UpstreamGone(error.to_string());
        }
    }
}

async fn upstream_to_client(from: &mut SplitStream<UpstreamSocket>, to: &mut SplitSink<WebSocket, ws::Message>) -> Ending {
    loop {
        let message = match from.next().await {
            Some(Ok(message)) => message,
            Some(Err(ts::Error::Capacity(_))) => return Ending::UpstreamTooBig,
            Some(Err(error)) => return Ending::UpstreamGone(error.to_string()),
            None => return Ending::UpstreamGone("connection ended without a close frame".into()),
        };
        let message = match message {
            ts::Message::Close(frame) => {
                let code = frame.as_ref().map(|f| u16::from(f.code));
                let frame = frame.map(|f| ws::CloseFrame { code: f.code.into(), reason: f.reason.as_str().into() });
                let _ = to.send(ws::Message::Close(frame)).await;
                return Ending::UpstreamClosed(code);
            }
            ts::Message::Text(text) => ws::Message::Text(text.as_str().into()),
            ts::Message::Binary(data) => ws::Message::Binary(data),
            ts::Message::Ping(data) => ws::Message::Ping(data),
            ts::Message::Pong(data) => ws::Message::Pong(data),
            // Only produced when writing raw frames, never when reading.
            ts::Message::Frame(_) => continue,
        };
        if let Err(error) = to.send(message).await {
            return Ending::ClientGone(error.to_string());
        }
    }
}

// Text is copied between axum's and tungstenite's `Utf8Bytes`: axum keeps
// its conversion private, and the alternative is `unsafe`.
fn to_upstream(message: ws::Message) -> ts::Message {
    match message {
        ws::Message::Text(text) => ts::Message::Text(text.as_str().into()),
        ws::Message::Binary(data) => ts::Message::Binary(data),
        ws::Message::Ping(data) => ts::Message::Ping(data),
        ws::Message::Pong(data) => ts::Message::Pong(data),
        ws::Message::Close(frame) => ts::Message::Close(frame.map(|f| upstream_close(f.code, f.reason.as_str()))),
    }
}

fn upstream_close(code: u16, reason: &str) -> ts::protocol::CloseFrame {
    ts::protocol::CloseFrame { code: code.into(), reason: reason.into() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(path: &str, upstreams: &[&str]) -> ProxyRouteConfig {
        ProxyRouteConfig::new(path, upstreams.iter().copied())
    }

    #[test]
    fn config_defaults_and_unknown_fields() {
        let parsed: ProxyRouteConfig = serde_json::from_value(serde_json::json!({
            "path": "/video", "upstreams": ["ws://127.0.0.1:9000/v"]
        }))
        .unwrap();
        assert_eq!(parsed, route("/video", &["ws://127.0.0.1:9000/v"]));
        assert_eq!((parsed.max_connections, parsed.health_interval_ms, parsed.connect_timeout_ms), (1000, 5000, 5000));
        let unknown = serde_json::from_value::<ProxyRouteConfig>(serde_json::json!({
            "path": "/video", "upstreams": ["ws://a"], "upstream": "ws://b"
        }));
        assert!(unknown.is_err());
    }

    #[test]
    fn validation_rejects_bad_routes() {
        let with_host = |path: &str, host: &str| ProxyRouteConfig { host: Some(host.into()), ..route(path, &["ws://a:1"]) };
        let cases: Vec<(Vec<ProxyRouteConfig>, &str)> = vec![
            (vec![route("video", &["ws://a:1"])], "must start with '/'"),
            (vec![route("/v/{id}", &["ws://a:1"])], "exact"),
            (vec![route("/v/:id", &["ws://a:1"])], "exact"),
            (vec![route("/v", &[])], "no upstreams"),
            (vec![route("/v", &["http://a:1"])], "ws://, not http://"),
            (vec![route("/v", &["wss://a:1"])], "wss:// is not supported"),
            (vec![route("/v", &["a:1/x"])], "upstream"),
            (vec![route("/v", &["ws:///x"])], "upstream"),
            (vec![route("/v", &["ws://a:1"]), route("/v", &["ws://b:1"])], "declared twice"),
            (vec![with_host("/v", "A.example.com"), with_host("/v", "a.example.com")], "declared twice"),
            (vec![with_host("/v", "a.example.com:80")], "no port"),
            (vec![with_host("/v", "a.*.com")], "leading labels"),
            (vec![with_host("/v", "*.")], "leading labels"),
            (vec![with_host("/v", "")], "no host name"),
            (vec![ProxyRouteConfig { max_connections: 0, ..route("/v", &["ws://a:1"]) }], "max_connections"),
            (vec![ProxyRouteConfig { health_interval_ms: 0, ..route("/v", &["ws://a:1"]) }], "health_interval_ms"),
        ];
        for (routes, expected) in cases {
            let error = validate(&routes).expect_err(expected).to_string();
            assert!(error.contains(expected), "{error:?} should mention {expected:?}");
        }
        let fine = vec![
            route("/v", &["ws://a:1/x?y=1", "ws://b"]),
            with_host("/v", "*.example.com"),
            with_host("/v", "a.example.com"),
            route("/w", &["ws://[::1]:9000"]),
        ];
        assert_eq!(validate(&fine), Ok(()));
    }

    #[test]
    fn host_patterns() {
        let sub = HostPattern::parse("*.Example.com").unwrap();
        let exact = HostPattern::parse("a.example.com.").unwrap();
        for (pattern, host, expected) in [
            (&sub, "a.example.com", true),
            (&sub, "b.a.example.com", true),
            (&sub, "example.com", false),
            (&sub, "aexample.com", false),
            (&sub, "example.org", false),
            (&exact, "a.example.com", true),
            (&exact, "b.example.com", false),
        ] {
            assert_eq!(pattern.matches(host), expected, "{pattern:?} vs {host}");
        }
    }

    #[test]
    fn request_host_drops_port_dot_and_case() {
        for (authority, expected) in [
            ("a.example.com:8080", "a.example.com"),
            ("A.Example.COM", "a.example.com"),
            ("a.example.com.:80", "a.example.com"),
            ("[::1]:9000", "[::1]"),
            ("127.0.0.1", "127.0.0.1"),
        ] {
            assert_eq!(request_host(authority), expected);
        }
    }

    #[test]
    fn most_specific_route_wins() {
        let exact = HostPattern::parse("a.example.com").unwrap();
        let wide = HostPattern::parse("*.example.com").unwrap();
        let narrow = HostPattern::parse("*.a.example.com").unwrap();
        let routes = [(0, None), (1, Some(&wide)), (2, Some(&exact)), (3, Some(&narrow))];
        for (host, expected) in [
            (Some("a.example.com"), Some(2)),
            (Some("x.a.example.com"), Some(3)),
            (Some("b.example.com"), Some(1)),
            (Some("example.org"), Some(0)),
            (None, Some(0)),
        ] {
            assert_eq!(best_route(routes, host), expected, "{host:?}");
        }
        assert_eq!(best_route([(0, Some(&wide))], Some("example.org")), None);
    }

    #[test]
    fn rotation_is_round_robin_over_healthy() {
        assert_eq!(rotation(&[true, true], 0), [0, 1]);
        assert_eq!(rotation(&[true, true], 1), [1, 0]);
        assert_eq!(rotation(&[true, false, true], 1), [2, 0]);
        assert_eq!(rotation(&[true, false, true], 2), [0, 2]);
        assert!(rotation(&[false, false], 5).is_empty());
    }

    #[test]
    fn upstream_url_appends_client_query() {
        let uri: Uri = "ws://up:9000/socket?token=abc".parse().unwrap();
        assert_eq!(upstream_url(&uri, Some("room=7")), "ws://up:9000/socket?token=abc&room=7");
        assert_eq!(upstream_url(&uri, None), "ws://up:9000/socket?token=abc");
        let bare: Uri = "ws://up:9000".parse().unwrap();
        assert_eq!(upstream_url(&bare, Some("room=7")), "ws://up:9000/?room=7");
        assert_eq!(upstream_url(&bare, Some("")), "ws://up:9000/");
    }

    #[test]
    fn forwarded_headers() {
        let mut headers = HeaderMap::new();
        headers.append(X_FORWARDED_FOR, HeaderValue::from_static("10.0.0.1"));
        headers.append(X_FORWARDED_FOR, HeaderValue::from_static("10.0.0.2"));
        headers.append(header::SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static("v2.video"));
        headers.append(header::SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static("v1.video, x"));
        headers.append(header::COOKIE, HeaderValue::from_static("a=1"));
        headers.append(header::COOKIE, HeaderValue::from_static("b=2"));
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer t"));
        headers.insert(header::CONNECTION, HeaderValue::from_static("keep-alive, Upgrade"));
        let offer = ClientOffer {
            remote: "[::1]:5000".parse().unwrap(),
            host: Some(HeaderValue::from_static("a.example.com:8080")),
            query: Some("q=1".into()),
            headers,
        };
        let request = offer.request_for(&"ws://up:9/s".parse().unwrap()).unwrap();
        assert_eq!(request.uri(), "ws://up:9/s?q=1");
        let h = request.headers();
        assert_eq!(h[X_FORWARDED_FOR], "10.0.0.1, 10.0.0.2, ::1");
        assert_eq!(h[X_FORWARDED_HOST], "a.example.com:8080");
        assert_eq!(h[X_FORWARDED_PROTO], "ws");
        assert_eq!(h[header::SEC_WEBSOCKET_PROTOCOL], "v2.video, v1.video, x");
        assert_eq!(h[header::COOKIE], "a=1; b=2");
        assert_eq!(h[header::AUTHORIZATION], "Bearer t");
        assert_eq!(h[header::HOST], "up:9");
        assert_eq!(h[header::CONNECTION], "Upgrade");
    }

    #[test]
    fn health_changes_are_reported_once() {
        let upstream = Upstream { url: "ws://a:1".into(), uri: "ws://a:1".parse().unwrap(), record: Mutex::default() };
        let fail = || Err("refused".to_owned());
        let outcomes = [fail(), fail(), Ok(()), Ok(()), fail(), Ok(())];
        let changes: Vec<Option<Change>> = outcomes.into_iter().map(|outcome| upstream.record_outcome("/v", outcome)).collect();
        assert_eq!(
            changes,
            [
                Some(Change::OutOfRotation),
                None,
                Some(Change::BackInRotation),
                None,
                Some(Change::OutOfRotation),
                Some(Change::BackInRotation)
            ]
        );
        let first = Upstream { url: "ws://b:1".into(), uri: "ws://b:1".parse().unwrap(), record: Mutex::default() };
        assert!(first.in_rotation(), "unchecked counts as in rotation");
        assert_eq!(first.record_outcome("/v", Ok(())), Some(Change::FirstHealthy));
        assert_eq!(first.record().last_error, None);
        assert_eq!(upstream.record().last_error.as_deref(), Some("refused"), "the last error outlives recovery");
    }

    #[test]
    fn close_reasons_fit_a_frame() {
        let long = "é".repeat(100);
        let cut = close_reason(&long);
        assert!(cut.len() <= MAX_CLOSE_REASON && cut.len() >= MAX_CLOSE_REASON - 1);
        assert_eq!(close_reason("short"), "short");
    }

    #[test]
    fn refusal_body_shape() {
        let refusal = ProxyRefusal::TooManyConnections { path: "/video".into(), max: 2 };
        assert_eq!(refusal.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(refusal.code(), "TOO_MANY_CONNECTIONS");
    }
}
