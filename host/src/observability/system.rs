//! Host system figures read with `sysinfo`, for the `system` capability.
//!
//! Refreshing every process and disk takes milliseconds, too long to do
//! inside a plugin call, so [`HostSystem::sample_every`] refreshes on a
//! blocking thread on a timer, and a call only reads the last sample. CPU
//! usage is measured between two refreshes, so the first sample reads 0.
//! Sampling pauses while no plugin has asked for figures for a minute.

use crate::services::{Figures, SystemFigures};
use crate::sync::lock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use sysinfo::{Disks, Networks, ProcessRefreshKind, ProcessesToUpdate, System};
use tokio_util::sync::CancellationToken;

/// How many sampling periods without a reader before sampling pauses.
const IDLE_PERIODS: u32 = 60;

pub struct HostSystem {
    probes: Arc<Mutex<(System, Networks, Disks)>>,
    latest: Mutex<Figures>,
    /// Set by every read; the sampler clears it.
    wanted: AtomicBool,
}

impl Default for HostSystem {
    fn default() -> Self {
        HostSystem {
            probes: Arc::new(Mutex::new((System::new(), Networks::new_with_refreshed_list(), Disks::new_with_refreshed_list()))),
            latest: Mutex::default(),
            wanted: AtomicBool::new(true),
        }
    }
}

impl HostSystem {
    /// Refresh the figures every `period` until `stop`.
    pub async fn sample_every(self: Arc<Self>, period: Duration, stop: CancellationToken) {
        let mut ticks = tokio::time::interval(period);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut unread = 0;
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = ticks.tick() => {}
            }
            unread = if self.wanted.swap(false, Ordering::Relaxed) { 0 } else { unread + 1 };
            if unread > IDLE_PERIODS {
                continue;
            }
            let probes = Arc::clone(&self.probes);
            match tokio::task::spawn_blocking(move || sample(&mut lock(&probes))).await {
                Ok(figures) => *lock(&self.latest) = figures,
                Err(e) => tracing::warn!("system sampling failed: {e}"),
            }
        }
    }
}

fn sample((system, networks, disks): &mut (System, Networks, Disks)) -> Figures {
    system.refresh_cpu_usage();
    system.refresh_memory();
    system.refresh_processes_specifics(ProcessesToUpdate::All, true, ProcessRefreshKind::nothing());
    networks.refresh(true);
    disks.refresh(true);
    let percent = |used: u64, total: u64| if total == 0 { 0.0 } else { (used as f64 * 100.0 / total as f64) as f32 };
    let (disk_total, disk_free) = disks.list().iter().fold((0, 0), |(t, f), d| (t + d.total_space(), f + d.available_space()));
    Figures {
        cpu_percent: system.global_cpu_usage(),
        memory_percent: percent(system.used_memory(), system.total_memory()),
        disk_percent: percent(disk_total - disk_free, disk_total),
        net_bytes_sent: networks.values().map(|n| n.total_transmitted()).sum(),
        net_bytes_received: networks.values().map(|n| n.total_received()).sum(),
        process_count: system.processes().len() as u32,
    }
}

impl SystemFigures for HostSystem {
    fn figures(&self) -> Figures {
        self.wanted.store(true, Ordering::Relaxed);
        *lock(&self.latest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_sampler_fills_in_what_calls_read() {
        let system = Arc::new(HostSystem::default());
        assert_eq!(system.figures(), Figures::default(), "nothing sampled yet");
        let stop = CancellationToken::new();
        let sampler = tokio::spawn(Arc::clone(&system).sample_every(Duration::from_millis(10), stop.clone()));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while system.figures().process_count == 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(system.figures().process_count > 0, "at least this process runs");
        assert!(system.figures().memory_percent > 0.0);
        stop.cancel();
        sampler.await.unwrap();
    }
}
