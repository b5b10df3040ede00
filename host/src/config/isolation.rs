//! `[plugins.breaker]` and `plugins.cpu_share`: how one misbehaving plugin
//! is kept from hurting the others.
//!
//! Plain data, read from the configuration. `[plugins.breaker]` holds the
//! defaults and `[plugins.breaker.NAME]` overrides them for the plugin with
//! that manifest name (as `[plugins.settings.NAME]` and grants do);
//! `plugins.cpu_shares.NAME` overrides `plugins.cpu_share`. The runtime
//! applies them ([`crate::plugins::breaker`], [`crate::plugins::share`]).

use serde::Deserialize;
use std::collections::HashMap;
use std::time::Duration;

/// `[plugins.breaker]`: the circuit breaker's defaults, and per plugin
/// overrides as sub-tables.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct BreakerConfig {
    /// `false` turns every breaker off (a plugin's own `enabled` wins).
    pub enabled: bool,
    /// Faults (timeouts or traps) within `window_ms` that open the breaker.
    pub failures: u32,
    pub window_ms: u64,
    /// How long an open breaker fails calls fast before one probe call.
    pub cooldown_ms: u64,
    /// `[plugins.breaker.NAME]`, by manifest name.
    #[serde(flatten)]
    pub plugins: HashMap<String, BreakerOverride>,
}

/// `[plugins.breaker.NAME]`: any field left out takes the default's value.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BreakerOverride {
    pub enabled: Option<bool>,
    pub failures: Option<u32>,
    pub window_ms: Option<u64>,
    pub cooldown_ms: Option<u64>,
}

/// One plugin's breaker, resolved from the defaults and its override.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerPolicy {
    pub failures: u32,
    pub window: Duration,
    pub cooldown: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig { enabled: true, failures: 5, window_ms: 10_000, cooldown_ms: 5_000, plugins: HashMap::new() }
    }
}

impl BreakerConfig {
    /// The policy of the plugin named `name`; `None` if its breaker is off.
    pub fn policy_for(&self, name: &str) -> Option<BreakerPolicy> {
        let over = self.plugins.get(name).cloned().unwrap_or_default();
        over.enabled.unwrap_or(self.enabled).then(|| BreakerPolicy {
            failures: over.failures.unwrap_or(self.failures),
            window: Duration::from_millis(over.window_ms.unwrap_or(self.window_ms)),
            cooldown: Duration::from_millis(over.cooldown_ms.unwrap_or(self.cooldown_ms)),
        })
    }

    /// Zero turns nothing off here: a breaker is switched off with
    /// `enabled = false`, said explicitly.
    pub fn validate(&self) -> anyhow::Result<()> {
        let check = |what: &str, failures: u32, window_ms: u64, cooldown_ms: u64| {
            anyhow::ensure!(failures > 0, "{what}.failures must be at least 1 (enabled = false turns the breaker off)");
            anyhow::ensure!(window_ms > 0, "{what}.window_ms must be positive");
            anyhow::ensure!(cooldown_ms > 0, "{what}.cooldown_ms must be positive");
            Ok(())
        };
        check("plugins.breaker", self.failures, self.window_ms, self.cooldown_ms)?;
        for (name, over) in &self.plugins {
            check(
                &format!("plugins.breaker.{name}"),
                over.failures.unwrap_or(self.failures),
                over.window_ms.unwrap_or(self.window_ms),
                over.cooldown_ms.unwrap_or(self.cooldown_ms),
            )?;
        }
        Ok(())
    }
}

/// `plugins.cpu_share` and `[plugins.cpu_shares]`: the fraction of the
/// async worker threads one plugin's calls may occupy at once.
#[derive(Debug, Clone, PartialEq)]
pub struct CpuShareConfig {
    pub default: f64,
    pub plugins: HashMap<String, f64>,
}

impl Default for CpuShareConfig {
    fn default() -> Self {
        CpuShareConfig { default: DEFAULT_CPU_SHARE, plugins: HashMap::new() }
    }
}

/// Half the worker threads: on two cores, one plugin runs one call at a
/// time while the other thread serves everyone else.
pub const DEFAULT_CPU_SHARE: f64 = 0.5;

impl CpuShareConfig {
    pub fn share_of(&self, name: &str) -> f64 {
        self.plugins.get(name).copied().unwrap_or(self.default)
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        let ok = |share: f64| share > 0.0 && share <= 1.0;
        anyhow::ensure!(ok(self.default), "plugins.cpu_share must be in (0, 1]");
        for (name, share) in &self.plugins {
            anyhow::ensure!(ok(*share), "plugins.cpu_shares.{name} must be in (0, 1]");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Config;

    #[test]
    fn defaults_and_per_plugin_overrides() {
        let config = Config::from_toml(
            r#"
            [plugins]
            cpu_share = 0.25
            [plugins.cpu_shares]
            clock = 1.0
            [plugins.breaker]
            failures = 3
            cooldown_ms = 1000
            [plugins.breaker.misbehave]
            failures = 1
            [plugins.breaker.sysmon]
            enabled = false
            "#,
        )
        .unwrap();
        config.validate().unwrap();
        let b = &config.plugins.breaker;
        let policy = |failures, cooldown| Some(BreakerPolicy { failures, window: Duration::from_secs(10), cooldown: Duration::from_millis(cooldown) });
        assert_eq!(b.policy_for("echo"), policy(3, 1000));
        assert_eq!(b.policy_for("misbehave"), policy(1, 1000));
        assert_eq!(b.policy_for("sysmon"), None);
        let cpu = config.plugins.cpu();
        assert_eq!((cpu.share_of("echo"), cpu.share_of("clock")), (0.25, 1.0));
    }

    #[test]
    fn values_that_would_switch_a_breaker_off_are_refused() {
        for toml in [
            "[plugins.breaker]\nfailures = 0",
            "[plugins.breaker.echo]\ncooldown_ms = 0",
            "[plugins]\ncpu_share = 0",
            "[plugins.cpu_shares]\necho = 1.5",
            "[plugins]\nshadow_cpu_budget = 0",
            "[plugins]\nshadow_cpu_budget = 1.01",
        ] {
            let config = Config::from_toml(toml).unwrap();
            assert!(config.validate().is_err(), "{toml}");
        }
        let err = Config::from_toml("[plugins.breaker.echo]\nfailure = 3").unwrap_err().to_string();
        assert!(err.contains("unknown field"), "{err}");
        assert!(Config::from_toml("[plugins.breaker]\nfailures = 3\nwindow_ms = 1").unwrap().plugins.breaker.plugins.is_empty());
    }
}
