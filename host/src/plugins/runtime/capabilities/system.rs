//! `system` (0.2): host figures (cpu, memory, disk, network, processes),
//! only for plugins whose grant says `system = true`.

use super::failure;
use crate::wire::ErrorCode;
use crate::plugins::runtime::world::v0_2::system::{Host, HostFigures};
use crate::plugins::runtime::world::v0_2::types;
use crate::plugins::runtime::PluginState;

impl Host for PluginState {
    fn figures(&mut self) -> Result<HostFigures, types::Failure> {
        if !self.system_granted {
            return Err(failure(ErrorCode::CapabilityDenied, "the system capability is not granted to this plugin").into());
        }
        let f = self.services.system.figures();
        Ok(HostFigures {
            cpu_percent: f.cpu_percent,
            memory_percent: f.memory_percent,
            disk_percent: f.disk_percent,
            net_bytes_sent: f.net_bytes_sent,
            net_bytes_received: f.net_bytes_received,
            process_count: f.process_count,
        })
    }
}
