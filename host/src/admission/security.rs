//! Who is calling and what they may do: API keys, their scopes, and the
//! browser origins allowed to open WebSockets.
//!
//! A caller presents `Authorization: Bearer <key>` (or, on a WebSocket from
//! a browser, which cannot set headers, `?access_token=<key>`). Keys are
//! kept only as SHA-256 digests and compared in constant time against every
//! configured key, so neither timing nor an early exit tells which part of a
//! guess was right. A caller without a key is *anonymous* and gets the
//! `auth.anonymous` scopes where an endpoint lets anonymous callers in; a
//! caller with a wrong or revoked key is refused, never downgraded.

use crate::config::{AuthConfig, ScopeConfig};
use crate::wire::{ErrorCode, Failure};
use crate::routing::router::Claim;
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::sync::{Arc, RwLock};
use subtle::ConstantTimeEq;
use crate::sync::{read, write};

/// A scope entry: everything, or one claim (`name` or `prefix.*`).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Pattern {
    Any,
    Claim(Claim),
}

impl Pattern {
    fn parse(text: &str) -> anyhow::Result<Pattern> {
        if text == "*" {
            return Ok(Pattern::Any);
        }
        Ok(Pattern::Claim(Claim::parse(text)?))
    }

    /// Whether this scope entry covers `requested`, itself a name or a
    /// `prefix.*` pattern (a subscription).
    fn covers(&self, requested: &str) -> bool {
        match self {
            Pattern::Any => true,
            Pattern::Claim(Claim::Exact(name)) => name == requested,
            Pattern::Claim(Claim::Prefix(prefix)) => requested.len() > prefix.len() && requested.starts_with(prefix.as_str()),
        }
    }
}

/// What a caller may use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scopes {
    types: Vec<Pattern>,
    topics: Vec<Pattern>,
    pub admin: bool,
}

impl Scopes {
    fn from_config(config: &ScopeConfig, admin: bool) -> anyhow::Result<Scopes> {
        let parse = |list: &[String]| list.iter().map(|p| Pattern::parse(p)).collect::<anyhow::Result<Vec<_>>>();
        Ok(Scopes { types: parse(&config.types)?, topics: parse(&config.topics)?, admin })
    }

    /// Everything, including administration: for the host's own calls.
    pub fn all() -> Scopes {
        Scopes { types: vec![Pattern::Any], topics: vec![Pattern::Any], admin: true }
    }
}

/// An authenticated caller, or the anonymous one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The key's name; `None` for anonymous callers.
    pub key: Option<String>,
    pub scopes: Scopes,
}

impl Principal {
    pub fn is_anonymous(&self) -> bool {
        self.key.is_none()
    }

    /// `FORBIDDEN` unless the caller may send messages of type `kind`.
    pub fn may_send(&self, kind: &str) -> Result<(), Failure> {
        if self.scopes.types.iter().any(|p| p.covers(kind)) {
            Ok(())
        } else {
            Err(self.forbidden(&format!("message type {kind:?}")))
        }
    }

    /// `FORBIDDEN` unless the caller may publish to or subscribe to `topic`
    /// (a topic or a `prefix.*` pattern). The admin feed's topic is for
    /// `admin` keys only, whatever their topic scope.
    pub fn may_use_topic(&self, topic: &str) -> Result<(), Failure> {
        if topic == crate::observability::feed::DASHBOARD_TOPIC && !self.scopes.admin {
            return Err(self.forbidden(&format!("topic {topic:?} (the admin feed)")));
        }
        if self.scopes.topics.iter().any(|p| p.covers(topic)) {
            Ok(())
        } else {
            Err(self.forbidden(&format!("topic {topic:?}")))
        }
    }

    /// The topic patterns of `topics` the caller may use, and, if it may
    /// not use them all, the `FORBIDDEN` failure naming the others.
    pub fn topics_in_scope(&self, topics: &[String]) -> (Vec<String>, Option<Failure>) {
        let (allowed, refused): (Vec<String>, Vec<String>) = topics.iter().cloned().partition(|t| self.may_use_topic(t).is_ok());
        let named = refused.iter().map(|t| format!("{t:?}")).collect::<Vec<_>>().join(", ");
        let failure = (!refused.is_empty()).then(|| self.forbidden(&format!("the topics {named}")));
        (allowed, failure)
    }

    /// `FORBIDDEN` unless the caller holds an `admin` key.
    pub fn may_administer(&self) -> Result<(), Failure> {
        if self.scopes.admin {
            Ok(())
        } else {
            Err(self.forbidden("administration"))
        }
    }

    fn forbidden(&self, what: &str) -> Failure {
        let who = self.key.as_deref().map_or_else(|| "anonymous callers".to_owned(), |k| format!("key {k:?}"));
        Failure::new(ErrorCode::Forbidden, format!("{who} may not use {what}"))
    }
}

struct Key {
    name: String,
    digest: [u8; 32],
    client_id: Option<String>,
    principal: Arc<Principal>,
}

/// The configured keys, revocations made at run time, and the origin
/// allowlist.
pub struct Keyring {
    keys: Vec<Key>,
    revoked: RwLock<HashSet<String>>,
    anonymous: Arc<Principal>,
    allowed_origins: Vec<String>,
    /// `auth.public_hosts`, lower case.
    public_hosts: Vec<String>,
    pub require_key_for_api: bool,
}

/// A key's public facts, for `GET /api/status`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct KeyInfo {
    pub name: String,
    pub admin: bool,
    pub revoked: bool,
}

impl Keyring {
    pub fn from_config(config: &AuthConfig) -> anyhow::Result<Keyring> {
        let mut names = HashSet::new();
        let mut revoked = HashSet::new();
        let mut keys = Vec::new();
        for key in &config.keys {
            anyhow::ensure!(!key.name.is_empty(), "auth.keys: every key needs a name");
            anyhow::ensure!(names.insert(key.name.clone()), "auth.keys: the name {:?} is used twice", key.name);
            anyhow::ensure!(key.key.len() >= 16, "auth.keys.{}: a key must be at least 16 characters", key.name);
            let scopes = Scopes::from_config(&key.scopes, key.admin).map_err(|e| anyhow::anyhow!("auth.keys.{}: {e}", key.name))?;
            if key.revoked {
                revoked.insert(key.name.clone());
            }
            keys.push(Key {
                name: key.name.clone(),
                digest: digest(&key.key),
                client_id: key.client_id.clone(),
                principal: Arc::new(Principal { key: Some(key.name.clone()), scopes }),
            });
        }
        let anonymous = Scopes::from_config(&config.anonymous, false).map_err(|e| anyhow::anyhow!("auth.anonymous: {e}"))?;
        Ok(Keyring {
            keys,
            revoked: RwLock::new(revoked),
            anonymous: Arc::new(Principal { key: None, scopes: anonymous }),
            allowed_origins: config.allowed_origins.clone(),
            public_hosts: config.public_hosts.iter().map(|h| h.to_ascii_lowercase()).collect(),
            require_key_for_api: config.require_key_for_api,
        })
    }

    /// Who presents `key` (with `client_id`, if the key is bound to one);
    /// the anonymous principal when no key is presented.
    pub fn authenticate(&self, key: Option<&str>, client_id: Option<&str>) -> Result<Arc<Principal>, Failure> {
        let Some(presented) = key else { return Ok(Arc::clone(&self.anonymous)) };
        let presented = digest(presented);
        // Compare against every key, without stopping at a match.
        let mut found = None;
        for key in &self.keys {
            if bool::from(key.digest.ct_eq(&presented)) {
                found = Some(key);
            }
        }
        let refused = || Failure::new(ErrorCode::AuthenticationFailed, "invalid or revoked API key");
        let key = found.ok_or_else(refused)?;
        if read(&self.revoked).contains(&key.name) {
            return Err(refused());
        }
        if key.client_id.as_deref().is_some_and(|bound| Some(bound) != client_id) {
            return Err(Failure::new(ErrorCode::AuthenticationFailed, "this API key is bound to another client id"));
        }
        Ok(Arc::clone(&key.principal))
    }

    /// Like [`authenticate`](Self::authenticate), but anonymous callers are
    /// refused.
    pub fn require(&self, key: Option<&str>, client_id: Option<&str>) -> Result<Arc<Principal>, Failure> {
        if key.is_none() {
            return Err(Failure::new(ErrorCode::AuthenticationFailed, "an API key is required: Authorization: Bearer <key>"));
        }
        self.authenticate(key, client_id)
    }

    /// Revoke the key named `name`; false if there is none.
    pub fn revoke(&self, name: &str) -> bool {
        if !self.keys.iter().any(|k| k.name == name) {
            return false;
        }
        write(&self.revoked).insert(name.to_owned());
        tracing::warn!(key = name, "API key revoked");
        true
    }

    pub fn keys(&self) -> Vec<KeyInfo> {
        let revoked = read(&self.revoked);
        self.keys
            .iter()
            .map(|k| KeyInfo { name: k.name.clone(), admin: k.principal.scopes.admin, revoked: revoked.contains(&k.name) })
            .collect()
    }

    /// Whether a browser page from `origin` may open a WebSocket on the
    /// host reached as `host` (the request's `Host` header). Requests
    /// without an `Origin` header do not come from a browser page.
    ///
    /// Besides `auth.allowed_origins`, a page is the host's own when it was
    /// served from one of `auth.public_hosts`, or, when none is configured,
    /// from a loopback name on the port the request came to. The `Host`
    /// header alone proves nothing: a DNS-rebinding page sends `Origin`
    /// and `Host` that match each other.
    pub fn origin_allowed(&self, origin: Option<&str>, host: Option<&str>) -> bool {
        let Some(origin) = origin else { return true };
        if self.allowed_origins.iter().any(|allowed| allowed == "*" || allowed.eq_ignore_ascii_case(origin)) {
            return true;
        }
        let Some((scheme, authority)) = origin.split_once("://") else { return false };
        let default_port = match scheme.to_ascii_lowercase().as_str() {
            "http" => 80,
            "https" => 443,
            _ => return false,
        };
        let Some((name, port)) = split_authority(authority) else { return false };
        let port = port.unwrap_or(default_port);
        if !self.public_hosts.is_empty() {
            return self.public_hosts.iter().any(|public| match split_authority(public) {
                Some((public_name, Some(public_port))) => public_name == name && public_port == port,
                Some((public_name, None)) => public_name == name,
                None => false,
            });
        }
        let came_to = host.and_then(split_authority).map(|(_, port)| port.unwrap_or(default_port));
        is_loopback(&name) && came_to == Some(port)
    }
}

/// `name[:port]` or `[v6]:port`, the name in lower case.
fn split_authority(authority: &str) -> Option<(String, Option<u16>)> {
    let (name, port) = match authority.strip_prefix('[') {
        Some(v6) => {
            let (address, rest) = v6.split_once(']')?;
            (format!("[{address}]"), rest.strip_prefix(':'))
        }
        None => match authority.rsplit_once(':') {
            Some((name, port)) => (name.to_owned(), Some(port)),
            None => (authority.to_owned(), None),
        },
    };
    let port = port.map(str::parse::<u16>).transpose().ok()?;
    (!name.is_empty()).then(|| (name.to_ascii_lowercase(), port))
}

fn is_loopback(name: &str) -> bool {
    name == "localhost" || name == "[::1]" || name.parse::<std::net::Ipv4Addr>().is_ok_and(|ip| ip.is_loopback())
}

fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// The key in an `Authorization: Bearer <key>` header value.
pub fn bearer(header: Option<&str>) -> Result<Option<&str>, Failure> {
    match header {
        None => Ok(None),
        Some(value) => match value.split_once(' ') {
            Some((scheme, key)) if scheme.eq_ignore_ascii_case("bearer") && !key.trim().is_empty() => Ok(Some(key.trim())),
            _ => Err(Failure::new(ErrorCode::AuthenticationFailed, "the Authorization header must be `Bearer <key>`")),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ApiKeyConfig;

    fn keyring() -> Keyring {
        let key = |name: &str, secret: &str, types: &[&str], admin: bool| ApiKeyConfig {
            name: name.into(),
            key: secret.into(),
            scopes: ScopeConfig { types: types.iter().map(|s| s.to_string()).collect(), topics: vec!["alert.*".into()] },
            admin,
            client_id: None,
            revoked: false,
        };
        Keyring::from_config(&AuthConfig {
            keys: vec![key("ops", "ops-secret-0123456789", &["*"], true), key("cam", "cam-secret-0123456789", &["video.*", "ping"], false)],
            anonymous: ScopeConfig { types: vec!["ping".into()], topics: vec![] },
            require_key_for_api: false,
            allowed_origins: vec!["https://console.example".into()],
            public_hosts: vec![],
        })
        .unwrap()
    }

    #[test]
    fn keys_scopes_and_revocation() {
        let ring = keyring();
        let cam = ring.authenticate(Some("cam-secret-0123456789"), None).unwrap();
        assert_eq!(cam.key.as_deref(), Some("cam"));
        assert!(cam.may_send("video.play").is_ok());
        assert!(cam.may_send("video").unwrap_err().is(ErrorCode::Forbidden));
        assert!(cam.may_use_topic("alert.cpu").is_ok());
        assert!(cam.may_use_topic("alert.*").is_ok(), "subscribing to the pattern itself stays within it");
        assert!(cam.may_use_topic("alert").is_err(), "alert.* covers alert.x, not alert");
        assert!(cam.may_administer().is_err());
        assert!(ring.authenticate(Some("ops-secret-0123456789"), None).unwrap().may_administer().is_ok());

        let anonymous = ring.authenticate(None, None).unwrap();
        assert!(anonymous.is_anonymous());
        assert!(anonymous.may_send("ping").is_ok() && anonymous.may_send("get_time").is_err());
        assert!(ring.require(None, None).unwrap_err().is(ErrorCode::AuthenticationFailed));
        assert!(ring.authenticate(Some("wrong-secret-0123456789"), None).unwrap_err().is(ErrorCode::AuthenticationFailed));

        assert!(ring.revoke("cam"));
        assert!(ring.authenticate(Some("cam-secret-0123456789"), None).is_err());
        assert!(!ring.revoke("nobody"));
    }

    #[test]
    fn origins_and_bearer() {
        let ring = keyring();
        assert!(ring.origin_allowed(None, Some("h:1")));
        assert!(ring.origin_allowed(Some("https://console.example"), Some("h:1")));
        assert!(!ring.origin_allowed(Some("http://h:1"), Some("h:1")), "a matching Host header proves nothing");
        assert!(ring.origin_allowed(Some("http://localhost:1"), Some("localhost:1")));
        assert!(ring.origin_allowed(Some("http://127.0.0.1:1"), Some("localhost:1")));
        assert!(ring.origin_allowed(Some("http://[::1]:1"), Some("[::1]:1")));
        assert!(ring.origin_allowed(Some("http://localhost"), Some("localhost")));
        assert!(!ring.origin_allowed(Some("http://localhost:2"), Some("localhost:1")), "another local site");
        assert!(!ring.origin_allowed(Some("https://evil.example"), Some("h:1")));
        assert!(!ring.origin_allowed(Some("null"), Some("h:1")));
        let named = Keyring::from_config(&AuthConfig { public_hosts: vec!["Switchyard.example".into(), "ops.example:8443".into()], ..AuthConfig::default() }).unwrap();
        assert!(named.origin_allowed(Some("https://switchyard.example"), Some("switchyard.example")));
        assert!(named.origin_allowed(Some("http://switchyard.example:8080"), Some("anything")), "a name alone matches any port");
        assert!(named.origin_allowed(Some("https://ops.example:8443"), None));
        assert!(!named.origin_allowed(Some("https://ops.example"), Some("ops.example")), "a name with a port matches that port only");
        assert!(!named.origin_allowed(Some("http://localhost:1"), Some("localhost:1")), "named hosts replace loopback");
        assert_eq!(bearer(Some("Bearer abc")).unwrap(), Some("abc"));
        assert_eq!(bearer(None).unwrap(), None);
        assert!(bearer(Some("Basic abc")).is_err());
    }
}
