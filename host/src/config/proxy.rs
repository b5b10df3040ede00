//! `[[proxy]]`: a reverse-proxy route as the configuration file states it,
//! plain serde data and its defaults.
//!
//! It owns the shape of a `[[proxy]]` entry and nothing else: the proxy
//! (`transport::proxy`) checks and compiles routes when it starts.

use serde::{Deserialize, Serialize};

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_defaults_and_unknown_fields() {
        let parsed: ProxyRouteConfig = serde_json::from_value(serde_json::json!({
            "path": "/video", "upstreams": ["ws://127.0.0.1:9000/v"]
        }))
        .unwrap();
        assert_eq!(parsed, ProxyRouteConfig::new("/video", ["ws://127.0.0.1:9000/v"]));
        assert_eq!((parsed.max_connections, parsed.health_interval_ms, parsed.connect_timeout_ms), (1000, 5000, 5000));
        let unknown = serde_json::from_value::<ProxyRouteConfig>(serde_json::json!({
            "path": "/video", "upstreams": ["ws://a"], "upstream": "ws://b"
        }));
        assert!(unknown.is_err());
    }
}
