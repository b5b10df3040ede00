//! The host's metrics, served at `/metrics` in the Prometheus text
//! exposition (OpenMetrics) format.
//!
//! Components get clones of the counters they move (a prometheus-client
//! metric is a shared handle), so the hub and the registry never see this
//! module's registry. Label values that come from clients are bounded: a
//! message's `type` label is its type only for the first
//! [`MAX_TYPE_LABELS`] routed types, then `other`; unrouted types are
//! `unknown`.
//!
//! The per-message metrics are counted through [`LabelHandles`]: a label
//! set's counter (or histogram) is resolved once, the first time it is
//! seen, and read after that from a copy-on-write map, so counting a
//! message allocates nothing and takes no lock of the host's.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use arc_swap::ArcSwap;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use crate::sync::lock;
use super::feed::Feed;

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
    /// From a publish until its event is written to its last subscriber.
    pub fanout: FanoutSeconds,
}

/// The `fanout_seconds` histogram: from a publish (or a room broadcast)
/// until its frame has been written to the last connection it was queued
/// for, the host's own share of a fan-out without the clients' reading.
#[derive(Debug, Clone)]
pub struct FanoutSeconds(pub Histogram);

impl Default for FanoutSeconds {
    fn default() -> Self {
        // 10 µs to about 5 s.
        FanoutSeconds(Histogram::new(exponential_buckets(0.000_01, 2.0, 20)))
    }
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
    /// Transactions that wrote records (written / batches: the mean batch).
    pub batches: Counter,
    /// Records waiting in the queue, as of the writer's last look: how far
    /// behind the database history is.
    pub queued: Gauge,
}

/// What a cluster node moves over NATS.
#[derive(Debug, Clone, Default)]
pub struct ClusterMetrics {
    /// Messages sent to the other nodes.
    pub forwarded: Counter,
    /// Messages that could not be sent to the other nodes (NATS down, or
    /// the outgoing queue full); their local delivery was not affected.
    pub unforwarded: Counter,
    /// Messages received from the other nodes.
    pub received: Counter,
    /// Other nodes seen alive.
    pub nodes: Gauge,
}

/// What the registry moves.
#[derive(Debug, Clone, Default)]
pub struct RegistryMetrics {
    pub swaps: Counter,
    pub load_failures: Counter,
    /// Components compiled or loaded from the compile cache (a rollback
    /// moves neither).
    pub compiles: Counter,
}

pub struct Metrics {
    registry: Registry,
    pub hub: HubMetrics,
    pub plugins: RegistryMetrics,
    pub history: HistoryMetrics,
    pub cluster: ClusterMetrics,
    pub connections_accepted: Counter,
    /// Connections refused, by reason (`limit`, `client_limit`, `rate`,
    /// `auth`, `origin`).
    pub connections_refused: Family<ReasonLabels, Counter>,
    messages: Family<MessageLabels, Counter>,
    plugin_calls: Family<PluginLabels, Histogram>,
    /// Requests refused by a rate limit, by limit (`messages`, `connections`).
    pub rate_limited: Family<ReasonLabels, Counter>,
    /// `messages` by (type label, status), resolved once.
    message_handles: LabelHandles<Counter>,
    /// `plugin_calls` by (plugin, version), resolved once.
    plugin_call_handles: LabelHandles<Histogram>,
    /// Routed types labelled by their name so far (at most
    /// [`MAX_TYPE_LABELS`]); held while a new type label is resolved.
    named_types: Mutex<usize>,
    /// The admin feed (see [`super::feed`]): idle unless watched.
    pub feed: Feed,
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
            message_handles: LabelHandles::default(),
            plugin_call_handles: LabelHandles::default(),
            named_types: Mutex::new(0),
            feed: Feed::default(),
            messages_total: AtomicU64::new(0),
            errors_total: AtomicU64::new(0),
            hub,
            plugins,
            history: HistoryMetrics::default(),
            cluster: ClusterMetrics::default(),
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
        registry.register("plugin_compiles", "Components compiled or loaded from the compile cache", metrics.plugins.compiles.clone());
        registry.register("outbox_drops", "Frames dropped because a connection's send queue was full", metrics.hub.outbox_drops.clone());
        registry.register(
            "fanout_seconds",
            "From a publish or room broadcast until its frame is written to the last connection it was queued for",
            metrics.hub.fanout.0.clone(),
        );
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
        registry.register("history_batches", "History transactions committed (one per batch of records)", metrics.history.batches.clone());
        registry.register("history_queued", "History records waiting to be written, as of the writer's last batch", metrics.history.queued.clone());
        let cluster = &metrics.cluster;
        registry.register("cluster_forwarded", "Messages sent to the other cluster nodes", cluster.forwarded.clone());
        registry.register("cluster_unforwarded", "Messages that could not be sent to the other cluster nodes", cluster.unforwarded.clone());
        registry.register("cluster_received", "Messages received from the other cluster nodes", cluster.received.clone());
        registry.register("cluster_nodes", "Other cluster nodes seen alive", cluster.nodes.clone());
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
        let label = if routed { kind } else { "unknown" };
        if self.message_handles.with(label, status, Counter::inc).is_some() {
            return;
        }
        // First sight of this label set (or a type past the bound).
        let mut named = lock(&self.named_types);
        let label = if !routed || self.message_handles.knows(label) {
            label
        } else if *named < MAX_TYPE_LABELS {
            *named += 1;
            label
        } else {
            "other"
        };
        self.message_handles
            .resolve(label, status, || {
                self.messages.get_or_create(&MessageLabels { r#type: label.to_owned(), status: status.to_owned() }).clone()
            })
            .inc();
    }

    pub fn plugin_call(&self, plugin: &str, version: &str, took: Duration) {
        let seconds = took.as_secs_f64();
        if self.plugin_call_handles.with(plugin, version, |histogram| histogram.observe(seconds)).is_some() {
            return;
        }
        let _resolving = lock(&self.named_types);
        self.plugin_call_handles
            .resolve(plugin, version, || {
                self.plugin_calls
                    .get_or_create(&PluginLabels { plugin: plugin.to_owned(), version: version.to_owned() })
                    .clone()
            })
            .observe(seconds);
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

/// Metric handles of one family by a two-part label set, resolved once:
/// lookups read a snapshot without locking or allocating; a label set seen
/// for the first time copies the map (label sets are bounded: types by
/// [`MAX_TYPE_LABELS`], plugin versions by the plugin folder), under the
/// caller's lock.
struct LabelHandles<M> {
    by_first: ArcSwap<HashMap<Box<str>, SecondLabels<M>>>,
}

/// The handles under one first label, by second label (a few statuses or
/// versions: a scan is quicker than a hash).
type SecondLabels<M> = Vec<(Box<str>, M)>;

impl<M> Default for LabelHandles<M> {
    fn default() -> Self {
        LabelHandles { by_first: ArcSwap::from_pointee(HashMap::new()) }
    }
}

impl<M: Clone> LabelHandles<M> {
    /// Run `use_it` on the handle of (`first`, `second`), if resolved.
    fn with<T>(&self, first: &str, second: &str, use_it: impl FnOnce(&M) -> T) -> Option<T> {
        let map = self.by_first.load();
        let seconds = map.get(first)?;
        seconds.iter().find(|(label, _)| &**label == second).map(|(_, handle)| use_it(handle))
    }

    fn knows(&self, first: &str) -> bool {
        self.by_first.load().contains_key(first)
    }

    /// The handle of (`first`, `second`), made by `make` if not resolved
    /// yet. Callers serialize calls to this (a lost update would only
    /// resolve the same handle again).
    fn resolve(&self, first: &str, second: &str, make: impl FnOnce() -> M) -> M {
        if let Some(handle) = self.with(first, second, M::clone) {
            return handle;
        }
        let handle = make();
        let mut map = HashMap::clone(&self.by_first.load());
        map.entry(first.into()).or_default().push((second.into(), handle.clone()));
        self.by_first.store(Arc::new(map));
        handle
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

    #[global_allocator]
    static COUNTING: crate::observability::allocations::CountingAllocator = crate::observability::allocations::CountingAllocator;
    use crate::observability::allocations::of as allocations_of;

    #[test]
    fn counting_a_seen_message_allocates_nothing() {
        let metrics = Metrics::new();
        let count = |metrics: &Metrics| {
            metrics.message("get_time", true, "OK");
            metrics.message("get_time", true, "PLUGIN_TIMEOUT");
            metrics.message("nope", false, "UNKNOWN_TYPE");
            metrics.plugin_call("clock", "0.1.0", Duration::from_micros(40));
        };
        // The first time resolves the handles.
        assert!(allocations_of(|| count(&metrics)) > 0);
        assert_eq!(allocations_of(|| count(&metrics)), 0, "a message of seen labels allocated");
        let text = metrics.render();
        assert!(text.contains(r#"switchyard_messages_total{type="get_time",status="OK"} 2"#), "{text}");
        assert!(text.contains(r#"switchyard_messages_total{type="get_time",status="PLUGIN_TIMEOUT"} 2"#), "{text}");
        assert!(text.contains(r#"switchyard_messages_total{type="unknown",status="UNKNOWN_TYPE"} 2"#), "{text}");
        assert!(text.contains(r#"switchyard_plugin_call_seconds_count{plugin="clock",version="0.1.0"} 2"#), "{text}");
        assert_eq!(metrics.totals(), (6, 4));
    }
}
