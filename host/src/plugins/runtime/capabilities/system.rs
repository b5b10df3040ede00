//! `system` (0.2 on): host figures (cpu, memory, disk, network, processes),
//! only for plugins whose grant says `system = true`.

use super::failure;
use crate::plugins::runtime::world::{v0_2, v0_3};
use crate::plugins::runtime::PluginState;
use crate::wire::ErrorCode;

macro_rules! system_host {
    ($($v:ident),*) => {$(
        impl $v::system::Host for PluginState {
            fn figures(&mut self) -> Result<$v::system::HostFigures, $v::types::Failure> {
                if !self.system_granted {
                    return Err(failure(ErrorCode::CapabilityDenied, "the system capability is not granted to this plugin").into());
                }
                let f = self.services.system.figures();
                Ok($v::system::HostFigures {
                    cpu_percent: f.cpu_percent,
                    memory_percent: f.memory_percent,
                    disk_percent: f.disk_percent,
                    net_bytes_sent: f.net_bytes_sent,
                    net_bytes_received: f.net_bytes_received,
                    process_count: f.process_count,
                })
            }
        }
    )*};
}
system_host!(v0_2, v0_3);
