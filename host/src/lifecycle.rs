//! The host's tasks and their one shutdown signal.
//!
//! Every task the host starts (listeners, connections, tick loops, health
//! checks, samplers, the watcher) is spawned through [`Tasks`]: onto one
//! tracker, so shutdown can wait for all of them under its grace period,
//! and stopped by a child of the one shutdown token, so cancelling that
//! token reaches every loop, while a child can still be cancelled alone
//! (a plugin's tick loop when its version is replaced). No `JoinHandle` is
//! dropped with its task still running unaccounted.

use std::future::Future;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

#[derive(Clone, Default)]
pub struct Tasks {
    tracker: TaskTracker,
    shutdown: CancellationToken,
}

impl Tasks {
    pub fn new() -> Tasks {
        Tasks::default()
    }

    /// Run `task` until it ends; it is handed a stop token that shutdown
    /// cancels. Returns that token, to stop this task alone.
    pub fn spawn<F>(&self, task: impl FnOnce(CancellationToken) -> F) -> CancellationToken
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let stop = self.shutdown.child_token();
        self.tracker.spawn(task(stop.clone()));
        stop
    }

    /// Track a future that watches the shutdown signal itself (a
    /// connection's task).
    pub fn track<F>(&self, task: F) -> impl Future<Output = ()> + Send + 'static
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.tracker.track_future(task)
    }

    /// Cancelled when the host begins to shut down.
    pub fn shutdown_signal(&self) -> &CancellationToken {
        &self.shutdown
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutdown.is_cancelled()
    }

    /// Signal every task to stop, and wait for them for up to `grace`;
    /// false if some were still running then.
    pub async fn shut_down(&self, grace: std::time::Duration) -> bool {
        self.shutdown.cancel();
        self.tracker.close();
        tokio::time::timeout(grace, self.tracker.wait()).await.is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn shutdown_reaches_every_task_and_a_child_stops_alone() {
        let tasks = Tasks::new();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let one = tasks.spawn(|stop| {
            let tx = tx.clone();
            async move {
                stop.cancelled().await;
                let _ = tx.send("one");
            }
        });
        tasks.spawn(|stop| async move {
            stop.cancelled().await;
            let _ = tx.send("two");
        });
        one.cancel();
        assert_eq!(rx.recv().await, Some("one"));
        assert!(rx.try_recv().is_err(), "the other task is still running");
        assert!(tasks.shut_down(Duration::from_secs(5)).await);
        assert_eq!(rx.recv().await, Some("two"));
    }
}
