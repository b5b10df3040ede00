//! Run with: cargo build --release -p switchyard-cli && cargo bench -p switchyard-tests --bench storage
//!
//! Persistence costs, in one run:
//! - routed throughput (echo, 8 WebSocket clients, requests pipelined)
//!   with history off and on, on SQLite and on a private PostgreSQL (the
//!   test kit's), the host as its own process;
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
use switchyard_tests::HostProcess;
use tokio_tungstenite::tungstenite::Message;

const CLIENTS: usize = 8;
const PER_CLIENT: usize = 5_000;
const KV_WRITES: usize = 2_000;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sqlite = format!("sqlite://{}", dir.path().join("bench.db").display());
    let postgres = DbServer::start(Kind::Postgres);
    let mariadb = DbServer::start(Kind::Mariadb);
    let mut backends = vec![("sqlite", sqlite)];
    backends.extend(postgres.as_ref().map(|s| ("postgres", s.url.clone())));
    runtime.block_on(async {
        println!("routed throughput, echo, {CLIENTS} clients pipelining, {} requests", CLIENTS * PER_CLIENT);
        println!("{:<10} {:>14} {:>14} {:>8}", "backend", "history off", "history on", "cost");
        for (name, url) in &backends {
            let off = throughput(url, false).await;
            let on = throughput(url, true).await;
            println!("{name:<10} {off:>10.0} msg/s {on:>10.0} msg/s {:>7.1}%", (1.0 - on / off) * 100.0);
        }
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

/// Messages per second through a host on `url` with history on or off.
async fn throughput(url: &str, history: bool) -> f64 {
    let toml = format!("[limits]\nmessages_per_second = 0\n[storage]\nurl = {url:?}\n[storage.history]\nenabled = {history}\n");
    let host = HostProcess::spawn(&["echo"], &toml);
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
    drop(host);
    rate
}
