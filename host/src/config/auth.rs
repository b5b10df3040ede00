//! `[auth]`: API keys, what each may do, what callers without a key may
//! do, and which browser origins and host names count as the host's own.
//!
//! Plain data; `admission::security` turns it into a keyring.

use serde::Deserialize;

/// API keys, what each may do, and what callers without a key may do.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    pub keys: Vec<ApiKeyConfig>,
    /// Scopes of callers without a key, where an endpoint lets them in.
    /// Never `admin`.
    pub anonymous: ScopeConfig,
    /// Require a key on the HTTP message, control and status routes too
    /// (plugin, config and send routes always need an `admin` key).
    pub require_key_for_api: bool,
    /// Browser `Origin`s allowed to open WebSockets; `"*"` allows any. A
    /// request without `Origin` (not a browser) is always allowed.
    pub allowed_origins: Vec<String>,
    /// The names (`host` or `host:port`) this host is reached by from
    /// browsers: a page served from one of them may open WebSockets. When
    /// empty, only loopback pages on the host's own port may
    /// (`http://localhost:PORT`, `127.0.0.1`, `[::1]`). The request's
    /// own `Host` header is never trusted for this: a DNS-rebinding page
    /// sends a matching one.
    pub public_hosts: Vec<String>,
}

/// One API key. The key itself is never logged.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyConfig {
    /// A name for logs, status and revocation.
    pub name: String,
    /// The secret presented as `Authorization: Bearer <key>`.
    pub key: String,
    #[serde(flatten)]
    pub scopes: ScopeConfig,
    /// Plugin and config management, and sending from HTTP.
    #[serde(default)]
    pub admin: bool,
    /// If set, the key is only valid with this `X-Client-ID`.
    #[serde(default)]
    pub client_id: Option<String>,
    /// A revoked key is rejected like a wrong one.
    #[serde(default)]
    pub revoked: bool,
}

impl ApiKeyConfig {
    /// A key named `name` with the default scopes, not admin.
    pub fn new(name: &str, key: &str) -> ApiKeyConfig {
        ApiKeyConfig { name: name.into(), key: key.into(), scopes: ScopeConfig::default(), admin: false, client_id: None, revoked: false }
    }

    /// An admin key named `name`.
    pub fn admin(name: &str, key: &str) -> ApiKeyConfig {
        ApiKeyConfig { admin: true, ..ApiKeyConfig::new(name, key) }
    }
}

impl std::fmt::Debug for ApiKeyConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKeyConfig").field("name", &self.name).field("key", &"<redacted>").field("admin", &self.admin).finish()
    }
}

/// Message types and topics a caller may use: `*`, an exact name, or
/// `prefix.*`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScopeConfig {
    pub types: Vec<String>,
    pub topics: Vec<String>,
}

impl Default for ScopeConfig {
    fn default() -> Self {
        ScopeConfig { types: vec!["*".into()], topics: vec!["*".into()] }
    }
}
