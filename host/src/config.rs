//! Host configuration: TOML, every field optional, sane defaults for
//! production. `switchyard serve` flags and `SWITCHYARD_*` environment
//! variables override the file (flag > environment > file > default).

use crate::runtime::Grant;
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
    /// `/`), `/ws/performance`, `/ws/alerts`, `/ws/status` and `/rooms`.
    pub endpoints: Vec<EndpointConfig>,
}

/// One WebSocket path and how it reads messages.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EndpointConfig {
    pub path: String,
    /// `envelope` (canonical and legacy formats) or `raw` (see docs/protocol.md).
    #[serde(default)]
    pub format: EndpointFormat,
    /// Prefixed, with a dot, to every message type.
    #[serde(default)]
    pub namespace: Option<String>,
    /// The type of messages that have none.
    #[serde(default)]
    pub default_type: Option<String>,
    /// Topic patterns every connection is subscribed to on connect.
    #[serde(default)]
    pub subscribe: Vec<String>,
    /// Send the `connection` acknowledgement on connect.
    #[serde(default = "yes")]
    pub ack: bool,
    /// Require authentication (enforced once the security layer lands; until
    /// then the host refuses to start with it set, rather than pretend).
    #[serde(default)]
    pub auth: bool,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum EndpointFormat {
    #[default]
    Envelope,
    Raw,
}

fn yes() -> bool {
    true
}

impl EndpointConfig {
    fn envelope(path: &str, subscribe: &[&str]) -> Self {
        EndpointConfig {
            path: path.into(),
            format: EndpointFormat::Envelope,
            namespace: None,
            default_type: None,
            subscribe: subscribe.iter().map(|s| s.to_string()).collect(),
            ack: true,
            auth: false,
        }
    }

    /// The zero-config endpoints.
    pub fn defaults() -> Vec<EndpointConfig> {
        vec![
            Self::envelope("/", &[]),
            Self::envelope("/ws", &[]),
            Self::envelope("/ws/performance", &["performance"]),
            Self::envelope("/ws/alerts", &["alert", "alert.*"]),
            Self::envelope("/ws/status", &["status"]),
            EndpointConfig {
                path: "/rooms".into(),
                format: EndpointFormat::Raw,
                namespace: Some("rooms".into()),
                default_type: Some("identify".into()),
                subscribe: Vec::new(),
                ack: false,
                auth: false,
            },
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
        let l = &self.limits;
        anyhow::ensure!(l.max_message_bytes > 0, "limits.max_message_bytes must be positive");
        anyhow::ensure!(l.max_frame_bytes >= l.max_message_bytes, "limits.max_frame_bytes must be at least limits.max_message_bytes");
        anyhow::ensure!(l.outbox_frames > 0, "limits.outbox_frames must be positive");
        let mut paths = std::collections::HashSet::new();
        for endpoint in &self.endpoints {
            anyhow::ensure!(endpoint.path.starts_with('/'), "endpoint path {:?} must start with /", endpoint.path);
            anyhow::ensure!(paths.insert(endpoint.path.as_str()), "endpoint path {} is configured twice", endpoint.path);
            anyhow::ensure!(
                !endpoint.auth,
                "endpoint {}: auth = true is not supported by this build; refusing to serve it unauthenticated",
                endpoint.path
            );
            for reserved in ["/healthz", "/api"] {
                anyhow::ensure!(!endpoint.path.starts_with(reserved), "endpoint path {} is reserved", endpoint.path);
            }
        }
        let w = &self.websocket;
        anyhow::ensure!(w.heartbeat_interval_ms > 0, "websocket.heartbeat_interval_ms must be positive");
        anyhow::ensure!(w.idle_timeout_ms > w.heartbeat_interval_ms, "websocket.idle_timeout_ms must exceed the heartbeat interval");
        Ok(())
    }
}

impl PluginsConfig {
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
        assert_eq!(config.endpoints.len(), 6, "default endpoints");
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
        assert!(config.endpoints[0].ack);
        assert_eq!(config.plugins.settings_text()["sysmon"]["interval_ms"], "500");

        let err = Config::from_toml("[plugins]\ndeadline = 5").unwrap_err().to_string();
        assert!(err.contains("unknown field"), "{err}");
    }
}
