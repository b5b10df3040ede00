//! Run with: cargo bench -p switchyard-tests --bench cluster
//!
//! Two figures of cluster mode, with a real NATS server on loopback and the
//! hosts as separate processes (`target/release/switchyard`; build it
//! first with `cargo build --release -p switchyard-cli`):
//!
//! - cross-node delivery latency: a client on node A publishes
//!   (`pub.publish`, pipelined at `--rate` messages a second, 10000 by
//!   default, for `--seconds` 5), a subscriber on node B receives; the
//!   time from the publish frame's send to the event's receipt, p50/p99/max
//!   in µs (HDR histogram; the first second is warm-up);
//! - single-host throughput for local traffic, cluster mode off vs on in
//!   the same run: `--clients` 8 clients each sending `pub.publish`
//!   request/reply in a loop for `--seconds`, one local subscriber taking
//!   every event; messages per second, in `--rounds` 5 paired rounds (off,
//!   then on), medians. The clustered host has a peer node with a
//!   subscriber to another topic, so the cluster is real and the traffic
//!   stays local.

use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchyard_tests::nats::NatsServer;
use switchyard_tests::{Client, HostProcess};
use tokio_tungstenite::tungstenite::Message;

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).map_or(default, |n| n.parse().expect("a number"))
}

fn clustered(nats: &NatsServer, node: &str) -> String {
    format!("[limits]\nmessages_per_second = 0\n[cluster]\nurls = [{:?}]\nnode = {node:?}\nname = \"bench\"\n", nats.url)
}

async fn subscriber(host: &HostProcess, topic: &str) -> Client {
    let mut client = Client::connect(&format!("ws://{}/ws", host.addr)).await;
    client.call("subscribe", json!({ "events": [topic] })).await;
    client
}

async fn cross_node_latency(rate: u64, seconds: u64) {
    let nats = NatsServer::start();
    let (a, b) = (HostProcess::spawn(&["publisher"], &clustered(&nats, "a")), HostProcess::spawn(&["publisher"], &clustered(&nats, "b")));
    let receiver = subscriber(&b, "bench.tick").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let publisher = Client::connect(&format!("ws://{}/ws", a.addr)).await;
    let (socket, _) = publisher.into_socket();
    let (mut receive, _) = receiver.into_socket();
    let base = Instant::now();
    let total = rate * seconds;
    let warm_up = rate;
    let sender = tokio::spawn(async move {
        let (mut tx, mut rx) = socket.split();
        let drain = tokio::spawn(async move { while let Some(Ok(_)) = rx.next().await {} });
        let every = Duration::from_secs_f64(1.0 / rate as f64);
        for i in 0..total {
            let due = base + every * i as u32;
            tokio::time::sleep_until(due.into()).await;
            let t = base.elapsed().as_micros() as u64;
            let frame = json!({"type": "pub.publish", "id": i.to_string(), "data": {"topic": "bench.tick", "data": {"i": i, "t": t}}});
            tx.send(Message::text(frame.to_string())).await.unwrap();
        }
        drain.abort();
    });
    let mut histogram = Histogram::<u64>::new(3).unwrap();
    let mut received = 0u64;
    let deadline = Instant::now() + Duration::from_secs(seconds + 10);
    while received < total && Instant::now() < deadline {
        let Ok(Some(Ok(Message::Text(text)))) = tokio::time::timeout(Duration::from_secs(3), receive.next()).await else { break };
        let frame: Value = serde_json::from_str(&text).unwrap();
        let (Some(i), Some(t)) = (frame["data"]["i"].as_u64(), frame["data"]["t"].as_u64()) else { continue };
        received += 1;
        if i >= warm_up {
            histogram.record(base.elapsed().as_micros() as u64 - t).unwrap();
        }
    }
    sender.await.unwrap();
    println!("cross-node delivery at {rate} msg/s for {seconds} s: received {received}/{total}");
    println!("| p50 µs | p99 µs | max µs | samples |\n|---|---|---|---|");
    println!("| {} | {} | {} | {} |", histogram.value_at_quantile(0.5), histogram.value_at_quantile(0.99), histogram.max(), histogram.len());
}

async fn local_throughput(host: &HostProcess, clients: u64, seconds: u64) -> f64 {
    // The subscriber reads frames without parsing them: a parsing reader
    // fell behind and was evicted (4008) in mid-round, which made the rest
    // of the round cheaper than it is.
    let (mut watcher, _) = subscriber(host, "bench.local").await.into_socket();
    let drain = tokio::spawn(async move { while let Some(Ok(_)) = watcher.next().await {} });
    let done = Arc::new(AtomicU64::new(0));
    let stop_at = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let mut client = Client::connect(&format!("ws://{}/ws", host.addr)).await;
        let done = Arc::clone(&done);
        tasks.push(tokio::spawn(async move {
            while Instant::now() < stop_at {
                let reply = client.call("pub.publish", json!({"topic": "bench.local", "data": {"x": 1}})).await;
                assert_eq!(reply["type"], "reply", "{reply}");
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    drain.abort();
    done.load(Ordering::Relaxed) as f64 / seconds as f64
}

#[tokio::main]
async fn main() {
    let (rate, seconds, clients, rounds) = (arg("--rate", 10_000), arg("--seconds", 5), arg("--clients", 8), arg("--rounds", 5));
    cross_node_latency(rate, seconds).await;

    let nats = NatsServer::start();
    let off = HostProcess::spawn(&["publisher"], "[limits]\nmessages_per_second = 0\n");
    let on = HostProcess::spawn(&["publisher"], &clustered(&nats, "local"));
    // A second node with a subscriber of its own (not to the bench's
    // topic): the cluster is real, the bench's traffic stays local.
    let peer = HostProcess::spawn(&["publisher"], &clustered(&nats, "peer"));
    let _elsewhere = subscriber(&peer, "elsewhere.*").await;
    // Paired rounds, off then on, so drift on a shared machine hits both; medians.
    let (mut offs, mut ons, mut costs) = (Vec::new(), Vec::new(), Vec::new());
    for round in 1..=rounds {
        let (a, b) = (local_throughput(&off, clients, seconds).await, local_throughput(&on, clients, seconds).await);
        println!("round {round}: off {a:.0} msg/s, on {b:.0} msg/s, cost {:.1} %", (1.0 - b / a) * 100.0);
        offs.push(a);
        ons.push(b);
        costs.push((1.0 - b / a) * 100.0);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!("local publish throughput, {clients} clients, {seconds} s x {rounds} paired rounds (one local subscriber; medians):");
    println!("| cluster | msg/s |\n|---|---|\n| off | {:.0} |\n| on | {:.0} |", median(&mut offs), median(&mut ons));
    println!("cluster mode costs {:.1} % (median of the rounds' costs)", median(&mut costs));
}
