//! A plugin's share of the CPU: how many of its calls may be executing
//! guest code at once.
//!
//! Calls run as async tasks on the tokio worker threads, and a running
//! guest yields its thread at every epoch tick (5 ms) so sockets and other
//! tasks get a turn. That alone is not a share: a plugin with sixteen
//! calls spinning is sixteen runnable tasks, and a neighbour's message
//! waits behind all of them at each step of its path. So each plugin
//! version also holds `slots = max(1, round(worker threads × cpu_share))`
//! permits; a call takes one (under its deadline) after its instance and
//! before it instantiates or runs, and gives it back when it ends. A
//! plugin can then never have more than its share of the threads busy,
//! however many calls it is sent; the rest of its calls wait, using no
//! CPU, and time out at their deadline like any call that waits too long.

use std::time::Instant;
use tokio::sync::{Semaphore, SemaphorePermit};

pub struct CpuShare {
    slots: Semaphore,
    size: usize,
}

impl std::fmt::Debug for CpuShare {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CpuShare").field("size", &self.size).finish()
    }
}

impl CpuShare {
    /// `share` of `workers` threads, at least one call, at most `max_calls`.
    pub fn new(share: f64, workers: usize, max_calls: usize) -> CpuShare {
        let size = ((workers as f64 * share).round() as usize).clamp(1, max_calls.max(1));
        CpuShare { slots: Semaphore::new(size), size }
    }

    /// How many calls may execute at once.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Calls executing now.
    pub fn executing(&self) -> usize {
        self.size - self.slots.available_permits()
    }

    /// Wait for a slot until `deadline`; `None` if it did not come.
    pub async fn enter(&self, deadline: Instant) -> Option<SemaphorePermit<'_>> {
        tokio::time::timeout_at(deadline.into(), self.slots.acquire()).await.ok()?.ok()
    }
}

/// The async worker threads calls run on: the current tokio runtime's,
/// else the machine's cores.
pub fn worker_threads() -> usize {
    tokio::runtime::Handle::try_current()
        .map(|runtime| runtime.metrics().num_workers())
        .unwrap_or_else(|_| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_the_share_of_the_workers_at_least_one() {
        assert_eq!(CpuShare::new(0.5, 2, 16).size(), 1);
        assert_eq!(CpuShare::new(0.5, 8, 16).size(), 4);
        assert_eq!(CpuShare::new(0.1, 2, 16).size(), 1);
        assert_eq!(CpuShare::new(1.0, 32, 16).size(), 16, "never more than the instances");
    }

    #[tokio::test]
    async fn a_call_past_its_share_waits_until_its_deadline() {
        let share = CpuShare::new(0.5, 2, 16);
        let running = share.enter(Instant::now()).await;
        assert!(running.is_some());
        assert_eq!(share.executing(), 1);
        assert!(share.enter(Instant::now() + std::time::Duration::from_millis(20)).await.is_none());
        drop(running);
        assert!(share.enter(Instant::now()).await.is_some());
    }
}
