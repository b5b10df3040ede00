//! Host system figures read with `sysinfo`, for the `system` capability.
//!
//! CPU usage is measured between two refreshes, so the first reading after
//! start is 0; callers sample periodically.

use crate::services::{Figures, SystemFigures};
use std::sync::Mutex;
use sysinfo::{Disks, Networks, ProcessRefreshKind, ProcessesToUpdate, System};

pub struct HostSystem {
    state: Mutex<(System, Networks, Disks)>,
}

impl Default for HostSystem {
    fn default() -> Self {
        HostSystem { state: Mutex::new((System::new(), Networks::new_with_refreshed_list(), Disks::new_with_refreshed_list())) }
    }
}

impl SystemFigures for HostSystem {
    fn figures(&self) -> Figures {
        let mut guard = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let (system, networks, disks) = &mut *guard;
        system.refresh_cpu_usage();
        system.refresh_memory();
        system.refresh_processes_specifics(ProcessesToUpdate::All, true, ProcessRefreshKind::nothing());
        networks.refresh(true);
        disks.refresh(true);
        let percent = |used: u64, total: u64| if total == 0 { 0.0 } else { (used as f64 * 100.0 / total as f64) as f32 };
        let (disk_total, disk_free) =
            disks.list().iter().fold((0, 0), |(t, f), d| (t + d.total_space(), f + d.available_space()));
        Figures {
            cpu_percent: system.global_cpu_usage(),
            memory_percent: percent(system.used_memory(), system.total_memory()),
            disk_percent: percent(disk_total - disk_free, disk_total),
            net_bytes_sent: networks.values().map(|n| n.total_transmitted()).sum(),
            net_bytes_received: networks.values().map(|n| n.total_received()).sum(),
            process_count: system.processes().len() as u32,
        }
    }
}
