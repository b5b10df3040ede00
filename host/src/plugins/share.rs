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
//!
//! A call that waits on something other than the CPU (a client's answer to
//! `clients.call`) gives its slot back for the wait and takes one again
//! after it ([`CpuSlot::released_while`]), so a plugin waiting on slow
//! clients does not starve its own other calls.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub struct CpuShare {
    slots: Arc<Semaphore>,
    size: usize,
}

/// One call's place among its plugin's executing calls, held until dropped.
#[derive(Debug)]
pub struct CpuSlot {
    slots: Arc<Semaphore>,
    _permit: OwnedSemaphorePermit,
}

impl CpuSlot {
    /// Run `wait` with the slot given back, then take one again by
    /// `deadline`: the slot, or `None` if none came in time.
    pub async fn released_while<F: Future>(self, deadline: Instant, wait: F) -> (F::Output, Option<CpuSlot>) {
        let CpuSlot { slots, _permit } = self;
        drop(_permit);
        let output = wait.await;
        let again = tokio::time::timeout_at(deadline.into(), Arc::clone(&slots).acquire_owned()).await;
        (output, again.ok().and_then(Result::ok).map(|permit| CpuSlot { slots, _permit: permit }))
    }
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
        CpuShare { slots: Arc::new(Semaphore::new(size)), size }
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
    pub async fn enter(&self, deadline: Instant) -> Option<CpuSlot> {
        // A free slot is taken without arming a timer (the usual case; a
        // free permit is never one a waiter is queued for).
        let permit = match Arc::clone(&self.slots).try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => tokio::time::timeout_at(deadline.into(), Arc::clone(&self.slots).acquire_owned()).await.ok()?.ok()?,
        };
        Some(CpuSlot { slots: Arc::clone(&self.slots), _permit: permit })
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

    #[tokio::test]
    async fn a_call_waiting_on_a_client_gives_its_slot_back_meanwhile() {
        let share = CpuShare::new(0.5, 2, 16);
        let slot = share.enter(Instant::now()).await.unwrap();
        let deadline = Instant::now() + std::time::Duration::from_secs(5);
        let (other_got_in, slot) = slot
            .released_while(deadline, async {
                let other = share.enter(Instant::now()).await;
                assert_eq!(share.executing(), 1);
                other.is_some()
            })
            .await;
        assert!(other_got_in, "another call runs while this one waits");
        assert!(slot.is_some(), "the waiting call takes a slot again after");
        assert_eq!(share.executing(), 1);
    }
}
