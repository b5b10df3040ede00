//! Run with: cargo build --release -p switchyard-cli && cargo bench -p switchyard-tests --bench storage
//!
//! Persistence costs, in one run:
//! - routed throughput (echo, 8 WebSocket clients, requests pipelined)
//!   with history off and on, in paired rounds (medians reported), on SQLite and on a private PostgreSQL (the
//!   test kit's), the host as its own process; and the host's CPU time per
//!   message (until history has written them all), which a loaded machine
//!   moves far less than throughput;
//! - kv write latency (`DurableKv::set`, sequential, each a commit) p50 and
//!   p99 on SQLite, PostgreSQL and MariaDB.
//!
//! A backend whose server is not installed is skipped.

use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use std::time::{Duration, Instant};
use switchyard::services::KvStore;
use switchyard::store::db::Database;
use switchyard::store::kv::DurableKv;
use switchyard::store::memory::KvQuota;
use switchyard_tests::databases::{DbServer, Kind};
use switchyard_tests::{cpu_time, HostProcess};
use tokio_tungstenite::tungstenite::Message;

const CLIENTS: usize = 8;
const PER_CLIENT: usize = 5_000;
const KV_WRITES: usize = 2_000;
/// Each round runs history off then on; one round alone is too short to
/// tell a 10% cost from this machine's noise.
const ROUNDS: usize = 7;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sqlite = format!("sqlite://{}", dir.path().join("bench.db").display());
    let postgres = DbServer::start(Kind::Postgres);
    let mariadb = DbServer::start(Kind::Mariadb);
    let mut backends = vec![("sqlite", sqlite)];
    backends.extend(postgres.as_ref().map(|s| ("postgres", s.url.clone())));
    runtime.block_on(async {
        println!(
            "routed throughput, echo, {CLIENTS} clients pipelining, {} requests; {ROUNDS} rounds of off then on, medians",
            CLIENTS * PER_CLIENT
        );
        println!(
            "{:<10} {:>14} {:>14} {:>8} {:>22} | {:>10} {:>10} {:>8} {:>22}",
            "backend", "history off", "history on", "cost", "cost per round", "CPU off", "CPU on", "CPU cost", "CPU cost per round"
        );
        for (name, url) in &backends {
            let (mut off, mut on, mut costs) = (Vec::new(), Vec::new(), Vec::new());
            let (mut cpu_off, mut cpu_on, mut cpu_costs) = (Vec::new(), Vec::new(), Vec::new());
            for _ in 0..ROUNDS {
                // Paired rounds: a noisy moment moves both sides of a pair.
                let (a, b) = (throughput(url, false).await, throughput(url, true).await);
                off.push(a.rate);
                on.push(b.rate);
                costs.push((1.0 - b.rate / a.rate) * 100.0);
                cpu_off.push(a.cpu_us);
                cpu_on.push(b.cpu_us);
                cpu_costs.push((1.0 - a.cpu_us / b.cpu_us) * 100.0);
            }
            let rounds = |costs: &[f64]| costs.iter().map(|c| format!("{c:.0}")).collect::<Vec<_>>().join(" ");
            let (rounds, cpu_rounds) = (rounds(&costs), rounds(&cpu_costs));
            let (off, on, cost) = (median(off), median(on), median(costs));
            let (cpu_off, cpu_on, cpu_cost) = (median(cpu_off), median(cpu_on), median(cpu_costs));
            println!(
                "{name:<10} {off:>10.0} msg/s {on:>10.0} msg/s {cost:>7.1}% {rounds:>22} | {cpu_off:>7.1} µs {cpu_on:>7.1} µs {cpu_cost:>7.1}% {cpu_rounds:>22}"
            );
        }
        println!(
            "(CPU: the host process's CPU time per message, until history has written every message; \
             CPU cost: the share of the history-on CPU that history takes; a database server's own CPU is not counted)"
        );
        backends.extend(mariadb.as_ref().map(|s| ("mariadb", s.url.clone())));
        println!("\nkv write latency, {KV_WRITES} sequential commits");
        println!("{:<10} {:>12} {:>12}", "backend", "p50", "p99");
        for (name, url) in &backends {
            let db = Database::open(url, 4, Duration::from_secs(10)).await.unwrap();
            let kv = DurableKv::load(db.clone(), KvQuota::default(), Duration::from_secs(10)).await.unwrap();
            let mut samples = Vec::with_capacity(KV_WRITES);
            for n in 0..KV_WRITES {
                let started = Instant::now();
                kv.set("bench", &format!("k{}", n % 100), format!("value {n}")).await.unwrap();
                samples.push(started.elapsed());
            }
            samples.sort();
            let pick = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
            println!("{name:<10} {:>12.2?} {:>12.2?}", pick(0.5), pick(0.99));
            db.close().await;
        }
    });
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// One host's round: messages per second, and the host's CPU time per message.
struct Round {
    rate: f64,
    cpu_us: f64,
}

/// A round through a host on `url` with history on or off.
async fn throughput(url: &str, history: bool) -> Round {
    let toml = format!("[limits]\nmessages_per_second = 0\n[storage]\nurl = {url:?}\n[storage.history]\nenabled = {history}\n");
    let host = HostProcess::spawn(&["echo"], &toml);
    let cpu_before = cpu_time(host.pid()).expect("the host's CPU time");
    let started = Instant::now();
    let mut clients = Vec::new();
    for c in 0..CLIENTS {
        let url = format!("ws://{}/ws", host.addr);
        clients.push(tokio::spawn(async move {
            let (ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
            let (mut tx, mut rx) = ws.split();
            let _ack = rx.next().await;
            let reader = tokio::spawn(async move {
                let mut replies = 0;
                while replies < PER_CLIENT {
                    match rx.next().await {
                        Some(Ok(Message::Text(text))) => {
                            assert!(text.contains("Echo: bench"), "not an echo reply: {text}");
                            replies += 1
                        }
                        Some(Ok(_)) => {}
                        _ => panic!("connection lost"),
                    }
                }
            });
            for n in 0..PER_CLIENT {
                let text = json!({"type": "echo", "id": format!("{c}-{n}"), "data": {"message": "bench"}}).to_string();
                tx.send(Message::text(text)).await.unwrap();
            }
            reader.await.unwrap();
        }));
    }
    for client in clients {
        client.await.unwrap();
    }
    let rate = (CLIENTS * PER_CLIENT) as f64 / started.elapsed().as_secs_f64();
    // History's writing is part of its cost, also what is written after
    // the last reply.
    let metrics = format!("http://{}/metrics", host.addr);
    while history && written(&metrics).await < (CLIENTS * PER_CLIENT) as u64 {
        assert!(started.elapsed() < Duration::from_secs(300), "history never wrote the round's messages");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let cpu = cpu_time(host.pid()).expect("the host's CPU time") - cpu_before;
    drop(host);
    Round { rate, cpu_us: cpu.as_secs_f64() * 1e6 / (CLIENTS * PER_CLIENT) as f64 }
}

/// `switchyard_history_written_total` at `metrics`.
async fn written(metrics: &str) -> u64 {
    let text = reqwest::get(metrics).await.unwrap().text().await.unwrap();
    text.lines().find_map(|l| l.strip_prefix("switchyard_history_written_total ")?.trim().parse().ok()).unwrap_or(0)
}
