//! `sysmon`: the monitoring feed. Every `interval_ms` (setting, default
//! 5000) it samples the host's figures (the `system` capability, granted by
//! config) and publishes a `performance` event; a figure crossing its
//! threshold publishes `alert.<metric>` with `status: "active"`, and the
//! same `alert_id` with `status: "resolved"` once it falls back. It answers
//! `request_data` from the samples it keeps, and `sysmon.thresholds`
//! changes thresholds at run time.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use switchyard_sdk::{events, export_plugin, json, kv, settings, system, Failure, Manifest, Message, Plugin, Value};

const TICK_MS: u32 = 250;
/// Samples kept for `request_data`.
const HISTORY: usize = 720;
const METRICS: [(&str, &str, f64); 3] = [("cpu", "cpu_percent", 90.0), ("memory", "memory_percent", 90.0), ("disk", "disk_percent", 95.0)];

#[derive(Serialize, Deserialize, Clone)]
struct Sample { at_ms: u64, values: BTreeMap<String, f64> }

#[derive(Serialize, Deserialize)]
struct Alert { alert_id: String, since: String }

#[derive(Deserialize)]
struct DataRequest { metrics: Vec<String>, #[serde(default = "ten")] history_minutes: u64 }

fn ten() -> u64 { 10 }

struct Sysmon;

impl Plugin for Sysmon {
    fn manifest() -> Manifest {
        Manifest::new("sysmon", env!("CARGO_PKG_VERSION")).description("System performance and alerts feed")
            .claim("request_data").claim("sysmon.thresholds").tick_every(TICK_MS)
    }

    fn handle(msg: Message) -> Result<Value, Failure> {
        if msg.type_ == "sysmon.thresholds" {
            let mut current = thresholds()?;
            let changes: BTreeMap<String, f64> = msg.data()?;
            current.extend(changes.into_iter().filter(|(k, _)| METRICS.iter().any(|(_, key, _)| key == k)));
            kv::set("thresholds", &current)?;
            return Ok(json!({ "thresholds": current }));
        }
        let DataRequest { metrics, history_minutes } = msg.data()?;
        let since = now_ms().saturating_sub(history_minutes * 60_000);
        let history: Vec<Sample> = kv::get("history")?.unwrap_or_default();
        let series: BTreeMap<&str, Vec<Value>> = metrics.iter().map(|m| (m.as_str(), history.iter()
            .filter(|s| s.at_ms >= since)
            .filter_map(|s| s.values.get(m).map(|v| json!({ "timestamp": iso(s.at_ms), "value": v }))).collect())).collect();
        Ok(json!({ "history_minutes": history_minutes, "metrics": series }))
    }

    fn tick() -> Result<(), Failure> {
        let now = now_ms();
        let interval: u64 = settings::get_or("interval_ms", 5_000);
        if now.saturating_sub(kv::get("last_ms")?.unwrap_or(0)) + u64::from(TICK_MS) / 2 < interval {
            return Ok(());
        }
        kv::set("last_ms", &now)?;
        let f = system::figures()?;
        let values = BTreeMap::from([
            ("cpu_percent".to_owned(), f64::from(f.cpu_percent)), ("memory_percent".to_owned(), f64::from(f.memory_percent)),
            ("disk_percent".to_owned(), f64::from(f.disk_percent)), ("network_bytes_sent".to_owned(), f.net_bytes_sent as f64),
            ("network_bytes_received".to_owned(), f.net_bytes_received as f64), ("process_count".to_owned(), f64::from(f.process_count)),
        ]);
        let mut perf: Value = values.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
        perf["timestamp"] = json!(iso(now));
        events::publish("performance", &perf)?;
        let limits = thresholds()?;
        for (metric, key, _) in METRICS {
            check(metric, values[key], limits[key], now)?;
        }
        let mut history: Vec<Sample> = kv::get("history")?.unwrap_or_default();
        history.push(Sample { at_ms: now, values });
        let excess = history.len().saturating_sub(HISTORY);
        history.drain(..excess);
        kv::set("history", &history)
    }
}

fn check(metric: &str, value: f64, threshold: f64, now: u64) -> Result<(), Failure> {
    let key = format!("alert:{metric}");
    let topic = format!("alert.{metric}");
    match (kv::get::<Alert>(&key)?, value >= threshold) {
        (None, true) => {
            let alert = Alert { alert_id: format!("{metric}-{now}"), since: iso(now) };
            let level = if value >= (threshold + 100.0) / 2.0 { "critical" } else { "warning" };
            events::publish(&topic, &json!({ "alert_id": alert.alert_id, "type": metric, "level": level,
                "title": format!("High {metric} usage"), "message": format!("{metric} at {value:.1}% (threshold {threshold:.1}%)"),
                "value": value, "threshold": threshold, "status": "active", "timestamp": alert.since }))?;
            kv::set(&key, &alert)
        }
        (Some(alert), false) => {
            events::publish(&topic, &json!({ "alert_id": alert.alert_id, "type": metric, "status": "resolved",
                "value": value, "threshold": threshold, "since": alert.since, "resolved_at": iso(now) }))?;
            kv::delete(&key)
        }
        _ => Ok(()),
    }
}

fn thresholds() -> Result<BTreeMap<String, f64>, Failure> {
    Ok(kv::get("thresholds")?.unwrap_or_else(|| METRICS.iter().map(|(_, key, default)| (key.to_string(), settings::get_or(key, *default))).collect()))
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

fn iso(ms: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

export_plugin!(Sysmon);
