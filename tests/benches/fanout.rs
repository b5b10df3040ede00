//! Run with: cargo build --release -p switchyard-cli && cargo bench -p switchyard-tests --bench fanout
//! (`-- --sizes 1,1000,10000` to choose N, `--before PATH` to measure another
//! build of the host in the same run).
//!
//! One publish → N subscribers on loopback: the time from sending the
//! publishing request until the last subscriber has the event, for N = 1
//! (the baseline), 1,000 and 10,000, in the same run. The host runs as its
//! own process (`target/release/switchyard`), so each side has its own
//! file-descriptor budget; the clients are real WebSocket connections.
//!
//! The subscribers read on the same cores as the host, so the end-to-end
//! figure is also the clients' cost. Beside it, per publish: the host's
//! own time until the event was written to its last subscriber (its
//! `fanout_seconds` histogram, the difference of its sum over each round,
//! read from `/metrics`), and the CPU time each side used (`/proc`, in
//! 10 ms ticks, over all rounds; it includes a `/metrics` scrape or two
//! per round, which matters only for N = 1).

use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchyard_tests::cpu_time;
use tokio::sync::{mpsc, Barrier};
use tokio_tungstenite::tungstenite::Message;

const ROUNDS: usize = 60;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let args: Vec<String> = std::env::args().collect();
    let flag = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let sizes: Vec<usize> = match flag("--sizes") {
        Some(list) => list.split(',').map(|n| n.parse().expect("--sizes 1,1000,10000")).collect(),
        None => vec![1, 1_000, 10_000],
    };
    // Another build of the host to measure in the same run (it may lack
    // the fanout_seconds metric: then only end to end is shown for it).
    let mut builds = vec![("this build".to_owned(), switchyard_tests::host_binary())];
    if let Some(before) = flag("--before") {
        builds.insert(0, (format!("before ({before})"), before.into()));
    }
    println!("fan-out: one publish → N subscribers, {ROUNDS} rounds each");
    println!("  end to end: from sending the publish until the last subscriber has read the event");
    println!("  host: until the host has written it to the last subscriber (its fanout_seconds)");
    println!("  CPU: per publish, of the host process and of this (client) process");
    for (name, binary) in builds {
        let host = switchyard_tests::HostProcess::spawn_binary(
            &binary,
            &["publisher"],
            "[limits]\nmax_connections = 12000\nmax_connections_per_client = 12000\nconnections_per_second_per_ip = 0\noutbox_frames = 64\n[websocket]\nheartbeat_interval_ms = 300000\nidle_timeout_ms = 600000",
        );
        let addr = &host.addr;
        let url = format!("ws://{addr}/ws");
        let probe = Probe { metrics: format!("http://{addr}/metrics"), http: reqwest::Client::new(), host: host.pid() };
        println!("{name}:");
        println!(
            "{:>7} | {:>9} {:>9} {:>9} | {:>9} {:>9} {:>9} | {:>10} {:>10}",
            "N", "e2e p50", "e2e p99", "e2e max", "host p50", "host p99", "host max", "host CPU", "client CPU"
        );
        runtime.block_on(async {
            for &n in &sizes {
                let Measured { end_to_end, host_side, host_cpu, client_cpu } = measure(&url, n, &probe).await;
                let e = Quantiles::of(end_to_end);
                let h = (!host_side.is_empty()).then(|| Quantiles::of(host_side));
                let show = |d: Option<Duration>| d.map_or("-".to_owned(), |d| format!("{d:.2?}"));
                println!(
                    "{n:>7} | {:>9.2?} {:>9.2?} {:>9.2?} | {:>9} {:>9} {:>9} | {:>10.2?} {:>10.2?}",
                    e.p50,
                    e.p99,
                    e.max,
                    show(h.as_ref().map(|h| h.p50)),
                    show(h.as_ref().map(|h| h.p99)),
                    show(h.as_ref().map(|h| h.max)),
                    host_cpu,
                    client_cpu
                );
            }
        });
        drop(host);
    }
}

/// Where the host's own figures are read.
struct Probe {
    metrics: String,
    http: reqwest::Client,
    host: u32,
}

impl Probe {
    /// The host's `fanout_seconds` sum and count now; `None` for a build
    /// without it.
    async fn fanout(&self) -> Option<(f64, u64)> {
        let text = self.http.get(&self.metrics).send().await.unwrap().text().await.unwrap();
        let value = |name: &str| text.lines().find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))?.parse::<f64>().ok();
        Some((value("switchyard_fanout_seconds_sum")?, value("switchyard_fanout_seconds_count")? as u64))
    }

    /// The host's `fanout_seconds` once it has counted past `count` (its
    /// last writer may release the frame a moment after the client read it).
    async fn fanout_after(&self, count: u64) -> (f64, u64) {
        for _ in 0..1000 {
            let now = self.fanout().await.expect("fanout_seconds went missing");
            if now.1 > count {
                return now;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        panic!("the host never counted the fan-out");
    }
}

struct Measured {
    end_to_end: Vec<Duration>,
    host_side: Vec<Duration>,
    host_cpu: Duration,
    client_cpu: Duration,
}

struct Quantiles {
    p50: Duration,
    p99: Duration,
    max: Duration,
}

impl Quantiles {
    fn of(mut samples: Vec<Duration>) -> Quantiles {
        samples.sort();
        let pick = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
        Quantiles { p50: pick(0.5), p99: pick(0.99), max: samples[samples.len() - 1] }
    }
}

/// `ROUNDS` samples of the time until all `n` subscribers have one event,
/// end to end and on the host's side, and the CPU used per publish.
async fn measure(url: &str, n: usize, probe: &Probe) -> Measured {
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
    let mut host_side = Vec::with_capacity(ROUNDS);
    let mut fanout = probe.fanout().await;
    let (host_before, client_before) = (cpu_time(probe.host).unwrap(), cpu_time(std::process::id()).unwrap());
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
        if let Some(before) = fanout {
            let after = probe.fanout_after(before.1).await;
            assert_eq!(after.1, before.1 + 1, "one fan-out per round");
            host_side.push(Duration::from_secs_f64(after.0 - before.0));
            fanout = Some(after);
        }
    }
    let (host_cpu, client_cpu) = (cpu_time(probe.host).unwrap() - host_before, cpu_time(std::process::id()).unwrap() - client_before);
    for subscriber in subscribers {
        subscriber.await.unwrap();
    }
    let rounds = ROUNDS as u32;
    Measured { end_to_end: samples, host_side, host_cpu: host_cpu / rounds, client_cpu: client_cpu / rounds }
}
