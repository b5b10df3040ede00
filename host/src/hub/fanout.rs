//! One frame fanned out to many outboxes, timed.
//!
//! A publish serializes its event once; every outbox it is queued in holds
//! a clone of the same [`Bytes`] (a reference count, no copy). The bytes'
//! owner here records, when the last clone is released, how long it was
//! since the publish began in the `fanout_seconds` histogram. A connection's
//! writer holds its clone until the frame is flushed to the socket, so the
//! figure is the host's side of a fan-out: until the event is written to
//! its last subscriber (or dropped with an evicted one).

use bytes::Bytes;
use prometheus_client::metrics::histogram::Histogram;
use std::time::Instant;

/// `frame`, shared, recording into `histogram` once every copy is gone.
pub(super) fn timed(frame: Bytes, started: Instant, histogram: &Histogram) -> Bytes {
    Bytes::from_owner(Timed { frame, started, histogram: histogram.clone() })
}

struct Timed {
    frame: Bytes,
    started: Instant,
    histogram: Histogram,
}

impl AsRef<[u8]> for Timed {
    fn as_ref(&self) -> &[u8] {
        &self.frame
    }
}

impl Drop for Timed {
    fn drop(&mut self) {
        self.histogram.observe(self.started.elapsed().as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::metrics::histogram::exponential_buckets;

    #[test]
    fn the_time_is_recorded_once_when_the_last_copy_is_released() {
        let histogram = Histogram::new(exponential_buckets(0.000_01, 2.0, 20));
        let frame = timed(Bytes::from_static(b"{\"type\":\"tick\"}"), Instant::now(), &histogram);
        let copies: Vec<Bytes> = (0..3).map(|_| frame.clone()).collect();
        assert_eq!(&copies[2][..], b"{\"type\":\"tick\"}");
        drop(frame);
        drop(copies);
        let mut text = String::new();
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register("fanout_seconds", "", histogram);
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(text.contains("fanout_seconds_count 1\n"), "{text}");
    }
}
