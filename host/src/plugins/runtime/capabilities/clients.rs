//! `clients` (0.3): a request to a connected client, answered by it,
//! through the host's [`ClientCalls`](crate::services::ClientCalls).
//!
//! The wait is an async host call: the instance making it is parked and
//! every other call (to this plugin's other instances, or to any plugin)
//! runs meanwhile, and it gives back the call's place in the plugin's CPU
//! share for the wait. It never outlasts the plugin call's own deadline.

use super::events::json;
use crate::plugins::runtime::world::v0_3::{clients::Host, types};
use crate::plugins::runtime::PluginState;
use crate::services::ClientRef;
use crate::wire::{ErrorCode, Failure};
use std::time::{Duration, Instant};

impl Host for PluginState {
    async fn call(&mut self, target: types::ClientRef, action: String, params: String, timeout_ms: u32) -> Result<String, types::Failure> {
        let params = json(params)?;
        let target = match target {
            types::ClientRef::Connection(id) => ClientRef::Connection(id),
            types::ClientRef::Device(id) => ClientRef::Device(id),
        };
        let left = self.deadline.saturating_duration_since(Instant::now());
        let wait = Duration::from_millis(timeout_ms.into()).min(left);
        let calls = std::sync::Arc::clone(&self.services.calls);
        let asking = calls.call(&target, &action, &params, wait);
        // Waiting on a client is not using the CPU: the plugin's other calls
        // may run meanwhile (see `plugins::share`).
        let answer = match self.cpu.take() {
            Some(slot) => {
                let (answer, slot) = slot.released_while(self.deadline, asking).await;
                self.cpu = Some(slot.ok_or_else(|| {
                    Failure::new(ErrorCode::PluginTimeout, "the deadline passed before the call got its CPU share back")
                })?);
                answer
            }
            None => asking.await,
        };
        Ok(answer?.get().to_owned())
    }
}
