//! The host's metrics, served at `/metrics` in the Prometheus text
//! exposition (OpenMetrics) format.
//!
//! Components get clones of the counters they move (a prometheus-client
//! metric is a shared handle), so the hub and the registry never see this
//! module's registry. Label values that come from clients are bounded: a
//! message's `type` label is its type only for the first
//! [`MAX_TYPE_LABELS`] routed types, then `other`; unrouted types are
//! `unknown`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::RwLock;
use std::time::Duration;
use crate::sync::{read, write};

/// Distinct message types labelled by name before the rest become `other`.
pub const MAX_TYPE_LABELS: usize = 512;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MessageLabels {
    pub r#type: String,
    pub status: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PluginLabels {
    pub plugin: String,
    pub version: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: String,
}

/// What the hub moves.
#[derive(Debug, Clone, Default)]
pub struct HubMetrics {
    /// Connections admitted and not yet gone.
    pub connections: Gauge,
    /// Frames not queued because a connection's outbox was full (the
    /// connection is then evicted as a slow consumer).
    pub outbox_drops: Counter,
    pub calls: CallMetrics,
}

/// What calls to clients do (see [`crate::hub`]'s `calls`).
#[derive(Debug, Clone, Default)]
pub struct CallMetrics {
    pub sent: Counter,
    pub answered: Counter,
    pub timed_out: Counter,
    pub disconnected: Counter,
    /// Refused with `CLIENT_BUSY`, never sent.
    pub busy: Counter,
    /// Answers that matched no waiting call (late, or not this client's).
    pub unmatched: Counter,
    /// Calls waiting for an answer now.
    pub waiting: Gauge,
}

/// What history recording moves.
#[derive(Debug, Clone, Default)]
pub struct HistoryMetrics {
    /// Records written to the database.
    pub written: Counter,
    /// Records not written: the queue was full, or the database refused
    /// them past every retry.
    pub dropped: Counter,
}

/// What the registry moves.
#[derive(Debug, Clone, Default)]
pub struct RegistryMetrics {
    pub swaps: Counter,
    pub load_failures: Counter,
}

pub struct Metrics {
    registry: Registry,
    pub hub: HubMetrics,
    pub plugins: RegistryMetrics,
    pub history: HistoryMetrics,
    pub connections_accepted: Counter,
    /// Connections refused, by reason (`limit`, `client_limit`, `rate`,
    /// `auth`, `origin`).
    pub connections_refused: Family<ReasonLabels, Counter>,
    messages: Family<MessageLabels, Counter>,
    plugin_calls: Family<PluginLabels, Histogram>,
    /// Requests refused by a rate limit, by limit (`messages`, `connections`).
    pub rate_limited: Family<ReasonLabels, Counter>,
    seen_types: RwLock<HashSet<String>>,
    /// Totals for the periodic summary.
    messages_total: AtomicU64,
    errors_total: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("switchyard");
        let hub = HubMetrics::default();
        let plugins = RegistryMetrics::default();
        let metrics = Metrics {
            connections_accepted: Counter::default(),
            connections_refused: Family::default(),
            messages: Family::default(),
            plugin_calls: Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.000_005, 2.0, 22))),
            rate_limited: Family::default(),
            seen_types: RwLock::default(),
            messages_total: AtomicU64::new(0),
            errors_total: AtomicU64::new(0),
            hub,
            plugins,
            history: HistoryMetrics::default(),
            registry: Registry::default(),
        };
        registry.register("connections", "Open WebSocket connections", metrics.hub.connections.clone());
        registry.register("connections_accepted", "WebSocket connections accepted", metrics.connections_accepted.clone());
        registry.register("connections_refused", "WebSocket connections refused, by reason", metrics.connections_refused.clone());
        registry.register("messages", "Messages answered, by type and status (OK or the error code)", metrics.messages.clone());
        registry.register(
            "plugin_call_seconds",
            "Plugin call latency, by plugin and version",
            metrics.plugin_calls.clone(),
        );
        registry.register("plugin_swaps", "Plugin versions replaced while serving", metrics.plugins.swaps.clone());
        registry.register("plugin_load_failures", "Plugin loads that failed", metrics.plugins.load_failures.clone());
        registry.register("outbox_drops", "Frames dropped because a connection's send queue was full", metrics.hub.outbox_drops.clone());
        let calls = &metrics.hub.calls;
        registry.register("client_calls_sent", "Calls sent to clients", calls.sent.clone());
        registry.register("client_calls_answered", "Calls to clients that the client answered", calls.answered.clone());
        registry.register("client_calls_timed_out", "Calls to clients that got no answer in time", calls.timed_out.clone());
        registry.register("client_calls_disconnected", "Calls to clients whose connection ended first", calls.disconnected.clone());
        registry.register("client_calls_busy", "Calls refused because the client had too many waiting", calls.busy.clone());
        registry.register("client_answers_unmatched", "Answers from clients that matched no waiting call", calls.unmatched.clone());
        registry.register("client_calls_waiting", "Calls to clients waiting for an answer", calls.waiting.clone());
        registry.register("history_written", "History records written to the database", metrics.history.written.clone());
        registry.register(
            "history_dropped",
            "History records not written (queue full, or refused by the database past every retry)",
            metrics.history.dropped.clone(),
        );
        registry.register("rate_limited", "Requests refused by a rate limit, by limit", metrics.rate_limited.clone());
        Metrics { registry, ..metrics }
    }

    /// Count one answered message. `routed` is false for types no target
    /// claims (and for messages that did not decode).
    pub fn message(&self, kind: &str, routed: bool, status: &str) {
        self.messages_total.fetch_add(1, Ordering::Relaxed);
        if status != "OK" {
            self.errors_total.fetch_add(1, Ordering::Relaxed);
        }
        let label = if !routed {
            "unknown"
        } else if read(&self.seen_types).contains(kind) {
            kind
        } else {
            let mut seen = write(&self.seen_types);
            if seen.len() < MAX_TYPE_LABELS {
                seen.insert(kind.to_owned());
                kind
            } else {
                "other"
            }
        };
        self.messages.get_or_create(&MessageLabels { r#type: label.to_owned(), status: status.to_owned() }).inc();
    }

    pub fn plugin_call(&self, plugin: &str, version: &str, took: Duration) {
        self.plugin_calls
            .get_or_create(&PluginLabels { plugin: plugin.to_owned(), version: version.to_owned() })
            .observe(took.as_secs_f64());
    }

    pub fn refused(&self, reason: &str) {
        self.connections_refused.get_or_create(&ReasonLabels { reason: reason.to_owned() }).inc();
    }

    pub fn limited(&self, limit: &str) {
        self.rate_limited.get_or_create(&ReasonLabels { reason: limit.to_owned() }).inc();
    }

    /// Messages and errors answered since start.
    pub fn totals(&self) -> (u64, u64) {
        (self.messages_total.load(Ordering::Relaxed), self.errors_total.load(Ordering::Relaxed))
    }

    /// The exposition text.
    pub fn render(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_what_moved_and_bounds_type_labels() {
        let metrics = Metrics::new();
        metrics.message("get_time", true, "OK");
        metrics.message("nope", false, "UNKNOWN_TYPE");
        metrics.plugin_call("clock", "0.1.0", Duration::from_micros(40));
        metrics.plugins.swaps.inc();
        let text = metrics.render();
        assert!(text.contains(r#"switchyard_messages_total{type="get_time",status="OK"} 1"#), "{text}");
        assert!(text.contains(r#"switchyard_messages_total{type="unknown",status="UNKNOWN_TYPE"} 1"#), "{text}");
        assert!(text.contains(r#"switchyard_plugin_call_seconds_count{plugin="clock",version="0.1.0"} 1"#), "{text}");
        assert!(text.contains("switchyard_plugin_swaps_total 1"), "{text}");
        for i in 0..MAX_TYPE_LABELS + 10 {
            metrics.message(&format!("t{i}"), true, "OK");
        }
        assert!(metrics.render().contains(r#"type="other""#));
        assert_eq!(metrics.totals(), (MAX_TYPE_LABELS as u64 + 12, 1));
    }
}
