//! Host configuration: TOML, every field optional, sane defaults for
//! production. `switchyard serve` flags and `SWITCHYARD_*` environment
//! variables override the file (flag > environment > file > default).

pub mod auth;
pub mod cluster;
pub mod isolation;
pub mod proxy;
pub mod rollout;
pub mod storage;
pub mod workers;

pub use crate::wire::frames::Ack;
pub use auth::{ApiKeyConfig, AuthConfig, ScopeConfig};
pub use isolation::{BreakerConfig, BreakerPolicy, CpuShareConfig};
use cluster::ClusterConfig;
use proxy::ProxyRouteConfig;
use storage::StorageConfig;
use workers::WorkersConfig;
use serde::Deserialize;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address of the one listener serving WebSocket and HTTP.
    pub listen: SocketAddr,
    pub plugins: PluginsConfig,
    pub limits: LimitsConfig,
    pub websocket: WebSocketConfig,
    /// WebSocket endpoints. Setting any replaces the defaults: `/ws` (and
    /// `/`), `/ws/performance`, `/ws/alerts`, `/ws/status`, `/rooms` and
    /// `/api/websocket`.
    pub endpoints: Vec<EndpointConfig>,
    pub auth: AuthConfig,
    /// Serve `https://` and `wss://` instead of plain HTTP.
    pub tls: Option<TlsConfig>,
    pub observability: ObservabilityConfig,
    /// Remote workers: timeouts, strategies, and which types they serve.
    pub workers: WorkersConfig,
    /// More listeners, each serving one WebSocket endpoint on every path
    /// (the action server's worker port 8765 and requester port 8766).
    pub listeners: Vec<ListenerConfig>,
    /// WebSocket reverse-proxy routes: a path (and optional Host pattern)
    /// relayed to upstream `ws://` servers.
    pub proxy: Vec<ProxyRouteConfig>,
    /// The host's own state that must survive a restart: key revocations
    /// and limits changed at run time (`runtime.json`), and the default
    /// SQLite database (`switchyard.db`).
    pub data_dir: PathBuf,
    /// The database: plugin key-value state and history.
    pub storage: StorageConfig,
    /// Several hosts as one, over NATS (off unless `urls` is set).
    pub cluster: ClusterConfig,
}

/// An extra listener: one endpoint, any path, no HTTP API.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    pub listen: SocketAddr,
    #[serde(default)]
    pub role: EndpointRole,
    /// The `connection` frame sent on connect (default none: the action
    /// server's requesters read the reply as the first frame).
    #[serde(default = "no_ack")]
    pub ack: Ack,
    #[serde(default)]
    pub auth: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// How often the files are checked for changes; a changed pair is
    /// loaded for new connections without a restart.
    #[serde(default = "tls_reload_ms")]
    pub reload_interval_ms: u64,
}

fn tls_reload_ms() -> u64 {
    2_000
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ObservabilityConfig {
    /// Serve `/metrics` (Prometheus text format).
    pub metrics: bool,
    /// How often a one-line status summary is logged; 0 turns it off.
    pub summary_interval_ms: u64,
}

impl Default for ObservabilityConfig {
    fn default() -> Self {
        ObservabilityConfig { metrics: true, summary_interval_ms: 60_000 }
    }
}

/// One WebSocket path and how it reads messages.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EndpointConfig {
    pub path: String,
    /// `envelope` (canonical and legacy formats), `raw` or `opaque` (see
    /// docs/protocol.md). An `opaque` endpoint hands each frame's bytes to
    /// the plugin claiming its `default_type`, and sends no acknowledgement.
    #[serde(default)]
    pub format: EndpointFormat,
    /// `json` (text frames; the default) or `msgpack` (MessagePack in
    /// binary frames). On a `json` endpoint a client may still ask for
    /// the `msgpack` subprotocol.
    #[serde(default)]
    pub encoding: EndpointEncoding,
    /// Prefixed, with a dot, to every message type.
    #[serde(default)]
    pub namespace: Option<String>,
    /// The type of messages that have none.
    #[serde(default)]
    pub default_type: Option<String>,
    /// Topic patterns every connection is subscribed to on connect.
    #[serde(default)]
    pub subscribe: Vec<String>,
    /// The `connection` frame sent on connect: `"monitoring"` (the
    /// default; also `true`), `"flat"` or `"none"` (also `false`).
    #[serde(default = "monitoring_ack")]
    pub ack: Ack,
    /// Require an API key to connect; without it, callers get the
    /// `auth.anonymous` scopes (and a wrong key is still refused).
    #[serde(default)]
    pub auth: bool,
    /// `clients` (send messages) or `workers` (serve them).
    #[serde(default)]
    pub role: EndpointRole,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum EndpointRole {
    #[default]
    Clients,
    Workers,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum EndpointEncoding {
    #[default]
    Json,
    Msgpack,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum EndpointFormat {
    #[default]
    Envelope,
    Raw,
    Opaque,
}

fn monitoring_ack() -> Ack {
    Ack::Monitoring
}

/// What a plugin may reach beyond the WIT capabilities, by plugin name.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Grant {
    /// Host folders to preopen.
    #[serde(default)]
    pub dirs: Vec<DirGrant>,
    /// Environment variables to pass, by name, from the host's environment.
    #[serde(default)]
    pub env: Vec<String>,
    /// Outbound and inbound TCP/UDP to any address, and name lookups.
    #[serde(default)]
    pub network: bool,
    /// The `system` capability: host cpu, memory, disk, network figures.
    #[serde(default)]
    pub system: bool,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DirGrant {
    pub host: PathBuf,
    pub guest: String,
    #[serde(default = "yes")]
    pub read_only: bool,
}

fn yes() -> bool {
    true
}

fn no_ack() -> Ack {
    Ack::None
}

/// `ack = "monitoring" | "flat" | "none"`, or, as before there were
/// styles, `true` (the monitoring frame, a superset of the old one) or
/// `false` (none).
impl<'de> Deserialize<'de> for Ack {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Ack, D::Error> {
        struct Setting;
        impl serde::de::Visitor<'_> for Setting {
            type Value = Ack;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str(r#""monitoring", "flat", "none", true or false"#)
            }
            fn visit_bool<E>(self, on: bool) -> Result<Ack, E> {
                Ok(if on { Ack::Monitoring } else { Ack::None })
            }
            fn visit_str<E: serde::de::Error>(self, style: &str) -> Result<Ack, E> {
                match style {
                    "monitoring" => Ok(Ack::Monitoring),
                    "flat" => Ok(Ack::Flat),
                    "none" => Ok(Ack::None),
                    other => Err(E::unknown_variant(other, &["monitoring", "flat", "none"])),
                }
            }
        }
        deserializer.deserialize_any(Setting)
    }
}

/// The one path under the reserved `/api` an endpoint may take: where the
/// video proxy's clients connect.
pub const VIDEO_ENDPOINT: &str = "/api/websocket";

impl EndpointConfig {
    fn envelope(path: &str, subscribe: &[&str], ack: Ack) -> Self {
        EndpointConfig {
            path: path.into(),
            format: EndpointFormat::Envelope,
            encoding: EndpointEncoding::Json,
            namespace: None,
            default_type: None,
            subscribe: subscribe.iter().map(|s| s.to_string()).collect(),
            ack,
            auth: false,
            role: EndpointRole::Clients,
        }
    }

    /// The zero-config endpoints.
    pub fn defaults() -> Vec<EndpointConfig> {
        vec![
            Self::envelope("/", &[], Ack::Monitoring),
            Self::envelope("/ws", &[], Ack::Monitoring),
            Self::envelope("/ws/performance", &["performance"], Ack::Monitoring),
            Self::envelope("/ws/alerts", &["alert", "alert.*"], Ack::Monitoring),
            Self::envelope("/ws/status", &["status"], Ack::Monitoring),
            // The rooms plugin sends the room server's flat `connection`
            // frame itself, in answer to the identify message.
            EndpointConfig {
                path: "/rooms".into(),
                format: EndpointFormat::Raw,
                encoding: EndpointEncoding::Json,
                namespace: Some("rooms".into()),
                default_type: Some("identify".into()),
                subscribe: Vec::new(),
                ack: Ack::None,
                auth: false,
                role: EndpointRole::Clients,
            },
            // The video proxy's clients handle `video_status` and never
            // subscribe; the `video` plugin publishes it on this topic.
            Self::envelope(VIDEO_ENDPOINT, &["video_status"], Ack::None),
        ]
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PluginsConfig {
    /// Folder of `*.wasm` components to serve and watch.
    pub dir: PathBuf,
    /// Compiled-code cache; `None` compiles on every start.
    pub cache_dir: Option<PathBuf>,
    /// Reload on file changes.
    pub watch: bool,
    pub debounce_ms: u64,
    /// Per-call deadline; past it the call fails with `PLUGIN_TIMEOUT`.
    pub deadline_ms: u64,
    /// Linear memory cap per instance.
    pub memory_mib: usize,
    /// Warm instances, and so concurrent calls, per plugin version.
    pub max_instances: usize,
    pub kv_max_value_bytes: usize,
    pub kv_max_keys: usize,
    /// What each plugin (by manifest name) may reach beyond its capabilities.
    /// By default `sysmon` is granted `system`.
    pub grants: HashMap<String, Grant>,
    /// Values each plugin (by manifest name) reads with `settings.get`.
    pub settings: HashMap<String, HashMap<String, toml::Value>>,
    /// The circuit breaker: after `failures` timeouts or traps within
    /// `window_ms`, calls fail fast with `PLUGIN_UNAVAILABLE` for
    /// `cooldown_ms`, then one probe call decides. `[plugins.breaker.NAME]`
    /// overrides it per plugin.
    pub breaker: BreakerConfig,
    /// The fraction of the async worker threads one plugin's calls may
    /// occupy at once, in (0, 1]; at least one call always runs.
    pub cpu_share: f64,
    /// `cpu_share` per plugin, by manifest name.
    pub cpu_shares: HashMap<String, f64>,
    /// Replaced versions each plugin keeps compiled for a rollback.
    pub history: usize,
    /// How a canary of each plugin (by manifest name) runs.
    pub rollout: HashMap<String, rollout::RolloutConfig>,
    /// The share of one core a shadow's candidate may use, in (0, 1]
    /// (`POST /api/plugins/{name}/shadow?cpu_budget=` overrides it per
    /// shadow); copies it has no time for are dropped and counted.
    pub shadow_cpu_budget: f64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Largest message answered; larger ones get `PAYLOAD_TOO_LARGE`.
    pub max_message_bytes: usize,
    /// Largest frame read at all; larger ones close the connection (1009).
    pub max_frame_bytes: usize,
    /// Frames queued per connection before it is a slow consumer.
    pub outbox_frames: usize,
    /// How long a reply may wait for room in a full outbox.
    pub send_timeout_ms: u64,
    /// Most simultaneous WebSocket connections; more are refused with 503.
    pub max_connections: usize,
    /// Most simultaneous connections with one client id.
    pub max_connections_per_client: usize,
    /// Most TCP connections served at once before they upgrade (HTTP
    /// requests, handshakes in progress); past it, new ones wait in the
    /// kernel's accept backlog.
    pub max_http_connections: usize,
    /// New connections per second from one source address (token bucket).
    pub connections_per_second_per_ip: u32,
    pub connection_burst_per_ip: u32,
    /// Messages per second per connection (token bucket); more are answered
    /// `RATE_LIMIT_EXCEEDED` with `retry_after`, and the connection stays.
    pub messages_per_second: u32,
    pub message_burst: u32,
    /// Time allowed for the TLS handshake and the HTTP request head.
    pub handshake_timeout_ms: u64,
    /// Largest HTTP request body, except plugin uploads.
    pub max_body_bytes: usize,
    /// Largest plugin upload (`POST /api/plugins`).
    pub max_upload_bytes: usize,
    /// Time allowed for a whole HTTP request body once its handler reads
    /// it; past it, 408 `REQUEST_TIMEOUT`.
    pub body_timeout_ms: u64,
    /// Bytes queued per connection before it is a slow consumer (beside
    /// `outbox_frames`); one frame larger than this still goes out alone.
    pub outbox_bytes: usize,
    /// Calls to one client (from plugins, the API, the console) waiting
    /// for its answers at once; more fail with `CLIENT_BUSY`.
    pub max_client_calls: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebSocketConfig {
    /// How often the host pings each connection.
    pub heartbeat_interval_ms: u64,
    /// A connection silent (no frame, no pong) this long is closed (4000).
    pub idle_timeout_ms: u64,
    /// On shutdown, how long in-flight requests may take to finish.
    pub shutdown_grace_ms: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            plugins: PluginsConfig::default(),
            limits: LimitsConfig::default(),
            websocket: WebSocketConfig::default(),
            endpoints: EndpointConfig::defaults(),
            auth: AuthConfig::default(),
            tls: None,
            observability: ObservabilityConfig::default(),
            workers: WorkersConfig::default(),
            listeners: Vec::new(),
            proxy: Vec::new(),
            data_dir: PathBuf::from(".switchyard/data"),
            storage: StorageConfig::default(),
            cluster: ClusterConfig::default(),
        }
    }
}

impl Default for PluginsConfig {
    fn default() -> Self {
        PluginsConfig {
            dir: PathBuf::from("plugins/dist"),
            cache_dir: Some(PathBuf::from(".switchyard/cache")),
            watch: true,
            debounce_ms: 200,
            deadline_ms: 2_000,
            memory_mib: 64,
            max_instances: 16,
            kv_max_value_bytes: 1 << 20,
            kv_max_keys: 10_000,
            grants: HashMap::from([("sysmon".to_owned(), Grant { system: true, ..Grant::default() })]),
            settings: HashMap::new(),
            breaker: BreakerConfig::default(),
            cpu_share: isolation::DEFAULT_CPU_SHARE,
            cpu_shares: HashMap::new(),
            history: 5,
            rollout: HashMap::new(),
            shadow_cpu_budget: rollout::DEFAULT_SHADOW_CPU_BUDGET,
        }
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_message_bytes: 1 << 20,
            max_frame_bytes: 16 << 20,
            outbox_frames: 256,
            send_timeout_ms: 10_000,
            max_connections: 10_000,
            max_connections_per_client: 100,
            max_http_connections: 4_096,
            connections_per_second_per_ip: 50,
            connection_burst_per_ip: 100,
            messages_per_second: 200,
            message_burst: 400,
            handshake_timeout_ms: 10_000,
            max_body_bytes: 1 << 20,
            max_upload_bytes: 128 << 20,
            body_timeout_ms: 10_000,
            outbox_bytes: 4 << 20,
            max_client_calls: 64,
        }
    }
}

impl Default for WebSocketConfig {
    fn default() -> Self {
        WebSocketConfig { heartbeat_interval_ms: 15_000, idle_timeout_ms: 45_000, shutdown_grace_ms: 10_000 }
    }
}

impl Config {
    /// Read a TOML file; unknown keys are errors, missing ones take defaults.
    pub fn from_file(path: &Path) -> anyhow::Result<Config> {
        let text = std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("cannot read config {}: {e}", path.display()))?;
        Self::from_toml(&text).map_err(|e| anyhow::anyhow!("invalid config {}: {e}", path.display()))
    }

    pub fn from_toml(text: &str) -> Result<Config, toml::de::Error> {
        toml::from_str(text)
    }

    /// Reject values that cannot work, with the reason.
    pub fn validate(&self) -> anyhow::Result<()> {
        let p = &self.plugins;
        anyhow::ensure!(p.deadline_ms > 0, "plugins.deadline_ms must be positive");
        anyhow::ensure!(p.memory_mib > 0, "plugins.memory_mib must be positive");
        anyhow::ensure!(p.max_instances > 0, "plugins.max_instances must be positive");
        p.breaker.validate()?;
        p.cpu().validate()?;
        rollout::check_shadow_budget(p.shadow_cpu_budget).map_err(|e| anyhow::anyhow!("plugins.shadow_cpu_budget: {e}"))?;
        self.cluster.validate()?;
        let l = &self.limits;
        anyhow::ensure!(l.max_message_bytes > 0, "limits.max_message_bytes must be positive");
        anyhow::ensure!(l.max_frame_bytes >= l.max_message_bytes, "limits.max_frame_bytes must be at least limits.max_message_bytes");
        anyhow::ensure!(l.outbox_frames > 0, "limits.outbox_frames must be positive");
        anyhow::ensure!(l.max_connections_per_client > 0, "limits.max_connections_per_client must be positive");
        anyhow::ensure!(l.max_http_connections > 0, "limits.max_http_connections must be positive");
        anyhow::ensure!(l.max_client_calls > 0, "limits.max_client_calls must be positive");
        anyhow::ensure!(l.handshake_timeout_ms > 0, "limits.handshake_timeout_ms must be positive");
        anyhow::ensure!(l.max_body_bytes > 0 && l.max_upload_bytes > 0, "limits.max_body_bytes and max_upload_bytes must be positive");
        anyhow::ensure!(l.body_timeout_ms > 0, "limits.body_timeout_ms must be positive");
        anyhow::ensure!(l.outbox_bytes > 0, "limits.outbox_bytes must be positive");
        anyhow::ensure!(
            self.endpoints.iter().all(|e| !e.auth) || !self.auth.keys.is_empty(),
            "an endpoint requires auth but auth.keys is empty"
        );
        let mut paths = std::collections::HashSet::new();
        for endpoint in &self.endpoints {
            anyhow::ensure!(endpoint.path.starts_with('/'), "endpoint path {:?} must start with /", endpoint.path);
            anyhow::ensure!(paths.insert(endpoint.path.as_str()), "endpoint path {} is configured twice", endpoint.path);
            let reserved = ["/healthz", "/readyz", "/metrics", "/api"].iter().any(|r| endpoint.path.starts_with(r));
            anyhow::ensure!(!reserved || endpoint.path == VIDEO_ENDPOINT, "endpoint path {} is reserved", endpoint.path);
            if endpoint.format == EndpointFormat::Opaque {
                anyhow::ensure!(endpoint.default_type.is_some(), "opaque endpoint {} needs default_type: the type whose plugin gets its frames", endpoint.path);
                anyhow::ensure!(endpoint.encoding == EndpointEncoding::Json, "opaque endpoint {} passes frames through: it has no encoding", endpoint.path);
                anyhow::ensure!(endpoint.role == EndpointRole::Clients, "opaque endpoint {} cannot serve workers", endpoint.path);
            }
        }
        for listener in &self.listeners {
            anyhow::ensure!(
                listener.listen.port() == 0 || listener.listen != self.listen,
                "listeners: {} is already the main listener",
                listener.listen
            );
            anyhow::ensure!(!listener.auth || !self.auth.keys.is_empty(), "listener {} requires auth but auth.keys is empty", listener.listen);
        }
        for route in &self.proxy {
            anyhow::ensure!(!paths.contains(route.path.as_str()), "proxy path {} is also an endpoint", route.path);
            for reserved in ["/healthz", "/readyz", "/metrics", "/api"] {
                anyhow::ensure!(!route.path.starts_with(reserved), "proxy path {} is reserved", route.path);
            }
        }
        let w = &self.websocket;
        anyhow::ensure!(w.heartbeat_interval_ms > 0, "websocket.heartbeat_interval_ms must be positive");
        anyhow::ensure!(w.idle_timeout_ms > w.heartbeat_interval_ms, "websocket.idle_timeout_ms must exceed the heartbeat interval");
        let s = &self.storage;
        anyhow::ensure!(s.max_connections > 0, "storage.max_connections must be positive");
        anyhow::ensure!(s.timeout_ms > 0, "storage.timeout_ms must be positive");
        anyhow::ensure!(s.history.queue > 0 && s.history.batch > 0, "storage.history.queue and batch must be positive");
        anyhow::ensure!(s.retention.every_ms > 0 && s.retention.batch > 0, "storage.retention.every_ms and batch must be positive");
        for table in s.retention.tables.keys() {
            anyhow::ensure!(
                storage::RETENTION_TABLES.contains(&table.as_str()),
                "storage.retention.tables.{table}: no such history table (one of {})",
                storage::RETENTION_TABLES.join(", ")
            );
        }
        if let Some(url) = &s.url {
            storage::Backend::of(url)?;
        }
        Ok(())
    }
}

impl PluginsConfig {
    /// `cpu_share` with its per plugin overrides.
    pub fn cpu(&self) -> CpuShareConfig {
        CpuShareConfig { default: self.cpu_share, plugins: self.cpu_shares.clone() }
    }

    /// Settings as the strings plugins read: TOML strings as they are,
    /// other values in their TOML form.
    pub fn settings_text(&self) -> HashMap<String, HashMap<String, String>> {
        let text = |v: &toml::Value| match v {
            toml::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        self.settings.iter().map(|(plugin, values)| (plugin.clone(), values.iter().map(|(k, v)| (k.clone(), text(v))).collect())).collect()
    }
}

/// Milliseconds, for config fields.
pub fn ms(value: u64) -> Duration {
    Duration::from_millis(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_toml_keeps_defaults_and_rejects_unknown_keys() {
        let config = Config::from_toml(
            r#"
            listen = "0.0.0.0:9000"
            [plugins]
            deadline_ms = 500
            [plugins.grants.video]
            dirs = [{ host = "/srv/videos", guest = "/videos" }]
            "#,
        )
        .unwrap();
        assert_eq!(config.listen.port(), 9000);
        assert_eq!(config.plugins.deadline_ms, 500);
        assert_eq!(config.plugins.memory_mib, 64);
        assert!(config.plugins.grants["video"].dirs[0].read_only);
        assert_eq!(config.endpoints.len(), 7, "default endpoints");
        config.validate().unwrap();

        let config = Config::from_toml(
            r#"
            [[endpoints]]
            path = "/feed"
            subscribe = ["alert.*"]
            [plugins.settings.sysmon]
            interval_ms = 500
            "#,
        )
        .unwrap();
        assert_eq!(config.endpoints.len(), 1);
        assert_eq!(config.endpoints[0].ack, Ack::Monitoring);
        assert_eq!(config.plugins.settings_text()["sysmon"]["interval_ms"], "500");

        let err = Config::from_toml("[plugins]\ndeadline = 5").unwrap_err().to_string();
        assert!(err.contains("unknown field"), "{err}");
    }

    #[test]
    fn ack_takes_a_style_or_the_old_switch() {
        let acks = |toml: &str| Config::from_toml(toml).map(|c| c.endpoints.iter().map(|e| e.ack).collect::<Vec<_>>());
        let styles = acks(
            r#"
            [[endpoints]]
            path = "/a"
            ack = "flat"
            [[endpoints]]
            path = "/b"
            ack = "none"
            [[endpoints]]
            path = "/c"
            ack = "monitoring"
            [[endpoints]]
            path = "/d"
            ack = true
            [[endpoints]]
            path = "/e"
            ack = false
            "#,
        )
        .unwrap();
        assert_eq!(styles, [Ack::Flat, Ack::None, Ack::Monitoring, Ack::Monitoring, Ack::None]);
        let err = acks("[[endpoints]]\npath = \"/a\"\nack = \"loud\"").unwrap_err().to_string();
        assert!(err.contains("monitoring"), "{err}");
        let listener = Config::from_toml("[[listeners]]\nlisten = \"127.0.0.1:0\"").unwrap();
        assert_eq!(listener.listeners[0].ack, Ack::None);
    }

    #[test]
    fn only_the_video_endpoint_may_sit_under_api() {
        let with = |path: &str| Config { endpoints: vec![EndpointConfig::envelope(path, &[], Ack::None)], ..Config::default() };
        with(VIDEO_ENDPOINT).validate().unwrap();
        for path in ["/api", "/api/websockets", "/api/status", "/metrics"] {
            let err = with(path).validate().unwrap_err().to_string();
            assert!(err.contains("reserved"), "{path}: {err}");
        }
        let video = Config::default().endpoints.into_iter().find(|e| e.path == VIDEO_ENDPOINT).expect("a default endpoint");
        assert_eq!((video.subscribe, video.ack), (vec!["video_status".to_owned()], Ack::None));
    }
}
