//! The per-plugin circuit breaker: a plugin that keeps timing out or
//! trapping is failed fast instead of being handed more calls to burn
//! their deadlines on.
//!
//! Closed, it counts faults (`PLUGIN_TIMEOUT`, `PLUGIN_FAILED`) in a window;
//! at `failures` it opens, and every call is answered `PLUGIN_UNAVAILABLE`
//! with `retry_after` (ms) for the cooldown, without touching an instance.
//! After the cooldown, the next call is let through alone as a probe (half
//! open): a reply, or the plugin's own failure, closes the breaker; another
//! fault opens it again. Each change is published as a `status` event.
//!
//! Each plugin version has its own breaker, so a swap starts closed. A call
//! on a closed breaker costs one atomic load before and, if it succeeded,
//! one after; the lock is taken only for faults and state changes.

use crate::config::BreakerPolicy;
use crate::plugins::registry::STATUS_TOPIC;
use crate::services::EventSink;
use crate::sync::lock;
use crate::wire::{ErrorCode, Failure};
use serde_json::json;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const CLOSED: u8 = 0;
const OPEN: u8 = 1;
const HALF_OPEN: u8 = 2;

/// A breaker's state, as `/api/status` and the events name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

impl BreakerState {
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }

    fn of(raw: u8) -> BreakerState {
        match raw {
            OPEN => BreakerState::Open,
            HALF_OPEN => BreakerState::HalfOpen,
            _ => BreakerState::Closed,
        }
    }
}

/// The faults counted in the current window.
#[derive(Debug)]
struct Tally {
    window_start: Instant,
    faults: u32,
}

pub struct Breaker {
    /// `None`: switched off; every call is admitted and nothing is counted.
    policy: Option<BreakerPolicy>,
    plugin: String,
    version: String,
    state: AtomicU8,
    /// Milliseconds after `epoch`: when an open breaker may probe, or when
    /// the half-open probe started.
    since_ms: AtomicU64,
    epoch: Instant,
    tally: Mutex<Tally>,
    /// Times the breaker opened, probes included.
    opened: AtomicU64,
    events: Arc<dyn EventSink>,
}

impl std::fmt::Debug for Breaker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Breaker").field("plugin", &self.plugin).field("state", &self.state()).finish()
    }
}

/// Leave to run one call; settle it with the call's outcome. A probe
/// dropped unsettled (its caller went away) opens the breaker again with
/// no wait, so the next call probes.
#[must_use = "settle the ticket with the call's outcome"]
pub struct Ticket<'a> {
    breaker: &'a Breaker,
    probe: bool,
    settled: bool,
}

impl Ticket<'_> {
    /// Count the call's outcome: faults are timeouts and traps; a reply or
    /// the plugin's own failure code is the plugin answering.
    pub fn settle(mut self, failure: Option<&Failure>) {
        self.settled = true;
        let fault = failure.filter(|f| is_fault(f));
        self.breaker.settle(self.probe, fault, Instant::now());
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        if self.probe && !self.settled {
            self.breaker.abandon_probe(Instant::now());
        }
    }
}

/// A fault the breaker counts.
pub fn is_fault(failure: &Failure) -> bool {
    failure.is(ErrorCode::PluginTimeout) || failure.is(ErrorCode::PluginFailed)
}

impl Breaker {
    pub fn new(policy: Option<BreakerPolicy>, plugin: &str, version: &str, events: Arc<dyn EventSink>) -> Breaker {
        let epoch = Instant::now();
        Breaker {
            policy,
            plugin: plugin.to_owned(),
            version: version.to_owned(),
            state: AtomicU8::new(CLOSED),
            since_ms: AtomicU64::new(0),
            epoch,
            tally: Mutex::new(Tally { window_start: epoch, faults: 0 }),
            opened: AtomicU64::new(0),
            events,
        }
    }

    pub fn policy(&self) -> Option<BreakerPolicy> {
        self.policy
    }

    pub fn state(&self) -> BreakerState {
        BreakerState::of(self.state.load(Ordering::Acquire))
    }

    /// How many times the breaker opened.
    pub fn times_opened(&self) -> u64 {
        self.opened.load(Ordering::Relaxed)
    }

    /// How long until an open breaker probes, in ms; `None` unless open.
    pub fn retry_after_ms(&self) -> Option<u64> {
        (self.state() == BreakerState::Open).then(|| self.since_ms.load(Ordering::Acquire).saturating_sub(self.millis(Instant::now())).max(1))
    }

    /// Let a call through, or refuse it with `PLUGIN_UNAVAILABLE`. A probe
    /// runs at most `deadline`: while it runs, others are told to retry
    /// when it must have ended.
    pub fn admit(&self, deadline: Duration) -> Result<Ticket<'_>, Failure> {
        self.admit_at(Instant::now(), deadline)
    }

    fn admit_at(&self, now: Instant, deadline: Duration) -> Result<Ticket<'_>, Failure> {
        let ticket = |probe| Ticket { breaker: self, probe, settled: false };
        if self.policy.is_none() {
            return Ok(ticket(false));
        }
        let at = self.millis(now);
        match self.state.load(Ordering::Acquire) {
            CLOSED => Ok(ticket(false)),
            OPEN => {
                let until = self.since_ms.load(Ordering::Acquire);
                if at >= until && self.state.compare_exchange(OPEN, HALF_OPEN, Ordering::AcqRel, Ordering::Acquire).is_ok() {
                    self.since_ms.store(at, Ordering::Release);
                    self.publish("breaker_half_open", json!({}));
                    return Ok(ticket(true));
                }
                Err(self.unavailable(until.saturating_sub(at), "open"))
            }
            _ => {
                let probe_ends = self.since_ms.load(Ordering::Acquire) + deadline.as_millis() as u64;
                Err(self.unavailable(probe_ends.saturating_sub(at), "half open, a probe call is running"))
            }
        }
    }

    fn unavailable(&self, wait_ms: u64, state: &str) -> Failure {
        let ms = wait_ms.max(1);
        Failure {
            retry_after_ms: Some(ms),
            ..Failure::new(
                ErrorCode::PluginUnavailable,
                format!("plugin {} is failing (circuit breaker {state}); retry after {ms} ms", self.plugin),
            )
        }
    }

    fn settle(&self, probe: bool, fault: Option<&Failure>, now: Instant) {
        let Some(policy) = self.policy else { return };
        if !probe && (fault.is_none() || self.state.load(Ordering::Acquire) != CLOSED) {
            // The common case, without the lock: a success, or a straggler
            // admitted before the breaker opened.
            return;
        }
        let mut tally = lock(&self.tally);
        match (probe, fault) {
            (true, None) => {
                tally.faults = 0;
                tally.window_start = now;
                self.state.store(CLOSED, Ordering::Release);
                self.publish("breaker_closed", json!({}));
            }
            (true, Some(fault)) => self.open(&policy, now, fault, 1),
            (false, Some(fault)) => {
                if self.state.load(Ordering::Acquire) != CLOSED {
                    return;
                }
                if now.duration_since(tally.window_start) > policy.window {
                    tally.window_start = now;
                    tally.faults = 0;
                }
                tally.faults += 1;
                if tally.faults >= policy.failures {
                    let faults = tally.faults;
                    tally.faults = 0;
                    self.open(&policy, now, fault, faults);
                }
            }
            (false, None) => {}
        }
    }

    /// Open for the cooldown; called under the tally's lock.
    fn open(&self, policy: &BreakerPolicy, now: Instant, fault: &Failure, faults: u32) {
        let cooldown = policy.cooldown.as_millis() as u64;
        self.since_ms.store(self.millis(now) + cooldown, Ordering::Release);
        self.state.store(OPEN, Ordering::Release);
        self.opened.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(plugin = %self.plugin, version = %self.version, faults, cooldown_ms = cooldown, "circuit breaker open: {fault}");
        self.publish(
            "breaker_opened",
            json!({
                "faults": faults,
                "window_ms": policy.window.as_millis() as u64,
                "retry_after": cooldown,
                "error": { "code": fault.code, "message": fault.message },
            }),
        );
    }

    /// The probe's caller went away before it ended: probe again next call.
    fn abandon_probe(&self, now: Instant) {
        let _tally = lock(&self.tally);
        if self.state.compare_exchange(HALF_OPEN, OPEN, Ordering::AcqRel, Ordering::Acquire).is_ok() {
            self.since_ms.store(self.millis(now), Ordering::Release);
        }
    }

    fn millis(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.epoch).as_millis() as u64
    }

    fn publish(&self, event: &str, extra: serde_json::Value) {
        let mut data = json!({
            "event": event,
            "plugin": self.plugin,
            "version": self.version,
            "state": self.state().as_str(),
        });
        if let (Some(data), serde_json::Value::Object(extra)) = (data.as_object_mut(), extra) {
            data.extend(extra);
        }
        if let Ok(raw) = serde_json::value::to_raw_value(&data) {
            let _ = self.events.publish(STATUS_TOPIC, &raw, "breaker");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::value::RawValue;

    #[derive(Default)]
    struct Recorded(Mutex<Vec<serde_json::Value>>);

    impl EventSink for Recorded {
        fn publish(&self, topic: &str, data: &RawValue, _source: &str) -> Result<usize, Failure> {
            assert_eq!(topic, STATUS_TOPIC);
            lock(&self.0).push(serde_json::from_str(data.get()).unwrap());
            Ok(1)
        }
        fn send(&self, _: &str, _: &RawValue) -> Result<(), Failure> {
            Ok(())
        }
    }

    impl Recorded {
        fn events(&self) -> Vec<String> {
            lock(&self.0).iter().map(|e| e["event"].as_str().unwrap().to_owned()).collect()
        }
    }

    const DEADLINE: Duration = Duration::from_millis(200);

    fn breaker(failures: u32) -> (Breaker, Arc<Recorded>) {
        let events = Arc::new(Recorded::default());
        let policy = BreakerPolicy { failures, window: Duration::from_secs(10), cooldown: Duration::from_secs(5) };
        (Breaker::new(Some(policy), "looper", "1.0.0", events.clone()), events)
    }

    fn timeout() -> Failure {
        Failure::new(ErrorCode::PluginTimeout, "ran past its deadline")
    }

    fn call(breaker: &Breaker, at: Instant, outcome: Option<Failure>) -> Result<(), Failure> {
        let ticket = breaker.admit_at(at, DEADLINE)?;
        let probe = ticket.probe;
        std::mem::forget(ticket);
        breaker.settle(probe, outcome.as_ref().filter(|f| is_fault(f)), at);
        Ok(())
    }

    #[test]
    fn faults_within_the_window_open_it_then_one_probe_decides() {
        let (b, events) = breaker(3);
        let t0 = b.epoch;
        for i in 0..2 {
            call(&b, t0 + Duration::from_millis(i), Some(timeout())).unwrap();
        }
        // The plugin's own failure codes are answers, not faults.
        call(&b, t0, Some(Failure::from_plugin("DIVISION_BY_ZERO".into(), "x".into()))).unwrap();
        assert_eq!(b.state(), BreakerState::Closed);
        call(&b, t0 + Duration::from_millis(3), Some(timeout())).unwrap();
        assert_eq!(b.state(), BreakerState::Open);

        let refused = b.admit_at(t0 + Duration::from_secs(1), DEADLINE).err().unwrap();
        assert!(refused.is(ErrorCode::PluginUnavailable));
        assert_eq!(refused.retry_after_ms, Some(4003));

        // After the cooldown one call probes; the others wait for it.
        let after = t0 + Duration::from_millis(5003);
        let probe = b.admit_at(after, DEADLINE).unwrap();
        assert_eq!(b.state(), BreakerState::HalfOpen);
        assert_eq!(b.admit_at(after, DEADLINE).err().unwrap().retry_after_ms, Some(200));
        b.settle(true, Some(&timeout()), after);
        std::mem::forget(probe);
        assert_eq!(b.state(), BreakerState::Open, "a failed probe opens it again");

        let later = after + Duration::from_secs(5);
        call(&b, later, None).unwrap();
        assert_eq!(b.state(), BreakerState::Closed);
        assert_eq!(events.events(), ["breaker_opened", "breaker_half_open", "breaker_opened", "breaker_half_open", "breaker_closed"]);
        assert_eq!(b.times_opened(), 2);
    }

    #[test]
    fn faults_spread_wider_than_the_window_do_not_open_it() {
        let (b, events) = breaker(2);
        let t0 = b.epoch;
        call(&b, t0, Some(timeout())).unwrap();
        call(&b, t0 + Duration::from_secs(11), Some(timeout())).unwrap();
        assert_eq!(b.state(), BreakerState::Closed);
        assert!(events.events().is_empty());
    }

    #[test]
    fn an_abandoned_probe_lets_the_next_call_probe() {
        let (b, _) = breaker(1);
        let t0 = b.epoch;
        call(&b, t0, Some(timeout())).unwrap();
        let after = t0 + Duration::from_secs(6);
        drop(b.admit_at(after, DEADLINE).unwrap());
        assert_eq!(b.state(), BreakerState::Open);
        assert!(b.admit_at(after, DEADLINE).unwrap().probe);
    }

    #[test]
    fn switched_off_it_admits_everything() {
        let b = Breaker::new(None, "looper", "1.0.0", Arc::new(Recorded::default()));
        for _ in 0..100 {
            call(&b, Instant::now(), Some(timeout())).unwrap();
        }
        assert_eq!(b.state(), BreakerState::Closed);
    }
}
