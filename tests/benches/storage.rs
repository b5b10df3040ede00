//! Run with: cargo build --release -p switchyard-cli && cargo bench -p switchyard-tests --bench storage
//!
//! Persistence costs, in one run:
//! - routed throughput with history off and on, on SQLite and on a
//!   private PostgreSQL (the test kit's): two host processes per backend,
//!   one with history off and one with it on, both started and warmed
//!   first, then paired timed rounds (the order alternating per pair) of
//!   50 WebSocket connections keeping 4 `echo` requests in flight each,
//!   every reply checked; medians reported. Also each host's CPU time per
//!   message (the history host's until its writer has caught up with the
//!   round), which a loaded machine moves far less than throughput;
//! - kv write latency (`DurableKv::set`, sequential, each a commit) p50 and
//!   p99 on SQLite, PostgreSQL and MariaDB.
//!
//! A backend whose server is not installed is skipped.

use std::time::{Duration, Instant};
use switchyard::services::KvStore;
use switchyard::store::db::Database;
use switchyard::store::kv::DurableKv;
use switchyard::store::memory::KvQuota;
use switchyard_tests::databases::{DbServer, Kind};
use switchyard_tests::pipeline::echo_load;
use switchyard_tests::{cpu_time, metric_at, HostProcess};

const CONNECTIONS: usize = 50;
const IN_FLIGHT: usize = 4;
const KV_WRITES: usize = 2_000;

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sqlite = format!("sqlite://{}", dir.path().join("bench.db").display());
    let postgres = DbServer::start(Kind::Postgres);
    let mariadb = DbServer::start(Kind::Mariadb);
    let mut backends = vec![("sqlite", sqlite)];
    backends.extend(postgres.as_ref().map(|s| ("postgres", s.url.clone())));
    let (rounds, seconds) = (setting("ROUNDS", 7) as usize, setting("SECONDS", 3));
    runtime.block_on(async {
        println!(
            "routed throughput, echo, {CONNECTIONS} connections × {IN_FLIGHT} in flight, {seconds} s rounds; {rounds} pairs (order alternating), medians"
        );
        println!(
            "{:<10} {:>14} {:>14} {:>8} {:>26} | {:>10} {:>10} {:>8} {:>26}",
            "backend", "history off", "history on", "cost", "cost per pair", "CPU off", "CPU on", "CPU cost", "CPU cost per pair"
        );
        for (name, url) in &backends {
            let off_host = HostProcess::spawn(&["echo"], &host_config(url, false));
            let on_host = HostProcess::spawn(&["echo"], &host_config(url, true));
            for (host, history) in [(&off_host, false), (&on_host, true)] {
                round(host, history, 1).await;
            }
            let (mut off, mut on, mut costs) = (Vec::new(), Vec::new(), Vec::new());
            let (mut cpu_off, mut cpu_on, mut cpu_costs) = (Vec::new(), Vec::new(), Vec::new());
            for pair in 0..rounds {
                // Paired rounds: a noisy moment moves both sides of a pair.
                let (a, b) = if pair % 2 == 0 {
                    let a = round(&off_host, false, seconds).await;
                    (a, round(&on_host, true, seconds).await)
                } else {
                    let b = round(&on_host, true, seconds).await;
                    (round(&off_host, false, seconds).await, b)
                };
                off.push(a.rate);
                on.push(b.rate);
                costs.push((1.0 - b.rate / a.rate) * 100.0);
                cpu_off.push(a.cpu_us);
                cpu_on.push(b.cpu_us);
                cpu_costs.push((1.0 - a.cpu_us / b.cpu_us) * 100.0);
            }
            let each = |costs: &[f64]| costs.iter().map(|c| format!("{c:.0}")).collect::<Vec<_>>().join(" ");
            let (each_rate, each_cpu) = (each(&costs), each(&cpu_costs));
            let (off, on, cost) = (median(off), median(on), median(costs));
            let (cpu_off, cpu_on, cpu_cost) = (median(cpu_off), median(cpu_on), median(cpu_costs));
            println!(
                "{name:<10} {off:>10.0} msg/s {on:>10.0} msg/s {cost:>7.1}% {each_rate:>26} | {cpu_off:>7.1} µs {cpu_on:>7.1} µs {cpu_cost:>7.1}% {each_cpu:>26}"
            );
        }
        println!(
            "(cost: the median of the pairs' costs; CPU: the host process's CPU time per message, the history host's until \
             its writer caught up; CPU cost: the share of the history host's CPU that history takes; a database server's \
             own CPU is not counted)"
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

/// A host on `url` with history on or off, no rate limit; its own data
/// folder (so its own SQLite file).
fn host_config(url: &str, history: bool) -> String {
    let url = if url.starts_with("sqlite:") { String::new() } else { format!("url = {url:?}\n") };
    format!("[limits]\nmessages_per_second = 0\n[storage]\n{url}[storage.history]\nenabled = {history}\n")
}

/// A timed round of pipelined echoes through `host`; with `history` on,
/// the CPU counted runs until its writer has caught up with the round,
/// and a round whose history was not written (dropped, or refused by the
/// database) fails the bench rather than measure nothing.
async fn round(host: &HostProcess, history: bool, seconds: u64) -> Round {
    let metrics = format!("http://{}/metrics", host.addr);
    let written_before = counter(&metrics, "switchyard_history_written_total").await;
    let cpu_before = cpu_time(host.pid()).expect("the host's CPU time");
    let (rate, answered) = echo_load(&host.addr, CONNECTIONS, IN_FLIGHT, seconds).await;
    if history {
        // Every answered message, and each connection's open record.
        let due = written_before + answered + CONNECTIONS as u64;
        let started = Instant::now();
        while counter(&metrics, "switchyard_history_written_total").await < due {
            let dropped = counter(&metrics, "switchyard_history_dropped_total").await;
            assert_eq!(dropped, 0, "history dropped records: the round would not measure its cost");
            assert!(started.elapsed() < Duration::from_secs(300), "history never wrote the round's messages");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let cpu = cpu_time(host.pid()).expect("the host's CPU time") - cpu_before;
    Round { rate, cpu_us: cpu.as_secs_f64() * 1e6 / answered.max(1) as f64 }
}

/// The counter `name` at `metrics`.
async fn counter(metrics: &str, name: &str) -> u64 {
    metric_at(metrics, name).await.0.unwrap_or(0.0) as u64
}
