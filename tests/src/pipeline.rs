//! A closed-loop load for the benches: `connections` WebSockets, each
//! keeping `in_flight` `echo` requests outstanding for a time, every reply
//! matched by id and checked. Replies a second are counted only until the
//! deadline; what is still in flight then is read (up to 3 s) but not
//! counted.

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use std::collections::VecDeque;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

/// `connections` × `in_flight` pipelined echoes to `ws://{addr}/ws` for
/// `seconds`: replies a second, and replies counted.
pub async fn echo_load(addr: &str, connections: usize, in_flight: usize, seconds: u64) -> (f64, u64) {
    let started = Instant::now();
    let stop_at = tokio::time::Instant::now() + Duration::from_secs(seconds);
    let tasks: Vec<_> = (0..connections)
        .map(|n| {
            let url = format!("ws://{addr}/ws");
            tokio::spawn(async move { connection(n, &url, in_flight, stop_at).await })
        })
        .collect();
    let mut answered = 0;
    for task in tasks {
        answered += task.await.expect("connection task");
    }
    let elapsed = started.elapsed().min(Duration::from_secs(seconds)).as_secs_f64();
    (answered as f64 / elapsed, answered)
}

async fn connection(n: usize, url: &str, in_flight: usize, stop_at: tokio::time::Instant) -> u64 {
    let (socket, _) = tokio_tungstenite::connect_async(url).await.expect("connects");
    let (mut sink, mut stream) = socket.split();
    let mut pending = VecDeque::new();
    let mut seq = 0u64;
    let send = |seq: &mut u64| {
        *seq += 1;
        let id = format!("c{n}-{seq}");
        (Message::text(format!(r#"{{"type":"echo","id":"{id}","data":{{"message":"m"}}}}"#)), id)
    };
    for _ in 0..in_flight {
        let (message, id) = send(&mut seq);
        sink.send(message).await.expect("send");
        pending.push_back(id);
    }
    let mut answered = 0;
    let drain_until = stop_at + Duration::from_secs(3);
    while !pending.is_empty() {
        let frame = tokio::select! {
            frame = stream.next() => frame,
            _ = tokio::time::sleep_until(drain_until) => break,
        };
        let Some(Ok(Message::Text(text))) = frame else {
            if frame.is_none() { break } else { continue }
        };
        let Ok(reply) = serde_json::from_str::<Value>(text.as_str()) else { continue };
        let Some(at) = pending.iter().position(|id| reply["id"] == id.as_str()) else { continue };
        pending.remove(at);
        assert_eq!(reply["data"], "Echo: m", "a checked reply: {reply}");
        if tokio::time::Instant::now() < stop_at {
            answered += 1;
            let (message, id) = send(&mut seq);
            if sink.send(message).await.is_err() {
                break;
            }
            pending.push_back(id);
        }
    }
    let _ = sink.send(Message::Close(None)).await;
    answered
}
