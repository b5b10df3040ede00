//! The limits an operator may change while the host runs (`PUT
//! /api/config`), and the token buckets that apply the rate limits.
//!
//! Each message reads the current [`Tunables`] snapshot; a change applies
//! to the next message, and a connection's bucket is refilled under the new
//! rate the first time it is used after the change.
//!
//! A rate limit is off only when asked by name: the configuration file's
//! rate of 0, or `"off"` through the API, which refuses a 0 (a typo there
//! would silently open the host). `GET /api/config` shows an off rate as
//! `"off"`, so what it shows can be sent back as it is.

use crate::config::Config;
use crate::wire::{ErrorCode, Failure};
use arc_swap::ArcSwap;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};
use serde::{Deserialize, Serialize};
use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use crate::sync::lock;

/// The runtime-adjustable limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tunables {
    pub max_message_bytes: usize,
    /// 0 is off (`"off"` in JSON).
    #[serde(with = "rate")]
    pub messages_per_second: u32,
    pub message_burst: u32,
    /// 0 is off (`"off"` in JSON).
    #[serde(with = "rate")]
    pub connections_per_second_per_ip: u32,
    pub connection_burst_per_ip: u32,
    pub max_connections: usize,
    pub max_connections_per_client: usize,
    pub deadline_ms: u64,
}

impl Tunables {
    pub fn from_config(config: &Config) -> Tunables {
        let l = &config.limits;
        // A burst of 0 in the file means "as large as the rate".
        let burst = |rate: u32, burst: u32| if burst == 0 { rate } else { burst };
        Tunables {
            max_message_bytes: l.max_message_bytes,
            messages_per_second: l.messages_per_second,
            message_burst: burst(l.messages_per_second, l.message_burst),
            connections_per_second_per_ip: l.connections_per_second_per_ip,
            connection_burst_per_ip: burst(l.connections_per_second_per_ip, l.connection_burst_per_ip),
            max_connections: l.max_connections,
            max_connections_per_client: l.max_connections_per_client,
            deadline_ms: config.plugins.deadline_ms,
        }
    }

    fn check(&self, max_frame_bytes: usize) -> Result<(), String> {
        if self.max_message_bytes == 0 || self.max_message_bytes > max_frame_bytes {
            return Err(format!("max_message_bytes must be 1..={max_frame_bytes} (limits.max_frame_bytes)"));
        }
        if self.deadline_ms == 0 || self.deadline_ms > 600_000 {
            return Err("deadline_ms must be 1..=600000".into());
        }
        if self.max_connections == 0 || self.max_connections_per_client == 0 {
            return Err("max_connections and max_connections_per_client must be positive".into());
        }
        // A burst matters only while its rate is on; then 0 would refuse everything.
        if self.messages_per_second > 0 && self.message_burst == 0 {
            return Err("message_burst must be 1..=4294967295 while messages_per_second is on".into());
        }
        if self.connections_per_second_per_ip > 0 && self.connection_burst_per_ip == 0 {
            return Err("connection_burst_per_ip must be 1..=4294967295 while connections_per_second_per_ip is on".into());
        }
        Ok(())
    }

    pub fn deadline(&self) -> Duration {
        Duration::from_millis(self.deadline_ms)
    }
}

/// A rate in JSON: a positive number, or `"off"` (0 inside). A 0 is
/// refused, so that no typo turns a limit off.
mod rate {
    use serde::de::{self, Deserializer, Unexpected, Visitor};
    use serde::Serializer;

    const OFF: &str = "off";

    pub fn serialize<S: Serializer>(rate: &u32, serializer: S) -> Result<S::Ok, S::Error> {
        match rate {
            0 => serializer.serialize_str(OFF),
            rate => serializer.serialize_u32(*rate),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u32, D::Error> {
        struct Rate;
        impl Visitor<'_> for Rate {
            type Value = u32;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a rate of 1..=4294967295 per second, or \"off\" to turn the limit off (0 is refused)")
            }

            fn visit_u64<E: de::Error>(self, n: u64) -> Result<u32, E> {
                match u32::try_from(n) {
                    Ok(rate) if rate > 0 => Ok(rate),
                    _ => Err(E::invalid_value(Unexpected::Unsigned(n), &self)),
                }
            }

            fn visit_i64<E: de::Error>(self, n: i64) -> Result<u32, E> {
                u64::try_from(n).map_err(|_| E::invalid_value(Unexpected::Signed(n), &self)).and_then(|n| self.visit_u64(n))
            }

            fn visit_str<E: de::Error>(self, text: &str) -> Result<u32, E> {
                if text == OFF {
                    Ok(0)
                } else {
                    Err(E::invalid_value(Unexpected::Str(text), &self))
                }
            }
        }
        deserializer.deserialize_any(Rate)
    }
}

/// A bucket of `rate` per second holding up to `burst`; `None` when off.
fn quota(rate: u32, burst: u32) -> Option<Quota> {
    let rate = NonZeroU32::new(rate)?;
    Some(Quota::per_second(rate).allow_burst(NonZeroU32::new(burst).unwrap_or(rate)))
}

fn keyed<K: Hash + Eq + Clone>(rate: u32, burst: u32) -> Option<DefaultKeyedRateLimiter<K>> {
    quota(rate, burst).map(RateLimiter::keyed)
}

fn wait(limiter_says: governor::NotUntil<<DefaultClock as Clock>::Instant>) -> Duration {
    limiter_says.wait_time_from(DefaultClock::default().now())
}

/// The current limits and the host-wide keyed buckets.
pub struct LiveLimits {
    current: ArcSwap<Tunables>,
    max_frame_bytes: usize,
    /// New connections per source address.
    connects: ArcSwap<Option<DefaultKeyedRateLimiter<IpAddr>>>,
    /// HTTP messages per caller (key name, else source address).
    http_messages: ArcSwap<Option<DefaultKeyedRateLimiter<String>>>,
    updating: Mutex<()>,
}

impl LiveLimits {
    pub fn new(tunables: Tunables, max_frame_bytes: usize) -> LiveLimits {
        LiveLimits {
            connects: ArcSwap::from_pointee(keyed(tunables.connections_per_second_per_ip, tunables.connection_burst_per_ip)),
            http_messages: ArcSwap::from_pointee(keyed(tunables.messages_per_second, tunables.message_burst)),
            current: ArcSwap::from_pointee(tunables),
            max_frame_bytes,
            updating: Mutex::new(()),
        }
    }

    pub fn get(&self) -> Arc<Tunables> {
        self.current.load_full()
    }

    /// Apply the fields of `patch` (a JSON object of [`Tunables`] fields);
    /// returns the old and new limits. Nothing changes if any field is bad.
    pub fn update(&self, patch: &serde_json::Value) -> Result<(Arc<Tunables>, Arc<Tunables>), Failure> {
        let invalid = |why: String| Failure::new(ErrorCode::InvalidMessage, why);
        let patch = patch.as_object().ok_or_else(|| invalid("the body must be a JSON object of limits".into()))?;
        let _one_at_a_time = lock(&self.updating);
        let old = self.get();
        let mut merged = serde_json::to_value(&*old).map_err(|e| invalid(e.to_string()))?;
        for (field, value) in patch {
            merged[field] = value.clone();
        }
        let new: Tunables = serde_json::from_value(merged).map_err(|e| invalid(format!("invalid limits: {e}")))?;
        new.check(self.max_frame_bytes).map_err(invalid)?;
        if (new.connections_per_second_per_ip, new.connection_burst_per_ip) != (old.connections_per_second_per_ip, old.connection_burst_per_ip) {
            self.connects.store(Arc::new(keyed(new.connections_per_second_per_ip, new.connection_burst_per_ip)));
        }
        if (new.messages_per_second, new.message_burst) != (old.messages_per_second, old.message_burst) {
            self.http_messages.store(Arc::new(keyed(new.messages_per_second, new.message_burst)));
        }
        let new = Arc::new(new);
        self.current.store(Arc::clone(&new));
        Ok((old, new))
    }

    /// Whether `ip` may open another connection now; if not, how long to wait.
    pub fn admit_connection(&self, ip: IpAddr) -> Result<(), Duration> {
        match &**self.connects.load() {
            Some(limiter) => limiter.check_key(&ip).map_err(wait),
            None => Ok(()),
        }
    }

    /// Whether the HTTP caller `who` may send another message now.
    pub fn admit_http_message(&self, who: &str) -> Result<(), Failure> {
        match &**self.http_messages.load() {
            Some(limiter) => limiter.check_key(&who.to_owned()).map_err(|n| Failure::rate_limited("message", wait(n))),
            None => Ok(()),
        }
    }

    /// A fresh per-connection message bucket.
    pub fn message_bucket(&self) -> MessageBucket {
        MessageBucket::new(self.get())
    }

    /// Drop the state of keys whose buckets are full again, so the keyed
    /// limiters stay small. Called periodically.
    pub fn forget_idle(&self) {
        if let Some(limiter) = &**self.connects.load() {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
        if let Some(limiter) = &**self.http_messages.load() {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }
}

/// One connection's token bucket for messages.
pub struct MessageBucket {
    basis: Arc<Tunables>,
    limiter: Option<DefaultDirectRateLimiter>,
}

impl MessageBucket {
    fn new(basis: Arc<Tunables>) -> MessageBucket {
        let limiter = quota(basis.messages_per_second, basis.message_burst).map(RateLimiter::direct);
        MessageBucket { basis, limiter }
    }

    /// Take a token, or `RATE_LIMIT_EXCEEDED` with the time until the next.
    pub fn admit(&mut self, live: &LiveLimits) -> Result<(), Failure> {
        let current = live.current.load();
        if !Arc::ptr_eq(&current, &self.basis) {
            *self = MessageBucket::new(Arc::clone(&current));
        }
        match &self.limiter {
            Some(limiter) => limiter.check().map_err(|n| Failure::rate_limited("message", wait(n))),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_refuses_past_the_burst_and_follows_updates() {
        let mut tunables = Tunables::from_config(&Config::default());
        tunables.messages_per_second = 2;
        tunables.message_burst = 3;
        let live = LiveLimits::new(tunables, 16 << 20);
        let mut bucket = live.message_bucket();
        for _ in 0..3 {
            bucket.admit(&live).unwrap();
        }
        let refused = bucket.admit(&live).unwrap_err();
        assert!(refused.is(ErrorCode::RateLimitExceeded));
        let retry = refused.retry_after_ms.unwrap();
        assert!((1..=500).contains(&retry), "at 2/s the next token is at most 500 ms away: {retry}");

        assert!(live.update(&serde_json::json!({"messages_per_second": 0})).is_err(), "0 is not how a limit is turned off");
        assert!(live.update(&serde_json::json!({"message_burst": 0})).is_err());
        let (old, new) = live.update(&serde_json::json!({"messages_per_second": "off"})).unwrap();
        assert_eq!((old.messages_per_second, new.messages_per_second), (2, 0));
        assert_eq!(serde_json::to_value(&*new).unwrap()["messages_per_second"], "off");
        for _ in 0..100 {
            bucket.admit(&live).unwrap();
        }
        assert!(live.update(&serde_json::json!({"max_message_bytes": 0})).is_err());
        assert!(live.update(&serde_json::json!({"no_such_limit": 1})).is_err());
        assert!(live.update(&serde_json::json!({"messages_per_second": -1})).is_err());
        assert_eq!(live.get().messages_per_second, 0, "a bad update changes nothing");
        live.update(&serde_json::to_value(&*live.get()).unwrap()).expect("what GET shows can be PUT back");
    }
}
