//! Run with: cargo build --release -p switchyard-cli && cargo bench -p switchyard-tests --bench fanout
//!
//! One publish → N subscribers on loopback: the time from sending the
//! publishing request until the last subscriber has the event, for N = 1
//! (the baseline), 1,000 and 10,000, in the same run. The host runs as its
//! own process (`target/release/switchyard`), so each side has its own
//! file-descriptor budget; the clients are real WebSocket connections.

use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, Barrier};
use tokio_tungstenite::tungstenite::Message;

const ROUNDS: usize = 60;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let host = switchyard_tests::HostProcess::spawn(
        &["publisher"],
        "[limits]\nmax_connections = 12000\nmax_connections_per_client = 12000\nconnections_per_second_per_ip = 0\noutbox_frames = 64\n[websocket]\nheartbeat_interval_ms = 300000\nidle_timeout_ms = 600000",
    );
    let addr = &host.addr;
    let url = format!("ws://{addr}/ws");
    runtime.block_on(async {
        println!("fan-out: one publish → N subscribers, {ROUNDS} rounds each, time until the last subscriber has it");
        println!("{:>8} {:>12} {:>12} {:>12}", "N", "p50", "p99", "max");
        for n in [1, 1_000, 10_000] {
            let mut samples = measure(&url, n).await;
            samples.sort();
            let pick = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
            println!("{n:>8} {:>12.2?} {:>12.2?} {:>12.2?}", pick(0.5), pick(0.99), samples[samples.len() - 1]);
        }
    });
    drop(host);
}

/// `ROUNDS` samples of the time until all `n` subscribers have one event.
async fn measure(url: &str, n: usize) -> Vec<Duration> {
    let topic = format!("fanout{n}");
    let (arrived_tx, mut arrived) = mpsc::channel::<Result<(usize, Instant), String>>(n * 2);
    let (ready_tx, mut ready) = mpsc::channel::<Result<(), String>>(n);
    let go = Arc::new(Barrier::new(n + 1));
    // Connect a few hundred at a time: a connect storm overflows the listen backlog.
    let connecting = Arc::new(tokio::sync::Semaphore::new(256));
    let mut subscribers = Vec::with_capacity(n);
    for _ in 0..n {
        let (url, topic, arrived_tx) = (url.to_owned(), topic.clone(), arrived_tx.clone());
        let (ready_tx, go) = (ready_tx.clone(), Arc::clone(&go));
        let connecting = Arc::clone(&connecting);
        subscribers.push(tokio::spawn(async move {
            let permit = connecting.acquire_owned().await.unwrap();
            let mut socket = match tokio_tungstenite::connect_async(&url).await {
                Ok((socket, _)) => socket,
                Err(e) => return drop(ready_tx.send(Err(e.to_string())).await),
            };
            socket.next().await; // the acknowledgement
            socket.send(Message::text(json!({"type": "subscribe", "data": {"events": [topic]}}).to_string())).await.unwrap();
            socket.next().await; // the reply
            drop(permit);
            let _ = ready_tx.send(Ok(())).await;
            go.wait().await;
            for round in 0..ROUNDS {
                // A substring check, not a parse: keep the clients' share of
                // the two cores small.
                let marker = format!("\"round\":{round},");
                loop {
                    match socket.next().await {
                        Some(Ok(Message::Text(text))) if text.contains(&marker) => {
                            arrived_tx.send(Ok((round, Instant::now()))).await.unwrap();
                            break;
                        }
                        Some(Ok(_)) => continue,
                        ended => return drop(arrived_tx.send(Err(format!("subscriber ended: {ended:?}"))).await),
                    }
                }
            }
        }));
    }
    for _ in 0..n {
        let subscribed = tokio::time::timeout(Duration::from_secs(120), ready.recv()).await;
        match subscribed {
            Ok(Some(Ok(()))) => {}
            other => panic!("a subscriber failed to connect and subscribe: {other:?}"),
        }
    }
    go.wait().await;
    let (mut producer, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    producer.next().await;
    let mut samples = Vec::with_capacity(ROUNDS);
    for round in 0..ROUNDS {
        let request = json!({"type": "pub.publish", "data": {"topic": topic, "data": {"round": round}}});
        let sent = Instant::now();
        producer.send(Message::text(request.to_string())).await.unwrap();
        let mut last = sent;
        for _ in 0..n {
            let (r, at) = arrived.recv().await.unwrap().unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(r, round);
            last = last.max(at);
        }
        samples.push(last - sent);
        producer.next().await; // the publish request's reply
    }
    for subscriber in subscribers {
        subscriber.await.unwrap();
    }
    samples
}
