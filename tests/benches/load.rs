//! Run with: cargo build --release -p switchyard-cli && cargo bench -p switchyard-tests --bench load
//!
//! A load generator with its baselines in the same run. Each scenario opens
//! N WebSocket connections on loopback and keeps K requests in flight on
//! each (or sends at a fixed total rate) for T seconds; every reply is
//! matched to its request by id and checked for content, and errors and
//! missing replies are counted. Latencies go into an HDR histogram.
//!
//! Servers, each its own process:
//! - `echo`: a bare tokio-tungstenite echo server (the kit's `echo`, its
//!   own process): the ceiling of the stack;
//! - `native`: Switchyard answering the built-in `ping` (the whole host
//!   path, no WebAssembly);
//! - `wasm`: Switchyard answering `get_time` through the Rust `clock`
//!   plugin.
//!
//! Every figure is printed beside its ratio to the echo baseline: absolute
//! numbers drift on shared machines, ratios measured in one run do not.
//!
//! Flags (after `--`): `--connections N` (100), `--in-flight K` (1),
//! `--seconds T` (5), `--rate R` (total requests a second; then K is
//! ignored), `--requests N` (stop sending after N requests in all, spread
//! over the connections, or at T, whichever comes first: an exact count
//! for a host run under an instruction counter), `--only echo,native,wasm`, `--host 127.0.0.1:PORT` (a host
//! already running, e.g. under `perf`; it must serve `clock` and have its
//! rate limits off), `--before PATH` (another build of the host, e.g. the
//! commit before a change, measured in the same run as `before-native`
//! and `before-wasm`), `--config TOML` (more host settings, e.g.
//! `'[plugins.cpu_shares]\nclock = 1.0'` to let `clock` run on every
//! worker thread, or `'[storage.history]\nenabled = false'`; tables only,
//! since the test kit writes `[plugins]` itself), `--kv-probe` (beside
//! each Switchyard scenario's load, one more connection sends the
//! `stateful` fixture's `state.put`, a durable kv write, every 10 ms, and
//! its latency is reported on a line of its own: what a plugin's kv
//! writes wait while the host is loaded; with `--host`, that host must
//! serve `stateful` too). Traffic goes to loopback only and
//! every run is bounded by `--seconds` plus a 3 s drain.

use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde::Deserialize;
use serde_json::value::RawValue;
use std::collections::VecDeque;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

/// How long a run waits for the replies still in flight when it stops sending.
const DRAIN: Duration = Duration::from_secs(3);

#[derive(Clone, Debug)]
struct Settings {
    connections: usize,
    in_flight: usize,
    seconds: u64,
    rate: Option<f64>,
    only: Vec<String>,
    /// A host already running (to profile it), instead of spawning one.
    host: Option<String>,
    /// Another build of the host, measured in the same run.
    before: Option<String>,
    /// More of the spawned hosts' config.
    config: String,
    /// A paced kv write beside each Switchyard scenario's load.
    kv_probe: bool,
    /// At most this many requests in all.
    requests: Option<u64>,
}

fn settings() -> Settings {
    let mut settings = Settings { connections: 100, in_flight: 1, seconds: 5, rate: None, only: Vec::new(), host: None, before: None, config: String::new(), kv_probe: false, requests: None };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut args = args.iter();
    while let Some(flag) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| panic!("{flag} needs a value")).clone();
        match flag.as_str() {
            "--connections" => settings.connections = value().parse().expect("--connections N"),
            "--in-flight" => settings.in_flight = value().parse().expect("--in-flight K"),
            "--seconds" => settings.seconds = value().parse().expect("--seconds T"),
            "--rate" => settings.rate = Some(value().parse().expect("--rate R")),
            "--only" => settings.only = value().split(',').map(str::to_owned).collect(),
            "--host" => settings.host = Some(value()),
            "--before" => settings.before = Some(value()),
            "--config" => settings.config = value().replace("\\n", "\n"),
            "--kv-probe" => settings.kv_probe = true,
            "--requests" => settings.requests = Some(value().parse().expect("--requests N")),
            // `cargo bench` passes `--bench`; criterion-style filters are not used.
            _ => {}
        }
    }
    assert!(settings.connections > 0 && settings.in_flight > 0 && settings.seconds > 0);
    settings
}

/// What one scenario sends and expects back.
struct Scenario {
    name: &'static str,
    what: &'static str,
    url: String,
    /// The request with this id.
    request: fn(&str) -> String,
    /// Whether the reply text answers the request with id `id`.
    check: fn(&Reply, &str) -> bool,
    /// The server's process, whose CPU time is measured.
    pid: Option<u32>,
    /// Whether the server is a Switchyard host (serving `stateful`, for
    /// `--kv-probe`).
    switchyard: bool,
}

/// The fields of a reply the checks read.
#[derive(Deserialize)]
struct Reply<'a> {
    #[serde(rename = "type", default)]
    kind: Option<&'a str>,
    #[serde(borrow, default)]
    id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
}

fn id_is(reply: &Reply, id: &str) -> bool {
    reply.id.is_some_and(|raw| raw.get().len() == id.len() + 2 && raw.get()[1..].starts_with(id))
}

fn get_time(id: &str) -> String {
    format!(r#"{{"type":"get_time","id":"{id}"}}"#)
}

fn ping(id: &str) -> String {
    format!(r#"{{"type":"ping","id":"{id}"}}"#)
}

fn state_put(id: &str) -> String {
    format!(r#"{{"type":"state.put","id":"{id}","data":{{"value":"{id}"}}}}"#)
}

/// How often the kv probe writes.
const KV_PROBE_EVERY: Duration = Duration::from_millis(10);

/// What one run measured.
struct Measured {
    answered: u64,
    errors: u64,
    missing: u64,
    elapsed: Duration,
    latency: Histogram<u64>,
}

impl Measured {
    fn per_second(&self) -> f64 {
        self.answered as f64 / self.elapsed.as_secs_f64()
    }
}

fn main() {
    if switchyard_tests::echo::serve_if_asked() {
        return;
    }
    let settings = settings();
    let wanted = |name: &str| settings.only.is_empty() || settings.only.iter().any(|o| o == name);
    let echo = wanted("echo").then(switchyard_tests::echo::EchoProcess::spawn);
    let limits = format!(
        "[limits]\nmessages_per_second = 0\nconnections_per_second_per_ip = 0\nmax_connections_per_client = {}\n{}\n",
        settings.connections + 10,
        settings.config
    );
    let spawned = (settings.host.is_none() && (wanted("native") || wanted("wasm")))
        .then(|| switchyard_tests::HostProcess::spawn(&["clock", "stateful"], &limits));
    let before = settings
        .before
        .as_ref()
        .map(|binary| switchyard_tests::HostProcess::spawn_binary(std::path::Path::new(binary), &["clock", "stateful"], &limits));
    let host = settings.host.clone().or_else(|| spawned.as_ref().map(|h| h.addr.clone()));
    let host_pid = spawned.as_ref().map(|h| h.pid());
    let mut scenarios = Vec::new();
    if let Some(echo) = &echo {
        let check: fn(&Reply, &str) -> bool = |reply, id| reply.kind == Some("get_time") && id_is(reply, id);
        scenarios.push(Scenario { name: "echo", what: "bare tokio-tungstenite echo", url: format!("ws://{}/", echo.addr), request: get_time, check, pid: Some(echo.pid()), switchyard: false });
    }
    if let Some(host) = &host {
        if wanted("native") {
            let check: fn(&Reply, &str) -> bool = |reply, id| reply.kind == Some("pong") && id_is(reply, id) && reply.data.is_some();
            scenarios.push(Scenario { name: "native", what: "Switchyard, built-in ping", url: format!("ws://{host}/ws"), request: ping, check, pid: host_pid, switchyard: true });
        }
        if wanted("wasm") {
            let check: fn(&Reply, &str) -> bool =
                |reply, id| reply.kind == Some("reply") && id_is(reply, id) && reply.data.is_some_and(|d| d.get().contains("unix_ms"));
            scenarios.push(Scenario { name: "wasm", what: "Switchyard, get_time via clock.wasm", url: format!("ws://{host}/ws"), request: get_time, check, pid: host_pid, switchyard: true });
        }
    }
    if let Some(before) = &before {
        let (host, pid) = (&before.addr, Some(before.pid()));
        if wanted("native") {
            let check: fn(&Reply, &str) -> bool = |reply, id| reply.kind == Some("pong") && id_is(reply, id) && reply.data.is_some();
            scenarios.push(Scenario { name: "before-native", what: "the --before build, built-in ping", url: format!("ws://{host}/ws"), request: ping, check, pid, switchyard: true });
        }
        if wanted("wasm") {
            let check: fn(&Reply, &str) -> bool =
                |reply, id| reply.kind == Some("reply") && id_is(reply, id) && reply.data.is_some_and(|d| d.get().contains("unix_ms"));
            scenarios.push(Scenario { name: "before-wasm", what: "the --before build, get_time via clock.wasm", url: format!("ws://{host}/ws"), request: get_time, check, pid, switchyard: true });
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    let load = match settings.rate {
        Some(rate) => format!("{rate} req/s in all"),
        None => format!("{} in flight each", settings.in_flight),
    };
    println!("{} connections, {load}, {} s per scenario, loopback; latency in µs", settings.connections, settings.seconds);
    println!(
        "{:<13} {:>10} {:>7} {:>8} {:>8} {:>8} {:>8} {:>9} {:>7} {:>8} {:>10}  server",
        "scenario", "msg/s", "×echo", "p50", "p90", "p99", "p99.9", "max", "errors", "missing", "server µs/msg"
    );
    let mut baseline: Option<f64> = None;
    for scenario in &scenarios {
        let cpu_before = scenario.pid.and_then(switchyard_tests::cpu_time);
        let (measured, probe) = runtime.block_on(run(scenario, &settings));
        // The server's CPU time per answered message: what each message costs
        // it, whatever share of the two cores the client took.
        let cpu = match (cpu_before, scenario.pid.and_then(switchyard_tests::cpu_time)) {
            (Some(before), Some(after)) if measured.answered > 0 => format!("{:.1}", (after - before).as_secs_f64() * 1e6 / measured.answered as f64),
            _ => "-".to_owned(),
        };
        let rate = measured.per_second();
        if scenario.name == "echo" {
            baseline = Some(rate);
        }
        let ratio = baseline.map_or("-".to_owned(), |b| format!("{:.2}", rate / b));
        let h = &measured.latency;
        println!(
            "{:<13} {:>10.0} {:>7} {:>8} {:>8} {:>8} {:>8} {:>9} {:>7} {:>8} {:>10}  {}",
            scenario.name,
            rate,
            ratio,
            h.value_at_quantile(0.5),
            h.value_at_quantile(0.9),
            h.value_at_quantile(0.99),
            h.value_at_quantile(0.999),
            h.max(),
            measured.errors,
            measured.missing,
            cpu,
            scenario.what,
        );
        if let Some(probe) = probe {
            let h = &probe.latency;
            println!(
                "{:<13} kv probe, state.put every {} ms beside it: {} answered, p50 {} p99 {} max {} µs, {} errors, {} missing",
                "",
                KV_PROBE_EVERY.as_millis(),
                probe.answered,
                h.value_at_quantile(0.5),
                h.value_at_quantile(0.99),
                h.max(),
                probe.errors,
                probe.missing,
            );
        }
    }
}

/// Run one scenario with every connection at once; and the kv probe's
/// connection beside them, if asked for.
async fn run(scenario: &Scenario, settings: &Settings) -> (Measured, Option<Measured>) {
    let started = Instant::now();
    let stop_at = tokio::time::Instant::now() + Duration::from_secs(settings.seconds);
    let mut connections = Vec::with_capacity(settings.connections);
    // Paced sends start once every connection is open (well within this).
    let epoch = tokio::time::Instant::now() + Duration::from_millis(200);
    for n in 0..settings.connections {
        let url = scenario.url.clone();
        let (request, check) = (scenario.request, scenario.check);
        // Paced connections tick at evenly spread phases, as independent
        // clients would: started together, 100 connections would send in
        // bursts of 100, and the queue each burst makes would be measured
        // as the server's latency.
        let pace = settings.rate.map(|rate| {
            let every = Duration::from_secs_f64(settings.connections as f64 / rate);
            (every, epoch + every.mul_f64(n as f64 / settings.connections as f64))
        });
        let in_flight = settings.in_flight;
        // This connection's share of `--requests`: the first ones take the remainder.
        let limit = settings.requests.map_or(u64::MAX, |all| {
            let connections = settings.connections as u64;
            all / connections + u64::from((n as u64) < all % connections)
        });
        let plan = Plan { in_flight, pace, stop_at, limit };
        connections.push(tokio::spawn(async move { connection(n, &url, request, check, plan).await }));
    }
    let probe = (settings.kv_probe && scenario.switchyard).then(|| {
        let url = scenario.url.clone();
        let check: fn(&Reply, &str) -> bool =
            |reply, id| reply.kind == Some("reply") && id_is(reply, id) && reply.data.is_some_and(|d| d.get().contains("stored"));
        let (pace, n) = (Some((KV_PROBE_EVERY, epoch)), settings.connections);
        let plan = Plan { in_flight: 1, pace, stop_at, limit: u64::MAX };
        tokio::spawn(async move { connection(n, &url, state_put, check, plan).await })
    });
    let mut total = Measured { answered: 0, errors: 0, missing: 0, elapsed: Duration::ZERO, latency: histogram() };
    for connection in connections {
        let one = connection.await.expect("connection task");
        total.answered += one.answered;
        total.errors += one.errors;
        total.missing += one.missing;
        total.latency.add(&one.latency).expect("same histogram bounds");
    }
    total.elapsed = started.elapsed().min(Duration::from_secs(settings.seconds)).max(Duration::from_millis(1));
    let probe = match probe {
        Some(probe) => Some(probe.await.expect("kv probe task")),
        None => None,
    };
    (total, probe)
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds")
}

/// How one connection sends.
#[derive(Clone, Copy)]
struct Plan {
    /// Requests kept in flight when pipelining.
    in_flight: usize,
    /// Paced sends instead: every `pace.0`, the first due at `pace.1`.
    pace: Option<(Duration, tokio::time::Instant)>,
    stop_at: tokio::time::Instant,
    /// At most this many requests.
    limit: u64,
}

/// One connection's share: pipelined or paced sends until `stop_at` or
/// `limit` requests, then a bounded drain of the replies still in flight.
async fn connection(n: usize, url: &str, request: fn(&str) -> String, check: fn(&Reply, &str) -> bool, plan: Plan) -> Measured {
    let Plan { in_flight, pace, stop_at, limit } = plan;
    let mut measured = Measured { answered: 0, errors: 0, missing: 0, elapsed: Duration::ZERO, latency: histogram() };
    let socket = match tokio_tungstenite::connect_async(url).await {
        Ok((socket, _)) => socket,
        Err(e) => {
            eprintln!("connection {n}: {e}");
            measured.errors += 1;
            return measured;
        }
    };
    let (mut sink, mut stream) = socket.split();
    // The requests in flight, oldest first, with the time each was sent (for
    // paced sends, the time it was due, so a stalled server is not hidden:
    // no coordinated omission). Replies come back in order on a connection,
    // so the match is almost always the front.
    let mut pending: VecDeque<(String, Instant)> = VecDeque::new();
    let mut seq = 0u64;
    let next_id = |seq: &mut u64| {
        *seq += 1;
        format!("c{n}-{seq}")
    };
    let pipelined = pace.is_none();
    let mut ticker = pace.map(|(every, first)| {
        let mut ticker = tokio::time::interval_at(first, every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        ticker
    });
    if pipelined {
        for _ in 0..(in_flight as u64).min(limit) {
            let id = next_id(&mut seq);
            let at = Instant::now();
            let _ = sink.feed(Message::text(request(&id))).await;
            pending.push_back((id, at));
        }
        let _ = sink.flush().await;
    }
    let drain_until = stop_at + DRAIN;
    loop {
        let sending = tokio::time::Instant::now() < stop_at && seq < limit;
        if !sending && pending.is_empty() {
            break;
        }
        tokio::select! {
            due = next_tick(ticker.as_mut(), sending) => {
                let id = next_id(&mut seq);
                let sent = sink.send(Message::text(request(&id))).await;
                pending.push_back((id, due));
                if sent.is_err() {
                    measured.errors += 1;
                    break;
                }
            }
            frame = stream.next() => {
                let text = match frame {
                    Some(Ok(Message::Text(text))) => text,
                    Some(Ok(_)) => continue,
                    _ => break,
                };
                let Ok(reply) = serde_json::from_str::<Reply>(text.as_str()) else {
                    measured.errors += 1;
                    continue;
                };
                // Acks and events carry no id of ours.
                let Some(at) = pending.iter().position(|(id, _)| id_is(&reply, id)) else { continue };
                let Some((id, sent)) = pending.remove(at) else { continue };
                if check(&reply, &id) {
                    measured.answered += 1;
                    let _ = measured.latency.record(sent.elapsed().as_micros().max(1) as u64);
                } else {
                    measured.errors += 1;
                }
                if pipelined && tokio::time::Instant::now() < stop_at && seq < limit {
                    let id = next_id(&mut seq);
                    let at = Instant::now();
                    let sent = sink.send(Message::text(request(&id))).await;
                    pending.push_back((id, at));
                    if sent.is_err() {
                        measured.errors += 1;
                        break;
                    }
                }
            }
            _ = tokio::time::sleep_until(drain_until) => break,
        }
    }
    measured.missing = pending.len() as u64;
    let _ = sink.send(Message::Close(None)).await;
    measured
}

/// The next paced send's due time; never, when not pacing or not sending.
async fn next_tick(ticker: Option<&mut tokio::time::Interval>, sending: bool) -> Instant {
    match ticker {
        Some(ticker) if sending => ticker.tick().await.into_std(),
        _ => std::future::pending().await,
    }
}

