//! The admin feed: what the dashboard watches, counted off the hot path.
//!
//! While no administrator watches (nobody holds a subscription to
//! [`DASHBOARD_TOPIC`]), a routed message costs one relaxed atomic load
//! ([`Feed::watched`]) and nothing else. While someone watches, a message
//! is counted by type and outcome in a fixed table of atomic counters
//! ([`Counts`]: a hash, a probe, one relaxed add; no allocation, no queue,
//! no lock), and the first [`TAIL_PER_INTERVAL`] messages of each interval
//! are described in full (connection, device, room, payload) and put in a
//! small bounded queue with `try_send` (never waits, wakes no task): the
//! **sampled tail**. Once an interval's tail is full, a message costs one
//! more relaxed load. The [`Collector`] reads the counters and drains the
//! tail once per interval. Payloads follow history's
//! privacy settings (`[storage.history]`: `max_payload_bytes`,
//! `no_payload_types`), whether or not history itself is on, and are cut
//! to [`TAIL_PAYLOAD_BYTES`].
//!
//! This module does not publish: the transport's dashboard task reads an
//! [`Interval`] from the collector, adds what the hub and registry hold,
//! and publishes one snapshot per interval on [`DASHBOARD_TOPIC`].
//!
//! It also keeps the **timeline**: the last [`TIMELINE_EVENTS`] `status`
//! and `config` events (swaps, failed loads, rollbacks, canaries, breaker
//! and config changes), watched or not, so a page opened after them shows
//! them. Such events are rare; recording one takes a lock, a routed
//! message never does.

use crate::config::storage::HistoryConfig;
use crate::services::EventSink;
use crate::store::history::PayloadPolicy;
use crate::wire::Failure;
use serde::Serialize;
use serde_json::value::RawValue;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;
use tokio::sync::mpsc;

/// The topic the admin feed is published on; only `admin` keys may
/// subscribe to it.
pub const DASHBOARD_TOPIC: &str = "dashboard";
/// Messages described in full per interval; the others are only counted.
pub const TAIL_PER_INTERVAL: i64 = 50;
/// Tail entries waiting for the collector, which drains them once per
/// interval: room for several intervals' worth.
const QUEUE: usize = 4 * TAIL_PER_INTERVAL as usize;
/// Payload bytes a tail entry carries at most, whatever history keeps.
pub const TAIL_PAYLOAD_BYTES: usize = 1024;
/// Distinct (type, outcome) rows counted by name; the rest are `other`.
pub const MAX_ROWS: usize = 512;
/// Slots of the counting table: twice the rows, so probes stay short.
const SLOTS: usize = 2 * MAX_ROWS;

/// One (type, outcome) and its count since the feed started counting.
#[derive(Default)]
struct Slot {
    key: OnceLock<(Box<str>, Box<str>)>,
    count: AtomicU64,
}

/// Messages by (type, outcome), counted from any thread without a lock:
/// open addressing over [`SLOTS`] slots, each slot's key set once.
pub struct Counts {
    slots: Box<[Slot]>,
    used: AtomicUsize,
    /// Rows past [`MAX_ROWS`].
    other: AtomicU64,
}

impl Default for Counts {
    fn default() -> Self {
        Counts { slots: (0..SLOTS).map(|_| Slot::default()).collect(), used: AtomicUsize::new(0), other: AtomicU64::new(0) }
    }
}

/// FNV-1a over both strings: short keys, no allocation.
fn slot_of(kind: &str, outcome: &str) -> usize {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in kind.bytes().chain([0xff]).chain(outcome.bytes()) {
        hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
    }
    (hash % SLOTS as u64) as usize
}

impl Counts {
    pub fn count(&self, kind: &str, outcome: &str) {
        let mut at = slot_of(kind, outcome);
        for _ in 0..SLOTS {
            let slot = &self.slots[at];
            let key = match slot.key.get() {
                Some(key) => key,
                None if self.used.load(Ordering::Relaxed) >= MAX_ROWS => break,
                None => {
                    // A free slot: take it, unless another thread just took it (for its key or ours).
                    let mut taken = false;
                    let key = slot.key.get_or_init(|| {
                        taken = true;
                        (kind.into(), outcome.into())
                    });
                    if taken {
                        self.used.fetch_add(1, Ordering::Relaxed);
                    }
                    key
                }
            };
            if &*key.0 == kind && &*key.1 == outcome {
                slot.count.fetch_add(1, Ordering::Relaxed);
                return;
            }
            at = (at + 1) % SLOTS;
        }
        self.other.fetch_add(1, Ordering::Relaxed);
    }
}

/// One message of the live tail.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TailEntry {
    /// Milliseconds since the Unix epoch.
    pub at: i64,
    pub id: String,
    pub r#type: String,
    pub outcome: String,
    pub connection_id: String,
    pub client_id: Option<String>,
    pub endpoint: String,
    pub device_id: Option<String>,
    pub room: Option<String>,
    pub plugin: Option<String>,
    pub version: Option<String>,
    pub latency_us: u64,
    /// The message's `data`, cut to `max_payload_bytes`; absent when the
    /// privacy settings keep it out.
    pub payload: Option<String>,
}

/// The hot path's handle (one per host, in [`super::metrics::Metrics`]).
pub struct Feed {
    watched: AtomicBool,
    counts: Counts,
    tx: mpsc::Sender<Box<TailEntry>>,
    rx: Mutex<Option<mpsc::Receiver<Box<TailEntry>>>>,
    /// Full descriptions left in this interval.
    tail_budget: AtomicI64,
    unqueued: AtomicU64,
    privacy: std::sync::RwLock<PayloadPolicy>,
    /// The last snapshot published, and when.
    last: Mutex<Option<(Instant, Arc<str>)>>,
    timeline: Arc<Timeline>,
}

impl Default for Feed {
    fn default() -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        Feed {
            watched: AtomicBool::new(false),
            counts: Counts::default(),
            tx,
            rx: Mutex::new(Some(rx)),
            tail_budget: AtomicI64::new(TAIL_PER_INTERVAL),
            unqueued: AtomicU64::new(0),
            privacy: std::sync::RwLock::default(),
            last: Mutex::new(None),
            timeline: Arc::default(),
        }
    }
}

impl Feed {
    /// Apply history's privacy settings to the tail's payloads.
    pub fn set_privacy(&self, history: &HistoryConfig) {
        *crate::sync::write(&self.privacy) = PayloadPolicy::new(history);
    }

    /// Whether anyone watches: the one check the hot path makes.
    #[inline]
    pub fn watched(&self) -> bool {
        self.watched.load(Ordering::Relaxed)
    }

    /// Someone subscribed to the feed: start observing.
    pub fn wake(&self) {
        self.watched.store(true, Ordering::Relaxed);
    }

    /// Nobody received the last snapshot: stop observing.
    pub fn sleep(&self) {
        self.watched.store(false, Ordering::Relaxed);
    }

    /// Count one answered message; `describe` is called only for the
    /// sampled few, whose payload is then what history's rule keeps of
    /// `payload` (a copy of at most [`TAIL_PAYLOAD_BYTES`]).
    pub fn observe(&self, kind: &str, outcome: &str, payload: &str, describe: impl FnOnce() -> TailEntry) {
        self.counts.count(kind, outcome);
        // Once the interval's tail is full: a load, and no write to the shared line.
        if self.tail_budget.load(Ordering::Relaxed) <= 0 || self.tail_budget.fetch_sub(1, Ordering::Relaxed) <= 0 {
            return;
        }
        let privacy = crate::sync::read(&self.privacy);
        let mut entry = describe();
        entry.payload = privacy.keeps(kind).then(|| privacy.prefix(payload, TAIL_PAYLOAD_BYTES).to_owned());
        drop(privacy);
        if self.tx.try_send(Box::new(entry)).is_err() {
            self.unqueued.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Keep the snapshot just published, for `GET /api/dashboard`.
    pub fn published(&self, snapshot: Arc<str>) {
        *crate::sync::lock(&self.last) = Some((Instant::now(), snapshot));
    }

    /// The last snapshot published, if it is younger than `max_age`.
    pub fn last(&self, max_age: std::time::Duration) -> Option<Arc<str>> {
        crate::sync::lock(&self.last).as_ref().filter(|(at, _)| at.elapsed() <= max_age).map(|(_, s)| Arc::clone(s))
    }

    /// The recent `status` and `config` events.
    pub fn timeline(&self) -> &Arc<Timeline> {
        &self.timeline
    }

    /// The collector; `None` once taken (there is one per feed).
    pub fn collector(&self) -> Option<Collector> {
        crate::sync::lock(&self.rx).take().map(|rx| Collector { rx, last: vec![0; SLOTS], last_other: 0 })
    }
}

/// Reads the feed's counters and drains its tail, once per interval.
pub struct Collector {
    rx: mpsc::Receiver<Box<TailEntry>>,
    /// Each slot's count (and `other`'s) at the last interval.
    last: Vec<u64>,
    last_other: u64,
}

/// Messages by type and outcome: in the last interval and since the host
/// started watching.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TypeCount {
    pub r#type: String,
    pub outcome: String,
    pub interval: u64,
    pub total: u64,
}

/// What one interval saw.
#[derive(Debug, Default, Serialize)]
pub struct Interval {
    pub by_type: Vec<TypeCount>,
    /// Messages observed in the interval.
    pub observed: u64,
    /// Tail entries, oldest first.
    pub tail: Vec<TailEntry>,
    /// Messages observed but not described in the tail (sampling).
    pub not_in_tail: u64,
    /// Tail entries the queue had no room for, since start (the messages
    /// were counted).
    pub unqueued: u64,
}

impl Collector {
    /// Close the interval: its counts and tail, and a fresh tail budget.
    pub fn interval(&mut self, feed: &Feed) -> Interval {
        let mut tail = Vec::new();
        while let Ok(entry) = self.rx.try_recv() {
            tail.push(*entry);
        }
        feed.tail_budget.store(TAIL_PER_INTERVAL, Ordering::Relaxed);
        let counts = &feed.counts;
        let mut by_type = Vec::new();
        for (slot, last) in counts.slots.iter().zip(self.last.iter_mut()) {
            let Some((kind, outcome)) = slot.key.get() else { continue };
            let total = slot.count.load(Ordering::Relaxed);
            by_type.push(TypeCount { r#type: kind.to_string(), outcome: outcome.to_string(), interval: total - *last, total });
            *last = total;
        }
        let other = counts.other.load(Ordering::Relaxed);
        if other > 0 {
            by_type.push(TypeCount { r#type: "other".into(), outcome: "*".into(), interval: other - self.last_other, total: other });
            self.last_other = other;
        }
        by_type.sort_by(|a, b| (&a.r#type, &a.outcome).cmp(&(&b.r#type, &b.outcome)));
        let observed = by_type.iter().map(|row| row.interval).sum();
        Interval {
            by_type,
            observed,
            not_in_tail: observed.saturating_sub(tail.len() as u64),
            tail,
            unqueued: feed.unqueued.load(Ordering::Relaxed),
        }
    }
}

/// The topics whose events the timeline keeps: the registry's and
/// breakers' `status`, and the API's `config`.
pub const TIMELINE_TOPICS: [&str; 2] = ["status", "config"];
/// Events the timeline keeps; older ones are dropped.
pub const TIMELINE_EVENTS: usize = 100;

/// One event on the timeline, as `GET /api/dashboard/timeline` lists it.
#[derive(Debug, Clone, Serialize)]
pub struct TimelineEvent {
    /// Numbered from 1 since the host started, without gaps.
    pub seq: u64,
    /// Milliseconds since the Unix epoch.
    pub at: i64,
    pub topic: String,
    pub source: String,
    /// The event's `data`, as its subscribers received it.
    pub data: Box<RawValue>,
}

/// The last [`TIMELINE_EVENTS`] `status` and `config` events.
#[derive(Debug, Default)]
pub struct Timeline {
    events: Mutex<(u64, VecDeque<TimelineEvent>)>,
}

impl Timeline {
    pub fn record(&self, topic: &str, source: &str, data: &RawValue) {
        let mut events = crate::sync::lock(&self.events);
        let (seq, list) = &mut *events;
        *seq += 1;
        if list.len() == TIMELINE_EVENTS {
            list.pop_front();
        }
        let at = crate::store::db::now_ms();
        list.push_back(TimelineEvent { seq: *seq, at, topic: topic.to_owned(), source: source.to_owned(), data: data.to_owned() });
    }

    /// The events kept, oldest first.
    pub fn recent(&self) -> Vec<TimelineEvent> {
        crate::sync::lock(&self.events).1.iter().cloned().collect()
    }
}

/// The event sink the registry and the plugins publish through: the
/// timeline keeps its topics' events on their way to the hub.
pub struct Recorded {
    hub: Arc<dyn EventSink>,
    timeline: Arc<Timeline>,
}

impl Recorded {
    pub fn new(hub: Arc<dyn EventSink>, timeline: Arc<Timeline>) -> Self {
        Recorded { hub, timeline }
    }
}

impl EventSink for Recorded {
    fn publish(&self, topic: &str, data: &RawValue, source: &str) -> Result<usize, Failure> {
        if TIMELINE_TOPICS.contains(&topic) {
            self.timeline.record(topic, source, data);
        }
        self.hub.publish(topic, data, source)
    }

    fn send(&self, connection_id: &str, message: &RawValue) -> Result<(), Failure> {
        self.hub.send(connection_id, message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn entry(kind: &str) -> TailEntry {
        TailEntry { r#type: kind.into(), ..TailEntry::default() }
    }

    #[test]
    fn counts_every_message_describes_a_sample_and_hides_private_payloads() {
        let feed = Feed::default();
        feed.set_privacy(&HistoryConfig {
            max_payload_bytes: 10,
            no_payload_types: BTreeSet::from(["login".to_owned()]),
            ..HistoryConfig::default()
        });
        let mut collector = feed.collector().unwrap();
        assert!(feed.collector().is_none(), "one collector per feed");
        assert!(!feed.watched());
        feed.wake();
        for i in 0..(TAIL_PER_INTERVAL + 20) {
            let kind = if i % 2 == 0 { "echo" } else { "login" };
            feed.observe(kind, "OK", &"x".repeat(100), || entry(kind));
        }
        feed.observe("echo", "PLUGIN_TIMEOUT", &"x".repeat(100), || entry("echo"));
        let interval = collector.interval(&feed);
        assert_eq!(interval.observed, TAIL_PER_INTERVAL as u64 + 21);
        assert_eq!(interval.tail.len(), TAIL_PER_INTERVAL as usize);
        assert_eq!(interval.not_in_tail, 21);
        let echo = interval.tail.iter().find(|e| e.r#type == "echo").unwrap();
        assert_eq!(echo.payload.as_deref(), Some("xxxxxxxxxx"), "cut to max_payload_bytes");
        assert!(interval.tail.iter().filter(|e| e.r#type == "login").all(|e| e.payload.is_none()));
        let counts: Vec<_> = interval.by_type.iter().map(|c| (c.r#type.as_str(), c.outcome.as_str(), c.interval)).collect();
        assert_eq!(counts, [("echo", "OK", 35), ("echo", "PLUGIN_TIMEOUT", 1), ("login", "OK", 35)]);

        // The next interval starts from zero, with a fresh budget; totals go on.
        feed.observe("echo", "OK", &"x".repeat(100), || entry("echo"));
        let next = collector.interval(&feed);
        assert_eq!((next.observed, next.tail.len()), (1, 1));
        let echo = next.by_type.iter().find(|c| c.r#type == "echo" && c.outcome == "OK").unwrap();
        assert_eq!((echo.interval, echo.total), (1, 36));
    }

    #[test]
    fn the_timeline_keeps_the_last_status_and_config_events_numbered() {
        #[derive(Default)]
        struct Hub(Mutex<Vec<String>>);
        impl EventSink for Hub {
            fn publish(&self, topic: &str, _: &RawValue, _: &str) -> Result<usize, Failure> {
                crate::sync::lock(&self.0).push(topic.to_owned());
                Ok(1)
            }
            fn send(&self, _: &str, _: &RawValue) -> Result<(), Failure> {
                Ok(())
            }
        }
        let hub = Arc::new(Hub::default());
        let feed = Feed::default();
        let sink = Recorded::new(hub.clone(), Arc::clone(feed.timeline()));
        let raw = |n: usize| serde_json::value::to_raw_value(&serde_json::json!({ "n": n })).unwrap();
        for n in 0..TIMELINE_EVENTS + 5 {
            sink.publish("status", &raw(n), "registry").unwrap();
        }
        sink.publish("news", &raw(0), "plugin").unwrap();
        sink.publish("config", &raw(999), "api").unwrap();
        assert_eq!(crate::sync::lock(&hub.0).len(), TIMELINE_EVENTS + 7, "every event still reaches the hub");
        let kept = feed.timeline().recent();
        assert_eq!(kept.len(), TIMELINE_EVENTS);
        assert_eq!(kept[0].data.get(), r#"{"n":6}"#, "the oldest are dropped");
        let last = kept.last().unwrap();
        assert_eq!((last.seq, last.topic.as_str(), last.source.as_str()), (TIMELINE_EVENTS as u64 + 6, "config", "api"));
        assert!(kept.windows(2).all(|w| w[1].seq == w[0].seq + 1));
    }

    #[test]
    fn counts_from_many_threads_lose_nothing() {
        let feed = Arc::new(Feed::default());
        let mut collector = feed.collector().unwrap();
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let feed = Arc::clone(&feed);
                std::thread::spawn(move || {
                    for i in 0..10_000 {
                        let kind = ["echo", "time", "room.join"][i % 3];
                        let outcome = if (i + t) % 7 == 0 { "PLUGIN_FAILED" } else { "OK" };
                        feed.observe(kind, outcome, "", TailEntry::default);
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        let interval = collector.interval(&feed);
        assert_eq!(interval.observed, 40_000);
        assert_eq!(interval.by_type.len(), 6, "{:?}", interval.by_type);
        assert_eq!(interval.tail.len(), TAIL_PER_INTERVAL as usize);
        assert_eq!(interval.unqueued, 0);
    }

    #[test]
    fn distinct_rows_are_bounded() {
        let feed = Feed::default();
        let mut collector = feed.collector().unwrap();
        for i in 0..MAX_ROWS + 10 {
            feed.observe(&format!("t{i}"), "OK", "", TailEntry::default);
            collector.interval(&feed);
        }
        let last = collector.interval(&feed);
        assert_eq!(last.by_type.len(), MAX_ROWS + 1);
        assert_eq!(last.by_type.iter().find(|c| c.r#type == "other").map(|c| c.total), Some(10));
    }
}
