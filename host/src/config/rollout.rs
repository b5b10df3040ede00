//! `[plugins.rollout.NAME]`: how a canary of plugin NAME runs, and the
//! defaults of one started through the API (`plugins/rollout.rs` runs it);
//! `plugins.shadow_cpu_budget`, what a shadow's candidate may use
//! (`plugins/shadow.rs`).

use serde::Deserialize;

/// Which client identity keeps a client on one version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sticky {
    ClientId,
    DeviceId,
}

impl Sticky {
    pub fn parse(text: &str) -> Option<Sticky> {
        match text {
            "client_id" => Some(Sticky::ClientId),
            "device_id" => Some(Sticky::DeviceId),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Sticky::ClientId => "client_id",
            Sticky::DeviceId => "device_id",
        }
    }
}

/// `[plugins.rollout.NAME]`: how a canary of plugin NAME runs (and the
/// defaults of one started through the API).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RolloutConfig {
    /// Percent of the plugin's messages the candidate serves, 0-100.
    pub weight: u32,
    /// Keep each client on one version: `client_id` or `device_id`.
    pub sticky: Option<Sticky>,
    /// Roll back when the candidate's error rate exceeds the stable's by
    /// more than this (0.05 = five points).
    pub max_error_rate_increase: f64,
    /// Roll back when the candidate's p99 exceeds this × the stable's.
    pub max_p99_ratio: f64,
    /// Candidate calls before any threshold is judged.
    pub window: u64,
    /// Candidate calls without a breach before it is promoted.
    pub promote_after: u64,
    /// Promote automatically; if false, `promote` is manual.
    pub auto_promote: bool,
}

impl Default for RolloutConfig {
    fn default() -> Self {
        RolloutConfig {
            weight: 5,
            sticky: None,
            max_error_rate_increase: 0.05,
            max_p99_ratio: 3.0,
            window: 100,
            promote_after: 1000,
            auto_promote: true,
        }
    }
}

impl RolloutConfig {
    pub fn check(&self) -> Result<(), String> {
        if self.weight > 100 {
            return Err(format!("weight {} is over 100 (percent)", self.weight));
        }
        if self.window == 0 || self.promote_after < self.window {
            return Err("window must be positive and promote_after at least window".into());
        }
        if !(self.max_error_rate_increase >= 0.0 && self.max_p99_ratio >= 1.0) {
            return Err("max_error_rate_increase must be >= 0 and max_p99_ratio >= 1".into());
        }
        Ok(())
    }

    pub fn thresholds(&self) -> serde_json::Value {
        serde_json::json!({
            "max_error_rate_increase": self.max_error_rate_increase,
            "max_p99_ratio": self.max_p99_ratio,
            "window": self.window,
            "promote_after": self.promote_after,
            "auto_promote": self.auto_promote,
        })
    }
}

/// The share of one core a shadow's candidate may use unless told
/// otherwise (`plugins.shadow_cpu_budget`).
pub const DEFAULT_SHADOW_CPU_BUDGET: f64 = 0.1;

/// A shadow's CPU budget must be a share of one core, in (0, 1].
pub fn check_shadow_budget(budget: f64) -> Result<(), String> {
    if budget > 0.0 && budget <= 1.0 {
        Ok(())
    } else {
        Err(format!("the CPU budget {budget} is not a share of one core in (0, 1]"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rollout_config_is_checked() {
        assert!(RolloutConfig::default().check().is_ok());
        assert!(RolloutConfig { weight: 101, ..Default::default() }.check().is_err());
        assert!(RolloutConfig { window: 10, promote_after: 5, ..Default::default() }.check().is_err());
        assert!(RolloutConfig { max_p99_ratio: 0.5, ..Default::default() }.check().is_err());
    }
}
