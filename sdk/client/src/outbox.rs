//! Where an outgoing frame goes: to the live connection's bounded channel,
//! or, while there is none, to the bounded offline queue.
//!
//! The queue drops its oldest frame when full (counted in `dropped`): for
//! a client that has been away, the newest state is usually what matters.
//! Only the caller of the evicted frame learns of it, through its request.

use crate::error::ClientError;
use std::collections::VecDeque;
use tokio::sync::mpsc;

/// A frame on its way out; `request_id` when a caller waits for its reply.
#[derive(Debug)]
pub(crate) struct Outgoing {
    pub text: String,
    pub request_id: Option<String>,
}

pub(crate) enum Link {
    /// No connection: frames wait in the offline queue.
    Offline,
    /// The live connection's channel.
    Online(mpsc::Sender<Outgoing>),
    /// The client is done; every send fails with this.
    Ended(ClientError),
}

pub(crate) struct Outbox {
    pub link: Link,
    queue: VecDeque<Outgoing>,
    capacity: usize,
    pub dropped: u64,
}

impl Outbox {
    pub fn new(capacity: usize) -> Self {
        Outbox { link: Link::Offline, queue: VecDeque::new(), capacity, dropped: 0 }
    }

    /// Queue a frame; the frame evicted to make room, if any. With no room
    /// at all (capacity 0) the frame itself is refused.
    pub fn push(&mut self, out: Outgoing) -> Result<Option<Outgoing>, Outgoing> {
        if self.capacity == 0 {
            self.dropped += 1;
            return Err(out);
        }
        self.queue.push_back(out);
        Ok(self.evict_overflow().pop())
    }

    /// Put frames that never reached the socket back in front, in order;
    /// the frames evicted to stay within capacity.
    pub fn push_front(&mut self, frames: Vec<Outgoing>) -> Vec<Outgoing> {
        for out in frames.into_iter().rev() {
            self.queue.push_front(out);
        }
        self.evict_overflow()
    }

    pub fn take_queue(&mut self) -> VecDeque<Outgoing> {
        std::mem::take(&mut self.queue)
    }

    pub fn len(&self) -> usize {
        self.queue.len()
    }

    fn evict_overflow(&mut self) -> Vec<Outgoing> {
        let mut evicted = Vec::new();
        while self.queue.len() > self.capacity {
            if let Some(oldest) = self.queue.pop_front() {
                self.dropped += 1;
                evicted.push(oldest);
            }
        }
        evicted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(text: &str) -> Outgoing {
        Outgoing { text: text.into(), request_id: None }
    }

    fn texts(outbox: &mut Outbox) -> Vec<String> {
        outbox.take_queue().into_iter().map(|o| o.text).collect()
    }

    #[test]
    fn a_full_queue_drops_its_oldest_and_counts_it() {
        let mut outbox = Outbox::new(2);
        assert!(outbox.push(frame("a")).unwrap().is_none());
        assert!(outbox.push(frame("b")).unwrap().is_none());
        assert_eq!(outbox.push(frame("c")).unwrap().unwrap().text, "a");
        assert_eq!(outbox.dropped, 1);
        let evicted = outbox.push_front(vec![frame("x"), frame("y")]);
        assert_eq!(evicted.iter().map(|o| o.text.as_str()).collect::<Vec<_>>(), ["x", "y"]);
        assert_eq!(texts(&mut outbox), ["b", "c"]);
        assert_eq!(outbox.dropped, 3);
    }

    #[test]
    fn frames_put_back_go_first_in_order() {
        let mut outbox = Outbox::new(8);
        outbox.push(frame("later")).unwrap();
        outbox.push_front(vec![frame("first"), frame("second")]);
        assert_eq!(texts(&mut outbox), ["first", "second", "later"]);
    }

    #[test]
    fn no_capacity_refuses_the_frame() {
        let mut outbox = Outbox::new(0);
        assert_eq!(outbox.push(frame("a")).unwrap_err().text, "a");
        assert_eq!(outbox.dropped, 1);
        assert_eq!(outbox.len(), 0);
    }
}
