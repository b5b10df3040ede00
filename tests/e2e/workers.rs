//! Remote workers: registration, the four balancing strategies (checked
//! statistically), timeouts, no workers, a worker dying mid-request with
//! and without idempotency, rejoining, and the action server's two-port
//! layout with its verbatim formats.

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::Duration;
use switchyard::config::{Ack, EndpointConfig, EndpointRole, ListenerConfig};
use switchyard::config::workers::{Serve, Strategy, TypeRule};
use switchyard::Config;
use switchyard_client::{RunningWorker, Worker, WorkerConfig};
use switchyard_tests::{Client, Host, PATIENCE};
use tokio_tungstenite::tungstenite::Message;

fn rule(kind: &str, serve: Serve, idempotent: bool, strategy: Option<Strategy>) -> TypeRule {
    TypeRule { kind: kind.into(), serve, idempotent, strategy }
}

/// A `/workers` endpoint beside the defaults, and `rules`.
fn with_workers(config: &mut Config, rules: Vec<TypeRule>) {
    let mut endpoint = EndpointConfig::defaults().remove(1);
    endpoint.path = "/workers".into();
    endpoint.role = EndpointRole::Workers;
    config.endpoints.push(endpoint);
    config.workers.types = rules;
}

fn fast() -> WorkerConfig {
    WorkerConfig { heartbeat_interval: Duration::from_millis(500), ..WorkerConfig::default() }
}

/// A worker serving `job` that answers with its id after `delay`.
fn job_worker(url: &str, id: &str, weight: f64, delay: Duration) -> RunningWorker {
    let me = id.to_owned();
    Worker::connect(url)
        .worker_id(id)
        .weight(weight)
        .concurrency(16)
        .config(fast())
        .handle("job", move |_params| {
            let me = me.clone();
            async move {
                tokio::time::sleep(delay).await;
                Ok(json!({ "worker": me }))
            }
        })
        .spawn()
        .unwrap()
}

/// Wait until the host lists `n` workers.
async fn until_workers(host: &Host, n: usize) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let status: Value = reqwest::get(host.http("/api/status")).await.unwrap().json().await.unwrap();
        if status["workers"].as_array().map_or(0, Vec::len) == n {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "workers never reached {n}: {}", status["workers"]);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Send `n` `job` requests one after another; replies per worker.
async fn tally(client: &mut Client, n: usize) -> HashMap<String, usize> {
    let mut served = HashMap::new();
    for _ in 0..n {
        let reply = client.call("job", json!({})).await;
        assert_eq!(reply["type"], "reply", "{reply}");
        assert_eq!(reply["meta"]["plugin"], reply["data"]["worker"], "served_by names the worker");
        *served.entry(reply["data"]["worker"].as_str().unwrap().to_owned()).or_default() += 1;
    }
    served
}

async fn three_workers(strategy: Strategy) -> (Host, Vec<RunningWorker>) {
    let host = Host::start_with(&[], |c| with_workers(c, vec![rule("job", Serve::Workers, false, Some(strategy))])).await;
    let url = host.endpoint("/workers");
    let workers = vec![
        job_worker(&url, "w1", 1.0, Duration::ZERO),
        job_worker(&url, "w2", 2.0, Duration::ZERO),
        job_worker(&url, "w3", 3.0, Duration::ZERO),
    ];
    until_workers(&host, 3).await;
    (host, workers)
}

fn within(served: &HashMap<String, usize>, id: &str, expected: f64, tolerance: f64) {
    let got = served.get(id).copied().unwrap_or(0) as f64;
    assert!((got - expected).abs() <= tolerance, "{id}: {got} served, expected {expected} ± {tolerance}: {served:?}");
}

#[tokio::test]
async fn round_robin_random_and_weighted_random_distribute_as_they_say() {
    // Round robin: exactly even, whatever the weights.
    let (host, workers) = three_workers(Strategy::RoundRobin).await;
    let served = tally(&mut host.connect().await, 300).await;
    for id in ["w1", "w2", "w3"] {
        within(&served, id, 100.0, 1.0);
    }
    drop(workers);
    host.shutdown().await;

    // Random: even in expectation. 600 draws of p = 1/3: sd ≈ 11.5; allow 5 sd.
    let (host, workers) = three_workers(Strategy::Random).await;
    let served = tally(&mut host.connect().await, 600).await;
    for id in ["w1", "w2", "w3"] {
        within(&served, id, 200.0, 58.0);
    }
    drop(workers);
    host.shutdown().await;

    // Weighted random: by weight 1:2:3 (100, 200, 300 of 600; sd ≤ 12.3).
    let (host, workers) = three_workers(Strategy::WeightedRandom).await;
    let served = tally(&mut host.connect().await, 600).await;
    within(&served, "w1", 100.0, 50.0);
    within(&served, "w2", 200.0, 58.0);
    within(&served, "w3", 300.0, 62.0);
    drop(workers);
    host.shutdown().await;
}

#[tokio::test]
async fn least_loaded_avoids_a_slow_worker() {
    let host = Host::start_with(&[], |c| with_workers(c, vec![rule("job", Serve::Workers, false, Some(Strategy::LeastLoaded))])).await;
    let url = host.endpoint("/workers");
    let _workers = [
        job_worker(&url, "fast-1", 1.0, Duration::from_millis(2)),
        job_worker(&url, "fast-2", 1.0, Duration::from_millis(2)),
        job_worker(&url, "slow", 1.0, Duration::from_millis(300)),
    ];
    until_workers(&host, 3).await;
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let url = host.url();
        tasks.push(tokio::spawn(async move { tally(&mut Client::connect(&url).await, 25).await }));
    }
    let mut served: HashMap<String, usize> = HashMap::new();
    for task in tasks {
        for (id, n) in task.await.unwrap() {
            *served.entry(id).or_default() += n;
        }
    }
    let slow = served.get("slow").copied().unwrap_or(0);
    assert!(slow <= 10, "least_loaded sent {slow} of 100 to the slow worker: {served:?}");
    host.shutdown().await;
}

#[tokio::test]
async fn no_workers_and_a_worker_timeout_say_so() {
    let host = Host::start_with(&["echo"], |c| {
        with_workers(c, vec![rule("job", Serve::Workers, false, None), rule("echo", Serve::WorkersThenPlugin, false, None)]);
        c.workers.timeout_ms = 400;
    })
    .await;
    let mut client = host.connect().await;
    let reply = client.call("job", json!({})).await;
    assert_eq!((reply["data"]["code"].as_str(), reply["data"]["message"].as_str()), (Some("NO_AVAILABLE_WORKERS"), Some("No available workers")));
    // With a plugin as fallback, the plugin serves while no worker is there.
    assert_eq!(client.call("echo", json!({"message": "m"})).await["meta"]["plugin"], "echo");

    let _slow = job_worker(&host.endpoint("/workers"), "sleepy", 1.0, Duration::from_secs(3));
    until_workers(&host, 1).await;
    let reply = client.call("job", json!({})).await;
    assert_eq!((reply["data"]["code"].as_str(), reply["data"]["message"].as_str()), (Some("WORKER_TIMEOUT"), Some("Worker response timeout")));
    host.shutdown().await;
}

/// A worker written against the raw protocol: registers as `id` for
/// `types`, then, for each request, dies (`die`) or answers in the action
/// server's own reply shape (top-level `success` and `data`).
async fn raw_worker(url: &str, id: &str, types: &[&str], die: bool) -> tokio::task::JoinHandle<()> {
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let register = json!({"type": "register", "data": {"worker_id": id, "types": types, "weight": 1.0, "concurrency": 4}});
    socket.send(Message::text(register.to_string())).await.unwrap();
    let registered: Value = match socket.next().await {
        Some(Ok(Message::Text(text))) => serde_json::from_str(&text).unwrap(),
        other => panic!("expected registered, got {other:?}"),
    };
    assert_eq!((registered["type"].as_str(), registered["data"]["worker_id"].as_str()), (Some("registered"), Some(id)));
    let id = id.to_owned();
    tokio::spawn(async move {
        while let Some(Ok(message)) = socket.next().await {
            let Message::Text(text) = message else { continue };
            let frame: Value = serde_json::from_str(&text).unwrap();
            if frame["type"] != "request" {
                continue;
            }
            if die {
                return; // drops the socket with the request unanswered
            }
            let answer = json!({"type": "response", "msg_id": frame["msg_id"], "success": true,
                "data": {"by": id, "action": frame["data"]["action"], "params": frame["data"]["params"]}});
            socket.send(Message::text(answer.to_string())).await.unwrap();
        }
    })
}

#[tokio::test]
async fn a_worker_dying_mid_request_is_retried_only_if_idempotent_and_may_rejoin() {
    let host = Host::start_with(&[], |c| {
        with_workers(
            c,
            vec![rule("safe", Serve::Workers, true, Some(Strategy::RoundRobin)), rule("unsafe", Serve::Workers, false, Some(Strategy::RoundRobin))],
        )
    })
    .await;
    let url = host.endpoint("/workers");
    let _steady = Worker::connect(&url)
        .worker_id("b-steady")
        .concurrency(4)
        .config(fast())
        .handle("safe", |_| async { Ok(json!("steady")) })
        .handle("unsafe", |_| async { Ok(json!("steady")) })
        .spawn()
        .unwrap();
    raw_worker(&url, "a-doomed", &["safe", "unsafe"], true).await;
    until_workers(&host, 2).await;
    let mut client = host.connect().await;

    // Round robin picks a-doomed first; it dies; the idempotent request is
    // retried on b-steady.
    let reply = client.call("safe", json!({})).await;
    assert_eq!((reply["type"].as_str(), reply["meta"]["plugin"].as_str()), (Some("reply"), Some("b-steady")), "{reply}");
    until_workers(&host, 1).await;

    // A worker rejoins under the same id, and dies again: not retried.
    raw_worker(&url, "a-doomed", &["safe", "unsafe"], true).await;
    until_workers(&host, 2).await;
    let reply = client.call("unsafe", json!({})).await;
    assert_eq!(reply["data"]["code"], "WORKER_DISCONNECTED", "{reply}");
    assert!(reply["data"]["message"].as_str().unwrap().contains("not marked idempotent"), "{reply}");
    until_workers(&host, 1).await;

    // It rejoins healthy and gets its share again.
    raw_worker(&url, "a-doomed", &["safe", "unsafe"], false).await;
    until_workers(&host, 2).await;
    let mut by = HashMap::new();
    for _ in 0..4 {
        let reply = client.call("unsafe", json!({"n": 1})).await;
        *by.entry(reply["meta"]["plugin"].as_str().unwrap().to_owned()).or_insert(0) += 1;
    }
    assert_eq!((by.get("a-doomed"), by.get("b-steady")), (Some(&2), Some(&2)), "{by:?}");
    host.shutdown().await;
}

#[tokio::test]
async fn the_action_servers_two_port_layout_verbatim() {
    let loopback = "127.0.0.1:0".parse().unwrap();
    let host = Host::start_with(&[], |c| {
        c.listeners = vec![
            ListenerConfig { listen: loopback, role: EndpointRole::Workers, ack: Ack::None, auth: false },
            ListenerConfig { listen: loopback, role: EndpointRole::Clients, ack: Ack::None, auth: false },
        ];
        // As in the action server, every command goes to the workers.
        c.workers.types = vec![rule("*", Serve::Workers, false, None)];
    })
    .await;
    let (workers, requesters) = (host.server().listener_addrs()[0], host.server().listener_addrs()[1]);
    let (mut requester, _) = tokio_tungstenite::connect_async(format!("ws://{requesters}")).await.unwrap();
    let mut ask = async |request: Value| -> Value {
        requester.send(Message::text(request.to_string())).await.unwrap();
        loop {
            match tokio::time::timeout(PATIENCE, requester.next()).await.unwrap() {
                Some(Ok(Message::Text(text))) => return serde_json::from_str(&text).unwrap(),
                Some(Ok(_)) => continue,
                other => panic!("requester connection ended: {other:?}"),
            }
        }
    };

    // No worker yet: the old server's words.
    let reply = ask(json!({"request_id": "r-0", "command": "get_time", "data": {}})).await;
    assert_eq!(reply, json!({"request_id": "r-0", "success": false, "data": null, "error": "No available workers", "code": "NO_AVAILABLE_WORKERS", "processed_by": null}));

    raw_worker(&format!("ws://{workers}"), "worker-1", &["get_time"], false).await;
    until_workers(&host, 1).await;
    let reply = ask(json!({"request_id": "r-1", "command": "get_time", "data": {"tz": "UTC"}})).await;
    assert_eq!(
        reply,
        json!({"request_id": "r-1", "success": true, "data": {"by": "worker-1", "action": "get_time", "params": {"tz": "UTC"}}, "error": null, "processed_by": "worker-1"})
    );
    host.shutdown().await;
}

#[tokio::test]
async fn a_silent_worker_leaves_the_rotation() {
    let host = Host::start_with(&[], |c| {
        with_workers(c, vec![rule("job", Serve::Workers, false, None)]);
        c.websocket.heartbeat_interval_ms = 100;
        c.websocket.idle_timeout_ms = 1_000;
        c.workers.heartbeat_timeout_ms = 400;
    })
    .await;
    // Registers, then never reads or writes again: no pongs, no heartbeats.
    let (mut silent, _) = tokio_tungstenite::connect_async(host.endpoint("/workers")).await.unwrap();
    let register = json!({"type": "register", "data": {"worker_id": "mute", "types": ["job"]}});
    silent.send(Message::text(register.to_string())).await.unwrap();
    until_workers(&host, 1).await;
    until_workers(&host, 0).await;
    let reply = host.connect().await.call("job", json!({})).await;
    assert_eq!(reply["data"]["code"], "NO_AVAILABLE_WORKERS", "{reply}");
    drop(silent);
    host.shutdown().await;
}
