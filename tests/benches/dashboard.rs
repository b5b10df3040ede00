//! Run with: cargo build --release -p switchyard-cli && cargo bench -p switchyard-tests --bench dashboard
//!
//! What open dashboards cost the host's routed throughput. One host process
//! serves `echo` (a WebAssembly call per message); 50 connections keep 4
//! requests in flight each, every reply matched by id and checked. Each
//! pair of rounds runs once with no dashboard and once with 10 (admin
//! WebSockets subscribed as the page subscribes, to `dashboard`, `status`
//! and `config`, reading every frame: the snapshot with its counts and
//! sampled tail), the order alternating from pair to pair, in the same
//! run, so the machine's drift falls on both sides.
//! Printed per round: replies a second, the server's CPU time per reply
//! (from `/proc`), and what each dashboard received: feed frames a second
//! (fewest and most over the dashboards), bytes a frame and tail entries a
//! frame. Then the medians, and the median of the pairs' differences.
//!
//! Flags (after `--`): `--seconds T` (5 per round), `--rounds R` (5 pairs),
//! `--connections N` (50), `--in-flight K` (4), `--watchers W` (10).

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use switchyard_tests::pipeline::echo_load;
use tokio_tungstenite::tungstenite::Message;

const ADMIN: &str = "bench-admin-key-0123456789";

struct Settings {
    seconds: u64,
    rounds: usize,
    connections: usize,
    in_flight: usize,
    watchers: usize,
}

fn settings() -> Settings {
    let mut settings = Settings { seconds: 5, rounds: 5, connections: 50, in_flight: 4, watchers: 10 };
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let mut args = args.iter();
    while let Some(flag) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| panic!("{flag} needs a value")).parse::<u64>().expect("a number");
        match flag.as_str() {
            "--seconds" => settings.seconds = value(),
            "--rounds" => settings.rounds = value() as usize,
            "--connections" => settings.connections = value() as usize,
            "--in-flight" => settings.in_flight = value() as usize,
            "--watchers" => settings.watchers = value() as usize,
            other => panic!("unknown flag {other}"),
        }
    }
    settings
}

fn main() {
    let settings = settings();
    let toml = format!(
        "[limits]\nmessages_per_second = 0\nconnections_per_second_per_ip = 0\nmax_connections_per_client = {}\n\
         [[auth.keys]]\nname = \"ops\"\nkey = \"{ADMIN}\"\nadmin = true\n",
        settings.connections + settings.watchers + 10
    );
    let host = switchyard_tests::HostProcess::spawn(&["echo"], &toml);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    println!(
        "{} connections × {} in flight, `echo` (wasm), {} s rounds, 0 vs {} dashboard feed subscribers",
        settings.connections, settings.in_flight, settings.seconds, settings.watchers
    );
    println!(
        "{:<6} {:<10} {:>10} {:>14} {:>18} {:>12} {:>12}",
        "pair", "dashboards", "replies/s", "server µs/msg", "frames/s each", "bytes/frame", "tail/frame"
    );
    // Warm the instance pool and the connections' path first.
    runtime.block_on(echo_load(&host.addr, settings.connections, settings.in_flight, 1));
    let (mut off, mut on) = (Vec::new(), Vec::new());
    for pair in 0..settings.rounds {
        let order = if pair % 2 == 0 { [0, settings.watchers] } else { [settings.watchers, 0] };
        for watchers in order {
            let cpu_before = switchyard_tests::cpu_time(host.pid());
            let (rate, answered, seen) = runtime.block_on(async {
                let seen: Vec<Arc<Seen>> = (0..watchers).map(|_| Arc::new(Seen::default())).collect();
                let mut watching = Vec::new();
                for counts in &seen {
                    watching.push(tokio::spawn(watch(host.addr.clone(), Arc::clone(counts))));
                }
                // Each dashboard has subscribed and had a snapshot before the round starts.
                while seen.iter().any(|s| s.frames.load(Ordering::Relaxed) == 0) {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                let before: Vec<Seen> = seen.iter().map(|s| s.now()).collect();
                let (rate, answered) = echo_load(&host.addr, settings.connections, settings.in_flight, settings.seconds).await;
                let during: Vec<Seen> = seen.iter().zip(&before).map(|(s, b)| s.now().minus(b)).collect();
                for task in watching {
                    task.abort();
                }
                (rate, answered, during)
            });
            let cpu = match (cpu_before, switchyard_tests::cpu_time(host.pid())) {
                (Some(b), Some(a)) if answered > 0 => (a - b).as_secs_f64() * 1e6 / answered as f64,
                _ => f64::NAN,
            };
            let frames: Vec<f64> = seen.iter().map(|s| s.frames.load(Ordering::Relaxed) as f64 / settings.seconds as f64).collect();
            let (frame_count, bytes, tail) = seen.iter().fold((0, 0, 0), |(f, b, t), s| {
                (f + s.frames.load(Ordering::Relaxed), b + s.bytes.load(Ordering::Relaxed), t + s.tail.load(Ordering::Relaxed))
            });
            let (fewest, most) = frames.iter().fold((f64::INFINITY, 0f64), |(lo, hi), f| (lo.min(*f), hi.max(*f)));
            let each = if watchers == 0 { "-".to_owned() } else { format!("{fewest:.1}-{most:.1}") };
            let per_frame = |n: u64| if frame_count == 0 { "-".to_owned() } else { format!("{:.0}", n as f64 / frame_count as f64) };
            println!(
                "{:<6} {watchers:<10} {rate:>10.0} {cpu:>14.2} {each:>18} {:>12} {:>12}",
                pair + 1,
                per_frame(bytes),
                per_frame(tail)
            );
            if watchers == 0 { off.push((rate, cpu)) } else { on.push((rate, cpu)) }
            // Let the feed notice it has no subscribers left.
            std::thread::sleep(Duration::from_secs(1));
        }
    }
    let median = |mut values: Vec<f64>| {
        values.sort_by(|a, b| a.total_cmp(b));
        values[values.len() / 2]
    };
    let (off_rate, on_rate) = (median(off.iter().map(|v| v.0).collect()), median(on.iter().map(|v| v.0).collect()));
    let (off_cpu, on_cpu) = (median(off.iter().map(|v| v.1).collect()), median(on.iter().map(|v| v.1).collect()));
    let paired_rate = median(off.iter().zip(&on).map(|(a, b)| (b.0 / a.0 - 1.0) * 100.0).collect());
    let paired_cpu = median(off.iter().zip(&on).map(|(a, b)| (b.1 / a.1 - 1.0) * 100.0).collect());
    println!(
        "median: 0 dashboards {off_rate:.0}/s ({off_cpu:.2} µs/msg), {} dashboards {on_rate:.0}/s ({on_cpu:.2} µs/msg): throughput {:+.1}%, server CPU per message {:+.1}%",
        settings.watchers,
        (on_rate / off_rate - 1.0) * 100.0,
        (on_cpu / off_cpu - 1.0) * 100.0
    );
    println!("median of the {} pairs' differences: throughput {paired_rate:+.1}%, server CPU per message {paired_cpu:+.1}%", off.len());
}

/// What one dashboard received.
#[derive(Default)]
struct Seen {
    frames: AtomicU64,
    bytes: AtomicU64,
    tail: AtomicU64,
}

impl Seen {
    fn now(&self) -> Seen {
        let load = |n: &AtomicU64| AtomicU64::new(n.load(Ordering::Relaxed));
        Seen { frames: load(&self.frames), bytes: load(&self.bytes), tail: load(&self.tail) }
    }

    fn minus(self, before: &Seen) -> Seen {
        let less = |n: AtomicU64, b: &AtomicU64| AtomicU64::new(n.into_inner() - b.load(Ordering::Relaxed));
        Seen { frames: less(self.frames, &before.frames), bytes: less(self.bytes, &before.bytes), tail: less(self.tail, &before.tail) }
    }
}

/// An admin connection subscribed as the dashboard page subscribes,
/// reading every frame as a page would (each parsed); counts the feed's
/// frames, their bytes and tail entries.
async fn watch(addr: String, seen: Arc<Seen>) {
    let mut request = format!("ws://{addr}/ws").into_client_request().expect("request");
    request.headers_mut().insert("authorization", format!("Bearer {ADMIN}").parse().expect("header"));
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.expect("dashboard connects");
    let subscribe = r#"{"type":"subscribe","id":"dashboard-feed","data":{"events":["dashboard","status","config"]}}"#;
    socket.send(Message::text(subscribe)).await.expect("subscribe");
    while let Some(Ok(frame)) = socket.next().await {
        if let Message::Text(text) = frame {
            let Ok(frame) = serde_json::from_str::<Value>(text.as_str()) else { continue };
            if frame["meta"]["topic"] == "dashboard" {
                seen.bytes.fetch_add(text.len() as u64, Ordering::Relaxed);
                let tail = frame["data"]["tail"]["entries"].as_array().map_or(0, Vec::len);
                seen.tail.fetch_add(tail as u64, Ordering::Relaxed);
                seen.frames.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}
