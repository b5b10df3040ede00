//! Upstream health: whether each upstream is in rotation, the checks that
//! decide it, and the status rows that report it.
//!
//! Every upstream starts `unchecked`, which counts as in rotation: the only
//! window where that matters is before the first check completes, since
//! [`Proxy::run_health_checks`] checks everything once before it starts its
//! interval loop. A failed check, or a failed connection attempt for a
//! client, takes an upstream out of rotation; only a passing check puts it
//! back (out of rotation, it is not dialed for clients). An HTTP 4xx from an
//! upstream is this client's refusal, not the upstream's fault, so it is
//! passed on and does not count against the upstream (otherwise any
//! unauthenticated client could empty the pool).
//!
//! It owns the health record and its changes; it must not choose an
//! upstream for a client (that is `routes` and the relay).

use super::dial::{dial, DialError};
use super::{Proxy, Route, Upstream};
use axum::http::header;
use axum::http::HeaderValue;
use futures_util::future::join_all;
use futures_util::StreamExt;
use serde::Serialize;
use std::sync::{Arc, PoisonError};
use std::time::Duration;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self as ts};
use tokio_util::sync::CancellationToken;

/// The `User-Agent` of health checks, so upstreams can leave them out of
/// their logs.
pub const HEALTH_CHECK_AGENT: &str = "switchyard-proxy-health-check";

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

/// What the proxy knows of one upstream's health.
#[derive(Debug, Clone, Default)]
pub(super) struct HealthRecord {
    health: Health,
    last_error: Option<String>,
}

impl Proxy {
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
}

impl Route {
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

    /// This upstream's row in [`Proxy::status`].
    pub(super) fn status(&self) -> UpstreamStatus {
        let record = self.record();
        UpstreamStatus {
            url: self.url.clone(),
            healthy: record.health != Health::Unhealthy,
            health: record.health,
            last_error: record.last_error,
        }
    }

    pub(super) fn in_rotation(&self) -> bool {
        self.record().health != Health::Unhealthy
    }

    /// Record a check's or a connection's outcome; log a change of health
    /// once, when it happens.
    pub(super) fn record_outcome(&self, route: &str, outcome: Result<(), String>) -> Option<Change> {
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
pub(super) enum Change {
    FirstHealthy,
    BackInRotation,
    OutOfRotation,
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

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
}
