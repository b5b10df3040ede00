//! Weighted canaries: a candidate version serves a share of a plugin's
//! messages beside the stable one, and is rolled back or promoted by its
//! figures.
//!
//! The route table carries the running [`Canary`]; a message of the
//! plugin's claims picks a version with [`Canary::choose`]: by weight, or,
//! when sticky, by a hash of the client id or device id (the connection id
//! when the client has none), so one client stays on one version until the
//! canary ends. After each candidate call [`Canary::observe`] checks the
//! thresholds once the candidate has `window` calls: an error rate above
//! the stable's (over the same period) by more than `max_error_rate_increase`,
//! or a p99 above `max_p99_ratio` × the stable's, rolls back; `promote_after`
//! calls with no breach promote (or wait for a manual promote). The
//! decision is taken on the call that crosses it, so from then on no new
//! message is routed to the candidate; the registry then swaps the table
//! and publishes the event. Reading the figures takes no lock: atomics
//! and the versions' histograms.

pub use crate::config::rollout::{RolloutConfig, Sticky};
use crate::plugins::runtime::PluginVersion;
use crate::plugins::versions::{figures, Histogram};
use serde_json::{json, Value};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use tokio::sync::Notify;

/// Where a canary is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CanaryState {
    Running,
    /// Decided to promote; the registry is swapping.
    Promoted,
    RolledBack,
}

impl CanaryState {
    fn from_u8(n: u8) -> CanaryState {
        match n {
            0 => CanaryState::Running,
            1 => CanaryState::Promoted,
            _ => CanaryState::RolledBack,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            CanaryState::Running => "running",
            CanaryState::Promoted => "promoted",
            CanaryState::RolledBack => "rolled_back",
        }
    }
}

/// The stable version's figures when the canary started, so both are
/// judged over the same period.
#[derive(Debug)]
struct Baseline {
    calls: u64,
    errors: u64,
    latencies: Vec<u64>,
}

pub struct Canary {
    pub stable: Arc<PluginVersion>,
    pub candidate: Arc<PluginVersion>,
    pub config: RolloutConfig,
    baseline: Baseline,
    /// Spreads unsticky messages by weight.
    sequence: AtomicU64,
    state: AtomicU8,
    /// Why it ended, for the event and the status.
    reason: std::sync::OnceLock<String>,
    /// Wakes the registry when the canary decided.
    pub decided: Notify,
}

impl std::fmt::Debug for Canary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Canary").field("stable", &self.stable).field("candidate", &self.candidate).field("state", &self.state()).finish()
    }
}

/// The candidate's and the stable's figures since the canary started.
#[derive(Debug, Clone, Copy)]
pub struct Comparison {
    pub stable_calls: u64,
    pub stable_error_rate: f64,
    pub stable_p99_us: Option<f64>,
    pub candidate_calls: u64,
    pub candidate_error_rate: f64,
    pub candidate_p99_us: Option<f64>,
}

fn rate(errors: u64, calls: u64) -> f64 {
    if calls == 0 {
        0.0
    } else {
        errors as f64 / calls as f64
    }
}

impl Canary {
    pub fn new(stable: Arc<PluginVersion>, candidate: Arc<PluginVersion>, config: RolloutConfig) -> Canary {
        let baseline = Baseline {
            calls: stable.stats.calls.load(Ordering::Relaxed),
            errors: stable.stats.errors(),
            latencies: stable.stats.latencies.counts(),
        };
        Canary {
            stable,
            candidate,
            config,
            baseline,
            sequence: AtomicU64::new(0),
            state: AtomicU8::new(0),
            reason: std::sync::OnceLock::new(),
            decided: Notify::new(),
        }
    }

    pub fn state(&self) -> CanaryState {
        CanaryState::from_u8(self.state.load(Ordering::Acquire))
    }

    pub fn reason(&self) -> Option<&str> {
        self.reason.get().map(String::as_str)
    }

    /// The version that serves one message; `sticky_key` is the client's
    /// (or device's, or connection's) id when the canary is sticky.
    pub fn choose(&self, sticky_key: impl FnOnce() -> Option<String>) -> &Arc<PluginVersion> {
        // Once decided, every new message goes where the decision says.
        match self.state() {
            CanaryState::Running => {}
            CanaryState::Promoted => return &self.candidate,
            CanaryState::RolledBack => return &self.stable,
        }
        let bucket = match self.config.sticky.and_then(|_| sticky_key()) {
            Some(key) => {
                let mut hasher = DefaultHasher::new();
                key.hash(&mut hasher);
                hasher.finish() % 100
            }
            None => {
                let n = self.sequence.fetch_add(1, Ordering::Relaxed);
                // A multiplicative hash spreads the candidate's share evenly.
                (n.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) % 100
            }
        };
        if bucket < u64::from(self.config.weight) {
            &self.candidate
        } else {
            &self.stable
        }
    }

    /// Both versions' figures since the canary started.
    pub fn compare(&self) -> Comparison {
        let stable = &self.stable.stats;
        let candidate = &self.candidate.stats;
        let stable_calls = stable.calls.load(Ordering::Relaxed).saturating_sub(self.baseline.calls);
        let stable_errors = stable.errors().saturating_sub(self.baseline.errors);
        let stable_latencies: Vec<u64> =
            stable.latencies.counts().iter().zip(&self.baseline.latencies).map(|(now, then)| now.saturating_sub(*then)).collect();
        let candidate_calls = candidate.calls.load(Ordering::Relaxed);
        Comparison {
            stable_calls,
            stable_error_rate: rate(stable_errors, stable_calls),
            stable_p99_us: Histogram::quantile_of(&stable_latencies, 0.99),
            candidate_calls,
            candidate_error_rate: rate(candidate.errors(), candidate_calls),
            candidate_p99_us: candidate.latencies.p50_p99().map(|(_, p99)| f64::from(p99)),
        }
    }

    /// [`compare`](Self::compare) without the latencies.
    fn compare_errors(&self) -> Comparison {
        let stable = &self.stable.stats;
        let candidate = &self.candidate.stats;
        let stable_calls = stable.calls.load(Ordering::Relaxed).saturating_sub(self.baseline.calls);
        let candidate_calls = candidate.calls.load(Ordering::Relaxed);
        Comparison {
            stable_calls,
            stable_error_rate: rate(stable.errors().saturating_sub(self.baseline.errors), stable_calls),
            stable_p99_us: None,
            candidate_calls,
            candidate_error_rate: rate(candidate.errors(), candidate_calls),
            candidate_p99_us: None,
        }
    }

    /// After a candidate call: judge the thresholds once the window is
    /// full. Returns the decision when this call took it.
    pub fn observe(&self) -> Option<CanaryState> {
        if self.state() != CanaryState::Running {
            return None;
        }
        let candidate_calls = self.candidate.stats.calls.load(Ordering::Relaxed);
        if candidate_calls < self.config.window {
            return None;
        }
        // The error rates on every call (a few atomic loads); latency, which
        // reads both histograms, on every 32nd.
        let c = if candidate_calls.is_multiple_of(32) { self.compare() } else { self.compare_errors() };
        let increase = c.candidate_error_rate - c.stable_error_rate;
        let breach = if increase > self.config.max_error_rate_increase {
            Some(format!(
                "error rate {:.1}% is {:.1} points above the stable's {:.1}% (limit {:.1})",
                c.candidate_error_rate * 100.0,
                increase * 100.0,
                c.stable_error_rate * 100.0,
                self.config.max_error_rate_increase * 100.0
            ))
        } else {
            match (c.candidate_p99_us, c.stable_p99_us) {
                // Below a millisecond both are noise: judge latency above it.
                (Some(candidate), Some(stable)) if candidate > 1000.0 && candidate > stable * self.config.max_p99_ratio => Some(
                    format!("p99 {:.2} ms is over {}× the stable's {:.2} ms", candidate / 1000.0, self.config.max_p99_ratio, stable / 1000.0),
                ),
                _ => None,
            }
        };
        if let Some(reason) = breach {
            return self.decide(CanaryState::RolledBack, reason).then_some(CanaryState::RolledBack);
        }
        if self.config.auto_promote && c.candidate_calls >= self.config.promote_after {
            let reason = format!("{} calls within the thresholds", c.candidate_calls);
            return self.decide(CanaryState::Promoted, reason).then_some(CanaryState::Promoted);
        }
        None
    }

    /// End the canary as `state`, once; true if this call ended it.
    pub fn decide(&self, state: CanaryState, reason: String) -> bool {
        let to = if state == CanaryState::Promoted { 1 } else { 2 };
        if self.state.compare_exchange(0, to, Ordering::AcqRel, Ordering::Acquire).is_err() {
            return false;
        }
        let _ = self.reason.set(reason);
        self.decided.notify_one();
        true
    }

    /// The figures of the event and the status.
    pub fn figures(&self) -> Value {
        let c = self.compare();
        let mut stable = figures(&self.stable);
        stable.insert("calls_since_start".into(), json!(c.stable_calls));
        stable.insert("error_rate".into(), json!(c.stable_error_rate));
        let mut candidate = figures(&self.candidate);
        candidate.insert("error_rate".into(), json!(c.candidate_error_rate));
        json!({ "stable": stable, "candidate": candidate })
    }

    /// `GET /api/plugins/{name}/canary`.
    pub fn status(&self) -> Value {
        let figures = self.figures();
        json!({
            "plugin": self.stable.name(),
            "weight": self.config.weight,
            "sticky": self.config.sticky.map(Sticky::as_str),
            "stable": figures["stable"],
            "candidate": figures["candidate"],
            "thresholds": self.config.thresholds(),
            "state": self.state().as_str(),
            "reason": self.reason(),
        })
    }
}
