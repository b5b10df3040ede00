//! Run with: cargo build --release -p switchyard-cli && cargo bench -p switchyard-tests --bench neighbours
//!
//! Neighbour isolation (issue 14): the latency of `get_time` (the Rust
//! `clock` plugin) while another plugin that loops until its deadline
//! (`misbehave.loop`) is hammered, beside the same `get_time` load with no
//! bad plugin called, in the same run and on the same host process.
//!
//! For each host build: `--clients` connections send `get_time` at a total
//! `--rate` for `--seconds` (paced; a late reply counts from when its
//! request was due, so a stalled host is not hidden), first alone, then
//! while `--hammer` more connections each call `misbehave.loop` in a loop,
//! one call in flight, waiting what `retry_after` says when a reply has it
//! (as the protocol asks clients to). Every `get_time` reply is checked.
//! The target: p99 with the hammer ≤ 3× p99 alone.
//!
//! Flags (after `--`): `--clients N` (20), `--rate R` (2000), `--seconds T`
//! (5), `--hammer H` (200), `--deadline-ms D` (2000, the default deadline),
//! `--before PATH` (another build of `switchyard`, e.g. one from before the
//! breaker and CPU share, measured the same way in the same run). The
//! current build runs twice: `after`, as configured by default, and `share`,
//! with `[plugins.breaker] enabled = false` (the CPU share alone). The hosts
//! keep their default isolation settings and per-connection rate limits;
//! only the per-address connection rate is off, for the hammer's
//! connections. Loopback only; every phase is bounded by `--seconds` plus a
//! drain of `D` + 3 s.

use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde_json::Value;
use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use switchyard_tests::HostProcess;
use tokio_tungstenite::tungstenite::Message;

#[derive(Clone, Debug)]
struct Settings {
    clients: usize,
    rate: f64,
    seconds: u64,
    hammer: usize,
    deadline_ms: u64,
    before: Option<PathBuf>,
}

fn settings() -> Settings {
    let mut s = Settings { clients: 20, rate: 2000.0, seconds: 5, hammer: 200, deadline_ms: 2000, before: None };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut args = args.iter();
    while let Some(flag) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| panic!("{flag} needs a value")).clone();
        match flag.as_str() {
            "--clients" => s.clients = value().parse().expect("--clients N"),
            "--rate" => s.rate = value().parse().expect("--rate R"),
            "--seconds" => s.seconds = value().parse().expect("--seconds T"),
            "--hammer" => s.hammer = value().parse().expect("--hammer H"),
            "--deadline-ms" => s.deadline_ms = value().parse().expect("--deadline-ms D"),
            "--before" => s.before = Some(PathBuf::from(value())),
            _ => {}
        }
    }
    assert!(s.clients > 0 && s.rate > 0.0 && s.seconds > 0);
    s
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("histogram bounds")
}

/// What one `get_time` phase measured.
struct Measured {
    latency: Histogram<u64>,
    errors: u64,
    missing: u64,
}

/// The hammer's replies by code (`reply` for answers).
type Codes = Arc<Mutex<BTreeMap<String, u64>>>;

fn main() {
    let settings = settings();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    println!(
        "get_time: {} connections, {} req/s in all, {} s per phase; hammer: {} connections calling misbehave.loop (deadline {} ms); latency in µs",
        settings.clients, settings.rate, settings.seconds, settings.hammer, settings.deadline_ms
    );
    println!("{:<8} {:<12} {:>8} {:>8} {:>9} {:>9} {:>7} {:>8}  hammer replies", "build", "phase", "p50", "p99", "p99.9", "max", "errors", "missing");
    // The current build twice: as configured by default, and with the
    // breaker off, to see what the CPU share does alone.
    let mut builds = vec![("after", switchyard_tests::host_binary(), ""), ("share", switchyard_tests::host_binary(), "[plugins.breaker]\nenabled = false\n")];
    if let Some(before) = &settings.before {
        builds.insert(0, ("before", before.clone(), ""));
    }
    for (build, binary, extra) in builds {
        let toml = format!(
            "deadline_ms = {}\n[limits]\nconnections_per_second_per_ip = 0\nmax_connections_per_client = {}\n{extra}",
            settings.deadline_ms,
            settings.clients + settings.hammer + 10
        );
        let host = HostProcess::spawn_binary(&binary, &["clock", "misbehave"], &toml);
        let url = format!("ws://{}/ws", host.addr);
        let alone = runtime.block_on(get_time_load(&url, &settings));
        print_row(build, "alone", &alone, "");
        let codes: Codes = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let hammer: Vec<_> = (0..settings.hammer)
            .map(|_| runtime.spawn(hammer_connection(url.clone(), Arc::clone(&codes), Arc::clone(&stop))))
            .collect();
        // Let the hammer connect and fill the plugin's queue first.
        runtime.block_on(async { tokio::time::sleep(Duration::from_millis(500)).await });
        let neighbour = runtime.block_on(get_time_load(&url, &settings));
        stop.store(true, Ordering::Relaxed);
        for task in hammer {
            let _ = runtime.block_on(task);
        }
        let codes = codes.lock().expect("codes").iter().map(|(code, n)| format!("{code} {n}")).collect::<Vec<_>>().join(", ");
        print_row(build, "neighbour", &neighbour, &codes);
        let ratio = neighbour.latency.value_at_quantile(0.99) as f64 / alone.latency.value_at_quantile(0.99).max(1) as f64;
        println!("{build:<8} p99 with the hammer / p99 alone = {ratio:.2}× (target ≤ 3×)");
    }
}

fn print_row(build: &str, phase: &str, m: &Measured, codes: &str) {
    let h = &m.latency;
    println!(
        "{:<8} {:<12} {:>8} {:>8} {:>9} {:>9} {:>7} {:>8}  {}",
        build,
        phase,
        h.value_at_quantile(0.5),
        h.value_at_quantile(0.99),
        h.value_at_quantile(0.999),
        h.max(),
        m.errors,
        m.missing,
        codes
    );
}

/// `clients` connections sending `get_time` at `rate` in all for `seconds`.
async fn get_time_load(url: &str, settings: &Settings) -> Measured {
    let stop_at = tokio::time::Instant::now() + Duration::from_secs(settings.seconds);
    let drain = Duration::from_millis(settings.deadline_ms) + Duration::from_secs(3);
    let every = Duration::from_secs_f64(settings.clients as f64 / settings.rate);
    let tasks: Vec<_> = (0..settings.clients).map(|n| tokio::spawn(paced_connection(n, url.to_owned(), every, stop_at, drain))).collect();
    let mut total = Measured { latency: histogram(), errors: 0, missing: 0 };
    for task in tasks {
        let one = task.await.expect("connection task");
        total.latency.add(&one.latency).expect("same bounds");
        total.errors += one.errors;
        total.missing += one.missing;
    }
    total
}

async fn paced_connection(n: usize, url: String, every: Duration, stop_at: tokio::time::Instant, drain: Duration) -> Measured {
    let mut measured = Measured { latency: histogram(), errors: 0, missing: 0 };
    let Ok((socket, _)) = tokio_tungstenite::connect_async(url.as_str()).await else {
        measured.errors += 1;
        return measured;
    };
    let (mut sink, mut stream) = socket.split();
    let mut pending: VecDeque<(String, Instant)> = VecDeque::new();
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut seq = 0u64;
    let drain_until = stop_at + drain;
    loop {
        let sending = tokio::time::Instant::now() < stop_at;
        if !sending && pending.is_empty() {
            break;
        }
        tokio::select! {
            due = ticker.tick(), if sending => {
                seq += 1;
                let id = format!("t{n}-{seq}");
                if sink.send(Message::text(format!(r#"{{"type":"get_time","id":"{id}"}}"#))).await.is_err() {
                    measured.errors += 1;
                    break;
                }
                pending.push_back((id, due.into_std()));
            }
            frame = stream.next() => {
                let text = match frame {
                    Some(Ok(Message::Text(text))) => text,
                    Some(Ok(_)) => continue,
                    _ => break,
                };
                let Ok(reply) = serde_json::from_str::<Value>(text.as_str()) else {
                    measured.errors += 1;
                    continue;
                };
                let Some(at) = pending.iter().position(|(id, _)| reply["id"] == id.as_str()) else { continue };
                let Some((_, due)) = pending.remove(at) else { continue };
                if reply["type"] == "reply" && reply["data"]["unix_ms"].is_u64() {
                    let _ = measured.latency.record(due.elapsed().as_micros().max(1) as u64);
                } else {
                    measured.errors += 1;
                }
            }
            _ = tokio::time::sleep_until(drain_until) => break,
        }
    }
    measured.missing = pending.len() as u64;
    let _ = sink.send(Message::Close(None)).await;
    measured
}

/// Call `misbehave.loop` over and over, one in flight, until `stop`;
/// count the replies' codes.
async fn hammer_connection(url: String, codes: Codes, stop: Arc<AtomicBool>) {
    let Ok((mut socket, _)) = tokio_tungstenite::connect_async(url.as_str()).await else {
        *codes.lock().expect("codes").entry("connect failed".into()).or_default() += 1;
        return;
    };
    let mut seq = 0u64;
    while !stop.load(Ordering::Relaxed) {
        seq += 1;
        let id = format!("h{seq}");
        if socket.send(Message::text(format!(r#"{{"type":"misbehave.loop","id":"{id}"}}"#))).await.is_err() {
            return;
        }
        let reply = loop {
            match socket.next().await {
                Some(Ok(Message::Text(text))) => {
                    let Ok(reply) = serde_json::from_str::<Value>(text.as_str()) else { continue };
                    if reply["id"] == id.as_str() {
                        break reply;
                    }
                }
                Some(Ok(_)) => {}
                _ => return,
            }
        };
        let code = reply["data"]["code"].as_str().unwrap_or("reply").to_owned();
        *codes.lock().expect("codes").entry(code).or_default() += 1;
        if let Some(wait) = reply["data"]["retry_after"].as_u64() {
            tokio::time::sleep(Duration::from_millis(wait)).await;
        }
    }
    let _ = socket.send(Message::Close(None)).await;
}
