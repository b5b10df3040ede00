//! What the registry knows about a plugin's versions beyond the serving
//! one: per-version call figures (kept without a lock per call), the
//! retained history a rollback picks from, and how a version is named by
//! an operator (a version string or a content-hash prefix).
//!
//! A version's figures are cumulative over its life. A [`Histogram`] is a
//! fixed array of atomic buckets (four per power of two of microseconds),
//! so recording a call is two relaxed atomic adds; percentiles are read
//! from the buckets, to within a bucket's width (19%). Errors by code keep
//! the first [`MAX_CODES`] distinct codes by name and count the rest as
//! `OTHER`.

use crate::plugins::runtime::PluginVersion;
use serde_json::{json, Map, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// Buckets per power of two.
const SUB_BUCKETS: usize = 4;
/// Powers of two of microseconds covered: up to ~2^28 µs (4.5 minutes).
const OCTAVES: usize = 28;
const BUCKETS: usize = OCTAVES * SUB_BUCKETS + 1;

/// Call latencies, in microseconds, in logarithmic buckets.
#[derive(Debug)]
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS],
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram { buckets: std::array::from_fn(|_| AtomicU64::new(0)) }
    }
}

/// The bucket of `micros`: 0 for under 1 µs, then four per octave.
fn bucket_of(micros: u64) -> usize {
    if micros == 0 {
        return 0;
    }
    let octave = 63 - micros.leading_zeros() as usize;
    // The two bits below the leading one pick the quarter.
    let quarter = if octave >= 2 { ((micros >> (octave - 2)) & 0b11) as usize } else { (micros << (2 - octave) & 0b11) as usize };
    (1 + octave * SUB_BUCKETS + quarter).min(BUCKETS - 1)
}

/// The upper bound of bucket `index`, in microseconds.
fn bucket_bound(index: usize) -> f64 {
    if index == 0 {
        return 1.0;
    }
    let (octave, quarter) = ((index - 1) / SUB_BUCKETS, (index - 1) % SUB_BUCKETS);
    (1u64 << octave) as f64 * (1.0 + (quarter + 1) as f64 / SUB_BUCKETS as f64)
}

impl Histogram {
    pub fn record(&self, took: Duration) {
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.buckets[bucket_of(micros)].fetch_add(1, Ordering::Relaxed);
    }

    /// The bucket counts now.
    pub fn counts(&self) -> Vec<u64> {
        self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).collect()
    }

    /// The `q` quantile of `counts` (a [`counts`](Self::counts), or the
    /// difference of two) in microseconds, if any call was recorded.
    pub fn quantile_of(counts: &[u64], q: f64) -> Option<f64> {
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = ((total as f64 * q).ceil() as u64).max(1);
        let mut seen = 0;
        for (index, n) in counts.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Some(bucket_bound(index));
            }
        }
        Some(bucket_bound(counts.len() - 1))
    }

    /// The median and 99th percentile in microseconds, if there were calls.
    pub fn p50_p99(&self) -> Option<(u32, u32)> {
        let counts = self.counts();
        let at = |q| Self::quantile_of(&counts, q).map(|us| us.min(u32::MAX as f64) as u32);
        Some((at(0.50)?, at(0.99)?))
    }
}

/// Distinct error codes counted by name per version.
pub const MAX_CODES: usize = 16;

/// Errors by code, without a lock: each slot's code is set once.
#[derive(Debug, Default)]
pub struct CodeCounts {
    slots: [(OnceLock<Box<str>>, AtomicU64); MAX_CODES],
    other: AtomicU64,
}

impl CodeCounts {
    pub fn record(&self, code: &str) {
        for (name, count) in &self.slots {
            let name = match name.get() {
                Some(name) => name,
                // The first free slot: take it, unless another call just did.
                None => name.get_or_init(|| code.into()),
            };
            if &**name == code {
                count.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
        self.other.fetch_add(1, Ordering::Relaxed);
    }

    /// Every code seen and its count.
    pub fn counts(&self) -> Vec<(String, u64)> {
        let mut list: Vec<(String, u64)> =
            self.slots.iter().filter_map(|(name, count)| Some((name.get()?.to_string(), count.load(Ordering::Relaxed)))).collect();
        let other = self.other.load(Ordering::Relaxed);
        if other > 0 {
            list.push(("OTHER".into(), other));
        }
        list
    }

    pub fn to_json(&self) -> Value {
        Value::Object(self.counts().into_iter().map(|(code, n)| (code, json!(n))).collect::<Map<_, _>>())
    }
}

/// What a version is doing now, as the versions list says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Serving,
    Canary,
    Shadow,
    Retained,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Serving => "serving",
            Role::Canary => "canary",
            Role::Shadow => "shadow",
            Role::Retained => "retained",
        }
    }
}

/// How many retained versions a plugin keeps, by default.
pub const DEFAULT_HISTORY: usize = 5;

/// A version string, or a content-hash prefix of at least
/// [`MIN_HASH_PREFIX`] hex digits.
pub const MIN_HASH_PREFIX: usize = 8;

/// Whether `reference` names `version`.
pub fn matches(version: &PluginVersion, reference: &str) -> bool {
    version.version() == reference
        || (reference.len() >= MIN_HASH_PREFIX
            && reference.chars().all(|c| c.is_ascii_hexdigit())
            && version.hash.starts_with(&reference.to_ascii_lowercase()))
}

/// One version's figures for the API: calls, errors (by code), p50 and p99.
pub fn figures(version: &PluginVersion) -> Map<String, Value> {
    let stats = &version.stats;
    let latency = stats.latencies.p50_p99();
    let mut fields = Map::new();
    fields.insert("version".into(), json!(version.version()));
    fields.insert("hash".into(), json!(version.hash));
    fields.insert("calls".into(), json!(stats.calls.load(Ordering::Relaxed)));
    fields.insert("errors".into(), json!(stats.errors()));
    fields.insert("errors_by_code".into(), stats.errors_by_code.to_json());
    fields.insert("p50_ms".into(), json!(latency.map(|l| f64::from(l.0) / 1000.0)));
    fields.insert("p99_ms".into(), json!(latency.map(|l| f64::from(l.1) / 1000.0)));
    fields
}

/// `switchyard_plugin_version_errors_total{plugin, version, code}` for
/// `versions`, in the OpenMetrics text format: read from each version's
/// counters when `/metrics` is scraped, so a call pays nothing for it.
/// Builds sharing a version string are summed.
pub fn errors_metric<'a>(versions: impl IntoIterator<Item = &'a Arc<PluginVersion>>) -> String {
    let mut counts: std::collections::BTreeMap<(String, String, String), u64> = Default::default();
    for version in versions {
        for (code, n) in version.stats.errors_by_code.counts() {
            *counts.entry((version.name().to_owned(), version.version().to_owned(), code)).or_default() += n;
        }
    }
    let escape = |v: &str| v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
    let mut text = String::from(
        "# TYPE switchyard_plugin_version_errors counter\n\
         # HELP switchyard_plugin_version_errors Plugin calls that did not end in a reply, by plugin version and error code.\n",
    );
    for ((plugin, version, code), n) in counts {
        text.push_str(&format!(
            "switchyard_plugin_version_errors_total{{plugin=\"{}\",version=\"{}\",code=\"{}\"}} {n}\n",
            escape(&plugin),
            escape(&version),
            escape(&code)
        ));
    }
    text
}

/// A plugin's retained versions, newest first, without the serving one.
#[derive(Debug, Default)]
pub struct Retained {
    versions: Vec<Arc<PluginVersion>>,
}

impl Retained {
    /// Keep `old` (just replaced) as the newest, dropping any other copy
    /// of its content and the oldest past `limit`.
    pub fn push(&mut self, old: Arc<PluginVersion>, limit: usize) {
        self.versions.retain(|v| v.hash != old.hash);
        old.release_instances();
        self.versions.insert(0, old);
        self.versions.truncate(limit);
    }

    /// Forget a content hash (it is serving again).
    pub fn forget(&mut self, hash: &str) {
        self.versions.retain(|v| v.hash != hash);
    }

    pub fn list(&self) -> &[Arc<PluginVersion>] {
        &self.versions
    }

    /// The version `reference` names, or the newest when there is none.
    pub fn find(&self, reference: Option<&str>) -> Result<&Arc<PluginVersion>, Lookup> {
        let Some(reference) = reference else {
            return self.versions.first().ok_or(Lookup::NoneRetained);
        };
        let mut found = self.versions.iter().filter(|v| matches(v, reference));
        match (found.next(), found.next()) {
            (Some(version), None) => Ok(version),
            (Some(_), Some(_)) if self.versions.iter().any(|v| v.version() == reference) => {
                // Several builds of one version string: the newest.
                Ok(self.versions.iter().find(|v| v.version() == reference).expect("checked"))
            }
            (Some(_), Some(_)) => Err(Lookup::Ambiguous),
            (None, _) => Err(Lookup::NoMatch),
        }
    }
}

/// Why a version ref found nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    NoneRetained,
    NoMatch,
    Ambiguous,
}

impl Lookup {
    /// What went wrong looking `reference` up.
    pub fn describe(self, reference: Option<&str>) -> String {
        let reference = reference.unwrap_or_default();
        match self {
            Lookup::NoneRetained => "no previous version is retained".to_owned(),
            Lookup::NoMatch => {
                format!("no retained version matches {reference:?} (a version string or at least {MIN_HASH_PREFIX} hex digits of a hash)")
            }
            Lookup::Ambiguous => format!("{reference:?} matches more than one retained version; give more of the hash"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_grow_by_quarters_of_an_octave_and_bound_their_values() {
        for micros in [1u64, 2, 3, 5, 7, 100, 999, 1000, 1001, 123_456, 10_000_000] {
            let index = bucket_of(micros);
            assert!(bucket_bound(index) >= micros as f64, "{micros} under its bound");
            assert!(index == 0 || bucket_bound(index - 1) <= micros as f64 + 1.0, "{micros} above the previous bound");
        }
        assert!(bucket_of(u64::MAX) == BUCKETS - 1);
    }

    #[test]
    fn percentiles_come_from_the_buckets_within_a_bucket() {
        let histogram = Histogram::default();
        for _ in 0..98 {
            histogram.record(Duration::from_micros(100));
        }
        histogram.record(Duration::from_millis(50));
        histogram.record(Duration::from_millis(50));
        let (p50, p99) = histogram.p50_p99().unwrap();
        assert!((100..=125).contains(&p50), "{p50}");
        assert!((50_000..=62_500).contains(&p99), "{p99}");
        assert_eq!(Histogram::default().p50_p99(), None);
    }

    #[test]
    fn codes_are_counted_by_name_then_as_other() {
        let codes = CodeCounts::default();
        codes.record("PLUGIN_FAILED");
        codes.record("PLUGIN_FAILED");
        for n in 0..MAX_CODES + 3 {
            codes.record(&format!("C{n}"));
        }
        let counts = codes.counts();
        assert_eq!(counts[0], ("PLUGIN_FAILED".into(), 2));
        assert_eq!(counts.len(), MAX_CODES + 1);
        assert_eq!(counts.last().unwrap(), &("OTHER".into(), 4));
    }
}
