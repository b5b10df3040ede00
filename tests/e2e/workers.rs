//! Remote workers: registration, the four balancing strategies (checked
//! statistically), timeouts, no workers, a worker dying mid-request with
//! and without idempotency, rejoining, and the action server's two-port
//! layout with its verbatim formats; workers that never send `register`,
//! as that server's own clients did not (registered for
//! `workers.default_types`), under every strategy, and refused clearly
//! where no default types are set.

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

/// The two-port layout, every type to workers by `strategy`, and workers
/// that do not register serving every type, as the action server's did.
async fn two_ports_with_implicit_workers(strategy: Strategy) -> Host {
    let loopback = "127.0.0.1:0".parse().unwrap();
    Host::start_with(&[], |c| {
        c.listeners = vec![
            ListenerConfig { listen: loopback, role: EndpointRole::Workers, ack: Ack::None, auth: false },
            ListenerConfig { listen: loopback, role: EndpointRole::Clients, ack: Ack::None, auth: false },
        ];
        c.workers.types = vec![rule("*", Serve::Workers, false, Some(strategy))];
        c.workers.default_types = vec!["*".into()];
        c.workers.register_timeout_ms = 200;
    })
    .await
}

/// `tests/clients/action_worker.py` as `name`: stock Python `websockets`,
/// no `register`; with `hello`, its first frame is a heartbeat.
fn python_worker(url: &str, name: &str, hello: bool) -> tokio::process::Child {
    let mut command = switchyard_tests::python_with_websockets();
    let script = switchyard_tests::workspace_root().join("tests").join("clients").join("action_worker.py");
    command.arg(script).arg(url).arg(name);
    if hello {
        command.arg("--hello");
    }
    command.stdout(std::process::Stdio::null());
    tokio::process::Command::from(command).kill_on_drop(true).spawn().expect("python runs")
}

async fn status_workers(host: &Host) -> Vec<Value> {
    let status: Value = reqwest::get(host.http("/api/status")).await.unwrap().json().await.unwrap();
    status["workers"].as_array().cloned().unwrap_or_default()
}

#[tokio::test]
async fn a_worker_like_the_action_servers_basic_client_serves_requesters_under_each_strategy() {
    for strategy in [Strategy::LeastLoaded, Strategy::RoundRobin, Strategy::Random, Strategy::WeightedRandom] {
        let host = two_ports_with_implicit_workers(strategy).await;
        let (workers, requesters) = (host.server().listener_addrs()[0], host.server().listener_addrs()[1]);
        // One says nothing until asked; one says `heartbeat` first.
        let _quiet = python_worker(&format!("ws://{workers}"), "py-quiet", false);
        let _chatty = python_worker(&format!("ws://{workers}"), "py-chatty", true);
        until_workers(&host, 2).await;
        let listed = status_workers(&host).await;
        let ids: Vec<String> = listed.iter().map(|w| w["id"].as_str().unwrap().to_owned()).collect();
        for worker in &listed {
            assert!(worker["id"].as_str().unwrap().starts_with("worker-"), "a generated id: {worker}");
            assert_eq!((&worker["types"], &worker["weight"], &worker["concurrency"]), (&json!(["*"]), &json!(1.0), &json!(1)), "{worker}");
        }

        let (mut requester, _) = tokio_tungstenite::connect_async(format!("ws://{requesters}")).await.unwrap();
        let mut served: HashMap<String, usize> = HashMap::new();
        for n in 0..40 {
            let (command, data) = if n % 2 == 0 { ("get_time", json!({})) } else { ("calculate", json!({"a": n, "b": 2, "op": "+"})) };
            let request_id = format!("r-{n}");
            requester.send(Message::text(json!({"request_id": request_id, "command": command, "data": data}).to_string())).await.unwrap();
            let reply: Value = loop {
                match tokio::time::timeout(PATIENCE, requester.next()).await.unwrap() {
                    Some(Ok(Message::Text(text))) => break serde_json::from_str(&text).unwrap(),
                    Some(Ok(_)) => continue,
                    other => panic!("requester connection ended: {other:?}"),
                }
            };
            assert_eq!((&reply["request_id"], &reply["success"], &reply["error"]), (&json!(request_id), &json!(true), &Value::Null), "{strategy:?}: {reply}");
            assert_eq!((&reply["data"]["action"], &reply["data"]["params"]), (&json!(command), &data), "{reply}");
            let by = reply["data"]["by"].as_str().unwrap().to_owned();
            assert!(by == "py-quiet" || by == "py-chatty", "{reply}");
            assert!(ids.iter().any(|id| reply["processed_by"] == json!(id)), "processed_by names a listed worker: {reply}");
            *served.entry(by).or_default() += 1;
        }
        if strategy == Strategy::RoundRobin {
            assert_eq!((served.get("py-quiet"), served.get("py-chatty")), (Some(&20), Some(&20)), "{served:?}");
        }
        host.shutdown().await;
    }
}

#[tokio::test]
async fn without_default_types_a_worker_that_does_not_register_is_refused_clearly() {
    let host = Host::start_with(&[], |c| with_workers(c, vec![rule("job", Serve::Workers, false, None)])).await;
    let (mut socket, _) = tokio_tungstenite::connect_async(host.endpoint("/workers")).await.unwrap();
    socket.send(Message::text(json!({"type": "heartbeat", "msg_id": "h1", "data": {}}).to_string())).await.unwrap();
    let error: Value = match tokio::time::timeout(PATIENCE, socket.next()).await.unwrap() {
        Some(Ok(Message::Text(text))) => serde_json::from_str(&text).unwrap(),
        other => panic!("expected an error frame, got {other:?}"),
    };
    assert_eq!(error["data"]["code"], "INVALID_MESSAGE", "{error}");
    assert!(error["data"]["message"].as_str().unwrap().contains("workers.default_types"), "{error}");
    let close = loop {
        match tokio::time::timeout(PATIENCE, socket.next()).await.unwrap() {
            Some(Ok(Message::Close(frame))) => break frame.map(|f| u16::from(f.code)),
            Some(Ok(_)) => continue,
            other => panic!("expected a Close, got {other:?}"),
        }
    };
    assert_eq!(close, Some(1008));
    assert!(status_workers(&host).await.is_empty());
    host.shutdown().await;
}

/// The next text frame of a raw worker socket, as JSON.
async fn next_json(socket: &mut tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>) -> Value {
    loop {
        match tokio::time::timeout(PATIENCE, socket.next()).await.unwrap() {
            Some(Ok(Message::Text(text))) => return serde_json::from_str(&text).unwrap(),
            Some(Ok(_)) => continue,
            other => panic!("worker connection ended: {other:?}"),
        }
    }
}

#[tokio::test]
async fn with_default_types_explicit_register_still_works_and_a_late_register_registers_again() {
    let host = Host::start_with(&[], |c| {
        with_workers(c, vec![rule("job", Serve::Workers, false, None), rule("other", Serve::Workers, false, None)]);
        c.workers.default_types = vec!["job".into()];
    })
    .await;
    // Explicit, as before.
    let (mut explicit, _) = tokio_tungstenite::connect_async(host.endpoint("/workers")).await.unwrap();
    explicit.send(Message::text(json!({"type": "register", "data": {"worker_id": "explicit", "types": ["other"]}}).to_string())).await.unwrap();
    let registered = next_json(&mut explicit).await;
    assert_eq!((&registered["type"], &registered["data"]["worker_id"]), (&json!("registered"), &json!("explicit")), "{registered}");

    // A first frame that is not `register` registers for the default types,
    // and is then handled: this `ping` is answered.
    let (mut late, _) = tokio_tungstenite::connect_async(host.endpoint("/workers")).await.unwrap();
    late.send(Message::text(json!({"type": "ping"}).to_string())).await.unwrap();
    let registered = next_json(&mut late).await;
    assert_eq!(registered["type"], "registered", "{registered}");
    let generated = registered["data"]["worker_id"].as_str().unwrap().to_owned();
    assert_eq!(next_json(&mut late).await["type"], "pong");
    until_workers(&host, 2).await;
    let listed = status_workers(&host).await;
    let implicit = listed.iter().find(|w| w["id"] == json!(generated)).expect("listed");
    assert_eq!(implicit["types"], json!(["job"]), "{implicit}");

    // It registers after all: it is known by its own id and types now.
    late.send(Message::text(json!({"type": "register", "data": {"worker_id": "late", "types": ["job", "other"]}}).to_string())).await.unwrap();
    let again = next_json(&mut late).await;
    assert_eq!((&again["type"], &again["data"]["worker_id"]), (&json!("registered"), &json!("late")), "{again}");
    let listed = status_workers(&host).await;
    let ids: Vec<&str> = listed.iter().map(|w| w["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["explicit", "late"], "{listed:?}");
    host.shutdown().await;
}
