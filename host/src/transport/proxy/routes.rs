//! Proxy routes as the proxy uses them: configuration checked and compiled
//! into [`Route`]s, Host patterns, the choice of route for a request and the
//! order to try a route's upstreams in.
//!
//! It owns the rules a route must follow (exact path, `ws://` upstreams, a
//! Host pattern without port, no zeros, no route declared twice) and which
//! route and upstream a request gets. It is plain data and functions: it
//! must not do I/O, and it knows nothing of health beyond the in-rotation
//! flags it is given.

use crate::config::proxy::ProxyRouteConfig;
use super::health::HealthRecord;
use super::{Route, Upstream};
use axum::http::Uri;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};
use std::time::Duration;

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

pub(super) fn compile(configs: &[ProxyRouteConfig]) -> Result<Vec<Arc<Route>>, ProxyConfigError> {
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
pub(super) enum HostPattern {
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
pub(super) fn request_host(authority: &str) -> String {
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
pub(super) fn best_route<'a>(candidates: impl IntoIterator<Item = (usize, Option<&'a HostPattern>)>, host: Option<&str>) -> Option<usize> {
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
pub(super) fn rotation(in_rotation: &[bool], turn: usize) -> Vec<usize> {
    let mut order: Vec<usize> = in_rotation.iter().enumerate().filter(|(_, &up)| up).map(|(i, _)| i).collect();
    if !order.is_empty() {
        let start = turn % order.len();
        order.rotate_left(start);
    }
    order
}

/// The upstream URL for one client: the configured URL with the client's
/// query string appended.
pub(super) fn upstream_url(upstream: &Uri, client_query: Option<&str>) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn route(path: &str, upstreams: &[&str]) -> ProxyRouteConfig {
        ProxyRouteConfig::new(path, upstreams.iter().copied())
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
}
